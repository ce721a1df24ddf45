//! Hostile modules (real cdylibs from tests/modules/): one that panics in every entry point,
//! one hand-written against the ABI that returns garbage everywhere, a descriptor whose name
//! length lies, a library that is no relup module, one of a newer ABI, libraries whose name
//! or version differ from the manifest, and a handle_call that never returns. Each is met
//! with a clear error; the node keeps running its other processes, and an install involving
//! such a module rolls back to exactly the old release (old code, old states, same pids,
//! RELEASES unchanged).

mod common;

use common::{appup_v2, call_taken, deploy_pair, fixtures, node, release_dir};
use relup_fixture_counter_api::{Args, Call, Cast, Reply};
use relup_runtime::handler::{HandlerError, ReleaseHandler};
use relup_runtime::install::InstallOptions;
use relup_runtime::release::{ReleaseRoot, unpack};
use relup_runtime::{
    CallError, ConfigValue, ExitReason, Expect, LoadError, Node, Pid, SpawnOptions,
};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn v(text: &str) -> semver::Version {
    semver::Version::parse(text).unwrap()
}

/// A root where release 0.1.0 runs module `counter` (`v1_vsn`) from `v1_lib` and release
/// 0.2.0 (unpacked) declares `counter` `v2_vsn` from `v2_lib`, with `up` as its appup
/// instructions from 0.1.0.
fn root(
    name: &str,
    (v1_lib, v1_vsn): (&Path, &str),
    (v2_lib, v2_vsn): (&Path, &str),
    up: &str,
) -> ReleaseRoot {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hostile-modules-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let appup = appup_v2(up);
    let r1 = release_dir(&base.join("src"), "0.1.0", v1_lib, v1_vsn, None);
    let r2 = release_dir(&base.join("src"), "0.2.0", v2_lib, v2_vsn, Some(&appup));
    let (root, t2) = deploy_pair(&base, &r1, &r2);
    unpack(&root, &t2).unwrap();
    root
}

/// Removes a test case's directory when it ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the node looks like from outside: the pid and module version of every process
/// running `counter` (the garbage module registers no names, so not by name).
fn children(node: &Node) -> Vec<(Pid, Option<String>)> {
    let mut pids = node.processes_running("counter");
    pids.sort();
    assert_eq!(pids.len(), 2, "both children run");
    pids.into_iter()
        .map(|pid| (pid, node.process_info(pid).and_then(|i| i.version)))
        .collect()
}

/// Installs 0.2.0 on a node booted from `root`, expects a refusal containing `needle`, and
/// checks the node still runs 0.1.0 exactly: same pids on the same module version, RELEASES
/// unchanged, the journal saying so. `before_install` runs once the node is up.
fn refused_and_rolled_back(
    root: &ReleaseRoot,
    opts: &InstallOptions,
    needle: &str,
    before_install: impl FnOnce(&Node),
) -> (Node, ReleaseHandler) {
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    before_install(&node);
    let before = children(&node);
    let releases = std::fs::read_to_string(root.releases_file()).unwrap();
    let error = handler
        .install(&v("0.2.0"), opts, true, &mut |_| {})
        .unwrap_err();
    let text = error.to_string();
    eprintln!("refused: {text}");
    assert!(text.contains(needle), "{text}");
    assert!(text.contains("the node runs 0.1.0"), "{text}");
    assert!(matches!(error, HandlerError::Install { .. }), "{text}");
    assert_eq!(children(&node), before, "same processes on the same code");
    assert_eq!(
        std::fs::read_to_string(root.releases_file()).unwrap(),
        releases
    );
    assert_eq!(handler.running().release.version, v("0.1.0"));
    assert!(
        handler
            .log()
            .unwrap()
            .contains("install failed, running 0.1.0")
    );
    (node, handler)
}

/// Runs `act` (which kills `pid`) and returns the exit reason. The exit is watched before
/// `act`: waiting only after it would race an exit that already happened (`noproc`).
fn exit_of(node: &Node, pid: Pid, act: impl FnOnce()) -> ExitReason {
    let exit = node.watch(pid).expect("the process runs");
    act();
    exit.wait(Some(T)).expect("the process exits")
}

