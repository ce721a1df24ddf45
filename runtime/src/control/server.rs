//! The node side of the control socket.

use super::console;
use super::protocol::{Event, MAX_REQUEST, Request};
use super::status::status_report;
use crate::handler::ReleaseHandler;
use crate::handler::UpgradeOptions;
use crossbeam_channel::{Receiver, Sender};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a client may take to send its whole request line (slow clients are cut off).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A reader of a client's stream that fails once `until` has passed, however the bytes
/// trickle in: a client sending a byte every few seconds (slow loris) cannot hold its
/// connection, and its thread, longer than [`REQUEST_TIMEOUT`] in all.
struct Deadline<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

/// Why the control socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another node answers on this socket.
    #[error("a node is already running on {0}")]
    AlreadyRunning(PathBuf),
    /// Something other than a socket is at the socket's path: it is left alone.
    #[error(
        "{path} is {what}, not a socket; nothing was started: move it away or remove it (the node creates its control socket there), then start again"
    )]
    NotASocket {
        /// The socket path.
        path: PathBuf,
        /// What is there ("a directory", "a symlink to /x", ...).
        what: String,
    },
    /// The socket could not be created.
    #[error("cannot listen on {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A running control socket server.
pub struct ControlServer {
    path: PathBuf,
    /// The listening socket's descriptor (open while the accept thread runs).
    listener_fd: std::os::fd::RawFd,
    closing: Arc<AtomicBool>,
    /// Set while another node takes over: this one accepts no connection.
    paused: Arc<AtomicBool>,
    /// Set by the accept thread once it saw `paused` and is out of `accept`.
    idle: Arc<AtomicBool>,
    stop_tx: Sender<String>,
    stop_rx: Receiver<String>,
    accept: Option<JoinHandle<()>>,
}

/// The uid of the peer of a Unix socket.
fn peer_uid(stream: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a ucred of the given length on a valid socket fd.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

fn my_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn send(stream: &mut UnixStream, event: &Event) -> bool {
    let Ok(mut line) = serde_json::to_string(event) else {
        return false;
    };
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .and_then(|()| stream.flush())
        .is_ok()
}

/// Reads one request line of at most [`MAX_REQUEST`] bytes; the error says what was expected.
pub(crate) fn read_request(stream: impl Read) -> Result<Request, String> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream.take(MAX_REQUEST as u64 + 1));
    match reader.read_until(b'\n', &mut line) {
        Ok(0) => return Err("empty request".into()),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(format!(
                "no complete request within {} s",
                REQUEST_TIMEOUT.as_secs()
            ));
        }
        Err(e) => return Err(format!("cannot read the request: {e}")),
    }
    if line.len() > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    if line.last() != Some(&b'\n') {
        return Err("request is not terminated by a newline".into());
    }
    serde_json::from_slice(&line).map_err(|e| {
        format!("malformed request: {e}; expected one JSON object such as {{\"cmd\":\"status\"}}")
    })
}

fn parse_version(text: &str) -> Result<semver::Version, String> {
    semver::Version::parse(text).map_err(|e| format!("{text:?} is not a version: {e}"))
}

fn done<T: serde::Serialize>(value: &T) -> Event {
    match serde_json::to_value(value) {
        Ok(result) => Event::Done { result },
        Err(e) => Event::Error {
            message: format!("cannot encode the result: {e}"),
        },
    }
}

/// The event ending a console request.
fn console_result(result: Result<serde_json::Value, console::ConsoleError>) -> Event {
    match result {
        Ok(result) => Event::Done { result },
        Err(e) => Event::Error {
            message: e.to_string(),
        },
    }
}

