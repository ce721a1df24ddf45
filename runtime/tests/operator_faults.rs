//! What a careless or hostile operator does to a release root (issue "What a careless or
//! hostile operator breaks"): every writer of `RELEASES` at once (unpacks, `permanent`,
//! `remove`, start-up recovery) loses no change, a verified release directory is never
//! deleted silently, a root whose `RELEASES` was deleted gets it back from what the node
//! runs, and a stop during a probation is a failure for the caller.

// The handler's errors carry versions, paths and reasons; threads here return them as is.
#![allow(clippy::result_large_err)]

mod common;

use common::{appup_v2, deploy_pair, fixtures, node, release_dir};
use relup_appup::ReleaseStatus;
use relup_runtime::handler::{HandlerError, ReleaseHandler, UpgradeOptions};
use relup_runtime::install::InstallOptions;
use relup_runtime::release::{PackOptions, ReleaseRoot, Releases, pack_with, recover, unpack};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn v(text: &str) -> semver::Version {
    semver::Version::parse(text).unwrap()
}

/// `bytes` of incompressible data, so that verifying a tarball that holds them takes a while
/// (the window in which a stale copy of RELEASES used to be held).
fn noise(bytes: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Fixture {
    root: ReleaseRoot,
    /// 0.3.0, with 24 MiB of data: its verification is slow.
    slow: PathBuf,
    /// 0.4.0, small.
    quick: PathBuf,
}

/// A root with 0.1.0 deployed (permanent) and 0.2.0 unpacked, plus tarballs of 0.3.0 (slow
/// to verify) and 0.4.0 (quick).
fn fixture(name: &str) -> Fixture {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("releases-writers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let f = fixtures();
    let appup = appup_v2("{ update = \"counter\" }");
    let src = base.join("src");
    let r1 = release_dir(&src, "0.1.0", &f.counter_v1, "1.0.0", None);
    let r2 = release_dir(&src, "0.2.0", &f.counter_v2, "2.0.0", Some(&appup));
    let (root, t2) = deploy_pair(&base, &r1, &r2);
    unpack(&root, &t2).unwrap();
    let r3 = release_dir(&src, "0.3.0", &f.counter_v2, "2.0.0", None);
    std::fs::write(r3.join("data.bin"), noise(24 << 20)).unwrap();
    let r4 = release_dir(&src, "0.4.0", &f.counter_v2, "2.0.0", None);
    let out = base.join("out");
    let slow = pack_with(&r3, &out, PackOptions::default()).unwrap();
    let quick = pack_with(&r4, &out, PackOptions::default()).unwrap();
    Fixture { root, slow, quick }
}

/// Waits until an unpack is verifying in `root` (its temporary directory exists).
fn wait_for_unpack_in_progress(root: &ReleaseRoot) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let busy = std::fs::read_dir(root.releases_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with(".unpack-"));
        if busy {
            return;
        }
        assert!(Instant::now() < deadline, "the slow unpack never started");
        std::thread::yield_now();
    }
}

fn statuses(root: &ReleaseRoot) -> Vec<(String, ReleaseStatus)> {
    Releases::load(root)
        .unwrap()
        .releases
        .into_iter()
        .map(|e| (e.version.to_string(), e.status))
        .collect()
}

#[test]
fn two_unpacks_at_once_both_stay_listed() {
    let f = fixture("two-unpacks");
    let slow = {
        let (root, tarball) = (f.root.clone(), f.slow.clone());
        std::thread::spawn(move || unpack(&root, &tarball))
    };
    wait_for_unpack_in_progress(&f.root);
    // This one starts and ends while the slow one verifies.
    unpack(&f.root, &f.quick).unwrap();
    slow.join().unwrap().unwrap();
    let listed = statuses(&f.root);
    for vsn in ["0.1.0", "0.2.0", "0.3.0", "0.4.0"] {
        assert!(
            listed.iter().any(|(v, _)| v == vsn),
            "{vsn} lost from RELEASES: {listed:?}"
        );
    }
}

