//! The hooks the upgrade engine drives: suspend a set of processes between two messages,
//! change their code and state, then commit or roll back, and resume.
//!
//! Until commit, each changed process keeps its old instance (old code, old state) staged
//! beside the new one, so a failure anywhere rolls back to exactly the old state.
//! Requests travel as system messages, so they overtake ordinary messages but wait for the
//! message being handled; every process does its own migration on a scheduler thread, so N
//! processes migrate in parallel across the pool.

mod tally;

use crate::behaviour::ModuleInstance;
use crate::code_server::LoadedModule;
use crate::error::{CodeChangeError, SuspendError};
use crate::node::{Node, NodeInner};
use crate::par::{par_chunks, par_map};
use crate::process::{
    CodeSlot, ControlCx, InfoMsg, Payload, Process, SuspendGroup, SuspendNow, SysMsg,
};
use relup_module::{Direction, Pid};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally::Tally;

/// A code change to apply to the processes running a module.
#[derive(Clone, Debug)]
pub struct CodeChange {
    /// The version to switch to (already loaded and checked).
    pub module: Arc<LoadedModule>,
    /// Up (state from an older version) or down (from a newer one).
    pub direction: Direction,
    /// Encoded `extra` value from the appup instruction.
    pub extra: Vec<u8>,
    /// States to restore instead of migrating (a snapshot taken before the install that this
    /// change undoes), by pid; each was exported by `module`'s own version. Processes not in
    /// it migrate by `code_change` as usual.
    pub restore: Option<Arc<HashMap<Pid, Vec<u8>>>>,
}

impl CodeChange {
    /// A change to `module` in `direction` with the appup's encoded `extra`, migrating every
    /// state (nothing restored).
    pub fn new(module: Arc<LoadedModule>, direction: Direction, extra: Vec<u8>) -> CodeChange {
        CodeChange {
            module,
            direction,
            extra,
            restore: None,
        }
    }
}

/// What an upgrade of one module did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeReport {
    /// Processes migrated.
    pub processes: usize,
    /// Time from the first suspend to the last resume.
    pub total: Duration,
    /// Time spent finding the processes that run the module.
    pub suspend: Duration,
    /// Time spent suspending them and migrating their states (one request per process).
    pub migrate: Duration,
    /// Old versions still in use after the soft purge.
    pub still_in_use: usize,
}

