//! Deploying a first release into an empty root, and removing a release.

use super::atomic::{sync_dir, write_atomic, write_atomic_mode};
use super::error::{RemoveError, UnpackError};
use super::layout::{ReleaseRoot, launcher_script};
use super::releases_file::{Releases, now_unix};
use super::unpack::{UnpackedRelease, unpack};
use semver::Version;
use std::fs;
use std::path::Path;

/// Unpacks a first release into an empty (or missing) root at `root_path`, records it as
/// permanent (it is then the running release too), installs the `bin/<name>` launcher and
/// copies the release's `config.toml` to `config/config.toml` unless that exists.
pub fn deploy(tarball: &Path, root_path: &Path) -> Result<UnpackedRelease, UnpackError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UnpackError::Io { path, source }
    };
    let root = ReleaseRoot::create(root_path).map_err(io(root_path))?;
    let releases = Releases::load(&root)?;
    if !releases.releases.is_empty() {
        return Err(UnpackError::NotEmpty {
            root: root.path.clone(),
            problem: format!("it already has releases: {}", releases.known_list()),
        });
    }
    for dir in [root.releases_dir(), root.bin_dir()] {
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n != "RELEASES")
            .collect();
        if !names.is_empty() {
            names.sort();
            return Err(UnpackError::NotEmpty {
                root: root.path.clone(),
                problem: format!("{} holds {}", dir.display(), names.join(", ")),
            });
        }
    }
    let unpacked = unpack(&root, tarball)?;
    let vsn = &unpacked.release.version;
    let mut releases = Releases::load(&root)?;
    let now = now_unix();
    releases
        .set_current(vsn, now)
        .map_err(|e| UnpackError::Releases(e.into()))?;
    releases
        .make_permanent(vsn, now)
        .map_err(|e| UnpackError::Releases(e.into()))?;
    releases.save(&root)?;

    let abs = fs::canonicalize(&root.path).map_err(io(&root.path))?;
    let launcher = root.launcher(&unpacked.release.name);
    write_atomic_mode(&launcher, launcher_script(Some(&abs)).as_bytes(), 0o755)
        .map_err(io(&launcher))?;
    let live = root.config_file();
    let default = root.release_config(vsn);
    if !live.exists() && default.is_file() {
        let bytes = fs::read(&default).map_err(io(&default))?;
        write_atomic(&live, &bytes).map_err(io(&live))?;
    }
    Ok(unpacked)
}

/// Removes release `vsn`: never the permanent or the current one. The `RELEASES` entry goes
/// first (atomically), then the directory.
pub fn remove(root: &ReleaseRoot, vsn: &Version) -> Result<(), RemoveError> {
    let mut releases = Releases::load(root)?;
    releases.remove(vsn).map_err(|source| RemoveError::Status {
        root: root.path.clone(),
        source,
    })?;
    releases.save(root)?;
    let dir = root.release_dir(vsn);
    fs::remove_dir_all(&dir).map_err(|source| RemoveError::Io {
        path: dir.clone(),
        source,
    })?;
    sync_dir(&root.releases_dir()).map_err(|source| RemoveError::Io { path: dir, source })
}
