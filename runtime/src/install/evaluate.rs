//! Evaluating one hop of a plan on a running node, with rollback.
//!
//! Order of business: every library is loaded and checked before the point of no return;
//! after it, each change is recorded in an undo log. Suspended processes stay suspended until
//! the hop commits, so that a failure at any later step (a code_change, a child start, an
//! apply) rolls back to exactly the old code and the old states, with nothing any new code
//! did in between. On commit, each process drops its old instance and resumes; queued
//! messages then reach the new code.

use super::boot::{BootedRelease, app_supervisor_name, load_checked, stop_application};
use super::convert::{child_spec, encode_value, supervisor_flags, supervisor_spec};
use super::error::InstallError;
use super::journal::Journal;
use crate::code_server::LoadedModule;
use crate::error::CodeChangeError;
use crate::node::Node;
use crate::supervisor::{ChildSpec, Strategy};
use crate::trace::{self, Phase, PhaseSpan};
use crate::upgrade::{CodeChange, UpgradeError};
use relup_appup::{self as appup, Hop, Release, Step};
use relup_module::{Direction, ExitReason, Pid};
use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Timeouts of an install.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// How long a process may take to finish its current message when suspended (an
    /// instruction's own `timeout_ms` wins).
    pub suspend_timeout: Duration,
    /// How long the code_change of all processes of one module may take.
    pub code_change_timeout: Duration,
    /// How long an application or child gets to shut down.
    pub shutdown_timeout: Duration,
    /// States to restore instead of running `code_change`, by module (a snapshot restore on
    /// a downgrade); `None` migrates every state.
    pub restore: Option<Arc<HashMap<String, RestoreSet>>>,
}

/// The saved states of one module's processes, to put back by a downgrade.
#[derive(Debug, Clone)]
pub struct RestoreSet {
    /// The module version that exported them (the version the downgrade goes to).
    pub version: semver::Version,
    /// The states, by pid.
    pub states: Arc<HashMap<Pid, Vec<u8>>>,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            suspend_timeout: Duration::from_secs(10),
            code_change_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            restore: None,
        }
    }
}

/// One step done (or failed), as reported to whoever drives the install.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// The hop, e.g. `0.1.0 -> 0.2.0`.
    pub hop: String,
    /// The step, as the plan prints it.
    pub step: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took, in microseconds.
    pub micros: u64,
    /// What it did or why it failed.
    pub detail: String,
}

/// What a completed hop did.
#[derive(Debug, Clone)]
pub struct HopOutcome {
    /// The release now running.
    pub booted: BootedRelease,
    /// The plan ends with restart_node: the node must restart into the new release.
    pub restart_required: bool,
    /// Processes whose state was migrated.
    pub migrated: usize,
    /// Time from the first suspend to the resume (the longest pause a process saw).
    pub pause: Duration,
}

enum Undo {
    MakeCurrent {
        previous: Option<Arc<LoadedModule>>,
    },
    Flags {
        sup: Pid,
        flags: (Strategy, u32, Duration),
    },
    StartedChild {
        sup: Pid,
        id: String,
    },
    StoppedChild {
        sup: Pid,
        spec: Box<ChildSpec>,
    },
    StartedApp {
        app: String,
    },
    StoppedApp {
        app: String,
    },
}

enum Deferred {
    Purge { module: String, brutal: bool },
    Remove { module: String },
}

