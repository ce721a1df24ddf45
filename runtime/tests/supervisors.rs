//! Supervisors over real cdylib workers: each restart strategy, restart types, intensity
//! escalation up a tree, ordered start and reverse shutdown, forced stop after a timeout,
//! simple_one_for_one, which_children and count_children.

mod common;

use common::{call_taken, eventually, node_with_counter};
use relup_fixture_counter_api::{Args, Call, Cast, Reply};
use relup_runtime::{
    ChildCounts, ChildSpec, ExitReason, Node, Pid, ProcessKind, Restart, Shutdown, Strategy,
    SupervisorSpec,
};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn worker(id: &str) -> ChildSpec {
    ChildSpec::worker(
        id,
        "counter",
        &Args {
            start: 1,
            ..Args::default()
        },
    )
    .named(id)
}

fn crash(node: &Node, name: &str) -> Pid {
    let pid = node.whereis(name).expect("child is running");
    node.cast(pid, &Cast::Panic).unwrap();
    pid
}

/// Waits until `name` is registered to a pid other than `old`.
fn restarted(node: &Node, name: &str, old: Pid) -> Pid {
    assert!(
        eventually(|| node.whereis(name).is_some_and(|p| p != old)),
        "{name} was not restarted"
    );
    node.whereis(name).unwrap()
}

fn pids(node: &Node, names: &[&str]) -> Vec<Option<Pid>> {
    names.iter().map(|n| node.whereis(n)).collect()
}

#[test]
fn one_for_one_restarts_only_the_crashed_child() {
    let (node, _) = node_with_counter(2);
    let spec = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![worker("a"), worker("b"), worker("c")],
    )
    .intensity(5, T);
    node.start_supervisor(spec, Some("sup")).unwrap();
    let before = pids(&node, &["a", "b", "c"]);
    let old_b = crash(&node, "b");
    let new_b = restarted(&node, "b", old_b);
    assert_eq!(pids(&node, &["a", "c"]), vec![before[0], before[2]]);
    assert_eq!(
        node.call::<_, Reply>(new_b, &Call::Get, T).unwrap(),
        Reply::Count(1),
        "restarted with its init args"
    );
    node.shutdown(T);
}

#[test]
fn one_for_all_restarts_every_child() {
    let (node, _) = node_with_counter(2);
    let spec = SupervisorSpec::new(
        Strategy::OneForAll,
        vec![worker("a"), worker("b"), worker("c")],
    )
    .intensity(5, T);
    node.start_supervisor(spec, Some("sup")).unwrap();
    let before = pids(&node, &["a", "b", "c"]);
    crash(&node, "b");
    for (name, old) in ["a", "b", "c"].iter().zip(before) {
        restarted(&node, name, old.unwrap());
    }
    node.shutdown(T);
}

#[test]
fn rest_for_one_restarts_the_crashed_child_and_those_after_it() {
    let (node, _) = node_with_counter(2);
    let spec = SupervisorSpec::new(
        Strategy::RestForOne,
        vec![worker("a"), worker("b"), worker("c")],
    )
    .intensity(5, T);
    node.start_supervisor(spec, Some("sup")).unwrap();
    let before = pids(&node, &["a", "b", "c"]);
    crash(&node, "b");
    restarted(&node, "b", before[1].unwrap());
    restarted(&node, "c", before[2].unwrap());
    assert_eq!(
        node.whereis("a"),
        before[0],
        "a child before the crashed one is untouched"
    );
    node.shutdown(T);
}

#[test]
fn restart_types_permanent_transient_temporary() {
    let (node, _) = node_with_counter(2);
    let children = vec![
        worker("perm"),
        worker("trans").restart(Restart::Transient),
        worker("trans2").restart(Restart::Transient),
        worker("temp").restart(Restart::Temporary),
    ];
    node.start_supervisor(
        SupervisorSpec::new(Strategy::OneForOne, children).intensity(10, T),
        Some("sup"),
    )
    .unwrap();
    // A transient child that exits normally is not restarted; one that crashes is.
    let t = node.whereis("trans").unwrap();
    let watch = node.watch(t).unwrap();
    let _: Reply = node.call(t, &Call::Stop("normal".into()), T).unwrap();
    watch.wait(Some(T)).unwrap();
    let t2 = crash(&node, "trans2");
    restarted(&node, "trans2", t2);
    // A temporary child is never restarted and its spec goes.
    let temp = node.whereis("temp").unwrap();
    let watch = node.watch(temp).unwrap();
    node.cast(temp, &Cast::Panic).unwrap();
    watch.wait(Some(T)).unwrap();
    // A permanent child comes back even after a normal exit.
    let p = node.whereis("perm").unwrap();
    let _: Reply = node.call(p, &Call::Stop("normal".into()), T).unwrap();
    restarted(&node, "perm", p);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(node.whereis("trans"), None);
    assert_eq!(node.whereis("temp"), None);
    let ids: Vec<(String, bool)> = node
        .which_children("sup")
        .unwrap()
        .into_iter()
        .map(|c| (c.id, c.pid.is_some()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("perm".into(), true),
            ("trans".into(), false),
            ("trans2".into(), true)
        ],
        "the temporary child's spec is gone, the transient one stays stopped"
    );
    node.shutdown(T);
}

