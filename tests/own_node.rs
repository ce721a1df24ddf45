//! A service's own node executable (examples/embed's `relup-embed-node`: the `relup` command
//! line with a native server type linked in) on a real release root whose release.toml names
//! that native type beside a cdylib module:
//! - driven by the plain `relup` binary (status, upgrade, downgrade, stop);
//! - packed into self-contained releases, deployed by the executable the tarball carries and
//!   run through the root's `bin/demo`, all with a `PATH` of `/usr/bin:/bin` only (no relup,
//!   no cargo); a tampered executable is refused.

mod common;

use common::{fails, ok, relup, text};
use relup_testkit::{fixtures, workspace_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Builds `relup-embed-node` once per test binary, into the fixtures' target directory (so it
/// never waits on the lock of the `cargo test` that runs this).
fn host_binary() -> &'static Path {
    static HOST: OnceLock<PathBuf> = OnceLock::new();
    HOST.get_or_init(|| {
        let root = workspace_root();
        let target = root.join("target").join("fixtures");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--quiet",
                "-p",
                "relup-example-embed",
                "--bin",
                "relup-embed-node",
            ])
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building relup-embed-node failed");
        target.join("debug").join("relup-embed-node")
    })
}

/// A source release of `demo` at `version`: cdylib module `counter` (from `lib`, at
/// `module_vsn`, no sha256: the packer computes it) and native module `greeter` 1.0.0, each
/// run by one child; `appup` as its appup.toml when given.
fn release_dir(base: &Path, version: &str, lib: &Path, module_vsn: &str, appup: Option<&str>) {
    let dir = base.join(format!("src-{version}"));
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::copy(lib, dir.join("lib/libcounter.so")).unwrap();
    std::fs::write(
        dir.join("release.toml"),
        format!(
            r#"name = "demo"
version = "{version}"

[probation]
seconds = 1
health_interval_ms = 200

[[applications]]
name = "app"
version = "{version}"

[[applications.modules]]
name = "counter"
file = "lib/libcounter.so"
version = "{module_vsn}"

[[applications.modules]]
name = "greeter"
version = "1.0.0"
native = true

[applications.supervisor]
strategy = "one_for_one"

[[applications.supervisor.children]]
id = "c1"
module = "counter"
args = {{ start = 7, register_as = "c1" }}

[[applications.supervisor.children]]
id = "greeter"
module = "greeter"
args = "Hello"
"#
        ),
    )
    .unwrap();
    if let Some(appup) = appup {
        std::fs::write(dir.join("appup.toml"), appup).unwrap();
    }
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

/// A fresh directory with both source releases, packed into `out/` (with `exe` packed as the
/// node executable when given).
fn packed(name: &str, exe: Option<&Path>) -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("relup-own-node-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let f = fixtures();
    release_dir(&base, "0.1.0", &f.counter_v1, "1.0.0", None);
    release_dir(&base, "0.2.0", &f.counter_v2, "2.0.0", Some(APPUP));
    for version in ["0.1.0", "0.2.0"] {
        let dir = base.join(format!("src-{version}"));
        let out = base.join("out");
        let mut args = vec![
            "release",
            dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(exe) = exe {
            args.extend(["--exe", exe.to_str().unwrap()]);
        }
        let said = ok(relup(&args));
        if exe.is_some() {
            assert!(said.contains("with node executable"), "{said}");
        }
    }
    base
}

/// `relup --root <root> status --json`, parsed.
fn status(root: &Path) -> Value {
    let out = ok(relup(&[
        "--root",
        root.to_str().unwrap(),
        "status",
        "--json",
    ]));
    serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap()
}

/// The current version of `module` in a status.
fn current(status: &Value, module: &str) -> Value {
    status["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == module)
        .map_or(Value::Null, |m| m["current"].clone())
}

/// The pid of supervisor child `id` in a status.
fn child_pid(status: &Value, id: &str) -> Value {
    status["tree"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .map_or(Value::Null, |e| e["pid"].clone())
}

/// Stops the node of a root when dropped (a failed assertion leaves no node behind).
struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = relup(&["--root", self.0.to_str().unwrap(), "stop"]);
    }
}

#[test]
fn the_relup_cli_operates_a_node_run_by_the_services_own_binary() {
    let base = packed("cli", None);
    let root = base.join("root");
    let root_arg = root.to_str().unwrap();
    ok(relup(&[
        "deploy",
        base.join("out/demo-0.1.0.tar.gz").to_str().unwrap(),
        root_arg,
    ]));

    // The plain relup cannot boot a release with a native module it does not link.
    fails(
        relup(&["--root", root_arg, "start"]),
        "native module greeter 1.0.0, which this node executable does not register",
    );

    let started = Command::new(host_binary())
        .args(["--root", root_arg, "start"])
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", text(&started));
    let _stop = StopOnDrop(root.clone());
    assert!(
        text(&started).contains("node started"),
        "{}",
        text(&started)
    );

    let before = status(&root);
    assert_eq!(before["running"], "0.1.0", "{before}");
    assert_eq!(current(&before, "greeter"), "1.0.0", "{before}");
    assert_eq!(current(&before, "counter"), "1.0.0", "{before}");
    let greeter = child_pid(&before, "greeter");
    assert!(greeter.is_number() || greeter.is_string(), "{before}");

    ok(relup(&[
        "--root",
        root_arg,
        "unpack",
        base.join("out/demo-0.2.0.tar.gz").to_str().unwrap(),
    ]));
    let upgraded = ok(relup(&["--root", root_arg, "upgrade", "0.2.0"]));
    assert!(upgraded.contains("0.2.0"), "{upgraded}");
    let after = status(&root);
    assert_eq!(after["running"], "0.2.0", "{after}");
    assert_eq!(after["permanent"], "0.2.0", "{after}");
    assert_eq!(current(&after, "counter"), "2.0.0", "{after}");
    assert_eq!(current(&after, "greeter"), "1.0.0", "{after}");
    // The native process is untouched by the hot upgrade of its cdylib sibling.
    assert_eq!(child_pid(&after, "greeter"), greeter, "{after}");

    ok(relup(&["--root", root_arg, "downgrade", "0.1.0"]));
    let down = status(&root);
    assert_eq!(down["running"], "0.1.0", "{down}");
    assert_eq!(current(&down, "counter"), "1.0.0", "{down}");
    assert_eq!(child_pid(&down, "greeter"), greeter, "{down}");

    let pid: i32 = std::fs::read_to_string(root.join("run/node.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, host_binary(), "the node is the service's own binary");
    let stopped = ok(relup(&["--root", root_arg, "stop"]));
    assert!(stopped.contains("node stopped"), "{stopped}");
    assert!(!root.join("run/node.pid").exists());
    let _ = std::fs::remove_dir_all(&base);
}

/// Runs `<root>/bin/demo args` with nothing but `PATH=/usr/bin:/bin` in the environment.
fn launcher(root: &Path, args: &[&str]) -> Output {
    Command::new(root.join("bin/demo"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

/// Asserts success of a launcher run; returns its output.
#[track_caller]
fn launched(output: Output) -> String {
    assert!(
        output.status.success(),
        "expected success:\n{}",
        text(&output)
    );
    text(&output)
}

/// `tarball` with one byte of `bin/relup-node` changed, repacked (MANIFEST unchanged) into
/// `dir` under the same file name.
fn tampered_copy(tarball: &Path, dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let run = |command: &mut Command| {
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    };
    run(Command::new("tar")
        .arg("-xzf")
        .arg(tarball)
        .arg("-C")
        .arg(&tree));
    let exe = tree.join("bin/relup-node");
    let mut bytes = std::fs::read(&exe).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&exe, bytes).unwrap();
    // The entries in their original order (MANIFEST first), files only, as relup packs.
    let listed = Command::new("tar")
        .arg("-tzf")
        .arg(tarball)
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", text(&listed));
    let names = String::from_utf8(listed.stdout).unwrap();
    let copy = dir.join(tarball.file_name().unwrap());
    run(Command::new("tar")
        .arg("-czf")
        .arg(&copy)
        .arg("-C")
        .arg(&tree)
        .args(names.lines()));
    copy
}

#[test]
fn a_self_contained_release_runs_and_upgrades_with_a_bare_path() {
    let base = packed("bare", Some(host_binary()));
    let root = base.join("root");
    // The first deploy on a server: with the executable the tarball carries (docs/your-service.md).
    let extracted = base.join("extracted");
    std::fs::create_dir_all(&extracted).unwrap();
    let tarball = base.join("out/demo-0.1.0.tar.gz");
    let untar = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&extracted)
        .output()
        .unwrap();
    assert!(untar.status.success(), "{}", text(&untar));
    let deployed = Command::new(extracted.join("bin/relup-node"))
        .arg("deploy")
        .arg(&tarball)
        .arg(&root)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(deployed.status.success(), "{}", text(&deployed));
    let packed_exe = root.join("releases/0.1.0/bin/relup-node");
    assert_eq!(
        std::fs::read(&packed_exe).unwrap(),
        std::fs::read(host_binary()).unwrap()
    );

    let started = launched(launcher(&root, &["start"]));
    let _stop = StopOnDrop(root.clone());
    assert!(started.contains("node started"), "{started}");
    let pid: i32 = std::fs::read_to_string(root.join("run/node.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(
        exe,
        std::fs::canonicalize(&packed_exe).unwrap(),
        "the node runs the root's executable"
    );

    // A tarball whose executable is not the one its MANIFEST names is refused before
    // anything is unpacked.
    let bad_dir = base.join("tampered");
    let bad = tampered_copy(&base.join("out/demo-0.2.0.tar.gz"), &bad_dir);
    let refused = launcher(&root, &["unpack", bad.to_str().unwrap()]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("bin/relup-node"),
        "{}",
        text(&refused)
    );
    assert!(!root.join("releases/0.2.0").exists());

    launched(launcher(
        &root,
        &[
            "unpack",
            base.join("out/demo-0.2.0.tar.gz").to_str().unwrap(),
        ],
    ));
    let upgraded = launched(launcher(&root, &["upgrade", "0.2.0"]));
    assert!(upgraded.contains("0.2.0"), "{upgraded}");
    let up = launched(launcher(&root, &["status", "--json"]));
    let up: Value = serde_json::from_str(up.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(up["running"], "0.2.0", "{up}");
    assert_eq!(current(&up, "counter"), "2.0.0", "{up}");

    launched(launcher(&root, &["downgrade", "0.1.0"]));
    let down = launched(launcher(&root, &["status", "--json"]));
    let down: Value = serde_json::from_str(down.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(down["running"], "0.1.0", "{down}");
    assert_eq!(current(&down, "counter"), "1.0.0", "{down}");

    let stopped = launched(launcher(&root, &["stop"]));
    assert!(stopped.contains("node stopped"), "{stopped}");
    assert!(!root.join("run/node.pid").exists());
    let _ = std::fs::remove_dir_all(&base);
}
