//! The old node's side of a handover (see [`super`] for the protocol).

use super::image::{IMAGE_FORMAT, Mail, NodeImage, ProcessImage, WorkerImage};
use super::wire::{self, Msg};
use super::{HANDOVER_FD_ENV, HandoverError};
use crate::node::Node;
use crate::process::{Envelope, InfoMsg, Payload};
use crate::release::ReleaseRoot;
use crate::{Pid, ProcessKind};
use semver::Version;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the processes get to handle what was read before the freeze.
const DRAIN: Duration = Duration::from_secs(5);
/// How long the drain waits for connections that are closing to send their last output.
const CLOSING: Duration = Duration::from_millis(100);
/// How long a suspend or a state export may take per process.
const PROCESS: Duration = Duration::from_secs(5);
/// How long the new node may take to start and say hello, and to restore and say ready
/// (`RELUP_HANDOVER_PATIENCE_MS` overrides it, for slow machines and tests).
const NEW_NODE: Duration = Duration::from_secs(60);

fn new_node_patience() -> Duration {
    std::env::var("RELUP_HANDOVER_PATIENCE_MS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(NEW_NODE, Duration::from_millis)
}
/// How long the new node may take to take over once told to.
const TAKE_OVER: Duration = Duration::from_secs(30);

/// What a node hands over besides its ports: its node lock and its control socket.
#[derive(Debug, Clone)]
pub(crate) struct Seat {
    /// The open node lock file (its `flock` goes with it).
    pub lock: RawFd,
    /// The listening control socket.
    pub control: RawFd,
    /// Set, this node's control server accepts nothing (the new node serves the socket).
    pub control_paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set by the control server once it accepts no more.
    pub control_idle: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What a handover passes on besides the node's own state.
pub(crate) struct Passed {
    /// The node lock and the control socket.
    pub seat: Seat,
    /// The host's listening sockets, by name (see `ReleaseHandler::listener`).
    pub listeners: Vec<(String, RawFd)>,
    /// The handovers so far.
    pub lineage: Lineage,
    /// Whether the new node makes the release permanent once it serves.
    pub permanent_after: bool,
}

/// How many handovers a line of nodes has been through, and since when it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// Handovers so far.
    pub handovers: u32,
    /// When the first node of the line started (Unix seconds).
    pub first_started: u64,
    /// When the last handover happened (Unix seconds), if any.
    pub last_handover: Option<u64>,
}

/// What a handover did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandoverReport {
    /// The old node's pid.
    pub from_pid: u32,
    /// The new node's pid.
    pub to_pid: u32,
    /// The executable the new node runs.
    pub exe: String,
    /// The release version both run.
    pub version: String,
    /// Processes handed over with their states.
    pub processes: usize,
    /// Listeners and connections handed over.
    pub ports: usize,
    /// Tables handed over.
    pub tables: usize,
    /// Timers handed over.
    pub timers: usize,
    /// Size of the image in bytes.
    pub image_bytes: u64,
    /// Microseconds from the freeze (no more reading) to the new node's take-over: the
    /// longest a client waits for an answer.
    pub stall_micros: u64,
    /// Microseconds the new node took to restore (booted, states in, sockets adopted).
    pub restore_micros: u64,
    /// The handovers of this line of nodes, this one included.
    pub handovers: u32,
    /// Whether the new node makes the release permanent once it serves (an install that
    /// asked for it; the new node's journal says when it is done).
    pub permanent_after: bool,
    /// Where the stall went, in microseconds: drain and suspend, export (states, tables,
    /// mailboxes, ports), send (encode and write the image and descriptors), restore (until
    /// the new node says ready), take-over (commit to taken).
    pub phases: Vec<(String, u64)>,
}

