//! The protocol of the ticker tutorial's `ticker_server` module.
//!
//! Every version (0.1.0, 0.2.0, 0.3.0) speaks exactly these types, so that
//! - a driver (the tutorial, a test, `relup`) can ask *any* running version for its [`Status`],
//! - the tick timer message armed by one version ([`Info::Tick`]) is understood by the version
//!   that replaces it: the timer outlives the upgrade, the code that receives it is new.
//!
//! The process *state* is not here: each version owns its own state shape and migrates it in
//! `code_change` (see each version's `server.rs`).

use relup_module::ConfigValue;
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;

/// The application and the module names, as in every `release.toml`.
pub const APPLICATION: &str = "ticker";
/// The module name every version exports.
pub const MODULE: &str = "ticker_server";
/// The name the ticker process registers under.
pub const REGISTERED_NAME: &str = "ticker";
/// The configuration key holding the tick interval in milliseconds (type `duration_ms`).
pub const CONFIG_KEY: &str = "ticker";
/// The interval range the release manifests declare for [`CONFIG_KEY`] (inclusive, ms).
pub const INTERVAL_RANGE_MS: RangeInclusive<u64> = 10..=600_000;

/// Arguments to `init` (the child spec's `args`, `{}` in every release).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Args {}

/// Requests handled by `handle_call`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// Which version is running and how far it has counted.
    Status,
}

/// Replies to [`Call`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The answer to [`Call::Status`].
    Status(Status),
}

/// What [`Call::Status`] reports. Fields added later get `#[serde(default)]`, so a driver built
/// against this crate can read the answer of any version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The module version that answered ("0.1.0", "0.2.0", "0.3.0").
    pub version: String,
    /// Ticks since the process started. Carried across every upgrade and downgrade.
    pub count: u64,
    /// The interval, in ms, this version arms the next tick with (the configured `ticker`
    /// value in 0.1.0 and 0.2.0, the hard-coded 500 in 0.3.0). The tick pending at the moment
    /// of an upgrade still fires after the interval the previous version armed it with.
    pub interval_ms: u64,
    /// Ticks handled since this version's code took over the state (at start or at its
    /// `code_change`): the "uptime" of this version, in ticks.
    pub ticks_in_version: u64,
    /// Wall-clock time of the last tick, ms since the Unix epoch, for versions that record it
    /// (0.2.0 and later; `None` from 0.1.0, and before the first tick).
    pub last_tick_unix_ms: Option<u64>,
}

/// Messages handled by `handle_cast`: the ticker takes none (an empty enum never decodes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cast {}

/// Plain messages handled by `handle_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Info {
    /// The tick timer fired. Each tick re-arms a one-shot timer, so a new version (or a new
    /// configured interval) takes effect from the next tick on.
    Tick,
}

/// Checks a configured `ticker` value: an integer number of ms within [`INTERVAL_RANGE_MS`].
///
/// The runtime validates config values against the manifest's declaration before a module
/// sees them; this is the module's own guard, so a bad value is reported instead of used.
pub fn interval_from_config(value: &ConfigValue) -> Result<u64, String> {
    match value {
        ConfigValue::Int(ms) => match u64::try_from(*ms) {
            Ok(ms) if INTERVAL_RANGE_MS.contains(&ms) => Ok(ms),
            _ => Err(format!(
                "`{CONFIG_KEY}` = {ms} is outside {}..={} ms",
                INTERVAL_RANGE_MS.start(),
                INTERVAL_RANGE_MS.end()
            )),
        },
        other => Err(format!(
            "`{CONFIG_KEY}` = {other:?} is not an integer number of ms"
        )),
    }
}

/// Wall-clock time now, ms since the Unix epoch (0 if the clock is before the epoch).
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use relup_module::codec;
    use std::collections::BTreeMap;

    #[test]
    fn args_decode_from_the_empty_table_of_the_child_spec() {
        let empty: BTreeMap<String, u8> = BTreeMap::new();
        let bytes = codec::encode(&empty).unwrap();
        assert_eq!(codec::decode::<Args>(&bytes).unwrap(), Args {});
    }

    #[test]
    fn status_of_an_older_shape_decodes_with_defaults() {
        #[derive(Serialize)]
        struct Older {
            version: &'static str,
            count: u64,
        }
        let bytes = codec::encode(&Older {
            version: "0.1.0",
            count: 3,
        })
        .unwrap();
        let status: Status = codec::decode(&bytes).unwrap();
        assert_eq!(status.count, 3);
        assert_eq!(status.last_tick_unix_ms, None);
    }

    #[test]
    fn tick_round_trips_and_casts_never_decode() {
        let bytes = codec::encode(&Info::Tick).unwrap();
        assert_eq!(codec::decode::<Info>(&bytes).unwrap(), Info::Tick);
        assert!(codec::decode::<Cast>(&bytes).is_err());
    }

    #[test]
    fn interval_is_checked_against_the_declared_range() {
        assert_eq!(interval_from_config(&ConfigValue::Int(1000)), Ok(1000));
        assert_eq!(interval_from_config(&ConfigValue::Int(10)), Ok(10));
        assert!(interval_from_config(&ConfigValue::Int(9)).is_err());
        assert!(interval_from_config(&ConfigValue::Int(-5)).is_err());
        assert!(interval_from_config(&ConfigValue::Int(600_001)).is_err());
        assert!(interval_from_config(&ConfigValue::Str("1s".into())).is_err());
    }
}
