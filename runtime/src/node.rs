//! The node: process table, registry, messaging, spawning, environment, logging, shutdown.

use crate::behaviour::{Behaviour, ModuleInstance, ProcessKind};
use crate::code_server::{CodeServer, LoadedModule};
use crate::error::{CallError, SendError, SpawnError};
use crate::host::ProcCx;
use crate::pidmap::PidMap;
use crate::ports::{PortError, PortId, PortInfo, PortLimits, Ports};
use crate::process::{Envelope, InfoMsg, Payload, Process, SysMsg};
use crate::scheduler::Scheduler;
use crate::tables::Tables;
use crate::timer::Timers;
use parking_lot::{Mutex, RwLock};
use relup_module::{ConfigValue, ExitReason, Pid, Target};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const SHARDS: usize = 64;

/// One application's configuration: key → value and where it came from.
type AppEnv = HashMap<String, (ConfigValue, EnvOrigin)>;

/// One slice of the process table, by pid.
type Shard = RwLock<PidMap<Arc<Process>>>;

/// A log line from the node or a process.
#[derive(Debug, Clone)]
pub struct LogLine<'a> {
    /// 0 error, 1 warn, 2 info, 3 debug, 4 trace.
    pub level: u32,
    /// The process that wrote it, if any.
    pub pid: Option<Pid>,
    /// Its registered name, if any.
    pub name: Option<String>,
    /// The text.
    pub text: &'a str,
}

/// Where log lines go, besides the `tracing` event every line is (see [`crate::trace`]).
/// Without one and without any tracing subscriber, the node writes
/// `<RFC 3339 time> [level] <name> <pid>: text` to standard error, info and above.
pub type Logger = Arc<dyn Fn(&LogLine<'_>) + Send + Sync>;

/// How to start a node.
#[derive(Clone)]
pub struct NodeConfig {
    /// Scheduler threads that run processes (default: number of cores).
    pub schedulers: usize,
    /// Upper bound on threads, spares included (compensation for blocked calls stops there).
    pub max_threads: usize,
    /// Where private copies of loaded libraries go (default: a fresh temporary directory).
    pub copy_dir: Option<PathBuf>,
    /// Where log lines go besides their `tracing` events (default: none; with no tracing
    /// subscriber set either, standard error, info and above).
    pub logger: Option<Logger>,
    /// Buffering limits of TCP ports (see [`crate::ports`]).
    pub ports: PortLimits,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            schedulers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            max_threads: 1024,
            copy_dir: None,
            logger: None,
            ports: PortLimits::default(),
        }
    }
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("schedulers", &self.schedulers)
            .field("max_threads", &self.max_threads)
            .field("copy_dir", &self.copy_dir)
            .field("ports", &self.ports)
            .finish()
    }
}

/// Which code a new process runs.
#[derive(Clone, Debug)]
pub enum ModuleRef {
    /// The current version of the named module.
    Name(String),
    /// This exact loaded version.
    Loaded(Arc<LoadedModule>),
}

impl From<&str> for ModuleRef {
    fn from(name: &str) -> Self {
        ModuleRef::Name(name.to_string())
    }
}

impl From<Arc<LoadedModule>> for ModuleRef {
    fn from(module: Arc<LoadedModule>) -> Self {
        ModuleRef::Loaded(module)
    }
}

/// Options for a new process.
#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    /// Register the process under this name.
    pub name: Option<String>,
    /// The application it belongs to (its configuration comes from there).
    pub app: Option<String>,
    /// Start with exit trapping on.
    pub trap_exit: bool,
}

/// Why a process could not be registered under a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RegisterError {
    /// Another process holds the name.
    #[error("name {name:?} is already registered to {holder}")]
    Taken {
        /// The name asked for.
        name: String,
        /// The process that holds it.
        holder: Pid,
    },
    /// The process holds another name already (one name per process, as in Erlang).
    #[error("{pid} cannot register as {name:?}: it is already registered as {held:?}")]
    AlreadyNamed {
        /// The name asked for.
        name: String,
        /// The process.
        pid: Pid,
        /// The name it holds.
        held: String,
    },
    /// The process has exited.
    #[error("{pid} cannot register as {name:?}: it has exited")]
    Exited {
        /// The name asked for.
        name: String,
        /// The process.
        pid: Pid,
    },
}

/// Counts of abnormal process exits, monotonic over a node's life (see [`Node::exit_counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ExitCounts {
    /// Processes that exited with an error reason (a panic, a failed callback, a crash).
    pub crashes: u64,
    /// Children restarted by their supervisors.
    pub restarts: u64,
}

/// Where a configuration value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum EnvOrigin {
    /// A release's declared default.
    Default,
    /// Set by the operator (config file or `relup config set`).
    Operator,
}

/// A snapshot of one process, for status displays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProcessInfo {
    /// Its pid.
    pub pid: Pid,
    /// Its registered name.
    pub name: Option<String>,
    /// Worker or supervisor.
    pub kind: ProcessKind,
    /// Module it runs, if a worker.
    pub module: Option<String>,
    /// Module version it runs.
    pub version: Option<String>,
    /// Ordinary messages waiting.
    pub mailbox_len: usize,
    /// Whether it is suspended (an upgrade is changing its code).
    pub suspended: bool,
    /// Its application.
    pub app: Option<String>,
}

