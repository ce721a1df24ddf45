//! Loading every known release's manifest and appups from disk, for the planner.

use super::error::KnownError;
use super::layout::ReleaseRoot;
use super::releases_file::Releases;
use relup_appup::{Appup, KnownRelease, Release};
use std::fs;
use std::path::{Path, PathBuf};

/// Every release listed in `RELEASES`, with its status, manifest and appups
/// (`releases/<vsn>/appup/*.toml`, in file-name order), in `RELEASES` order.
pub fn known_releases(root: &ReleaseRoot) -> Result<Vec<KnownRelease>, KnownError> {
    let releases = Releases::load(root)?;
    let mut known = Vec::with_capacity(releases.releases.len());
    for entry in &releases.releases {
        let file = root.release_manifest(&entry.version);
        let text = read(&file)?;
        let release =
            Release::parse(&text, &file.to_string_lossy()).map_err(KnownError::Invalid)?;
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
                appups
                    .push(Appup::parse(&text, &f.to_string_lossy()).map_err(KnownError::Invalid)?);
            }
        }
        known.push(KnownRelease {
            release,
            status: entry.status,
            appups,
        });
    }
    Ok(known)
}

fn read(path: &Path) -> Result<String, KnownError> {
    fs::read_to_string(path).map_err(|source| KnownError::Io {
        path: path.to_path_buf(),
        source,
    })
}
