//! `relup new shop` in a temporary directory outside the repository, then the commands of the
//! generated README, run as written: build and pack 0.1.0, deploy, start, then a 0.2.0 that
//! adds a state field with `#[serde(default)]` (no code_change), upgrade, downgrade, stop.
//!
//! The project's cargo builds go to `target/new-project` of this workspace (shared between
//! runs, so a rerun compiles only the module crate).

mod common;

use common::{RELUP, ok, relup, text};
use relup_testkit::workspace_root;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh directory under the system's temporary directory (outside the repository).
fn outside(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relup-new-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    assert!(!dir.starts_with(workspace_root()));
    dir
}

/// The project's environment: `relup` on PATH, the release root, the shared target dir.
fn project_env(command: &mut Command, project: &Path) {
    let relup_dir = Path::new(RELUP).parent().unwrap();
    let path = format!(
        "{}:{}",
        relup_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    command
        .current_dir(project)
        .env("PATH", path)
        .env("RELUP_ROOT", project.join("root"))
        .env(
            "CARGO_TARGET_DIR",
            workspace_root().join("target").join("new-project"),
        )
        .env("RUST_BACKTRACE", "0");
}

/// Runs one command line of the README (which must hold it verbatim) with `sh`.
#[track_caller]
fn readme_step(project: &Path, readme: &str, line: &str) -> String {
    assert!(
        readme.contains(line),
        "the README has no `{line}`:\n{readme}"
    );
    let mut command = Command::new("sh");
    command.args(["-c", line]);
    project_env(&mut command, project);
    let output: Output = command.output().unwrap();
    assert!(
        output.status.success(),
        "`{line}` failed:\n{}",
        text(&output)
    );
    text(&output)
}

/// `relup status --json` of the project's root.
fn status(project: &Path) -> Value {
    let root = project.join("root");
    let out = ok(relup(&[
        "--root",
        root.to_str().unwrap(),
        "status",
        "--json",
    ]));
    serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap()
}

fn current(status: &Value, module: &str) -> Value {
    status["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == module)
        .map_or(Value::Null, |m| m["current"].clone())
}

fn child_pid(status: &Value, id: &str) -> Value {
    status["tree"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .map_or(Value::Null, |e| e["pid"].clone())
}

/// Stops the project's node when dropped.
struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = relup(&["--root", self.0.join("root").to_str().unwrap(), "stop"]);
    }
}

/// `path`'s text with `from` replaced by `to` (which must be there).
#[track_caller]
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "no `{from}` in {}:\n{text}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_new_project_builds_deploys_starts_and_upgrades_with_its_readme() {
    let parent = outside("shop");
    let mut new = Command::new(RELUP);
    new.args(["new", "shop"]).current_dir(&parent);
    let created = ok(new.output().unwrap());
    assert!(created.contains("created ./shop"), "{created}");
    let project = parent.join("shop");
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let relup_path = std::fs::canonicalize(workspace_root()).unwrap();
    assert!(
        readme.contains(&format!("by path** (`{}`)", relup_path.display())),
        "{readme}"
    );

    // 0.1.0.
    readme_step(&project, &readme, "relup release . --out dist");
    assert!(readme.contains("export RELUP_ROOT=\"$PWD/root\""));
    readme_step(
        &project,
        &readme,
        "relup deploy dist/shop-0.1.0.tar.gz \"$RELUP_ROOT\"",
    );
    let config = std::fs::read_to_string(project.join("root/config/config.toml")).unwrap();
    assert!(
        config.contains(
            "[shop.shop_server]\n# max_orders = 1000  # default; integer in [1, 1000000]\n"
        ),
        "{config}"
    );
    readme_step(&project, &readme, "relup start");
    let _stop = StopOnDrop(project.clone());
    let shown = readme_step(&project, &readme, "relup status");
    assert!(shown.contains("0.1.0"), "{shown}");
    let before = status(&project);
    assert_eq!(before["running"], "0.1.0", "{before}");
    assert_eq!(current(&before, "shop_server"), "0.1.0", "{before}");
    let pid = child_pid(&before, "shop");
    assert!(!pid.is_null(), "{before}");

    // 0.2.0: the field and init of the README's step 1, then its commands.
    for line in [
        "#[serde(default)]",
        "refunds: u64,",
        "`Shop { orders: 0, refunds: 0 }`",
    ] {
        assert!(readme.contains(line), "no `{line}` in the README");
    }
    let lib = project.join("server/src/lib.rs");
    edit(
        &lib,
        "    orders: u64,\n}",
        "    orders: u64,\n    /// Refunds given (0 for a state that comes from 0.1.0).\n    #[serde(default)]\n    refunds: u64,\n}",
    );
    edit(&lib, "Shop { orders: 0 }", "Shop { orders: 0, refunds: 0 }");
    assert!(
        !std::fs::read_to_string(&lib)
            .unwrap()
            .contains("fn code_change")
    );
    readme_step(
        &project,
        &readme,
        "sed -i 's/^version = \"0.1.0\"/version = \"0.2.0\"/' Cargo.toml release.toml",
    );
    readme_step(&project, &readme, "mv appup/shop.toml.next appup/shop.toml");
    readme_step(&project, &readme, "relup release . --out dist");
    readme_step(&project, &readme, "relup unpack dist/shop-0.2.0.tar.gz");
    let upgraded = readme_step(&project, &readme, "relup upgrade 0.2.0");
    assert!(upgraded.contains("0.2.0"), "{upgraded}");
    let after = status(&project);
    assert_eq!(after["running"], "0.2.0", "{after}");
    assert_eq!(after["permanent"], "0.2.0", "{after}");
    assert_eq!(current(&after, "shop_server"), "0.2.0", "{after}");
    // Migrated in place: the same process, not a restart.
    assert_eq!(child_pid(&after, "shop"), pid, "{after}");

    readme_step(&project, &readme, "relup downgrade 0.1.0");
    let down = status(&project);
    assert_eq!(down["running"], "0.1.0", "{down}");
    assert_eq!(current(&down, "shop_server"), "0.1.0", "{down}");
    assert_eq!(child_pid(&down, "shop"), pid, "{down}");
    let stopped = readme_step(&project, &readme, "relup stop");
    assert!(stopped.contains("node stopped"), "{stopped}");
    let _ = std::fs::remove_dir_all(&parent);
}

