//! The reply of one call: a one-shot slot the callee fills once and the caller waits on.
//!
//! A call used to make a `crossbeam_channel::bounded(1)` per call: its cache-padded state
//! is allocated with 128-byte alignment (`posix_memalign`, ~1k instructions with glibc) and
//! its waiting goes through the channel's waker lists. The slot is one small allocation and
//! one atomic state word. The caller spins briefly before it parks, yielding its CPU between
//! rounds of polls (a reply from a running scheduler often comes within a few microseconds,
//! and an unpark costs a system call on both sides); the callee unparks it only if it parked.

use crate::error::CallError;
use crate::process::Payload;
use std::cell::UnsafeCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// What a call gets back.
pub(crate) type Answer = Result<Payload, CallError>;

/// Nothing yet, nobody parked.
const EMPTY: u8 = 0;
/// The caller is parked (or about to park) waiting.
const PARKED: u8 = 1;
/// The answer is in `value`.
const FULL: u8 = 2;
/// The callee dropped its end without answering (it exited or crashed).
const CLOSED: u8 = 3;

/// How long the caller spins before it parks: a few round trips to a running scheduler.
const SPIN: Duration = Duration::from_micros(20);

struct Slot {
    state: AtomicU8,
    /// Written once by the sender before it publishes `FULL`; read by the receiver after.
    value: UnsafeCell<Option<Answer>>,
    caller: Thread,
}

// SAFETY: `value` is written only by the one sender, before the release store of FULL, and
// read only by the one receiver after the acquire load that sees FULL.
unsafe impl Sync for Slot {}

/// The callee's end: answer once with [`ReplyTx::send`]; dropping it unanswered tells the
/// caller the callee went away.
pub(crate) struct ReplyTx {
    slot: Arc<Slot>,
}

/// The caller's end.
pub(crate) struct ReplyRx {
    slot: Arc<Slot>,
}

/// Why waiting for an answer ended without one.
pub(crate) enum WaitError {
    /// The deadline passed.
    Timeout,
    /// The callee dropped its end without answering.
    Closed,
}

/// A new reply slot for a call made on the current thread.
pub(crate) fn channel() -> (ReplyTx, ReplyRx) {
    let slot = Arc::new(Slot {
        state: AtomicU8::new(EMPTY),
        value: UnsafeCell::new(None),
        caller: std::thread::current(),
    });
    (ReplyTx { slot: slot.clone() }, ReplyRx { slot })
}

impl ReplyTx {
    /// Delivers the answer (dropped if the caller gave up waiting).
    pub(crate) fn send(self, answer: Answer) {
        // SAFETY: only this end writes, once (it is consumed); the caller reads only after
        // seeing FULL below.
        unsafe { *self.slot.value.get() = Some(answer) };
        self.publish(FULL);
    }

    fn publish(&self, state: u8) {
        if self.slot.state.swap(state, Ordering::AcqRel) == PARKED {
            self.slot.caller.unpark();
        }
    }
}

impl Drop for ReplyTx {
    fn drop(&mut self) {
        // After `send` the state is FULL already; otherwise the callee went away unanswered.
        if self.slot.state.load(Ordering::Acquire) != FULL {
            self.publish(CLOSED);
        }
    }
}

impl ReplyRx {
    /// Waits until `timeout` has passed for the answer.
    pub(crate) fn wait(self, timeout: Duration) -> Result<Answer, WaitError> {
        let state = &self.slot.state;
        let start = Instant::now();
        let deadline = start + timeout;
        let spin_until = start + SPIN.min(timeout);
        'spin: loop {
            for _ in 0..64 {
                if state.load(Ordering::Acquire) >= FULL {
                    return self.take();
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= spin_until {
                break 'spin;
            }
            // Let a thread that shares this CPU run (the callee's scheduler, say).
            std::thread::yield_now();
        }
        if state
            .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return self.take();
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                // Give up unless the answer came in the meantime.
                return match state.compare_exchange(
                    PARKED,
                    EMPTY,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => Err(WaitError::Timeout),
                    Err(_) => self.take(),
                };
            }
            std::thread::park_timeout(deadline - now);
            if state.load(Ordering::Acquire) >= FULL {
                return self.take();
            }
        }
    }

    fn take(&self) -> Result<Answer, WaitError> {
        match self.slot.state.load(Ordering::Acquire) {
            // SAFETY: FULL was published with release ordering after the write; the sender
            // never touches the value again.
            FULL => unsafe { (*self.slot.value.get()).take() }.ok_or(WaitError::Closed),
            _ => Err(WaitError::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_arrive_from_another_thread_spinning_or_parked() {
        for delay in [0, 50] {
            let (tx, rx) = channel();
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                tx.send(Ok(Payload::Bytes(vec![7])));
            });
            match rx.wait(Duration::from_secs(5)) {
                Ok(Ok(Payload::Bytes(b))) => assert_eq!(b, vec![7]),
                _ => panic!("no answer"),
            }
            sender.join().unwrap();
        }
    }

    #[test]
    fn a_dropped_sender_closes_and_a_silent_one_times_out() {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            drop(tx);
        });
        assert!(matches!(
            rx.wait(Duration::from_secs(5)),
            Err(WaitError::Closed)
        ));

        let (tx, rx) = channel();
        assert!(matches!(
            rx.wait(Duration::from_millis(40)),
            Err(WaitError::Timeout)
        ));
        // A late answer after the caller gave up is simply dropped.
        tx.send(Ok(Payload::Bytes(vec![1])));
    }
}
