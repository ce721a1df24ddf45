//! ticker_server 0.3.0: ticks every 500 ms, hard-coded; the `ticker` configuration is ignored
//! (the Erlang tutorial's 0.3.0 removes the env entry and hard-codes 500).
//!
//! State: { ticks, started_at_tick, last_tick_unix_ms }: 0.2.0's state without `interval`.
//! Removing a field needs no reshaping: the codec uses named fields, so decoding 0.2.0's bytes
//! as this struct simply ignores `interval`. code_change still checks where the state comes from
//! (0.3.0's appup only covers 0.2.0, so from 0.1.0 relup plans 0.1.0 -> 0.2.0 -> 0.3.0 and this
//! code never sees 0.1.0's shape) and restarts `started_at_tick`.
//! The downgrade to 0.2.0 is 0.2.0's code_change (the module switched *to* runs it).

use relup_example_ticker_api::{self as api, Args, Call, Cast, Reply, Status};
use relup_module::{Context, Direction, ExitReason, Info, LogLevel, OldState, Server};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The module (and release) version of this file.
pub const VERSION: &str = "0.3.0";
/// The interval of every tick, whatever the configuration says.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// The process state of ticker_server 0.3.0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickerServer {
    /// Ticks since the process started.
    ticks: u64,
    /// `ticks` when this version's code took over the state.
    started_at_tick: u64,
    /// Wall-clock time of the last tick, ms since the Unix epoch.
    last_tick_unix_ms: Option<u64>,
}

impl TickerServer {
    /// Arms the one-shot tick timer.
    fn arm(ctx: &Context<'_>) -> Result<(), String> {
        ctx.send_after(INTERVAL, &api::Info::Tick)
            .map(|_| ())
            .map_err(|e| format!("cannot arm the tick timer: {e}"))
    }

    /// Counts a tick, logs it and arms the next one.
    fn tick(&mut self, ctx: &mut Context<'_>) {
        self.ticks += 1;
        self.last_tick_unix_ms = Some(api::unix_ms_now());
        ctx.log(
            LogLevel::Info,
            &format!(
                "tick {} (interval {} ms, version {VERSION})",
                self.ticks,
                INTERVAL.as_millis()
            ),
        );
        if let Err(why) = Self::arm(ctx) {
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
        ctx.log(
            LogLevel::Info,
            &format!(
                "ticker_server {VERSION} started, ticking every {} ms",
                INTERVAL.as_millis()
            ),
        );
        Self::arm(ctx)?;
        Ok(TickerServer {
            ticks: 0,
            started_at_tick: 0,
            last_tick_unix_ms: None,
        })
    }

    fn handle_call(&mut self, request: Call, _ctx: &mut Context<'_>) -> Reply {
        match request {
            Call::Status => Reply::Status(Status {
                version: VERSION.to_string(),
                count: self.ticks,
                interval_ms: u64::try_from(INTERVAL.as_millis()).unwrap_or(u64::MAX),
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

    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        let decode_error = |e: relup_module::codec::CodecError| {
            format!(
                "ticker_server {VERSION}: bad state from {}: {e}",
                old.from_vsn
            )
        };
        match (old.direction, old.from_vsn) {
            // 0.2.0's state minus `interval`, which decoding drops.
            (Direction::Up, "0.2.0") => old
                .decode::<TickerServer>()
                .map(|state| TickerServer {
                    started_at_tick: state.ticks,
                    ..state
                })
                .map_err(decode_error),
            // The same version (a reload of the same code): nothing to reshape.
            (_, VERSION) => old.decode::<TickerServer>().map_err(decode_error),
            (direction, other) => Err(format!(
                "ticker_server {VERSION} cannot take the state of {other} ({direction:?}); \
                 it migrates up from 0.2.0 only (from 0.1.0, upgrade through 0.2.0)"
            )),
        }
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

    /// 0.1.0's state shape, field for field, as 0.1.0 exports it.
    #[derive(Serialize)]
    struct FullV010 {
        count: u64,
        interval_ms: u64,
        count_at_load: u64,
    }

    #[test]
    fn upgrade_from_020_drops_the_interval_and_keeps_the_count() {
        let bytes = codec::encode(&FullV020 {
            ticks: 30,
            interval: Duration::from_secs(5),
            started_at_tick: 20,
            last_tick_unix_ms: Some(1_700_000_000_000),
        })
        .unwrap();
        let state = change(Direction::Up, "0.2.0", &bytes).unwrap();
        assert_eq!(
            state,
            TickerServer {
                ticks: 30,
                started_at_tick: 30,
                last_tick_unix_ms: Some(1_700_000_000_000),
            }
        );
    }

    #[test]
    fn state_from_010_is_refused_with_a_hint() {
        let bytes = codec::encode(&FullV010 {
            count: 5,
            interval_ms: 1000,
            count_at_load: 0,
        })
        .unwrap();
        let err = change(Direction::Up, "0.1.0", &bytes).unwrap_err();
        assert!(err.contains("upgrade through 0.2.0"), "{err}");
        // Even if it claimed to be 0.2.0's, 0.1.0's shape has no `ticks`.
        assert!(change(Direction::Up, "0.2.0", &bytes).is_err());
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let err = change(Direction::Up, "0.2.0", &[]).unwrap_err();
        assert!(err.contains("bad state from 0.2.0"), "{err}");
        assert!(change(Direction::Down, "0.4.0", &[0xff]).is_err());
    }
}
