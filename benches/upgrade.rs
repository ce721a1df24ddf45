//! Live upgrade and downgrade of one module run by N processes, through a full install
//! (DESIGN.md §5 "Targets"; the counterpart of OTP's `release_handler:install_release`).
//!
//! For each N (default 1, 1 000, 10 000, 100 000; `RELUP_BENCH_NS` overrides), a fresh
//! 2-scheduler node (`RELUP_BENCH_SCHEDULERS` overrides) boots release `bench` 0.1.0 from a real release root (packed, deployed,
//! booted by the [`ReleaseHandler`](relup::runtime::handler::ReleaseHandler)), 0.2.0 is
//! unpacked, and N processes of module `worker` are started under the application's
//! simple_one_for_one supervisor. `worker` is shaped like the anchor's ticker_server: a small
//! state (id, interval, timer, last tick) and a 1 s interval timer (`RELUP_BENCH_TICK_MS`,
//! 0 = none); its 2.0.0 adds a field (`ticks`) that the upgrade sets and the downgrade drops. Then each of 5 cycles (`RELUP_BENCH_CYCLES`) runs
//! the same measured install in both directions:
//! - up: `handler.install(0.2.0)`: plan from the appups on disk, load `worker` 2.0.0 (sha256
//!   checked, private copy, dlopen), suspend all N, migrate each state through 2.0.0's
//!   `code_change`, make 2.0.0 current, commit, resume, journal written and synced
//!   (`RELEASES` is written when a release is made permanent, as OTP writes it at
//!   `make_permanent`, and the bench does not make one permanent);
//! - down: `handler.install(0.1.0)`, the same back to `worker` 1.0.0.
//!
//! Measured per install, printed as median (min..max) over the cycles:
//! - `total`: wall time of `install` (what OTP's `install_release` covers);
//! - `resumed`: `total` plus one call to the last worker, i.e. until every process takes
//!   messages again;
//! - `pause`: the longest round trip of a probe thread that calls one affected process (the
//!   middle worker) with `Call::Ping` every ~0.25 ms throughout the install;
//! - the install's steps as its progress reports them (`code_change` includes suspending).
//!
//! The cycles start once the unpacked libraries are more than two seconds old, as when an
//! operator unpacks and then installs: the node remembers a library's sha256 only for a file
//! that has not changed in the last two seconds (`runtime/src/digest_cache.rs`), so an install
//! within two seconds of the unpack hashes the 1 MB library again (~0.5 ms more, the
//! `load_object_code` step).
//!
//! After every install every worker is checked for the new version and its migrated state
//! (OTP's anchor checks every process too). This is a plain `main` (no criterion): at
//! N = 100 000 an install is far too slow for criterion's sampling, and the pause is not a
//! time criterion can measure. Under `cargo test --benches` (no `--bench` argument) it runs
//! N = 1 and 100, one cycle. Figures also go to `$RELUP_BENCH_JSON` (see `common/report.rs`).
//!
//! Profiling the installs alone: `mkfifo /tmp/ctl && RELUP_BENCH_PERF_CTL=/tmp/ctl perf record
//! -D -1 --control fifo:/tmp/ctl -g -- <bench binary> --bench` (the bench enables perf just
//! before each install and disables it after).

mod common;
#[allow(dead_code)]
#[path = "../tests/modules/worker_v1/src/api.rs"]
mod worker;

use common::release::{BenchRoot, SUPERVISOR};
use common::report;
use relup::runtime::install::{InstallOptions, Progress};
use relup::runtime::{Node, Pid};
use semver::Version;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use worker::{Args, Call, Reply};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Which way an install goes, and what every worker must look like afterwards.
#[derive(Clone, Copy)]
enum Way {
    Up,
    Down,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Up => "upgrade",
            Way::Down => "downgrade",
        }
    }

    /// Scenario suffix in the JSON figures.
    fn tag(self) -> &'static str {
        match self {
            Way::Up => "up",
            Way::Down => "down",
        }
    }

    fn release(self) -> Version {
        match self {
            Way::Up => Version::new(0, 2, 0),
            Way::Down => Version::new(0, 1, 0),
        }
    }

    /// Module version and `ticks` field a migrated worker reports (the upgrade starts the
    /// count at 0; the downgrade drops the field).
    fn expected(self) -> (&'static str, Option<u64>) {
        match self {
            Way::Up => ("2.0.0", Some(0)),
            Way::Down => ("1.0.0", None),
        }
    }
}

