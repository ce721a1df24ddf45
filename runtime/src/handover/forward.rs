//! After a handover, what still reaches the old node from its host's threads (an HTTP
//! server beside the node finishing the requests it had read) is forwarded to the new node
//! over the handover socket and answered from there: calls (with their replies), casts and
//! plain messages. Pids are the same in both nodes, so the target needs no translation.
//!
//! The old node switches forwarding on once the new one has taken over, then sends on what
//! had queued meanwhile in its suspended processes' mailboxes (calls from host threads, and
//! casts and messages that came after the image was taken). It exits once its host is done.

use super::wire::{self, Msg};
use crate::error::CallError;
use crate::node::Node;
use crate::process::{Envelope, InfoMsg, Payload};
use crate::reply::ReplyTx;
use parking_lot::Mutex;
use relup_module::Pid;
use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long the new node gives a forwarded call.
const FORWARDED_CALL: Duration = Duration::from_secs(10);

/// What a forwarded message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Kind {
    /// A call: the new node answers with a reply.
    Call,
    /// A cast.
    Cast,
    /// A plain message.
    Message,
}

/// The old node's forwarder: one writer, one reader thread matching replies to callers.
pub(crate) struct Forwarder {
    writer: Mutex<UnixStream>,
    pending: Mutex<HashMap<u64, ReplyTx>>,
    next: AtomicU64,
}

impl Forwarder {
    /// Starts forwarding over `channel` (the reader thread lives as long as the channel).
    pub(crate) fn start(channel: &UnixStream) -> std::io::Result<Arc<Forwarder>> {
        let writer = channel.try_clone()?;
        let mut reader = channel.try_clone()?;
        reader.set_read_timeout(None)?;
        let forwarder = Arc::new(Forwarder {
            writer: Mutex::new(writer),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        let me = Arc::downgrade(&forwarder);
        std::thread::Builder::new()
            .name("relup-forward".into())
            .spawn(move || {
                while let Ok(Msg::Reply { id, result }) = wire::recv(&mut reader) {
                    let Some(forwarder) = me.upgrade() else {
                        return;
                    };
                    if let Some(reply) = forwarder.pending.lock().remove(&id) {
                        reply.send(
                            result
                                .map(|b| Payload::Bytes(b.into_vec()))
                                .map_err(CallError::Forwarded),
                        );
                    }
                }
                // The new node is gone: every call still waiting fails.
                if let Some(forwarder) = me.upgrade() {
                    forwarder.pending.lock().clear();
                }
            })?;
        Ok(forwarder)
    }

    /// Sends one message on; a call's reply goes to `reply` when it comes.
    pub(crate) fn forward(&self, pid: Pid, kind: Kind, payload: Vec<u8>, reply: Option<ReplyTx>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(reply) = reply {
            self.pending.lock().insert(id, reply);
        }
        let msg = Msg::Forward {
            id,
            pid: pid.0,
            kind,
            payload: serde_bytes::ByteBuf::from(payload),
        };
        if wire::send(&mut self.writer.lock(), &msg).is_err() {
            // Dropping the reply end tells the caller the callee went away.
            self.pending.lock().remove(&id);
        }
    }
}

/// Switches forwarding on and sends on what queued in the suspended processes meanwhile:
/// every call from a host thread, and the casts and messages after the first `exported[pid]`
/// envelopes (those went over in the image).
pub(crate) fn switch_on(node: &Node, forwarder: Arc<Forwarder>, exported: &HashMap<Pid, usize>) {
    let inner = &node.inner;
    let _ = inner.forward.set(forwarder.clone());
    for (pid, skip) in exported {
        let Some(process) = inner.lookup(*pid) else {
            continue;
        };
        let queued: Vec<Envelope> = process.mailbox.lock().user.drain(..).collect();
        for (i, envelope) in queued.into_iter().enumerate() {
            match envelope {
                Envelope::Call {
                    from: None,
                    payload: Payload::Bytes(bytes),
                    reply,
                } => forwarder.forward(*pid, Kind::Call, bytes, Some(reply)),
                Envelope::Cast(Payload::Bytes(bytes)) if i >= *skip => {
                    forwarder.forward(*pid, Kind::Cast, bytes, None)
                }
                Envelope::Info(InfoMsg::Message(Payload::Bytes(bytes))) if i >= *skip => {
                    forwarder.forward(*pid, Kind::Message, bytes, None)
                }
                _ => {}
            }
        }
    }
}

/// The new node's side: answers what the old node forwards, until it closes the channel.
pub(crate) fn serve(node: Node, channel: UnixStream) {
    let Ok(writer) = channel.try_clone() else {
        return;
    };
    let writer = Arc::new(Mutex::new(writer));
    let mut reader = channel;
    let _ = reader.set_read_timeout(None);
    let _ = std::thread::Builder::new()
        .name("relup-forwarded".into())
        .spawn(move || {
            while let Ok(Msg::Forward {
                id,
                pid,
                kind,
                payload,
            }) = wire::recv(&mut reader)
            {
                let pid = Pid(pid);
                let payload = payload.into_vec();
                match kind {
                    Kind::Cast => {
                        node.inner.cast_payload(pid, Payload::Bytes(payload));
                    }
                    Kind::Message => {
                        node.inner
                            .send_info(pid, InfoMsg::Message(Payload::Bytes(payload)));
                    }
                    Kind::Call => {
                        let (node, writer) = (node.clone(), writer.clone());
                        let _ = std::thread::Builder::new()
                            .name("relup-forwarded-call".into())
                            .spawn(move || {
                                let result = node
                                    .call_bytes(pid, payload, FORWARDED_CALL)
                                    .map(serde_bytes::ByteBuf::from)
                                    .map_err(|e| e.to_string());
                                let _ = wire::send(&mut writer.lock(), &Msg::Reply { id, result });
                            });
                    }
                }
            }
        });
}
