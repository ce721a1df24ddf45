//! Ports: TCP listeners and connections owned by the node, in the manner of Erlang's ports and
//! `gen_tcp` in active mode.
//!
//! # Model
//! - A process asks for a listener ([`crate::Node::tcp_listen`], or `Context::tcp_listen` in
//!   a module). Each accepted connection arrives at the listener's owner as an
//!   `Info::TcpAccepted` message; its bytes arrive at the connection's owner as
//!   `Info::TcpData`, in order; a close the owner did not ask for arrives as
//!   `Info::TcpClosed` (peer closed, reset, output limit, error), always the last message about
//!   that port. Anyone writes by sending to the connection (`tcp_send`).
//! - Sockets live here, in the runtime, keyed by a [`PortId`] that is never reused; an owner is
//!   a pid. Module code only holds port ids (plain numbers in its state), so a listener and its
//!   connections stay open across any upgrade, downgrade or rollback of the modules that handle
//!   them: the bytes that arrive while the owner is suspended wait in its mailbox and are
//!   handled by whichever code version runs after the resume.
//! - A freshly accepted connection is *parked*: it is not read until its owner calls
//!   `tcp_set_owner` (with its own pid to keep it, or another pid to hand it over). Erlang's
//!   `controlling_process` has a race there (bytes read before the hand-over land at the
//!   acceptor); parking removes it. Handing over a connection that is already being read moves
//!   only what is read from then on: messages already delivered stay with the old owner.
//! - Only the owner may hand a port over; any process may send on a connection or close it.
//! - Outbound: `tcp_connect` opens a connection owned by the caller without waiting for it.
//!   The owner gets `Info::TcpConnected` once it is established (it is read from then on, not
//!   parked), or `Info::TcpClosed` with the reason if the connect fails. Output sent meanwhile
//!   is queued. From then on it is a connection like an accepted one: owned by the node,
//!   across every upgrade and rollback, with the same back-pressure and closing rules.
//!
//! # Back-pressure
//! - Input: the bytes delivered to a connection's owner but not handled yet ("in flight") are
//!   counted per connection. Each `TcpData` message carries a credit that is returned when
//!   the message has been handled (or dropped). Past [`PortLimits::max_in_flight`] the node
//!   stops reading that socket; the kernel's buffers fill and TCP's own flow control slows the
//!   peer. Reading resumes when the owner catches up. So a slow or suspended process never
//!   makes the node buffer more than `max_in_flight + read_chunk` bytes per connection.
//! - Output: `tcp_send` never blocks. It writes what the socket takes at once and keeps the
//!   rest, flushed as the socket drains. While more than [`PortLimits::output_soft`] bytes
//!   are kept, reads of that connection pause too (a peer that does not read its replies stops
//!   being read); past [`PortLimits::output_hard`] the connection is closed
//!   (`CloseReason::OutputFull`).
//!
//! # Closing and owner death
//! - `tcp_close` closes gracefully: queued output is sent first (for at most
//!   [`PortLimits::close_linger`]), then the socket is shut down. A peer's end of stream is
//!   delivered as `TcpClosed(PeerClosed)` after all its data; the node closes the connection
//!   once the owner has *handled* that message, so replies written for the last requests still
//!   go out.
//! - When a process exits for any reason (crash, kill, normal), every port it owns is closed:
//!   its listeners at once (synchronously, before its exit is complete, so a successor can
//!   bind the address again), its connections gracefully as above. Connections are not handed to
//!   a restarted successor: the dead process's per-connection state (a half-parsed request) is
//!   gone, so continuing the byte stream would be wrong. A supervisor-restarted successor opens
//!   its listener again (the address is free at once: listeners set `SO_REUSEADDR`).
//!
//! # Threads
//! One poller thread per node (started on first use) runs `mio` (epoll): it accepts, reads and
//! flushes output. Processes write directly from their scheduler thread when nothing is queued,
//! so a reply usually costs one `write` and no thread hop.

mod conn;
mod error;
mod event;
pub(crate) mod handover;
mod listener;
mod poller;
mod shared;

pub use error::PortError;
pub use event::{CloseGuard, Credit, TcpEvent};
pub use relup_module::{CloseReason, PortId};

use crate::node::NodeInner;
use parking_lot::Mutex;
use relup_module::Pid;
use shared::Shared;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Per-connection buffering limits of a node's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortLimits {
    /// Bytes delivered to an owner and not handled yet, per connection, before reading pauses.
    pub max_in_flight: usize,
    /// Most bytes one read takes (one `TcpData` message at most this long).
    pub read_chunk: usize,
    /// Unsent output, per connection, above which reading pauses.
    pub output_soft: usize,
    /// Unsent output, per connection, above which the connection is closed.
    pub output_hard: usize,
    /// How long a closing connection may take to send its queued output.
    pub close_linger: Duration,
}

