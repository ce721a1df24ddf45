//! The release handler: OTP's release_handler for relup. It owns the node's running release
//! and the release root, and offers the operator verbs: which releases, plan, unpack,
//! install (upgrade or downgrade, multi-hop), make permanent, remove, status and the journal.
//!
//! One install runs at a time. A failure in a later hop leaves the node on the last completed
//! release. `RELEASES` records what a restart boots: it is written (atomically) when that
//! changes (unpack, make permanent, remove, reboot_old, boot), not by an install; the running
//! release's `current` status lives here, as in OTP (see [`ReleaseHandler::releases`]).
//!
//! [`ReleaseHandler::install`] is the mechanism; [`ReleaseHandler::upgrade`] is what an
//! operator's `relup upgrade` runs: snapshot, dry-run check, install, probation with
//! automatic rollback, permanent.

mod check;
mod observe;
mod probation;
mod schedule;
mod upgrade;

pub use check::{CheckFailure, CheckReport, FAILURES_LISTED, ModuleCheck};
pub use probation::{
    DEFAULT_HEALTH_INTERVAL, DEFAULT_MAX_CRASHES, DEFAULT_WINDOW, ProbationReport,
    ProbationSettings, ProbationStatus, Verdict,
};
pub use schedule::{
    LATE_GRACE, Schedule, ScheduleError, ScheduledUpgrade, parse_time, rfc3339_ms, unix_ms,
};
pub use upgrade::UpgradeOptions;

use crate::config::{ConfigError, ConfigStore, ConfigWatcher, CurrentRelease, WatchOptions};
use crate::install::{
    BootedRelease, HopTarget, InstallError, InstallOptions, Journal, Progress, boot_release,
    run_hop, stop_release,
};
use crate::node::Node;
use crate::release::{
    KnownError, ReleaseRoot, Releases, ReleasesError, ReleasesLock, StatusError, UnpackError,
    UnpackedRelease, known_releases_each, now_unix, unpack, unpack_in_place,
};
use parking_lot::Mutex;
use relup_appup::{Plan, PlanError, ReleaseStatus};
use semver::Version;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why a handler operation failed. Every variant leaves the node running.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// `RELEASES` could not be read or written.
    #[error(transparent)]
    Releases(#[from] ReleasesError),
    /// A status change is not allowed (unknown version, removing the permanent release, ...).
    #[error(transparent)]
    Status(#[from] StatusError),
    /// A release on disk could not be read.
    #[error(transparent)]
    Known(#[from] KnownError),
    /// Removing a release failed.
    #[error(transparent)]
    Remove(#[from] crate::release::RemoveError),
    /// Unpacking failed; nothing was recorded.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// No plan exists (the message lists what does exist).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The root has no permanent release to boot.
    #[error("{0} has no permanent release to boot; deploy one first")]
    NothingToBoot(String),
    /// Booting failed.
    #[error("boot of {version} failed: {error}")]
    Boot {
        /// The release.
        version: Version,
        /// Why.
        error: InstallError,
    },
    /// An install failed; the node runs `running`.
    #[error("{error}; the node runs {running}")]
    Install {
        /// The release the node runs now.
        running: Version,
        /// Why it failed.
        error: InstallError,
    },
    /// Another install is running.
    #[error("an upgrade is in progress")]
    Busy,
    /// A release is on probation (which holds the install lock until it ends).
    #[error(
        "an upgrade is in progress: {version} is on probation for {remaining_ms} ms more \
         (`relup permanent {version}` accepts it now)"
    )]
    OnProbation {
        /// The release on probation.
        version: Version,
        /// Milliseconds left.
        remaining_ms: u64,
    },
    /// The version is unknown.
    #[error("release {version} is not known; known releases: {known}")]
    Unknown {
        /// The version asked for.
        version: Version,
        /// What is known.
        known: String,
    },
    /// Only the tarball of the version is in its directory.
    #[error(
        "release {version} is not unpacked yet: its tarball is in releases/{version}/ \
         (`relup upgrade {version}` unpacks it first, or run `relup unpack`); known releases: {known}"
    )]
    NotUnpacked {
        /// The version.
        version: Version,
        /// What is known.
        known: String,
    },
    /// `reboot_old` takes an old release only.
    #[error(
        "release {version} is {status}; reboot_old takes an old release (a previous permanent one)"
    )]
    NotOld {
        /// The version.
        version: Version,
        /// Its status.
        status: ReleaseStatus,
    },
    /// The target is already running.
    #[error("release {0} is already running")]
    AlreadyRunning(Version),
    /// The live config (`config/config.toml`) could not be read, or a change was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The dry run of the plan's code changes failed for some states; nothing was installed.
    #[error("{} failed, nothing was installed: {report}", .report.to)]
    CheckFailed {
        /// What the dry run found.
        report: Box<CheckReport>,
    },
    /// The new release failed its probation; the node downgraded to `running`.
    #[error(
        "{version} failed its probation: {reason}; rolled back to {running} (states migrated down), the node runs {running}"
    )]
    ProbationFailed {
        /// The release that failed.
        version: Version,
        /// Why.
        reason: String,
        /// The release the node runs now.
        running: Version,
    },
    /// The node was stopped while the new release was on probation: it runs until the node
    /// exits but is not permanent, so the next start boots `permanent`.
    #[error(
        "{version} was on probation when the node was told to stop: it is not permanent, and \
         the next start boots {permanent}; start the node and run `relup upgrade {version}` again"
    )]
    ProbationInterrupted {
        /// The release that was on probation.
        version: Version,
        /// The permanent release (what the next start boots).
        permanent: Version,
    },
    /// `RELEASES` could not be written to make a release permanent (a full disk, a read-only
    /// file system): the release runs but a restart boots `permanent`.
    #[error(
        "{version} runs but is not permanent: writing RELEASES failed ({error}); a restart \
         boots {permanent}. Free space (or fix the file system), then run `relup permanent {version}`"
    )]
    NotPermanent {
        /// The release that runs.
        version: Version,
        /// What a restart boots.
        permanent: Version,
        /// Why the write failed.
        error: Box<ReleasesError>,
    },
    /// The node was told to stop while an install ran: no further hop runs, and nothing is
    /// made permanent.
    #[error(
        "the node is stopping: the install went no further than {running}, which is not \
         permanent; the next start boots {permanent}"
    )]
    Stopping {
        /// The release the node runs until it exits.
        running: Version,
        /// What the next start boots.
        permanent: Version,
    },
    /// The new release failed its probation and the automatic downgrade failed too.
    #[error(
        "{version} failed its probation: {reason}; the automatic downgrade to {fallback} failed: {error}"
    )]
    RollbackFailed {
        /// The release that failed.
        version: Version,
        /// Why.
        reason: String,
        /// The release the node tried to go back to.
        fallback: Version,
        /// Why that failed (the node runs what the message says).
        error: Box<HandlerError>,
    },
    /// A snapshot could not be written, read or used.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// The schedule could not be read or changed.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A handover (`restart_node`) did not happen; the node serves as before.
    #[error(transparent)]
    Handover(#[from] crate::handover::HandoverError),
}

