//! Fuzz target: a control socket request as the node reads it (framing, size limit, JSON), round trip of what it accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = relup_runtime::fuzz::control_request(data);
});
