//! Running a node on a release root: what `relup start --foreground` does, as a library.
//!
//! A service with its own `main()` runs its node with [`Service`]: it takes the root's node
//! lock (one node per root), starts the node, registers the service's native server types
//! ([`Natives`]), boots the permanent release, writes `run/node.pid`, serves the control
//! socket (so every `relup` command works against it), runs scheduled upgrades, watches
//! `config/config.toml.new`, and stops cleanly on `relup stop`, SIGTERM or SIGINT.
//!
//! ```no_run
//! # use relup_module::{Context, Server};
//! # #[derive(serde::Serialize, serde::Deserialize)]
//! # struct Greeter;
//! # impl Server for Greeter {
//! #     type Args = (); type Call = (); type Reply = (); type Cast = (); type Info = ();
//! #     fn init(_: (), _: &mut Context<'_>) -> Result<Self, String> { Ok(Greeter) }
//! #     fn handle_call(&mut self, _: (), _: &mut Context<'_>) {}
//! # }
//! use relup_runtime::service::Service;
//!
//! let reason = Service::new("/srv/shop")
//!     .native::<Greeter>("greeter", "1.0.0")
//!     .run()?;
//! println!("stopped: {reason}");
//! # Ok::<(), relup_runtime::service::ServiceError>(())
//! ```
//!
//! The `relup` command line runs its nodes through this type, and a service's binary can run
//! the whole command line with its native types (`relup::cli::main_with`), so that
//! `bin/<name> start`, `upgrade` and `stop` work with that binary packed in the release.

mod error;
mod lock;
mod metrics;
mod natives;
mod signals;
mod takeover;

pub use error::ServiceError;
pub use lock::NodeLock;
pub use natives::Natives;

use crate::control::{ControlServer, Event, Request};
use crate::handler::ReleaseHandler;
use crate::node::{Node, NodeConfig};
use crate::release::ReleaseRoot;
use crossbeam_channel::Sender;
use relup_module::Server;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a service's own binary runs beside its node, in the process that runs it (see
/// [`Service::run_beside`]): given the node once it serves, it starts what the binary serves
/// besides (an HTTP server, say) and returns a guard; the guard is dropped when a stop is
/// asked for, before the node stops, so that what it served can finish on a running node.
/// An error stops the node and is the run's error.
pub type Beside = Box<dyn FnOnce(&RunningService) -> Result<Box<dyn std::any::Any>, String>>;

/// How long a stopping node waits for its processes by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A node to run on a release root: the root, the node's settings, the native server types it
/// registers, and whether it handles the stop signals. [`Service::run`] runs it until it is
/// stopped; [`Service::start`] returns once it serves.
#[derive(Debug, Clone)]
pub struct Service {
    root: PathBuf,
    config: NodeConfig,
    natives: Natives,
    signals: bool,
    shutdown_timeout: Duration,
}

impl Service {
    /// A node for the release root at `root` (deployed with `relup deploy`), with default
    /// node settings, no native server types, and the stop signals handled.
    pub fn new(root: impl Into<PathBuf>) -> Service {
        Service {
            root: root.into(),
            config: NodeConfig::default(),
            natives: Natives::new(),
            signals: true,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }

    /// The node's settings (scheduler threads, limits...).
    pub fn node_config(mut self, config: NodeConfig) -> Service {
        self.config = config;
        self
    }

    /// Registers server type `S` as native module `name` at `version` (see [`Natives::add`]).
    pub fn native<S: Server>(mut self, name: &'static str, version: &'static str) -> Service {
        self.natives = self.natives.add::<S>(name, version);
        self
    }

    /// Registers every type of `natives` (added to those registered so far).
    pub fn natives(mut self, natives: Natives) -> Service {
        self.natives.extend(natives);
        self
    }

    /// Whether the node handles SIGTERM and SIGINT (stop) and SIGHUP (reopen `log/node.log`,
    /// see the module docs of `relup start`); default true. When it does, [`Service::start`]
    /// blocks those signals in the calling thread (and so in every thread started after),
    /// and a thread of the node waits for them: call it from `main` before other threads
    /// start, or a thread that does not block them may take a SIGTERM with its default
    /// action (the process ends without a clean stop). With `false`, stop the node through
    /// [`RunningService::stopper`] or [`RunningService::stop`].
    pub fn handle_signals(mut self, handle: bool) -> Service {
        self.signals = handle;
        self
    }

    /// How long a stopping node waits for each application's processes (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Service {
        self.shutdown_timeout = timeout;
        self
    }

