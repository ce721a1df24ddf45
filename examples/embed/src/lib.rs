//! The native (statically linked) server type of the embedding example, shared by its two
//! binaries: `relup-example-embed` (a `main()` that drives a node by hand) and
//! `relup-embed-node` (the whole `relup` command line with this type registered, a node
//! `relup` operates on a release root; see `docs/your-service.md`).

use relup_module::{Context, ExitReason, Server};
use serde::{Deserialize, Serialize};

/// The module name and version the greeter is registered under; a `release.toml` declares it
/// as `{ name = "greeter", version = "1.0.0", native = true }`.
pub const GREETER: (&str, &str) = ("greeter", "1.0.0");

/// A native server: greets people and counts greetings.
#[derive(Serialize, Deserialize)]
pub struct Greeter {
    greeting: String,
    greeted: u64,
}

/// Requests the greeter answers.
#[derive(Serialize, Deserialize)]
pub enum GreeterCall {
    /// Greet someone; answers `Text`.
    Greet(String),
    /// How many greetings so far; answers `Count`.
    Count,
}

/// Replies of the greeter.
#[derive(Serialize, Deserialize, Debug)]
pub enum GreeterReply {
    /// A greeting.
    Text(String),
    /// A number of greetings.
    Count(u64),
}

impl Server for Greeter {
    type Args = String;
    type Call = GreeterCall;
    type Reply = GreeterReply;
    type Cast = String;
    type Info = ();

    fn init(greeting: String, _ctx: &mut Context<'_>) -> Result<Self, String> {
        Ok(Greeter {
            greeting,
            greeted: 0,
        })
    }

    fn handle_call(&mut self, request: GreeterCall, _ctx: &mut Context<'_>) -> GreeterReply {
        match request {
            GreeterCall::Greet(name) => {
                self.greeted += 1;
                GreeterReply::Text(format!("{}, {name}!", self.greeting))
            }
            GreeterCall::Count => GreeterReply::Count(self.greeted),
        }
    }

    fn handle_cast(&mut self, greeting: String, _ctx: &mut Context<'_>) {
        self.greeting = greeting;
    }

    fn terminate(&mut self, reason: &ExitReason, _ctx: &mut Context<'_>) {
        println!(
            "greeter: terminating ({reason}) after {} greetings",
            self.greeted
        );
    }
}
