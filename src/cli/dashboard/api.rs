//! What the dashboard's page reads and does, through the node's control socket only (the one
//! way in): `GET /api/state` gathers status, releases, journal, snapshots and config; `POST
//! /api/action` starts an operator action (check, upgrade, downgrade, permanent, remove,
//! schedule, cancel) in the background, whose progress and outcome the state then carries.

use relup_runtime::control::{Client, ClientError, Event, Request};
use relup_runtime::release::ReleaseRoot;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a read for the page waits for the node.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How many actions the page is shown (newest first).
const KEPT_ACTIONS: usize = 20;
/// How many lines of an action's progress are kept.
const KEPT_EVENTS: usize = 200;
/// How many of the latest `config.toml.rej` lines are shown.
const REJECT_LINES: usize = 20;
/// How many journal lines of the last upgrade are shown at most.
const JOURNAL_LINES: usize = 200;

/// An operator action, as the page posts it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Dry-run the code changes to a version.
    Check {
        /// The version.
        version: String,
    },
    /// Install a newer version (probation, then permanent).
    Upgrade {
        /// The version.
        version: String,
    },
    /// Install an older version.
    Downgrade {
        /// The version.
        version: String,
    },
    /// Make the running release permanent.
    Permanent {
        /// The version (the running one).
        version: String,
    },
    /// Remove a release.
    Remove {
        /// The version.
        version: String,
    },
    /// Schedule an upgrade at a time (RFC 3339) or after a delay (`10m`).
    Schedule {
        /// The version.
        version: String,
        /// RFC 3339 time.
        #[serde(default)]
        at: Option<String>,
        /// A delay such as `10m`.
        #[serde(default, rename = "in")]
        delay: Option<String>,
    },
    /// Cancel a scheduled upgrade.
    Cancel {
        /// Its id.
        id: u64,
    },
}

impl Action {
    /// `upgrade 0.2.0`, for the page.
    fn describe(&self) -> String {
        match self {
            Action::Check { version } => format!("check {version}"),
            Action::Upgrade { version } => format!("upgrade {version}"),
            Action::Downgrade { version } => format!("downgrade {version}"),
            Action::Permanent { version } => format!("make {version} permanent"),
            Action::Remove { version } => format!("remove {version}"),
            Action::Schedule { version, at, delay } => match (at, delay) {
                (Some(at), _) => format!("schedule {version} at {at}"),
                (None, Some(delay)) => format!("schedule {version} in {delay}"),
                (None, None) => format!("schedule {version}"),
            },
            Action::Cancel { id } => format!("cancel scheduled upgrade {id}"),
        }
    }

    /// The version it names, checked.
    fn version(&self) -> Result<Option<semver::Version>, String> {
        let text = match self {
            Action::Check { version }
            | Action::Upgrade { version }
            | Action::Downgrade { version }
            | Action::Permanent { version }
            | Action::Remove { version }
            | Action::Schedule { version, .. } => version,
            Action::Cancel { .. } => return Ok(None),
        };
        semver::Version::parse(text.trim())
            .map(Some)
            .map_err(|e| format!("{text:?} is not a version ({e}); expected e.g. 0.2.0"))
    }
}

/// One action started from the page, with what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRecord {
    /// Its number (per dashboard).
    pub id: u64,
    /// What was asked (`upgrade 0.2.0`).
    pub what: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Progress lines, as `relup upgrade` prints them.
    pub events: Vec<String>,
    /// `running`, `done` or `failed`.
    pub state: &'static str,
    /// The outcome: a summary, or the node's reason for a failure or refusal.
    pub outcome: Option<String>,
}

/// The dashboard's view of one release root.
pub struct Api {
    root: ReleaseRoot,
    actions: Mutex<(u64, VecDeque<ActionRecord>)>,
}

/// Why a request to the node failed, as one line.
fn node_error(error: ClientError) -> String {
    error.to_string()
}

impl Api {
    /// The API of the node at `root`.
    pub fn new(root: PathBuf) -> Api {
        Api {
            root: ReleaseRoot::new(root),
            actions: Mutex::new((0, VecDeque::new())),
        }
    }

