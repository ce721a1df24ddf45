//! Validation of appups: on their own (duplicates, order, dependency cycles) and against the
//! two releases an entry connects (unknown names, wrong side, incomplete coverage).

use crate::appup::{Appup, Direction, Entry};
use crate::error::{Error, Errors};
use crate::instruction::{Instruction, LocatedInstruction};
use crate::release::Release;
use crate::span::{Location, Pos};
use std::collections::BTreeMap;

/// Checks an appup on its own: duplicate up/down entries, duplicate instructions in an entry,
/// anything after `restart_node`, and `depends_on` cycles. [`Appup::parse`] runs it.
pub fn check_structure(appup: &Appup) -> Errors {
    let at = |p: Pos| Location::new(&appup.file, p);
    let mut errs = Vec::new();
    for (name, entries) in [("up", &appup.up), ("down", &appup.down)] {
        let mut seen: BTreeMap<String, Pos> = BTreeMap::new();
        for e in entries {
            let k = e.versions.to_string();
            if let Some(first) = seen.insert(k.clone(), e.pos) {
                errs.push(Error::Duplicate {
                    at: at(e.pos),
                    what: format!("{name} entry for `{k}`"),
                    first: at(first),
                });
            }
            check_entry_structure(appup, e, &mut errs);
        }
    }
    Errors(errs)
}

fn subject(i: &Instruction) -> Option<String> {
    Some(match i {
        Instruction::LoadModule { module, .. }
        | Instruction::Update { module, .. }
        | Instruction::AddModule { module, .. }
        | Instruction::DeleteModule { module, .. } => format!("instruction for module `{module}`"),
        Instruction::AddApplication { application, .. }
        | Instruction::RemoveApplication { application }
        | Instruction::RestartApplication { application } => {
            format!("instruction for application `{application}`")
        }
        Instruction::UpdateSupervisor { supervisor } => {
            format!("update_supervisor of `{supervisor}`")
        }
        Instruction::AddChild { child, supervisor }
        | Instruction::RemoveChild { child, supervisor }
        | Instruction::RestartChild { child, supervisor } => {
            format!("instruction for child `{child}` of `{supervisor}`")
        }
        Instruction::RestartNode => "restart_node".into(),
        Instruction::Apply { .. } => return None,
    })
}

fn check_entry_structure(appup: &Appup, e: &Entry, errs: &mut Vec<Error>) {
    let at = |p: Pos| Location::new(&appup.file, p);
    let mut seen: BTreeMap<String, Pos> = BTreeMap::new();
    let mut restart: Option<Pos> = None;
    for li in &e.instructions {
        if let Some(r) = restart {
            errs.push(Error::AfterRestartNode {
                at: at(li.pos),
                instruction: li.instruction.kind().into(),
                restart_at: at(r),
            });
        }
        if let Some(s) = subject(&li.instruction)
            && let Some(first) = seen.insert(s.clone(), li.pos)
        {
            errs.push(Error::Duplicate {
                at: at(li.pos),
                what: s,
                first: at(first),
            });
        }
        if matches!(li.instruction, Instruction::RestartNode) && restart.is_none() {
            restart = Some(li.pos);
        }
    }
    if let Some(cycle) = find_cycle(&e.instructions) {
        let first = cycle.first().cloned().unwrap_or_default();
        let pos = e
            .instructions
            .iter()
            .find(|i| i.instruction.module() == Some(first.as_str()))
            .map(|i| i.pos)
            .unwrap_or(e.pos);
        errs.push(Error::DependencyCycle { at: at(pos), cycle });
    }
}

