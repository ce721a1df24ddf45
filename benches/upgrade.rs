//! Live upgrade and downgrade of one module run by N processes (DESIGN.md §5 "Targets").
//!
//! For N = 1, 1 000, 10 000 and 100 000 `counter` processes (children of a simple_one_for_one
//! supervisor, on a fresh 2-scheduler node per N), each cycle:
//! - up: loads `counter` 2.0.0 from its file (`code().load`: private copy + dlopen) and calls
//!   `upgrade_module(Direction::Up)`: suspend all N, migrate each state through 2.0.0's
//!   `code_change` (which sets a new field), make 2.0.0 current, commit, resume;
//! - down: loads 1.0.0 again from its file and `upgrade_module(Direction::Down)`.
//!
//! Measured per install, printed as median (min..max) over the cycles:
//! - `total`: wall time of load + `upgrade_module` (what OTP's `install_release` covers);
//! - `resumed`: `total` plus one call to the last process resumed, i.e. until every process
//!   takes messages again (`upgrade_module` returns once the resumes are *sent*);
//! - `pause`: the longest round trip of a probe thread that calls one affected process (the
//!   middle child) with `Call::Get` every ~0.25 ms throughout the install;
//! - `pause while loading`: the longest of those round trips that started before the load
//!   was done (a process of the module can stall while the new version is dlopen'd);
//! - `load`, `suspend`, `migrate`, `commit+resume`: the parts (the last three from
//!   `UpgradeReport`; `suspend` includes finding the processes that run the module).
//!
//! After every install a few processes (first, middle, last) are checked for the new version
//! and migrated state. This is a plain `main` (no criterion): at N = 100 000 an install is far
//! too slow for criterion's sampling, and the pause is not a time criterion can measure.
//! Under `cargo test --benches` (no `--bench` argument) it runs N = 1 and 100, one cycle.

mod common;

use relup::module::Direction;
use relup::runtime::{
    ChildSpec, CodeChange, Expect, Node, Pid, Strategy, SupervisorSpec, UpgradeReport,
};
use relup_fixture_counter_api::{Args, Call, Reply};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

/// One install's figures.
struct Install {
    total: Duration,
    resumed: Duration,
    pause: Duration,
    pause_loading: Duration,
    load: Duration,
    report: UpgradeReport,
}

/// Calls `pid` every ~0.25 ms until stopped; when each call started and how long it took.
fn probe(node: Node, pid: Pid, stop: Arc<AtomicBool>) -> Vec<(Instant, Duration)> {
    let mut calls = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let start = Instant::now();
        let reply = node.call::<Call, Reply>(pid, &Call::Get, TIMEOUT);
        calls.push((start, start.elapsed()));
        assert!(matches!(reply, Ok(Reply::Count(_))), "probe got {reply:?}");
        std::thread::sleep(Duration::from_micros(250));
    }
    calls
}

