//! Fuzz target: `Release::parse` must never panic, whatever the input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    relup_appup::fuzz::release(data);
});
