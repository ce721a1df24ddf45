//! A process: pid, mailbox, signal bookkeeping, code slot and exit latch.
//!
//! Locks, each held briefly except `code`:
//! - `mailbox`: queues and the scheduling flags; every push and pop.
//! - `signals`: links, monitors, trap_exit; changed by the process itself or by its exit.
//! - `code`: the behaviour; held by the worker running the process for a whole batch.

use crate::behaviour::Behaviour;
use crate::pidmap::{PidMap, PidSet};
use parking_lot::{Condvar, Mutex};
use relup_module::{ExitReason, Pid};
use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The content of a call, cast or plain message.
pub enum Payload {
    /// Bytes encoded with `relup_module::codec` (what crosses into modules).
    Bytes(Vec<u8>),
    /// A typed value for the runtime's own behaviours (supervisor requests and replies).
    Internal(Box<dyn Any + Send>),
}

impl Payload {
    /// The bytes, if this is a byte payload.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Payload::Bytes(b) => Some(b),
            Payload::Internal(_) => None,
        }
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Payload::Internal(_) => f.write_str("Internal(..)"),
        }
    }
}

/// Where a call's reply goes.
pub(crate) use crate::reply::ReplyTx;

/// An info message for `handle_info`.
#[derive(Debug)]
pub enum InfoMsg {
    /// A plain message or a timer message.
    Message(Payload),
    /// A monitored process went down.
    Down {
        /// The monitor reference.
        reference: u64,
        /// The process that went down.
        pid: Pid,
        /// Its exit reason.
        reason: ExitReason,
    },
    /// A trapped exit signal from a linked process.
    Exit {
        /// The linked process.
        pid: Pid,
        /// Its exit reason.
        reason: ExitReason,
    },
    /// An event of a TCP port the process owns (see [`crate::ports`]).
    Tcp(crate::ports::TcpEvent),
}

/// A message in a process's ordinary mailbox (held back while the process is suspended).
pub(crate) enum Envelope {
    Call {
        from: Option<Pid>,
        payload: Payload,
        reply: ReplyTx,
    },
    Cast(Payload),
    Info(InfoMsg),
}

/// A system message: handled before ordinary messages, even while suspended.
pub(crate) enum SysMsg {
    /// An exit signal (from a link, or an explicit exit); trappable.
    Exit {
        from: Pid,
        reason: ExitReason,
    },
    /// The untrappable kill: the process exits with reason `killed`, without terminate.
    Kill,
    Link(Pid),
    Unlink(Pid),
    Monitor {
        from: Pid,
        reference: u64,
    },
    Demonitor {
        reference: u64,
    },
    /// Run a closure on the process's code between two messages (suspend, code change, ...).
    Control(Box<dyn FnOnce(&mut ControlCx<'_>) + Send>),
}

/// What a control closure can touch: the code slot, the suspension flag, and whether the
/// process exits after the closure.
pub(crate) struct ControlCx<'a> {
    pub(crate) process: &'a Arc<Process>,
    pub(crate) code: &'a mut CodeSlot,
    /// Set by [`ControlCx::stop`]: the process exits with this reason once the closure
    /// returns.
    pub(crate) stop: Option<ExitReason>,
}

impl<'a> ControlCx<'a> {
    /// A control context on `process`'s `code`, the process not asked to exit.
    pub(crate) fn new(process: &'a Arc<Process>, code: &'a mut CodeSlot) -> ControlCx<'a> {
        ControlCx {
            process,
            code,
            stop: None,
        }
    }

    /// Makes the process exit with `reason` (running `terminate`) once the closure returns,
    /// as when one of its callbacks stops or crashes: the exit is the process's own, not a
    /// signal, so trapping exits does not turn it into a message.
    pub(crate) fn stop(&mut self, reason: ExitReason) {
        self.stop = Some(reason);
    }

    /// Stops taking ordinary messages (they keep queueing), except calls from the rest of
    /// `group` while it is open.
    pub(crate) fn suspend(&mut self, group: &Arc<SuspendGroup>) {
        let mut mb = self.process.mailbox.lock();
        mb.suspended = true;
        mb.admit_group = Some(group.clone());
    }