#[test]
fn permanent_during_an_unpack_keeps_both() {
    let f = fixture("permanent-vs-unpack");
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node, f.root.clone()).unwrap();
    handler
        .install(&v("0.2.0"), &InstallOptions::default(), false, &mut |_| {})
        .unwrap();
    std::thread::scope(|s| {
        let unpacking = s.spawn(|| handler.unpack(&f.slow, false));
        wait_for_unpack_in_progress(&f.root);
        handler.make_permanent(&v("0.2.0")).unwrap();
        unpacking.join().unwrap().unwrap();
    });
    let listed = statuses(&f.root);
    assert!(
        listed.contains(&("0.2.0".into(), ReleaseStatus::Permanent)),
        "the permanent mark was lost: {listed:?}"
    );
    assert!(
        listed.contains(&("0.1.0".into(), ReleaseStatus::Old)),
        "{listed:?}"
    );
    assert!(
        listed.contains(&("0.3.0".into(), ReleaseStatus::Unpacked)),
        "the unpack was lost: {listed:?}"
    );
}

#[test]
fn remove_during_an_unpack_keeps_both() {
    let f = fixture("remove-vs-unpack");
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node, f.root.clone()).unwrap();
    std::thread::scope(|s| {
        let unpacking = s.spawn(|| handler.unpack(&f.slow, false));
        wait_for_unpack_in_progress(&f.root);
        let removed = handler.remove(&v("0.2.0")).unwrap();
        assert_eq!(removed.dir, f.root.release_dir(&v("0.2.0")));
        unpacking.join().unwrap().unwrap();
    });
    let listed = statuses(&f.root);
    assert_eq!(
        listed,
        [
            ("0.1.0".to_string(), ReleaseStatus::Permanent),
            ("0.3.0".to_string(), ReleaseStatus::Unpacked)
        ]
    );
    assert!(!f.root.release_dir(&v("0.2.0")).exists());
}

#[test]
fn recovery_lists_a_verified_directory_again_and_never_deletes_it() {
    let f = fixture("recover-verified");
    // What an unpack cut short between its rename and its RELEASES line leaves: 0.2.0's
    // directory, intact, that RELEASES does not list.
    let mut releases = Releases::load(&f.root).unwrap();
    releases.remove(&v("0.2.0")).unwrap();
    releases.save(&f.root).unwrap();
    let lines = recover(&f.root).unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("listed 0.2.0 again as unpacked")),
        "{lines:?}"
    );
    assert!(f.root.release_manifest(&v("0.2.0")).is_file());
    assert!(statuses(&f.root).contains(&("0.2.0".into(), ReleaseStatus::Unpacked)));

    // A directory that does not verify still goes, and the line says why.
    let mut releases = Releases::load(&f.root).unwrap();
    releases.remove(&v("0.2.0")).unwrap();
    releases.save(&f.root).unwrap();
    std::fs::write(
        f.root.release_dir(&v("0.2.0")).join("lib/libcounter.so"),
        b"x",
    )
    .unwrap();
    let lines = recover(&f.root).unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("does not verify") && l.contains("differs from its MANIFEST")),
        "{lines:?}"
    );
    assert!(!f.root.release_dir(&v("0.2.0")).exists());
}

#[test]
fn recovery_puts_back_a_remove_cut_short_before_releases_changed() {
    let f = fixture("recover-remove");
    // `remove` renames the directory aside first; a crash before RELEASES is written leaves
    // the release listed and its directory aside.
    let dir = f.root.release_dir(&v("0.2.0"));
    let aside = f.root.releases_dir().join(".remove-0.2.0-123-abc-0");
    std::fs::rename(&dir, &aside).unwrap();
    let lines = recover(&f.root).unwrap();
    assert!(lines.iter().any(|l| l.contains("put")), "{lines:?}");
    assert!(dir.join("release.toml").is_file());
    assert!(!aside.exists());
    assert!(Releases::load(&f.root).is_ok());

    // After RELEASES dropped it, the directory aside is deleted.
    let mut releases = Releases::load(&f.root).unwrap();
    releases.remove(&v("0.2.0")).unwrap();
    std::fs::rename(&dir, &aside).unwrap();
    releases.save(&f.root).unwrap();
    recover(&f.root).unwrap();
    assert!(!aside.exists() && !dir.exists());
}

