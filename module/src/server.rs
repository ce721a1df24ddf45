//! The gen_server-like behaviour a module author implements.

use crate::codec::{self, CodecError};
use crate::context::Context;
use crate::types::{ConfigChange, ExitReason, Info};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Direction of a code change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Upgrade: the state comes from an older version.
    Up,
    /// Downgrade (`{down, Vsn}` in OTP): the state comes from a newer version.
    Down,
}

/// The state of another version of this module, handed to [`Server::code_change`].
#[derive(Clone, Copy, Debug)]
pub struct OldState<'a> {
    /// The version the state comes from.
    pub from_vsn: &'a str,
    /// Whether this is an upgrade or a downgrade.
    pub direction: Direction,
    /// The state as that version exported it.
    pub bytes: &'a [u8],
    /// The encoded `extra` value from the appup instruction (an encoded unit when absent).
    pub extra: &'a [u8],
}

impl OldState<'_> {
    /// Decodes the old state as `T` (often an old shape of `Self`, or `Self` itself).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        codec::decode(self.bytes)
    }

    /// Decodes the appup instruction's `extra` value.
    pub fn extra<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        codec::decode(self.extra)
    }
}

/// A server process's code: OTP's gen_server callbacks, with typed messages.
///
/// The type itself is the process state; it is serialized to migrate across versions.
/// Calls reply with a value; to stop, a callback calls [`Context::stop`].
pub trait Server: Sized + Send + Serialize + DeserializeOwned + 'static {
    /// Arguments to `init` (from the child spec).
    type Args: DeserializeOwned;
    /// Requests handled by `handle_call`.
    type Call: DeserializeOwned;
    /// Replies to calls.
    type Reply: Serialize;
    /// Messages handled by `handle_cast`.
    type Cast: DeserializeOwned;
    /// Plain messages handled by `handle_info` (timer messages included).
    type Info: DeserializeOwned;

    /// Creates the state of a new process.
    fn init(args: Self::Args, ctx: &mut Context<'_>) -> Result<Self, String>;

    /// Answers a synchronous request.
    fn handle_call(&mut self, request: Self::Call, ctx: &mut Context<'_>) -> Self::Reply;

    /// Handles an asynchronous message.
    fn handle_cast(&mut self, _message: Self::Cast, _ctx: &mut Context<'_>) {}

    /// Handles timer messages, plain messages, monitor `Down`s and trapped exit signals.
    fn handle_info(&mut self, _info: Info<Self::Info>, _ctx: &mut Context<'_>) {}

    /// Called once before the process exits (not when it is killed).
    fn terminate(&mut self, _reason: &ExitReason, _ctx: &mut Context<'_>) {}

    /// Builds this version's state from another version's. The default decodes the old bytes
    /// as `Self`, which covers fields added with `#[serde(default)]` and fields removed.
    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        old.decode::<Self>().map_err(|e| e.to_string())
    }

    /// Reacts to a change of the application's configuration.
    fn config_change(
        &mut self,
        _change: &ConfigChange,
        _ctx: &mut Context<'_>,
    ) -> Result<(), String> {
        Ok(())
    }

    /// Reports whether the process is healthy (used during an upgrade's probation).
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// An exported function callable by an appup `apply` instruction, with encoded args;
    /// returns the encoded result.
    fn apply(function: &str, _args: &[u8], _ctx: &mut Context<'_>) -> Result<Vec<u8>, String> {
        Err(format!("no exported function {function}"))
    }
}
