//! Shared support for the reliability tests that drive real `relup` nodes (crash consistency,
//! hostile clients): release tarballs of `demo` 0.1.0 (counter 1.0.0) and 0.2.0 (counter
//! 2.0.0) with declared config keys, a template root, and a [`Root`] per test case with its
//! node's process.

#![allow(dead_code)]

use relup_runtime::release::{PackOptions, ReleaseRoot, deploy, pack_with, unpack};
use relup_testkit::fixtures;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
pub mod common;
#[allow(unused_imports)] // each test binary uses a different part
pub use common::{RELUP, ok, text};

/// A release directory of `demo` `version` running module `counter` (`module_vsn`, from
/// `lib`) as children c1 and c2, declaring integer keys `ticker` and `limit`; `appup` is the
/// app's appup.toml.
fn release_dir(
    base: &Path,
    version: &str,
    lib: &Path,
    module_vsn: &str,
    appup: Option<&str>,
) -> PathBuf {
    let dir = base.join(format!("src-{version}"));
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::copy(lib, dir.join("lib/libcounter.so")).unwrap();
    let manifest = format!(
        r#"name = "demo"
version = "{version}"

# No probation: these scenarios install and roll back by themselves (probation has its own).
[probation]
seconds = 0

[[applications]]
name = "app"
version = "{version}"

[[applications.modules]]
name = "counter"
file = "lib/libcounter.so"
version = "{module_vsn}"

[applications.supervisor]
strategy = "one_for_one"

[[applications.supervisor.children]]
id = "c1"
module = "counter"
args = {{ start = 1, register_as = "c1" }}

[[applications.supervisor.children]]
id = "c2"
module = "counter"
args = {{ start = 2, register_as = "c2" }}

[[applications.config]]
module = "counter"
key = "ticker"
type = "integer"
default = 1

[[applications.config]]
module = "counter"
key = "limit"
type = "integer"
default = 1
"#
    );
    std::fs::write(dir.join("release.toml"), manifest).unwrap();
    if let Some(appup) = appup {
        std::fs::write(dir.join("appup.toml"), appup).unwrap();
    }
    dir
}

/// The packed tarballs of 0.1.0 and 0.2.0, built once per test binary.
pub struct Tarballs {
    /// `demo-0.1.0.tar.gz`.
    pub v1: PathBuf,
    /// `demo-0.2.0.tar.gz`.
    pub v2: PathBuf,
    /// Another `demo-0.2.0.tar.gz` whose upgrade holds 1.5 s in an apply step, with the
    /// processes suspended (to have an upgrade in progress).
    pub v2_slow: PathBuf,
    /// Another `demo-0.2.0.tar.gz` whose migration leaves a state that fails the health
    /// check (`extra = "unhealthy"`): it fails its probation and is rolled back.
    pub v2_unhealthy: PathBuf,
    /// A root with 0.1.0 deployed (permanent), node not running.
    pub deployed: PathBuf,
}

/// Where this test binary keeps its files (short: a control socket path must fit in
/// `sun_path`, 108 bytes).
pub fn base_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("r{}", std::process::id()))
}

/// Removes the base directories of earlier test processes that are gone (each test binary
/// leaves its tarballs and template root behind, being unable to clean up at exit).
fn remove_stale_base_dirs() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix('r').and_then(|p| p.parse::<i32>().ok())
            && pid != std::process::id() as i32
            && !alive(pid)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The tarballs, packed on first use.
pub fn tarballs() -> &'static Tarballs {
    static TARBALLS: OnceLock<Tarballs> = OnceLock::new();
    TARBALLS.get_or_init(|| {
        remove_stale_base_dirs();
        let base = base_dir().join("tarballs");
        let _ = std::fs::remove_dir_all(&base);
        let f = fixtures();
        let appup = |extra: &str| {
            format!(
                r#"application = "app"
version = "0.2.0"

[[up]]
from = "0.1.0"
instructions = [ {{ update = "counter" }}{extra} ]

[[down]]
to = "0.1.0"
instructions = [ {{ update = "counter" }} ]
"#
            )
        };
        let r1 = release_dir(&base, "0.1.0", &f.counter_v1, "1.0.0", None);
        let r2 = release_dir(&base, "0.2.0", &f.counter_v2, "2.0.0", Some(&appup("")));
        let out = base.join("out");
        let v1 = pack_with(&r1, &out, PackOptions::default()).unwrap();
        let v2 = pack_with(&r2, &out, PackOptions::default()).unwrap();
        let slow = appup(r#", { apply = "counter", function = "sleep", args = [1500] }"#);
        let r2 = release_dir(
            &base.join("slow"),
            "0.2.0",
            &f.counter_v2,
            "2.0.0",
            Some(&slow),
        );
        let v2_slow = pack_with(&r2, &base.join("out-slow"), PackOptions::default()).unwrap();
        let unhealthy = appup("").replace(
            r#"{ update = "counter" } ]

[[down]]"#,
            r#"{ update = "counter", extra = "unhealthy" } ]

[[down]]"#,
        );
        let r2 = release_dir(
            &base.join("unhealthy"),
            "0.2.0",
            &f.counter_v2,
            "2.0.0",
            Some(&unhealthy),
        );
        let v2_unhealthy =
            pack_with(&r2, &base.join("out-unhealthy"), PackOptions::default()).unwrap();
        let deployed = base.join("deployed");
        deploy(&v1, &deployed).unwrap();
        Tarballs {
            v1,
            v2,
            v2_slow,
            v2_unhealthy,
            deployed,
        }
    })
}

