//! Supervisors: one_for_one, one_for_all, rest_for_one and simple_one_for_one, with restart
//! types, restart intensity (escalating to the parent), ordered start, reverse-order shutdown
//! with per-child timeouts and a forced stop, and nesting.
//!
//! A supervisor is a process like any other, running the runtime's own [`Behaviour`]. It traps
//! exits: a child's exit arrives as an `Exit` info; an exit signal from its parent (or the
//! node) shuts it down.

use crate::behaviour::{Behaviour, CallOutcome, Flow, ProcessKind};
use crate::code_server::LoadedModule;
use crate::error::{CallError, SpawnError, SupervisorError};
use crate::host::ProcCx;
use crate::node::{ModuleRef, Node, SpawnOptions};
use crate::pidmap::ByPid;
use crate::process::{InfoMsg, Payload, SysMsg};
use relup_module::{ExitReason, Pid, Target};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a supervisor reacts when a child exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Strategy {
    /// Restart only the child that exited.
    OneForOne,
    /// Stop all other children, then restart all.
    OneForAll,
    /// Stop the children started after the one that exited, then restart it and them.
    RestForOne,
    /// Dynamic children of one template, started with `start_simple_child`; one_for_one
    /// restarts.
    SimpleOneForOne,
}

/// When a child is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Restart {
    /// Always.
    Permanent,
    /// Only after an abnormal exit (not `normal` or `shutdown`).
    Transient,
    /// Never.
    Temporary,
}

/// How a child is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Shutdown {
    /// Killed at once, without `terminate`.
    BrutalKill,
    /// Asked to shut down; killed if it has not exited after this long.
    Timeout(Duration),
    /// Asked to shut down, waited for as long as it takes (the default for supervisors).
    Infinity,
}

/// How a child starts.
#[derive(Clone, Debug)]
pub enum ChildStart {
    /// A worker running a module with encoded args.
    Module {
        /// The module (its current version at start time, or an exact version).
        module: ModuleRef,
        /// Encoded args for `init`.
        args: Vec<u8>,
    },
    /// A nested supervisor.
    Supervisor(SupervisorSpec),
}

/// One child of a supervisor.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// Unique among its siblings.
    pub id: String,
    /// What to start.
    pub start: ChildStart,
    /// When to restart it.
    pub restart: Restart,
    /// How to stop it.
    pub shutdown: Shutdown,
    /// A registered name for it.
    pub name: Option<String>,
    /// Its application (for configuration).
    pub app: Option<String>,
}

impl ChildSpec {
    /// The same spec with every module reference by name (the current version) instead of
    /// a pinned loaded version, nested supervisors included.
    pub(crate) fn unpinned(mut self) -> ChildSpec {
        self.start = match self.start {
            ChildStart::Module {
                module: ModuleRef::Loaded(m),
                args,
            } => ChildStart::Module {
                module: ModuleRef::Name(m.name().to_string()),
                args,
            },
            ChildStart::Supervisor(mut sup) => {
                sup.children = sup.children.into_iter().map(ChildSpec::unpinned).collect();
                ChildStart::Supervisor(sup)
            }
            other => other,
        };
        self
    }

    /// A permanent worker running `module` with `args`, 5 s shutdown timeout.
    pub fn worker<A: Serialize + ?Sized>(
        id: &str,
        module: impl Into<ModuleRef>,
        args: &A,
    ) -> ChildSpec {
        ChildSpec {
            id: id.to_string(),
            start: ChildStart::Module {
                module: module.into(),
                // Encoding a plain serde value into a Vec cannot fail short of a buggy
                // Serialize impl; such a child then fails its init with a decode error.
                args: relup_module::codec::encode(args).unwrap_or_default(),
            },
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(Duration::from_secs(5)),
            name: None,
            app: None,
        }
    }

    /// A permanent nested supervisor, waited for without timeout on shutdown.
    pub fn supervisor(id: &str, spec: SupervisorSpec) -> ChildSpec {
        ChildSpec {
            id: id.to_string(),
            start: ChildStart::Supervisor(spec),
            restart: Restart::Permanent,
            shutdown: Shutdown::Infinity,
            name: None,
            app: None,
        }
    }

    /// Sets the restart type.
    pub fn restart(mut self, restart: Restart) -> ChildSpec {
        self.restart = restart;
        self
    }

    /// Sets the shutdown.
    pub fn shutdown(mut self, shutdown: Shutdown) -> ChildSpec {
        self.shutdown = shutdown;
        self
    }

    /// Registers the child under `name`.
    pub fn named(mut self, name: &str) -> ChildSpec {
        self.name = Some(name.to_string());
        self
    }

    /// Puts the child in application `app`.
    pub fn app(mut self, app: &str) -> ChildSpec {
        self.app = Some(app.to_string());
        self
    }

    fn kind(&self) -> ProcessKind {
        match self.start {
            ChildStart::Module { .. } => ProcessKind::Worker,
            ChildStart::Supervisor(_) => ProcessKind::Supervisor,
        }
    }
}

/// A supervisor's flags and children.
#[derive(Clone, Debug)]
pub struct SupervisorSpec {
    /// Restart strategy.
    pub strategy: Strategy,
    /// At most this many restarts ...
    pub intensity: u32,
    /// ... within this period; one more and the supervisor gives up and exits.
    pub period: Duration,
    /// Children in start order (for simple_one_for_one: exactly one template).
    pub children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// A supervisor with OTP's default limits (1 restart in 5 s).
    pub fn new(strategy: Strategy, children: Vec<ChildSpec>) -> SupervisorSpec {
        SupervisorSpec {
            strategy,
            intensity: 1,
            period: Duration::from_secs(5),
            children,
        }
    }

