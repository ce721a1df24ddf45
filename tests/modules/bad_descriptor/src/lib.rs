//! Exports a descriptor that starts like one of the runtime's ABI version but whose module name is a 7-byte
//! string with a length of 5000: a runtime must refuse it from the length alone, without
//! reading past the string. Only the fields before the name matter; the rest of the layout
//! is never reached.

/// The first fields of a descriptor (their layout has not changed since ABI version 1).
#[repr(C)]
pub struct Prefix {
    /// The ABI version the runtime speaks, so that the check goes on to the name.
    pub abi_version: u32,
    /// Must equal the runtime's descriptor size for it to read on.
    pub descriptor_size: u32,
    /// Name pointer.
    pub name_ptr: *const u8,
    /// Name length: a lie.
    pub name_len: usize,
    /// Version pointer.
    pub version_ptr: *const u8,
    /// Version length.
    pub version_len: usize,
    /// The rest of a descriptor: 11 function pointers, all to one that aborts (never called).
    pub rest: [extern "C" fn(); 11],
}

// SAFETY: only pointers to static data.
unsafe impl Sync for Prefix {}

/// Stands in for every entry point; a runtime that called one would stop here.
extern "C" fn never() {
    std::process::abort()
}

static DESCRIPTOR: Prefix = Prefix {
    abi_version: relup_module::abi::ABI_VERSION,
    descriptor_size: std::mem::size_of::<Prefix>() as u32,
    name_ptr: b"counter".as_ptr(),
    name_len: 5000,
    version_ptr: b"1.0.0".as_ptr(),
    version_len: 5,
    rest: [never; 11],
};

/// The relup descriptor symbol.
#[unsafe(no_mangle)]
pub extern "C" fn relup_module_descriptor() -> *const Prefix {
    &DESCRIPTOR
}
