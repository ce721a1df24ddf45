//! The versioned C ABI between the runtime and a module library.
//!
//! Only `#[repr(C)]` structs, plain function pointers and byte slices cross the boundary: no
//! trait objects, no `TypeId`, no Rust layouts. Memory never changes hands: a callee that
//! produces bytes writes them into a [`Sink`] owned by the caller, so each side frees only what
//! it allocated.
//!
//! Compatibility rule: the first field of [`ModuleDescriptor`] is always a `u32` ABI version,
//! and a runtime reads nothing else from a descriptor whose version it does not speak.

use std::ffi::c_void;

/// The ABI version this crate speaks. Bumped on any change to the structs in this module.
///
/// History: 1 = the first ABI; 2 = TCP ports (`HostApi::tcp_*`, `InfoFfi::port`, the
/// `TCP_*` info kinds); 3 = node-owned tables (`HostApi::table_*`, [`table_status`],
/// [`table_flags`], [`TransformFn`]); 4 = outbound TCP (`HostApi::tcp_connect`, the
/// `TCP_CONNECTED` info kind).
pub const ABI_VERSION: u32 = 4;

/// Name of the one symbol a module library exports: `extern "C" fn() -> *const ModuleDescriptor`.
pub const DESCRIPTOR_SYMBOL: &str = "relup_module_descriptor";

/// Status code: the call succeeded.
pub const STATUS_OK: i32 = 0;
/// Status code: the process asks to stop; the reason was written to the reason sink.
pub const STATUS_STOP: i32 = 1;
/// Status code: the message (or args, or state) could not be decoded; the error text was written.
pub const STATUS_BAD_MESSAGE: i32 = 2;
/// Status code: the callback returned an error (e.g. `init` or `code_change`); text was written.
pub const STATUS_ERROR: i32 = 3;
/// Status code: the callback panicked; the panic message was written.
pub const STATUS_PANIC: i32 = 4;

