//! Replays the fuzz corpora of the runtime targets (`fuzz/corpus/<target>/*` at the workspace
//! root) and the inputs that once crashed them (`fuzz/regressions/<target>/*`) through the
//! same entry points the cargo-fuzz targets call, so plain `cargo test` checks them without a
//! nightly toolchain.

use std::path::Path;

/// Replays every input of `target`'s corpus; the corpus must hold inputs `f` accepts and
/// inputs it refuses (else the fuzzer never got past the first check).
fn replay(target: &str, f: fn(&[u8]) -> bool) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let dir = fuzz.join("corpus").join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    // Inputs that crashed a fuzzer once (fuzz/regressions/<target>/), kept whatever the
    // corpus minimization keeps.
    if let Ok(found) = std::fs::read_dir(fuzz.join("regressions").join(target)) {
        entries.extend(found.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    entries.sort();
    assert!(!entries.is_empty(), "empty corpus for {target}");
    let (mut accepted, mut refused) = (0, 0);
    for path in entries {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("{target}: {}", path.display());
        if f(&data) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    eprintln!("{target}: {accepted} accepted, {refused} refused");
    assert!(accepted > 0, "no input of the {target} corpus is accepted");
    assert!(refused > 0, "no input of the {target} corpus is refused");
}

#[test]
fn config_line_corpus() {
    replay("config_line", relup_runtime::fuzz::config_line);
}

#[test]
fn control_request_corpus() {
    replay("control_request", relup_runtime::fuzz::control_request);
}

#[test]
fn tarball_unpack_corpus() {
    replay("tarball_unpack", relup_runtime::fuzz::tarball_unpack);
}

#[test]
fn abi_decode_corpus() {
    replay("abi_decode", relup_runtime::fuzz::abi_decode);
}

#[test]
fn deeply_nested_buffers_are_refused_on_a_scheduler_sized_stack() {
    // `{"List":[{"List":[ ... ]}]}` nested far deeper than any real value: the decoder's
    // depth limit must refuse it before a 2 MiB thread stack overflows (which would abort
    // the whole node). 100 levels are within the limit and still decode (the limit does not
    // refuse every nested value); no depth migrates as a state.
    for depth in [100, 1_000, 100_000] {
        let mut bytes = b"\x81\xa4List\x91".repeat(depth);
        bytes.extend_from_slice(b"\x81\xa3Int\x01");
        let mut deep_state = b"\x91".repeat(depth);
        deep_state.push(0xc0);
        for (what, bytes) in [("value", &bytes), ("state", &deep_state)] {
            assert!(
                !relup_runtime::fuzz::abi_decode(bytes),
                "a {what} nested {depth} deep was accepted"
            );
        }
        let value = relup_module::codec::decode::<relup_module::ConfigValue>(&bytes);
        let state = relup_module::codec::decode::<serde_json::Value>(&deep_state);
        if depth <= 100 {
            assert!(value.is_ok(), "{depth}: {value:?}");
            assert!(state.is_ok(), "{depth}: {state:?}");
        } else {
            for e in [value.map(|_| ()), state.map(|_| ())] {
                let e = e
                    .expect_err("decoded a buffer nested beyond the depth limit")
                    .0;
                assert!(e.contains("depth limit exceeded"), "{depth}: {e}");
            }
        }
    }
}

#[test]
fn deeply_nested_config_values_are_refused_before_they_reach_a_module() {
    // An operator's line (or config.toml) nesting arrays thousands deep: refused by the TOML
    // parser, never converted recursively or handed to a module's validator.
    for depth in [100, 10_000] {
        let value = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let line = format!("app:m:l:{value}");
        assert!(!relup_runtime::fuzz::config_line(line.as_bytes()));
        let refused = relup_runtime::config::parse_line(&line)
            .err()
            .unwrap_or_else(|| panic!("a change line nested {depth} deep was parsed"));
        assert!(
            refused.contains("expected a TOML value"),
            "{depth}: {refused}"
        );
        let file = format!("[app.m]\nl = {value}\n");
        assert!(!relup_runtime::fuzz::config_line(file.as_bytes()));
        let refused = relup_runtime::config::LiveConfig::parse(&file, "fuzz/config.toml")
            .err()
            .unwrap_or_else(|| panic!("a config.toml nested {depth} deep was parsed"))
            .to_string();
        assert!(
            refused.contains("max recursion depth"),
            "{depth}: {refused}"
        );
    }
}
