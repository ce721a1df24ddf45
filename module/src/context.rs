//! The module's view of the runtime during a callback.

use crate::abi::{HostApi, Sink, Slice, call_status, port_status};
use crate::codec::{self, CodecError};
use crate::types::{ConfigValue, ExitReason, MonitorRef, Pid, PortId, TimerRef};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Where a message goes: a pid or a registered name.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A process by pid.
    Pid(Pid),
    /// A process by registered name.
    Name(&'a str),
}

impl From<Pid> for Target<'_> {
    fn from(pid: Pid) -> Self {
        Target::Pid(pid)
    }
}

impl<'a> From<&'a str> for Target<'a> {
    fn from(name: &'a str) -> Self {
        Target::Name(name)
    }
}

impl<'a> Target<'a> {
    fn parts(self) -> (u64, &'a [u8]) {
        match self {
            Target::Pid(pid) => (pid.0, &[]),
            Target::Name(name) => (0, name.as_bytes()),
        }
    }
}

/// Why a call from a module failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// No reply within the timeout.
    Timeout,
    /// No such process.
    NoProc,
    /// The callee exited before replying.
    Exited(ExitReason),
    /// The callee could not decode the request, or the reply could not be decoded.
    BadMessage(String),
    /// A process called itself (it would wait for itself forever).
    CallingSelf,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => f.write_str("call timed out"),
            CallError::NoProc => f.write_str("no such process"),
            CallError::Exited(reason) => write!(f, "callee exited: {reason}"),
            CallError::BadMessage(text) => write!(f, "bad message: {text}"),
            CallError::CallingSelf => f.write_str("a process cannot call itself"),
        }
    }
}

impl std::error::Error for CallError {}

/// Why a TCP port operation from a module failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpError {
    /// The listener could not be opened (bad address, address in use, ...), with the reason.
    Listen(String),
    /// The connect could not be started (bad address, name not resolved, ...), with the
    /// reason. (A connect refused by the peer arrives later, as `Info::TcpClosed`.)
    Connect(String),
    /// No such port: never opened, or closed already.
    NoPort(PortId),
    /// Only the port's owner may do that.
    NotOwner(PortId),
    /// The connection's unsent output passed the node's hard limit; it was closed.
    OutputFull(PortId),
    /// The new owner is not a live process.
    NoProc(Pid),
    /// The operation needs a connection and got a listener (or the reverse).
    WrongKind(PortId),
    /// The runtime answered with a status this module does not know.
    Unknown(i32),
}

impl std::fmt::Display for TcpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TcpError::Listen(why) => write!(f, "cannot listen: {why}"),
            TcpError::Connect(why) => write!(f, "cannot connect: {why}"),
            TcpError::NoPort(port) => write!(f, "no such port {port} (closed?)"),
            TcpError::NotOwner(port) => write!(f, "not the owner of {port}"),
            TcpError::OutputFull(port) => write!(f, "output limit reached on {port}; closed"),
            TcpError::NoProc(pid) => write!(f, "no such process {pid}"),
            TcpError::WrongKind(port) => write!(f, "{port} is not that kind of port"),
            TcpError::Unknown(code) => write!(f, "unknown port status {code}"),
        }
    }
}

impl std::error::Error for TcpError {}

fn port_result(rc: i32, port: PortId, pid: Pid) -> Result<(), TcpError> {
    match rc {
        port_status::OK => Ok(()),
        port_status::NO_PORT => Err(TcpError::NoPort(port)),
        port_status::NOT_OWNER => Err(TcpError::NotOwner(port)),
        port_status::OUTPUT_FULL => Err(TcpError::OutputFull(port)),
        port_status::NO_PROC => Err(TcpError::NoProc(pid)),
        port_status::WRONG_KIND => Err(TcpError::WrongKind(port)),
        other => Err(TcpError::Unknown(other)),
    }
}

/// Log levels for [`Context::log`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum LogLevel {
    /// Something failed.
    Error = 0,
    /// Something looks wrong.
    Warn = 1,
    /// Normal operation worth recording.
    Info = 2,
    /// Details for debugging.
    Debug = 3,
    /// Very verbose details.
    Trace = 4,
}

/// What a callback can do with the runtime: messaging, timers, links, monitors, logging,
/// configuration, and asking to stop.
pub struct Context<'a> {
    pub(crate) host: &'a HostApi,
    stop: Option<ExitReason>,
}

impl<'a> Context<'a> {
    /// Wraps the runtime's host table for one callback.
    pub fn new(host: &'a HostApi) -> Context<'a> {
        Context { host, stop: None }
    }

    /// The reason given to [`Context::stop`], if any (taken by the export shim).
    pub fn take_stop(&mut self) -> Option<ExitReason> {
        self.stop.take()
    }

    /// The pid of this process.
    pub fn self_pid(&self) -> Pid {
        // SAFETY: the host table is valid for the duration of the callback.
        Pid(unsafe { (self.host.self_pid)(self.host.ctx) })
    }

    /// Asks the runtime to stop this process with `reason` once the callback returns
    /// (after a call's reply is sent).
    pub fn stop(&mut self, reason: ExitReason) {
        self.stop = Some(reason);
    }

    /// Sends a plain message (delivered to `handle_info`). Returns false if there is no such
    /// process.
    pub fn send<'t, M: Serialize>(
        &self,
        to: impl Into<Target<'t>>,
        msg: &M,
    ) -> Result<bool, CodecError> {
        let bytes = codec::encode(msg)?;
        let (pid, name) = to.into().parts();
        // SAFETY: the host table is valid for the callback; slices outlive the call.
        let rc =
            unsafe { (self.host.send)(self.host.ctx, pid, Slice::new(name), Slice::new(&bytes)) };
        Ok(rc == 0)
    }

