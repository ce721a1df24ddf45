//! Fuzz target: release tarball unpacking into an empty root; nothing escapes `releases/`, nothing is left behind.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = relup_runtime::fuzz::tarball_unpack(data);
});
