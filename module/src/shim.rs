//! The `extern "C"` entry points generated for a [`Server`] type, and its descriptor.
//!
//! Every entry point catches panics (a panic must never unwind into the runtime) and reports
//! them as [`STATUS_PANIC`] with the panic message.

use crate::abi::{
    ABI_VERSION, HostApi, InfoFfi, Instance, ModuleDescriptor, STATUS_BAD_MESSAGE, STATUS_ERROR,
    STATUS_OK, STATUS_PANIC, STATUS_STOP, Sink, Slice, direction, info_kind,
};
use crate::codec;
use crate::context::Context;
use crate::server::{Direction, OldState, Server};
use crate::types::{CloseReason, ConfigChange, ExitReason, Info, MonitorRef, Pid, PortId};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Builds the descriptor of server type `S` named `name` at `version`.
///
/// [`crate::export_module!`] calls it for a cdylib; the runtime calls it directly for a server
/// type linked into the service binary.
pub fn descriptor<S: Server>(name: &'static str, version: &'static str) -> ModuleDescriptor {
    ModuleDescriptor {
        abi_version: ABI_VERSION,
        descriptor_size: std::mem::size_of::<ModuleDescriptor>() as u32,
        name: Slice::new(name.as_bytes()),
        version: Slice::new(version.as_bytes()),
        init: init::<S>,
        handle_call: handle_call::<S>,
        handle_cast: handle_cast::<S>,
        handle_info: handle_info::<S>,
        terminate: terminate::<S>,
        export_state: export_state::<S>,
        code_change: code_change::<S>,
        config_change: config_change::<S>,
        health: health::<S>,
        apply: apply::<S>,
        drop_instance: drop_instance::<S>,
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic: (non-string payload)".to_string()
    }
}

/// Runs `body`, turning a panic into `STATUS_PANIC` with its message written to `out`.
fn guarded(out: *const Sink, body: impl FnOnce() -> i32) -> i32 {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(status) => status,
        Err(payload) => {
            put(out, panic_text(payload).as_bytes());
            STATUS_PANIC
        }
    }
}

fn put(out: *const Sink, bytes: &[u8]) {
    if out.is_null() {
        return;
    }
    // SAFETY: the runtime passes a sink valid for the duration of the call.
    unsafe { (*out).put(bytes) }
}

/// Writes the stop reason, if the callback asked to stop.
fn stop_status(ctx: &mut Context<'_>, out: *const Sink) -> i32 {
    match ctx.take_stop() {
        Some(reason) => {
            put(out, reason.to_text().as_bytes());
            STATUS_STOP
        }
        None => STATUS_OK,
    }
}

/// # Safety
/// `instance` must come from this module's `init` or `code_change` and not be dropped.
unsafe fn state<'a, S>(instance: Instance) -> &'a mut S {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(instance as *mut S) }
}

unsafe extern "C" fn init<S: Server>(
    host: *const HostApi,
    args: Slice,
    instance: *mut Instance,
    out: *const Sink,
) -> i32 {
    guarded(out, || {
        // SAFETY: the runtime passes valid pointers for the duration of the call.
        let (host, args) = unsafe { (&*host, args.as_bytes()) };
        let args = match codec::decode_args::<S::Args>(args) {
            Ok(a) => a,
            Err(e) => {
                put(out, format!("bad init args: {e}").as_bytes());
                return STATUS_BAD_MESSAGE;
            }
        };
        let mut ctx = Context::new(host);
        match S::init(args, &mut ctx) {
            Ok(server) => {
                // SAFETY: `instance` is a valid out-pointer.
                unsafe { *instance = Box::into_raw(Box::new(server)) as Instance };
                STATUS_OK
            }
            Err(reason) => {
                put(out, reason.as_bytes());
                STATUS_ERROR
            }
        }
    })
}

