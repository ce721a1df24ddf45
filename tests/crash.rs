//! Crash consistency: a real node is SIGKILLed at every crash point of an install, a
//! downgrade, a config apply and two unpacks (after each journal line, around each atomic
//! write, at each unpack and config step; see `runtime/src/fault.rs`), restarted, and checked:
//! RELEASES is consistent, the running release is the permanent one, `config.toml` holds
//! every accepted change and no rejected one, no temporary file is left, and the interrupted
//! operation, run again, completes.
//!
//! How: a first run of each scenario with `RELUP_FAULT_TRACE` numbers its crash points; then
//! for each point n (every one with `RELUP_CRASH_ALL=1`, else a sample of [`CI_POINTS`] that
//! changes from run to run, see [`sample`]) a fresh root runs the scenario with
//! `RELUP_FAULT_KILL_AT=n`. The trace of the killed run must end at the same step as the
//! numbering run said (the numbering is deterministic, or the test fails).
//!
//! The sample is drawn from a seed, `RELUP_CRASH_SEED=<n>` or else the clock, printed at the
//! start and named in every failure: `RELUP_CRASH_SEED=<n> cargo test --test crash` tries the
//! same points again.
//!
//! After the restart the permanent release must be the one the crash point implies: the
//! scenario's starting one, or the release an install made permanent if the kill came after
//! the rename of `RELEASES` that recorded it ([`expected_permanent`]).
//!
//! A scenario is a few lines: [`Scenario`]'s `setup`, `act` and `finish`. The probation
//! rollback scenario installs a 0.2.0 whose health check fails: killed anywhere in the
//! install, the probation or the automatic downgrade, the node comes back on 0.1.0.

mod reliability;

use reliability::{Root, alive, ok, tarballs, text};
use relup_runtime::config::LiveConfig;
use relup_runtime::release::Releases;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Crash points tried per scenario in an ordinary test run (all with `RELUP_CRASH_ALL=1`).
const CI_POINTS: usize = 6;

/// The seed of this run's sample of crash points: `RELUP_CRASH_SEED`, else the clock.
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let seed = match std::env::var("RELUP_CRASH_SEED") {
            Ok(v) => v
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("RELUP_CRASH_SEED={v:?} is not a number")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64 % 1_000_000_000)
                .unwrap_or(0),
        };
        eprintln!("crash points sampled with RELUP_CRASH_SEED={seed}");
        seed
    })
}

/// splitmix64: a small, good enough generator for picking crash points.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `k` indices of `0..n`, one drawn at random from each of `k` equal slices (so a sample
/// still spans the whole operation), from `seed` and the scenario's `name` (so the scenarios
/// do not all try the same positions). Every index is drawn in some run.
fn sample(n: usize, k: usize, seed: u64, name: &str) -> Vec<usize> {
    if n <= k {
        return (0..n).collect();
    }
    // FNV-1a of the name.
    let mut state = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) ^ seed;
    (0..k)
        .map(|i| {
            let (lo, hi) = (i * n / k, (i + 1) * n / k);
            lo + (splitmix(&mut state) % (hi - lo) as u64) as usize
        })
        .collect()
}

/// Lines appended to `config.toml.new` by the config scenario: two accepted, two rejected.
const CONFIG_LINES: &str = "app:counter:ticker:11\nbroken line\napp:counter:limit:\"not a number\"\napp:counter:limit:12\n";

/// The two lines of [`CONFIG_LINES`] that are rejected.
const REJECTED: &[&str] = &["broken line", "app:counter:limit:\"not a number\""];

