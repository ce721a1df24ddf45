//! `relup_runtime::service::Service` on a real release root (a native server type beside the
//! counter cdylib): it serves the control socket, its node answers calls, a second node on the
//! root is refused, a stop request stops it cleanly, and a release naming a native type the
//! node does not register does not boot.

use relup_module::{Context, Server};
use relup_runtime::release::{ReleaseRoot, deploy, pack};
use relup_runtime::service::{Service, ServiceError, answers};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A native server: answers its name.
#[derive(Serialize, Deserialize)]
struct Namer {
    name: String,
}

impl Server for Namer {
    type Args = String;
    type Call = ();
    type Reply = String;
    type Cast = ();
    type Info = ();

    fn init(name: String, _ctx: &mut Context<'_>) -> Result<Self, String> {
        Ok(Namer { name })
    }

    fn handle_call(&mut self, _request: (), _ctx: &mut Context<'_>) -> String {
        self.name.clone()
    }
}

/// A root with release `svc` 0.1.0 deployed: native `namer` (registered as child `namer`)
/// and the counter cdylib.
fn root(name: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("relup-service-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let src = base.join("src");
    std::fs::create_dir_all(src.join("lib")).unwrap();
    std::fs::copy(
        &relup_testkit::fixtures().counter_v1,
        src.join("lib/libcounter.so"),
    )
    .unwrap();
    std::fs::write(
        src.join("release.toml"),
        r#"name = "svc"
version = "0.1.0"

[[applications]]
name = "svc"
version = "0.1.0"

[[applications.modules]]
name = "counter"
file = "lib/libcounter.so"
version = "1.0.0"

[[applications.modules]]
name = "namer"
version = "2.0.0"
native = true

[applications.supervisor]
strategy = "one_for_one"

[[applications.supervisor.children]]
id = "c1"
module = "counter"
args = { start = 1, register_as = "c1" }

[[applications.supervisor.children]]
id = "namer"
module = "namer"
args = "the namer"
"#,
    )
    .unwrap();
    let tarball = pack(&src, &base.join("out")).unwrap();
    deploy(&tarball, &base.join("root")).unwrap();
    base.join("root")
}

fn cleanup(root: &Path) {
    if let Some(base) = root.parent() {
        let _ = std::fs::remove_dir_all(base);
    }
}

#[test]
fn a_service_serves_its_root_refuses_a_second_node_and_stops_cleanly() {
    let path = root("serve");
    let running = Service::new(&path)
        .handle_signals(false)
        .native::<Namer>("namer", "2.0.0")
        .start()
        .unwrap();
    let root = ReleaseRoot::new(&path);
    assert!(answers(&root));
    let pid_file = std::fs::read_to_string(root.pid_file()).unwrap();
    assert_eq!(pid_file.trim(), std::process::id().to_string());
    let children = running
        .node()
        .which_children(running.handler().running().apps["svc"])
        .unwrap();
    let namer = children
        .iter()
        .find(|c| c.id == "namer")
        .and_then(|c| c.pid)
        .unwrap();
    let said: String = running
        .node()
        .call(namer, &(), Duration::from_secs(5))
        .unwrap();
    assert_eq!(said, "the namer");

    let second = Service::new(&path)
        .handle_signals(false)
        .native::<Namer>("namer", "2.0.0")
        .start()
        .unwrap_err();
    assert!(
        matches!(second, ServiceError::AlreadyRunning { pid: Some(p), .. } if p == std::process::id() as i32),
        "{second}"
    );
    assert!(answers(&root), "the first node still serves");

    running
        .stopper()
        .unwrap()
        .send("test says stop".into())
        .unwrap();
    assert_eq!(running.wait(), "test says stop");
    assert!(!answers(&root));
    assert!(!root.pid_file().exists());
    assert!(!root.control_socket().exists());
    // The lock is free again: a new node starts, and dropping it stops it.
    let again = Service::new(&path)
        .handle_signals(false)
        .native::<Namer>("namer", "2.0.0")
        .start()
        .unwrap();
    drop(again);
    assert!(!root.pid_file().exists());
    cleanup(&path);
}

#[test]
fn a_native_module_the_node_does_not_register_stops_the_boot() {
    let path = root("unregistered");
    let err = Service::new(&path)
        .handle_signals(false)
        .start()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("native module namer 2.0.0, which this node executable does not register"),
        "{err}"
    );
    let err = Service::new(&path)
        .handle_signals(false)
        .native::<Namer>("namer", "1.0.0")
        .start()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the node executable registered namer 1.0.0"),
        "{err}"
    );
    let root = ReleaseRoot::new(&path);
    assert!(!root.pid_file().exists() && !answers(&root));
    cleanup(&path);
}
