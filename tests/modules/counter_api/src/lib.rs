//! Messages of the `counter` test module (versions 1.0.0 and 2.0.0 speak the same protocol).

use serde::{Deserialize, Serialize};

/// Arguments to `init`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Args {
    /// Starting count.
    pub start: i64,
    /// Panic inside init.
    #[serde(default)]
    pub panic_in_init: bool,
    /// Return an error from init.
    #[serde(default)]
    pub fail_in_init: bool,
    /// Panic inside terminate.
    #[serde(default)]
    pub panic_in_terminate: bool,
    /// Register under this name during init.
    #[serde(default)]
    pub register_as: Option<String>,
    /// Tick every this many ms (an interval timer), counting ticks.
    #[serde(default)]
    pub tick_ms: Option<u64>,
    /// Trap exits.
    #[serde(default)]
    pub trap_exit: bool,
}

/// Requests handled by `handle_call`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Call {
    /// The current count.
    Get,
    /// Add to the count; replies with the new count.
    Add(i64),
    /// Module version and the state summary.
    Describe,
    /// Panic with this message.
    Panic(String),
    /// Reply, then stop with this reason text.
    Stop(String),
    /// Sleep this many ms, then reply.
    Sleep(u64),
    /// Call `target` (a registered name) with `Get` and reply with its answer.
    CallGet { target: String, timeout_ms: u64 },
    /// Per-sender order check results.
    OrderReport,
    /// Monitor the named process; later Down messages are counted.
    Monitor(String),
    /// Link to the named process.
    Link(String),
    /// Start a one-shot timer sending `Info::Note(n)` after `ms`.
    NoteAfter { ms: u64, n: i64 },
    /// Read a config key of the process's application.
    Env(String),
    /// Pids of monitored processes that went down, in the order their Down messages came.
    DownOrder,
    /// Register this process under the name; replies `Count(1)` if it was registered,
    /// `Count(0)` if the node refused.
    Register(String),
    /// Write this line to the node's log with `ctx.log` at info level.
    Log(String),
}

/// Replies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// A number.
    Count(i64),
    /// Module version and summary.
    Description {
        /// Module version that answered.
        version: String,
        /// Count.
        count: i64,
        /// Ticks seen.
        ticks: u64,
        /// Down messages seen.
        downs: u64,
        /// Exit infos seen.
        exits: u64,
        /// Notes received.
        notes: Vec<i64>,
        /// A field only version 2 has (0 in version 1).
        bonus: i64,
    },
    /// Result of an inner call.
    Inner(Result<i64, String>),
    /// Per-sender order: messages received, and how many arrived out of order or twice.
    Order {
        /// Messages recorded.
        received: u64,
        /// Sequence numbers that were not last+1.
        out_of_order: u64,
    },
    /// Done.
    Ok,
    /// A config value, debug-printed.
    Value(Option<String>),
    /// Pids, in order.
    Pids(Vec<u64>),
}

/// Messages handled by `handle_cast`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Cast {
    /// Add to the count.
    Add(i64),
    /// Record message `seq` from `sender` (for per-sender order checks).
    Record { sender: u64, seq: u64 },
    /// Panic.
    Panic,
}

/// A configuration key that makes the counter's `config_change` panic when it is changed or
/// new (tests of a crashing `config_change`).
pub const PANIC_IN_CONFIG_CHANGE: &str = "panic_in_config_change";

/// Plain messages handled by `handle_info`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Info {
    /// A timer tick.
    Tick,
    /// A note.
    Note(i64),
}
