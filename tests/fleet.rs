//! A fleet (issue 19): the per-node verbs a fleet driver reads (`relup upgrade/downgrade
//! --json`: the outcome in the exit code and the last JSON object; `relup status --json`), and
//! the Ansible playbooks of `deploy/ansible/` driving six real nodes on this machine, each its
//! own root (`ansible_connection=local`, the root a host variable), each under a small client
//! load (status requests on its control socket in a loop) during the rollout:
//!
//! (a) a good 0.2.0 rolls through 3 batches (`[1, "25%", "100%"]`): every node ends on it,
//!     permanent, with its processes (not restarted: their states migrated) and config, and
//!     no failed client request; the check mode before it changed nothing; the fleet status
//!     playbook prints every host's versions; (c) a rerun changes nothing;
//! (b) a 0.2.0 whose health check fails on one host of the second batch (`[1, 2, 3]`) stops
//!     the rollout: batch 1 and 2 are back on 0.1.0, batch 3 was never touched, and the
//!     playbook fails naming the host and the reason; then a maintenance window in the past is
//!     refused on every host, and one in the future is scheduled on every host.
//!
//! `ansible-playbook` must be installed (`.ci/run` installs ansible-core from PyPI): without
//! it these tests FAIL, saying so.

mod reliability;

use reliability::{RELUP, Root, ok, tarballs, text};
use relup_runtime::control::{Client, Event, Request};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// The `ansible-playbook` to run: `$ANSIBLE_PLAYBOOK`, else the one in `PATH`, else the one
/// of the virtual environment `.ci/run` may create (`target/ansible-venv`). None: the test
/// fails with how to install it.
fn ansible_playbook() -> PathBuf {
    if let Some(path) = std::env::var_os("ANSIBLE_PLAYBOOK") {
        return PathBuf::from(path);
    }
    let venv = relup_testkit::workspace_root().join("target/ansible-venv/bin/ansible-playbook");
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("ansible-playbook"))
            .find(|candidate| candidate.is_file())
    });
    match in_path.or_else(|| venv.is_file().then_some(venv)) {
        Some(path) => path,
        None => panic!(
            "ansible-playbook is not installed: the fleet tests drive the real Ansible; \
             install it with `python3 -m pip install ansible-core` (.ci/run does), or set \
             ANSIBLE_PLAYBOOK to its path"
        ),
    }
}

/// `deploy/ansible/`.
fn playbooks() -> PathBuf {
    relup_testkit::workspace_root().join("deploy/ansible")
}

/// The node's `relup status --json`.
fn status(root: &Root) -> serde_json::Value {
    let out = ok(root.run(&["status", "--json"]));
    serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("status is not JSON ({e}): {out}"))
}

/// The last JSON object on stdout of `output`, and its exit code.
fn outcome(output: &Output) -> (serde_json::Value, i32) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line is not JSON ({e}):\n{}", text(output)));
    (value, output.status.code().unwrap_or(-1))
}

/// The pids of the node's processes, by child id (to see that none was restarted).
fn pids(status: &serde_json::Value) -> Vec<(String, u64)> {
    status["tree"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["id"].as_str()?.to_string(), e["pid"].as_u64()?)))
        .collect()
}

/// Asserts that the node runs `version`, permanent, with no probation or schedule pending.
#[track_caller]
fn assert_on(root: &Root, version: &str) {
    let s = status(root);
    assert_eq!(s["running"], version, "{}: {s}", root.path.display());
    assert_eq!(s["permanent"], version, "{}: {s}", root.path.display());
    assert_eq!(s["probation_pending"], false, "{s}");
}

/// The journal of the node.
fn journal(root: &Root) -> String {
    std::fs::read_to_string(root.path.join("log/upgrade.log")).unwrap_or_default()
}

/// The time of the first journal line that contains `needle`.
fn journal_time(journal: &str, needle: &str) -> Option<SystemTime> {
    journal
        .lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_once(' '))
        .and_then(|(time, _)| humantime::parse_rfc3339(time).ok())
}

/// Status requests on every node's control socket in a loop (one client thread per node)
/// until stopped; each thread returns its answered count and every failure.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<(u64, Vec<String>)>>,
}

