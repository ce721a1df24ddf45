//! Fuzz target: `appup.toml` parsing never panics, and what parses writes back to an equal appup.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    relup_appup::fuzz::appup(data);
});