pub(crate) struct NodeInner {
    pub(crate) scheduler: Scheduler,
    pub(crate) timers: Timers,
    pub(crate) code: CodeServer,
    pub(crate) ports: Ports,
    pub(crate) tables: Tables,
    /// Modules held by hops (supervisors defer their children's starts meanwhile).
    pub(crate) holds: crate::upgrade::Holds,
    shards: Box<[Shard]>,
    registry: RwLock<HashMap<String, Pid>>,
    next_pid: AtomicU64,
    next_ref: AtomicU64,
    env: RwLock<HashMap<String, AppEnv>>,
    /// The embedder's logger, if any (lines are tracing events in any case).
    logger: Option<Logger>,
    roots: Mutex<Vec<Pid>>,
    timer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    stopped: AtomicBool,
    owns_copy_dir: bool,
    /// Processes that exited with an error reason (crashes), since the node started.
    crashes: AtomicU64,
    /// Restarts supervisors made, since the node started.
    pub(crate) restarts: AtomicU64,
    /// The latest crash: which process, running what, and why.
    last_crash: Mutex<Option<String>>,
    /// While a node taken over by handover boots: the processes to restore, by place.
    pub(crate) restoring: crate::handover::restore::Plan,
    /// Set once another node took over from this one: what host threads still send goes
    /// there (see [`crate::handover::forward`]).
    pub(crate) forward: std::sync::OnceLock<Arc<crate::handover::forward::Forwarder>>,
    /// Counters for the metrics endpoint (see [`crate::metrics`]).
    pub(crate) metrics: crate::metrics::Metrics,
}

/// The node's line on standard error: `<RFC 3339 time> [level] <name> <pid>: text`, info and
/// above.
fn stderr_line(line: &LogLine<'_>) {
    if line.level > 2 {
        return;
    }
    let level = ["error", "warn", "info", "debug", "trace"]
        .get(line.level as usize)
        .copied()
        .unwrap_or("log");
    let at = crate::install::rfc3339(std::time::SystemTime::now());
    match (&line.name, line.pid) {
        (Some(name), Some(pid)) => eprintln!("{at} [{level}] {name} {pid}: {}", line.text),
        (None, Some(pid)) => eprintln!("{at} [{level}] {pid}: {}", line.text),
        _ => eprintln!("{at} [{level}] {}", line.text),
    }
}

impl NodeInner {
    fn shard(&self, pid: Pid) -> &Shard {
        &self.shards[(pid.0 as usize) % SHARDS]
    }

    pub(crate) fn lookup(&self, pid: Pid) -> Option<Arc<Process>> {
        self.shard(pid).read().get(&pid.0).cloned()
    }

    /// The pid the next process spawned gets (every later one is greater).
    pub(crate) fn next_pid_now(&self) -> u64 {
        self.next_pid.load(Ordering::SeqCst)
    }

    pub(crate) fn whereis(&self, name: &str) -> Option<Pid> {
        self.registry.read().get(name).copied()
    }

    pub(crate) fn resolve(&self, target: &Target<'_>) -> Option<Pid> {
        match target {
            Target::Pid(pid) => Some(*pid),
            Target::Name(name) => self.whereis(name),
        }
    }

    fn describe(target: &Target<'_>) -> String {
        match target {
            Target::Pid(pid) => pid.to_string(),
            Target::Name(name) => format!("{name:?}"),
        }
    }