/// A borrowed byte slice passed across the boundary; valid only for the duration of the call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Slice {
    /// Start of the bytes (may be dangling when `len` is 0).
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl Slice {
    /// Borrows a Rust byte slice for one FFI call.
    pub fn new(bytes: &[u8]) -> Slice {
        Slice {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// Turns the slice back into a Rust slice.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that live for `'a` (or `len` must be 0).
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// A write-only byte destination owned by the caller of an FFI function.
///
/// The callee calls `write` any number of times; the bytes are appended to the caller's buffer.
#[repr(C)]
pub struct Sink {
    /// Opaque pointer to the caller's buffer.
    pub target: *mut c_void,
    /// Appends `len` bytes at `ptr` to the buffer behind `target`.
    pub write: unsafe extern "C" fn(target: *mut c_void, ptr: *const u8, len: usize),
}

unsafe extern "C" fn write_into_vec(target: *mut c_void, ptr: *const u8, len: usize) {
    if target.is_null() || ptr.is_null() || len == 0 {
        return;
    }
    // SAFETY: `target` was made from `&mut Vec<u8>` by `Sink::for_vec`, and the callee promises
    // `ptr` points to `len` readable bytes.
    unsafe {
        let vec = &mut *(target as *mut Vec<u8>);
        vec.extend_from_slice(std::slice::from_raw_parts(ptr, len));
    }
}

impl Sink {
    /// A sink appending to `vec`; valid while `vec` is borrowed.
    pub fn for_vec(vec: &mut Vec<u8>) -> Sink {
        Sink {
            target: vec as *mut Vec<u8> as *mut c_void,
            write: write_into_vec,
        }
    }

    /// Writes `bytes` into the sink.
    ///
    /// # Safety
    /// The sink must have been created by its owner for the duration of the current call.
    pub unsafe fn put(&self, bytes: &[u8]) {
        // SAFETY: guaranteed by the caller.
        unsafe { (self.write)(self.target, bytes.as_ptr(), bytes.len()) }
    }
}

/// Kind of an info message delivered to `handle_info`.
pub mod info_kind {
    /// A plain message (sent with `send`, or by a timer); payload = encoded message.
    pub const MESSAGE: u32 = 0;
    /// A monitored process went down; payload = exit reason text.
    pub const DOWN: u32 = 1;
    /// An exit signal from a linked process (the receiver traps exits); payload = reason text.
    pub const EXIT: u32 = 2;
    /// A listener accepted a connection: `reference` = the listener's port id, `port` = the
    /// new connection's port id, payload = the peer address as text (`127.0.0.1:53211`).
    pub const TCP_ACCEPTED: u32 = 3;
    /// Bytes arrived on a connection: `port` = the connection, payload = the bytes.
    pub const TCP_DATA: u32 = 4;
    /// A connection or listener closed (not at the owner's own request): `port` = its id,
    /// payload = the reason text (see `relup_module::CloseReason`).
    pub const TCP_CLOSED: u32 = 5;
    /// An outbound connection (`HostApi::tcp_connect`) is established: `port` = the
    /// connection, payload = the peer address as text. Its bytes follow as `TCP_DATA`; a
    /// connect that fails ends in `TCP_CLOSED` instead.
    pub const TCP_CONNECTED: u32 = 6;
}

/// An info message as it crosses the boundary.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct InfoFfi {
    /// One of [`info_kind`].
    pub kind: u32,
    /// The process the info is about (sender of an exit signal, the monitored process).
    pub pid: u64,
    /// The monitor reference for `DOWN`, the listener for `TCP_ACCEPTED`, else 0.
    pub reference: u64,
    /// The port (connection or listener) a `TCP_*` info is about, else 0.
    pub port: u64,
    /// Encoded message, exit reason text, peer address, bytes read or close reason.
    pub payload: Slice,
}

/// Direction of a code change, as it crosses the boundary.
pub mod direction {
    /// Upgrade: the old state comes from an older version.
    pub const UP: u32 = 0;
    /// Downgrade (`{down, Vsn}` in OTP): the old state comes from a newer version.
    pub const DOWN: u32 = 1;
    /// Restore: the state was exported by this very version (a snapshot taken before an
    /// install); it is decoded as it is, without the module's `code_change`.
    pub const RESTORE: u32 = 2;
}

/// Status of the TCP port functions of [`HostApi`] (`tcp_send`, `tcp_close`, `tcp_set_owner`).
pub mod port_status {
    /// Done.
    pub const OK: i32 = 0;
    /// No such port: never opened, or closed already.
    pub const NO_PORT: i32 = 1;
    /// Only the port's owner may do that (`tcp_set_owner`).
    pub const NOT_OWNER: i32 = 2;
    /// The connection's unsent output passed the node's hard limit: the connection was closed.
    pub const OUTPUT_FULL: i32 = 3;
    /// The new owner is not a live process.
    pub const NO_PROC: i32 = 4;
    /// The port is a listener, and the operation needs a connection (or the reverse).
    pub const WRONG_KIND: i32 = 5;
}

/// Status of the table functions of [`HostApi`] (`table_*`).
pub mod table_status {
    /// Done.
    pub const OK: i32 = 0;
    /// No such table: never created, or deleted (its owner exited with no heir).
    pub const NO_TABLE: i32 = 1;
    /// Only the table's owner may do that (every write to a protected table, deleting a
    /// table, naming its heir).
    pub const NOT_OWNER: i32 = 2;
    /// No such key.
    pub const NOT_FOUND: i32 = 3;
    /// A table of that name exists already (`table_open` with [`super::table_flags::EXCLUSIVE`]).
    pub const EXISTS: i32 = 4;
    /// `table_update_counter` on a value that is not the decimal text of an i64.
    pub const NOT_INTEGER: i32 = 5;
    /// `table_update_counter` would overflow an i64.
    pub const OVERFLOW: i32 = 6;
    /// `table_transform` failed on a row (the error text was written); no value changed.
    pub const FAILED: i32 = 7;
    /// The process named (an heir) is not alive, or the caller is exiting.
    pub const NO_PROC: i32 = 8;
    /// A malformed argument (a table name that is not UTF-8 or is empty); text written.
    pub const BAD_ARG: i32 = 9;
}

/// Options of `HostApi::table_open`, or-ed together.
pub mod table_flags {
    /// Create the table, owned by the caller, when no table has that name.
    pub const CREATE: u32 = 1;
    /// With `CREATE`: fail with [`super::table_status::EXISTS`] when the name is taken.
    pub const EXCLUSIVE: u32 = 2;
    /// With `CREATE`: any process may write (default: protected, only the owner writes;
    /// everyone reads).
    pub const PUBLIC: u32 = 4;
}

/// A module's transform of one table row for `HostApi::table_transform`: called with the
/// module's `user` pointer, the row's key and value; writes the new value to `out` and
/// returns [`STATUS_OK`], or writes an error text and returns another status. It may be
/// called from several threads at once, and must catch its own panics.
pub type TransformFn =
    unsafe extern "C" fn(user: *const c_void, key: Slice, value: Slice, out: *const Sink) -> i32;

/// Status of a host call (`HostApi::call`).
pub mod call_status {
    /// Reply written to the sink.
    pub const OK: i32 = 0;
    /// No reply within the timeout.
    pub const TIMEOUT: i32 = 1;
    /// No such process (or name not registered).
    pub const NO_PROC: i32 = 2;
    /// The callee exited before replying; its reason was written to the sink.
    pub const EXITED: i32 = 3;
    /// The callee could not decode the request; its error text was written to the sink.
    pub const BAD_MESSAGE: i32 = 4;
    /// A process called itself.
    pub const CALLING_SELF: i32 = 5;
}

/// What the runtime offers a module during a callback: its own pid, messaging, timers, links,
/// monitors, logging and its application environment. `ctx` is the runtime's opaque pointer.
#[repr(C)]
pub struct HostApi {
    /// ABI version the runtime speaks (equal to [`ABI_VERSION`] when the module was accepted).
    pub abi_version: u32,
    /// The runtime's context for the current callback.
    pub ctx: *mut c_void,
    /// Pid of the process running the callback.
    pub self_pid: unsafe extern "C" fn(ctx: *mut c_void) -> u64,
    /// Sends an info message to a pid (0) or a registered name; returns 0, or 1 if no such process.
    pub send: unsafe extern "C" fn(ctx: *mut c_void, pid: u64, name: Slice, msg: Slice) -> i32,
    /// Casts to a pid or registered name; returns 0, or 1 if no such process.
    pub cast: unsafe extern "C" fn(ctx: *mut c_void, pid: u64, name: Slice, msg: Slice) -> i32,
    /// Calls a pid or registered name and waits for the reply (see [`call_status`]).
    pub call: unsafe extern "C" fn(
        ctx: *mut c_void,
        pid: u64,
        name: Slice,
        msg: Slice,
        timeout_ms: u64,
        out: *const Sink,
    ) -> i32,
    /// Sends `msg` to the calling process itself after `delay_ms`; `interval != 0` repeats it.
    /// Returns a timer reference.
    pub start_timer:
        unsafe extern "C" fn(ctx: *mut c_void, delay_ms: u64, interval: u32, msg: Slice) -> u64,
    /// Cancels a timer; returns 1 if it was still active.
    pub cancel_timer: unsafe extern "C" fn(ctx: *mut c_void, timer: u64) -> i32,
    /// Links the calling process to `pid`; returns 0, or 1 if no such process.
    pub link: unsafe extern "C" fn(ctx: *mut c_void, pid: u64) -> i32,
    /// Removes a link.
    pub unlink: unsafe extern "C" fn(ctx: *mut c_void, pid: u64),
    /// Monitors `pid`; returns the monitor reference.
    pub monitor: unsafe extern "C" fn(ctx: *mut c_void, pid: u64) -> u64,
    /// Removes a monitor.
    pub demonitor: unsafe extern "C" fn(ctx: *mut c_void, reference: u64),
    /// Sets whether exit signals from links arrive as info messages (1) or kill the process (0).
    pub trap_exit: unsafe extern "C" fn(ctx: *mut c_void, on: u32),
    /// Registers the calling process under `name`; returns 0, or 1 if the name is taken or
    /// the process is already registered under another name (one name per process).
    pub register: unsafe extern "C" fn(ctx: *mut c_void, name: Slice) -> i32,
    /// Looks a registered name up; returns the pid or 0.
    pub whereis: unsafe extern "C" fn(ctx: *mut c_void, name: Slice) -> u64,
    /// Writes one log line at a [`crate::LogLevel`] (0 error .. 4 trace).
    pub log: unsafe extern "C" fn(ctx: *mut c_void, level: u32, line: Slice),
    /// Reads a config key of the process's application; writes the encoded
    /// [`crate::ConfigValue`] and returns 0, or returns 1 when the key is unset.
    pub env_get: unsafe extern "C" fn(ctx: *mut c_void, key: Slice, out: *const Sink) -> i32,
    /// Opens a TCP listener on `addr` (UTF-8, `host:port`; port 0 picks a free one) owned by
    /// the calling process. Returns the listener's port id and writes its bound address
    /// (text) to `out`; on failure returns 0 and writes the error text.
    pub tcp_listen: unsafe extern "C" fn(ctx: *mut c_void, addr: Slice, out: *const Sink) -> u64,
    /// Queues `bytes` for sending on connection `port` (any process may send); returns a
    /// [`port_status`].
    pub tcp_send: unsafe extern "C" fn(ctx: *mut c_void, port: u64, bytes: Slice) -> i32,
    /// Closes a connection (after its queued output is sent) or a listener; returns a
    /// [`port_status`]. The owner gets no `TCP_CLOSED` for a close it asked for.
    pub tcp_close: unsafe extern "C" fn(ctx: *mut c_void, port: u64) -> i32,
    /// Makes `pid` the owner of connection `port` and starts delivering its bytes to it (a
    /// freshly accepted connection is not read until its owner calls this, possibly with its
    /// own pid). Only the current owner may call it. Returns a [`port_status`].
    pub tcp_set_owner: unsafe extern "C" fn(ctx: *mut c_void, port: u64, pid: u64) -> i32,
    /// Opens the node table named `name` (UTF-8), creating it owned by the caller with
    /// [`table_flags::CREATE`]. Returns its id (never reused), or 0 and writes the
    /// [`table_status`] code as 4 little-endian bytes followed by the error text to `out`.
    /// Tables belong to the node: no code change of any module touches them.
    pub table_open:
        unsafe extern "C" fn(ctx: *mut c_void, name: Slice, flags: u32, out: *const Sink) -> u64,
    /// Inserts or replaces `key` with `value`; returns a [`table_status`].
    pub table_insert:
        unsafe extern "C" fn(ctx: *mut c_void, table: u64, key: Slice, value: Slice) -> i32,
    /// Writes the value of `key` to `out`; returns a [`table_status`] (`NOT_FOUND` when the
    /// key is absent). The value is read whole under the table's lock: never a torn write.
    pub table_lookup:
        unsafe extern "C" fn(ctx: *mut c_void, table: u64, key: Slice, out: *const Sink) -> i32,
    /// Removes `key`; returns a [`table_status`] (`NOT_FOUND` when it was absent).
    pub table_remove: unsafe extern "C" fn(ctx: *mut c_void, table: u64, key: Slice) -> i32,
    /// Adds `incr` to the integer at `key` (the decimal text of an i64; `default` when the
    /// key is absent), stores the result as decimal text and writes it to `result`; returns a
    /// [`table_status`].
    pub table_update_counter: unsafe extern "C" fn(
        ctx: *mut c_void,
        table: u64,
        key: Slice,
        incr: i64,
        default: i64,
        result: *mut i64,
    ) -> i32,
    /// Writes up to `limit` rows in key order to `out`, each as a little-endian `u32` key
    /// length, the key, a `u32` value length, the value: the rows whose key starts with
    /// `prefix`, from `from` on (inclusive when `exclusive` is 0, else after it). Returns a
    /// [`table_status`].
    pub table_scan: unsafe extern "C" fn(
        ctx: *mut c_void,
        table: u64,
        from: Slice,
        exclusive: u32,
        prefix: Slice,
        limit: u32,
        out: *const Sink,
    ) -> i32,
    /// Writes the number of rows to `size`; returns a [`table_status`].
    pub table_size: unsafe extern "C" fn(ctx: *mut c_void, table: u64, size: *mut u64) -> i32,
    /// Deletes the table (owner only); returns a [`table_status`].
    pub table_delete: unsafe extern "C" fn(ctx: *mut c_void, table: u64) -> i32,
    /// Names the heir that takes the table over when the owner exits (owner only; `heir` 0
    /// removes it). The heir then gets `msg` as a plain info message. Returns a
    /// [`table_status`].
    pub table_set_heir:
        unsafe extern "C" fn(ctx: *mut c_void, table: u64, heir: u64, msg: Slice) -> i32,
    /// Replaces every value with `transform(user, key, value)`, computed in parallel chunks
    /// of `chunk` rows while readers go on seeing the old values; writers wait. All or
    /// nothing: if any row fails, no value changes, the error text is written to `out` and
    /// `FAILED` returned. Writes the number of rows transformed (as 8 little-endian bytes)
    /// to `out` on success. Returns a [`table_status`].
    pub table_transform: unsafe extern "C" fn(
        ctx: *mut c_void,
        table: u64,
        chunk: u32,
        transform: TransformFn,
        user: *const c_void,
        out: *const Sink,
    ) -> i32,
    /// Starts connecting to `addr` (UTF-8, `host:port`; a name is resolved by the system's
    /// resolver, which may block) without waiting; the connection is owned by the calling
    /// process. Returns its port id, or 0 and writes the error text to `out` (a bad address,
    /// no descriptor left). The owner then gets `TCP_CONNECTED`, or `TCP_CLOSED` if the
    /// connect fails. Output sent before it is established is queued.
    pub tcp_connect: unsafe extern "C" fn(ctx: *mut c_void, addr: Slice, out: *const Sink) -> u64,
}

/// An opaque module-owned server instance (the process state).
pub type Instance = *mut c_void;

/// The one descriptor a module library exports. See [`DESCRIPTOR_SYMBOL`].
#[repr(C)]
pub struct ModuleDescriptor {
    /// Always first: the ABI version this descriptor follows ([`ABI_VERSION`]).
    pub abi_version: u32,
    /// `size_of::<ModuleDescriptor>()` as the module was built, a guard against layout drift.
    pub descriptor_size: u32,
    /// Module name (UTF-8, static in the library).
    pub name: Slice,
    /// Module version, semver (UTF-8, static in the library).
    pub version: Slice,
    /// Creates a server instance from encoded args; on error writes the reason to `out`.
    pub init: unsafe extern "C" fn(
        host: *const HostApi,
        args: Slice,
        instance: *mut Instance,
        out: *const Sink,
    ) -> i32,
    /// Handles a call; writes the encoded reply to `reply`; `STATUS_STOP` writes `reason`.
    pub handle_call: unsafe extern "C" fn(
        instance: Instance,
        host: *const HostApi,
        msg: Slice,
        reply: *const Sink,
        reason: *const Sink,
    ) -> i32,
    /// Handles a cast; `STATUS_STOP` writes the reason to `out`.
    pub handle_cast: unsafe extern "C" fn(
        instance: Instance,
        host: *const HostApi,
        msg: Slice,
        out: *const Sink,
    ) -> i32,
    /// Handles an info message; `STATUS_STOP` writes the reason to `out`.
    pub handle_info: unsafe extern "C" fn(
        instance: Instance,
        host: *const HostApi,
        info: *const InfoFfi,
        out: *const Sink,
    ) -> i32,
    /// Called once before the process exits (not when it is killed).
    pub terminate: unsafe extern "C" fn(
        instance: Instance,
        host: *const HostApi,
        reason: Slice,
        out: *const Sink,
    ) -> i32,
    /// Writes the encoded state of an instance, for migration to another version.
    pub export_state: unsafe extern "C" fn(instance: Instance, out: *const Sink) -> i32,
    /// Builds an instance of this version from another version's exported state.
    /// `direction` is [`direction::UP`] (state from `old_vsn`, older) or
    /// [`direction::DOWN`] (state from `old_vsn`, newer).
    pub code_change: unsafe extern "C" fn(
        old_vsn: Slice,
        direction: u32,
        old_state: Slice,
        extra: Slice,
        instance: *mut Instance,
        out: *const Sink,
    ) -> i32,
    /// Delivers an encoded [`crate::ConfigChange`].
    pub config_change: unsafe extern "C" fn(
        instance: Instance,
        host: *const HostApi,
        change: Slice,
        out: *const Sink,
    ) -> i32,
    /// Health check; on failure writes the reason.
    pub health: unsafe extern "C" fn(instance: Instance, out: *const Sink) -> i32,
    /// Calls an exported function of the module (appup `apply`) with encoded args.
    pub apply: unsafe extern "C" fn(
        host: *const HostApi,
        function: Slice,
        args: Slice,
        out: *const Sink,
    ) -> i32,
    /// Frees an instance without calling `terminate` (after migration, or after a kill).
    pub drop_instance: unsafe extern "C" fn(instance: Instance),
}

// SAFETY: a descriptor only holds pointers to static, immutable data and function pointers.
unsafe impl Sync for ModuleDescriptor {}
// SAFETY: as above.
unsafe impl Send for ModuleDescriptor {}