/// Answers one request; returns true if the node should stop.
fn answer(handler: &ReleaseHandler, stream: &mut UnixStream, request: Request) -> bool {
    let result = match request {
        Request::Status => done(&status_report(handler)),
        Request::State { target } => console_result(console::state(handler.node(), &target)),
        Request::Call {
            target,
            request,
            timeout_ms,
        } => console_result(console::call(
            handler.node(),
            &target,
            &request,
            timeout_ms.map_or(console::DEFAULT_CALL_TIMEOUT, Duration::from_millis),
        )),
        Request::Cast { target, message } => {
            console_result(console::cast(handler.node(), &target, &message))
        }
        Request::Releases => match handler.releases() {
            Ok(releases) => done(&releases.releases),
            Err(e) => Event::Error {
                message: e.to_string(),
            },
        },
        Request::Plan { version } => match parse_version(&version)
            .map_err(|e| e.to_string())
            .and_then(|v| handler.plan(&v).map_err(|e| e.to_string()))
        {
            Ok(plan) => done(&serde_json::json!({ "text": plan.to_string(), "plan": plan })),
            Err(message) => Event::Error { message },
        },
        Request::Install {
            version,
            permanent,
            probation_ms,
            restore_snapshot,
            skip_check,
        } => match parse_version(&version) {
            Err(message) => Event::Error { message },
            Ok(version) => {
                // A client that went away, or stopped reading (a write that fails or runs
                // out the stream's write timeout), does not stop the install, and is not
                // written to again: one stalled write per install at most, not one per step.
                let mut reading = true;
                let mut progress = |p: &crate::install::Progress| {
                    if !reading {
                        return;
                    }
                    let event = if p.step == "note" {
                        Event::Note {
                            text: p.detail.clone(),
                        }
                    } else {
                        Event::Progress(p.clone())
                    };
                    reading = send(stream, &event);
                };
                let opts = UpgradeOptions {
                    permanent,
                    probation: probation_ms.map(Duration::from_millis),
                    restore_snapshot,
                    skip_check,
                    ..UpgradeOptions::default()
                };
                match handler.upgrade(&version, &opts, &mut progress) {
                    Ok(report) if report.handover.is_some() => {
                        // A new node serves now: answer, then go without closing anything.
                        let _ = send(stream, &done(&report));
                        handler.finish_handover();
                        return false;
                    }
                    Ok(report) => done(&report),
                    Err(e) => Event::Error {
                        message: e.to_string(),
                    },
                }
            }
        },
        Request::Check { version } => match parse_version(&version)
            .and_then(|v| handler.check(&v).map_err(|e| e.to_string()))
        {
            Ok(report) => {
                done(&serde_json::json!({ "text": report.to_string(), "report": report }))
            }
            Err(message) => Event::Error { message },
        },
        Request::Snapshots => match handler.snapshots().list() {
            Ok(list) => {
                let list: Vec<serde_json::Value> = list
                    .into_iter()
                    .map(|m| match m {
                        Ok(m) => serde_json::json!({
                            "id": m.id,
                            "from": m.from.to_string(),
                            "to": m.to.to_string(),
                            "taken_at": m.taken_at,
                            "states": m.states.len(),
                            "config": m.config_sha256.is_some(),
                        }),
                        Err(e) => serde_json::json!({ "error": e.to_string() }),
                    })
                    .collect();
                done(&serde_json::json!({
                    "dir": handler.snapshots().dir(),
                    "snapshots": list,
                }))
            }
            Err(e) => Event::Error {
                message: e.to_string(),
            },
        },
        Request::Schedule {
            version,
            at,
            in_ms,
            permanent,
            probation_ms,
        } => match parse_version(&version).and_then(|v| {
            handler
                .schedule(
                    &v,
                    at.as_deref(),
                    in_ms.map(Duration::from_millis),
                    permanent,
                    probation_ms.map(Duration::from_millis),
                )
                .map_err(|e| e.to_string())
        }) {
            Ok(entry) => done(&entry),
            Err(message) => Event::Error { message },
        },
        Request::Cancel { id } => match handler.cancel(id) {
            Ok(removed) => done(&serde_json::json!({ "cancelled": removed })),
            Err(e) => Event::Error {
                message: e.to_string(),
            },
        },
        Request::Permanent { version } => match parse_version(&version)
            .and_then(|v| handler.make_permanent(&v).map_err(|e| e.to_string()))
        {
            Ok(()) => done(&serde_json::json!({ "permanent": version })),
            Err(message) => Event::Error { message },
        },
        Request::Remove { version } => match parse_version(&version)
            .and_then(|v| handler.remove(&v).map_err(|e| e.to_string()))
        {
            Ok(crate::handler::Removed { dir, warning }) => done(&serde_json::json!({
                "removed": version,
                "path": dir.to_string_lossy(),
                "warning": warning,
            })),
            Err(message) => Event::Error { message },
        },
        Request::RebootOld { version } => match parse_version(&version).and_then(|v| {
            handler
                .reboot_old(&v, Duration::from_secs(30))
                .map_err(|e| e.to_string())
        }) {
            Ok(()) => done(&serde_json::json!({ "rebooted": version })),
            Err(message) => Event::Error { message },
        },
        Request::Unpack { tarball, force } => match handler.unpack(Path::new(&tarball), force) {
            Ok(unpacked) => done(&serde_json::json!({
                "version": unpacked.release.version.to_string(),
                "dir": unpacked.dir,
                "path": handler.path_to(&unpacked.release.version),
            })),
            Err(e) => Event::Error {
                message: e.to_string(),
            },
        },
        Request::Log => match handler.log() {
            Ok(text) => done(&serde_json::json!({ "log": text })),
            Err(e) => Event::Error {
                message: format!("cannot read the journal: {e}"),
            },
        },
        Request::ConfigGet { app, key } => {
            match handler.config_get(app.as_deref(), key.as_deref()) {
                Ok(entries) => done(&serde_json::json!({ "keys": entries })),
                Err(e) => Event::Error {
                    message: e.to_string(),
                },
            }
        }
        Request::ConfigSet { line } => match handler.config_set(&line) {
            Ok(applied) => done(&applied),
            Err(e) => Event::Error {
                message: format!("rejected: {e}"),
            },
        },
        Request::Restart => match handler.restart_node() {
            Ok(report) => {
                let _ = send(stream, &done(&report));
                handler.finish_handover();
                return false;
            }
            Err(e) => Event::Error {
                message: e.to_string(),
            },
        },
        Request::Stop => {
            let _ = send(stream, &done(&serde_json::json!({ "stopping": true })));
            return true;
        }
    };
    let _ = send(stream, &result);
    false
}