    pub(crate) fn make_ref(&self) -> u64 {
        self.next_ref.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers `process` under `name`. As in Erlang, a process holds at most one name
    /// (registering the one it holds again is accepted), a name has at most one holder, and a
    /// process that has exited registers nothing: every name in the registry is freed by its
    /// holder's exit ([`NodeInner::finish_exit`]).
    pub(crate) fn register(&self, name: &str, process: &Arc<Process>) -> Result<(), RegisterError> {
        let mut registry = self.registry.write();
        if let Some(existing) = registry.get(name) {
            if *existing == process.pid {
                return Ok(());
            }
            return Err(RegisterError::Taken {
                name: name.to_string(),
                holder: *existing,
            });
        }
        let held = {
            let mut held = process.name.lock();
            if held.is_none() {
                *held = Some(name.to_string());
                None
            } else {
                held.clone()
            }
        };
        if let Some(held) = held {
            drop(registry);
            let refused = RegisterError::AlreadyNamed {
                name: name.to_string(),
                pid: process.pid,
                held,
            };
            self.log(1, Some(process), &refused.to_string());
            return Err(refused);
        }
        registry.insert(name.to_string(), process.pid);
        // The name is set before the exit check, and `finish_exit` marks the process dead
        // before it takes the name: either it sees this name and frees it (waiting for this
        // registry lock), or this check sees it dead and takes the name back.
        if process.mailbox.lock().dead {
            registry.remove(name);
            process.name.lock().take();
            return Err(RegisterError::Exited {
                name: name.to_string(),
                pid: process.pid,
            });
        }
        Ok(())
    }

    pub(crate) fn log(&self, level: u32, process: Option<&Arc<Process>>, text: &str) {
        let name = process.and_then(|p| p.name.lock().clone());
        let pid = process.map(|p| p.pid);
        crate::trace::node_line(level, pid, name.as_deref(), text);
        self.to_logger(level, pid, name, text);
    }

    /// A module's `ctx.log` line: a tracing event with the module, its version and the pid
    /// (see [`crate::trace`]), and the logger's line.
    pub(crate) fn log_module(&self, level: u32, process: &Arc<Process>, text: &str) {
        let name = process.name.lock().clone();
        let module = process.running.lock().module.clone();
        match &module {
            Some(module) => crate::trace::module_line(
                level,
                process.pid,
                name.as_deref(),
                module.name(),
                &module.version().to_string(),
                text,
            ),
            None => crate::trace::node_line(level, Some(process.pid), name.as_deref(), text),
        }
        self.to_logger(level, Some(process.pid), name, text);
    }

    /// The configured logger's line; without one, standard error when no tracing subscriber
    /// was ever set (the node's output before tracing).
    fn to_logger(&self, level: u32, pid: Option<Pid>, name: Option<String>, text: &str) {
        let line = LogLine {
            level,
            pid,
            name,
            text,
        };
        match &self.logger {
            Some(logger) => logger(&line),
            None if !crate::trace::subscribed() => stderr_line(&line),
            None => {}
        }
    }

    pub(crate) fn env(&self, app: &str, key: &str) -> Option<ConfigValue> {
        self.env
            .read()
            .get(app)
            .and_then(|keys| keys.get(key))
            .map(|(value, _)| value.clone())
    }

    /// Pushes an ordinary message; false if the process is gone.
    pub(crate) fn push(&self, pid: Pid, envelope: Envelope) -> Result<(), Envelope> {
        // Pushed under the table's read lock: no reference count to bump and drop per
        // message (its cache line is the one the running process's worker uses too).
        let shard = self.shard(pid).read();
        let Some(process) = shard.get(&pid.0) else {
            return Err(envelope);
        };
        let pushed = match process.push_user(envelope) {
            Ok(pushed) => pushed,
            // Another node took over: it gets the message.
            Err(envelope) => return self.forward_refused(pid, envelope),
        };
        self.metrics.hot.message();
        if pushed.needs_schedule() {
            let process = process.clone();
            drop(shard);
            self.scheduler.schedule(process);
        }
        Ok(())
    }

    /// A message a mailbox refused: forwarded when another node took over from this one
    /// (a handover), else it stays refused (the process is gone).
    fn forward_refused(&self, pid: Pid, envelope: Envelope) -> Result<(), Envelope> {
        match self.forward.get() {
            Some(forwarder) => forwarder.forward_envelope(pid, envelope),
            None => Err(envelope),
        }
    }

    pub(crate) fn send_sys(&self, pid: Pid, msg: SysMsg) -> Result<(), SysMsg> {
        let Some(process) = self.lookup(pid) else {
            return Err(msg);
        };
        self.push_sys_to(&process, msg)
    }

    pub(crate) fn push_sys_to(&self, process: &Arc<Process>, msg: SysMsg) -> Result<(), SysMsg> {
        let pushed = process.push_sys(msg)?;
        if pushed.needs_schedule() {
            self.scheduler.schedule(process.clone());
        }
        Ok(())
    }

    pub(crate) fn send_info(&self, pid: Pid, info: InfoMsg) -> bool {
        self.push(pid, Envelope::Info(info)).is_ok()
    }

    pub(crate) fn cast_payload(&self, pid: Pid, payload: Payload) -> bool {
        self.push(pid, Envelope::Cast(payload)).is_ok()
    }

    pub(crate) fn deliver_timer(&self, pid: Pid, message: Vec<u8>) -> bool {
        self.send_info(pid, InfoMsg::Message(Payload::Bytes(message)))
    }

    /// Calls a process and waits for the reply (compensating the pool if on a worker).
    pub(crate) fn call_payload(
        self: &Arc<Self>,
        target: &Target<'_>,
        from: Option<Pid>,
        payload: Payload,
        timeout: Duration,
    ) -> Result<Payload, CallError> {
        let who = || Self::describe(target);
        let pid = self
            .resolve(target)
            .ok_or_else(|| CallError::NoProc(who()))?;
        if Some(pid) == from {
            return Err(CallError::CallingSelf);
        }
        let process = self.lookup(pid).ok_or_else(|| CallError::NoProc(who()))?;
        let (tx, rx) = crate::reply::channel();
        let started = std::time::Instant::now();
        match process.push_user(Envelope::Call {
            from,
            payload,
            reply: tx,
        }) {
            Ok(pushed) => {
                if pushed.needs_schedule() {
                    self.scheduler.schedule(process.clone());
                }
            }
            // Another node took over: it answers (the reply comes back through `rx`).
            Err(envelope) => {
                self.forward_refused(pid, envelope)
                    .map_err(|_| CallError::NoProc(who()))?;
            }
        }
        let result = self.scheduler.blocking(self, || rx.wait(timeout));
        self.metrics.hot.call(started.elapsed());
        match result {
            Ok(reply) => reply,
            Err(crate::reply::WaitError::Timeout) => Err(CallError::Timeout(who())),
            Err(crate::reply::WaitError::Closed) => {
                let reason = process
                    .exit
                    .wait(Some(Duration::from_secs(1)))
                    .unwrap_or_else(|| ExitReason::Error("exited".into()));
                Err(CallError::Exited {
                    target: who(),
                    reason,
                })
            }
        }
    }

    /// Creates a process running `behaviour_init`'s result; runs init inline, then makes the
    /// process runnable. `parent` is linked both ways before init runs.
    pub(crate) fn spawn_with(
        self: &Arc<Self>,
        opts: &SpawnOptions,
        parent: Option<&ProcCx<'_>>,
        label: &str,
        init: impl FnOnce(&ProcCx<'_>) -> Result<Box<dyn Behaviour>, ExitReason>,
    ) -> Result<Pid, SpawnError> {
        self.spawn_as(None, opts, parent, label, init)
    }

    /// [`NodeInner::spawn_with`] under a given pid (a process restored by a handover, its
    /// pid kept; it starts suspended when `suspended`), or a new one.
    pub(crate) fn spawn_as(
        self: &Arc<Self>,
        restored: Option<(Pid, bool)>,
        opts: &SpawnOptions,
        parent: Option<&ProcCx<'_>>,
        label: &str,
        init: impl FnOnce(&ProcCx<'_>) -> Result<Box<dyn Behaviour>, ExitReason>,
    ) -> Result<Pid, SpawnError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(SpawnError::ShuttingDown);
        }
        let pid = match restored {
            Some((pid, _)) => {
                if self.lookup(pid).is_some() {
                    return Err(SpawnError::Init {
                        module: label.to_string(),
                        reason: ExitReason::Error(format!("{pid} is taken already")),
                    });
                }
                pid
            }
            None => Pid(self.next_pid.fetch_add(1, Ordering::Relaxed)),
        };
        let app = opts.app.as_deref().map(Arc::<str>::from);
        let process = Arc::new(Process::new(pid, app));
        self.shard(pid).write().insert(pid.0, process.clone());
        if let Some(name) = &opts.name
            && let Err(refused) = self.register(name, &process)
        {
            self.shard(pid).write().remove(&pid.0);
            return Err(match refused {
                RegisterError::Taken { name, holder } => {
                    SpawnError::NameTaken { name, pid: holder }
                }
                // Not for a process that has just been created; reported as its init failing.
                other => SpawnError::Init {
                    module: label.to_string(),
                    reason: ExitReason::Error(other.to_string()),
                },
            });
        }
        {
            let mut signals = process.signals.lock();
            signals.trap_exit = opts.trap_exit;
            if let Some(parent) = parent {
                signals.links.insert(parent.pid());
                signals.parent = Some(parent.pid());
            }
        }
        if let Some(parent) = parent {
            parent.process.signals.lock().links.insert(pid);
        }
        let mut code = process.code.lock();
        let cx = ProcCx {
            node: self,
            process: &process,
        };
        match init(&cx) {
            Ok(behaviour) => {
                process.set_running(Some(behaviour.as_ref()));
                code.behaviour = Some(behaviour);
                drop(code);
                let runnable = {
                    let mut mb = process.mailbox.lock();
                    if restored.is_some_and(|(_, suspended)| suspended) {
                        mb.suspended = true;
                    }
                    let pending = !mb.sys.is_empty() || !mb.user.is_empty();
                    mb.scheduled = pending;
                    pending
                };
                if runnable {
                    self.scheduler.schedule(process);
                }
                Ok(pid)
            }
            Err(reason) => {
                drop(code);
                if let Some(parent) = parent {
                    parent.process.signals.lock().links.remove(&pid);
                    process.signals.lock().links.clear();
                }
                self.finish_exit(&process, reason.clone());
                Err(SpawnError::Init {
                    module: label.to_string(),
                    reason,
                })
            }
        }
    }

    pub(crate) fn spawn_module(
        self: &Arc<Self>,
        module: &ModuleRef,
        args: &[u8],
        opts: &SpawnOptions,
        parent: Option<&ProcCx<'_>>,
    ) -> Result<Pid, SpawnError> {
        let module = match module {
            ModuleRef::Loaded(m) => m.clone(),
            ModuleRef::Name(name) => self
                .code
                .current(name)
                .ok_or_else(|| SpawnError::UnknownModule(name.clone()))?,
        };
        let label = module.name().to_string();
        self.spawn_with(opts, parent, &label, |cx| {
            ModuleInstance::init(module, cx, args).map(|m| Box::new(m) as Box<dyn Behaviour>)
        })
    }

    /// Completes a process's exit: marks it dead, wakes waiters, unregisters it and sends its
    /// exit signals and monitor messages. Idempotent. The caller has dropped its code.
    pub(crate) fn finish_exit(&self, process: &Arc<Process>, reason: ExitReason) {
        let (user, sys) = {
            let mut mb = process.mailbox.lock();
            if mb.dead {
                return;
            }
            mb.dead = true;
            (std::mem::take(&mut mb.user), std::mem::take(&mut mb.sys))
        };
        // The name and the table entry go before anyone waiting on the exit wakes up, so
        // that a supervisor restarting the process can register the name again at once.
        if let ExitReason::Error(why) = &reason {
            self.crashes.fetch_add(1, Ordering::Relaxed);
            let name = process.name.lock().clone();
            let name = name.map_or(String::new(), |n| format!(" (registered as {n})"));
            *self.last_crash.lock() = Some(format!("{}{name}: {why}", process.pid));
        }
        let pid = process.pid;
        self.shard(pid).write().remove(&pid.0);
        if let Some(name) = process.name.lock().take() {
            let mut registry = self.registry.write();
            if registry.get(&name) == Some(&pid) {
                registry.remove(&name);
            }
        }
        // It runs no code any more: a soft purge right after the exit sees that.
        process.set_running(None);
        // Its listeners close, its connections close once their queued output is sent.
        self.ports.owner_exited(pid);
        // Its tables pass to their heirs, or are deleted.
        self.tables.owner_exited(self, pid);
        let signals = std::mem::take(&mut *process.signals.lock());
        for linked in signals.links {
            let _ = self.send_sys(
                linked,
                SysMsg::Exit {
                    from: pid,
                    reason: reason.clone(),
                },
            );
        }
        for (reference, watcher) in signals.watchers {
            self.send_info(
                watcher,
                InfoMsg::Down {
                    reference,
                    pid,
                    reason: reason.clone(),
                },
            );
        }
        for (reference, target) in signals.monitoring {
            let _ = self.send_sys(target, SysMsg::Demonitor { reference });
        }
        let noproc = ExitReason::Error("noproc".into());
        for msg in sys {
            match msg {
                SysMsg::Link(from) => {
                    let _ = self.send_sys(
                        from,
                        SysMsg::Exit {
                            from: pid,
                            reason: noproc.clone(),
                        },
                    );
                }
                SysMsg::Monitor { from, reference } => {
                    self.send_info(
                        from,
                        InfoMsg::Down {
                            reference,
                            pid,
                            reason: noproc.clone(),
                        },
                    );
                }
                _ => {}
            }
        }
        self.roots.lock().retain(|p| *p != pid);
        // Waiters wake only now, after every link and monitor was told: whoever acts on the
        // exit (a supervisor stopping the next child) cannot overtake this exit's signals.
        process.exit.set(reason);
        // Pending calls see their reply channel close only now, after the reason is set.
        drop(user);
    }

    /// Hands out pids and references from these on (numbers kept by a handover are below).
    pub(crate) fn numbers_from(&self, next_pid: u64, next_ref: u64) {
        self.next_pid.fetch_max(next_pid, Ordering::SeqCst);
        self.next_ref.fetch_max(next_ref, Ordering::SeqCst);
    }

    /// The next pid and reference that would be handed out.
    pub(crate) fn next_numbers(&self) -> (u64, u64) {
        (
            self.next_pid.load(Ordering::SeqCst),
            self.next_ref.load(Ordering::SeqCst),
        )
    }

    /// The top supervisors (started with no parent), in start order.
    pub(crate) fn roots(&self) -> Vec<Pid> {
        self.roots.lock().clone()
    }

    pub(crate) fn all_pids(&self) -> Vec<Pid> {
        let mut pids: Vec<Pid> = self
            .shards
            .iter()
            .flat_map(|s| s.read().keys().map(|k| Pid(*k)).collect::<Vec<_>>())
            .collect();
        pids.sort();
        pids
    }

    pub(crate) fn count(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Live processes, and the messages waiting in their mailboxes: summed, and the most in
    /// one. One shard's read lock at a time, one mailbox lock at a time.
    pub(crate) fn mailbox_stats(&self) -> (usize, usize, usize) {
        let (mut count, mut sum, mut max) = (0, 0, 0);
        for shard in self.shards.iter() {
            let processes: Vec<Arc<Process>> = shard.read().values().cloned().collect();
            for process in processes {
                let len = process.mailbox.lock().user.len();
                count += 1;
                sum += len;
                max = max.max(len);
            }
        }
        (count, sum, max)
    }
}

/// Waits for one process's exit (see [`Node::watch`]).
pub struct ExitWatch {
    process: Arc<Process>,
}

impl ExitWatch {
    /// Waits up to `timeout` (forever with `None`); the exit reason, or None if still running.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<ExitReason> {
        self.process.exit.wait(timeout)
    }

    /// The exit reason if the process has exited.
    pub fn reason(&self) -> Option<ExitReason> {
        self.process.exit.get()
    }
}

/// A running node: the handle a service (or the `relup` daemon) holds.
///
/// Cloning gives another handle to the same node.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("processes", &self.inner.count())
            .finish()
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A directory or thread could not be created.
    #[error("cannot start the node: {0}")]
    Io(#[from] std::io::Error),
}

static NODE_SEQ: AtomicU64 = AtomicU64::new(0);

impl Node {
    /// Starts a node: scheduler threads, the timer thread and the code server.
    pub fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let (copy_dir, owns_copy_dir) = match config.copy_dir {
            Some(dir) => (dir, false),
            None => (
                std::env::temp_dir().join(format!(
                    "relup-{}-{}",
                    std::process::id(),
                    NODE_SEQ.fetch_add(1, Ordering::Relaxed)
                )),
                true,
            ),
        };
        let code = CodeServer::new(copy_dir)?;
        let inner = Arc::new(NodeInner {
            scheduler: Scheduler::new(config.schedulers, config.max_threads),
            timers: Timers::new(),
            code,
            ports: Ports::new(config.ports),
            tables: Tables::new(),
            holds: crate::upgrade::Holds::default(),
            shards: (0..SHARDS)
                .map(|_| RwLock::new(PidMap::default()))
                .collect(),
            registry: RwLock::new(HashMap::new()),
            next_pid: AtomicU64::new(1),
            next_ref: AtomicU64::new(1),
            env: RwLock::new(HashMap::new()),
            logger: config.logger,
            roots: Mutex::new(Vec::new()),
            timer_thread: Mutex::new(None),
            stopped: AtomicBool::new(false),
            owns_copy_dir,
            crashes: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            last_crash: Mutex::new(None),
            restoring: crate::handover::restore::Plan::default(),
            forward: std::sync::OnceLock::new(),
            metrics: crate::metrics::Metrics::new(),
        });
        inner.scheduler.start(&inner);
        *inner.timer_thread.lock() = Some(Timers::start(&inner)?);
        Ok(Node { inner })
    }

