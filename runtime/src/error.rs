//! Error types of the runtime, one enum per operation family.

use relup_module::{ExitReason, Pid};
use std::path::PathBuf;

/// Why a call to a process failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No reply within the timeout (a late reply is discarded).
    #[error("call to {0} timed out")]
    Timeout(String),
    /// No process with that pid or registered name.
    #[error("no such process: {0}")]
    NoProc(String),
    /// The callee exited before replying.
    #[error("{target} exited before replying: {reason}")]
    Exited {
        /// The callee.
        target: String,
        /// Its exit reason.
        reason: ExitReason,
    },
    /// The callee could not decode the request, or the reply could not be decoded.
    #[error("bad message: {0}")]
    BadMessage(String),
    /// A process called itself.
    #[error("a process cannot call itself")]
    CallingSelf,
    /// The call was forwarded to the node that took over (a handover) and failed there.
    #[error("forwarded to the node that took over: {0}")]
    Forwarded(String),
}

/// Why a message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No process with that pid or registered name.
    #[error("no such process: {0}")]
    NoProc(String),
    /// The message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Why a process could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    /// The module is not known to the code server.
    #[error("unknown module {0:?}")]
    UnknownModule(String),
    /// The registered name is taken.
    #[error("name {name:?} is already registered to {pid}")]
    NameTaken {
        /// The name.
        name: String,
        /// Who has it.
        pid: Pid,
    },
    /// `init` failed, panicked or could not decode its args.
    #[error("init of {module} failed: {reason}")]
    Init {
        /// The module (or `supervisor`).
        module: String,
        /// The reason.
        reason: ExitReason,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Why a library could not be loaded as a relup module. Every bad library ends here, never in
/// a crash.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read or copied.
    #[error("cannot read module library {path}: {source}")]
    Io {
        /// The library file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a shared library this machine can load (checked before `dlopen`).
    #[error("{path} is not a loadable shared library: {reason}")]
    NotALibrary {
        /// The library file.
        path: PathBuf,
        /// What is wrong (not ELF, truncated, wrong architecture, ...).
        reason: String,
    },
    /// `dlopen` refused the file.
    #[error("cannot load {path}: {reason}")]
    Open {
        /// The library file.
        path: PathBuf,
        /// The dynamic loader's message.
        reason: String,
    },
    /// The library does not export the relup descriptor symbol.
    #[error("{path} is not a relup module: it does not export `{symbol}` ({reason})")]
    NotAModule {
        /// The library file.
        path: PathBuf,
        /// The symbol looked for.
        symbol: &'static str,
        /// The loader's message.
        reason: String,
    },
    /// The module speaks another ABI version.
    #[error(
        "{path} speaks relup module ABI version {found}; this runtime speaks version {supported}"
    )]
    AbiVersion {
        /// The library file.
        path: PathBuf,
        /// The library's ABI version.
        found: u32,
        /// The runtime's ABI version.
        supported: u32,
    },
    /// The descriptor is malformed (size, name or version not valid).
    #[error("{path} has a malformed module descriptor: {reason}")]
    BadDescriptor {
        /// The library file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The bytes that would be opened (the library's private copy) do not have the sha256
    /// the caller checked: the file changed since, or it is another file.
    #[error("{path} has sha256 {found} as copied for loading, expected {expected}")]
    Digest {
        /// The library file.
        path: PathBuf,
        /// The sha256 the caller expects.
        expected: String,
        /// The sha256 of the private copy.
        found: String,
    },
    /// The library is another module than expected.
    #[error("{path} is module {found:?}, expected {expected:?}")]
    NameMismatch {
        /// The library file.
        path: PathBuf,
        /// Expected name.
        expected: String,
        /// Name in the library.
        found: String,
    },
    /// The library is another version than expected.
    #[error("{path} is {name} version {found}, expected version {expected}")]
    VersionMismatch {
        /// The library file.
        path: PathBuf,
        /// The module name.
        name: String,
        /// Expected version.
        expected: String,
        /// Version in the library.
        found: String,
    },
    /// This exact module version is already loaded (from another file).
    #[error("{name} version {version} is already loaded")]
    AlreadyLoaded {
        /// The module.
        name: String,
        /// The version.
        version: String,
    },
}

/// Why a set of processes could not be suspended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuspendError {
    /// Some processes did not finish their current message in time; none stays suspended.
    #[error("{} process(es) did not suspend within {timeout_ms} ms: {}", .pids.len(), list(.pids))]
    Timeout {
        /// The processes that did not answer.
        pids: Vec<Pid>,
        /// The timeout.
        timeout_ms: u64,
    },
}

/// Why a code change failed; every process keeps (or got back) its old code and state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeChangeError {
    /// A process's code_change (or state export) failed.
    #[error("code_change of {pid} ({module}) failed: {reason}")]
    Failed {
        /// The process.
        pid: Pid,
        /// The module being changed.
        module: String,
        /// Why.
        reason: String,
    },
    /// A process is not suspended, does not run the module, or is gone.
    #[error("{pid} cannot change code: {reason}")]
    NotEligible {
        /// The process.
        pid: Pid,
        /// Why.
        reason: String,
    },
    /// A process did not answer in time.
    #[error("{} process(es) did not finish code_change within {timeout_ms} ms", .pids.len())]
    Timeout {
        /// The processes that did not answer.
        pids: Vec<Pid>,
        /// The timeout.
        timeout_ms: u64,
    },
}

/// Why a supervisor request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// The call to the supervisor failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// No child with that id.
    #[error("no child {0:?}")]
    NoChild(String),
    /// A child with that id exists already.
    #[error("child {0:?} already exists")]
    DuplicateChild(String),
    /// The child could not be started.
    #[error("cannot start child {id:?}: {error}")]
    Start {
        /// The child id.
        id: String,
        /// Why.
        error: SpawnError,
    },
    /// The request does not fit this supervisor's strategy.
    #[error("{0}")]
    Unsupported(String),
}

fn list(pids: &[Pid]) -> String {
    let shown: Vec<String> = pids.iter().take(5).map(|p| p.to_string()).collect();
    let more = if pids.len() > 5 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}
