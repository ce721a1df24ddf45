//! The release root on disk: its layout, the `RELEASES` file, atomic writes, packaging a
//! release into a tarball, and unpacking (verifying) one.
//!
//! - [`ReleaseRoot`]: path helpers for `<root>/{bin,releases,config,log,run}` (DESIGN §4).
//! - [`write_atomic`]: temp file, write, fsync, rename, fsync of the directory.
//! - [`Releases`]: `releases/RELEASES`, its invariants and status transitions.
//! - [`pack`]: a release directory into a deterministic `<name>-<vsn>.tar.gz` with a
//!   `MANIFEST`.
//! - [`unpack`], [`unpack_in_place`]: verified extraction into `releases/<vsn>/`.
//! - [`deploy`], [`remove`], [`known_releases`].
//! - [`recover`]: what a crash mid-unpack, mid-remove or mid-write left, put in order.

// Errors carry paths, entries and expectations; they are on the cold path.
#![allow(clippy::result_large_err)]

mod atomic;
mod deploy;
mod error;
mod known;
mod layout;
mod manifest;
mod package;
mod recover;
mod releases_file;
mod unpack;

pub use atomic::{sync_dir, write_atomic, write_atomic_mode};
pub use deploy::{deploy, remove};
pub use error::{KnownError, PackError, RemoveError, UnpackError};
pub use known::{known_releases, known_releases_each};
pub use layout::{NODE_EXECUTABLE, ReleaseRoot, launcher_script, tarball_name};
pub use manifest::{MANIFEST, Manifest, ManifestFile, sha256_file, sha256_hex};
pub use package::{PackOptions, pack, pack_with};
pub use recover::{RecoverError, recover};
pub use releases_file::{
    ReleaseEntry, Releases, ReleasesError, ReleasesLock, StatusError, Violation, now_unix,
};
pub use unpack::{Limits, UnpackedRelease, unpack, unpack_in_place, unpack_with};