/// Why an upgrade of one module failed; every process runs its old code and state again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// Suspension failed.
    #[error(transparent)]
    Suspend(#[from] SuspendError),
    /// Code change failed (rolled back).
    #[error(transparent)]
    CodeChange(#[from] CodeChangeError),
}

type Ack<T> = crossbeam_channel::Sender<(Pid, T)>;

impl Node {
    /// Sends a control request to each pid; returns the pids that are gone.
    fn control_each<T: Send + 'static>(
        &self,
        pids: &[Pid],
        ack: &Ack<T>,
        make: impl Fn(Pid, Ack<T>) -> Box<dyn FnOnce(&mut ControlCx<'_>) + Send>,
    ) -> Vec<Pid> {
        let mut gone = Vec::new();
        for &pid in pids {
            if self
                .inner
                .send_sys(pid, SysMsg::Control(make(pid, ack.clone())))
                .is_err()
            {
                gone.push(pid);
            }
        }
        gone
    }

    fn broadcast(
        &self,
        pids: &[Pid],
        make: impl Fn() -> Box<dyn FnOnce(&mut ControlCx<'_>) + Send>,
    ) {
        for &pid in pids {
            let _ = self.inner.send_sys(pid, SysMsg::Control(make()));
        }
    }

    /// Suspends every pid once it has finished its current message; their mailboxes keep
    /// filling. On timeout (or a process that is gone) every one is resumed and the error
    /// names the ones that did not answer.
    ///
    /// While it waits, those already suspended still answer calls (one that is busy may be
    /// mid-call to one of them); once all are suspended, none does.
    pub fn suspend(&self, pids: &[Pid], timeout: Duration) -> Result<(), SuspendError> {
        self.suspend_in(pids, timeout, &SuspendGroup::new(), &[])
    }

    /// [`Node::suspend`] as one step of a hop whose earlier suspends (of `earlier`) are in
    /// `group`: those answer calls too while this one waits.
    pub(crate) fn suspend_in(
        &self,
        pids: &[Pid],
        timeout: Duration,
        group: &Arc<SuspendGroup>,
        earlier: &[Pid],
    ) -> Result<(), SuspendError> {
        group.set_open(true);
        // A process an earlier step suspended may hold a call from one of `pids`, queued
        // while the group was closed.
        for &pid in earlier {
            if let Some(process) = self.inner.lookup(pid)
                && process.wake_for_admitted()
            {
                self.inner.scheduler.schedule(process);
            }
        }
        let result = self.suspend_group_members(pids, timeout, group);
        group.set_open(false);
        result
    }

    fn suspend_group_members(
        &self,
        pids: &[Pid],
        timeout: Duration,
        group: &Arc<SuspendGroup>,
    ) -> Result<(), SuspendError> {
        let (tx, rx) = crossbeam_channel::unbounded::<(Pid, ())>();
        let mut missing = self.control_each(pids, &tx, |pid, ack| {
            let group = group.clone();
            Box::new(move |cx: &mut ControlCx<'_>| {
                cx.suspend(&group);
                let _ = ack.send((pid, ()));
            })
        });
        drop(tx);
        let deadline = Instant::now() + timeout;
        let mut answered = std::collections::HashSet::with_capacity(pids.len());
        let expected = pids.len() - missing.len();
        while answered.len() < expected {
            match rx.recv_deadline(deadline) {
                Ok((pid, ())) => {
                    answered.insert(pid);
                }
                Err(_) => break,
            }
        }
        if answered.len() == expected && missing.is_empty() {
            return Ok(());
        }
        self.resume(pids);
        let late: Vec<Pid> = pids
            .iter()
            .filter(|p| !answered.contains(p) && !missing.contains(p))
            .copied()
            .collect();
        missing.extend(late);
        Err(SuspendError::Timeout {
            pids: missing,
            timeout_ms: timeout.as_millis() as u64,
        })
    }

    /// Lets the suspended `pids` take calls from processes spawned from now on (see
    /// `Mailbox::admit_from`) until they are resumed: a hop that keeps them suspended until
    /// its commit calls this once their migrations are done, before steps that start
    /// processes which may call them (an appup `apply`, a new child's `init`).
    pub(crate) fn admit_calls_from_new_processes(&self, pids: &[Pid]) {
        let from = self.inner.next_pid_now();
        for &pid in pids {
            if let Some(process) = self.inner.lookup(pid)
                && process.admit_calls_from(from)
            {
                self.inner.scheduler.schedule(process);
            }
        }
    }

    /// Lets suspended processes take ordinary messages again (queued ones first).
    pub fn resume(&self, pids: &[Pid]) {
        self.broadcast(pids, || Box::new(|cx: &mut ControlCx<'_>| cx.resume()));
    }

    /// Migrates each suspended pid to `change.module`: the old instance exports its state,
    /// the new module's `code_change` builds the new state. The old instance stays staged
    /// until [`Node::commit_code_change`] or [`Node::rollback_code_change`]. On any failure
    /// every pid is rolled back and the error names the first failing process.
    pub fn change_code(
        &self,
        pids: &[Pid],
        change: &CodeChange,
        timeout: Duration,
    ) -> Result<(), CodeChangeError> {
        let change = Arc::new(change.clone());
        let result = self.migrate_each(pids, timeout, move |pid, cx| migrate(pid, cx, &change));
        match result {
            Ok(()) => Ok(()),
            Err((error, _late)) => {
                self.rollback_code_change(pids);
                Err(error)
            }
        }
    }

    /// Suspends and migrates each pid in one step (one request per process instead of two):
    /// the fast path for a hop that updates a single module, where suspending everything
    /// first and migrating afterwards would only add a round of messages. On any failure
    /// every pid gets its old code and state back and is resumed.
    ///
    /// Those suspended first answer calls from the busy ones until all are suspended (see
    /// [`Node::suspend`]).
    pub fn suspend_and_change_code(
        &self,
        pids: &[Pid],
        change: &CodeChange,
        suspend_timeout: Duration,
        migrate_timeout: Duration,
    ) -> Result<(), UpgradeError> {
        let threads = self.inner.scheduler.size();
        let processes = par_map(pids, threads, |&pid| self.inner.lookup(pid));
        let group = SuspendGroup::new();
        let processes = processes.into_iter().flatten().collect();
        self.suspend_and_change_processes(
            processes,
            change,
            suspend_timeout,
            migrate_timeout,
            &group,
        )
        .map(|_| ())
    }

    /// [`Node::suspend_and_change_code`] on processes the caller holds (members of `group`);
    /// returns those migrated, for [`Node::commit_and_resume_processes`].
    pub(crate) fn suspend_and_change_processes(
        &self,
        processes: Vec<Arc<Process>>,
        change: &CodeChange,
        suspend_timeout: Duration,
        migrate_timeout: Duration,
        group: &Arc<SuspendGroup>,
    ) -> Result<Vec<Arc<Process>>, UpgradeError> {
        let timeout_ms = suspend_timeout.as_millis() as u64;
        let threads = self.inner.scheduler.size();
        // Idle processes are suspended on the spot (in parallel); busy ones are asked to
        // suspend after their current message, and say when they have. Until they all
        // have, the suspended ones answer their calls (open from the start: no call from a
        // busy one waits unadmitted in a suspended mailbox).
        group.set_open(true);
        let found = par_map(&processes, threads, |process| {
            process.try_suspend_idle(group)
        });
        // A process that has exited since the pids were taken (a crash mid-hop) has no
        // state left to migrate: it is left out, not reported as late. Its supervisor
        // restarts it once the hop is over (see `Node::hold_modules`).
        let busy: Vec<Pid> = processes
            .iter()
            .zip(&found)
            .filter(|(_, now)| **now == SuspendNow::Busy)
            .map(|(p, _)| p.pid)
            .collect();
        let live = if found.contains(&SuspendNow::Dead) {
            let mut found = found.into_iter();
            let mut live = processes;
            live.retain(|_| found.next() != Some(SuspendNow::Dead));
            live
        } else {
            processes
        };
        let pids = || live.iter().map(|p| p.pid).collect::<Vec<Pid>>();
        let (tx, rx) = crossbeam_channel::unbounded::<(Pid, ())>();
        let unreachable = self.control_each(&busy, &tx, |pid, ack| {
            let group = group.clone();
            Box::new(move |cx: &mut ControlCx<'_>| {
                cx.suspend(&group);
                let _ = ack.send((pid, ()));
            })
        });
        drop(tx);
        let deadline = Instant::now() + suspend_timeout;
        let mut answered = std::collections::HashSet::with_capacity(busy.len());
        while answered.len() + unreachable.len() < busy.len() {
            match rx.recv_deadline(deadline) {
                Ok((pid, ())) => {
                    answered.insert(pid);
                }
                Err(_) => break,
            }
        }
        group.set_open(false);
        if answered.len() < busy.len() {
            // Resumes travel as system messages, behind any suspend request still queued.
            self.resume(&pids());
            let late = busy.into_iter().filter(|p| !answered.contains(p)).collect();
            return Err(SuspendError::Timeout {
                pids: late,
                timeout_ms,
            }
            .into());
        }
        // Every process is suspended and idle: migrate them off the calling thread, spread
        // over as many threads as the node has schedulers, and wait for them until the
        // migrate timeout at most (a code_change that never returns must not hold the
        // upgrade, and the install lock with it, for ever).
        match migrate_bounded(&live, change, threads, migrate_timeout) {
            Ok(()) => Ok(live),
            Err(error) => {
                self.resume(&pids());
                Err(error.into())
            }
        }
    }

    /// Runs `step` on each pid between two of its messages and collects the answers; on
    /// failure returns the first error and the pids that did not answer in time.
    fn migrate_each(
        &self,
        pids: &[Pid],
        timeout: Duration,
        step: impl Fn(Pid, &mut ControlCx<'_>) -> Result<(), CodeChangeError> + Send + Sync + 'static,
    ) -> Result<(), (CodeChangeError, Vec<Pid>)> {
        let (tx, rx) = crossbeam_channel::unbounded::<(Pid, Result<(), CodeChangeError>)>();
        let step = Arc::new(step);
        let gone = self.control_each(pids, &tx, |pid, ack| {
            let step = step.clone();
            Box::new(move |cx: &mut ControlCx<'_>| {
                let _ = ack.send((pid, step(pid, cx)));
            })
        });
        drop(tx);
        if let Some(pid) = gone.first() {
            let error = CodeChangeError::NotEligible {
                pid: *pid,
                reason: "the process is gone".into(),
            };
            return Err((error, Vec::new()));
        }
        let deadline = Instant::now() + timeout;
        let mut answered = std::collections::HashSet::with_capacity(pids.len());
        let mut first_error = None;
        while answered.len() < pids.len() {
            match rx.recv_deadline(deadline) {
                Ok((pid, result)) => {
                    answered.insert(pid);
                    if let Err(e) = result
                        && first_error.is_none()
                    {
                        first_error = Some(e);
                    }
                }
                Err(_) => break,
            }
        }
        let late: Vec<Pid> = pids
            .iter()
            .filter(|p| !answered.contains(p))
            .copied()
            .collect();
        match first_error {
            Some(error) => Err((error, late)),
            None if late.is_empty() => Ok(()),
            None => Err((
                CodeChangeError::Timeout {
                    pids: late.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                },
                late,
            )),
        }
    }

    /// Drops the staged old instances: the change is final.
    pub fn commit_code_change(&self, pids: &[Pid]) {
        self.broadcast(pids, || {
            Box::new(|cx: &mut ControlCx<'_>| cx.code.staged_old = None)
        });
    }

    /// Commits the change and resumes each process in one step. It is done directly (the
    /// processes are suspended and idle), so when it returns every old instance is dropped
    /// and a soft purge right after sees the old version unused. Returns the pids that are
    /// gone.
    pub fn commit_and_resume(&self, pids: &[Pid]) -> Vec<Pid> {
        // Directly, in parallel: each process gives up its old instance and resumes (those
        // with queued messages go back in the run queue). The old instances are dropped only
        // after the thread's whole share is resumed: their drop (the old code's destructor,
        // freeing the old state) is off the pause.
        par_chunks(pids, self.inner.scheduler.size(), |chunk| {
            let mut gone = Vec::new();
            let mut old = Vec::with_capacity(chunk.len());
            for &pid in chunk {
                match self.inner.lookup(pid) {
                    Some(process) => self.commit_one(&process, &mut old),
                    None => gone.push(pid),
                }
            }
            drop(old);
            gone
        })
        .into_iter()
        .flatten()
        .collect()
    }

    /// [`Node::commit_and_resume`] on processes the caller holds (no lookups).
    pub(crate) fn commit_and_resume_processes(&self, processes: &[Arc<Process>]) {
        par_chunks(processes, self.inner.scheduler.size(), |chunk| {
            let mut old = Vec::with_capacity(chunk.len());
            for process in chunk {
                self.commit_one(process, &mut old);
            }
            drop(old);
        });
    }

    /// Takes `process`'s staged old instance into `old` and resumes it.
    fn commit_one(
        &self,
        process: &Arc<Process>,
        old: &mut Vec<Box<dyn crate::behaviour::Behaviour>>,
    ) {
        old.extend(process.code.lock().staged_old.take());
        if process.resume_now() {
            self.inner.scheduler.schedule(process.clone());
        }
    }

    /// Puts the staged old instances back (old code, old state); the new ones are dropped.
    pub fn rollback_code_change(&self, pids: &[Pid]) {
        self.broadcast(pids, || Box::new(restore_old));
    }

    /// Runs a control request on one process and waits for its answer.
    fn ask<T: Send + 'static>(
        &self,
        pid: Pid,
        timeout: Duration,
        body: impl FnOnce(&mut ControlCx<'_>) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let request = SysMsg::Control(Box::new(move |cx: &mut ControlCx<'_>| {
            let _ = tx.send(body(cx));
        }));
        self.inner.send_sys(pid, request).ok()?;
        rx.recv_timeout(timeout).ok()
    }

    /// Runs a process's module health check between two of its messages.
    pub fn health_check(&self, pid: Pid, timeout: Duration) -> Result<(), String> {
        self.ask(pid, timeout, |cx| {
            match cx.code.behaviour.as_mut().and_then(|b| b.as_module()) {
                Some(instance) => instance.health(),
                None => Ok(()),
            }
        })
        .unwrap_or_else(|| Err(format!("{pid} did not answer the health check in time")))
    }

    /// A copy of a process's state as its module exports it (for dry-run migrations and
    /// snapshots); the process pauses for one export only.
    pub fn export_state(
        &self,
        pid: Pid,
        timeout: Duration,
    ) -> Result<(Arc<LoadedModule>, Vec<u8>), String> {
        self.ask(pid, timeout, |cx| {
            match cx.code.behaviour.as_mut().and_then(|b| b.as_module()) {
                Some(instance) => instance
                    .export_state()
                    .map(|s| (instance.loaded().clone(), s)),
                None => Err("the process runs no module".to_string()),
            }
        })
        .unwrap_or_else(|| Err(format!("{pid} did not answer in time")))
    }

    /// Delivers a configuration change to a process's `config_change` callback. A callback
    /// that fails, panics or stops ends the process with that reason (after `terminate`),
    /// whether or not it traps exits; its supervisor restarts it as after any crash.
    pub fn config_change(&self, pid: Pid, change: &relup_module::ConfigChange) -> bool {
        let Ok(bytes) = relup_module::codec::encode(change) else {
            return false;
        };
        let node = self.inner.clone();
        let request = SysMsg::Control(Box::new(move |cx: &mut ControlCx<'_>| {
            let Some(instance) = cx.code.behaviour.as_mut().and_then(|b| b.as_module()) else {
                return;
            };
            let pcx = crate::host::ProcCx {
                node: &node,
                process: cx.process,
            };
            if let crate::behaviour::Flow::Stop(reason) = instance.config_change(&pcx, &bytes) {
                // A config_change that stops or crashes ends the process like any callback,
                // trapping exits or not: its state may be half updated.
                cx.stop(reason);
            }
        }));
        self.inner.send_sys(pid, request).is_ok()
    }

    /// Upgrades (or downgrades) every process running `change.module`'s name: suspend,
    /// migrate, make the version current, commit, resume, soft-purge. On failure nothing is
    /// changed and every process resumes on its old code.
    pub fn upgrade_module(
        &self,
        change: &CodeChange,
        timeout: Duration,
    ) -> Result<UpgradeReport, UpgradeError> {
        let start = Instant::now();
        let pids = self.processes_running(change.module.name());
        let suspended = Instant::now();
        self.suspend_and_change_code(&pids, change, timeout, timeout)?;
        let migrated = Instant::now();
        self.code().make_current(&change.module);
        self.commit_and_resume(&pids);
        let total = start.elapsed();
        let still_in_use = self.code().soft_purge(change.module.name());
        Ok(UpgradeReport {
            processes: pids.len(),
            total,
            suspend: suspended - start,
            migrate: migrated - suspended,
            still_in_use,
        })
    }
}

