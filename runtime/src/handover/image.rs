//! The node image: what the old node hands the new one besides its descriptors. Every pid,
//! port id, table id and timer id keeps its number, so the ids that module states hold stay
//! right in the new node.

use serde::{Deserialize, Serialize};

/// The image format this runtime writes and reads.
pub(crate) const IMAGE_FORMAT: u32 = 1;

/// Everything the new node restores.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct NodeImage {
    /// [`IMAGE_FORMAT`].
    pub format: u32,
    /// The old node's pid.
    pub from_pid: u32,
    /// The release version the old node runs (the new one boots it).
    pub version: String,
    /// Make the release permanent once the new node serves (an install that asked for it).
    pub permanent_after: bool,
    /// Handovers this node has been through before this one.
    pub handovers: u32,
    /// When the first node of this line started (Unix seconds).
    pub first_started: u64,
    /// Counters: the new node hands out numbers above these.
    pub next_pid: u64,
    /// Next monitor reference.
    pub next_ref: u64,
    /// Next port id.
    pub next_port: u64,
    /// Next table id.
    pub next_table: u64,
    /// Next timer id.
    pub next_timer: u64,
    /// Every supervised process, parents before children.
    pub processes: Vec<ProcessImage>,
    /// Every table.
    pub tables: Vec<TableImage>,
    /// Every port; port `i` is descriptor `i + 2` of those that follow the image (after the
    /// node lock and the control socket).
    pub ports: Vec<PortImage>,
    /// Every pending timer.
    pub timers: Vec<TimerImage>,
}

/// One process of the supervision tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ProcessImage {
    /// Its pid, kept.
    pub pid: u64,
    /// Its supervisor's pid (0: an application's top supervisor).
    pub parent: u64,
    /// Its child id under that supervisor (a top supervisor's registered name).
    pub key: String,
    /// A worker's module, version and exported state (None for a supervisor).
    pub worker: Option<WorkerImage>,
    /// Ordinary messages it had not handled (casts and plain messages).
    pub mailbox: Vec<Mail>,
}

/// A worker's code and state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkerImage {
    /// The module.
    pub module: String,
    /// The version that exported the state.
    pub version: String,
    /// The state, as that version's `export_state` wrote it.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

/// A message waiting in a mailbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Mail {
    /// A cast.
    Cast(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A plain or timer message.
    Message(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// One table with its rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TableImage {
    /// Its id, kept.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Public (anyone writes) or protected.
    pub public: bool,
    /// The owner.
    pub owner: u64,
    /// The heir and its message.
    pub heir: Option<(u64, serde_bytes::ByteBuf)>,
    /// Keys and values, in key order.
    pub rows: Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
}

/// One port (its socket travels as a descriptor).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PortImage {
    /// Its id, kept.
    pub id: u64,
    /// A listener (else a connection).
    pub listener: bool,
    /// Its owner.
    pub owner: u64,
    /// A connection not claimed yet by `tcp_set_owner` (not read until it is).
    pub parked: bool,
    /// Output queued and not sent yet.
    #[serde(with = "serde_bytes")]
    pub unsent: Vec<u8>,
}

/// A pending timer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TimerImage {
    /// Its id, kept (a module may cancel it).
    pub id: u64,
    /// The process it sends to.
    pub target: u64,
    /// Microseconds left until it fires.
    pub remaining_us: u64,
    /// Its period, for an interval timer.
    pub interval_us: Option<u64>,
    /// The message.
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
}
