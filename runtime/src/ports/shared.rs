//! The port table and the operations any thread may run on it: listen, send, close, set the
//! owner, owner exit. Whatever needs the poller (reading again, finishing a close) is queued as
//! a [`Command`] and the poller is woken.

use super::conn::{Conn, SendFail};
use super::listener::Listener;
use super::{PortError, PortInfo, PortKind, PortLimits};
use crate::node::NodeInner;
use crate::process::InfoMsg;
use parking_lot::{Mutex, RwLock};
use relup_module::{CloseReason, Pid, PortId};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

/// A port in the table.
#[derive(Clone)]
pub(super) enum Port {
    Listener(Arc<Listener>),
    Conn(Arc<Conn>),
}

/// Work for the poller thread.
pub(crate) enum Command {
    /// Read the connection again (credit came back, or it was claimed).
    Resume(PortId),
    /// Close a connection gracefully (its close has begun) or a listener.
    Close(PortId),
    /// Close at once and tell the owner why (unless it was told already).
    Fail(PortId, CloseReason),
    /// These ports' owner exited: close those it still owns.
    OwnerExited(Pid, Vec<PortId>),
    /// Reading and writing may go on again after a handover that did not happen (or in the
    /// node that took over): flush every connection, read it, accept on every listener.
    Thaw,
    /// A port was just added to the table: look at it as if it had an event. The socket is
    /// registered with the poller before it is in the table, and an edge-triggered event the
    /// poller saw in between (a connect done, a connection waiting to be accepted) was for
    /// a port it could not find, and will not come again.
    Added(PortId),
}

/// State shared by the poller thread and every thread that uses ports.
pub(crate) struct Shared {
    pub(super) node: Weak<NodeInner>,
    pub(super) registry: mio::Registry,
    pub(super) waker: mio::Waker,
    pub(super) limits: PortLimits,
    commands: Mutex<Vec<Command>>,
    table: RwLock<HashMap<u64, Port>>,
    owners: Mutex<HashMap<Pid, HashSet<u64>>>,
    next_id: AtomicU64,
    pub(super) stopping: AtomicBool,
    /// A handover is under way: no reading, no accepting (see [`super::handover`]).
    pub(super) frozen: AtomicBool,
    /// A handover is taking the output: nothing is written (sends queue).
    pub(super) held: Arc<AtomicBool>,
    pub(super) thread: Mutex<Option<JoinHandle<()>>>,
    pub(super) me: Weak<Shared>,
}

impl Shared {
    pub(super) fn new(
        node: Weak<NodeInner>,
        registry: mio::Registry,
        waker: mio::Waker,
        limits: PortLimits,
        me: Weak<Shared>,
    ) -> Shared {
        Shared {
            node,
            registry,
            waker,
            limits,
            commands: Mutex::new(Vec::new()),
            table: RwLock::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            // Token 0 is the poller's waker.
            next_id: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            held: Arc::new(AtomicBool::new(false)),
            thread: Mutex::new(None),
            me,
        }
    }

