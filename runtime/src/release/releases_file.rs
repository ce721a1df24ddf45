//! `releases/RELEASES`: every known release, its status and when it changed; loaded with
//! errors naming the file, line and column; saved atomically; invariants checked both ways.
//!
//! ```toml
//! name = "ticker"
//!
//! [[release]]
//! version = "0.1.0"
//! status = "permanent"      # unpacked | current | permanent | old
//! unpacked_at = 1712345678  # unix seconds
//! installed_at = 1712345679 # optional: last made current
//! permanent_at = 1712345680 # optional: last made permanent
//! ```
//!
//! Statuses are exclusive: the running release is the `current` one if there is one, else the
//! `permanent` one (a permanent release that runs is just `permanent`). A running node keeps
//! `current` in memory (`ReleaseHandler::releases` overlays it) and writes this file only when
//! what a restart boots changes, as OTP does; `current` on disk comes from an offline `deploy`
//! or an older relup, and boot turns it back into `unpacked`.

use super::atomic::write_atomic;
use super::layout::ReleaseRoot;
use relup_appup::{Pos, ReleaseStatus};
use semver::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// One release listed in `RELEASES`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseEntry {
    /// The release version (its directory is `releases/<version>/`).
    pub version: Version,
    /// Its status.
    pub status: ReleaseStatus,
    /// When it was unpacked (unix seconds).
    pub unpacked_at: u64,
    /// When it was last made current (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_at: Option<u64>,
    /// When it was last made permanent (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permanent_at: Option<u64>,
}

/// The contents of `releases/RELEASES`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Releases {
    /// The release (product) name shared by every release of this root; `None` while empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every known release, in the order they were added.
    #[serde(default, rename = "release")]
    pub releases: Vec<ReleaseEntry>,
}

/// An error loading, checking, saving or changing `RELEASES`.
#[derive(Debug, Error)]
pub enum ReleasesError {
    /// Reading or writing the file failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not valid TOML or has the wrong shape.
    #[error("{file}:{line}:{column}: {message}; expected {expected}")]
    Syntax {
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
    /// The contents break an invariant (two current releases, duplicate versions, a
    /// release without its directory, ...).
    #[error("{file}:{line}:{column}: {message}; expected {expected}")]
    Invariant {
        /// The file.
        file: PathBuf,
        /// 1-based line of the offending entry (0 if unknown, e.g. before saving).
        line: usize,
        /// 1-based column (0 if unknown).
        column: usize,
        /// What is wrong.
        message: String,
        /// What would be valid.
        expected: String,
    },
    /// A status change that is not allowed.
    #[error(transparent)]
    Status(#[from] StatusError),
}

/// A status transition that is not allowed (pure; no file involved).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StatusError {
    /// The version is not in `RELEASES`.
    #[error("release {version} is not known; expected one of: {known}")]
    Unknown {
        /// The version asked for.
        version: Version,
        /// The known versions.
        known: String,
    },
    /// The version is already in `RELEASES`.
    #[error("release {version} is already known (status {status}); expected a new version")]
    AlreadyKnown {
        /// The version.
        version: Version,
        /// Its (unchanged) status.
        status: ReleaseStatus,
    },
    /// The release's status does not allow the action.
    #[error("cannot {action} release {version}: its status is {status}; expected {expected}")]
    BadStatus {
        /// What was attempted ("make permanent", "remove", ...).
        action: String,
        /// The version.
        version: Version,
        /// Its status.
        status: ReleaseStatus,
        /// What status would allow it.
        expected: String,
    },
}

/// An invariant violation found by [`Releases::check`], pointing at an entry when it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Index of the offending entry in [`Releases::releases`].
    pub index: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// What would be valid.
    pub expected: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; expected {}", self.message, self.expected)
    }
}

/// An exclusive lock on a root's `RELEASES`, for every read-modify-write of the file: an
/// unpack (in the node or offline), a deploy, `permanent`, `remove`, `reboot_old`, boot and
/// start-up recovery. It is an `flock` on `<root>/run/releases.lock`, so it serializes
/// writers in one process (each holder opens the file anew) and across processes (an offline
/// `relup unpack` beside a node), and the kernel releases it when its holder dies.
///
/// Hold it only around the read, the change and the write: never across a tarball's
/// verification, which may take seconds.
#[derive(Debug)]
pub struct ReleasesLock {
    _file: std::fs::File,
}

impl ReleasesLock {
    /// Waits for and takes the lock (creating `run/` and the lock file when missing).
    pub fn acquire(root: &ReleaseRoot) -> Result<ReleasesLock, ReleasesError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let file = root.releases_lock();
        let io = |source: io::Error| ReleasesError::Io {
            file: file.clone(),
            source,
        };
        let run = root.run_dir();
        if !run.is_dir() {
            match std::fs::DirBuilder::new().mode(0o700).create(&run) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
        }
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&file)
            .map_err(io)?;
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            if unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(ReleasesLock { _file: handle });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io(e));
            }
        }
    }
}

