//! The upgrade hooks on real cdylibs: suspend, code_change up and down, commit, resume,
//! rollback on failure, suspend timeouts, and no message lost or reordered under load.

mod common;

use common::{fixtures, node};
use relup_fixture_counter_api::{Args, Call, Cast, Reply};
use relup_runtime::{
    CodeChange, CodeChangeError, Direction, Expect, LoadedModule, Node, Pid, SpawnOptions,
    SuspendError, UpgradeError,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn setup(n: usize) -> (Node, Arc<LoadedModule>, Arc<LoadedModule>, Vec<Pid>) {
    let (node, _) = node(2);
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let v1 = unsafe {
        node.code()
            .load_current(&fixtures().counter_v1, &Expect::default())
    }
    .unwrap();
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let v2 = unsafe { node.code().load(&fixtures().counter_v2, &Expect::default()) }.unwrap();
    let pids = (0..n)
        .map(|i| {
            node.spawn(
                "counter",
                &Args {
                    start: i as i64,
                    ..Args::default()
                },
                SpawnOptions::default(),
            )
            .unwrap()
        })
        .collect();
    (node, v1, v2, pids)
}

fn change(module: &Arc<LoadedModule>, direction: Direction, extra: &str) -> CodeChange {
    CodeChange::new(
        module.clone(),
        direction,
        relup_module::codec::encode(extra).unwrap(),
    )
}

fn describe(node: &Node, pid: Pid) -> (String, i64, i64) {
    match node.call::<_, Reply>(pid, &Call::Describe, T).unwrap() {
        Reply::Description {
            version,
            count,
            bonus,
            ..
        } => (version, count, bonus),
        other => panic!("{other:?}"),
    }
}

#[test]
fn upgrade_then_downgrade_migrates_state_both_ways() {
    let (node, v1, v2, pids) = setup(50);
    let report = node
        .upgrade_module(&change(&v2, Direction::Up, ""), T)
        .unwrap();
    assert_eq!(report.processes, 50);
    for (i, pid) in pids.iter().enumerate() {
        assert_eq!(
            describe(&node, *pid),
            ("2.0.0".into(), i as i64, 100),
            "state kept, new field migrated"
        );
    }
    assert_eq!(node.code().current("counter").unwrap().version().major, 2);
    assert_eq!(
        report.still_in_use, 0,
        "1.0.0 was purged: no process runs it"
    );
    let report = node
        .upgrade_module(&change(&v1, Direction::Down, ""), T)
        .unwrap();
    assert_eq!(report.processes, 50);
    for (i, pid) in pids.iter().enumerate() {
        assert_eq!(
            describe(&node, *pid),
            ("1.0.0".into(), i as i64, 0),
            "the v2-only field is dropped"
        );
    }
    node.shutdown(T);
}

#[test]
fn many_processes_migrate_in_parallel_and_the_runner_counts_follow() {
    // Enough processes for the upgrade to split its work over threads.
    let n = 300;
    let (node, v1, v2, pids) = setup(n);
    assert_eq!(v1.runners(), n as u64);
    let report = node
        .upgrade_module(&change(&v2, Direction::Up, ""), T)
        .unwrap();
    assert_eq!(report.processes, n);
    assert_eq!((v1.runners(), v2.runners()), (0, n as u64));
    assert_eq!(report.still_in_use, 0);
    for (i, pid) in pids.iter().enumerate() {
        assert_eq!(describe(&node, *pid), ("2.0.0".into(), i as i64, 100));
        assert!(!node.process_info(*pid).unwrap().suspended);
    }
    node.upgrade_module(&change(&v1, Direction::Down, ""), T)
        .unwrap();
    assert_eq!((v1.runners(), v2.runners()), (n as u64, 0));
    for (i, pid) in pids.iter().enumerate() {
        assert_eq!(describe(&node, *pid), ("1.0.0".into(), i as i64, 0));
    }
    node.shutdown(T);
}

#[test]
fn a_failing_code_change_among_many_processes_rolls_all_back_with_their_counts() {
    let n = 300;
    let (node, v1, v2, pids) = setup(n);
    node.upgrade_module(&change(&v2, Direction::Up, "fail"), T)
        .unwrap_err();
    assert_eq!((v1.runners(), v2.runners()), (n as u64, 0));
    assert_untouched(&node, &pids);
    node.shutdown(T);
}

fn assert_untouched(node: &Node, pids: &[Pid]) {
    for (i, pid) in pids.iter().enumerate() {
        assert_eq!(describe(node, *pid), ("1.0.0".into(), i as i64, 0));
        assert!(!node.process_info(*pid).unwrap().suspended);
    }
    assert_eq!(node.code().current("counter").unwrap().version().major, 1);
}

#[test]
fn a_failing_code_change_rolls_every_process_back() {
    let (node, _v1, v2, pids) = setup(20);
    let err = node
        .upgrade_module(&change(&v2, Direction::Up, "fail"), T)
        .unwrap_err();
    match &err {
        UpgradeError::CodeChange(CodeChangeError::Failed {
            pid,
            module,
            reason,
        }) => {
            assert!(pids.contains(pid));
            assert_eq!(module, "counter");
            assert!(reason.contains("refused"), "{reason}");
        }
        other => panic!("{other}"),
    }
    assert_untouched(&node, &pids);
    node.shutdown(T);
}

#[test]
fn a_panicking_code_change_rolls_back_too() {
    let (node, _v1, v2, pids) = setup(20);
    let err = node
        .upgrade_module(&change(&v2, Direction::Up, "panic"), T)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("panic: code_change was told to panic"),
        "{err}"
    );
    assert_untouched(&node, &pids);
    node.shutdown(T);
}