    pub(super) fn next_id(&self) -> PortId {
        PortId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Queues work for the poller and wakes it.
    pub(crate) fn command(&self, command: Command) {
        let first = {
            let mut queue = self.commands.lock();
            queue.push(command);
            queue.len() == 1
        };
        if first {
            let _ = self.waker.wake();
        }
    }

    /// Every port in the table, by id.
    pub(super) fn all(&self) -> Vec<(PortId, Port)> {
        let mut all: Vec<(PortId, Port)> = self
            .table
            .read()
            .iter()
            .map(|(id, port)| (PortId(*id), port.clone()))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// Runs `f` on the port table, under its read lock (no copy).
    pub(super) fn with_table<R>(&self, f: impl FnOnce(&HashMap<u64, Port>) -> R) -> R {
        f(&self.table.read())
    }

    /// Every process that owns a port (the owners index).
    pub(super) fn owner_pids(&self) -> Vec<Pid> {
        self.owners.lock().keys().copied().collect()
    }

    /// Hands out ids from `next` on (ids handed over from another node are below it).
    pub(super) fn ids_from(&self, next: u64) {
        self.next_id.fetch_max(next, Ordering::SeqCst);
    }

    /// The next id that would be handed out.
    pub(super) fn peek_next_id(&self) -> u64 {
        self.next_id.load(Ordering::SeqCst)
    }

    pub(super) fn take_commands(&self) -> Vec<Command> {
        std::mem::take(&mut *self.commands.lock())
    }

    pub(super) fn get(&self, port: PortId) -> Option<Port> {
        self.table.read().get(&port.0).cloned()
    }

    fn conn(&self, port: PortId) -> Result<Arc<Conn>, PortError> {
        match self.get(port) {
            Some(Port::Conn(conn)) => Ok(conn),
            Some(Port::Listener(_)) => Err(PortError::NotAConnection(port)),
            None => Err(PortError::NoPort(port)),
        }
    }

    /// Adds a port owned by `owner` to the table.
    pub(super) fn insert(&self, id: PortId, port: Port, owner: Pid) {
        self.table.write().insert(id.0, port);
        self.owners.lock().entry(owner).or_default().insert(id.0);
    }

    /// Removes a port from the table and from its owner's set.
    pub(super) fn remove(&self, id: PortId, owner: Pid) {
        self.table.write().remove(&id.0);
        let mut owners = self.owners.lock();
        if let Some(set) = owners.get_mut(&owner) {
            set.remove(&id.0);
            if set.is_empty() {
                owners.remove(&owner);
            }
        }
    }

    /// Delivers an event to `owner`; false if it is gone.
    pub(super) fn deliver(&self, owner: Pid, event: super::TcpEvent) -> bool {
        match self.node.upgrade() {
            Some(node) => node.send_info(owner, InfoMsg::Tcp(event)),
            None => false,
        }
    }

    /// Closes port `id`, just added for `owner`, if `owner` has exited meanwhile (its exit
    /// would never close it).
    fn close_if_owner_gone(&self, owner: Pid, id: PortId) {
        if self
            .node
            .upgrade()
            .is_none_or(|node| node.lookup(owner).is_none())
        {
            self.command(Command::OwnerExited(owner, vec![id]));
        }
    }

    /// Opens a listener owned by `owner`.
    pub(super) fn listen(&self, owner: Pid, addr: &str) -> Result<(PortId, SocketAddr), PortError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(PortError::ShuttingDown);
        }
        let id = self.next_id();
        let listener = Listener::bind(addr, owner, |socket| {
            let token = mio::Token(id.0 as usize);
            self.registry
                .register(socket, token, mio::Interest::READABLE)
        })?;
        let local = listener.local;
        self.insert(id, Port::Listener(Arc::new(listener)), owner);
        self.command(Command::Added(id));
        self.close_if_owner_gone(owner, id);
        Ok((id, local))
    }