    /// Sets the restart intensity: `max` restarts in `period`.
    pub fn intensity(mut self, max: u32, period: Duration) -> SupervisorSpec {
        self.intensity = max;
        self.period = period;
        self
    }
}

/// One child as `which_children` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChildInfo {
    /// Its id (the template's id for simple_one_for_one children).
    pub id: String,
    /// Its pid, if running.
    pub pid: Option<Pid>,
    /// Worker or supervisor.
    pub kind: ProcessKind,
    /// The module a worker runs (name).
    pub module: Option<String>,
}

/// Child counts as `count_children` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct ChildCounts {
    /// Child specs (dynamic children count one each).
    pub specs: usize,
    /// Running children.
    pub active: usize,
    /// Children that are supervisors.
    pub supervisors: usize,
    /// Children that are workers.
    pub workers: usize,
}

enum Request {
    WhichChildren,
    Flags,
    CountChildren,
    Start(StartWhat, StartBy),
    TerminateChild(String),
    TerminateSimple(Pid),
    DeleteChild(String),
    SetFlags {
        strategy: Strategy,
        intensity: u32,
        period: Duration,
    },
}

enum Reply {
    Children(Vec<ChildInfo>),
    Flags(Strategy, u32, Duration),
    Counts(ChildCounts),
    Started(Pid),
    /// A hop holds the child's module: the answer comes on the caller's channel once it
    /// is released (see [`StartBy::Caller`]).
    Held,
    Done,
    Failed(SupervisorError),
}

/// Which child a start request starts.
enum StartWhat {
    /// A new static child with this spec (`start_child`).
    Spec(ChildSpec),
    /// A simple_one_for_one child with these args for the template (`start_simple_child`).
    Simple(Vec<u8>),
    /// The stopped static child with this id (`restart_child`).
    Again(String),
}

/// Who asks for a start, and so whether a hop's hold on the child's module applies.
enum StartBy {
    /// The hop that holds the module (its own start and restart steps, and their undo): it
    /// starts the child on the version the hop made current, and undoes it on rollback.
    Hop,
    /// Anyone else. While a hop holds the child's module the start waits for the hop to
    /// end (a child started meanwhile would escape the hop's migration and rollback) and
    /// the answer comes on this channel; the call itself is answered [`Reply::Held`].
    Caller(crate::reply::ReplyTx),
}

/// A start put off while a hop holds the child's module, with the channel its caller
/// waits on.
struct HeldStart {
    what: StartWhat,
    reply: crate::reply::ReplyTx,
}

struct Child {
    spec: ChildSpec,
    pid: Option<Pid>,
}

/// The children of a simple_one_for_one supervisor: their init args, in start order, with
/// O(log n) insertion and removal (a mass exit of 100k children must not be quadratic).
#[derive(Default)]
struct DynamicChildren {
    by_pid: ByPid<(u64, Vec<u8>)>,
    order: std::collections::BTreeMap<u64, Pid>,
    next: u64,
}

impl DynamicChildren {
    fn insert(&mut self, pid: Pid, args: Vec<u8>) {
        self.next += 1;
        self.by_pid.insert(pid, (self.next, args));
        self.order.insert(self.next, pid);
    }

    fn remove(&mut self, pid: Pid) -> Option<Vec<u8>> {
        let (seq, args) = self.by_pid.remove(&pid)?;
        self.order.remove(&seq);
        Some(args)
    }

    fn pids(&self) -> impl Iterator<Item = Pid> + '_ {
        self.order.values().copied()
    }

    fn into_pids(self) -> Vec<Pid> {
        self.order.into_values().collect()
    }
}

/// Stops many children at once (as OTP does for simple_one_for_one): every one gets the
/// shutdown signal first, then each is waited for until the common deadline, and whoever is
/// left is killed. The total time is one shutdown timeout, not one per child.
fn stop_children_together(cx: &ProcCx<'_>, pids: &[Pid], shutdown: Shutdown) {
    let me = cx.pid();
    let mut watched = Vec::with_capacity(pids.len());
    for &pid in pids.iter().rev() {
        let Some(process) = cx.node.lookup(pid) else {
            continue;
        };
        let signal = match shutdown {
            Shutdown::BrutalKill => SysMsg::Kill,
            _ => SysMsg::Exit {
                from: me,
                reason: ExitReason::Shutdown,
            },
        };
        if cx.node.push_sys_to(&process, signal).is_ok() {
            watched.push(process);
        }
    }
    let deadline = match shutdown {
        Shutdown::BrutalKill => Some(Instant::now() + Duration::from_secs(1)),
        Shutdown::Timeout(t) => Some(Instant::now() + t),
        Shutdown::Infinity => None,
    };
    cx.node.scheduler.blocking(cx.node, || {
        for process in &watched {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if process.exit.wait(left).is_none() {
                let _ = cx.node.push_sys_to(process, SysMsg::Kill);
                if process
                    .exit
                    .wait(Some(Duration::from_millis(200)))
                    .is_none()
                {
                    crate::run::force_exit(cx.node, process, ExitReason::Killed);
                }
            }
        }
    });
}