/// Now, in unix seconds (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const SHAPE: &str = "`name = \"...\"` and [[release]] tables with version, status (unpacked | current | permanent | old), unpacked_at, and optional installed_at, permanent_at";

#[derive(Deserialize)]
struct SpannedEntry {
    version: toml::Spanned<toml::Value>,
}

#[derive(Deserialize)]
struct SpannedReleases {
    #[serde(default)]
    release: Vec<SpannedEntry>,
}

impl Releases {
    /// Parses `RELEASES` text and checks the pure invariants (not the directories);
    /// `file` names it in errors.
    pub fn parse(text: &str, file: impl Into<PathBuf>) -> Result<Releases, ReleasesError> {
        let file = file.into();
        let releases: Releases = toml::from_str(text).map_err(|e| {
            let pos = e.span().map(|s| Pos::at(text, s.start)).unwrap_or_default();
            ReleasesError::Syntax {
                file: file.clone(),
                line: pos.line,
                column: pos.column,
                message: e.message().trim().to_string(),
                expected: SHAPE.to_string(),
            }
        })?;
        if let Err(v) = releases.check() {
            let spans: Vec<usize> = toml::from_str::<SpannedReleases>(text)
                .map(|s| s.release.iter().map(|e| e.version.span().start).collect())
                .unwrap_or_default();
            let pos = v
                .index
                .and_then(|i| spans.get(i))
                .map(|&off| Pos::at(text, off))
                .unwrap_or_default();
            return Err(ReleasesError::Invariant {
                file,
                line: pos.line,
                column: pos.column,
                message: v.message,
                expected: v.expected,
            });
        }
        Ok(releases)
    }