/// Puts a staged old instance back, if any.
fn restore_old(cx: &mut ControlCx<'_>) {
    if let Some(old) = cx.code.staged_old.take() {
        cx.code.behaviour = Some(old);
        cx.process.set_running(cx.code.behaviour.as_deref());
    }
}

/// Migrates a process that a control request runs on (the message path): checks that it is
/// suspended, builds the new instance and stages the old one.
fn migrate(pid: Pid, cx: &mut ControlCx<'_>, change: &CodeChange) -> Result<(), CodeChangeError> {
    if !cx.process.mailbox.lock().suspended {
        return Err(CodeChangeError::NotEligible {
            pid,
            reason: "it is not suspended".into(),
        });
    }
    let new = new_instance(pid, cx.code, change)?;
    cx.code.staged_old = cx.code.behaviour.replace(Box::new(new));
    cx.process.set_running(cx.code.behaviour.as_deref());
    Ok(())
}

/// Modules held by hops on one node (`NodeInner::holds`): while a hop holds a module, from
/// before it takes the module's pids until it commits or rolls back, supervisors do not start
/// or restart children of that module; they defer them, and are told when the hold ends (they
/// then start them on the version current then). A child started during the hop would
/// otherwise escape the hop's migration (started on the old code after the pids were taken)
/// or its rollback (started on the new code after `load`).
#[derive(Default)]
pub(crate) struct NodeHolds {
    /// Hops holding each module (more than one only when hops overlap).
    held: HashMap<String, usize>,
    /// Supervisor starts of each module under way (a hop waits for them before it takes
    /// the module's pids).
    starting: HashMap<String, usize>,
    /// Supervisors that deferred a start of each module, to tell when it is released.
    waiting: HashMap<String, Vec<Pid>>,
}

