//! Snapshots: the states of the processes an install is about to migrate, and the live
//! config, saved under the release root before the install starts.
//!
//! A snapshot is a directory `<root>/snapshots/<id>/`:
//! - `snapshot.toml`: format version, id, release name, the install it was taken for (`from`
//!   → `to`), when, and one `[[state]]` per process (pid, registered name, module, module
//!   version, offset and length in `states.bin`, sha256);
//! - `states.bin`: the exported states, back to back;
//! - `config.toml`: a copy of the live config, when there was one.
//!
//! It is written into `<id>.tmp/` and renamed into place, so a crash leaves either a complete
//! snapshot or a `.tmp` directory that listing ignores and the next write removes. Loading
//! checks every checksum: a corrupt or truncated snapshot is refused, never half-restored.

use crate::release::{ReleaseRoot, sha256_hex, sync_dir, write_atomic};
use relup_module::Pid;
use semver::Version;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// The snapshot format this runtime writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// How many snapshots are kept when a release does not say (`[snapshots] keep`).
pub const DEFAULT_KEEP: usize = 5;

const MANIFEST: &str = "snapshot.toml";
const STATES: &str = "states.bin";
const CONFIG: &str = "config.toml";

/// One process's saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateEntry {
    /// The process (pids are stable while the node runs; a restart makes new ones).
    pub pid: u64,
    /// Its registered name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The module it ran.
    pub module: String,
    /// The module version that exported the state.
    pub version: Version,
    /// Where the state starts in `states.bin`.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// sha256 of the state bytes.
    pub sha256: String,
}

/// `snapshot.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotManifest {
    /// [`SNAPSHOT_FORMAT`] when written.
    pub format: u32,
    /// The snapshot id (increasing per root).
    pub id: u64,
    /// The release (product) name.
    pub release: String,
    /// The release that ran when the snapshot was taken; the states are in its format.
    pub from: Version,
    /// The release the install went to.
    pub to: Version,
    /// When it was taken (RFC 3339, UTC).
    pub taken_at: String,
    /// The boot this snapshot was taken in (pids are only meaningful within one boot).
    pub boot_id: String,
    /// sha256 of the whole `states.bin`.
    pub states_sha256: String,
    /// sha256 of the copied `config.toml`, when there was a live config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,
    /// One entry per process.
    #[serde(default, rename = "state")]
    pub states: Vec<StateEntry>,
}

/// A state to save: the process, its name, its module and version, and the exported bytes.
#[derive(Debug, Clone)]
pub struct SavedState {
    /// The process.
    pub pid: Pid,
    /// Its registered name.
    pub name: Option<String>,
    /// Its module.
    pub module: String,
    /// The module version that exported `state`.
    pub version: Version,
    /// The exported state.
    pub state: Vec<u8>,
}

/// A snapshot read back and verified.
#[derive(Debug, Clone)]
pub struct LoadedSnapshot {
    /// Its manifest.
    pub manifest: SnapshotManifest,
    /// Each state with its bytes, in manifest order.
    pub states: Vec<(StateEntry, Vec<u8>)>,
    /// The saved config text, if any.
    pub config: Option<Vec<u8>>,
}

impl LoadedSnapshot {
    /// The states of one module, by pid.
    pub fn states_of(&self, module: &str) -> HashMap<Pid, Vec<u8>> {
        self.states
            .iter()
            .filter(|(e, _)| e.module == module)
            .map(|(e, bytes)| (Pid(e.pid), bytes.clone()))
            .collect()
    }
}

/// Why a snapshot could not be written, listed, read or used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `snapshot.toml` does not parse.
    #[error(
        "{file}:{line}:{column}: {message}; expected a snapshot manifest (format {SNAPSHOT_FORMAT})"
    )]
    Manifest {
        /// The file.
        file: PathBuf,
        /// 1-based line (0 if unknown).
        line: usize,
        /// 1-based column (0 if unknown).
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// A snapshot of another format version.
    #[error("{file}: snapshot format {found}; this relup reads format {SNAPSHOT_FORMAT}")]
    Format {
        /// The manifest.
        file: PathBuf,
        /// The format found.
        found: u32,
    },
    /// A checksum or length does not match.
    #[error("snapshot {id} is corrupt: {what}; it cannot be restored")]
    Corrupt {
        /// The snapshot.
        id: u64,
        /// What does not match.
        what: String,
    },
    /// No snapshot with this id.
    #[error("no snapshot {id} in {dir}; snapshots: {available}")]
    NotFound {
        /// The id asked for.
        id: u64,
        /// The snapshots directory.
        dir: PathBuf,
        /// The ids there are.
        available: String,
    },
    /// The snapshots directory is a symlink to nothing (creating it says "File exists").
    #[error(
        "{path} is a dangling symlink to {target}; expected a directory for the snapshots: create {target} (mkdir -p) or remove the link"
    )]
    DanglingLink {
        /// The snapshots directory.
        path: PathBuf,
        /// Where the link points.
        target: PathBuf,
    },
    /// The snapshot does not belong to the downgrade asked for.
    #[error("snapshot {id} does not match: {reason}")]
    Mismatch {
        /// The snapshot.
        id: u64,
        /// Why.
        reason: String,
    },
}