unsafe extern "C" fn handle_call<S: Server>(
    instance: Instance,
    host: *const HostApi,
    msg: Slice,
    reply: *const Sink,
    reason: *const Sink,
) -> i32 {
    guarded(reason, || {
        // SAFETY: valid pointers for the call; the instance is ours.
        let (server, host, msg) = unsafe { (state::<S>(instance), &*host, msg.as_bytes()) };
        let request = match codec::decode::<S::Call>(msg) {
            Ok(r) => r,
            Err(e) => {
                put(reason, e.0.as_bytes());
                return STATUS_BAD_MESSAGE;
            }
        };
        let mut ctx = Context::new(host);
        let answer = server.handle_call(request, &mut ctx);
        match codec::encode(&answer) {
            Ok(bytes) => put(reply, &bytes),
            Err(e) => {
                put(reason, e.0.as_bytes());
                return STATUS_ERROR;
            }
        }
        stop_status(&mut ctx, reason)
    })
}

unsafe extern "C" fn handle_cast<S: Server>(
    instance: Instance,
    host: *const HostApi,
    msg: Slice,
    out: *const Sink,
) -> i32 {
    guarded(out, || {
        // SAFETY: valid pointers for the call; the instance is ours.
        let (server, host, msg) = unsafe { (state::<S>(instance), &*host, msg.as_bytes()) };
        let message = match codec::decode::<S::Cast>(msg) {
            Ok(m) => m,
            Err(e) => {
                put(out, e.0.as_bytes());
                return STATUS_BAD_MESSAGE;
            }
        };
        let mut ctx = Context::new(host);
        server.handle_cast(message, &mut ctx);
        stop_status(&mut ctx, out)
    })
}

unsafe extern "C" fn handle_info<S: Server>(
    instance: Instance,
    host: *const HostApi,
    info: *const InfoFfi,
    out: *const Sink,
) -> i32 {
    guarded(out, || {
        // SAFETY: valid pointers for the call; the instance is ours.
        let (server, host, info) = unsafe { (state::<S>(instance), &*host, &*info) };
        // SAFETY: the payload slice is valid for the call.
        let payload = unsafe { info.payload.as_bytes() };
        let reason = || ExitReason::from_text(&String::from_utf8_lossy(payload));
        let decoded = match info.kind {
            info_kind::MESSAGE => match codec::decode::<S::Info>(payload) {
                Ok(m) => Info::Message(m),
                Err(e) => {
                    put(out, e.0.as_bytes());
                    return STATUS_BAD_MESSAGE;
                }
            },
            info_kind::DOWN => Info::Down {
                monitor: MonitorRef(info.reference),
                pid: Pid(info.pid),
                reason: reason(),
            },
            info_kind::EXIT => Info::Exit {
                pid: Pid(info.pid),
                reason: reason(),
            },
            info_kind::TCP_ACCEPTED => Info::TcpAccepted {
                listener: PortId(info.reference),
                conn: PortId(info.port),
                peer: String::from_utf8_lossy(payload).into_owned(),
            },
            info_kind::TCP_DATA => Info::TcpData {
                conn: PortId(info.port),
                bytes: payload.to_vec(),
            },
            info_kind::TCP_CONNECTED => Info::TcpConnected {
                conn: PortId(info.port),
                peer: String::from_utf8_lossy(payload).into_owned(),
            },
            info_kind::TCP_CLOSED => Info::TcpClosed {
                port: PortId(info.port),
                reason: CloseReason::from_text(&String::from_utf8_lossy(payload)),
            },
            other => {
                put(out, format!("unknown info kind {other}").as_bytes());
                return STATUS_BAD_MESSAGE;
            }
        };
        let mut ctx = Context::new(host);
        server.handle_info(decoded, &mut ctx);
        stop_status(&mut ctx, out)
    })
}

unsafe extern "C" fn terminate<S: Server>(
    instance: Instance,
    host: *const HostApi,
    reason: Slice,
    out: *const Sink,
) -> i32 {
    guarded(out, || {
        // SAFETY: valid pointers for the call; the instance is ours.
        let (server, host, reason) = unsafe { (state::<S>(instance), &*host, reason.as_bytes()) };
        let reason = ExitReason::from_text(&String::from_utf8_lossy(reason));
        let mut ctx = Context::new(host);
        server.terminate(&reason, &mut ctx);
        STATUS_OK
    })
}

