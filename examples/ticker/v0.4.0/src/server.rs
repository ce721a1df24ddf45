//! ticker_server 0.4.0: the interval comes from the configuration again (key `ticker`, default
//! 1000 ms), read on every tick, so a change written to `config/config.toml.new` (or set with
//! `relup config set`) takes effect from the next tick, with no restart. The module exports a
//! validator for its key: `apply("validate_config", (key, value))` refuses a value that is not
//! a positive integer number of ms, before anything is applied.
//!
//! State: 0.3.0's { ticks, started_at_tick, last_tick_unix_ms }, unchanged, so the upgrade from
//! 0.3.0 only restarts `started_at_tick`. The downgrade to 0.3.0 restarts the application (see
//! appup.toml): 0.3.0 predates this version and does not take its state.

use relup_example_ticker_api::{self as api, Args, Call, Cast, Reply, Status};
use relup_module::{
    ConfigChange, ConfigValue, Context, Direction, ExitReason, Info, LogLevel, OldState, Server,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The module (and release) version of this file.
pub const VERSION: &str = "0.4.0";
/// The interval when `ticker` is not configured (the release declares the same default).
pub const DEFAULT_INTERVAL_MS: u64 = 1000;

/// The process state of ticker_server 0.4.0 (0.3.0's shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickerServer {
    /// Ticks since the process started.
    ticks: u64,
    /// `ticks` when this version's code took over the state.
    started_at_tick: u64,
    /// Wall-clock time of the last tick, ms since the Unix epoch.
    last_tick_unix_ms: Option<u64>,
}

/// The validator: a positive integer number of ms in the tutorial's range.
pub fn validate(key: &str, value: &ConfigValue) -> Result<(), String> {
    if key != api::CONFIG_KEY {
        return Err(format!("ticker_server has no key {key:?}"));
    }
    match value {
        ConfigValue::Int(ms) if *ms <= 0 => Err(format!(
            "the tick interval must be a positive number of ms, not {ms}"
        )),
        _ => api::interval_from_config(value).map(|_| ()),
    }
}

impl TickerServer {
    /// The interval to arm the next tick with: the configured `ticker`, else the default.
    fn configured_interval(ctx: &Context<'_>) -> Duration {
        let ms = match ctx.env(api::CONFIG_KEY) {
            None => DEFAULT_INTERVAL_MS,
            Some(value) => api::interval_from_config(&value).unwrap_or_else(|why| {
                ctx.log(
                    LogLevel::Warn,
                    &format!("{why}; using {DEFAULT_INTERVAL_MS} ms"),
                );
                DEFAULT_INTERVAL_MS
            }),
        };
        Duration::from_millis(ms)
    }

    /// Arms the one-shot tick timer.
    fn arm(ctx: &Context<'_>, interval: Duration) -> Result<(), String> {
        ctx.send_after(interval, &api::Info::Tick)
            .map(|_| ())
            .map_err(|e| format!("cannot arm the tick timer: {e}"))
    }

    /// Counts a tick, logs it and arms the next one with the configured interval.
    fn tick(&mut self, ctx: &mut Context<'_>) {
        self.ticks += 1;
        self.last_tick_unix_ms = Some(api::unix_ms_now());
        let interval = Self::configured_interval(ctx);
        ctx.log(
            LogLevel::Info,
            &format!(
                "tick {} (interval {} ms, version {VERSION})",
                self.ticks,
                interval.as_millis()
            ),
        );
        if let Err(why) = Self::arm(ctx, interval) {
            // A ticker that cannot tick is broken: crash so its supervisor restarts it.
            ctx.stop(ExitReason::Error(why));
        }
    }
}

impl Server for TickerServer {
    type Args = Args;
    type Call = Call;
    type Reply = Reply;
    type Cast = Cast;
    type Info = api::Info;

    fn init(_args: Args, ctx: &mut Context<'_>) -> Result<Self, String> {
        if !ctx.register(api::REGISTERED_NAME) {
            return Err(format!("the name {} is taken", api::REGISTERED_NAME));
        }
        let interval = Self::configured_interval(ctx);
        ctx.log(
            LogLevel::Info,
            &format!(
                "ticker_server {VERSION} started, ticking every {} ms",
                interval.as_millis()
            ),
        );
        Self::arm(ctx, interval)?;
        Ok(TickerServer {
            ticks: 0,
            started_at_tick: 0,
            last_tick_unix_ms: None,
        })
    }

