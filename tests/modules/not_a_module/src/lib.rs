//! A shared library with an exported function but no relup descriptor.

/// Adds two numbers (anything, so that the library exports a symbol).
#[unsafe(no_mangle)]
pub extern "C" fn fixture_add(a: u32, b: u32) -> u32 {
    a.wrapping_add(b)
}