struct Hopper<'a> {
    node: &'a Node,
    hop: &'a Hop,
    current: &'a BootedRelease,
    booted: BootedRelease,
    target: &'a Release,
    target_dir: &'a Path,
    opts: &'a InstallOptions,
    loaded: HashMap<String, Arc<LoadedModule>>,
    suspended: Vec<Pid>,
    suspended_by_module: HashMap<String, Vec<Pid>>,
    staged: Vec<Pid>,
    undo: Vec<Undo>,
    deferred: Vec<Deferred>,
    restart_required: bool,
    first_suspend: Option<Instant>,
    /// The hop suspends one module only: its processes are suspended and migrated in one
    /// request each, at its code_change (the suspend step only looks them up).
    fused: Option<String>,
    /// The processes the hop's suspend steps took: those suspended by one step answer calls
    /// while a later step waits for busy ones (see `SuspendGroup`).
    suspend_group: std::sync::Arc<crate::process::SuspendGroup>,
    /// Suspend timeouts of fused suspends, by module.
    fused_timeouts: HashMap<String, Duration>,
    /// The fused module's processes, taken at its suspend step and migrated at its
    /// code_change (handles, so that no step looks a million pids up again).
    fused_processes: Vec<Arc<crate::process::Process>>,
    /// The processes the fused code_change migrated, committed from these handles.
    fused_done: Option<Vec<Arc<crate::process::Process>>>,
    /// Code_change steps not yet taken (resumes may admit calls from new processes to the
    /// whole suspend group once none is left).
    migrations_left: usize,
    /// The modules this hop suspends, held from its first suspend step until it commits or
    /// rolls back: supervisors put off (re)starting their children meanwhile.
    hold: Option<crate::upgrade::Hold>,
    /// Where the hop's journal lines go (also the line of a rollback on unwind).
    journal: &'a Journal,
    /// The hop committed or rolled back: dropping the hopper undoes nothing more.
    settled: bool,
}

/// A hop that unwinds (the embedder's progress callback panics, or a step does) before it
/// committed or rolled back is rolled back here, on the way out: no process stays suspended
/// or staged, the old versions are current again. The panic then goes on.
impl Drop for Hopper<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        let undone = self.rollback();
        let _ = self.journal.record(&format!(
            "hop={} -> {} rolled back after a panic: {undone} change(s) undone; the node runs \
             {} again",
            self.current.release.version, self.target.version, self.current.release.version
        ));
    }
}

/// Where a hop goes: its steps, and the release (manifest and directory) it ends in.
#[derive(Debug, Clone, Copy)]
pub struct HopTarget<'a> {
    /// The hop from the plan.
    pub hop: &'a Hop,
    /// The manifest of the release the hop ends in.
    pub release: &'a Release,
    /// That release's directory (its libraries are loaded from there).
    pub dir: &'a Path,
}