/// Hands this node over to a new one running `exe` (see [`super`]). On success the new
/// node serves and this one must exit ([`super::exit_handed_over`]) once it has answered;
/// on failure everything is as before.
#[allow(clippy::too_many_arguments)]
pub(crate) fn hand_over(
    node: &Node,
    root: &ReleaseRoot,
    exe: &std::path::Path,
    version: &Version,
    passed: Passed,
    log: &dyn Fn(&str),
) -> Result<HandoverReport, HandoverError> {
    let Passed {
        seat,
        listeners,
        lineage,
        permanent_after,
    } = passed;
    let (mut ours, theirs) = UnixStream::pair().map_err(|e| fail("the socket pair", e))?;
    let their_fd = theirs.as_raw_fd();
    let mut command = Command::new(exe);
    command
        .arg("--root")
        .arg(&root.path)
        .args(["start", "--foreground"])
        .env(HANDOVER_FD_ENV, their_fd.to_string())
        .env(super::HANDOVER_VERSION_ENV, version.to_string())
        .stdin(Stdio::null())
        // This node's fault injection is its own; the new node's comes from its own variables
        // (the crash-consistency tests kill either side at each of its steps).
        .env_remove("RELUP_FAULT_KILL_AT")
        .env_remove("RELUP_FAULT_TRACE");
    for (theirs, ours) in [
        ("RELUP_FAULT_KILL_AT", "RELUP_FAULT_NEW_KILL_AT"),
        ("RELUP_FAULT_TRACE", "RELUP_FAULT_NEW_TRACE"),
    ] {
        if let Some(value) = std::env::var_os(ours) {
            command.env(theirs, value);
        }
    }
    // SAFETY: between fork and exec only fcntl, which is async-signal-safe: the child's end
    // stays open across the exec (std opens every descriptor close-on-exec).
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(their_fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| HandoverError::Spawn {
        exe: exe.to_path_buf(),
        source,
    })?;
    drop(theirs);
    let to_pid = child.id();
    log(&format!(
        "handover: started the new node {to_pid} ({})",
        exe.display()
    ));
    let mut old = OldSide {
        node,
        child: Some(child),
        frozen: false,
        suspended: Vec::new(),
        committed: false,
        root,
        seat,
        exported: std::collections::HashMap::new(),
    };
    match old.run(
        &mut ours,
        version,
        &listeners,
        lineage,
        permanent_after,
        log,
    ) {
        Ok(mut report) => {
            report.to_pid = to_pid;
            report.exe = exe.display().to_string();
            log(&format!(
                "handover: node {to_pid} took over ({} processes, {} ports, {} tables, image {} bytes, stall {} ms); this node exits",
                report.processes,
                report.ports,
                report.tables,
                report.image_bytes,
                report.stall_micros / 1000
            ));
            // The new node owns everything now; this one only answers and exits.
            old.child = None;
            old.frozen = false;
            old.suspended.clear();
            Ok(report)
        }
        Err(error) => {
            old.undo();
            log(&format!("handover FAILED, this node resumed: {error}"));
            Err(error)
        }
    }
}

fn fail(step: &'static str, error: impl std::fmt::Display) -> HandoverError {
    HandoverError::Step {
        step,
        reason: error.to_string(),
    }
}

struct OldSide<'a> {
    node: &'a Node,
    child: Option<Child>,
    frozen: bool,
    suspended: Vec<Pid>,
    committed: bool,
    root: &'a ReleaseRoot,
    seat: Seat,
    /// Per process, how many queued messages went over in the image.
    exported: std::collections::HashMap<Pid, usize>,
}

