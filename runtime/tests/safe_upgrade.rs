//! The operator's upgrade, the safe way (`ReleaseHandler::upgrade`), on a real release root
//! with real cdylibs: a failing health check or too many crashes during probation downgrade
//! the node by itself with states intact and no message lost; the pre-install check names
//! the one state in 10,000 whose migration fails and nothing is installed; a snapshot
//! restore puts back the exact pre-install states, and a corrupt or mismatched snapshot is
//! refused; a scheduled upgrade runs at its time, never before.

mod common;

use common::{appup_v2, deploy_pair, fixtures, node, release_dir_with};
use relup_fixture_counter_api::{Args, Call, Cast, Reply};
use relup_runtime::handler::{HandlerError, ReleaseHandler, UpgradeOptions, Verdict};
use relup_runtime::release::{ReleaseRoot, unpack};
use relup_runtime::{Node, SpawnOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// A root with 0.1.0 deployed (permanent) and 0.2.0 unpacked; 0.2.0's up instruction is
/// `up` and its release.toml carries `tables` (e.g. `[probation]`).
fn root(name: &str, up: &str, tables: &str) -> ReleaseRoot {
    let base =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("safe-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let f = fixtures();
    let appup = appup_v2(up);
    let src = base.join("src");
    let r1 = release_dir_with(&src, "0.1.0", &f.counter_v1, "1.0.0", None, "");
    let r2 = release_dir_with(&src, "0.2.0", &f.counter_v2, "2.0.0", Some(&appup), tables);
    let (root, t2) = deploy_pair(&base, &r1, &r2);
    unpack(&root, &t2).unwrap();
    root
}

fn v(text: &str) -> semver::Version {
    semver::Version::parse(text).unwrap()
}

fn describe(node: &Node, name: &str) -> Reply {
    node.call::<_, Reply>(name, &Call::Describe, T).unwrap()
}

fn version_of(node: &Node, name: &str) -> String {
    match describe(node, name) {
        Reply::Description { version, .. } => version,
        other => panic!("{other:?}"),
    }
}

fn statuses(handler: &ReleaseHandler) -> Vec<(String, String)> {
    handler
        .releases()
        .unwrap()
        .releases
        .iter()
        .map(|e| (e.version.to_string(), e.status.to_string()))
        .collect()
}

fn no_probation() -> UpgradeOptions {
    UpgradeOptions {
        probation: Some(Duration::ZERO),
        ..UpgradeOptions::default()
    }
}

/// Casts numbered messages to `target` from one sender until stopped; returns how many.
fn sender(
    node: &Node,
    target: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let node = node.clone();
    std::thread::spawn(move || {
        let mut seq = 0;
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            node.cast(target, &Cast::Record { sender: 9, seq }).unwrap();
            if seq % 64 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        seq
    })
}

fn order_report(node: &Node, name: &str) -> (u64, u64) {
    match node.call::<_, Reply>(name, &Call::OrderReport, T).unwrap() {
        Reply::Order {
            received,
            out_of_order,
        } => (received, out_of_order),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failing_health_check_downgrades_by_itself_with_states_intact_and_no_message_lost() {
    let root = root(
        "health",
        r#"{ update = "counter", extra = "unhealthy" }"#,
        "[probation]\nseconds = 5\nhealth_interval_ms = 100\n",
    );
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    node.call::<_, Reply>("c1", &Call::Add(100), T).unwrap();
    let before = describe(&node, "c1");
    let stop = Arc::new(AtomicBool::new(false));
    let cast = sender(&node, "c1", stop.clone());
    let mut notes = Vec::new();
    let error = handler
        .upgrade(&v("0.2.0"), &UpgradeOptions::default(), &mut |p| {
            notes.push(format!("{} {}", p.step, p.detail))
        })
        .unwrap_err();
    stop.store(true, Ordering::Relaxed);
    let sent = cast.join().unwrap();
    let text = error.to_string();
    match &error {
        HandlerError::ProbationFailed {
            version,
            reason,
            running,
        } => {
            assert_eq!((version, running), (&v("0.2.0"), &v("0.1.0")));
            assert!(
                reason.contains("health check of") && reason.contains("bonus is negative: -1"),
                "{reason}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(text.contains("rolled back to 0.1.0"), "{text}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("probation of 0.2.0 failed")),
        "{notes:?}"
    );
    // States intact (the old code's view of the count), nothing lost or reordered.
    assert_eq!(describe(&node, "c1"), before);
    assert_eq!(order_report(&node, "c1"), (sent, 0));
    assert_eq!(handler.running().release.version, v("0.1.0"));
    assert_eq!(
        statuses(&handler),
        vec![
            ("0.1.0".into(), "permanent".into()),
            ("0.2.0".into(), "unpacked".into())
        ]
    );
    let log = handler.log().unwrap();
    assert!(
        log.contains("probation 0.2.0: FAILED") && log.contains("rolled back, running 0.1.0"),
        "{log}"
    );
    node.shutdown(T);
}

#[test]
fn crashes_beyond_the_threshold_downgrade_by_themselves() {
    let root = root(
        "crashes",
        r#"{ update = "counter" }"#,
        "[probation]\nseconds = 20\nmax_crashes = 1\nhealth_interval_ms = 50\n",
    );
    let (node, _) = node(2);
    let handler = Arc::new(ReleaseHandler::start(node.clone(), root.clone()).unwrap());
    node.call::<_, Reply>("c2", &Call::Add(40), T).unwrap();
    let upgrade = {
        let handler = handler.clone();
        std::thread::spawn(move || {
            handler
                .upgrade(&v("0.2.0"), &UpgradeOptions::default(), &mut |_| {})
                .map_err(Box::new)
        })
    };
    let deadline = Instant::now() + T;
    while handler.probation().is_none() {
        assert!(Instant::now() < deadline, "probation never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(version_of(&node, "c1"), "2.0.0");
    // Two crashes, one tolerated. The restarted child runs the new code (a regression:
    // supervisors used to restart children on the version they were booted with).
    for round in 0..2 {
        let _ = node.call::<_, Reply>("c1", &Call::Panic("boom in 2.0.0".into()), T);
        if round == 0 {
            let deadline = Instant::now() + T;
            while node.whereis("c1").is_none() {
                assert!(Instant::now() < deadline, "c1 was not restarted");
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(version_of(&node, "c1"), "2.0.0");
        }
    }
    let error = upgrade.join().unwrap().unwrap_err();
    match error.as_ref() {
        HandlerError::ProbationFailed {
            reason, running, ..
        } => {
            assert_eq!(running, &v("0.1.0"));
            assert!(
                reason.contains("2 crash(es)") && reason.contains("1 tolerated"),
                "{reason}"
            );
            assert!(
                reason.contains("boom in 2.0.0") && reason.contains("c1"),
                "{reason}"
            );
        }
        other => panic!("{other}"),
    }
    // c2 never crashed: its state came back down intact.
    match describe(&node, "c2") {
        Reply::Description { version, count, .. } => {
            assert_eq!((version.as_str(), count), ("1.0.0", 42))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(version_of(&node, "c1"), "1.0.0");
    assert_eq!(handler.running().release.version, v("0.1.0"));
    assert!(handler.probation().is_none());
    node.shutdown(T);
}

#[test]
fn a_quiet_probation_makes_the_release_permanent() {
    let root = root(
        "quiet",
        r#"{ update = "counter" }"#,
        "[probation]\nseconds = 1\nhealth_interval_ms = 100\n",
    );
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    let report = handler
        .upgrade(&v("0.2.0"), &UpgradeOptions::default(), &mut |_| {})
        .unwrap();
    let probation = report.probation.expect("a probation ran");
    assert_eq!(probation.verdict, Verdict::Passed);
    assert!(probation.health_rounds >= 2, "{probation:?}");
    assert!(report.permanent);
    assert_eq!(
        statuses(&handler),
        vec![
            ("0.1.0".into(), "old".into()),
            ("0.2.0".into(), "permanent".into())
        ]
    );
    node.shutdown(T);
}

#[test]
fn check_names_the_one_state_in_ten_thousand_that_fails_and_nothing_is_installed() {
    let root = root(
        "check",
        r#"{ update = "counter", extra = "fail_count=7777" }"#,
        "",
    );
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    let counter = node.code().current("counter").unwrap();
    let mut odd_one = None;
    for i in 0..10_000i64 {
        let start = if i == 4321 { 7777 } else { i + 10_000 };
        let register_as = (i == 4321).then(|| "odd_one".to_string());
        let args = Args {
            start,
            register_as,
            ..Args::default()
        };
        let pid = node
            .spawn(counter.clone(), &args, SpawnOptions::default())
            .unwrap();
        if i == 4321 {
            odd_one = Some(pid);
        }
    }
    let releases_before = std::fs::read_to_string(root.releases_file()).unwrap();
    let report = handler.check(&v("0.2.0")).unwrap();
    assert_eq!(report.modules.len(), 1);
    let m = &report.modules[0];
    assert_eq!((m.module.as_str(), m.to.as_str()), ("counter", "2.0.0"));
    assert_eq!((m.processes, m.migrated, m.failed), (10_002, 10_001, 1));
    assert_eq!(m.failures.len(), 1);
    assert_eq!(m.failures[0].pid, odd_one.unwrap());
    assert_eq!(m.failures[0].name.as_deref(), Some("odd_one"));
    assert!(
        m.failures[0]
            .error
            .contains("cannot migrate a counter at 7777"),
        "{:?}",
        m.failures
    );
    // Nothing switched: every process still runs 1.0.0 and 2.0.0 is not current.
    assert_eq!(
        node.code()
            .current("counter")
            .unwrap()
            .version()
            .to_string(),
        "1.0.0"
    );
    assert_eq!(version_of(&node, "odd_one"), "1.0.0");

    // The operator's upgrade runs the same check first and installs nothing.
    let error = handler
        .upgrade(&v("0.2.0"), &no_probation(), &mut |_| {})
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, HandlerError::CheckFailed { .. }), "{text}");
    assert!(
        text.contains("nothing was installed") && text.contains("odd_one"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(root.releases_file()).unwrap(),
        releases_before
    );
    let log = handler.log().unwrap();
    assert!(!log.contains("hop="), "no step of the install ran:\n{log}");
    assert!(log.contains("refused"), "{log}");
    assert_eq!(handler.running().release.version, v("0.1.0"));
    node.shutdown(T);
}

#[test]
fn a_snapshot_restore_returns_the_exact_pre_install_states() {
    let root = root("snapshot", r#"{ update = "counter" }"#, "");
    let (node, _) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();
    node.call::<_, Reply>("c1", &Call::Add(41), T).unwrap();
    node.call::<_, Reply>("c2", &Call::NoteAfter { ms: 1, n: 5 }, T)
        .unwrap();
    assert!(common::eventually(|| matches!(
        describe(&node, "c2"),
        Reply::Description { ref notes, .. } if notes == &[5]
    )));
    let before = (describe(&node, "c1"), describe(&node, "c2"));
    let up = handler
        .upgrade(&v("0.2.0"), &no_probation(), &mut |_| {})
        .unwrap();
    let snapshot = up.snapshot.expect("a snapshot was taken");
    // The new version changes the states: the up migration sets a bonus, then more work.
    node.call::<_, Reply>("c1", &Call::Add(1000), T).unwrap();
    assert_ne!(describe(&node, "c1"), before.0);

    // A tampered snapshot is refused before anything changes.
    let states = root
        .snapshots_dir()
        .join(snapshot.to_string())
        .join("states.bin");
    let good = std::fs::read(&states).unwrap();
    let mut bad = good.clone();
    bad[0] ^= 0xff;
    std::fs::write(&states, &bad).unwrap();
    let restore = UpgradeOptions {
        restore_snapshot: Some(snapshot),
        ..no_probation()
    };
    let error = handler
        .upgrade(&v("0.1.0"), &restore, &mut |_| {})
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("snapshot {snapshot} is corrupt")),
        "{error}"
    );
    assert_eq!(version_of(&node, "c1"), "2.0.0");
    assert_eq!(handler.running().release.version, v("0.2.0"));
    std::fs::write(&states, &good).unwrap();

    let down = handler.upgrade(&v("0.1.0"), &restore, &mut |_| {}).unwrap();
    assert_eq!(down.restored_from, Some(snapshot));
    assert_eq!(
        (describe(&node, "c1"), describe(&node, "c2")),
        before,
        "exact pre-install states"
    );

    // A snapshot restores the downgrade it was taken for, nothing else.
    let error = handler
        .upgrade(&v("0.2.0"), &restore, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("snapshot {snapshot} does not match")),
        "{error}"
    );
    let error = handler
        .upgrade(
            &v("0.2.0"),
            &UpgradeOptions {
                restore_snapshot: Some(99),
                ..no_probation()
            },
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("no snapshot 99"), "{error}");
    assert_eq!(handler.running().release.version, v("0.1.0"));
    node.shutdown(T);
}

#[test]
fn a_scheduled_upgrade_runs_at_its_time_and_a_past_time_is_refused() {
    let root = root(
        "schedule",
        r#"{ update = "counter" }"#,
        "[probation]\nseconds = 0\n",
    );
    let (node, _) = node(2);
    let handler = Arc::new(ReleaseHandler::start(node.clone(), root.clone()).unwrap());
    handler.start_scheduler();
    let error = handler
        .schedule(&v("0.2.0"), Some("2020-01-01T00:00:00Z"), None, true, None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("2020-01-01T00:00:00Z is in the past: the node's time is 20")
            && error.contains("--in"),
        "{error}"
    );
    let error = handler
        .schedule(&v("0.9.0"), None, Some(Duration::from_secs(1)), true, None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("0.9.0 is not known"), "{error}");
    // One scheduled then cancelled, one that runs.
    let cancelled = handler
        .schedule(
            &v("0.2.0"),
            None,
            Some(Duration::from_secs(3600)),
            true,
            None,
        )
        .unwrap();
    assert_eq!(handler.cancel(Some(cancelled.id)).unwrap().len(), 1);
    let entry = handler
        .schedule(
            &v("0.2.0"),
            None,
            Some(Duration::from_millis(800)),
            true,
            None,
        )
        .unwrap();
    assert_eq!(handler.scheduled().unwrap().upgrades, vec![entry.clone()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while handler.running().release.version != v("0.2.0") {
        assert!(Instant::now() < deadline, "the scheduled upgrade never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ran = AtomicU64::new(0);
    let log = handler.log().unwrap();
    for line in log
        .lines()
        .filter(|l| l.contains(&format!("scheduled upgrade {} starts", entry.id)))
    {
        let stamp = line.split_whitespace().next().unwrap();
        let at = humantime::parse_rfc3339(stamp).unwrap();
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            ms >= entry.at_unix_ms,
            "ran before its time: {line} (due {})",
            entry.at
        );
        ran.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(ran.load(Ordering::Relaxed), 1, "{log}");
    assert!(handler.scheduled().unwrap().upgrades.is_empty());
    assert_eq!(version_of(&node, "c1"), "2.0.0");
    handler.stop(T);
    node.shutdown(T);
}
