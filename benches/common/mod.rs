//! Shared bench support: builds the counter and worker fixture modules (real cdylibs from this workspace)
//! in release mode, starts quiet nodes, reads RSS, and describes the machine.

#![allow(dead_code)]

pub mod release;
pub mod report;

use relup::runtime::{Expect, LogLine, Node, NodeConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Paths of the built counter modules.
pub struct Fixtures {
    /// `counter` 1.0.0.
    pub counter_v1: PathBuf,
    /// `counter` 2.0.0.
    pub counter_v2: PathBuf,
    /// `worker` 1.0.0 (shaped like the OTP anchor's ticker_server).
    pub worker_v1: PathBuf,
    /// `worker` 2.0.0 (adds a state field).
    pub worker_v2: PathBuf,
}

/// Builds the counter and worker fixture crates once, optimized, into `target/fixtures` (their own target
/// directory, so the build never waits on the lock of the `cargo bench` that runs us).
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = root.join("target").join("fixtures");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(root)
            .args(["build", "--quiet", "--release"])
            .args([
                "-p",
                "relup-fixture-counter-v1",
                "-p",
                "relup-fixture-counter-v2",
                "-p",
                "relup-fixture-worker-v1",
                "-p",
                "relup-fixture-worker-v2",
            ])
            .arg("--target-dir")
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the fixture modules failed");
        let lib = |name: &str| {
            target
                .join("release")
                .join(format!("librelup_fixture_{name}.so"))
        };
        Fixtures {
            counter_v1: lib("counter_v1"),
            counter_v2: lib("counter_v2"),
            worker_v1: lib("worker_v1"),
            worker_v2: lib("worker_v2"),
        }
    })
}

/// A node with `schedulers` threads that drops its log lines. `RELUP_BENCH_COPY_DIR`, if set,
/// is where the node puts the private copies of the libraries it loads (default: a fresh
/// directory under the system temporary directory).
pub fn node(schedulers: usize) -> Node {
    let copy_dir = std::env::var_os("RELUP_BENCH_COPY_DIR").map(|dir| {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        PathBuf::from(dir).join(format!(
            "relup-bench-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ))
    });
    Node::start(NodeConfig {
        schedulers,
        logger: Some(Arc::new(|_line: &LogLine<'_>| {})),
        copy_dir,
        ..NodeConfig::default()
    })
    .expect("node starts")
}

/// A 2-scheduler node with counter 1.0.0 loaded as current.
pub fn node_with_counter() -> Node {
    let node = node(2);
    // SAFETY: a fixture module built from this workspace's sources.
    unsafe {
        node.code()
            .load_current(&fixtures().counter_v1, &Expect::default())
    }
    .expect("counter 1.0.0 loads");
    node
}

/// A 2-scheduler node with worker 1.0.0 loaded as current.
pub fn node_with_worker() -> Node {
    let node = node(2);
    // SAFETY: a fixture module built from this workspace's sources.
    unsafe {
        node.code()
            .load_current(&fixtures().worker_v1, &Expect::default())
    }
    .expect("worker 1.0.0 loads");
    node
}

/// Stops a node, giving its supervisors time to stop their children, and removes the copies
/// of its libraries if they went to `RELUP_BENCH_COPY_DIR` (the node only removes a
/// directory it chose itself).
pub fn stop(node: Node) {
    node.shutdown(Duration::from_secs(60));
    if std::env::var_os("RELUP_BENCH_COPY_DIR").is_some() {
        let _ = std::fs::remove_dir_all(node.code().copy_dir());
    }
}

/// Whether `cargo bench` runs us (it passes `--bench`); under `cargo test --benches` the
/// plain-main parts run a small smoke version instead.
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Resident set size of this process in bytes (`VmRSS` in `/proc/self/status`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status has VmRSS");
    kib * 1024
}

/// "machine: N cores, MODEL" from `nproc`'s source and `/proc/cpuinfo`.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("machine: {cores} cores (nproc), {model}")
}

/// Median of a non-empty list of durations.
pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