    fn actions(&self) -> MutexGuard<'_, (u64, VecDeque<ActionRecord>)> {
        self.actions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `request`; every streamed event goes to `on_event`. `patient`: wait as long as
    /// the node keeps the connection open (an install's probation is silent).
    fn ask(
        &self,
        request: &Request,
        patient: bool,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<serde_json::Value, String> {
        let client = Client::connect(&self.root.control_socket())
            .and_then(|c| c.with_timeout(Some(READ_TIMEOUT)))
            .map_err(node_error)?;
        match client
            .request_patiently(request, on_event, &mut |_| patient)
            .map_err(node_error)?
        {
            Event::Done { result } => Ok(result),
            Event::Error { message } => Err(message),
            other => Err(format!("unexpected final event {other:?}")),
        }
    }

    fn read(&self, request: &Request) -> Result<serde_json::Value, String> {
        self.ask(request, false, &mut |_| {})
    }

    /// Everything the page shows, as one JSON object.
    pub fn state(&self) -> serde_json::Value {
        let actions: Vec<ActionRecord> = self.actions().1.iter().cloned().collect();
        let mut state = serde_json::json!({
            "root": self.root.path,
            "actions": actions,
            "rejects": self.rejects(),
        });
        let status = match self.read(&Request::Status) {
            Ok(status) => status,
            Err(error) => {
                state["error"] = error.into();
                return state;
            }
        };
        state["status"] = status;
        let mut section =
            |key: &str, request: Request, pick: fn(serde_json::Value) -> serde_json::Value| {
                match self.read(&request) {
                    Ok(value) => state[key] = pick(value),
                    Err(error) => state[format!("{key}_error")] = error.into(),
                }
            };
        section("journal", Request::Log, |v| {
            last_upgrade(v["log"].as_str().unwrap_or_default()).into()
        });
        section("snapshots", Request::Snapshots, |v| v["snapshots"].clone());
        section(
            "config",
            Request::ConfigGet {
                app: None,
                key: None,
            },
            |v| v["keys"].clone(),
        );
        state
    }

    /// The latest lines of `config/config.toml.rej` (a file of the root; the node writes it).
    fn rejects(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.root.config_rej()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let from = lines.len().saturating_sub(REJECT_LINES);
        lines[from..].iter().map(|l| l.to_string()).collect()
    }

    /// Starts `action` in the background; returns its id at once.
    pub fn start(self: &Arc<Self>, action: Action) -> Result<u64, String> {
        let version = action.version()?;
        let id = {
            let mut actions = self.actions();
            actions.0 += 1;
            let id = actions.0;
            actions.1.push_front(ActionRecord {
                id,
                what: action.describe(),
                started_at: humantime::format_rfc3339_millis(std::time::SystemTime::now())
                    .to_string(),
                events: Vec::new(),
                state: "running",
                outcome: None,
            });
            actions.1.truncate(KEPT_ACTIONS);
            id
        };
        let api = self.clone();
        std::thread::Builder::new()
            .name("relup-dashboard-action".into())
            .spawn(move || {
                let outcome = api.carry_out(id, &action, version);
                api.update(id, |record| {
                    record.state = if outcome.is_ok() { "done" } else { "failed" };
                    record.outcome = Some(match outcome {
                        Ok(text) | Err(text) => text,
                    });
                });
            })
            .map_err(|e| format!("cannot start a thread for the action: {e}"))?;
        Ok(id)
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut ActionRecord)) {
        if let Some(record) = self.actions().1.iter_mut().find(|r| r.id == id) {
            change(record);
        }
    }

