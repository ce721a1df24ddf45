//! The watched config file (DESIGN.md §4) on a real release root running the ticker
//! tutorial's 0.4.0 (a real cdylib with a `validate_config` validator): valid lines applied,
//! persisted and delivered; rejected lines in `.rej` with their reason; comments, last line
//! wins, atomic batches; appends, rename-over, the file created after start, bursts; polling
//! fallback; config.toml and a pending `.new` at start; `set`/`get` with the same checks.

mod common;

use common::{Logs, eventually, node};
use relup_runtime::config::{ConfigStore, ConfigWatcher, WatchMode, WatchOptions};
use relup_runtime::handler::ReleaseHandler;
use relup_runtime::release::{PackOptions, ReleaseRoot, deploy, pack_with};
use relup_runtime::{ConfigValue, Node};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The ticker 0.4.0 library, built once into target/fixtures.
fn ticker_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let root = relup_testkit::workspace_root();
        let target = root.join("target").join("fixtures");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "-p", "relup-example-ticker-v040"])
            .arg("--target-dir")
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building ticker 0.4.0 failed");
        target.join("debug/librelup_example_ticker_v040.so")
    })
    .clone()
}

/// A root with the ticker's 0.4.0 deployed.
fn root(name: &str) -> ReleaseRoot {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let src = base.join("src");
    std::fs::create_dir_all(src.join("lib")).unwrap();
    std::fs::copy(ticker_lib(), src.join("lib/libticker_server.so")).unwrap();
    let ws = relup_testkit::workspace_root();
    std::fs::copy(
        ws.join("examples/ticker/v0.4.0/release.toml"),
        src.join("release.toml"),
    )
    .unwrap();
    let tarball = pack_with(&src, &base.join("out"), PackOptions::default()).unwrap();
    deploy(&tarball, &base.join("root")).unwrap();
    ReleaseRoot::open(base.join("root")).unwrap()
}

fn start(root: &ReleaseRoot) -> (Arc<ReleaseHandler>, Node, Logs) {
    let (node, logs) = node(2);
    let handler = ReleaseHandler::start(node.clone(), root.clone()).expect("boots");
    (Arc::new(handler), node, logs)
}