/// A node's [`NodeHolds`] and the condition a hop waits on for starts under way to end.
#[derive(Default)]
pub(crate) struct Holds {
    state: parking_lot::Mutex<NodeHolds>,
    changed: parking_lot::Condvar,
}

/// The info message a supervisor gets when a module it deferred starts of is released.
pub(crate) struct HoldReleased;

/// A supervisor's start of a child of a module, under way: a hop taking a hold on the
/// module waits until it is dropped.
pub(crate) struct StartTicket {
    node: Arc<NodeInner>,
    module: String,
}

impl Drop for StartTicket {
    fn drop(&mut self) {
        let holds = &self.node.holds;
        {
            let mut state = holds.state.lock();
            if let Some(n) = state.starting.get_mut(&self.module) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    state.starting.remove(&self.module);
                }
            }
        }
        holds.changed.notify_all();
    }
}

/// A supervisor (`waiter`) may start a child of `module` now: a ticket to hold while it
/// starts it. `None` while a hop holds the module: `waiter` is told with a
/// [`HoldReleased`] info message once it is released.
pub(crate) fn start_ticket(
    node: &Arc<NodeInner>,
    module: &str,
    waiter: Pid,
) -> Option<StartTicket> {
    let mut entry = node.holds.state.lock();
    if entry.held.get(module).copied().unwrap_or(0) > 0 {
        let waiting = entry.waiting.entry(module.to_string()).or_default();
        if !waiting.contains(&waiter) {
            waiting.push(waiter);
        }
        return None;
    }
    *entry.starting.entry(module.to_string()).or_default() += 1;
    drop(entry);
    Some(StartTicket {
        node: node.clone(),
        module: module.to_string(),
    })
}

