//! Module `counter` 2.0.0 written by hand against the C ABI (no `export_module!`), whose
//! entry points keep the memory rules but break every other promise: replies and exported
//! states that are not MessagePack, status codes no ABI version defines, a stop reason that
//! is not UTF-8, a code_change that reports success without a state, an error text of
//! 100 KiB. `init` succeeds, so that processes exist to be called.

use relup_module::abi::{
    ABI_VERSION, HostApi, InfoFfi, Instance, ModuleDescriptor, STATUS_ERROR, STATUS_OK,
    STATUS_STOP, Sink, Slice,
};
use std::sync::OnceLock;

/// Bytes that are no MessagePack value (0xc1 is never used by the format).
const GARBAGE: &[u8] = &[0xc1, 0xc1, 0xff, 0x00, 0x93];

fn put(out: *const Sink, bytes: &[u8]) {
    if !out.is_null() {
        // SAFETY: the runtime passes a sink valid for the duration of the call.
        unsafe { (*out).put(bytes) }
    }
}

unsafe extern "C" fn init(
    _host: *const HostApi,
    _args: Slice,
    instance: *mut Instance,
    _out: *const Sink,
) -> i32 {
    // SAFETY: `instance` is the runtime's out-pointer.
    unsafe { *instance = Box::into_raw(Box::new(0u64)) as Instance };
    STATUS_OK
}

unsafe extern "C" fn handle_call(
    _instance: Instance,
    _host: *const HostApi,
    _msg: Slice,
    reply: *const Sink,
    _reason: *const Sink,
) -> i32 {
    put(reply, GARBAGE);
    STATUS_OK
}

unsafe extern "C" fn handle_cast(
    _instance: Instance,
    _host: *const HostApi,
    _msg: Slice,
    _out: *const Sink,
) -> i32 {
    77
}

unsafe extern "C" fn handle_info(
    _instance: Instance,
    _host: *const HostApi,
    _info: *const InfoFfi,
    out: *const Sink,
) -> i32 {
    put(out, &[0xff, 0xfe, b'x']);
    STATUS_STOP
}

unsafe extern "C" fn terminate(
    _instance: Instance,
    _host: *const HostApi,
    _reason: Slice,
    _out: *const Sink,
) -> i32 {
    -5
}

unsafe extern "C" fn export_state(_instance: Instance, out: *const Sink) -> i32 {
    put(out, GARBAGE);
    STATUS_OK
}

unsafe extern "C" fn code_change(
    _old_vsn: Slice,
    _direction: u32,
    _old_state: Slice,
    _extra: Slice,
    _instance: *mut Instance,
    _out: *const Sink,
) -> i32 {
    // Success, and no state.
    STATUS_OK
}

unsafe extern "C" fn config_change(
    _instance: Instance,
    _host: *const HostApi,
    _change: Slice,
    _out: *const Sink,
) -> i32 {
    1234
}

unsafe extern "C" fn health(_instance: Instance, out: *const Sink) -> i32 {
    put(out, &vec![b'!'; 100 * 1024]);
    i32::MIN
}

unsafe extern "C" fn apply(
    _host: *const HostApi,
    _function: Slice,
    _args: Slice,
    out: *const Sink,
) -> i32 {
    put(out, &[0xff, 0xff]);
    STATUS_ERROR
}

unsafe extern "C" fn drop_instance(instance: Instance) {
    if !instance.is_null() {
        // SAFETY: every instance of this module is a `Box<u64>` made by `init`.
        drop(unsafe { Box::from_raw(instance as *mut u64) });
    }
}

/// The relup descriptor symbol.
#[unsafe(no_mangle)]
pub extern "C" fn relup_module_descriptor() -> *const ModuleDescriptor {
    static DESCRIPTOR: OnceLock<ModuleDescriptor> = OnceLock::new();
    DESCRIPTOR.get_or_init(|| ModuleDescriptor {
        abi_version: ABI_VERSION,
        descriptor_size: std::mem::size_of::<ModuleDescriptor>() as u32,
        name: Slice::new(b"counter"),
        version: Slice::new(b"2.0.0"),
        init,
        handle_call,
        handle_cast,
        handle_info,
        terminate,
        export_state,
        code_change,
        config_change,
        health,
        apply,
        drop_instance,
    })
}
