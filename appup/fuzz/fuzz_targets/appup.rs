//! Fuzz target: `Appup::parse` (and writing a parsed appup back) must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    relup_appup::fuzz::appup(data);
});