    /// The code server (load module libraries, register native modules, purge).
    pub fn code(&self) -> &CodeServer {
        &self.inner.code
    }

    /// Writes the node's metric families (processes, mailboxes, messages, calls, crashes,
    /// restarts, libraries, installs, config lines) to `page`; see [`crate::metrics`].
    pub fn write_metrics(&self, page: &mut crate::metrics::Exposition) {
        use crate::metrics::Kind;
        let (processes, sum, max) = self.inner.mailbox_stats();
        page.single(
            "relup_processes",
            Kind::Gauge,
            "Live processes.",
            processes as f64,
        );
        let name = "relup_mailbox_messages";
        page.family(
            name,
            Kind::Gauge,
            "Messages waiting in mailboxes: summed over every process, and the most in one.",
        )
        .sample(name, &[("stat", "sum")], sum as f64)
        .sample(name, &[("stat", "max")], max as f64);
        page.single(
            "relup_process_crashes_total",
            Kind::Counter,
            "Processes that exited with an error reason.",
            self.inner.crashes.load(Ordering::Relaxed) as f64,
        );
        let code = self.code().stats();
        page.single(
            "relup_libraries_mapped",
            Kind::Gauge,
            "Module libraries mapped since the node started (each stays mapped).",
            code.images_mapped as f64,
        );
        page.single(
            "relup_library_bytes",
            Kind::Gauge,
            "Sizes of the mapped libraries' files, summed.",
            code.bytes_mapped as f64,
        );
        self.inner.metrics.write(page);
    }