    /// Starts the node and returns once its control socket serves. Nothing is started when
    /// another node runs on the root ([`ServiceError::AlreadyRunning`]); on any failure what
    /// was started is stopped again.
    pub fn start(self) -> Result<RunningService, ServiceError> {
        let root = ReleaseRoot::open(&self.root).map_err(|source| ServiceError::Root {
            path: self.root.clone(),
            source,
        })?;
        // Started by a node handing itself over: take over from it (or start as usual when
        // it went away before it handed anything over).
        if let Some(channel) = crate::handover::new::incoming() {
            use crate::handover::new;
            let mut channel = channel.map_err(ServiceError::Handover)?;
            // Blocked before any thread of the node starts, as on a plain start.
            let signals = self.signals.then(signals::block_stop_signals);
            let node = match Node::start(self.config.clone()) {
                Ok(node) => node,
                Err(e) => new::give_up(&mut channel, &format!("the node did not start: {e}")),
            };
            if let Err(e) = self.natives.register(node.code()) {
                new::give_up(&mut channel, &e.to_string());
            }
            new::preload(&node, &root);
            match new::receive(&mut channel) {
                Ok(Some(received)) => {
                    return Ok(self.take_over(root, node, signals, channel, received));
                }
                Ok(None) => {
                    eprintln!(
                        "relup: handover: the old node went away before it handed anything over; starting as a plain start does"
                    );
                    node.shutdown(self.shutdown_timeout);
                }
                // The old node may have died in the middle (its descriptors close before
                // this process is handed to another parent): a plain start decides. If the
                // old node lives, the node lock stops that start and it resumes.
                Err(reason) => {
                    eprintln!(
                        "relup: handover: the image did not arrive whole ({reason}); starting as a plain start does"
                    );
                    drop(channel);
                    node.shutdown(self.shutdown_timeout);
                }
            }
        }
        // Before anything is booted or written over: one node per root, for its whole life.
        let lock = match NodeLock::take(&root)? {
            NodeLock::Held(lock) => lock,
            NodeLock::Busy(pid) => {
                return Err(ServiceError::AlreadyRunning {
                    root: root.path.clone(),
                    pid,
                });
            }
        };
        lock::write_pid(&root, &lock)?;
        // A node of a relup that did not lock the root keeps its files too.
        if answers(&root) {
            return Err(ServiceError::AlreadyRunning {
                root: root.path.clone(),
                pid: None,
            });
        }
        let signals = self.signals.then(signals::block_stop_signals);
        let node = Node::start(self.config.clone())?;
        let stop_node = |error: ServiceError| {
            node.shutdown(self.shutdown_timeout);
            error
        };
        self.natives.register(node.code()).map_err(stop_node)?;
        let handler = ReleaseHandler::start(node.clone(), root.clone())
            .map(Arc::new)
            .map_err(|e| stop_node(e.into()))?;
        // Written before the socket answers: `relup start` returns as soon as it does, and
        // what follows (`relup stop`, a test's SIGKILL) reads the pid from this file.
        let pid_path = root.pid_file();
        let stop_all = |error: ServiceError| {
            let _ = std::fs::remove_file(&pid_path);
            handler.stop(self.shutdown_timeout);
            node.shutdown(self.shutdown_timeout);
            error
        };
        crate::release::write_atomic(&pid_path, format!("{}\n", std::process::id()).as_bytes())
            .map_err(|source| {
                stop_all(ServiceError::Io {
                    path: pid_path.clone(),
                    source,
                })
            })?;
        let metrics = metrics::serve(&handler).map_err(|e| stop_all(e.into()))?;
        let server = ControlServer::bind(handler.clone(), &root.control_socket())
            .map_err(|e| stop_all(e.into()))?;
        seat_handler(&handler, &lock, &server);
        handler.start_scheduler();
        if let Some(set) = signals {
            signals::watch(set, root.node_log(), server.stopper())
                .map_err(|e| stop_all(ServiceError::Signals(e)))?;
        }
        Ok(RunningService {
            root,
            node,
            handler,
            serving: Some(Serving {
                server,
                lock,
                metrics,
            }),
            shutdown_timeout: self.shutdown_timeout,
        })
    }

    /// Starts the node ([`Service::start`]), prints one line saying what runs, then serves
    /// until `relup stop`, SIGTERM or SIGINT (when signals are handled) and stops cleanly;
    /// returns why it stopped. This is `relup start --foreground`.
    pub fn run(self) -> Result<String, ServiceError> {
        self.run_beside(Box::new(|_| Ok(Box::new(()))))
    }

    /// [`Service::run`] with `beside` run once the node serves, on this thread (after the
    /// stop signals are blocked, so threads it starts inherit that); its guard is dropped
    /// when a stop is asked for, before the node stops. `relup start` of a binary built on
    /// `relup::cli::main_with_beside` runs its node so.
    pub fn run_beside(self, beside: Beside) -> Result<String, ServiceError> {
        let running = self.start()?;
        // On an error `running` is dropped, which stops the node.
        let guard = beside(&running).map_err(ServiceError::Beside)?;
        let release = running.handler.running().release;
        println!(
            "node {} running {} {}; control socket {}",
            std::process::id(),
            release.name,
            release.version,
            running.root.control_socket().display()
        );
        let reason = running.wait_for_stop();
        println!("stopping: {reason}");
        drop(guard);
        running.stop();
        println!("node stopped");
        Ok(reason)
    }
}

