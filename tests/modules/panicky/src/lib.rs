//! Module `counter` 2.0.0 that panics in every callback: handle_call, handle_cast,
//! handle_info, terminate, code_change, export_state (its state does not serialize),
//! config_change, health, apply and drop. `init` panics when its args say `panic_in_init`
//! and otherwise succeeds, so that a process exists to call the other entry points on. It
//! speaks the counter protocol, so it can stand in for counter 2.0.0 in a release.

use relup_fixture_counter_api::{Args, Call, Cast, Info as Note, Reply};
use relup_module::{ConfigChange, Context, ExitReason, Info, OldState, Server};
use serde::{Deserialize, Serialize, Serializer};

/// A state that cannot be exported: serializing it panics.
#[derive(Deserialize)]
pub struct Panicky {
    count: i64,
}

impl Serialize for Panicky {
    fn serialize<S: Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
        panic!("export_state panics (count {})", self.count)
    }
}

impl Drop for Panicky {
    fn drop(&mut self) {
        // Not while unwinding: a second panic would abort, and that is not what is tested.
        if !std::thread::panicking() {
            panic!("drop panics");
        }
    }
}

impl Server for Panicky {
    type Args = Args;
    type Call = Call;
    type Reply = Reply;
    type Cast = Cast;
    type Info = Note;

    fn init(args: Args, ctx: &mut Context<'_>) -> Result<Self, String> {
        if args.panic_in_init {
            panic!("init panics");
        }
        if let Some(name) = &args.register_as
            && !ctx.register(name)
        {
            return Err(format!("name {name} is taken"));
        }
        Ok(Panicky { count: args.start })
    }

    fn handle_call(&mut self, _request: Call, _ctx: &mut Context<'_>) -> Reply {
        panic!("handle_call panics")
    }

    fn handle_cast(&mut self, _message: Cast, _ctx: &mut Context<'_>) {
        panic!("handle_cast panics")
    }

    fn handle_info(&mut self, _info: Info<Note>, _ctx: &mut Context<'_>) {
        panic!("handle_info panics")
    }

    fn terminate(&mut self, _reason: &ExitReason, _ctx: &mut Context<'_>) {
        panic!("terminate panics")
    }

    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        panic!("code_change panics (from {})", old.from_vsn)
    }

    fn config_change(
        &mut self,
        _change: &ConfigChange,
        _ctx: &mut Context<'_>,
    ) -> Result<(), String> {
        panic!("config_change panics")
    }

    fn health(&self) -> Result<(), String> {
        panic!("health panics")
    }

    fn apply(function: &str, _args: &[u8], _ctx: &mut Context<'_>) -> Result<Vec<u8>, String> {
        panic!("apply {function} panics")
    }
}

relup_module::export_module!(Panicky, "counter");
