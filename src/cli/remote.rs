//! Commands that talk to a running node over its control socket.

use super::Failure;
use super::output::{Outcome, add_error_field, print_json, progress_line, set_exit_code};
use relup_runtime::control::{Client, ClientError, Event, Request, StatusReport};
use relup_runtime::handler::Schedule;
use relup_runtime::release::ReleaseRoot;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// What this command learned of the node: [`UNKNOWN`] until it tries the control socket.
static REACHED: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const RUNNING: u8 = 1;
const NOT_RUNNING: u8 = 2;

/// Whether the last connection to the control socket found a node (`None`: none tried).
fn reached() -> Option<bool> {
    match REACHED.load(Ordering::SeqCst) {
        RUNNING => Some(true),
        NOT_RUNNING => Some(false),
        _ => None,
    }
}

/// Records whether a node accepted the connection (for `relup log` and `--json` failures).
fn set_reached(running: bool) {
    REACHED.store(
        if running { RUNNING } else { NOT_RUNNING },
        Ordering::SeqCst,
    );
    add_error_field("running", running.into());
}

/// Which way an install is meant to go (checked against the running version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// To a newer version.
    Up,
    /// To an older version.
    Down,
}

/// How long a command waits for the node's next line when `RELUP_CONTROL_TIMEOUT` is unset.
pub const DEFAULT_CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// `$RELUP_CONTROL_TIMEOUT` (a duration such as 30s; 0 waits forever), else
/// [`DEFAULT_CONTROL_TIMEOUT`]: how long a command waits for the node's next line.
pub(super) fn control_timeout() -> Result<Option<Duration>, Failure> {
    match std::env::var("RELUP_CONTROL_TIMEOUT") {
        Err(_) => Ok(Some(DEFAULT_CONTROL_TIMEOUT)),
        Ok(text) => {
            let timeout = parse_duration(&text)
                .map_err(|e| Failure(format!("RELUP_CONTROL_TIMEOUT: {e}; 0 waits forever")))?;
            Ok(Some(timeout).filter(|t| !t.is_zero()))
        }
    }
}

/// Whether the node may stay silent for long while it carries out `request` (an install's
/// probation, an unpack's verification, a wait for the install or RELEASES lock): the command
/// then waits as long as the node's process runs, and gives up only when it is stopped.
fn may_be_silent(request: &Request) -> bool {
    !matches!(
        request,
        Request::Status
            | Request::Releases
            | Request::Snapshots
            | Request::Schedule { .. }
            | Request::Cancel { .. }
            | Request::Log
            | Request::ConfigGet { .. }
            | Request::Stop
    )
}

/// The pid in `<root>/run/node.pid`, if it holds one.
pub(super) fn node_pid(root: &ReleaseRoot) -> Option<i32> {
    std::fs::read_to_string(root.pid_file())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|pid| *pid > 0)
}

/// The state letter of process `pid` (`R`, `S`, `T` for stopped...), from `/proc`; `None`
/// when it does not exist (or `/proc` cannot tell).
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold anything: the state follows the last `)`.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// `d` in seconds, as an operator writes it.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// What to say when the node stays silent: who it is, what to check, what happens to the
/// request.
fn silent_node(root: &ReleaseRoot, pid: Option<i32>, waited: Duration) -> Failure {
    let log = root.node_log();
    let Some(pid) = pid else {
        return Failure(format!(
            "the node did not answer within {} and {} names no pid: is it stopped (kill -STOP) or overloaded? check {}; RELUP_CONTROL_TIMEOUT=60s waits longer",
            seconds(waited),
            root.pid_file().display(),
            log.display()
        ));
    };
    let state = match process_state(pid) {
        Some('T' | 't') => format!("it is stopped (state T): `kill -CONT {pid}` resumes it"),
        Some(state) => format!("it runs (state {state}) but is overloaded or stuck"),
        None => "it is gone".to_string(),
    };
    Failure(format!(
        "the node (pid {pid}) did not answer within {}: is it stopped (kill -STOP) or overloaded? check `ps -o stat= -p {pid}` and {}; now {state}; the request was sent and the node carries it out if it resumes; RELUP_CONTROL_TIMEOUT=60s waits longer",
        seconds(waited),
        log.display()
    ))
}

