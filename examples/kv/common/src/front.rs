//! The network side of kv_server, the same in every version: the listener, one [`Session`]
//! per client connection, and the dispatch of each request to the version's data commands
//! ([`Store`]) or to the shared ones ([`crate::admin`]).
//!
//! The sockets belong to the node (relup's ports); this state only holds their ids, the
//! partial input of each connection and a command counter, and it is carried across every
//! upgrade and downgrade as part of the process state.

use crate::admin::{self, ServerFacts};
use crate::session::{After, Session};
use crate::{Status, listen_addr};
use relup_module::{Context, Info, LogLevel, PortId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The data side of a kv_server version.
pub trait Store {
    /// Answers a data command (`name`: upper-cased `args[0]`); None if it is not one.
    fn exec(&mut self, name: &[u8], args: &[&[u8]], out: &mut Vec<u8>) -> Option<After>;
    /// Keys stored.
    fn keys(&self) -> usize;
    /// [`Store::exec`] for a store that needs the process's context (one whose data is in a
    /// node table); the default calls `exec`.
    fn exec_cx(
        &mut self,
        name: &[u8],
        args: &[&[u8]],
        out: &mut Vec<u8>,
        _ctx: &Context<'_>,
    ) -> Option<After> {
        self.exec(name, args, out)
    }
    /// [`Store::keys`] for a store that needs the process's context; the default calls `keys`.
    fn keys_cx(&self, _ctx: &Context<'_>) -> usize {
        self.keys()
    }
}

/// The listener, the connections and their input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Front {
    /// The listener (owned by the node; this process gets its connections).
    pub listener: Option<PortId>,
    /// The address it is bound to.
    pub addr: String,
    /// Each open connection's unparsed input, by port id.
    pub sessions: BTreeMap<u64, Session>,
    /// Commands handled since the process started.
    pub commands: u64,
}

impl Front {
    /// Opens the listener on the configured address.
    pub fn open(ctx: &Context<'_>, version: &str) -> Result<Front, String> {
        let addr = listen_addr(ctx);
        let (listener, bound) = ctx
            .tcp_listen(&addr)
            .map_err(|e| format!("kv_server {version}: {e}"))?;
        ctx.log(
            LogLevel::Info,
            &format!("kv_server {version} listening on {bound}"),
        );
        Ok(Front {
            listener: Some(listener),
            addr: bound,
            ..Front::default()
        })
    }

    /// What [`crate::Call::Status`] answers.
    pub fn status(&self, version: &str, keys: usize) -> Status {
        Status {
            version: version.to_string(),
            addr: self.addr.clone(),
            keys,
            connections: self.sessions.len(),
            commands: self.commands,
        }
    }

    /// Handles a port event: takes new connections, answers requests, forgets closed ones.
    pub fn handle_info<T>(
        &mut self,
        store: &mut impl Store,
        info: Info<T>,
        ctx: &mut Context<'_>,
        version: &str,
    ) {
        match info {
            Info::TcpAccepted { conn, peer, .. } => match ctx.tcp_set_owner(conn, ctx.self_pid()) {
                Ok(()) => {
                    self.sessions.insert(conn.0, Session::default());
                }
                Err(e) => ctx.log(LogLevel::Warn, &format!("cannot take {peer}: {e}")),
            },
            Info::TcpData { conn, bytes } => self.data(store, conn, &bytes, ctx, version),
            Info::TcpClosed { port, reason } => {
                self.sessions.remove(&port.0);
                if Some(port) == self.listener {
                    // Without its listener the service is deaf: crash, and let the
                    // supervisor start it again (the restart opens a new listener).
                    ctx.stop(relup_module::ExitReason::Error(format!(
                        "listener closed: {reason}"
                    )));
                }
            }
            _ => {}
        }
    }

    fn data(
        &mut self,
        store: &mut impl Store,
        conn: PortId,
        bytes: &[u8],
        ctx: &mut Context<'_>,
        version: &str,
    ) {
        let connections = self.sessions.len();
        let Some(session) = self.sessions.get_mut(&conn.0) else {
            return;
        };
        let commands = &mut self.commands;
        let mut out = Vec::new();
        let cx: &Context<'_> = ctx;
        let after = session.feed(bytes, &mut out, |args, out| {
            *commands += 1;
            let name = admin::name(args);
            if let Some(after) = store.exec_cx(&name, args, out, cx) {
                return after;
            }
            let facts = ServerFacts {
                version,
                keys: store.keys_cx(cx),
                commands: *commands,
                connections,
            };
            admin::answer(&name, args, out, &facts).unwrap_or_else(|| {
                admin::unknown(out, args);
                After::Continue
            })
        });
        // A peer that is gone makes the send fail; its TcpClosed follows and cleans up.
        if !out.is_empty() {
            let _ = ctx.tcp_send(conn, &out);
        }
        if after == After::Close {
            self.sessions.remove(&conn.0);
            let _ = ctx.tcp_close(conn);
        }
    }
}
