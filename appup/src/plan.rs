//! The planner: from the current release, the target release and the known releases' appups,
//! the low-level plan the runtime evaluates, hop by hop.

use crate::appup::Direction;
use crate::error::{Errors, PlanError};
use crate::instruction::{Instruction, Purge, StartType};
use crate::path::{AppChange, Graph, KnownRelease};
use crate::release::{Child, Release, Strategy};
use crate::validate::validate_entry;
use semver::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Which way a code_change goes, with the other version (as OTP's `Vsn` / `{down, Vsn}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeChange {
    /// Upgrade: the state comes from module version `from_vsn`.
    Up {
        /// The old module version.
        from_vsn: Version,
    },
    /// Downgrade: the state goes back to module version `to_vsn`.
    Down {
        /// The module version downgraded to.
        to_vsn: Version,
    },
}

/// One low-level step of a plan, evaluated in order by the runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum Step {
    /// Marks the start of a hop of a (possibly multi-hop) plan.
    Hop {
        /// Release version the hop starts from.
        from: Version,
        /// Release version the hop ends in.
        to: Version,
        /// Up or down.
        direction: Direction,
    },
    /// Open and check a module's new library (ABI, name, version, symbols) without using it.
    LoadObjectCode {
        /// The module's application.
        application: String,
        /// The module.
        module: String,
        /// The module version the library must report.
        version: Version,
        /// Library file, relative to the target release directory.
        file: String,
        /// Expected sha256 of the file.
        sha256: String,
    },
    /// Everything before this only checked; from here on the node changes.
    PointOfNoReturn,
    /// Stop an application (its supervision tree).
    StopApplication {
        /// The application.
        application: String,
    },
    /// Stop a child and delete its spec.
    StopChild {
        /// Supervisor path.
        supervisor: String,
        /// Child id.
        child: String,
    },
    /// Suspend every process running the module (each finishes its current message).
    Suspend {
        /// The module.
        module: String,
        /// How long to wait for each process, if bounded.
        timeout_ms: Option<u64>,
    },
    /// Make the checked library the module's current code (the previous becomes old).
    Load {
        /// The module.
        module: String,
        /// Its new version.
        version: Version,
        /// sha256 of the library, as checked by load_object_code.
        sha256: String,
    },
    /// Migrate the state of every suspended process of the module.
    CodeChange {
        /// The module.
        module: String,
        /// Up from a version or down to one.
        change: CodeChange,
        /// The appup's `extra` value.
        extra: toml::Value,
    },
    /// Resume the processes suspended for the module.
    Resume {
        /// The module.
        module: String,
    },
    /// Remove a module: its current code becomes old.
    Remove {
        /// The module.
        module: String,
    },
    /// Give a supervisor new flags.
    UpdateSupervisor {
        /// Supervisor path.
        supervisor: String,
        /// New strategy.
        strategy: Strategy,
        /// New intensity.
        intensity: u32,
        /// New period.
        period_secs: u32,
    },
    /// Add a child spec to a supervisor and start it.
    StartChild {
        /// Supervisor path.
        supervisor: String,
        /// The child spec (from the hop's target release).
        child: Child,
    },
    /// Stop a child and start it again with this spec.
    RestartChild {
        /// Supervisor path.
        supervisor: String,
        /// The child spec (from the hop's target release).
        child: Child,
    },
    /// Start an application (its supervision tree).
    StartApplication {
        /// The application.
        application: String,
        /// How.
        start_type: StartType,
    },
    /// Drop a module's old code.
    Purge {
        /// The module.
        module: String,
        /// Soft: when no process runs it; brutal: kill those that do.
        mode: Purge,
    },
    /// Call an exported function of a module.
    Apply {
        /// The module.
        module: String,
        /// The function.
        function: String,
        /// Its arguments.
        args: Vec<toml::Value>,
    },
    /// Restart the node into the hop's target release. Always last.
    RestartNode,
}

/// One direct transition between two releases and its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hop {
    /// Release version the hop starts from.
    pub from: Version,
    /// Release version the hop ends in.
    pub to: Version,
    /// Up (target newer) or down.
    pub direction: Direction,
    /// Low-level steps, starting with a [`Step::Hop`] marker.
    pub steps: Vec<Step>,
}

