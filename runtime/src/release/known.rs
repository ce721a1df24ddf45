//! Loading every known release's manifest and appups from disk, for the planner.

use super::error::KnownError;
use super::layout::ReleaseRoot;
use super::releases_file::{ReleaseEntry, Releases};
use relup_appup::{Appup, KnownRelease, Release};
use semver::Version;
use std::fs;
use std::path::{Path, PathBuf};

/// Every release listed in `RELEASES`, with its status, manifest and appups
/// (`releases/<vsn>/appup/*.toml`, in file-name order), in `RELEASES` order. One unreadable
/// or invalid release fails the whole list; [`known_releases_each`] reads each on its own.
pub fn known_releases(root: &ReleaseRoot) -> Result<Vec<KnownRelease>, KnownError> {
    known_releases_each(root)?
        .into_iter()
        .map(|(_, known)| known)
        .collect()
}

/// A listed version and what reading its release gave.
pub type EachRelease = (Version, Result<KnownRelease, KnownError>);

/// Every release listed in `RELEASES`, each read on its own: a corrupt or edited release
/// (its manifest, an appup, or a manifest whose version is not its directory's) is an error
/// for that release only, so it does not hide every other one from the planner.
pub fn known_releases_each(root: &ReleaseRoot) -> Result<Vec<EachRelease>, KnownError> {
    let releases = Releases::load(root)?;
    Ok(releases
        .releases
        .iter()
        .map(|entry| (entry.version.clone(), known_release(root, entry)))
        .collect())
}

/// One listed release read from disk.
fn known_release(root: &ReleaseRoot, entry: &ReleaseEntry) -> Result<KnownRelease, KnownError> {
    let file = root.release_manifest(&entry.version);
    let text = read(&file)?;
    let release = Release::parse(&text, &file.to_string_lossy()).map_err(KnownError::Invalid)?;
    if release.version != entry.version {
        return Err(KnownError::Mismatch {
            path: file,
            found: release.version,
            expected: entry.version.clone(),
        });
    }
    let mut appups = Vec::new();
    let dir = root.appup_dir(&entry.version);
    if dir.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|source| KnownError::Io {
                path: dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for f in files {
            let text = read(&f)?;
            appups.push(Appup::parse(&text, &f.to_string_lossy()).map_err(KnownError::Invalid)?);
        }
    }
    Ok(KnownRelease {
        release,
        status: entry.status,
        appups,
    })
}

fn read(path: &Path) -> Result<String, KnownError> {
    fs::read_to_string(path).map_err(|source| KnownError::Io {
        path: path.to_path_buf(),
        source,
    })
}
