//! Starting and stopping the node process.
//!
//! `relup start` re-runs this binary as `relup start --foreground` in its own process group,
//! with output to `<root>/log/node.log`, and waits until the control socket answers.
//! The foreground node boots the permanent release, serves the control socket, and stops on
//! `relup stop`, SIGTERM, SIGINT or SIGHUP.

use super::Failure;
use relup_runtime::control::{ControlServer, Event, Request};
use relup_runtime::handler::ReleaseHandler;
use relup_runtime::release::ReleaseRoot;
use relup_runtime::{Node, NodeConfig};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHUTDOWN: Duration = Duration::from_secs(30);

/// `<root>/run/node.pid`: the pid of the node that runs on `root`.
pub(super) fn pid_file(root: &ReleaseRoot) -> PathBuf {
    root.run_dir().join("node.pid")
}

/// `<root>/log/node.log`: the node's output.
pub(super) fn node_log(root: &ReleaseRoot) -> PathBuf {
    root.log_dir().join("node.log")
}

/// Whether the node of `root` answers a status request (within the control timeout).
fn answers(root: &ReleaseRoot) -> bool {
    super::remote::send(&root.path, &Request::Status, &mut |_| {})
        .is_ok_and(|e| matches!(e, Event::Done { .. }))
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// `relup start`.
pub fn start(root: &Path, foreground: bool, json: bool) -> Result<(), Failure> {
    let root = ReleaseRoot::open(root)?;
    if foreground {
        return run_node(&root);
    }
    if answers(&root) {
        return Err(Failure(format!(
            "a node is already running on {}",
            root.path.display()
        )));
    }
    let log_path = node_log(&root);
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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if answers(&root) {
            break;
        }
        if let Some(status) = child.try_wait()? {
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

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread (and the threads it starts later), and
/// returns the set for `sigwait`.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn run_node(root: &ReleaseRoot) -> Result<(), Failure> {
    // Before anything is written over (the pid file below): a live node keeps its files.
    if answers(root) {
        return Err(Failure(format!(
            "a node is already running on {}",
            root.path.display()
        )));
    }
    let signals = block_stop_signals();
    let node = Node::start(NodeConfig::default())?;
    let handler = match ReleaseHandler::start(node.clone(), root.clone()) {
        Ok(handler) => Arc::new(handler),
        Err(e) => {
            node.shutdown(SHUTDOWN);
            return Err(e.into());
        }
    };
    // Written before the socket answers: `relup start` returns as soon as it does, and what
    // follows (`relup stop`, a test's SIGKILL) reads the pid from this file.
    let pid_path = pid_file(root);
    relup_runtime::release::write_atomic(
        &pid_path,
        format!("{}\n", std::process::id()).as_bytes(),
    )?;
    let server = match ControlServer::bind(handler.clone(), &root.control_socket()) {
        Ok(server) => server,
        Err(e) => {
            let _ = std::fs::remove_file(&pid_path);
            handler.stop(SHUTDOWN);
            node.shutdown(SHUTDOWN);
            return Err(e.into());
        }
    };
    handler.start_scheduler();
    let stopper = server.stopper();
    std::thread::Builder::new()
        .name("relup-signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: waits for one of the blocked signals of `signals`.
            if unsafe { libc::sigwait(&signals, &mut sig) } == 0 {
                let _ = stopper.send(format!("signal {sig}"));
            }
        })?;
    let running = handler.running();
    println!(
        "node {} running {} {}; control socket {}",
        std::process::id(),
        running.release.name,
        running.release.version,
        root.control_socket().display()
    );
    let reason = server.wait_for_stop();
    println!("stopping: {reason}");
    server.close();
    handler.stop(SHUTDOWN);
    node.shutdown(SHUTDOWN);
    let _ = std::fs::remove_file(&pid_path);
    println!("node stopped");
    Ok(())
}

/// `relup stop`: asks the node to stop and waits until its process is gone.
pub fn stop(root: &Path, json: bool) -> Result<(), Failure> {
    let root = ReleaseRoot::new(root);
    let pid: i32 = std::fs::read_to_string(pid_file(&root))
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
