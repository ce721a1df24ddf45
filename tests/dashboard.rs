//! `relup dashboard` in a real headless browser (issue 20): Chromium driven by chromedriver
//! over the W3C WebDriver protocol (a small client over std::net below), against the real
//! CLI's dashboard and a real node running the `counter` test module.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`;
//! `.ci/run` installs them); `CHROME_BIN` and `CHROMEDRIVER` name other ones. Without them
//! the test fails and says so. Screenshots go to `RELUP_DASHBOARD_SCREENSHOTS` (a directory;
//! `docs/` for the committed ones) or else under the target directory.

mod common;

use common::{RELUP, ok, release_dir, relup};
use relup_testkit::fixtures;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the test waits for anything the page should come to show.
const PATIENCE: Duration = Duration::from_secs(90);

/// The first of `names` found in PATH (or the path in `env`, when set).
fn program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// One HTTP/1.1 exchange over std::net: the status and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).unwrap();
    // Read the head, then exactly Content-Length bytes: chromedriver may keep the
    // connection open whatever the request said.
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).unwrap();
        }
        None => {
            reader.read_to_end(&mut body).unwrap();
        }
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Decodes standard base64 (the screenshots WebDriver returns).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(value(*c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// A chromedriver process and one browser session in it; both end on drop.
struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Browser {
    fn start(base: &Path) -> Browser {
        const INSTALL: &str = "the dashboard test drives a real Chromium: install it with `apt-get install -y chromium chromium-driver` (Debian; .ci/run does), or set CHROME_BIN and CHROMEDRIVER";
        let chrome = program(
            "CHROME_BIN",
            &["chromium", "chromium-browser", "google-chrome"],
        )
        .unwrap_or_else(|| panic!("no chromium found: {INSTALL}"));
        let chromedriver = program("CHROMEDRIVER", &["chromedriver"])
            .unwrap_or_else(|| panic!("no chromedriver found: {INSTALL}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL}", chromedriver.display()));
        // Owned at once, so that a failure from here on kills chromedriver.
        let mut browser = Browser {
            driver,
            addr: format!("127.0.0.1:{port}"),
            session: String::new(),
            _profile: tempfile_dir::Dir(base.join("chromium-profile")),
        };
        let addr = browser.addr.clone();
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(&addr).is_err()
            || http(&addr, "GET", "/status", &[], None).0 != 200
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver never answered on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1350", "--hide-scrollbars",
                         format!("--user-data-dir={}", browser._profile.0.display())]
            }
        }}});
        let (status, body) = http(&browser.addr, "POST", "/session", &[], Some(&capabilities));
        assert_eq!(
            status,
            200,
            "chromedriver could not start {}: {body}",
            chrome.display()
        );
        let created: Value = serde_json::from_str(&body).unwrap();
        browser.session = created["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser
    }

    /// A WebDriver command of this session; returns its `value`.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = body.or_else(|| (method == "POST").then(|| json!({})));
        let (status, text) = http(&self.addr, method, &path, &[], body.as_ref());
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(status, 200, "{method} {path}: {text}");
        value["value"].clone()
    }

    fn open(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` in the page (its `arguments` are `args`); returns what it returns.
    fn script(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// The text of the first element matching `selector` ("" when there is none).
    fn text(&self, selector: &str) -> String {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            json!([selector]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits until the text of `selector` satisfies `done`; returns it.
    fn wait_text(&self, selector: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.text(selector);
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what} in {selector}: {text:?}\nwhole page:\n{}",
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The WebDriver id of the first element matching `selector`, if any.
    fn find(&self, selector: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let body = json!({"using": "css selector", "value": selector});
        let (status, text) = http(&self.addr, "POST", &path, &[], Some(&body));
        if status != 200 {
            return None;
        }
        let value: Value = serde_json::from_str(&text).ok()?;
        value["value"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// Clicks the element `selector` (through WebDriver, as a user would). The page rebuilds
    /// a section when its data changes: an element replaced between the find and the click
    /// is found again.
    fn click(&self, selector: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(id) = self.find(selector) {
                let path = format!("/session/{}/element/{id}/click", self.session);
                let (status, text) = http(&self.addr, "POST", &path, &[], Some(&json!({})));
                if status == 200 {
                    return;
                }
                assert!(
                    text.contains("stale element reference"),
                    "click on {selector}: {text}"
                );
            }
            assert!(Instant::now() < deadline, "no element {selector} to click");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `text` into the input `selector`, replacing what it held.
    fn type_into(&self, selector: &str, text: &str) {
        let id = self
            .find(selector)
            .unwrap_or_else(|| panic!("no input {selector}"));
        self.command("POST", &format!("/element/{id}/clear"), None);
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn screenshot(&self, name: &str) {
        let dir = std::env::var_os("RELUP_DASHBOARD_SCREENSHOTS").map_or_else(
            || Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard"),
            PathBuf::from,
        );
        std::fs::create_dir_all(&dir).unwrap();
        let png = base64(
            self.command("GET", "/screenshot", None)
                .as_str()
                .expect("base64 PNG"),
        );
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(dir.join(name), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(|| {
                http(
                    &self.addr,
                    "DELETE",
                    &format!("/session/{}", self.session),
                    &[],
                    None,
                )
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A root running release 0.1.0 of `demo` with 0.2.0 unpacked, and its dashboard.
struct Node {
    base: PathBuf,
    root: PathBuf,
    dashboard: Option<Child>,
}

impl Node {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--root", self.root.to_str().unwrap()];
        all.extend_from_slice(args);
        relup(&all)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut dashboard) = self.dashboard.take() {
            let _ = dashboard.kill();
            let _ = dashboard.wait();
        }
        let _ = self.run(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn node() -> Node {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("relup-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let f = fixtures();
    let appup = r#"application = "app"
version = "0.2.0"

[[up]]
from = "0.1.0"
instructions = [ { update = "counter" } ]

[[down]]
to = "0.1.0"
instructions = [ { update = "counter" } ]
"#;
    let v1 = release_dir(&base, "0.1.0", &f.counter_v1, "1.0.0", None);
    let v2 = release_dir(&base, "0.2.0", &f.counter_v2, "2.0.0", Some(appup));
    for dir in [&v1, &v2] {
        let manifest = std::fs::read_to_string(dir.join("release.toml")).unwrap();
        // A probation long enough for the page (polled every second) to show it under way,
        // and a config key, for the page's config section and its rejected lines.
        let manifest = manifest.replace("seconds = 1\n", "seconds = 8\n")
            + "\n[[applications.config]]\nmodule = \"counter\"\nkey = \"limit\"\ntype = \"integer\"\ndefault = 10\nrange = [0, 100]\n";
        std::fs::write(dir.join("release.toml"), manifest).unwrap();
    }
    let root = common::pack_and_deploy(&base, &[&v1, &v2]);
    let node = Node {
        base,
        root,
        dashboard: None,
    };
    ok(node.run(&["start"]));
    ok(node.run(&[
        "unpack",
        node.base.join("out/demo-0.2.0.tar.gz").to_str().unwrap(),
    ]));
    node
}

#[test]
fn the_dashboard_shows_the_node_and_upgrades_it_from_the_page() {
    let mut node = node();
    let mut dashboard = Command::new(RELUP)
        .args(["--root", node.root.to_str().unwrap(), "dashboard"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    // Kept open while the dashboard runs (a closed pipe would end it at its next line).
    let mut output = BufReader::new(dashboard.stdout.take().unwrap());
    output.read_line(&mut first).unwrap();
    node.dashboard = Some(dashboard);
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let token = url.split("token=").nth(1).expect("a token in the URL");

    // Without the token (or with another one): 403, for the page and the API alike.
    assert_eq!(http(&addr, "GET", "/", &[], None).0, 403);
    assert_eq!(
        http(&addr, "GET", "/api/state?token=0000", &[], None).0,
        403
    );
    let upgrade = json!({"action": "upgrade", "version": "0.2.0"});
    assert_eq!(
        http(&addr, "POST", "/api/action", &[], Some(&upgrade)).0,
        403
    );
    assert_eq!(
        http(&addr, "GET", &format!("/?token={token}"), &[], None).0,
        200
    );

    let browser = Browser::start(&node.base);
    browser.open(&url);
    // The running release, protected (LIVE), and the tree with its mailbox sizes.
    let row = browser.wait_text(
        "#releases tr[data-version='0.1.0']",
        "0.1.0 running and LIVE",
        |t| t.contains("permanent") && t.contains("LIVE") && t.contains("running"),
    );
    assert!(
        !row.contains("remove"),
        "the permanent release offers no remove: {row}"
    );
    browser.wait_text(
        "#releases tr[data-version='0.2.0']",
        "0.2.0 unpacked",
        |t| t.contains("unpacked"),
    );
    browser.wait_text("#tree", "c1 in the tree", |t| {
        t.contains("c1") && t.contains("counter 1.0.0") && t.contains("mailbox 0")
    });
    browser.wait_text("#release", "the running release", |t| {
        t.contains("demo 0.1.0")
    });
    // Config lines from config.toml.new: one applied, one out of range (config.toml.rej).
    std::fs::write(
        node.root.join("config/config.toml.new"),
        "app:counter:limit:42\napp:counter:limit:500\n",
    )
    .unwrap();
    browser.wait_text("#config", "the applied value", |t| {
        t.contains("app:limit") && t.contains("42")
    });
    let rejects = browser.wait_text("#rejects", "the rejected line", |t| t.contains("500"));
    assert!(rejects.contains("limit"), "{rejects}");
    browser.screenshot("dashboard.png");

    // An upgrade started from the page lands: 0.2.0 runs, passes its probation and is LIVE.
    browser.click("#releases tr[data-version='0.2.0'] button[data-act='upgrade']");
    browser.wait_text("#actions", "the upgrade's progress", |t| {
        t.contains("upgrade 0.2.0")
    });
    let probation = browser.wait_text("#probation", "the probation under way", |t| {
        t.contains("0.2.0 on probation") && t.contains(" s left")
    });
    assert!(probation.contains("falls back to 0.1.0"), "{probation}");
    assert!(probation.contains("health rounds"), "{probation}");
    browser.screenshot("dashboard-probation.png");
    let landed = browser.wait_text(
        "#releases tr[data-version='0.2.0']",
        "0.2.0 permanent",
        |t| t.contains("permanent") && t.contains("LIVE") && t.contains("running"),
    );
    assert!(landed.contains("LIVE"), "{landed}");
    browser.wait_text("#releases tr[data-version='0.1.0']", "0.1.0 old", |t| {
        t.contains("old") && !t.contains("LIVE")
    });
    let action = browser.wait_text(".action[data-state='done']", "the upgrade done", |t| {
        t.contains("upgrade 0.2.0")
    });
    assert!(action.contains("running 0.2.0 (permanent)"), "{action}");
    assert!(
        action.contains("code_change counter up from 1.0.0"),
        "progress lines: {action}"
    );
    let journal = browser.wait_text("#journal", "the install in the journal", |t| {
        t.contains("permanent 0.2.0")
    });
    assert!(journal.contains("install 0.1.0 -> 0.2.0"), "{journal}");
    assert!(journal.contains("probation 0.2.0: passed"), "{journal}");
    browser.wait_text("#probation", "the last verdict", |t| {
        t.contains("none under way") && t.contains("last probation:\nprobation 0.2.0: passed")
    });
    browser.wait_text("#tree", "c1 on 2.0.0", |t| t.contains("counter 2.0.0"));
    browser.wait_text("#snapshots", "the snapshot taken before the install", |t| {
        t.contains("0.1.0 → 0.2.0")
    });
    // The node agrees.
    let releases = ok(node.run(&["releases"]));
    assert!(releases.contains("0.2.0 permanent"), "{releases}");

    // Refused: a downgrade to a version that is not installed, and removing the LIVE one;
    // each shows the node's reason, and nothing changes.
    browser.type_into("#version", "0.0.9");
    browser.click("#do-downgrade");
    let refused = browser.wait_text(
        ".action[data-state='failed']",
        "the refused downgrade",
        |t| t.contains("downgrade 0.0.9"),
    );
    assert!(refused.contains("0.0.9"), "{refused}");
    browser.type_into("#version", "0.2.0");
    browser.click("#do-remove");
    let removed = browser.wait_text(".action[data-state='failed']", "the refused remove", |t| {
        t.contains("remove 0.2.0")
    });
    assert!(
        removed.contains("permanent"),
        "the reason names the permanent release: {removed}"
    );
    browser.wait_text(
        "#releases tr[data-version='0.2.0']",
        "0.2.0 still LIVE",
        |t| t.contains("LIVE"),
    );
    let releases = ok(node.run(&["releases"]));
    assert!(
        releases.contains("0.2.0 permanent") && releases.contains("0.1.0 old"),
        "{releases}"
    );
    browser.screenshot("dashboard-refused.png");

    // A downgrade whose probation fails its health check: c1's count made negative through
    // the console while 0.1.0 is on probation. The page shows the failure's reason, and the
    // node rolls back to 0.2.0 by itself.
    browser.click("#releases tr[data-version='0.1.0'] button[data-act='downgrade']");
    browser.wait_text("#probation", "0.1.0 on probation", |t| {
        t.contains("0.1.0 on probation")
    });
    ok(node.run(&["call", "c1", r#"{"Add": -1000}"#]));
    let verdict = browser.wait_text("#probation", "the failed probation", |t| {
        t.contains("probation 0.1.0: rolled back, running 0.2.0")
    });
    assert!(verdict.contains("none under way"), "{verdict}");
    assert!(
        verdict.contains("probation 0.1.0: FAILED") && verdict.contains("count is negative"),
        "the health check's result: {verdict}"
    );
    let journal = browser.wait_text("#journal", "the failure in the journal", |t| {
        t.contains("probation 0.1.0: FAILED")
    });
    assert!(
        journal.contains("count is negative"),
        "the health check's reason: {journal}"
    );
    let failed = browser.wait_text(
        ".action[data-state='failed']",
        "the downgrade failed",
        |t| t.contains("downgrade 0.1.0"),
    );
    assert!(failed.contains("count is negative"), "{failed}");
    browser.wait_text(
        "#releases tr[data-version='0.2.0']",
        "0.2.0 running and LIVE again",
        |t| t.contains("LIVE") && t.contains("running"),
    );
    browser.wait_text("#tree", "c1 back on 2.0.0", |t| t.contains("counter 2.0.0"));
    browser.screenshot("dashboard-rollback.png");

    // A downgrade scheduled in a window, then cancelled, from the page.
    browser.type_into("#version", "0.1.0");
    browser.type_into("#sched-in", "10m");
    browser.click("#do-schedule");
    let scheduled = browser.wait_text("#scheduled", "the scheduled downgrade", |t| {
        t.contains("→ 0.1.0")
    });
    assert!(scheduled.contains("cancel"), "{scheduled}");
    let status = ok(node.run(&["status"]));
    assert!(
        status.contains("scheduled: ") && status.contains("-> 0.1.0"),
        "{status}"
    );
    browser.click("#scheduled button");
    browser.wait_text("#scheduled", "no schedule left", |t| t.trim() == "none");
    let status = ok(node.run(&["status"]));
    assert!(!status.contains("scheduled: "), "{status}");
    drop(output);
}

/// Starts `relup dashboard` on `root` with `args`; returns it, its address and its token.
fn dashboard(
    root: &Path,
    args: &[&str],
) -> (Child, BufReader<std::process::ChildStdout>, String, String) {
    let mut child = Command::new(RELUP)
        .args(["--root", root.to_str().unwrap(), "dashboard"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    output.read_line(&mut first).unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let token = url.split("token=").nth(1).expect("a token").to_string();
    (child, output, addr, token)
}

#[test]
fn the_dashboard_keeps_to_loopback_and_bounds_its_requests() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("relup-dashboard-door-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    // Not loopback: refused before anything listens.
    let refused = relup(&[
        "--root",
        base.to_str().unwrap(),
        "dashboard",
        "--listen",
        "0.0.0.0:0",
    ]);
    common::fails(refused, "not a loopback address");

    // No node on this root: the page's state says so, and the dashboard keeps serving.
    let (mut child, _output, addr, token) = dashboard(&base, &["--listen", "127.0.0.1:0"]);
    let header = [("X-Relup-Token", token.as_str())];
    let (status, body) = http(&addr, "GET", "/api/state", &header, None);
    assert_eq!(status, 200, "{body}");
    let state: Value = serde_json::from_str(&body).unwrap();
    assert!(
        state["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not running"),
        "{state}"
    );
    // A token in the query reads, but an action needs the header.
    let query = format!("/api/state?token={token}");
    assert_eq!(http(&addr, "GET", &query, &[], None).0, 200);
    let action = json!({"action": "upgrade", "version": "0.2.0"});
    let post = format!("/api/action?token={token}");
    assert_eq!(http(&addr, "POST", &post, &[], Some(&action)).0, 403);
    // Not an action, not a version: 400 with the reason.
    let (status, body) = http(
        &addr,
        "POST",
        "/api/action",
        &header,
        Some(&json!({"action": "explode"})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown variant"), "{body}");
    let (status, body) = http(
        &addr,
        "POST",
        "/api/action",
        &header,
        Some(&json!({"action": "upgrade", "version": "next"})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a version"), "{body}");
    // A head larger than 16 KiB: 413.
    let big = "x".repeat(20 * 1024);
    assert_eq!(
        http(&addr, "GET", "/", &[("X-Padding", big.as_str())], None).0,
        413
    );
    // Unknown paths and methods.
    assert_eq!(http(&addr, "GET", "/nope", &header, None).0, 404);
    assert_eq!(http(&addr, "DELETE", "/api/state", &header, None).0, 405);
    // A client that never finishes its request is cut off (408), and others are served meanwhile.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert_eq!(http(&addr, "GET", &query, &[], None).0, 200);
    slow.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut answer = String::new();
    BufReader::new(slow).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&base);
}
