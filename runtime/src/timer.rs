//! Timers: `send_after` and `send_interval`, served by one thread with a deadline heap.

use crate::node::NodeInner;
use parking_lot::{Condvar, Mutex};
use relup_module::Pid;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

struct Entry {
    target: Pid,
    message: Vec<u8>,
    interval: Option<Duration>,
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    entries: HashMap<u64, Entry>,
}

/// The node's timer service.
pub(crate) struct Timers {
    state: Mutex<State>,
    cv: Condvar,
    next_id: AtomicU64,
    stopping: AtomicBool,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            next_id: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
        }
    }

    pub(crate) fn start(node: &Arc<NodeInner>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let weak = Arc::downgrade(node);
        std::thread::Builder::new()
            .name("relup-timers".into())
            .spawn(move || timer_loop(weak))
    }

    /// Sends `message` (an info message) to `target` after `delay`, repeating if `interval`.
    pub(crate) fn start_timer(
        &self,
        target: Pid,
        delay: Duration,
        interval: bool,
        message: Vec<u8>,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + delay;
        let interval = interval.then_some(delay.max(Duration::from_millis(1)));
        let mut state = self.state.lock();
        state.entries.insert(
            id,
            Entry {
                target,
                message,
                interval,
            },
        );
        state.heap.push(Reverse((deadline, id)));
        self.cv.notify_one();
        id
    }

    /// Cancels a timer; true if it was still active.
    pub(crate) fn cancel(&self, id: u64) -> bool {
        self.state.lock().entries.remove(&id).is_some()
    }

    /// Number of active timers.
    pub(crate) fn active(&self) -> usize {
        self.state.lock().entries.len()
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _guard = self.state.lock();
        self.cv.notify_all();
    }
}

fn timer_loop(node: Weak<NodeInner>) {
    loop {
        let Some(inner) = node.upgrade() else { return };
        let timers = &inner.timers;
        let mut due: Vec<(Pid, Vec<u8>)> = Vec::new();
        {
            let mut state = timers.state.lock();
            if timers.stopping.load(Ordering::SeqCst) {
                return;
            }
            let now = Instant::now();
            while let Some(Reverse((deadline, id))) = state.heap.peek().copied() {
                if deadline > now {
                    break;
                }
                state.heap.pop();
                let Some(entry) = state.entries.get(&id) else {
                    continue;
                };
                due.push((entry.target, entry.message.clone()));
                match entry.interval {
                    Some(every) => {
                        // Next tick from the planned deadline, so intervals do not drift.
                        let mut next = deadline + every;
                        if next <= now {
                            next = now + every;
                        }
                        state.heap.push(Reverse((next, id)));
                    }
                    None => {
                        state.entries.remove(&id);
                    }
                }
            }
            if due.is_empty() {
                let wait = state
                    .heap
                    .peek()
                    .map(|Reverse((d, _))| d.saturating_duration_since(now))
                    .unwrap_or(Duration::from_millis(500))
                    .min(Duration::from_millis(500));
                drop(state);
                timers_wait(&inner, wait);
                continue;
            }
        }
        for (target, message) in due {
            if !inner.deliver_timer(target, message) {
                // The target is gone: its interval timers go with it.
                let mut state = timers.state.lock();
                state.entries.retain(|_, e| e.target != target);
            }
        }
    }
}

/// Waits on the condvar until the next deadline, a new timer, or a stop.
fn timers_wait(inner: &NodeInner, wait: Duration) {
    let timers = &inner.timers;
    let mut state = timers.state.lock();
    if timers.stopping.load(Ordering::SeqCst) {
        return;
    }
    let earliest = state.heap.peek().map(|Reverse((d, _))| *d);
    if let Some(d) = earliest
        && d <= Instant::now()
    {
        return;
    }
    let _ = timers.cv.wait_for(&mut state, wait);
}
