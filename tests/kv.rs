//! The kv example under real Redis clients while its code changes: the real `relup` binary
//! builds, deploys and starts releases 0.1.0 and 0.2.0 of examples/kv; `redis-benchmark` (from
//! Debian's redis-tools) runs back to back against it on 127.0.0.1 while the test upgrades to
//! 0.2.0 and downgrades to 0.1.0 three times. Then: every benchmark run exited 0 with no error
//! reply and no dropped connection, every key written before each upgrade or downgrade reads
//! back with its value after it, a connection opened before the first upgrade still works after
//! the last, and the release statuses are right.
//!
//! redis-benchmark checks no reply values, so besides it one client of the test's own INCRs
//! one key continuously through every upgrade and downgrade: each reply must be the previous
//! one plus one, the key's final value must equal the number of replies, and the journal's
//! install windows must each fall between two of its requests (load before and after, without
//! a stop).
//!
//! redis-tools is installed when missing (as root, with apt-get); when that is impossible the
//! test fails and says so: it never passes without having run the clients.

mod reliability;

use reliability::common::{self, RELUP, ok, relup};
use reliability::{handover_windows, install_windows};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

const CYCLES: usize = 3;
const KEYS_PER_BATCH: usize = 100;

fn has(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs redis-tools if `redis-benchmark` or `redis-cli` is missing; panics with the reason
/// when it cannot.
fn ensure_redis_tools() {
    if has("redis-benchmark") && has("redis-cli") {
        return;
    }
    let install = "apt-get install -y --no-install-recommends redis-tools >/dev/null \
                   || (apt-get update >/dev/null && apt-get install -y --no-install-recommends \
                   redis-tools >/dev/null)";
    let installed = Command::new("sh")
        .args(["-c", install])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed && has("redis-benchmark") && has("redis-cli"),
        "this test needs redis-benchmark and redis-cli from Debian's redis-tools, and \
         installing them failed (apt-get install redis-tools needs root); install them and \
         run it again"
    );
}

/// Runs a command to completion, killed (and failed) after `limit`.
fn bounded(command: &mut Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if done.load(Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: SIGKILL to the child this test started and has not reaped yet.
            unsafe { kill(pid as i32, 9) };
            true
        })
    };
    let output = child.wait_with_output().expect("wait for the child");
    done.store(true, Ordering::SeqCst);
    let killed = watchdog.join().unwrap_or(false);
    assert!(!killed, "{command:?} did not finish within {limit:?}");
    output
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// redis-cli with `commands` on its standard input, one per line; its output lines.
fn redis_cli(port: u16, commands: &[String]) -> Vec<String> {
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli runs");
    let input = commands.join("\n") + "\n";
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let text = common::text(&output);
    assert!(output.status.success(), "redis-cli failed: {text}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The tarballs of kv `versions`, built once per test process (in target/fixtures, as the
/// other fixtures: never waits on the lock of the `cargo test` that runs this).
fn kv_tarballs(versions: &[&str]) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("relup-kv-{}-tarballs", std::process::id()));
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    for version in versions {
        if built.iter().any(|v| v == version) {
            continue;
        }
        let made = Command::new(RELUP)
            .current_dir(workspace)
            .env("CARGO_TARGET_DIR", workspace.join("target/fixtures"))
            .args(["release", &format!("examples/kv/v{version}"), "--out"])
            .arg(&out)
            .output()
            .expect("relup release runs");
        ok(made);
        built.push(version.to_string());
    }
    out
}

/// A root with kv 0.1.0 deployed and the later releases unpacked, its node running on a
/// free port.
struct Kv {
    base: PathBuf,
    root: PathBuf,
    port: u16,
}

impl Kv {
    fn start() -> Kv {
        Kv::start_with(&["0.1.0", "0.2.0"])
    }

    /// Builds `versions` (the first is deployed and started, the others unpacked).
    fn start_with(versions: &[&str]) -> Kv {
        Kv::launch(&versions.join("-"), versions, &[])
    }