/// A complete plan from the current release to the target release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Release name.
    pub name: String,
    /// The current release version.
    pub from: Version,
    /// The target release version.
    pub to: Version,
    /// Versions passed through, `from` and `to` included; more than two when no direct path
    /// existed and the plan chains through intermediate releases.
    pub chain: Vec<Version>,
    /// The hops, in order.
    pub hops: Vec<Hop>,
}

impl Plan {
    /// Whether the plan goes through intermediate releases.
    pub fn is_multi_hop(&self) -> bool {
        self.hops.len() > 1
    }

    /// Every step of every hop, in order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.hops.iter().flat_map(|h| h.steps.iter())
    }
}

/// A native module must have the same version in both releases (see
/// [`PlanError::NativeChanged`]).
fn native_unchanged(current: &Release, target: &Release) -> Result<(), PlanError> {
    for app in &target.applications {
        for module in app.modules.iter().filter(|m| m.native) {
            let Some((_, old)) = current.module(&module.name) else {
                continue;
            };
            if old.native && old.version != module.version {
                return Err(PlanError::NativeChanged {
                    module: module.name.clone(),
                    versions: Box::new([
                        format!("{} in release {}", old.version, current.version),
                        format!("{} in release {}", module.version, target.version),
                    ]),
                });
            }
        }
    }
    Ok(())
}

/// Computes the plan from `current` to `target`.
///
/// `known` holds every release the node knows, with its status and appups; `current` and
/// `target` need not be in it (their appups are then taken from the entry of the same version
/// if any). An upgrade uses the target's `up` entries, a downgrade the current's `down` entries
/// (the newer release's appup, as in OTP). With no direct path, the shortest chain through known
/// releases is used (ties: lower versions first). Every appup entry used is validated.
pub fn plan(
    current: &Release,
    target: &Release,
    known: &[KnownRelease],
) -> Result<Plan, PlanError> {
    if current.version == target.version {
        return Err(PlanError::SameVersion {
            version: current.version.to_string(),
        });
    }
    if current.name != target.name {
        return Err(PlanError::DifferentNames {
            target: target.version.to_string(),
            target_name: target.name.clone(),
            current_name: current.name.clone(),
        });
    }
    native_unchanged(current, target)?;
    let graph = Graph::new(&[current, target], known);
    let Some(chain) = graph.chain(&current.version, &target.version) else {
        return Err(no_path(&graph, current, target, known));
    };
    let mut hops = Vec::new();
    for pair in chain.windows(2) {
        let [a, b] = pair else { continue };
        let (Some((ra, _)), Some((rb, _)), Some(changes)) =
            (graph.nodes.get(a), graph.nodes.get(b), graph.direct(a, b))
        else {
            continue;
        };
        hops.push(hop(ra, rb, &changes)?);
    }
    Ok(Plan {
        name: current.name.clone(),
        from: current.version.clone(),
        to: target.version.clone(),
        chain,
        hops,
    })
}

fn no_path(
    graph: &Graph<'_>,
    current: &Release,
    target: &Release,
    known: &[KnownRelease],
) -> PlanError {
    let up = target.version > current.version;
    let hint = if up {
        let srcs: Vec<String> = graph
            .nodes
            .keys()
            .filter(|v| graph.direct(v, &target.version).is_some())
            .map(|v| v.to_string())
            .collect();
        format!(
            "{} upgrades from {}",
            target.version,
            if srcs.is_empty() {
                "no known release".to_string()
            } else {
                srcs.join(", ")
            }
        )
    } else {
        let dsts: Vec<String> = graph
            .nodes
            .keys()
            .filter(|v| graph.direct(&current.version, v).is_some())
            .map(|v| v.to_string())
            .collect();
        format!(
            "{} downgrades to {}",
            current.version,
            if dsts.is_empty() {
                "no known release".to_string()
            } else {
                dsts.join(", ")
            }
        )
    };
    let mut ks: Vec<&KnownRelease> = known.iter().collect();
    ks.sort_by(|a, b| a.release.version.cmp(&b.release.version));
    let known = ks
        .iter()
        .map(|k| format!("{} ({})", k.release.version, k.status))
        .collect::<Vec<_>>()
        .join(", ");
    PlanError::NoPath {
        direction: if up { "upgrade" } else { "downgrade" }.into(),
        from: current.version.to_string(),
        to: target.version.to_string(),
        hint,
        known: if known.is_empty() {
            "none".into()
        } else {
            known
        },
    }
}

