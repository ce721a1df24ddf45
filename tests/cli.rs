//! The real `relup` binary against a real node in a temporary release root: every command's
//! success path and its main errors.

mod common;

use common::{RELUP, fails, ok, release_dir, relup, text};

use relup_testkit::fixtures;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary root with releases 0.1.0 and 0.2.0 of `demo` packed, 0.1.0 deployed. The node
/// is stopped (or killed) when the value is dropped.
struct Demo {
    base: PathBuf,
    root: PathBuf,
}

impl Demo {
    /// `up_extra`: extra instructions in 0.2.0's up section.
    fn new(name: &str, up_extra: &str) -> Demo {
        Demo::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")), name, up_extra)
    }

    /// As `new`, under `parent`.
    fn new_in(parent: &Path, name: &str, up_extra: &str) -> Demo {
        let base = parent.join(format!("relup-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let f = fixtures();
        let appup = format!(
            r#"application = "app"
version = "0.2.0"

[[up]]
from = "0.1.0"
instructions = [ {{ update = "counter" }}{up_extra} ]

[[down]]
to = "0.1.0"
instructions = [ {{ update = "counter" }} ]
"#
        );
        let r1 = release_dir(&base, "0.1.0", &f.counter_v1, "1.0.0", None);
        let r2 = release_dir(&base, "0.2.0", &f.counter_v2, "2.0.0", Some(&appup));
        let out = base.join("out");
        for dir in [&r1, &r2] {
            ok(relup(&[
                "release",
                dir.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ]));
        }
        let root = base.join("root");
        let deployed = ok(relup(&[
            "deploy",
            out.join("demo-0.1.0.tar.gz").to_str().unwrap(),
            root.to_str().unwrap(),
        ]));
        assert!(deployed.contains("deployed demo 0.1.0"), "{deployed}");
        Demo { base, root }
    }

    fn tarball(&self, version: &str) -> PathBuf {
        self.base.join("out").join(format!("demo-{version}.tar.gz"))
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--root", self.root.to_str().unwrap()];
        all.extend_from_slice(args);
        relup(&all)
    }

    /// Starts the node again and checks it runs 0.1.0 (permanent) with 0.2.0 only unpacked.
    fn restarts_on_010(&self) {
        ok(self.run(&["start"]));
        let status = ok(self.run(&["status"]));
        assert!(
            status.contains("release demo 0.1.0") && status.contains("counter 1.0.0"),
            "{status}"
        );
        let releases = ok(self.run(&["releases"]));
        assert!(
            releases.contains("0.1.0 permanent") && releases.contains("0.2.0 unpacked"),
            "{releases}"
        );
    }

    /// Waits until the journal (`log/upgrade.log`) holds `needle`: the step it names has
    /// begun (or happened).
    fn wait_journal(&self, needle: &str) {
        let journal = self.root.join("log/upgrade.log");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .contains(needle)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the journal never said {needle:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn socket(&self) -> PathBuf {
        self.root.join("run/control.sock")
    }

    fn raw(&self, bytes: &[u8]) -> String {
        let mut stream = UnixStream::connect(self.socket()).unwrap();
        stream.write_all(bytes).unwrap();
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        line
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _cleanup = RemoveOnDrop(self.base.clone());
        if self.socket().exists() {
            let _ = self.run(&["stop"]);
        }
        if let Ok(pid) = std::fs::read_to_string(self.root.join("run/node.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            // SAFETY: sending SIGKILL to the node this test started.
            unsafe { libc_kill(pid) };
        }
    }
}

/// Removes a test's directory (after the node is stopped).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

unsafe fn libc_kill(pid: i32) {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: plain syscall wrapper; a stale pid is harmless for a test root's node.
    unsafe {
        kill(pid, 9);
    }
}

#[test]
fn deploy_start_upgrade_downgrade_stop() {
    let demo = Demo::new("cycle", "");
    let started = ok(demo.run(&["start"]));
    assert!(started.contains("node started"), "{started}");
    fails(demo.run(&["start"]), "already running");

    let status = ok(demo.run(&["status"]));
    assert!(status.contains("release demo 0.1.0"), "{status}");
    assert!(
        status.contains("c1 Worker") && status.contains("counter 1.0.0"),
        "{status}"
    );

    // Drop 0.2.0's tarball in place: `upgrade` unpacks it first and says so.
    let dir = demo.root.join("releases/0.2.0");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(demo.tarball("0.2.0"), dir.join("demo-0.2.0.tar.gz")).unwrap();
    fails(
        demo.run(&["plan", "0.2.0"]),
        "release 0.2.0 is not unpacked yet",
    );
    let up = ok(demo.run(&["upgrade", "0.2.0"]));
    assert!(up.contains("unpacked 0.2.0 from its tarball"), "{up}");
    assert!(
        up.contains("code_change counter up from 1.0.0") && up.contains("1 state(s) migrated"),
        "{up}"
    );
    assert!(up.contains("demo 0.2.0 is running (permanent)"), "{up}");
    let status = ok(demo.run(&["status"]));
    assert!(status.contains("counter 2.0.0"), "{status}");
    let releases = ok(demo.run(&["releases"]));
    assert!(
        releases.contains("0.1.0 old") && releases.contains("0.2.0 permanent"),
        "{releases}"
    );

    fails(
        demo.run(&["upgrade", "0.1.0"]),
        "use `relup downgrade 0.1.0`",
    );
    let plan = ok(demo.run(&["plan", "0.1.0"]));
    assert!(plan.contains("code_change counter down to 1.0.0"), "{plan}");
    let down = ok(demo.run(&["downgrade", "0.1.0"]));
    assert!(down.contains("code_change counter down to 1.0.0"), "{down}");
    let json = ok(demo.run(&["status", "--json"]));
    let value: serde_json::Value =
        serde_json::from_str(json.trim()).expect("status --json is JSON");
    assert_eq!(value["version"], "0.1.0");

    let log = ok(demo.run(&["log"]));
    assert!(log.contains("step=\"commit\" ok"), "{log}");
    fails(demo.run(&["remove", "0.1.0"]), "never the permanent");
    // --no-permanent leaves the release current; `relup permanent` makes it permanent.
    ok(demo.run(&["upgrade", "0.2.0", "--no-permanent"]));
    let releases = ok(demo.run(&["releases"]));
    assert!(
        releases.contains("0.2.0 current") && releases.contains("0.1.0 permanent"),
        "{releases}"
    );
    fails(demo.run(&["permanent", "0.9.0"]), "0.9.0");
    ok(demo.run(&["permanent", "0.2.0"]));
    ok(demo.run(&["downgrade", "0.1.0"]));
    let removed = ok(demo.run(&["remove", "0.2.0"]));
    assert!(
        removed.contains("removed 0.2.0; deleted ") && removed.contains("releases/0.2.0"),
        "{removed}"
    );
    assert!(!demo.root.join("releases/0.2.0").exists());

    let stopped = ok(demo.run(&["stop"]));
    assert!(stopped.contains("node stopped"), "{stopped}");
    fails(demo.run(&["status"]), "the node is not running");
}

#[test]
fn appup_generate_writes_an_appup_for_the_changed_module() {
    let demo = Demo::new("generate", "");
    let generated = ok(relup(&[
        "appup",
        "generate",
        demo.base.join("src-0.1.0").to_str().unwrap(),
        demo.base.join("src-0.2.0").to_str().unwrap(),
    ]));
    assert!(generated.contains("application = \"app\""), "{generated}");
    assert!(
        generated.contains("update = \"counter\""),
        "a module run by a child is updated:\n{generated}"
    );
    fails(
        relup(&[
            "appup",
            "generate",
            demo.base.to_str().unwrap(),
            demo.base.to_str().unwrap(),
        ]),
        "release.toml",
    );
}

#[test]
fn errors_are_clear_and_the_node_keeps_running() {
    let demo = Demo::new("errors", "");
    fails(demo.run(&["status"]), "the node is not running");
    ok(demo.run(&["start"]));
    fails(
        demo.run(&["upgrade", "0.9.0"]),
        "release 0.9.0 is not known; known releases: 0.1.0 (permanent)",
    );
    fails(
        demo.run(&["upgrade", "banana"]),
        "\"banana\" is not a version",
    );
    let garbage = demo.base.join("garbage.tar.gz");
    std::fs::write(&garbage, b"this is not a tarball").unwrap();
    fails(
        demo.run(&["unpack", garbage.to_str().unwrap()]),
        "garbage.tar.gz",
    );
    // Malformed, oversize and unknown requests get an error response.
    assert!(demo.raw(b"{not json\n").contains("malformed request"));
    assert!(
        demo.raw(b"{\"cmd\":\"explode\"}\n")
            .contains("malformed request")
    );
    let big = vec![b'x'; 70 * 1024];
    assert!(demo.raw(&big).contains("longer than"));
    // The node still answers.
    let status = ok(demo.run(&["status"]));
    assert!(status.contains("release demo 0.1.0"), "{status}");
    fails(relup(&["status"]), "no release root");
}

#[test]
fn a_second_concurrent_upgrade_is_refused() {
    // 0.2.0's upgrade holds for 1.5 s in an apply step.
    let demo = Demo::new(
        "busy",
        r#", { apply = "counter", function = "sleep", args = [1500] }"#,
    );
    ok(demo.run(&["start"]));
    let unpacked = ok(demo.run(&["unpack", demo.tarball("0.2.0").to_str().unwrap()]));
    assert!(
        unpacked.contains("unpacked 0.2.0; path from 0.1.0: direct"),
        "{unpacked}"
    );
    let first = {
        let root = demo.root.clone();
        std::thread::spawn(move || relup(&["--root", root.to_str().unwrap(), "upgrade", "0.2.0"]))
    };
    // The first one holds in its apply step (1.5 s) from this journal line on.
    demo.wait_journal("step=\"apply counter::sleep(1500)\" begin");
    fails(demo.run(&["upgrade", "0.2.0"]), "an upgrade is in progress");
    let first = ok(first.join().unwrap());
    assert!(first.contains("demo 0.2.0 is running"), "{first}");
}

#[test]
fn a_client_of_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe {
        unsafe extern "C" {
            fn geteuid() -> u32;
        }
        geteuid()
    };
    // Under the system temp directory, which every user may traverse.
    let demo = Demo::new_in(&std::env::temp_dir(), "uid", "");
    ok(demo.run(&["start"]));
    let mode = std::fs::metadata(demo.socket()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.permissions().mode() & 0o777,
        0o600,
        "the socket is private"
    );
    if euid != 0 {
        // Without root we cannot act as another user; the mode check above is what stands.
        return;
    }
    let as_nobody = || {
        Command::new(RELUP)
            .args(["--root", demo.root.to_str().unwrap(), "status"])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    // The 0600 socket keeps another user out at connect time ...
    fails(as_nobody(), "the node is not running");
    // ... and with the mode opened up, the node's peer check refuses the uid.
    std::fs::set_permissions(demo.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    for dir in [&demo.base, &demo.root, &demo.root.join("run")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    fails(as_nobody(), "refused: client uid 65534");
}

#[test]
fn a_node_killed_mid_install_restarts_on_the_permanent_release() {
    // 0.2.0's upgrade holds for 3 s in an apply step, with the processes suspended.
    let demo = Demo::new(
        "sigkill",
        r#", { apply = "counter", function = "sleep", args = [3000] }"#,
    );
    ok(demo.run(&["start"]));
    ok(demo.run(&["unpack", demo.tarball("0.2.0").to_str().unwrap()]));
    let before = std::fs::read_to_string(demo.root.join("releases/RELEASES")).unwrap();
    let upgrade = {
        let root = demo.root.clone();
        std::thread::spawn(move || relup(&["--root", root.to_str().unwrap(), "upgrade", "0.2.0"]))
    };
    // Killed inside the apply step, with the processes suspended.
    demo.wait_journal("step=\"apply counter::sleep(3000)\" begin");
    let pid: i32 = std::fs::read_to_string(demo.root.join("run/node.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: SIGKILL to the node this test started.
    unsafe { libc_kill(pid) };
    let client = upgrade.join().unwrap();
    assert!(
        !client.status.success(),
        "the upgrade cannot report success:\n{}",
        text(&client)
    );
    assert_eq!(
        std::fs::read_to_string(demo.root.join("releases/RELEASES")).unwrap(),
        before,
        "RELEASES is as it was before the install"
    );
    let journal = std::fs::read_to_string(demo.root.join("log/upgrade.log")).unwrap();
    assert!(
        journal.contains("step=\"apply counter::sleep(3000)\" begin"),
        "{journal}"
    );
    assert!(!journal.contains("step=\"commit\""), "{journal}");
    // Restart on the stale socket: the permanent release boots.
    demo.restarts_on_010();
    // And the interrupted upgrade can simply be run again.
    let up = ok(demo.run(&["upgrade", "0.2.0"]));
    assert!(up.contains("demo 0.2.0 is running (permanent)"), "{up}");
}

#[test]
fn live_releases_are_protected_and_an_old_one_can_be_rebooted_into() {
    let demo = Demo::new("live", "");
    ok(demo.run(&["start"]));
    let t1 = demo.tarball("0.1.0");
    let t2 = demo.tarball("0.2.0");
    // The permanent release cannot be overwritten, not even with --force.
    fails(demo.run(&["unpack", t1.to_str().unwrap()]), "0.1.0");
    fails(
        demo.run(&["unpack", "--force", t1.to_str().unwrap()]),
        "0.1.0",
    );
    // An unpacked one only with --force.
    ok(demo.run(&["unpack", t2.to_str().unwrap()]));
    fails(demo.run(&["unpack", t2.to_str().unwrap()]), "0.2.0");
    let forced = ok(demo.run(&["unpack", "--force", t2.to_str().unwrap()]));
    assert!(forced.contains("unpacked 0.2.0"), "{forced}");
    // After an upgrade, 0.1.0 is old: reboot into it.
    ok(demo.run(&["upgrade", "0.2.0"]));
    fails(
        demo.run(&["unpack", "--force", t2.to_str().unwrap()]),
        "0.2.0",
    );
    fails(
        demo.run(&["reboot-old", "0.2.0"]),
        "reboot_old takes an old release",
    );
    let rebooted = ok(demo.run(&["reboot-old", "0.1.0"]));
    assert!(rebooted.contains("rebooted into 0.1.0"), "{rebooted}");
    let status = ok(demo.run(&["status"]));
    assert!(
        status.contains("release demo 0.1.0") && status.contains("counter 1.0.0"),
        "{status}"
    );
    let releases = ok(demo.run(&["releases"]));
    assert!(
        releases.contains("0.1.0 permanent") && releases.contains("0.2.0 old"),
        "{releases}"
    );
}

#[test]
fn check_snapshots_and_a_scheduled_upgrade_that_survives_a_restart() {
    let demo = Demo::new("schedule", "");
    ok(demo.run(&["start"]));
    ok(demo.run(&["unpack", demo.tarball("0.2.0").to_str().unwrap()]));

    let check = ok(demo.run(&["check", "0.2.0"]));
    assert!(
        check.contains("check 0.1.0 -> 0.2.0: counter -> 2.0.0: 1 of 1 state(s) migrate"),
        "{check}"
    );
    assert!(ok(demo.run(&["releases"])).contains("0.1.0 permanent"));

    // A past time is refused with the node's own time; `--in` is suggested.
    let past = fails(
        demo.run(&["upgrade", "0.2.0", "--at", "2020-01-01T00:00:00Z"]),
        "2020-01-01T00:00:00Z is in the past: the node's time is 20",
    );
    assert!(past.contains("use --in 10m"), "{past}");
    fails(
        demo.run(&["upgrade", "0.2.0", "--at", "next tuesday"]),
        "is not a time",
    );
    // Scheduled, listed, cancelled.
    let later = ok(demo.run(&["upgrade", "0.2.0", "--in", "2h"]));
    assert!(
        later.contains("scheduled upgrade 1: demo 0.2.0 at 20"),
        "{later}"
    );
    assert!(ok(demo.run(&["status"])).contains("scheduled: 1 -> 0.2.0 at"));
    // A pending entry survives a restart (two hours ahead: the restart comes first).
    ok(demo.run(&["stop"]));
    ok(demo.run(&["start"]));
    assert!(ok(demo.run(&["status"])).contains("scheduled: 1 -> 0.2.0 at"));
    assert!(ok(demo.run(&["cancel", "1"])).contains("cancelled scheduled upgrade 1"));
    fails(demo.run(&["cancel", "1"]), "no scheduled upgrade 1");

    // Scheduled in 4 s; the node stops at once and starts again once it is due: the node
    // that starts runs it (an entry that fell due while the node was down runs at the next
    // start). No fixed wait: the test waits for the due time itself, then for the upgrade.
    let scheduled = ok(demo.run(&["upgrade", "0.2.0", "--in", "4s", "--probation", "0"]));
    let due = std::time::Instant::now() + std::time::Duration::from_secs(4);
    assert!(scheduled.contains("scheduled upgrade 2"), "{scheduled}");
    assert!(demo.root.join("releases/SCHEDULE").is_file());
    ok(demo.run(&["stop"]));
    let journal = std::fs::read_to_string(demo.root.join("log/upgrade.log")).unwrap();
    assert!(
        !journal.contains("scheduled upgrade 2 starts"),
        "the node ran the scheduled upgrade before it was stopped (the stop took over 4 s): \
         nothing left to run after the restart:\n{journal}"
    );
    while std::time::Instant::now() < due {
        std::thread::sleep(due - std::time::Instant::now());
    }
    ok(demo.run(&["start"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let releases = ok(demo.run(&["releases"]));
        if releases.contains("0.2.0 permanent") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ran: {releases}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = ok(demo.run(&["log"]));
    assert!(
        log.contains("scheduled upgrade 2 starts") && log.contains("scheduled upgrade 2 done"),
        "{log}"
    );
    assert!(!ok(demo.run(&["status"])).contains("scheduled:"));

    // The scheduled upgrade took a snapshot of the migrated state first.
    let snapshots = ok(demo.run(&["snapshots"]));
    assert!(
        snapshots.contains("before 0.1.0 -> 0.2.0  1 state(s)"),
        "{snapshots}"
    );
    let down = ok(demo.run(&[
        "downgrade",
        "0.1.0",
        "--restore-snapshot",
        "1",
        "--probation",
        "0",
    ]));
    assert!(down.contains("1 restored from the snapshot"), "{down}");
    fails(
        demo.run(&["downgrade", "0.1.0", "--restore-snapshot", "1"]),
        "already running",
    );
}

#[test]
fn a_node_killed_during_probation_boots_the_permanent_release() {
    let demo = Demo::new("probation-kill", "");
    ok(demo.run(&["start"]));
    ok(demo.run(&["unpack", demo.tarball("0.2.0").to_str().unwrap()]));
    let upgrade = {
        let root = demo.root.clone();
        std::thread::spawn(move || {
            relup(&[
                "--root",
                root.to_str().unwrap(),
                "upgrade",
                "0.2.0",
                "--probation",
                "60s",
            ])
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = ok(demo.run(&["status"]));
        if status.contains("probation: 0.2.0 until permanent") {
            assert!(status.contains("counter 2.0.0"), "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no probation: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(ok(demo.run(&["releases"])).contains("0.2.0 current"));
    let pid: i32 = std::fs::read_to_string(demo.root.join("run/node.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: SIGKILL to the node this test started.
    unsafe { libc_kill(pid) };
    let client = upgrade.join().unwrap();
    assert!(!client.status.success(), "{}", text(&client));
    demo.restarts_on_010();
}