/// A `depends_on` cycle among the instructions of one entry, as module names with the first
/// repeated at the end; `None` when there is none.
pub fn find_cycle(instrs: &[LocatedInstruction]) -> Option<Vec<String>> {
    let graph: BTreeMap<&str, Vec<&str>> = instrs
        .iter()
        .filter_map(|i| {
            let m = i.instruction.module()?;
            Some((
                m,
                i.instruction
                    .depends_on()
                    .iter()
                    .map(|s| s.as_str())
                    .collect(),
            ))
        })
        .collect();
    // Iterative DFS with colours, in appup order of the roots.
    let mut colour: BTreeMap<&str, u8> = BTreeMap::new();
    for root in instrs.iter().filter_map(|i| i.instruction.module()) {
        if colour.get(root).copied().unwrap_or(0) != 0 {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(root, 0)];
        colour.insert(root, 1);
        while let Some((node, idx)) = stack.last().copied() {
            let next = graph.get(node).and_then(|d| d.get(idx)).copied();
            match next {
                None => {
                    colour.insert(node, 2);
                    stack.pop();
                }
                Some(dep) => {
                    if let Some(top) = stack.last_mut() {
                        top.1 += 1;
                    }
                    if !graph.contains_key(dep) {
                        continue;
                    }
                    match colour.get(dep).copied().unwrap_or(0) {
                        0 => {
                            colour.insert(dep, 1);
                            stack.push((dep, 0));
                        }
                        1 => {
                            let start = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                            let mut cycle: Vec<String> =
                                stack[start..].iter().map(|(n, _)| n.to_string()).collect();
                            cycle.push(dep.to_string());
                            return Some(cycle);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    None
}

/// Validates an appup entry against the releases it connects: `from` is the release the change
/// starts from and `to` the one it ends in (for `up`: old then new; for `down`: new then old).
///
/// Checks that every module, application, supervisor and child named exists on the side the
/// instruction needs, and that the entry is complete: every module of the application whose
/// sha256 differs between the two releases, or that is added or removed, is covered by an
/// instruction (or by `restart_application` / `restart_node`).
pub fn validate_entry(
    appup: &Appup,
    direction: Direction,
    entry: &Entry,
    from: &Release,
    to: &Release,
) -> Result<(), Errors> {
    let mut errs = Vec::new();
    check_entry_structure(appup, entry, &mut errs);
    let at = |p: Pos| Location::new(&appup.file, p);
    let app = &appup.application;
    let (newer, older) = match direction {
        Direction::Up => (to, from),
        Direction::Down => (from, to),
    };
    match newer.application(app) {
        None => errs.push(Error::Mismatch {
            at: at(entry.pos),
            message: format!(
                "appup of application {app}, which {} does not have",
                newer.label()
            ),
            expected: format!("an appup of one of: {}", app_names(newer)),
        }),
        Some(a) if a.version != appup.version => errs.push(Error::Mismatch {
            at: at(entry.pos),
            message: format!(
                "appup of {app} {}, but {} has {app} {}",
                appup.version,
                newer.label(),
                a.version
            ),
            expected: format!("the appup of {app} {}", a.version),
        }),
        _ => {}
    }
    if let Some(old) = older.application(app)
        && !entry.versions.matches(&old.version)
    {
        errs.push(Error::Mismatch {
            at: at(entry.pos),
            message: format!(
                "{direction} entry `{}` does not match {app} {} of {}",
                entry.versions,
                old.version,
                older.label()
            ),
            expected: format!("an entry matching {}", old.version),
        });
    }
    let scope = |r: &Release| format!("application {app} of {}", r.label());
    let app_modules = |r: &Release| -> String {
        r.application(app)
            .map(|a| {
                a.modules
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    // Is module `m` a module of this application in release `r`?
    let owns = |r: &Release, m: &str| r.module(m).is_some_and(|(a, _)| &a.name == app);
    for li in &entry.instructions {
        let here = at(li.pos);
        let kind = li.instruction.kind();
        let unknown_module = |m: &str, r: &Release| Error::UnknownModule {
            at: here.clone(),
            module: m.to_string(),
            scope: scope(r),
            known: app_modules(r),
        };
        match &li.instruction {
            Instruction::LoadModule { module, .. } | Instruction::Update { module, .. } => {
                match (owns(from, module), owns(to, module)) {
                    (true, true) => {}
                    (false, false) => errs.push(unknown_module(module, to)),
                    (true, false) => errs.push(Error::ModuleNotInRelease {
                        at: here.clone(),
                        instruction: kind.into(),
                        module: module.clone(),
                        release: to.label(),
                        expected: format!("delete_module = \"{module}\""),
                    }),
                    (false, true) => errs.push(Error::ModuleNotInRelease {
                        at: here.clone(),
                        instruction: kind.into(),
                        module: module.clone(),
                        release: from.label(),
                        expected: format!("add_module = \"{module}\""),
                    }),
                }
            }
            Instruction::AddModule { module, .. } => {
                if !owns(to, module) {
                    errs.push(unknown_module(module, to));
                } else if owns(from, module) {
                    errs.push(Error::Mismatch {
                        at: here.clone(),
                        message: format!(
                            "add_module of `{module}`, which {} already has",
                            from.label()
                        ),
                        expected: format!("update or load_module = \"{module}\""),
                    });
                }
            }
            Instruction::DeleteModule { module, .. } => {
                if !owns(from, module) {
                    errs.push(unknown_module(module, from));
                } else if owns(to, module) {
                    errs.push(Error::Mismatch {
                        at: here.clone(),
                        message: format!(
                            "delete_module of `{module}`, which {} still has",
                            to.label()
                        ),
                        expected: format!("update or load_module = \"{module}\""),
                    });
                }
            }
            Instruction::Apply { module, .. } => {
                if to.module(module).is_none() {
                    errs.push(Error::UnknownModule {
                        at: here.clone(),
                        module: module.clone(),
                        scope: to.label(),
                        known: all_modules(to),
                    });
                }
            }
            Instruction::AddApplication { application, .. } => {
                if to.application(application).is_none() {
                    errs.push(unknown_app(&here, application, to));
                } else if from.application(application).is_some() {
                    errs.push(Error::Mismatch {
                        at: here.clone(),
                        message: format!(
                            "add_application of `{application}`, which {} already has",
                            from.label()
                        ),
                        expected: format!("restart_application = \"{application}\""),
                    });
                }
            }
            Instruction::RemoveApplication { application } => {
                if from.application(application).is_none() {
                    errs.push(unknown_app(&here, application, from));
                } else if to.application(application).is_some() {
                    errs.push(Error::Mismatch {
                        at: here.clone(),
                        message: format!(
                            "remove_application of `{application}`, which {} still has",
                            to.label()
                        ),
                        expected: format!("restart_application = \"{application}\""),
                    });
                }
            }
            Instruction::RestartApplication { application } => {
                if to.application(application).is_none() {
                    errs.push(unknown_app(&here, application, to));
                }
            }
            Instruction::UpdateSupervisor { supervisor } => {
                if to.supervisor(supervisor).is_none() {
                    errs.push(unknown_sup(&here, supervisor, to));
                }
            }
            Instruction::AddChild { child, supervisor }
            | Instruction::RestartChild { child, supervisor } => {
                check_child(&here, supervisor, child, to, &mut errs);
            }
            Instruction::RemoveChild { child, supervisor } => {
                check_child(&here, supervisor, child, from, &mut errs);
            }
            Instruction::RestartNode => {}
        }
        for d in li.instruction.depends_on() {
            if from.module(d).is_none() && to.module(d).is_none() {
                errs.push(Error::UnknownModule {
                    at: here.clone(),
                    module: d.clone(),
                    scope: format!("depends_on, in {}", to.label()),
                    known: all_modules(to),
                });
            }
        }
    }
    check_complete(appup, entry, from, to, &mut errs);
    Errors(errs).into_result()
}

fn check_complete(
    appup: &Appup,
    entry: &Entry,
    from: &Release,
    to: &Release,
    errs: &mut Vec<Error>,
) {
    let app = &appup.application;
    let covers_all = entry.instructions.iter().any(|i| match &i.instruction {
        Instruction::RestartNode => true,
        Instruction::RestartApplication { application } => application == app,
        _ => false,
    });
    if covers_all {
        return;
    }
    let covered = |m: &str, kinds: &[&str]| {
        entry
            .instructions
            .iter()
            .any(|i| i.instruction.module() == Some(m) && kinds.contains(&i.instruction.kind()))
    };
    let empty = Vec::new();
    let old = from.application(app).map(|a| &a.modules).unwrap_or(&empty);
    let new = to.application(app).map(|a| &a.modules).unwrap_or(&empty);
    let running = to.running_modules();
    let mut missing = |module: &str, change: String, expected: String| {
        errs.push(Error::Incomplete {
            at: Location::new(&appup.file, entry.pos),
            module: module.to_string(),
            application: app.clone(),
            change,
            from: from.label(),
            to: to.label(),
            expected,
        })
    };
    for n in new {
        match old.iter().find(|o| o.name == n.name) {
            Some(o) if o.sha256 != n.sha256 => {
                if !covered(&n.name, &["update", "load_module"]) {
                    let kind = if running.contains(&n.name.as_str()) {
                        "update"
                    } else {
                        "load_module"
                    };
                    missing(
                        &n.name,
                        format!(
                            "changed (sha256 {}.. -> {}..)",
                            o.sha256.get(..8).unwrap_or(&o.sha256),
                            n.sha256.get(..8).unwrap_or(&n.sha256)
                        ),
                        format!("{{ {kind} = \"{}\" }}", n.name),
                    );
                }
            }
            Some(_) => {}
            None => {
                if !covered(&n.name, &["add_module"]) {
                    missing(
                        &n.name,
                        "was added".into(),
                        format!("{{ add_module = \"{}\" }}", n.name),
                    );
                }
            }
        }
    }
    for o in old {
        if !new.iter().any(|n| n.name == o.name) && !covered(&o.name, &["delete_module"]) {
            missing(
                &o.name,
                "was removed".into(),
                format!("{{ delete_module = \"{}\" }}", o.name),
            );
        }
    }
}

/// Validates both directions of an appup between an older and a newer release: the `up` entry
/// matching the older application version, and the `down` entry matching it. A missing entry
/// is an error.
pub fn validate(appup: &Appup, older: &Release, newer: &Release) -> Result<(), Errors> {
    let mut errs = Vec::new();
    let top = Location::new(&appup.file, Pos { line: 1, column: 1 });
    let Some(old_app) = older.application(&appup.application) else {
        return Err(unknown_app(&top, &appup.application, older).into());
    };
    for (dir, from, to) in [
        (Direction::Up, older, newer),
        (Direction::Down, newer, older),
    ] {
        match appup.entry(dir, &old_app.version) {
            None => errs.push(Error::Mismatch {
                at: top.clone(),
                message: format!(
                    "no {dir} entry of {} {} matches {}",
                    appup.application, appup.version, old_app.version
                ),
                expected: format!(
                    "[[{dir}]] with {} = \"{}\"",
                    if dir == Direction::Up { "from" } else { "to" },
                    old_app.version
                ),
            }),
            Some(e) => {
                if let Err(es) = validate_entry(appup, dir, e, from, to) {
                    errs.extend(es.0);
                }
            }
        }
    }
    Errors(errs).into_result()
}

fn app_names(r: &Release) -> String {
    r.applications
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn all_modules(r: &Release) -> String {
    r.applications
        .iter()
        .flat_map(|a| a.modules.iter().map(|m| m.name.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_app(at: &Location, application: &str, r: &Release) -> Error {
    Error::UnknownApplication {
        at: at.clone(),
        application: application.to_string(),
        scope: r.label(),
        known: app_names(r),
    }
}

fn unknown_sup(at: &Location, supervisor: &str, r: &Release) -> Error {
    Error::UnknownChild {
        at: at.clone(),
        what: "supervisor".into(),
        name: supervisor.to_string(),
        scope: r.label(),
        known: r.supervisor_paths().join(", "),
    }
}

fn check_child(at: &Location, supervisor: &str, child: &str, r: &Release, errs: &mut Vec<Error>) {
    match r.supervisor(supervisor) {
        None => errs.push(unknown_sup(at, supervisor, r)),
        Some(s) => {
            if !s.children.iter().any(|c| c.id == child) {
                errs.push(Error::UnknownChild {
                    at: at.clone(),
                    what: "child".into(),
                    name: child.to_string(),
                    scope: format!("supervisor {supervisor} of {}", r.label()),
                    known: s
                        .children
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
}