    /// Starts an outbound connection to `addr` owned by `owner`: resolved and connected
    /// without blocking on the connect (a host name is resolved by the system's resolver);
    /// the poller tells the owner when it is established, or closes it when it fails.
    pub(super) fn connect(&self, owner: Pid, addr: &str) -> Result<PortId, PortError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(PortError::ShuttingDown);
        }
        let failed = |reason: String| PortError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let peer = match addr.parse::<SocketAddr>() {
            Ok(peer) => peer,
            Err(_) => std::net::ToSocketAddrs::to_socket_addrs(addr)
                .map_err(|e| failed(e.to_string()))?
                .next()
                .ok_or_else(|| failed("the name has no address".into()))?,
        };
        let mut stream = mio::net::TcpStream::connect(peer).map_err(|e| failed(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let id = self.next_id();
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        self.registry
            .register(&mut stream, mio::Token(id.0 as usize), interest)
            .map_err(|e| failed(e.to_string()))?;
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let conn = Conn::new(id, stream, local, peer, owner, self, true);
        self.insert(id, Port::Conn(Arc::new(conn)), owner);
        self.command(Command::Added(id));
        self.close_if_owner_gone(owner, id);
        Ok(id)
    }

    /// Queues bytes on a connection.
    pub(super) fn send(&self, port: PortId, bytes: &[u8]) -> Result<(), PortError> {
        let conn = self.conn(port)?;
        match conn.send(bytes) {
            Ok(()) => Ok(()),
            Err(SendFail::Closed) => Err(PortError::NoPort(port)),
            Err(SendFail::Full) => {
                self.command(Command::Fail(port, CloseReason::OutputFull));
                Err(PortError::OutputFull(port))
            }
            Err(SendFail::Broken(reason)) => {
                self.command(Command::Fail(port, reason));
                Err(PortError::NoPort(port))
            }
        }
    }

    /// Closes a listener, or starts closing a connection gracefully.
    pub(crate) fn close(&self, port: PortId) -> Result<(), PortError> {
        match self.get(port) {
            None => Err(PortError::NoPort(port)),
            Some(Port::Listener(listener)) => {
                self.close_listener(port, &listener);
                Ok(())
            }
            Some(Port::Conn(conn)) => {
                let deadline = std::time::Instant::now() + self.limits.close_linger;
                if conn.begin_close(deadline) {
                    self.command(Command::Close(port));
                    Ok(())
                } else {
                    Err(PortError::NoPort(port))
                }
            }
        }
    }

    /// Hands a port to `to`; a connection starts being read. `by` must own it (None: the node).
    pub(super) fn set_owner(
        &self,
        node: &NodeInner,
        port: PortId,
        by: Option<Pid>,
        to: Pid,
    ) -> Result<(), PortError> {
        let entry = self.get(port).ok_or(PortError::NoPort(port))?;
        let owner = match &entry {
            Port::Listener(l) => l.owner(),
            Port::Conn(c) => c.owner(),
        };
        if by.is_some_and(|by| by != owner) {
            return Err(PortError::NotOwner { port, owner });
        }
        if node.lookup(to).is_none_or(|p| p.is_dead()) {
            return Err(PortError::NoProc(to));
        }
        let swapped = match &entry {
            Port::Listener(l) => l.swap_owner(owner, to),
            Port::Conn(c) => c.swap_owner(owner, to),
        };
        if !swapped {
            // Its owner changed or exited meanwhile: from the caller's view, it is not theirs.
            return Err(PortError::NotOwner { port, owner });
        }
        {
            let mut owners = self.owners.lock();
            if let Some(set) = owners.get_mut(&owner) {
                set.remove(&port.0);
                if set.is_empty() {
                    owners.remove(&owner);
                }
            }
            owners.entry(to).or_default().insert(port.0);
        }
        if let Port::Conn(conn) = &entry {
            conn.active.store(true, Ordering::SeqCst);
            self.command(Command::Resume(port));
        }
        // The new owner may have exited between the check and the index update.
        if node.lookup(to).is_none() {
            self.command(Command::OwnerExited(to, vec![port]));
        }
        Ok(())
    }

    /// Closes a listener now (its address is free when this returns).
    pub(super) fn close_listener(&self, port: PortId, listener: &Listener) {
        listener.close();
        self.remove(port, listener.owner());
    }

    /// Closes what `pid` owns (it exited): its listeners now, its connections on the poller.
    pub(super) fn owner_exited(&self, pid: Pid) {
        let owned = self.owners.lock().remove(&pid);
        if let Some(owned) = owned {
            for id in &owned {
                if let Some(Port::Listener(listener)) = self.get(PortId(*id))
                    && listener.owner() == pid
                {
                    self.close_listener(PortId(*id), &listener);
                }
            }
            self.command(Command::OwnerExited(
                pid,
                owned.into_iter().map(PortId).collect(),
            ));
        }
    }

    /// A snapshot of every port.
    pub(super) fn info(&self) -> Vec<PortInfo> {
        let mut all: Vec<PortInfo> = self
            .table
            .read()
            .iter()
            .map(|(id, port)| match port {
                Port::Listener(l) => PortInfo {
                    id: PortId(*id),
                    kind: PortKind::Listener,
                    owner: l.owner(),
                    local: l.local,
                    peer: None,
                    in_flight: 0,
                    unsent: 0,
                    reading_paused: false,
                },
                Port::Conn(c) => PortInfo {
                    id: PortId(*id),
                    kind: PortKind::Connection,
                    owner: c.owner(),
                    local: c.local,
                    peer: Some(c.peer),
                    in_flight: c.in_flight(),
                    unsent: c.unsent(),
                    reading_paused: c.paused.load(Ordering::SeqCst)
                        || !c.active.load(Ordering::SeqCst),
                },
            })
            .collect();
        all.sort_by_key(|p| p.id);
        all
    }

    /// Empties the table (the poller is stopping).
    pub(super) fn drain_table(&self) -> Vec<Port> {
        self.owners.lock().clear();
        self.table.write().drain().map(|(_, p)| p).collect()
    }

    /// Stops the poller thread (it closes every socket on its way out).
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        let handle = self.thread.lock().take();
        if let Some(handle) = handle
            && handle.thread().id() != std::thread::current().id()
        {
            let _ = handle.join();
        }
    }
}
