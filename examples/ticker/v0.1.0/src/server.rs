//! ticker_server 0.1.0: ticks every `ticker` ms (application config, default 1000) and counts.
//!
//! State: { count, interval_ms, count_at_load }.
//!
//! Downgrades. In OTP the `{down, Vsn}` clause of code_change lives in the *newer* module. In
//! relup the module being switched *to* runs code_change, so a downgrade from 0.2.0 runs this
//! file's code_change with the state 0.2.0 exported. That is why 0.1.0 carries `StateV020`, a
//! mirror of the part of 0.2.0's state it needs (only `ticks` and `interval`; the codec uses
//! named fields, so fields the mirror leaves out are ignored). The mirror is checked against the
//! real 0.2.0 code by `examples/ticker/api/tests/migrations.rs`.
//!
//! This file is also compiled into that test (`#[path]`), so it names its version in `VERSION`
//! instead of reading `CARGO_PKG_VERSION`.

use relup_example_ticker_api::{self as api, Args, Call, Cast, Reply, Status};
use relup_module::{Context, Direction, ExitReason, Info, LogLevel, OldState, Server};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The module (and release) version of this file.
pub const VERSION: &str = "0.1.0";
/// The interval when `ticker` is not configured (the release declares the same default).
pub const DEFAULT_INTERVAL_MS: u64 = 1000;

/// The process state of ticker_server 0.1.0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickerServer {
    /// Ticks since the process started (carried across upgrades and downgrades).
    count: u64,
    /// The interval the pending tick was armed with, ms.
    interval_ms: u64,
    /// `count` when this version's code took over the state (0 at start).
    count_at_load: u64,
}

/// The part of ticker_server 0.2.0's state a downgrade needs (see the comment at the top).
#[derive(Deserialize)]
struct StateV020 {
    /// 0.2.0's name for `count`.
    ticks: u64,
    /// The interval 0.2.0 armed the pending tick with.
    interval: Duration,
}

impl TickerServer {
    /// The interval to arm the next tick with: the configured `ticker`, else the default.
    fn configured_interval(ctx: &Context<'_>) -> u64 {
        match ctx.env(api::CONFIG_KEY) {
            None => DEFAULT_INTERVAL_MS,
            Some(value) => api::interval_from_config(&value).unwrap_or_else(|why| {
                ctx.log(
                    LogLevel::Warn,
                    &format!("{why}; using {DEFAULT_INTERVAL_MS} ms"),
                );
                DEFAULT_INTERVAL_MS
            }),
        }
    }

    /// Arms the one-shot tick timer with `interval_ms`.
    fn arm(&self, ctx: &Context<'_>) -> Result<(), String> {
        ctx.send_after(Duration::from_millis(self.interval_ms), &api::Info::Tick)
            .map(|_| ())
            .map_err(|e| format!("cannot arm the tick timer: {e}"))
    }

    /// Counts a tick, logs it and arms the next one.
    fn tick(&mut self, ctx: &mut Context<'_>) {
        self.count += 1;
        // Re-read the interval on every tick: a config change, or a version that reads it
        // differently, takes effect from the next tick.
        self.interval_ms = Self::configured_interval(ctx);
        ctx.log(
            LogLevel::Info,
            &format!(
                "tick {} (interval {} ms, version {VERSION})",
                self.count, self.interval_ms
            ),
        );
        if let Err(why) = self.arm(ctx) {
            // A ticker that cannot tick is broken: crash so its supervisor restarts it.
            ctx.stop(ExitReason::Error(why));
        }
    }

    /// The state from 0.2.0's, on a downgrade: the count carries over, the interval is the one
    /// 0.2.0 armed the pending tick with (the next tick reads the configuration again).
    fn from_v020(old: StateV020) -> TickerServer {
        TickerServer {
            count: old.ticks,
            interval_ms: u64::try_from(old.interval.as_millis()).unwrap_or(u64::MAX),
            count_at_load: old.ticks,
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
        let state = TickerServer {
            count: 0,
            interval_ms: Self::configured_interval(ctx),
            count_at_load: 0,
        };
        ctx.log(
            LogLevel::Info,
            &format!(
                "ticker_server {VERSION} started, ticking every {} ms",
                state.interval_ms
            ),
        );
        state.arm(ctx)?;
        Ok(state)
    }

    fn handle_call(&mut self, request: Call, ctx: &mut Context<'_>) -> Reply {
        match request {
            Call::Status => Reply::Status(Status {
                version: VERSION.to_string(),
                count: self.count,
                interval_ms: Self::configured_interval(ctx),
                ticks_in_version: self.count.saturating_sub(self.count_at_load),
                last_tick_unix_ms: None,
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

    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        let decode_error = |e: relup_module::codec::CodecError| {
            format!(
                "ticker_server {VERSION}: bad state from {}: {e}",
                old.from_vsn
            )
        };
        match (old.direction, old.from_vsn) {
            // Downgrade from 0.2.0: reshape its state into ours.
            (Direction::Down, "0.2.0") => old.decode::<StateV020>().map(Self::from_v020),
            // The same version (a reload of the same code): nothing to reshape.
            (_, VERSION) => old.decode::<TickerServer>(),
            (direction, other) => {
                return Err(format!(
                    "ticker_server {VERSION} cannot take the state of {other} ({direction:?}); \
                     it migrates down from 0.2.0 only"
                ));
            }
        }
        .map_err(decode_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relup_module::codec;

    fn change(direction: Direction, from_vsn: &str, bytes: &[u8]) -> Result<TickerServer, String> {
        let extra = codec::encode(&()).unwrap();
        <TickerServer as Server>::code_change(OldState {
            from_vsn,
            direction,
            bytes,
            extra: &extra,
        })
    }

    /// 0.2.0's state shape, field for field, as 0.2.0 exports it.
    #[derive(Serialize)]
    struct FullV020 {
        ticks: u64,
        interval: Duration,
        started_at_tick: u64,
        last_tick_unix_ms: Option<u64>,
    }

    #[test]
    fn downgrade_from_020_keeps_the_count() {
        let bytes = codec::encode(&FullV020 {
            ticks: 42,
            interval: Duration::from_millis(5000),
            started_at_tick: 40,
            last_tick_unix_ms: Some(1_700_000_000_000),
        })
        .unwrap();
        let state = change(Direction::Down, "0.2.0", &bytes).unwrap();
        assert_eq!(
            state,
            TickerServer {
                count: 42,
                interval_ms: 5000,
                count_at_load: 42
            }
        );
    }

    #[test]
    fn same_version_state_passes_through() {
        let before = TickerServer {
            count: 7,
            interval_ms: 1000,
            count_at_load: 2,
        };
        let bytes = codec::encode(&before).unwrap();
        assert_eq!(change(Direction::Up, VERSION, &bytes).unwrap(), before);
    }

    #[test]
    fn bad_bytes_and_unknown_versions_are_errors_not_panics() {
        let err = change(Direction::Down, "0.2.0", b"\xc1 not msgpack").unwrap_err();
        assert!(err.contains("bad state from 0.2.0"), "{err}");
        // Our own shape is not 0.2.0's: `ticks` is missing.
        let ours = codec::encode(&TickerServer {
            count: 1,
            interval_ms: 1000,
            count_at_load: 0,
        })
        .unwrap();
        assert!(change(Direction::Down, "0.2.0", &ours).is_err());
        let err = change(Direction::Down, "0.3.0", &ours).unwrap_err();
        assert!(err.contains("down from 0.2.0 only"), "{err}");
        assert!(change(Direction::Up, "0.0.9", &ours).is_err());
    }
}