/// A restart put off while a hop holds the child's module (see `Node::hold_modules`).
enum Deferred {
    /// Start the static child with this id (if it is still not running).
    Static(String),
    /// Start a simple_one_for_one child with these args.
    Dynamic(Vec<u8>),
}

/// Whether a child of `spec` may start now.
enum StartGate {
    /// Yes (the ticket, if any, is held while it starts).
    Go(Option<crate::upgrade::StartTicket>),
    /// A hop holds its module: the supervisor is told when it is released.
    Held,
}

pub(crate) struct Supervisor {
    strategy: Strategy,
    intensity: u32,
    period: Duration,
    children: Vec<Child>,
    template: Option<ChildSpec>,
    dynamic: DynamicChildren,
    restarts: VecDeque<Instant>,
    /// Restarts put off until a hop releases the children's module.
    deferred: Vec<Deferred>,
    /// Callers' starts put off until a hop releases the children's module.
    held_starts: Vec<HeldStart>,
}

fn module_name(start: &ChildStart) -> Option<String> {
    match start {
        ChildStart::Module {
            module: ModuleRef::Name(name),
            ..
        } => Some(name.clone()),
        ChildStart::Module {
            module: ModuleRef::Loaded(m),
            ..
        } => Some(m.name().to_string()),
        ChildStart::Supervisor(_) => None,
    }
}

/// Starts one child linked to the supervisor behind `cx`. `by_hop`: the hop holding the
/// modules asks for it, so a nested supervisor starts its children at once too (otherwise
/// it puts off those of held modules; see [`Supervisor::init`]).
fn start_child(
    cx: &ProcCx<'_>,
    spec: &ChildSpec,
    args_override: Option<&[u8]>,
    by_hop: bool,
) -> Result<Pid, SpawnError> {
    // A node taken over by handover restores the child the old node had at this place.
    if let Some(image) = cx.node.restoring.take(cx.pid().0, &spec.id) {
        return crate::handover::restore::child(cx, spec, image, by_hop);
    }
    let opts = SpawnOptions {
        name: spec.name.clone(),
        app: spec.app.clone(),
        trap_exit: false,
    };
    match &spec.start {
        ChildStart::Module { module, args } => {
            cx.node
                .spawn_module(module, args_override.unwrap_or(args), &opts, Some(cx))
        }
        ChildStart::Supervisor(sup) => {
            spawn_supervisor(cx.node, sup.clone(), opts, Some(cx), by_hop)
        }
    }
}

/// Spawns a supervisor process; `by_hop` as for [`start_child`].
pub(crate) fn spawn_supervisor(
    node: &Arc<crate::node::NodeInner>,
    spec: SupervisorSpec,
    opts: SpawnOptions,
    parent: Option<&ProcCx<'_>>,
    by_hop: bool,
) -> Result<Pid, SpawnError> {
    spawn_supervisor_as(node, None, spec, opts, parent, by_hop)
}

/// [`spawn_supervisor`] under a pid kept by a handover (`pid`), or a new one.
pub(crate) fn spawn_supervisor_as(
    node: &Arc<crate::node::NodeInner>,
    pid: Option<Pid>,
    spec: SupervisorSpec,
    mut opts: SpawnOptions,
    parent: Option<&ProcCx<'_>>,
    by_hop: bool,
) -> Result<Pid, SpawnError> {
    opts.trap_exit = true;
    node.spawn_as(
        pid.map(|p| (p, false)),
        &opts,
        parent,
        "supervisor",
        move |cx| Supervisor::init(cx, spec, by_hop).map(|s| Box::new(s) as Box<dyn Behaviour>),
    )
}

/// Stops one child: an exit signal, a wait, and a kill when the wait runs out.
fn stop_child(cx: &ProcCx<'_>, pid: Pid, shutdown: Shutdown) {
    let Some(process) = cx.node.lookup(pid) else {
        return;
    };
    let me = cx.pid();
    let shutdown_signal = || SysMsg::Exit {
        from: me,
        reason: ExitReason::Shutdown,
    };
    let (signal, wait) = match shutdown {
        Shutdown::BrutalKill => (SysMsg::Kill, Some(Duration::from_secs(1))),
        Shutdown::Timeout(t) => (shutdown_signal(), Some(t)),
        Shutdown::Infinity => (shutdown_signal(), None),
    };
    if cx.node.push_sys_to(&process, signal).is_err() {
        return;
    }
    let exited = cx
        .node
        .scheduler
        .blocking(cx.node, || process.exit.wait(wait));
    if exited.is_some() {
        return;
    }
    cx.log_warn(&format!(
        "child {pid} did not shut down in time; killing it"
    ));
    let _ = cx.node.push_sys_to(&process, SysMsg::Kill);
    let killed = cx.node.scheduler.blocking(cx.node, || {
        process.exit.wait(Some(Duration::from_millis(200)))
    });
    if killed.is_none() {
        crate::run::force_exit(cx.node, &process, ExitReason::Killed);
    }
}