fn stop(handler: &ReleaseHandler, node: &Node) {
    handler.stop(Duration::from_secs(5));
    node.shutdown(Duration::from_secs(5));
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn interval(node: &Node) -> Option<ConfigValue> {
    node.env("ticker", "ticker")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `.new` and its work file are gone.
fn consumed(root: &ReleaseRoot) -> bool {
    eventually(|| {
        !root.config_new().exists() && !root.config_dir().join("config.toml.new.work").exists()
    })
}

#[test]
fn valid_lines_apply_persist_and_reach_the_ticker_rejected_ones_go_to_rej() {
    let root = root("basic");
    let (handler, node, logs) = start(&root);
    assert_eq!(interval(&node), Some(ConfigValue::Int(1000)));
    append(&root.config_new(), "broken\n");
    append(&root.config_new(), "ticker:ticker_server:ticker:1500\n");
    assert!(consumed(&root));
    assert!(eventually(
        || interval(&node) == Some(ConfigValue::Int(1500))
    ));
    assert!(
        eventually(|| logs.contains("config_change: ticker = 1500 ms")),
        "config_change delivered"
    );
    let live = read(&root.config_file());
    assert!(
        live.contains("[ticker.ticker_server]\nticker = 1500"),
        "{live}"
    );
    let rej = read(&root.config_rej());
    assert!(
        rej.contains("config.toml.new line 1: expected app:module:key:value"),
        "{rej}"
    );
    assert!(rej.contains("\nbroken\n"), "{rej}");
    // Time stamp: "# 20..-..-..T".
    assert!(rej.starts_with("# 20"), "{rej}");
    stop(&handler, &node);
}

#[test]
fn every_kind_of_bad_line_is_rejected_with_what_was_expected() {
    let root = root("reasons");
    let (handler, node, _logs) = start(&root);
    append(
        &root.config_new(),
        "# comments and blank lines are ignored\n\n\
         nosuch:ticker_server:ticker:1\n\
         ticker:nosuch:ticker:1\n\
         ticker:ticker_server:nosuch:1\n\
         ticker:ticker_server:ticker:\"fast\"\n\
         ticker:ticker_server:ticker:5\n\
         ticker:ticker_server:ticker:-5\n\
         ticker:ticker_server:ticker:fast\n",
    );
    assert!(consumed(&root));
    let rej = read(&root.config_rej());
    for needle in [
        "line 3: unknown application \"nosuch\"; release ticker 0.4.0 has ticker",
        "line 4: application ticker has no module \"nosuch\"; its modules: ticker_server",
        "line 5: module ticker_server of application ticker declares no key \"nosuch\"; its keys: ticker",
        "line 6: ticker:ticker_server:ticker: expected a value of type duration_ms, found \"fast\"",
        "line 7: ticker:ticker_server:ticker: expected a value in [10, 600000], found 5",
        "line 8: ticker:ticker_server:ticker: expected a value of type duration_ms, found -5",
        "line 9: expected a TOML value",
    ] {
        assert!(rej.contains(needle), "{needle:?} in:\n{rej}");
    }
    assert!(!rej.contains("comments"), "{rej}");
    assert_eq!(interval(&node), Some(ConfigValue::Int(1000)));
    // No value set: config.toml lists the key only as its commented default.
    let live = read(&root.config_file());
    assert!(!live.lines().any(|l| l.starts_with("ticker =")), "{live}");
    assert!(live.contains("# ticker = 1000  # default"), "{live}");
    stop(&handler, &node);
}

#[test]
fn the_modules_validator_is_asked_before_anything_is_applied() {
    let root = root("validator");
    let (handler, node, _logs) = start(&root);
    let store = handler.config();
    let release = handler.running().release;
    // Passes the declared type and range, so only the validator can refuse it: the
    // validator is reached with (key, value).
    let line = relup_runtime::config::parse_line("ticker:ticker_server:ticker:20").unwrap();
    assert_eq!(store.validate(&release, &line), Ok(()));
    // A value the declared range would take but the validator refuses: ask it directly
    // through the convention (apply "validate_config").
    let module = node.code().current("ticker_server").unwrap();
    let args = relup_module::codec::encode(&("ticker".to_string(), ConfigValue::Int(-1))).unwrap();
    let err = node.apply(&module, "validate_config", &args).unwrap_err();
    assert!(err.contains("positive"), "{err}");
    let args =
        relup_module::codec::encode(&("ticker".to_string(), ConfigValue::Float(1.5))).unwrap();
    assert!(node.apply(&module, "validate_config", &args).is_err());
    stop(&handler, &node);
}

#[test]
fn last_line_wins_and_atomic_batches_are_all_or_nothing() {
    let root = root("batches");
    let (handler, node, logs) = start(&root);
    append(
        &root.config_new(),
        "ticker:ticker_server:ticker:1100\nticker:ticker_server:ticker:1200\n",
    );
    assert!(consumed(&root));
    assert_eq!(interval(&node), Some(ConfigValue::Int(1200)));
    assert!(eventually(
        || logs.contains("config_change: ticker = 1200 ms")
    ));
    assert!(
        !logs.contains("config_change: ticker = 1100 ms"),
        "only the last line applies"
    );
    // An atomic batch with one bad line applies nothing.
    append(
        &root.config_new(),
        "# atomic\nticker:ticker_server:ticker:1300\nticker:ticker_server:ticker:-1\n",
    );
    assert!(consumed(&root));
    assert_eq!(interval(&node), Some(ConfigValue::Int(1200)));
    let rej = read(&root.config_rej());
    assert!(
        rej.contains("line 2: not applied: the batch is atomic (# atomic) and line 3 was rejected"),
        "{rej}"
    );
    assert!(rej.contains("line 3: "), "{rej}");
    // The same batch without a bad line applies.
    append(
        &root.config_new(),
        "# atomic\nticker:ticker_server:ticker:1300\n",
    );
    assert!(consumed(&root));
    assert!(eventually(
        || interval(&node) == Some(ConfigValue::Int(1300))
    ));
    stop(&handler, &node);
}

#[test]
fn rename_over_file_created_later_and_bursts_are_all_seen() {
    let root = root("watch");
    let (handler, node, logs) = start(&root);
    // An editor: write a temporary file, rename it over config.toml.new.
    let tmp = root.config_dir().join(".config.toml.new.swp");
    std::fs::write(&tmp, "ticker:ticker_server:ticker:2000\n").unwrap();
    std::fs::rename(&tmp, root.config_new()).unwrap();
    assert!(consumed(&root));
    assert!(eventually(
        || interval(&node) == Some(ConfigValue::Int(2000))
    ));
    // config.toml.new created again after the node started (the last one was consumed).
    append(&root.config_new(), "ticker:ticker_server:ticker:2100\n");
    assert!(consumed(&root));
    assert!(eventually(
        || interval(&node) == Some(ConfigValue::Int(2100))
    ));
    // A burst of appends: every line is processed once, the last one wins.
    for ms in 3000..3050 {
        append(
            &root.config_new(),
            &format!("ticker:ticker_server:ticker:{ms}\n"),
        );
    }
    assert!(consumed(&root));
    assert!(eventually(
        || interval(&node) == Some(ConfigValue::Int(3049))
    ));
    assert!(eventually(
        || logs.contains("config_change: ticker = 3049 ms")
    ));
    // The set value replaces the commented default; the key's type and default stay shown.
    let live = read(&root.config_file());
    assert!(
        live.contains("\nticker = 3049  # duration_ms in [10, 600000]; default 1000\n"),
        "{live}"
    );
    assert!(!live.contains("# ticker ="), "{live}");
    assert!(!root.config_rej().exists(), "{}", read(&root.config_rej()));
    stop(&handler, &node);
}

#[test]
fn polling_is_the_fallback_and_sees_changes_too() {
    let root = root("poll");
    let (handler, node, _logs) = start(&root);
    // Stop the handler's own watcher, then watch by polling.
    handler.stop(Duration::from_secs(5));
    let release = handler.running().release;
    let store = Arc::new(ConfigStore::new(node.clone(), root.clone()));
    let options = WatchOptions {
        force_polling: true,
        ..WatchOptions::default()
    };
    let watcher = ConfigWatcher::start(store, Arc::new(move || release.clone()), options).unwrap();
    assert_eq!(watcher.mode(), WatchMode::Polling);
    append(&root.config_new(), "ticker:ticker_server:ticker:700\n");
    assert!(consumed(&root));
    assert_eq!(interval(&node), Some(ConfigValue::Int(700)));
    watcher.stop();
    node.shutdown(Duration::from_secs(5));
}

#[test]
fn start_loads_config_toml_and_processes_a_pending_new() {
    let root = root("restart");
    let (handler, node, _logs) = start(&root);
    append(&root.config_new(), "ticker:ticker_server:ticker:1700\n");
    assert!(consumed(&root));
    stop(&handler, &node);
    // Written while the node is down: applied at start, before anything else.
    append(&root.config_new(), "ticker:ticker_server:ticker:oops\n");
    let (handler, node, logs) = start(&root);
    assert_eq!(interval(&node), Some(ConfigValue::Int(1700)));
    assert!(read(&root.config_rej()).contains("ticker:ticker_server:ticker:oops"));
    // Processed at start; the file itself goes once it has been idle (CHANGE_FILE_IDLE).
    assert!(consumed(&root));
    // The ticker started with the operator's value.
    assert!(eventually(
        || logs.contains("started, ticking every 1700 ms")
    ));
    stop(&handler, &node);
    // A work file left by a crash between claiming and finishing is processed again.
    std::fs::write(
        root.config_dir().join("config.toml.new.work"),
        "ticker:ticker_server:ticker:1800\n",
    )
    .unwrap();
    let (handler, node, _logs) = start(&root);
    assert_eq!(interval(&node), Some(ConfigValue::Int(1800)));
    assert!(consumed(&root));
    stop(&handler, &node);
    // A config.toml that is not TOML stops the boot with the file and the line.
    std::fs::write(root.config_file(), "[ticker.ticker_server]\nticker = \n").unwrap();
    let (node, _logs) = node_only();
    let err = ReleaseHandler::start(node.clone(), root.clone())
        .err()
        .expect("boot refused")
        .to_string();
    assert!(err.contains("config.toml line 2"), "{err}");
    node.shutdown(Duration::from_secs(5));
}

fn node_only() -> (Node, Logs) {
    node(2)
}

#[test]
fn set_and_get_use_the_same_checks() {
    let root = root("setget");
    let (handler, node, logs) = start(&root);
    let entries = handler.config_get(Some("ticker"), None).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].value.as_deref(), Some("1000"));
    assert_eq!(entries[0].origin.as_deref(), Some("default"));
    let applied = handler
        .config_set("ticker:ticker_server:ticker:900")
        .unwrap();
    assert_eq!(applied.value, "900");
    assert!(eventually(
        || logs.contains("config_change: ticker = 900 ms")
    ));
    let entries = handler.config_get(Some("ticker"), Some("ticker")).unwrap();
    assert_eq!(entries[0].value.as_deref(), Some("900"));
    assert_eq!(entries[0].origin.as_deref(), Some("operator"));
    assert!(read(&root.config_file()).contains("ticker = 900"));
    let err = handler
        .config_set("ticker:ticker_server:ticker:-3")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected a value of type duration_ms"),
        "{err}"
    );
    let err = handler.config_set("nope").unwrap_err().to_string();
    assert!(err.contains("app:module:key:value"), "{err}");
    let err = handler
        .config_get(Some("nope"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown application \"nope\""), "{err}");
    let err = handler
        .config_get(Some("ticker"), Some("nope"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("declares no key \"nope\""), "{err}");
    assert_eq!(interval(&node), Some(ConfigValue::Int(900)));
    stop(&handler, &node);
}

