//! The metrics endpoint (issue 20), scraped by a real Prometheus server: a node started by
//! `relup start` with `[metrics] listen` in its release.toml, a `prometheus` process started
//! here on loopback (temporary config and storage, a short scrape interval), and its query
//! API read for the values: the process count `relup status` gives, the running release,
//! an upgrade counted as `ok` after a real `relup upgrade`, the libraries mapped, a rejected
//! config line; then a handover (`relup restart`), after which the same address answers from
//! the new node.
//!
//! Needs the `prometheus` binary (Debian package `prometheus`; `.ci/run` installs it, or
//! `PROMETHEUS=/path/to/prometheus`): without it this test fails and says so.

mod common;

use common::{RELUP, ok, release_dir};
use relup_testkit::fixtures;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const APPUP: &str = r#"application = "app"
version = "0.2.0"

[[up]]
from = "0.1.0"
instructions = [ { update = "counter" } ]

[[down]]
to = "0.1.0"
instructions = [ { update = "counter" } ]
"#;

/// How long Prometheus gets to show a value (it scrapes every 250 ms).
const PATIENCE: Duration = Duration::from_secs(60);

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The `prometheus` binary: `PROMETHEUS`, else from `PATH`; a clear failure without one.
fn prometheus_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMETHEUS") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("prometheus"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the prometheus binary is not installed: this test scrapes the metrics \
                 endpoint with a real Prometheus server. Install it (Debian: `apt-get install \
                 prometheus`; .ci/run does) or point PROMETHEUS at one"
            )
        })
}

/// A node root with demo 0.1.0 deployed (its release.toml serves metrics on `metrics`)
/// and 0.2.0 packed; the node and Prometheus are killed and the directory removed on drop.
struct Setup {
    base: PathBuf,
    root: PathBuf,
    prometheus: Option<Child>,
}

