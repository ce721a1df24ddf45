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
    /// A handover is taking the timers: none fires.
    paused: AtomicBool,
    /// Held while a batch of due timers is taken and delivered, so that a pause waits for
    /// one under way.
    firing: Mutex<()>,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            next_id: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            firing: Mutex::new(()),
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

    /// Stops firing (a handover takes the timers); returns once no delivery is under way.
    pub(crate) fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        drop(self.firing.lock());
    }

    /// Fires again after [`Timers::pause`].
    pub(crate) fn unpause(&self) {
        self.paused.store(false, Ordering::SeqCst);
        let _guard = self.state.lock();
        self.cv.notify_all();
    }

    /// Every pending timer, and the next id (for a handover; paused meanwhile).
    pub(crate) fn export(&self) -> (Vec<crate::handover::image::TimerImage>, u64) {
        let state = self.state.lock();
        let now = Instant::now();
        let mut out: Vec<crate::handover::image::TimerImage> = state
            .heap
            .iter()
            .filter_map(|Reverse((deadline, id))| {
                let entry = state.entries.get(id)?;
                Some(crate::handover::image::TimerImage {
                    id: *id,
                    target: entry.target.0,
                    remaining_us: deadline.saturating_duration_since(now).as_micros() as u64,
                    interval_us: entry.interval.map(|d| d.as_micros() as u64),
                    message: entry.message.clone(),
                })
            })
            .collect();
        out.sort_by_key(|t| t.id);
        out.dedup_by_key(|t| t.id);
        (out, self.next_id.load(Ordering::SeqCst))
    }

    /// Arms handed-over timers under their ids; ids go on from `next_id`.
    pub(crate) fn import(&self, timers: &[crate::handover::image::TimerImage], next_id: u64) {
        self.next_id.fetch_max(next_id, Ordering::SeqCst);
        let now = Instant::now();
        let mut state = self.state.lock();
        for timer in timers {
            state.entries.insert(
                timer.id,
                Entry {
                    target: Pid(timer.target),
                    message: timer.message.clone(),
                    interval: timer.interval_us.map(Duration::from_micros),
                },
            );
            state.heap.push(Reverse((
                now + Duration::from_micros(timer.remaining_us),
                timer.id,
            )));
        }
        self.cv.notify_one();
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
        let firing = timers.firing.lock();
        if timers.paused.load(Ordering::SeqCst) {
            drop(firing);
            timers_wait(&inner, Duration::from_millis(500));
            continue;
        }
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
                drop(firing);
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
    if !timers.paused.load(Ordering::SeqCst)
        && let Some(d) = earliest
        && d <= Instant::now()
    {
        return;
    }
    let _ = timers.cv.wait_for(&mut state, wait);
}
