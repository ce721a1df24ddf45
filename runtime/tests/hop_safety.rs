//! The upgrade promise under faults inside a hop (issue 17): a panic during a hop, a
//! `code_change` that never returns, and processes started or restarted while a hop holds
//! their module. After any failure before commit, every process runs its old code and state.

mod common;

use common::{fixtures, node, release_dir};
use relup_appup::{Appup, KnownRelease, Release, ReleaseStatus};
use relup_fixture_counter_api::{Call, Cast, Reply};
use relup_runtime::Node;
use relup_runtime::install::{
    BootedRelease, HopTarget, InstallError, InstallOptions, Journal, Progress, boot_release,
    run_hop,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
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
        let known: Vec<KnownRelease> = dirs
            .iter()
            .map(|dir| {
                let release = Release::parse(
                    &std::fs::read_to_string(dir.join("release.toml")).unwrap(),
                    "release.toml",
                )
                .unwrap();
                let appups = match std::fs::read_to_string(dir.join("appup.toml")) {
                    Ok(text) => vec![Appup::parse(&text, "appup.toml").unwrap()],
                    Err(_) => vec![],
                };
                KnownRelease {
                    release,
                    status: ReleaseStatus::Unpacked,
                    appups,
                }
            })
            .collect();
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

/// Finding 2: the embedder's progress callback panics right after a step; the hop is rolled
/// back before the panic goes on, so every process answers on its old code and state, and a
/// later install of the same hop succeeds.
#[test]
fn a_progress_callback_that_panics_mid_hop_leaves_the_old_release() {
    for panic_after in ["code_change counter", "load counter", "suspend counter"] {
        let w = World::new(
            &format!("panic-{}", panic_after.replace(' ', "-")),
            &fixtures().counter_v2,
            "",
        );
        w.node.cast("c1", &Cast::Add(5)).unwrap();
        assert_eq!(w.describe("c1"), ("1.0.0".into(), 6, 0));
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            w.upgrade(&InstallOptions::default(), &mut |p| {
                if p.ok && p.step.starts_with(panic_after) {
                    panic!("the progress callback panics after {}", p.step);
                }
            })
        }));
        let payload = unwound.expect_err("the panic goes on to the caller");
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(text.contains(panic_after), "{text}");
        assert_eq!(w.current_counter(), "1.0.0", "after {panic_after}");
        assert_eq!(
            w.describe("c1"),
            ("1.0.0".into(), 6, 0),
            "old code, old state, resumed (panic after {panic_after})"
        );
        assert_eq!(w.describe("c2"), ("1.0.0".into(), 2, 0));
        let journal = w.journal.read().unwrap();
        assert!(
            journal.contains("rolled back after a panic"),
            "panic after {panic_after}: {journal}"
        );
        // Nothing is left staged or held: the same hop now goes through.
        let booted = w.upgrade(&InstallOptions::default(), &mut |_| {});
        assert!(booted.is_ok(), "{booted:?}");
        assert_eq!(w.describe("c1"), ("2.0.0".into(), 6, 100));
        w.node.shutdown(T);
    }
}
