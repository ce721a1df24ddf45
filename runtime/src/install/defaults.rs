//! Configuration defaults across releases: a new release's defaults replace the old ones for
//! keys the operator has not set; operator values survive; keys the new release no longer
//! declares are removed. Every process of a changed application hears of it through
//! `config_change`.

use super::convert::config_value;
use crate::node::{EnvOrigin, Node};
use relup_appup::Release;
use relup_module::ConfigChange;

/// Moves the node's configuration from `old`'s defaults to `new`'s; returns the changes per
/// application (after delivering them).
pub(crate) fn apply_release_defaults(
    node: &Node,
    old: &Release,
    new: &Release,
) -> Vec<(String, ConfigChange)> {
    let mut changes = Vec::new();
    for app in &new.applications {
        let mut change = ConfigChange::default();
        for key in &app.config {
            let value = config_value(&key.default);
            match node.env_with_origin(&app.name, &key.key) {
                None => {
                    node.set_env_default(&app.name, &key.key, value.clone());
                    change.new.push((key.key.clone(), value));
                }
                Some((current, EnvOrigin::Default)) if current != value => {
                    node.set_env_default(&app.name, &key.key, value.clone());
                    change.changed.push((key.key.clone(), value));
                }
                Some(_) => {}
            }
        }
        if let Some(old_app) = old.application(&app.name) {
            for key in &old_app.config {
                let still = app.config.iter().any(|k| k.key == key.key);
                if !still && node.unset_env(&app.name, &key.key).is_some() {
                    change.removed.push(key.key.clone());
                }
            }
        }
        if change.changed.is_empty() && change.new.is_empty() && change.removed.is_empty() {
            continue;
        }
        for pid in node.processes_of_app(&app.name) {
            node.config_change(pid, &change);
        }
        changes.push((app.name.clone(), change));
    }
    changes
}