/// Runs one hop. On error the node runs `current` exactly as before (old code, old states,
/// all resumed) and the error names the failing step.
///
/// A `progress` that panics before the commit fails the hop like a failing step: it is
/// rolled back and the error is [`InstallError::ProgressPanicked`] (the caller keeps its
/// bookkeeping, e.g. which release runs; a journal line names the panic); `progress` is
/// not called again. One that panics at the commit's event leaves the hop done.
/// A panic inside a step (a runtime bug) is not caught: the hop is rolled back on the way
/// out (a journal line says "rolled back after a panic"), then the panic goes on.
///
/// `progress` hears of each step when no process is suspended: the steps taken while the
/// hop holds processes suspended are told once they are resumed (at commit or rollback), so
/// that a slow consumer of progress cannot stretch the pause.
///
/// The hop's journal lines are written as it goes but not synced: the caller decides when,
/// with a [`Journal::batch`] around it (or any later synced line).
pub fn run_hop(
    node: &Node,
    current: &BootedRelease,
    target: HopTarget<'_>,
    opts: &InstallOptions,
    journal: &Journal,
    progress: &mut dyn FnMut(&Progress),
) -> Result<HopOutcome, InstallError> {
    let HopTarget {
        hop,
        release: target,
        dir: target_dir,
    } = target;
    let label = format!("{} -> {}", hop.from, hop.to);
    // The hop's lines are written as it goes, not synced one by one while processes are
    // suspended: the caller's batch decides when (ReleaseHandler::install_locked).
    let _batch = journal.deferred();
    if current.release.version != hop.from {
        return Err(InstallError::Mismatch(format!(
            "the hop {label} starts from {}, the node runs {}",
            hop.from, current.release.version
        )));
    }
    let mut hopper = Hopper {
        node,
        hop,
        current,
        booted: BootedRelease {
            release: target.clone(),
            dir: target_dir.to_path_buf(),
            apps: current.apps.clone(),
        },
        target,
        target_dir,
        opts,
        loaded: HashMap::new(),
        suspended: Vec::new(),
        suspended_by_module: HashMap::new(),
        staged: Vec::new(),
        undo: Vec::new(),
        deferred: Vec::new(),
        restart_required: false,
        first_suspend: None,
        fused: single_suspended_module(hop),
        suspend_group: crate::process::SuspendGroup::new(),
        fused_processes: Vec::new(),
        fused_done: None,
        migrations_left: hop
            .steps
            .iter()
            .filter(|s| matches!(s, Step::CodeChange { .. }))
            .count(),
        fused_timeouts: HashMap::new(),
        journal,
        settled: false,
        hold: None,
    };
    // Progress that happens while processes are suspended waits in `held` until they are
    // resumed (at commit or rollback): a slow progress consumer (a control client that does
    // not read) must not stretch the pause. The journal line is written at once.
    let mut held: Vec<Progress> = Vec::new();
    // Set once the callback has panicked: it is not called again.
    let mut callback_panicked = false;
    // Returns the step and the panic's text when the callback panics on this call.
    let mut record = |suspended: bool,
                      step: String,
                      ok: bool,
                      started: Instant,
                      detail: String|
     -> Option<(String, String)> {
        let p = Progress {
            hop: label.clone(),
            step,
            ok,
            micros: started.elapsed().as_micros() as u64,
            detail,
        };
        let _ = journal.record(&format!(
            "hop={} step=\"{}\" {} {}us {}",
            p.hop,
            p.step,
            if p.ok { "ok" } else { "FAILED" },
            p.micros,
            p.detail
        ));
        if callback_panicked {
            return None;
        }
        held.push(p);
        if suspended {
            return None;
        }
        for p in held.drain(..) {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| progress(&p))) {
                let message = panic_text(payload.as_ref());
                callback_panicked = true;
                let _ = journal.record(&format!(
                    "hop={} the progress callback panicked at step \"{}\": {message}; it is \
                     not called again",
                    p.hop, p.step
                ));
                return Some((p.step.clone(), message));
            }
        }
        None
    };
    let mut failure = None;
    for step in &hop.steps {
        // Written before the step too, so that a crash mid-step leaves a readable trail.
        let _ = journal.record(&format!("hop={label} step=\"{step}\" begin"));
        let started = Instant::now();
        let span = step_span(hop, step);
        let entered = span.as_ref().map(|(span, _)| span.enter());
        let result = hopper.step(step);
        if let Some((span, module)) = &span {
            let count = hopper.suspended_by_module.get(*module).map_or(0, Vec::len);
            span.processes(count);
        }
        drop(entered);
        match result {
            Ok(detail) => {
                let told = record(hopper.holds(), step.to_string(), true, started, detail);
                if let Some((step, message)) = told {
                    failure = Some(InstallError::ProgressPanicked { step, message });
                    break;
                }
            }
            Err(error) => {
                let detail = error.to_string();
                record(hopper.holds(), step.to_string(), false, started, detail);
                failure = Some(error);
                break;
            }
        }
    }
    if let Some(error) = failure {
        let started = Instant::now();
        hopper.settled = true;
        let span = trace::phase(Phase::Rollback, &hop.from, &hop.to);
        let undone = span.in_scope(|| hopper.rollback());
        span.processes(hopper.suspended.len());
        drop(span);
        record(
            false,
            "rollback".into(),
            true,
            started,
            format!(
                "{undone} change(s) undone; the node runs {} again",
                current.release.version
            ),
        );
        return Err(error);
    }
    let started = Instant::now();
    hopper.settled = true;
    let span = trace::phase(Phase::Commit, &hop.from, &hop.to);
    let (migrated, pause) = span.in_scope(|| hopper.commit());
    span.processes(migrated);
    drop(span);
    // A callback that panics now has the commit behind it: the hop is done (journal line).
    let _ = record(
        false,
        "commit".into(),
        true,
        started,
        format!(
            "{migrated} process(es) migrated, longest pause {} us",
            pause.as_micros()
        ),
    );
    Ok(HopOutcome {
        booted: hopper.booted.clone(),
        restart_required: hopper.restart_required,
        migrated,
        pause,
    })
}

/// The span of a step that is a phase of its own (see [`crate::trace`]), with the module
/// whose processes it counts.
fn step_span<'s>(hop: &Hop, step: &'s Step) -> Option<(tracing::Span, &'s String)> {
    let (phase, module) = match step {
        Step::LoadObjectCode { module, .. } | Step::Load { module, .. } => (Phase::Load, module),
        Step::Suspend { module, .. } => (Phase::Suspend, module),
        Step::CodeChange { module, .. } => (Phase::CodeChange, module),
        Step::Resume { module } => (Phase::Resume, module),
        _ => return None,
    };
    let span = trace::phase(phase, &hop.from, &hop.to);
    span.module(module);
    Some((span, module))
}

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into())
}

