//! The operator's upgrade (`relup upgrade` / `relup downgrade`), the safe way:
//!
//! 1. plan (multi-hop when needed) and load the new code, nothing switched;
//! 2. export the state of every process the plan migrates (one pause each) and write a
//!    snapshot of those states and of the live config;
//! 3. dry-run the new `code_change` on copies of those states: any failure stops here, with
//!    the process named, and nothing is installed;
//! 4. install, hop by hop, with rollback on any failure;
//! 5. probation: the new release is current, not permanent, while health checks run and
//!    crashes are counted; a failure downgrades to the permanent release by itself;
//! 6. permanent (unless the operator said not to).
//!
//! It also runs the scheduled upgrades (see `schedule.rs`).

use super::check::Exports;
use super::probation::{ProbationSettings, Verdict};
use super::schedule::{LATE_GRACE, Schedule, ScheduledUpgrade, millis, rfc3339_ms, unix_ms};
use super::{HandlerError, InstallReport, ReleaseHandler, note};
use crate::install::{InstallOptions, Progress, RestoreSet};
use crate::release::Releases;
use crate::snapshot::{
    DEFAULT_KEEP, LoadedSnapshot, SnapshotError, SnapshotManifest, SnapshotStore,
};
use crate::trace::{self, Phase, PhaseSpan};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use relup_module::Pid;
use semver::Version;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// How an operator's upgrade or downgrade runs.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    /// Timeouts of the install itself.
    pub install: InstallOptions,
    /// Make the release permanent once its probation passes.
    pub permanent: bool,
    /// The probation window, overriding the release's (`Some(ZERO)`: no probation).
    pub probation: Option<Duration>,
    /// Put back the states of this snapshot instead of running `code_change` (a downgrade
    /// to the release the snapshot was taken on).
    pub restore_snapshot: Option<u64>,
    /// Skip the dry run of the code changes before the install.
    pub skip_check: bool,
}

impl Default for UpgradeOptions {
    fn default() -> Self {
        UpgradeOptions {
            install: InstallOptions::default(),
            permanent: true,
            probation: None,
            restore_snapshot: None,
            skip_check: false,
        }
    }
}

