//! The poller thread: one `mio::Poll` (epoll, edge-triggered) per node. It accepts
//! connections, reads them into `Data` events for their owners (until back-pressure pauses a
//! connection), flushes queued output when a socket is writable again, and finishes closes.
//!
//! `mio` earns its place: it is the thin, well-kept epoll layer under tokio, already in the
//! dependency tree (through `notify`), and it lets one thread serve thousands of sockets,
//! where a thread per connection would not.

use super::conn::{Conn, OutState};
use super::event::{CloseGuard, Credit, TcpEvent};
use super::listener::Accepted;
use super::shared::{Command, Port, Shared};
use super::{PortError, PortLimits};
use crate::node::NodeInner;
use relup_module::{CloseReason, Pid, PortId};
use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

const WAKER: mio::Token = mio::Token(0);
/// How long the poller sleeps when nothing happens (it then checks the node is still there).
const IDLE: Duration = Duration::from_secs(1);
/// How soon a listener that failed to accept (out of descriptors) tries again, and how often
/// closing connections' deadlines are checked.
const RETRY: Duration = Duration::from_millis(100);

/// Creates the poll instance and starts the poller thread.
pub(super) fn start(node: Weak<NodeInner>, limits: PortLimits) -> Result<Arc<Shared>, PortError> {
    let poll = mio::Poll::new().map_err(PortError::Poller)?;
    let registry = poll.registry().try_clone().map_err(PortError::Poller)?;
    let waker = mio::Waker::new(poll.registry(), WAKER).map_err(PortError::Poller)?;
    let shared = Arc::new_cyclic(|me| Shared::new(node, registry, waker, limits, me.clone()));
    let thread_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name("relup-ports".into())
        .spawn(move || Poller::new(poll, thread_shared).run())
        .map_err(PortError::Poller)?;
    *shared.thread.lock() = Some(handle);
    Ok(shared)
}

struct Poller {
    poll: mio::Poll,
    shared: Arc<Shared>,
    scratch: Vec<u8>,
    /// Connections closing gracefully, with their deadline.
    closing: HashMap<u64, Instant>,
    /// Listeners to accept on again after a transient failure, and when.
    retry: Vec<PortId>,
    retry_at: Instant,
}

impl Poller {
    fn new(poll: mio::Poll, shared: Arc<Shared>) -> Poller {
        let chunk = shared.limits.read_chunk.max(1);
        Poller {
            poll,
            shared,
            scratch: vec![0; chunk],
            closing: HashMap::new(),
            retry: Vec::new(),
            retry_at: Instant::now(),
        }
    }

