//! Probation: after an install the new release is current but not permanent for a window.
//! During it every process of the release has its module's health check called at an
//! interval, and crashes are counted. A failed check, or more crashes than the release
//! tolerates, ends the probation with a verdict that the handler turns into an automatic
//! downgrade to the permanent release; a quiet window makes it permanent.

use crate::node::Node;
use crate::par::par_map;
use parking_lot::{Condvar, Mutex};
use relup_appup::Release;
use relup_module::Pid;
use semver::Version;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime};

/// The probation window when neither the release nor the operator says.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// Crashes tolerated when the release does not say: none.
pub const DEFAULT_MAX_CRASHES: u32 = 0;
/// How often health checks run when the release does not say.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a process may take to answer its health check.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// How one probation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbationSettings {
    /// The window, in milliseconds (0: no probation).
    pub window_ms: u64,
    /// Crashes tolerated in the window.
    pub max_crashes: u32,
    /// Milliseconds between two rounds of health checks.
    pub health_interval_ms: u64,
}

impl ProbationSettings {
    /// The settings of `release` (its `[probation]` table), with the window overridden by
    /// the operator's `--probation` when given.
    pub fn of(release: &Release, window: Option<Duration>) -> ProbationSettings {
        let p = release.probation.as_ref();
        let window = window
            .or_else(|| p.and_then(|p| p.seconds).map(Duration::from_secs))
            .unwrap_or(DEFAULT_WINDOW);
        ProbationSettings {
            window_ms: window.as_millis() as u64,
            max_crashes: p.and_then(|p| p.max_crashes).unwrap_or(DEFAULT_MAX_CRASHES),
            health_interval_ms: p
                .and_then(|p| p.health_interval_ms)
                .unwrap_or(DEFAULT_HEALTH_INTERVAL.as_millis() as u64)
                .max(10),
        }
    }
}

/// A probation under way, as `relup status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbationStatus {
    /// The release on probation.
    pub version: Version,
    /// The release it falls back to.
    pub fallback: Version,
    /// Its settings.
    pub settings: ProbationSettings,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Milliseconds left.
    pub remaining_ms: u64,
    /// Rounds of health checks run so far.
    pub health_rounds: u64,
    /// Crashes counted so far.
    pub crashes: u64,
    /// Supervisor restarts counted so far.
    pub restarts: u64,
}

/// How a probation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The window passed with every check green.
    Passed,
    /// The operator made the release permanent before the end (`relup permanent`).
    Accepted,
    /// A health check failed or too many processes crashed.
    Failed {
        /// Why, naming the process.
        reason: String,
    },
    /// The node is stopping; the release stays current, not permanent.
    Interrupted,
}

/// What a finished probation saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbationReport {
    /// Its settings.
    pub settings: ProbationSettings,
    /// Rounds of health checks run.
    pub health_rounds: u64,
    /// Crashes counted.
    pub crashes: u64,
    /// Supervisor restarts counted.
    pub restarts: u64,
    /// How it ended.
    pub verdict: Verdict,
}

#[derive(Default)]
struct Flags {
    accept: Option<Version>,
    stop: bool,
}

/// The handler's probation slot: the live status, and the flags that end a probation early.
#[derive(Default)]
pub(crate) struct ProbationWatch {
    status: Mutex<Option<ProbationStatus>>,
    flags: Mutex<Flags>,
    wake: Condvar,
}

impl ProbationWatch {
    /// The probation under way, if any.
    pub(crate) fn status(&self) -> Option<ProbationStatus> {
        self.status.lock().clone()
    }

    /// Ends the probation of `version` as accepted (the operator made it permanent).
    pub(crate) fn accept(&self, version: &Version) {
        self.flags.lock().accept = Some(version.clone());
        self.wake.notify_all();
    }

    /// Ends any probation as interrupted (the node stops).
    pub(crate) fn interrupt(&self) {
        self.flags.lock().stop = true;
        self.wake.notify_all();
    }

    /// Watches `release` on `node` for the window of `settings`; returns how it ended.
    pub(crate) fn run(
        &self,
        node: &Node,
        release: &Release,
        fallback: &Version,
        settings: ProbationSettings,
    ) -> ProbationReport {
        self.flags.lock().accept = None;
        let base = node.exit_counts();
        let started = Instant::now();
        let window = Duration::from_millis(settings.window_ms);
        let interval = Duration::from_millis(settings.health_interval_ms);
        let mut status = ProbationStatus {
            version: release.version.clone(),
            fallback: fallback.clone(),
            settings,
            started_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            remaining_ms: settings.window_ms,
            health_rounds: 0,
            crashes: 0,
            restarts: 0,
        };
        *self.status.lock() = Some(status.clone());
        let verdict = loop {
            if let Some(reason) = health_round(node, release, interval) {
                break Verdict::Failed { reason };
            }
            status.health_rounds += 1;
            let counts = node.exit_counts();
            status.crashes = counts.crashes - base.crashes;
            status.restarts = counts.restarts - base.restarts;
            status.remaining_ms = window.saturating_sub(started.elapsed()).as_millis() as u64;
            *self.status.lock() = Some(status.clone());
            if status.crashes > u64::from(settings.max_crashes) {
                break Verdict::Failed {
                    reason: format!(
                        "{} crash(es) in the probation window, {} tolerated; the latest: {}",
                        status.crashes,
                        settings.max_crashes,
                        node.last_crash().unwrap_or_else(|| "unknown".into())
                    ),
                };
            }
            if started.elapsed() >= window {
                break Verdict::Passed;
            }
            let pause = interval.min(window.saturating_sub(started.elapsed()));
            let mut flags = self.flags.lock();
            if flags.accept.is_none() && !flags.stop {
                self.wake.wait_for(&mut flags, pause);
            }
            if flags.stop {
                break Verdict::Interrupted;
            }
            if flags.accept.as_ref() == Some(&release.version) {
                break Verdict::Accepted;
            }
        };
        *self.status.lock() = None;
        ProbationReport {
            settings,
            health_rounds: status.health_rounds,
            crashes: status.crashes,
            restarts: status.restarts,
            verdict,
        }
    }
}

/// Calls the health check of every process running a module of `release`; the first
/// failure, naming the process, if any.
fn health_round(node: &Node, release: &Release, interval: Duration) -> Option<String> {
    let pids: Vec<Pid> = release
        .applications
        .iter()
        .flat_map(|a| a.modules.iter())
        .flat_map(|m| node.processes_running(&m.name))
        .collect();
    // A process busy with one long message is slow, not unhealthy: it gets a few seconds.
    let timeout = interval.max(HEALTH_TIMEOUT);
    let threads = node.schedulers().max(2);
    let failures = par_map(&pids, threads, |&pid| {
        match node.health_check(pid, timeout) {
            Ok(()) => None,
            // A process that exited meanwhile is counted as a crash (or not) by its exit.
            Err(_) if !node.is_alive(pid) => None,
            Err(reason) => Some((pid, reason)),
        }
    });
    let (pid, reason) = failures.into_iter().flatten().next()?;
    let info = node.process_info(pid);
    let name = info
        .as_ref()
        .and_then(|i| i.name.clone())
        .map_or(String::new(), |n| format!(" registered as {n}"));
    let code = info
        .and_then(|i| Some(format!(" ({} {})", i.module?, i.version?)))
        .unwrap_or_default();
    Some(format!(
        "health check of {pid}{name}{code} failed: {reason}"
    ))
}
