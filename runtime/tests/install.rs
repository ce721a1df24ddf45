//! Installing releases on a running node from real release directories (real cdylibs,
//! release.toml, appup.toml): boot, upgrade, downgrade, multi-hop, and rollback on failure.

mod common;

use common::{fixtures, known_release, node, release_dir};
use relup_appup::KnownRelease;
use relup_fixture_counter_api::{Call, Cast, Reply};
use relup_runtime::Node;
use relup_runtime::install::{
    BootedRelease, HopTarget, InstallError, InstallOptions, Journal, Progress, boot_release,
    run_hop,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn appup(version: &str, from: &str, extra: &str) -> String {
    format!(
        r#"application = "app"
version = "{version}"

[[up]]
from = "{from}"
instructions = [ {{ update = "counter", extra = "{extra}" }} ]

[[down]]
to = "{from}"
instructions = [ {{ update = "counter" }} ]
"#
    )
}

struct World {
    node: Node,
    dirs: Vec<PathBuf>,
    known: Vec<KnownRelease>,
    journal: Journal,
}

impl World {
    /// Releases 0.1.0 (counter 1.0.0), 0.2.0 (counter 2.0.0) and 0.3.0 (counter 1.0.0 code
    /// as module version 1.0.0 again, reached from 0.2.0 only, with `extra3`).
    fn new(name: &str, extra2: &str, extra3: &str) -> World {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("install-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let f = fixtures();
        let dirs = vec![
            release_dir(&base, "0.1.0", &f.counter_v1, "1.0.0", None),
            release_dir(
                &base,
                "0.2.0",
                &f.counter_v2,
                "2.0.0",
                Some(&appup("0.2.0", "0.1.0", extra2)),
            ),
            release_dir(
                &base,
                "0.3.0",
                &f.counter_v1,
                "1.0.0",
                Some(&appup("0.3.0", "0.2.0", extra3)),
            ),
        ];
        let known = dirs.iter().map(|dir| known_release(dir)).collect();
        let (node, _) = node(2);
        World {
            node,
            dirs,
            known,
            journal: Journal::new(&base.join("log/upgrade.log")),
        }
    }

    fn boot(&self) -> BootedRelease {
        boot_release(&self.node, &self.known[0].release, &self.dirs[0]).unwrap()
    }

    fn index(&self, version: &str) -> usize {
        self.known
            .iter()
            .position(|k| k.release.version.to_string() == version)
            .unwrap()
    }

    /// Plans from `booted` to `version` and runs every hop; returns the release reached and
    /// the first error.
    fn install(
        &self,
        booted: BootedRelease,
        version: &str,
    ) -> (BootedRelease, Option<InstallError>, Vec<Progress>) {
        let target = &self.known[self.index(version)].release;
        let plan = relup_appup::plan(&booted.release, target, &self.known).unwrap();
        let mut steps = Vec::new();
        let mut booted = booted;
        for hop in &plan.hops {
            let i = self.index(&hop.to.to_string());
            let target = HopTarget {
                hop,
                release: &self.known[i].release,
                dir: &self.dirs[i],
            };
            match run_hop(
                &self.node,
                &booted,
                target,
                &InstallOptions::default(),
                &self.journal,
                &mut |p| steps.push(p.clone()),
            ) {
                Ok(outcome) => booted = outcome.booted,
                Err(e) => return (booted, Some(e), steps),
            }
        }
        (booted, None, steps)
    }

    fn describe(&self, name: &str) -> (String, i64, i64) {
        match self
            .node
            .call::<_, Reply>(name, &Call::Describe, T)
            .unwrap()
        {
            Reply::Description {
                version,
                count,
                bonus,
                ..
            } => (version, count, bonus),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn boot_upgrade_and_downgrade_keep_state_and_processes() {
    let w = World::new("updown", "", "");
    let booted = w.boot();
    let c1 = w.node.whereis("c1").unwrap();
    w.node.call::<_, Reply>("c1", &Call::Add(10), T).unwrap();
    assert_eq!(w.describe("c1"), ("1.0.0".into(), 11, 0));

    let (booted, error, steps) = w.install(booted, "0.2.0");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(booted.release.version.to_string(), "0.2.0");
    assert_eq!(
        w.describe("c1"),
        ("2.0.0".into(), 11, 100),
        "state kept, migrated up"
    );
    assert_eq!(w.describe("c2"), ("2.0.0".into(), 2, 100));
    assert_eq!(
        w.node.whereis("c1"),
        Some(c1),
        "the same process, not a restart"
    );
    assert!(
        steps
            .iter()
            .any(|p| p.step.starts_with("code_change counter up")
                && p.detail.starts_with("2 state(s) migrated")),
        "{steps:?}"
    );
    assert!(steps.last().unwrap().step == "commit");

    let (booted, error, _) = w.install(booted, "0.1.0");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(booted.release.version.to_string(), "0.1.0");
    assert_eq!(w.describe("c1"), ("1.0.0".into(), 11, 0), "migrated down");
    let journal = w.journal.read().unwrap();
    assert!(
        journal.contains("hop=0.1.0 -> 0.2.0 step=\"commit\" ok"),
        "{journal}"
    );
    assert!(
        journal.contains("hop=0.2.0 -> 0.1.0 step=\"commit\" ok"),
        "{journal}"
    );
    w.node.shutdown(T);
}

#[test]
fn a_failing_code_change_leaves_exactly_the_old_release() {
    let w = World::new("fail", "fail", "");
    let booted = w.boot();
    w.node.cast("c1", &Cast::Add(5)).unwrap();
    let (booted, error, steps) = w.install(booted, "0.2.0");
    let error = error.expect("the install fails");
    match &error {
        InstallError::CodeChange {
            module,
            reason,
            pid,
            step,
        } => {
            assert_eq!(module, "counter");
            assert!(reason.contains("refused"), "{reason}");
            assert!(step.starts_with("code_change counter"), "{step}");
            assert!(w.node.is_alive(*pid));
        }
        other => panic!("{other}"),
    }
    assert_eq!(booted.release.version.to_string(), "0.1.0");
    assert_eq!(
        w.describe("c1"),
        ("1.0.0".into(), 6, 0),
        "old code, old state, resumed"
    );
    assert_eq!(
        w.node
            .code()
            .current("counter")
            .unwrap()
            .version()
            .to_string(),
        "1.0.0"
    );
    assert!(steps.iter().any(|p| p.step == "rollback"));
    assert!(w.journal.read().unwrap().contains("FAILED"));
    w.node.shutdown(T);
}

#[test]
fn a_corrupt_library_is_refused_before_anything_changes() {
    let w = World::new("corrupt", "", "");
    let booted = w.boot();
    // Damage 0.2.0's library after its manifest was written: the sha256 no longer matches.
    let lib = w.dirs[1].join("lib/libcounter.so");
    let mut bytes = std::fs::read(&lib).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&lib, bytes).unwrap();
    let (booted, error, steps) = w.install(booted, "0.2.0");
    let error = error.expect("refused");
    assert!(matches!(error, InstallError::Load { .. }), "{error}");
    assert!(error.to_string().contains("the manifest says"), "{error}");
    assert!(
        !steps.iter().any(|p| p.step.starts_with("suspend")),
        "nothing was suspended"
    );
    assert_eq!(booted.release.version.to_string(), "0.1.0");
    assert_eq!(w.describe("c2").0, "1.0.0");
    w.node.shutdown(T);
}

#[test]
fn multi_hop_failure_in_the_second_hop_stays_on_the_intermediate_release() {
    let w = World::new("multihop", "", "fail");
    let booted = w.boot();
    let plan = relup_appup::plan(&booted.release, &w.known[2].release, &w.known).unwrap();
    assert_eq!(
        plan.chain.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        ["0.1.0", "0.2.0", "0.3.0"]
    );
    let (booted, error, _) = w.install(booted, "0.3.0");
    assert!(
        matches!(error, Some(InstallError::CodeChange { .. })),
        "{error:?}"
    );
    assert_eq!(
        booted.release.version.to_string(),
        "0.2.0",
        "the first hop stays done"
    );
    assert_eq!(w.describe("c1"), ("2.0.0".into(), 1, 100));
    w.node.shutdown(T);
}

#[test]
fn new_defaults_apply_to_keys_the_operator_did_not_set() {
    let w = World::new("defaults", "", "");
    let booted = w.boot();
    let env = |key: &str| match w
        .node
        .call::<_, Reply>("c1", &Call::Env(key.into()), T)
        .unwrap()
    {
        Reply::Value(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(env("ticker").as_deref(), Some("Int(1)"), "0.1.0's default");
    w.node
        .set_env("app", "limit", relup_runtime::ConfigValue::Int(42));
    let (booted, error, _) = w.install(booted, "0.2.0");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        env("ticker").as_deref(),
        Some("Int(2)"),
        "0.2.0's default replaces 0.1.0's"
    );
    assert_eq!(
        env("limit").as_deref(),
        Some("Int(42)"),
        "the operator's value survives"
    );
    let (_, error, _) = w.install(booted, "0.1.0");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        env("ticker").as_deref(),
        Some("Int(1)"),
        "back to 0.1.0's default"
    );
    assert_eq!(env("limit").as_deref(), Some("Int(42)"));
    w.node.shutdown(T);
}

#[test]
fn multi_hop_success_reaches_the_target() {
    let w = World::new("multihop-ok", "", "");
    let booted = w.boot();
    let (booted, error, _) = w.install(booted, "0.3.0");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(booted.release.version.to_string(), "0.3.0");
    assert_eq!(w.describe("c2"), ("1.0.0".into(), 2, 0));
    w.node.shutdown(T);
}
