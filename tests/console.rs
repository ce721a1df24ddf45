//! The remote console (issue 20): `relup state`, `relup call` and `relup cast`, the real CLI
//! against a real node running the `counter` test module (child `c1`, started at 7).

mod common;

use common::{RELUP, fails, ok, release_dir, relup};
use relup_testkit::fixtures;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A root with release 0.1.0 of `demo` deployed and its node started; the node is stopped
/// and the directory removed when dropped.
struct Node {
    base: PathBuf,
    root: PathBuf,
}

impl Node {
    fn start(name: &str) -> Node {
        // Under the system temp directory, which every user may traverse (the uid test).
        let base =
            std::env::temp_dir().join(format!("relup-console-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let dir = release_dir(&base, "0.1.0", &fixtures().counter_v1, "1.0.0", None);
        let root = common::pack_and_deploy(&base, &[&dir]);
        let node = Node { base, root };
        ok(node.run(&["start"]));
        node
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--root", self.root.to_str().unwrap()];
        all.extend_from_slice(args);
        relup(&all)
    }

    /// `relup --json state <target>`, parsed.
    fn state(&self, target: &str) -> serde_json::Value {
        let out = ok(self.run(&["--json", "state", target]));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Polls `relup state c1` until `done` holds of its state (60 s at most).
    fn wait_state(&self, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = self.state("c1");
            if done(&state["state"]) {
                return;
            }
            assert!(Instant::now() < deadline, "never {what}: {state}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn node_log(&self) -> String {
        std::fs::read_to_string(self.root.join("log/node.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn state_call_and_cast_speak_json_to_a_module() {
    let node = Node::start("json");

    // The state, through the module's own export, by name and by pid.
    let by_name = node.state("c1");
    assert_eq!(by_name["state"]["count"], 7, "{by_name}");
    assert_eq!(by_name["process"]["module"], "counter", "{by_name}");
    assert_eq!(by_name["process"]["version"], "1.0.0", "{by_name}");
    let pid = by_name["process"]["pid"].as_u64().expect("a pid");
    let pid_text = format!("<0.{pid}.0>");
    assert_eq!(node.state(&pid_text)["state"]["count"], 7);
    // For people: the state alone, indented.
    let text = ok(node.run(&["state", "c1"]));
    assert_eq!(json(&text)["count"], 7, "{text}");
    assert!(text.contains("\n  \"count\": 7"), "{text}");

    // Calls: a unit variant is a JSON string, a newtype variant a one-key object.
    assert_eq!(
        json(&ok(node.run(&["call", "c1", "\"Get\""]))),
        serde_json::json!({"Count": 7})
    );
    assert_eq!(
        json(&ok(node.run(&["call", &pid_text, r#"{"Add": 5}"#]))),
        serde_json::json!({"Count": 12})
    );
    let described = json(&ok(node.run(&["--json", "call", "c1", "\"Describe\""])));
    assert_eq!(
        described["reply"]["Description"]["count"], 12,
        "{described}"
    );
    assert_eq!(described["process"]["name"], "c1", "{described}");

    // Casts land in the mailbox; a struct variant and a map with integer keys in the state.
    let cast = ok(node.run(&["cast", "c1", r#"{"Add": -2}"#]));
    assert!(cast.contains("cast to c1"), "{cast}");
    ok(node.run(&["cast", "c1", r#"{"Record": {"sender": 3, "seq": 1}}"#]));
    node.wait_state("took both casts", |s| {
        s["count"] == 10 && s["last_seq"]["3"] == 1
    });

    // A request that does not fit the module's type: an error naming the process and the
    // type it expected, and the process is untouched (same pid, same count).
    let refused = fails(node.run(&["call", "c1", r#"{"Nope": 1}"#]), "c1 (");
    assert!(
        refused.contains("relup_fixture_counter_api::Call"),
        "{refused}"
    );
    assert!(refused.contains("unknown variant `Nope`"), "{refused}");
    assert!(refused.contains("was not affected"), "{refused}");
    fails(
        node.run(&["call", "c1", r#"{"Add": "five"}"#]),
        "cannot decode this request",
    );
    let after = node.state("c1");
    assert_eq!(after["process"]["pid"], pid, "{after}");
    assert_eq!(after["state"]["count"], 10, "{after}");

    // A cast that does not fit is dropped by the process, with a warning in the node's log.
    ok(node.run(&["cast", "c1", r#""Bogus""#]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node.node_log().contains("dropped a cast it cannot decode") {
        assert!(
            Instant::now() < deadline,
            "no warning in the log:\n{}",
            node.node_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(node.state("c1")["process"]["pid"], pid);

    // Not JSON at all: said on the command line, with the spelling that works.
    fails(node.run(&["call", "c1", "Get"]), r#"'"Get"'"#);
    // No such process; a supervisor, which has no module state.
    fails(node.run(&["state", "nobody"]), "no process \"nobody\"");
    fails(node.run(&["call", "<0.999999.0>", "\"Get\""]), "no process");
    let status = json(&ok(node.run(&["--json", "status"])));
    let supervisor = status["tree"][0]["pid"]
        .as_u64()
        .expect("the app's supervisor");
    fails(
        node.run(&["state", &supervisor.to_string()]),
        "runs no module",
    );

    // A module that crashes on a request it decoded: the caller learns it, the supervisor
    // restarts the process (a new pid, the count from its start args).
    fails(
        node.run(&["call", "c1", r#"{"Panic": "boom"}"#]),
        "exited while handling the request",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = node.run(&["--json", "state", "c1"]);
        if out.status.success() {
            let restarted = json(&String::from_utf8_lossy(&out.stdout));
            assert_ne!(restarted["process"]["pid"], pid, "{restarted}");
            assert_eq!(restarted["state"]["count"], 7, "{restarted}");
            break;
        }
        assert!(Instant::now() < deadline, "c1 never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_console_obeys_the_uid_rule() {
    let node = Node::start("uid");
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe {
        unsafe extern "C" {
            fn geteuid() -> u32;
        }
        geteuid()
    };
    ok(node.run(&["state", "c1"]));
    if euid != 0 {
        // Without root we cannot act as another user; the socket's 0600 mode stands
        // (tests/cli.rs checks it).
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let socket = node.root.join("run/control.sock");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    for dir in [&node.base, &node.root, &node.root.join("run")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let as_nobody = |args: &[&str]| {
        Command::new(RELUP)
            .arg("--root")
            .arg(Path::new(&node.root))
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    fails(as_nobody(&["state", "c1"]), "refused: client uid 65534");
    fails(
        as_nobody(&["call", "c1", r#"{"Add": 100}"#]),
        "refused: client uid 65534",
    );
    fails(
        as_nobody(&["cast", "c1", r#"{"Add": 100}"#]),
        "refused: client uid 65534",
    );
    assert_eq!(
        node.state("c1")["state"]["count"],
        7,
        "nothing reached the process"
    );
}
