//! Messaging throughput of a relup node (DESIGN.md §5 "Targets": calls and casts).
//!
//! - `call/dylib_1x1`: round trip of one `Call::Get` from one client thread to one `counter`
//!   process (the 1.0.0 cdylib fixture); throughput is calls/s.
//! - `call/native_1x1`: the same round trip against a server type linked into this binary and
//!   registered with `register_native`, to show what the dlopen'd code path costs on top.
//! - `call/dylib_2x2`: two client threads, each calling its own `counter` process; throughput
//!   is the aggregate calls/s.
//! - `call/dylib_2x1`: two client threads calling the same process (aggregate calls/s).
//! - `cast/dylib_1x1`: one client casts `Cast::Add(1)` to one process, then one `Call::Get`
//!   that returns only once every cast was handled; throughput is casts/s until all handled.
//!
//! Every node has 2 scheduler threads; clients are plain OS threads outside the pool, as an
//! embedding service's threads would be.
//!
//! First, as a yardstick of the machine, it prints the round trip of one cache line between
//! two spinning threads (no relup code): the floor of any hand-off between two threads. On a
//! VM it changes with where the host runs the two vCPUs (about 0.1-0.4 us here), and every
//! figure below moves with it.

mod common;

use criterion::{Criterion, Throughput};
use relup::module::{Context, Server};
use relup::runtime::{Node, Pid, SpawnOptions};
use relup_fixture_counter_api::{Args, Call, Cast, Info, Reply};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A statically linked counter speaking the fixture protocol (calls `Get`/`Add`, cast `Add`).
#[derive(Serialize, Deserialize)]
struct NativeCounter {
    count: i64,
}

impl Server for NativeCounter {
    type Args = Args;
    type Call = Call;
    type Reply = Reply;
    type Cast = Cast;
    type Info = Info;

    fn init(args: Args, _ctx: &mut Context<'_>) -> Result<Self, String> {
        Ok(NativeCounter { count: args.start })
    }

    fn handle_call(&mut self, request: Call, _ctx: &mut Context<'_>) -> Reply {
        match request {
            Call::Get => Reply::Count(self.count),
            Call::Add(n) => {
                self.count += n;
                Reply::Count(self.count)
            }
            _ => Reply::Ok,
        }
    }

    fn handle_cast(&mut self, message: Cast, _ctx: &mut Context<'_>) {
        if let Cast::Add(n) = message {
            self.count += n;
        }
    }
}

fn spawn_counter(node: &Node, module: &str) -> Pid {
    node.spawn(module, &Args::default(), SpawnOptions::default())
        .expect("counter spawns")
}

fn get(node: &Node, pid: Pid) -> i64 {
    match node.call::<Call, Reply>(pid, &Call::Get, TIMEOUT) {
        Ok(Reply::Count(n)) => n,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Each of `clients` threads makes `iters` calls to `pids[i % pids.len()]`; the wall time.
fn parallel_calls(node: &Node, pids: &[Pid], clients: usize, iters: u64) -> Duration {
    let barrier = std::sync::Barrier::new(clients + 1);
    std::thread::scope(|s| {
        for i in 0..clients {
            let pid = pids[i % pids.len()];
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    black_box(get(node, pid));
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins every client before returning.
        start
    })
    .elapsed()
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

fn calls(c: &mut Criterion, node: &Node) {
    let dylib = spawn_counter(node, "counter");
    let native = spawn_counter(node, "native_counter");
    let dylib2 = [dylib, spawn_counter(node, "counter")];

    let mut group = c.benchmark_group("call");
    group.throughput(Throughput::Elements(1));
    group.bench_function("dylib_1x1", |b| b.iter(|| black_box(get(node, dylib))));
    group.bench_function("native_1x1", |b| b.iter(|| black_box(get(node, native))));
    group.throughput(Throughput::Elements(2));
    group.bench_function("dylib_2x2", |b| {
        b.iter_custom(|iters| parallel_calls(node, &dylib2, 2, iters))
    });
    group.bench_function("dylib_2x1", |b| {
        b.iter_custom(|iters| parallel_calls(node, &dylib2[..1], 2, iters))
    });
    group.finish();
}

fn casts(c: &mut Criterion, node: &Node) {
    let pid = spawn_counter(node, "counter");
    let mut group = c.benchmark_group("cast");
    group.throughput(Throughput::Elements(1));
    group.bench_function("dylib_1x1", |b| {
        b.iter_custom(|iters| {
            let before = get(node, pid);
            let start = Instant::now();
            for _ in 0..iters {
                node.cast(pid, &Cast::Add(1)).expect("cast");
            }
            let after = get(node, pid);
            let elapsed = start.elapsed();
            assert_eq!(after - before, iters as i64, "every cast was handled");
            elapsed
        })
    });
    group.finish();
}

/// Round trip of one cache line between two threads that spin on it, per trip.
fn cache_line_round_trip(trips: u64) -> Duration {
    use std::sync::atomic::{AtomicU64, Ordering};
    let line = std::sync::Arc::new(AtomicU64::new(0));
    let other = line.clone();
    let echo = std::thread::spawn(move || {
        for i in 0..trips {
            while other.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            other.store(2 * i + 2, Ordering::Release);
        }
    });
    let start = Instant::now();
    for i in 0..trips {
        line.store(2 * i + 1, Ordering::Release);
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let took = start.elapsed();
    echo.join().expect("echo thread");
    took / trips as u32
}

fn main() {
    let trips = if common::bench_mode() {
        1_000_000
    } else {
        1_000
    };
    let trip = cache_line_round_trip(trips);
    println!(
        "cache line round trip between two spinning threads: {} ns",
        trip.as_nanos()
    );
    common::report::emit("cache_line_round_trip", 1, trip.as_nanos() as f64, "ns");
    let node = common::node_with_counter();
    node.code()
        .register_native::<NativeCounter>("native_counter", "1.0.0")
        .expect("native counter registers");
    let mut c = config();
    calls(&mut c, &node);
    casts(&mut c, &node);
    common::stop(node);
    c.final_summary();
    println!("{}", common::machine());
}