/// Steps collected per phase, then concatenated in phase order.
#[derive(Default)]
struct Phases {
    object: Vec<Step>,
    stop_apps: Vec<Step>,
    stop_children: Vec<Step>,
    /// Module instructions in appup order, for dependency ordering.
    modules: Vec<ModOp>,
    removes: Vec<Step>,
    sup_updates: Vec<Step>,
    start_children: Vec<Step>,
    restart_children: Vec<Step>,
    start_apps: Vec<Step>,
    purges: Vec<Step>,
    applies: Vec<Step>,
    restart_node: bool,
}

struct ModOp {
    module: String,
    depends_on: Vec<String>,
    suspend: Option<Option<u64>>,
    load: Option<Step>,
    code_change: Option<Step>,
}

impl Phases {
    fn object(&mut self, app: &str, r: &Release, module: &str) {
        let Some((_, m)) = r.module(module) else {
            return;
        };
        let already = self
            .object
            .iter()
            .any(|s| matches!(s, Step::LoadObjectCode { module: x, .. } if x.as_str() == module));
        if !already {
            self.object.push(Step::LoadObjectCode {
                application: app.to_string(),
                module: m.name.clone(),
                version: m.version.clone(),
                file: m.file.clone(),
                sha256: m.sha256.clone(),
            });
        }
    }

    fn load_step(r: &Release, module: &str) -> Option<Step> {
        r.module(module).map(|(_, m)| Step::Load {
            module: m.name.clone(),
            version: m.version.clone(),
            sha256: m.sha256.clone(),
        })
    }

    fn purge(&mut self, module: &str, mode: Purge) {
        if !self
            .purges
            .iter()
            .any(|s| matches!(s, Step::Purge { module: x, .. } if x.as_str() == module))
        {
            self.purges.push(Step::Purge {
                module: module.to_string(),
                mode,
            });
        }
    }

    fn remove(&mut self, module: &str) {
        self.removes.push(Step::Remove {
            module: module.to_string(),
        });
        self.purge(module, Purge::Soft);
    }

    fn plain_load(&mut self, app: &str, to: &Release, module: &str) {
        self.object(app, to, module);
        self.modules.push(ModOp {
            module: module.to_string(),
            depends_on: Vec::new(),
            suspend: None,
            load: Self::load_step(to, module),
            code_change: None,
        });
    }

    fn add_application(&mut self, app: &str, to: &Release, start_type: StartType) {
        if let Some(a) = to.application(app) {
            for m in &a.modules {
                self.plain_load(app, to, &m.name);
            }
        }
        self.start_apps.push(Step::StartApplication {
            application: app.to_string(),
            start_type,
        });
    }

    fn remove_application(&mut self, app: &str, from: &Release) {
        self.stop_apps.push(Step::StopApplication {
            application: app.to_string(),
        });
        if let Some(a) = from.application(app) {
            for m in &a.modules {
                self.remove(&m.name);
            }
        }
    }

    fn restart_application(&mut self, app: &str, from: &Release, to: &Release) {
        self.stop_apps.push(Step::StopApplication {
            application: app.to_string(),
        });
        let old = from.application(app);
        if let Some(a) = to.application(app) {
            for m in &a.modules {
                let same = old
                    .and_then(|o| o.modules.iter().find(|x| x.name == m.name))
                    .is_some_and(|x| x.sha256 == m.sha256);
                if !same {
                    self.plain_load(app, to, &m.name);
                    self.purge(&m.name, Purge::Soft);
                }
            }
        }
        if let Some(o) = old {
            for m in &o.modules {
                if to.module(&m.name).is_none() {
                    self.remove(&m.name);
                }
            }
        }
        self.start_apps.push(Step::StartApplication {
            application: app.to_string(),
            start_type: StartType::Permanent,
        });
    }

