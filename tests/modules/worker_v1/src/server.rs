// The `worker` bench server, shared by versions 1.0.0 and 2.0.0 (included with `#[path]`).
// Shaped like the OTP anchor's ticker_server: state {interval, timer, last tick}; version
// 2.0.0 (feature `v2`) adds a tick count, set to 0 by the upgrade and dropped by the
// downgrade (the field is simply absent from 1.0.0's state).

use crate::api::{Args, Call, Info as Tick, Reply};
use relup_module::{Context, Info, OldState, Server};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
pub struct Worker {
    id: u64,
    interval_ms: u64,
    timer: Option<u64>,
    last_tick: u64,
    #[cfg(feature = "v2")]
    #[serde(default)]
    ticks: u64,
}

impl Server for Worker {
    type Args = Args;
    type Call = Call;
    type Reply = Reply;
    type Cast = ();
    type Info = Tick;

    fn init(args: Args, ctx: &mut Context<'_>) -> Result<Self, String> {
        let timer = if args.interval_ms > 0 {
            let every = Duration::from_millis(args.interval_ms);
            Some(
                ctx.send_interval(every, &Tick::Tick)
                    .map_err(|e| e.to_string())?
                    .0,
            )
        } else {
            None
        };
        Ok(Worker {
            id: args.id,
            interval_ms: args.interval_ms,
            timer,
            last_tick: 0,
            #[cfg(feature = "v2")]
            ticks: 0,
        })
    }

    fn handle_call(&mut self, request: Call, _ctx: &mut Context<'_>) -> Reply {
        match request {
            Call::Ping => Reply::Pong,
            Call::Describe => Reply::Description {
                version: env!("CARGO_PKG_VERSION").to_string(),
                id: self.id,
                #[cfg(feature = "v2")]
                ticks: Some(self.ticks),
                #[cfg(not(feature = "v2"))]
                ticks: None,
            },
        }
    }

    fn handle_info(&mut self, info: Info<Tick>, _ctx: &mut Context<'_>) {
        if let Info::Message(Tick::Tick) = info {
            self.last_tick += 1;
            #[cfg(feature = "v2")]
            {
                self.ticks += 1;
            }
        }
    }

    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        // Up: the 1.0.0 state has no `ticks`, which starts at 0 (serde default). Down: the
        // 2.0.0 state's `ticks` is not a field of 1.0.0 and is dropped.
        old.decode().map_err(|e| e.to_string())
    }
}
