//! Exports the relup descriptor symbol, but its descriptor claims ABI version 999: a runtime
//! must read the version and stop there.

/// A descriptor from the future: only its first field is shared with every ABI version.
#[repr(C)]
pub struct FutureDescriptor {
    /// ABI version.
    pub abi_version: u32,
    /// Something a future ABI might have.
    pub future_field: u64,
}

static DESCRIPTOR: FutureDescriptor = FutureDescriptor {
    abi_version: 999,
    future_field: 0,
};

/// The relup descriptor symbol.
#[unsafe(no_mangle)]
pub extern "C" fn relup_module_descriptor() -> *const FutureDescriptor {
    &DESCRIPTOR
}
