//! Putting a release root back in order after a crash (SIGKILL, power cut) in the middle of
//! an unpack, a remove or an atomic write. Run once at node start, before anything reads the
//! root, by [`crate::handler::ReleaseHandler::start`].
//!
//! What a crash can leave, and what is done with it (only things relup itself creates):
//! - `releases/.unpack-*/`: an unpack's temporary directory. If it holds the tarball of an
//!   in-place unpack whose `releases/<vsn>/` is gone (the crash came between the two
//!   renames), the tarball goes back to `releases/<vsn>/`. The directory is removed.
//! - `releases/<vsn>/` not listed in `RELEASES` but holding a `MANIFEST` (what an unpack
//!   writes): an unpack that was not recorded, or a remove that was. An in-place unpack's
//!   directory goes back to holding only its tarball; any other is removed. A directory
//!   without a `MANIFEST` (a tarball the operator dropped in) is left alone.
//! - `.<file>.tmp-*` files of [`super::write_atomic`] in `releases/`, `config/`, `bin/` and
//!   `run/`: removed (the file they would have replaced is intact).
//!
//! Each repair is returned as one line for the node log.

use super::layout::ReleaseRoot;
use super::manifest::MANIFEST;
use super::releases_file::Releases;
use relup_appup::Release;
use semver::Version;
use std::fs;
use std::path::{Path, PathBuf};

/// Why the root could not be put back in order.
#[derive(Debug, thiserror::Error)]
#[error("recovering {path} after a crash: {source}")]
pub struct RecoverError {
    /// The file or directory being repaired.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecoverError + '_ {
    move |source| RecoverError {
        path: path.to_path_buf(),
        source,
    }
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>, RecoverError> {
    match fs::read_dir(dir) {
        Ok(list) => {
            let mut out: Vec<PathBuf> = list.filter_map(|e| e.ok().map(|e| e.path())).collect();
            out.sort();
            Ok(out)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(dir)(e)),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The tarballs of version `vsn` (`<name>-<vsn>.tar.gz`) directly in `dir`.
fn tarballs(dir: &Path, vsn: &Version) -> Result<Vec<PathBuf>, RecoverError> {
    let suffix = format!("-{vsn}.tar.gz");
    Ok(entries(dir)?
        .into_iter()
        .filter(|p| {
            let name = file_name(p);
            p.is_file() && name.ends_with(&suffix) && name.len() > suffix.len()
        })
        .collect())
}

/// The version of the release extracted in `dir` (its release.toml), if readable.
fn extracted_version(dir: &Path) -> Option<Version> {
    let file = dir.join("release.toml");
    let text = fs::read_to_string(&file).ok()?;
    Release::parse(&text, &file.to_string_lossy())
        .ok()
        .map(|r| r.version)
}

/// Repairs what a crash left in `root` (see the module documentation); returns one line per
/// repair.
pub fn recover(root: &ReleaseRoot) -> Result<Vec<String>, RecoverError> {
    let mut done = Vec::new();
    let releases_dir = root.releases_dir();
    // Unpack temporary directories.
    for tmp in entries(&releases_dir)? {
        if !tmp.is_dir() || !file_name(&tmp).starts_with(".unpack-") {
            continue;
        }
        if let Some(vsn) = extracted_version(&tmp) {
            let dest = root.release_dir(&vsn);
            for tarball in tarballs(&tmp, &vsn)? {
                if !dest.exists() {
                    fs::create_dir(&dest).map_err(io(&dest))?;
                }
                let back = dest.join(file_name(&tarball));
                if !back.exists() {
                    fs::rename(&tarball, &back).map_err(io(&tarball))?;
                    done.push(format!(
                        "put {} back after an interrupted unpack",
                        back.display()
                    ));
                }
            }
        }
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        done.push(format!(
            "removed {} left by an interrupted unpack",
            tmp.display()
        ));
    }
    // Release directories RELEASES does not list (only when RELEASES exists and reads: a
    // missing or broken one says nothing about what is listed, and the boot stops on it).
    let listed = if root.releases_file().is_file() {
        Releases::load(root).ok().map(|r| {
            r.releases
                .into_iter()
                .map(|e| e.version)
                .collect::<Vec<_>>()
        })
    } else {
        None
    };
    for dir in entries(&releases_dir)? {
        let Some(listed) = &listed else { break };
        let Ok(vsn) = Version::parse(&file_name(&dir)) else {
            continue;
        };
        if !dir.is_dir() || listed.contains(&vsn) || !dir.join(MANIFEST).is_file() {
            continue;
        }
        let kept = tarballs(&dir, &vsn)?;
        if kept.is_empty() {
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
            done.push(format!(
                "removed {}: not in RELEASES (an interrupted unpack or remove)",
                dir.display()
            ));
        } else {
            for entry in entries(&dir)? {
                if kept.contains(&entry) {
                    continue;
                }
                if entry.is_dir() {
                    fs::remove_dir_all(&entry).map_err(io(&entry))?;
                } else {
                    fs::remove_file(&entry).map_err(io(&entry))?;
                }
            }
            done.push(format!(
                "reset {} to its tarball: not in RELEASES (an interrupted unpack)",
                dir.display()
            ));
        }
    }
    // Temporary files of atomic writes.
    for dir in [
        releases_dir.clone(),
        root.config_dir(),
        root.bin_dir(),
        root.run_dir(),
    ] {
        for file in entries(&dir)? {
            let name = file_name(&file);
            if name.starts_with('.') && name.contains(".tmp-") && file.is_file() {
                fs::remove_file(&file).map_err(io(&file))?;
                done.push(format!("removed {} (an interrupted write)", file.display()));
            }
        }
    }
    if !done.is_empty() {
        super::atomic::sync_dir(&releases_dir).map_err(io(&releases_dir))?;
    }
    Ok(done)
}
