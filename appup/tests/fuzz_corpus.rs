//! Replays the fuzz corpus (`fuzz/corpus/<target>/*` at the workspace root) through the same entry points
//! the cargo-fuzz targets use, so plain `cargo test` checks them without a nightly toolchain.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        f(&data);
        n += 1;
    }
    assert!(n > 0, "empty corpus for {target}");
}

#[test]
fn release_corpus() {
    replay("release_toml", relup_appup::fuzz::release);
}

#[test]
fn appup_corpus() {
    replay("appup_toml", relup_appup::fuzz::appup);
}