#[test]
fn intensity_exceeded_escalates_up_the_tree() {
    let (node, logs) = node_with_counter(2);
    // inner: at most 1 restart in 5 s; outer restarts inner (permanent) at most 1 time.
    let inner = SupervisorSpec::new(Strategy::OneForOne, vec![worker("w")]).intensity(1, T);
    let outer = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![ChildSpec::supervisor("inner", inner).named("inner")],
    )
    .intensity(1, Duration::from_secs(5));
    let top = node.start_supervisor(outer, Some("outer")).unwrap();
    let top_watch = node.watch(top).unwrap();
    let inner1 = node.whereis("inner").unwrap();

    // First crash: inner restarts w (1 restart, within its intensity).
    let w1 = crash(&node, "w");
    let w2 = restarted(&node, "w", w1);
    assert_eq!(node.whereis("inner"), Some(inner1));
    // Second crash: inner exceeds its intensity and exits; outer restarts inner (and a new w).
    crash(&node, "w");
    let inner2 = restarted(&node, "inner", inner1);
    let w3 = restarted(&node, "w", w2);
    assert!(logs.contains("reached maximum restart intensity"));
    // Two more crashes: the new inner gives up again; outer exceeds its own intensity and exits.
    crash(&node, "w");
    restarted(&node, "w", w3);
    crash(&node, "w");
    let reason = top_watch
        .wait(Some(T))
        .expect("the top supervisor gives up");
    assert!(
        reason.to_string().contains("reached_max_restart_intensity"),
        "{reason}"
    );
    assert!(!node.is_alive(inner2));
    assert!(
        eventually(|| node.process_count() == 0),
        "the whole tree is gone"
    );
    node.shutdown(T);
}

#[test]
fn ordered_start_and_reverse_order_shutdown() {
    let (node, _) = node_with_counter(2);
    // An observer outside the tree monitors each child and records the order of their exits.
    let observer = node
        .spawn("counter", &Args::default(), Default::default())
        .unwrap();
    let spec = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![worker("a"), worker("b"), worker("c")],
    );
    let sup = node.start_supervisor(spec, Some("sup")).unwrap();
    let started: Vec<Pid> = node
        .which_children(sup)
        .unwrap()
        .into_iter()
        .map(|c| c.pid.unwrap())
        .collect();
    assert!(
        started.windows(2).all(|w| w[0] < w[1]),
        "children start in order: {started:?}"
    );
    for name in ["a", "b", "c"] {
        assert_eq!(
            node.call::<_, Reply>(observer, &Call::Monitor(name.into()), T)
                .unwrap(),
            Reply::Ok
        );
    }
    let watch = node.watch(sup).unwrap();
    node.exit(sup, ExitReason::Shutdown);
    assert_eq!(watch.wait(Some(T)), Some(ExitReason::Shutdown));
    let expected: Vec<u64> = started.iter().rev().map(|p| p.0).collect();
    assert!(eventually(|| matches!(
        node.call::<_, Reply>(observer, &Call::DownOrder, T),
        Ok(Reply::Pids(ref order)) if *order == expected
    )));
    node.shutdown(T);
}

#[test]
fn a_child_that_ignores_shutdown_is_killed_after_its_timeout() {
    let (node, logs) = node_with_counter(2);
    let spec = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![worker("slow").shutdown(Shutdown::Timeout(Duration::from_millis(100)))],
    );
    let sup = node.start_supervisor(spec, Some("sup")).unwrap();
    let slow = node.whereis("slow").unwrap();
    let slow_watch = node.watch(slow).unwrap();
    // Keep the child busy in a 3 s call, so it cannot take the shutdown signal.
    let busy = call_taken(&node, slow, Call::Sleep(3000));
    let started = std::time::Instant::now();
    node.terminate_child(sup, "slow").unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the supervisor did not wait for the busy child"
    );
    assert_eq!(slow_watch.reason(), Some(ExitReason::Killed));
    assert!(logs.contains("did not shut down in time"));
    // The abandoned call still finishes on its thread; the process stays dead.
    let _ = busy.join().unwrap();
    assert!(!node.is_alive(slow));
    // restart_child brings it back, delete_child needs it stopped.
    let again = node.restart_child(sup, "slow").unwrap();
    assert!(node.delete_child(sup, "slow").is_err());
    node.terminate_child(sup, "slow").unwrap();
    assert!(!node.is_alive(again));
    node.delete_child(sup, "slow").unwrap();
    assert_eq!(node.count_children(sup).unwrap(), ChildCounts::default());
    node.shutdown(T);
}

