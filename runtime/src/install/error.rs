//! Why an install failed.

use relup_module::Pid;

/// Why booting a release or running a hop failed. After a failed hop the node runs the
/// release it ran before the hop, and the error says which step failed and why.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A module library could not be read, did not match its sha256, or did not load.
    #[error("step {step}: module {module}: {reason}")]
    Load {
        /// The failing step.
        step: String,
        /// The module.
        module: String,
        /// Why.
        reason: String,
    },
    /// Processes of a module did not suspend in time.
    #[error("step {step}: module {module}: {reason}")]
    Suspend {
        /// The failing step.
        step: String,
        /// The module.
        module: String,
        /// Why (names the processes).
        reason: String,
    },
    /// A process's code_change failed.
    #[error("step {step}: module {module}: process {pid}: {reason}")]
    CodeChange {
        /// The failing step.
        step: String,
        /// The module.
        module: String,
        /// The first process that failed.
        pid: Pid,
        /// Why.
        reason: String,
    },
    /// Any other step failed (supervisor change, child start, apply, ...).
    #[error("step {step}: {reason}")]
    Step {
        /// The failing step.
        step: String,
        /// Why.
        reason: String,
    },
    /// The progress callback panicked after a step; the hop was rolled back.
    #[error("the progress callback panicked after step {step}: {message}; the hop was rolled back")]
    ProgressPanicked {
        /// The step whose progress event the callback panicked on.
        step: String,
        /// The panic's message.
        message: String,
    },
    /// The plan refers to something the running node does not have.
    #[error("{0}")]
    Mismatch(String),
}