fn describe(node: &Node, pid: Pid) -> (String, i64, i64) {
    match node.call::<Call, Reply>(pid, &Call::Describe, TIMEOUT) {
        Ok(Reply::Description {
            version,
            count,
            bonus,
            ..
        }) => (version, count, bonus),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Loads `library` and switches every `counter` process to it, with a probe on `probe_pid`.
fn install(
    node: &Node,
    library: &Path,
    direction: Direction,
    probe_pid: Pid,
    last: Pid,
) -> Install {
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (node, stop) = (node.clone(), stop.clone());
        std::thread::spawn(move || probe(node, probe_pid, stop))
    };
    // Let the probe get going before the install starts.
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    let module = node
        .code()
        .load(library, &Expect::default())
        .expect("module loads");
    let load = start.elapsed();
    let change = CodeChange::new(
        module,
        direction,
        relup::module::codec::encode(&()).expect("unit encodes"),
    );
    let report = node
        .upgrade_module(&change, TIMEOUT)
        .expect("upgrade succeeds");
    let total = start.elapsed();
    node.call::<Call, Reply>(last, &Call::Get, TIMEOUT)
        .expect("last process answers");
    let resumed = start.elapsed();
    stop.store(true, Ordering::Release);
    let calls = prober.join().expect("probe thread");
    let longest = |keep: &dyn Fn(Instant) -> bool| {
        calls
            .iter()
            .filter(|(at, _)| keep(*at))
            .map(|(_, took)| *took)
            .max()
            .unwrap_or_default()
    };
    let loaded = start + load;
    Install {
        total,
        resumed,
        pause: longest(&|_| true),
        pause_loading: longest(&|at| at < loaded),
        load,
        report,
    }
}

fn summary(values: &mut [Duration]) -> String {
    let median = common::median(values);
    format!(
        "{:.2} ms ({:.2}..{:.2})",
        common::ms(median),
        common::ms(values[0]),
        common::ms(values[values.len() - 1])
    )
}

fn print(n: usize, direction: &str, installs: &[Install]) {
    let pick = |f: fn(&Install) -> Duration| installs.iter().map(f).collect::<Vec<_>>();
    let mut total = pick(|i| i.total);
    let mut resumed = pick(|i| i.resumed);
    let mut pause = pick(|i| i.pause);
    let mut pause_loading = pick(|i| i.pause_loading);
    let mut load = pick(|i| i.load);
    let mut suspend = pick(|i| i.report.suspend);
    let mut migrate = pick(|i| i.report.migrate);
    let mut finish = pick(|i| i.report.total - i.report.suspend - i.report.migrate);
    let max_pause = *pause.iter().max().expect("installs");
    println!(
        "{direction} N={n}: total median {:.2} ms, max probe pause {:.2} ms",
        common::ms(common::median(&mut total)),
        common::ms(max_pause),
    );
    println!("    total   {}", summary(&mut total));
    println!("    resumed {}", summary(&mut resumed));
    println!("    pause   {}", summary(&mut pause));
    println!("    pause while loading {}", summary(&mut pause_loading));
    println!(
        "    load {} | suspend {} | migrate {} | commit+resume {}",
        summary(&mut load),
        summary(&mut suspend),
        summary(&mut migrate),
        summary(&mut finish)
    );
}

fn run(n: usize, cycles: usize) {
    let fixtures = common::fixtures();
    let node = common::node_with_counter();
    let spec = SupervisorSpec::new(
        Strategy::SimpleOneForOne,
        vec![ChildSpec::worker("w", "counter", &Args::default())],
    )
    .intensity(10, Duration::from_secs(1));
    node.start_supervisor(spec, Some("sup"))
        .expect("supervisor starts");
    let pids: Vec<Pid> = (0..n)
        .map(|i| {
            node.start_simple_child(
                "sup",
                &Args {
                    start: i as i64,
                    ..Args::default()
                },
            )
            .expect("child starts")
        })
        .collect();
    let (first, middle, last) = (pids[0], pids[n / 2], pids[n - 1]);
    let checked = [(first, 0), (middle, (n / 2) as i64), (last, n as i64 - 1)];
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    for _ in 0..cycles {
        let up = install(&node, &fixtures.counter_v2, Direction::Up, middle, last);
        assert_eq!(up.report.processes, n);
        for (pid, count) in checked {
            assert_eq!(describe(&node, pid), ("2.0.0".into(), count, 100));
        }
        ups.push(up);
        let down = install(&node, &fixtures.counter_v1, Direction::Down, middle, last);
        assert_eq!(down.report.processes, n);
        for (pid, count) in checked {
            assert_eq!(describe(&node, pid), ("1.0.0".into(), count, 0));
        }
        downs.push(down);
    }
    print(n, "upgrade", &ups);
    print(n, "downgrade", &downs);
    common::stop(node);
}

fn main() {
    let (ns, cycles): (&[usize], usize) = if common::bench_mode() {
        (&[1, 1_000, 10_000, 100_000], 5)
    } else {
        (&[1, 100], 1)
    };
    for &n in ns {
        run(n, cycles);
    }
    println!("{}", common::machine());
}