/// One install's figures.
struct Install {
    total: Duration,
    resumed: Duration,
    pause: Duration,
    /// Microseconds per step kind (first word of the step: `suspend`, `code_change`, ...).
    steps: BTreeMap<String, u64>,
}

/// Calls `pid` every ~0.25 ms until stopped; the longest round trip.
fn probe(node: Node, pid: Pid, stop: Arc<AtomicBool>) -> Duration {
    let mut longest = Duration::ZERO;
    while !stop.load(Ordering::Acquire) {
        let start = Instant::now();
        let reply = node.call::<Call, Reply>(pid, &Call::Ping, TIMEOUT);
        longest = longest.max(start.elapsed());
        assert!(matches!(reply, Ok(Reply::Pong)), "probe got {reply:?}");
        std::thread::sleep(Duration::from_micros(250));
    }
    longest
}

/// Every worker runs the version `way` installs, with its own id and the migrated field.
/// (With ticks on, a tick can land between the install and the check, so only the field's
/// presence is checked then.)
fn check_all(node: &Node, pids: &[Pid], way: Way, ticking: bool) {
    let (version, ticks) = way.expected();
    for (i, &pid) in pids.iter().enumerate() {
        match node.call::<Call, Reply>(pid, &Call::Describe, TIMEOUT) {
            Ok(Reply::Description {
                version: v,
                id,
                ticks: t,
            }) => assert!(
                v == version
                    && id == i as u64
                    && t.is_some() == ticks.is_some()
                    && (ticking || t == ticks),
                "worker {i} after the {}: {v} id {id} ticks {t:?}",
                way.name()
            ),
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

/// Writes `command` to the perf control FIFO named by `RELUP_BENCH_PERF_CTL`, if set, so
/// that `perf record -D -1 --control fifo:<path>` samples the installs only, not the start of
/// a million processes before them.
fn perf_control(command: &str) {
    if let Ok(path) = std::env::var("RELUP_BENCH_PERF_CTL") {
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut fifo| {
                std::io::Write::write_all(&mut fifo, format!("{command}\n").as_bytes())
            });
        if let Err(e) = written {
            eprintln!("cannot write {command:?} to {path}: {e}");
        }
    }
}

/// Installs the release `way` goes to, with a probe calling `probe_pid` throughout.
fn install(root: &BenchRoot, way: Way, probe_pid: Pid, last: Pid) -> Install {
    let node = root.handler.node().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (node, stop) = (node.clone(), stop.clone());
        std::thread::spawn(move || probe(node, probe_pid, stop))
    };
    // Let the probe get going before the install starts.
    std::thread::sleep(Duration::from_millis(20));
    let mut progress: Vec<Progress> = Vec::new();
    perf_control("enable");
    let start = Instant::now();
    root.handler
        .install(
            &way.release(),
            &InstallOptions::default(),
            false,
            &mut |p| progress.push(p.clone()),
        )
        .expect("install succeeds");
    let total = start.elapsed();
    perf_control("disable");
    node.call::<Call, Reply>(last, &Call::Ping, TIMEOUT)
        .expect("last worker answers");
    let resumed = start.elapsed();
    stop.store(true, Ordering::Release);
    let pause = prober.join().expect("probe thread");
    let mut steps = BTreeMap::new();
    for p in progress.iter().filter(|p| p.step != "note") {
        let kind = p.step.split_whitespace().next().unwrap_or_default();
        *steps.entry(kind.to_string()).or_default() += p.micros;
    }
    Install {
        total,
        resumed,
        pause,
        steps,
    }
}

fn summary(mut values: Vec<Duration>) -> String {
    let median = common::median(&mut values);
    format!(
        "{:.2} ms ({:.2}..{:.2})",
        common::ms(median),
        common::ms(values[0]),
        common::ms(values[values.len() - 1])
    )
}

fn print(n: usize, way: Way, installs: &[Install]) {
    let pick = |f: fn(&Install) -> Duration| installs.iter().map(f).collect::<Vec<_>>();
    let total = common::median(&mut pick(|i| i.total));
    let pause = common::median(&mut pick(|i| i.pause));
    let max_pause = pick(|i| i.pause).into_iter().max().unwrap_or_default();
    println!(
        "{} N={n}: install median {:.2} ms, probe pause median {:.2} ms (max {:.2} ms)",
        way.name(),
        common::ms(total),
        common::ms(pause),
        common::ms(max_pause),
    );
    println!("    total   {}", summary(pick(|i| i.total)));
    println!("    resumed {}", summary(pick(|i| i.resumed)));
    println!("    pause   {}", summary(pick(|i| i.pause)));
    let kinds: Vec<&String> = installs[0].steps.keys().collect();
    let steps: Vec<String> = kinds
        .iter()
        .map(|kind| {
            let micros = installs
                .iter()
                .map(|i| Duration::from_micros(i.steps.get(*kind).copied().unwrap_or(0)))
                .collect();
            format!("{kind} {}", summary(micros))
        })
        .collect();
    println!("    steps: {}", steps.join(" | "));
    report::emit(
        &format!("install_{}", way.tag()),
        n as u64,
        common::ms(total),
        "ms",
    );
    report::emit(
        &format!("pause_{}", way.tag()),
        n as u64,
        common::ms(pause),
        "ms",
    );
}

fn run(n: usize, cycles: usize, tick_ms: u64, settle: bool, schedulers: usize) {
    let fixtures = common::fixtures();
    let node = common::node(schedulers);
    let base = std::env::temp_dir().join(format!("relup-bench-upgrade-{}-{n}", std::process::id()));
    let root = BenchRoot::start(&base, &node, fixtures);
    let started = std::time::Instant::now();
    let pids: Vec<Pid> = (0..n)
        .map(|i| {
            let args = Args {
                id: i as u64,
                interval_ms: tick_ms,
            };
            node.start_simple_child(SUPERVISOR, &args)
                .expect("worker starts")
        })
        .collect();
    let (middle, last) = (pids[n / 2], pids[n - 1]);
    if settle {
        // See the module doc: installs come a while after the unpack.
        std::thread::sleep(Duration::from_millis(2100).saturating_sub(started.elapsed()));
    }
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    for _ in 0..cycles {
        for (way, installs) in [(Way::Up, &mut ups), (Way::Down, &mut downs)] {
            installs.push(install(&root, way, middle, last));
            check_all(&node, &pids, way, tick_ms > 0);
        }
    }
    print(n, Way::Up, &ups);
    print(n, Way::Down, &downs);
    root.remove();
    common::stop(node);
}

fn main() {
    let bench = common::bench_mode();
    let ns = if bench {
        report::env_list("RELUP_BENCH_NS", &[1, 1_000, 10_000, 100_000])
    } else {
        vec![1, 100]
    };
    let cycles = if bench {
        report::env_num("RELUP_BENCH_CYCLES", 5)
    } else {
        1
    };
    let tick_ms = report::env_num("RELUP_BENCH_TICK_MS", 1000);
    let schedulers = report::env_num("RELUP_BENCH_SCHEDULERS", 2).max(1) as usize;
    println!("node: {schedulers} scheduler thread(s)");
    for n in ns {
        run(n as usize, cycles as usize, tick_ms, bench, schedulers);
    }
    println!("{}", common::machine());
}
