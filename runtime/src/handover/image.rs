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
    /// The names of the host's listening sockets; their descriptors follow the ports'.
    pub listeners: Vec<String>,
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
    /// The name it is registered under (by its child spec, or by its own code at init).
    #[serde(default)]
    pub name: Option<String>,
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
    /// How many rows [`TableImage::rows`] holds.
    pub count: u64,
    /// Keys and values in key order, flat: for each row the key's length (u32, little
    /// endian), the key, the value's length, the value. One buffer, not two allocations per
    /// row: a table's rows go over in one copy.
    #[serde(with = "serde_bytes")]
    pub rows: Vec<u8>,
}

/// Appends one row to a flat row buffer (see [`TableImage::rows`]).
pub(crate) fn put_row(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// One table row: key and value.
pub(crate) type Row = (Vec<u8>, Vec<u8>);

/// The rows of a flat row buffer, or where it is cut short.
pub(crate) fn rows(mut flat: &[u8]) -> Result<Vec<Row>, String> {
    let mut out = Vec::new();
    let take = |flat: &mut &[u8]| -> Result<Vec<u8>, String> {
        let (len, rest) = flat
            .split_first_chunk::<4>()
            .ok_or("a row length cut short")?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(format!("a row of {len} bytes with {} left", rest.len()));
        }
        let (bytes, rest) = rest.split_at(len);
        *flat = rest;
        Ok(bytes.to_vec())
    };
    while !flat.is_empty() {
        let key = take(&mut flat)?;
        let value = take(&mut flat)?;
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_rows_come_back_as_they_went_and_a_cut_is_an_error() {
        let mut flat = Vec::new();
        put_row(&mut flat, b"k1", b"value one");
        put_row(&mut flat, b"", b"");
        put_row(&mut flat, b"k3", &[0u8; 300]);
        let back = rows(&flat).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0], (b"k1".to_vec(), b"value one".to_vec()));
        assert_eq!(back[1], (Vec::new(), Vec::new()));
        assert_eq!(back[2].1.len(), 300);
        assert!(rows(&flat[..flat.len() - 1]).is_err());
        assert!(rows(&flat[..3]).is_err());
    }
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
