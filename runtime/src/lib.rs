//! relup-runtime: the node that runs a service's processes and upgrades their code live.
//!
//! - Processes run on a fixed pool of scheduler threads ([`Node`], [`NodeConfig`]); each has
//!   a pid, an optional registered name, an unbounded FIFO mailbox and the state its module
//!   owns. Calls, casts, plain messages, timers, links and monitors work as in Erlang.
//! - Supervisors ([`SupervisorSpec`]) restart children by strategy and intensity.
//! - The code server ([`CodeServer`]) loads module libraries from private copies, keeps a
//!   current and old versions, and soft-purges.
//! - The upgrade hooks ([`Node::suspend`], [`Node::change_code`], [`Node::resume`], ...) let
//!   the release handler switch code and migrate state with rollback.
//!
//! Module authors depend on `relup-module`; services embed this crate.

mod behaviour;
mod code_server;
pub mod config;
pub mod control;
mod error;
pub mod handler;
mod host;
pub mod install;
mod loader;
mod node;
mod par;
mod pidmap;
mod process;
pub mod release;
mod reply;
mod run;
mod scheduler;
mod supervisor;
mod timer;
mod upgrade;

pub use behaviour::ProcessKind;
pub use code_server::{CodeServer, CodeStats, Expect, LoadedModule, ModuleVersions, Origin};
pub use error::{
    CallError, CodeChangeError, LoadError, SendError, SpawnError, SupervisorError, SuspendError,
};
pub use node::{
    LogLine, Logger, ModuleRef, Node, NodeConfig, NodeError, ProcessInfo, SpawnOptions,
};
pub use process::{InfoMsg, Payload};
pub use relup_module::{ConfigValue, Direction, ExitReason, Pid, Target};
pub use supervisor::{
    ChildCounts, ChildInfo, ChildSpec, ChildStart, Restart, Shutdown, Strategy, SupervisorSpec,
};
pub use upgrade::{CodeChange, UpgradeError, UpgradeReport};
