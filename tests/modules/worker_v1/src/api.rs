// The messages of the `worker` bench module, shared by both versions and by the benches
// (included with `#[path]`, so that the wire types exist once).

use serde::{Deserialize, Serialize};

/// Arguments to `init`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Args {
    /// Identifies the worker; kept in its state, so a migration can be checked.
    pub id: u64,
    /// Tick every this many ms (an interval timer); 0 = never.
    pub interval_ms: u64,
}

/// Requests.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Call {
    /// Answered with `Pong`.
    Ping,
    /// Answered with `Description`.
    Describe,
}

/// Replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The answer to `Ping`.
    Pong,
    /// The module version and the state.
    Description {
        /// Module version running the process.
        version: String,
        /// The id from `Args`.
        id: u64,
        /// The state field 2.0.0 adds (None in 1.0.0).
        ticks: Option<u64>,
    },
}

/// Info messages.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Info {
    /// The interval timer fired.
    Tick,
}