/// Modules a hop holds (see [`Node::hold_modules`]); dropping it releases them and tells the
/// supervisors that deferred starts.
pub(crate) struct Hold {
    node: Arc<NodeInner>,
    modules: Vec<String>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut tell = Vec::new();
        {
            let mut entry = self.node.holds.state.lock();
            for module in &self.modules {
                let Some(n) = entry.held.get_mut(module) else {
                    continue;
                };
                *n = n.saturating_sub(1);
                if *n == 0 {
                    entry.held.remove(module);
                    tell.extend(entry.waiting.remove(module).unwrap_or_default());
                }
            }
        }
        tell.sort_unstable();
        tell.dedup();
        for pid in tell {
            let released = Payload::Internal(Box::new(HoldReleased));
            self.node.send_info(pid, InfoMsg::Message(released));
        }
    }
}

impl Node {
    /// Holds `modules` for a hop: supervisors defer starting and restarting their children
    /// until the returned hold is dropped. Waits up to `timeout` for supervisor starts of
    /// them already under way (so that the hop, taking the pids after this, sees every
    /// process); on timeout releases them and returns the modules still starting.
    pub(crate) fn hold_modules(
        &self,
        modules: &[String],
        timeout: Duration,
    ) -> Result<Hold, Vec<String>> {
        let holds = &self.inner.holds;
        let mut guard = holds.state.lock();
        for module in modules {
            *guard.held.entry(module.clone()).or_default() += 1;
        }
        let hold = Hold {
            node: self.inner.clone(),
            modules: modules.to_vec(),
        };
        let deadline = Instant::now() + timeout;
        loop {
            let starting: Vec<String> = modules
                .iter()
                .filter(|m| guard.starting.contains_key(*m))
                .cloned()
                .collect();
            if starting.is_empty() {
                return Ok(hold);
            }
            if holds.changed.wait_until(&mut guard, deadline).timed_out() {
                drop(guard);
                drop(hold);
                return Err(starting);
            }
        }
    }

