//! Handover: `restart_node` that keeps every connection and every state.
//!
//! Some changes cannot be loaded into a running node (a new runtime, a new toolchain, new
//! native code in the node executable). A handover runs them without dropping anything: the
//! old node starts the new executable as a child and hands it, over a Unix socket pair,
//! every listening socket and open connection (`SCM_RIGHTS`), every table, pending timer and
//! process state (exported by the modules' own `export_state`, migrated by the new code's
//! `code_change` where the version changes), under the same pids, port ids and table ids.
//!
//! # Protocol
//! 1. The old node spawns `<exe> --root <root> start --foreground` with the child's end of
//!    the pair in `RELUP_HANDOVER_FD`; the new node says [`wire::Msg::Hello`].
//! 2. The old node stops reading and accepting (output still goes), lets its processes
//!    handle what was read already, suspends every worker, stops its timers and holds its
//!    output, exports everything and sends the image with the descriptors: the node lock
//!    (an `flock` lives on the open file, so the new node holds it from then on), the
//!    control socket, and every port.
//! 3. The new node adopts the sockets (frozen, output held), boots the same release with
//!    every supervised process restored at its place and suspended, and says `Ready`.
//! 4. The old node says `Commit` and serves no more; the new node writes its pid, serves the
//!    control socket, resumes its processes, reads and writes its sockets, says `Taken`; the
//!    old node answers the request that asked for the handover and exits at once (no socket
//!    is shut down: the new node holds them).
//!
//! Any failure before `Commit` (the new node crashes, times out, refuses a state), and the
//! old node kills it, resumes everything as it was, and the request fails with the reason.
//! If the old node dies after sending the image, the new node takes over on its own;
//! before that, it boots the root as a plain start does.

pub(crate) mod forward;
pub(crate) mod image;
pub(crate) mod new;
pub(crate) mod old;
pub(crate) mod restore;
mod wire;

pub use old::HandoverReport;

/// The environment variable that tells a node it is the new side of a handover: the
/// descriptor number of its end of the handover socket.
pub const HANDOVER_FD_ENV: &str = "RELUP_HANDOVER_FD";

/// The release version the old node runs, for the new node to load its modules before it
/// says hello (module loading is then outside the clients' stall).
pub(crate) const HANDOVER_VERSION_ENV: &str = "RELUP_HANDOVER_VERSION";

/// Why a handover did not happen.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// The node was not started on a release root by a `Service` (embedded in a test, say):
    /// it has no node lock and control socket to hand over.
    #[error(
        "this node cannot hand over: it was not started with `relup start` (or Service) on a release root"
    )]
    NoSeat,
    /// The new executable could not be started.
    #[error("cannot start the new node {exe}: {source}")]
    Spawn {
        /// The executable.
        exe: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A step failed; the old node resumed and serves as before.
    #[error("handover failed at {step}: {reason}; this node resumed and serves as before")]
    Step {
        /// The step.
        step: &'static str,
        /// Why.
        reason: String,
    },
}

/// Exits this process at once, without shutting down anything (its sockets belong to the
/// node that took over): the last act of an old node after a handover.
pub(crate) fn exit_handed_over() -> ! {
    // SAFETY: _exit ends the process without running destructors or atexit handlers, which is
    // the point: nothing of this node may close or shut down what the new node now serves.
    unsafe { libc::_exit(0) }
}
