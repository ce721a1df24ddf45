//! appup generation: from two release manifests, the appups (up and down) covering every
//! difference between them, ready to be written out with [`Appup::to_toml`] and edited.

use crate::appup::{Appup, Entry, VersionMatch};
use crate::instruction::{Instruction, LocatedInstruction, Purge};
use crate::release::{Child, ChildKind, Release};
use crate::span::Pos;

/// Generates one appup per application present in both releases whose version differs,
/// for `new`'s application version, with an `up` entry from `old`'s application version and a
/// `down` entry back to it. Applications only in one release need no appup (the planner adds or
/// removes them). `old` is the older release, `new` the newer.
///
/// Changed modules (sha256) get `update` when some child of either supervision tree runs them,
/// `load_module` otherwise; added modules get `add_module` (and `delete_module` down); removed
/// ones the reverse; supervisor flag changes `update_supervisor`; added, removed and changed
/// children `add_child`, `remove_child`, `restart_child`.
pub fn generate(old: &Release, new: &Release) -> Vec<Appup> {
    new.applications
        .iter()
        .filter_map(|a| {
            let o = old.application(&a.name)?;
            (o.version != a.version).then(|| generate_app(old, new, &a.name))?
        })
        .collect()
}

/// The appup of application `app` between `old` and `new`; `None` when either lacks it.
pub fn generate_app(old: &Release, new: &Release, app: &str) -> Option<Appup> {
    let oa = old.application(app)?;
    let na = new.application(app)?;
    let mut running: Vec<&str> = old.running_modules();
    running.extend(new.running_modules());
    let mut up = Vec::new();
    let mut down = Vec::new();
    let li = |instruction| LocatedInstruction {
        instruction,
        pos: Pos::default(),
    };
    // Modules.
    let mut up_tail = Vec::new();
    let mut down_tail = Vec::new();
    for m in &na.modules {
        if !oa.modules.iter().any(|o| o.name == m.name) {
            up.push(li(Instruction::AddModule {
                module: m.name.clone(),
                depends_on: vec![],
            }));
            down_tail.push(li(Instruction::DeleteModule {
                module: m.name.clone(),
                depends_on: vec![],
            }));
        }
    }
    for m in &oa.modules {
        if !na.modules.iter().any(|n| n.name == m.name) {
            down.push(li(Instruction::AddModule {
                module: m.name.clone(),
                depends_on: vec![],
            }));
            up_tail.push(li(Instruction::DeleteModule {
                module: m.name.clone(),
                depends_on: vec![],
            }));
        }
    }
    for m in &na.modules {
        let Some(o) = oa.modules.iter().find(|o| o.name == m.name) else {
            continue;
        };
        if o.sha256 == m.sha256 {
            continue;
        }
        let ins = if running.contains(&m.name.as_str()) {
            Instruction::Update {
                module: m.name.clone(),
                extra: toml::Value::Table(toml::Table::new()),
                timeout_ms: None,
                purge: Purge::Soft,
                depends_on: vec![],
            }
        } else {
            Instruction::LoadModule {
                module: m.name.clone(),
                purge: Purge::Soft,
                depends_on: vec![],
            }
        };
        up.push(li(ins.clone()));
        down.push(li(ins));
    }
    // Supervisors present on both sides.
    let new_paths = new.supervisor_paths();
    for path in old
        .supervisor_paths()
        .into_iter()
        .filter(|p| p == app || p.starts_with(&format!("{app}/")))
    {
        if !new_paths.contains(&path) {
            continue;
        }
        let (Some(os), Some(ns)) = (old.supervisor(&path), new.supervisor(&path)) else {
            continue;
        };
        if (os.strategy, os.intensity, os.period_secs)
            != (ns.strategy, ns.intensity, ns.period_secs)
        {
            up.push(li(Instruction::UpdateSupervisor {
                supervisor: path.clone(),
            }));
            down.push(li(Instruction::UpdateSupervisor {
                supervisor: path.clone(),
            }));
        }
        for c in &os.children {
            if !ns.children.iter().any(|n| n.id == c.id) {
                up.push(li(Instruction::RemoveChild {
                    child: c.id.clone(),
                    supervisor: path.clone(),
                }));
                down.push(li(Instruction::AddChild {
                    child: c.id.clone(),
                    supervisor: path.clone(),
                }));
            }
        }
        for c in &ns.children {
            match os.children.iter().find(|o| o.id == c.id) {
                None => {
                    up.push(li(Instruction::AddChild {
                        child: c.id.clone(),
                        supervisor: path.clone(),
                    }));
                    down.push(li(Instruction::RemoveChild {
                        child: c.id.clone(),
                        supervisor: path.clone(),
                    }));
                }
                Some(o) if !same_spec(o, c) => {
                    up.push(li(Instruction::RestartChild {
                        child: c.id.clone(),
                        supervisor: path.clone(),
                    }));
                    down.push(li(Instruction::RestartChild {
                        child: c.id.clone(),
                        supervisor: path.clone(),
                    }));
                }
                Some(_) => {}
            }
        }
    }
    up.extend(up_tail);
    down.extend(down_tail);
    Some(Appup {
        file: format!("appup/{app}.toml"),
        application: app.to_string(),
        version: na.version.clone(),
        up: vec![Entry {
            versions: VersionMatch::Exact(oa.version.clone()),
            instructions: up,
            pos: Pos::default(),
        }],
        down: vec![Entry {
            versions: VersionMatch::Exact(oa.version.clone()),
            instructions: down,
            pos: Pos::default(),
        }],
    })
}

/// Whether two child specs are the same, ignoring a nested supervisor's flags and children
/// (those are compared as their own supervisor).
fn same_spec(a: &Child, b: &Child) -> bool {
    a.module == b.module
        && a.args == b.args
        && a.restart == b.restart
        && a.shutdown == b.shutdown
        && matches!(
            (&a.kind, &b.kind),
            (ChildKind::Worker, ChildKind::Worker)
                | (ChildKind::Supervisor(_), ChildKind::Supervisor(_))
        )
}
