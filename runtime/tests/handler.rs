//! The release handler on a real release root (packed, deployed and unpacked tarballs, real
//! cdylibs): every failure kind rolls back with RELEASES unchanged, 100 upgrade/downgrade
//! cycles under message load lose and reorder nothing, and a release that was not made
//! permanent is not booted again.

mod common;

use common::{appup_v2, deploy_pair, fixtures, node, release_dir};
use relup_appup::ReleaseStatus;
use relup_fixture_counter_api::{Call, Cast, Reply};
use relup_runtime::handler::{HandlerError, ReleaseHandler};
use relup_runtime::install::{InstallError, InstallOptions};
use relup_runtime::release::{ReleaseRoot, unpack};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// A root with 0.1.0 deployed (permanent) and 0.2.0 unpacked, whose up instructions are
/// `up` (an appup instruction list).
fn root(name: &str, up: &str) -> ReleaseRoot {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("handler-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let f = fixtures();
    let appup = appup_v2(up);
    let r1 = release_dir(&base.join("src"), "0.1.0", &f.counter_v1, "1.0.0", None);
    let r2 = release_dir(
        &base.join("src"),
        "0.2.0",
        &f.counter_v2,
        "2.0.0",
        Some(&appup),
    );
    let (root, t2) = deploy_pair(&base, &r1, &r2);
    unpack(&root, &t2).unwrap();
    root
}

fn releases_file(root: &ReleaseRoot) -> String {
    std::fs::read_to_string(root.releases_file()).unwrap()
}

fn describe(handler: &ReleaseHandler, name: &str) -> (String, i64) {
    match handler
        .node()
        .call::<_, Reply>(name, &Call::Describe, T)
        .unwrap()
    {
        Reply::Description { version, count, .. } => (version, count),
        other => panic!("{other:?}"),
    }
}

fn v(text: &str) -> semver::Version {
    semver::Version::parse(text).unwrap()
}

/// Installs 0.2.0 with `up`, expects it to fail, and checks the old release is intact.
fn fails_and_rolls_back(name: &str, up: &str, opts: InstallOptions, busy: bool) -> InstallError {
    let root = root(name, up);
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    node.call::<_, Reply>("c1", &Call::Add(100), T).unwrap();
    let before = releases_file(&root);
    let sleeper = busy.then(|| {
        let node = node.clone();
        std::thread::spawn(move || node.call::<_, Reply>("c1", &Call::Sleep(1500), T))
    });
    if sleeper.is_some() {
        common::wait_until_busy(&node, "c1");
    }
    let error = handler
        .install(&v("0.2.0"), &opts, true, &mut |_| {})
        .unwrap_err();
    if let Some(sleeper) = sleeper {
        sleeper.join().unwrap().unwrap();
    }
    assert_eq!(releases_file(&root), before, "RELEASES unchanged");
    assert_eq!(
        describe(&handler, "c1"),
        ("1.0.0".into(), 101),
        "old code, old state"
    );
    assert_eq!(handler.running().release.version, v("0.1.0"));
    assert!(
        handler
            .log()
            .unwrap()
            .contains("install failed, running 0.1.0")
    );
    node.shutdown(T);
    match error {
        HandlerError::Install { running, error } => {
            assert_eq!(running, v("0.1.0"));
            error
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_code_change_error_rolls_back() {
    let e = fails_and_rolls_back(
        "cc-error",
        r#"{ update = "counter", extra = "fail" }"#,
        InstallOptions::default(),
        false,
    );
    assert!(
        matches!(e, InstallError::CodeChange { ref module, .. } if module == "counter"),
        "{e}"
    );
}

#[test]
fn a_code_change_panic_rolls_back() {
    let e = fails_and_rolls_back(
        "cc-panic",
        r#"{ update = "counter", extra = "panic" }"#,
        InstallOptions::default(),
        false,
    );
    assert!(
        e.to_string()
            .contains("panic: code_change was told to panic"),
        "{e}"
    );
}

#[test]
fn a_failing_apply_rolls_back() {
    let up = r#"{ update = "counter" }, { apply = "counter", function = "fail" }"#;
    let e = fails_and_rolls_back("apply", up, InstallOptions::default(), false);
    assert!(
        e.to_string()
            .contains("counter:fail failed: apply was told to fail"),
        "{e}"
    );
}

#[test]
fn a_process_that_does_not_suspend_in_time_rolls_back() {
    let opts = InstallOptions {
        suspend_timeout: Duration::from_millis(200),
        ..InstallOptions::default()
    };
    let e = fails_and_rolls_back("suspend", r#"{ update = "counter" }"#, opts, true);
    assert!(matches!(e, InstallError::Suspend { .. }), "{e}");
    assert!(
        e.to_string().contains("did not suspend within 200 ms"),
        "{e}"
    );
}

#[test]
fn a_library_that_does_not_load_rolls_back() {
    let root = root("badlib", r#"{ update = "counter" }"#);
    // Replace 0.2.0's library by the fixture that is not a module, and fix up its sha256 in the
    // manifest, so that only the load itself can fail.
    let lib = root.release_dir(&v("0.2.0")).join("lib/libcounter.so");
    std::fs::copy(&fixtures().not_a_module, &lib).unwrap();
    let manifest = root.release_manifest(&v("0.2.0"));
    let text = std::fs::read_to_string(&manifest).unwrap();
    let old_sha = text
        .lines()
        .find(|l| l.starts_with("sha256"))
        .unwrap()
        .to_string();
    let text = text.replace(&old_sha, &format!("sha256 = \"{}\"", common::sha256(&lib)));
    std::fs::write(&manifest, text).unwrap();
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    let before = releases_file(&root);
    let error = handler
        .install(&v("0.2.0"), &InstallOptions::default(), true, &mut |_| {})
        .unwrap_err();
    assert!(
        error.to_string().contains("is not a relup module"),
        "{error}"
    );
    assert_eq!(releases_file(&root), before);
    assert_eq!(describe(&handler, "c1").0, "1.0.0");
    node.shutdown(T);
}

#[test]
fn a_release_not_made_permanent_is_not_booted_again() {
    let root = root("reboot", r#"{ update = "counter" }"#);
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    let report = handler
        .install(&v("0.2.0"), &InstallOptions::default(), false, &mut |_| {})
        .unwrap();
    assert!(!report.permanent);
    // `current` lives in the node, as in OTP: the file holds only what a restart boots.
    assert!(!releases_file(&root).contains("status = \"current\""));
    assert_eq!(
        handler.releases().unwrap().status(&v("0.2.0")),
        Some(ReleaseStatus::Current)
    );
    // The running release can be neither removed nor replaced, though the file says unpacked.
    let err = handler.remove(&v("0.2.0")).unwrap_err().to_string();
    assert!(err.contains("current"), "{err}");
    let out = root.path.parent().unwrap().join("out");
    let tarball = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("0.2.0.tar.gz"))
        .unwrap();
    let err = handler.unpack(&tarball, true).unwrap_err().to_string();
    assert!(err.contains("current"), "{err}");
    assert!(root.release_dir(&v("0.2.0")).is_dir());
    assert_eq!(describe(&handler, "c1").0, "2.0.0");
    handler.stop(T);
    node.shutdown(T);
    // The node restarts (after a crash, say): the permanent 0.1.0 boots, 0.2.0 is unpacked.
    let (node, _) = common::node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    assert_eq!(handler.running().release.version, v("0.1.0"));
    assert_eq!(describe(&handler, "c1").0, "1.0.0");
    let releases = handler.releases().unwrap();
    assert_eq!(
        releases.status(&v("0.2.0")).unwrap().to_string(),
        "unpacked"
    );
    assert_eq!(
        releases.status(&v("0.1.0")).unwrap().to_string(),
        "permanent"
    );
    node.shutdown(T);
}

#[test]
fn a_hundred_upgrade_downgrade_cycles_under_load_lose_and_reorder_nothing() {
    let root = root("cycles", r#"{ update = "counter" }"#);
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (node, stop) = (node.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                node.cast("c1", &Cast::Record { sender: 9, seq }).unwrap();
                if seq.is_multiple_of(64) {
                    std::thread::yield_now();
                }
            }
            seq
        })
    };
    for _ in 0..100 {
        for target in ["0.2.0", "0.1.0"] {
            handler
                .install(&v(target), &InstallOptions::default(), false, &mut |_| {})
                .unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    match node.call::<_, Reply>("c1", &Call::OrderReport, T).unwrap() {
        Reply::Order {
            received,
            out_of_order,
        } => {
            assert_eq!(received, sent, "every message delivered once");
            assert_eq!(out_of_order, 0, "per-sender order kept");
        }
        other => panic!("{other:?}"),
    }
    let stats = node.code().stats();
    assert!(
        stats.images_mapped <= 2,
        "images are reused across cycles: {stats:?}"
    );
    node.shutdown(T);
}