    /// Casts a message (delivered to `handle_cast`). Returns false if there is no such process.
    pub fn cast<'t, M: Serialize>(
        &self,
        to: impl Into<Target<'t>>,
        msg: &M,
    ) -> Result<bool, CodecError> {
        let bytes = codec::encode(msg)?;
        let (pid, name) = to.into().parts();
        // SAFETY: as in `send`.
        let rc =
            unsafe { (self.host.cast)(self.host.ctx, pid, Slice::new(name), Slice::new(&bytes)) };
        Ok(rc == 0)
    }

    /// Calls another process and waits up to `timeout` for its reply.
    pub fn call<'t, Q: Serialize, R: DeserializeOwned>(
        &self,
        to: impl Into<Target<'t>>,
        request: &Q,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let bytes = codec::encode(request).map_err(|e| CallError::BadMessage(e.0))?;
        let (pid, name) = to.into().parts();
        let mut out = Vec::new();
        let sink = Sink::for_vec(&mut out);
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: as in `send`; the sink outlives the call.
        let rc = unsafe {
            (self.host.call)(
                self.host.ctx,
                pid,
                Slice::new(name),
                Slice::new(&bytes),
                timeout_ms,
                &sink,
            )
        };
        let text = || String::from_utf8_lossy(&out).into_owned();
        match rc {
            call_status::OK => codec::decode(&out).map_err(|e| CallError::BadMessage(e.0)),
            call_status::TIMEOUT => Err(CallError::Timeout),
            call_status::NO_PROC => Err(CallError::NoProc),
            call_status::EXITED => Err(CallError::Exited(ExitReason::from_text(&text()))),
            call_status::CALLING_SELF => Err(CallError::CallingSelf),
            _ => Err(CallError::BadMessage(text())),
        }
    }

    fn start_timer<M: Serialize>(
        &self,
        after: Duration,
        interval: bool,
        msg: &M,
    ) -> Result<TimerRef, CodecError> {
        let bytes = codec::encode(msg)?;
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: as in `send`.
        let id = unsafe {
            (self.host.start_timer)(self.host.ctx, ms, u32::from(interval), Slice::new(&bytes))
        };
        Ok(TimerRef(id))
    }

    /// Sends `msg` to this process (to `handle_info`) once, after `after`.
    pub fn send_after<M: Serialize>(
        &self,
        after: Duration,
        msg: &M,
    ) -> Result<TimerRef, CodecError> {
        self.start_timer(after, false, msg)
    }

    /// Sends `msg` to this process (to `handle_info`) every `every`, until cancelled.
    pub fn send_interval<M: Serialize>(
        &self,
        every: Duration,
        msg: &M,
    ) -> Result<TimerRef, CodecError> {
        self.start_timer(every, true, msg)
    }

    /// Cancels a timer; returns true if it had not fired (or, for an interval, was running).
    pub fn cancel_timer(&self, timer: TimerRef) -> bool {
        // SAFETY: as in `send`.
        unsafe { (self.host.cancel_timer)(self.host.ctx, timer.0) == 1 }
    }

    /// Links this process to `pid`: if either exits abnormally, the other gets the exit signal.
    pub fn link(&self, pid: Pid) -> bool {
        // SAFETY: as in `send`.
        unsafe { (self.host.link)(self.host.ctx, pid.0) == 0 }
    }

    /// Removes a link.
    pub fn unlink(&self, pid: Pid) {
        // SAFETY: as in `send`.
        unsafe { (self.host.unlink)(self.host.ctx, pid.0) }
    }

    /// Monitors `pid`: an `Info::Down` arrives when it exits (at once if it does not exist).
    pub fn monitor(&self, pid: Pid) -> MonitorRef {
        // SAFETY: as in `send`.
        MonitorRef(unsafe { (self.host.monitor)(self.host.ctx, pid.0) })
    }

    /// Removes a monitor.
    pub fn demonitor(&self, monitor: MonitorRef) {
        // SAFETY: as in `send`.
        unsafe { (self.host.demonitor)(self.host.ctx, monitor.0) }
    }

    /// Turns exit signals from linked processes into `Info::Exit` messages (true) or
    /// lets an abnormal one stop this process (false, the default).
    pub fn trap_exit(&self, on: bool) {
        // SAFETY: as in `send`.
        unsafe { (self.host.trap_exit)(self.host.ctx, u32::from(on)) }
    }

    /// Registers this process under `name`; false if the name is taken, or if this process is
    /// already registered under another name (a process has one name, as in Erlang; the node
    /// logs the refusal with the name held). Registering the name it holds again is true. The
    /// name is freed when the process exits.
    pub fn register(&self, name: &str) -> bool {
        // SAFETY: as in `send`.
        unsafe { (self.host.register)(self.host.ctx, Slice::new(name.as_bytes())) == 0 }
    }

    /// Looks up a registered name.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        // SAFETY: as in `send`.
        let pid = unsafe { (self.host.whereis)(self.host.ctx, Slice::new(name.as_bytes())) };
        (pid != 0).then_some(Pid(pid))
    }

    /// Writes a line to the node's log, tagged with this process.
    pub fn log(&self, level: LogLevel, line: &str) {
        // SAFETY: as in `send`.
        unsafe { (self.host.log)(self.host.ctx, level as u32, Slice::new(line.as_bytes())) }
    }

    /// Reads a key of this process's application configuration.
    pub fn env(&self, key: &str) -> Option<ConfigValue> {
        let mut out = Vec::new();
        let sink = Sink::for_vec(&mut out);
        // SAFETY: as in `call`.
        let rc = unsafe { (self.host.env_get)(self.host.ctx, Slice::new(key.as_bytes()), &sink) };
        if rc != 0 {
            return None;
        }
        codec::decode(&out).ok()
    }

    /// Opens a TCP listener on `addr` (`host:port`; port 0 picks a free port), owned by this
    /// process. Returns the listener and the address it is bound to. Each accepted connection
    /// arrives as [`crate::Info::TcpAccepted`]; the listener stays open across upgrades of
    /// this process's module and closes when this process exits or calls
    /// [`Context::tcp_close`].
    pub fn tcp_listen(&self, addr: &str) -> Result<(PortId, String), TcpError> {
        let mut out = Vec::new();
        let sink = Sink::for_vec(&mut out);
        // SAFETY: as in `call`.
        let id =
            unsafe { (self.host.tcp_listen)(self.host.ctx, Slice::new(addr.as_bytes()), &sink) };
        let text = String::from_utf8_lossy(&out).into_owned();
        if id == 0 {
            Err(TcpError::Listen(text))
        } else {
            Ok((PortId(id), text))
        }
    }

    /// Opens an outbound TCP connection to `addr` (`host:port`; a host name is resolved by
    /// the system's resolver, which may block this process), owned by this process, without
    /// waiting for it: [`crate::Info::TcpConnected`] arrives once it is established (then its
    /// bytes as [`crate::Info::TcpData`]), or [`crate::Info::TcpClosed`] if it fails (refused,
    /// unreachable). [`Context::tcp_send`] may be called at once: output waits for the
    /// connection. Like an accepted connection it is the node's: it stays open across every
    /// upgrade, downgrade and rollback of this process's module, is read with the same
    /// back-pressure, and closes when this process exits or calls [`Context::tcp_close`].
    pub fn tcp_connect(&self, addr: &str) -> Result<PortId, TcpError> {
        let mut out = Vec::new();
        let sink = Sink::for_vec(&mut out);
        // SAFETY: as in `call`.
        let id =
            unsafe { (self.host.tcp_connect)(self.host.ctx, Slice::new(addr.as_bytes()), &sink) };
        if id == 0 {
            Err(TcpError::Connect(
                String::from_utf8_lossy(&out).into_owned(),
            ))
        } else {
            Ok(PortId(id))
        }
    }

    /// Queues `bytes` for sending on connection `conn`, in order with earlier sends. Any
    /// process may send on any connection. It never blocks: what the socket does not take at
    /// once is kept by the node (reads of that connection pause while much is kept, and past
    /// the hard limit the connection is closed with [`TcpError::OutputFull`]).
    pub fn tcp_send(&self, conn: PortId, bytes: &[u8]) -> Result<(), TcpError> {
        // SAFETY: as in `send`.
        let rc = unsafe { (self.host.tcp_send)(self.host.ctx, conn.0, Slice::new(bytes)) };
        port_result(rc, conn, Pid(0))
    }

    /// Closes a connection (once its queued output is sent) or a listener. No
    /// [`crate::Info::TcpClosed`] follows a close asked for by the owner.
    pub fn tcp_close(&self, port: PortId) -> Result<(), TcpError> {
        // SAFETY: as in `send`.
        let rc = unsafe { (self.host.tcp_close)(self.host.ctx, port.0) };
        port_result(rc, port, Pid(0))
    }

    /// Makes `pid` the owner of connection `conn` (Erlang's `controlling_process`) and starts
    /// delivering its bytes there. A freshly accepted connection is not read until its owner
    /// calls this, so no byte reaches a process that is about to hand the connection over.
    /// Only the current owner may call it; `pid` may be its own pid.
    pub fn tcp_set_owner(&self, conn: PortId, pid: Pid) -> Result<(), TcpError> {
        // SAFETY: as in `send`.
        let rc = unsafe { (self.host.tcp_set_owner)(self.host.ctx, conn.0, pid.0) };
        port_result(rc, conn, pid)
    }
}
