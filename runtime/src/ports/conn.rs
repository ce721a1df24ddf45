//! One connection: its socket, owner, in-flight and output accounting, and the output buffer.
//!
//! Reads happen on the poller thread only. Writes happen on whatever thread sends, under the
//! output lock: straight to the socket when nothing is queued, else appended to the queue that
//! the poller flushes when the socket is writable again.

use super::PortLimits;
use super::shared::{Command, Shared};
use mio::net::TcpStream;
use parking_lot::Mutex;
use relup_module::{CloseReason, Pid, PortId};
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// Whether the connection takes output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OutState {
    /// Open.
    Open,
    /// Closing: queued output is still sent until the deadline, new output is refused.
    Closing(Instant),
    /// Closed.
    Closed,
}

/// Output not taken by the socket yet.
pub(super) struct Output {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    pos: usize,
    pub(super) state: OutState,
}

impl Output {
    fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// Why a send did not go through.
pub(super) enum SendFail {
    /// The connection is closing or closed.
    Closed,
    /// Queued output would pass the hard limit.
    Full,
    /// The socket failed.
    Broken(CloseReason),
}

/// The close reason for a socket error.
pub(super) fn reason_of(e: &std::io::Error) -> CloseReason {
    match e.kind() {
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
            CloseReason::Reset
        }
        _ => CloseReason::Error(e.to_string()),
    }
}

/// One connection, accepted by a listener or opened by `tcp_connect`.
pub(crate) struct Conn {
    pub(super) id: PortId,
    pub(super) stream: TcpStream,
    pub(super) local: SocketAddr,
    pub(super) peer: SocketAddr,
    owner: AtomicU64,
    /// Claimed by an owner (`set_owner` was called): it may be read.
    pub(super) active: AtomicBool,
    /// An outbound connect still under way: output is queued, not written, until the poller
    /// sees it established.
    pub(super) connecting: AtomicBool,
    /// The poller stopped reading it for back-pressure; whoever clears the flag (after the
    /// cause went away) asks the poller to read again.
    pub(super) paused: AtomicBool,
    in_flight: AtomicUsize,
    unsent: AtomicUsize,
    /// The peer ended its stream (poller only).
    pub(super) eof: AtomicBool,
    /// A `Closed` event was delivered (at most one is).
    pub(super) notified: AtomicBool,
    out: Mutex<Output>,
    /// The node's handover hold: while set, output queues and nothing is written.
    held: Arc<AtomicBool>,
    shared: Weak<Shared>,
    limits: PortLimits,
}

impl Conn {
    pub(super) fn new(
        id: PortId,
        stream: TcpStream,
        local: SocketAddr,
        peer: SocketAddr,
        owner: Pid,
        shared: &Shared,
        connecting: bool,
    ) -> Conn {
        Conn {
            id,
            stream,
            local,
            peer,
            owner: AtomicU64::new(owner.0),
            active: AtomicBool::new(false),
            connecting: AtomicBool::new(connecting),
            paused: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            unsent: AtomicUsize::new(0),
            eof: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            out: Mutex::new(Output {
                buf: Vec::new(),
                pos: 0,
                state: OutState::Open,
            }),
            held: shared.held.clone(),
            shared: shared.me.clone(),
            limits: shared.limits,
        }
    }

    pub(super) fn owner(&self) -> Pid {
        Pid(self.owner.load(Ordering::SeqCst))
    }

