//! The process context ([`ProcCx`]) and the `HostApi` table that hands it to module code.

use crate::node::NodeInner;
use crate::ports::PortError;
use crate::process::{InfoMsg, Payload, Process, SysMsg};
use crate::tables::{Access, TableError};
use relup_module::abi::{
    HostApi, STATUS_OK, Sink, Slice, TransformFn, call_status, port_status, table_flags,
    table_status,
};
use relup_module::{ExitReason, Pid, PortId, TableId, Target};
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
        table_open: host_table_open,
        table_insert: host_table_insert,
        table_lookup: host_table_lookup,
        table_remove: host_table_remove,
        table_update_counter: host_table_update_counter,
        table_scan: host_table_scan,
        table_size: host_table_size,
        table_delete: host_table_delete,
        table_set_heir: host_table_set_heir,
        table_transform: host_table_transform,
        tcp_connect: host_tcp_connect,
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
            // Only host threads' calls are forwarded; said as an exit for completeness.
            Err(crate::error::CallError::Forwarded(text)) => {
                put(text.as_bytes());
                call_status::EXITED
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
            .log_module(level, cx.process, &String::from_utf8_lossy(line))
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

/// The body of `tcp_listen` and `tcp_connect`: the address as UTF-8, `open` run on it for the
/// calling process; the port id, or 0 with the error text written to `out`. `open` may
/// write text of its own through the writer it is given (the bound address).
///
/// # Safety
/// `addr` and `out` as the host functions receive them: valid for the call.
unsafe fn open_port(
    ctx: *mut c_void,
    addr: Slice,
    out: *const Sink,
    open: impl FnOnce(&ProcCx<'_>, &str, &dyn Fn(&[u8])) -> Result<PortId, PortError>,
) -> u64 {
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
        match open(cx, addr, &put) {
            Ok(id) => id.0,
            Err(e) => {
                put(e.to_string().as_bytes());
                0
            }
        }
    })
}

unsafe extern "C" fn host_tcp_listen(ctx: *mut c_void, addr: Slice, out: *const Sink) -> u64 {
    // SAFETY: passed on as received.
    unsafe {
        open_port(ctx, addr, out, |cx, addr, put| {
            let (id, local) = cx.node.ports.listen(cx.node, cx.pid(), addr)?;
            put(local.to_string().as_bytes());
            Ok(id)
        })
    }
}

