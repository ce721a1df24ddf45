//! Why a port operation failed.

use relup_module::{Pid, PortId};

/// Why a port operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An outbound connect could not be started (an address that does not parse or resolve,
    /// no descriptor left). A connect the peer refuses ends later, in a `Closed` event.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address asked for.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The poller (its epoll instance or thread) could not be started.
    #[error("cannot start the port poller: {0}")]
    Poller(std::io::Error),
    /// No such port: never opened, or closed already.
    #[error("no such port {0} (closed?)")]
    NoPort(PortId),
    /// Only the port's owner may do that.
    #[error("{port} is owned by {owner}, not by the caller")]
    NotOwner {
        /// The port.
        port: PortId,
        /// Its owner.
        owner: Pid,
    },
    /// The connection's unsent output passed the hard limit; it was closed.
    #[error("unsent output on {0} passed the limit; the connection was closed")]
    OutputFull(PortId),
    /// The new owner is not a live process.
    #[error("no such process {0}")]
    NoProc(Pid),
    /// A listener where a connection was needed (or the reverse).
    #[error("{0} is not a connection")]
    NotAConnection(PortId),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// A socket handed over by another node could not be taken in.
    #[error("cannot adopt the socket of {port} handed over by the old node: {source}")]
    Adopt {
        /// The port.
        port: PortId,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl PortError {
    /// The ABI status code for this error (`relup_module::abi::port_status`).
    pub(crate) fn status(&self) -> i32 {
        use relup_module::abi::port_status;
        match self {
            PortError::NoPort(_)
            | PortError::Listen { .. }
            | PortError::Connect { .. }
            | PortError::Poller(_)
            | PortError::ShuttingDown
            | PortError::Adopt { .. } => port_status::NO_PORT,
            PortError::NotOwner { .. } => port_status::NOT_OWNER,
            PortError::OutputFull(_) => port_status::OUTPUT_FULL,
            PortError::NoProc(_) => port_status::NO_PROC,
            PortError::NotAConnection(_) => port_status::WRONG_KIND,
        }
    }
}