/// The modules a hop suspends.
fn suspended_modules(hop: &Hop) -> Vec<String> {
    let mut modules: Vec<String> = Vec::new();
    for step in &hop.steps {
        if let Step::Suspend { module, .. } = step
            && !modules.contains(module)
        {
            modules.push(module.clone());
        }
    }
    modules
}

/// The module of a hop's only suspend step, when its processes can be suspended and migrated
/// in one step: exactly one suspend, and a code_change of that module.
fn single_suspended_module(hop: &Hop) -> Option<String> {
    let mut suspended = hop.steps.iter().filter_map(|s| match s {
        Step::Suspend { module, .. } => Some(module),
        _ => None,
    });
    let module = suspended.next()?;
    if suspended.next().is_some() {
        return None;
    }
    hop.steps
        .iter()
        .any(|s| matches!(s, Step::CodeChange { module: m, .. } if m == module))
        .then(|| module.clone())
}

impl Hopper<'_> {
    fn fail(step: &Step, reason: impl Into<String>) -> InstallError {
        InstallError::Step {
            step: step.to_string(),
            reason: reason.into(),
        }
    }

    /// Processes are suspended by this hop and not yet resumed.
    fn holds(&self) -> bool {
        !self.settled && !self.suspended.is_empty()
    }

    /// The error of a code_change step whose migrations of `pids` did not return in time.
    fn stuck(step: &Step, module: &str, pids: &[Pid], timeout_ms: u64) -> InstallError {
        let list: Vec<String> = pids.iter().map(Pid::to_string).collect();
        InstallError::CodeChange {
            step: step.to_string(),
            module: module.to_string(),
            pid: pids.first().copied().unwrap_or(Pid(0)),
            reason: format!(
                "code_change did not return within {timeout_ms} ms (stuck: {}); the hop gave \
                 up waiting and rolled back",
                list.join(", ")
            ),
        }
    }

    /// The pid of a supervisor by manifest path (`app` or `app/child/...`).
    fn supervisor(&self, step: &Step, path: &str) -> Result<Pid, InstallError> {
        let mut parts = path.split('/');
        let app = parts.next().unwrap_or_default();
        let mut pid = *self
            .booted
            .apps
            .get(app)
            .ok_or_else(|| Self::fail(step, format!("application {app} is not running")))?;
        for id in parts {
            let children = self
                .node
                .which_children(pid)
                .map_err(|e| Self::fail(step, format!("supervisor {path}: {e}")))?;
            pid = children
                .iter()
                .find(|c| c.id == id)
                .and_then(|c| c.pid)
                .ok_or_else(|| {
                    Self::fail(
                        step,
                        format!("no running child {id:?} on the way to {path}"),
                    )
                })?;
        }
        Ok(pid)
    }

    fn app_of(path: &str) -> &str {
        path.split('/').next().unwrap_or_default()
    }

    fn step(&mut self, step: &Step) -> Result<String, InstallError> {
        match step {
            Step::Hop { .. } | Step::PointOfNoReturn => Ok(String::new()),
            Step::LoadObjectCode {
                application,
                module,
                ..
            } => {
                let manifest = self
                    .target
                    .application(application)
                    .and_then(|a| a.modules.iter().find(|m| &m.name == module))
                    .ok_or_else(|| {
                        Self::fail(
                            step,
                            format!("module {module} is not in the target release"),
                        )
                    })?;
                let loaded = load_checked(self.node, self.target_dir, manifest, &step.to_string())?;
                let detail = format!("{} {} checked", loaded.name(), loaded.version());
                self.loaded.insert(module.clone(), loaded);
                Ok(detail)
            }
            Step::Suspend { module, timeout_ms } => {
                let timeout = timeout_ms.map_or(self.opts.suspend_timeout, Duration::from_millis);
                if self.hold.is_none() {
                    // Before any pid is taken: a child of these modules started from now on
                    // waits for the hop to end (it would escape its migration and rollback).
                    let modules = suspended_modules(self.hop);
                    let hold = self.node.hold_modules(&modules, timeout).map_err(|late| {
                        InstallError::Suspend {
                            step: step.to_string(),
                            module: module.clone(),
                            reason: format!(
                                "supervisors were still starting children of {} after {} ms",
                                late.join(", "),
                                timeout.as_millis()
                            ),
                        }
                    })?;
                    self.hold = Some(hold);
                }
                let mut processes = self.node.running_processes(module);
                if !self.suspended.is_empty() {
                    let taken: HashSet<Pid> = self.suspended.iter().copied().collect();
                    processes.retain(|p| !taken.contains(&p.pid));
                }
                let pids: Vec<Pid> = processes.iter().map(|p| p.pid).collect();
                if self.fused.as_ref() == Some(module) {
                    let detail = format!("{} process(es), suspended at code_change", pids.len());
                    self.fused_timeouts.insert(module.clone(), timeout);
                    self.fused_processes = processes;
                    self.suspended_by_module
                        .entry(module.clone())
                        .or_default()
                        .extend(pids);
                    return Ok(detail);
                }
                drop(processes);
                self.first_suspend.get_or_insert_with(Instant::now);
                let earlier = self.suspended.len();
                // Listed before the request: a rollback (also one on unwind) resumes them,
                // whatever state the request left them in.
                self.suspended.extend(&pids);
                self.node
                    .suspend_in(
                        &pids,
                        timeout,
                        &self.suspend_group,
                        &self.suspended[..earlier],
                    )
                    .map_err(|e| InstallError::Suspend {
                        step: step.to_string(),
                        module: module.clone(),
                        reason: e.to_string(),
                    })?;
                let detail = format!("{} process(es)", pids.len());
                self.suspended_by_module
                    .entry(module.clone())
                    .or_default()
                    .extend(pids);
                Ok(detail)
            }
            Step::Load { module, .. } => {
                let loaded = self.loaded.get(module).cloned().ok_or_else(|| {
                    Self::fail(
                        step,
                        format!("{module} was not loaded before the point of no return"),
                    )
                })?;
                let previous = self.node.code().current(module);
                self.node.code().make_current(&loaded);
                self.undo.push(Undo::MakeCurrent { previous });
                Ok(format!("{module} {} is current", loaded.version()))
            }
            Step::CodeChange {
                module,
                change,
                extra,
            } => {
                let loaded = self.loaded.get(module).cloned().ok_or_else(|| {
                    Self::fail(
                        step,
                        format!("{module} was not loaded before the point of no return"),
                    )
                })?;
                let pids = self
                    .suspended_by_module
                    .get(module)
                    .cloned()
                    .unwrap_or_default();
                let direction = match change {
                    appup::CodeChange::Up { .. } => Direction::Up,
                    appup::CodeChange::Down { .. } => Direction::Down,
                };
                let restore = match self.opts.restore.as_ref().and_then(|r| r.get(module)) {
                    Some(set) if &set.version != loaded.version() => {
                        return Err(Self::fail(
                            step,
                            format!(
                                "the snapshot holds states of {module} {}, this step goes to {}",
                                set.version,
                                loaded.version()
                            ),
                        ));
                    }
                    Some(set) => Some(set.states.clone()),
                    None => None,
                };
                let restored = restore
                    .as_ref()
                    .map_or(0, |r| pids.iter().filter(|p| r.contains_key(p)).count());
                let request = CodeChange {
                    module: loaded,
                    direction,
                    extra: encode_value(extra),
                    restore,
                };
                let restored = if restored > 0 {
                    format!(", {restored} restored from the snapshot")
                } else {
                    String::new()
                };
                if let Some(suspend_timeout) = self.fused_timeouts.remove(module) {
                    self.first_suspend.get_or_insert_with(Instant::now);
                    let migrate_timeout = self.opts.code_change_timeout;
                    // Listed before the request, as above: a rollback puts back and resumes
                    // whatever the request did to them (a no-op for the others).
                    self.suspended.extend(&pids);
                    self.staged.extend(&pids);
                    self.migrations_left = self.migrations_left.saturating_sub(1);
                    let fused = self.node.suspend_and_change_processes(
                        std::mem::take(&mut self.fused_processes),
                        &request,
                        suspend_timeout,
                        migrate_timeout,
                        &self.suspend_group,
                    );
                    return match fused {
                        Ok(live) => Ok(format!(
                            "{} state(s) migrated{restored} (each process suspended in the \
                                 same step)",
                            self.fused_done.insert(live).len()
                        )),
                        Err(UpgradeError::CodeChange(CodeChangeError::Failed {
                            pid,
                            reason,
                            ..
                        })) => Err(InstallError::CodeChange {
                            step: step.to_string(),
                            module: module.clone(),
                            pid,
                            reason,
                        }),
                        Err(UpgradeError::CodeChange(CodeChangeError::Timeout {
                            pids,
                            timeout_ms,
                        })) => Err(Self::stuck(step, module, &pids, timeout_ms)),
                        Err(UpgradeError::Suspend(e)) => Err(InstallError::Suspend {
                            step: step.to_string(),
                            module: module.clone(),
                            reason: e.to_string(),
                        }),
                        Err(e) => Err(Self::fail(step, e.to_string())),
                    };
                }
                self.staged.extend(&pids);
                self.migrations_left = self.migrations_left.saturating_sub(1);
                match self
                    .node
                    .change_code(&pids, &request, self.opts.code_change_timeout)
                {
                    Ok(()) => Ok(format!("{} state(s) migrated{restored}", pids.len())),
                    Err(CodeChangeError::Failed { pid, reason, .. }) => {
                        Err(InstallError::CodeChange {
                            step: step.to_string(),
                            module: module.clone(),
                            pid,
                            reason,
                        })
                    }
                    Err(CodeChangeError::Timeout { pids, timeout_ms }) => {
                        Err(Self::stuck(step, module, &pids, timeout_ms))
                    }
                    Err(e) => Err(Self::fail(step, e.to_string())),
                }
            }
            // Resumes wait for the commit, so that a later failure can still restore the
            // old states untouched. Meanwhile the module's processes answer calls from the
            // processes this hop starts after its migrations (an `apply`, a new child's
            // `init`): those would otherwise wait for the commit, fail, and roll the hop back
            // every time (issue 17, finding 3). What such a call changes is undone with the
            // rest by a rollback.
            Step::Resume { module } => {
                if self.migrations_left == 0 {
                    // Every state is migrated: the whole group may take such calls, set
                    // once for all (at a million processes, one pass would lengthen the
                    // pause by a lookup and a lock per process).
                    self.suspend_group
                        .admit_calls_from(self.node.inner.next_pid_now());
                } else {
                    let pids = self
                        .suspended_by_module
                        .get(module)
                        .cloned()
                        .unwrap_or_default();
                    self.node.admit_calls_from_new_processes(&pids);
                }
                Ok("at commit; calls from processes this hop starts are answered".into())
            }
            Step::Remove { module } => {
                self.deferred.push(Deferred::Remove {
                    module: module.clone(),
                });
                Ok("at commit".into())
            }
            Step::Purge { module, mode } => {
                self.deferred.push(Deferred::Purge {
                    module: module.clone(),
                    brutal: *mode == appup::Purge::Brutal,
                });
                Ok("at commit".into())
            }
            Step::UpdateSupervisor { supervisor, .. } => {
                let sup = self.supervisor(step, supervisor)?;
                let wanted = self.target.supervisor(supervisor).ok_or_else(|| {
                    Self::fail(
                        step,
                        format!("supervisor {supervisor} is not in the target release"),
                    )
                })?;
                let before = self
                    .node
                    .supervisor_flags(sup)
                    .map_err(|e| Self::fail(step, e.to_string()))?;
                let (strategy, intensity, period) = supervisor_flags(wanted);
                self.node
                    .set_supervisor_flags(sup, strategy, intensity, period)
                    .map_err(|e| Self::fail(step, e.to_string()))?;
                self.undo.push(Undo::Flags { sup, flags: before });
                Ok(format!("{strategy:?}, {intensity} in {period:?}"))
            }
            Step::StartChild { supervisor, child } => {
                let sup = self.supervisor(step, supervisor)?;
                let spec = child_spec(Self::app_of(supervisor), child, &HashMap::new());
                let pid = self
                    .node
                    .start_for_hop(sup, spec)
                    .map_err(|e| Self::fail(step, e.to_string()))?;
                self.undo.push(Undo::StartedChild {
                    sup,
                    id: child.id.clone(),
                });
                Ok(format!("started as {pid}"))
            }
            Step::StopChild { supervisor, child } => {
                let sup = self.supervisor(step, supervisor)?;
                let old = self
                    .current
                    .release
                    .supervisor(supervisor)
                    .and_then(|s| s.children.iter().find(|c| &c.id == child))
                    .map(|c| child_spec(Self::app_of(supervisor), c, &HashMap::new()));
                self.node
                    .terminate_child(sup, child)
                    .map_err(|e| Self::fail(step, e.to_string()))?;
                self.node
                    .delete_child(sup, child)
                    .map_err(|e| Self::fail(step, e.to_string()))?;
                if let Some(spec) = old {
                    self.undo.push(Undo::StoppedChild {
                        sup,
                        spec: Box::new(spec),
                    });
                }
                Ok("stopped".into())
            }
            Step::RestartChild { supervisor, child } => {
                let sup = self.supervisor(step, supervisor)?;
                let old = self
                    .current
                    .release
                    .supervisor(supervisor)
                    .and_then(|s| s.children.iter().find(|c| c.id == child.id))
                    .map(|c| child_spec(Self::app_of(supervisor), c, &HashMap::new()));
                self.node
                    .terminate_child(sup, &child.id)
                    .map_err(|e| Self::fail(step, e.to_string()))?;
                self.node
                    .delete_child(sup, &child.id)
                    .map_err(|e| Self::fail(step, e.to_string()))?;
                if let Some(spec) = old {
                    self.undo.push(Undo::StoppedChild {
                        sup,
                        spec: Box::new(spec),
                    });
                }
                let spec = child_spec(Self::app_of(supervisor), child, &HashMap::new());
                let pid = self
                    .node
                    .start_for_hop(sup, spec)
                    .map_err(|e| Self::fail(step, e.to_string()))?;
                self.undo.push(Undo::StartedChild {
                    sup,
                    id: child.id.clone(),
                });
                Ok(format!("restarted as {pid}"))
            }
            Step::StartApplication {
                application,
                start_type,
            } => {
                if *start_type == appup::StartType::Load {
                    return Ok("loaded, not started".into());
                }
                let app = self.target.application(application).ok_or_else(|| {
                    Self::fail(
                        step,
                        format!("application {application} is not in the target release"),
                    )
                })?;
                let Some(sup) = &app.supervisor else {
                    return Ok("no supervision tree".into());
                };
                let spec = supervisor_spec(application, sup, &self.loaded);
                let pid = self
                    .node
                    .start_supervisor_for_hop(spec, Some(&app_supervisor_name(application)))
                    .map_err(|e| Self::fail(step, e.to_string()))?;
                self.booted.apps.insert(application.clone(), pid);
                self.undo.push(Undo::StartedApp {
                    app: application.clone(),
                });
                Ok(format!("started as {pid}"))
            }
            Step::StopApplication { application } => {
                let Some(pid) = self.booted.apps.remove(application) else {
                    return Ok("not running".into());
                };
                if !stop_application(self.node, pid, self.opts.shutdown_timeout) {
                    return Err(Self::fail(
                        step,
                        format!("application {application} did not stop"),
                    ));
                }
                self.undo.push(Undo::StoppedApp {
                    app: application.clone(),
                });
                Ok("stopped".into())
            }
            Step::Apply {
                module,
                function,
                args,
            } => {
                let loaded = self
                    .loaded
                    .get(module)
                    .cloned()
                    .or_else(|| self.node.code().current(module))
                    .ok_or_else(|| Self::fail(step, format!("module {module} is not loaded")))?;
                let args = encode_value(&toml::Value::Array(args.clone()));
                self.node
                    .apply(&loaded, function, &args)
                    .map_err(|e| Self::fail(step, format!("{module}:{function} failed: {e}")))?;
                Ok(format!("{module}:{function} returned"))
            }
            Step::RestartNode => {
                self.restart_required = true;
                Ok("the node restarts into the new release".into())
            }
        }
    }

    /// Undoes everything after the point of no return, newest first; resumes every process.
    fn rollback(&mut self) -> usize {
        let mut undone = 0;
        self.node.rollback_code_change(&self.staged);
        undone += self.staged.len();
        // The old versions are current again before anything is started again (a child
        // stopped by the hop, an application), newest change first.
        for undo in self.undo.iter().rev() {
            if let Undo::MakeCurrent {
                previous: Some(previous),
            } = undo
            {
                self.node.code().make_current(previous);
            }
        }
        while let Some(undo) = self.undo.pop() {
            undone += 1;
            match undo {
                Undo::MakeCurrent { .. } => {}
                Undo::Flags { sup, flags } => {
                    let _ = self
                        .node
                        .set_supervisor_flags(sup, flags.0, flags.1, flags.2);
                }
                Undo::StartedChild { sup, id } => {
                    let _ = self.node.terminate_child(sup, &id);
                    let _ = self.node.delete_child(sup, &id);
                }
                Undo::StoppedChild { sup, spec } => {
                    let _ = self.node.start_for_hop(sup, *spec);
                }
                Undo::StartedApp { app } => {
                    if let Some(pid) = self.booted.apps.remove(&app) {
                        stop_application(self.node, pid, self.opts.shutdown_timeout);
                    }
                }
                Undo::StoppedApp { app } => {
                    let manifest = self.current.release.application(&app);
                    if let Some(sup) = manifest.and_then(|a| a.supervisor.as_ref()) {
                        let spec = supervisor_spec(&app, sup, &HashMap::new());
                        let _ = self
                            .node
                            .start_supervisor_for_hop(spec, Some(&app_supervisor_name(&app)));
                    }
                }
            }
        }
        self.node.resume(&self.suspended);
        // Supervisors now restart what they put off, on the old versions.
        self.hold = None;
        // A process still on a version this hop loaded was started on it during the hop
        // (not by a supervisor restart, which waited): it cannot go back to code it never
        // ran, so it is killed and its supervisor starts it again on the old version.
        for loaded in self.loaded.values() {
            if self
                .node
                .code()
                .current(loaded.name())
                .is_some_and(|c| Arc::ptr_eq(&c, loaded))
            {
                continue;
            }
            let on_it = self.node.processes_on(loaded);
            // Migrated ones get their old instance back by the request sent above.
            let staged: HashSet<Pid> = self.staged.iter().copied().collect();
            for pid in on_it.into_iter().filter(|p| !staged.contains(p)) {
                let _ = self.journal.record(&format!(
                    "rollback: {pid} was started on {} {} during the hop; killed",
                    loaded.name(),
                    loaded.version()
                ));
                self.node.exit(pid, ExitReason::Killed);
                undone += 1;
            }
        }
        for module in self.loaded.keys() {
            self.node.code().soft_purge(module);
        }
        undone
    }

    /// Makes the hop final: old instances dropped, processes resumed, deferred removals and
    /// purges done. Returns the processes migrated and the longest pause.
    fn commit(&mut self) -> (usize, Duration) {
        match self.fused_done.take() {
            // A fused hop suspended and staged exactly these (and the dead): none is left.
            Some(live) => self.node.commit_and_resume_processes(&live),
            None => {
                self.node.commit_and_resume(&self.staged);
                let staged: HashSet<Pid> = self.staged.iter().copied().collect();
                let others: Vec<Pid> = self
                    .suspended
                    .iter()
                    .filter(|p| !staged.contains(p))
                    .copied()
                    .collect();
                self.node.resume(&others);
            }
        }
        let pause = self.first_suspend.map_or(Duration::ZERO, |t| t.elapsed());
        super::defaults::apply_release_defaults(self.node, &self.current.release, self.target);
        for deferred in std::mem::take(&mut self.deferred) {
            match deferred {
                Deferred::Remove { module } => {
                    self.node.code().delete(&module);
                }
                Deferred::Purge { module, brutal } => {
                    if brutal {
                        let current = self
                            .node
                            .code()
                            .current(&module)
                            .map(|m| m.version().to_string());
                        for pid in self.node.processes_running(&module) {
                            let version = self.node.process_info(pid).and_then(|i| i.version);
                            if version != current {
                                self.node.exit(pid, ExitReason::Killed);
                            }
                        }
                    }
                    self.node.code().soft_purge(&module);
                }
            }
        }
        // Supervisors now start what they put off, on the new versions.
        self.hold = None;
        (self.staged.len(), pause)
    }
}
