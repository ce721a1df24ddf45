//! Plain data types shared by module authors and the runtime.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A process identifier, unique for the life of a node (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pid(pub u64);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<0.{}.0>", self.0)
    }
}

/// A monitor reference, as returned by `Context::monitor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MonitorRef(pub u64);

/// A timer reference, as returned by `Context::send_after` and `Context::send_interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimerRef(pub u64);

/// Why a process exited, with Erlang's meanings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReason {
    /// Finished its work; links are not affected, transient children are not restarted.
    Normal,
    /// Asked to stop by its supervisor or the node.
    Shutdown,
    /// Stopped without running `terminate` (brutal kill, or a forced stop after a timeout).
    Killed,
    /// Crashed: a panic (with its message), a failed callback, or a stop with a custom reason.
    Error(String),
}

impl ExitReason {
    /// True for `Normal` and `Shutdown`: exits that transient children are not restarted for.
    pub fn is_clean(&self) -> bool {
        matches!(self, ExitReason::Normal | ExitReason::Shutdown)
    }

    /// Parses the text form used across the ABI (`normal`, `shutdown`, `killed`, anything else
    /// is an error reason).
    pub fn from_text(text: &str) -> ExitReason {
        match text {
            "normal" => ExitReason::Normal,
            "shutdown" => ExitReason::Shutdown,
            "killed" => ExitReason::Killed,
            other => ExitReason::Error(other.to_string()),
        }
    }

    /// The text form used across the ABI; inverse of [`ExitReason::from_text`].
    pub fn to_text(&self) -> String {
        match self {
            ExitReason::Normal => "normal".into(),
            ExitReason::Shutdown => "shutdown".into(),
            ExitReason::Killed => "killed".into(),
            ExitReason::Error(text) => text.clone(),
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A TCP port (a listener or a connection) owned by the node, as returned by
/// `Context::tcp_listen` or carried by [`Info::TcpAccepted`]. Unique for the life of a node
/// (never reused), so it can be kept in state across upgrades.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortId(pub u64);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#Port<{}>", self.0)
    }
}

/// A node-owned table, as returned by `Context::table_open`. Unique for the life of a node
/// (never reused), so it can be kept in state across upgrades: the table itself is not part
/// of any process state and no code change touches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableId(pub u64);

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#Table<{}>", self.0)
    }
}

/// Why a connection (or a listener) closed, as [`Info::TcpClosed`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseReason {
    /// The peer closed its side (end of stream). Queued output is still sent, then the node
    /// closes the connection once the owner has handled this message.
    PeerClosed,
    /// The peer reset the connection; nothing more can be sent.
    Reset,
    /// Unsent output passed the node's hard limit (a peer that does not read its replies).
    OutputFull,
    /// Another socket error, with its text.
    Error(String),
}

impl CloseReason {
    /// The text form used across the ABI; inverse of [`CloseReason::from_text`].
    pub fn to_text(&self) -> String {
        match self {
            CloseReason::PeerClosed => "closed".into(),
            CloseReason::Reset => "reset".into(),
            CloseReason::OutputFull => "output_full".into(),
            CloseReason::Error(text) => text.clone(),
        }
    }

    /// Parses the text form (`closed`, `reset`, `output_full`, anything else is an error).
    pub fn from_text(text: &str) -> CloseReason {
        match text {
            "closed" => CloseReason::PeerClosed,
            "reset" => CloseReason::Reset,
            "output_full" => CloseReason::OutputFull,
            other => CloseReason::Error(other.to_string()),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// A message delivered to `handle_info`.
///
/// New kinds of info may be added in later ABI versions: match with a `_` arm.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Info<T> {
    /// A plain message: sent with `send`, or fired by a timer.
    Message(T),
    /// A monitored process went down.
    Down {
        /// The reference `monitor` returned.
        monitor: MonitorRef,
        /// The process that went down.
        pid: Pid,
        /// Why it went down (`noproc` when it did not exist).
        reason: ExitReason,
    },
    /// A linked process exited and this process traps exits.
    Exit {
        /// The linked process.
        pid: Pid,
        /// Its exit reason.
        reason: ExitReason,
    },
    /// A listener of this process accepted a connection. The connection belongs to this
    /// process but is not read until it calls `Context::tcp_set_owner` (with its own pid to
    /// keep it, or another process's to hand it over).
    TcpAccepted {
        /// The listener.
        listener: PortId,
        /// The new connection.
        conn: PortId,
        /// The peer's address (`127.0.0.1:53211`).
        peer: String,
    },
    /// Bytes arrived on a connection this process owns, in order. A chunk is whatever one
    /// read returned: a protocol frame may span chunks, and a chunk may hold many frames.
    TcpData {
        /// The connection.
        conn: PortId,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// An outbound connection this process opened with `Context::tcp_connect` is
    /// established; its bytes follow as [`Info::TcpData`]. (A connect that fails ends in
    /// [`Info::TcpClosed`] instead.)
    TcpConnected {
        /// The connection.
        conn: PortId,
        /// The peer's address (`127.0.0.1:6379`).
        peer: String,
    },
    /// A connection (or listener) this process owns closed, not at its own request. It is
    /// the last message about that port.
    TcpClosed {
        /// The connection or listener.
        port: PortId,
        /// Why.
        reason: CloseReason,
    },
}

/// A typed configuration value (the TOML value of a declared config key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ConfigValue {
    /// `true` / `false`.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A list of values.
    List(Vec<ConfigValue>),
    /// A table of values by key.
    Table(std::collections::BTreeMap<String, ConfigValue>),
}

/// A configuration change delivered to `config_change`, like OTP's `config_change/3`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// Keys whose value changed, with the new value.
    pub changed: Vec<(String, ConfigValue)>,
    /// Keys that were not set before, with their value.
    pub new: Vec<(String, ConfigValue)>,
    /// Keys that are no longer set.
    pub removed: Vec<String>,
}
