//! The remote console (`relup state`, `relup call`, `relup cast`): a process's state as its
//! module exports it (OTP's `sys:get_state`), and requests given as JSON, transcoded to the
//! module codec ([`super::transcode`]).
//!
//! A request the module cannot decode does not crash the process: its `handle_call` entry
//! point answers "bad message" (the process keeps running) and the caller gets the decoder's
//! reason, which names the type it expected. A cast it cannot decode is dropped by the process
//! with a warning in the node's log, as any such cast: a cast has no answer to carry the
//! reason back.

use super::transcode::{json_to_module, module_to_json};
use crate::error::{CallError, SendError};
use crate::node::Node;
use relup_module::Pid;
use serde::Serialize;
use std::time::Duration;

/// How long a state export may wait for a busy process to finish its current message.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for its reply unless the request says otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest call timeout a request may ask for.
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a console request failed; the message names the process.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The target is neither a pid nor a registered name.
    #[error(
        "no process {0}: expected a registered name or a pid such as <0.12.0> (see `relup status`)"
    )]
    NoProc(String),
    /// The process runs no module (a supervisor), so it has no module state or requests.
    #[error("{who} runs no module (a supervisor?): {detail}")]
    NotAModule {
        /// The process.
        who: String,
        /// What the node said.
        detail: String,
    },
    /// The state could not be exported.
    #[error("cannot read the state of {who}: {detail}")]
    Export {
        /// The process.
        who: String,
        /// Why.
        detail: String,
    },
    /// The JSON could not be encoded for the module.
    #[error("cannot encode the JSON for {who}: {detail}")]
    Encode {
        /// The process.
        who: String,
        /// Why.
        detail: String,
    },
    /// The module could not decode the request: the process keeps running.
    #[error(
        "{who} cannot decode this request ({detail}); expected the JSON of {expected}; the process was not affected"
    )]
    Undecodable {
        /// The process.
        who: String,
        /// The module decoder's reason.
        detail: String,
        /// The type the module expects, as far as its decoder says.
        expected: String,
    },
    /// The process exited while handling the request (its callback crashed or stopped).
    #[error(
        "{who} exited while handling the request: {reason}; its supervisor restarts it as after any crash"
    )]
    Crashed {
        /// The process.
        who: String,
        /// Its exit reason.
        reason: String,
    },
    /// No reply within the timeout.
    #[error("{who} did not reply within {:.1} s (busy, suspended by an upgrade, or stuck)", timeout.as_secs_f64())]
    Timeout {
        /// The process.
        who: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The reply could not be turned into JSON.
    #[error("the reply of {who} is not readable as JSON: {detail}")]
    Reply {
        /// The process.
        who: String,
        /// Why.
        detail: String,
    },
    /// Any other failure of the call or cast.
    #[error("{who}: {detail}")]
    Other {
        /// The process.
        who: String,
        /// Why.
        detail: String,
    },
}

/// The process a console request names: its pid, name and code (also in the result).
#[derive(Debug, Clone, Serialize)]
pub struct Process {
    /// Its pid.
    pub pid: Pid,
    /// Its registered name, if any.
    pub name: Option<String>,
    /// The module it runs.
    pub module: Option<String>,
    /// The module's version.
    pub version: Option<String>,
}

impl Process {
    /// `c1 (<0.12.0>, counter 1.0.0)`, for messages.
    fn who(&self) -> String {
        let code = match (&self.module, &self.version) {
            (Some(m), Some(v)) => Some(format!("{m} {v}")),
            (Some(m), None) => Some(m.clone()),
            _ => None,
        };
        match (&self.name, code) {
            (Some(name), Some(code)) => format!("{name} ({}, {code})", self.pid),
            (Some(name), None) => format!("{name} ({})", self.pid),
            (None, Some(code)) => format!("{} ({code})", self.pid),
            (None, None) => self.pid.to_string(),
        }
    }
}

/// Reads `text` as a pid: `<0.12.0>`, `0.12.0` or `12`.
fn parse_pid(text: &str) -> Option<Pid> {
    let inner = text.trim();
    let inner = inner
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(inner);
    let number = match inner.split('.').collect::<Vec<_>>().as_slice() {
        [n] => *n,
        ["0", n, "0"] => *n,
        _ => return None,
    };
    number.parse().ok().map(Pid)
}

/// Finds the live process `text` names (a registered name, else a pid).
pub fn resolve(node: &Node, text: &str) -> Result<Process, ConsoleError> {
    let pid = node
        .whereis(text)
        .or_else(|| parse_pid(text))
        .ok_or_else(|| ConsoleError::NoProc(format!("{text:?}")))?;
    let info = node
        .process_info(pid)
        .ok_or_else(|| ConsoleError::NoProc(format!("{text:?}")))?;
    Ok(Process {
        pid,
        name: info.name,
        module: info.module,
        version: info.version,
    })
}

