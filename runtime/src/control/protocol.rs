//! Requests and events of the control protocol.

use crate::install::Progress;
use serde::{Deserialize, Serialize};

/// Largest request line the node reads; a longer one gets an error response.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A request from `relup` to the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Release, supervision tree, processes, module versions.
    Status,
    /// Every release with its status.
    Releases,
    /// The plan to a version, no change made.
    Plan {
        /// Target version.
        version: String,
    },
    /// Install a version (upgrade or downgrade) the safe way: snapshot, dry-run check,
    /// install, probation; then make it permanent unless told not to.
    Install {
        /// Target version.
        version: String,
        /// Make it permanent once its probation passes.
        #[serde(default = "yes")]
        permanent: bool,
        /// The probation window in milliseconds, overriding the release's (0: none).
        #[serde(default)]
        probation_ms: Option<u64>,
        /// Put back the states of this snapshot instead of running `code_change` down.
        #[serde(default)]
        restore_snapshot: Option<u64>,
        /// Skip the dry run of the code changes before the install.
        #[serde(default)]
        skip_check: bool,
    },
    /// Hand the node over to a new node process running the same release (`relup restart`):
    /// every connection and process state is kept (see `crate::handover`).
    Restart,
    /// Load a version's code and dry-run its code changes on copies of the live states.
    Check {
        /// Target version.
        version: String,
    },
    /// The snapshots taken before installs.
    Snapshots,
    /// Schedule an install for later (exactly one of `at` and `in_ms`).
    Schedule {
        /// Target version.
        version: String,
        /// RFC 3339 time, or `now`.
        #[serde(default)]
        at: Option<String>,
        /// Delay from now, in milliseconds.
        #[serde(default)]
        in_ms: Option<u64>,
        /// Make it permanent once its probation passes.
        #[serde(default = "yes")]
        permanent: bool,
        /// The probation window in milliseconds, overriding the release's.
        #[serde(default)]
        probation_ms: Option<u64>,
    },
    /// Cancel a scheduled install (every one when `id` is absent).
    Cancel {
        /// The scheduled install's id.
        #[serde(default)]
        id: Option<u64>,
    },
    /// Make the running release permanent.
    Permanent {
        /// The version (must be the running one).
        version: String,
    },
    /// Remove a release that is neither permanent nor running.
    Remove {
        /// The version.
        version: String,
    },
    /// Unpack a tarball (path on the node's machine).
    Unpack {
        /// The tarball.
        tarball: String,
        /// Replace a version that is only unpacked (never a live one).
        #[serde(default)]
        force: bool,
    },
    /// Reboot into an old release (it becomes permanent; processes start afresh).
    RebootOld {
        /// The version.
        version: String,
    },
    /// The upgrade journal.
    Log,
    /// Configuration keys of the running release with their values (`relup config get`).
    ConfigGet {
        /// Only this application.
        #[serde(default)]
        app: Option<String>,
        /// Only this key (with `app`).
        #[serde(default)]
        key: Option<String>,
    },
    /// Set a key as the operator, validated like a `config.toml.new` line (`relup config set`).
    ConfigSet {
        /// `app:module:key:value`.
        line: String,
    },
    /// Stop the node.
    Stop,
}

fn yes() -> bool {
    true
}

/// One line of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A step of an install.
    Progress(Progress),
    /// A remark (e.g. "unpacked 0.2.0 from its tarball").
    Note {
        /// The text.
        text: String,
    },
    /// Success; the request's result.
    Done {
        /// The result (shape depends on the request).
        result: serde_json::Value,
    },
    /// Failure; the node keeps running.
    Error {
        /// One line saying why.
        message: String,
    },
}

impl Event {
    /// Whether this event ends the response.
    pub fn is_final(&self) -> bool {
        matches!(self, Event::Done { .. } | Event::Error { .. })
    }
}