    /// Crashes (exits with an error reason) and supervisor restarts since the node started:
    /// what an upgrade's probation counts.
    pub fn exit_counts(&self) -> ExitCounts {
        ExitCounts {
            crashes: self.inner.crashes.load(Ordering::Relaxed),
            restarts: self.inner.restarts.load(Ordering::Relaxed),
        }
    }

    /// The latest crash since the node started: the pid, its registered name and the reason.
    pub fn last_crash(&self) -> Option<String> {
        self.inner.last_crash.lock().clone()
    }

    /// Scheduler threads that run processes.
    pub fn schedulers(&self) -> usize {
        self.inner.scheduler.size()
    }

    /// Spare threads started so far to keep the pool running while workers block in calls.
    pub fn spare_threads_started(&self) -> usize {
        self.inner.scheduler.spares_started()
    }

    /// Starts a bare process running `module` with `args` (encoded with the module codec).
    pub fn spawn<A: Serialize + ?Sized>(
        &self,
        module: impl Into<ModuleRef>,
        args: &A,
        opts: SpawnOptions,
    ) -> Result<Pid, SpawnError> {
        let args = relup_module::codec::encode(args).map_err(|e| SpawnError::Init {
            module: "args".into(),
            reason: ExitReason::Error(e.0),
        })?;
        let pid = self
            .inner
            .spawn_module(&module.into(), &args, &opts, None)?;
        Ok(pid)
    }

