//! What `relup status` shows: the running release, its supervision tree with each process's
//! module version and mailbox length, module versions and code counters.

use crate::behaviour::ProcessKind;
use crate::code_server::{CodeStats, ModuleVersions};
use crate::handler::{ProbationStatus, ReleaseHandler, ScheduledUpgrade};
use crate::node::Node;
use relup_appup::ReleaseStatus;
use relup_module::Pid;
use serde::{Deserialize, Serialize};

/// One line of the supervision tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Nesting depth (0 for an application's top supervisor).
    pub depth: usize,
    /// Child id (the application name for a top supervisor).
    pub id: String,
    /// Its pid, if running.
    pub pid: Option<Pid>,
    /// Worker or supervisor.
    pub kind: ProcessKind,
    /// Registered name.
    pub name: Option<String>,
    /// Module and version it runs.
    pub module: Option<String>,
    /// Module version.
    pub version: Option<String>,
    /// Ordinary messages waiting.
    pub mailbox_len: usize,
}

/// The node's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Release name.
    pub name: String,
    /// Running release version.
    pub version: String,
    /// Every known release and its status, e.g. `0.1.0 (permanent)`.
    pub releases: Vec<(String, String)>,
    /// The supervision trees of the running applications.
    pub tree: Vec<TreeEntry>,
    /// Every module's current and old versions.
    pub modules: Vec<ModuleVersions>,
    /// Number of processes.
    pub processes: usize,
    /// Mapped code counters.
    pub code: CodeStats,
    /// The probation under way, if any.
    #[serde(default)]
    pub probation: Option<ProbationStatus>,
    /// Upgrades scheduled for later.
    #[serde(default)]
    pub scheduled: Vec<ScheduledUpgrade>,
    /// Why the schedule could not be read, if it could not.
    #[serde(default)]
    pub schedule_error: Option<String>,
    /// The running release's version (as `version`; named for fleet drivers, issue 19).
    #[serde(default)]
    pub running: String,
    /// The permanent release (what a restart boots), if `RELEASES` could be read.
    #[serde(default)]
    pub permanent: Option<String>,
    /// Releases unpacked and never installed (or installed and left), oldest first.
    #[serde(default)]
    pub unpacked: Vec<String>,
    /// Old releases (previous permanent ones), oldest first.
    #[serde(default)]
    pub old: Vec<String>,
    /// Whether a probation is under way (`probation` says which).
    #[serde(default)]
    pub probation_pending: bool,
    /// Whether an upgrade is scheduled (`scheduled` lists them).
    #[serde(default)]
    pub scheduled_pending: bool,
    /// The node process's pid.
    #[serde(default)]
    pub pid: u32,
    /// Handovers (`relup restart`, `restart_node`) this node's line has been through, and
    /// since when it serves.
    #[serde(default)]
    pub lineage: Option<crate::handover::old::Lineage>,
}

fn walk(node: &Node, id: String, pid: Pid, depth: usize, out: &mut Vec<TreeEntry>) {
    let info = node.process_info(pid);
    let kind = info.as_ref().map_or(ProcessKind::Worker, |i| i.kind);
    out.push(TreeEntry {
        depth,
        id,
        pid: Some(pid),
        kind,
        name: info.as_ref().and_then(|i| i.name.clone()),
        module: info.as_ref().and_then(|i| i.module.clone()),
        version: info.as_ref().and_then(|i| i.version.clone()),
        mailbox_len: info.as_ref().map_or(0, |i| i.mailbox_len),
    });
    if kind != ProcessKind::Supervisor {
        return;
    }
    for child in node.which_children(pid).unwrap_or_default() {
        match child.pid {
            Some(child_pid) => walk(node, child.id, child_pid, depth + 1, out),
            None => out.push(TreeEntry {
                depth: depth + 1,
                id: child.id,
                pid: None,
                kind: child.kind,
                name: None,
                module: child.module,
                version: None,
                mailbox_len: 0,
            }),
        }
    }
}

/// Collects the status of the handler's node.
pub fn status_report(handler: &ReleaseHandler) -> StatusReport {
    let booted = handler.running();
    let node = handler.node();
    let mut tree = Vec::new();
    for (app, pid) in &booted.apps {
        walk(node, app.clone(), *pid, 0, &mut tree);
    }
    let releases: Vec<(String, String)> = handler
        .releases()
        .map(|r| {
            r.releases
                .iter()
                .map(|e| (e.version.to_string(), e.status.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let with_status = |status: ReleaseStatus| -> Vec<String> {
        releases
            .iter()
            .filter(|(_, s)| *s == status.to_string())
            .map(|(v, _)| v.clone())
            .collect()
    };
    let permanent = with_status(ReleaseStatus::Permanent).into_iter().next();
    let unpacked = with_status(ReleaseStatus::Unpacked);
    let old = with_status(ReleaseStatus::Old);
    let scheduled = handler.scheduled();
    let schedule_error = scheduled.as_ref().err().map(|e| e.to_string());
    let scheduled = scheduled.map(|s| s.upgrades).unwrap_or_default();
    let probation = handler.probation();
    StatusReport {
        running: booted.release.version.to_string(),
        permanent,
        unpacked,
        old,
        probation_pending: probation.is_some(),
        scheduled_pending: !scheduled.is_empty(),
        name: booted.release.name.clone(),
        version: booted.release.version.to_string(),
        releases,
        tree,
        modules: node.code().modules(),
        processes: node.process_count(),
        code: node.code().stats(),
        probation,
        scheduled,
        schedule_error,
        pid: std::process::id(),
        lineage: Some(handler.lineage()),
    }
}