    fn handle_call(&mut self, request: Call, ctx: &mut Context<'_>) -> Reply {
        match request {
            Call::Status => Reply::Status(Status {
                version: VERSION.to_string(),
                count: self.ticks,
                interval_ms: u64::try_from(Self::configured_interval(ctx).as_millis())
                    .unwrap_or(u64::MAX),
                ticks_in_version: self.ticks.saturating_sub(self.started_at_tick),
                last_tick_unix_ms: self.last_tick_unix_ms,
            }),
        }
    }

    fn handle_cast(&mut self, message: Cast, _ctx: &mut Context<'_>) {
        match message {}
    }

    fn handle_info(&mut self, info: Info<api::Info>, ctx: &mut Context<'_>) {
        // The ticker monitors and links nothing, traps no exits and owns no ports: ticks are
        // the only info it acts on.
        if let Info::Message(api::Info::Tick) = info {
            self.tick(ctx);
        }
    }

    fn config_change(
        &mut self,
        change: &ConfigChange,
        ctx: &mut Context<'_>,
    ) -> Result<(), String> {
        for (key, value) in change.changed.iter().chain(&change.new) {
            if key == api::CONFIG_KEY {
                ctx.log(
                    LogLevel::Info,
                    &format!(
                        "config_change: {key} = {} ms from the next tick",
                        api::interval_from_config(value)
                            .map(|ms| ms.to_string())
                            .unwrap_or_else(|why| why)
                    ),
                );
            }
        }
        if change.removed.iter().any(|k| k == api::CONFIG_KEY) {
            ctx.log(
                LogLevel::Info,
                &format!(
                    "config_change: {} removed, using {DEFAULT_INTERVAL_MS} ms",
                    api::CONFIG_KEY
                ),
            );
        }
        Ok(())
    }

    fn apply(function: &str, args: &[u8], _ctx: &mut Context<'_>) -> Result<Vec<u8>, String> {
        match function {
            "validate_config" => {
                let (key, value): (String, ConfigValue) = relup_module::codec::decode(args)
                    .map_err(|e| format!("validate_config: bad arguments: {e}"))?;
                validate(&key, &value).map(|()| Vec::new())
            }
            other => Err(format!("no exported function {other}")),
        }
    }

    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        let decode_error = |e: relup_module::codec::CodecError| {
            format!(
                "ticker_server {VERSION}: bad state from {}: {e}",
                old.from_vsn
            )
        };
        match (old.direction, old.from_vsn) {
            // 0.3.0's state has the same fields.
            (Direction::Up, "0.3.0") => old
                .decode::<TickerServer>()
                .map(|state| TickerServer {
                    started_at_tick: state.ticks,
                    ..state
                })
                .map_err(decode_error),
            (_, VERSION) => old.decode::<TickerServer>().map_err(decode_error),
            (direction, other) => Err(format!(
                "ticker_server {VERSION} cannot take the state of {other} ({direction:?}); \
                 it migrates up from 0.3.0 only"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validator_refuses_non_positive_and_non_integer_intervals() {
        assert!(validate("ticker", &ConfigValue::Int(1500)).is_ok());
        assert!(
            validate("ticker", &ConfigValue::Int(-5))
                .unwrap_err()
                .contains("positive")
        );
        assert!(validate("ticker", &ConfigValue::Int(0)).is_err());
        assert!(validate("ticker", &ConfigValue::Float(1.5)).is_err());
        assert!(validate("ticker", &ConfigValue::Str("fast".into())).is_err());
        assert!(validate("other", &ConfigValue::Int(5)).is_err());
    }

    #[test]
    fn upgrade_from_030_keeps_the_count() {
        let bytes = relup_module::codec::encode(&TickerServer {
            ticks: 9,
            started_at_tick: 2,
            last_tick_unix_ms: Some(5),
        })
        .unwrap();
        let extra = relup_module::codec::encode(&()).unwrap();
        let state = <TickerServer as Server>::code_change(OldState {
            from_vsn: "0.3.0",
            direction: Direction::Up,
            bytes: &bytes,
            extra: &extra,
        })
        .unwrap();
        assert_eq!(state.started_at_tick, 9);
        assert_eq!(state.ticks, 9);
    }
}