impl Supervisor {
    /// Starts the children in order. Unless the hop itself starts this supervisor
    /// (`by_hop`), a child whose module a hop holds is not started now but once the hop is
    /// over, on the version current then (as a restart would be).
    fn init(cx: &ProcCx<'_>, spec: SupervisorSpec, by_hop: bool) -> Result<Supervisor, ExitReason> {
        let mut sup = Supervisor {
            strategy: spec.strategy,
            intensity: spec.intensity,
            period: spec.period,
            children: Vec::new(),
            template: None,
            dynamic: DynamicChildren::default(),
            restarts: VecDeque::new(),
            deferred: Vec::new(),
            held_starts: Vec::new(),
        };
        if spec.strategy == Strategy::SimpleOneForOne {
            let mut children = spec.children.into_iter();
            match (children.next(), children.next()) {
                (Some(template), None) => sup.template = Some(template.unpinned()),
                _ => {
                    return Err(ExitReason::Error(
                        "a simple_one_for_one supervisor needs exactly one child template".into(),
                    ));
                }
            }
            return Ok(sup);
        }
        let mut seen = std::collections::HashSet::new();
        for spec in &spec.children {
            if !seen.insert(spec.id.clone()) {
                return Err(ExitReason::Error(format!(
                    "duplicate child id {:?}",
                    spec.id
                )));
            }
        }
        for spec in spec.children {
            let _ticket = match (by_hop, Self::gate(cx, &spec)) {
                (true, _) => None,
                (false, StartGate::Go(ticket)) => ticket,
                (false, StartGate::Held) => {
                    sup.deferred.push(Deferred::Static(spec.id.clone()));
                    sup.children.push(Child {
                        spec: spec.unpinned(),
                        pid: None,
                    });
                    continue;
                }
            };
            match start_child(cx, &spec, None, by_hop) {
                Ok(pid) => sup.children.push(Child {
                    // Restarts run the module's current version, as in OTP: after an
                    // upgrade a crashed child comes back on the new code, not the code it
                    // was first started with.
                    spec: spec.unpinned(),
                    pid: Some(pid),
                }),
                Err(error) => {
                    sup.stop_all(cx);
                    return Err(ExitReason::Error(format!(
                        "child {:?} failed to start: {error}",
                        spec.id
                    )));
                }
            }
        }
        Ok(sup)
    }

    /// Stops every child, in reverse start order.
    fn stop_all(&mut self, cx: &ProcCx<'_>) {
        for index in (0..self.children.len()).rev() {
            self.stop_at(cx, index);
        }
        if let Some(template) = &self.template {
            let pids = std::mem::take(&mut self.dynamic).into_pids();
            stop_children_together(cx, &pids, template.shutdown);
        }
    }

    fn stop_at(&mut self, cx: &ProcCx<'_>, index: usize) {
        if let Some(pid) = self.children[index].pid.take() {
            stop_child(cx, pid, self.children[index].spec.shutdown);
        }
    }

