//! Why a node could not be run on a release root.

use crate::control::ServeError;
use crate::error::LoadError;
use crate::handler::HandlerError;
use crate::node::NodeError;
use std::path::PathBuf;

/// Why [`super::Service::start`] (or [`super::Service::run`]) failed. Nothing it started is
/// left running: the node, the release handler and the control socket are stopped again, and
/// the pid file is removed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The metrics endpoint (`[metrics] listen` or `RELUP_METRICS_LISTEN`) could not start;
    /// the node was stopped.
    #[error("{0}; the node was stopped")]
    Metrics(#[from] crate::metrics::MetricsError),
    /// What the binary runs beside the node ([`super::Beside`]) failed to start; the node
    /// was stopped.
    #[error("{0}; the node was stopped")]
    Beside(String),
    /// The root is missing, not a directory, or its standard directories cannot be created.
    #[error("{source}; nothing was started")]
    Root {
        /// The root.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The node lock could not be taken (permissions of `run/`, a full disk...).
    #[error(
        "cannot lock {path}: {source}; nothing was started (check the permissions of its directory)"
    )]
    Lock {
        /// `<root>/run/node.lock`.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another node runs on the root.
    #[error(
        "a node is already running on {root} ({}); nothing was started: `relup status` shows it, `relup stop` stops it",
        pid.map_or_else(|| "its pid is not yet in run/node.lock".to_string(), |pid| format!("pid {pid}"))
    )]
    AlreadyRunning {
        /// The root.
        root: PathBuf,
        /// The pid the running node wrote into `run/node.lock`, if any yet.
        pid: Option<i32>,
    },
    /// A file of the root could not be written (the lock's pid, `run/node.pid`).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The node (scheduler threads, code server) did not start.
    #[error("the node did not start: {0}")]
    Node(#[from] NodeError),
    /// A native server type could not be registered.
    #[error("native module {name}: {source}")]
    Native {
        /// The module name it was registered under.
        name: String,
        /// Why.
        #[source]
        source: Box<LoadError>,
    },
    /// The permanent release did not boot (or the root has none).
    #[error("{0}")]
    Boot(#[source] Box<HandlerError>),
    /// The control socket could not be served.
    #[error("{0}")]
    Control(#[source] Box<ServeError>),
    /// The thread that waits for stop signals could not be started.
    #[error("cannot start the signal thread: {0}")]
    Signals(#[source] std::io::Error),
    /// This process was started as the new side of a handover and cannot be one.
    #[error("handover: {0}")]
    Handover(String),
}

impl From<HandlerError> for ServiceError {
    fn from(error: HandlerError) -> Self {
        ServiceError::Boot(Box::new(error))
    }
}

impl From<ServeError> for ServiceError {
    fn from(error: ServeError) -> Self {
        ServiceError::Control(Box::new(error))
    }
}