unsafe extern "C" fn host_tcp_connect(ctx: *mut c_void, addr: Slice, out: *const Sink) -> u64 {
    // SAFETY: passed on as received.
    unsafe {
        open_port(ctx, addr, out, |cx, addr, _| {
            cx.node.ports.connect(cx.node, cx.pid(), addr)
        })
    }
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

/// Writes `bytes` to a module's sink, if it gave one.
fn put_to(out: *const Sink, bytes: &[u8]) {
    if !out.is_null() {
        // SAFETY: the module's sink is valid for the call.
        unsafe { (*out).put(bytes) }
    }
}

/// The status of a table operation's result.
fn table_rc(result: Result<(), TableError>) -> i32 {
    match result {
        Ok(()) => table_status::OK,
        Err(e) => e.status(),
    }
}

unsafe extern "C" fn host_table_open(
    ctx: *mut c_void,
    name: Slice,
    flags: u32,
    out: *const Sink,
) -> u64 {
    // SAFETY: slice valid for the call.
    let name = unsafe { bytes(name) };
    let fail = |status: i32, text: &str| {
        put_to(out, &status.to_le_bytes());
        put_to(out, text.as_bytes());
        0
    };
    with_cx(ctx, 0, |cx| {
        let Ok(name) = std::str::from_utf8(name) else {
            return fail(table_status::BAD_ARG, "the table name is not UTF-8");
        };
        let access = if flags & table_flags::PUBLIC != 0 {
            Access::Public
        } else {
            Access::Protected
        };
        match cx.node.tables.open(
            cx.process,
            name,
            flags & table_flags::CREATE != 0,
            flags & table_flags::EXCLUSIVE != 0,
            access,
        ) {
            Ok(id) => id.0,
            Err(e) => fail(e.status(), &e.to_string()),
        }
    })
}

unsafe extern "C" fn host_table_insert(
    ctx: *mut c_void,
    table: u64,
    key: Slice,
    value: Slice,
) -> i32 {
    // SAFETY: slices valid for the call.
    let (key, value) = unsafe { (bytes(key), bytes(value)) };
    with_cx(ctx, table_status::NO_TABLE, |cx| {
        table_rc(
            cx.node
                .tables
                .insert(Some(cx.pid()), TableId(table), key, value),
        )
    })
}

unsafe extern "C" fn host_table_lookup(
    ctx: *mut c_void,
    table: u64,
    key: Slice,
    out: *const Sink,
) -> i32 {
    // SAFETY: slice valid for the call.
    let key = unsafe { bytes(key) };
    with_cx(ctx, table_status::NO_TABLE, |cx| {
        // Written to the module's sink under the table's read lock: one copy, never torn.
        let found = cx.node.tables.lookup_with(TableId(table), key, |value| {
            value.map(|v| put_to(out, v)).is_some()
        });
        match found {
            Ok(true) => table_status::OK,
            Ok(false) => table_status::NOT_FOUND,
            Err(e) => e.status(),
        }
    })
}

unsafe extern "C" fn host_table_remove(ctx: *mut c_void, table: u64, key: Slice) -> i32 {
    // SAFETY: slice valid for the call.
    let key = unsafe { bytes(key) };
    with_cx(ctx, table_status::NO_TABLE, |cx| {
        match cx.node.tables.remove(Some(cx.pid()), TableId(table), key) {
            Ok(true) => table_status::OK,
            Ok(false) => table_status::NOT_FOUND,
            Err(e) => e.status(),
        }
    })
}

unsafe extern "C" fn host_table_update_counter(
    ctx: *mut c_void,
    table: u64,
    key: Slice,
    incr: i64,
    default: i64,
    result: *mut i64,
) -> i32 {
    // SAFETY: slice valid for the call.
    let key = unsafe { bytes(key) };
    with_cx(ctx, table_status::NO_TABLE, |cx| {
        match cx
            .node
            .tables
            .update_counter(Some(cx.pid()), TableId(table), key, incr, default)
        {
            Ok(value) => {
                if !result.is_null() {
                    // SAFETY: the module passes a pointer to an i64 valid for the call.
                    unsafe { *result = value };
                }
                table_status::OK
            }
            Err(e) => e.status(),
        }
    })
}

unsafe extern "C" fn host_table_scan(
    ctx: *mut c_void,
    table: u64,
    from: Slice,
    exclusive: u32,
    prefix: Slice,
    limit: u32,
    out: *const Sink,
) -> i32 {
    // SAFETY: slices valid for the call.
    let (from, prefix) = unsafe { (bytes(from), bytes(prefix)) };
    with_cx(ctx, table_status::NO_TABLE, |cx| {
        let mut buf = Vec::new();
        let scanned = cx.node.tables.scan_with(
            TableId(table),
            from,
            exclusive != 0,
            prefix,
            limit as usize,
            |key, value| {
                // Keys and values longer than u32::MAX cannot be inserted through the ABI's
                // usize lengths on any machine that runs this, but stay correct if they were.
                for field in [key, value] {
                    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
                    buf.extend_from_slice(&len.to_le_bytes());
                    buf.extend_from_slice(&field[..len as usize]);
                }
            },
        );
        match scanned {
            Ok(_) => {
                put_to(out, &buf);
                table_status::OK
            }
            Err(e) => e.status(),
        }
    })
}

unsafe extern "C" fn host_table_size(ctx: *mut c_void, table: u64, size: *mut u64) -> i32 {
    with_cx(ctx, table_status::NO_TABLE, |cx| {
        match cx.node.tables.size(TableId(table)) {
            Ok(n) => {
                if !size.is_null() {
                    // SAFETY: the module passes a pointer to a u64 valid for the call.
                    unsafe { *size = n as u64 };
                }
                table_status::OK
            }
            Err(e) => e.status(),
        }
    })
}

unsafe extern "C" fn host_table_delete(ctx: *mut c_void, table: u64) -> i32 {
    with_cx(ctx, table_status::NO_TABLE, |cx| {
        table_rc(cx.node.tables.delete(Some(cx.pid()), TableId(table)))
    })
}

unsafe extern "C" fn host_table_set_heir(
    ctx: *mut c_void,
    table: u64,
    heir: u64,
    msg: Slice,
) -> i32 {
    // SAFETY: slice valid for the call.
    let msg = unsafe { bytes(msg) };
    with_cx(ctx, table_status::NO_TABLE, |cx| {
        let heir = (heir != 0).then(|| (Pid(heir), msg.to_vec()));
        if let Some((pid, _)) = &heir
            && (*pid == cx.pid() || cx.node.lookup(*pid).is_none_or(|p| p.is_dead()))
        {
            return table_status::NO_PROC;
        }
        table_rc(cx.node.tables.set_heir(cx.pid(), TableId(table), heir))
    })
}

unsafe extern "C" fn host_table_transform(
    ctx: *mut c_void,
    table: u64,
    chunk: u32,
    transform: TransformFn,
    user: *const c_void,
    out: *const Sink,
) -> i32 {
    /// The module's `user` pointer, shared by the transform threads.
    struct User(*const c_void);
    // SAFETY: the module promises its transform may run on several threads at once
    // (`Context::table_transform` requires `Sync` of what the pointer points to).
    unsafe impl Sync for User {}
    let user = User(user);
    with_cx(ctx, table_status::NO_TABLE, |cx| {
        let user = &user;
        let f = move |key: &[u8], value: &[u8]| -> Result<Vec<u8>, String> {
            let mut new = Vec::new();
            // SAFETY: the function and `user` come from the module, valid for this whole
            // host call; the slices and the sink outlive the call; it catches its panics.
            let status = unsafe {
                transform(
                    user.0,
                    Slice::new(key),
                    Slice::new(value),
                    &Sink::for_vec(&mut new),
                )
            };
            if status == STATUS_OK {
                Ok(new)
            } else {
                Err(String::from_utf8_lossy(&new).into_owned())
            }
        };
        let threads = cx.node.scheduler.size().max(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        );
        // A long transform blocks this scheduler thread: the pool compensates as for a call.
        let result = cx.node.scheduler.blocking(cx.node, || {
            cx.node
                .tables
                .transform(Some(cx.pid()), TableId(table), chunk as usize, threads, &f)
        });
        match result {
            Ok(count) => {
                put_to(out, &(count as u64).to_le_bytes());
                table_status::OK
            }
            Err(e) => {
                if let TableError::Transform { reason, .. } = &e {
                    put_to(out, reason.as_bytes());
                }
                e.status()
            }
        }
    })
}