/// What a service runs once another node took over (ends its wait with this reason).
pub(crate) type HandedOverHook = Box<dyn Fn(String) + Send + Sync>;

/// The path of this node's executable, as it was started: Linux names a file replaced since
/// (a new build or package installed over it) `<path> (deleted)`; the path is what counts.
fn node_executable() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) if !exe.exists() => PathBuf::from(path),
        _ => exe,
    })
}

/// What [`ReleaseHandler::remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The release directory that was deleted.
    pub dir: PathBuf,
    /// Set when the release was the last one older than the permanent release (no downgrade
    /// target is left).
    pub warning: Option<String>,
}

/// What an install did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InstallReport {
    /// The release before.
    pub from: Version,
    /// The release now running.
    pub to: Version,
    /// The chain of versions passed through.
    pub chain: Vec<Version>,
    /// Processes migrated, summed over the hops.
    pub migrated: usize,
    /// The longest pause a process saw, in microseconds.
    pub max_pause_micros: u64,
    /// Whether the new release is permanent now.
    pub permanent: bool,
    /// Whether the plan asked for a node restart.
    pub restart_required: bool,
    /// The snapshot taken before the install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<u64>,
    /// States migrated on copies by the pre-install check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<usize>,
    /// States put back from a snapshot instead of migrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<u64>,
    /// The probation, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation: Option<ProbationReport>,
    /// The handover that carried out the plan's `restart_node`, when it ended with one: the
    /// new node serves, and the node that answered exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<crate::handover::HandoverReport>,
}

/// A node's release handler.
pub struct ReleaseHandler {
    node: Node,
    root: ReleaseRoot,
    booted: Arc<Mutex<BootedRelease>>,
    /// When the running release was made current (unix seconds). `current` lives in memory,
    /// as in OTP: `RELEASES` is written when what a restart boots changes (see
    /// [`ReleaseHandler::releases`]).
    current_since: Mutex<u64>,
    /// The release a restart boots, as this node last wrote it to `RELEASES`: what
    /// [`ReleaseHandler::repair_releases`] rebuilds the file from when it was deleted or emptied.
    permanent: Mutex<Version>,
    journal: Journal,
    installing: Mutex<()>,
    /// Set by [`ReleaseHandler::stop`]: an install under way runs no further hop and makes
    /// nothing permanent.
    stopping: std::sync::atomic::AtomicBool,
    config: Arc<ConfigStore>,
    watcher: Mutex<Option<ConfigWatcher>>,
    /// Identifies this boot of the node (pids in snapshots are only valid within it).
    boot_id: String,
    probation: probation::ProbationWatch,
    scheduler: upgrade::ScheduleRunner,
    /// The node lock and control socket a handover passes on (set by the service).
    seat: Mutex<Option<crate::handover::old::Seat>>,
    /// Handovers this line of nodes has been through.
    lineage: Mutex<crate::handover::old::Lineage>,
    /// Listening sockets of the host (beside the node) that a handover passes on, by name.
    listeners: Mutex<Vec<(String, std::os::fd::OwnedFd)>>,
    /// Listening sockets the node this one took over from passed on, by name.
    inherited: Mutex<Vec<(String, std::os::fd::OwnedFd)>>,
    /// Set once another node took over: this one must not stop anything, only exit.
    handed_over: std::sync::atomic::AtomicBool,
    /// What the service runs once another node took over (ends its wait, which exits).
    on_handed_over: Mutex<Option<HandedOverHook>>,
}

impl ReleaseHandler {
    /// Boots the root's permanent release on `node` (an installed but not permanent release
    /// is not booted again, as in OTP: it goes back to unpacked).
    pub fn start(node: Node, root: ReleaseRoot) -> Result<ReleaseHandler, HandlerError> {
        Self::start_booting(node, root, None)
    }