/// A node serving a release root, started by [`Service::start`]. Dropping it without
/// [`RunningService::wait`] stops it as [`RunningService::stop`] does.
pub struct RunningService {
    root: ReleaseRoot,
    node: Node,
    handler: Arc<ReleaseHandler>,
    /// Taken by the shutdown (which runs once).
    serving: Option<Serving>,
    shutdown_timeout: Duration,
}

/// What a shutdown closes: the metrics endpoint, the control socket, then (last) the node
/// lock.
struct Serving {
    server: ControlServer,
    lock: File,
    metrics: Option<crate::metrics::MetricsServer>,
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("root", &self.root.path)
            .finish_non_exhaustive()
    }
}

impl RunningService {
    /// The node: call, cast and spawn on it as on any embedded node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The release handler serving the root (what the control socket's requests reach).
    pub fn handler(&self) -> &Arc<ReleaseHandler> {
        &self.handler
    }

    /// The release root.
    pub fn root(&self) -> &ReleaseRoot {
        &self.root
    }

    /// Where the metrics endpoint listens, when one is configured (see [`crate::metrics`]).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.serving
            .as_ref()
            .and_then(|s| s.metrics.as_ref())
            .map(|m| m.addr())
    }

    /// A listening TCP socket for a server run beside the node, passed on by handovers
    /// under `name` (see [`ReleaseHandler::listener`]): bind through this, not directly, and
    /// `relup restart` keeps the address accepting.
    pub fn listener(&self, name: &str, addr: &str) -> std::io::Result<std::net::TcpListener> {
        self.handler.listener(name, addr)
    }

    /// A sender that asks the node to stop, with a reason ([`RunningService::wait`] returns
    /// it); what `relup stop` and the signals use. `None` once the node stopped.
    pub fn stopper(&self) -> Option<Sender<String>> {
        self.serving.as_ref().map(|s| s.server.stopper())
    }

    /// Blocks until a stop is asked for (`relup stop`, a signal, [`RunningService::stopper`]),
    /// then stops: the control socket closes, scheduled upgrades and the config watcher stop,
    /// the applications shut down, `run/node.pid` goes, and the node lock is released last.
    /// Returns the reason of the stop.
    pub fn wait(mut self) -> String {
        let reason = self.wait_for_stop();
        self.shut_down();
        reason
    }

    /// Blocks until a stop is asked for and returns its reason, without stopping anything
    /// ([`RunningService::stop`] then does): what a binary serving something beside the node
    /// uses to stop that first.
    pub fn wait_for_stop(&self) -> String {
        self.serving
            .as_ref()
            .map_or_else(String::new, |s| s.server.wait_for_stop())
    }

    /// Stops the node now (as [`RunningService::wait`] does after a stop request).
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if self.handler.is_handed_over() {
            // Another node serves the root with this one's sockets, lock and control socket:
            // nothing may be closed, stopped or removed. What ran beside the node (dropped
            // before this) has finished what it served.
            crate::handover::exit_handed_over();
        }
        let Some(Serving {
            server,
            lock,
            metrics,
        }) = self.serving.take()
        else {
            return;
        };
        // First the handler: it waits for an install or a handover under way. Only then the
        // control socket and the metrics endpoint, which a handover shares with the new node.
        self.handler.stop(self.shutdown_timeout);
        if self.handler.is_handed_over() {
            crate::handover::exit_handed_over();
        }
        drop(metrics);
        server.close();
        self.node.shutdown(self.shutdown_timeout);
        let _ = std::fs::remove_file(self.root.pid_file());
        // Released last: nothing of this node is left when another may start.
        drop(lock);
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Gives `handler` what a handover passes on (the node lock, the control socket and its
/// pause flags), and ends the service's wait once another node took over (the shutdown then
/// only exits).
fn seat_handler(handler: &ReleaseHandler, lock: &File, server: &ControlServer) {
    let (control_paused, control_idle) = server.pause_flags();
    handler.set_seat(crate::handover::old::Seat {
        lock: std::os::fd::AsRawFd::as_raw_fd(lock),
        control: server.listener_fd(),
        control_paused,
        control_idle,
    });
    let stopper = server.stopper();
    handler.on_handed_over(Box::new(move |reason| {
        let _ = stopper.send(reason);
    }));
}

/// Whether a node answers a status request on the control socket of `root` (within 10 s).
pub fn answers(root: &ReleaseRoot) -> bool {
    crate::control::Client::connect(&root.control_socket())
        .and_then(|c| c.with_timeout(Some(Duration::from_secs(10))))
        .and_then(|c| c.request(&Request::Status, &mut |_| {}))
        .is_ok_and(|e| matches!(e, Event::Done { .. }))
}
