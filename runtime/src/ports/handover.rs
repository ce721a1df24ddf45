//! Ports across a node handover (see [`crate::handover`]): the old node stops reading and
//! accepting, lets its processes handle what was read, holds its output, and hands every
//! socket over as a descriptor with its unsent output; the new node adopts them under the
//! same port ids, held and frozen until it takes over.

use super::conn::Conn;
use super::listener::Listener;
use super::shared::{Command, Port, Shared};
use super::{PortError, Ports};
use crate::handover::image::PortImage;
use crate::node::NodeInner;
use relup_module::{Pid, PortId};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What a handover takes of the ports: their images and the descriptors to pass.
pub(crate) struct ExportedPorts {
    /// One per port, in id order.
    pub images: Vec<PortImage>,
    /// The socket of each image, same order (valid while `keep` holds the ports).
    pub fds: Vec<RawFd>,
    /// The ports themselves: their descriptors stay open while this lives, whatever their
    /// owners do meanwhile.
    #[allow(dead_code)]
    keep: Vec<Port>,
    /// The next port id.
    pub next_id: u64,
}

impl Ports {
    /// Stops reading and accepting on every port (output still goes).
    pub(crate) fn freeze(&self) {
        if let Some(shared) = self.running() {
            shared.frozen.store(true, Ordering::SeqCst);
        }
    }

    /// Stops writing: sends queue, the poller flushes nothing.
    pub(crate) fn hold(&self) {
        if let Some(shared) = self.running() {
            shared.held.store(true, Ordering::SeqCst);
        }
    }

    /// Reading, accepting and writing go on (the events missed meanwhile are made up for).
    pub(crate) fn thaw(&self) {
        if let Some(shared) = self.running() {
            shared.frozen.store(false, Ordering::SeqCst);
            shared.held.store(false, Ordering::SeqCst);
            shared.command(Command::Thaw);
        }
    }

    /// What a handover's drain waits on, in one pass over the table: the bytes delivered to
    /// owners and not handled yet, and the connections closing (they end with this node).
    pub(crate) fn drain_state(&self) -> (usize, usize) {
        self.running().map_or((0, 0), |shared| {
            shared.with_table(|table| {
                table
                    .values()
                    .fold((0, 0), |(bytes, closing), port| match port {
                        Port::Conn(c) => {
                            (bytes + c.in_flight(), closing + usize::from(c.is_closing()))
                        }
                        Port::Listener(_) => (bytes, closing),
                    })
            })
        })
    }

    /// The images and sockets of every port (frozen and held: nothing moves meanwhile).
    /// A connection still connecting or closing is refused: it cannot be handed over.
    pub(crate) fn export(&self) -> Result<ExportedPorts, String> {
        let Some(shared) = self.running() else {
            return Ok(ExportedPorts {
                images: Vec::new(),
                fds: Vec::new(),
                keep: Vec::new(),
                next_id: 1,
            });
        };
        let mut images = Vec::new();
        let mut fds = Vec::new();
        let mut keep = Vec::new();
        for (id, port) in shared.all() {
            keep.push(port.clone());
            match port {
                Port::Listener(listener) => {
                    let Some(fd) = listener.raw_fd() else {
                        continue;
                    };
                    images.push(PortImage {
                        id: id.0,
                        listener: true,
                        owner: listener.owner().0,
                        parked: false,
                        unsent: Vec::new(),
                    });
                    fds.push(fd);
                }
                Port::Conn(conn) => {
                    if conn.is_closing() {
                        // Closing: it ends with this node.
                        continue;
                    }
                    if conn.connecting.load(Ordering::SeqCst) {
                        return Err(format!(
                            "connection {id} to {} is still connecting",
                            conn.peer
                        ));
                    }
                    if conn.in_flight() > 0 {
                        return Err(format!(
                            "connection {id} has {} bytes read and not handled",
                            conn.in_flight()
                        ));
                    }
                    images.push(PortImage {
                        id: id.0,
                        listener: false,
                        owner: conn.owner().0,
                        parked: !conn.active.load(Ordering::SeqCst),
                        unsent: conn.unsent_bytes(),
                    });
                    fds.push(conn.stream.as_raw_fd());
                }
            }
        }
        Ok(ExportedPorts {
            images,
            fds,
            keep,
            next_id: shared.peek_next_id(),
        })
    }

    /// Adopts handed-over sockets under their ids, frozen and held until [`Ports::thaw`].
    pub(crate) fn adopt(
        &self,
        node: &Arc<NodeInner>,
        ports: Vec<(PortImage, OwnedFd)>,
        next_id: u64,
    ) -> Result<(), PortError> {
        let shared = self.started(node)?;
        shared.frozen.store(true, Ordering::SeqCst);
        shared.held.store(true, Ordering::SeqCst);
        shared.ids_from(next_id);
        for (image, fd) in ports {
            adopt_one(shared, image, fd)?;
        }
        Ok(())
    }
}

fn adopt_one(shared: &Arc<Shared>, image: PortImage, fd: OwnedFd) -> Result<(), PortError> {
    let id = PortId(image.id);
    let owner = Pid(image.owner);
    let token = mio::Token(image.id as usize);
    let adopt_failed = |source: std::io::Error| PortError::Adopt { port: id, source };
    if image.listener {
        let listener = std::net::TcpListener::from(fd);
        listener.set_nonblocking(true).map_err(adopt_failed)?;
        let listener = Listener::adopt(listener, owner, |socket| {
            shared
                .registry
                .register(socket, token, mio::Interest::READABLE)
        })
        .map_err(adopt_failed)?;
        shared.insert(id, Port::Listener(Arc::new(listener)), owner);
    } else {
        let stream = std::net::TcpStream::from(fd);
        stream.set_nonblocking(true).map_err(adopt_failed)?;
        let local = stream.local_addr().map_err(adopt_failed)?;
        let peer = stream.peer_addr().map_err(adopt_failed)?;
        let mut stream = mio::net::TcpStream::from_std(stream);
        shared
            .registry
            .register(
                &mut stream,
                token,
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            )
            .map_err(adopt_failed)?;
        let conn = Conn::new(id, stream, local, peer, owner, shared, false);
        conn.active.store(!image.parked, Ordering::SeqCst);
        if !image.unsent.is_empty() {
            conn.queue(&image.unsent);
        }
        shared.insert(id, Port::Conn(Arc::new(conn)), owner);
    }
    Ok(())
}

impl Ports {
    /// Every process that owns a port.
    pub(crate) fn owners(&self) -> Vec<Pid> {
        self.running()
            .map_or_else(Vec::new, |shared| shared.owner_pids())
    }
}
