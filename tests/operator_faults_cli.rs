//! What a careless or hostile operator does to the real `relup` binary and a real node (issue
//! 16): time values that overflow, a node stopped with SIGSTOP, two `relup start` at once.

mod common;

use common::{RELUP, fails, ok, release_dir, text};

use relup_testkit::fixtures;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A temporary root with demo 0.1.0 deployed and 0.2.0 packed beside it. Every node started
/// on it is continued and killed, and the directory removed, when the value is dropped.
struct Root {
    base: PathBuf,
    root: PathBuf,
}

const APPUP: &str = r#"application = "app"
version = "0.2.0"

[[up]]
from = "0.1.0"
instructions = [ { update = "counter" } ]

[[down]]
to = "0.1.0"
instructions = [ { update = "counter" } ]
"#;

impl Root {
    fn new(name: &str) -> Root {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("relup-faults-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let f = fixtures();
        let r1 = release_dir(&base, "0.1.0", &f.counter_v1, "1.0.0", None);
        let r2 = release_dir(&base, "0.2.0", &f.counter_v2, "2.0.0", None);
        std::fs::write(r2.join("appup.toml"), APPUP).unwrap();
        let root = common::pack_and_deploy(&base, &[&r1, &r2]);
        Root { base, root }
    }

    fn tarball(&self, version: &str) -> PathBuf {
        self.base.join("out").join(format!("demo-{version}.tar.gz"))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(RELUP);
        command
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("relup runs")
    }

    /// The pid in `run/node.pid`.
    fn node_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.root.join("run/node.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Sends one raw request line; returns the node's final answer line.
    fn raw(&self, request: &str) -> String {
        let mut stream = UnixStream::connect(self.root.join("run/control.sock")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(b"\n").unwrap();
        let mut last = String::new();
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(line) => last = line,
                Err(_) => break,
            }
        }
        last
    }

    /// The pids of every `relup start --foreground` on this root.
    fn nodes(&self) -> Vec<i32> {
        let needle = self.root.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| a == &needle) && args.iter().any(|a| a == "--foreground") {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        for pid in self.nodes() {
            // SAFETY: continuing, then killing, a node this test started on its own root.
            unsafe {
                libc::kill(pid, libc::SIGCONT);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Waits for `child` at most `limit`; kills it and panics when it runs longer.
fn finish_within(mut child: Child, limit: Duration, what: &str) -> (Output, Duration) {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            let output = child.wait_with_output().expect("output");
            return (output, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "{what} still ran after {limit:?} (killed):\n{}",
                text(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `check` holds, for at most `limit`.
fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

fn alive(pid: i32) -> bool {
    // A zombie is not a running node.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Bug 2: `--in`, `--at` and `--probation` values that overflow or make no sense are refused
/// with the accepted range, by the CLI and by the node; nothing is scheduled, nothing runs.
#[test]
fn time_values_out_of_range_are_refused() {
    let root = Root::new("time");
    ok(root.run(&["start"]));
    ok(root.run(&["unpack", root.tarball("0.2.0").to_str().unwrap()]));

    // Was scheduled in the past (the milliseconds wrapped) and ran at once.
    let far = root.run(&["upgrade", "0.2.0", "--in", "584542046090y"]);
    let all = text(&far);
    assert!(!far.status.success(), "{all}");
    assert!(all.contains("at most 3650 days"), "{all}");
    // One more year overflows humantime itself: still a clear refusal.
    let all = text(&root.run(&["upgrade", "0.2.0", "--in", "584542046091y"]));
    assert!(all.contains("not a duration"), "{all}");
    let all = text(&root.run(&["upgrade", "0.2.0", "--probation", "584542046090y"]));
    assert!(all.contains("at most 7 days"), "{all}");

    // `--at`: multi-byte text (panicked the request's thread), before 1970, after 10 years.
    fails(
        root.run(&["upgrade", "0.2.0", "--at", "é12345"]),
        "\"é12345\" is not a time",
    );
    fails(
        root.run(&["upgrade", "0.2.0", "--at", "2026-12-01T03:00:00é"]),
        "is not a time",
    );
    fails(
        root.run(&["upgrade", "0.2.0", "--at", "1969-12-31T23:59:59Z"]),
        "is in the past",
    );
    fails(
        root.run(&["upgrade", "0.2.0", "--at", "1970-01-01T00:30:00+01:00"]),
        "is in the past",
    );
    fails(
        root.run(&["upgrade", "0.2.0", "--at", "9999-12-31T23:59:59Z"]),
        "at most 3650 days",
    );

    // The socket carries any u64: the node checks too.
    let max = u64::MAX;
    for request in [
        format!(r#"{{"cmd":"schedule","version":"0.2.0","in_ms":{max}}}"#),
        format!(r#"{{"cmd":"schedule","version":"0.2.0","in_ms":60000,"probation_ms":{max}}}"#),
        format!(r#"{{"cmd":"install","version":"0.2.0","probation_ms":{max}}}"#),
    ] {
        let answer = root.raw(&request);
        assert!(
            answer.contains("\"error\"") && answer.contains("at most"),
            "{request}: {answer}"
        );
    }

    // Nothing was scheduled, nothing was installed, and the node still answers.
    let status = ok(root.run(&["status"]));
    assert!(status.contains("release demo 0.1.0"), "{status}");
    assert!(!status.contains("scheduled:"), "{status}");
    let releases = ok(root.run(&["releases"]));
    assert!(releases.contains("0.2.0 unpacked"), "{releases}");
    // A sane schedule still works, and the bounds are inclusive.
    let scheduled = ok(root.run(&["upgrade", "0.2.0", "--in", "3650d", "--probation", "7d"]));
    assert!(scheduled.contains("scheduled upgrade 1"), "{scheduled}");
    ok(root.run(&["cancel"]));
    ok(root.run(&["stop"]));
}

/// Bug 3: a node stopped with SIGSTOP makes every command fail within the control timeout,
/// naming the node's pid and what to check, instead of hanging forever.
#[test]
fn a_stopped_node_makes_commands_fail_in_time_with_its_pid() {
    let root = Root::new("sigstop");
    ok(root.run(&["start"]));
    let pid = root.node_pid().expect("node.pid");
    // SAFETY: stopping the node this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    for args in [&["status"][..], &["releases"], &["stop"]] {
        let child = root
            .command(args)
            .env("RELUP_CONTROL_TIMEOUT", "1s")
            .spawn()
            .unwrap();
        let (output, took) = finish_within(child, Duration::from_secs(20), &args.join(" "));
        let all = fails(
            output,
            &format!("the node (pid {pid}) did not answer within 1 s"),
        );
        assert!(
            all.contains(&format!("ps -o stat= -p {pid}"))
                && all.contains("log/node.log")
                && all.contains(&format!("`kill -CONT {pid}` resumes it")),
            "{all}"
        );
        assert!(took < Duration::from_secs(15), "{args:?} took {took:?}");
    }
    // `upgrade` asks for the status first, and fails the same way.
    let child = root
        .command(&["upgrade", "0.1.0", "--skip-check"])
        .env("RELUP_CONTROL_TIMEOUT", "1s")
        .spawn()
        .unwrap();
    let (output, _) = finish_within(child, Duration::from_secs(20), "upgrade");
    fails(
        output,
        &format!("the node (pid {pid}) did not answer within"),
    );
    assert_eq!(root.node_pid(), Some(pid));
    // SAFETY: continuing the node this test stopped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    // The requests were sent: the node carries them out once continued, the stop included.
    assert!(
        wait_until(Duration::from_secs(40), || !alive(pid)),
        "the node did not carry out the pending stop"
    );
    fails(root.run(&["status"]), "the node is not running");
}

/// Bug 4: of two `relup start` at once exactly one starts a node and says so; the other says
/// which node runs; `relup stop` then leaves no node behind.
#[test]
fn two_concurrent_starts_start_one_node() {
    let root = Root::new("double-start");
    for round in 0..3 {
        let a = root.command(&["start"]).spawn().unwrap();
        let b = root.command(&["start"]).spawn().unwrap();
        let (a, _) = finish_within(a, Duration::from_secs(60), "start a");
        let (b, _) = finish_within(b, Duration::from_secs(60), "start b");
        let (won, lost) = match (a.status.success(), b.status.success()) {
            (true, false) => (a, b),
            (false, true) => (b, a),
            _ => panic!(
                "round {round}: exactly one start must succeed:\n{}\n---\n{}",
                text(&a),
                text(&b)
            ),
        };
        let won = text(&won);
        let pid = root.node_pid().expect("node.pid after start");
        assert!(
            won.contains(&format!("node started (pid {pid})")),
            "round {round}: {won}"
        );
        fails(
            lost,
            &format!("already running on {} (pid {pid})", root.root.display()),
        );
        // Only the winner runs, and it still owns node.pid and the socket.
        assert!(
            wait_until(Duration::from_secs(10), || root.nodes() == vec![pid]),
            "round {round}: nodes {:?}, node.pid {pid}",
            root.nodes()
        );
        let status = ok(root.run(&["status"]));
        assert!(status.contains("release demo 0.1.0"), "{status}");
        let stopped = ok(root.run(&["stop"]));
        assert!(stopped.contains("node stopped"), "{stopped}");
        assert!(
            wait_until(Duration::from_secs(10), || root.nodes().is_empty()),
            "round {round}: a node is left after stop: {:?}",
            root.nodes()
        );
        assert!(!alive(pid));
    }
}

/// Bug 4: a root whose node is stopped (SIGSTOP) is still taken: `start` refuses at once,
/// naming the node, and leaves its pid file alone.
#[test]
fn start_refuses_a_root_whose_node_is_stopped() {
    let root = Root::new("start-stopped");
    ok(root.run(&["start"]));
    let pid = root.node_pid().expect("node.pid");
    // SAFETY: stopping the node this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let child = root.command(&["start"]).spawn().unwrap();
    let (output, _) = finish_within(child, Duration::from_secs(20), "start");
    fails(
        output,
        &format!("already running on {} (pid {pid})", root.root.display()),
    );
    assert_eq!(root.nodes(), vec![pid]);
    assert_eq!(root.node_pid(), Some(pid));
    // SAFETY: continuing the node this test stopped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    ok(root.run(&["stop"]));
    assert!(wait_until(Duration::from_secs(10), || root
        .nodes()
        .is_empty()));
}

/// Sends `signal` to `pid` (a node this test started).
fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: signalling the node this test started on its own root.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Weak spot "logs": SIGHUP reopens log/node.log (for logrotate) and the node keeps running;
/// the journal follows a rotated log/upgrade.log, and `relup log` shows the new lines.
#[test]
fn sighup_reopens_the_node_log_and_the_journal_follows_a_rotation() {
    let root = Root::new("sighup");
    ok(root.run(&["start"]));
    let pid = root.node_pid().expect("node.pid");
    let log = root.root.join("log");
    std::fs::rename(log.join("node.log"), log.join("node.log.1")).unwrap();
    signal(pid, libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(log.join("node.log"))
                .is_ok_and(|text| text.contains("SIGHUP: reopened"))
        }),
        "no new log/node.log after SIGHUP; node alive: {}; old log:\n{}",
        alive(pid),
        std::fs::read_to_string(log.join("node.log.1")).unwrap_or_default()
    );
    let status = ok(root.run(&["status"]));
    assert!(status.contains("release demo 0.1.0"), "{status}");
    assert_eq!(root.node_pid(), Some(pid));

    // logrotate moves the journal: the next line goes to a new log/upgrade.log.
    std::fs::rename(log.join("upgrade.log"), log.join("upgrade.log.1")).unwrap();
    ok(root.run(&["unpack", root.tarball("0.2.0").to_str().unwrap()]));
    let journal = std::fs::read_to_string(log.join("upgrade.log")).unwrap_or_default();
    assert!(journal.contains("unpack"), "new journal: {journal:?}");
    let old = std::fs::read_to_string(log.join("upgrade.log.1")).unwrap();
    assert!(!old.contains("unpack"), "written to the moved file: {old}");
    let shown = ok(root.run(&["log"]));
    assert!(shown.contains("unpack"), "{shown}");
    // The node's output after the reopen goes to the new file, up to its stop.
    ok(root.run(&["stop"]));
    let node_log = std::fs::read_to_string(log.join("node.log")).unwrap();
    assert!(node_log.contains("node stopped"), "{node_log}");
}

/// Weak spot "logs": `relup log` reads log/upgrade.log itself when no node runs, and says so
/// on stderr.
#[test]
fn log_reads_the_journal_when_no_node_runs() {
    let root = Root::new("log-offline");
    ok(root.run(&["start"]));
    ok(root.run(&["stop"]));
    let output = root.run(&["log"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = ok(output);
    assert!(
        stdout.contains("boot demo 0.1.0") && stdout.contains("stop 0.1.0"),
        "{stdout}"
    );
    assert!(
        stderr.contains("the node is not running") && stderr.contains("log/upgrade.log"),
        "{stderr}"
    );
    // --json too: the journal as the node gives it, with where it came from.
    let output = root.run(&["log", "--json"]);
    assert!(output.status.success(), "{}", text(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        value["log"].as_str().unwrap().contains("boot demo 0.1.0"),
        "{value}"
    );
    assert_eq!(value["running"], false, "{value}");
}

/// Parses the one JSON object a failed `--json` command prints on stdout.
#[track_caller]
fn json_failure(output: Output) -> serde_json::Value {
    let all = text(&output);
    assert!(!output.status.success(), "expected failure:\n{all}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let value: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}):\n{all}"));
    assert!(value["error"].is_string(), "{value}");
    value
}

/// Weak spot "`--json` errors printed as plain text": a failure is one JSON object on stdout
/// with the error and whether the node runs, and a non-zero exit.
#[test]
fn json_failures_are_one_json_object_on_stdout() {
    let root = Root::new("json-errors");
    // No node.
    let value = json_failure(root.run(&["status", "--json"]));
    assert_eq!(value["running"], false, "{value}");
    assert!(
        value["error"].as_str().unwrap().contains("not running"),
        "{value}"
    );
    ok(root.run(&["start"]));
    // The node refuses: it runs.
    let value = json_failure(root.run(&["upgrade", "9.9.9", "--json", "--skip-check"]));
    assert_eq!(value["running"], true, "{value}");
    // Refused before any contact with the node: no "running".
    let value = json_failure(root.run(&["upgrade", "x.y", "--json"]));
    assert!(
        value["error"].as_str().unwrap().contains("not a version"),
        "{value}"
    );
    assert!(value.get("running").is_none(), "{value}");
    ok(root.run(&["stop"]));
}

/// Weak spot "`relup status` with a corrupt RELEASES prints an empty line and exits 0": it
/// shows what the node runs, then fails naming the file, the line and what is expected.
#[test]
fn status_with_a_corrupt_releases_file_fails_naming_it() {
    let root = Root::new("corrupt-releases");
    ok(root.run(&["start"]));
    let file = root.root.join("releases/RELEASES");
    std::fs::write(&file, "this is = = not toml\n").unwrap();
    let all = fails(root.run(&["status"]), "releases/RELEASES:1");
    assert!(all.contains("release demo 0.1.0"), "{all}");
    assert!(all.contains("expected"), "{all}");
    assert!(!all.contains("releases: \n"), "{all}");
    let value = json_failure(root.run(&["status", "--json"]));
    assert_eq!(value["running"], true, "{value}");
    assert!(
        value["error"].as_str().unwrap().contains("RELEASES:1"),
        "{value}"
    );
    assert_eq!(value["status"]["version"], "0.1.0", "{value}");
    ok(root.run(&["stop"]));
}

/// Weak spot "Address already in use for a directory at run/control.sock": the start fails
/// saying what is there and what to do, and leaves it alone.
#[test]
fn a_directory_at_the_control_socket_is_named() {
    let root = Root::new("socket-dir");
    let socket = root.root.join("run/control.sock");
    std::fs::create_dir_all(socket.join("keep")).unwrap();
    let all = fails(root.run(&["start"]), "is a directory, not a socket");
    assert!(!all.contains("Address already in use"), "{all}");
    assert!(all.contains("remove it"), "{all}");
    assert!(socket.join("keep").is_dir(), "the directory was touched");
    assert!(root.nodes().is_empty(), "{:?}", root.nodes());
}

/// Weak spot "File exists for a dangling snapshots/ or log/ symlink": both are named as
/// dangling symlinks with their target.
#[test]
fn dangling_log_and_snapshots_symlinks_are_named() {
    let root = Root::new("dangling");
    let gone = root.base.join("gone");
    let log = root.root.join("log");
    std::fs::remove_dir_all(&log).unwrap();
    std::os::unix::fs::symlink(gone.join("log"), &log).unwrap();
    let all = fails(root.run(&["start"]), "dangling symlink");
    assert!(
        all.contains(&gone.join("log").display().to_string()),
        "{all}"
    );
    assert!(!all.contains("File exists"), "{all}");
    std::fs::remove_file(&log).unwrap();

    ok(root.run(&["start"]));
    ok(root.run(&["unpack", root.tarball("0.2.0").to_str().unwrap()]));
    let snapshots = root.root.join("snapshots");
    let _ = std::fs::remove_dir_all(&snapshots);
    std::os::unix::fs::symlink(gone.join("snapshots"), &snapshots).unwrap();
    let all = fails(root.run(&["upgrade", "0.2.0"]), "dangling symlink");
    assert!(
        all.contains(&gone.join("snapshots").display().to_string()),
        "{all}"
    );
    assert!(!all.contains("File exists"), "{all}");
    ok(root.run(&["stop"]));
}

/// Weak spot "Connection reset by peer when the node cannot start a thread": the node answers
/// an error from its accept thread, and keeps serving once it can.
#[test]
fn a_request_without_a_thread_is_answered() {
    let root = Root::new("no-thread");
    // While this file exists, the node's accept thread fails to start request threads.
    let fault = root.base.join("no-threads");
    ok(root
        .command(&["start"])
        .env("RELUP_FAULT_CONTROL_SPAWN", &fault)
        .output()
        .unwrap());
    std::fs::write(&fault, "").unwrap();
    let all = fails(root.run(&["status"]), "cannot start a thread");
    assert!(!all.contains("reset by peer"), "{all}");
    assert!(all.contains("log/node.log"), "{all}");
    std::fs::remove_file(&fault).unwrap();
    let status = ok(root.run(&["status"]));
    assert!(status.contains("release demo 0.1.0"), "{status}");
    let node_log = std::fs::read_to_string(root.root.join("log/node.log")).unwrap();
    assert!(node_log.contains("cannot start a thread"), "{node_log}");
    ok(root.run(&["stop"]));
}