impl Setup {
    fn new(metrics_port: u16) -> Setup {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("relup-metrics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let f = fixtures();
        let r1 = release_dir(&base, "0.1.0", &f.counter_v1, "1.0.0", None);
        let r2 = release_dir(&base, "0.2.0", &f.counter_v2, "2.0.0", Some(APPUP));
        for dir in [&r1, &r2] {
            let manifest = dir.join("release.toml");
            let text = std::fs::read_to_string(&manifest).unwrap();
            let metrics =
                format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n[probation]");
            std::fs::write(&manifest, text.replacen("[probation]", &metrics, 1)).unwrap();
        }
        let root = common::pack_and_deploy(&base, &[&r1, &r2]);
        Setup {
            base,
            root,
            prometheus: None,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(RELUP)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .env_remove("RELUP_METRICS_LISTEN")
            .stdin(Stdio::null())
            .output()
            .expect("relup runs")
    }

    /// Starts Prometheus on `port`, scraping `target` every 250 ms.
    fn start_prometheus(&mut self, port: u16, target: &str) {
        let dir = self.base.join("prometheus");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\n\
                 scrape_configs:\n  - job_name: relup\n    static_configs:\n      \
                 - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        self.prometheus = Some(child);
    }

    fn prometheus_log(&self) -> String {
        std::fs::read_to_string(self.base.join("prometheus/prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(mut child) = self.prometheus.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.run(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// One HTTP/1.0 GET of `path` on 127.0.0.1:`port`: the status line and the body.
fn http_get(port: u16, path: &str) -> std::io::Result<(String, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}

/// Percent-encodes a PromQL query for a URL.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The values Prometheus's instant query `query` returns now (none when it has no series
/// yet or does not answer yet).
fn query(port: u16, query: &str) -> Vec<f64> {
    let Ok((status, body)) = http_get(port, &format!("/api/v1/query?query={}", encode(query)))
    else {
        return Vec::new();
    };
    if !status.contains(" 200 ") {
        return Vec::new();
    }
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    json["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["value"][1].as_str()?.parse().ok())
        .collect()
}

/// Waits until Prometheus answers `q` with one value that satisfies `check`; the values it
/// gave last when it never does.
fn await_value(port: u16, q: &str, check: impl Fn(f64) -> bool) -> Result<f64, Vec<f64>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let values = query(port, q);
        if let [value] = values[..]
            && check(value)
        {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(values);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn prometheus_scrapes_the_node_and_sees_an_upgrade() {
    // Fails first, with the reason, when Prometheus is not installed.
    prometheus_binary();
    let metrics_port = free_port();
    let mut setup = Setup::new(metrics_port);
    ok(setup.run(&["start"]));
    let log = std::fs::read_to_string(setup.root.join("log/node.log")).unwrap();
    let endpoint = format!("127.0.0.1:{metrics_port}");
    assert!(
        log.contains(&format!("metrics on http://{endpoint}/metrics")),
        "{log}"
    );
    // The endpoint itself: the exposition format, refusing what is not a GET of /metrics.
    let (status, page) = http_get(metrics_port, "/metrics").unwrap();
    assert!(status.contains(" 200 "), "{status}");
    assert!(page.contains("# TYPE relup_processes gauge"), "{page}");
    assert!(
        http_get(metrics_port, "/").unwrap().0.contains(" 404 "),
        "only /metrics is served"
    );

    let prometheus_port = free_port();
    setup.start_prometheus(prometheus_port, &endpoint);
    let status: serde_json::Value =
        serde_json::from_str(&ok(setup.run(&["status", "--json"]))).unwrap();
    let processes = status["processes"].as_f64().unwrap();
    let scraped = await_value(prometheus_port, "up{job=\"relup\"}", |v| v == 1.0);
    assert!(
        scraped.is_ok(),
        "Prometheus never scraped {endpoint} ({scraped:?}); its log:\n{}",
        setup.prometheus_log()
    );
    assert_eq!(
        await_value(prometheus_port, "relup_processes", |v| v == processes),
        Ok(processes)
    );
    assert_eq!(
        await_value(
            prometheus_port,
            "relup_release_info{version=\"0.1.0\"}",
            |v| v == 1.0
        ),
        Ok(1.0)
    );

    // A real upgrade: counted as ok, the release info follows, both libraries mapped.
    let tarball = setup.base.join("out/demo-0.2.0.tar.gz");
    ok(setup.run(&["unpack", tarball.to_str().unwrap()]));
    ok(setup.run(&["upgrade", "0.2.0"]));
    assert_eq!(
        await_value(
            prometheus_port,
            "relup_upgrades_total{outcome=\"ok\"}",
            |v| v == 1.0
        ),
        Ok(1.0)
    );
    assert_eq!(
        await_value(
            prometheus_port,
            "relup_release_info{version=\"0.2.0\"}",
            |v| v == 1.0
        ),
        Ok(1.0)
    );
    assert_eq!(
        await_value(prometheus_port, "relup_libraries_mapped", |v| v >= 2.0).map(|_| ()),
        Ok(())
    );
    assert_eq!(
        await_value(
            prometheus_port,
            "relup_upgrades_total{outcome=\"rolled_back\"}",
            |v| v == 0.0
        ),
        Ok(0.0)
    );
    assert_eq!(
        await_value(prometheus_port, "relup_probation_active", |v| v == 0.0),
        Ok(0.0)
    );

    // A config line naming a key the release does not declare: rejected, and counted.
    let new = setup.root.join("config/config.toml.new");
    std::fs::write(&new, "app:counter:nosuch:1\n").unwrap();
    assert_eq!(
        await_value(
            prometheus_port,
            "relup_config_lines_total{result=\"rejected\"}",
            |v| v == 1.0
        ),
        Ok(1.0)
    );
    // The call histogram is well-formed: its +Inf bucket is the call count.
    let calls = await_value(prometheus_port, "relup_calls_total", |_| true).unwrap();
    assert_eq!(
        await_value(
            prometheus_port,
            "relup_call_duration_seconds_bucket{le=\"+Inf\"}",
            |v| v >= calls
        )
        .map(|_| ()),
        Ok(())
    );

    // A handover (relup restart) passes the endpoint's socket on: the same address is
    // scraped from the new node, whose counters start afresh (no install in this process).
    ok(setup.run(&["restart"]));
    assert_eq!(
        await_value(
            prometheus_port,
            "relup_upgrades_total{outcome=\"ok\"}",
            |v| v == 0.0
        ),
        Ok(0.0),
        "the new node never answered on {endpoint}"
    );
    assert_eq!(
        await_value(prometheus_port, "up{job=\"relup\"}", |v| v == 1.0),
        Ok(1.0)
    );
    assert_eq!(
        await_value(
            prometheus_port,
            "relup_release_info{version=\"0.2.0\"}",
            |v| v == 1.0
        ),
        Ok(1.0)
    );
}
