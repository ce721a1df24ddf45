//! ticker_server 0.2.0: as 0.1.0, but the default interval is 5000 ms and the state is reshaped.
//!
//! State: { ticks, interval, started_at_tick, last_tick_unix_ms } where 0.1.0 had
//! { count, interval_ms, count_at_load }: fields renamed (count -> ticks,
//! count_at_load -> started_at_tick), a type changed (interval_ms: u64 -> interval: Duration)
//! and a field added (last_tick_unix_ms). serde cannot map that by itself, so code_change is
//! written by hand:
//! - up from 0.1.0: `StateV010` mirrors 0.1.0's state and is converted field by field;
//! - down from 0.3.0 (a downgrade *to* this version runs *this* code_change, see 0.1.0's
//!   server.rs): `StateV030` mirrors the part of 0.3.0's state this version needs.
//!
//! The down from 0.2.0 to 0.1.0 is 0.1.0's code_change. The mirrors are checked against the
//! real code of the other versions by `examples/ticker/api/tests/migrations.rs`.

use relup_example_ticker_api::{self as api, Args, Call, Cast, Reply, Status};
use relup_module::{Context, Direction, ExitReason, Info, LogLevel, OldState, Server};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The module (and release) version of this file.
pub const VERSION: &str = "0.2.0";
/// The interval when `ticker` is not configured (the release declares the same default).
pub const DEFAULT_INTERVAL_MS: u64 = 5000;

/// The process state of ticker_server 0.2.0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickerServer {
    /// Ticks since the process started (0.1.0's `count`).
    ticks: u64,
    /// The interval the pending tick was armed with (0.1.0's `interval_ms`).
    interval: Duration,
    /// `ticks` when this version's code took over the state (0.1.0's `count_at_load`).
    started_at_tick: u64,
    /// Wall-clock time of the last tick, ms since the Unix epoch (new in 0.2.0).
    last_tick_unix_ms: Option<u64>,
}

/// ticker_server 0.1.0's state, for the upgrade from 0.1.0.
#[derive(Deserialize)]
struct StateV010 {
    /// Ticks since the process started.
    count: u64,
    /// The interval 0.1.0 armed the pending tick with, ms.
    interval_ms: u64,
}

/// The part of ticker_server 0.3.0's state a downgrade from 0.3.0 needs.
#[derive(Deserialize)]
struct StateV030 {
    /// Ticks since the process started.
    ticks: u64,
    /// Wall-clock time of the last tick, ms since the Unix epoch.
    last_tick_unix_ms: Option<u64>,
}

/// The tick this version takes over at: the count it migrated.
#[cfg(not(feature = "broken"))]
fn started_at_tick(count: u64) -> u64 {
    count
}

/// The bug of the tutorial's broken 0.2.0 (`examples/ticker/v0.2.0-broken`, built from this
/// file with the `broken` feature): a field mix-up stores the wall clock where the starting
/// tick belongs. The ticks themselves are right; the health check catches the broken
/// invariant during probation and relup rolls the release back.
#[cfg(feature = "broken")]
fn started_at_tick(_count: u64) -> u64 {
    api::unix_ms_now()
}

