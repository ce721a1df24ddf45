//! relup: Erlang/OTP-style hot code upgrades for long-lived Rust services.
//!
//! This facade re-exports the three library crates so that a service can depend on `relup` alone.

pub use relup_appup as appup;
pub use relup_module as module;
pub use relup_runtime as runtime;