#[test]
fn brutal_kill_skips_terminate() {
    let (node, logs) = node_with_counter(2);
    let args = Args {
        panic_in_terminate: true,
        ..Args::default()
    };
    let child = ChildSpec::worker("k", "counter", &args)
        .named("k")
        .shutdown(Shutdown::BrutalKill);
    let sup = node
        .start_supervisor(SupervisorSpec::new(Strategy::OneForOne, vec![child]), None)
        .unwrap();
    let k = node.whereis("k").unwrap();
    let watch = node.watch(k).unwrap();
    node.terminate_child(sup, "k").unwrap();
    assert_eq!(watch.wait(Some(T)), Some(ExitReason::Killed));
    assert!(
        !logs.contains("terminate was told to panic"),
        "terminate did not run"
    );
    node.shutdown(T);
}

#[test]
fn simple_one_for_one_dynamic_children_and_counts() {
    let (node, _) = node_with_counter(2);
    let template =
        ChildSpec::worker("dyn", "counter", &Args::default()).restart(Restart::Transient);
    let sup = node
        .start_supervisor(
            SupervisorSpec::new(Strategy::SimpleOneForOne, vec![template]).intensity(10, T),
            Some("pool"),
        )
        .unwrap();
    let kids: Vec<Pid> = (0..5)
        .map(|i| {
            node.start_simple_child(
                "pool",
                &Args {
                    start: i,
                    ..Args::default()
                },
            )
            .unwrap()
        })
        .collect();
    assert_eq!(
        node.call::<_, Reply>(kids[3], &Call::Get, T).unwrap(),
        Reply::Count(3),
        "each child got its own args"
    );
    assert_eq!(
        node.count_children(sup).unwrap(),
        ChildCounts {
            specs: 5,
            active: 5,
            supervisors: 0,
            workers: 5
        }
    );
    // A crashed transient child is restarted with its own args.
    node.cast(kids[2], &Cast::Panic).unwrap();
    assert!(eventually(|| {
        node.which_children(sup)
            .unwrap()
            .iter()
            .all(|c| c.pid != Some(kids[2]))
            && node.count_children(sup).unwrap().active == 5
    }));
    let replaced = node
        .which_children(sup)
        .unwrap()
        .last()
        .unwrap()
        .pid
        .unwrap();
    assert_eq!(
        node.call::<_, Reply>(replaced, &Call::Get, T).unwrap(),
        Reply::Count(2)
    );
    node.terminate_simple_child(sup, kids[0]).unwrap();
    assert_eq!(node.count_children(sup).unwrap().active, 4);
    assert!(
        node.start_child(sup, worker("x")).is_err(),
        "static children are refused"
    );
    node.shutdown(T);
}

#[test]
fn nested_supervisors_report_kinds() {
    let (node, _) = node_with_counter(2);
    let inner = SupervisorSpec::new(Strategy::OneForOne, vec![worker("w1")]);
    let spec = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![worker("w0"), ChildSpec::supervisor("inner", inner)],
    );
    let sup = node.start_supervisor(spec, None).unwrap();
    let children = node.which_children(sup).unwrap();
    assert_eq!(
        children.iter().map(|c| c.kind).collect::<Vec<_>>(),
        vec![ProcessKind::Worker, ProcessKind::Supervisor]
    );
    assert_eq!(children[0].module.as_deref(), Some("counter"));
    assert_eq!(
        node.count_children(sup).unwrap(),
        ChildCounts {
            specs: 2,
            active: 2,
            supervisors: 1,
            workers: 1
        }
    );
    let inner_pid = children[1].pid.unwrap();
    assert_eq!(node.which_children(inner_pid).unwrap()[0].id, "w1");
    // A supervisor whose child fails to start fails to start, and leaves nothing behind.
    let bad = ChildSpec::worker(
        "bad",
        "counter",
        &Args {
            fail_in_init: true,
            ..Args::default()
        },
    );
    let r = node.start_supervisor(
        SupervisorSpec::new(Strategy::OneForOne, vec![worker("ok"), bad]),
        Some("bad_sup"),
    );
    assert!(r.is_err());
    assert_eq!(node.whereis("ok"), None);
    assert_eq!(node.whereis("bad_sup"), None);
    node.shutdown(T);
}
