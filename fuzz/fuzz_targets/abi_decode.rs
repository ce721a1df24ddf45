//! Fuzz target: buffers coming back from a module (replies, exported states, config values, error texts, descriptor name and version) as the runtime and the module codec decode them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = relup_runtime::fuzz::abi_decode(data);
});
