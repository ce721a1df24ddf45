//! Spawning under a supervisor and memory per idle process (DESIGN.md §5 "Targets").
//!
//! - Plain measurements first, in a fresh node of a fresh process (before criterion allocates
//!   anything), printed as text:
//!   - `memory per idle process`: RSS before and after starting 100 000 idle `worker` 1.0.0
//!     children (no timer: like the anchor's idle `anchor_echo` gen_server) under a
//!     simple_one_for_one supervisor, delta / 100 000 (everything the node keeps per process:
//!     process table entry, mailbox, module instance and state, the supervisor's record of
//!     the child);
//!   - `spawn N=100000`: the wall time of those 100 000 `start_simple_child` calls, per spawn.
//! - criterion `spawn/simple_one_for_one_10k`: 10 000 sequential `start_simple_child` calls
//!   from one client thread into a fresh supervisor (created and shut down outside the timed
//!   part); throughput is spawns/s, i.e. the time per spawn.
//!
//! Under `cargo test --benches` (no `--bench` argument) the plain part uses 1 000 processes.

mod common;
#[allow(dead_code)]
#[path = "../tests/modules/worker_v1/src/api.rs"]
mod worker;

use criterion::{Criterion, Throughput};
use relup::runtime::{ChildSpec, ExitReason, Node, Pid, Strategy, SupervisorSpec};
use std::time::{Duration, Instant};
use worker::Args;

const BATCH: u64 = 10_000;

fn start_sup(node: &Node, name: &str) -> Pid {
    let spec = SupervisorSpec::new(
        Strategy::SimpleOneForOne,
        vec![ChildSpec::worker("w", "worker", &Args::default())],
    )
    .intensity(10, Duration::from_secs(1));
    node.start_supervisor(spec, Some(name))
        .expect("supervisor starts")
}

fn stop_sup(node: &Node, sup: Pid) {
    node.exit(sup, ExitReason::Shutdown);
    assert!(
        node.wait_exit(sup, Some(Duration::from_secs(120)))
            .is_some(),
        "supervisor shut down"
    );
}

/// Starts `n` children of `sup`; the wall time.
fn spawn_children(node: &Node, sup: &str, n: u64) -> Duration {
    let args = Args::default();
    let start = Instant::now();
    for _ in 0..n {
        node.start_simple_child(sup, &args).expect("child starts");
    }
    start.elapsed()
}

/// Memory per idle process and the time per spawn at 100k, printed.
fn plain(n: u64) {
    let node = common::node_with_worker();
    let sup = start_sup(&node, "mem_sup");
    std::thread::sleep(Duration::from_millis(200));
    let before = common::rss_bytes();
    let took = spawn_children(&node, "mem_sup", n);
    std::thread::sleep(Duration::from_millis(200));
    let after = common::rss_bytes();
    assert_eq!(node.process_count() as u64, n + 1);
    println!(
        "spawn N={n}: {:.2} us per spawn ({:.0} ms in all)",
        took.as_secs_f64() * 1e6 / n as f64,
        common::ms(took)
    );
    println!(
        "memory per idle process: {} bytes (RSS {:.1} MiB -> {:.1} MiB, N={n})",
        after.saturating_sub(before) / n,
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    common::report::emit("spawn", n, took.as_secs_f64() * 1e6 / n as f64, "us");
    common::report::emit(
        "memory",
        n,
        (after.saturating_sub(before) / n) as f64,
        "bytes",
    );
    let stopping = Instant::now();
    stop_sup(&node, sup);
    println!(
        "shutdown of the supervisor with N={n} children: {:.0} ms",
        common::ms(stopping.elapsed())
    );
    common::stop(node);
}

fn main() {
    plain(if common::bench_mode() { 100_000 } else { 1_000 });

    let node = common::node_with_worker();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut group = c.benchmark_group("spawn");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("simple_one_for_one_10k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let sup = start_sup(&node, "bench_sup");
                total += spawn_children(&node, "bench_sup", BATCH);
                stop_sup(&node, sup);
            }
            total
        })
    });
    group.finish();
    common::stop(node);
    c.final_summary();
    println!("{}", common::machine());
}