    /// Records a restart; false when the intensity is exceeded.
    fn note_restart(&mut self, cx: &ProcCx<'_>) -> bool {
        cx.node
            .restarts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let label = cx.process.name.lock().clone();
        cx.node
            .metrics
            .restart(&label.unwrap_or_else(|| cx.pid().to_string()));
        let now = Instant::now();
        self.restarts.push_back(now);
        while let Some(first) = self.restarts.front() {
            if now.duration_since(*first) > self.period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        self.restarts.len() as u64 <= u64::from(self.intensity)
    }

    fn should_restart(restart: Restart, reason: &ExitReason) -> bool {
        match restart {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_clean(),
            Restart::Temporary => false,
        }
    }

    /// Whether a restart of a child of `spec` may go now: not while a hop holds its module
    /// (it would run code the hop is replacing, outside the hop's migration and rollback).
    fn gate(cx: &ProcCx<'_>, spec: &ChildSpec) -> StartGate {
        match module_name(&spec.start) {
            None => StartGate::Go(None),
            Some(module) => match crate::upgrade::start_ticket(cx.node, &module, cx.pid()) {
                Some(ticket) => StartGate::Go(Some(ticket)),
                None => StartGate::Held,
            },
        }
    }

    /// Starts the restarts that were put off while a hop held their module (told by
    /// [`crate::upgrade::HoldReleased`]); those still held are put off again.
    fn restart_deferred(&mut self, cx: &ProcCx<'_>) -> Flow {
        for held in std::mem::take(&mut self.held_starts) {
            if let Some((answer, reply)) = self.try_start(cx, held.what, held.reply) {
                reply.send(Ok(Payload::Internal(Box::new(answer))));
            }
        }
        for deferred in std::mem::take(&mut self.deferred) {
            let flow = match deferred {
                Deferred::Static(id) => match self.index_of(&id) {
                    Ok(index) => self.restart_range(cx, index..index + 1),
                    Err(_) => Flow::Continue,
                },
                Deferred::Dynamic(args) => self.restart_dynamic(cx, args),
            };
            if let Flow::Stop(reason) = flow {
                return Flow::Stop(reason);
            }
        }
        Flow::Continue
    }

    /// Starts children `range` in order, retrying failures while the intensity allows. A
    /// child whose module a hop holds is put off until the hop is over.
    fn restart_range(&mut self, cx: &ProcCx<'_>, range: std::ops::Range<usize>) -> Flow {
        for index in range {
            if self.children[index].pid.is_some() {
                continue;
            }
            loop {
                let _ticket = match Self::gate(cx, &self.children[index].spec) {
                    StartGate::Go(ticket) => ticket,
                    StartGate::Held => {
                        let id = self.children[index].spec.id.clone();
                        self.deferred.push(Deferred::Static(id));
                        break;
                    }
                };
                match start_child(cx, &self.children[index].spec, None, false) {
                    Ok(pid) => {
                        self.children[index].pid = Some(pid);
                        break;
                    }
                    Err(error) => {
                        cx.log_warn(&format!(
                            "restart of child {:?} failed: {error}",
                            self.children[index].spec.id
                        ));
                        if !self.note_restart(cx) {
                            return self.give_up(cx);
                        }
                    }
                }
            }
        }
        Flow::Continue
    }

    fn give_up(&mut self, cx: &ProcCx<'_>) -> Flow {
        cx.node.log(
            0,
            Some(cx.process),
            "reached maximum restart intensity; shutting down",
        );
        Flow::Stop(ExitReason::Error(
            "shutdown: reached_max_restart_intensity".into(),
        ))
    }

    /// Restarts a simple_one_for_one child with `args`, retrying failures while the
    /// intensity allows; put off while a hop holds the template's module.
    fn restart_dynamic(&mut self, cx: &ProcCx<'_>, args: Vec<u8>) -> Flow {
        let Some(template) = self.template.clone() else {
            return Flow::Continue;
        };
        loop {
            let _ticket = match Self::gate(cx, &template) {
                StartGate::Go(ticket) => ticket,
                StartGate::Held => {
                    self.deferred.push(Deferred::Dynamic(args));
                    return Flow::Continue;
                }
            };
            if !self.note_restart(cx) {
                return self.give_up(cx);
            }
            match start_child(cx, &template, Some(&args), false) {
                Ok(new_pid) => {
                    self.dynamic.insert(new_pid, args);
                    return Flow::Continue;
                }
                Err(error) => cx.log_warn(&format!(
                    "restart of a {:?} child failed: {error}",
                    template.id
                )),
            }
        }
    }

    fn child_exited(&mut self, cx: &ProcCx<'_>, pid: Pid, reason: ExitReason) -> Flow {
        if let Some(args) = self.dynamic.remove(pid) {
            let Some(template) = self.template.clone() else {
                return Flow::Continue;
            };
            if !Self::should_restart(template.restart, &reason) {
                return Flow::Continue;
            }
            return self.restart_dynamic(cx, args);
        }
        let Some(index) = self.children.iter().position(|c| c.pid == Some(pid)) else {
            return Flow::Continue;
        };
        self.children[index].pid = None;
        let restart = self.children[index].spec.restart;
        if !Self::should_restart(restart, &reason) {
            if restart == Restart::Temporary {
                self.children.remove(index);
            }
            return Flow::Continue;
        }
        if !self.note_restart(cx) {
            return self.give_up(cx);
        }
        let id = self.children[index].spec.id.clone();
        match self.strategy {
            Strategy::OneForOne | Strategy::SimpleOneForOne => {}
            Strategy::OneForAll => {
                for other in (0..self.children.len()).rev() {
                    self.stop_at(cx, other);
                }
            }
            Strategy::RestForOne => {
                for other in (index + 1..self.children.len()).rev() {
                    self.stop_at(cx, other);
                }
            }
        }
        // Temporary siblings stopped along the way are not restarted: they go.
        self.children
            .retain(|c| c.pid.is_some() || c.spec.restart != Restart::Temporary || c.spec.id == id);
        let index = self
            .children
            .iter()
            .position(|c| c.spec.id == id)
            .unwrap_or(0);
        let range = match self.strategy {
            Strategy::OneForOne | Strategy::SimpleOneForOne => index..index + 1,
            Strategy::OneForAll => 0..self.children.len(),
            Strategy::RestForOne => index..self.children.len(),
        };
        self.restart_range(cx, range)
    }

    fn which_children(&self) -> Vec<ChildInfo> {
        let mut list: Vec<ChildInfo> = self
            .children
            .iter()
            .map(|c| ChildInfo {
                id: c.spec.id.clone(),
                pid: c.pid,
                kind: c.spec.kind(),
                module: module_name(&c.spec.start),
            })
            .collect();
        if let Some(template) = &self.template {
            list.extend(self.dynamic.pids().map(|pid| ChildInfo {
                id: template.id.clone(),
                pid: Some(pid),
                kind: template.kind(),
                module: module_name(&template.start),
            }));
        }
        list
    }

    fn count_children(&self) -> ChildCounts {
        let mut counts = ChildCounts::default();
        let mut add = |kind: ProcessKind, running: bool| {
            counts.specs += 1;
            counts.active += usize::from(running);
            match kind {
                ProcessKind::Worker => counts.workers += 1,
                ProcessKind::Supervisor => counts.supervisors += 1,
            }
        };
        for child in &self.children {
            add(child.spec.kind(), child.pid.is_some());
        }
        if let Some(template) = &self.template {
            for _ in self.dynamic.pids() {
                add(template.kind(), true);
            }
        }
        counts
    }

    fn index_of(&self, id: &str) -> Result<usize, SupervisorError> {
        self.children
            .iter()
            .position(|c| c.spec.id == id)
            .ok_or_else(|| SupervisorError::NoChild(id.to_string()))
    }

    /// Why a start of `what` is refused before it is tried (or put off), if it is.
    fn refusal(&self, what: &StartWhat) -> Option<Reply> {
        let simple = self.strategy == Strategy::SimpleOneForOne;
        let failed = |error| Some(Reply::Failed(error));
        match what {
            StartWhat::Simple(_) if !simple => failed(self.unsupported("start_simple_child")),
            StartWhat::Simple(_) => None,
            _ if simple => failed(self.unsupported("a static child request")),
            StartWhat::Spec(spec) => {
                let held = self
                    .held_starts
                    .iter()
                    .any(|h| matches!(&h.what, StartWhat::Spec(other) if other.id == spec.id));
                if held || self.children.iter().any(|c| c.spec.id == spec.id) {
                    return failed(SupervisorError::DuplicateChild(spec.id.clone()));
                }
                None
            }
            StartWhat::Again(id) => match self.index_of(id) {
                Ok(index) if self.children[index].pid.is_some() => failed(
                    SupervisorError::Unsupported(format!("child {id:?} is running")),
                ),
                Ok(_) => None,
                Err(e) => failed(e),
            },
        }
    }

    fn unsupported(&self, what: &str) -> SupervisorError {
        SupervisorError::Unsupported(format!(
            "{what} is not supported by a {:?} supervisor",
            self.strategy
        ))
    }

    /// The module a start of `what` runs (none for a nested supervisor).
    fn module_of(&self, what: &StartWhat) -> Option<String> {
        match what {
            StartWhat::Spec(spec) => module_name(&spec.start),
            StartWhat::Simple(_) => self.template.as_ref().and_then(|t| module_name(&t.start)),
            StartWhat::Again(id) => self
                .index_of(id)
                .ok()
                .and_then(|index| module_name(&self.children[index].spec.start)),
        }
    }

    /// A caller's start of `what`: tried now, with the answer and the caller's channel
    /// handed back, or, while a hop holds the child's module, put off (`None`) until the
    /// supervisor is told the hold is released ([`Supervisor::restart_deferred`]).
    fn try_start(
        &mut self,
        cx: &ProcCx<'_>,
        what: StartWhat,
        reply: crate::reply::ReplyTx,
    ) -> Option<(Reply, crate::reply::ReplyTx)> {
        // `start` refuses what cannot start; a start put off is checked here first, so that
        // a refusal does not wait for the hop.
        let Some(module) = self.module_of(&what) else {
            return Some((self.start(cx, what, false), reply));
        };
        match crate::upgrade::start_ticket(cx.node, &module, cx.pid()) {
            Some(_ticket) => Some((self.start(cx, what, false), reply)),
            None => match self.refusal(&what) {
                Some(refused) => Some((refused, reply)),
                None => {
                    self.held_starts.push(HeldStart { what, reply });
                    None
                }
            },
        }
    }

    /// Starts `what` now; `by_hop` as for [`start_child`].
    fn start(&mut self, cx: &ProcCx<'_>, what: StartWhat, by_hop: bool) -> Reply {
        if let Some(refused) = self.refusal(&what) {
            return refused;
        }
        match what {
            StartWhat::Simple(args) => {
                let Some(template) = &self.template else {
                    return Reply::Failed(self.unsupported("start_simple_child"));
                };
                match start_child(cx, template, Some(&args), by_hop) {
                    Ok(pid) => {
                        self.dynamic.insert(pid, args);
                        Reply::Started(pid)
                    }
                    Err(error) => Reply::Failed(SupervisorError::Start {
                        id: template.id.clone(),
                        error,
                    }),
                }
            }
            StartWhat::Spec(spec) => match start_child(cx, &spec, None, by_hop) {
                Ok(pid) => {
                    self.children.push(Child {
                        spec,
                        pid: Some(pid),
                    });
                    Reply::Started(pid)
                }
                Err(error) => Reply::Failed(SupervisorError::Start { id: spec.id, error }),
            },
            StartWhat::Again(id) => match self.index_of(&id) {
                Ok(index) => match start_child(cx, &self.children[index].spec, None, by_hop) {
                    Ok(pid) => {
                        self.children[index].pid = Some(pid);
                        Reply::Started(pid)
                    }
                    Err(error) => Reply::Failed(SupervisorError::Start { id, error }),
                },
                Err(e) => Reply::Failed(e),
            },
        }
    }

    fn request(&mut self, cx: &ProcCx<'_>, request: Request) -> Reply {
        let simple = self.strategy == Strategy::SimpleOneForOne;
        let unsupported = |what: &str| Reply::Failed(self.unsupported(what));
        match request {
            Request::WhichChildren => Reply::Children(self.which_children()),
            Request::Flags => Reply::Flags(self.strategy, self.intensity, self.period),
            Request::CountChildren => Reply::Counts(self.count_children()),
            Request::SetFlags {
                strategy,
                intensity,
                period,
            } => {
                let dynamic = |s: Strategy| s == Strategy::SimpleOneForOne;
                if dynamic(strategy) != dynamic(self.strategy) {
                    return Reply::Failed(SupervisorError::Unsupported(format!(
                        "cannot change a {:?} supervisor into a {strategy:?} one",
                        self.strategy
                    )));
                }
                self.strategy = strategy;
                self.intensity = intensity;
                self.period = period;
                Reply::Done
            }
            Request::Start(what, StartBy::Hop) => self.start(cx, what, true),
            Request::Start(what, StartBy::Caller(reply)) => match self.try_start(cx, what, reply) {
                Some((answer, _unused)) => answer,
                None => Reply::Held,
            },
            Request::TerminateSimple(pid) => {
                let Some(template) = &self.template else {
                    return unsupported("terminating a child by pid");
                };
                if self.dynamic.remove(pid).is_none() {
                    return Reply::Failed(SupervisorError::NoChild(pid.to_string()));
                }
                stop_child(cx, pid, template.shutdown);
                Reply::Done
            }
            _ if simple => unsupported("a static child request"),
            Request::TerminateChild(id) => match self.index_of(&id) {
                Ok(index) => {
                    self.stop_at(cx, index);
                    Reply::Done
                }
                Err(e) => Reply::Failed(e),
            },
            Request::DeleteChild(id) => match self.index_of(&id) {
                Ok(index) if self.children[index].pid.is_some() => Reply::Failed(
                    SupervisorError::Unsupported(format!("child {id:?} is running")),
                ),
                Ok(index) => {
                    self.children.remove(index);
                    Reply::Done
                }
                Err(e) => Reply::Failed(e),
            },
        }
    }
}

impl Behaviour for Supervisor {
    fn handle_call(
        &mut self,
        cx: &ProcCx<'_>,
        _from: Option<Pid>,
        payload: Payload,
    ) -> CallOutcome {
        let Payload::Internal(boxed) = payload else {
            return CallOutcome::BadMessage("a supervisor takes supervisor requests only".into());
        };
        match boxed.downcast::<Request>() {
            Ok(request) => {
                CallOutcome::Reply(Payload::Internal(Box::new(self.request(cx, *request))))
            }
            Err(_) => CallOutcome::BadMessage("not a supervisor request".into()),
        }
    }