#[test]
fn every_entry_point_of_a_panicking_module_is_contained() {
    let (node, logs) = node(2);
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    unsafe {
        node.code()
            .load_current(&fixtures().counter_v1, &Expect::default())
    }
    .unwrap();
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let panicky = unsafe { node.code().load(&fixtures().panicky, &Expect::default()) }.unwrap();
    let bystander = node
        .spawn(
            "counter",
            &Args {
                start: 7,
                ..Args::default()
            },
            SpawnOptions::default(),
        )
        .unwrap();
    let spawn = |args: &Args| {
        node.spawn(
            relup_runtime::ModuleRef::Loaded(panicky.clone()),
            args,
            SpawnOptions {
                app: Some("app".into()),
                ..SpawnOptions::default()
            },
        )
    };
    // init
    let err = spawn(&Args {
        panic_in_init: true,
        ..Args::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("init panics"), "{err}");
    // handle_call: the caller learns why, the process is gone.
    let pid = spawn(&Args::default()).unwrap();
    match node.call::<_, Reply>(pid, &Call::Get, T) {
        Err(CallError::Exited { reason, .. }) => {
            assert!(reason.to_text().contains("handle_call panics"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // handle_cast, handle_info, config_change: the process exits with the panic as reason
    // (terminate panics too, and drop: both are caught and logged or swallowed).
    let pid = spawn(&Args::default()).unwrap();
    let reason = exit_of(&node, pid, || node.cast(pid, &Cast::Add(1)).unwrap());
    assert!(reason.to_text().contains("handle_cast panics"), "{reason}");
    let pid = spawn(&Args::default()).unwrap();
    let reason = exit_of(&node, pid, || {
        node.send(pid, &relup_fixture_counter_api::Info::Tick)
            .unwrap();
    });
    assert!(reason.to_text().contains("handle_info panics"), "{reason}");
    let pid = spawn(&Args::default()).unwrap();
    let change = relup_runtime::ConfigValue::Int(1);
    let reason = exit_of(&node, pid, || {
        assert!(node.config_change(
            pid,
            &relup_module::ConfigChange {
                new: vec![("k".into(), change)],
                ..Default::default()
            }
        ))
    });
    assert!(
        reason.to_text().contains("config_change panics"),
        "{reason}"
    );
    assert!(
        logs.contains("terminate panics"),
        "terminate's panic is logged"
    );
    // health, export_state, apply: errors naming the panic; the process lives on.
    let pid = spawn(&Args::default()).unwrap();
    let err = node.health_check(pid, T).unwrap_err();
    assert!(err.contains("health panics"), "{err}");
    let err = node.export_state(pid, T).unwrap_err();
    assert!(err.contains("export_state panics"), "{err}");
    let err = node.apply(&panicky, "validate_config", &[]).unwrap_err();
    assert!(err.contains("apply validate_config panics"), "{err}");
    assert!(node.is_alive(pid));
    // The node and its other processes never noticed.
    assert_eq!(
        node.call::<_, Reply>(bystander, &Call::Get, T).unwrap(),
        Reply::Count(7)
    );
    node.exit(pid, relup_runtime::ExitReason::Shutdown);
    node.wait_exit(pid, Some(T));
    node.shutdown(T);
}

#[test]
fn garbage_from_a_module_becomes_errors_not_crashes() {
    let (node, _) = node(2);
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let garbage = unsafe { node.code().load(&fixtures().garbage, &Expect::default()) }.unwrap();
    let spawn = || {
        node.spawn(
            relup_runtime::ModuleRef::Loaded(garbage.clone()),
            &(),
            SpawnOptions::default(),
        )
        .unwrap()
    };
    // A reply that is no MessagePack: the caller gets a decode error, the process lives.
    let pid = spawn();
    let err = node.call::<_, Reply>(pid, &Call::Get, T).unwrap_err();
    assert!(matches!(err, CallError::BadMessage(_)), "{err}");
    assert!(err.to_string().contains("cannot decode"), "{err}");
    assert!(node.is_alive(pid));
    // Status codes no ABI version defines: a crash with the code's callback named.
    let reason = exit_of(&node, pid, || node.cast(pid, &Cast::Add(1)).unwrap());
    assert!(reason.to_text().contains("counter:handle_cast"), "{reason}");
    // A stop reason that is not UTF-8.
    let pid = spawn();
    let reason = exit_of(&node, pid, || {
        node.send(pid, &relup_fixture_counter_api::Info::Tick)
            .unwrap();
    });
    assert!(reason.to_text().contains('x'), "{reason}");
    // A health answer of an unknown status with a 100 KiB text; an export of garbage bytes
    // (handed over as bytes: only a module decodes a state); an apply error that is not
    // UTF-8.
    let pid = spawn();
    let err = node.health_check(pid, T).unwrap_err();
    assert_eq!(err.len(), 100 * 1024);
    let (_, state) = node.export_state(pid, T).unwrap();
    assert!(relup_module::codec::decode::<ConfigValue>(&state).is_err());
    let err = node.apply(&garbage, "validate_config", &[]).unwrap_err();
    assert_eq!(err, "\u{fffd}\u{fffd}");
    assert!(node.is_alive(pid));
    node.shutdown(T);
}

#[test]
fn a_descriptor_whose_name_length_lies_is_refused() {
    let (node, _) = node(1);
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let err = unsafe {
        node.code()
            .load(&fixtures().bad_descriptor, &Expect::default())
    }
    .unwrap_err();
    assert!(matches!(err, LoadError::BadDescriptor { .. }), "{err}");
    assert!(err.to_string().contains("longer than 1024 bytes"), "{err}");
    node.shutdown(T);
}

#[test]
fn upgrades_into_a_panicking_or_garbage_module_roll_back() {
    let f = fixtures();
    let cases = [
        (
            "into-panicky",
            &f.panicky,
            "code_change panics (from 1.0.0)",
        ),
        ("into-garbage", &f.garbage, "code_change returned no state"),
    ];
    for (name, lib, needle) in cases {
        let root = root(
            name,
            (&f.counter_v1, "1.0.0"),
            (lib, "2.0.0"),
            r#"{ update = "counter" }"#,
        );
        let _cleanup = RemoveOnDrop(root.path.parent().unwrap().to_path_buf());
        let (node, handler) =
            refused_and_rolled_back(&root, &InstallOptions::default(), needle, |node| {
                node.call::<_, Reply>("c1", &Call::Add(100), T).unwrap();
            });
        // Old code, old state.
        match node.call::<_, Reply>("c1", &Call::Describe, T).unwrap() {
            Reply::Description { version, count, .. } => {
                assert_eq!((version.as_str(), count), ("1.0.0", 101))
            }
            other => panic!("{other:?}"),
        }
        handler.stop(T);
        node.shutdown(T);
    }
}

#[test]
fn upgrades_out_of_a_panicking_or_garbage_module_roll_back() {
    // The running code is the hostile one: its export_state panics, or exports garbage that
    // the new version cannot decode. The processes keep running it.
    let f = fixtures();
    let cases = [
        ("from-panicky", &f.panicky, "export_state panics"),
        ("from-garbage", &f.garbage, "cannot decode"),
    ];
    for (name, lib, needle) in cases {
        let root = root(
            name,
            (lib, "2.0.0"),
            (&f.counter_v1, "1.0.0"),
            r#"{ update = "counter" }"#,
        );
        let _cleanup = RemoveOnDrop(root.path.parent().unwrap().to_path_buf());
        let (node, handler) =
            refused_and_rolled_back(&root, &InstallOptions::default(), needle, |_| {});
        for (_, version) in children(&node) {
            assert_eq!(version.as_deref(), Some("2.0.0"));
        }
        handler.stop(T);
        node.shutdown(T);
    }
}

#[test]
fn libraries_that_do_not_match_their_manifest_are_refused_before_anything_changes() {
    let f = fixtures();
    let cases = [
        (
            "not-a-module",
            &f.not_a_module,
            "2.0.0",
            "is not a relup module",
        ),
        (
            "newer-abi",
            &f.bad_abi,
            "2.0.0",
            "speaks relup module ABI version 999",
        ),
        // counter 1.0.0's library where the manifest promises counter 2.0.0.
        (
            "other-version",
            &f.counter_v1,
            "2.0.0",
            "is counter version 1.0.0, expected version 2.0.0",
        ),
        // ticker_server's library where the manifest promises counter.
        (
            "other-name",
            &f.ticker_v040,
            "2.0.0",
            "is module \"ticker_server\", expected \"counter\"",
        ),
    ];
    for (name, lib, vsn, needle) in cases {
        let root = root(
            name,
            (&f.counter_v1, "1.0.0"),
            (lib, vsn),
            r#"{ update = "counter" }"#,
        );
        let _cleanup = RemoveOnDrop(root.path.parent().unwrap().to_path_buf());
        let (node, handler) =
            refused_and_rolled_back(&root, &InstallOptions::default(), needle, |_| {});
        let journal = handler.log().unwrap();
        assert!(
            !journal.contains("step=\"suspend"),
            "refused before any process was touched:\n{journal}"
        );
        handler.stop(T);
        node.shutdown(T);
    }
}

#[test]
fn a_handle_call_that_never_returns_times_the_suspend_out_and_rolls_back() {
    let f = fixtures();
    let root = root(
        "hung",
        (&f.counter_v1, "1.0.0"),
        (&f.counter_v2, "2.0.0"),
        r#"{ update = "counter", timeout_ms = 300 }"#,
    );
    let _cleanup = RemoveOnDrop(root.path.parent().unwrap().to_path_buf());
    let (node, handler) = refused_and_rolled_back(
        &root,
        &InstallOptions::default(),
        "did not suspend within 300 ms",
        |node| {
            // c1 enters a call that outlives the test (an hour); nobody waits for its reply.
            let c1 = node.whereis("c1").expect("c1 runs");
            drop(call_taken(node, c1, Call::Sleep(3_600_000)));
        },
    );
    // The other child is on its old code, resumed, and answers; a second attempt is refused
    // the same way (the hung process still holds its call).
    match node.call::<_, Reply>("c2", &Call::Describe, T).unwrap() {
        Reply::Description { version, .. } => assert_eq!(version, "1.0.0"),
        other => panic!("{other:?}"),
    }
    let again = handler
        .install(&v("0.2.0"), &InstallOptions::default(), true, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(again.contains("did not suspend within 300 ms"), "{again}");
    assert_eq!(
        node.call::<_, Reply>("c2", &Call::Get, T).unwrap(),
        Reply::Count(2)
    );
    // The node still stops: the hung callback's thread is left behind, not waited for.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        handler.stop(Duration::from_millis(200));
        node.shutdown(Duration::from_millis(200));
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(120)).is_ok(),
        "the node never finished stopping"
    );
}
