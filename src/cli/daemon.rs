//! Starting and stopping the node process.
//!
//! `relup start` re-runs this binary as `relup start --foreground` in its own process group,
//! with output to `<root>/log/node.log`, and waits until the control socket answers. The
//! foreground node is [`relup_runtime::service::Service::run`]: it boots the permanent
//! release, serves the control socket, and stops on `relup stop`, SIGTERM or SIGINT. SIGHUP
//! (sent by `logrotate` after it moves the logs) reopens `log/node.log` onto the node's
//! stdout and stderr when that is where its output goes (a node of `relup start`), and the
//! node keeps running; a console node, whose output is a terminal, stops on SIGHUP, as a
//! terminal hangup means. The journal, `log/upgrade.log`, follows a rotation by itself.
//!
//! One node per root: the node holds an `flock` on `<root>/run/node.lock` for its whole life
//! ([`NodeLock`]). `relup start` reports success only once `run/node.pid` names its own child
//! and the socket answers, so of two concurrent starts exactly one says "node started".

use super::Failure;
use relup_runtime::control::{Event, Request};
use relup_runtime::release::ReleaseRoot;
use relup_runtime::service::{Beside, Natives, NodeLock, Service, ServiceError, answers};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHUTDOWN: Duration = relup_runtime::service::DEFAULT_SHUTDOWN_TIMEOUT;

/// Takes the node lock of `root`, as a CLI failure.
fn take_lock(root: &ReleaseRoot) -> Result<NodeLock, Failure> {
    Ok(NodeLock::take(root)?)
}

/// The refusal of a second node on `root`.
fn already_running(root: &ReleaseRoot, pid: Option<i32>) -> Failure {
    ServiceError::AlreadyRunning {
        root: root.path.clone(),
        pid,
    }
    .into()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Refuses a root whose standard directories include a dangling symlink: creating it would
/// fail with a bare "File exists".
fn check_dirs(root: &Path) -> Result<(), Failure> {
    for name in ["bin", "releases", "config", "log", "run"] {
        let dir = root.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.file_type().is_symlink() || dir.exists() {
            continue;
        }
        let target = std::fs::read_link(&dir).map_or_else(
            |e| format!("an unreadable target ({e})"),
            |t| t.display().to_string(),
        );
        return Err(Failure(format!(
            "{} is a dangling symlink to {target}; nothing was started: create {target} (mkdir -p) or remove the link, then start again",
            dir.display()
        )));
    }
    Ok(())
}

/// `relup start`. The node (this process with `--foreground`, else the one it starts) runs
/// `beside` once it serves, if given (see [`super::main_with_beside`]).
pub fn start(
    root: &Path,
    foreground: bool,
    natives: Natives,
    beside: Option<Beside>,
    json: bool,
) -> Result<(), Failure> {
    check_dirs(root)?;
    let root = ReleaseRoot::open(root)?;
    if foreground {
        // Standard error is log/node.log: every tracing event of the node goes there.
        crate::node_log::install();
        let service = Service::new(&root.path).natives(natives);
        match beside {
            Some(beside) => service.run_beside(beside)?,
            None => service.run()?,
        };
        return Ok(());
    }
    match take_lock(&root)? {
        NodeLock::Busy(pid) => return Err(already_running(&root, pid)),
        // Only a check: released at once for the node to take.
        NodeLock::Held(probe) => drop(probe),
    }
    let log_path = root.node_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Failure(format!("{}: {e}", log_path.display())))?;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--root")
        .arg(&root.path)
        .args(["start", "--foreground"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    let child_pid = i32::try_from(child.id()).ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Another node's answer is not this start's success: the pid must be the child's.
        if super::remote::node_pid(&root) == child_pid && answers(&root) {
            break;
        }
        if let Some(status) = child.try_wait()? {
            // Another `relup start` at the same time: its node took the root first.
            match take_lock(&root)? {
                NodeLock::Busy(pid) => return Err(already_running(&root, pid)),
                NodeLock::Held(probe) => drop(probe),
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(Failure(format!(
                "the node exited during start ({status}): {}",
                tail.join(" / ")
            )));
        }
        if Instant::now() > deadline {
            return Err(Failure(format!(
                "the node did not answer within 30 s; see {}",
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "started": child.id(), "log": log_path })
        );
    } else {
        println!(
            "node started (pid {}); log: {}",
            child.id(),
            log_path.display()
        );
    }
    Ok(())
}

/// `relup stop`: asks the node to stop and waits until its process is gone.
pub fn stop(root: &Path, json: bool) -> Result<(), Failure> {
    let root = ReleaseRoot::new(root);
    let pid: i32 = std::fs::read_to_string(root.pid_file())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    match super::remote::send(&root.path, &Request::Stop, &mut |_| {})? {
        Event::Done { .. } => {}
        Event::Error { message } => return Err(Failure(message)),
        other => return Err(Failure(format!("unexpected answer {other:?}"))),
    }
    let deadline = Instant::now() + SHUTDOWN + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        return Err(Failure(format!(
            "the node (pid {pid}) is still running after the stop request"
        )));
    }
    if json {
        println!("{}", serde_json::json!({ "stopped": pid }));
    } else {
        println!("node stopped");
    }
    Ok(())
}
