//! Putting a release root back in order after a crash (SIGKILL, power cut) in the middle of
//! an unpack, a remove or an atomic write. Run once at node start, before anything reads the
//! root, by [`crate::handler::ReleaseHandler::start`].
//!
//! What a crash can leave, and what is done with it (only things relup itself creates):
//! - `releases/.unpack-*/`: an unpack's temporary directory. If it holds the tarball of an
//!   in-place unpack whose `releases/<vsn>/` is gone (the crash came between the two
//!   renames), the tarball goes back to `releases/<vsn>/`. The directory is removed.
//! - `releases/.remove-<vsn>-*/`: a release directory that `remove` renamed aside before it
//!   wrote `RELEASES`. It goes back when `RELEASES` still lists the release, else it goes.
//! - `releases/<vsn>/` not listed in `RELEASES` but holding a `MANIFEST` (what an unpack
//!   writes): an unpack cut short between its rename and its `RELEASES` line. If every file
//!   matches the MANIFEST, the release is listed again as unpacked (a verified release is
//!   never deleted). Otherwise an in-place unpack's directory goes back to holding only its
//!   tarball, and any other is removed, each with a line saying why. A directory without a
//!   `MANIFEST` (a tarball the operator dropped in) is left alone.
//! - `.<file>.tmp-*` files of [`super::write_atomic`] in `releases/`, `config/`, `bin/` and
//!   `run/`: removed (the file they would have replaced is intact).
//!
//! Each repair is returned as one line for the node log.

use super::layout::ReleaseRoot;
use super::manifest::MANIFEST;
use super::releases_file::{Releases, now_unix};
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

/// The prefix of a release directory renamed aside by [`super::remove`] before RELEASES
/// drops it: `releases/.remove-<vsn>-<unique>`.
pub(crate) const REMOVE_PREFIX: &str = ".remove-";

/// The version in a `.remove-<vsn>-<pid>-<nanos>-<n>` name (the unique suffix of
/// `unique_suffix` has exactly three `-`-separated parts; a version may have its own `-`).
fn removed_version(name: &str) -> Option<Version> {
    let rest = name.strip_prefix(REMOVE_PREFIX)?;
    let mut parts = rest.rsplitn(4, '-');
    let (_n, _nanos, _pid) = (parts.next()?, parts.next()?, parts.next()?);
    Version::parse(parts.next()?).ok()
}

/// The versions RELEASES lists, when it exists and parses (directories not checked: a
/// listed release whose directory is aside is what this module puts back).
fn listed_versions(root: &ReleaseRoot) -> Option<Vec<Version>> {
    let file = root.releases_file();
    let text = fs::read_to_string(&file).ok()?;
    Releases::parse(&text, &file)
        .ok()
        .map(|r| r.releases.into_iter().map(|e| e.version).collect())
}

/// Checks that `dir` holds release `vsn` exactly as its MANIFEST says (every listed file with
/// its size and sha256, release.toml of that version and of the root's name); says why not.
fn verified_release(root: &ReleaseRoot, dir: &Path, vsn: &Version) -> Result<(), String> {
    let text = fs::read_to_string(dir.join(MANIFEST)).map_err(|e| format!("MANIFEST: {e}"))?;
    let manifest = super::Manifest::parse(&text).map_err(|e| format!("MANIFEST:{e}"))?;
    if &manifest.version != vsn {
        return Err(format!("its MANIFEST is of version {}", manifest.version));
    }
    if extracted_version(dir).as_ref() != Some(vsn) {
        return Err(format!("its release.toml is not that of {vsn}"));
    }
    let releases = Releases::load(root).map_err(|e| e.to_string())?;
    if let Some(name) = super::unpack::root_release_name(root, &releases)
        && name != manifest.name
    {
        return Err(format!("it is a release of {}, not {name}", manifest.name));
    }
    for file in &manifest.files {
        if !super::manifest::is_safe_relative(&file.path) {
            return Err(format!("unsafe path {} in its MANIFEST", file.path));
        }
        let path = dir.join(&file.path);
        let (sha, size) =
            super::sha256_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if sha != file.sha256 || size != file.size {
            return Err(format!("{} differs from its MANIFEST", path.display()));
        }
    }
    Ok(())
}

/// Repairs what a crash left in `root` (see the module documentation); returns one line per
/// repair.
pub fn recover(root: &ReleaseRoot) -> Result<Vec<String>, RecoverError> {
    // No unpack, remove or RELEASES write runs in between (an offline one included).
    let _lock = super::ReleasesLock::acquire(root).map_err(|e| RecoverError {
        path: root.releases_lock(),
        source: std::io::Error::other(e.to_string()),
    })?;
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
    // Removes cut short: a directory renamed aside (`releases/.remove-<vsn>-*`) goes back when
    // RELEASES still lists its release (the crash came before RELEASES was written), and is
    // deleted otherwise (the removal was recorded).
    let listed = listed_versions(root);
    for aside in entries(&releases_dir)? {
        let name = file_name(&aside);
        if !aside.is_dir() || !name.starts_with(REMOVE_PREFIX) {
            continue;
        }
        let vsn = removed_version(&name);
        let back = vsn.as_ref().map(|v| root.release_dir(v));
        match (&listed, vsn, back) {
            (Some(listed), Some(vsn), Some(back)) if listed.contains(&vsn) && !back.exists() => {
                fs::rename(&aside, &back).map_err(io(&aside))?;
                done.push(format!(
                    "put {} back: its remove was interrupted before RELEASES changed, and RELEASES still lists {vsn}",
                    back.display()
                ));
            }
            _ => {
                fs::remove_dir_all(&aside).map_err(io(&aside))?;
                done.push(format!(
                    "removed {} left by an interrupted remove",
                    aside.display()
                ));
            }
        }
    }
    // Release directories RELEASES does not list (only when RELEASES exists and reads: a
    // missing or broken one says nothing about what is listed, and the boot stops on it).
    // A directory whose files all match its MANIFEST is a verified release (an unpack cut
    // short between its rename and its RELEASES line): it is listed again as unpacked, never
    // deleted. Any other goes (an in-place unpack's directory back to its tarball).
    // Read again: directories may have come back above.
    let listed_now = listed_versions(root);
    for dir in entries(&releases_dir)? {
        let Some(listed) = &listed_now else { break };
        let Ok(vsn) = Version::parse(&file_name(&dir)) else {
            continue;
        };
        if !dir.is_dir() || listed.contains(&vsn) || !dir.join(MANIFEST).is_file() {
            continue;
        }
        match verified_release(root, &dir, &vsn) {
            Ok(()) => {
                // The lock is held already (taken above): read, change, write.
                let relisted = Releases::load(root).and_then(|mut releases| {
                    releases.add_unpacked(&vsn, now_unix())?;
                    releases.save(root)
                });
                match relisted {
                    Ok(()) => {
                        done.push(format!(
                            "listed {vsn} again as unpacked: {} verifies against its MANIFEST but RELEASES did not list it (an interrupted unpack)",
                            dir.display()
                        ));
                        continue;
                    }
                    Err(e) => done.push(format!(
                        "{} verifies but could not be listed in RELEASES ({e}); removing it",
                        dir.display()
                    )),
                }
            }
            Err(why) => done.push(format!(
                "{} is not in RELEASES and does not verify ({why})",
                dir.display()
            )),
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
