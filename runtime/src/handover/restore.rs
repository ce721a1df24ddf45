//! Restoring the handed-over processes in the new node: while it boots, each supervisor
//! that starts a child looks here first; a child the old node had at that place (same
//! parent pid, same child id) is started under its old pid from its exported state (through
//! its module's `code_change` when the version changed) instead of by `init`, suspended
//! until the new node takes over, with the messages it had not handled.

use super::image::{Mail, ProcessImage};
use crate::behaviour::{Behaviour, ModuleInstance};
use crate::host::ProcCx;
use crate::node::{ModuleRef, NodeInner, SpawnOptions};
use crate::process::{Envelope, InfoMsg, Payload};
use crate::supervisor::{ChildSpec, ChildStart};
use parking_lot::Mutex;
use relup_module::{Direction, ExitReason, Pid};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The processes still to restore, by (parent pid, child id); empty outside a handover.
#[derive(Default)]
pub(crate) struct Plan {
    active: AtomicBool,
    places: Mutex<HashMap<(u64, String), VecDeque<ProcessImage>>>,
    /// Workers restored so far (suspended until the take-over).
    restored: Mutex<Vec<Pid>>,
}

impl Plan {
    /// Arms the plan with the image's processes.
    pub(crate) fn arm(&self, processes: Vec<ProcessImage>) {
        let mut places = self.places.lock();
        for process in processes {
            places
                .entry((process.parent, process.key.clone()))
                .or_default()
                .push_back(process);
        }
        self.active.store(true, Ordering::SeqCst);
    }

    /// The process the old node had at this place, if any is left.
    pub(crate) fn take(&self, parent: u64, key: &str) -> Option<ProcessImage> {
        if !self.active.load(Ordering::Relaxed) {
            return None;
        }
        let mut places = self.places.lock();
        let place = places.get_mut(&(parent, key.to_string()))?;
        let image = place.pop_front();
        if place.is_empty() {
            places.remove(&(parent, key.to_string()));
        }
        image
    }

    /// Ends the plan: what was not restored, and the workers that were.
    pub(crate) fn disarm(&self) -> (Vec<ProcessImage>, Vec<Pid>) {
        self.active.store(false, Ordering::SeqCst);
        let left = self
            .places
            .lock()
            .drain()
            .flat_map(|(_, images)| images)
            .collect();
        (left, std::mem::take(&mut *self.restored.lock()))
    }

    /// The places still waiting, for the simple_one_for_one children started after boot.
    pub(crate) fn waiting(&self) -> Vec<(u64, String, usize)> {
        self.places
            .lock()
            .iter()
            .map(|((parent, key), images)| (*parent, key.clone(), images.len()))
            .collect()
    }
}

/// Starts child `spec` of the supervisor behind `cx` as the process `image` describes.
pub(crate) fn child(
    cx: &ProcCx<'_>,
    spec: &ChildSpec,
    image: ProcessImage,
    by_hop: bool,
) -> Result<Pid, crate::SpawnError> {
    let opts = SpawnOptions {
        name: spec.name.clone(),
        app: spec.app.clone(),
        trap_exit: false,
    };
    let pid = Pid(image.pid);
    match &spec.start {
        ChildStart::Module { module, .. } => {
            let loaded = match module {
                ModuleRef::Loaded(m) => Some(m.clone()),
                ModuleRef::Name(name) => cx.node.code.current(name),
            }
            .ok_or_else(|| crate::SpawnError::UnknownModule(format!("{module:?}")))?;
            let label = loaded.name().to_string();
            let fail = |reason: String| crate::SpawnError::Init {
                module: label.clone(),
                reason: ExitReason::Error(reason),
            };
            let worker = image
                .worker
                .as_ref()
                .ok_or_else(|| fail(format!("{pid} was a supervisor in the old node")))?;
            if worker.module != label {
                return Err(fail(format!(
                    "{pid} ran module {} in the old node, child {} runs {label} now",
                    worker.module, spec.id
                )));
            }
            let instance = from_state(&loaded, &worker.version, &worker.state).map_err(fail)?;
            let pid = cx
                .node
                .spawn_as(Some((pid, true)), &opts, Some(cx), &label, move |_| {
                    Ok(Box::new(instance) as Box<dyn Behaviour>)
                })?;
            // A name the code registered at init (not by its spec) is registered again.
            if let Some(name) = image.name.filter(|n| spec.name.as_ref() != Some(n))
                && let Some(process) = cx.node.lookup(pid)
                && let Err(e) = cx.node.register(&name, &process)
            {
                cx.node.log(
                    1,
                    Some(&process),
                    &format!("handover: cannot register {pid} as {name:?} again: {e}"),
                );
            }
            deliver_mailbox(cx.node, pid, image.mailbox);
            cx.node.restoring.restored.lock().push(pid);
            Ok(pid)
        }
        ChildStart::Supervisor(sup) => crate::supervisor::spawn_supervisor_as(
            cx.node,
            Some(pid),
            sup.clone(),
            opts,
            Some(cx),
            by_hop,
        ),
    }
}

/// The instance of `loaded` from a state `version` exported: as it is when the version is
/// the same, else through the new code's `code_change` (up or down by semver).
fn from_state(
    loaded: &Arc<crate::LoadedModule>,
    version: &str,
    state: &[u8],
) -> Result<ModuleInstance, String> {
    let old = semver::Version::parse(version)
        .map_err(|e| format!("the old node reported version {version:?}: {e}"))?;
    let new = loaded.version();
    if old == *new {
        return ModuleInstance::restore(loaded.clone(), state)
            .map_err(|e| format!("restoring the state of {} {new}: {e}", loaded.name()));
    }
    let direction = if old < *new {
        Direction::Up
    } else {
        Direction::Down
    };
    ModuleInstance::code_change(loaded.clone(), version, direction, state, &[]).map_err(|e| {
        format!(
            "code_change of {} from {version} to {new}: {e}",
            loaded.name()
        )
    })
}

fn deliver_mailbox(node: &Arc<NodeInner>, pid: Pid, mailbox: Vec<Mail>) {
    for mail in mailbox {
        let envelope = match mail {
            Mail::Cast(bytes) => Envelope::Cast(Payload::Bytes(bytes)),
            Mail::Message(bytes) => Envelope::Info(InfoMsg::Message(Payload::Bytes(bytes))),
        };
        let _ = node.push(pid, envelope);
    }
}