    /// [`Kv::start_with`] in a directory of its own named by `tag`, the node started with
    /// `env` set (fault injection).
    fn launch(tag: &str, versions: &[&str], env: &[(&str, String)]) -> Kv {
        // One directory per tag: the tests of this file run at once in one process, and a
        // shared one was removed under the other test's feet.
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("relup-kv-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let out = kv_tarballs(versions);
        let root = base.join("root");
        ok(relup(&[
            "deploy",
            out.join(format!("kv-{}.tar.gz", versions[0]))
                .to_str()
                .unwrap(),
            root.to_str().unwrap(),
        ]));
        // Port 0: the kernel picks a free one; the node's log says which.
        std::fs::create_dir_all(root.join("config")).unwrap();
        std::fs::write(
            root.join("config/config.toml"),
            "[kv.kv_server]\nlisten = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let mut kv = Kv {
            base,
            root,
            port: 0,
        };
        ok(kv.run_env(&["start"], env));
        let log = std::fs::read_to_string(kv.root.join("log/node.log")).unwrap();
        let addr = log
            .lines()
            .find_map(|l| l.split("listening on ").nth(1))
            .unwrap_or_else(|| panic!("no listening line in the node log:\n{log}"));
        kv.port = addr
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad address {addr}"));
        for version in &versions[1..] {
            let tarball = out.join(format!("kv-{version}.tar.gz"));
            ok(kv.run(&["unpack", tarball.to_str().unwrap()]));
        }
        kv
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let mut command = Command::new(RELUP);
        command
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env("RUST_BACKTRACE", "0");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("relup runs")
    }

    /// Writes a batch of keys with redis-cli; returns them with their values.
    fn write_batch(&self, tag: &str) -> Vec<(String, String)> {
        let batch: Vec<(String, String)> = (0..KEYS_PER_BATCH)
            .map(|i| (format!("known:{tag}:{i}"), format!("value-{tag}-{i}")))
            .collect();
        let commands: Vec<String> = batch.iter().map(|(k, v)| format!("SET {k} {v}")).collect();
        let replies = redis_cli(self.port, &commands);
        assert_eq!(replies, vec!["OK"; KEYS_PER_BATCH], "SET replies");
        batch
    }

    /// Reads every key back with redis-cli and compares.
    fn check(&self, written: &[(String, String)], when: &str) {
        let commands: Vec<String> = written.iter().map(|(k, _)| format!("GET {k}")).collect();
        let replies = redis_cli(self.port, &commands);
        let expected: Vec<String> = written.iter().map(|(_, v)| v.clone()).collect();
        assert!(replies == expected, "keys changed {when}: {replies:?}");
    }
}

impl Drop for Kv {
    fn drop(&mut self) {
        if self.root.join("run/control.sock").exists() {
            let _ = self.run(&["stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A raw client connection of the test's own, kept open across every upgrade.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Raw {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// Sends one request (RESP array) and reads a one-line reply (or a bulk string).
    fn ask(&mut self, args: &[&str]) -> String {
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.writer.write_all(request.as_bytes()).unwrap();
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the long-lived connection was closed");
        if let Some(len) = line
            .strip_prefix('$')
            .and_then(|l| l.trim().parse::<usize>().ok())
        {
            let mut body = vec![0; len + 2];
            self.reader.read_exact(&mut body).unwrap();
            return String::from_utf8_lossy(&body[..len]).into_owned();
        }
        line.trim_end().to_string()
    }
}

/// The key [`incr_loop`] counts with.
const THROUGH: &str = "incr:through";

/// INCRs [`THROUGH`] on a connection of its own, one request after the other, until told to
/// stop. It is the key's only writer, so each reply must be the previous one plus one (a lost,
/// repeated or misrouted write shows at once). Returns when each request was sent and its
/// reply read.
/// Starts [`incr_loop`] on its own thread and returns once its first INCR was answered.
fn start_incr_client(
    port: u16,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(SystemTime, SystemTime)>> {
    let incr = {
        let stop = stop.clone();
        std::thread::spawn(move || incr_loop(port, stop))
    };
    let started = Instant::now();
    while redis_cli(port, &[format!("GET {THROUGH}")]) == [""] {
        assert!(
            started.elapsed() < Duration::from_secs(30) && !incr.is_finished(),
            "the INCR client never got going"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    incr
}

fn incr_loop(port: u16, stop: Arc<AtomicBool>) -> Vec<(SystemTime, SystemTime)> {
    let mut raw = Raw::connect(port);
    let mut times = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let sent = SystemTime::now();
        let reply = raw.ask(&["INCR", THROUGH]);
        assert_eq!(
            reply,
            format!(":{}", times.len() + 1),
            "INCR {THROUGH} after {} successful ones",
            times.len()
        );
        times.push((sent, SystemTime::now()));
    }
    times
}

/// The major version of the installed redis-benchmark (`redis-benchmark 7.0.15`).
fn benchmark_major_version() -> u32 {
    let out = Command::new("redis-benchmark")
        .arg("--version")
        .output()
        .expect("redis-benchmark runs");
    let text = common::text(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the version of redis-benchmark: {text}"))
}

/// Runs bounded redis-benchmark runs back to back until told to stop; returns each run's
/// exit status and output.
fn benchmark_loop(port: u16, stop: Arc<AtomicBool>) -> Vec<Output> {
    // From version 7 redis-benchmark exits 1 on the first error reply or closed connection
    // (and says `-e` has no effect); before, errors are counted silently unless `-e` shows
    // them on stdout, where the test looks for them.
    let show_errors = benchmark_major_version() < 7;
    let mut runs = Vec::new();
    loop {
        let mut command = Command::new("redis-benchmark");
        if show_errors {
            command.arg("-e");
        }
        let output = bounded(
            command.args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-n",
                "20000",
                "-c",
                "20",
                "-r",
                "1000",
                "-P",
                "4",
                "-t",
                "set,get,incr,ping",
                "--csv",
            ]),
            Duration::from_secs(120),
        );
        runs.push(output);
        if stop.load(Ordering::SeqCst) {
            return runs;
        }
    }
}

/// The load of a kv test: redis-benchmark runs back to back and the INCR client.
struct Load {
    stop: Arc<AtomicBool>,
    bench: std::thread::JoinHandle<Vec<Output>>,
    incr: std::thread::JoinHandle<Vec<(SystemTime, SystemTime)>>,
}

/// Starts the load (the INCR client is under way when this returns); [`stop_load`] stops it.
fn start_load(kv: &Kv) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let bench = {
        let stop = stop.clone();
        let port = kv.port;
        std::thread::spawn(move || benchmark_loop(port, stop))
    };
    let incr = start_incr_client(kv.port, &stop);
    Load { stop, bench, incr }
}

/// Stops the load, joins the benchmark loop and the INCR client, and checks the INCR key:
/// every INCR answered counted once (the key holds exactly the number of replies).
fn stop_load(kv: &Kv, load: Load) -> (Vec<Output>, Vec<(SystemTime, SystemTime)>) {
    load.stop.store(true, Ordering::SeqCst);
    let runs = load.bench.join().expect("the benchmark loop");
    let incrs = load.incr.join().expect("the INCR client");
    assert_eq!(
        redis_cli(kv.port, &[format!("GET {THROUGH}")]),
        [incrs.len().to_string()],
        "{THROUGH} after {} successful INCRs",
        incrs.len()
    );
    (runs, incrs)
}

/// The INCR load ran through each window: a request answered before it began and one sent
/// after it ended (one client, one request after the other, so every request in between was
/// sent and answered meanwhile). Returns how many were in flight during each.
fn assert_load_through(
    windows: &[reliability::InstallWindow],
    incrs: &[(SystemTime, SystemTime)],
) -> Vec<usize> {
    windows
        .iter()
        .map(|w| {
            // The journal's times are cut to the millisecond: the window lies in [begin, end].
            let begin = w.start - Duration::from_millis(1);
            let end = w.end + Duration::from_millis(1);
            let before = incrs
                .iter()
                .filter(|(_, answered)| *answered < begin)
                .count();
            let after = incrs.iter().filter(|(sent, _)| *sent > end).count();
            assert!(
                before > 0 && after > 0,
                "{}: the INCR load did not run through it ({before} INCRs answered before, \
                 {after} sent after)",
                w.hop
            );
            incrs
                .iter()
                .filter(|(sent, answered)| *sent <= end && begin <= *answered)
                .count()
        })
        .collect()
}

/// Every redis-benchmark run exited 0, saw no error and reported every test.
fn assert_benchmark_runs_clean(runs: &[Output]) {
    for (i, run) in runs.iter().enumerate() {
        let all = common::text(run);
        assert!(
            run.status.success(),
            "redis-benchmark run {i} failed:\n{all}"
        );
        assert!(
            !all.to_lowercase().contains("error"),
            "redis-benchmark run {i} saw errors:\n{all}"
        );
        let stdout = String::from_utf8_lossy(&run.stdout);
        for test in ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR"] {
            assert!(
                stdout.contains(&format!("\"{test}\",\"")),
                "run {i} has no {test} result:\n{all}"
            );
        }
    }
    assert!(!runs.is_empty());
}

#[test]
fn redis_clients_see_no_error_and_no_lost_key_across_upgrades_and_downgrades() {
    ensure_redis_tools();
    let kv = Kv::start();
    let mut raw = Raw::connect(kv.port);
    assert_eq!(raw.ask(&["PING"]), "+PONG");
    assert_eq!(raw.ask(&["SET", "raw", "kept"]), "+OK");
    assert_eq!(raw.ask(&["INCR", "counter"]), ":1");

    let mut written = kv.write_batch("start");
    // The INCR client is under way before the first upgrade.
    let load = start_load(&kv);

    let mut counter = 1;
    for cycle in 0..CYCLES {
        let up = ok(kv.run(&["upgrade", "0.2.0"]));
        assert!(up.contains("kv 0.2.0 is running (permanent)"), "{up}");
        kv.check(&written, &format!("by upgrade {cycle}"));
        // 0.2.0's own command, on the connection opened under 0.1.0.
        counter += 10;
        assert_eq!(raw.ask(&["INCRBY", "counter", "10"]), format!(":{counter}"));
        written.extend(kv.write_batch(&format!("up{cycle}")));

        let down = ok(kv.run(&["downgrade", "0.1.0"]));
        assert!(down.contains("kv 0.1.0 is running (permanent)"), "{down}");
        kv.check(&written, &format!("by downgrade {cycle}"));
        assert!(
            raw.ask(&["INCRBY", "counter", "1"])
                .starts_with("-ERR unknown command")
        );
        counter += 1;
        assert_eq!(raw.ask(&["INCR", "counter"]), format!(":{counter}"));
        written.extend(kv.write_batch(&format!("down{cycle}")));
    }
    let (runs, incrs) = stop_load(&kv, load);
    let journal = std::fs::read_to_string(kv.root.join("log/upgrade.log")).unwrap();
    let windows = install_windows(&journal);
    assert_eq!(
        windows.len(),
        2 * CYCLES,
        "the installs in the journal:\n{journal}"
    );
    for (w, across) in windows.iter().zip(assert_load_through(&windows, &incrs)) {
        eprintln!("install {}: {across} INCR(s) in flight during it", w.hop);
    }
    assert_benchmark_runs_clean(&runs);

    // The connection opened before the first upgrade still works, with its data.
    assert_eq!(raw.ask(&["PING"]), "+PONG");
    assert_eq!(raw.ask(&["GET", "raw"]), "kept");
    kv.check(&written, "at the end");
    let releases = ok(kv.run(&["releases"]));
    assert!(
        releases.contains("0.1.0 permanent") && releases.contains("0.2.0 old"),
        "{releases}"
    );
    let status = ok(kv.run(&["status"]));
    assert!(status.contains("kv_server 0.1.0"), "{status}");
    eprintln!(
        "{} redis-benchmark runs and {} INCRs across {CYCLES} upgrade/downgrade cycles; {} keys \
         checked",
        runs.len(),
        incrs.len(),
        written.len()
    );
}

/// Release 0.3.0 moves the data from the process state into a node table, and 0.3.1 (the same
/// code) upgrades it without touching the table: every key and counter written under 0.1.0
/// and 0.2.0 reads back through 0.2.0 -> 0.3.0 -> 0.3.1, the downgrades 0.3.1 -> 0.3.0 ->
/// 0.2.0 (the rows come back into the state) and 0.2.0 -> 0.3.0 again, while a client INCRs
/// one key through all of it (each reply the previous plus one, the final value the number of
/// replies) and a connection opened under 0.1.0 stays open.
#[test]
fn the_table_release_keeps_every_key_and_counter_up_and_down() {
    ensure_redis_tools();
    let kv = Kv::start_with(&["0.1.0", "0.2.0", "0.3.0", "0.3.1"]);
    let mut raw = Raw::connect(kv.port);
    assert_eq!(raw.ask(&["SET", "raw", "kept"]), "+OK");
    assert_eq!(raw.ask(&["INCR", "counter"]), ":1");
    let mut written = kv.write_batch("v010");
    let stop = Arc::new(AtomicBool::new(false));
    let incr = start_incr_client(kv.port, &stop);
    let mut counter = 1;
    let mut step = |kv: &Kv, raw: &mut Raw, verb: &str, version: &str, by: i64| {
        let out = ok(kv.run(&[verb, version]));
        assert!(
            out.contains(&format!("kv {version} is running (permanent)")),
            "{out}"
        );
        kv.check(&written, &format!("after {verb} {version}"));
        assert_eq!(raw.ask(&["GET", "raw"]), "kept", "after {verb} {version}");
        counter += by;
        let by = by.to_string();
        assert_eq!(raw.ask(&["INCRBY", "counter", &by]), format!(":{counter}"));
        // Tagged by the step's number: 0.3.0 is reached twice.
        let tag = format!("{}-{verb}-{version}", written.len() / KEYS_PER_BATCH);
        written.extend(kv.write_batch(&tag));
        let status = ok(kv.run(&["status"]));
        assert!(status.contains(&format!("kv_server {version}")), "{status}");
    };
    step(&kv, &mut raw, "upgrade", "0.2.0", 10);
    step(&kv, &mut raw, "upgrade", "0.3.0", 5);
    // On the table: the Redis semantics of 0.2.0 hold.
    assert_eq!(raw.ask(&["SET", "zeros", "007"]), "+OK");
    assert!(
        raw.ask(&["INCR", "zeros"])
            .starts_with("-ERR value is not an integer")
    );
    assert_eq!(raw.ask(&["APPEND", "zeros", "x"]), ":4");
    assert_eq!(raw.ask(&["SET", "zeros", "1", "NX"]), "$-1");
    assert_eq!(raw.ask(&["STRLEN", "zeros"]), ":4");
    assert_eq!(raw.ask(&["DEL", "zeros", "nothing"]), ":1");
    step(&kv, &mut raw, "upgrade", "0.3.1", 1);
    step(&kv, &mut raw, "downgrade", "0.3.0", 1);
    step(&kv, &mut raw, "downgrade", "0.2.0", 2);
    step(&kv, &mut raw, "upgrade", "0.3.0", 1);
    stop.store(true, Ordering::SeqCst);
    let incrs = incr.join().expect("the INCR client");
    assert_eq!(
        redis_cli(kv.port, &[format!("GET {THROUGH}")]),
        [incrs.len().to_string()],
        "{THROUGH} after {} successful INCRs",
        incrs.len()
    );
    // Every key: the batches, raw, counter and the INCR client's key.
    let keys = written.len() + 3;
    assert_eq!(raw.ask(&["DBSIZE"]), format!(":{keys}"));
    eprintln!(
        "{} INCRs through 6 installs; {} keys checked after each",
        incrs.len(),
        written.len()
    );
}

/// The node's status as JSON.
fn status_json(kv: &Kv) -> serde_json::Value {
    serde_json::from_str(&ok(kv.run(&["--json", "status"]))).expect("status --json is JSON")
}

/// Three handovers (issue 18) under redis-benchmark and an INCR client: `relup restart` on
/// 0.3.0, `upgrade 0.3.2` (whose appup is `restart_node`: a version change by handover,
/// kv_server's state migrated by 0.3.2's code_change), and `relup restart` on 0.3.2. Each
/// time a new node process takes over and the old one exits: no benchmark run fails or sees
/// an error, no connection drops, every key reads back, the INCR count is exact, and a
/// connection opened before the first handover still answers after the last.
#[test]
fn redis_clients_see_no_error_and_no_lost_key_across_three_handovers() {
    ensure_redis_tools();
    let kv = Kv::start_with(&["0.3.0", "0.3.2"]);
    let mut raw = Raw::connect(kv.port);
    assert_eq!(raw.ask(&["SET", "raw", "kept"]), "+OK");
    assert_eq!(raw.ask(&["INCR", "counter"]), ":1");
    let mut written = kv.write_batch("start");
    let load = start_load(&kv);
    let mut pid = status_json(&kv)["pid"]
        .as_u64()
        .expect("status has the pid");
    let mut counter = 1;
    let steps: [&[&str]; 3] = [&["restart"], &["upgrade", "0.3.2"], &["restart"]];
    for (i, step) in steps.iter().enumerate() {
        let out = ok(kv.run(step));
        assert!(
            out.contains(&format!("took over from node {pid}")),
            "{step:?}: {out}"
        );
        let status = status_json(&kv);
        let new_pid = status["pid"].as_u64().expect("status has the pid");
        assert_ne!(new_pid, pid, "{step:?}: the same node answers");
        assert_eq!(
            status["lineage"]["handovers"].as_u64(),
            Some(i as u64 + 1),
            "{status}"
        );
        // The old node exits once it has answered.
        let deadline = Instant::now() + Duration::from_secs(10);
        while reliability::alive(pid as i32) {
            assert!(Instant::now() < deadline, "old node {pid} still runs");
            std::thread::sleep(Duration::from_millis(10));
        }
        pid = new_pid;
        kv.check(&written, &format!("after handover {i}"));
        assert_eq!(raw.ask(&["GET", "raw"]), "kept", "after handover {i}");
        counter += 1;
        assert_eq!(raw.ask(&["INCR", "counter"]), format!(":{counter}"));
        written.extend(kv.write_batch(&format!("handover{i}")));
    }
    let (runs, incrs) = stop_load(&kv, load);
    // The INCR load ran through each handover: answered before it began, sent after it ended.
    let journal = std::fs::read_to_string(kv.root.join("log/upgrade.log")).unwrap();
    let windows = handover_windows(&journal);
    assert_eq!(windows.len(), 3, "the handovers in the journal:\n{journal}");
    assert_load_through(&windows, &incrs);
    assert_benchmark_runs_clean(&runs);
    assert_eq!(raw.ask(&["PING"]), "+PONG");
    kv.check(&written, "at the end");
    let status = ok(kv.run(&["status"]));
    assert!(status.contains("kv_server 0.3.2"), "{status}");
    // The upgrade asked for 0.3.2 to be permanent: the node that took over makes it so.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let releases = ok(kv.run(&["releases"]));
        if releases.contains("0.3.2 permanent") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "0.3.2 never became permanent: {releases}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{} redis-benchmark runs and {} INCRs across 3 handovers; {} keys checked",
        runs.len(),
        incrs.len(),
        written.len()
    );
}

/// Which node a handover crash point kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// The node handing itself over.
    Old,
    /// The node taking over.
    New,
}

impl Side {
    /// The variables that kill this side at its `n`-th crash point and trace its points.
    fn env(self, kill_at: Option<usize>, trace: &Path) -> Vec<(&'static str, String)> {
        let (kill, trace_var) = match self {
            Side::Old => ("RELUP_FAULT_KILL_AT", "RELUP_FAULT_TRACE"),
            Side::New => ("RELUP_FAULT_NEW_KILL_AT", "RELUP_FAULT_NEW_TRACE"),
        };
        let mut env = vec![(trace_var, trace.display().to_string())];
        if let Some(n) = kill_at {
            env.push((kill, n.to_string()));
        }
        env
    }
}

/// Crash points tried per side in an ordinary run (every one with `RELUP_CRASH_ALL=1`).
const HANDOVER_POINTS: usize = 4;

/// The numbered crash points of a trace file (`<n> <label>` lines).
fn trace_points(trace: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (n, label) = l.split_once(' ')?;
            Some((n.parse().ok()?, label.to_string()))
        })
        .collect()
}