    /// Takes ordinary messages again.
    pub(crate) fn resume(&mut self) {
        self.process.mailbox.lock().clear_suspension();
    }
}

/// The processes one upgrade suspends, as their mailboxes see it. While the upgrade waits
/// for the busy ones to finish their current message, those already suspended still take
/// calls: a busy one may be mid-call to one of them, and holding that call would make the
/// upgrade wait out its suspend timeout and fail. No state has been exported yet, so a call
/// taken then is answered by the old code on the old state, as it would have been a moment
/// before; once every process is suspended the group closes and no call is taken until the
/// upgrade says so ([`SuspendGroup::admit_calls_from`]) or resumes them. A call from any
/// process is let in while the group is open, not only from the processes being suspended:
/// telling those apart would take a list of a million pids built inside the pause this
/// exists to keep short. Calls from outside the node's processes (an embedder's thread) wait
/// as before: such a caller is never one the upgrade waits for.
#[derive(Default)]
pub(crate) struct SuspendGroup {
    open: std::sync::atomic::AtomicBool,
    /// Calls from processes whose pid is at least this are taken too: processes the hop
    /// starts after its migrations (see `Mailbox::admit_from`, the same per process).
    /// 0: none.
    admit_from: std::sync::atomic::AtomicU64,
}

impl SuspendGroup {
    /// A closed group.
    pub(crate) fn new() -> Arc<SuspendGroup> {
        Arc::new(SuspendGroup::default())
    }

