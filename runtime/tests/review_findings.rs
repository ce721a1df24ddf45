//! Code findings 4 to 6 of issue 17, each shown by a test that failed before its fix:
//! registered names that leaked (a second name, `Node::apply`'s detached pid), a panicking
//! `config_change` that a process trapping exits survived, and the loader's soundness.

mod common;

use common::{Logs, eventually, node_with_counter};
use relup_fixture_counter_api::{Args, Call, PANIC_IN_CONFIG_CHANGE, Reply};
use relup_runtime::{
    ChildSpec, ConfigValue, ExitReason, Expect, LoadError, Node, Pid, Shutdown, SpawnOptions,
    Strategy, SupervisorSpec,
};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn args(start: i64) -> Args {
    Args {
        start,
        ..Args::default()
    }
}

/// Waits until `name` is registered to a live pid other than `old`.
fn restarted(node: &Node, name: &str, old: Pid) -> Option<Pid> {
    eventually(|| {
        node.whereis(name)
            .is_some_and(|p| p != old && node.is_alive(p))
    })
    .then(|| node.whereis(name))
    .flatten()
}

fn register(node: &Node, pid: Pid, name: &str) -> Reply {
    node.call(pid, &Call::Register(name.into()), T)
        .expect("the counter answers")
}

// Finding 4: a process holds one name; every name it held is freed when it exits.

#[test]
fn a_second_name_is_refused_and_the_first_is_freed_at_exit() {
    let (node, logs) = node_with_counter(2);
    let opts = SpawnOptions {
        name: Some("first".into()),
        ..Default::default()
    };
    let pid = node.spawn("counter", &args(1), opts).unwrap();
    assert_eq!(
        register(&node, pid, "first"),
        Reply::Count(1),
        "registering the name it holds again is accepted"
    );
    let second = register(&node, pid, "second");
    let second_holder = node.whereis("second");
    let watch = node.watch(pid).unwrap();
    assert!(node.exit(pid, ExitReason::Error("stopped by the test".into())));
    assert!(watch.wait(Some(T)).is_some(), "{pid} did not exit");
    assert_eq!(
        node.whereis("first"),
        None,
        "the first name still points at the dead {pid}"
    );
    assert_eq!(node.whereis("second"), None);
    assert_eq!(second, Reply::Count(0), "a second name must be refused");
    assert_eq!(second_holder, None);
    assert!(
        logs.contains("already registered as \"first\""),
        "the refusal names the name held: {:?}",
        logs.0.lock().unwrap()
    );
    node.shutdown(T);
}

#[test]
fn a_child_that_asked_for_a_second_name_is_restarted_under_its_own() {
    let (node, _) = node_with_counter(2);
    let child = ChildSpec::worker("first", "counter", &args(1)).named("first");
    let spec = SupervisorSpec::new(Strategy::OneForOne, vec![child]).intensity(3, T);
    node.start_supervisor(spec, Some("sup")).unwrap();
    let old = node.whereis("first").expect("the child runs");
    let _ = register(&node, old, "second");
    assert!(node.exit(old, ExitReason::Killed));
    let new = restarted(&node, "first", old);
    assert!(
        new.is_some(),
        "the child was not restarted: its name still points at the dead {old}"
    );
    assert!(node.is_alive(node.whereis("sup").expect("the supervisor runs")));
    node.shutdown(T);
}

fn apply<R: serde::de::DeserializeOwned>(
    node: &Node,
    function: &str,
    args: &impl serde::Serialize,
) -> R {
    let counter = node.code().current("counter").expect("counter is loaded");
    let args = relup_module::codec::encode(args).expect("args encode");
    let out = node
        .apply(&counter, function, &args)
        .unwrap_or_else(|e| panic!("apply {function}: {e}"));
    relup_module::codec::decode(&out).expect("the result decodes")
}

#[test]
fn a_name_registered_by_an_apply_is_freed_when_it_returns() {
    let (node, _) = node_with_counter(2);
    let registered: bool = apply(&node, "register", &"applied");
    assert!(registered, "the apply could not register");
    assert_eq!(
        node.whereis("applied"),
        None,
        "the name registered by an apply outlives it"
    );
    let again: bool = apply(&node, "register", &"applied");
    assert!(again);
    assert_eq!(node.whereis("applied"), None);
    node.shutdown(T);
}

#[test]
fn a_listener_opened_by_an_apply_closes_when_it_returns() {
    let (node, _) = node_with_counter(2);
    let addr: String = apply(&node, "listen", &());
    assert!(
        eventually(|| node.ports().is_empty()),
        "the listener on {addr} opened by an apply is still open: {:?}",
        node.ports()
    );
    node.shutdown(T);
}

// Finding 5: a panicking config_change crashes the process, trapping exits or not.

