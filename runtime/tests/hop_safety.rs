//! The upgrade promise under faults inside a hop (issue 17): a panic during a hop, a
//! `code_change` that never returns, and processes started or restarted while a hop holds
//! their module. After any failure before commit, every process runs its old code and state.

mod common;

use common::{eventually, fixtures, known_release, node, release_dir};
use relup_appup::{Appup, KnownRelease};
use relup_fixture_counter_api::{Call, Cast, Reply};
use relup_runtime::Node;
use relup_runtime::install::{
    BootedRelease, HopTarget, InstallError, InstallOptions, Journal, Progress, boot_release,
    run_hop,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn appup(extra: &str) -> String {
    format!(
        r#"application = "app"
version = "0.2.0"

[[up]]
from = "0.1.0"
instructions = [ {{ update = "counter", extra = "{extra}" }} ]

[[down]]
to = "0.1.0"
instructions = [ {{ update = "counter" }} ]
"#
    )
}

/// Releases 0.1.0 (counter 1.0.0, children c1 and c2) and 0.2.0 (counter 2.0.0 from `lib2`,
/// its code_change given `extra`), booted at 0.1.0.
struct World {
    node: Node,
    dirs: Vec<PathBuf>,
    known: Vec<KnownRelease>,
    journal: Journal,
    booted: BootedRelease,
}

impl World {
    fn new(name: &str, lib2: &Path, extra: &str) -> World {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("hop-safety-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let f = fixtures();
        let dirs = vec![
            release_dir(&base, "0.1.0", &f.counter_v1, "1.0.0", None),
            release_dir(&base, "0.2.0", lib2, "2.0.0", Some(&appup(extra))),
        ];
        let known: Vec<KnownRelease> = dirs.iter().map(|dir| known_release(dir)).collect();
        let (node, _) = node(2);
        let booted = boot_release(&node, &known[0].release, &dirs[0]).unwrap();
        World {
            node,
            dirs,
            known,
            journal: Journal::new(&base.join("log/upgrade.log")),
            booted,
        }
    }

    /// Runs the hop 0.1.0 -> 0.2.0 with `opts`, each progress event passed to `progress`.
    fn upgrade(
        &self,
        opts: &InstallOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<BootedRelease, InstallError> {
        let plan =
            relup_appup::plan(&self.booted.release, &self.known[1].release, &self.known).unwrap();
        let target = HopTarget {
            hop: &plan.hops[0],
            release: &self.known[1].release,
            dir: &self.dirs[1],
        };
        run_hop(
            &self.node,
            &self.booted,
            target,
            opts,
            &self.journal,
            progress,
        )
        .map(|outcome| outcome.booted)
    }

    fn describe(&self, name: &str) -> (String, i64, i64) {
        match self.node.call::<_, Reply>(name, &Call::Describe, T) {
            Ok(Reply::Description {
                version,
                count,
                bonus,
                ..
            }) => (version, count, bonus),
            other => panic!("{name} answered {other:?}"),
        }
    }

    fn current_counter(&self) -> String {
        self.node
            .code()
            .current("counter")
            .map(|m| m.version().to_string())
            .unwrap_or_default()
    }
}

/// Finding 2: the embedder's progress callback panics right after a step. Before the commit
/// the hop fails and is rolled back, so every process answers on its old code and state and
/// a later install of the same hop succeeds; the code_change's event is told only after the
/// commit (no progress while processes are suspended), so a panic there leaves the hop done.
/// On the old code the panic unwound through run_hop and left counter 2.0.0 current.
#[test]
fn a_progress_callback_that_panics_mid_hop_leaves_the_old_release() {
    for panic_after in ["load counter", "suspend counter", "code_change counter"] {
        let w = World::new(
            &format!("panic-{}", panic_after.replace(' ', "-")),
            &fixtures().counter_v2,
            "",
        );
        w.node.cast("c1", &Cast::Add(5)).unwrap();
        assert_eq!(w.describe("c1"), ("1.0.0".into(), 6, 0));
        let mut told_after_panic = Vec::new();
        let mut panicked = false;
        let result = w.upgrade(&InstallOptions::default(), &mut |p| {
            if panicked {
                told_after_panic.push(p.step.clone());
            }
            if p.ok && p.step.starts_with(panic_after) {
                panicked = true;
                panic!("the progress callback panics after {}", p.step);
            }
        });
        assert!(panicked, "{panic_after}");
        assert!(told_after_panic.is_empty(), "{told_after_panic:?}");
        let journal = w.journal.read().unwrap();
        assert!(
            journal.contains("the progress callback panicked"),
            "panic after {panic_after}: {journal}"
        );
        if panic_after.starts_with("code_change") {
            assert!(result.is_ok(), "the commit came first: {result:?}");
            assert_eq!(w.current_counter(), "2.0.0");
            assert_eq!(w.describe("c1"), ("2.0.0".into(), 6, 100));
            w.node.shutdown(T);
            continue;
        }
        match &result {
            Err(InstallError::ProgressPanicked { step, message }) => {
                assert!(step.starts_with(panic_after), "{step}");
                assert!(
                    message.contains("the progress callback panics"),
                    "{message}"
                );
            }
            other => panic!("panic after {panic_after}: {other:?}"),
        }
        assert_eq!(w.current_counter(), "1.0.0", "after {panic_after}");
        assert_eq!(
            w.describe("c1"),
            ("1.0.0".into(), 6, 0),
            "old code, old state, resumed (panic after {panic_after})"
        );
        assert_eq!(w.describe("c2"), ("1.0.0".into(), 2, 0));
        // Nothing is left staged or held: the same hop now goes through.
        let booted = w.upgrade(&InstallOptions::default(), &mut |_| {});
        assert!(booted.is_ok(), "{booted:?}");
        assert_eq!(w.describe("c1"), ("2.0.0".into(), 6, 100));
        w.node.shutdown(T);
    }
}

/// Finding 7: on the single-module (fused) path a `code_change` that never returns used to
/// hold the hop, and the install lock, for ever (the timeout was checked after every
/// migration returned). The hop now gives up at the code_change timeout, names the stuck
/// process and rolls back; every process answers on its old code and state.
#[test]
fn a_code_change_that_never_returns_fails_the_hop_at_its_timeout() {
    let w = std::sync::Arc::new(World::new("hang", &fixtures().counter_hang, ""));
    w.node.cast("c1", &Cast::Add(5)).unwrap();
    assert_eq!(w.describe("c1"), ("1.0.0".into(), 6, 0));
    let pids = [w.node.whereis("c1").unwrap(), w.node.whereis("c2").unwrap()];
    let (tx, rx) = std::sync::mpsc::channel();
    let world = w.clone();
    std::thread::spawn(move || {
        let opts = InstallOptions {
            code_change_timeout: Duration::from_millis(200),
            ..InstallOptions::default()
        };
        let _ = tx.send(world.upgrade(&opts, &mut |_| {}));
    });
    // A bound on a failure, not a timing assert: on the old code the hop never returns.
    let result = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the hop returns once its code_change timeout has passed");
    match result {
        Err(InstallError::CodeChange {
            pid, reason, step, ..
        }) => {
            assert!(step.starts_with("code_change counter"), "{step}");
            assert!(pids.contains(&pid), "{pid} is one of {pids:?}");
            assert!(
                reason.contains("did not return") && reason.contains(&pid.to_string()),
                "{reason}"
            );
        }
        other => panic!("expected a code_change error, got {other:?}"),
    }
    assert_eq!(w.current_counter(), "1.0.0");
    assert_eq!(w.describe("c1"), ("1.0.0".into(), 6, 0));
    assert_eq!(w.describe("c2"), ("1.0.0".into(), 2, 0));
    assert_eq!(w.node.whereis("c1"), Some(pids[0]), "the same process");
    assert!(w.journal.read().unwrap().contains("rollback"));
}

/// Finding 7: progress is not told while the hop holds processes suspended, so a consumer
/// that blocks (a control client that stops reading) cannot stretch the pause. Each event
/// here calls a process of the hop; on the old code the call made while it was suspended
/// timed out.
#[test]
fn progress_is_told_only_while_no_process_is_suspended() {
    for extra in ["", "fail"] {
        let w = World::new(&format!("progress-{extra}"), &fixtures().counter_v2, extra);
        let mut answers = Vec::new();
        let result = w.upgrade(&InstallOptions::default(), &mut |p| {
            let answer = w
                .node
                .call::<_, Reply>("c1", &Call::Get, Duration::from_secs(5));
            answers.push((p.step.clone(), answer.is_ok()));
        });
        assert_eq!(result.is_ok(), extra.is_empty(), "{result:?}");
        assert!(
            answers
                .iter()
                .any(|(step, _)| step.starts_with("code_change")),
            "{answers:?}"
        );
        assert!(answers.iter().all(|(_, ok)| *ok), "{answers:?}");
        w.node.shutdown(T);
    }
}

/// Finding 1: a child of the module a hop holds crashes between `load` (the new version is
/// current) and the code_change. Its supervisor restarts it only once the hop is over, on
/// the version then current: the old one after a rollback (a failing code_change), the new
/// one after a commit. On the old code it came back at once on the new code, stayed on it
/// after the rollback, and (its old pid gone from the hop's list) failed the hop with a
/// suspend timeout.
#[test]
fn a_child_restarted_mid_hop_ends_on_the_code_the_hop_leaves() {
    for (extra, after) in [("fail", "1.0.0"), ("", "2.0.0")] {
        let w = World::new(&format!("restart-{extra}"), &fixtures().counter_v2, extra);
        w.node.cast("c1", &Cast::Add(5)).unwrap();
        assert_eq!(w.describe("c1"), ("1.0.0".into(), 6, 0));
        let old = w.node.whereis("c1").unwrap();
        let result = w.upgrade(&InstallOptions::default(), &mut |p| {
            if p.ok && p.step.starts_with("load counter") {
                assert!(
                    w.node
                        .exit(old, relup_runtime::ExitReason::Error("boom".into()))
                );
                assert!(eventually(|| !w.node.is_alive(old)), "c1 exits");
            }
        });
        if extra.is_empty() {
            assert!(result.is_ok(), "{result:?}");
        } else {
            match &result {
                Err(InstallError::CodeChange { reason, .. }) => {
                    assert!(reason.contains("refused"), "{reason}")
                }
                other => panic!("expected the code_change to fail, got {other:?}"),
            }
        }
        assert!(
            eventually(|| w.node.whereis("c1").is_some_and(|pid| pid != old)),
            "c1 is restarted after the hop"
        );
        assert_eq!(
            w.describe("c1"),
            (after.to_string(), 1, 0),
            "a fresh c1 on {after} (extra {extra:?})"
        );
        assert_eq!(w.current_counter(), after);
        w.node.shutdown(T);
    }
}

/// Finding 3: an appup `apply` that calls a process of a module its own hop keeps suspended
/// (resumes wait for the commit). The call is served, on the new code, instead of waiting out
/// its timeout and failing the hop every time; the hop commits. On the old code the apply's
/// call timed out ("c1 did not answer") and the hop rolled back.
#[test]
fn an_apply_that_calls_a_process_its_hop_suspended_is_answered() {
    let w = World::new("apply-calls-suspended", &fixtures().counter_v2, "x");
    // The hop's plan: update counter (suspend, load, code_change, resume at commit), then
    // the apply, which calls c1.
    let text = std::fs::read_to_string(w.dirs[1].join("appup.toml")).unwrap();
    let with_apply = text.replacen(
        "instructions = [ { update = \"counter\", extra = \"x\" } ]",
        "instructions = [ { update = \"counter\", extra = \"x\" }, { apply = \"counter\", function = \"ask_c1\" } ]",
        1,
    );
    assert_ne!(text, with_apply, "the appup changed shape");
    let mut w = w;
    w.known[1].appups = vec![Appup::parse(&with_apply, "appup.toml").unwrap()];
    w.node.call::<_, Reply>("c1", &Call::Add(5), T).unwrap();
    let before = w.describe("c1").1;
    let booted = w.upgrade(&InstallOptions::default(), &mut |_| {});
    assert!(booted.is_ok(), "the hop failed: {:?}", booted.err());
    assert_eq!(w.current_counter(), "2.0.0");
    let (version, count, _) = w.describe("c1");
    assert_eq!((version.as_str(), count), ("2.0.0", before));
}

/// Finding 3, the rollback side: the apply's call is answered by the new code, then a later
/// step fails: the hop rolls back and c1 is on its old code and state, as after any failure
/// before commit.
#[test]
fn a_hop_that_fails_after_such_a_call_still_rolls_back_to_the_old_state() {
    let w = World::new("apply-calls-then-fails", &fixtures().counter_v2, "x");
    let text = std::fs::read_to_string(w.dirs[1].join("appup.toml")).unwrap();
    let failing = text.replacen(
        "instructions = [ { update = \"counter\", extra = \"x\" } ]",
        "instructions = [ { update = \"counter\", extra = \"x\" }, { apply = \"counter\", function = \"ask_c1\" }, { apply = \"counter\", function = \"fail\" } ]",
        1,
    );
    assert_ne!(text, failing, "the appup changed shape");
    let mut w = w;
    w.known[1].appups = vec![Appup::parse(&failing, "appup.toml").unwrap()];
    w.node.call::<_, Reply>("c1", &Call::Add(5), T).unwrap();
    let before = w.describe("c1");
    let err = w
        .upgrade(&InstallOptions::default(), &mut |_| {})
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("apply was told to fail"), "{err}");
    assert_eq!(w.current_counter(), "1.0.0");
    assert_eq!(w.describe("c1"), before);
}

/// Counter args that register the child as `name` and start at 1.
fn counter_args(name: &str) -> relup_fixture_counter_api::Args {
    relup_fixture_counter_api::Args {
        start: 1,
        register_as: Some(name.to_string()),
        ..Default::default()
    }
}

/// Runs the hop with `start` called from another thread right after the `load counter`
/// step (the hop holds counter, 2.0.0 is current), then returns the hop's result and what
/// `start` returned once that thread is joined.
fn start_mid_hop<R: Send + 'static>(
    w: &World,
    start: impl FnOnce(Node) -> R + Send + 'static,
) -> (Result<BootedRelease, InstallError>, R) {
    let mut start = Some(start);
    let mut thread = None;
    let result = w.upgrade(&InstallOptions::default(), &mut |p| {
        if p.ok
            && p.step.starts_with("load counter")
            && let Some(start) = start.take()
        {
            let node = w.node.clone();
            let (done, returned) = std::sync::mpsc::channel();
            thread = Some(std::thread::spawn(move || {
                let started = start(node);
                let _ = done.send(());
                started
            }));
            // A start that is not held back returns at once: wait for that (the old code's
            // way), or 2 s for one held back until the hop ends.
            let _ = returned.recv_timeout(Duration::from_secs(2));
        }
    });
    let started = thread.expect("the load step was told").join().unwrap();
    (result, started)
}

/// Finding 1, an explicit `start_child` (the embedder's, not the hop's) of a module a hop
/// holds: the start waits for the hop to end and runs the version then current, the old one
/// after a rollback, the new one after a commit. On the old code it started at once on the
/// new code (current since `load`) and stayed on it after the rollback.
#[test]
fn a_child_started_explicitly_mid_hop_runs_the_code_the_hop_leaves() {
    for (extra, after) in [("fail", "1.0.0"), ("", "2.0.0")] {
        let w = World::new(&format!("start-{extra}"), &fixtures().counter_v2, extra);
        let sup = w.booted.apps["app"];
        let (result, started) = start_mid_hop(&w, move |node| {
            let mut spec = relup_runtime::ChildSpec::worker("c3", "counter", &counter_args("c3"));
            // Not restarted: a start that a rollback had to kill does not come back.
            spec.restart = relup_runtime::Restart::Temporary;
            node.start_child(sup, spec)
        });
        assert_eq!(result.is_ok(), extra.is_empty(), "{:?}", result.err());
        let pid = started.expect("the start succeeds once the hop is over");
        assert_eq!(w.node.whereis("c3"), Some(pid));
        assert_eq!(
            w.describe("c3"),
            (after.to_string(), 1, 0),
            "c3 runs {after} (extra {extra:?})"
        );
        w.node.shutdown(T);
    }
}

/// Finding 1, nested supervisors: a supervisor started mid-hop starts at once, but its
/// children of the held module wait for the hop to end and run the version then current.
/// On the old code they started on the new code and stayed on it after the rollback.
#[test]
fn a_nested_supervisor_started_mid_hop_starts_its_children_on_the_code_the_hop_leaves() {
    for (extra, after) in [("fail", "1.0.0"), ("", "2.0.0")] {
        let w = World::new(&format!("nested-{extra}"), &fixtures().counter_v2, extra);
        let sup = w.booted.apps["app"];
        let (result, started) = start_mid_hop(&w, move |node| {
            let mut child = relup_runtime::ChildSpec::worker("n1", "counter", &counter_args("n1"));
            child.restart = relup_runtime::Restart::Temporary;
            let nested =
                relup_runtime::SupervisorSpec::new(relup_runtime::Strategy::OneForOne, vec![child]);
            node.start_child(sup, relup_runtime::ChildSpec::supervisor("nested", nested))
        });
        assert_eq!(result.is_ok(), extra.is_empty(), "{:?}", result.err());
        started.expect("the nested supervisor starts");
        assert!(
            eventually(|| w.node.whereis("n1").is_some()),
            "n1 is started after the hop"
        );
        assert_eq!(
            w.describe("n1"),
            (after.to_string(), 1, 0),
            "n1 runs {after} (extra {extra:?})"
        );
        w.node.shutdown(T);
    }
}

/// Makes c2 busy (a 1.5 s call in another thread) and c1 busy mid-call to c2 (its `Get` is
/// queued behind the sleep); returns once both are so, with the threads to join.
fn c1_mid_call_to_busy_c2(w: &World) -> Vec<std::thread::JoinHandle<Option<Reply>>> {
    let node = w.node.clone();
    let sleeper = std::thread::spawn(move || node.call("c2", &Call::Sleep(1500), T).ok());
    // c2 is busy once a quick call to it times out (that call stays queued behind the sleep).
    assert!(
        eventually(|| w
            .node
            .call::<_, Reply>("c2", &Call::Get, Duration::from_millis(20))
            .is_err()),
        "c2 is busy"
    );
    let node = w.node.clone();
    let caller = std::thread::spawn(move || {
        let ask = Call::CallGet {
            target: "c2".into(),
            timeout_ms: 8000,
        };
        node.call("c1", &ask, T).ok()
    });
    let c2 = w.node.whereis("c2").unwrap();
    assert!(
        eventually(|| w.node.process_info(c2).is_some_and(|i| i.mailbox_len >= 2)),
        "c1's call waits in c2's mailbox"
    );
    vec![sleeper, caller]
}

/// Finding 3, the busy caller: a process is mid-call to another process of the same hop when
/// the hop suspends them; the callee gets suspended first. It still answers the call (before
/// any migration), so the caller finishes its message and is suspended in turn, and the hop
/// commits. On the old code the callee held the call until the suspend timeout ran out, and
/// the hop failed every time.
#[test]
fn a_process_mid_call_to_one_its_hop_suspended_first_is_answered() {
    let w = World::new("mid-call", &fixtures().counter_v2, "");
    let threads = c1_mid_call_to_busy_c2(&w);
    let opts = InstallOptions {
        suspend_timeout: Duration::from_secs(4),
        ..InstallOptions::default()
    };
    let booted = w.upgrade(&opts, &mut |_| {});
    assert!(booted.is_ok(), "the hop failed: {:?}", booted.err());
    let replies: Vec<Option<Reply>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(replies[1], Some(Reply::Inner(Ok(2))), "c1 got c2's count");
    for (name, count) in [("c1", 1), ("c2", 2)] {
        let (version, got, _) = w.describe(name);
        assert_eq!((version.as_str(), got), ("2.0.0", count), "{name}");
    }
}

/// The same through `Node::suspend` (the path of hops that update several modules): the
/// suspend succeeds, and the processes stay suspended until resumed.
#[test]
fn suspend_lets_a_suspended_process_answer_a_busy_one_of_the_same_request() {
    let w = World::new("suspend-mid-call", &fixtures().counter_v2, "");
    let threads = c1_mid_call_to_busy_c2(&w);
    let pids = [w.node.whereis("c2").unwrap(), w.node.whereis("c1").unwrap()];
    let suspended = w.node.suspend(&pids, Duration::from_secs(4));
    assert!(suspended.is_ok(), "{suspended:?}");
    assert!(
        pids.iter()
            .all(|&p| w.node.process_info(p).is_some_and(|i| i.suspended))
    );
    // Another caller is not let in while they are suspended.
    let late = w
        .node
        .call::<_, Reply>("c1", &Call::Get, Duration::from_millis(200));
    assert!(late.is_err(), "c1 answered while suspended: {late:?}");
    w.node.resume(&pids);
    let replies: Vec<Option<Reply>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(replies[1], Some(Reply::Inner(Ok(2))), "c1 got c2's count");
}
