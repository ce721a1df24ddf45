//! Conversions from relup-appup's manifest types to the runtime's.

use crate::code_server::LoadedModule;
use crate::node::ModuleRef;
use crate::supervisor::{ChildSpec, ChildStart, Restart, Shutdown, Strategy, SupervisorSpec};
use relup_appup as appup;
use relup_module::ConfigValue;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Encodes a TOML value (init args, `extra`, apply args) with the module codec.
pub fn encode_value(value: &toml::Value) -> Vec<u8> {
    // A toml::Value always serializes; an empty buffer would only make the module's decode
    // fail with a clear error.
    relup_module::codec::encode(value).unwrap_or_default()
}

/// A TOML value as a configuration value.
pub fn config_value(value: &toml::Value) -> ConfigValue {
    match value {
        toml::Value::String(s) => ConfigValue::Str(s.clone()),
        toml::Value::Integer(i) => ConfigValue::Int(*i),
        toml::Value::Float(f) => ConfigValue::Float(*f),
        toml::Value::Boolean(b) => ConfigValue::Bool(*b),
        toml::Value::Datetime(d) => ConfigValue::Str(d.to_string()),
        toml::Value::Array(items) => ConfigValue::List(items.iter().map(config_value).collect()),
        toml::Value::Table(table) => ConfigValue::Table(
            table
                .iter()
                .map(|(k, v)| (k.clone(), config_value(v)))
                .collect(),
        ),
    }
}

fn strategy(s: appup::Strategy) -> Strategy {
    match s {
        appup::Strategy::OneForOne => Strategy::OneForOne,
        appup::Strategy::OneForAll => Strategy::OneForAll,
        appup::Strategy::RestForOne => Strategy::RestForOne,
        appup::Strategy::SimpleOneForOne => Strategy::SimpleOneForOne,
    }
}

/// The runtime strategy and limits of a manifest supervisor.
pub fn supervisor_flags(sup: &appup::Supervisor) -> (Strategy, u32, Duration) {
    (
        strategy(sup.strategy),
        sup.intensity,
        Duration::from_secs(u64::from(sup.period_secs)),
    )
}

/// A manifest child as a runtime child spec. Workers run the given module versions when
/// listed in `pinned` (the versions a boot or hop just loaded), else the current version.
pub fn child_spec(
    app: &str,
    child: &appup::Child,
    pinned: &HashMap<String, Arc<LoadedModule>>,
) -> ChildSpec {
    let start = match &child.kind {
        appup::ChildKind::Worker => {
            let name = child.module.clone().unwrap_or_else(|| child.id.clone());
            let module = match pinned.get(&name) {
                Some(loaded) => ModuleRef::Loaded(loaded.clone()),
                None => ModuleRef::Name(name),
            };
            ChildStart::Module {
                module,
                args: encode_value(&child.args),
            }
        }
        appup::ChildKind::Supervisor(sup) => {
            ChildStart::Supervisor(supervisor_spec(app, sup, pinned))
        }
    };
    ChildSpec {
        id: child.id.clone(),
        start,
        restart: match child.restart {
            appup::Restart::Permanent => Restart::Permanent,
            appup::Restart::Transient => Restart::Transient,
            appup::Restart::Temporary => Restart::Temporary,
        },
        shutdown: match child.shutdown {
            appup::Shutdown::BrutalKill => Shutdown::BrutalKill,
            appup::Shutdown::Infinity => Shutdown::Infinity,
            appup::Shutdown::Millis(ms) => Shutdown::Timeout(Duration::from_millis(ms)),
        },
        name: None,
        app: Some(app.to_string()),
    }
}

/// A manifest supervisor (with its children) as a runtime supervisor spec.
pub fn supervisor_spec(
    app: &str,
    sup: &appup::Supervisor,
    pinned: &HashMap<String, Arc<LoadedModule>>,
) -> SupervisorSpec {
    let (strategy, intensity, period) = supervisor_flags(sup);
    SupervisorSpec {
        strategy,
        intensity,
        period,
        children: sup
            .children
            .iter()
            .map(|c| child_spec(app, c, pinned))
            .collect(),
    }
}