#[test]
fn a_process_that_does_not_suspend_in_time_fails_the_suspend_and_nobody_stays_suspended() {
    let (node, _v1, v2, pids) = setup(10);
    let busy = pids[3];
    let sleeper = {
        let node = node.clone();
        std::thread::spawn(move || node.call::<_, Reply>(busy, &Call::Sleep(1000), T))
    };
    common::wait_until_busy(&node, busy);
    let err = node
        .upgrade_module(&change(&v2, Direction::Up, ""), Duration::from_millis(100))
        .unwrap_err();
    match err {
        UpgradeError::Suspend(SuspendError::Timeout { pids: late, .. }) => {
            assert_eq!(late, vec![busy])
        }
        other => panic!("{other}"),
    }
    sleeper.join().unwrap().unwrap();
    assert_untouched(&node, &pids);
    node.shutdown(T);
}

#[test]
fn messages_sent_while_suspended_reach_the_new_code() {
    let (node, _v1, v2, pids) = setup(3);
    node.suspend(&pids, T).unwrap();
    for pid in &pids {
        for _ in 0..10 {
            node.cast(*pid, &Cast::Add(1)).unwrap();
        }
        let info = node.process_info(*pid).unwrap();
        assert!(info.suspended);
        assert_eq!(info.mailbox_len, 10, "messages queue while suspended");
    }
    node.change_code(&pids, &change(&v2, Direction::Up, ""), T)
        .unwrap();
    node.code().make_current(&v2);
    node.commit_code_change(&pids);
    node.resume(&pids);
    for (i, pid) in pids.iter().enumerate() {
        assert_eq!(describe(&node, *pid), ("2.0.0".into(), i as i64 + 10, 100));
    }
    node.shutdown(T);
}

#[test]
fn ten_thousand_processes_upgraded_under_load_lose_and_reorder_nothing() {
    const N: usize = 10_000;
    let (node, v1, v2, pids) = setup(N);
    let pids = Arc::new(pids);
    let stop = Arc::new(AtomicBool::new(false));
    // Two senders, each casting a numbered stream to every process, round after round.
    let senders: Vec<_> = (1..=2u64)
        .map(|sender| {
            let (node, pids, stop) = (node.clone(), pids.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) || rounds < 3 {
                    rounds += 1;
                    for pid in pids.iter() {
                        node.cast(
                            *pid,
                            &Cast::Record {
                                sender,
                                seq: rounds,
                            },
                        )
                        .unwrap();
                    }
                }
                rounds
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let up = node
        .upgrade_module(&change(&v2, Direction::Up, ""), T)
        .unwrap();
    let down = node
        .upgrade_module(&change(&v1, Direction::Down, ""), T)
        .unwrap();
    let again = node
        .upgrade_module(&change(&v2, Direction::Up, ""), T)
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let rounds: Vec<u64> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    assert_eq!((up.processes, down.processes, again.processes), (N, N, N));
    let expected = rounds.iter().sum::<u64>();
    for pid in pids.iter() {
        match node.call::<_, Reply>(*pid, &Call::OrderReport, T).unwrap() {
            Reply::Order {
                received,
                out_of_order,
            } => {
                assert_eq!(received, expected, "{pid}: every message delivered once");
                assert_eq!(out_of_order, 0, "{pid}: per-sender order kept");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(describe(&node, pids[7]), ("2.0.0".into(), 7, 100));
    node.shutdown(T);
}