    /// Processes running exactly `module` (this loaded instance, not another of its name).
    pub(crate) fn processes_on(&self, module: &Arc<LoadedModule>) -> Vec<Pid> {
        self.processes_running(module.name())
            .into_iter()
            .filter(|&pid| {
                self.inner.lookup(pid).is_some_and(|process| {
                    process
                        .running
                        .lock()
                        .module
                        .as_ref()
                        .is_some_and(|m| Arc::ptr_eq(m, module))
                })
            })
            .collect()
    }
}

/// Lists shorter than this are migrated by one thread (a thread start costs more).
const MIN_PARALLEL: usize = 64;

/// One share of a bounded migration, between the thread that migrates it and the upgrade
/// that waits for it.
#[derive(Default)]
struct Share {
    /// The upgrade stopped waiting: a migration that finishes later drops its new instance
    /// instead of installing it.
    abandoned: bool,
    /// The thread went through its whole share (or stopped at an error).
    done: bool,
    /// Index (in the share) of the process being migrated.
    at: usize,
    /// Indexes of the processes whose new instance is installed (the old one staged).
    installed: Vec<usize>,
    /// Runner counts of the installed ones.
    tally: Tally,
    /// The first failure.
    error: Option<CodeChangeError>,
}

/// Migrates suspended, idle `processes` to `change.module` on up to `threads` threads of its
/// own, and waits for them for `timeout` at most. Each process's state is exported under its
/// code lock, the new version's `code_change` runs without it, and the new instance is
/// installed (the old one staged) under the lock again. On any failure or at the timeout,
/// every installed instance is put back (old code, old state) and the error names the first
/// failing process, or the processes whose code_change had not returned: those are
/// abandoned (their thread is left to finish or not; what it builds is dropped, never
/// installed), and they keep their old code and state, which the migration never touched.
/// The caller resumes the processes.
fn migrate_bounded(
    processes: &[Arc<Process>],
    change: &CodeChange,
    threads: usize,
    timeout: Duration,
) -> Result<(), CodeChangeError> {
    let deadline = Instant::now() + timeout;
    let threads = threads.clamp(1, 16);
    let size = if threads == 1 || processes.len() < MIN_PARALLEL {
        processes.len().max(1)
    } else {
        processes.len().div_ceil(threads)
    };
    let change = Arc::new(change.clone());
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<()>();
    let mut shares = Vec::new();
    for part in processes.chunks(size) {
        let share = Arc::new(parking_lot::Mutex::new(Share::default()));
        let part: Vec<Arc<Process>> = part.to_vec();
        let (mine, theirs, done) = (share.clone(), change.clone(), done_tx.clone());
        let spawned = std::thread::Builder::new()
            .name("relup-code-change".into())
            .spawn(move || {
                migrate_share(&part, &theirs, &mine);
                let _ = done.send(());
            });
        if let Err(e) = spawned {
            let mut share = share.lock();
            share.done = true;
            share.error = Some(CodeChangeError::Failed {
                pid: processes.first().map_or(Pid(0), |p| p.pid),
                module: change.module.name().to_string(),
                reason: format!("cannot start a thread to migrate on: {e}"),
            });
        }
        shares.push(share);
    }
    drop(done_tx);
    let mut finished = shares.iter().filter(|s| s.lock().done).count();
    while finished < shares.len() {
        match done_rx.recv_deadline(deadline) {
            Ok(()) => finished += 1,
            Err(_) => break,
        }
    }
    // Stop every share where it is: from here on nothing more is installed.
    let mut first_error = None;
    let mut stuck = Vec::new();
    let mut installed = Vec::new();
    for (share, part) in shares.iter().zip(processes.chunks(size)) {
        let mut share = share.lock();
        share.abandoned = true;
        std::mem::take(&mut share.tally).apply(&change.module);
        if first_error.is_none() {
            first_error = share.error.take();
        }
        if !share.done
            && let Some(process) = part.get(share.at)
        {
            stuck.push(process.pid);
        }
        installed.extend(share.installed.iter().filter_map(|&i| part.get(i)));
    }
    let error = match (first_error, stuck.is_empty()) {
        (None, true) => return Ok(()),
        (Some(error), _) => error,
        (None, false) => CodeChangeError::Timeout {
            pids: stuck,
            timeout_ms: timeout.as_millis() as u64,
        },
    };
    for process in installed {
        let mut code = process.code.lock();
        restore_old(&mut ControlCx::new(process, &mut code));
    }
    Err(error)
}

