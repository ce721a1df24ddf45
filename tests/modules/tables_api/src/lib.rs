//! The messages of the `tables` test modules (tests/modules/tables_v1, both versions) and of
//! the tests that drive them: one definition for both sides.

use serde::{Deserialize, Serialize};

/// Arguments to `init`: optionally a table to create and fill.
#[derive(Serialize, Deserialize, Default)]
pub struct Args {
    /// Create (or open) this table at init.
    pub table: Option<String>,
    /// Rows to insert at init: key `k{i:06}`, value `fill_value(i)`.
    pub fill: u64,
}

/// The value `init` stores for row `i`: bytes of every value 0..=255, of varied lengths.
pub fn fill_value(i: u64) -> Vec<u8> {
    (0..(i % 300)).map(|j| ((i * 31 + j) % 256) as u8).collect()
}

/// Requests.
#[derive(Serialize, Deserialize)]
pub enum Call {
    /// Open or create a table: `Table(id)`.
    Open {
        name: String,
        create: bool,
        exclusive: bool,
        public: bool,
    },
    Insert {
        table: u64,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Lookup {
        table: u64,
        key: Vec<u8>,
    },
    Remove {
        table: u64,
        key: Vec<u8>,
    },
    Counter {
        table: u64,
        key: Vec<u8>,
        incr: i64,
        default: i64,
    },
    /// Every row with the prefix, through `table_rows` (batches).
    Scan {
        table: u64,
        prefix: Vec<u8>,
    },
    Size {
        table: u64,
    },
    Delete {
        table: u64,
    },
    SetHeir {
        table: u64,
        heir: Option<u64>,
        note: String,
    },
    /// Replace every value `v` by `v ++ suffix`, failing on `fail_key`.
    Transform {
        table: u64,
        chunk: u32,
        suffix: Vec<u8>,
        fail_key: Option<Vec<u8>>,
    },
    /// Typed put then get through the serde helpers.
    Typed {
        table: u64,
        key: (String, u32),
        value: Vec<String>,
    },
    /// Reads `key` `rounds` times; counts the values whose bytes are not all equal.
    CheckReads {
        table: u64,
        key: Vec<u8>,
        rounds: u32,
    },
    /// The heir notes received so far.
    Notes,
    /// Make the next upgrade's code_change fail (2.0.0 checks it).
    FailCodeChange(bool),
    Version,
    /// Panic (crash the process).
    Crash,
}

/// Replies.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub enum Reply {
    Ok,
    Table(u64),
    Value(Option<Vec<u8>>),
    Removed(bool),
    Count(i64),
    Rows(Vec<(Vec<u8>, Vec<u8>)>),
    Size(u64),
    Transformed(u64),
    Typed(Option<Vec<String>>),
    Torn { reads: u32, torn: u32 },
    Notes(Vec<String>),
    Version(String),
    Error(String),
}
