//! A TCP echo server on the node's ports, for the runtime's port tests.
//!
//! - With `listen`, it opens a listener at init. Each accepted connection is kept (or handed
//!   to the process registered as `hand_to`).
//! - Bytes are echoed back. A chunk containing `crash` makes it panic (owner death).
//! - Calls report what it saw, close a port, take a port it does not own (refused), or write
//!   a large blob without reading (output limit).
//! - Outbound: `Connect` opens a connection to an upstream (`tcp_connect`); `Upstream` sends
//!   bytes on it; what the upstream sends back is kept (not echoed) in `Status::from_upstream`.

use relup_module::{Context, Info, PortId, Server};
use serde::{Deserialize, Serialize};

/// Init args.
#[derive(Deserialize)]
pub struct Args {
    /// Address to listen on, if any.
    pub listen: Option<String>,
    /// Register under this name.
    pub register_as: Option<String>,
    /// Hand accepted connections to the process registered under this name.
    pub hand_to: Option<String>,
}

/// Calls.
#[derive(Deserialize)]
pub enum Call {
    /// What it saw.
    Status,
    /// Close a port.
    Close(u64),
    /// Try to make itself the owner of a port (refused unless it owns it).
    Take(u64),
    /// Send `n` bytes of `x` on a connection, 64 KiB at a time; reports the first error.
    Blast(u64, usize),
    /// Open a connection to this upstream address (the one `Upstream` writes to).
    Connect(String),
    /// Send these bytes on the upstream connection.
    Upstream(Vec<u8>),
}

/// The answer to `Status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Status {
    /// Module version.
    pub version: String,
    /// The bound address of its listener.
    pub addr: Option<String>,
    /// Connections accepted by its listener.
    pub accepted: u64,
    /// Bytes received and echoed.
    pub echoed: u64,
    /// Closed ports and why.
    pub closed: Vec<(u64, String)>,
    /// The upstream connection, once `Connect` started it.
    #[serde(default)]
    pub upstream: Option<u64>,
    /// Outbound connections established, with their peer.
    #[serde(default)]
    pub connected: Vec<(u64, String)>,
    /// Bytes the upstream sent, in order.
    #[serde(default)]
    pub from_upstream: Vec<u8>,
}

/// Replies.
#[derive(Serialize)]
pub enum Reply {
    /// The status.
    Status(Status),
    /// The outcome of an operation: Ok or the error text.
    Done(Result<(), String>),
}

/// The state.
#[derive(Serialize, Deserialize)]
pub struct Echo {
    listener: Option<u64>,
    hand_to: Option<String>,
    status: Status,
}

impl Server for Echo {
    type Args = Args;
    type Call = Call;
    type Reply = Reply;
    type Cast = ();
    type Info = ();

    fn init(args: Args, ctx: &mut Context<'_>) -> Result<Self, String> {
        if let Some(name) = &args.register_as
            && !ctx.register(name)
        {
            return Err(format!("name {name} taken"));
        }
        let mut status = Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Status::default()
        };
        let mut listener = None;
        if let Some(addr) = &args.listen {
            let (id, bound) = ctx.tcp_listen(addr).map_err(|e| e.to_string())?;
            listener = Some(id.0);
            status.addr = Some(bound);
        }
        Ok(Echo {
            listener,
            hand_to: args.hand_to,
            status,
        })
    }

    /// The state as it is, unless the install's `extra` is the text "fail" (to test a
    /// rolled-back upgrade).
    fn code_change(old: relup_module::OldState<'_>) -> Result<Self, String> {
        if old.extra::<String>().is_ok_and(|e| e == "fail") {
            return Err("told to fail by the install's extra".into());
        }
        old.decode::<Self>().map_err(|e| e.to_string())
    }

    fn handle_call(&mut self, request: Call, ctx: &mut Context<'_>) -> Reply {
        match request {
            Call::Status => {
                let mut status = self.status.clone();
                status.version = env!("CARGO_PKG_VERSION").to_string();
                Reply::Status(status)
            }
            Call::Close(port) => {
                Reply::Done(ctx.tcp_close(PortId(port)).map_err(|e| e.to_string()))
            }
            Call::Take(port) => Reply::Done(
                ctx.tcp_set_owner(PortId(port), ctx.self_pid())
                    .map_err(|e| e.to_string()),
            ),
            Call::Blast(port, n) => {
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < n {
                    if let Err(e) = ctx.tcp_send(PortId(port), &chunk) {
                        return Reply::Done(Err(e.to_string()));
                    }
                    sent += chunk.len();
                }
                Reply::Done(Ok(()))
            }
            Call::Connect(addr) => match ctx.tcp_connect(&addr) {
                Ok(conn) => {
                    self.status.upstream = Some(conn.0);
                    Reply::Done(Ok(()))
                }
                Err(e) => Reply::Done(Err(e.to_string())),
            },
            Call::Upstream(bytes) => match self.status.upstream {
                Some(conn) => Reply::Done(
                    ctx.tcp_send(PortId(conn), &bytes)
                        .map_err(|e| e.to_string()),
                ),
                None => Reply::Done(Err("no upstream connection".into())),
            },
        }
    }

    fn handle_info(&mut self, info: Info<()>, ctx: &mut Context<'_>) {
        match info {
            Info::TcpAccepted { conn, .. } => {
                self.status.accepted += 1;
                let to = self
                    .hand_to
                    .as_deref()
                    .and_then(|name| ctx.whereis(name))
                    .unwrap_or_else(|| ctx.self_pid());
                if let Err(e) = ctx.tcp_set_owner(conn, to) {
                    panic!("cannot hand {conn} over: {e}");
                }
            }
            Info::TcpConnected { conn, peer } => {
                self.status.connected.push((conn.0, peer));
            }
            Info::TcpData { conn, bytes } if Some(conn.0) == self.status.upstream => {
                self.status.from_upstream.extend_from_slice(&bytes);
            }
            Info::TcpData { conn, bytes } => {
                if bytes.windows(5).any(|w| w == b"crash") {
                    panic!("told to crash");
                }
                self.status.echoed += bytes.len() as u64;
                // A closed connection (the peer went away) is not an error for an echo.
                let _ = ctx.tcp_send(conn, &bytes);
            }
            Info::TcpClosed { port, reason } => {
                self.status.closed.push((port.0, reason.to_text()));
            }
            _ => {}
        }
    }
}
