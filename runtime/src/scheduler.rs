//! A fixed pool of scheduler threads that run processes, with compensation for threads
//! blocked in synchronous calls.
//!
//! A runnable process sits in one shared run queue; a worker takes it and runs a batch of its
//! messages. When a process blocks its worker in a synchronous call (or a supervisor waits for
//! a child to exit), the pool starts a spare thread so that `size` threads keep running
//! processes: a call from one process to another never deadlocks a pool of 2. Spares retire
//! once they have been idle and are no longer needed.

use crate::node::NodeInner;
use crate::process::Process;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker waits before checking whether it is a spare that can retire.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// How long [`Scheduler::stop`] waits for the workers. A worker stuck in a callback that
/// never returns (its process was already killed from outside) is left behind rather than
/// waited for forever, so that a node with a hung module still stops.
const STOP_GRACE: Duration = Duration::from_secs(5);

thread_local! {
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

pub(crate) struct Scheduler {
    tx: Sender<Arc<Process>>,
    rx: Receiver<Arc<Process>>,
    size: usize,
    max_threads: usize,
    threads: AtomicUsize,
    blocked: AtomicUsize,
    spawned_spares: AtomicUsize,
    stopping: AtomicBool,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Scheduler {
    pub(crate) fn new(size: usize, max_threads: usize) -> Scheduler {
        let (tx, rx) = crossbeam_channel::unbounded();
        Scheduler {
            tx,
            rx,
            size: size.max(1),
            max_threads: max_threads.max(size.max(1)),
            threads: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
            spawned_spares: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            handles: Mutex::new(Vec::new()),
        }
    }

    /// Starts the fixed workers.
    pub(crate) fn start(&self, node: &Arc<NodeInner>) {
        for _ in 0..self.size {
            self.spawn_worker(node);
        }
    }

    fn spawn_worker(&self, node: &Arc<NodeInner>) {
        self.threads.fetch_add(1, Ordering::SeqCst);
        let weak = Arc::downgrade(node);
        let rx = self.rx.clone();
        let spawned = std::thread::Builder::new()
            .name("relup-sched".into())
            .spawn(move || worker_loop(weak, rx));
        match spawned {
            Ok(handle) => {
                let mut handles = self.handles.lock();
                // Retired spares are done: keep only live threads' handles, so a node that
                // makes many blocking calls over its life does not pile them up.
                handles.retain(|h| !h.is_finished());
                handles.push(handle);
            }
            Err(_) => {
                self.threads.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Puts a process in the run queue.
    pub(crate) fn schedule(&self, process: Arc<Process>) {
        // The receiver lives as long as the scheduler, so this cannot fail.
        let _ = self.tx.send(process);
    }

    /// Number of threads the pool keeps running processes.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Spare threads started so far to compensate for blocked workers.
    pub(crate) fn spares_started(&self) -> usize {
        self.spawned_spares.load(Ordering::Relaxed)
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Runs `wait`, which blocks the current thread; if it is a worker, first makes sure
    /// enough other workers run processes meanwhile.
    pub(crate) fn blocking<R>(&self, node: &Arc<NodeInner>, wait: impl FnOnce() -> R) -> R {
        if !ON_WORKER.with(|w| w.get()) {
            return wait();
        }
        let blocked = self.blocked.fetch_add(1, Ordering::SeqCst) + 1;
        let threads = self.threads.load(Ordering::SeqCst);
        if threads.saturating_sub(blocked) < self.size
            && threads < self.max_threads
            && !self.stopping()
        {
            self.spawned_spares.fetch_add(1, Ordering::Relaxed);
            self.spawn_worker(node);
        }
        let result = wait();
        self.blocked.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Asks every worker to stop and waits for them, at most [`STOP_GRACE`] (not from a
    /// worker thread).
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if ON_WORKER.with(|w| w.get()) {
            return;
        }
        let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *self.handles.lock());
        let deadline = Instant::now() + STOP_GRACE;
        for handle in handles {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }

    /// Whether a spare worker should retire now (more runnable threads than needed).
    fn try_retire(&self) -> bool {
        let mut threads = self.threads.load(Ordering::SeqCst);
        loop {
            let running = threads.saturating_sub(self.blocked.load(Ordering::SeqCst));
            if running <= self.size {
                return false;
            }
            match self.threads.compare_exchange(
                threads,
                threads - 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => threads = now,
            }
        }
    }
}

fn worker_loop(node: Weak<NodeInner>, rx: Receiver<Arc<Process>>) {
    ON_WORKER.with(|w| w.set(true));
    loop {
        match rx.recv_timeout(IDLE_CHECK) {
            Ok(process) => {
                let Some(node) = node.upgrade() else { return };
                crate::run::run_batch(&node, process);
            }
            Err(RecvTimeoutError::Timeout) => {
                let Some(node) = node.upgrade() else { return };
                if node.scheduler.stopping() {
                    node.scheduler.threads.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
                if node.scheduler.try_retire() {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
