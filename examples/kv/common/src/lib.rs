//! The kv example's shared parts, compiled into every version of the `kv_server` module:
//! RESP ([`resp`]), per-connection input ([`session`]), the network side ([`front`]) and the
//! commands whose answer does not depend on the data layout ([`admin`]). Each version's crate holds its data layout, its data
//! commands and its `code_change`.

pub mod admin;
pub mod front;
pub mod resp;
pub mod session;

use relup_module::{ConfigValue, Context};

/// The application name in every release.
pub const APPLICATION: &str = "kv";
/// The module every version exports.
pub const MODULE: &str = "kv_server";
/// The name the kv process registers under.
pub const REGISTERED_NAME: &str = "kv";
/// The config key holding the address to listen on.
pub const LISTEN_KEY: &str = "listen";
/// The address when `listen` is not configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6380";

/// The configured listen address (`kv:kv_server:listen`), else [`DEFAULT_LISTEN`].
pub fn listen_addr(ctx: &Context<'_>) -> String {
    match ctx.env(LISTEN_KEY) {
        Some(ConfigValue::Str(addr)) => addr,
        _ => DEFAULT_LISTEN.to_string(),
    }
}

/// A stored value as an integer, if it is the canonical decimal form of one (what INCR takes).
pub fn as_int(value: &[u8]) -> Option<i64> {
    resp::parse_int(value)
}

/// Requests a driver (a test, an embedder) can make of any kv_server version with a call.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Call {
    /// What is running and how much it holds.
    Status,
}

/// What [`Call::Status`] answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Status {
    /// The module version.
    pub version: String,
    /// The address the listener is bound to.
    pub addr: String,
    /// Keys stored.
    pub keys: usize,
    /// Open client connections.
    pub connections: usize,
    /// Commands handled (carried across upgrades).
    pub commands: u64,
}

/// Init args (the child spec's `args`, `{}` in every release).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Args {}