impl Load {
    fn start(nodes: &[Root]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = nodes
            .iter()
            .map(|node| {
                let (socket, stop) = (node.socket(), stop.clone());
                std::thread::spawn(move || {
                    let (mut answered, mut failures) = (0, Vec::new());
                    while !stop.load(Ordering::SeqCst) {
                        let event = Client::connect(&socket)
                            .and_then(|c| c.with_timeout(Some(Duration::from_secs(30))))
                            .and_then(|c| c.request(&Request::Status, &mut |_| {}));
                        match event {
                            Ok(Event::Done { .. }) => answered += 1,
                            other => failures.push(format!("{other:?}")),
                        }
                        // A small load, not a flood: the machine also runs Ansible.
                        std::thread::sleep(Duration::from_millis(25));
                    }
                    (answered, failures)
                })
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops the clients; asserts that each got answers and none failed.
    fn check(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = 0;
        for (i, client) in self.clients.into_iter().enumerate() {
            let (answered, failures) = client.join().unwrap();
            assert!(
                failures.is_empty(),
                "node {}: {} failed request(s): {failures:?}",
                i + 1,
                failures.len()
            );
            assert!(answered > 0, "node {}: no request answered", i + 1);
            total += answered;
        }
        total
    }
}

/// Six nodes on 0.1.0 (n1..n6), started, each with a config value set (`ticker = 5`).
struct Fleet {
    name: String,
    nodes: Vec<Root>,
    dir: PathBuf,
}

impl Fleet {
    fn new(name: &str, size: usize) -> Fleet {
        let nodes: Vec<Root> = (1..=size)
            .map(|i| Root::new(&format!("{name}{i}"), false))
            .collect();
        for node in &nodes {
            node.start(&[]);
            ok(node.run(&["config", "set", "app:counter:ticker:5"]));
        }
        let dir = reliability::base_dir().join(format!("{name}-ansible"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Fleet {
            name: name.to_string(),
            nodes,
            dir,
        }
    }

    /// Writes the inventory: group `relup`, hosts n1..n6 in order, each with its root, this
    /// relup binary, a local connection, `group` variables (`"k=v"`) and `extra` host
    /// variables (`(host index, "k=v")`, which win over the group's; `-e` wins over both).
    fn inventory(&self, group: &[String], extra: &[(usize, String)]) -> PathBuf {
        let mut text = String::from("[relup]\n");
        for (i, node) in self.nodes.iter().enumerate() {
            text.push_str(&format!(
                "n{} relup_root={} ansible_connection=local",
                i + 1,
                node.path.display()
            ));
            for (_, var) in extra.iter().filter(|(host, _)| *host == i + 1) {
                text.push_str(&format!(" {var}"));
            }
            text.push('\n');
        }
        text.push_str(&format!(
            "\n[relup:vars]\nrelup_bin={RELUP}\nansible_python_interpreter=\"{{{{ ansible_playbook_python }}}}\"\n"
        ));
        for var in group {
            text.push_str(&format!("{var}\n"));
        }
        let path = self.dir.join("inventory.ini");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `ansible-playbook -i <inventory> deploy/ansible/<playbook> args`.
    fn playbook(&self, inventory: &Path, playbook: &str, args: &[&str]) -> Output {
        let tmp = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let started = std::time::Instant::now();
        let output = Command::new(ansible_playbook())
            .current_dir(playbooks())
            .arg("-i")
            .arg(inventory)
            .arg(playbook)
            .args(args)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .env("ANSIBLE_LOCAL_TEMP", &tmp)
            .env("ANSIBLE_REMOTE_TEMP", &tmp)
            .env("ANSIBLE_HOME", self.dir.join("home"))
            .env("ANSIBLE_FORKS", "6")
            .env("ANSIBLE_PIPELINING", "1")
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", ansible_playbook().display()));
        eprintln!(
            "--- {} {playbook} {args:?}: {} in {} ms\n{}",
            self.name,
            output.status,
            started.elapsed().as_millis(),
            tail(&text(&output), 40)
        );
        output
    }

    /// Prints the rollout figures from the journals: per node when its install began, how
    /// long its probation lasted; per batch (`batches`: node counts) how long it took.
    fn figures(&self, version: &str, batches: &[usize]) {
        let mut first = 0;
        for (b, size) in batches.iter().enumerate() {
            let mut start: Option<SystemTime> = None;
            let mut end: Option<SystemTime> = None;
            for i in first..first + size {
                let j = journal(&self.nodes[i]);
                let install = journal_time(&j, &format!(" -> {version} via"));
                let probation = journal_time(&j, &format!("probation {version}: "));
                let passed = journal_time(&j, &format!("probation {version}: passed"))
                    .or_else(|| journal_time(&j, &format!("probation {version}: FAILED")));
                let ms = |a: Option<SystemTime>, b: Option<SystemTime>| match (a, b) {
                    (Some(a), Some(b)) => b.duration_since(a).unwrap_or_default().as_millis(),
                    _ => 0,
                };
                eprintln!(
                    "fleet {}: batch {} n{}: install {} ms, probation {} ms",
                    self.name,
                    b + 1,
                    i + 1,
                    ms(install, probation),
                    ms(probation, passed)
                );
                start = match (start, install) {
                    (Some(s), Some(i)) => Some(s.min(i)),
                    (s, i) => s.or(i),
                };
                end = end.max(passed);
            }
            if let (Some(s), Some(e)) = (start, end) {
                eprintln!(
                    "fleet {}: batch {} ({size} node(s)): {} ms from the first install to the last probation's end",
                    self.name,
                    b + 1,
                    e.duration_since(s).unwrap_or_default().as_millis()
                );
            }
            first += size;
        }
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The PLAY RECAP line of `host`.
fn recap<'a>(output: &'a str, host: &str) -> &'a str {
    let recap = output.rsplit("PLAY RECAP").next().unwrap_or_default();
    recap
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no recap line for {host}:\n{output}"))
}

#[test]
fn per_node_verbs_say_how_they_ended() {
    let node = Root::new("verbs", false);
    node.start(&[]);
    let t = tarballs();
    // Refused: not unpacked; nothing changed.
    let (value, code) = outcome(&node.run(&["upgrade", "0.2.0", "--json"]));
    assert_eq!(
        (value["outcome"].as_str(), code),
        (Some("refused"), 3),
        "{value}"
    );
    assert!(
        value["reason"].as_str().unwrap().contains("0.2.0"),
        "{value}"
    );
    assert_eq!(value["running_version"], "0.1.0", "{value}");
    // Rolled back: the unhealthy 0.2.0 fails its probation.
    ok(node.run(&["unpack", t.v2_unhealthy.to_str().unwrap()]));
    let (value, code) = outcome(&node.run(&["upgrade", "0.2.0", "--json", "--probation", "1s"]));
    assert_eq!(
        (value["outcome"].as_str(), code),
        (Some("rolled_back"), 2),
        "{value}"
    );
    assert_eq!(value["running"], "0.1.0", "{value}");
    assert_eq!(value["permanent"], true, "{value}");
    assert!(
        value["reason"]
            .as_str()
            .unwrap()
            .contains("failed its probation"),
        "{value}"
    );
    // Already: 0.1.0 runs and is permanent, for upgrade and downgrade alike.
    for verb in ["upgrade", "downgrade"] {
        let (value, code) = outcome(&node.run(&[verb, "0.1.0", "--json"]));
        assert_eq!(
            (value["outcome"].as_str(), code),
            (Some("already"), 0),
            "{value}"
        );
    }
    let human = ok(node.run(&["upgrade", "0.1.0"]));
    assert!(
        human.contains("already running (permanent); nothing was changed"),
        "{human}"
    );
    // Upgraded, then already; downgraded.
    ok(node.run(&["unpack", "--force", t.v2.to_str().unwrap()]));
    let (value, code) = outcome(&node.run(&["upgrade", "0.2.0", "--json", "--probation", "0"]));
    assert_eq!(
        (value["outcome"].as_str(), code),
        (Some("upgraded"), 0),
        "{value}"
    );
    assert_eq!(
        (&value["running"], &value["permanent"]),
        (&"0.2.0".into(), &true.into())
    );
    let before = journal(&node);
    let (value, code) = outcome(&node.run(&["upgrade", "0.2.0", "--json"]));
    assert_eq!(
        (value["outcome"].as_str(), code),
        (Some("already"), 0),
        "{value}"
    );
    assert_eq!(journal(&node), before, "an `already` changes nothing");
    let s = status(&node);
    assert_eq!(
        (&s["running"], &s["permanent"]),
        (&"0.2.0".into(), &"0.2.0".into())
    );
    assert_eq!(s["old"], serde_json::json!(["0.1.0"]), "{s}");
    assert_eq!(
        (&s["probation_pending"], &s["scheduled_pending"]),
        (&false.into(), &false.into())
    );
    // Refused: the wrong direction.
    let (value, code) = outcome(&node.run(&["upgrade", "0.1.0", "--json"]));
    assert_eq!(
        (value["outcome"].as_str(), code),
        (Some("refused"), 3),
        "{value}"
    );
    let (value, code) = outcome(&node.run(&["downgrade", "0.1.0", "--json", "--probation", "0"]));
    assert_eq!(
        (value["outcome"].as_str(), code),
        (Some("downgraded"), 0),
        "{value}"
    );
    // Scheduled, shown as pending; a past time refused.
    let (value, code) = outcome(&node.run(&["upgrade", "0.2.0", "--json", "--in", "1h"]));
    assert_eq!(
        (value["outcome"].as_str(), code),
        (Some("scheduled"), 0),
        "{value}"
    );
    assert_eq!(status(&node)["scheduled_pending"], true);
    let (value, code) =
        outcome(&node.run(&["upgrade", "0.2.0", "--json", "--at", "2001-01-01T00:00:00Z"]));
    assert_eq!(
        (value["outcome"].as_str(), code),
        (Some("refused"), 3),
        "{value}"
    );
    assert!(
        value["reason"].as_str().unwrap().contains("in the past"),
        "{value}"
    );
    ok(node.run(&["cancel"]));
    node.stop();
}

#[test]
fn a_good_release_rolls_through_three_batches_and_a_rerun_changes_nothing() {
    let fleet = Fleet::new("good", 6);
    let t = tarballs();
    let tarball = format!("relup_tarball={}", t.v2.display());
    let inventory = fleet.inventory(&[], &[]);
    let before: Vec<_> = fleet.nodes.iter().map(|n| pids(&status(n))).collect();
    // Check mode changes nothing: n1 has 0.2.0 unpacked (plan and check run there), the
    // others not (said so).
    ok(fleet.nodes[0].run(&["unpack", t.v2.to_str().unwrap()]));
    let journals: Vec<String> = fleet.nodes.iter().map(journal).collect();
    let out = fleet.playbook(&inventory, "rollout.yml", &["--check", "-e", &tarball]);
    let all = text(&out);
    assert!(out.status.success(), "check mode failed:\n{all}");
    assert!(
        all.contains("check 0.1.0 -> 0.2.0"),
        "n1 was checked:\n{all}"
    );
    assert!(
        all.contains("n2: would copy and unpack demo-0.2.0.tar.gz"),
        "{all}"
    );
    for (node, journal_before) in fleet.nodes.iter().zip(&journals) {
        assert_on(node, "0.1.0");
        assert_eq!(&journal(node), journal_before, "check mode changed nothing");
        assert!(
            !node.path.join("incoming").exists(),
            "check mode copied nothing"
        );
    }
    // The rollout, under load, with the node's probation and an operator health command.
    let load = Load::start(&fleet.nodes);
    let out = fleet.playbook(
        &inventory,
        "rollout.yml",
        &[
            "-e",
            &tarball,
            "-e",
            "relup_probation=1s",
            "-e",
            r#"{"relup_health_cmd": "{{ relup_bin }} status --root {{ relup_root }} | grep -q 'counter 2.0.0'"}"#,
        ],
    );
    let answered = load.check();
    let all = text(&out);
    assert!(out.status.success(), "the rollout failed:\n{all}");
    eprintln!("fleet good: {answered} status requests answered during the rollout, none failed");
    fleet.figures("0.2.0", &[1, 1, 4]);
    // Three batches, in order: each batch's installs began after the previous batch's
    // probations passed.
    let installs: Vec<SystemTime> = fleet
        .nodes
        .iter()
        .map(|n| journal_time(&journal(n), " -> 0.2.0 via").expect("installed"))
        .collect();
    let passed: Vec<SystemTime> = fleet
        .nodes
        .iter()
        .map(|n| journal_time(&journal(n), "probation 0.2.0: passed").expect("probation passed"))
        .collect();
    assert!(passed[0] <= installs[1], "batch 2 began after batch 1");
    for (i, install) in installs.iter().enumerate().skip(2) {
        assert!(
            passed[1] <= *install,
            "batch 3 (n{}) began after batch 2",
            i + 1
        );
    }
    for (i, node) in fleet.nodes.iter().enumerate() {
        assert_on(node, "0.2.0");
        let s = status(node);
        assert_eq!(pids(&s), before[i], "n{}: no process restarted", i + 1);
        let modules = s["modules"].to_string();
        assert!(modules.contains("2.0.0"), "{modules}");
        let config = ok(node.run(&["--json", "config", "get", "app:ticker"]));
        let config: serde_json::Value = serde_json::from_str(config.trim()).unwrap();
        assert_eq!(
            (&config["keys"][0]["value"], &config["keys"][0]["origin"]),
            (&"5".into(), &"operator".into()),
            "n{}: config kept: {config}",
            i + 1
        );
    }
    // The fleet status playbook.
    let out = fleet.playbook(&inventory, "status.yml", &[]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    for i in 1..=6 {
        assert!(
            all.contains(&format!("relup-status n{i} running=0.2.0 permanent=0.2.0")),
            "n{i}:\n{all}"
        );
    }
    assert!(all.contains("the fleet runs one version: 0.2.0"), "{all}");
    // (c) A rerun changes nothing.
    let journals: Vec<String> = fleet.nodes.iter().map(journal).collect();
    let out = fleet.playbook(&inventory, "rollout.yml", &["-e", &tarball]);
    let all = text(&out);
    assert!(out.status.success(), "the rerun failed:\n{all}");
    for (i, node) in fleet.nodes.iter().enumerate() {
        let line = recap(&all, &format!("n{}", i + 1));
        assert!(
            line.contains("changed=0") && line.contains("failed=0"),
            "{line}"
        );
        assert_eq!(
            journal(node),
            journals[i],
            "n{}: the rerun changed nothing",
            i + 1
        );
        assert_on(node, "0.2.0");
    }
    assert!(all.contains("already on 0.2.0"), "{all}");
    for node in &fleet.nodes {
        node.stop();
    }
}

#[test]
fn a_failed_health_check_in_batch_two_rolls_the_fleet_back() {
    let fleet = Fleet::new("bad", 6);
    let t = tarballs();
    let tarball = format!("relup_tarball={}", t.v2.display());
    // n3, in batch 2 (n2, n3), gets a 0.2.0 whose health check fails (a host variable, over
    // the group's tarball).
    let inventory = fleet.inventory(
        std::slice::from_ref(&tarball),
        &[(3, format!("relup_tarball={}", t.v2_unhealthy.display()))],
    );
    let load = Load::start(&fleet.nodes);
    let out = fleet.playbook(
        &inventory,
        "rollout.yml",
        &[
            "-e",
            "relup_probation=1s",
            "-e",
            r#"{"relup_serial": [1, 2, 3]}"#,
        ],
    );
    load.check();
    let all = text(&out);
    assert!(!out.status.success(), "the rollout should fail:\n{all}");
    assert!(
        all.contains("relup rollout of 0.2.0 stopped: n3 failed")
            && all.contains("rolled_back: 0.2.0 failed its probation"),
        "the failure names the host and the reason:\n{all}"
    );
    fleet.figures("0.2.0", &[1, 2]);
    // Batch 1 and 2: back on 0.1.0 (n1 and n2 by the fleet rollback, n3 by its probation).
    for (i, node) in fleet.nodes.iter().enumerate().take(3) {
        assert_on(node, "0.1.0");
        let j = journal(node);
        assert!(j.contains("install 0.1.0 -> 0.2.0 via"), "n{}: {j}", i + 1);
    }
    for i in [0, 1] {
        let j = journal(&fleet.nodes[i]);
        assert!(j.contains("probation 0.2.0: passed"), "n{}: {j}", i + 1);
        assert!(
            j.contains("install 0.2.0 -> 0.1.0 via"),
            "n{}: rolled back: {j}",
            i + 1
        );
    }
    assert!(journal(&fleet.nodes[2]).contains("probation 0.2.0: FAILED"));
    // Batch 3: never touched.
    for (i, node) in fleet.nodes.iter().enumerate().skip(3) {
        assert_on(node, "0.1.0");
        assert!(!journal(node).contains("install"), "n{} was touched", i + 1);
        assert!(
            !node.path.join("incoming").exists(),
            "n{} got a copy",
            i + 1
        );
        assert_eq!(status(node)["unpacked"], serde_json::json!([]));
    }
    // A maintenance window in the past is refused on every host, and nothing is scheduled.
    let good = fleet.inventory(&[], &[]);
    let out = fleet.playbook(
        &good,
        "rollout.yml",
        &["-e", &tarball, "-e", "relup_at=2001-01-01T00:00:00Z"],
    );
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("relup_at=2001-01-01T00:00:00Z is in the past"),
        "{all}"
    );
    for (i, node) in fleet.nodes.iter().enumerate() {
        assert_eq!(status(node)["scheduled_pending"], false);
        if i >= 3 {
            assert!(
                !node.path.join("incoming").exists(),
                "n{} got a copy",
                i + 1
            );
        }
    }
    // One in the future is scheduled on every host (then cancelled).
    let at = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600));
    let out = fleet.playbook(
        &good,
        "rollout.yml",
        &["-e", &tarball, "-e", &format!("relup_at={at}")],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    for node in &fleet.nodes {
        let s = status(node);
        assert_eq!(s["scheduled_pending"], true, "{s}");
        assert_eq!(s["running"], "0.1.0", "{s}");
        ok(node.run(&["cancel"]));
    }
    for node in &fleet.nodes {
        node.stop();
    }
}
