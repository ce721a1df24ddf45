//! `relup check`: a plan's code changes dry-run on copies of the live states, with nothing
//! switched; and the state export that snapshots and the pre-install check share.
//!
//! Each affected process pauses for one `export_state` between two of its messages; the
//! new code's `code_change` then runs on the copy, outside the process, on as many threads as
//! the node has schedulers. Migration bugs show up on production data before an install.

use super::{HandlerError, ReleaseHandler};
use crate::behaviour::ModuleInstance;
use crate::code_server::LoadedModule;
use crate::install::{InstallError, encode_value};
use crate::par::par_map;
use crate::snapshot::SavedState;
use crate::upgrade::CodeChange;
use relup_appup::{self as appup, Plan, Step};
use relup_module::{Direction, Pid};
use semver::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many failures a report lists per module (the count covers all of them).
pub const FAILURES_LISTED: usize = 10;

/// How long one process may take to export its state.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// One process whose state could not be exported or migrated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckFailure {
    /// The process.
    pub pid: Pid,
    /// Its registered name.
    pub name: Option<String>,
    /// What went wrong (the module's own error text for a failed `code_change`).
    pub error: String,
}

/// The dry run of one module's code change(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleCheck {
    /// The module.
    pub module: String,
    /// The version the migrated states end in.
    pub to: String,
    /// Processes that run the module now.
    pub processes: usize,
    /// States that migrated.
    pub migrated: usize,
    /// States that did not.
    pub failed: usize,
    /// The first [`FAILURES_LISTED`] failures.
    pub failures: Vec<CheckFailure>,
}

/// What `relup check` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The running release.
    pub from: Version,
    /// The target release.
    pub to: Version,
    /// The chain of releases the plan passes through.
    pub chain: Vec<Version>,
    /// One entry per module whose state the plan migrates.
    pub modules: Vec<ModuleCheck>,
    /// How long the whole check took, in microseconds.
    pub micros: u64,
}

impl CheckReport {
    /// States that failed, over every module.
    pub fn failed(&self) -> usize {
        self.modules.iter().map(|m| m.failed).sum()
    }

    /// One line naming the first failure, if any (for errors and the journal).
    pub fn first_failure(&self) -> Option<String> {
        self.modules.iter().find_map(|m| {
            m.failures.first().map(|f| {
                let name = f
                    .name
                    .as_deref()
                    .map_or(String::new(), |n| format!(" (registered as {n})"));
                format!(
                    "{} of {} {} state(s) failed to migrate; first: {}{name}: {}",
                    m.failed, m.processes, m.module, f.pid, f.error
                )
            })
        })
    }
}

impl std::fmt::Display for CheckReport {
    /// One line per module, then one per listed failure.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chain: Vec<String> = self.chain.iter().map(|v| v.to_string()).collect();
        write!(f, "check {}: ", chain.join(" -> "))?;
        if self.modules.is_empty() {
            return write!(f, "no state to migrate");
        }
        for (i, m) in self.modules.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(
                f,
                "{} -> {}: {} of {} state(s) migrate",
                m.module, m.to, m.migrated, m.processes
            )?;
            if m.failed > 0 {
                write!(f, ", {} fail", m.failed)?;
            }
        }
        for m in &self.modules {
            for failure in &m.failures {
                let name = failure
                    .name
                    .as_deref()
                    .map_or(String::new(), |n| format!(" registered as {n}"));
                write!(
                    f,
                    "\n  {} {}{name}: {}",
                    m.module, failure.pid, failure.error
                )?;
            }
            if m.failed > m.failures.len() {
                write!(
                    f,
                    "\n  {} ... and {} more",
                    m.module,
                    m.failed - m.failures.len()
                )?;
            }
        }
        Ok(())
    }
}

/// A module's code changes along a plan, in hop order.
pub(crate) struct Chain {
    pub(crate) module: String,
    pub(crate) changes: Vec<CodeChange>,
}

/// A process's state, exported for a dry run or a snapshot.
pub(crate) struct Exported {
    pub(crate) pid: Pid,
    pub(crate) name: Option<String>,
    pub(crate) module: Arc<LoadedModule>,
    pub(crate) state: Vec<u8>,
}

impl Exported {
    pub(crate) fn saved(&self) -> SavedState {
        SavedState {
            pid: self.pid,
            name: self.name.clone(),
            module: self.module.name().to_string(),
            version: self.module.version().clone(),
            state: self.state.clone(),
        }
    }
}

/// The states of every process of `chains`' modules; failures to export are listed by module.
pub(crate) struct Exports {
    pub(crate) states: BTreeMap<String, Vec<Exported>>,
    pub(crate) failures: BTreeMap<String, Vec<CheckFailure>>,
}

impl ReleaseHandler {
    /// Loads the code of the plan to `target` (nothing is switched), takes each affected
    /// process's state, and runs the new `code_change` on a copy of it.
    pub fn check(&self, target: &Version) -> Result<CheckReport, HandlerError> {
        // Not beside an install: states exported mid-install belong to processes that are
        // being migrated, and the check reported false failures (issue 16).
        let _one_at_a_time = self.installing.try_lock().ok_or_else(|| self.busy())?;
        let started = Instant::now();
        let plan = self.plan(target)?;
        let chains = self.migration_chains(&plan)?;
        let exports = self.export_states(&chains);
        Ok(self.dry_run(&plan, &chains, &exports, started))
    }