impl OldSide<'_> {
    fn run(
        &mut self,
        channel: &mut UnixStream,
        version: &Version,
        listeners: &[(String, RawFd)],
        lineage: Lineage,
        permanent_after: bool,
        log: &dyn Fn(&str),
    ) -> Result<HandoverReport, HandoverError> {
        channel
            .set_read_timeout(Some(new_node_patience()))
            .and_then(|()| channel.set_write_timeout(Some(new_node_patience())))
            .map_err(|e| fail("the socket pair", e))?;
        match wire::recv(channel) {
            Ok(Msg::Hello { .. }) => {}
            Ok(other) => return Err(fail("hello", format!("unexpected {other:?}"))),
            Err(e) => return Err(fail("hello", gone(e))),
        }
        crate::fault::crash_point(|| "handover: hello".into());
        // Control connections wait in the socket's queue from now: whichever node serves
        // after the handover takes them (the new one, or this one resumed).
        self.seat
            .control_paused
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept thread if it waits in `accept` (only this node accepts until the
        // commit): it serves this empty connection, sees the pause and stays out.
        let _ = std::os::unix::net::UnixStream::connect(self.root.control_socket());
        let freeze_at = Instant::now();
        let inner = &self.node.inner;
        inner.ports.freeze();
        self.frozen = true;
        let mut tries = 0;
        let processes = loop {
            tries += 1;
            drain(self.node)?;
            let tree = walk(self.node)?;
            let workers: Vec<Pid> = tree
                .iter()
                .filter(|p| p.worker.is_some())
                .map(|p| Pid(p.pid))
                .collect();
            self.node
                .suspend(&workers, PROCESS)
                .map_err(|e| fail("suspend", e))?;
            self.suspended = workers;
            if inner.ports.drain_state().0 == 0 && !tcp_events_pending(self.node) {
                break tree;
            }
            // Bytes came in between the drain and the suspend: handle them and try again.
            self.node.resume(&self.suspended);
            self.suspended.clear();
            if tries == 3 {
                return Err(fail(
                    "suspend",
                    "processes kept receiving port events after the freeze",
                ));
            }
        };
        inner.timers.pause();
        inner.ports.hold();
        crate::fault::crash_point(|| "handover: frozen".into());
        let mut phases = Vec::new();
        let mut lap = freeze_at;
        let mut phase = |name: &str| {
            phases.push((name.to_string(), lap.elapsed().as_micros() as u64));
            lap = Instant::now();
        };
        phase("drain and suspend");
        let mut image = self.image(processes, version, lineage)?;
        image.permanent_after = permanent_after;
        let ports = inner
            .ports
            .export()
            .map_err(|e| fail("export the ports", e))?;
        image.ports = ports.images;
        image.next_port = ports.next_id;
        let mut fds = vec![self.seat.lock, self.seat.control];
        fds.extend(ports.fds.iter().copied());
        image.listeners = listeners.iter().map(|(name, _)| name.clone()).collect();
        fds.extend(listeners.iter().map(|(_, fd)| *fd));
        let counts = (
            image.processes.len(),
            image.ports.len(),
            image.tables.len(),
            image.timers.len(),
        );
        let msg = Msg::Image {
            image: Box::new(image),
            fds: fds.len(),
        };
        phase("export");
        let image_bytes = wire::send(channel, &msg).map_err(|e| fail("send the image", gone(e)))?;
        wire::send_fds(channel, &fds).map_err(|e| fail("send the sockets", gone(e)))?;
        phase("send");
        log(&format!(
            "handover: image sent ({} processes, {} ports, {} tables, {} timers, {image_bytes} bytes)",
            counts.0, counts.1, counts.2, counts.3
        ));
        crate::fault::crash_point(|| "handover: image sent".into());
        let restore_micros = match wire::recv(channel) {
            Ok(Msg::Ready { micros, .. }) => micros,
            Ok(Msg::Failed { reason }) => return Err(fail("restore in the new node", reason)),
            Ok(other) => return Err(fail("restore", format!("unexpected {other:?}"))),
            Err(e) => return Err(fail("restore in the new node", gone(e))),
        };
        phase("restore");
        crate::fault::crash_point(|| "handover: new node ready".into());
        // From the commit the new node serves the control socket this one shares with it:
        // this one's accept thread must be out of `accept` (woken at the freeze).
        let out_of_accept = Instant::now() + Duration::from_secs(1);
        while !self
            .seat
            .control_idle
            .load(std::sync::atomic::Ordering::SeqCst)
            && Instant::now() < out_of_accept
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.committed = true;
        wire::send(channel, &Msg::Commit).map_err(|e| fail("commit", gone(e)))?;
        crate::fault::crash_point(|| "handover: committed".into());
        channel
            .set_read_timeout(Some(TAKE_OVER))
            .map_err(|e| fail("commit", e))?;
        match wire::recv(channel) {
            Ok(Msg::Taken) => {}
            Ok(other) => return Err(fail("take-over", format!("unexpected {other:?}"))),
            Err(e) => return Err(fail("take-over", gone(e))),
        }
        phase("take-over");
        crate::fault::crash_point(|| "handover: taken".into());
        // What this node's host threads still send goes to the new node from now on.
        match super::forward::Forwarder::start(channel) {
            Ok(forwarder) => super::forward::switch_on(self.node, forwarder, &self.exported),
            Err(e) => log(&format!(
                "handover: cannot forward to the new node ({e}): calls from this node's host threads fail until it exits"
            )),
        }
        Ok(HandoverReport {
            from_pid: std::process::id(),
            to_pid: 0,
            exe: String::new(),
            version: version.to_string(),
            processes: counts.0,
            ports: counts.1,
            tables: counts.2,
            timers: counts.3,
            image_bytes,
            stall_micros: freeze_at.elapsed().as_micros() as u64,
            restore_micros,
            handovers: lineage.handovers + 1,
            permanent_after,
            phases,
        })
    }

    /// The image of everything but the ports.
    fn image(
        &mut self,
        mut processes: Vec<ProcessImage>,
        version: &Version,
        lineage: Lineage,
    ) -> Result<NodeImage, HandoverError> {
        let inner = &self.node.inner;
        for process in &mut processes {
            let pid = Pid(process.pid);
            if let Some(worker) = &mut process.worker {
                let (loaded, state) = self
                    .node
                    .export_state(pid, PROCESS)
                    .map_err(|e| fail("export a state", format!("{pid}: {e}")))?;
                worker.version = loaded.version().to_string();
                worker.state = state;
            }
            let (mail, queued) = mailbox(self.node, pid)?;
            process.mailbox = mail;
            // Only the workers are suspended: a supervisor's mailbox moves on.
            if process.worker.is_some() {
                self.exported.insert(pid, queued);
            }
        }
        let (tables, next_table) = inner.tables.export();
        let (timers, next_timer) = inner.timers.export();
        let (next_pid, next_ref) = inner.next_numbers();
        Ok(NodeImage {
            format: IMAGE_FORMAT,
            from_pid: std::process::id(),
            version: version.to_string(),
            permanent_after: false,
            handovers: lineage.handovers,
            first_started: lineage.first_started,
            next_pid,
            next_ref,
            next_port: 1,
            next_table,
            next_timer,
            processes,
            tables,
            ports: Vec::new(),
            timers,
            listeners: Vec::new(),
        })
    }

    /// Puts everything back as it was: the new node is killed, this one serves again.
    fn undo(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let inner = &self.node.inner;
        inner.timers.unpause();
        if !self.suspended.is_empty() {
            self.node.resume(&self.suspended);
            self.suspended.clear();
        }
        if self.frozen {
            inner.ports.thaw();
            self.frozen = false;
        }
        self.seat
            .control_paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
        if self.committed {
            // The new node may have written its pid before it died.
            let pid = format!("{}\n", std::process::id());
            let _ = crate::release::write_atomic(&self.root.pid_file(), pid.as_bytes());
            // SAFETY: the lock file's descriptor is open for this node's life.
            let lock = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.seat.lock) };
            if let Ok(lock) = lock.try_clone_to_owned() {
                let lock = std::fs::File::from(lock);
                let _ = std::os::unix::fs::FileExt::write_all_at(&lock, pid.as_bytes(), 0)
                    .and_then(|()| lock.set_len(pid.len() as u64));
            }
        }
    }
}