unsafe extern "C" fn export_state<S: Server>(instance: Instance, out: *const Sink) -> i32 {
    guarded(out, || {
        // SAFETY: the instance is ours.
        let server = unsafe { state::<S>(instance) };
        match codec::encode(server) {
            Ok(bytes) => {
                put(out, &bytes);
                STATUS_OK
            }
            Err(e) => {
                put(out, e.0.as_bytes());
                STATUS_ERROR
            }
        }
    })
}

unsafe extern "C" fn code_change<S: Server>(
    old_vsn: Slice,
    dir: u32,
    old_state: Slice,
    extra: Slice,
    instance: *mut Instance,
    out: *const Sink,
) -> i32 {
    guarded(out, || {
        // SAFETY: the slices are valid for the call.
        let (old_vsn, old_state, extra) =
            unsafe { (old_vsn.as_bytes(), old_state.as_bytes(), extra.as_bytes()) };
        if dir == direction::RESTORE {
            return match codec::decode::<S>(old_state) {
                Ok(server) => {
                    // SAFETY: `instance` is a valid out-pointer.
                    unsafe { *instance = Box::into_raw(Box::new(server)) as Instance };
                    STATUS_OK
                }
                Err(e) => {
                    put(
                        out,
                        format!("snapshot state does not decode: {}", e.0).as_bytes(),
                    );
                    STATUS_ERROR
                }
            };
        }
        let from_vsn = String::from_utf8_lossy(old_vsn);
        let direction = if dir == direction::DOWN {
            Direction::Down
        } else {
            Direction::Up
        };
        let old = OldState {
            from_vsn: &from_vsn,
            direction,
            bytes: old_state,
            extra,
        };
        match S::code_change(old) {
            Ok(server) => {
                // SAFETY: `instance` is a valid out-pointer.
                unsafe { *instance = Box::into_raw(Box::new(server)) as Instance };
                STATUS_OK
            }
            Err(reason) => {
                put(out, reason.as_bytes());
                STATUS_ERROR
            }
        }
    })
}

unsafe extern "C" fn config_change<S: Server>(
    instance: Instance,
    host: *const HostApi,
    change: Slice,
    out: *const Sink,
) -> i32 {
    guarded(out, || {
        // SAFETY: valid pointers for the call; the instance is ours.
        let (server, host, change) = unsafe { (state::<S>(instance), &*host, change.as_bytes()) };
        let change = match codec::decode::<ConfigChange>(change) {
            Ok(c) => c,
            Err(e) => {
                put(out, e.0.as_bytes());
                return STATUS_BAD_MESSAGE;
            }
        };
        let mut ctx = Context::new(host);
        match server.config_change(&change, &mut ctx) {
            Ok(()) => stop_status(&mut ctx, out),
            Err(reason) => {
                put(out, reason.as_bytes());
                STATUS_ERROR
            }
        }
    })
}

unsafe extern "C" fn health<S: Server>(instance: Instance, out: *const Sink) -> i32 {
    guarded(out, || {
        // SAFETY: the instance is ours.
        let server = unsafe { state::<S>(instance) };
        match server.health() {
            Ok(()) => STATUS_OK,
            Err(reason) => {
                put(out, reason.as_bytes());
                STATUS_ERROR
            }
        }
    })
}

unsafe extern "C" fn apply<S: Server>(
    host: *const HostApi,
    function: Slice,
    args: Slice,
    out: *const Sink,
) -> i32 {
    guarded(out, || {
        // SAFETY: valid pointers for the call.
        let (host, function, args) = unsafe { (&*host, function.as_bytes(), args.as_bytes()) };
        let function = String::from_utf8_lossy(function);
        let mut ctx = Context::new(host);
        match S::apply(&function, args, &mut ctx) {
            Ok(result) => {
                put(out, &result);
                STATUS_OK
            }
            Err(reason) => {
                put(out, reason.as_bytes());
                STATUS_ERROR
            }
        }
    })
}

unsafe extern "C" fn drop_instance<S: Server>(instance: Instance) {
    if instance.is_null() {
        return;
    }
    // A panic in Drop must not unwind into the runtime either.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the instance came from `Box::into_raw` in this module and is dropped once.
        drop(unsafe { Box::from_raw(instance as *mut S) });
    }));
}