    fn run(mut self) {
        let mut events = mio::Events::with_capacity(1024);
        loop {
            let timeout = if self.closing.is_empty() && self.retry.is_empty() {
                IDLE
            } else {
                RETRY
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != ErrorKind::Interrupted
            {
                self.log(&format!("port poller failed: {e}; closing every port"));
                break;
            }
            if self.shared.stopping.load(Ordering::SeqCst) || self.shared.node.strong_count() == 0 {
                break;
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                let id = PortId(event.token().0 as u64);
                match self.shared.get(id) {
                    Some(Port::Listener(_)) => self.accept(id),
                    Some(Port::Conn(conn)) => {
                        let mut just_connected = false;
                        if conn.connecting.load(Ordering::SeqCst) {
                            if !self.connected(&conn) {
                                continue;
                            }
                            just_connected = true;
                        }
                        if event.is_writable() || just_connected {
                            self.flush(&conn);
                        }
                        if just_connected
                            || event.is_readable()
                            || event.is_read_closed()
                            || event.is_error()
                        {
                            self.pump(&conn);
                        }
                    }
                    None => {}
                }
            }
            for command in self.shared.take_commands() {
                self.execute(command);
            }
            self.sweep();
        }
        for port in self.shared.drain_table() {
            match port {
                Port::Conn(conn) => {
                    conn.shut();
                }
                Port::Listener(listener) => listener.close(),
            }
        }
    }

    fn log(&self, text: &str) {
        if let Some(node) = self.shared.node.upgrade() {
            node.log(1, None, text);
        }
    }

    fn execute(&mut self, command: Command) {
        match command {
            Command::Resume(id) => {
                if let Some(Port::Conn(conn)) = self.shared.get(id) {
                    self.pump(&conn);
                }
            }
            Command::Close(id) => match self.shared.get(id) {
                Some(Port::Listener(listener)) => self.shared.close_listener(id, &listener),
                Some(Port::Conn(conn)) => self.finish_close(&conn),
                None => {}
            },
            Command::Fail(id, reason) => {
                if let Some(Port::Conn(conn)) = self.shared.get(id) {
                    self.finalize(&conn, Some(reason));
                }
            }
            Command::Thaw => {
                for (id, port) in self.shared.all() {
                    match port {
                        Port::Listener(_) => self.accept(id),
                        Port::Conn(conn) => {
                            self.flush(&conn);
                            self.pump(&conn);
                        }
                    }
                }
            }
            Command::Added(id) => match self.shared.get(id) {
                Some(Port::Listener(_)) => self.accept(id),
                Some(Port::Conn(conn))
                    if conn.connecting.load(Ordering::SeqCst) && self.connected(&conn) =>
                {
                    self.flush(&conn);
                    self.pump(&conn);
                }
                _ => {}
            },
            Command::OwnerExited(pid, ports) => {
                for id in ports {
                    self.owner_exited(pid, id);
                }
            }
        }
    }

    /// Closes what `pid` still owns of `id`.
    fn owner_exited(&mut self, pid: Pid, id: PortId) {
        match self.shared.get(id) {
            Some(Port::Listener(listener)) if listener.owner() == pid => {
                self.shared.close_listener(id, &listener);
            }
            Some(Port::Conn(conn)) if conn.owner() == pid => {
                let deadline = Instant::now() + self.shared.limits.close_linger;
                conn.begin_close(deadline);
                self.finish_close(&conn);
            }
            _ => {}
        }
    }

    /// Accepts every pending connection of listener `id`.
    fn accept(&mut self, id: PortId) {
        loop {
            if self.shared.frozen.load(Ordering::SeqCst) {
                return;
            }
            let Some(Port::Listener(listener)) = self.shared.get(id) else {
                return;
            };
            match listener.accept() {
                Accepted::Drained => return,
                Accepted::Retry(e) => {
                    self.log(&format!(
                        "listener {id} on {} cannot accept: {e}; retrying",
                        listener.local
                    ));
                    if !self.retry.contains(&id) {
                        self.retry.push(id);
                    }
                    self.retry_at = Instant::now() + RETRY;
                    return;
                }
                Accepted::Conn(mut stream, peer) => {
                    let conn_id = self.shared.next_id();
                    let local = stream.local_addr().unwrap_or(listener.local);
                    let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
                    let token = mio::Token(conn_id.0 as usize);
                    if let Err(e) = self.shared.registry.register(&mut stream, token, interest) {
                        self.log(&format!("cannot watch a connection from {peer}: {e}"));
                        continue;
                    }
                    let owner = listener.owner();
                    let conn = Conn::new(conn_id, stream, local, peer, owner, &self.shared, false);
                    self.shared
                        .insert(conn_id, Port::Conn(Arc::new(conn)), owner);
                    let event = TcpEvent::Accepted {
                        listener: id,
                        conn: conn_id,
                        peer,
                    };
                    if !self.shared.deliver(owner, event) {
                        // The owner is gone: so are the listener and what it accepted.
                        self.owner_exited(owner, conn_id);
                        self.shared.close_listener(id, &listener);
                        return;
                    }
                }
            }
        }
    }

    /// An event on an outbound connection still connecting: whether it is established now.
    /// If so its owner is told (`Connected`) and it is read from now on; if the connect
    /// failed, it is closed and its owner told why; if neither yet (a spurious wake-up), it
    /// waits for the next event.
    fn connected(&mut self, conn: &Arc<Conn>) -> bool {
        let failed = match conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match conn.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == ErrorKind::NotConnected => return false,
                Err(e) => Some(e),
            },
        };
        conn.connecting.store(false, Ordering::SeqCst);
        if let Some(e) = failed {
            let reason = CloseReason::Error(format!("connect to {} failed: {e}", conn.peer));
            self.finalize(conn, Some(reason));
            return false;
        }
        let event = TcpEvent::Connected {
            conn: conn.id,
            peer: conn.peer,
        };
        if !self.shared.deliver(conn.owner(), event) {
            self.finalize(conn, None);
            return false;
        }
        conn.active.store(true, Ordering::SeqCst);
        // Output queued while connecting goes now; then reads (the caller flushes and pumps).
        true
    }

    /// Reads a connection into `Data` events while it is claimed, within its limits, and has
    /// bytes.
    fn pump(&mut self, conn: &Arc<Conn>) {
        loop {
            if self.shared.frozen.load(Ordering::SeqCst)
                || !conn.active.load(Ordering::SeqCst)
                || conn.eof.load(Ordering::SeqCst)
                || conn.out_state() != OutState::Open
            {
                return;
            }
            if conn.over_limits() {
                conn.paused.store(true, Ordering::SeqCst);
                // The owner may have caught up between the check and the flag (see
                // `Conn::wake_if_paused`): if so, take the flag back and go on.
                if conn.over_limits() || !conn.paused.swap(false, Ordering::SeqCst) {
                    return;
                }
            }
            match (&conn.stream).read(&mut self.scratch) {
                Ok(0) => {
                    conn.eof.store(true, Ordering::SeqCst);
                    conn.notified.store(true, Ordering::SeqCst);
                    let event = TcpEvent::Closed {
                        port: conn.id,
                        reason: CloseReason::PeerClosed,
                        guard: Some(CloseGuard {
                            shared: self.shared.me.clone(),
                            conn: conn.id,
                        }),
                    };
                    if !self.shared.deliver(conn.owner(), event) {
                        self.finalize(conn, None);
                    }
                    return;
                }
                Ok(n) => {
                    conn.add_in_flight(n);
                    let event = TcpEvent::Data {
                        conn: conn.id,
                        bytes: self.scratch[..n].to_vec(),
                        credit: Credit {
                            conn: Arc::downgrade(conn),
                            bytes: n,
                        },
                    };
                    if !self.shared.deliver(conn.owner(), event) {
                        self.finalize(conn, None);
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.finalize(conn, Some(super::conn::reason_of(&e)));
                    return;
                }
            }
        }
    }

    /// Sends queued output; finishes a close once it is all out; reads again if the output
    /// was what paused reading.
    fn flush(&mut self, conn: &Arc<Conn>) {
        match conn.flush() {
            Err(reason) => self.finalize(conn, Some(reason)),
            Ok(empty) => {
                if empty && matches!(conn.out_state(), OutState::Closing(_)) {
                    self.finalize(conn, None);
                } else {
                    conn.wake_if_paused();
                }
            }
        }
    }

    /// A graceful close has begun: close now if nothing is queued, else when flushed (or at
    /// the deadline).
    fn finish_close(&mut self, conn: &Arc<Conn>) {
        match conn.out_state() {
            OutState::Closing(deadline) => match conn.flush() {
                Ok(true) => self.finalize(conn, None),
                Ok(false) => {
                    self.closing.insert(conn.id.0, deadline);
                }
                Err(_) => self.finalize(conn, None),
            },
            OutState::Open | OutState::Closed => self.finalize(conn, None),
        }
    }

    /// Closes a connection for good; tells the owner `reason` unless it was told already.
    fn finalize(&mut self, conn: &Arc<Conn>, reason: Option<CloseReason>) {
        self.closing.remove(&conn.id.0);
        let owner = conn.owner();
        self.shared.remove(conn.id, owner);
        let was_open = conn.out_state() == OutState::Open;
        if !conn.shut() {
            return;
        }
        if let Some(reason) = reason
            && was_open
            && !conn.notified.swap(true, Ordering::SeqCst)
        {
            let event = TcpEvent::Closed {
                port: conn.id,
                reason,
                guard: None,
            };
            self.shared.deliver(owner, event);
        }
    }

    /// Closes connections past their linger deadline; retries failed accepts.
    fn sweep(&mut self) {
        if !self.closing.is_empty() {
            let now = Instant::now();
            let late: Vec<u64> = self
                .closing
                .iter()
                .filter(|(_, deadline)| **deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in late {
                self.closing.remove(&id);
                if let Some(Port::Conn(conn)) = self.shared.get(PortId(id)) {
                    self.finalize(&conn, None);
                }
            }
        }
        if !self.retry.is_empty() && Instant::now() >= self.retry_at {
            for id in std::mem::take(&mut self.retry) {
                self.accept(id);
            }
        }
    }
}