/// The peer went away, or said nothing in time.
fn gone(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe => {
            "the new node exited (see log/node.log)".into()
        }
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "the new node did not answer in time".into()
        }
        _ => e.to_string(),
    }
}

/// Waits until every byte read is handled and no port event waits in a mailbox.
fn drain(node: &Node) -> Result<(), HandoverError> {
    let started = Instant::now();
    let deadline = started + DRAIN;
    loop {
        let (in_flight, closing) = node.inner.ports.drain_state();
        let handled = in_flight == 0 && !tcp_events_pending(node);
        // Connections closing get a moment to send their last output: they end with this
        // node, and what they had not sent then is lost (the clients' stall stays short).
        if handled && (closing == 0 || started.elapsed() >= CLOSING) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(fail(
                "drain",
                format!(
                    "{in_flight} bytes read were still not handled after {} s",
                    DRAIN.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Whether a port event waits in the mailbox of any port owner.
fn tcp_events_pending(node: &Node) -> bool {
    node.inner.ports.owners().into_iter().any(|pid| {
        node.inner.lookup(pid).is_some_and(|process| {
            process
                .mailbox
                .lock()
                .user
                .iter()
                .any(|e| matches!(e, Envelope::Info(InfoMsg::Tcp(_))))
        })
    })
}

/// The supervision tree, parents first (states are filled in later).
fn walk(node: &Node) -> Result<Vec<ProcessImage>, HandoverError> {
    let mut out = Vec::new();
    for root in node.inner.roots() {
        let Some(name) = node.process_info(root).and_then(|i| i.name) else {
            return Err(fail(
                "walk the supervision tree",
                format!("top supervisor {root} has no registered name"),
            ));
        };
        out.push(ProcessImage {
            pid: root.0,
            parent: 0,
            name: Some(name.clone()),
            trap_exit: true,
            key: name,
            worker: None,
            mailbox: Vec::new(),
        });
        children(node, root, &mut out)?;
    }
    Ok(out)
}

fn children(node: &Node, sup: Pid, out: &mut Vec<ProcessImage>) -> Result<(), HandoverError> {
    let listed = node
        .which_children(sup)
        .map_err(|e| fail("walk the supervision tree", format!("{sup}: {e}")))?;
    let mut running: Vec<_> = listed
        .into_iter()
        .filter_map(|c| c.pid.map(|pid| (pid, c)))
        .collect();
    running.sort_by_key(|(pid, _)| *pid);
    for (pid, child) in running {
        let worker = match child.kind {
            ProcessKind::Supervisor => None,
            ProcessKind::Worker => Some(WorkerImage {
                module: child.module.clone().unwrap_or_default(),
                version: String::new(),
                state: Vec::new(),
            }),
        };
        let is_sup = worker.is_none();
        out.push(ProcessImage {
            pid: pid.0,
            parent: sup.0,
            name: node.process_info(pid).and_then(|i| i.name),
            trap_exit: node
                .inner
                .lookup(pid)
                .is_some_and(|p| p.signals.lock().trap_exit),
            key: child.id,
            worker,
            mailbox: Vec::new(),
        });
        if is_sup {
            children(node, pid, out)?;
        }
    }
    Ok(())
}

/// The ordinary messages waiting for a suspended process, and how many envelopes were
/// queued. Calls are left: a host thread's call is forwarded to the new node once it took
/// over ([`super::forward`]).
fn mailbox(node: &Node, pid: Pid) -> Result<(Vec<Mail>, usize), HandoverError> {
    let Some(process) = node.inner.lookup(pid) else {
        return Err(fail(
            "export a mailbox",
            format!("{pid} exited during the handover"),
        ));
    };
    let mailbox = process.mailbox.lock();
    let mail = mailbox
        .user
        .iter()
        .filter_map(|envelope| match envelope {
            Envelope::Cast(Payload::Bytes(b)) => Some(Mail::Cast(b.clone())),
            Envelope::Info(InfoMsg::Message(Payload::Bytes(b))) => Some(Mail::Message(b.clone())),
            _ => None,
        })
        .collect();
    Ok((mail, mailbox.user.len()))
}