/// One operation to interrupt.
struct Scenario {
    name: &'static str,
    /// Whether 0.2.0 is unpacked in the fresh root.
    unpacked: bool,
    /// Runs on the started node before the operation (its crash points are not tried).
    setup: fn(&Root),
    /// The operation the node is killed in (its client may see the node die).
    act: fn(&Root),
    /// After the restart and the common checks: completes the operation, checks the end.
    finish: fn(&Root),
    /// What `config.toml` holds after the restart, whatever the crash point.
    config: &'static [(&'static str, i64)],
    /// The permanent release once `setup` is done (before the operation).
    permanent: &'static str,
    /// The lines the operation rejects: each must be in `config.toml.rej` once.
    rejects: &'static [&'static str],
}

fn upgrade(root: &Root) {
    let _ = root.run(&["upgrade", "0.2.0"]);
}

fn set_ticker(root: &Root) {
    ok(root.run(&["config", "set", "app:counter:ticker:5"]));
}

/// `relup upgrade 0.2.0` after the restart: it completes, or 0.2.0 already runs.
fn finish_upgrade(root: &Root) {
    let out = root.run(&["upgrade", "0.2.0"]);
    let all = text(&out);
    assert!(
        out.status.success() || all.contains("already running"),
        "{all}"
    );
    expect_running(root, "0.2.0", "2.0.0");
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "install",
        unpacked: true,
        setup: set_ticker,
        act: upgrade,
        finish: finish_upgrade,
        config: &[("ticker", 5)],
        permanent: "0.1.0",
        rejects: &[],
    },
    Scenario {
        name: "downgrade",
        unpacked: true,
        setup: |root| {
            set_ticker(root);
            ok(root.run(&["upgrade", "0.2.0"]));
        },
        act: |root| {
            let _ = root.run(&["downgrade", "0.1.0"]);
        },
        finish: |root| {
            let out = root.run(&["downgrade", "0.1.0"]);
            let all = text(&out);
            assert!(
                out.status.success() || all.contains("already running"),
                "{all}"
            );
            expect_running(root, "0.1.0", "1.0.0");
        },
        config: &[("ticker", 5)],
        permanent: "0.2.0",
        rejects: &[],
    },
    Scenario {
        name: "config-apply",
        unpacked: false,
        setup: set_ticker,
        act: |root| {
            // Written aside and renamed into place, as an editor saves.
            let new = root.path.join("config/config.toml.new");
            let part = root.path.join("config/new.part");
            std::fs::write(&part, CONFIG_LINES).unwrap();
            std::fs::rename(&part, &new).unwrap();
            // Until the watcher has consumed it, or the node is dead.
            let pid = root.pid().unwrap();
            let work = root.path.join("config/config.toml.new.work");
            let deadline = Instant::now() + Duration::from_secs(30);
            while (new.exists() || work.exists()) && alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(
                Instant::now() < deadline,
                "config.toml.new was never processed"
            );
        },
        finish: |root| {
            let rej = std::fs::read_to_string(root.path.join("config/config.toml.rej"))
                .unwrap_or_default();
            for accepted in ["app:counter:ticker:11", "app:counter:limit:12"] {
                assert!(!rej.contains(accepted), "{accepted} rejected:\n{rej}");
            }
            let get = ok(root.run(&["config", "get", "app"]));
            assert!(get.contains("11") && get.contains("12"), "{get}");
        },
        config: &[("ticker", 11), ("limit", 12)],
        permanent: "0.1.0",
        rejects: REJECTED,
    },
    Scenario {
        name: "unpack",
        unpacked: false,
        setup: set_ticker,
        act: |root| {
            let _ = root.run(&["unpack", tarballs().v2.to_str().unwrap()]);
        },
        finish: |root| {
            let out = root.run(&["unpack", tarballs().v2.to_str().unwrap()]);
            let all = text(&out);
            assert!(
                out.status.success() || all.contains("already known"),
                "{all}"
            );
            finish_upgrade(root);
        },
        config: &[("ticker", 5)],
        permanent: "0.1.0",
        rejects: &[],
    },
    Scenario {
        name: "probation-rollback",
        unpacked: false,
        setup: |root| {
            set_ticker(root);
            ok(root.run(&["unpack", tarballs().v2_unhealthy.to_str().unwrap()]));
        },
        act: |root| {
            let _ = root.run(&["upgrade", "0.2.0", "--probation", "3s"]);
        },
        finish: |root| {
            // Killed or not, 0.1.0 runs and is permanent; 0.2.0 is only unpacked. Run again,
            // the upgrade fails its probation again and rolls back again.
            expect_running(root, "0.1.0", "1.0.0");
            let releases = ok(root.run(&["releases"]));
            assert!(
                releases.contains("0.1.0 permanent") && releases.contains("0.2.0 unpacked"),
                "{releases}"
            );
            let out = root.run(&["upgrade", "0.2.0", "--probation", "3s"]);
            let all = text(&out);
            assert!(
                !out.status.success() && all.contains("failed its probation"),
                "{all}"
            );
            expect_running(root, "0.1.0", "1.0.0");
        },
        config: &[("ticker", 5)],
        permanent: "0.1.0",
        rejects: &[],
    },
    Scenario {
        name: "unpack-in-place",
        unpacked: false,
        setup: |root| {
            set_ticker(root);
            let dir = root.path.join("releases/0.2.0");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(&tarballs().v2, dir.join("demo-0.2.0.tar.gz")).unwrap();
        },
        act: upgrade,
        finish: finish_upgrade,
        config: &[("ticker", 5)],
        permanent: "0.1.0",
        rejects: &[],
    },
];