/// Sends `request` to the node of `root` and hands it every event until the final one, which
/// is returned. The node must send each line within [`control_timeout`]; a request that may
/// be silent for long ([`may_be_silent`]) waits on while the node's process runs and is not
/// stopped.
pub(super) fn send(
    root: &Path,
    request: &Request,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Event, Failure> {
    let root = ReleaseRoot::new(root);
    let timeout = control_timeout()?;
    let client = match Client::connect(&root.control_socket()) {
        Ok(client) => {
            set_reached(true);
            client.with_timeout(timeout)?
        }
        Err(e) => {
            set_reached(!matches!(e, ClientError::NotRunning { .. }));
            return Err(e.into());
        }
    };
    let pid = node_pid(&root);
    let patient = may_be_silent(request);
    let mut keep_waiting = |_silent: Duration| {
        patient
            && match pid {
                // No pid to watch: wait, as before timeouts existed.
                None => true,
                Some(pid) => !matches!(process_state(pid), None | Some('T' | 't' | 'Z' | 'X')),
            }
    };
    match client.request_patiently(request, on_event, &mut keep_waiting) {
        Ok(event) => Ok(event),
        Err(ClientError::Timeout { silent }) => Err(silent_node(
            &root,
            pid,
            timeout.map_or(silent, |t| if patient { silent } else { t }),
        )),
        Err(e @ (ClientError::Dropped { .. } | ClientError::NoAnswer)) => Err(Failure(format!(
            "{e}: the node may have run out of threads or memory, or crashed; it may or may not have carried out the request: check {} and `relup status`",
            root.node_log().display()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Prints a streamed event: a progress line or a note for people, the event as JSON with
/// `json`.
fn print_event(event: &Event, json: bool) {
    match event {
        Event::Progress(p) if !json => println!("{}", progress_line(p)),
        Event::Note { text } if !json => println!("{text}"),
        other if json => {
            if let Ok(value) = serde_json::to_value(other) {
                print_json(&value);
            }
        }
        _ => {}
    }
}

/// Sends a request; prints streamed events unless `json`; returns the final result.
pub(super) fn ask(
    root: &Path,
    request: &Request,
    json: bool,
) -> Result<serde_json::Value, Failure> {
    let mut on_event = |event: &Event| print_event(event, json);
    match send(root, request, &mut on_event)? {
        Event::Done { result } => Ok(result),
        Event::Error { message } => Err(Failure(message)),
        other => Err(Failure(format!("unexpected final event {other:?}"))),
    }
}

fn status_report(root: &Path) -> Result<StatusReport, Failure> {
    let value = ask(root, &Request::Status, true)?;
    serde_json::from_value(value)
        .map_err(|e| Failure(format!("malformed status from the node: {e}")))
}

/// `relup status`.
///
/// A node that cannot read `RELEASES` still reports what it runs, with an empty release list:
/// then the status is shown and the command fails with the node's reason (the file, the line,
/// what is expected), since installs and the next boot need that file. With `--json` the
/// failure object carries the status under `"status"`.
pub fn status(root: &Path, json: bool) -> Result<(), Failure> {
    let value = ask(root, &Request::Status, true)?;
    let releases_error = releases_error(root, &value);
    if json {
        let Some(message) = releases_error else {
            print_json(&value);
            return Ok(());
        };
        add_error_field("status", value);
        return Err(Failure(message));
    }
    let report: StatusReport = serde_json::from_value(value)
        .map_err(|e| Failure(format!("malformed status from the node: {e}")))?;
    println!("release {} {}", report.name, report.version);
    if let Some(lineage) = report.lineage.filter(|l| l.handovers > 0) {
        println!(
            "node {}: {} handover(s) since {} (last {})",
            report.pid,
            lineage.handovers,
            relup_runtime::install::rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(lineage.first_started)
            ),
            lineage.last_handover.map_or("-".to_string(), |t| {
                relup_runtime::install::rfc3339(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
                )
            })
        );
    }
    if releases_error.is_some() {
        println!("releases: unreadable (see the error below)");
    } else {
        println!(
            "releases: {}",
            report
                .releases
                .iter()
                .map(|(v, s)| format!("{v} ({s})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("supervision tree:");
    for entry in &report.tree {
        let indent = "  ".repeat(entry.depth + 1);
        let pid = entry
            .pid
            .map_or("not running".to_string(), |p| p.to_string());
        let code = match (&entry.module, &entry.version) {
            (Some(m), Some(v)) => format!(" {m} {v}"),
            (Some(m), None) => format!(" {m}"),
            _ => String::new(),
        };
        let name = entry
            .name
            .as_deref()
            .map_or(String::new(), |n| format!(" registered as {n}"));
        println!(
            "{indent}{} {:?} {pid}{code}{name} mailbox {}",
            entry.id, entry.kind, entry.mailbox_len
        );
    }
    println!("modules:");
    for module in &report.modules {
        let current = module
            .current
            .as_ref()
            .map_or("-".to_string(), |v| v.to_string());
        let old: Vec<String> = module.old.iter().map(|v| v.to_string()).collect();
        let old = if old.is_empty() {
            String::new()
        } else {
            format!(" (old: {})", old.join(", "))
        };
        println!("  {} {current}{old}", module.name);
    }
    if let Some(p) = &report.probation {
        println!(
            "probation: {} until permanent, {:.1} s left; {} health round(s), {} crash(es) of {} tolerated, {} restart(s); falls back to {}",
            p.version,
            p.remaining_ms as f64 / 1000.0,
            p.health_rounds,
            p.crashes,
            p.settings.max_crashes,
            p.restarts,
            p.fallback
        );
    }
    for s in &report.scheduled {
        println!(
            "scheduled: {} -> {} at {} (`relup cancel {}`)",
            s.id, s.version, s.at, s.id
        );
    }
    if let Some(e) = &report.schedule_error {
        println!("schedule: {e}");
    }
    println!(
        "processes: {}; libraries mapped: {} ({} bytes, {} retired)",
        report.processes,
        report.code.images_mapped,
        report.code.bytes_mapped,
        report.code.images_retired
    );
    releases_error.map_or(Ok(()), |message| Err(Failure(message)))
}

/// Why the node's status lists no release (a running node always knows its own): the node's
/// answer to `releases`, which says what in `RELEASES` it cannot read.
fn releases_error(root: &Path, status: &serde_json::Value) -> Option<String> {
    let listed = status
        .get("releases")
        .and_then(|r| r.as_array())
        .is_some_and(|r| !r.is_empty());
    if listed {
        return None;
    }
    let running = format!(
        "{} {}",
        status.get("name").and_then(|v| v.as_str()).unwrap_or("?"),
        status
            .get("version")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
    );
    let reason = match ask(root, &Request::Releases, true) {
        Ok(_) => return None,
        Err(Failure(reason)) => reason,
    };
    Some(format!(
        "the node runs {running} but cannot read its release list: {reason}; `relup releases`, installs and the next boot need that file: correct it or restore it from a backup"
    ))
}

/// `relup releases`.
pub fn releases(root: &Path, json: bool) -> Result<(), Failure> {
    let value = ask(root, &Request::Releases, json)?;
    if json {
        print_json(&value);
        return Ok(());
    }
    for entry in value.as_array().into_iter().flatten() {
        println!(
            "{} {}",
            entry.get("version").and_then(|v| v.as_str()).unwrap_or("?"),
            entry.get("status").and_then(|v| v.as_str()).unwrap_or("?")
        );
    }
    Ok(())
}

/// `relup unpack`.
pub fn unpack(root: &Path, tarball: &Path, force: bool, json: bool) -> Result<(), Failure> {
    let absolute =
        std::path::absolute(tarball).map_err(|e| Failure(format!("{}: {e}", tarball.display())))?;
    let request = Request::Unpack {
        tarball: absolute.to_string_lossy().into_owned(),
        force,
    };
    let value = ask(root, &request, json)?;
    if json {
        print_json(&value);
    } else {
        println!(
            "unpacked {}; {}",
            value.get("version").and_then(|v| v.as_str()).unwrap_or("?"),
            value.get("path").and_then(|v| v.as_str()).unwrap_or("")
        );
    }
    Ok(())
}

/// `relup plan`.
pub fn plan(root: &Path, version: &str, json: bool) -> Result<(), Failure> {
    let value = ask(
        root,
        &Request::Plan {
            version: version.to_string(),
        },
        json,
    )?;
    if json {
        print_json(&value);
    } else {
        print!(
            "{}",
            value
                .get("text")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// What `relup upgrade` / `relup downgrade` asked for.
#[derive(Clone, Debug)]
pub struct InstallRequest {
    /// Which way the operator meant to go.
    pub direction: Direction,
    /// Make the release permanent once its probation passes.
    pub permanent: bool,
    /// The probation window, overriding the release's.
    pub probation: Option<Duration>,
    /// Schedule for this time (RFC 3339 or `now`).
    pub at: Option<String>,
    /// Schedule after this delay.
    pub delay: Option<Duration>,
    /// Skip the dry run before the install.
    pub skip_check: bool,
    /// Restore the states of this snapshot (downgrade).
    pub restore: Option<u64>,
}

/// Parses a duration such as `30s`, `10m`, `1h30m`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration ({e}); expected e.g. 30s, 10m, 1h30m"))
}

/// Parses `--in`: a duration of at most [`Schedule::MAX_AHEAD`] (the node checks again).
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    Schedule::check_delay(parse_duration(text)?).map_err(|e| e.to_string())
}

/// Parses `--probation`: a duration of at most [`Schedule::MAX_PROBATION`] (the node checks
/// again).
pub fn parse_probation(text: &str) -> Result<Duration, String> {
    Schedule::check_probation(parse_duration(text)?).map_err(|e| e.to_string())
}

/// Milliseconds of `duration` for the protocol (saturating: the node refuses what is too long).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Whether the running release of `report` is the permanent one.
fn is_permanent(report: &StatusReport) -> bool {
    report.permanent.as_deref() == Some(report.version.as_str())
}

/// An upgrade or downgrade that did not install: `outcome` decides the exit code, and the
/// JSON failure object gets `"outcome"`, `"version"` (the target), `"reason"` and, when the
/// node told, `"running_version"` and `"permanent"` (whether the running release is the
/// permanent one); a rollback's `"running"` is the version the node runs.
fn not_installed(
    outcome: Option<Outcome>,
    down: bool,
    target: &str,
    reason: String,
    after: Option<&StatusReport>,
) -> Failure {
    if let Some(outcome) = outcome {
        set_exit_code(outcome.exit_code());
    }
    add_error_field("outcome", outcome.map_or("error", |o| o.name(down)).into());
    add_error_field("version", target.into());
    add_error_field("reason", reason.clone().into());
    if let Some(report) = after {
        add_error_field("running_version", report.version.clone().into());
        add_error_field("permanent", is_permanent(report).into());
        if outcome == Some(Outcome::RolledBack) {
            add_error_field("running", report.version.clone().into());
        }
    }
    Failure(reason)
}

/// `relup upgrade` / `relup downgrade`.
///
/// For a fleet driver the exit code and, with `--json`, the last JSON object on stdout say
/// how it ended ([`Outcome`]): `upgraded` / `downgraded` (0), `already` (0: the node runs
/// that version and it is permanent; nothing is done), `scheduled` (0), `rolled_back` (2: the
/// install failed or its probation did, and the node went back by itself), `refused` (3:
/// nothing was changed), or an `error` (1: the node went away, the rollback failed, ...).
pub fn install(
    root: &Path,
    version: &str,
    how: &InstallRequest,
    json: bool,
) -> Result<(), Failure> {
    let down = how.direction == Direction::Down;
    let target = semver::Version::parse(version).map_err(|e| {
        not_installed(
            Some(Outcome::Refused),
            down,
            version,
            format!("{version:?} is not a version: {e}"),
            None,
        )
    })?;
    let running = status_report(root)?;
    let current = semver::Version::parse(&running.version)?;
    let refused = |reason: String| {
        not_installed(
            Some(Outcome::Refused),
            down,
            version,
            reason,
            Some(&running),
        )
    };
    match how.direction {
        Direction::Up if target < current => {
            return Err(refused(format!(
                "{target} is older than the running {current}; use `relup downgrade {target}`"
            )));
        }
        Direction::Down if target > current => {
            return Err(refused(format!(
                "{target} is newer than the running {current}; use `relup upgrade {target}`"
            )));
        }
        _ => {}
    }
    let scheduling = how.at.is_some() || how.delay.is_some();
    let permanent = is_permanent(&running);
    if target == current
        && !scheduling
        && how.restore.is_none()
        && running.probation.is_none()
        && (permanent || !how.permanent)
    {
        if json {
            print_json(&serde_json::json!({
                "outcome": Outcome::Already.name(down),
                "version": version,
                "running": running.version,
                "running_version": running.version,
                "permanent": permanent,
            }));
        } else {
            let state = if permanent {
                "permanent"
            } else {
                "current, not permanent"
            };
            println!(
                "{} {current} is already running ({state}); nothing was changed",
                running.name
            );
        }
        return Ok(());
    }
    let probation_ms = how.probation.map(millis);
    if scheduling {
        let request = Request::Schedule {
            version: version.to_string(),
            at: how.at.clone(),
            in_ms: how.delay.map(millis),
            permanent: how.permanent,
            probation_ms,
        };
        let value = ask(root, &request, json).map_err(|Failure(reason)| refused(reason))?;
        if json {
            let mut object = serde_json::json!({
                "outcome": Outcome::Scheduled.name(down),
                "running": running.version,
                "running_version": running.version,
                "permanent": permanent,
            });
            if let (Some(object), Some(entry)) = (object.as_object_mut(), value.as_object()) {
                for (key, value) in entry {
                    object.insert(key.clone(), value.clone());
                }
            }
            print_json(&object);
        } else {
            println!(
                "scheduled upgrade {}: {} {target} at {} (`relup status` shows it, `relup cancel {}` cancels it)",
                value.get("id").and_then(|v| v.as_u64()).unwrap_or(0),
                running.name,
                value.get("at").and_then(|v| v.as_str()).unwrap_or("?"),
                value.get("id").and_then(|v| v.as_u64()).unwrap_or(0),
            );
        }
        return Ok(());
    }
    if !json {
        let verb = if how.direction == Direction::Up {
            "upgrading"
        } else {
            "downgrading"
        };
        println!("{verb} {} {current} -> {target}", running.name);
    }
    let request = Request::Install {
        version: version.to_string(),
        permanent: how.permanent,
        probation_ms,
        restore_snapshot: how.restore,
        skip_check: how.skip_check,
    };
    // Whether the node started switching code: a step of a hop (not a note) came.
    let mut switched = false;
    let mut on_event = |event: &Event| {
        if matches!(event, Event::Progress(p) if p.step != "note") {
            switched = true;
        }
        print_event(event, json);
    };
    let value = match send(root, &request, &mut on_event)? {
        Event::Done { result } => result,
        Event::Error { message } => {
            // Refused when nothing was switched; rolled back when the node runs another
            // version than the target after switching (it says which); otherwise (the
            // rollback failed, the node stops or went away) an error.
            let after = status_report(root).ok();
            let outcome = match &after {
                _ if !switched => Some(Outcome::Refused),
                Some(report) if report.version != target.to_string() => Some(Outcome::RolledBack),
                _ => None,
            };
            return Err(not_installed(
                outcome,
                down,
                version,
                message,
                after.as_ref().or(Some(&running).filter(|_| !switched)),
            ));
        }
        other => return Err(Failure(format!("unexpected final event {other:?}"))),
    };
    if json {
        let mut object = serde_json::json!({
            "outcome": Outcome::Installed.name(down),
            "version": version,
        });
        if let (Some(object), Some(report)) = (object.as_object_mut(), value.as_object()) {
            for (key, value) in report {
                object.insert(key.clone(), value.clone());
            }
            let to = report.get("to").cloned().unwrap_or_default();
            object.insert("running".into(), to.clone());
            object.insert("running_version".into(), to);
        }
        print_json(&object);
        return Ok(());
    }
    let to = value.get("to").and_then(|v| v.as_str()).unwrap_or("?");
    let migrated = value.get("migrated").and_then(|v| v.as_u64()).unwrap_or(0);
    let pause = value
        .get("max_pause_micros")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let state = if value.get("permanent").and_then(|v| v.as_bool()) == Some(true) {
        "permanent"
    } else {
        "current, not permanent"
    };
    if let Some(handover) = value.get("handover") {
        let field = |k: &str| handover.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let permanent = handover.get("permanent_after").and_then(|v| v.as_bool()) == Some(true);
        println!(
            "{} {to} is running in node {} (restart_node: it took over from node {}, {} processes, {} ports and {} tables kept; clients waited at most {:.1} ms){}",
            running.name,
            field("to_pid"),
            field("from_pid"),
            field("processes"),
            field("ports"),
            field("tables"),
            field("stall_micros") as f64 / 1000.0,
            if permanent {
                "; it makes the release permanent now"
            } else {
                ""
            }
        );
        return Ok(());
    }
    println!(
        "{} {to} is running ({state}); {migrated} process(es) migrated, longest pause {:.3} ms",
        running.name,
        pause as f64 / 1000.0
    );
    Ok(())
}

/// `relup check`: exits non-zero when any state fails to migrate.
pub fn check(root: &Path, version: &str, json: bool) -> Result<(), Failure> {
    let value = ask(
        root,
        &Request::Check {
            version: version.to_string(),
        },
        true,
    )?;
    let failed: u64 = value
        .pointer("/report/modules")
        .and_then(|m| m.as_array())
        .map_or(0, |modules| {
            modules
                .iter()
                .filter_map(|m| m.get("failed").and_then(|f| f.as_u64()))
                .sum()
        });
    if json {
        print_json(&value);
    } else {
        println!(
            "{}",
            value
                .get("text")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
        );
    }
    if failed > 0 {
        return Err(Failure(format!(
            "{failed} state(s) fail to migrate to {version}; nothing was changed"
        )));
    }
    Ok(())
}

/// `relup snapshots`.
pub fn snapshots(root: &Path, json: bool) -> Result<(), Failure> {
    let value = ask(root, &Request::Snapshots, json)?;
    if json {
        print_json(&value);
        return Ok(());
    }
    let list = value
        .get("snapshots")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        println!("no snapshots");
    }
    for s in list {
        if let Some(error) = s.get("error").and_then(|e| e.as_str()) {
            println!("unreadable: {error}");
            continue;
        }
        let field = |k: &str| {
            s.get(k)
                .map_or("?".to_string(), |v| v.to_string().replace('"', ""))
        };
        println!(
            "{}  taken {}  before {} -> {}  {} state(s){}",
            field("id"),
            field("taken_at"),
            field("from"),
            field("to"),
            field("states"),
            if s.get("config").and_then(|c| c.as_bool()) == Some(true) {
                " + config"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// `relup cancel`.
pub fn cancel(root: &Path, id: Option<u64>, json: bool) -> Result<(), Failure> {
    let value = ask(root, &Request::Cancel { id }, json)?;
    if json {
        print_json(&value);
        return Ok(());
    }
    let cancelled = value
        .get("cancelled")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    if cancelled.is_empty() {
        println!("nothing was scheduled");
    }
    for entry in cancelled {
        println!(
            "cancelled scheduled upgrade {}: {} at {}",
            entry.get("id").and_then(|v| v.as_u64()).unwrap_or(0),
            entry.get("version").and_then(|v| v.as_str()).unwrap_or("?"),
            entry.get("at").and_then(|v| v.as_str()).unwrap_or("?")
        );
    }
    Ok(())
}

/// `relup reboot-old`.
pub fn reboot_old(root: &Path, version: &str, json: bool) -> Result<(), Failure> {
    let request = Request::RebootOld {
        version: version.to_string(),
    };
    let value = ask(root, &request, json)?;
    if json {
        print_json(&value);
    } else {
        println!("rebooted into {version}; it is permanent");
    }
    Ok(())
}

/// `relup permanent`.
pub fn permanent(root: &Path, version: &str, json: bool) -> Result<(), Failure> {
    let value = ask(
        root,
        &Request::Permanent {
            version: version.to_string(),
        },
        json,
    )?;
    if json {
        print_json(&value);
    } else {
        println!("{version} is permanent");
    }
    Ok(())
}

/// `relup restart`: the node hands itself over to a new node process.
pub fn restart(root: &Path, json: bool) -> Result<(), Failure> {
    let value = ask(root, &Request::Restart, json)?;
    if json {
        print_json(&value);
        return Ok(());
    }
    let report: relup_runtime::handover::HandoverReport = serde_json::from_value(value)
        .map_err(|e| Failure(format!("malformed handover report from the node: {e}")))?;
    println!(
        "node {} took over from node {} running {} ({}): {} processes, {} ports, {} tables, {} timers kept; clients waited at most {:.1} ms; handover {} of this node",
        report.to_pid,
        report.from_pid,
        report.version,
        report.exe,
        report.processes,
        report.ports,
        report.tables,
        report.timers,
        report.stall_micros as f64 / 1000.0,
        report.handovers
    );
    Ok(())
}

/// `relup remove`.
pub fn remove(root: &Path, version: &str, json: bool) -> Result<(), Failure> {
    let value = ask(
        root,
        &Request::Remove {
            version: version.to_string(),
        },
        json,
    )?;
    if json {
        print_json(&value);
    } else {
        match value.get("path").and_then(|p| p.as_str()) {
            Some(path) => println!("removed {version}; deleted {path}"),
            None => println!("removed {version}"),
        }
        if let Some(warning) = value.get("warning").and_then(|w| w.as_str()) {
            eprintln!("relup: warning: {warning}");
        }
    }
    Ok(())
}

/// `relup log`: the journal as the node reads it or, when no node runs, as it is on disk (said
/// on stderr).
pub fn log(root: &Path, json: bool) -> Result<(), Failure> {
    let (text, running) = match ask(root, &Request::Log, json) {
        Ok(value) => {
            let text = value
                .get("log")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            (text.to_string(), true)
        }
        Err(failure) if reached() == Some(false) => {
            let path = ReleaseRoot::new(root).upgrade_log();
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => {
                    return Err(Failure(format!(
                        "{}; and {} cannot be read: {e}",
                        failure.0,
                        path.display()
                    )));
                }
            };
            eprintln!(
                "relup: the node is not running; the journal as it is on disk, {}:",
                path.display()
            );
            (text, false)
        }
        Err(failure) => return Err(failure),
    };
    if json {
        print_json(&serde_json::json!({ "log": text, "running": running }));
    } else {
        print!("{text}");
    }
    Ok(())
}
