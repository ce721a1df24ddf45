//! One listening socket: binding it, and accepting its connections on the poller thread.

use super::PortError;
use parking_lot::Mutex;
use relup_module::Pid;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// A listening socket owned by a process.
///
/// The socket sits in a slot so that closing it is synchronous (whoever else holds the
/// listener for a moment): a restarted owner can bind the address again as soon as the old
/// owner's exit is complete.
pub(crate) struct Listener {
    socket: Mutex<Option<mio::net::TcpListener>>,
    pub(super) local: SocketAddr,
    owner: AtomicU64,
}

/// What one accept attempt gave.
pub(super) enum Accepted {
    /// A connection.
    Conn(mio::net::TcpStream, SocketAddr),
    /// Nothing more to accept for now.
    Drained,
    /// A transient failure (out of descriptors, ...): try again a little later.
    Retry(std::io::Error),
}

impl Listener {
    /// Binds `addr` (`host:port`, port 0 for any free port). The socket is non-blocking and
    /// has `SO_REUSEADDR` (set by std on Unix), so a restarted owner can bind it again at once.
    pub(super) fn bind(
        addr: &str,
        owner: Pid,
        register: impl FnOnce(&mut mio::net::TcpListener) -> std::io::Result<()>,
    ) -> Result<Listener, PortError> {
        let failed = |source| PortError::Listen {
            addr: addr.to_string(),
            source,
        };
        let std_listener = std::net::TcpListener::bind(addr).map_err(failed)?;
        std_listener.set_nonblocking(true).map_err(failed)?;
        let local = std_listener.local_addr().map_err(failed)?;
        let mut socket = mio::net::TcpListener::from_std(std_listener);
        register(&mut socket).map_err(failed)?;
        Ok(Listener {
            socket: Mutex::new(Some(socket)),
            local,
            owner: AtomicU64::new(owner.0),
        })
    }

    /// A listener handed over from another node, already bound and non-blocking.
    pub(super) fn adopt(
        std_listener: std::net::TcpListener,
        owner: Pid,
        register: impl FnOnce(&mut mio::net::TcpListener) -> std::io::Result<()>,
    ) -> std::io::Result<Listener> {
        let local = std_listener.local_addr()?;
        let mut socket = mio::net::TcpListener::from_std(std_listener);
        register(&mut socket)?;
        Ok(Listener {
            socket: Mutex::new(Some(socket)),
            local,
            owner: AtomicU64::new(owner.0),
        })
    }

    /// Its descriptor, while open.
    pub(super) fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.socket.lock().as_ref().map(|s| s.as_raw_fd())
    }

    pub(super) fn owner(&self) -> Pid {
        Pid(self.owner.load(Ordering::SeqCst))
    }

    /// Changes the owner if it is still `from`.
    pub(super) fn swap_owner(&self, from: Pid, to: Pid) -> bool {
        self.owner
            .compare_exchange(from.0, to.0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Closes the socket now.
    pub(super) fn close(&self) {
        self.socket.lock().take();
    }

    /// Accepts one connection, with `TCP_NODELAY` (replies go out at once, as Redis does).
    pub(super) fn accept(&self) -> Accepted {
        let socket = self.socket.lock();
        let Some(socket) = socket.as_ref() else {
            return Accepted::Drained;
        };
        loop {
            match socket.accept() {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Accepted::Conn(stream, peer);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Accepted::Drained,
                // The peer gave up before we took it, or a signal: take the next one.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue;
                }
                Err(e) => return Accepted::Retry(e),
            }
        }
    }
}
