//! Booting a release on a node: load its modules (sha256 checked), set its config defaults,
//! and start each application's supervision tree in order.

use super::convert::{config_value, supervisor_spec};
use super::error::InstallError;
use crate::code_server::{Expect, LoadedModule, Origin};
use crate::node::Node;
use relup_appup::Release;
use relup_module::{ExitReason, Pid};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A release running on a node: its manifest, directory and each application's top
/// supervisor.
#[derive(Debug, Clone)]
pub struct BootedRelease {
    /// The manifest.
    pub release: Release,
    /// Its directory (`<root>/releases/<vsn>`).
    pub dir: PathBuf,
    /// Each application's top supervisor, by application name.
    pub apps: BTreeMap<String, Pid>,
}

/// The registered name of an application's top supervisor.
pub(crate) fn app_supervisor_name(app: &str) -> String {
    format!("{app}_sup")
}

/// Loads a module library of a release after checking its sha256 against the manifest: the
/// file's first (remembered while it is unchanged, a quick refusal with the manifest's
/// digest), then that of the private copy that is opened.
pub(crate) fn load_checked(
    node: &Node,
    dir: &Path,
    module: &relup_appup::Module,
    step: &str,
) -> Result<Arc<LoadedModule>, InstallError> {
    let fail = |reason: String| InstallError::Load {
        step: step.to_string(),
        module: module.name.clone(),
        reason,
    };
    if module.native {
        return native_registered(node, module).map_err(fail);
    }
    let path = dir.join(&module.file);
    let digest = node
        .code()
        .file_sha256(&path)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    if digest != module.sha256 {
        return Err(fail(format!(
            "{} has sha256 {digest}, the manifest says {}",
            path.display(),
            module.sha256
        )));
    }
    let expect = Expect {
        name: Some(module.name.clone()),
        version: Some(module.version.clone()),
    };
    // SAFETY: the library is a module of a release the operator deployed and installs or
    // boots, its bytes those its manifest names by sha256 (checked again on the copy that is
    // opened): running it is what the operator asked for.
    unsafe { node.code().load_verified(&path, &expect, &digest) }.map_err(|e| fail(e.to_string()))
}

/// The native module (`native = true` in release.toml) that the node executable registered
/// under `module.name`, at the version the manifest names.
fn native_registered(
    node: &Node,
    module: &relup_appup::Module,
) -> Result<Arc<LoadedModule>, String> {
    let registered = node
        .code()
        .current(&module.name)
        .filter(|m| matches!(m.origin(), Origin::Native));
    match registered {
        Some(m) if *m.version() == module.version => Ok(m),
        Some(m) => Err(format!(
            "release.toml names native module {} {}, the node executable registered {} {}; a native module changes with the executable (deploy a release that carries the new executable and restart the node)",
            module.name,
            module.version,
            m.name(),
            m.version()
        )),
        None => Err(format!(
            "release.toml names native module {} {}, which this node executable does not register; run the node with the service's own binary (the one that registers it, see relup_runtime::service::Natives), not the plain `relup`",
            module.name, module.version
        )),
    }
}

/// Boots `release` from `dir` on `node`. On failure, whatever was started is stopped again.
pub fn boot_release(
    node: &Node,
    release: &Release,
    dir: &Path,
) -> Result<BootedRelease, InstallError> {
    let mut loaded: HashMap<String, Arc<LoadedModule>> = HashMap::new();
    for app in &release.applications {
        for module in &app.modules {
            let module_ref = load_checked(node, dir, module, "boot: load")?;
            loaded.insert(module.name.clone(), module_ref);
        }
    }
    for module in loaded.values() {
        node.code().make_current(module);
    }
    for app in &release.applications {
        for key in &app.config {
            if node.env(&app.name, &key.key).is_none() {
                node.set_env_default(&app.name, &key.key, config_value(&key.default));
            }
        }
    }
    let mut booted = BootedRelease {
        release: release.clone(),
        dir: dir.to_path_buf(),
        apps: BTreeMap::new(),
    };
    for app in &release.applications {
        let Some(sup) = &app.supervisor else { continue };
        let spec = supervisor_spec(&app.name, sup, &loaded);
        match node.start_supervisor(spec, Some(&app_supervisor_name(&app.name))) {
            Ok(pid) => {
                booted.apps.insert(app.name.clone(), pid);
            }
            Err(e) => {
                stop_release(node, &booted, Duration::from_secs(30));
                return Err(InstallError::Step {
                    step: format!("boot: start application {}", app.name),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(booted)
}

/// Stops one application's supervision tree; true if it exited within `timeout`.
pub(crate) fn stop_application(node: &Node, sup: Pid, timeout: Duration) -> bool {
    let Some(watch) = node.watch(sup) else {
        return true;
    };
    node.exit(sup, ExitReason::Shutdown);
    if watch.wait(Some(timeout)).is_some() {
        return true;
    }
    node.exit(sup, ExitReason::Killed);
    watch.wait(Some(Duration::from_secs(1))).is_some()
}

/// Stops every application of a booted release, in reverse start order.
pub fn stop_release(node: &Node, booted: &BootedRelease, timeout: Duration) {
    let order: Vec<&String> = booted
        .release
        .applications
        .iter()
        .map(|a| &a.name)
        .collect();
    for app in order.into_iter().rev() {
        if let Some(pid) = booted.apps.get(app) {
            stop_application(node, *pid, timeout);
        }
    }
}