    fn instruction(
        &mut self,
        app: &str,
        i: &Instruction,
        from: &Release,
        to: &Release,
        dir: Direction,
    ) {
        match i {
            Instruction::LoadModule {
                module,
                purge,
                depends_on,
            } => {
                self.object(app, to, module);
                self.modules.push(ModOp {
                    module: module.clone(),
                    depends_on: depends_on.clone(),
                    suspend: None,
                    load: Self::load_step(to, module),
                    code_change: None,
                });
                self.purge(module, *purge);
            }
            Instruction::Update {
                module,
                extra,
                timeout_ms,
                purge,
                depends_on,
            } => {
                self.object(app, to, module);
                let change = match dir {
                    Direction::Up => from.module(module).map(|(_, m)| CodeChange::Up {
                        from_vsn: m.version.clone(),
                    }),
                    Direction::Down => to.module(module).map(|(_, m)| CodeChange::Down {
                        to_vsn: m.version.clone(),
                    }),
                };
                self.modules.push(ModOp {
                    module: module.clone(),
                    depends_on: depends_on.clone(),
                    suspend: Some(*timeout_ms),
                    load: Self::load_step(to, module),
                    code_change: change.map(|change| Step::CodeChange {
                        module: module.clone(),
                        change,
                        extra: extra.clone(),
                    }),
                });
                self.purge(module, *purge);
            }
            Instruction::AddModule { module, depends_on } => {
                self.object(app, to, module);
                self.modules.push(ModOp {
                    module: module.clone(),
                    depends_on: depends_on.clone(),
                    suspend: None,
                    load: Self::load_step(to, module),
                    code_change: None,
                });
            }
            Instruction::DeleteModule { module, .. } => self.remove(module),
            Instruction::AddApplication {
                application,
                start_type,
            } => self.add_application(application, to, *start_type),
            Instruction::RemoveApplication { application } => {
                self.remove_application(application, from)
            }
            Instruction::RestartApplication { application } => {
                self.restart_application(application, from, to)
            }
            Instruction::Apply {
                module,
                function,
                args,
            } => self.applies.push(Step::Apply {
                module: module.clone(),
                function: function.clone(),
                args: args.clone(),
            }),
            Instruction::UpdateSupervisor { supervisor } => {
                if let Some(s) = to.supervisor(supervisor) {
                    self.sup_updates.push(Step::UpdateSupervisor {
                        supervisor: supervisor.clone(),
                        strategy: s.strategy,
                        intensity: s.intensity,
                        period_secs: s.period_secs,
                    });
                }
            }
            Instruction::AddChild { child, supervisor } => {
                if let Some(c) = find_child(to, supervisor, child) {
                    self.start_children.push(Step::StartChild {
                        supervisor: supervisor.clone(),
                        child: c.clone(),
                    });
                }
            }
            Instruction::RemoveChild { child, supervisor } => {
                self.stop_children.push(Step::StopChild {
                    supervisor: supervisor.clone(),
                    child: child.clone(),
                })
            }
            Instruction::RestartChild { child, supervisor } => {
                if let Some(c) = find_child(to, supervisor, child) {
                    self.restart_children.push(Step::RestartChild {
                        supervisor: supervisor.clone(),
                        child: c.clone(),
                    });
                }
            }
            Instruction::RestartNode => self.restart_node = true,
        }
    }