    /// [`ReleaseHandler::start`] booting `version` rather than the permanent release when
    /// given (a node taking over by handover boots what the old one ran; `RELEASES` is left
    /// as it is).
    pub(crate) fn start_booting(
        node: Node,
        root: ReleaseRoot,
        version: Option<Version>,
    ) -> Result<ReleaseHandler, HandlerError> {
        let releases = Releases::load(&root)?;
        let permanent = releases
            .permanent()
            .map(|e| e.version.clone())
            .ok_or_else(|| HandlerError::NothingToBoot(root.path.display().to_string()))?;
        let handed_over = version.is_some();
        let boot = version.unwrap_or_else(|| permanent.clone());
        // Only the booted release must read: a corrupt other one does not stop the boot.
        let release = known_releases_each(&root)?
            .into_iter()
            .find(|(vsn, _)| vsn == &boot)
            .map(|(_, known)| known.map(|k| k.release))
            .transpose()?
            .ok_or_else(|| HandlerError::Unknown {
                version: boot.clone(),
                known: releases.known_list(),
            })?;
        let journal = Journal::new(&root.upgrade_log());
        // A snapshot cut short by a crash is not a snapshot: its directory goes.
        crate::snapshot::SnapshotStore::new(&root).remove_partial();
        // What a crash mid-unpack or mid-write left (RELIABILITY.md, crash consistency).
        for repair in crate::release::recover(&root).unwrap_or_else(|e| vec![e.to_string()]) {
            let _ = journal.record(&format!("recover: {repair}"));
        }
        // A scheduled upgrade the node died during left a "starts" line and no ending one.
        for id in unfinished_scheduled(&journal.read().unwrap_or_default()) {
            let _ = journal.record(&format!(
                "scheduled upgrade {id} INTERRUPTED: the node stopped or died during it; it is not run again, and the node boots {permanent}"
            ));
        }
        let _ = journal.record(&format!("boot {} {}", release.name, release.version));
        // The operator's values go into the env before the applications start, so processes
        // start with them (boot only fills in defaults for keys that are still unset).
        let config = Arc::new(ConfigStore::new(node.clone(), root.clone()));
        config.load_live(&release)?;
        let booted = boot_release(&node, &release, &root.release_dir(&boot)).map_err(|error| {
            HandlerError::Boot {
                version: boot.clone(),
                error,
            }
        })?;
        if !handed_over && releases.running().map(|e| &e.version) != Some(&permanent) {
            Releases::update(&root, |releases| {
                releases.set_current(&permanent, now_unix())?;
                Ok::<(), HandlerError>(())
            })?;
        }
        let booted = Arc::new(Mutex::new(booted));
        // Changes left from before the start (or a crash) are applied before anything else.
        if let Err(e) = config.process_pending(&release) {
            config.log(0, &format!("config: pending changes not processed: {e}"));
        }
        let current: CurrentRelease = {
            let booted = booted.clone();
            Arc::new(move || booted.lock().release.clone())
        };
        let watcher = match ConfigWatcher::start(config.clone(), current, WatchOptions::default()) {
            Ok(w) => Some(w),
            Err(e) => {
                config.log(0, &format!("config: cannot start the config watcher: {e}"));
                None
            }
        };
        Ok(ReleaseHandler {
            node,
            root,
            booted,
            permanent: Mutex::new(permanent),
            current_since: Mutex::new(now_unix()),
            journal,
            installing: Mutex::new(()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            config,
            watcher: Mutex::new(watcher),
            boot_id: format!(
                "{}-{}",
                std::process::id(),
                schedule::unix_ms(std::time::SystemTime::now())
            ),
            probation: probation::ProbationWatch::default(),
            scheduler: upgrade::ScheduleRunner::default(),
            seat: Mutex::new(None),
            lineage: Mutex::new(crate::handover::old::Lineage {
                handovers: 0,
                first_started: now_unix(),
                last_handover: None,
            }),
            listeners: Mutex::new(Vec::new()),
            inherited: Mutex::new(Vec::new()),
            handed_over: std::sync::atomic::AtomicBool::new(false),
            on_handed_over: Mutex::new(None),
        })
    }

    /// A listening TCP socket for a server the host runs beside the node (an HTTP server):
    /// the one named `name` that the node this one took over from passed on, else a new one
    /// bound to `addr`. Either way a handover passes it on under `name`, so the server's
    /// address keeps accepting across `relup restart` (connections already accepted by the
    /// host's server stay with the old process, which finishes them and exits).
    pub fn listener(&self, name: &str, addr: &str) -> std::io::Result<std::net::TcpListener> {
        let inherited = {
            let mut inherited = self.inherited.lock();
            inherited
                .iter()
                .position(|(n, _)| n == name)
                .map(|i| inherited.remove(i).1)
        };
        let listener = match inherited {
            Some(fd) => std::net::TcpListener::from(fd),
            None => std::net::TcpListener::bind(addr)?,
        };
        let kept = std::os::fd::OwnedFd::from(listener.try_clone()?);
        let mut listeners = self.listeners.lock();
        listeners.retain(|(n, _)| n != name);
        listeners.push((name.to_string(), kept));
        Ok(listener)
    }

    pub(crate) fn set_inherited(&self, listeners: Vec<(String, std::os::fd::OwnedFd)>) {
        *self.inherited.lock() = listeners;
    }

    /// Sets what runs once another node took over (the service ends its wait and exits).
    pub(crate) fn on_handed_over(&self, hook: HandedOverHook) {
        *self.on_handed_over.lock() = Some(hook);
    }

    /// Whether another node took over from this one: nothing may be stopped or closed.
    pub fn is_handed_over(&self) -> bool {
        self.handed_over.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Called once the request that asked for a handover is answered: the service's wait
    /// ends (its host finishes what it serves beside the node) and the process exits without
    /// stopping anything; a node with no service around it exits at once.
    pub fn finish_handover(&self) {
        match self.on_handed_over.lock().as_ref() {
            Some(hook) => hook("handed over to a new node".to_string()),
            None => crate::handover::exit_handed_over(),
        }
    }

    /// Writes one line to the journal (`log/upgrade.log`).
    pub(crate) fn journal_line(&self, line: &str) {
        let _ = self.journal.record(line);
    }

    /// Gives the handler what a handover passes on: the node lock and the control socket.
    pub(crate) fn set_seat(&self, seat: crate::handover::old::Seat) {
        *self.seat.lock() = Some(seat);
    }

    /// The handovers this line of nodes has been through, and since when it serves.
    pub fn lineage(&self) -> crate::handover::old::Lineage {
        *self.lineage.lock()
    }

    pub(crate) fn set_lineage(&self, lineage: crate::handover::old::Lineage) {
        *self.lineage.lock() = lineage;
    }

    /// `relup restart`: hands this node over to a new node process running the same
    /// release (the running release's executable, else this one's), keeping every
    /// connection and state (see [`crate::handover`]). On success the caller answers and
    /// then must exit at once ([`ReleaseHandler::exit_handed_over`]).
    pub fn restart_node(&self) -> Result<crate::handover::HandoverReport, HandlerError> {
        let _one_at_a_time = self.installing.try_lock().ok_or_else(|| self.busy())?;
        self.refuse_if_stopping()?;
        self.hand_over_locked(false)
    }

    /// The handover itself; the caller holds the install lock. `permanent_after`: the new
    /// node makes the running release permanent once it serves.
    pub(crate) fn hand_over_locked(
        &self,
        permanent_after: bool,
    ) -> Result<crate::handover::HandoverReport, HandlerError> {
        let seat = self
            .seat
            .lock()
            .clone()
            .ok_or(crate::handover::HandoverError::NoSeat)?;
        let version = self.booted.lock().release.version.clone();
        let carried = self.root.release_executable(&version);
        // The release's own executable, else the path this node was started from: a new
        // `relup` installed over it (the point of a runtime upgrade) is what runs next.
        let exe = if carried.is_file() {
            carried
        } else {
            node_executable().map_err(|source| crate::handover::HandoverError::Spawn {
                exe: "the current executable".into(),
                source,
            })?
        };
        let _ = self.journal.record(&format!(
            "handover of {version} to a new node ({}) starts",
            exe.display()
        ));
        let log = |line: &str| {
            let _ = self.journal.record(line);
        };
        let listeners: Vec<(String, std::os::fd::RawFd)> = self
            .listeners
            .lock()
            .iter()
            .map(|(name, fd)| (name.clone(), std::os::fd::AsRawFd::as_raw_fd(fd)))
            .collect();
        let report = crate::handover::old::hand_over(
            &self.node,
            &self.root,
            &exe,
            &version,
            crate::handover::old::Passed {
                seat,
                listeners,
                lineage: self.lineage(),
                permanent_after,
            },
            &log,
        )?;
        // From here another node serves with this one's sockets: nothing here may stop or
        // close anything (a stop that comes now only ends this process).
        self.handed_over
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(report)
    }

    /// The config store (`config/config.toml` and its change files).
    pub fn config(&self) -> &Arc<ConfigStore> {
        &self.config
    }

    /// `relup config get [app[:key]]`.
    pub fn config_get(
        &self,
        app: Option<&str>,
        key: Option<&str>,
    ) -> Result<Vec<crate::config::ConfigEntry>, HandlerError> {
        let release = self.booted.lock().release.clone();
        Ok(self.config.get(&release, app, key)?)
    }

    /// `relup config set app:module:key:value`: validated like a `config.toml.new` line.
    pub fn config_set(&self, line: &str) -> Result<crate::config::Applied, HandlerError> {
        let release = self.booted.lock().release.clone();
        Ok(self.config.set(&release, line)?)
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The release root.
    pub fn root(&self) -> &ReleaseRoot {
        &self.root
    }

    /// The release running now.
    pub fn running(&self) -> BootedRelease {
        self.booted.lock().clone()
    }

    /// Every known release with its status, the running release marked `current` unless it
    /// is the permanent one.
    ///
    /// `RELEASES` on disk holds what survives a restart (unpacked, permanent, old); an install
    /// that is not made permanent only changes what runs, which a restart undoes, so it is not
    /// written there. That is OTP's `install_release` too, and it takes the file's write and
    /// two syncs (~1 ms on a quiet disk, several under load) off every install.
    pub fn releases(&self) -> Result<Releases, HandlerError> {
        let mut releases = Releases::load(&self.root)?;
        let running = self.booted.lock().release.version.clone();
        releases.set_current(&running, *self.current_since.lock())?;
        Ok(releases)
    }

    /// The journal's text.
    pub fn log(&self) -> std::io::Result<String> {
        self.journal.read()
    }

    /// Unpacks a tarball into the root (verified; recorded as unpacked).
    ///
    /// A version already known is refused; with `force`, a version that is only unpacked (never
    /// a permanent or current one: those are live) is removed first and unpacked again.
    pub fn unpack(&self, tarball: &Path, force: bool) -> Result<UnpackedRelease, HandlerError> {
        self.repair_releases()?;
        let running = self.booted.lock().release.version.clone();
        let span = crate::trace::phase(crate::trace::Phase::Unpack, &running, &tarball.display());
        let _in_span = span.enter();
        let unpacked = match unpack(&self.root, tarball) {
            // The running release is `current` in memory only (see `releases`): say so, and
            // never replace it.
            Err(UnpackError::AlreadyKnown {
                tarball,
                source:
                    StatusError::AlreadyKnown {
                        version,
                        status: ReleaseStatus::Unpacked,
                    },
            }) if version == running => {
                return Err(UnpackError::AlreadyKnown {
                    tarball,
                    source: StatusError::AlreadyKnown {
                        version,
                        status: ReleaseStatus::Current,
                    },
                }
                .into());
            }
            Err(UnpackError::AlreadyKnown {
                source:
                    StatusError::AlreadyKnown {
                        version,
                        status: ReleaseStatus::Unpacked,
                    },
                ..
            }) if force => {
                let _one_at_a_time = self.installing.try_lock().ok_or_else(|| self.busy())?;
                // Checked again under the lock: an install may have ended in between.
                self.remove_locked(&version)?;
                let _ = self
                    .journal
                    .record(&format!("unpack --force: removed unpacked {version}"));
                unpack(&self.root, tarball)?
            }
            other => other?,
        };
        let _ = self.journal.record(&format!(
            "unpack {} from {}",
            unpacked.release.version,
            tarball.display()
        ));
        span.record("to", unpacked.release.version.to_string());
        Ok(unpacked)
    }

    /// Whether (and how) the running release can reach `target`, in one line: OTP only finds
    /// out at install time that no relup covers a path; relup says so when it unpacks.
    pub fn path_to(&self, target: &Version) -> String {
        let running = self.booted.lock().release.version.clone();
        if &running == target {
            return format!("{target} is running");
        }
        match self.plan(target) {
            Ok(plan) if plan.is_multi_hop() => {
                let chain: Vec<String> = plan.chain.iter().map(|v| v.to_string()).collect();
                format!(
                    "path from {running}: {} hops through {}",
                    plan.hops.len(),
                    chain.join(" -> ")
                )
            }
            Ok(_) => format!("path from {running}: direct"),
            Err(e) => format!("no path from {running} yet: {e}"),
        }
    }

    /// Unpacks `<root>/releases/<vsn>/<name>-<vsn>.tar.gz` when the version is not known yet
    /// but its tarball was dropped in place. Returns whether it unpacked.
    fn ensure_known(&self, target: &Version) -> Result<bool, HandlerError> {
        let mut releases = Releases::load(&self.root)?;
        if releases.permanent().is_none() {
            self.repair_releases()?;
            releases = Releases::load(&self.root)?;
        }
        if releases.get(target).is_some() {
            return Ok(false);
        }
        let name = self.booted.lock().release.name.clone();
        if self.root.release_tarball(&name, target).is_file() {
            unpack_in_place(&self.root, target)?;
            let _ = self.journal.record(&format!("unpack {target} in place"));
            return Ok(true);
        }
        Err(HandlerError::Unknown {
            version: target.clone(),
            known: releases.known_list(),
        })
    }

    /// The plan from the running release to `target`, without changing anything.
    pub fn plan(&self, target: &Version) -> Result<Plan, HandlerError> {
        Ok(self.plan_known(target)?.plan)
    }

    /// The plan to `target` and the releases it was made from (read from disk once).
    fn plan_known(&self, target: &Version) -> Result<Prepared, HandlerError> {
        let known = self.known_with_statuses()?;
        if !known.iter().any(|k| &k.release.version == target) {
            // Listed but unreadable: say what is wrong with it, not "not known".
            let broken = known_releases_each(&self.root)?
                .into_iter()
                .find(|(vsn, _)| vsn == target)
                .and_then(|(_, k)| k.err());
            if let Some(error) = broken {
                return Err(error.into());
            }
        }
        let current = self.booted.lock().release.clone();
        let target_release = known
            .iter()
            .find(|k| &k.release.version == target)
            .map(|k| k.release.clone())
            .ok_or_else(|| {
                let known = self.releases().map(|r| r.known_list()).unwrap_or_default();
                if self.root.release_tarball(&current.name, target).is_file() {
                    HandlerError::NotUnpacked {
                        version: target.clone(),
                        known,
                    }
                } else {
                    HandlerError::Unknown {
                        version: target.clone(),
                        known,
                    }
                }
            })?;
        let plan = relup_appup::plan(&current, &target_release, &known)?;
        Ok(Prepared { plan, known })
    }

    /// The known releases from disk, the running one marked `current` (see `releases`).
    /// A release that cannot be read is left out (see [`known_releases_each`]), unless it is
    /// the permanent or the running one: one corrupt unpacked release must not block plans to
    /// every other version. [`ReleaseHandler::plan`] names it when it is the target.
    fn known_with_statuses(&self) -> Result<Vec<relup_appup::KnownRelease>, HandlerError> {
        let running = self.booted.lock().release.version.clone();
        let permanent = self.permanent.lock().clone();
        let mut known = Vec::new();
        for (vsn, release) in known_releases_each(&self.root)? {
            match release {
                Ok(k) => known.push(k),
                Err(e) if vsn == running || vsn == permanent => return Err(e.into()),
                Err(_) => {}
            }
        }
        for k in &mut known {
            if k.release.version == running && k.status != ReleaseStatus::Permanent {
                k.status = ReleaseStatus::Current;
            }
        }
        Ok(known)
    }

    /// Installs `target` (upgrade or downgrade, through a chain when needed), then makes it
    /// permanent if `permanent`. Progress goes to `progress` step by step.
    pub fn install(
        &self,
        target: &Version,
        opts: &InstallOptions,
        permanent: bool,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<InstallReport, HandlerError> {
        let from = self.running().release.version;
        let result = self.install_unobserved(target, opts, permanent, progress);
        self.observed(&from, target, result)
    }

    fn install_unobserved(
        &self,
        target: &Version,
        opts: &InstallOptions,
        permanent: bool,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<InstallReport, HandlerError> {
        let _one_at_a_time = self.installing.try_lock().ok_or_else(|| self.busy())?;
        let prepared = self.prepare(target, progress)?;
        self.install_locked(&prepared, opts, None, permanent, progress)
    }

    /// Everything before an install: refuses the running version, unpacks a tarball dropped
    /// in place, and plans (saying so when the plan is a chain).
    fn prepare(
        &self,
        target: &Version,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Prepared, HandlerError> {
        let from = self.booted.lock().release.version.clone();
        if &from == target {
            return Err(HandlerError::AlreadyRunning(target.clone()));
        }
        if self.ensure_known(target)? {
            progress(&note(&format!(
                "unpacked {target} from its tarball in releases/{target}/"
            )));
        }
        let prepared = self.plan_known(target)?;
        let plan = &prepared.plan;
        if plan.is_multi_hop() {
            let chain: Vec<String> = plan.chain.iter().map(|v| v.to_string()).collect();
            progress(&note(&format!(
                "no direct path from {from} to {target}: {} hops through {}",
                plan.hops.len(),
                chain.join(" -> ")
            )));
        }
        Ok(prepared)
    }

    /// Runs `plan` with the install lock held. `opts.restore` applies to the hop that ends
    /// in `restore_at` only (the release the snapshot was taken on).
    fn install_locked(
        &self,
        prepared: &Prepared,
        opts: &InstallOptions,
        restore_at: Option<&Version>,
        permanent: bool,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<InstallReport, HandlerError> {
        // The install's journal lines are synced once, when it ends (see Journal::batch); when
        // it is not made permanent, by the journal's next sync (see Journal::deferred).
        let _batch = if permanent {
            self.journal.batch()
        } else {
            self.journal.deferred()
        };
        let Prepared { plan, known } = prepared;
        let from = self.booted.lock().release.version.clone();
        let target = plan.chain.last().unwrap_or(&from).clone();
        let chain: Vec<String> = plan.chain.iter().map(|v| v.to_string()).collect();
        let _ = self.journal.record(&format!(
            "install {from} -> {target} via {}",
            chain.join(" -> ")
        ));
        // No config change is validated against a release being replaced.
        let _config = self.config.hold();
        let mut report = InstallReport {
            from: from.clone(),
            to: from.clone(),
            chain: plan.chain.clone(),
            migrated: 0,
            max_pause_micros: 0,
            permanent: false,
            restart_required: false,
            snapshot: None,
            checked: None,
            restored_from: None,
            probation: None,
            handover: None,
        };
        let without_restore = InstallOptions {
            restore: None,
            ..opts.clone()
        };
        for hop in &plan.hops {
            self.refuse_if_stopping()?;
            let opts = if restore_at == Some(&hop.to) {
                opts
            } else {
                &without_restore
            };
            let Some(release) = known.iter().find(|k| k.release.version == hop.to) else {
                return Err(HandlerError::Unknown {
                    version: hop.to.clone(),
                    known: self.releases()?.known_list(),
                });
            };
            let dir = self.root.release_dir(&hop.to);
            let current = self.booted.lock().clone();
            let target = HopTarget {
                hop,
                release: &release.release,
                dir: &dir,
            };
            match run_hop(&self.node, &current, target, opts, &self.journal, progress) {
                Ok(outcome) => {
                    // Keys the new release no longer declares leave config.toml too, and
                    // values it no longer accepts go back to its defaults (said loudly).
                    match self.config.prune(&outcome.booted.release) {
                        Ok(lines) => {
                            for line in lines {
                                let _ = self.journal.record(&format!("config: {line}"));
                                progress(&note(&format!("warning: config: {line}")));
                            }
                        }
                        Err(e) => self.config.log(1, &format!("config: {e}")),
                    }
                    *self.booted.lock() = outcome.booted;
                    *self.current_since.lock() = now_unix();
                    report.to = hop.to.clone();
                    report.migrated += outcome.migrated;
                    report.max_pause_micros = report
                        .max_pause_micros
                        .max(outcome.pause.as_micros() as u64);
                    if outcome.restart_required {
                        report.restart_required = true;
                        break;
                    }
                }
                Err(error) => {
                    let running = self.booted.lock().release.version.clone();
                    let _ = self
                        .journal
                        .record(&format!("install failed, running {running}: {error}"));
                    return Err(HandlerError::Install { running, error });
                }
            }
        }
        if permanent && !report.restart_required {
            self.refuse_if_stopping()?;
            self.make_permanent(&report.to)?;
            report.permanent = true;
        }
        let _ = self
            .journal
            .record(&format!("install done, running {}", report.to));
        self.node.inner.metrics.last_pause(report.max_pause_micros);
        Ok(report)
    }

    /// Reboots the node into an old release (OTP's `reboot_old_release`): it becomes the
    /// permanent release, the running applications stop, and the old release boots with
    /// fresh processes (their states are not migrated: this is a reboot, not a downgrade).
    pub fn reboot_old(&self, vsn: &Version, timeout: Duration) -> Result<(), HandlerError> {
        let _one_at_a_time = self.installing.try_lock().ok_or_else(|| self.busy())?;
        let releases = self.releases()?;
        let status = releases.status(vsn).ok_or_else(|| HandlerError::Unknown {
            version: vsn.clone(),
            known: releases.known_list(),
        })?;
        if status != ReleaseStatus::Old {
            return Err(HandlerError::NotOld {
                version: vsn.clone(),
                status,
            });
        }
        let known = self.known_with_statuses()?;
        let release = known
            .iter()
            .find(|k| &k.release.version == vsn)
            .map(|k| k.release.clone())
            .ok_or_else(|| HandlerError::Unknown {
                version: vsn.clone(),
                known: releases.known_list(),
            })?;
        let _ = self.journal.record(&format!(
            "reboot_old {vsn}: stopping {}",
            self.booted.lock().release.version
        ));
        let running = self.booted.lock().clone();
        stop_release(&self.node, &running, timeout);
        let booted = match boot_release(&self.node, &release, &self.root.release_dir(vsn)) {
            Ok(booted) => booted,
            Err(error) => {
                // Back to what ran, so the node is never left without its applications.
                if let Ok(again) = boot_release(&self.node, &running.release, &running.dir) {
                    *self.booted.lock() = again;
                }
                return Err(HandlerError::Boot {
                    version: vsn.clone(),
                    error,
                });
            }
        };
        *self.booted.lock() = booted;
        *self.current_since.lock() = now_unix();
        Releases::update(&self.root, |releases| {
            releases.set_current(vsn, now_unix())?;
            releases.make_permanent(vsn, now_unix())?;
            Ok::<(), HandlerError>(())
        })?;
        *self.permanent.lock() = vsn.clone();
        let _ = self
            .journal
            .record(&format!("reboot_old {vsn}: booted, permanent"));
        Ok(())
    }

    /// Makes the running release permanent (booted on the next start). A probation of
    /// that release under way ends as accepted.
    pub fn make_permanent(&self, vsn: &Version) -> Result<(), HandlerError> {
        let _lock = ReleasesLock::acquire(&self.root)?;
        // Read under the lock: an unpack that wrote RELEASES since is kept.
        let mut releases = Releases::load(&self.root)?;
        if self.repair_locked(&mut releases)? {
            releases.save(&self.root)?;
        }
        // The running release is `current` in memory only (see `releases`).
        let running = self.booted.lock().release.version.clone();
        releases.set_current(&running, *self.current_since.lock())?;
        if releases.status(vsn) == Some(ReleaseStatus::Permanent) {
            return Ok(());
        }
        releases.make_permanent(vsn, now_unix())?;
        if let Err(error) = releases.save(&self.root) {
            let error = HandlerError::NotPermanent {
                version: vsn.clone(),
                permanent: self.permanent.lock().clone(),
                error: Box::new(error),
            };
            let _ = self.journal.record(&error.to_string());
            return Err(error);
        }
        *self.permanent.lock() = vsn.clone();
        let _ = self.journal.record(&format!("permanent {vsn}"));
        self.probation.accept(vsn);
        Ok(())
    }

    /// The probation under way, if any.
    pub fn probation(&self) -> Option<ProbationStatus> {
        self.probation.status()
    }

    /// The error for an install refused because another one holds the lock.
    fn busy(&self) -> HandlerError {
        match self.probation.status() {
            Some(p) => HandlerError::OnProbation {
                version: p.version,
                remaining_ms: p.remaining_ms,
            },
            None => HandlerError::Busy,
        }
    }

    /// Removes a release that is neither permanent nor running: the directory deleted, and a
    /// warning when it was the last downgrade target (both journaled).
    pub fn remove(&self, vsn: &Version) -> Result<Removed, HandlerError> {
        let _one_at_a_time = self.installing.try_lock().ok_or_else(|| self.busy())?;
        let dir = self.remove_locked(vsn)?;
        let _ = self
            .journal
            .record(&format!("remove {vsn}: deleted {}", dir.display()));
        let warning = self.downgrade_warning(vsn);
        if let Some(warning) = &warning {
            let _ = self
                .journal
                .record(&format!("remove {vsn}: warning: {warning}"));
        }
        Ok(Removed { dir, warning })
    }

    /// After `removed` went: a warning when no release older than the permanent one is left
    /// (no downgrade target remains), `None` otherwise.
    fn downgrade_warning(&self, removed: &Version) -> Option<String> {
        let permanent = self.permanent.lock().clone();
        if removed >= &permanent {
            return None;
        }
        let releases = Releases::load(&self.root).ok()?;
        let older = releases
            .releases
            .iter()
            .any(|e| e.version < permanent && &e.version != removed);
        (!older).then(|| {
            format!(
                "{removed} was the last release older than the permanent {permanent}: no downgrade \
                 target is left (unpack an older release's tarball to have one again)"
            )
        })
    }

    /// Removes `vsn` with the install lock held. The running release is `current` in memory
    /// only (see `releases`), so the status check runs on the overlay before the file's.
    fn remove_locked(&self, vsn: &Version) -> Result<PathBuf, HandlerError> {
        let running = self.booted.lock().release.version.clone();
        Ok(crate::release::remove(&self.root, vsn, Some(&running))?)
    }

    /// Writes `RELEASES` again from what this node knows when the file was deleted or emptied
    /// (it lists no permanent release): the permanent release and the running one, each while
    /// its directory is there. Without this, an unpack into such a root would write a
    /// `RELEASES` with no permanent release, and the root could no longer boot.
    fn repair_releases(&self) -> Result<(), HandlerError> {
        let _lock = ReleasesLock::acquire(&self.root)?;
        let mut releases = Releases::load(&self.root)?;
        if self.repair_locked(&mut releases)? {
            releases.save(&self.root)?;
        }
        Ok(())
    }

    /// [`ReleaseHandler::repair_releases`] on `releases`, read by a caller that holds the
    /// [`ReleasesLock`] and saves them: returns whether they were rebuilt (and journals it).
    fn repair_locked(&self, releases: &mut Releases) -> Result<bool, HandlerError> {
        if releases.permanent().is_some() {
            return Ok(false);
        }
        let permanent = self.permanent.lock().clone();
        let running = self.booted.lock().release.clone();
        if releases.name.is_none() {
            releases.name = Some(running.name.clone());
        }
        let now = now_unix();
        for vsn in [&permanent, &running.version] {
            if releases.get(vsn).is_none() && self.root.release_manifest(vsn).is_file() {
                releases.add_unpacked(vsn, now)?;
            }
        }
        if releases.get(&permanent).is_some() {
            releases.set_current(&permanent, now)?;
            releases.make_permanent(&permanent, now)?;
        }
        let _ = self.journal.record(&format!(
            "repair: {} listed no permanent release (deleted or emptied); wrote it again from what runs: {} permanent, running {}",
            self.root.releases_file().display(),
            permanent,
            running.version
        ));
        Ok(true)
    }

    /// The error for an install that finds the node stopping, journaled.
    fn refuse_if_stopping(&self) -> Result<(), HandlerError> {
        if !self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let error = HandlerError::Stopping {
            running: self.booted.lock().release.version.clone(),
            permanent: self.permanent.lock().clone(),
        };
        let _ = self.journal.record(&format!("install stopped: {error}"));
        Err(error)
    }

    /// Stops the running release's applications (a probation under way ends as
    /// interrupted: the release stays current, not permanent, and is not booted again). An
    /// install under way finishes its current hop (up to `timeout`) and goes no further; the
    /// applications stop after it, never under it.
    pub fn stop(&self, timeout: Duration) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.probation.interrupt();
        self.scheduler.stop();
        let installing = self.installing.try_lock_for(timeout);
        if self.is_handed_over() {
            // A handover under way when the stop came is done: the new node serves.
            return;
        }
        if installing.is_none() {
            let _ = self.journal.record(&format!(
                "stop: an install still runs after {} ms; stopping anyway",
                timeout.as_millis()
            ));
        }
        if let Some(watcher) = self.watcher.lock().take() {
            watcher.stop();
        }
        let booted = self.booted.lock().clone();
        stop_release(&self.node, &booted, timeout);
        let _ = self
            .journal
            .record(&format!("stop {}", booted.release.version));
    }
}

/// The ids of scheduled upgrades that the journal `text` shows starting but never ending
/// (done, FAILED or INTERRUPTED), in the order they started.
fn unfinished_scheduled(text: &str) -> Vec<u64> {
    let mut open: Vec<u64> = Vec::new();
    for line in text.lines() {
        let Some(at) = line.find("scheduled upgrade ") else {
            continue;
        };
        let rest = &line[at + "scheduled upgrade ".len()..];
        let Some((id, what)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else {
            continue;
        };
        if what.starts_with("starts:") {
            open.push(id);
        } else if what.starts_with("done:")
            || what.starts_with("FAILED:")
            || what.starts_with("INTERRUPTED:")
        {
            open.retain(|&o| o != id);
        }
    }
    open
}

/// A plan and the releases (manifests and appups) it was made from.
struct Prepared {
    plan: Plan,
    known: Vec<relup_appup::KnownRelease>,
}

fn note(text: &str) -> Progress {
    Progress {
        hop: String::new(),
        step: "note".into(),
        ok: true,
        micros: 0,
        detail: text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::unfinished_scheduled;

    #[test]
    fn a_scheduled_upgrade_without_an_ending_line_is_unfinished() {
        let journal = "\
t1 scheduled upgrade 1 starts: 0.2.0 (due x)
t2 scheduled upgrade 1: probation ...
t3 scheduled upgrade 1 done: running 0.2.0
t4 scheduled upgrade 2 starts: 0.3.0 (due y)
t5 scheduled upgrade 3 starts: 0.3.0 (due y)
t6 scheduled upgrade 3 FAILED: no
";
        assert_eq!(unfinished_scheduled(journal), [2]);
        let after = format!("{journal}t7 scheduled upgrade 2 INTERRUPTED: died\n");
        assert!(unfinished_scheduled(&after).is_empty());
    }
}