/// Waits until `logs` has a line applying `ticker = <ms>`.
fn applied(logs: &Logs, ms: u32) -> bool {
    eventually(|| logs.contains(&format!("config_change: ticker = {ms} ms")))
}

#[test]
fn a_line_written_in_two_parts_counts_once_it_ends_with_a_newline() {
    let root = root("two-parts");
    let (handler, node, logs) = start(&root);
    // `printf 'key:17'` ... `printf '00\n'`: the first part alone is no line yet.
    append(&root.config_new(), "ticker:ticker_server:ticker:17");
    // Let several rounds see the unterminated tail (rescans and the events of the write).
    append(&root.config_new(), "");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(interval(&node), Some(ConfigValue::Int(1000)));
    assert!(
        root.config_new().exists(),
        "the unterminated tail was taken"
    );
    append(&root.config_new(), "00\n");
    assert!(applied(&logs, 1700));
    assert!(consumed(&root));
    assert_eq!(interval(&node), Some(ConfigValue::Int(1700)));
    assert!(!root.config_rej().exists(), "{}", read(&root.config_rej()));
    stop(&handler, &node);
}

#[test]
fn a_writer_that_holds_the_file_open_loses_no_line() {
    let root = root("held-open");
    let (handler, node, logs) = start(&root);
    // One open file, lines over a few hundred ms (a script's `exec 3>>config.toml.new`),
    // one of them bad: every line is applied or rejected, none lost.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.config_new())
        .unwrap();
    for ms in [2001, 2002, 2003] {
        f.write_all(format!("ticker:ticker_server:ticker:{ms}\n").as_bytes())
            .unwrap();
        assert!(applied(&logs, ms), "{ms} was not applied");
    }
    f.write_all(b"ticker:ticker_server:nope:1\n").unwrap();
    assert!(eventually(|| read(&root.config_rej()).contains("nope")));
    f.write_all(b"ticker:ticker_server:ticker:2004\n").unwrap();
    assert!(applied(&logs, 2004));
    drop(f);
    assert!(consumed(&root));
    assert_eq!(interval(&node), Some(ConfigValue::Int(2004)));
    let rej = read(&root.config_rej());
    assert_eq!(
        rej.matches("\nticker:ticker_server:nope:1\n").count(),
        1,
        "{rej}"
    );
    stop(&handler, &node);
}