    fn finish(self, head: Step, dir: Direction) -> Vec<Step> {
        let mut steps = vec![head];
        steps.extend(self.object);
        steps.push(Step::PointOfNoReturn);
        steps.extend(self.stop_apps);
        steps.extend(self.stop_children);
        // T: dependencies before dependents; S: dependents before dependencies.
        let t = order(&self.modules, false);
        let s = order(&self.modules, true);
        let suspended: Vec<usize> = s
            .iter()
            .copied()
            .filter(|&i| self.modules.get(i).is_some_and(|m| m.suspend.is_some()))
            .collect();
        for &i in &suspended {
            if let Some(m) = self.modules.get(i) {
                steps.push(Step::Suspend {
                    module: m.module.clone(),
                    timeout_ms: m.suspend.flatten(),
                });
            }
        }
        let load_order = if dir == Direction::Up { &t } else { &s };
        for &i in load_order {
            if let Some(Some(l)) = self.modules.get(i).map(|m| m.load.clone()) {
                steps.push(l);
            }
        }
        for &i in load_order {
            if let Some(Some(c)) = self.modules.get(i).map(|m| m.code_change.clone()) {
                steps.push(c);
            }
        }
        for &i in suspended.iter().rev() {
            if let Some(m) = self.modules.get(i) {
                steps.push(Step::Resume {
                    module: m.module.clone(),
                });
            }
        }
        steps.extend(self.removes);
        steps.extend(self.sup_updates);
        steps.extend(self.start_children);
        steps.extend(self.restart_children);
        steps.extend(self.start_apps);
        steps.extend(self.purges);
        steps.extend(self.applies);
        if self.restart_node {
            steps.push(Step::RestartNode);
        }
        steps
    }
}

/// Stable topological order of module operations: with `dependents_first` false, a module comes
/// after the modules it depends on; with true, before them. Among ready operations (and within a
/// cycle) the appup order is kept.
fn order(ops: &[ModOp], dependents_first: bool) -> Vec<usize> {
    let n = ops.len();
    let idx = |name: &str| ops.iter().position(|o| o.module == name);
    // must_precede[i] = operations that must come before i.
    let mut before: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for (i, o) in ops.iter().enumerate() {
        for d in &o.depends_on {
            if let Some(j) = idx(d) {
                if j == i {
                    continue;
                }
                if let Some(slot) = if dependents_first {
                    before.get_mut(j)
                } else {
                    before.get_mut(i)
                } {
                    slot.insert(if dependents_first { i } else { j });
                }
            }
        }
    }
    let mut done = vec![false; n];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let ready = (0..n).find(|&i| {
            !done[i]
                && before
                    .get(i)
                    .is_none_or(|b| b.iter().all(|&j| done.get(j).copied().unwrap_or(true)))
        });
        // In a cycle nothing is ready: keep appup order.
        let Some(i) = ready.or_else(|| (0..n).find(|&i| !done[i])) else {
            break;
        };
        done[i] = true;
        out.push(i);
    }
    out
}

fn find_child<'a>(r: &'a Release, supervisor: &str, child: &str) -> Option<&'a Child> {
    r.supervisor(supervisor)?
        .children
        .iter()
        .find(|c| c.id == child)
}