    fn handle_cast(&mut self, _cx: &ProcCx<'_>, _payload: Payload) -> Flow {
        Flow::Continue
    }

    fn handle_info(&mut self, cx: &ProcCx<'_>, info: InfoMsg) -> Flow {
        let (pid, reason) = match info {
            InfoMsg::Exit { pid, reason } => (pid, reason),
            InfoMsg::Message(Payload::Internal(message))
                if message.is::<crate::upgrade::HoldReleased>() =>
            {
                return self.restart_deferred(cx);
            }
            _ => return Flow::Continue,
        };
        let parent = cx.process.signals.lock().parent;
        if pid == Pid(0) || Some(pid) == parent {
            return Flow::Stop(reason);
        }
        self.child_exited(cx, pid, reason)
    }

    fn terminate(&mut self, cx: &ProcCx<'_>, _reason: &ExitReason) {
        self.stop_all(cx);
    }

    fn kind(&self) -> ProcessKind {
        ProcessKind::Supervisor
    }

    fn module(&self) -> Option<&Arc<LoadedModule>> {
        None
    }
}

impl Node {
    /// Starts a top-level supervisor (its children start in order before this returns).
    /// Children of modules an upgrade holds start once it is over (see
    /// [`Node::start_child`]).
    pub fn start_supervisor(
        &self,
        spec: SupervisorSpec,
        name: Option<&str>,
    ) -> Result<Pid, SpawnError> {
        self.start_top_supervisor(spec, name, false)
    }

