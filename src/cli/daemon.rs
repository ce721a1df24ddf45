//! Starting and stopping the node process.
//!
//! `relup start` re-runs this binary as `relup start --foreground` in its own process group,
//! with output to `<root>/log/node.log`, and waits until the control socket answers.
//! The foreground node boots the permanent release, serves the control socket, and stops on
//! `relup stop`, SIGTERM or SIGINT. SIGHUP (sent by `logrotate` after it moves the logs)
//! reopens `log/node.log` onto the node's stdout and stderr when that is where its output
//! goes (a node of `relup start`), and the node keeps running; a console node, whose output
//! is a terminal, stops on SIGHUP, as a terminal hangup means. The journal,
//! `log/upgrade.log`, follows a rotation by itself.
//!
//! One node per root: the foreground node takes an `flock` on `<root>/run/node.lock` before it
//! boots anything and holds it for its whole life (the kernel releases it when the process
//! dies, however it dies); the file holds the node's pid. A second node on the same root
//! finds the lock taken and exits at once, touching neither `run/node.pid` nor the socket.
//! `relup start` reports success only once `run/node.pid` names its own child and the socket
//! answers, so of two concurrent starts exactly one says "node started".

use super::Failure;
use relup_runtime::control::{ControlServer, Event, Request};
use relup_runtime::handler::ReleaseHandler;
use relup_runtime::release::ReleaseRoot;
use relup_runtime::{Node, NodeConfig};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
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

/// `<root>/run/node.lock`: locked by the node that runs on the root, for its whole life; it
/// holds that node's pid. It is never removed (a removed lock file could be locked twice).
fn lock_file(root: &ReleaseRoot) -> PathBuf {
    root.run_dir().join("node.lock")
}

/// How long taking the node lock is retried: a `relup start` that only checks the lock holds
/// it for microseconds, a node holds it for its life.
const LOCK_PATIENCE: Duration = Duration::from_millis(200);

/// The node lock of a root: taken, or held by another process.
enum NodeLock {
    /// Taken: held while the file stays open.
    Held(File),
    /// Another process holds it; the pid it wrote, if any yet.
    Busy(Option<i32>),
}

/// Takes the node lock of `root` (retried for [`LOCK_PATIENCE`]).
fn take_lock(root: &ReleaseRoot) -> Result<NodeLock, Failure> {
    let path = lock_file(root);
    let cannot = |e: std::io::Error| {
        Failure(format!(
            "cannot lock {}: {e}; nothing was started (check the permissions of {})",
            path.display(),
            root.run_dir().display()
        ))
    };
    std::fs::create_dir_all(root.run_dir()).map_err(cannot)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(cannot)?;
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(NodeLock::Held(file));
        }
        let error = std::io::Error::last_os_error();
        match error.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => {}
            _ => return Err(cannot(error)),
        }
        if Instant::now() >= deadline {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse().ok())
                .filter(|pid: &i32| *pid > 0);
            return Ok(NodeLock::Busy(holder));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes this process's pid into the held lock file (over any older pid).
fn write_lock_pid(root: &ReleaseRoot, lock: &File) -> Result<(), Failure> {
    let text = format!("{}\n", std::process::id());
    lock.write_all_at(text.as_bytes(), 0)
        .and_then(|()| lock.set_len(text.len() as u64))
        .map_err(|e| Failure(format!("{}: {e}", lock_file(root).display())))
}

/// The refusal of a second node on `root`.
fn already_running(root: &ReleaseRoot, pid: Option<i32>) -> Failure {
    let who = pid.map_or_else(
        || format!("its pid is not yet in {}", lock_file(root).display()),
        |pid| format!("pid {pid}"),
    );
    Failure(format!(
        "a node is already running on {} ({who}); nothing was started: `relup status` shows it, `relup stop` stops it",
        root.path.display()
    ))
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

/// `relup start`.
pub fn start(root: &Path, foreground: bool, json: bool) -> Result<(), Failure> {
    check_dirs(root)?;
    let root = ReleaseRoot::open(root)?;
    if foreground {
        return run_node(&root);
    }
    match take_lock(&root)? {
        NodeLock::Busy(pid) => return Err(already_running(&root, pid)),
        // Only a check: released at once for the node to take.
        NodeLock::Held(probe) => drop(probe),
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

/// What SIGHUP does to the node, decided by where its output goes when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hangup {
    /// Output is `log/node.log` (a node of `relup start`): reopen it.
    Reopen,
    /// Output is a terminal (a console node): the terminal hung up, stop.
    Stop,
    /// Output goes elsewhere (a pipe, another file): nothing to reopen, keep running.
    Ignore,
}

/// The (device, inode) of an open descriptor.
fn fd_identity(fd: libc::c_int) -> Option<(u64, u64)> {
    // SAFETY: fstat fills a zeroed stat for a descriptor number; no memory is shared.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut stat) == 0).then_some((stat.st_dev, stat.st_ino))
    }
}

/// What SIGHUP will do, from what stdout is now.
fn on_hangup(log_path: &Path) -> Hangup {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1 {
        return Hangup::Stop;
    }
    let log = std::fs::metadata(log_path).ok().map(|m| (m.dev(), m.ino()));
    if log.is_some() && log == fd_identity(libc::STDOUT_FILENO) {
        Hangup::Reopen
    } else {
        Hangup::Ignore
    }
}

/// SIGHUP: opens `log_path` anew (creating it when `logrotate` moved it away) and puts it on
/// stdout and stderr; says so in the new file, or why not in the old one.
fn hangup_reopen(hangup: Hangup, log_path: &Path) {
    use std::io::Write;
    if hangup == Hangup::Ignore {
        println!(
            "SIGHUP: the output is not {}; nothing to reopen",
            log_path.display()
        );
        return;
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let reopened = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .and_then(|log| {
            for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
                // SAFETY: dup2 onto the standard descriptors of this process; `log` stays
                // open until both are duplicated.
                if unsafe { libc::dup2(log.as_raw_fd(), fd) } < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    match reopened {
        Ok(()) => println!("SIGHUP: reopened {}", log_path.display()),
        Err(e) => eprintln!(
            "SIGHUP: cannot reopen {}: {e}; the output still goes to the old file",
            log_path.display()
        ),
    }
}

fn run_node(root: &ReleaseRoot) -> Result<(), Failure> {
    // Before anything is booted or written over: one node per root, for its whole life.
    let lock = match take_lock(root)? {
        NodeLock::Held(lock) => lock,
        NodeLock::Busy(pid) => return Err(already_running(root, pid)),
    };
    write_lock_pid(root, &lock)?;
    // A node of a relup that did not lock the root keeps its files too.
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
    let log_path = node_log(root);
    let hangup = on_hangup(&log_path);
    std::thread::Builder::new()
        .name("relup-signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: waits for one of the blocked signals of `signals`.
                if unsafe { libc::sigwait(&signals, &mut sig) } != 0 {
                    continue;
                }
                if sig == libc::SIGHUP && hangup != Hangup::Stop {
                    hangup_reopen(hangup, &log_path);
                    continue;
                }
                let _ = stopper.send(format!("signal {sig}"));
                return;
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
    // Released last: nothing of this node is left when another may start.
    drop(lock);
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