fn hop(from: &Release, to: &Release, changes: &[AppChange<'_>]) -> Result<Hop, PlanError> {
    let dir = if to.version > from.version {
        Direction::Up
    } else {
        Direction::Down
    };
    let mut errors = Vec::new();
    let mut ph = Phases::default();
    let mut explicit_apps: BTreeSet<String> = BTreeSet::new();
    for c in changes {
        if let AppChange::Changed { appup, entry } = c {
            if let Err(Errors(es)) = validate_entry(appup, dir, entry, from, to) {
                errors.extend(es);
            }
            for i in &entry.instructions {
                match &i.instruction {
                    Instruction::AddApplication { application, .. }
                    | Instruction::RemoveApplication { application } => {
                        explicit_apps.insert(application.clone());
                    }
                    _ => {}
                }
                ph.instruction(&appup.application, &i.instruction, from, to, dir);
            }
        }
    }
    if !errors.is_empty() {
        return Err(PlanError::Invalid {
            from: from.version.to_string(),
            to: to.version.to_string(),
            errors: Errors(errors),
        });
    }
    for c in changes {
        match c {
            AppChange::Added(app) if !explicit_apps.contains(*app) => {
                ph.add_application(app, to, StartType::Permanent)
            }
            AppChange::Removed(app) if !explicit_apps.contains(*app) => {
                ph.remove_application(app, from)
            }
            _ => {}
        }
    }
    let head = Step::Hop {
        from: from.version.clone(),
        to: to.version.clone(),
        direction: dir,
    };
    Ok(Hop {
        from: from.version.clone(),
        to: to.version.clone(),
        direction: dir,
        steps: ph.finish(head, dir),
    })
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Hop {
                from,
                to,
                direction,
            } => write!(f, "hop {from} -> {to} ({direction})"),
            Step::LoadObjectCode {
                application,
                module,
                version,
                file,
                sha256,
            } => write!(
                f,
                "load_object_code {application}/{module} {version} from {file} (sha256 {}..)",
                sha256.get(..12).unwrap_or(sha256)
            ),
            Step::PointOfNoReturn => write!(f, "point_of_no_return"),
            Step::StopApplication { application } => write!(f, "stop_application {application}"),
            Step::StopChild { supervisor, child } => write!(f, "stop_child {supervisor}/{child}"),
            Step::Suspend { module, timeout_ms } => match timeout_ms {
                Some(t) => write!(f, "suspend {module} (timeout {t} ms)"),
                None => write!(f, "suspend {module}"),
            },
            Step::Load {
                module, version, ..
            } => write!(f, "load {module} {version}"),
            Step::CodeChange {
                module,
                change,
                extra,
            } => {
                let extra = match extra {
                    toml::Value::Table(t) if t.is_empty() => String::new(),
                    other => format!(" extra {other}"),
                };
                match change {
                    CodeChange::Up { from_vsn } => {
                        write!(f, "code_change {module} up from {from_vsn}{extra}")
                    }
                    CodeChange::Down { to_vsn } => {
                        write!(f, "code_change {module} down to {to_vsn}{extra}")
                    }
                }
            }
            Step::Resume { module } => write!(f, "resume {module}"),
            Step::Remove { module } => write!(f, "remove {module}"),
            Step::UpdateSupervisor {
                supervisor,
                strategy,
                intensity,
                period_secs,
            } => write!(
                f,
                "update_supervisor {supervisor}: {} intensity {intensity} period {period_secs}s",
                strategy_name(*strategy)
            ),
            Step::StartChild { supervisor, child } => write!(
                f,
                "start_child {supervisor}/{}{}",
                child.id,
                child
                    .module
                    .as_ref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ),
            Step::RestartChild { supervisor, child } => {
                write!(f, "restart_child {supervisor}/{}", child.id)
            }
            Step::StartApplication {
                application,
                start_type,
            } => write!(f, "start_application {application} ({start_type:?})"),
            Step::Purge { module, mode } => write!(
                f,
                "purge {module} ({})",
                match mode {
                    Purge::Soft => "soft",
                    Purge::Brutal => "brutal",
                }
            ),
            Step::Apply {
                module,
                function,
                args,
            } => write!(
                f,
                "apply {module}::{function}({})",
                args.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::RestartNode => write!(f, "restart_node"),
        }
    }
}

fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::OneForOne => "one_for_one",
        Strategy::OneForAll => "one_for_all",
        Strategy::RestForOne => "rest_for_one",
        Strategy::SimpleOneForOne => "simple_one_for_one",
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.to > self.from {
            "upgrade"
        } else {
            "downgrade"
        };
        write!(f, "{kind} {} {} -> {}", self.name, self.from, self.to)?;
        if self.is_multi_hop() {
            let via: Vec<String> = self
                .chain
                .iter()
                .skip(1)
                .take(self.chain.len().saturating_sub(2))
                .map(|v| v.to_string())
                .collect();
            write!(
                f,
                ": no direct path, {} hops through {}",
                self.hops.len(),
                via.join(", ")
            )?;
        }
        writeln!(f)?;
        for (h, hop) in self.hops.iter().enumerate() {
            writeln!(
                f,
                "hop {}/{}: {} -> {} ({})",
                h + 1,
                self.hops.len(),
                hop.from,
                hop.to,
                hop.direction
            )?;
            for (i, s) in hop
                .steps
                .iter()
                .filter(|s| !matches!(s, Step::Hop { .. }))
                .enumerate()
            {
                writeln!(f, "  {:>3}. {s}", i + 1)?;
            }
        }
        Ok(())
    }
}
