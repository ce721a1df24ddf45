//! What the ports deliver to their owners ([`TcpEvent`], inside an info message), and the
//! guards those messages carry back to the ports when they are handled.

use super::conn::Conn;
use super::shared::Shared;
use relup_module::{CloseReason, PortId};
use std::net::SocketAddr;
use std::sync::Weak;

/// An event of a port, delivered to its owner as an info message.
#[derive(Debug)]
pub enum TcpEvent {
    /// A listener accepted a connection (parked until its owner calls `set_owner`).
    Accepted {
        /// The listener.
        listener: PortId,
        /// The new connection.
        conn: PortId,
        /// The peer's address.
        peer: SocketAddr,
    },
    /// An outbound connection (`tcp_connect`) is established; it is read from now on.
    Connected {
        /// The connection.
        conn: PortId,
        /// The peer's address.
        peer: SocketAddr,
    },
    /// Bytes read from a connection.
    Data {
        /// The connection.
        conn: PortId,
        /// The bytes.
        bytes: Vec<u8>,
        /// Returns the bytes' share of the in-flight limit when the message is dropped.
        credit: Credit,
    },
    /// The port closed (not at its owner's request); the last event about it.
    Closed {
        /// The connection or listener.
        port: PortId,
        /// Why.
        reason: CloseReason,
        /// For a peer's end of stream: closes the connection (after its output) once the
        /// owner has handled the message.
        guard: Option<CloseGuard>,
    },
}

/// The in-flight share of one `Data` message: returned to its connection when dropped, which
/// may let the poller read that connection again.
pub struct Credit {
    pub(super) conn: Weak<Conn>,
    pub(super) bytes: usize,
}

impl std::fmt::Debug for Credit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credit({} bytes)", self.bytes)
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.upgrade() {
            conn.return_credit(self.bytes);
        }
    }
}

/// Closes a connection whose peer ended its stream, once its owner handled that news.
pub struct CloseGuard {
    pub(super) shared: Weak<Shared>,
    pub(super) conn: PortId,
}

impl std::fmt::Debug for CloseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CloseGuard({})", self.conn)
    }
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let _ = shared.close(self.conn);
        }
    }
}