#[test]
fn a_directory_named_config_toml_new_is_reported_and_an_overlong_line_is_cut() {
    let root = root("dir-and-long");
    let (handler, node, _logs) = start(&root);
    std::fs::create_dir(root.config_new()).unwrap();
    let release = handler.running().release;
    let err = handler
        .config()
        .process_pending(&release)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a regular file"), "{err}");
    std::fs::remove_dir(root.config_new()).unwrap();

    let long = format!("ticker:ticker_server:ticker:\"{}\"\n", "x".repeat(1 << 20));
    append(&root.config_new(), &long);
    append(&root.config_new(), "ticker:ticker_server:ticker:2500\n");
    assert!(consumed(&root));
    assert_eq!(interval(&node), Some(ConfigValue::Int(2500)));
    let rej = read(&root.config_rej());
    assert!(
        rej.contains("expected at most 65536"),
        "{}",
        &rej[..rej.len().min(500)]
    );
    assert!(rej.len() < 4096, "the .rej holds {} bytes", rej.len());
    stop(&handler, &node);
}

#[test]
fn a_batch_cut_short_after_its_rejects_were_appended_leaves_each_reject_once() {
    use std::os::unix::fs::MetadataExt;
    let root = root("cut-short");
    // What a SIGKILL after the rejects' append and before the offset's update leaves: the
    // offset file still marks the batch as begun with .rej's length before it, and .rej
    // holds the batch's rejects already.
    std::fs::write(root.config_rej(), "# earlier\nearlier\n").unwrap();
    let before = std::fs::metadata(root.config_rej()).unwrap().len();
    append(&root.config_rej(), "# the interrupted batch\nbroken\n");
    append(
        &root.config_new(),
        "broken\nticker:ticker_server:ticker:1900\n",
    );
    let ino = std::fs::metadata(root.config_new()).unwrap().ino();
    std::fs::write(
        root.config_dir().join("config.toml.new.offset"),
        format!("{ino} 0 rej={before}\n"),
    )
    .unwrap();
    let (handler, node, _logs) = start(&root);
    assert_eq!(interval(&node), Some(ConfigValue::Int(1900)));
    let rej = read(&root.config_rej());
    assert_eq!(rej.matches("\nbroken\n").count(), 1, "{rej}");
    assert!(rej.starts_with("# earlier\nearlier\n"), "{rej}");
    assert!(!rej.contains("the interrupted batch"), "{rej}");
    assert!(consumed(&root));
    stop(&handler, &node);
}

#[test]
fn a_symlinked_config_toml_stays_a_link_and_its_target_gets_the_change() {
    let root = root("symlinked");
    let target = root.path.join("elsewhere.toml");
    let live = std::fs::read_to_string(root.config_file()).unwrap_or_default();
    std::fs::write(&target, live).unwrap();
    let _ = std::fs::remove_file(root.config_file());
    std::os::unix::fs::symlink(&target, root.config_file()).unwrap();
    let (handler, node, _logs) = start(&root);
    handler
        .config_set("ticker:ticker_server:ticker:2200")
        .unwrap();
    assert_eq!(interval(&node), Some(ConfigValue::Int(2200)));
    let meta = std::fs::symlink_metadata(root.config_file()).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "config.toml was replaced by a file"
    );
    assert!(read(&target).contains("ticker = 2200"), "{}", read(&target));
    stop(&handler, &node);
}