/// A trace label with its numbers (pids, times) blanked: what must match between runs.
fn shape(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The pid of the node that answers on the root, if one does.
fn serving_pid(kv: &Kv) -> Option<u64> {
    let out = kv.run(&["--json", "status"]);
    if !out.status.success() {
        return None;
    }
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    status["pid"].as_u64()
}

/// The new node's pid, from the old node's journal.
fn new_node_pid(kv: &Kv) -> Option<i32> {
    std::fs::read_to_string(kv.root.join("log/upgrade.log"))
        .ok()?
        .lines()
        .find_map(|l| l.split("handover: started the new node ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The port the node listens on now (the last listening line of its log).
fn listening_port(kv: &Kv) -> u16 {
    let log = std::fs::read_to_string(kv.root.join("log/node.log")).unwrap_or_default();
    log.lines()
        .rev()
        .find_map(|l| l.split("listening on ").nth(1))
        .and_then(|addr| addr.trim().rsplit(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no listening line in the node log:\n{log}"))
}

/// The handover points of `side`: a numbering run of `relup restart` with its trace on.
fn handover_points(side: Side) -> Vec<(usize, String)> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("relup-kv-{}-traces", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join(format!("numbering-{side:?}"));
    let _ = std::fs::remove_file(&trace);
    let kv = Kv::launch(
        &format!("numbering-{side:?}"),
        &["0.3.0"],
        &side.env(None, &trace),
    );
    let before = trace_points(&trace).len();
    ok(kv.run(&["restart"]));
    let points: Vec<(usize, String)> = trace_points(&trace).into_iter().skip(before).collect();
    assert!(
        points.iter().any(|(_, l)| l.contains("handover")),
        "no handover crash point on the {side:?} side: {points:?}"
    );
    points
}

/// Runs `relup restart` with `side` killed at crash point `n` (labelled `label`), then
/// checks: exactly one node serves the root (after a `relup start` when both died), the
/// other is gone, RELEASES is valid with 0.3.0 permanent, and unless the old node died before
/// it had handed everything over, every key and the connection opened before are still there.
fn crash_handover_at(side: Side, n: usize, label: &str, image_sent_at: usize) {
    let what = format!("{side:?} node killed at crash point {n} ({label})");
    let trace = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("relup-kv-{}-traces", std::process::id()))
        .join(format!("kill-{side:?}-{n}"));
    let _ = std::fs::remove_file(&trace);
    let kv = Kv::launch(
        &format!("crash-{side:?}-{n}"),
        &["0.3.0"],
        &side.env(Some(n), &trace),
    );
    let written = kv.write_batch("before");
    let mut raw = Raw::connect(kv.port);
    assert_eq!(raw.ask(&["SET", "raw", "kept"]), "+OK", "{what}");
    let old = serving_pid(&kv).expect("the node answers") as i32;
    // It may fail (the old node killed mid-request) or succeed (the new one killed and the
    // old resumed, or the old one killed after it answered).
    let _ = kv.run(&["restart"]);
    let new = new_node_pid(&kv);
    // Settle: the survivor serves, the other is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    let serving = loop {
        let alive: Vec<i32> = [Some(old), new]
            .into_iter()
            .flatten()
            .filter(|p| reliability::alive(*p))
            .collect();
        match serving_pid(&kv) {
            Some(pid) if alive == [pid as i32] => break Some(pid as i32),
            None if alive.is_empty() => break None,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no single node serves (alive: {alive:?}, old {old}, new {new:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Labels name files under each run's own directory.
    let killed_trace = trace_points(&trace);
    assert_eq!(
        killed_trace
            .last()
            .map(|(_, l)| shape(&l.replace(&format!("crash-{side:?}-{n}"), "RUN"))),
        Some(shape(&label.replace(&format!("numbering-{side:?}"), "RUN"))),
        "{what}: the killed run stopped elsewhere (numbering not deterministic?)"
    );
    let serving = match serving {
        Some(pid) => pid,
        None => {
            // Both gone: the new node died after it took over. A plain start boots the root.
            ok(kv.run(&["start"]));
            serving_pid(&kv).expect("the restarted node answers") as i32
        }
    };
    let releases =
        relup_runtime::release::Releases::load(&relup_runtime::release::ReleaseRoot::new(&kv.root))
            .unwrap_or_else(|e| panic!("{what}: RELEASES is not valid: {e}"));
    assert_eq!(
        releases.permanent().map(|e| e.version.to_string()),
        Some("0.3.0".to_string()),
        "{what}"
    );
    assert_eq!(
        std::fs::read_to_string(kv.root.join("run/node.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok()),
        Some(serving),
        "{what}: run/node.pid"
    );
    let status = status_json(&kv);
    assert_eq!(status["running"].as_str(), Some("0.3.0"), "{what}");
    // Killed before the old node handed anything over, the new one booted the root as a
    // plain start does; the new node killed after it told the old one it took over (its
    // journal line comes after), nobody served until the harness started the root again.
    // Either way the clients reconnect; the table was in the dead node's memory.
    let cold = (side == Side::Old && n < image_sent_at)
        || (side == Side::New && label.contains("took over from"));
    if cold {
        assert_eq!(status["lineage"]["handovers"].as_u64(), Some(0), "{what}");
        assert_ne!(serving, old, "{what}");
    } else {
        let handovers = status["lineage"]["handovers"].as_u64();
        assert!(
            (serving == old && handovers == Some(0)) || handovers == Some(1),
            "{what}: node {serving} with {handovers:?} handovers: {status}"
        );
        assert_eq!(listening_port(&kv), kv.port, "{what}");
        kv.check(&written, &what);
        assert_eq!(raw.ask(&["GET", "raw"]), "kept", "{what}");
    }
    let _ = kv.run(&["stop"]);
}

fn handover_crash_sweep(side: Side) {
    ensure_redis_tools();
    let points = handover_points(side);
    let image_sent_at = match side {
        Side::Old => points
            .iter()
            .find(|(_, l)| l.contains("image sent"))
            .map(|(n, _)| *n)
            .expect("the old node passes a point once the image is sent"),
        Side::New => 0,
    };
    let all = std::env::var("RELUP_CRASH_ALL").is_ok_and(|v| v == "1");
    let chosen: Vec<&(usize, String)> = if all || points.len() <= HANDOVER_POINTS {
        points.iter().collect()
    } else {
        // One point from each of HANDOVER_POINTS slices, rotating with the clock.
        let spin = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as usize)
            .unwrap_or(0);
        (0..HANDOVER_POINTS)
            .map(|i| {
                let (lo, hi) = (
                    i * points.len() / HANDOVER_POINTS,
                    (i + 1) * points.len() / HANDOVER_POINTS,
                );
                &points[lo + spin % (hi - lo)]
            })
            .collect()
    };
    eprintln!(
        "{side:?} side: {} handover crash points, trying {:?}",
        points.len(),
        chosen.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for (n, label) in chosen {
        crash_handover_at(side, *n, label, image_sent_at);
    }
}

/// SIGKILL of the old node at its handover crash points (a sample; all with
/// `RELUP_CRASH_ALL=1`): afterwards exactly one node serves, RELEASES is valid, and the keys
/// and connections survive unless it died before it handed anything over.
#[test]
fn sigkill_of_the_old_node_at_each_step_of_a_handover() {
    handover_crash_sweep(Side::Old);
}

/// SIGKILL of the new node at its crash points during a handover: the old node resumes (or,
/// killed after it took over, a plain start boots the root); no key or connection is lost.
#[test]
fn sigkill_of_the_new_node_at_each_step_of_a_handover() {
    handover_crash_sweep(Side::New);
}

/// A handover whose new node fails (its executable exits at once, or never says hello):
/// `relup restart` fails with the reason, the old node serves on with every key and
/// connection, and a handover to a working executable afterwards succeeds.
#[test]
fn a_failed_handover_leaves_the_old_node_serving() {
    ensure_redis_tools();
    let kv = Kv::launch(
        "failed-handover",
        &["0.3.0"],
        &[("RELUP_HANDOVER_PATIENCE_MS", "1500".to_string())],
    );
    let written = kv.write_batch("before");
    let mut raw = Raw::connect(kv.port);
    assert_eq!(raw.ask(&["SET", "raw", "kept"]), "+OK");
    let pid = serving_pid(&kv).expect("the node answers");
    // The release carries the node executable the handover starts.
    let exe = kv.root.join("releases/0.3.0/bin/relup-node");
    std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
    for (i, (script, reason)) in [
        ("#!/bin/sh\nexit 3\n", "the new node exited"),
        (
            "#!/bin/sh\nexec sleep 600\n",
            "the new node did not answer in time",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(&exe, script).unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let out = kv.run(&["restart"]);
        let text = common::text(&out);
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("handover failed at hello") && text.contains(reason),
            "{text}"
        );
        assert_eq!(serving_pid(&kv), Some(pid), "{text}");
        kv.check(
            &written,
            &format!("after a handover that failed ({reason})"),
        );
        assert_eq!(raw.ask(&["GET", "raw"]), "kept");
        assert_eq!(raw.ask(&["INCR", "after-failure"]), format!(":{}", i + 1));
    }
    let journal = std::fs::read_to_string(kv.root.join("log/upgrade.log")).unwrap();
    assert_eq!(
        journal
            .matches("handover FAILED, this node resumed")
            .count(),
        2,
        "{journal}"
    );
    // Without the broken executable the node hands over to `relup` itself.
    std::fs::remove_file(&exe).unwrap();
    let out = ok(kv.run(&["restart"]));
    assert!(out.contains(&format!("took over from node {pid}")), "{out}");
    kv.check(&written, "after the handover that worked");
    assert_eq!(raw.ask(&["GET", "raw"]), "kept");
}

/// A new node that dies after the old one froze and sent its image (killed at its first
/// crash point, the journal line of its boot): the old node resumes from the freeze (its
/// processes, timers and sockets), `relup restart` fails with the reason, and every key and
/// the connection opened before are there, answered by the same pid.
#[test]
fn a_new_node_dying_after_the_image_leaves_the_old_node_serving() {
    ensure_redis_tools();
    let kv = Kv::launch(
        "dies-after-image",
        &["0.3.0"],
        &[("RELUP_FAULT_NEW_KILL_AT", "1".to_string())],
    );
    let written = kv.write_batch("before");
    let mut raw = Raw::connect(kv.port);
    assert_eq!(raw.ask(&["INCR", "n"]), ":1");
    let pid = serving_pid(&kv).expect("the node answers");
    for round in 1..=2 {
        let out = kv.run(&["restart"]);
        let text = common::text(&out);
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("handover failed at restore in the new node"),
            "{text}"
        );
        assert_eq!(serving_pid(&kv), Some(pid), "{text}");
        kv.check(&written, &format!("after failed handover {round}"));
        assert_eq!(raw.ask(&["INCR", "n"]), format!(":{}", round + 1));
    }
    let journal = std::fs::read_to_string(kv.root.join("log/upgrade.log")).unwrap();
    assert!(
        journal.contains("handover: image sent"),
        "the image went over before the new node died:\n{journal}"
    );
}
