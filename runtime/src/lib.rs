//! relup-runtime: the node that runs a service's processes and upgrades their code live.
//!
//! - Processes run on a fixed pool of scheduler threads ([`Node`], [`NodeConfig`]); each has
//!   a pid, an optional registered name, an unbounded FIFO mailbox and the state its module
//!   owns. Calls, casts, plain messages, timers, links and monitors work as in Erlang.
//! - Supervisors ([`SupervisorSpec`]) restart children by strategy and intensity.
//! - The code server ([`CodeServer`]) loads module libraries from private copies, keeps a
//!   current and old versions, and soft-purges.
//! - Ports ([`ports`]): TCP listeners and connections owned by the node; their events arrive
//!   as messages, so sockets outlive any code change of the processes that handle them.
//! - Tables ([`tables`]): ETS-like ordered key-value tables owned by the node, with an owner
//!   process and an optional heir; no code change reads or copies them.
//! - The upgrade hooks ([`Node::suspend`], [`Node::change_code`], [`Node::resume`], ...) let
//!   the release handler switch code and migrate state with rollback.
//!
//! - Running a node on a release root ([`service::Service`]): what `relup start` does (node
//!   lock, boot of the permanent release, control socket, scheduled upgrades, config watcher,
//!   signals, clean stop), with the service's own native server types registered.
//!
//! Module authors depend on `relup-module`; services embed this crate.

mod behaviour;
mod code_server;
pub mod config;
pub mod control;
mod digest_cache;
mod error;
mod fault;
#[doc(hidden)]
pub mod fuzz;
pub mod handler;
pub mod handover;
mod host;
pub mod install;
mod loader;
pub mod metrics;
mod node;
mod par;
mod pidmap;
pub mod ports;
mod process;
pub mod release;
mod reply;
mod run;
mod scheduler;
pub mod service;
pub mod snapshot;
mod supervisor;
pub mod tables;
mod timer;
pub mod trace;
mod upgrade;

pub use behaviour::ProcessKind;
pub use code_server::{CodeServer, CodeStats, Expect, LoadedModule, ModuleVersions, Origin};
pub use error::{
    CallError, CodeChangeError, LoadError, SendError, SpawnError, SupervisorError, SuspendError,
};
pub use node::{
    ExitCounts, LogLine, Logger, ModuleRef, Node, NodeConfig, NodeError, ProcessInfo, SpawnOptions,
};
pub use ports::{PortError, PortInfo, PortKind, PortLimits};
pub use process::{InfoMsg, Payload};
pub use relup_module::{
    CloseReason, ConfigValue, Direction, ExitReason, Pid, PortId, TableId, Target,
};
pub use supervisor::{
    ChildCounts, ChildInfo, ChildSpec, ChildStart, Restart, Shutdown, Strategy, SupervisorSpec,
};
pub use upgrade::{CodeChange, UpgradeError, UpgradeReport};