    /// [`Node::start_supervisor`] for the hop that holds the modules (an application it
    /// starts, or starts again on rollback): every child starts at once.
    pub(crate) fn start_supervisor_for_hop(
        &self,
        spec: SupervisorSpec,
        name: Option<&str>,
    ) -> Result<Pid, SpawnError> {
        self.start_top_supervisor(spec, name, true)
    }

    fn start_top_supervisor(
        &self,
        spec: SupervisorSpec,
        name: Option<&str>,
        by_hop: bool,
    ) -> Result<Pid, SpawnError> {
        let opts = SpawnOptions {
            name: name.map(str::to_string),
            app: None,
            trap_exit: true,
        };
        // A node taken over by handover restores the top supervisor under its old pid.
        let kept = name
            .and_then(|name| self.inner.restoring.take(0, name))
            .map(|image| Pid(image.pid));
        let pid = spawn_supervisor_as(&self.inner, kept, spec, opts, None, by_hop)?;
        self.add_root(pid);
        Ok(pid)
    }

    fn supervisor_call<'t>(
        &self,
        sup: impl Into<Target<'t>>,
        request: Request,
    ) -> Result<Reply, SupervisorError> {
        let reply = self.inner.call_payload(
            &sup.into(),
            None,
            Payload::Internal(Box::new(request)),
            Duration::from_secs(60),
        )?;
        Self::supervisor_reply(reply)
    }

    /// A supervisor's answer as a [`Reply`] (a refusal as the error).
    fn supervisor_reply(reply: Payload) -> Result<Reply, SupervisorError> {
        match reply {
            Payload::Internal(boxed) => match boxed.downcast::<Reply>() {
                Ok(reply) => match *reply {
                    Reply::Failed(error) => Err(error),
                    other => Ok(other),
                },
                Err(_) => Err(CallError::BadMessage("not a supervisor reply".into()).into()),
            },
            Payload::Bytes(_) => Err(CallError::BadMessage("not a supervisor".into()).into()),
        }
    }

