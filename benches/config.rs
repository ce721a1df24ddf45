//! Config change latency (DESIGN.md §4, issue "Watched config file"): the time from appending a
//! line to `config/config.toml.new` until the ticker's `config_change` callback has run with the
//! new value (seen as its log line), through the real watcher (inotify, debounced), validation
//! (declared type/range + the module's `validate_config`), the atomic write of `config.toml`,
//! the env update and the delivery. Target: at most 100 ms.
//!
//! Samples are 50 ms apart so each one goes through an inotify event and the debounce (10 ms
//! of quiet), not through a batch still being processed.
//!
//! A plain `main` (no criterion): each sample is one file write and one wait. Prints the median,
//! p90 and max over the samples. Under `cargo test --benches` it runs 3 samples.

#[allow(dead_code)]
#[path = "common/report.rs"]
mod report;

use relup::runtime::handler::ReleaseHandler;
use relup::runtime::release::{PackOptions, ReleaseRoot, deploy, pack_with};
use relup::runtime::{LogLine, Node, NodeConfig};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ticker_lib(profile: &str) -> PathBuf {
    let root = relup_testkit::workspace_root();
    let target = root.join("target").join("fixtures");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--quiet", "-p", "relup-example-ticker-v040"])
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS");
    if profile == "release" {
        cmd.arg("--release");
    }
    assert!(cmd.status().expect("cargo runs").success());
    target.join(profile).join("librelup_example_ticker_v040.so")
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (samples, profile) = if bench { (50, "release") } else { (3, "debug") };
    let base = std::env::temp_dir().join(format!("relup-bench-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let src = base.join("src");
    std::fs::create_dir_all(src.join("lib")).unwrap();
    std::fs::copy(ticker_lib(profile), src.join("lib/libticker_server.so")).unwrap();
    std::fs::copy(
        relup_testkit::workspace_root().join("examples/ticker/v0.4.0/release.toml"),
        src.join("release.toml"),
    )
    .unwrap();
    let tarball = pack_with(&src, &base.join("out"), PackOptions::default()).unwrap();
    deploy(&tarball, &base.join("root")).unwrap();
    let root = ReleaseRoot::open(base.join("root")).unwrap();

    let (tx, rx) = std::sync::mpsc::channel::<(Instant, String)>();
    let config = NodeConfig {
        schedulers: 2,
        logger: Some(Arc::new(move |line: &LogLine<'_>| {
            if line.text.starts_with("config_change:") {
                let _ = tx.send((Instant::now(), line.text.to_string()));
            }
        })),
        ..NodeConfig::default()
    };
    let node = Node::start(config).unwrap();
    let handler = ReleaseHandler::start(node.clone(), root.clone()).unwrap();

    let mut times = Vec::new();
    for i in 0..samples {
        let ms = 2000 + i;
        let expect = format!("ticker = {ms} ms");
        let start = Instant::now();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.config_new())
            .unwrap();
        f.write_all(format!("ticker:ticker_server:ticker:{ms}\n").as_bytes())
            .unwrap();
        drop(f);
        loop {
            let (at, text) = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("config_change within 10 s");
            if text.contains(&expect) {
                times.push(at - start);
                break;
            }
        }
        // Let the work file go before the next sample.
        while root.config_new().exists() || root.config_dir().join("config.toml.new.work").exists()
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Let the watcher go idle, so each sample goes through event + debounce.
        std::thread::sleep(Duration::from_millis(50));
    }
    handler.stop(Duration::from_secs(5));
    node.shutdown(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&base);

    times.sort();
    let median_ms = times[times.len() / 2].as_secs_f64() * 1000.0;
    report::emit("config_change", 1, median_ms, "ms");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
    let max = *times.last().unwrap();
    println!(
        "config change .new -> config_change delivered ({} samples, {profile} module): \
         median {:.1} ms, p90 {:.1} ms, max {:.1} ms (target <= 100 ms)",
        times.len(),
        ms(median),
        ms(p90),
        ms(max)
    );
}
