//! Replays the fuzz corpora of the runtime targets (`fuzz/corpus/<target>/*` at the workspace
//! root) through the same entry points the cargo-fuzz targets call, so plain `cargo test`
//! checks every input the fuzzers kept (crashes found included) without a nightly toolchain.

use std::path::Path;

/// Replays every input of `target`'s corpus; the corpus must hold inputs `f` accepts and
/// inputs it refuses (else the fuzzer never got past the first check).
fn replay(target: &str, f: fn(&[u8]) -> bool) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
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