    /// The children of a supervisor, in start order.
    pub fn which_children<'t>(
        &self,
        sup: impl Into<Target<'t>>,
    ) -> Result<Vec<ChildInfo>, SupervisorError> {
        match self.supervisor_call(sup, Request::WhichChildren)? {
            Reply::Children(list) => Ok(list),
            _ => Err(CallError::BadMessage("unexpected supervisor reply".into()).into()),
        }
    }

    /// Counts of a supervisor's children.
    pub fn count_children<'t>(
        &self,
        sup: impl Into<Target<'t>>,
    ) -> Result<ChildCounts, SupervisorError> {
        match self.supervisor_call(sup, Request::CountChildren)? {
            Reply::Counts(counts) => Ok(counts),
            _ => Err(CallError::BadMessage("unexpected supervisor reply".into()).into()),
        }
    }

    fn started(reply: Reply) -> Result<Pid, SupervisorError> {
        match reply {
            Reply::Started(pid) => Ok(pid),
            _ => Err(CallError::BadMessage("unexpected supervisor reply".into()).into()),
        }
    }

    /// Asks `sup` to start `what` for a caller other than a hop: while a hop holds the
    /// child's module, waits until the hop is over (committed or rolled back), so that the
    /// child runs the version current then and is never left on code the hop replaced.
    fn start_as_caller<'t>(
        &self,
        sup: impl Into<Target<'t>>,
        what: StartWhat,
    ) -> Result<Pid, SupervisorError> {
        let (tx, rx) = crate::reply::channel();
        match self.supervisor_call(sup, Request::Start(what, StartBy::Caller(tx)))? {
            Reply::Held => {
                // No deadline of our own: the supervisor answers once the hop ends, or drops
                // the channel if it exits first (then so does this wait).
                let forever = Duration::from_secs(10 * 365 * 24 * 3600);
                let inner = &self.inner;
                match inner.scheduler.blocking(inner, || rx.wait(forever)) {
                    Ok(answer) => Self::started(Self::supervisor_reply(answer?)?),
                    Err(_) => Err(CallError::Exited {
                        target: "the supervisor".into(),
                        reason: ExitReason::Error(
                            "it exited before starting the child put off by an upgrade".into(),
                        ),
                    }
                    .into()),
                }
            }
            other => Self::started(other),
        }
    }

    /// Starts `what` for the hop that holds its module (its start and restart steps and
    /// their undo): at once, on the version the hop made current.
    pub(crate) fn start_for_hop(&self, sup: Pid, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        let request = Request::Start(StartWhat::Spec(spec), StartBy::Hop);
        Self::started(self.supervisor_call(sup, request)?)
    }

    /// Adds and starts a child of a static supervisor. While an upgrade holds the child's
    /// module (from before it suspends the module's processes until it commits or rolls
    /// back), the start waits for the upgrade to end.
    pub fn start_child<'t>(
        &self,
        sup: impl Into<Target<'t>>,
        spec: ChildSpec,
    ) -> Result<Pid, SupervisorError> {
        self.start_as_caller(sup, StartWhat::Spec(spec))
    }

    /// Starts a child of a simple_one_for_one supervisor with `args` for its template
    /// (waiting for an upgrade of its module to end, as [`Node::start_child`]).
    pub fn start_simple_child<'t, A: Serialize + ?Sized>(
        &self,
        sup: impl Into<Target<'t>>,
        args: &A,
    ) -> Result<Pid, SupervisorError> {
        let args = relup_module::codec::encode(args).map_err(|e| CallError::BadMessage(e.0))?;
        self.start_as_caller(sup, StartWhat::Simple(args))
    }

    /// Stops a static child (its spec stays; see `restart_child` and `delete_child`).
    pub fn terminate_child<'t>(
        &self,
        sup: impl Into<Target<'t>>,
        id: &str,
    ) -> Result<(), SupervisorError> {
        self.supervisor_call(sup, Request::TerminateChild(id.to_string()))
            .map(|_| ())
    }

    /// Stops a simple_one_for_one child by pid.
    pub fn terminate_simple_child<'t>(
        &self,
        sup: impl Into<Target<'t>>,
        pid: Pid,
    ) -> Result<(), SupervisorError> {
        self.supervisor_call(sup, Request::TerminateSimple(pid))
            .map(|_| ())
    }

    /// Starts a stopped static child again (waiting for an upgrade of its module to end,
    /// as [`Node::start_child`]).
    pub fn restart_child<'t>(
        &self,
        sup: impl Into<Target<'t>>,
        id: &str,
    ) -> Result<Pid, SupervisorError> {
        self.start_as_caller(sup, StartWhat::Again(id.to_string()))
    }

    /// Removes a stopped static child's spec.
    pub fn delete_child<'t>(
        &self,
        sup: impl Into<Target<'t>>,
        id: &str,
    ) -> Result<(), SupervisorError> {
        self.supervisor_call(sup, Request::DeleteChild(id.to_string()))
            .map(|_| ())
    }

    /// Changes a supervisor's strategy and restart intensity (appup `update_supervisor`).
    /// A static supervisor cannot become simple_one_for_one or back.
    pub fn set_supervisor_flags<'t>(
        &self,
        sup: impl Into<Target<'t>>,
        strategy: Strategy,
        intensity: u32,
        period: Duration,
    ) -> Result<(), SupervisorError> {
        let request = Request::SetFlags {
            strategy,
            intensity,
            period,
        };
        self.supervisor_call(sup, request).map(|_| ())
    }

    /// The strategy and restart limits of a supervisor.
    pub fn supervisor_flags<'t>(
        &self,
        sup: impl Into<Target<'t>>,
    ) -> Result<(Strategy, u32, Duration), SupervisorError> {
        match self.supervisor_call(sup, Request::Flags)? {
            Reply::Flags(strategy, intensity, period) => Ok((strategy, intensity, period)),
            _ => Err(CallError::BadMessage("unexpected supervisor reply".into()).into()),
        }
    }
}