/// The scenario called `name`.
fn scenario(name: &str) -> &'static Scenario {
    SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name}"))
}

/// `relup status` shows `release` running `counter` `module`.
fn expect_running(root: &Root, release: &str, module: &str) {
    let status = ok(root.run(&["status"]));
    assert!(
        status.contains(&format!("release demo {release}"))
            && status.contains(&format!("counter {module}")),
        "{status}"
    );
}

/// `config.toml` holds exactly these values (all of `app`'s module `counter`), as the node
/// reads it at boot, and as text: exactly the lines `[app.counter]` and `<key> = <value>`
/// besides comments (whole lines, such as a default's, or after a value).
fn expect_config(root: &Root, values: &[(&str, i64)], what: &str) {
    let file = root.path.join("config/config.toml");
    let live = LiveConfig::load(&file).unwrap_or_else(|e| panic!("{what}: {e}"));
    let got: Vec<String> = live
        .entries()
        .into_iter()
        .map(|(app, module, key, value)| format!("{app}:{module}:{key}:{value}"))
        .collect();
    let mut want: Vec<String> = values
        .iter()
        .map(|(k, v)| format!("app:counter:{k}:{v}"))
        .collect();
    want.sort();
    assert_eq!(got, want, "{what}: config.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    // A set key's line ends with a comment (its type and default): the value is before it.
    let mut lines: Vec<&str> = text
        .lines()
        .map(|l| l.split(" #").next().unwrap_or(l).trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines.sort();
    let mut want: Vec<String> = values.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    want.push("[app.counter]".into());
    want.sort();
    assert_eq!(lines, want, "{what}: the lines of config.toml:\n{text}");
}

/// Each of `scenario`'s rejected lines is in `config.toml.rej` exactly once, and nothing else
/// is, wherever the node was killed: a batch cut short after its rejects were appended runs
/// again at the restart, and must not append them a second time.
fn expect_rejects(root: &Root, scenario: &Scenario, what: &str) {
    let rej = std::fs::read_to_string(root.path.join("config/config.toml.rej")).unwrap_or_default();
    let entries: Vec<&str> = rej.lines().filter(|l| !l.starts_with("# ")).collect();
    for line in scenario.rejects {
        let n = entries.iter().filter(|l| *l == line).count();
        assert_eq!(n, 1, "{what}: {line} in config.toml.rej:\n{rej}");
    }
    let unexpected: Vec<&&str> = entries
        .iter()
        .filter(|l| !scenario.rejects.contains(l))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{what}: config.toml.rej holds {unexpected:?}:\n{rej}"
    );
}

/// The permanent release after a kill at `points[..=at]`'s last point: `scenario.permanent`,
/// or the release of the last `install done, running <v>` if a rename of `RELEASES` came
/// after it (the write that makes an install permanent; `temp written` is not yet the
/// rename). A rename of `RELEASES` for another reason (an unpack) changes nothing.
fn expected_permanent(scenario: &Scenario, points: &[(usize, String)], at: usize) -> String {
    let mut permanent = scenario.permanent.to_string();
    let mut installed: Option<String> = None;
    for (_, label) in &points[..=at] {
        if let Some(v) = label.strip_prefix("journal: install done, running ") {
            installed = Some(v.trim().to_string());
        }
        if label.ends_with("/releases/RELEASES: renamed")
            && let Some(v) = installed.take()
        {
            permanent = v;
        }
    }
    permanent
}

/// Paths under `dir` that a crash may leave and nothing may keep after a restart.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".unpack-")
                || (name.starts_with('.') && name.contains(".tmp-"))
                || name == "config.toml.new.work"
            {
                out.push(e.path().display().to_string());
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// The checks every scenario shares, after the restart: `permanent` is the release that
/// must be permanent and running.
fn common_checks(root: &Root, scenario: &Scenario, permanent: &str, what: &str) {
    // RELEASES loads with every invariant (one permanent, directories present, ...).
    let releases = Releases::load(&root.release_root())
        .unwrap_or_else(|e| panic!("{what}: RELEASES is broken: {e}"));
    let got = releases
        .permanent()
        .unwrap_or_else(|| panic!("{what}: no permanent release"))
        .version
        .to_string();
    assert_eq!(got, permanent, "{what}: the permanent release");
    // The running release is the permanent one, with its own code.
    let module = if permanent == "0.1.0" {
        "1.0.0"
    } else {
        "2.0.0"
    };
    expect_running(root, permanent, module);
    // Every listed release has its directory; every release directory is listed or only
    // holds a dropped tarball.
    for entry in std::fs::read_dir(root.path.join("releases"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(vsn) = semver::Version::parse(&name)
            && releases.get(&vsn).is_none()
        {
            let files: Vec<String> = std::fs::read_dir(entry.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(
                files,
                [format!("demo-{name}.tar.gz")],
                "{what}: unlisted releases/{name}"
            );
        }
    }
    let left = leftovers(&root.path);
    assert!(left.is_empty(), "{what}: left behind: {left:?}");
    // Every accepted change is in config.toml, no rejected one; each rejected one in .rej.
    expect_config(root, scenario.config, what);
    expect_rejects(root, scenario, what);
}

/// A crash point's line without its numbers: every word holding a digit (a duration, a
/// pid, a time, a hex suffix) becomes `#`; the step itself stays.
fn shape(line: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.chars().any(|c| c.is_ascii_digit()) {
            out.push('#');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in line.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The numbered crash points of `scenario`'s operation: (number, label).
fn crash_points(scenario: &Scenario) -> Vec<(usize, String)> {
    let root = Root::new(&format!("{}-trace", scenario.name), scenario.unpacked);
    let trace = root.path.with_extension("trace");
    let _ = std::fs::remove_file(&trace);
    root.start(&[("RELUP_FAULT_TRACE", trace.display().to_string())]);
    (scenario.setup)(&root);
    let read = || -> Vec<(usize, String)> {
        std::fs::read_to_string(&trace)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (n, label) = l.split_once(' ').unwrap();
                (n.parse().unwrap(), label.to_string())
            })
            .collect()
    };
    let before = read().len();
    (scenario.act)(&root);
    let root_path = root.path.display().to_string();
    let points: Vec<(usize, String)> = read()
        .into_iter()
        .skip(before)
        .map(|(n, label)| (n, label.replace(&root_path, "<root>")))
        .collect();
    (scenario.finish)(&root);
    expect_rejects(&root, scenario, &format!("{}, not killed", scenario.name));
    root.stop();
    let _ = std::fs::remove_file(&trace);
    points
}

fn run(scenario: &Scenario) {
    let seed = seed();
    let points = crash_points(scenario);
    assert!(!points.is_empty(), "{}: no crash point", scenario.name);
    let all = std::env::var("RELUP_CRASH_ALL").is_ok_and(|v| v == "1");
    let chosen: Vec<usize> = if all {
        (0..points.len()).collect()
    } else {
        sample(points.len(), CI_POINTS, seed, scenario.name)
    };
    eprintln!(
        "{}: {} crash points, trying {} (RELUP_CRASH_SEED={seed})",
        scenario.name,
        points.len(),
        chosen.len()
    );
    for (n, label) in &points {
        eprintln!("  {n} {label}");
    }
    for at in chosen {
        let (n, label) = &points[at];
        let what = format!(
            "{} killed at point {n} ({label}), RELUP_CRASH_SEED={seed}",
            scenario.name
        );
        eprintln!("{what}");
        let root = Root::new(&format!("{}-{n}", scenario.name), scenario.unpacked);
        let trace = root.path.with_extension("trace");
        let _ = std::fs::remove_file(&trace);
        root.start(&[
            ("RELUP_FAULT_TRACE", trace.display().to_string()),
            ("RELUP_FAULT_KILL_AT", n.to_string()),
        ]);
        let pid = root.pid().unwrap();
        (scenario.setup)(&root);
        (scenario.act)(&root);
        assert!(root.wait_dead(pid), "{what}: the node did not die");
        let last = std::fs::read_to_string(&trace).unwrap();
        let last = last.lines().last().unwrap_or_default();
        assert_eq!(
            shape(&last.replace(&root.path.display().to_string(), "<root>")),
            shape(&format!("{n} {label}")),
            "{what}: the killed run diverged from the numbered one"
        );
        // Restart on the stale socket and pid file, without fault injection.
        root.start(&[]);
        let permanent = expected_permanent(scenario, &points, at);
        common_checks(&root, scenario, &permanent, &what);
        (scenario.finish)(&root);
        root.stop();
        let _ = std::fs::remove_file(&trace);
    }
}

#[test]
fn sigkill_at_every_step_of_an_install() {
    run(scenario("install"));
}

#[test]
fn sigkill_at_every_step_of_a_downgrade() {
    run(scenario("downgrade"));
}

#[test]
fn sigkill_at_every_step_of_a_config_apply() {
    run(scenario("config-apply"));
}

#[test]
fn sigkill_at_every_step_of_an_unpack() {
    run(scenario("unpack"));
}

#[test]
fn sigkill_at_every_step_of_a_probation_rollback() {
    run(scenario("probation-rollback"));
}

#[test]
fn sigkill_at_every_step_of_an_unpack_in_place_and_install() {
    run(scenario("unpack-in-place"));
}

#[test]
fn the_sample_spans_the_operation_and_rotates() {
    // One per slice, in order, all distinct; the same seed gives the same sample.
    for n in [7, 29, 36, 48] {
        let s = sample(n, CI_POINTS, 42, "install");
        assert_eq!(s.len(), CI_POINTS);
        assert!(
            s.windows(2).all(|w| w[0] < w[1]) && s[CI_POINTS - 1] < n,
            "{s:?}"
        );
        assert_eq!(s, sample(n, CI_POINTS, 42, "install"));
    }
    assert_eq!(sample(5, CI_POINTS, 1, "unpack"), [0, 1, 2, 3, 4]);
    // Over a hundred seeds every point of a 48-point scenario is tried.
    let mut seen = [false; 48];
    for seed in 0..100 {
        for i in sample(48, CI_POINTS, seed, "probation-rollback") {
            seen[i] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "{seen:?}");
}