/// The snapshots of one release root.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl SnapshotStore {
    /// The store of `root` (`<root>/snapshots`).
    pub fn new(root: &ReleaseRoot) -> SnapshotStore {
        SnapshotStore {
            dir: root.snapshots_dir(),
        }
    }

    /// The directory holding the snapshots.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Why the snapshots directory could not be created: a dangling symlink is named as such.
    fn dir_error(&self, error: io::Error) -> SnapshotError {
        if error.kind() == io::ErrorKind::AlreadyExists
            && let Ok(target) = std::fs::read_link(&self.dir)
        {
            return SnapshotError::DanglingLink {
                path: self.dir.clone(),
                target,
            };
        }
        io_at(&self.dir)(error)
    }

    fn ids(&self) -> Result<Vec<u64>, SnapshotError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&self.dir)(e)),
        };
        let mut ids: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Writes a snapshot of `states` (and of `config`, the live config file, when it exists)
    /// taken before installing `to` over `from`. Returns its manifest.
    pub fn write(
        &self,
        release: &str,
        (from, to): (&Version, &Version),
        boot_id: &str,
        states: &[SavedState],
        config: &Path,
    ) -> Result<SnapshotManifest, SnapshotError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.dir_error(e))?;
        self.remove_partial();
        let id = self.ids()?.last().map_or(1, |last| last + 1);
        let tmp = self.dir.join(format!("{id}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        let mut blob = Vec::with_capacity(states.iter().map(|s| s.state.len()).sum());
        let mut entries = Vec::with_capacity(states.len());
        for saved in states {
            entries.push(StateEntry {
                pid: saved.pid.0,
                name: saved.name.clone(),
                module: saved.module.clone(),
                version: saved.version.clone(),
                offset: blob.len() as u64,
                len: saved.state.len() as u64,
                sha256: sha256_hex(&saved.state),
            });
            blob.extend_from_slice(&saved.state);
        }
        let config_sha256 = match std::fs::read(config) {
            Ok(bytes) => {
                let path = tmp.join(CONFIG);
                write_atomic(&path, &bytes).map_err(io_at(&path))?;
                Some(sha256_hex(&bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_at(config)(e)),
        };
        let manifest = SnapshotManifest {
            format: SNAPSHOT_FORMAT,
            id,
            release: release.to_string(),
            from: from.clone(),
            to: to.clone(),
            taken_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            boot_id: boot_id.to_string(),
            states_sha256: sha256_hex(&blob),
            config_sha256,
            states: entries,
        };
        let states_path = tmp.join(STATES);
        write_atomic(&states_path, &blob).map_err(io_at(&states_path))?;
        let text = toml::to_string(&manifest).map_err(|e| SnapshotError::Io {
            path: tmp.join(MANIFEST),
            source: io::Error::other(e),
        })?;
        let manifest_path = tmp.join(MANIFEST);
        write_atomic(&manifest_path, text.as_bytes()).map_err(io_at(&manifest_path))?;
        let final_dir = self.dir.join(id.to_string());
        std::fs::rename(&tmp, &final_dir).map_err(io_at(&final_dir))?;
        sync_dir(&self.dir).map_err(io_at(&self.dir))?;
        Ok(manifest)
    }

    /// Removes directories left by a write that did not finish (a crash mid-write); the node
    /// calls it when it starts, and every write does first.
    pub fn remove_partial(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    fn read_manifest(&self, id: u64) -> Result<SnapshotManifest, SnapshotError> {
        let file = self.dir.join(id.to_string()).join(MANIFEST);
        let text = std::fs::read_to_string(&file).map_err(io_at(&file))?;
        let manifest: SnapshotManifest = toml::from_str(&text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_col(&text, span.start))
                .unwrap_or((0, 0));
            SnapshotError::Manifest {
                file: file.clone(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        if manifest.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Format {
                file,
                found: manifest.format,
            });
        }
        if manifest.id != id {
            return Err(SnapshotError::Corrupt {
                id,
                what: format!("its manifest says it is snapshot {}", manifest.id),
            });
        }
        Ok(manifest)
    }

    /// Every snapshot's manifest, oldest first. A snapshot whose manifest cannot be read is
    /// returned as an error beside the others, not hidden.
    pub fn list(&self) -> Result<Vec<Result<SnapshotManifest, SnapshotError>>, SnapshotError> {
        Ok(self
            .ids()?
            .into_iter()
            .map(|id| self.read_manifest(id))
            .collect())
    }

    /// Reads snapshot `id` and verifies every checksum.
    pub fn load(&self, id: u64) -> Result<LoadedSnapshot, SnapshotError> {
        let ids = self.ids()?;
        if !ids.contains(&id) {
            return Err(SnapshotError::NotFound {
                id,
                dir: self.dir.clone(),
                available: if ids.is_empty() {
                    "none".into()
                } else {
                    ids.iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
        let manifest = self.read_manifest(id)?;
        let dir = self.dir.join(id.to_string());
        let states_path = dir.join(STATES);
        let blob = std::fs::read(&states_path).map_err(io_at(&states_path))?;
        let corrupt = |what: String| SnapshotError::Corrupt { id, what };
        if sha256_hex(&blob) != manifest.states_sha256 {
            return Err(corrupt(format!(
                "{} does not have the sha256 its manifest records",
                states_path.display()
            )));
        }
        let mut states = Vec::with_capacity(manifest.states.len());
        for entry in &manifest.states {
            let range = usize::try_from(entry.offset)
                .ok()
                .zip(usize::try_from(entry.len).ok())
                .and_then(|(start, len)| Some(start..start.checked_add(len)?))
                .filter(|r| r.end <= blob.len())
                .ok_or_else(|| {
                    corrupt(format!(
                        "the state of pid {} lies outside states.bin",
                        entry.pid
                    ))
                })?;
            let bytes = blob[range].to_vec();
            if sha256_hex(&bytes) != entry.sha256 {
                return Err(corrupt(format!(
                    "the state of pid {} does not match its sha256",
                    entry.pid
                )));
            }
            states.push((entry.clone(), bytes));
        }
        let config = match &manifest.config_sha256 {
            None => None,
            Some(sum) => {
                let path = dir.join(CONFIG);
                let bytes = std::fs::read(&path).map_err(io_at(&path))?;
                if &sha256_hex(&bytes) != sum {
                    return Err(corrupt(format!(
                        "{} does not match its sha256",
                        path.display()
                    )));
                }
                Some(bytes)
            }
        };
        Ok(LoadedSnapshot {
            manifest,
            states,
            config,
        })
    }

    /// Keeps the newest `keep` snapshots and removes the others; returns the ids removed.
    pub fn prune(&self, keep: usize) -> Result<Vec<u64>, SnapshotError> {
        let ids = self.ids()?;
        let excess = ids.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for id in ids.into_iter().take(excess) {
            let dir = self.dir.join(id.to_string());
            std::fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
            removed.push(id);
        }
        Ok(removed)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(pid: u64, state: &[u8]) -> SavedState {
        SavedState {
            pid: Pid(pid),
            name: (pid == 1).then(|| "one".to_string()),
            module: "counter".into(),
            version: Version::new(0, 1, 0),
            state: state.to_vec(),
        }
    }

    fn store() -> (tempfile::TempDir, SnapshotStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = ReleaseRoot::new(dir.path());
        (dir, SnapshotStore::new(&root))
    }

    #[test]
    fn writes_lists_loads_and_prunes() {
        let (dir, store) = store();
        let (a, b) = (Version::new(0, 1, 0), Version::new(0, 2, 0));
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "[ticker.ticker_server]\nticker = 5\n").expect("config");
        let states = [saved(1, b"first"), saved(2, b""), saved(3, b"third")];
        let m = store
            .write("ticker", (&a, &b), "boot", &states, &config)
            .expect("write");
        assert_eq!(m.id, 1);
        let loaded = store.load(1).expect("load");
        assert_eq!(loaded.states.len(), 3);
        assert_eq!(
            loaded.states_of("counter").get(&Pid(3)),
            Some(&b"third".to_vec())
        );
        assert_eq!(loaded.states[0].0.name.as_deref(), Some("one"));
        assert!(loaded.config.is_some());
        for _ in 0..3 {
            store
                .write("ticker", (&a, &b), "boot", &states, &config)
                .expect("write");
        }
        assert_eq!(store.prune(2).expect("prune"), vec![1, 2]);
        let ids: Vec<u64> = store
            .list()
            .expect("list")
            .into_iter()
            .map(|m| m.expect("manifest").id)
            .collect();
        assert_eq!(ids, vec![3, 4]);
    }

    #[test]
    fn corrupt_or_missing_snapshots_are_refused() {
        let (dir, store) = store();
        let (a, b) = (Version::new(0, 1, 0), Version::new(0, 2, 0));
        let none = dir.path().join("absent.toml");
        store
            .write("ticker", (&a, &b), "boot", &[saved(1, b"state")], &none)
            .expect("write");
        let e = store.load(7).expect_err("missing");
        assert!(e.to_string().contains("no snapshot 7") && e.to_string().contains("1"));
        let states = store.dir().join("1").join(STATES);
        std::fs::write(&states, b"stat3").expect("tamper");
        let e = store.load(1).expect_err("corrupt");
        assert!(e.to_string().contains("corrupt"), "{e}");
        let manifest = store.dir().join("1").join(MANIFEST);
        std::fs::write(&manifest, "format = 1\nid = \"x\"\n").expect("tamper");
        let e = store.load(1).expect_err("bad manifest");
        assert!(e.to_string().contains("snapshot.toml:2"), "{e}");
    }
}