#[test]
fn unpack_into_a_root_whose_releases_was_deleted_rebuilds_it_from_what_runs() {
    for how in ["deleted", "emptied"] {
        let f = fixture(how);
        let (running, _) = node(2);
        let handler = ReleaseHandler::start(running, f.root.clone()).unwrap();
        match how {
            "deleted" => std::fs::remove_file(f.root.releases_file()).unwrap(),
            _ => std::fs::write(f.root.releases_file(), "").unwrap(),
        }
        handler.unpack(&f.quick, false).unwrap();
        let listed = statuses(&f.root);
        assert!(
            listed.contains(&("0.1.0".into(), ReleaseStatus::Permanent)),
            "{how}: no permanent release after the unpack: {listed:?}"
        );
        assert!(
            listed.contains(&("0.4.0".into(), ReleaseStatus::Unpacked)),
            "{how}: {listed:?}"
        );
        assert!(
            handler
                .log()
                .unwrap()
                .contains("listed no permanent release"),
            "{how}: the repair is not in the journal"
        );
        // The root boots again.
        let (again, _) = node(1);
        drop(handler);
        ReleaseHandler::start(again, f.root.clone()).unwrap();
    }
}

#[test]
fn a_stop_during_probation_fails_the_upgrade_and_says_what_boots_next() {
    let f = fixture("stop-in-probation");
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node, f.root.clone()).unwrap();
    let opts = UpgradeOptions {
        probation: Some(Duration::from_secs(120)),
        ..UpgradeOptions::default()
    };
    std::thread::scope(|s| {
        let upgrading = s.spawn(|| handler.upgrade(&v("0.2.0"), &opts, &mut |_| {}));
        let deadline = Instant::now() + Duration::from_secs(30);
        while handler.probation().is_none() {
            assert!(Instant::now() < deadline, "the probation never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        handler.stop(Duration::from_secs(5));
        let error = upgrading.join().unwrap().unwrap_err();
        assert!(
            matches!(&error, HandlerError::ProbationInterrupted { version, permanent }
                if *version == v("0.2.0") && *permanent == v("0.1.0")),
            "{error}"
        );
        assert!(
            error.to_string().contains("the next start boots 0.1.0"),
            "{error}"
        );
    });
    assert!(statuses(&f.root).contains(&("0.1.0".into(), ReleaseStatus::Permanent)));
    assert!(
        handler
            .log()
            .unwrap()
            .contains("probation 0.2.0: INTERRUPTED")
    );
}

#[test]
fn a_config_value_the_new_release_forbids_is_reset_loudly_at_the_upgrade() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("releases-writers-{}-narrowed", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let f = fixtures();
    let src = base.join("src");
    let r1 = release_dir(&src, "0.1.0", &f.counter_v1, "1.0.0", None);
    let appup = appup_v2("{ update = \"counter\" }");
    let r2 = release_dir(&src, "0.2.0", &f.counter_v2, "2.0.0", Some(&appup));
    // 0.2.0 narrows `limit` to 0..=10.
    let manifest = r2.join("release.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let narrowed = text.replace(
        "key = \"limit\"\ntype = \"integer\"\ndefault = 2\n",
        "key = \"limit\"\ntype = \"integer\"\ndefault = 2\nrange = [0, 10]\n",
    );
    assert_ne!(text, narrowed, "the fixture's release.toml changed shape");
    std::fs::write(&manifest, narrowed).unwrap();
    let (root, t2) = deploy_pair(&base, &r1, &r2);
    unpack(&root, &t2).unwrap();
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    handler.config_set("app:counter:limit:50").unwrap();
    let mut notes = Vec::new();
    handler
        .install(&v("0.2.0"), &InstallOptions::default(), true, &mut |p| {
            notes.push(p.detail.clone())
        })
        .unwrap();
    assert_eq!(
        node.env("app", "limit"),
        Some(relup_runtime::ConfigValue::Int(2)),
        "the forbidden value still runs"
    );
    let live = std::fs::read_to_string(root.config_file()).unwrap();
    assert!(!live.contains("limit = 50"), "{live}");
    let warning = "app:counter:limit = 50 is not accepted by release 0.2.0";
    assert!(notes.iter().any(|n| n.contains(warning)), "{notes:?}");
    assert!(handler.log().unwrap().contains(warning));
    // The next start runs what the upgrade left: the same value.
    handler.stop(Duration::from_secs(5));
    let (again, _) = common::node(1);
    ReleaseHandler::start(again.clone(), root.clone()).unwrap();
    assert_eq!(
        again.env("app", "limit"),
        Some(relup_runtime::ConfigValue::Int(2))
    );
}

#[test]
fn a_stop_racing_an_install_waits_for_its_hop_and_nothing_becomes_permanent() {
    use relup_fixture_counter_api::{Call, Reply};
    let f = fixture("stop-vs-install");
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), f.root.clone()).unwrap();
    // c1 is busy for a while: the install waits to suspend it.
    let sleeper = {
        let node = node.clone();
        std::thread::spawn(move || {
            node.call::<_, Reply>("c1", &Call::Sleep(1500), Duration::from_secs(10))
        })
    };
    common::wait_until_busy(&node, "c1");
    std::thread::scope(|s| {
        let (started, has_started) = std::sync::mpsc::channel();
        let handler = &handler;
        let installing = s.spawn(move || {
            handler.install(&v("0.2.0"), &InstallOptions::default(), true, &mut |_| {
                let _ = started.send(());
            })
        });
        // The install reports its first step, then waits for c1 with the lock held.
        has_started
            .recv_timeout(Duration::from_secs(10))
            .expect("the install never started");
        handler.stop(Duration::from_secs(10));
        let error = installing.join().unwrap().unwrap_err();
        assert!(
            matches!(error, HandlerError::Stopping { .. }),
            "the install went on through a stop: {error}"
        );
    });
    let _ = sleeper.join();
    assert!(statuses(&f.root).contains(&("0.1.0".into(), ReleaseStatus::Permanent)));
    assert!(
        handler
            .log()
            .unwrap()
            .contains("install stopped: the node is stopping")
    );
}