fn serve_connection(handler: &ReleaseHandler, mut stream: UnixStream, stop: &Sender<String>) {
    let me = my_uid();
    match peer_uid(&stream) {
        Some(uid) if uid == me || uid == 0 => {}
        Some(uid) => {
            let message = format!("refused: client uid {uid} is not the node's uid {me}");
            let _ = send(&mut stream, &Event::Error { message });
            return;
        }
        None => {
            let _ = send(
                &mut stream,
                &Event::Error {
                    message: "refused: cannot read the client's credentials".into(),
                },
            );
            return;
        }
    }
    let deadline = Deadline {
        stream: &stream,
        until: Instant::now() + REQUEST_TIMEOUT,
    };
    let request = match read_request(deadline) {
        Ok(request) => request,
        Err(message) => {
            let _ = send(&mut stream, &Event::Error { message });
            return;
        }
    };
    if answer(handler, &mut stream, request) {
        let _ = stop.send("stop requested over the control socket".into());
    }
}

/// What a file that is not a socket is, for a message.
fn describe(path: &Path, meta: &std::fs::Metadata) -> String {
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory".into()
    } else if kind.is_symlink() {
        match std::fs::read_link(path) {
            Ok(target) => format!("a symlink to {}", target.display()),
            Err(_) => "a symlink".into(),
        }
    } else if kind.is_file() {
        format!("a regular file of {} bytes", meta.len())
    } else {
        "a special file (fifo or device)".into()
    }
}

/// `RELUP_FAULT_CONTROL_SPAWN=<file>` (fault injection, as in [`crate::fault`]): while
/// `<file>` exists, the accept thread fails to start a thread for a request, as when the
/// process is out of threads or memory.
fn spawn_fault() -> bool {
    static FILE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    FILE.get_or_init(|| std::env::var_os("RELUP_FAULT_CONTROL_SPAWN").map(PathBuf::from))
        .as_ref()
        .is_some_and(|file| file.exists())
}

/// Starts a thread that serves `stream`; when no thread can be started, answers the client
/// an error from the calling (accept) thread instead of dropping its request.
fn spawn_client(handler: &Arc<ReleaseHandler>, stream: UnixStream, stop_tx: &Sender<String>) {
    // The stream goes back to this thread when the spawn fails (the closure is dropped).
    let slot = Arc::new(parking_lot::Mutex::new(Some(stream)));
    let spawned = if spawn_fault() {
        Err(std::io::Error::other(
            "fault injection: RELUP_FAULT_CONTROL_SPAWN",
        ))
    } else {
        let (handler, stop_tx, slot) = (handler.clone(), stop_tx.clone(), slot.clone());
        std::thread::Builder::new()
            .name("relup-client".into())
            .spawn(move || {
                if let Some(stream) = slot.lock().take() {
                    serve_connection(&handler, stream, &stop_tx);
                }
            })
    };
    let Err(error) = spawned else { return };
    crate::trace::runtime_line(
        0,
        &format!("relup-control: cannot start a thread for a request ({error}); refused it"),
    );
    let Some(mut stream) = slot.lock().take() else {
        return;
    };
    // The answer is one short line: it fits the socket buffer, the timeout is a safeguard.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let message = format!(
        "the node cannot start a thread for this request ({error}); it was not carried out: the node is out of threads or memory; check the node's log (log/node.log) and retry"
    );
    let _ = send(&mut stream, &Event::Error { message });
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