#[test]
fn a_new_project_with_a_host_resolves_and_refuses_to_overwrite() {
    let parent = outside("host");
    let created = ok(relup(&[
        "new",
        "shop_floor",
        "--host",
        "--dir",
        parent.to_str().unwrap(),
    ]));
    assert!(created.contains("9 files"), "{created}");
    let project = parent.join("shop_floor");
    let host = std::fs::read_to_string(project.join("node/src/main.rs")).unwrap();
    assert!(
        host.contains("relup::cli::main_with(Natives::new())"),
        "{host}"
    );
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert!(
        readme.contains("relup release . --out dist --exe target/release/shop_floor-node"),
        "{readme}"
    );
    let lib = std::fs::read_to_string(project.join("server/src/lib.rs")).unwrap();
    assert!(lib.contains("pub struct ShopFloor {"), "{lib}");
    // The manifests and relup's crates by path resolve (offline: the registry crates are
    // those this workspace already uses).
    let mut metadata = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    metadata.args(["metadata", "--offline", "--format-version", "1"]);
    project_env(&mut metadata, &project);
    let out = metadata.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in [
        "shop_floor_server",
        "shop_floor-node",
        "relup",
        "relup-module",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }

    let again = relup(&["new", "shop_floor", "--dir", parent.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists; nothing was written"));
    let bad = relup(&["new", "Shop-Floor", "--dir", parent.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("invalid project name \"Shop-Floor\""));
    let _ = std::fs::remove_dir_all(&parent);
}