/// Migrates one share of a bounded migration, in order, until its first failure or until
/// the upgrade abandons it.
fn migrate_share(part: &[Arc<Process>], change: &CodeChange, share: &parking_lot::Mutex<Share>) {
    for (index, process) in part.iter().enumerate() {
        {
            let mut share = share.lock();
            if share.abandoned {
                return;
            }
            share.at = index;
        }
        // The export needs the process's code; the code_change (new code, however long it
        // takes) runs without holding it.
        let exported = exported_state(process.pid, &mut process.code.lock(), change);
        let built = exported.and_then(|exported| build_instance(process.pid, exported, change));
        // The process's code first, then the share: the upgrade takes the share alone, so it
        // never waits behind a process.
        let mut code = process.code.lock();
        let mut share = share.lock();
        if share.abandoned {
            // Dropped on this thread, once nothing is held.
            drop(share);
            drop(code);
            drop(built);
            return;
        }
        let new = match built {
            Ok(new) => new,
            Err(error) => {
                share.error = Some(error);
                share.done = true;
                return;
            }
        };
        if code.behaviour.is_none() {
            // It exited while its state was migrated (an exit signal is taken while
            // suspended): nothing is left to change.
            drop(share);
            drop(code);
            drop(new);
            continue;
        }
        if code.staged_old.is_some() {
            share.error = Some(CodeChangeError::NotEligible {
                pid: process.pid,
                reason: "a previous code change is not committed".into(),
            });
            share.done = true;
            return;
        }
        code.staged_old = code.behaviour.replace(Box::new(new));
        share
            .tally
            .moved(process.replace_running(code.behaviour.as_deref()));
        share.installed.push(index);
    }
    share.lock().done = true;
}