fn panic_change() -> relup_module::ConfigChange {
    relup_module::ConfigChange {
        changed: vec![(PANIC_IN_CONFIG_CHANGE.into(), ConfigValue::Bool(true))],
        new: Vec::new(),
        removed: Vec::new(),
    }
}

fn crashes_on_config_change(trap_exit: bool) -> (Option<ExitReason>, Logs) {
    let (node, logs) = node_with_counter(2);
    let args = Args {
        start: 1,
        trap_exit,
        ..Args::default()
    };
    let pid = node
        .spawn("counter", &args, SpawnOptions::default())
        .unwrap();
    let watch = node.watch(pid).unwrap();
    assert!(node.config_change(pid, &panic_change()));
    let reason = watch.wait(Some(T));
    node.shutdown(T);
    (reason, logs)
}

#[test]
fn a_panicking_config_change_crashes_a_process_that_traps_exits() {
    let (reason, _) = crashes_on_config_change(true);
    match reason {
        Some(ExitReason::Error(why)) => assert!(why.contains("config_change"), "{why}"),
        other => {
            panic!("the process trapping exits ran on after config_change panicked: {other:?}")
        }
    }
}

#[test]
fn a_panicking_config_change_crashes_a_process_that_does_not_trap_exits() {
    let (reason, _) = crashes_on_config_change(false);
    match reason {
        Some(ExitReason::Error(why)) => assert!(why.contains("config_change"), "{why}"),
        other => panic!("the process ran on after config_change panicked: {other:?}"),
    }
}

#[test]
fn a_supervised_child_whose_config_change_panics_is_restarted_with_a_fresh_state() {
    let (node, _) = node_with_counter(2);
    let args = Args {
        start: 7,
        trap_exit: true,
        ..Args::default()
    };
    // The counter trapping exits ignores the supervisor's shutdown signal: killed at the end.
    let child = ChildSpec::worker("cfg", "counter", &args)
        .named("cfg")
        .shutdown(Shutdown::BrutalKill);
    let spec = SupervisorSpec::new(Strategy::OneForOne, vec![child]).intensity(3, T);
    node.start_supervisor(spec, Some("sup")).unwrap();
    let old = node.whereis("cfg").expect("the child runs");
    assert!(node.config_change(old, &panic_change()));
    let new = restarted(&node, "cfg", old);
    let Some(new) = new else {
        let state: Result<Reply, _> = node.call(old, &Call::Get, T);
        panic!("the child was not restarted; it answers {state:?}");
    };
    let state: Reply = node.call(new, &Call::Get, T).unwrap();
    assert_eq!(state, Reply::Count(7));
    node.shutdown(T);
}

// Finding 6: the loader refuses a descriptor with a null entry point, and checks the sha256
// of the private copy it opens.

#[test]
fn a_descriptor_with_a_null_entry_point_is_refused() {
    let (node, _) = common::node(1);
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let loaded = unsafe {
        node.code()
            .load(&common::fixtures().null_entry_point, &Expect::default())
    };
    let err = match loaded {
        Ok(module) => panic!(
            "a descriptor with a null entry point loaded as {} {}",
            module.name(),
            module.version()
        ),
        Err(err) => err,
    };
    assert!(matches!(err, LoadError::BadDescriptor { .. }), "{err}");
    assert!(
        err.to_string().contains("entry point `health` is null"),
        "{err}"
    );
    node.shutdown(T);
}

#[test]
fn a_library_whose_bytes_are_not_the_expected_sha256_is_refused() {
    let (node, _) = common::node(1);
    let fixtures = common::fixtures();
    let v1_sha = common::sha256(&fixtures.counter_v1);
    // counter 2.0.0 offered as the bytes whose sha256 is 1.0.0's (the file changed after it
    // was hashed, or the caller hashed another file).
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let wrong = unsafe {
        node.code()
            .load_verified(&fixtures.counter_v2, &Expect::default(), &v1_sha)
    };
    let loaded_as = wrong.as_ref().map(|m| m.version().to_string());
    // Had it been trusted, its image would now serve every load of 1.0.0's digest.
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let v1 = unsafe {
        node.code()
            .load_verified(&fixtures.counter_v1, &Expect::default(), &v1_sha)
    }
    .expect("counter 1.0.0 loads");
    assert_eq!(
        v1.version().to_string(),
        "1.0.0",
        "a load of 1.0.0's bytes got another image"
    );
    match wrong {
        Err(err @ LoadError::Digest { .. }) => {
            assert!(err.to_string().contains(&v1_sha), "{err}")
        }
        Err(other) => panic!("refused, but not for its digest: {other}"),
        Ok(_) => panic!("loaded {loaded_as:?} under 1.0.0's sha256"),
    }
    node.shutdown(T);
}