/// 0.3.0 arms every tick with this interval, so the tick pending at a downgrade from 0.3.0 was
/// armed with it.
const V030_INTERVAL: Duration = Duration::from_millis(500);

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

    /// Arms the one-shot tick timer with `interval`.
    fn arm(&self, ctx: &Context<'_>) -> Result<(), String> {
        ctx.send_after(self.interval, &api::Info::Tick)
            .map(|_| ())
            .map_err(|e| format!("cannot arm the tick timer: {e}"))
    }

    /// Counts a tick, logs it and arms the next one.
    fn tick(&mut self, ctx: &mut Context<'_>) {
        self.ticks += 1;
        self.last_tick_unix_ms = Some(api::unix_ms_now());
        // Re-read the interval on every tick: a config change, or a version that reads it
        // differently, takes effect from the next tick.
        self.interval = Self::configured_interval(ctx);
        ctx.log(
            LogLevel::Info,
            &format!(
                "tick {} (interval {} ms, version {VERSION})",
                self.ticks,
                self.interval.as_millis()
            ),
        );
        if let Err(why) = self.arm(ctx) {
            // A ticker that cannot tick is broken: crash so its supervisor restarts it.
            ctx.stop(ExitReason::Error(why));
        }
    }

    /// Upgrade from 0.1.0: rename, retype, and start the new field empty.
    fn from_v010(old: StateV010) -> TickerServer {
        TickerServer {
            ticks: old.count,
            interval: Duration::from_millis(old.interval_ms),
            started_at_tick: started_at_tick(old.count),
            last_tick_unix_ms: None,
        }
    }

    /// Downgrade from 0.3.0: the count and the last tick carry over; 0.3.0 keeps no interval,
    /// but it armed the pending tick with its fixed 500 ms.
    fn from_v030(old: StateV030) -> TickerServer {
        TickerServer {
            ticks: old.ticks,
            interval: V030_INTERVAL,
            started_at_tick: old.ticks,
            last_tick_unix_ms: old.last_tick_unix_ms,
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
            ticks: 0,
            interval: Self::configured_interval(ctx),
            started_at_tick: 0,
            last_tick_unix_ms: None,
        };
        ctx.log(
            LogLevel::Info,
            &format!(
                "ticker_server {VERSION} started, ticking every {} ms",
                state.interval.as_millis()
            ),
        );
        state.arm(ctx)?;
        Ok(state)
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

    /// Healthy while the state's invariant holds: this version cannot have started at a
    /// tick the counter has not reached.
    fn health(&self) -> Result<(), String> {
        if self.ticks < self.started_at_tick {
            return Err(format!(
                "ticker_server {VERSION}: started at tick {} but has only counted {}",
                self.started_at_tick, self.ticks
            ));
        }
        Ok(())
    }

    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        let decode_error = |e: relup_module::codec::CodecError| {
            format!(
                "ticker_server {VERSION}: bad state from {}: {e}",
                old.from_vsn
            )
        };
        match (old.direction, old.from_vsn) {
            (Direction::Up, "0.1.0") => old.decode::<StateV010>().map(Self::from_v010),
            (Direction::Down, "0.3.0") => old.decode::<StateV030>().map(Self::from_v030),
            // The same version (a reload of the same code): nothing to reshape.
            (_, VERSION) => old.decode::<TickerServer>(),
            (direction, other) => {
                return Err(format!(
                    "ticker_server {VERSION} cannot take the state of {other} ({direction:?}); \
                     it migrates up from 0.1.0 and down from 0.3.0"
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

    /// 0.1.0's state shape, field for field, as 0.1.0 exports it.
    #[derive(Serialize)]
    struct FullV010 {
        count: u64,
        interval_ms: u64,
        count_at_load: u64,
    }

    /// 0.3.0's state shape, field for field, as 0.3.0 exports it.
    #[derive(Serialize)]
    struct FullV030 {
        ticks: u64,
        started_at_tick: u64,
        last_tick_unix_ms: Option<u64>,
    }

    #[test]
    #[cfg(not(feature = "broken"))]
    fn upgrade_from_010_renames_and_keeps_the_count() {
        let bytes = codec::encode(&FullV010 {
            count: 12,
            interval_ms: 1000,
            count_at_load: 3,
        })
        .unwrap();
        let state = change(Direction::Up, "0.1.0", &bytes).unwrap();
        assert_eq!(state.health(), Ok(()));
        assert_eq!(
            state,
            TickerServer {
                ticks: 12,
                interval: Duration::from_secs(1),
                started_at_tick: 12,
                last_tick_unix_ms: None,
            }
        );
    }

    /// The broken variant keeps the count but breaks the invariant its health check tests.
    #[test]
    #[cfg(feature = "broken")]
    fn the_broken_upgrade_from_010_keeps_the_count_and_fails_its_health_check() {
        let bytes = codec::encode(&FullV010 {
            count: 12,
            interval_ms: 1000,
            count_at_load: 3,
        })
        .unwrap();
        let state = change(Direction::Up, "0.1.0", &bytes).unwrap();
        assert_eq!(state.ticks, 12);
        let why = state.health().unwrap_err();
        assert!(why.contains("has only counted 12"), "{why}");
    }

    #[test]
    fn downgrade_from_030_keeps_the_count_and_last_tick() {
        let bytes = codec::encode(&FullV030 {
            ticks: 99,
            started_at_tick: 50,
            last_tick_unix_ms: Some(1_700_000_000_000),
        })
        .unwrap();
        let state = change(Direction::Down, "0.3.0", &bytes).unwrap();
        assert_eq!(
            state,
            TickerServer {
                ticks: 99,
                interval: Duration::from_millis(500),
                started_at_tick: 99,
                last_tick_unix_ms: Some(1_700_000_000_000),
            }
        );
    }

    #[test]
    fn bad_bytes_and_unknown_versions_are_errors_not_panics() {
        let err = change(Direction::Up, "0.1.0", &[0x92, 0xc1]).unwrap_err();
        assert!(err.contains("bad state from 0.1.0"), "{err}");
        // 0.3.0's shape is not 0.1.0's.
        let v030 = codec::encode(&FullV030 {
            ticks: 1,
            started_at_tick: 0,
            last_tick_unix_ms: None,
        })
        .unwrap();
        assert!(change(Direction::Up, "0.1.0", &v030).is_err());
        let err = change(Direction::Up, "0.3.0", &v030).unwrap_err();
        assert!(err.contains("up from 0.1.0 and down from 0.3.0"), "{err}");
        assert!(change(Direction::Down, "0.1.0", &v030).is_err());
    }
}
