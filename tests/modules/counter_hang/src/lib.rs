//! Module `counter` 2.0.0 whose `code_change` never returns (it parks its thread for good):
//! an upgrade to it must give up at its code_change timeout, roll back, and leave every
//! process on its old code. Its processes (started on it directly) speak the counter
//! protocol's `Get` and `Describe`.

use relup_fixture_counter_api::{Args, Call, Cast, Info as Note, Reply};
use relup_module::{Context, OldState, Server};
use serde::{Deserialize, Serialize};

/// The state: a count.
#[derive(Serialize, Deserialize)]
pub struct Stuck {
    count: i64,
}

impl Server for Stuck {
    type Args = Args;
    type Call = Call;
    type Reply = Reply;
    type Cast = Cast;
    type Info = Note;

    fn init(args: Args, _ctx: &mut Context<'_>) -> Result<Self, String> {
        Ok(Stuck { count: args.start })
    }

    fn handle_call(&mut self, request: Call, _ctx: &mut Context<'_>) -> Reply {
        match request {
            Call::Describe => Reply::Description {
                version: env!("CARGO_PKG_VERSION").to_string(),
                count: self.count,
                ticks: 0,
                downs: 0,
                exits: 0,
                notes: Vec::new(),
                bonus: 0,
            },
            _ => Reply::Count(self.count),
        }
    }

    fn code_change(_old: OldState<'_>) -> Result<Self, String> {
        loop {
            std::thread::park();
        }
    }
}

relup_module::export_module!(Stuck, "counter");