#[test]
fn one_corrupt_or_edited_release_blocks_only_itself() {
    let f = fixture("corrupt-release");
    unpack(&f.root, &f.quick).unwrap();
    let (running, _) = node(2);
    let handler = ReleaseHandler::start(running, f.root.clone()).unwrap();
    // 0.4.0's manifest is garbage: plans to 0.2.0 still work, and one to 0.4.0 names the file.
    std::fs::write(f.root.release_manifest(&v("0.4.0")), "name = [").unwrap();
    handler.plan(&v("0.2.0")).unwrap();
    let err = handler.plan(&v("0.4.0")).unwrap_err().to_string();
    assert!(err.contains("releases/0.4.0/release.toml"), "{err}");
    assert!(!err.contains("is not known"), "{err}");
    // An edited release.toml (another version) is named as such, not "not known".
    let manifest = f.root.release_manifest(&v("0.2.0"));
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("version = \"0.2.0\"", "version = \"0.2.1\""),
    )
    .unwrap();
    let err = handler.plan(&v("0.2.0")).unwrap_err().to_string();
    assert!(
        err.contains("version 0.2.1, but the release is listed as 0.2.0"),
        "{err}"
    );
    // The node still boots: only the permanent release must read.
    drop(handler);
    let (again, _) = node(1);
    ReleaseHandler::start(again, f.root.clone()).unwrap();
}

#[test]
fn removing_the_last_downgrade_target_says_so() {
    let f = fixture("last-downgrade");
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node, f.root.clone()).unwrap();
    handler
        .install(&v("0.2.0"), &InstallOptions::default(), true, &mut |_| {})
        .unwrap();
    unpack(&f.root, &f.quick).unwrap();
    // 0.4.0 is newer than the permanent 0.2.0: removing it leaves the downgrade path alone.
    assert_eq!(handler.remove(&v("0.4.0")).unwrap().warning, None);
    let warning = handler
        .remove(&v("0.1.0"))
        .unwrap()
        .warning
        .unwrap_or_default();
    assert!(
        warning.contains("0.1.0 was the last release older than the permanent 0.2.0"),
        "{warning:?}"
    );
    assert!(
        handler
            .log()
            .unwrap()
            .contains("remove 0.1.0: warning: 0.1.0 was the last")
    );
}