impl ControlServer {
    /// Listens on `path` (mode 0600) and serves `handler`, one thread per connection.
    /// A stale socket file (no node answers) is replaced; anything else at `path` (a
    /// directory, a file, a symlink) is refused with [`ServeError::NotASocket`] and left alone.
    pub fn bind(handler: Arc<ReleaseHandler>, path: &Path) -> Result<ControlServer, ServeError> {
        let io = |source| ServeError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(ServeError::AlreadyRunning(path.to_path_buf()));
                }
                let _ = std::fs::remove_file(path);
            }
            Ok(meta) => {
                return Err(ServeError::NotASocket {
                    path: path.to_path_buf(),
                    what: describe(path, &meta),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        Self::serve(handler, path, listener)
    }

    /// Serves `handler` on a control socket already listening at `path` (handed over by
    /// the node this one took over from).
    pub(crate) fn serve(
        handler: Arc<ReleaseHandler>,
        path: &Path,
        listener: UnixListener,
    ) -> Result<ControlServer, ServeError> {
        let io = |source| ServeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let listener_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        // Accepting wakes up now and then (SO_RCVTIMEO applies to accept), so that a node
        // handing over stops accepting on the socket it shares with the new one at once.
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: setsockopt with a valid option value of the right size on our descriptor.
        unsafe {
            libc::setsockopt(
                listener_fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        let closing = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = crossbeam_channel::unbounded();
        let accept = {
            let (closing, paused, idle, stop_tx) = (
                closing.clone(),
                paused.clone(),
                idle.clone(),
                stop_tx.clone(),
            );
            std::thread::Builder::new()
                .name("relup-control".into())
                .spawn(move || {
                    // Whether accepting failed last time: a failure is logged once, not per try.
                    let mut failing = false;
                    loop {
                        if closing.load(Ordering::SeqCst) {
                            break;
                        }
                        if paused.load(Ordering::SeqCst) {
                            idle.store(true, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(2));
                            continue;
                        }
                        idle.store(false, Ordering::SeqCst);
                        match listener.accept() {
                            Ok((stream, _)) => {
                                if closing.load(Ordering::SeqCst) {
                                    break;
                                }
                                failing = false;
                                // Accepted streams block (they do not inherit the timeout).
                                let _ = stream.set_read_timeout(None);
                                spawn_client(&handler, stream, &stop_tx);
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock
                                        | std::io::ErrorKind::TimedOut
                                        | std::io::ErrorKind::Interrupted
                                ) => {}
                            Err(e) => {
                                if !failing {
                                    crate::trace::runtime_line(
                                        0,
                                        &format!("relup-control: cannot accept a connection: {e}"),
                                    );
                                }
                                failing = true;
                                // Out of descriptors (EMFILE) fails at once and again: no spin.
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                    }
                })
                .map_err(io)?
        };
        Ok(ControlServer {
            path: path.to_path_buf(),
            listener_fd,
            closing,
            paused,
            idle,
            stop_tx,
            stop_rx,
            accept: Some(accept),
        })
    }

    /// The flag that stops accepting while set, and the one that says the accept thread
    /// saw it and is out of `accept` (a handover waits for that before its commit).
    pub(crate) fn pause_flags(&self) -> (Arc<AtomicBool>, Arc<AtomicBool>) {
        (self.paused.clone(), self.idle.clone())
    }

    /// The listening socket's descriptor (what a handover passes on).
    pub(crate) fn listener_fd(&self) -> std::os::fd::RawFd {
        self.listener_fd
    }

    /// A sender that asks the node to stop (for signal handlers), with a reason.
    pub fn stopper(&self) -> Sender<String> {
        self.stop_tx.clone()
    }

    /// Blocks until a stop is requested; returns the reason.
    pub fn wait_for_stop(&self) -> String {
        self.stop_rx
            .recv()
            .unwrap_or_else(|_| "control server gone".into())
    }

    /// Stops accepting connections and removes the socket file.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = UnixStream::connect(&self.path);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.shutdown();
        }
    }
}
