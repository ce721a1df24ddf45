//! Processes running a real cdylib module: calls, casts, infos, names, timers, links,
//! monitors, panics, timeouts, and process-to-process calls on a 2-thread pool.

mod common;

use common::{call_taken, eventually, node_with_counter};
use relup_fixture_counter_api::{Args, Call, Cast, Reply};
use relup_runtime::{CallError, ExitReason, Pid, SpawnError, SpawnOptions};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn args(start: i64) -> Args {
    Args {
        start,
        ..Args::default()
    }
}

#[test]
fn call_cast_and_registered_names() {
    let (node, _) = node_with_counter(2);
    let opts = SpawnOptions {
        name: Some("c".into()),
        ..Default::default()
    };
    let pid = node.spawn("counter", &args(5), opts).unwrap();
    assert_eq!(node.whereis("c"), Some(pid));
    let r: Reply = node.call(pid, &Call::Add(2), T).unwrap();
    assert_eq!(r, Reply::Count(7));
    node.cast("c", &Cast::Add(10)).unwrap();
    let r: Reply = node.call("c", &Call::Get, T).unwrap();
    assert_eq!(
        r,
        Reply::Count(17),
        "a cast sent before a call is handled before it"
    );
    let taken = node.spawn(
        "counter",
        &args(0),
        SpawnOptions {
            name: Some("c".into()),
            ..Default::default()
        },
    );
    assert!(
        matches!(taken, Err(SpawnError::NameTaken { .. })),
        "{taken:?}"
    );
    node.shutdown(T);
}

#[test]
fn call_to_unknown_process_and_undecodable_request() {
    let (node, _) = node_with_counter(2);
    let r: Result<Reply, _> = node.call("nobody", &Call::Get, T);
    assert!(matches!(r, Err(CallError::NoProc(_))), "{r:?}");
    let r: Result<Reply, _> = node.call(Pid(999_999), &Call::Get, T);
    assert!(matches!(r, Err(CallError::NoProc(_))), "{r:?}");
    let pid = node
        .spawn("counter", &args(1), SpawnOptions::default())
        .unwrap();
    let r: Result<Reply, _> = node.call(pid, &"not a request", T);
    assert!(matches!(r, Err(CallError::BadMessage(_))), "{r:?}");
    let r: Reply = node.call(pid, &Call::Get, T).unwrap();
    assert_eq!(
        r,
        Reply::Count(1),
        "a bad request does not crash the server"
    );
    node.shutdown(T);
}

#[test]
fn call_times_out_cleanly_and_the_late_reply_is_dropped() {
    let (node, _) = node_with_counter(2);
    let pid = node
        .spawn("counter", &args(0), SpawnOptions::default())
        .unwrap();
    let r: Result<Reply, _> = node.call(pid, &Call::Sleep(300), Duration::from_millis(50));
    assert!(matches!(r, Err(CallError::Timeout(_))), "{r:?}");
    // The next call gets its own reply, not the late one.
    let r: Reply = node.call(pid, &Call::Add(3), T).unwrap();
    assert_eq!(r, Reply::Count(3));
    node.shutdown(T);
}

#[test]
fn panic_in_handle_call_is_a_crash_with_the_panic_message() {
    let (node, _) = node_with_counter(2);
    let pid = node
        .spawn("counter", &args(0), SpawnOptions::default())
        .unwrap();
    let watch = node.watch(pid).unwrap();
    let r: Result<Reply, _> = node.call(pid, &Call::Panic("boom 42".into()), T);
    match r {
        Err(CallError::Exited {
            reason: ExitReason::Error(text),
            ..
        }) => {
            assert!(text.contains("panic: boom 42"), "{text}")
        }
        other => panic!("expected an exit, got {other:?}"),
    }
    let reason = watch.wait(Some(T)).unwrap();
    assert!(reason.to_string().contains("boom 42"), "{reason}");
    assert!(!node.is_alive(pid));
    node.shutdown(T);
}

#[test]
fn panic_in_cast_and_in_terminate() {
    let (node, logs) = node_with_counter(2);
    let a = Args {
        panic_in_terminate: true,
        ..args(0)
    };
    let pid = node.spawn("counter", &a, SpawnOptions::default()).unwrap();
    let watch = node.watch(pid).unwrap();
    node.cast(pid, &Cast::Panic).unwrap();
    let reason = watch.wait(Some(T)).unwrap();
    assert!(
        reason.to_string().contains("cast was told to panic"),
        "{reason}"
    );
    assert!(
        logs.contains("terminate was told to panic"),
        "the terminate panic is logged"
    );
    node.shutdown(T);
}

