//! Fuzzing entry points, shared by the cargo-fuzz targets in the workspace's `fuzz/` crate and
//! by the corpus replay test (so the corpus runs in plain `cargo test`, no nightly needed).

use crate::{Appup, Release, generate, validate};

/// Parses bytes as a release.toml; on success also exercises generation and validation of the
/// release against itself. Never panics.
pub fn release(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Release::parse(text, "fuzz/release.toml") {
        let _ = r.supervisor_paths();
        let _ = r.running_modules();
        let mut newer = r.clone();
        newer.version.minor = newer.version.minor.saturating_add(1);
        for a in &mut newer.applications {
            a.version.minor = a.version.minor.saturating_add(1);
        }
        for g in generate(&r, &newer) {
            let _ = validate(&g, &r, &newer);
            let _ = Appup::parse(&g.to_toml(), &g.file);
        }
    }
}

/// Parses bytes as an appup.toml; on success writes it back to text, which must parse to an
/// equal appup. Never panics except when that round trip breaks.
pub fn appup(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = Appup::parse(text, "fuzz/appup.toml") {
        let again = a.to_toml();
        match Appup::parse(&again, &a.file) {
            Ok(b) => assert!(
                b == a || has_nan(&again),
                "round trip changed the appup:\n{again}"
            ),
            Err(e) => panic!("written appup does not parse: {e}\n{again}"),
        }
        for i in a.up.iter().chain(&a.down).flat_map(|e| &e.instructions) {
            let _ = i.instruction.to_string();
        }
    }
}

/// NaN floats never compare equal, so a round trip containing one cannot be compared.
fn has_nan(text: &str) -> bool {
    text.contains("nan")
}
