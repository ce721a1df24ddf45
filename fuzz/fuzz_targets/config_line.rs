//! Fuzz target: `config.toml.new` change lines and `config.toml` files: parsing, the declared-key checks, persisting and reading back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = relup_runtime::fuzz::config_line(data);
});