    /// Runs `action`; the text says what came of it (a refusal's reason on error).
    fn carry_out(
        &self,
        id: u64,
        action: &Action,
        version: Option<semver::Version>,
    ) -> Result<String, String> {
        let text =
            |v: &Option<semver::Version>| v.as_ref().map_or(String::new(), |v| v.to_string());
        let target = text(&version);
        let mut on_event = |event: &Event| {
            let line = match event {
                Event::Progress(p) => super::super::output::progress_line(p),
                Event::Note { text } => text.clone(),
                _ => return,
            };
            self.update(id, |record| {
                if record.events.len() < KEPT_EVENTS {
                    record.events.push(line);
                }
            });
        };
        match action {
            Action::Upgrade { .. } | Action::Downgrade { .. } => {
                let down = matches!(action, Action::Downgrade { .. });
                self.install(&target, version, down, &mut on_event)
            }
            Action::Check { .. } => {
                let result = self.ask(&Request::Check { version: target }, true, &mut on_event)?;
                Ok(result["text"]
                    .as_str()
                    .unwrap_or("checked")
                    .trim()
                    .to_string())
            }
            Action::Permanent { .. } => {
                self.ask(
                    &Request::Permanent {
                        version: target.clone(),
                    },
                    true,
                    &mut on_event,
                )?;
                Ok(format!("{target} is permanent"))
            }
            Action::Remove { .. } => {
                self.ask(
                    &Request::Remove {
                        version: target.clone(),
                    },
                    true,
                    &mut on_event,
                )?;
                Ok(format!("removed {target}"))
            }
            Action::Schedule { at, delay, .. } => {
                let in_ms = match delay.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
                    None => None,
                    Some(delay) => Some(
                        super::super::remote::parse_delay(delay)
                            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))?,
                    ),
                };
                let at = at.clone().filter(|a| !a.trim().is_empty());
                let request = Request::Schedule {
                    version: target.clone(),
                    at,
                    in_ms,
                    permanent: true,
                    probation_ms: None,
                };
                let entry = self.ask(&request, false, &mut on_event)?;
                Ok(format!(
                    "scheduled {target} at {} (id {})",
                    entry["at"].as_str().unwrap_or("?"),
                    entry["id"]
                ))
            }
            Action::Cancel { id } => {
                let result = self.ask(&Request::Cancel { id: Some(*id) }, false, &mut on_event)?;
                Ok(format!("cancelled: {}", result["cancelled"]))
            }
        }
    }

    /// An upgrade or downgrade, refused when it goes the other way (as `relup upgrade`).
    fn install(
        &self,
        target: &str,
        version: Option<semver::Version>,
        down: bool,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<String, String> {
        let status = self.read(&Request::Status)?;
        let running = status["version"].as_str().unwrap_or_default().to_string();
        if let (Some(target), Ok(current)) = (&version, semver::Version::parse(&running)) {
            if down && *target > current {
                return Err(format!(
                    "refused: {target} is newer than the running {current}; that is an upgrade"
                ));
            }
            if !down && *target < current {
                return Err(format!(
                    "refused: {target} is older than the running {current}; that is a downgrade"
                ));
            }
        }
        let request = Request::Install {
            version: target.to_string(),
            permanent: true,
            probation_ms: None,
            restore_snapshot: None,
            skip_check: false,
        };
        self.ask(&request, true, on_event)?;
        let after = self.read(&Request::Status)?;
        let now = after["version"].as_str().unwrap_or("?");
        let permanent = after["permanent"].as_str() == Some(now);
        Ok(format!(
            "running {now}{}",
            if permanent { " (permanent)" } else { "" }
        ))
    }
}

/// The journal lines of the current or last install: from its `install` line (and the
/// snapshot taken just before it) to the end. The install of a rollback after a failed
/// probation belongs to the install that failed: the lines start at that one.
pub fn last_upgrade(journal: &str) -> Vec<String> {
    let lines: Vec<&str> = journal.lines().collect();
    // A line is `<timestamp> <event>`.
    let event = |line: &str| {
        line.split_once(' ')
            .map_or("", |(_, rest)| rest)
            .to_string()
    };
    let is_install = |line: &str| {
        let e = event(line);
        e.starts_with("install ") && e.contains(" -> ")
    };
    let Some(mut from) = lines.iter().rposition(|l| is_install(l)) else {
        return Vec::new();
    };
    while from > 0
        && event(lines[from - 1]).contains("rolling back to")
        && let Some(earlier) = lines[..from].iter().rposition(|l| is_install(l))
    {
        from = earlier;
    }
    if from > 0 && event(lines[from - 1]).starts_with("snapshot ") {
        from -= 1;
    }
    let to = lines.len().min(from + JOURNAL_LINES);
    lines[from..to].iter().map(|l| l.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::last_upgrade;

    #[test]
    fn the_last_upgrade_starts_at_its_snapshot() {
        let journal = "t boot demo 0.1.0\nt snapshot 1 taken\nt install 0.1.0 -> 0.2.0 via x\nt a\nt install done\nt snapshot 2 taken\nt install 0.2.0 -> 0.1.0 via y\nt b\n";
        assert_eq!(
            last_upgrade(journal),
            vec![
                "t snapshot 2 taken",
                "t install 0.2.0 -> 0.1.0 via y",
                "t b"
            ]
        );
        assert!(last_upgrade("t boot demo 0.1.0\n").is_empty());
        let rolled_back = "t snapshot 1 taken\nt install 0.1.0 -> 0.2.0 via x\nt install done\nt snapshot 2 taken\nt install 0.2.0 -> 0.1.0 via y\nt probation 0.1.0: FAILED: bad; rolling back to 0.2.0\nt install 0.1.0 -> 0.2.0 via z\nt probation 0.1.0: rolled back, running 0.2.0\n";
        let lines = last_upgrade(rolled_back);
        assert_eq!(
            lines.first().map(String::as_str),
            Some("t snapshot 2 taken")
        );
        assert_eq!(lines.len(), 5, "{lines:?}");
    }
}
