//! The control socket: `<root>/run/control.sock`, line-delimited JSON requests and
//! responses with streamed progress events, mode 0600 and a peer uid check.
//!
//! A request is one JSON object on one line (at most [`MAX_REQUEST`] bytes). The node answers
//! with zero or more `progress` / `note` events and exactly one final `done` or `error` event,
//! one JSON object per line.

mod client;
pub mod console;
mod protocol;
mod server;
mod status;
mod transcode;

pub use client::{Client, ClientError};
pub use protocol::{Event, MAX_REQUEST, Request};
pub(crate) use server::read_request;
pub use server::{ControlServer, ServeError};
pub use status::{StatusReport, TreeEntry, status_report};