/// What a process's new instance is built from.
enum Exported {
    /// A state this very version exported (a snapshot restore).
    Restore(Vec<u8>),
    /// The state the running version exported, and that version.
    Migrate { from_vsn: String, state: Vec<u8> },
}

/// The process's state carried into `change.module`: its instance exports the state and the
/// new version's `code_change` builds the new instance. The process is not changed.
fn new_instance(
    pid: Pid,
    code: &mut CodeSlot,
    change: &CodeChange,
) -> Result<ModuleInstance, CodeChangeError> {
    build_instance(pid, exported_state(pid, code, change)?, change)
}

/// Checks that the process can move to `change.module` and takes what its new instance is
/// built from (the running instance exports its state).
fn exported_state(
    pid: Pid,
    code: &mut CodeSlot,
    change: &CodeChange,
) -> Result<Exported, CodeChangeError> {
    let not_eligible = |reason: &str| CodeChangeError::NotEligible {
        pid,
        reason: reason.to_string(),
    };
    if code.staged_old.is_some() {
        return Err(not_eligible("a previous code change is not committed"));
    }
    let Some(instance) = code.behaviour.as_mut().and_then(|b| b.as_module()) else {
        return Err(not_eligible("it runs no module"));
    };
    let module_name = change.module.name();
    if instance.loaded().name() != module_name {
        return Err(not_eligible(&format!(
            "it runs {}, not {module_name}",
            instance.loaded().name()
        )));
    }
    let failed = |reason: String| CodeChangeError::Failed {
        pid,
        module: module_name.to_string(),
        reason,
    };
    if let Some(state) = change.restore.as_ref().and_then(|r| r.get(&pid)) {
        return Ok(Exported::Restore(state.clone()));
    }
    let state = instance
        .export_state()
        .map_err(|e| failed(format!("export_state: {e}")))?;
    Ok(Exported::Migrate {
        from_vsn: instance.loaded().version_text().to_string(),
        state,
    })
}

/// Builds the new instance of `change.module` from what the process exported (runs the new
/// version's `code_change`, or decodes a restored state).
fn build_instance(
    pid: Pid,
    exported: Exported,
    change: &CodeChange,
) -> Result<ModuleInstance, CodeChangeError> {
    let failed = |reason: String| CodeChangeError::Failed {
        pid,
        module: change.module.name().to_string(),
        reason,
    };
    match exported {
        Exported::Restore(state) => ModuleInstance::restore(change.module.clone(), &state)
            .map_err(|e| failed(format!("restore from snapshot: {e}"))),
        Exported::Migrate { from_vsn, state } => ModuleInstance::code_change(
            change.module.clone(),
            &from_vsn,
            change.direction,
            &state,
            &change.extra,
        )
        .map_err(failed),
    }
}