    /// Calls a process and decodes its reply.
    pub fn call<'t, Q: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        to: impl Into<Target<'t>>,
        request: &Q,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let bytes = relup_module::codec::encode(request).map_err(|e| CallError::BadMessage(e.0))?;
        let reply = self.call_bytes(to, bytes, timeout)?;
        relup_module::codec::decode(&reply).map_err(|e| CallError::BadMessage(e.0))
    }

    /// Calls a process with an already encoded request; returns the encoded reply.
    pub fn call_bytes<'t>(
        &self,
        to: impl Into<Target<'t>>,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        match self
            .inner
            .call_payload(&to.into(), None, Payload::Bytes(request), timeout)?
        {
            Payload::Bytes(reply) => Ok(reply),
            Payload::Internal(_) => Err(CallError::BadMessage("runtime-internal reply".into())),
        }
    }

    /// Casts a message (to `handle_cast`).
    pub fn cast<'t, M: Serialize + ?Sized>(
        &self,
        to: impl Into<Target<'t>>,
        msg: &M,
    ) -> Result<(), SendError> {
        let target = to.into();
        let bytes = relup_module::codec::encode(msg).map_err(|e| SendError::Encode(e.0))?;
        let pid = self
            .inner
            .resolve(&target)
            .ok_or_else(|| SendError::NoProc(NodeInner::describe(&target)))?;
        if self.inner.cast_payload(pid, Payload::Bytes(bytes)) {
            Ok(())
        } else {
            Err(SendError::NoProc(NodeInner::describe(&target)))
        }
    }

    /// Sends a plain message (to `handle_info`).
    pub fn send<'t, M: Serialize + ?Sized>(
        &self,
        to: impl Into<Target<'t>>,
        msg: &M,
    ) -> Result<(), SendError> {
        let target = to.into();
        let bytes = relup_module::codec::encode(msg).map_err(|e| SendError::Encode(e.0))?;
        let pid = self
            .inner
            .resolve(&target)
            .ok_or_else(|| SendError::NoProc(NodeInner::describe(&target)))?;
        if self
            .inner
            .send_info(pid, InfoMsg::Message(Payload::Bytes(bytes)))
        {
            Ok(())
        } else {
            Err(SendError::NoProc(NodeInner::describe(&target)))
        }
    }

    /// Sends an exit signal to a process, as from the node. `Killed` is the untrappable
    /// kill: the process exits at once, without `terminate`.
    pub fn exit(&self, pid: Pid, reason: ExitReason) -> bool {
        let signal = match reason {
            ExitReason::Killed => SysMsg::Kill,
            reason => SysMsg::Exit {
                from: Pid(0),
                reason,
            },
        };
        self.inner.send_sys(pid, signal).is_ok()
    }

    /// Waits up to `timeout` (forever with `None`) for a process to exit; returns its reason,
    /// or None if it is still running. An unknown pid returns `noproc`.
    pub fn wait_exit(&self, pid: Pid, timeout: Option<Duration>) -> Option<ExitReason> {
        match self.inner.lookup(pid) {
            Some(process) => process.exit.wait(timeout),
            None => Some(ExitReason::Error("noproc".into())),
        }
    }

    /// A handle to wait for a process's exit and read its reason, even after it is gone.
    /// None if the process does not exist (any more).
    pub fn watch(&self, pid: Pid) -> Option<ExitWatch> {
        self.inner.lookup(pid).map(|process| ExitWatch { process })
    }

    /// The pid registered under `name`.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.inner.whereis(name)
    }

    /// Whether a process is alive.
    pub fn is_alive(&self, pid: Pid) -> bool {
        self.inner.lookup(pid).is_some_and(|p| !p.is_dead())
    }

    /// Every live process, by pid.
    pub fn processes(&self) -> Vec<Pid> {
        self.inner.all_pids()
    }

    /// Number of live processes.
    pub fn process_count(&self) -> usize {
        self.inner.count()
    }

    /// A snapshot of one process (it does not wait for a busy process).
    pub fn process_info(&self, pid: Pid) -> Option<ProcessInfo> {
        let process = self.inner.lookup(pid)?;
        let (mailbox_len, suspended) = {
            let mb = process.mailbox.lock();
            (mb.user.len(), mb.suspended)
        };
        let (kind, module) = {
            let running = process.running.lock();
            (running.kind?, running.module.clone())
        };
        Some(ProcessInfo {
            pid,
            name: process.name.lock().clone(),
            kind,
            module: module.as_ref().map(|m| m.name().to_string()),
            version: module.as_ref().map(|m| m.version().to_string()),
            mailbox_len,
            suspended,
            app: process.app.as_deref().map(str::to_string),
        })
    }

    /// Pids of the processes running any version of `module`, sorted.
    pub fn processes_running(&self, module: &str) -> Vec<Pid> {
        let mut pids: Vec<Pid> = self
            .running_processes(module)
            .iter()
            .map(|p| p.pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// The processes running any version of `module`, in no particular order, with their
    /// handles: an upgrade then never looks them up again (at a million processes each
    /// lookup of the whole list costs a hash probe, a shard lock and a reference count per
    /// process).
    pub(crate) fn running_processes(&self, module: &str) -> Vec<Arc<Process>> {
        // One pass over the table, its shards split between as many threads as the node has
        // schedulers (an upgrade's first step at 100k processes).
        let runs = |process: &Process| {
            process
                .running
                .lock()
                .module
                .as_ref()
                .is_some_and(|m| m.name() == module)
        };
        let threads = if self.inner.count() < 4096 {
            1
        } else {
            self.inner.scheduler.size()
        };
        let parts = crate::par::par_chunks(&self.inner.shards, threads, |shards| {
            let mut found = Vec::new();
            for shard in shards {
                let table = shard.read();
                found.extend(table.values().filter(|p| runs(p)).cloned());
            }
            found
        });
        let mut all = Vec::with_capacity(parts.iter().map(Vec::len).sum());
        for part in parts {
            all.extend(part);
        }
        all
    }

    /// Calls an exported function of a module version (appup `apply`) with encoded args;
    /// returns the encoded result. It runs on the calling thread as a process of its own, with
    /// a fresh pid, that exits (reason `normal`) when the function returns: a name it
    /// registered is freed, a listener it opened is closed, its links and monitors fire, as
    /// for any process that exits. Messages sent to it are never handled.
    pub fn apply(
        &self,
        module: &LoadedModule,
        function: &str,
        args: &[u8],
    ) -> Result<Vec<u8>, String> {
        /// Ends the apply's process however the call returns.
        struct Exit<'a> {
            node: &'a NodeInner,
            process: Arc<Process>,
        }
        impl Drop for Exit<'_> {
            fn drop(&mut self) {
                self.node.finish_exit(&self.process, ExitReason::Normal);
            }
        }
        let pid = Pid(self.inner.next_pid.fetch_add(1, Ordering::Relaxed));
        // Created not schedulable (as during a spawn's init): no scheduler thread runs it.
        let process = Arc::new(Process::new(pid, None));
        self.inner.shard(pid).write().insert(pid.0, process.clone());
        let exit = Exit {
            node: &self.inner,
            process,
        };
        let cx = ProcCx {
            node: &self.inner,
            process: &exit.process,
        };
        ModuleInstance::apply(module, &cx, function, args)
    }

    /// Sets a configuration key of an application, as the operator (it then survives
    /// upgrades and downgrades whose releases change the key's default).
    pub fn set_env(&self, app: &str, key: &str, value: ConfigValue) {
        self.put_env(app, key, value, EnvOrigin::Operator);
    }

    /// Sets a configuration key to a release's default (replaced by the next release's
    /// default unless the operator sets it).
    pub fn set_env_default(&self, app: &str, key: &str, value: ConfigValue) {
        self.put_env(app, key, value, EnvOrigin::Default);
    }

    fn put_env(&self, app: &str, key: &str, value: ConfigValue, origin: EnvOrigin) {
        self.inner
            .env
            .write()
            .entry(app.to_string())
            .or_default()
            .insert(key.to_string(), (value, origin));
    }

    /// Removes a configuration key; returns its value.
    pub fn unset_env(&self, app: &str, key: &str) -> Option<ConfigValue> {
        self.inner
            .env
            .write()
            .get_mut(app)
            .and_then(|keys| keys.remove(key))
            .map(|(value, _)| value)
    }

    /// Reads a configuration key of an application.
    pub fn env(&self, app: &str, key: &str) -> Option<ConfigValue> {
        self.inner.env(app, key)
    }

    /// Reads a configuration key with where its value came from.
    pub fn env_with_origin(&self, app: &str, key: &str) -> Option<(ConfigValue, EnvOrigin)> {
        self.inner
            .env
            .read()
            .get(app)
            .and_then(|keys| keys.get(key))
            .cloned()
    }

    /// Every key of an application, sorted.
    pub fn env_keys(&self, app: &str) -> Vec<String> {
        let env = self.inner.env.read();
        let mut keys: Vec<String> = env
            .get(app)
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// Pids of the processes of an application.
    pub fn processes_of_app(&self, app: &str) -> Vec<Pid> {
        self.inner
            .all_pids()
            .into_iter()
            .filter(|pid| {
                self.inner
                    .lookup(*pid)
                    .is_some_and(|p| p.app.as_deref() == Some(app))
            })
            .collect()
    }

    /// Opens a TCP listener on `addr` (`host:port`, port 0 for a free one) owned by process
    /// `owner`, which gets each accepted connection as an `Info::TcpAccepted`. Returns the
    /// listener's id and bound address.
    pub fn tcp_listen(
        &self,
        owner: Pid,
        addr: &str,
    ) -> Result<(PortId, std::net::SocketAddr), PortError> {
        if !self.is_alive(owner) {
            return Err(PortError::NoProc(owner));
        }
        self.inner.ports.listen(&self.inner, owner, addr)
    }

    /// Opens an outbound TCP connection to `addr` owned by process `owner`, which gets
    /// `Info::TcpConnected` once it is established or `Info::TcpClosed` if it fails (see
    /// `Context::tcp_connect`). Returns the connection's id at once.
    pub fn tcp_connect(&self, owner: Pid, addr: &str) -> Result<PortId, PortError> {
        if !self.is_alive(owner) {
            return Err(PortError::NoProc(owner));
        }
        self.inner.ports.connect(&self.inner, owner, addr)
    }

    /// Queues bytes on a connection (see `Context::tcp_send`).
    pub fn tcp_send(&self, conn: PortId, bytes: &[u8]) -> Result<(), PortError> {
        self.inner.ports.send(conn, bytes)
    }

    /// Closes a listener, or a connection once its queued output is sent.
    pub fn tcp_close(&self, port: PortId) -> Result<(), PortError> {
        self.inner.ports.close(port)
    }

    /// Makes `pid` the owner of a port, whoever owns it now, and starts reading a connection.
    pub fn tcp_set_owner(&self, port: PortId, pid: Pid) -> Result<(), PortError> {
        self.inner.ports.set_owner(&self.inner, port, None, pid)
    }

    /// Every open port (listeners and connections), by id.
    pub fn ports(&self) -> Vec<PortInfo> {
        self.inner.ports.info()
    }

    /// The node's tables (see [`crate::tables`]): what module code reaches through
    /// `Context::table_*`, for the node's own code, status displays and tests.
    pub fn tables(&self) -> &Tables {
        &self.inner.tables
    }

    /// Number of active timers.
    pub fn active_timers(&self) -> usize {
        self.inner.timers.active()
    }

    pub(crate) fn add_root(&self, pid: Pid) {
        self.inner.roots.lock().push(pid);
    }

    /// Stops the node: shuts down top-level supervisors in reverse start order (each shuts its
    /// tree down in reverse order), kills what is left, and stops the threads.
    pub fn shutdown(&self, timeout: Duration) {
        let roots: Vec<Pid> = self.inner.roots.lock().iter().rev().copied().collect();
        for pid in roots {
            if let Some(process) = self.inner.lookup(pid) {
                let _ = self.inner.push_sys_to(
                    &process,
                    SysMsg::Exit {
                        from: Pid(0),
                        reason: ExitReason::Shutdown,
                    },
                );
                if process.exit.wait(Some(timeout)).is_none() {
                    crate::run::force_exit(&self.inner, &process, ExitReason::Killed);
                }
            }
        }
        self.inner.stopped.store(true, Ordering::SeqCst);
        for pid in self.inner.all_pids() {
            if let Some(process) = self.inner.lookup(pid) {
                let _ = self.inner.push_sys_to(&process, SysMsg::Kill);
                if process
                    .exit
                    .wait(Some(Duration::from_millis(100)))
                    .is_none()
                {
                    crate::run::force_exit(&self.inner, &process, ExitReason::Killed);
                }
            }
        }
        self.inner.ports.stop();
        self.inner.timers.stop();
        if let Some(handle) = self.inner.timer_thread.lock().take() {
            let _ = handle.join();
        }
        self.inner.scheduler.stop();
        if self.inner.owns_copy_dir {
            let _ = std::fs::remove_dir_all(self.inner.code.copy_dir());
        }
    }
}
