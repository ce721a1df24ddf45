//! The node's hot counters: messages, calls and the call latency histogram, striped by thread
//! so that the hot path is one uncontended atomic add on a cache line of its own thread (no
//! lock, no line shared between schedulers); a scrape sums the stripes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Stripes: threads share one when there are more threads than this (still correct, only
/// contended).
const STRIPES: usize = 16;

/// Upper bounds of the call latency buckets, in microseconds (the `le` labels); the last
/// bucket, `+Inf`, is implicit.
pub(crate) const CALL_BUCKETS_MICROS: [u64; 12] = [
    10, 25, 50, 100, 250, 500, 1_000, 5_000, 25_000, 100_000, 1_000_000, 5_000_000,
];

/// Counters of one stripe: bucket counts (the last is `+Inf`), then messages, calls, and the
/// sum of call latencies in nanoseconds.
const SLOTS: usize = CALL_BUCKETS_MICROS.len() + 1 + 3;
const MESSAGES: usize = CALL_BUCKETS_MICROS.len() + 1;
const CALLS: usize = MESSAGES + 1;
const CALL_NANOS: usize = CALLS + 1;

/// One thread's counters, on cache lines of their own.
#[repr(align(128))]
struct Stripe([AtomicU64; SLOTS]);

/// The striped hot counters of a node.
pub(crate) struct HotCounters {
    stripes: Box<[Stripe]>,
}

/// What [`HotCounters::sum`] reads: totals over every stripe.
#[derive(Debug, Clone, Default)]
pub(crate) struct HotTotals {
    /// Messages queued to mailboxes (casts, calls, plain messages, timer messages).
    pub(crate) messages: u64,
    /// Calls answered, failed or timed out.
    pub(crate) calls: u64,
    /// Their latencies summed, in nanoseconds.
    pub(crate) call_nanos: u64,
    /// Calls per bucket of [`CALL_BUCKETS_MICROS`], not cumulative; the last is `+Inf`.
    pub(crate) buckets: Vec<u64>,
}

thread_local! {
    /// This thread's stripe, given out round-robin on first use.
    static STRIPE: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
    };
}

fn stripe_index() -> usize {
    // A thread being torn down (its locals gone) uses stripe 0.
    STRIPE.try_with(|s| *s).unwrap_or(0)
}

impl HotCounters {
    pub(crate) fn new() -> HotCounters {
        HotCounters {
            stripes: (0..STRIPES)
                .map(|_| Stripe(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    fn stripe(&self) -> &Stripe {
        &self.stripes[stripe_index()]
    }

    /// One message queued.
    #[inline]
    pub(crate) fn message(&self) {
        self.stripe().0[MESSAGES].fetch_add(1, Ordering::Relaxed);
    }

    /// One call done (whatever its result) after `took`.
    pub(crate) fn call(&self, took: Duration) {
        let stripe = &self.stripe().0;
        let micros = took.as_micros();
        let bucket = CALL_BUCKETS_MICROS
            .iter()
            .position(|&le| micros <= u128::from(le))
            .unwrap_or(CALL_BUCKETS_MICROS.len());
        stripe[bucket].fetch_add(1, Ordering::Relaxed);
        // Its message is counted at the sum (messages = messages + calls): one add less.
        stripe[CALLS].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        stripe[CALL_NANOS].fetch_add(nanos, Ordering::Relaxed);
    }

    /// Totals over every stripe (a scrape).
    pub(crate) fn sum(&self) -> HotTotals {
        let mut totals = HotTotals {
            buckets: vec![0; CALL_BUCKETS_MICROS.len() + 1],
            ..HotTotals::default()
        };
        for stripe in self.stripes.iter() {
            let read = |i: usize| stripe.0[i].load(Ordering::Relaxed);
            for (i, bucket) in totals.buckets.iter_mut().enumerate() {
                *bucket += read(i);
            }
            totals.messages += read(MESSAGES) + read(CALLS);
            totals.calls += read(CALLS);
            totals.call_nanos = totals.call_nanos.saturating_add(read(CALL_NANOS));
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_their_bucket_and_threads_sum_up() {
        let counters = std::sync::Arc::new(HotCounters::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || {
                    counters.message();
                    counters.call(Duration::from_micros(30));
                    counters.call(Duration::from_secs(60));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let totals = counters.sum();
        assert_eq!(totals.messages, 12);
        assert_eq!(totals.calls, 8);
        // 30 us is in the le=50 bucket (index 2); 60 s is past every bound (+Inf).
        assert_eq!(totals.buckets[2], 4);
        assert_eq!(totals.buckets[CALL_BUCKETS_MICROS.len()], 4);
        assert_eq!(totals.buckets.iter().sum::<u64>(), 8);
    }
}