    /// Loads (and checks) every library the plan loads, and groups its code changes by
    /// module. Nothing becomes current.
    pub(crate) fn migration_chains(&self, plan: &Plan) -> Result<Vec<Chain>, HandlerError> {
        let known = self.known_with_statuses()?;
        let running = self.running().release.version;
        let fail = |error: InstallError| HandlerError::Install {
            running: running.clone(),
            error,
        };
        let mut chains: Vec<Chain> = Vec::new();
        for hop in &plan.hops {
            let release = known
                .iter()
                .find(|k| k.release.version == hop.to)
                .map(|k| &k.release)
                .ok_or_else(|| HandlerError::Unknown {
                    version: hop.to.clone(),
                    known: String::new(),
                })?;
            let dir = self.root.release_dir(&hop.to);
            let mut loaded = BTreeMap::new();
            for step in &hop.steps {
                match step {
                    Step::LoadObjectCode {
                        application,
                        module,
                        ..
                    } => {
                        let manifest = release
                            .application(application)
                            .and_then(|a| a.modules.iter().find(|m| &m.name == module))
                            .ok_or_else(|| {
                                fail(InstallError::Step {
                                    step: step.to_string(),
                                    reason: format!("module {module} is not in release {}", hop.to),
                                })
                            })?;
                        let module_code = crate::install::load_checked(
                            &self.node,
                            &dir,
                            manifest,
                            &step.to_string(),
                        )
                        .map_err(fail)?;
                        loaded.insert(module.clone(), module_code);
                    }
                    Step::CodeChange {
                        module,
                        change,
                        extra,
                    } => {
                        let Some(code) = loaded.get(module).cloned() else {
                            continue;
                        };
                        let direction = match change {
                            appup::CodeChange::Up { .. } => Direction::Up,
                            appup::CodeChange::Down { .. } => Direction::Down,
                        };
                        let change = CodeChange::new(code, direction, encode_value(extra));
                        match chains.iter_mut().find(|c| &c.module == module) {
                            Some(chain) => chain.changes.push(change),
                            None => chains.push(Chain {
                                module: module.clone(),
                                changes: vec![change],
                            }),
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(chains)
    }

    /// Exports the state of every process running a module of `chains`, one process at a time
    /// per thread; each process pauses for its own export only.
    pub(crate) fn export_states(&self, chains: &[Chain]) -> Exports {
        let mut exports = Exports {
            states: BTreeMap::new(),
            failures: BTreeMap::new(),
        };
        let threads = self.node.schedulers().max(2);
        for chain in chains {
            let pids = self.node.processes_running(&chain.module);
            let results = par_map(&pids, threads, |&pid| {
                let name = self.node.process_info(pid).and_then(|i| i.name);
                match self.node.export_state(pid, EXPORT_TIMEOUT) {
                    Ok((module, state)) => Ok(Exported {
                        pid,
                        name,
                        module,
                        state,
                    }),
                    // A process that exited meanwhile has nothing to migrate.
                    Err(_) if !self.node.is_alive(pid) => Err(None),
                    Err(error) => Err(Some(CheckFailure {
                        pid,
                        name,
                        error: format!("export_state: {error}"),
                    })),
                }
            });
            let states = exports.states.entry(chain.module.clone()).or_default();
            let failures = exports.failures.entry(chain.module.clone()).or_default();
            for result in results {
                match result {
                    Ok(exported) => states.push(exported),
                    Err(Some(failure)) => failures.push(failure),
                    Err(None) => {}
                }
            }
        }
        exports
    }

    /// Runs every chain on copies of the exported states.
    pub(crate) fn dry_run(
        &self,
        plan: &Plan,
        chains: &[Chain],
        exports: &Exports,
        started: Instant,
    ) -> CheckReport {
        let threads = self.node.schedulers().max(2);
        let mut modules = Vec::new();
        for chain in chains {
            let no_states = Vec::new();
            let states = exports.states.get(&chain.module).unwrap_or(&no_states);
            let results = par_map(states, threads, |exported| {
                migrate_copy(exported, &chain.changes).map_err(|error| CheckFailure {
                    pid: exported.pid,
                    name: exported.name.clone(),
                    error,
                })
            });
            let mut failures: Vec<CheckFailure> = exports
                .failures
                .get(&chain.module)
                .cloned()
                .unwrap_or_default();
            let export_failed = failures.len();
            failures.extend(results.into_iter().filter_map(|r| r.err()));
            let failed = failures.len();
            failures.sort_by_key(|f| f.pid);
            failures.truncate(FAILURES_LISTED);
            let to = chain
                .changes
                .last()
                .map_or(String::new(), |c| c.module.version().to_string());
            modules.push(ModuleCheck {
                module: chain.module.clone(),
                to,
                processes: states.len() + export_failed,
                migrated: states.len() - (failed - export_failed),
                failed,
                failures,
            });
        }
        CheckReport {
            from: plan
                .chain
                .first()
                .cloned()
                .unwrap_or_else(|| Version::new(0, 0, 0)),
            to: plan
                .chain
                .last()
                .cloned()
                .unwrap_or_else(|| Version::new(0, 0, 0)),
            chain: plan.chain.clone(),
            modules,
            micros: started.elapsed().as_micros() as u64,
        }
    }
}

/// Runs a chain of code changes on a copy of one state; the instances built are dropped.
fn migrate_copy(exported: &Exported, changes: &[CodeChange]) -> Result<(), String> {
    let mut from_vsn = exported.module.version().to_string();
    let mut state = exported.state.clone();
    let last = changes.len().saturating_sub(1);
    for (i, change) in changes.iter().enumerate() {
        let mut instance = ModuleInstance::code_change(
            change.module.clone(),
            &from_vsn,
            change.direction,
            &state,
            &change.extra,
        )
        .map_err(|e| format!("code_change to {}: {e}", change.module.version()))?;
        if i < last {
            state = instance
                .export_state()
                .map_err(|e| format!("export_state of {}: {e}", change.module.version()))?;
            from_vsn = change.module.version().to_string();
        }
    }
    Ok(())
}
