//! The process context ([`ProcCx`]) and the `HostApi` table that hands it to module code.

use crate::node::NodeInner;
use crate::process::{InfoMsg, Payload, Process, SysMsg};
use relup_module::abi::{HostApi, Sink, Slice, call_status, port_status};
use relup_module::{ExitReason, Pid, PortId, Target};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

/// What runtime code can do on behalf of the process currently running.
pub(crate) struct ProcCx<'a> {
    pub(crate) node: &'a Arc<NodeInner>,
    pub(crate) process: &'a Arc<Process>,
}

impl ProcCx<'_> {
    pub(crate) fn pid(&self) -> Pid {
        self.process.pid
    }

    pub(crate) fn log_warn(&self, line: &str) {
        self.node.log(1, Some(self.process), line);
    }

    pub(crate) fn link(&self, other: Pid) -> bool {
        if other == self.pid() {
            return true;
        }
        if self.node.send_sys(other, SysMsg::Link(self.pid())).is_err() {
            return false;
        }
        self.process.signals.lock().links.insert(other);
        true
    }

    pub(crate) fn unlink(&self, other: Pid) {
        self.process.signals.lock().links.remove(&other);
        let _ = self.node.send_sys(other, SysMsg::Unlink(self.pid()));
    }

    pub(crate) fn monitor(&self, other: Pid) -> u64 {
        let reference = self.node.make_ref();
        let request = SysMsg::Monitor {
            from: self.pid(),
            reference,
        };
        if self.node.send_sys(other, request).is_ok() {
            self.process
                .signals
                .lock()
                .monitoring
                .insert(reference, other);
        } else {
            let down = InfoMsg::Down {
                reference,
                pid: other,
                reason: ExitReason::Error("noproc".into()),
            };
            self.node.send_info(self.pid(), down);
        }
        reference
    }

    pub(crate) fn demonitor(&self, reference: u64) {
        let target = self.process.signals.lock().monitoring.remove(&reference);
        if let Some(target) = target {
            let _ = self.node.send_sys(target, SysMsg::Demonitor { reference });
        }
    }

    pub(crate) fn set_trap_exit(&self, on: bool) {
        self.process.signals.lock().trap_exit = on;
    }
}

/// Builds the host table for one callback of the process behind `cx`.
pub(crate) fn api(cx: &ProcCx<'_>) -> HostApi {
    HostApi {
        abi_version: relup_module::abi::ABI_VERSION,
        ctx: cx as *const ProcCx<'_> as *mut c_void,
        self_pid: host_self_pid,
        send: host_send,
        cast: host_cast,
        call: host_call,
        start_timer: host_start_timer,
        cancel_timer: host_cancel_timer,
        link: host_link,
        unlink: host_unlink,
        monitor: host_monitor,
        demonitor: host_demonitor,
        trap_exit: host_trap_exit,
        register: host_register,
        whereis: host_whereis,
        log: host_log,
        env_get: host_env_get,
        tcp_listen: host_tcp_listen,
        tcp_send: host_tcp_send,
        tcp_close: host_tcp_close,
        tcp_set_owner: host_tcp_set_owner,
    }
}

