//! The package `MANIFEST`: every file of a release tarball with its sha256 and size.
//!
//! ```toml
//! name = "ticker"
//! version = "0.2.0"
//!
//! [[file]]
//! path = "bin/ticker"
//! sha256 = "9f86d0..."
//! size = 97
//! ```
//!
//! The MANIFEST lists every file but itself, sorted by path.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The name of the manifest inside a package.
pub const MANIFEST: &str = "MANIFEST";

/// One file of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Path relative to the release directory, `/`-separated.
    pub path: String,
    /// sha256 of its contents, 64 lowercase hex digits.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A package's `MANIFEST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The release name.
    pub name: String,
    /// The release version.
    pub version: semver::Version,
    /// Every file but the MANIFEST, sorted by path.
    #[serde(default, rename = "file")]
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// The TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Parses a MANIFEST; errors carry the 1-based line and column.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        toml::from_str(text).map_err(|e| {
            let pos = e
                .span()
                .map(|s| relup_appup::Pos::at(text, s.start))
                .unwrap_or_default();
            format!("{}:{}: {}", pos.line, pos.column, e.message().trim())
        })
    }
}

/// sha256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// sha256 and size of the file at `path`, streamed.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&h.finalize()), size))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Whether `p` is a safe package path: relative, `/`-separated, no empty, `.` or `..`
/// component, no backslash or NUL.
pub fn is_safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Whether `name` can be a release name used in file names.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