impl ReleaseHandler {
    /// Upgrades (or downgrades) to `target` the safe way (see the module docs). On a failed
    /// probation the node is back on the permanent release and the error says why.
    pub fn upgrade(
        &self,
        target: &Version,
        opts: &UpgradeOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<InstallReport, HandlerError> {
        let from = self.running().release.version;
        let result = self.upgrade_unobserved(target, opts, progress);
        self.observed(&from, target, result)
    }

    fn upgrade_unobserved(
        &self,
        target: &Version,
        opts: &UpgradeOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<InstallReport, HandlerError> {
        // The operator's window, from the socket or a SCHEDULE entry: bounded (issue 16).
        if let Some(window) = opts.probation {
            Schedule::check_probation(window)?;
        }
        let _one_at_a_time = self.installing.try_lock().ok_or_else(|| self.busy())?;
        let from = self.running().release.version;
        let prepared = self.prepare(target, progress)?;
        let plan = &prepared.plan;
        let restore = match opts.restore_snapshot {
            Some(id) => Some(self.restore_sets(id, &from, target)?),
            None => None,
        };
        let started = Instant::now();
        let chains = self.migration_chains(plan)?;
        let exports = self.export_states(&chains);
        let snapshot = self.take_snapshot(&from, target, &exports)?;
        progress(&note(&format!(
            "snapshot {}: {} state(s) and the config saved in {}",
            snapshot.id,
            snapshot.states.len(),
            self.snapshots()
                .dir()
                .join(snapshot.id.to_string())
                .display()
        )));
        let mut checked = None;
        if !opts.skip_check && restore.is_none() {
            let span = trace::phase(Phase::Check, &from, target);
            let report = span.in_scope(|| self.dry_run(plan, &chains, &exports, started));
            span.processes(report.modules.iter().map(|m| m.processes).sum());
            drop(span);
            if report.failed() > 0 {
                let error = HandlerError::CheckFailed {
                    report: Box::new(report),
                };
                let _ = self
                    .journal
                    .record(&format!("install {from} -> {target} refused: {error}"));
                return Err(error);
            }
            let states: usize = report.modules.iter().map(|m| m.migrated).sum();
            progress(&note(&format!(
                "check: {states} state(s) of {} module(s) migrate on copies ({} ms)",
                report.modules.len(),
                report.micros / 1000
            )));
            checked = Some(states);
        }
        let mut install = opts.install.clone();
        let restore_at = restore.as_ref().map(|(manifest, sets)| {
            install.restore = Some(sets.clone());
            manifest.from.clone()
        });
        let mut report =
            self.install_locked(&prepared, &install, restore_at.as_ref(), false, progress)?;
        report.snapshot = Some(snapshot.id);
        report.checked = checked;
        report.restored_from = restore.map(|(manifest, _)| manifest.id);
        if report.restart_required {
            // What cannot be hot-loaded (the runtime, native code) takes a new node process:
            // the node hands itself over, sockets and states kept (issue 18).
            progress(&note(&format!(
                "{}: the plan ends with restart_node: handing the node over to a new node process (connections and states kept)",
                report.to
            )));
            match self.hand_over_locked(opts.permanent) {
                Ok(handover) => report.handover = Some(handover),
                Err(error) => {
                    progress(&note(&format!(
                        "the hops to {} are installed, but their restart_node did not happen; this node runs on (retry with `relup restart`)",
                        report.to
                    )));
                    return Err(error);
                }
            }
            return Ok(report);
        }
        let fallback = Releases::load(&self.root)?
            .permanent()
            .map(|e| e.version.clone());
        let release = self.running().release;
        let settings = ProbationSettings::of(&release, opts.probation);
        if let Some(fallback) = fallback.filter(|f| f != target && settings.window_ms > 0) {
            let _ = self.journal.record(&format!(
                "probation {target}: {} ms, health checks every {} ms, {} crash(es) tolerated; falls back to {fallback}",
                settings.window_ms, settings.health_interval_ms, settings.max_crashes
            ));
            progress(&note(&format!(
                "probation: {target} is current, not permanent, for {:.1} s (health checks every {} ms, {} crash(es) tolerated)",
                settings.window_ms as f64 / 1000.0,
                settings.health_interval_ms,
                settings.max_crashes
            )));
            let span = trace::phase(Phase::Probation, &fallback, target);
            span.processes(self.node.process_count());
            let outcome = span.in_scope(|| {
                self.probation
                    .run(&self.node, &release, &fallback, settings)
            });
            drop(span);
            let verdict = outcome.verdict.clone();
            report.probation = Some(outcome);
            match verdict {
                Verdict::Passed | Verdict::Accepted => {
                    let _ = self.journal.record(&format!("probation {target}: passed"));
                    progress(&note(&format!("probation of {target} passed")));
                }
                Verdict::Interrupted => {
                    let _ = self.journal.record(&format!(
                        "probation {target}: INTERRUPTED (the node stops); {fallback} stays permanent and boots next"
                    ));
                    return Err(HandlerError::ProbationInterrupted {
                        version: target.clone(),
                        permanent: fallback,
                    });
                }
                Verdict::Failed { reason } => {
                    return Err(self.roll_back(target, &fallback, reason, progress));
                }
            }
        }
        if opts.permanent {
            self.refuse_if_stopping()?;
            self.make_permanent(target)?;
            report.permanent = true;
        }
        Ok(report)
    }

    /// Downgrades to `fallback` after a failed probation of `failed`; the error to report.
    fn roll_back(
        &self,
        failed: &Version,
        fallback: &Version,
        reason: String,
        progress: &mut dyn FnMut(&Progress),
    ) -> HandlerError {
        let _ = self.journal.record(&format!(
            "probation {failed}: FAILED: {reason}; rolling back to {fallback}"
        ));
        progress(&note(&format!(
            "probation of {failed} failed: {reason}; rolling back to {fallback}"
        )));
        let span = trace::phase(Phase::Rollback, failed, fallback);
        let back = span.in_scope(|| {
            self.prepare(fallback, progress).and_then(|prepared| {
                self.install_locked(&prepared, &InstallOptions::default(), None, false, progress)
            })
        });
        if let Ok(report) = &back {
            span.processes(report.migrated);
        }
        drop(span);
        match back {
            Ok(_) => {
                let _ = self.journal.record(&format!(
                    "probation {failed}: rolled back, running {fallback}"
                ));
                HandlerError::ProbationFailed {
                    version: failed.clone(),
                    reason,
                    running: fallback.clone(),
                }
            }
            Err(error) => HandlerError::RollbackFailed {
                version: failed.clone(),
                reason,
                fallback: fallback.clone(),
                error: Box::new(error),
            },
        }
    }

    /// The root's snapshot store.
    pub fn snapshots(&self) -> SnapshotStore {
        SnapshotStore::new(&self.root)
    }

    fn take_snapshot(
        &self,
        from: &Version,
        to: &Version,
        exports: &Exports,
    ) -> Result<SnapshotManifest, HandlerError> {
        let states: Vec<_> = exports
            .states
            .values()
            .flatten()
            .map(|e| e.saved())
            .collect();
        let store = self.snapshots();
        let name = self.running().release.name;
        let manifest = store.write(
            &name,
            (from, to),
            &self.boot_id,
            &states,
            &self.root.config_file(),
        )?;
        let keep = self
            .running()
            .release
            .snapshots
            .and_then(|s| s.keep)
            .unwrap_or(DEFAULT_KEEP)
            .max(1);
        let removed = store.prune(keep)?;
        let _ = self.journal.record(&format!(
            "snapshot {} taken: {} state(s), {from} -> {to}{}",
            manifest.id,
            manifest.states.len(),
            if removed.is_empty() {
                String::new()
            } else {
                format!("; pruned {removed:?}")
            }
        ));
        Ok(manifest)
    }

    /// Loads snapshot `id` for a downgrade from `running` to `target` and maps its states to
    /// the live processes: by pid within the boot that took it, by registered name after a
    /// restart. Anything that does not match is refused before the downgrade starts.
    fn restore_sets(
        &self,
        id: u64,
        running: &Version,
        target: &Version,
    ) -> Result<(SnapshotManifest, Arc<HashMap<String, RestoreSet>>), HandlerError> {
        let loaded = self.snapshots().load(id)?;
        let LoadedSnapshot {
            manifest, states, ..
        } = loaded;
        let mismatch =
            |reason: String| HandlerError::Snapshot(SnapshotError::Mismatch { id, reason });
        let name = self.running().release.name;
        if manifest.release != name {
            return Err(mismatch(format!(
                "it was taken on release {}, this node runs {name}",
                manifest.release
            )));
        }
        if &manifest.from != target || &manifest.to != running {
            return Err(mismatch(format!(
                "it was taken before installing {} over {}; it restores a downgrade from {} to {}, not from {running} to {target}",
                manifest.to, manifest.from, manifest.to, manifest.from
            )));
        }
        let same_boot = manifest.boot_id == self.boot_id;
        let mut sets: HashMap<String, RestoreSet> = HashMap::new();
        let mut unmatched = Vec::new();
        for (entry, bytes) in states {
            let pid = if same_boot {
                Some(Pid(entry.pid))
            } else {
                entry.name.as_deref().and_then(|n| self.node.whereis(n))
            };
            let Some(pid) = pid.filter(|p| self.node.is_alive(*p)) else {
                unmatched.push(match &entry.name {
                    Some(n) => format!("{n} (pid {})", entry.pid),
                    None => format!("pid {}", entry.pid),
                });
                continue;
            };
            let set = sets
                .entry(entry.module.clone())
                .or_insert_with(|| RestoreSet {
                    version: entry.version.clone(),
                    states: Arc::new(HashMap::new()),
                });
            if set.version != entry.version {
                return Err(mismatch(format!(
                    "it holds {} states of two versions ({} and {})",
                    entry.module, set.version, entry.version
                )));
            }
            Arc::make_mut(&mut set.states).insert(pid, bytes);
        }
        if !unmatched.is_empty() {
            let how = if same_boot {
                "no longer run"
            } else {
                "cannot be found after the node's restart (only registered processes can be)"
            };
            return Err(mismatch(format!(
                "{} of its processes {how}: {}",
                unmatched.len(),
                unmatched
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok((manifest, Arc::new(sets)))
    }

    /// Schedules an upgrade of `version` at an RFC 3339 time (or `now`), or after `delay`.
    /// A time in the past is refused with the node's current time; a time more than
    /// [`Schedule::MAX_AHEAD`] ahead, or a probation longer than [`Schedule::MAX_PROBATION`],
    /// with the accepted range.
    pub fn schedule(
        &self,
        version: &Version,
        at: Option<&str>,
        delay: Option<Duration>,
        permanent: bool,
        probation: Option<Duration>,
    ) -> Result<ScheduledUpgrade, HandlerError> {
        let now = SystemTime::now();
        let when = Schedule::due_time(at, delay, now)?;
        if let Some(window) = probation {
            Schedule::check_probation(window)?;
        }
        let known = Releases::load(&self.root)?;
        let name = self.running().release.name;
        if known.get(version).is_none() && !self.root.release_tarball(&name, version).is_file() {
            return Err(HandlerError::Unknown {
                version: version.clone(),
                known: known.known_list(),
            });
        }
        let file = self.root.schedule_file();
        let _one_writer = self.scheduler.file.lock();
        let mut schedule = Schedule::load(&file)?;
        let at_unix_ms = unix_ms(when);
        let entry = ScheduledUpgrade {
            id: schedule.next_id(),
            version: version.clone(),
            at: rfc3339_ms(at_unix_ms),
            at_unix_ms,
            permanent,
            probation_ms: probation.map(millis),
            scheduled_at: rfc3339_ms(unix_ms(now)),
        };
        schedule.upgrades.push(entry.clone());
        schedule.save(&file)?;
        let _ = self.journal.record(&format!(
            "scheduled upgrade {}: {} at {}",
            entry.id, entry.version, entry.at
        ));
        self.scheduler.wake();
        Ok(entry)
    }

    /// Cancels scheduled upgrade `id` (every one when `None`); returns what was cancelled.
    pub fn cancel(&self, id: Option<u64>) -> Result<Vec<ScheduledUpgrade>, HandlerError> {
        let file = self.root.schedule_file();
        let _one_writer = self.scheduler.file.lock();
        let mut schedule = Schedule::load(&file)?;
        let removed = schedule.cancel(id)?;
        schedule.save(&file)?;
        for entry in &removed {
            let _ = self.journal.record(&format!(
                "scheduled upgrade {} cancelled ({} at {})",
                entry.id, entry.version, entry.at
            ));
        }
        self.scheduler.wake();
        Ok(removed)
    }

    /// The scheduled upgrades.
    pub fn scheduled(&self) -> Result<Schedule, HandlerError> {
        Ok(Schedule::load(&self.root.schedule_file())?)
    }

    /// Starts the thread that runs scheduled upgrades when they are due (entries that came
    /// due while the node was down run now if at most [`LATE_GRACE`] late).
    pub fn start_scheduler(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let rx = self.scheduler.rx.clone();
        let thread = std::thread::Builder::new()
            .name("relup-schedule".into())
            .spawn(move || run_schedule(weak, rx, true));
        if let Ok(thread) = thread {
            *self.scheduler.thread.lock() = Some(thread);
        }
    }

    /// Takes the entry due now, if any, off the schedule; returns it or how long to sleep.
    fn take_due(&self, at_start: bool) -> Result<Option<ScheduledUpgrade>, Duration> {
        let file = self.root.schedule_file();
        let _one_writer = self.scheduler.file.lock();
        let mut schedule = match Schedule::load(&file) {
            Ok(s) => s,
            Err(e) => {
                let _ = self.journal.record(&format!("schedule unreadable: {e}"));
                return Err(Duration::from_secs(60));
            }
        };
        let now = unix_ms(SystemTime::now());
        let Some(next) = schedule.next_due().cloned() else {
            return Err(Duration::from_secs(3600));
        };
        if next.at_unix_ms > now {
            return Err(Duration::from_millis(next.at_unix_ms - now));
        }
        let _ = schedule.cancel(Some(next.id));
        if let Err(e) = schedule.save(&file) {
            let _ = self.journal.record(&format!("schedule: {e}"));
            return Err(Duration::from_secs(60));
        }
        let late = Duration::from_millis(now - next.at_unix_ms);
        if at_start && late > LATE_GRACE {
            let _ = self.journal.record(&format!(
                "scheduled upgrade {} ({} at {}) missed: the node was down, {} s late (grace {} s)",
                next.id,
                next.version,
                next.at,
                late.as_secs(),
                LATE_GRACE.as_secs()
            ));
            return Ok(None);
        }
        Ok(Some(next))
    }

    fn run_scheduled(&self, entry: &ScheduledUpgrade) {
        let _ = self.journal.record(&format!(
            "scheduled upgrade {} starts: {} (due {})",
            entry.id, entry.version, entry.at
        ));
        let opts = UpgradeOptions {
            permanent: entry.permanent,
            probation: entry.probation_ms.map(Duration::from_millis),
            ..UpgradeOptions::default()
        };
        let mut log = |p: &Progress| {
            if p.step == "note" {
                let _ = self
                    .journal
                    .record(&format!("scheduled upgrade {}: {}", entry.id, p.detail));
            }
        };
        let result = loop {
            match self.upgrade(&entry.version, &opts, &mut log) {
                // Another install is running: wait for it rather than skip the window.
                Err(HandlerError::Busy | HandlerError::OnProbation { .. })
                    if !self.scheduler.stopping() =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => break other,
            }
        };
        if let Ok(report) = &result
            && report.handover.is_some()
        {
            let _ = self.journal.record(&format!(
                "scheduled upgrade {} done: running {} in the node that took over",
                entry.id, report.to
            ));
            // The new node serves: this one goes, closing nothing.
            self.finish_handover();
            return;
        }
        let line = match result {
            Ok(report) => format!("scheduled upgrade {} done: running {}", entry.id, report.to),
            Err(e) => format!("scheduled upgrade {} FAILED: {e}", entry.id),
        };
        let _ = self.journal.record(&line);
    }
}

fn run_schedule(handler: Weak<ReleaseHandler>, wake: Receiver<()>, mut at_start: bool) {
    loop {
        let sleep = {
            let Some(handler) = handler.upgrade() else {
                return;
            };
            if handler.scheduler.stopping() {
                return;
            }
            match handler.take_due(at_start) {
                Ok(Some(entry)) => {
                    handler.run_scheduled(&entry);
                    Duration::ZERO
                }
                Ok(None) => Duration::ZERO,
                Err(sleep) => {
                    at_start = false;
                    sleep
                }
            }
        };
        if !sleep.is_zero() {
            // Woken early by a change of the schedule, or a stop.
            let _ = wake.recv_timeout(sleep);
        }
    }
}

/// The scheduler's thread, its wake-up channel and the lock over the schedule file.
pub(crate) struct ScheduleRunner {
    tx: Sender<()>,
    rx: Receiver<()>,
    file: Mutex<()>,
    stopping: std::sync::atomic::AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Default for ScheduleRunner {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        ScheduleRunner {
            tx,
            rx,
            file: Mutex::new(()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            thread: Mutex::new(None),
        }
    }
}

impl ScheduleRunner {
    fn wake(&self) {
        let _ = self.tx.send(());
    }

    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops the thread (an upgrade it runs finishes first).
    pub(crate) fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake();
        let thread = self.thread.lock().take();
        if let Some(thread) = thread
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}
