//! `relup config get|set` and the watched config file with the real binary and a real node
//! running the ticker tutorial's 0.4.0, including SIGKILL of the node while changes are
//! being processed: config.toml is never partly written and no accepted change is lost.

mod common;

use common::{ok, relup, text};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// A root with ticker 0.4.0 deployed and started; stopped (or killed) and removed on drop.
struct Ticker {
    base: PathBuf,
    root: PathBuf,
}

impl Ticker {
    fn new(name: &str) -> Ticker {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("relup-config-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let src = base.join("src");
        std::fs::create_dir_all(src.join("lib")).unwrap();
        std::fs::copy(
            &relup_testkit::fixtures().ticker_v040,
            src.join("lib/libticker_server.so"),
        )
        .unwrap();
        std::fs::copy(
            relup_testkit::workspace_root().join("examples/ticker/v0.4.0/release.toml"),
            src.join("release.toml"),
        )
        .unwrap();
        let out = base.join("out");
        ok(relup(&[
            "release",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]));
        let root = base.join("root");
        ok(relup(&[
            "deploy",
            out.join("ticker-0.4.0.tar.gz").to_str().unwrap(),
            root.to_str().unwrap(),
        ]));
        let t = Ticker { base, root };
        ok(t.run(&["start"]));
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--root", self.root.to_str().unwrap()];
        all.extend_from_slice(args);
        relup(&all)
    }

    fn config(&self, file: &str) -> PathBuf {
        self.root.join("config").join(file)
    }

    fn append(&self, line: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.config("config.toml.new"))
            .unwrap();
        f.write_all(line.as_bytes()).unwrap();
    }

    fn consumed(&self) -> bool {
        wait(|| {
            !self.config("config.toml.new").exists()
                && !self.config("config.toml.new.work").exists()
        })
    }

    fn get(&self) -> String {
        ok(self.run(&["config", "get", "ticker:ticker"]))
    }

    fn kill(&self) {
        let pid: i32 = std::fs::read_to_string(self.root.join("run/node.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: SIGKILL to the node this test started.
        unsafe { kill(pid, 9) };
        let proc = PathBuf::from(format!("/proc/{pid}"));
        assert!(wait(|| !proc.exists()
            || std::fs::read_to_string(proc.join("stat"))
                .is_ok_and(|s| s.contains(") Z "))));
    }
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn wait(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check()
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if self.root.join("run/control.sock").exists() {
            let _ = self.run(&["stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

#[test]
fn get_and_set_go_through_the_node_with_the_same_checks() {
    let t = Ticker::new("getset");
    let all = ok(t.run(&["config", "get"]));
    assert!(
        all.contains("ticker:ticker_server:ticker = 1000  (default, duration_ms)"),
        "{all}"
    );
    let set = ok(t.run(&["config", "set", "ticker:ticker_server:ticker:1500"]));
    assert!(
        set.contains("set ticker:ticker_server:ticker = 1500"),
        "{set}"
    );
    assert!(t.get().contains("= 1500  (operator"), "{}", t.get());
    let live = std::fs::read_to_string(t.config("config.toml")).unwrap();
    assert!(live.contains("ticker = 1500"), "{live}");
    for (line, needle) in [
        (
            "ticker:ticker_server:ticker:-5",
            "expected a value of type duration_ms",
        ),
        (
            "ticker:ticker_server:ticker:1.5",
            "expected a value of type duration_ms",
        ),
        ("ticker:ticker_server:nokey:1", "declares no key \"nokey\""),
        ("broken", "expected app:module:key:value"),
    ] {
        let out = t.run(&["config", "set", line]);
        assert!(!out.status.success(), "{line}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("relup: rejected: ") && err.contains(needle),
            "{err}"
        );
    }
    let out = t.run(&["config", "get", "nope"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown application \"nope\""));
    let json = ok(t.run(&["--json", "config", "get", "ticker"]));
    assert!(json.contains("\"origin\":\"operator\""), "{json}");
    assert!(t.get().contains("= 1500"));
}

#[test]
fn the_tutorial_steps_broken_then_1500() {
    let t = Ticker::new("tutorial");
    t.append("broken\n");
    assert!(t.consumed());
    let rej = std::fs::read_to_string(t.config("config.toml.rej")).unwrap();
    assert!(
        rej.contains("line 1: expected app:module:key:value"),
        "{rej}"
    );
    t.append("ticker:nosuch:ticker:1500\n");
    assert!(t.consumed());
    let rej = std::fs::read_to_string(t.config("config.toml.rej")).unwrap();
    assert!(rej.contains("has no module \"nosuch\""), "{rej}");
    // The tutorial's line: `ticker` is the child that runs module ticker_server.
    t.append("ticker:ticker:ticker:1500\n");
    assert!(t.consumed());
    assert!(wait(|| t.get().contains("= 1500")));
    let log = t.root.join("log/node.log");
    assert!(wait(|| std::fs::read_to_string(&log)
        .is_ok_and(|l| l.contains("interval 1500 ms, version 0.4.0"))));
}

#[test]
fn sigkill_while_processing_loses_no_accepted_change_and_never_tears_config_toml() {
    let t = Ticker::new("sigkill");
    let mut last = 0;
    for round in 0..6u64 {
        // A burst of valid lines, then SIGKILL at a different moment each round.
        for i in 0..20u64 {
            last = 1000 + round * 100 + i;
            t.append(&format!("ticker:ticker_server:ticker:{last}\n"));
        }
        std::thread::sleep(Duration::from_millis(round * 7));
        t.kill();
        // Whatever the moment: config.toml is complete TOML, the old or the new value (before
        // the first change: the commented default deploy wrote).
        if let Ok(live) = std::fs::read_to_string(t.config("config.toml")) {
            // (The restart below also refuses to boot on a config.toml that is not TOML.)
            assert!(
                live.starts_with("# Operator-set configuration")
                    && live.ends_with("\n")
                    && (live.contains("[ticker.ticker_server]\nticker = ")
                        || live.contains("[ticker.ticker_server]\n# ticker = 1000  # default")),
                "torn config.toml after SIGKILL:\n{live}"
            );
        }
        // Restart: config.toml is loaded, the pending change files are processed.
        ok(t.run(&["start"]));
        assert!(t.consumed(), "pending changes processed at start");
        assert!(
            t.get().contains(&format!("= {last}  (operator")),
            "round {round}: expected {last}, got {}",
            t.get()
        );
        let live = std::fs::read_to_string(t.config("config.toml")).unwrap();
        assert!(live.contains(&format!("ticker = {last}")), "{live}");
    }
    assert!(!t.config("config.toml.rej").exists());
}