    /// Changes the owner if it is still `from`.
    pub(super) fn swap_owner(&self, from: Pid, to: Pid) -> bool {
        self.owner
            .compare_exchange(from.0, to.0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(super) fn unsent(&self) -> usize {
        self.unsent.load(Ordering::SeqCst)
    }

    /// Whether reading must wait: too much delivered and not handled, or too much unsent.
    pub(super) fn over_limits(&self) -> bool {
        self.in_flight() >= self.limits.max_in_flight || self.unsent() > self.limits.output_soft
    }

    /// Counts bytes delivered to the owner.
    pub(super) fn add_in_flight(&self, bytes: usize) {
        self.in_flight.fetch_add(bytes, Ordering::SeqCst);
    }

    /// The owner handled (or dropped) `bytes` delivered bytes.
    pub(super) fn return_credit(&self, bytes: usize) {
        self.in_flight.fetch_sub(bytes, Ordering::SeqCst);
        self.wake_if_paused();
    }

    /// If reading is paused and its cause is gone, asks the poller to read again. The poller
    /// sets `paused` and then checks the limits again, and this side changes a counter and
    /// then checks `paused`: one of the two always sees the other's change.
    pub(super) fn wake_if_paused(&self) {
        if self.paused.load(Ordering::SeqCst)
            && !self.over_limits()
            && self.paused.swap(false, Ordering::SeqCst)
            && let Some(shared) = self.shared.upgrade()
        {
            shared.command(Command::Resume(self.id));
        }
    }

    /// Writes `bytes` now as far as the socket takes them, and queues the rest.
    pub(super) fn send(&self, bytes: &[u8]) -> Result<(), SendFail> {
        let mut out = self.out.lock();
        if out.state != OutState::Open {
            return Err(SendFail::Closed);
        }
        let mut rest = bytes;
        if out.pending() == 0
            && !self.connecting.load(Ordering::SeqCst)
            && !self.held.load(Ordering::SeqCst)
        {
            while !rest.is_empty() {
                match (&self.stream).write(rest) {
                    Ok(0) => return Err(SendFail::Broken(CloseReason::Reset)),
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(SendFail::Broken(reason_of(&e))),
                }
            }
        }
        if rest.is_empty() {
            return Ok(());
        }
        if out.pending() + rest.len() > self.limits.output_hard {
            return Err(SendFail::Full);
        }
        if out.pos > 0 && out.pos >= out.buf.len() / 2 {
            let pos = out.pos;
            out.buf.drain(..pos);
            out.pos = 0;
        }
        out.buf.extend_from_slice(rest);
        self.unsent.store(out.pending(), Ordering::SeqCst);
        Ok(())
    }

    /// Writes queued output while the socket takes it (poller thread). Ok(true) when nothing
    /// is left.
    pub(super) fn flush(&self) -> Result<bool, CloseReason> {
        let mut out = self.out.lock();
        if self.held.load(Ordering::SeqCst) {
            return Ok(out.pending() == 0);
        }
        while out.pending() > 0 {
            let pos = out.pos;
            match (&self.stream).write(&out.buf[pos..]) {
                Ok(0) => return Err(CloseReason::Reset),
                Ok(n) => out.pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(reason_of(&e)),
            }
        }
        if out.pending() == 0 {
            out.buf = Vec::new();
            out.pos = 0;
        }
        self.unsent.store(out.pending(), Ordering::SeqCst);
        Ok(out.pending() == 0)
    }

    /// Closing: its last output still going, or the peer's end of stream not yet handled.
    pub(super) fn is_closing(&self) -> bool {
        self.out_state() != OutState::Open || self.eof.load(Ordering::SeqCst)
    }

    /// A copy of the output not sent yet (a handover takes it while output is held).
    pub(super) fn unsent_bytes(&self) -> Vec<u8> {
        let out = self.out.lock();
        out.buf[out.pos..].to_vec()
    }

    /// Queues output handed over from another node; the poller sends it when it may.
    pub(super) fn queue(&self, bytes: &[u8]) {
        let mut out = self.out.lock();
        out.buf.extend_from_slice(bytes);
        self.unsent.store(out.pending(), Ordering::SeqCst);
    }

    /// Starts a graceful close: no new output; queued output goes until `deadline`. False if
    /// it was closing or closed already.
    pub(super) fn begin_close(&self, deadline: Instant) -> bool {
        let mut out = self.out.lock();
        if out.state != OutState::Open {
            return false;
        }
        out.state = OutState::Closing(deadline);
        true
    }

    /// The output state.
    pub(super) fn out_state(&self) -> OutState {
        self.out.lock().state
    }

    /// Marks it closed, drops queued output and shuts the socket down (the descriptor closes
    /// when the last reference goes). Returns false if it was closed already.
    pub(super) fn shut(&self) -> bool {
        {
            let mut out = self.out.lock();
            if out.state == OutState::Closed {
                return false;
            }
            out.state = OutState::Closed;
            out.buf = Vec::new();
            out.pos = 0;
        }
        self.unsent.store(0, Ordering::SeqCst);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        true
    }
}