#[test]
fn panic_and_error_in_init_fail_the_spawn() {
    let (node, _) = node_with_counter(2);
    let r = node.spawn(
        "counter",
        &Args {
            panic_in_init: true,
            ..args(0)
        },
        SpawnOptions::default(),
    );
    match r {
        Err(SpawnError::Init { reason, .. }) => assert!(
            reason.to_string().contains("init was told to panic"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    let r = node.spawn(
        "counter",
        &Args {
            fail_in_init: true,
            ..args(0)
        },
        SpawnOptions::default(),
    );
    assert!(matches!(r, Err(SpawnError::Init { .. })), "{r:?}");
    let r = node.spawn("counter", &"wrong args", SpawnOptions::default());
    assert!(matches!(r, Err(SpawnError::Init { .. })), "{r:?}");
    assert_eq!(
        node.process_count(),
        0,
        "failed inits leave no process behind"
    );
    node.shutdown(T);
}

#[test]
fn stop_with_reply_then_exit() {
    let (node, _) = node_with_counter(2);
    let pid = node
        .spawn("counter", &args(0), SpawnOptions::default())
        .unwrap();
    let watch = node.watch(pid).unwrap();
    let r: Reply = node.call(pid, &Call::Stop("normal".into()), T).unwrap();
    assert_eq!(r, Reply::Ok);
    assert_eq!(watch.wait(Some(T)), Some(ExitReason::Normal));
    node.shutdown(T);
}

#[test]
fn timers_send_after_and_interval() {
    let (node, _) = node_with_counter(2);
    let a = Args {
        tick_ms: Some(10),
        ..args(0)
    };
    let pid = node.spawn("counter", &a, SpawnOptions::default()).unwrap();
    let r: Reply = node
        .call(pid, &Call::NoteAfter { ms: 30, n: 7 }, T)
        .unwrap();
    assert_eq!(r, Reply::Ok);
    let ticks_and_notes = || match node.call::<_, Reply>(pid, &Call::Describe, T) {
        Ok(Reply::Description { ticks, notes, .. }) => (ticks, notes),
        other => panic!("{other:?}"),
    };
    assert!(eventually(|| {
        let (ticks, notes) = ticks_and_notes();
        ticks >= 5 && notes == vec![7]
    }));
    assert_eq!(
        node.active_timers(),
        1,
        "the one-shot timer is gone, the interval stays"
    );
    node.exit(pid, ExitReason::Shutdown);
    node.wait_exit(pid, Some(T)).unwrap();
    assert!(
        eventually(|| node.active_timers() == 0),
        "the interval timer of a dead process is dropped"
    );
    node.shutdown(T);
}

#[test]
fn monitors_and_links() {
    let (node, _) = node_with_counter(2);
    let spawn = |name: &str, trap: bool| {
        let a = Args {
            trap_exit: trap,
            ..args(0)
        };
        node.spawn(
            "counter",
            &a,
            SpawnOptions {
                name: Some(name.into()),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let watcher = spawn("watcher", false);
    let watched = spawn("watched", false);
    let trapper = spawn("trapper", true);
    let linked = spawn("linked", false);
    let bystander = spawn("bystander", false);
    assert_eq!(
        node.call::<_, Reply>(watcher, &Call::Monitor("watched".into()), T)
            .unwrap(),
        Reply::Ok
    );
    assert_eq!(
        node.call::<_, Reply>(trapper, &Call::Link("linked".into()), T)
            .unwrap(),
        Reply::Ok
    );
    assert_eq!(
        node.call::<_, Reply>(bystander, &Call::Link("linked".into()), T)
            .unwrap(),
        Reply::Ok
    );

    let _ = node.call::<_, Reply>(watched, &Call::Panic("down".into()), T);
    assert!(eventually(|| matches!(
        node.call::<_, Reply>(watcher, &Call::DownOrder, T),
        Ok(Reply::Pids(p)) if p == vec![watched.0]
    )));
    assert!(
        node.is_alive(watcher),
        "a monitor does not kill the watcher"
    );

    let bystander_watch = node.watch(bystander).unwrap();
    let _ = node.call::<_, Reply>(linked, &Call::Panic("linked crash".into()), T);
    // The trapping process gets an Exit info and lives; the other linked process dies too.
    let reason = bystander_watch
        .wait(Some(T))
        .expect("the linked bystander dies");
    assert!(reason.to_string().contains("linked crash"), "{reason}");
    assert!(eventually(|| matches!(
        node.call::<_, Reply>(trapper, &Call::Describe, T),
        Ok(Reply::Description { exits: 1, .. })
    )));
    node.shutdown(T);
}

#[test]
fn normal_exit_does_not_kill_linked_processes() {
    let (node, _) = node_with_counter(2);
    let a = node
        .spawn(
            "counter",
            &args(0),
            SpawnOptions {
                name: Some("a".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let b = node
        .spawn("counter", &args(0), SpawnOptions::default())
        .unwrap();
    assert_eq!(
        node.call::<_, Reply>(b, &Call::Link("a".into()), T)
            .unwrap(),
        Reply::Ok
    );
    let _: Reply = node.call(a, &Call::Stop("normal".into()), T).unwrap();
    node.wait_exit(a, Some(T)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(node.is_alive(b));
    node.shutdown(T);
}

#[test]
fn process_to_process_calls_do_not_deadlock_a_two_thread_pool() {
    let (node, _) = node_with_counter(2);
    let server = node
        .spawn(
            "counter",
            &args(41),
            SpawnOptions {
                name: Some("server".into()),
                ..Default::default()
            },
        )
        .unwrap();
    // Eight callers, each blocking a worker in an inner call at once: without compensation,
    // two blocked workers would leave nobody to run the server.
    let callers: Vec<Pid> = (0..8)
        .map(|_| {
            node.spawn("counter", &args(0), SpawnOptions::default())
                .unwrap()
        })
        .collect();
    // Make the server slow so that the inner calls overlap.
    let slow = call_taken(&node, server, Call::Sleep(100));
    let handles: Vec<_> = callers
        .iter()
        .map(|&caller| {
            let node = node.clone();
            std::thread::spawn(move || {
                node.call::<_, Reply>(
                    caller,
                    &Call::CallGet {
                        target: "server".into(),
                        timeout_ms: 5000,
                    },
                    T,
                )
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap().unwrap(), Reply::Inner(Ok(41)));
    }
    assert_eq!(slow.join().unwrap().unwrap(), Reply::Ok);
    assert!(
        node.spare_threads_started() > 0,
        "blocked workers were compensated"
    );
    node.shutdown(T);
}

#[test]
fn an_inner_call_that_cannot_be_answered_times_out_cleanly() {
    let (node, _) = node_with_counter(2);
    let a = node
        .spawn(
            "counter",
            &args(0),
            SpawnOptions {
                name: Some("a".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let b = node
        .spawn(
            "counter",
            &args(0),
            SpawnOptions {
                name: Some("b".into()),
                ..Default::default()
            },
        )
        .unwrap();
    // a calls b while b sleeps longer than a's inner timeout.
    let sleeper = call_taken(&node, b, Call::Sleep(400));
    let r: Reply = node
        .call(
            a,
            &Call::CallGet {
                target: "b".into(),
                timeout_ms: 50,
            },
            T,
        )
        .unwrap();
    match r {
        Reply::Inner(Err(text)) => assert!(text.contains("timed out"), "{text}"),
        other => panic!("{other:?}"),
    }
    sleeper.join().unwrap().unwrap();
    // A process calling itself gets an error at once instead of waiting for itself.
    let r: Reply = node
        .call(
            a,
            &Call::CallGet {
                target: "a".into(),
                timeout_ms: 5000,
            },
            T,
        )
        .unwrap();
    assert!(
        matches!(r, Reply::Inner(Err(ref t)) if t.contains("itself")),
        "{r:?}"
    );
    node.shutdown(T);
}

#[test]
fn process_info_reports_module_version_and_mailbox() {
    let (node, _) = node_with_counter(2);
    let pid = node
        .spawn(
            "counter",
            &args(0),
            SpawnOptions {
                name: Some("x".into()),
                app: Some("app".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let info = node.process_info(pid).unwrap();
    assert_eq!(info.module.as_deref(), Some("counter"));
    assert_eq!(info.version.as_deref(), Some("1.0.0"));
    assert_eq!(info.name.as_deref(), Some("x"));
    assert_eq!(info.app.as_deref(), Some("app"));
    node.set_env("app", "ticker", relup_runtime::ConfigValue::Int(250));
    let r: Reply = node.call(pid, &Call::Env("ticker".into()), T).unwrap();
    assert_eq!(r, Reply::Value(Some("Int(250)".into())));
    let r: Reply = node.call(pid, &Call::Env("missing".into()), T).unwrap();
    assert_eq!(r, Reply::Value(None));
    node.shutdown(T);
}
