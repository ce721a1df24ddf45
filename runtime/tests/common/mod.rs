//! Shared test support: the fixture module libraries (real cdylibs from this workspace,
//! built by relup-testkit), and nodes with a quiet, recording logger.

#![allow(dead_code)]

use relup_runtime::{LogLine, Node, NodeConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use relup_testkit::fixtures;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

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
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    unsafe {
        node.code()
            .load_current(&fixtures().counter_v1, &relup_runtime::Expect::default())
    }
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

pub fn sha256(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A release directory: `version` of release `demo` with app `app` (version = release
/// version) running module `counter` from `lib`, at module version `module_vsn`, with two
/// registered children; `appup` is the app's appup.toml text, if any.
pub fn release_dir(
    base: &Path,
    version: &str,
    lib: &Path,
    module_vsn: &str,
    appup: Option<&str>,
) -> PathBuf {
    release_dir_with(base, version, lib, module_vsn, appup, "")
}

/// As [`release_dir`], with `tables` (e.g. a `[probation]` table) after the version line.
pub fn release_dir_with(
    base: &Path,
    version: &str,
    lib: &Path,
    module_vsn: &str,
    appup: Option<&str>,
    tables: &str,
) -> PathBuf {
    let dir = base.join(version);
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    let target = dir.join("lib/libcounter.so");
    std::fs::copy(lib, &target).unwrap();
    let manifest = format!(
        r#"name = "demo"
version = "{version}"
{tables}
[[applications]]
name = "app"
version = "{version}"

[[applications.modules]]
name = "counter"
file = "lib/libcounter.so"
sha256 = "{sha}"
version = "{module_vsn}"

[applications.supervisor]
strategy = "one_for_one"
intensity = 3
period_secs = 5

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
default = {default}

[[applications.config]]
module = "counter"
key = "limit"
type = "integer"
default = {default}
"#,
        default = module_vsn.split('.').next().unwrap_or("0"),
        sha = sha256(&target)
    );
    std::fs::write(dir.join("release.toml"), manifest).unwrap();
    if let Some(appup) = appup {
        std::fs::write(dir.join("appup.toml"), appup).unwrap();
    }
    dir
}

/// Waits until `target` is busy in a callback (a short call to it times out), so that a test
/// that needs a busy process does not depend on how fast another thread got its call in.
pub fn wait_until_busy<'t>(node: &Node, target: impl Into<relup_runtime::Target<'t>> + Copy) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node
        .call::<_, relup_fixture_counter_api::Reply>(
            target,
            &relup_fixture_counter_api::Call::Get,
            Duration::from_millis(20),
        )
        .is_ok()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the process never got busy"
        );
    }
}

/// App `app` 0.2.0's appup.toml: `up` (an instruction list) from 0.1.0, and
/// `{ update = "counter" }` back down to it.
pub fn appup_v2(up: &str) -> String {
    format!(
        "application = \"app\"\nversion = \"0.2.0\"\n\n[[up]]\nfrom = \"0.1.0\"\ninstructions = [ {up} ]\n\n\
         [[down]]\nto = \"0.1.0\"\ninstructions = [ {{ update = \"counter\" }} ]\n"
    )
}

/// Packs release directories `first` and `second` into `base/out`, deploys `first` into
/// `base/root` (permanent) and returns that root and `second`'s tarball (not unpacked).
pub fn deploy_pair(
    base: &Path,
    first: &Path,
    second: &Path,
) -> (relup_runtime::release::ReleaseRoot, PathBuf) {
    use relup_runtime::release::{PackOptions, ReleaseRoot, deploy, pack_with};
    let out = base.join("out");
    let t1 = pack_with(first, &out, PackOptions::default()).unwrap();
    let t2 = pack_with(second, &out, PackOptions::default()).unwrap();
    deploy(&t1, &base.join("root")).unwrap();
    (ReleaseRoot::open(base.join("root")).unwrap(), t2)
}

/// Calls `pid` with `call` on another thread and returns once `pid` has taken the request
/// (it is in its callback, or done with it): the process is suspended while the request
/// goes in, so its mailbox shows the request arrive and, once it is resumed, leave.
pub fn call_taken(
    node: &Node,
    pid: relup_runtime::Pid,
    call: relup_fixture_counter_api::Call,
) -> std::thread::JoinHandle<Result<relup_fixture_counter_api::Reply, relup_runtime::CallError>> {
    const T: Duration = Duration::from_secs(10);
    node.suspend(&[pid], T).unwrap();
    let caller = {
        let node = node.clone();
        std::thread::spawn(move || node.call::<_, relup_fixture_counter_api::Reply>(pid, &call, T))
    };
    let queued =
        |n: usize| eventually(|| node.process_info(pid).is_some_and(|i| i.mailbox_len == n));
    assert!(queued(1), "the request never reached {pid:?}");
    node.resume(&[pid]);
    assert!(queued(0), "{pid:?} never took the request");
    caller
}

/// The release in `dir` (its release.toml and, when there, its appup.toml) as the planner
/// knows it, with status unpacked.
pub fn known_release(dir: &Path) -> relup_appup::KnownRelease {
    let release = relup_appup::Release::parse(
        &std::fs::read_to_string(dir.join("release.toml")).unwrap(),
        "release.toml",
    )
    .unwrap();
    let appups = match std::fs::read_to_string(dir.join("appup.toml")) {
        Ok(text) => vec![relup_appup::Appup::parse(&text, "appup.toml").unwrap()],
        Err(_) => vec![],
    };
    relup_appup::KnownRelease {
        release,
        status: relup_appup::ReleaseStatus::Unpacked,
        appups,
    }
}