impl Default for PortLimits {
    fn default() -> Self {
        PortLimits {
            max_in_flight: 256 * 1024,
            read_chunk: 64 * 1024,
            output_soft: 1024 * 1024,
            output_hard: 64 * 1024 * 1024,
            close_linger: Duration::from_secs(5),
        }
    }
}

/// Whether a port is a listener or a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PortKind {
    /// A listening socket.
    Listener,
    /// A connection (accepted by one of the node's listeners, or opened by `tcp_connect`).
    Connection,
}

/// A snapshot of one port, for status displays and tests.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortInfo {
    /// Its id.
    pub id: PortId,
    /// Listener or connection.
    pub kind: PortKind,
    /// The process that gets its events.
    pub owner: Pid,
    /// The local address.
    pub local: SocketAddr,
    /// The peer's address (connections only).
    pub peer: Option<SocketAddr>,
    /// Bytes delivered to the owner and not handled yet.
    pub in_flight: usize,
    /// Output not sent yet.
    pub unsent: usize,
    /// Whether reading is paused by back-pressure (or the connection is parked).
    pub reading_paused: bool,
}

/// The node's ports: created empty, the poller starts with the first listener.
pub(crate) struct Ports {
    limits: PortLimits,
    shared: OnceLock<Arc<Shared>>,
    starting: Mutex<()>,
}

impl Ports {
    pub(crate) fn new(limits: PortLimits) -> Ports {
        Ports {
            limits,
            shared: OnceLock::new(),
            starting: Mutex::new(()),
        }
    }

    /// The running poller, if any port was ever opened.
    fn running(&self) -> Option<&Arc<Shared>> {
        self.shared.get()
    }

    /// The poller, started on first use.
    fn started(&self, node: &Arc<NodeInner>) -> Result<&Arc<Shared>, PortError> {
        if let Some(shared) = self.shared.get() {
            return Ok(shared);
        }
        let _one = self.starting.lock();
        if let Some(shared) = self.shared.get() {
            return Ok(shared);
        }
        let shared = poller::start(Arc::downgrade(node), self.limits)?;
        Ok(self.shared.get_or_init(|| shared))
    }

    /// Opens a listener on `addr` owned by `owner`.
    pub(crate) fn listen(
        &self,
        node: &Arc<NodeInner>,
        owner: Pid,
        addr: &str,
    ) -> Result<(PortId, SocketAddr), PortError> {
        self.started(node)?.listen(owner, addr)
    }

    /// Starts an outbound connection to `addr` owned by `owner`.
    pub(crate) fn connect(
        &self,
        node: &Arc<NodeInner>,
        owner: Pid,
        addr: &str,
    ) -> Result<PortId, PortError> {
        self.started(node)?.connect(owner, addr)
    }

    /// Queues bytes on a connection.
    pub(crate) fn send(&self, conn: PortId, bytes: &[u8]) -> Result<(), PortError> {
        match self.running() {
            Some(shared) => shared.send(conn, bytes),
            None => Err(PortError::NoPort(conn)),
        }
    }

    /// Closes a port (gracefully for a connection).
    pub(crate) fn close(&self, port: PortId) -> Result<(), PortError> {
        match self.running() {
            Some(shared) => shared.close(port),
            None => Err(PortError::NoPort(port)),
        }
    }

    /// Hands a connection to `to` and starts reading it. `by`: the caller, who must be the
    /// owner, or None for the node itself.
    pub(crate) fn set_owner(
        &self,
        node: &NodeInner,
        conn: PortId,
        by: Option<Pid>,
        to: Pid,
    ) -> Result<(), PortError> {
        match self.running() {
            Some(shared) => shared.set_owner(node, conn, by, to),
            None => Err(PortError::NoPort(conn)),
        }
    }

    /// Closes every port `pid` owns (it has exited).
    pub(crate) fn owner_exited(&self, pid: Pid) {
        if let Some(shared) = self.running() {
            shared.owner_exited(pid);
        }
    }

    /// Every open port, by id.
    pub(crate) fn info(&self) -> Vec<PortInfo> {
        self.running().map(|s| s.info()).unwrap_or_default()
    }

    /// Stops the poller and closes every socket.
    pub(crate) fn stop(&self) {
        if let Some(shared) = self.running() {
            shared.stop();
        }
    }
}