/// A release root of its own (a copy of the deployed template) and its node.
pub struct Root {
    /// The root directory.
    pub path: PathBuf,
}

impl Root {
    /// A fresh copy of the deployed template as `<base>/<name>`; with `unpacked`, 0.2.0 is
    /// unpacked too.
    pub fn new(name: &str, unpacked: bool) -> Root {
        let root = Root::bare(name);
        if unpacked {
            unpack(&root.release_root(), &tarballs().v2).unwrap();
        }
        root
    }

    /// As [`Root::new`], with the slow 0.2.0 unpacked.
    pub fn slow(name: &str) -> Root {
        let root = Root::bare(name);
        unpack(&root.release_root(), &tarballs().v2_slow).unwrap();
        root
    }

    fn bare(name: &str) -> Root {
        let t = tarballs();
        let path = base_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        let status = Command::new("cp")
            .arg("-a")
            .arg(&t.deployed)
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        Root { path }
    }

    /// The library's view of the root.
    pub fn release_root(&self) -> ReleaseRoot {
        ReleaseRoot::new(&self.path)
    }

    /// Runs `relup --root <root> args`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Runs `relup --root <root> args` with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let mut command = Command::new(RELUP);
        command
            .arg("--root")
            .arg(&self.path)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .env_remove("RELUP_FAULT_KILL_AT")
            .env_remove("RELUP_FAULT_TRACE");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("relup runs")
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.path.join("run/control.sock")
    }

    /// The node's pid, from `run/node.pid`.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.path.join("run/node.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Starts the node (with `env` for it), and waits until it has written its pid file:
    /// then its boot is over (the pid file is its last step).
    pub fn start(&self, env: &[(&str, String)]) {
        let _ = std::fs::remove_file(self.path.join("run/node.pid"));
        ok(self.run_env(&["start"], env));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.pid().is_none() {
            assert!(Instant::now() < deadline, "the node wrote no pid file");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The pid file's rename is durable a moment after it is visible.
        std::thread::sleep(Duration::from_millis(50));
    }

    /// Waits until the node process is gone; false if it is still alive after 60 s.
    pub fn wait_dead(&self, pid: i32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while alive(pid) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Stops the node (and makes sure its process is gone).
    pub fn stop(&self) {
        let pid = self.pid();
        let _ = self.run(&["stop"]);
        if let Some(pid) = pid
            && !self.wait_dead(pid)
        {
            kill(pid);
        }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if let Some(pid) = self.pid()
            && alive(pid)
        {
            kill(pid);
            self.wait_dead(pid);
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Whether a process exists (and is not a zombie of ours).
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

/// SIGKILLs a process this test started.
pub fn kill(pid: i32) {
    // SAFETY: plain signal to a node process started by this test.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// One install as the journal (`log/upgrade.log`) shows it: from its `install <from> -> <to>
/// via ...` line to its `install done, running <to>` line.
#[derive(Debug, Clone)]
pub struct InstallWindow {
    /// `<from> -> <to>`.
    pub hop: String,
    /// The time of the first line, plus one millisecond (the journal's times are cut to the
    /// millisecond, so the install began at or before this).
    pub start: std::time::SystemTime,
    /// The time of the last line (the install was done at or after this).
    pub end: std::time::SystemTime,
}

impl InstallWindow {
    /// Whether `[from, to]` lies entirely inside the window.
    pub fn contains(&self, from: std::time::SystemTime, to: std::time::SystemTime) -> bool {
        self.start <= from && to <= self.end
    }

    /// Whether `[from, to]` and the window have an instant in common.
    pub fn overlaps(&self, from: std::time::SystemTime, to: std::time::SystemTime) -> bool {
        from <= self.end && self.start <= to
    }
}

/// The installs of a journal's text that completed, in order.
pub fn install_windows(journal: &str) -> Vec<InstallWindow> {
    windows(
        journal,
        |text| {
            text.strip_prefix("install ")
                .and_then(|t| t.split_once(" via "))
                .map(|(hop, _)| hop.to_string())
        },
        |text| text.starts_with("install done, running "),
    )
}

/// The handovers of a journal's text that completed (issue 18), in order: from the old
/// node's "handover of <vsn> to a new node" to its "took over ...; this node exits".
pub fn handover_windows(journal: &str) -> Vec<InstallWindow> {
    windows(
        journal,
        |text| {
            text.strip_prefix("handover of ")
                .and_then(|t| t.split_once(" to a new node"))
                .map(|(version, _)| version.to_string())
        },
        |text| text.starts_with("handover: node ") && text.ends_with("this node exits"),
    )
}

/// The windows of a journal's text, in order: from a line `starts` names (what it names is
/// the window's `hop`) to the next line `ends` accepts; one that never ends is left out.
fn windows(
    journal: &str,
    starts: impl Fn(&str) -> Option<String>,
    ends: impl Fn(&str) -> bool,
) -> Vec<InstallWindow> {
    let mut windows = Vec::new();
    let mut open: Option<(String, std::time::SystemTime)> = None;
    for line in journal.lines() {
        let Some((time, text)) = line.split_once(' ') else {
            continue;
        };
        let Ok(at) = humantime::parse_rfc3339(time) else {
            continue;
        };
        if let Some(hop) = starts(text) {
            open = Some((hop, at + Duration::from_millis(1)));
        } else if ends(text)
            && let Some((hop, start)) = open.take()
        {
            windows.push(InstallWindow {
                hop,
                start,
                end: at,
            });
        }
    }
    windows
}

#[test]
fn handover_windows_pair_the_start_and_the_take_over() {
    let journal = "2026-01-02T03:04:06.000Z handover of 0.3.0 to a new node (/bin/relup) starts\n\
        2026-01-02T03:04:06.010Z handover: image sent (2 processes)\n\
        2026-01-02T03:04:06.020Z handover: node 7 took over from node 6 (1 processes restored)\n\
        2026-01-02T03:04:06.021Z handover: node 7 took over (2 processes); this node exits\n\
        2026-01-02T03:04:08.000Z handover of 0.3.0 to a new node (/bin/relup) starts\n\
        2026-01-02T03:04:08.100Z handover FAILED, this node resumed: no\n";
    let w = handover_windows(journal);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].hop, "0.3.0");
    let t = |s| humantime::parse_rfc3339(s).unwrap();
    assert_eq!(w[0].start, t("2026-01-02T03:04:06.001Z"));
    assert_eq!(w[0].end, t("2026-01-02T03:04:06.021Z"));
}

#[test]
fn install_windows_pair_the_first_and_last_line_of_each_install() {
    let journal = "2026-01-02T03:04:05.006Z boot demo 0.1.0\n\
        2026-01-02T03:04:06.000Z install 0.1.0 -> 0.2.0 via 0.1.0 -> 0.2.0\n\
        2026-01-02T03:04:06.100Z hop=0.1.0 -> 0.2.0 step=\"commit\" ok\n\
        2026-01-02T03:04:07.500Z install done, running 0.2.0\n\
        2026-01-02T03:04:08.000Z install 0.2.0 -> 0.1.0 via 0.2.0 -> 0.1.0\n";
    let w = install_windows(journal);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].hop, "0.1.0 -> 0.2.0");
    let t = |s| humantime::parse_rfc3339(s).unwrap();
    assert_eq!(w[0].start, t("2026-01-02T03:04:06.001Z"));
    assert_eq!(w[0].end, t("2026-01-02T03:04:07.500Z"));
    assert!(w[0].contains(t("2026-01-02T03:04:06.001Z"), t("2026-01-02T03:04:07.5Z")));
    assert!(!w[0].contains(t("2026-01-02T03:04:05.9Z"), t("2026-01-02T03:04:06.5Z")));
    assert!(w[0].overlaps(t("2026-01-02T03:04:05.9Z"), t("2026-01-02T03:04:06.5Z")));
    assert!(!w[0].overlaps(t("2026-01-02T03:04:07.6Z"), t("2026-01-02T03:04:07.7Z")));
}
