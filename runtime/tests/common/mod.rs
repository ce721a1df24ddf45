//! Shared test support: builds the fixture module libraries (real cdylibs from this
//! workspace) once per test binary, and starts nodes with a quiet, recording logger.

#![allow(dead_code)]

use relup_runtime::{LogLine, Node, NodeConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// Paths of the built fixture libraries.
pub struct Fixtures {
    pub counter_v1: PathBuf,
    pub counter_v2: PathBuf,
    pub not_a_module: PathBuf,
    pub bad_abi: PathBuf,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ has a parent")
        .to_path_buf()
}

/// Builds the fixture crates (into their own target directory, so the build never waits on
/// the lock of the `cargo test` that runs us) and returns the library paths.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let root = workspace_root();
        let target = root.join("target").join("fixtures");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet"])
            .args([
                "-p",
                "relup-fixture-counter-v1",
                "-p",
                "relup-fixture-counter-v2",
            ])
            .args([
                "-p",
                "relup-fixture-not-a-module",
                "-p",
                "relup-fixture-bad-abi",
            ])
            .arg("--target-dir")
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the fixture modules failed");
        let lib = |name: &str| {
            target
                .join("debug")
                .join(format!("librelup_fixture_{name}.so"))
        };
        Fixtures {
            counter_v1: lib("counter_v1"),
            counter_v2: lib("counter_v2"),
            not_a_module: lib("not_a_module"),
            bad_abi: lib("bad_abi"),
        }
    })
}

/// Log lines a node wrote.
#[derive(Clone, Default)]
pub struct Logs(pub Arc<Mutex<Vec<String>>>);

impl Logs {
    pub fn contains(&self, needle: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

/// A node with `schedulers` threads whose log lines are recorded instead of printed.
pub fn node(schedulers: usize) -> (Node, Logs) {
    let logs = Logs::default();
    let sink = logs.clone();
    let config = NodeConfig {
        schedulers,
        logger: Some(Arc::new(move |line: &LogLine<'_>| {
            sink.0
                .lock()
                .unwrap()
                .push(format!("{:?} {:?}: {}", line.pid, line.name, line.text));
        })),
        ..NodeConfig::default()
    };
    (Node::start(config).expect("node starts"), logs)
}

/// A node with the counter v1 module loaded as current.
pub fn node_with_counter(schedulers: usize) -> (Node, Logs) {
    let (node, logs) = node(schedulers);
    node.code()
        .load_current(&fixtures().counter_v1, &relup_runtime::Expect::default())
        .expect("counter v1 loads");
    (node, logs)
}

/// Polls `check` for up to 5 s; true once it holds.
pub fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    check()
}
