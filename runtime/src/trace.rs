//! The node's log lines and the upgrade's phases as `tracing` events and spans (issue 20).
//!
//! Every line the node or a module writes is one event:
//! - target `relup::node`: the node's own lines; fields `pid` and `name` when a process is
//!   concerned, and `message`;
//! - target `relup::module`: a module's `ctx.log` line; fields `module`, `version`, `pid`,
//!   `name` (its registered name, when it has one) and `message`.
//!
//! Each phase of an install is one span at info level, target `relup::upgrade`, named after
//! the phase: `unpack`, `verify`, `check`, `load`, `suspend`, `code_change`, `resume`,
//! `commit`, `probation`, `rollback`. They carry `from` and `to` (release versions), `module`
//! where one module is concerned, and `processes` (how many processes the phase touched)
//! once known. An install's outcome is an event with target `relup::upgrade` and field
//! `outcome`.
//!
//! With no subscriber installed anywhere, node lines go to standard error as they did before
//! tracing (`<RFC 3339 time> [level] <name> <pid>: text`, info and above): see
//! [`crate::NodeConfig::logger`].

use relup_module::Pid;
use tracing::{Level, Span};

/// The target of the node's own lines.
pub const NODE_TARGET: &str = "relup::node";
/// The target of modules' `ctx.log` lines.
pub const MODULE_TARGET: &str = "relup::module";
/// The target of the upgrade phases' spans and the outcome events.
pub const UPGRADE_TARGET: &str = "relup::upgrade";

/// A phase of an install, one span each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A tarball is unpacked into the root.
    Unpack,
    /// An unpacked release's files are checked against its MANIFEST.
    Verify,
    /// Every code_change is dry-run on copies of the live states.
    Check,
    /// A module's new library is loaded (and checked), or made current.
    Load,
    /// The processes of a module are suspended.
    Suspend,
    /// Their states are migrated.
    CodeChange,
    /// They are resumed.
    Resume,
    /// A hop is made final.
    Commit,
    /// A release is on probation.
    Probation,
    /// A hop (or a failed probation) is undone.
    Rollback,
}

/// The level a node log line of `level` (0 error ... 4 trace) has.
fn level_of(level: u32) -> Level {
    match level {
        0 => Level::ERROR,
        1 => Level::WARN,
        2 => Level::INFO,
        3 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// One event per level (tracing's macros need the level as a constant).
macro_rules! event_at {
    ($level:expr, $target:literal, $($rest:tt)+) => {
        match $level {
            Level::ERROR => tracing::event!(target: $target, Level::ERROR, $($rest)+),
            Level::WARN => tracing::event!(target: $target, Level::WARN, $($rest)+),
            Level::INFO => tracing::event!(target: $target, Level::INFO, $($rest)+),
            Level::DEBUG => tracing::event!(target: $target, Level::DEBUG, $($rest)+),
            _ => tracing::event!(target: $target, Level::TRACE, $($rest)+),
        }
    };
}

/// The node's own line (target `relup::node`).
pub(crate) fn node_line(level: u32, pid: Option<Pid>, name: Option<&str>, text: &str) {
    match pid {
        Some(pid) => event_at!(
            level_of(level),
            "relup::node",
            pid = %pid,
            name = name,
            "{text}"
        ),
        None => event_at!(level_of(level), "relup::node", "{text}"),
    }
}

/// A module's `ctx.log` line (target `relup::module`).
pub(crate) fn module_line(
    level: u32,
    pid: Pid,
    name: Option<&str>,
    module: &str,
    version: &str,
    text: &str,
) {
    event_at!(
        level_of(level),
        "relup::module",
        module = module,
        version = version,
        pid = %pid,
        name = name,
        "{text}"
    );
}

/// A line of the runtime outside a node's own log calls (the control server): an event on
/// `relup::node`, and standard error when no subscriber was ever set (as before tracing).
pub(crate) fn runtime_line(level: u32, text: &str) {
    node_line(level, None, None, text);
    if !subscribed() {
        eprintln!("{text}");
    }
}

/// Whether any subscriber was ever set (global or scoped): if not, the node writes its lines
/// to standard error itself.
pub(crate) fn subscribed() -> bool {
    tracing::dispatcher::has_been_set()
}

/// The span of `phase` of an install from `from` to `to` (its `module` and `processes`
/// fields are recorded later, by [`PhaseSpan`]'s methods, when known).
pub(crate) fn phase(
    phase: Phase,
    from: &dyn std::fmt::Display,
    to: &dyn std::fmt::Display,
) -> Span {
    macro_rules! span_named {
        ($name:literal) => {
            tracing::info_span!(
                target: "relup::upgrade",
                $name,
                from = %from,
                to = %to,
                module = tracing::field::Empty,
                processes = tracing::field::Empty
            )
        };
    }
    match phase {
        Phase::Unpack => span_named!("unpack"),
        Phase::Verify => span_named!("verify"),
        Phase::Check => span_named!("check"),
        Phase::Load => span_named!("load"),
        Phase::Suspend => span_named!("suspend"),
        Phase::CodeChange => span_named!("code_change"),
        Phase::Resume => span_named!("resume"),
        Phase::Commit => span_named!("commit"),
        Phase::Probation => span_named!("probation"),
        Phase::Rollback => span_named!("rollback"),
    }
}

/// Records what a phase touched on its span.
pub(crate) trait PhaseSpan {
    /// The module the phase is about.
    fn module(&self, module: &str) -> &Self;
    /// How many processes it touched.
    fn processes(&self, count: usize) -> &Self;
}

impl PhaseSpan for Span {
    fn module(&self, module: &str) -> &Self {
        self.record("module", module)
    }

    fn processes(&self, count: usize) -> &Self {
        self.record("processes", count as u64)
    }
}

/// The outcome of an install from `from` to `to` (`upgraded`, `rolled_back`, `failed`,
/// `refused`), as one event.
pub(crate) fn outcome(
    outcome: &str,
    from: &dyn std::fmt::Display,
    to: &dyn std::fmt::Display,
    detail: &str,
) {
    tracing::info!(
        target: "relup::upgrade",
        outcome = outcome,
        from = %from,
        to = %to,
        "install done: {detail}"
    );
}
