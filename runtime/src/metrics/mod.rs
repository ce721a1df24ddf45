//! Metrics of a node in the Prometheus text format, served on a loopback HTTP endpoint
//! (issue 20). Off unless configured: `[metrics] listen = "127.0.0.1:9568"` in release.toml,
//! or `RELUP_METRICS_LISTEN=127.0.0.1:9568` in the node's environment (which wins).
//!
//! The hot path (every message and call) adds to counters striped by thread
//! ([`counters`]): no lock per message; everything else (process and mailbox gauges,
//! libraries) is read when scraped. The families (all prefixed `relup_`):
//!
//! | name | type | what |
//! |---|---|---|
//! | `relup_processes` | gauge | live processes |
//! | `relup_mailbox_messages` | gauge | messages waiting, `{stat="sum"}` over all processes and `{stat="max"}` of one |
//! | `relup_messages_total` | counter | messages queued to mailboxes (casts, calls, plain and timer messages) |
//! | `relup_calls_total` | counter | calls made (answered, failed or timed out) |
//! | `relup_call_duration_seconds` | histogram | their round trips |
//! | `relup_process_crashes_total` | counter | processes that exited with an error |
//! | `relup_supervisor_restarts_total` | counter | restarts, `{supervisor="<name or pid>"}` |
//! | `relup_libraries_mapped` | gauge | module libraries mapped since start (each stays mapped) |
//! | `relup_library_bytes` | gauge | their file sizes summed |
//! | `relup_upgrades_total` | counter | installs by `{outcome="ok|rolled_back|refused|failed|interrupted"}` |
//! | `relup_last_upgrade_max_pause_seconds` | gauge | the longest process pause of the last install |
//! | `relup_probation_active` | gauge | 1 while a release is on probation |
//! | `relup_probation_remaining_seconds` | gauge | time left of that probation |
//! | `relup_config_lines_total` | counter | config lines `{result="applied|rejected"}` |
//! | `relup_release_info` | gauge | 1, `{name, version}` of the running release |

pub(crate) mod counters;
mod exposition;
mod http;

pub use exposition::{Exposition, Kind};
pub use http::{IO_TIMEOUT, MAX_REQUEST, MetricsError, MetricsServer, Render, parse_listen};

use counters::{CALL_BUCKETS_MICROS, HotCounters};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The environment variable that turns the endpoint on (and wins over release.toml).
pub const LISTEN_ENV: &str = "RELUP_METRICS_LISTEN";

/// How an install ended, for `relup_upgrades_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Installed (and through probation, when there was one).
    Ok,
    /// A step or the probation failed; the node went back to where it was.
    RolledBack,
    /// Refused before anything changed (a failed check, another install running, an unknown
    /// version...).
    Refused,
    /// Failed and could not go back (a rollback that failed).
    Failed,
    /// The node stopped during the probation.
    Interrupted,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::RolledBack,
        Outcome::Refused,
        Outcome::Failed,
        Outcome::Interrupted,
    ];

    /// Its label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::RolledBack => "rolled_back",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// A node's counters (see the module docs).
pub(crate) struct Metrics {
    pub(crate) hot: HotCounters,
    restarts: Mutex<BTreeMap<String, u64>>,
    upgrades: [AtomicU64; 5],
    last_pause_micros: AtomicU64,
    config_applied: AtomicU64,
    config_rejected: AtomicU64,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        Metrics {
            hot: HotCounters::new(),
            restarts: Mutex::new(BTreeMap::new()),
            upgrades: std::array::from_fn(|_| AtomicU64::new(0)),
            last_pause_micros: AtomicU64::new(0),
            config_applied: AtomicU64::new(0),
            config_rejected: AtomicU64::new(0),
        }
    }

    /// A restart by `supervisor` (rare: a lock is fine).
    pub(crate) fn restart(&self, supervisor: &str) {
        *self
            .restarts
            .lock()
            .entry(supervisor.to_string())
            .or_default() += 1;
    }

    /// An install ended so.
    pub(crate) fn upgrade(&self, outcome: Outcome) {
        let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.upgrades[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The longest pause of the install that just ended.
    pub(crate) fn last_pause(&self, micros: u64) {
        self.last_pause_micros.store(micros, Ordering::Relaxed);
    }

    /// Config lines applied and rejected by one change.
    pub(crate) fn config_lines(&self, applied: usize, rejected: usize) {
        self.config_applied
            .fetch_add(applied as u64, Ordering::Relaxed);
        self.config_rejected
            .fetch_add(rejected as u64, Ordering::Relaxed);
    }

    /// Writes the counters' families (the gauges read from the node come from the caller).
    pub(crate) fn write(&self, page: &mut Exposition) {
        let hot = self.hot.sum();
        page.single(
            "relup_messages_total",
            Kind::Counter,
            "Messages queued to mailboxes (casts, calls, plain and timer messages).",
            hot.messages as f64,
        );
        page.single(
            "relup_calls_total",
            Kind::Counter,
            "Calls made (answered, failed or timed out).",
            hot.calls as f64,
        );
        let name = "relup_call_duration_seconds";
        page.family(name, Kind::Histogram, "Round trip of calls.");
        let mut cumulative = 0;
        for (i, count) in hot.buckets.iter().enumerate() {
            cumulative += count;
            let le = CALL_BUCKETS_MICROS
                .get(i)
                .map_or("+Inf".to_string(), |micros| {
                    (Duration::from_micros(*micros).as_secs_f64()).to_string()
                });
            page.sample(&format!("{name}_bucket"), &[("le", &le)], cumulative as f64);
        }
        page.sample(&format!("{name}_sum"), &[], hot.call_nanos as f64 / 1e9);
        page.sample(&format!("{name}_count"), &[], hot.calls as f64);
        let name = "relup_supervisor_restarts_total";
        page.family(name, Kind::Counter, "Children restarted, by supervisor.");
        for (supervisor, count) in self.restarts.lock().iter() {
            page.sample(name, &[("supervisor", supervisor)], *count as f64);
        }
        let name = "relup_upgrades_total";
        page.family(
            name,
            Kind::Counter,
            "Installs (upgrades and downgrades) by outcome.",
        );
        for (outcome, count) in Outcome::ALL.iter().zip(&self.upgrades) {
            page.sample(
                name,
                &[("outcome", outcome.label())],
                count.load(Ordering::Relaxed) as f64,
            );
        }
        page.single(
            "relup_last_upgrade_max_pause_seconds",
            Kind::Gauge,
            "Longest process pause of the last install.",
            self.last_pause_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        let name = "relup_config_lines_total";
        page.family(name, Kind::Counter, "Config lines applied and rejected.");
        page.sample(
            name,
            &[("result", "applied")],
            self.config_applied.load(Ordering::Relaxed) as f64,
        );
        page.sample(
            name,
            &[("result", "rejected")],
            self.config_rejected.load(Ordering::Relaxed) as f64,
        );
    }
}
