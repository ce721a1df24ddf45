//! Exports a descriptor of the runtime's ABI version and size, with a valid name and version,
//! whose `health` entry point (the ninth of eleven) is a null pointer: a runtime must refuse
//! it when loading, before any of its code runs, rather than read it as a function pointer.

/// A descriptor laid out as the runtime's, with its entry points nullable.
#[repr(C)]
pub struct Descriptor {
    /// The ABI version the runtime speaks.
    pub abi_version: u32,
    /// The runtime's descriptor size.
    pub descriptor_size: u32,
    /// Name pointer.
    pub name_ptr: *const u8,
    /// Name length.
    pub name_len: usize,
    /// Version pointer.
    pub version_ptr: *const u8,
    /// Version length.
    pub version_len: usize,
    /// init, handle_call, handle_cast, handle_info, terminate, export_state, code_change,
    /// config_change, health, apply, drop_instance: all to one that aborts (never called),
    /// but health, which is null.
    pub entry_points: [Option<extern "C" fn()>; 11],
}

// SAFETY: only pointers to static data and functions.
unsafe impl Sync for Descriptor {}

/// Stands in for every entry point; a runtime that called one would stop here.
extern "C" fn never() {
    std::process::abort()
}

const _: () = assert!(
    std::mem::size_of::<Descriptor>() == std::mem::size_of::<relup_module::abi::ModuleDescriptor>()
);

static DESCRIPTOR: Descriptor = Descriptor {
    abi_version: relup_module::abi::ABI_VERSION,
    descriptor_size: std::mem::size_of::<Descriptor>() as u32,
    name_ptr: b"counter".as_ptr(),
    name_len: 7,
    version_ptr: b"1.0.0".as_ptr(),
    version_len: 5,
    entry_points: [
        Some(never),
        Some(never),
        Some(never),
        Some(never),
        Some(never),
        Some(never),
        Some(never),
        Some(never),
        None,
        Some(never),
        Some(never),
    ],
};

/// The relup descriptor symbol.
#[unsafe(no_mangle)]
pub extern "C" fn relup_module_descriptor() -> *const Descriptor {
    &DESCRIPTOR
}