    /// Lets suspended members take calls (the upgrade is waiting for busy ones to suspend)
    /// or not (every member is suspended, or the suspend failed).
    pub(crate) fn set_open(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lets every member take calls from processes spawned from now on (pid at least
    /// `from`) until it is resumed: one store instead of one per process. Calls from such
    /// processes cannot be queued yet, so no member needs waking.
    pub(crate) fn admit_calls_from(&self, from: u64) {
        self.admit_from
            .store(from, std::sync::atomic::Ordering::SeqCst);
    }

    fn admits(&self, caller: Pid) -> bool {
        let from = self.admit_from.load(std::sync::atomic::Ordering::SeqCst);
        (from != 0 && caller.0 >= from) || self.open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

pub(crate) struct Mailbox {
    pub(crate) user: VecDeque<Envelope>,
    pub(crate) sys: VecDeque<SysMsg>,
    /// In the run queue or running: pushers must not enqueue it again.
    pub(crate) scheduled: bool,
    pub(crate) suspended: bool,
    /// While suspended, a call from a process whose pid is at least this is still taken: a
    /// process that the suspending hop started after its migrations (an appup `apply`, a new
    /// child's `init`), which would otherwise wait for a resume that comes only at the
    /// hop's commit. 0: none.
    pub(crate) admit_from: u64,
    /// While suspended, a call from another member of this group is still taken while the
    /// group is open (see [`SuspendGroup`]).
    pub(crate) admit_group: Option<Arc<SuspendGroup>>,
    pub(crate) dead: bool,
    /// Another node took over (a handover): what is pushed now goes there, refused here so
    /// that the pusher forwards it (see `crate::handover::forward`).
    pub(crate) forwarding: bool,
}

impl Mailbox {
    /// Whether `envelope` is taken although the process is suspended (see `admit_from`).
    pub(crate) fn admits(&self, envelope: &Envelope) -> bool {
        let Envelope::Call {
            from: Some(caller), ..
        } = envelope
        else {
            return false;
        };
        (self.admit_from != 0 && caller.0 >= self.admit_from)
            || self.admit_group.as_ref().is_some_and(|g| g.admits(*caller))
    }

    /// Not suspended any more: every message is taken again.
    pub(crate) fn clear_suspension(&mut self) {
        self.suspended = false;
        self.admit_from = 0;
        self.admit_group = None;
    }

    /// The next ordinary message the process may take now: the first one, or while
    /// suspended the first admitted call.
    pub(crate) fn next_user(&mut self) -> Option<Envelope> {
        if !self.suspended {
            return self.user.pop_front();
        }
        let at = self.user.iter().position(|e| self.admits(e))?;
        self.user.remove(at)
    }
}

/// Links, monitors and exit trapping of one process.
#[derive(Default)]
pub(crate) struct Signals {
    pub(crate) links: PidSet,
    /// Who monitors this process: reference → watcher.
    pub(crate) watchers: PidMap<Pid>,
    /// Whom this process monitors: reference → monitored process.
    pub(crate) monitoring: PidMap<Pid>,
    pub(crate) trap_exit: bool,
    pub(crate) parent: Option<Pid>,
}

/// The code a process runs, plus the previous code kept during an upgrade until commit.
#[derive(Default)]
pub(crate) struct CodeSlot {
    pub(crate) behaviour: Option<Box<dyn Behaviour>>,
    pub(crate) staged_old: Option<Box<dyn Behaviour>>,
}

/// What a process runs, mirrored from its code slot whenever that changes.
#[derive(Default)]
pub(crate) struct Running {
    pub(crate) kind: Option<crate::behaviour::ProcessKind>,
    pub(crate) module: Option<Arc<crate::code_server::LoadedModule>>,
}

/// Set once when the process has exited; waited on by supervisors and callers.
#[derive(Default)]
pub(crate) struct ExitLatch {
    reason: Mutex<Option<ExitReason>>,
    cv: Condvar,
}

impl ExitLatch {
    /// Sets the reason; returns false if it was set already.
    pub(crate) fn set(&self, reason: ExitReason) -> bool {
        let mut slot = self.reason.lock();
        if slot.is_some() {
            return false;
        }
        *slot = Some(reason);
        self.cv.notify_all();
        true
    }

    pub(crate) fn get(&self) -> Option<ExitReason> {
        self.reason.lock().clone()
    }

    /// Waits up to `timeout` for the exit; returns the reason if it happened.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Option<ExitReason> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut slot = self.reason.lock();
        loop {
            if let Some(reason) = slot.as_ref() {
                return Some(reason.clone());
            }
            match deadline {
                Some(d) => {
                    if self.cv.wait_until(&mut slot, d).timed_out() {
                        return slot.clone();
                    }
                }
                None => self.cv.wait(&mut slot),
            }
        }
    }
}

/// One lightweight process.
pub(crate) struct Process {
    pub(crate) pid: Pid,
    pub(crate) mailbox: Mutex<Mailbox>,
    pub(crate) signals: Mutex<Signals>,
    pub(crate) code: Mutex<CodeSlot>,
    pub(crate) exit: ExitLatch,
    pub(crate) name: Mutex<Option<String>>,
    /// What the process runs, readable without waiting for a busy process's code lock.
    pub(crate) running: Mutex<Running>,
    /// The application the process belongs to (for its configuration), if any.
    pub(crate) app: Option<Arc<str>>,
}

/// What [`Process::try_suspend_idle`] found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SuspendNow {
    /// It was idle and is suspended now.
    Done,
    /// It is running or queued to run: it must be asked to suspend after its message.
    Busy,
    /// It has exited.
    Dead,
}

/// What a push asks of the caller: schedule the process, or nothing.
#[must_use]
pub(crate) enum Pushed {
    Schedule,
    Queued,
}

impl Process {
    pub(crate) fn new(pid: Pid, app: Option<Arc<str>>) -> Process {
        Process {
            pid,
            mailbox: Mutex::new(Mailbox {
                user: VecDeque::new(),
                sys: VecDeque::new(),
                // Not schedulable until its init has run.
                scheduled: true,
                suspended: false,
                admit_from: 0,
                admit_group: None,
                dead: false,
                forwarding: false,
            }),
            signals: Mutex::new(Signals::default()),
            code: Mutex::new(CodeSlot::default()),
            exit: ExitLatch::default(),
            name: Mutex::new(None),
            running: Mutex::new(Running::default()),
            app,
        }
    }

    pub(crate) fn push_user(&self, envelope: Envelope) -> Result<Pushed, Envelope> {
        let mut mb = self.mailbox.lock();
        if mb.dead || mb.forwarding {
            return Err(envelope);
        }
        let admitted = mb.suspended && mb.admits(&envelope);
        mb.user.push_back(envelope);
        if !mb.scheduled && (!mb.suspended || admitted) {
            mb.scheduled = true;
            Ok(Pushed::Schedule)
        } else {
            Ok(Pushed::Queued)
        }
    }

    /// Suspends the process at once if it is idle (not running, not queued to run): it is
    /// then between two messages by definition, and takes calls from the rest of `group` while it
    /// is open. A busy one is asked with a system message by the caller.
    pub(crate) fn try_suspend_idle(&self, group: &Arc<SuspendGroup>) -> SuspendNow {
        let mut mb = self.mailbox.lock();
        if mb.dead {
            return SuspendNow::Dead;
        }
        if mb.scheduled {
            return SuspendNow::Busy;
        }
        mb.suspended = true;
        mb.admit_group = Some(group.clone());
        SuspendNow::Done
    }

    /// Puts a suspended process in the run queue if a call it now admits waits (its group
    /// was opened, or grew, after the call was queued); returns true if the caller must
    /// schedule it.
    pub(crate) fn wake_for_admitted(&self) -> bool {
        Self::schedule_if_admitted(&mut self.mailbox.lock())
    }

    /// The check of [`Process::wake_for_admitted`], on a mailbox already locked.
    fn schedule_if_admitted(mb: &mut Mailbox) -> bool {
        if mb.dead || !mb.suspended || mb.scheduled || !mb.user.iter().any(|e| mb.admits(e)) {
            return false;
        }
        mb.scheduled = true;
        true
    }

    /// While suspended, lets the process take calls from processes whose pid is at least
    /// `from` (see `Mailbox::admit_from`); returns true if it must be put in the run queue
    /// now (such a call waits and it is not scheduled).
    pub(crate) fn admit_calls_from(&self, from: u64) -> bool {
        let mut mb = self.mailbox.lock();
        if mb.dead || !mb.suspended {
            return false;
        }
        mb.admit_from = from;
        Self::schedule_if_admitted(&mut mb)
    }

    /// Lets a suspended process take ordinary messages again; returns true if it must be
    /// put in the run queue now (it has messages and is not scheduled).
    pub(crate) fn resume_now(&self) -> bool {
        let mut mb = self.mailbox.lock();
        mb.clear_suspension();
        if mb.dead || mb.scheduled || (mb.user.is_empty() && mb.sys.is_empty()) {
            return false;
        }
        mb.scheduled = true;
        true
    }

    pub(crate) fn push_sys(&self, msg: SysMsg) -> Result<Pushed, SysMsg> {
        let mut mb = self.mailbox.lock();
        if mb.dead {
            return Err(msg);
        }
        mb.sys.push_back(msg);
        if !mb.scheduled {
            mb.scheduled = true;
            Ok(Pushed::Schedule)
        } else {
            Ok(Pushed::Queued)
        }
    }

    /// Mirrors what `behaviour` runs into `running` (None once the process has exited).
    pub(crate) fn set_running(&self, behaviour: Option<&dyn Behaviour>) {
        if let Some(new) = behaviour.and_then(|b| b.module()) {
            new.add_runner(1);
        }
        if let Some(old) = self.replace_running(behaviour) {
            old.add_runner(-1);
        }
    }

    /// Mirrors what `behaviour` runs into `running` like [`Process::set_running`], but leaves
    /// the runner counts to the caller (an upgrade counts them in bulk); returns the module
    /// the process ran before.
    pub(crate) fn replace_running(
        &self,
        behaviour: Option<&dyn Behaviour>,
    ) -> Option<Arc<crate::code_server::LoadedModule>> {
        let mut running = self.running.lock();
        running.kind = behaviour.map(|b| b.kind());
        std::mem::replace(
            &mut running.module,
            behaviour.and_then(|b| b.module().cloned()),
        )
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.exit.get().is_some()
    }
}

impl Pushed {
    pub(crate) fn needs_schedule(&self) -> bool {
        matches!(self, Pushed::Schedule)
    }
}