/// The state of the process `text` names, as JSON: `{"process": ..., "state": ...}`. The
/// process pauses for one export, between two of its messages.
pub fn state(node: &Node, text: &str) -> Result<serde_json::Value, ConsoleError> {
    let target = resolve(node, text)?;
    if target.module.is_none() {
        return Err(ConsoleError::NotAModule {
            who: target.who(),
            detail: "only a module's process has a state to export".into(),
        });
    }
    let (_, bytes) = node
        .export_state(target.pid, EXPORT_TIMEOUT)
        .map_err(|detail| ConsoleError::Export {
            who: target.who(),
            detail,
        })?;
    let state = module_to_json(&bytes).map_err(|detail| ConsoleError::Export {
        who: target.who(),
        detail,
    })?;
    Ok(serde_json::json!({ "process": target, "state": state }))
}

/// The type a module decoder's message says it expected (`cannot decode T from N bytes: ...`).
fn expected_type(detail: &str) -> String {
    detail
        .split_once("cannot decode ")
        .and_then(|(_, rest)| rest.split_once(" from "))
        .map_or_else(
            || "the module's request type".to_string(),
            |(ty, _)| ty.to_string(),
        )
}

/// Calls the process `text` names with `request`; returns `{"process": ..., "reply": ...}`.
pub fn call(
    node: &Node,
    text: &str,
    request: &serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, ConsoleError> {
    let target = resolve(node, text)?;
    if target.module.is_none() {
        return Err(ConsoleError::NotAModule {
            who: target.who(),
            detail: "a supervisor takes supervisor requests only".into(),
        });
    }
    let bytes = json_to_module(request).map_err(|detail| ConsoleError::Encode {
        who: target.who(),
        detail,
    })?;
    let timeout = timeout.min(MAX_CALL_TIMEOUT);
    let reply = node
        .call_bytes(target.pid, bytes, timeout)
        .map_err(|e| match e {
            CallError::BadMessage(detail) => ConsoleError::Undecodable {
                who: target.who(),
                expected: expected_type(&detail),
                detail,
            },
            CallError::Exited { reason, .. } => ConsoleError::Crashed {
                who: target.who(),
                reason: reason.to_string(),
            },
            CallError::Timeout(_) => ConsoleError::Timeout {
                who: target.who(),
                timeout,
            },
            CallError::NoProc(_) => ConsoleError::NoProc(target.who()),
            other => ConsoleError::Other {
                who: target.who(),
                detail: other.to_string(),
            },
        })?;
    let reply = module_to_json(&reply).map_err(|detail| ConsoleError::Reply {
        who: target.who(),
        detail,
    })?;
    Ok(serde_json::json!({ "process": target, "reply": reply }))
}

/// Casts `message` to the process `text` names; returns `{"process": ...}` once it is in
/// the mailbox. A message the module cannot decode is dropped by the process with a warning
/// in the node's log (it does not crash).
pub fn cast(
    node: &Node,
    text: &str,
    message: &serde_json::Value,
) -> Result<serde_json::Value, ConsoleError> {
    let target = resolve(node, text)?;
    if target.module.is_none() {
        return Err(ConsoleError::NotAModule {
            who: target.who(),
            detail: "a supervisor takes no casts".into(),
        });
    }
    node.cast(target.pid, message).map_err(|e| match e {
        SendError::NoProc(_) => ConsoleError::NoProc(target.who()),
        SendError::Encode(detail) => ConsoleError::Encode {
            who: target.who(),
            detail,
        },
    })?;
    Ok(serde_json::json!({ "process": target, "cast": true }))
}

#[cfg(test)]
mod tests {
    use super::{expected_type, parse_pid};
    use relup_module::Pid;

    #[test]
    fn pids_read_as_they_are_printed() {
        assert_eq!(parse_pid("<0.12.0>"), Some(Pid(12)));
        assert_eq!(parse_pid("0.12.0"), Some(Pid(12)));
        assert_eq!(parse_pid("12"), Some(Pid(12)));
        assert_eq!(parse_pid("<0.12.1>"), None);
        assert_eq!(parse_pid("ticker"), None);
    }

    #[test]
    fn the_expected_type_comes_from_the_decoder() {
        assert_eq!(
            expected_type("cannot decode counter_api::Call from 6 bytes: unknown variant"),
            "counter_api::Call"
        );
        assert_eq!(expected_type("weird"), "the module's request type");
    }
}
