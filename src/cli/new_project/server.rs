//! Module `@NAME@_server`: the state and callbacks of the @NAME@ service's process.
//!
//! Its state crosses versions as MessagePack with named fields: a field added with
//! `#[serde(default)]` migrates on upgrade with no hand-written `code_change` (README.md,
//! "Upgrade to 0.2.0"). The module version is the crate version (the workspace's).

use relup_module::{ConfigValue, Context, LogLevel, Server};
use serde::{Deserialize, Serialize};

/// The process state.
#[derive(Serialize, Deserialize)]
pub struct @TYPE@ {
    /// Orders taken since the process started; kept across upgrades and downgrades.
    orders: u64,
}

/// Requests the process answers (`Context::call` or `Node::call` with these values).
#[derive(Serialize, Deserialize)]
pub enum Request {
    /// Take one order; answers `Reply::Orders` with the new total, or `Reply::Refused`.
    Order,
    /// How many orders so far; answers `Reply::Orders`.
    Count,
}

/// Answers of the process.
#[derive(Serialize, Deserialize)]
pub enum Reply {
    /// The number of orders taken.
    Orders(u64),
    /// Why the order was refused.
    Refused(String),
}

impl Server for @TYPE@ {
    type Args = ();
    type Call = Request;
    type Reply = Reply;
    type Cast = ();
    type Info = ();

    fn init(_args: (), ctx: &mut Context<'_>) -> Result<Self, String> {
        ctx.log(LogLevel::Info, "@NAME@_server started");
        Ok(@TYPE@ { orders: 0 })
    }

    fn handle_call(&mut self, request: Request, ctx: &mut Context<'_>) -> Reply {
        match request {
            Request::Order => {
                // `max_orders` is declared in release.toml; config/config.toml sets it.
                let max = match ctx.env("max_orders") {
                    Some(ConfigValue::Int(max)) => u64::try_from(max).unwrap_or(0),
                    _ => 1000,
                };
                if self.orders >= max {
                    return Reply::Refused(format!("max_orders ({max}) reached"));
                }
                self.orders += 1;
                Reply::Orders(self.orders)
            }
            Request::Count => Reply::Orders(self.orders),
        }
    }
}

relup_module::export_module!(@TYPE@, "@NAME@_server");