    /// The TOML text of `RELEASES`.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# Written by relup; every known release and its status.\n{body}")
    }

    /// Loads `<root>/releases/RELEASES` (an absent file is an empty list) and checks every
    /// invariant, including that each listed release has its directory.
    pub fn load(root: &ReleaseRoot) -> Result<Releases, ReleasesError> {
        let file = root.releases_file();
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Releases::default()),
            Err(source) => return Err(ReleasesError::Io { file, source }),
        };
        let releases = Releases::parse(&text, &file)?;
        if let Err(v) = releases.check_dirs(root) {
            let pos = v
                .index
                .and_then(|i| releases.releases.get(i))
                .and_then(|e| line_of_version(&text, &e.version))
                .unwrap_or_default();
            return Err(ReleasesError::Invariant {
                file,
                line: pos.line,
                column: pos.column,
                message: v.message,
                expected: v.expected,
            });
        }
        Ok(releases)
    }

    /// Reads `RELEASES` under its [`ReleasesLock`], applies `change`, and writes the result
    /// atomically before the lock is released: no other writer's change is lost in between.
    /// Nothing is written when `change` fails.
    pub fn update<T, E: From<ReleasesError>>(
        root: &ReleaseRoot,
        change: impl FnOnce(&mut Releases) -> Result<T, E>,
    ) -> Result<T, E> {
        let _lock = ReleasesLock::acquire(root)?;
        let mut releases = Releases::load(root)?;
        let out = change(&mut releases)?;
        releases.save(root)?;
        Ok(out)
    }

    /// Checks every invariant (including directories) and writes `<root>/releases/RELEASES`
    /// atomically. A read-modify-write goes through [`Releases::update`] (or holds a
    /// [`ReleasesLock`]) so that concurrent writers do not lose each other's changes.
    pub fn save(&self, root: &ReleaseRoot) -> Result<(), ReleasesError> {
        let file = root.releases_file();
        if let Err(v) = self.check().and_then(|()| self.check_dirs(root)) {
            return Err(ReleasesError::Invariant {
                file,
                line: 0,
                column: 0,
                message: format!("refusing to save: {}", v.message),
                expected: v.expected,
            });
        }
        write_atomic(&file, self.to_toml().as_bytes())
            .map_err(|source| ReleasesError::Io { file, source })
    }

    /// The pure invariants: versions unique, at most one current, at most one permanent.
    pub fn check(&self) -> Result<(), Violation> {
        let mut seen = BTreeSet::new();
        let mut current: Option<&Version> = None;
        let mut permanent: Option<&Version> = None;
        for (i, e) in self.releases.iter().enumerate() {
            if !seen.insert(&e.version) {
                return Err(Violation {
                    index: Some(i),
                    message: format!("release {} is listed twice", e.version),
                    expected: "each version once".into(),
                });
            }
            let slot = match e.status {
                ReleaseStatus::Current => &mut current,
                ReleaseStatus::Permanent => &mut permanent,
                _ => continue,
            };
            if let Some(first) = slot {
                return Err(Violation {
                    index: Some(i),
                    message: format!(
                        "release {} is {} but release {first} already is",
                        e.version, e.status
                    ),
                    expected: format!("at most one {} release", e.status),
                });
            }
            *slot = Some(&e.version);
        }
        Ok(())
    }

    /// Every listed release has its directory `releases/<vsn>/`.
    pub fn check_dirs(&self, root: &ReleaseRoot) -> Result<(), Violation> {
        for (i, e) in self.releases.iter().enumerate() {
            let dir = root.release_dir(&e.version);
            if !dir.is_dir() {
                return Err(Violation {
                    index: Some(i),
                    message: format!("release {} has no directory {}", e.version, dir.display()),
                    expected: "every listed release to have its directory".into(),
                });
            }
        }
        Ok(())
    }

    /// The entry of `vsn`.
    pub fn get(&self, vsn: &Version) -> Option<&ReleaseEntry> {
        self.releases.iter().find(|e| &e.version == vsn)
    }

    /// The status of `vsn`.
    pub fn status(&self, vsn: &Version) -> Option<ReleaseStatus> {
        self.get(vsn).map(|e| e.status)
    }

    /// The permanent release (booted on node restart).
    pub fn permanent(&self) -> Option<&ReleaseEntry> {
        self.releases
            .iter()
            .find(|e| e.status == ReleaseStatus::Permanent)
    }

    /// The running release: the current one if any, else the permanent one.
    pub fn running(&self) -> Option<&ReleaseEntry> {
        self.releases
            .iter()
            .find(|e| e.status == ReleaseStatus::Current)
            .or_else(|| self.permanent())
    }

    /// Adds `vsn` as `unpacked` at time `now`; a known version is refused unchanged.
    pub fn add_unpacked(&mut self, vsn: &Version, now: u64) -> Result<(), StatusError> {
        if let Some(e) = self.get(vsn) {
            return Err(StatusError::AlreadyKnown {
                version: vsn.clone(),
                status: e.status,
            });
        }
        self.releases.push(ReleaseEntry {
            version: vsn.clone(),
            status: ReleaseStatus::Unpacked,
            unpacked_at: now,
            installed_at: None,
            permanent_at: None,
        });
        Ok(())
    }

    /// Makes `vsn` the running release (after an install): a previous `current` release
    /// other than `vsn` goes back to `unpacked`; `vsn` becomes `current`, unless it is the
    /// permanent release, which then simply runs again (going back to the permanent).
    pub fn set_current(&mut self, vsn: &Version, now: u64) -> Result<(), StatusError> {
        let idx = self.index(vsn)?;
        for e in &mut self.releases {
            if e.status == ReleaseStatus::Current && &e.version != vsn {
                e.status = ReleaseStatus::Unpacked;
            }
        }
        let e = &mut self.releases[idx];
        if e.status != ReleaseStatus::Permanent {
            e.status = ReleaseStatus::Current;
        }
        e.installed_at = Some(now);
        Ok(())
    }

    /// Makes `vsn` permanent: it must be `current` (or already `permanent`: no change).
    /// The previous permanent release becomes `old`.
    pub fn make_permanent(&mut self, vsn: &Version, now: u64) -> Result<(), StatusError> {
        let idx = self.index(vsn)?;
        match self.releases[idx].status {
            ReleaseStatus::Permanent => return Ok(()),
            ReleaseStatus::Current => {}
            status => {
                return Err(StatusError::BadStatus {
                    action: "make permanent".into(),
                    version: vsn.clone(),
                    status,
                    expected: "current (install it first)".into(),
                });
            }
        }
        for e in &mut self.releases {
            if e.status == ReleaseStatus::Permanent {
                e.status = ReleaseStatus::Old;
            }
        }
        let e = &mut self.releases[idx];
        e.status = ReleaseStatus::Permanent;
        e.permanent_at = Some(now);
        Ok(())
    }

    /// Removes `vsn`'s entry; never the permanent or the current release.
    pub fn remove(&mut self, vsn: &Version) -> Result<ReleaseEntry, StatusError> {
        let idx = self.index(vsn)?;
        let status = self.releases[idx].status;
        if matches!(status, ReleaseStatus::Permanent | ReleaseStatus::Current) {
            return Err(StatusError::BadStatus {
                action: "remove".into(),
                version: vsn.clone(),
                status,
                expected: "unpacked or old (never the permanent or the current release)".into(),
            });
        }
        Ok(self.releases.remove(idx))
    }

    fn index(&self, vsn: &Version) -> Result<usize, StatusError> {
        self.releases
            .iter()
            .position(|e| &e.version == vsn)
            .ok_or_else(|| StatusError::Unknown {
                version: vsn.clone(),
                known: self.known_list(),
            })
    }

    /// "0.1.0 (permanent), 0.2.0 (unpacked)", or "none".
    pub fn known_list(&self) -> String {
        if self.releases.is_empty() {
            return "none".into();
        }
        self.releases
            .iter()
            .map(|e| format!("{} ({})", e.version, e.status))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn line_of_version(text: &str, vsn: &Version) -> Option<Pos> {
    let needle = format!("\"{vsn}\"");
    text.find(&needle).map(|off| Pos::at(text, off))
}
