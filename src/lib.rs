//! relup: Erlang/OTP-style hot code upgrades for long-lived Rust services.
//!
//! This facade re-exports the three library crates so that a service can depend on `relup` alone,
//! and holds the command line ([`cli`]): the `relup` binary is [`cli::main`], and a service's
//! own binary that links native server types is [`cli::main_with`] (see
//! `docs/your-service.md`).

pub mod cli;
pub mod node_log;

pub use relup_appup as appup;
pub use relup_module as module;
pub use relup_runtime as runtime;
