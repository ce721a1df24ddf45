//! Fuzz target: `release.toml` parsing (and generation/validation of what parses) never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    relup_appup::fuzz::release(data);
});
