//! Errors of packing, unpacking, deploying and removing releases. Each names the file (and
//! the tarball entry) involved and what was expected.

use super::releases_file::{ReleasesError, StatusError};
use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// Why [`pack`](super::pack) failed.
#[derive(Debug, Error)]
pub enum PackError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A TOML file of the release is not valid TOML (or has the wrong shape).
    #[error("{file}:{line}:{column}: {message}; expected {expected}")]
    Toml {
        /// The file.
        file: PathBuf,
        /// 1-based line (0 if unknown).
        line: usize,
        /// 1-based column (0 if unknown).
        column: usize,
        /// What the parser said.
        message: String,
        /// What is accepted.
        expected: String,
    },
    /// `release.toml` or an appup failed relup-appup's checks.
    #[error("{0}")]
    Invalid(relup_appup::Errors),
    /// A module names a library path that is absolute, has `..`, or is otherwise unsafe.
    #[error(
        "{file}: module `{module}` names library `{path}`; expected a relative path inside the release directory (no `..`, not absolute)"
    )]
    BadPath {
        /// release.toml.
        file: PathBuf,
        /// The module.
        module: String,
        /// The path given.
        path: String,
    },
    /// A module's library file does not exist or cannot be read.
    #[error(
        "{path}: library of module `{module}` cannot be read ({source}); expected the built library at the path release.toml names"
    )]
    MissingLibrary {
        /// The module.
        module: String,
        /// The library file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A module's declared sha256 differs from its library file's.
    #[error(
        "{file}: module `{module}` declares sha256 {declared} but {path} has sha256 {actual}; expected them equal (rebuild, or pack with refresh_sha256)"
    )]
    Sha256Mismatch {
        /// release.toml.
        file: PathBuf,
        /// The module.
        module: String,
        /// The library file.
        path: PathBuf,
        /// The sha256 in release.toml.
        declared: String,
        /// The file's sha256.
        actual: String,
    },
    /// The release name cannot be used as a file name.
    #[error(
        "release name `{name}` cannot name files; expected letters, digits, `_`, `-` or `.`, not starting with `.`"
    )]
    BadName {
        /// The name.
        name: String,
    },
    /// Two files would have the same path in the package.
    #[error("{path}: two files of the release would be packed as `{entry}`; expected each once")]
    Duplicate {
        /// The second source file.
        path: PathBuf,
        /// The package path.
        entry: String,
    },
    /// The package would be larger than unpack accepts.
    #[error("the package would hold {what}; expected at most {limit}")]
    TooLarge {
        /// What is too large.
        what: String,
        /// The limit.
        limit: String,
    },
}

/// Why [`unpack`](super::unpack) (or [`deploy`](super::deploy)) failed. Nothing is recorded
/// in `RELEASES` and the temporary directory is removed.
#[derive(Debug, Error)]
pub enum UnpackError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The tarball is not a readable gzip'd tar.
    #[error("{tarball}: {message}; expected a gzip-compressed tar archive made by `relup release`")]
    Archive {
        /// The tarball.
        tarball: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// One entry of the tarball is refused.
    #[error("{tarball}: entry `{entry}`: {problem}; expected {expected}")]
    Entry {
        /// The tarball.
        tarball: PathBuf,
        /// The entry path (as written in the archive).
        entry: String,
        /// What is wrong.
        problem: String,
        /// What would be accepted.
        expected: String,
    },
    /// The package as a whole is refused (missing MANIFEST, too big, mismatched manifest...).
    #[error("{tarball}: {problem}; expected {expected}")]
    Package {
        /// The tarball.
        tarball: PathBuf,
        /// What is wrong.
        problem: String,
        /// What would be accepted.
        expected: String,
    },
    /// The packaged release.toml or an appup is invalid.
    #[error("{tarball}: invalid release:\n{errors}")]
    Invalid {
        /// The tarball.
        tarball: PathBuf,
        /// The problems (their file names are paths inside the package).
        errors: relup_appup::Errors,
    },
    /// The release is named differently from the root's releases.
    #[error(
        "{tarball}: release is named `{found}` but the root's releases are named `{expected}`; expected a release of `{expected}`"
    )]
    WrongName {
        /// The tarball.
        tarball: PathBuf,
        /// The name in the tarball.
        found: String,
        /// The root's release name.
        expected: String,
    },
    /// The version is already known; its status is unchanged.
    #[error("{tarball}: {source}")]
    AlreadyKnown {
        /// The tarball.
        tarball: PathBuf,
        /// Which version and its status.
        source: StatusError,
    },
    /// The release directory already exists although RELEASES does not list it.
    #[error(
        "{tarball}: {dir} already exists but RELEASES does not list it; expected no directory for a new release (remove the stray directory)"
    )]
    DirExists {
        /// The tarball.
        tarball: PathBuf,
        /// The directory.
        dir: PathBuf,
    },
    /// `deploy` needs an empty root.
    #[error("{root}: {problem}; expected an empty (or missing) release root")]
    NotEmpty {
        /// The root.
        root: PathBuf,
        /// What is already there.
        problem: String,
    },
    /// Loading or saving `RELEASES` failed.
    #[error(transparent)]
    Releases(#[from] ReleasesError),
}

/// Why [`remove`](super::remove) failed.
#[derive(Debug, Error)]
pub enum RemoveError {
    /// The release is unknown, permanent or current.
    #[error("{root}: {source}")]
    Status {
        /// The root.
        root: PathBuf,
        /// Why.
        source: StatusError,
    },
    /// Loading or saving `RELEASES` failed.
    #[error(transparent)]
    Releases(#[from] ReleasesError),
    /// Deleting the directory failed (the RELEASES entry is already gone).
    #[error("{path}: removing the release directory: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Why [`known_releases`](super::known_releases) failed.
#[derive(Debug, Error)]
pub enum KnownError {
    /// Loading `RELEASES` failed.
    #[error(transparent)]
    Releases(#[from] ReleasesError),
    /// Reading a manifest or appup failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A manifest or appup on disk is invalid.
    #[error("{0}")]
    Invalid(relup_appup::Errors),
    /// A release's manifest names another version than its directory and `RELEASES` entry
    /// (an edited release.toml).
    #[error(
        "{path}: version {found}, but the release is listed as {expected}; expected version = \"{expected}\" \
         (restore the file, or `relup unpack --force` the release's tarball again)"
    )]
    Mismatch {
        /// The manifest.
        path: PathBuf,
        /// The version it names.
        found: semver::Version,
        /// The version of its directory and entry.
        expected: semver::Version,
    },
}