/// Runs a host function with the context behind `ctx`; a panic (a runtime bug) returns `fallback`.
fn with_cx<R>(ctx: *mut c_void, fallback: R, body: impl FnOnce(&ProcCx<'_>) -> R) -> R {
    if ctx.is_null() {
        return fallback;
    }
    // SAFETY: `ctx` was made by `api` from a `ProcCx` that outlives the callback.
    let cx = unsafe { &*(ctx as *const ProcCx<'_>) };
    catch_unwind(AssertUnwindSafe(|| body(cx))).unwrap_or(fallback)
}

/// # Safety
/// `slice` must be valid for the call.
unsafe fn bytes<'a>(slice: Slice) -> &'a [u8] {
    // SAFETY: guaranteed by the caller (the module passes slices valid for the call).
    unsafe { slice.as_bytes() }
}

fn target(pid: u64, name: &[u8]) -> Option<Target<'_>> {
    if pid != 0 {
        Some(Target::Pid(Pid(pid)))
    } else {
        std::str::from_utf8(name).ok().map(Target::Name)
    }
}

unsafe extern "C" fn host_self_pid(ctx: *mut c_void) -> u64 {
    with_cx(ctx, 0, |cx| cx.pid().0)
}

unsafe extern "C" fn host_send(ctx: *mut c_void, pid: u64, name: Slice, msg: Slice) -> i32 {
    // SAFETY: slices valid for the call.
    let (name, msg) = unsafe { (bytes(name), bytes(msg)) };
    with_cx(ctx, 1, |cx| {
        let Some(to) = target(pid, name).and_then(|t| cx.node.resolve(&t)) else {
            return 1;
        };
        i32::from(
            !cx.node
                .send_info(to, InfoMsg::Message(Payload::Bytes(msg.to_vec()))),
        )
    })
}

unsafe extern "C" fn host_cast(ctx: *mut c_void, pid: u64, name: Slice, msg: Slice) -> i32 {
    // SAFETY: slices valid for the call.
    let (name, msg) = unsafe { (bytes(name), bytes(msg)) };
    with_cx(ctx, 1, |cx| {
        let Some(to) = target(pid, name).and_then(|t| cx.node.resolve(&t)) else {
            return 1;
        };
        i32::from(!cx.node.cast_payload(to, Payload::Bytes(msg.to_vec())))
    })
}

unsafe extern "C" fn host_call(
    ctx: *mut c_void,
    pid: u64,
    name: Slice,
    msg: Slice,
    timeout_ms: u64,
    out: *const Sink,
) -> i32 {
    // SAFETY: slices valid for the call.
    let (name, msg) = unsafe { (bytes(name), bytes(msg)) };
    let put = |b: &[u8]| {
        if !out.is_null() {
            // SAFETY: the module's sink is valid for the call.
            unsafe { (*out).put(b) }
        }
    };
    with_cx(ctx, call_status::NO_PROC, |cx| {
        let Some(to) = target(pid, name) else {
            return call_status::NO_PROC;
        };
        let timeout = Duration::from_millis(timeout_ms);
        match cx
            .node
            .call_payload(&to, Some(cx.pid()), Payload::Bytes(msg.to_vec()), timeout)
        {
            Ok(Payload::Bytes(reply)) => {
                put(&reply);
                call_status::OK
            }
            Ok(Payload::Internal(_)) => {
                put(b"the callee answered with a runtime-internal value");
                call_status::BAD_MESSAGE
            }
            Err(crate::error::CallError::Timeout(_)) => call_status::TIMEOUT,
            Err(crate::error::CallError::NoProc(_)) => call_status::NO_PROC,
            Err(crate::error::CallError::CallingSelf) => call_status::CALLING_SELF,
            Err(crate::error::CallError::Exited { reason, .. }) => {
                put(reason.to_text().as_bytes());
                call_status::EXITED
            }
            Err(crate::error::CallError::BadMessage(text)) => {
                put(text.as_bytes());
                call_status::BAD_MESSAGE
            }
        }
    })
}

unsafe extern "C" fn host_start_timer(
    ctx: *mut c_void,
    delay_ms: u64,
    interval: u32,
    msg: Slice,
) -> u64 {
    // SAFETY: slice valid for the call.
    let msg = unsafe { bytes(msg) };
    with_cx(ctx, 0, |cx| {
        cx.node.timers.start_timer(
            cx.pid(),
            Duration::from_millis(delay_ms),
            interval != 0,
            msg.to_vec(),
        )
    })
}

unsafe extern "C" fn host_cancel_timer(ctx: *mut c_void, timer: u64) -> i32 {
    with_cx(ctx, 0, |cx| i32::from(cx.node.timers.cancel(timer)))
}

unsafe extern "C" fn host_link(ctx: *mut c_void, pid: u64) -> i32 {
    with_cx(ctx, 1, |cx| i32::from(!cx.link(Pid(pid))))
}

unsafe extern "C" fn host_unlink(ctx: *mut c_void, pid: u64) {
    with_cx(ctx, (), |cx| cx.unlink(Pid(pid)))
}

unsafe extern "C" fn host_monitor(ctx: *mut c_void, pid: u64) -> u64 {
    with_cx(ctx, 0, |cx| cx.monitor(Pid(pid)))
}

unsafe extern "C" fn host_demonitor(ctx: *mut c_void, reference: u64) {
    with_cx(ctx, (), |cx| cx.demonitor(reference))
}

unsafe extern "C" fn host_trap_exit(ctx: *mut c_void, on: u32) {
    with_cx(ctx, (), |cx| cx.set_trap_exit(on != 0))
}

unsafe extern "C" fn host_register(ctx: *mut c_void, name: Slice) -> i32 {
    // SAFETY: slice valid for the call.
    let name = unsafe { bytes(name) };
    with_cx(ctx, 1, |cx| match std::str::from_utf8(name) {
        Ok(name) => i32::from(cx.node.register(name, cx.process).is_err()),
        Err(_) => 1,
    })
}

unsafe extern "C" fn host_whereis(ctx: *mut c_void, name: Slice) -> u64 {
    // SAFETY: slice valid for the call.
    let name = unsafe { bytes(name) };
    with_cx(ctx, 0, |cx| {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| cx.node.whereis(n))
            .map_or(0, |p| p.0)
    })
}

unsafe extern "C" fn host_log(ctx: *mut c_void, level: u32, line: Slice) {
    // SAFETY: slice valid for the call.
    let line = unsafe { bytes(line) };
    with_cx(ctx, (), |cx| {
        cx.node
            .log(level, Some(cx.process), &String::from_utf8_lossy(line))
    })
}

unsafe extern "C" fn host_env_get(ctx: *mut c_void, key: Slice, out: *const Sink) -> i32 {
    // SAFETY: slice valid for the call.
    let key = unsafe { bytes(key) };
    with_cx(ctx, 1, |cx| {
        let Ok(key) = std::str::from_utf8(key) else {
            return 1;
        };
        let Some(app) = cx.process.app.as_deref() else {
            return 1;
        };
        let Some(value) = cx.node.env(app, key) else {
            return 1;
        };
        let Ok(encoded) = relup_module::codec::encode(&value) else {
            return 1;
        };
        if !out.is_null() {
            // SAFETY: the module's sink is valid for the call.
            unsafe { (*out).put(&encoded) }
        }
        0
    })
}

unsafe extern "C" fn host_tcp_listen(ctx: *mut c_void, addr: Slice, out: *const Sink) -> u64 {
    // SAFETY: slice valid for the call.
    let addr = unsafe { bytes(addr) };
    let put = |b: &[u8]| {
        if !out.is_null() {
            // SAFETY: the module's sink is valid for the call.
            unsafe { (*out).put(b) }
        }
    };
    with_cx(ctx, 0, |cx| {
        let Ok(addr) = std::str::from_utf8(addr) else {
            put(b"the address is not UTF-8");
            return 0;
        };
        match cx.node.ports.listen(cx.node, cx.pid(), addr) {
            Ok((id, local)) => {
                put(local.to_string().as_bytes());
                id.0
            }
            Err(e) => {
                put(e.to_string().as_bytes());
                0
            }
        }
    })
}

unsafe extern "C" fn host_tcp_send(ctx: *mut c_void, port: u64, data: Slice) -> i32 {
    // SAFETY: slice valid for the call.
    let data = unsafe { bytes(data) };
    with_cx(ctx, port_status::NO_PORT, |cx| {
        match cx.node.ports.send(PortId(port), data) {
            Ok(()) => port_status::OK,
            Err(e) => e.status(),
        }
    })
}

unsafe extern "C" fn host_tcp_close(ctx: *mut c_void, port: u64) -> i32 {
    with_cx(ctx, port_status::NO_PORT, |cx| {
        match cx.node.ports.close(PortId(port)) {
            Ok(()) => port_status::OK,
            Err(e) => e.status(),
        }
    })
}

unsafe extern "C" fn host_tcp_set_owner(ctx: *mut c_void, port: u64, pid: u64) -> i32 {
    with_cx(ctx, port_status::NO_PORT, |cx| {
        match cx
            .node
            .ports
            .set_owner(cx.node, PortId(port), Some(cx.pid()), Pid(pid))
        {
            Ok(()) => port_status::OK,
            Err(e) => e.status(),
        }
    })
}
