//! Deploying a first release into an empty root, and removing a release.

use super::atomic::{sync_dir, write_atomic, write_atomic_mode};
use super::error::{RemoveError, UnpackError};
use super::layout::{ReleaseRoot, launcher_script};
use super::releases_file::{Releases, ReleasesLock, now_unix};
use super::unpack::{UnpackedRelease, unpack};
use crate::config::LiveConfig;
use semver::Version;
use std::fs;
use std::path::Path;

/// Unpacks a first release into an empty (or missing) root at `root_path`, records it as
/// permanent (it is then the running release too), installs the `bin/<name>` launcher and,
/// unless it exists, writes `config/config.toml`: the values of the release's `config.toml`
/// (if it has one) as set values, and every other key the release declares as a commented
/// line with its default (see [`crate::config::LiveConfig::render_for`]), so the operator
/// finds every key that can be set.
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
    Releases::update(&root, |releases| {
        let now = now_unix();
        releases
            .set_current(vsn, now)
            .map_err(|e| UnpackError::Releases(e.into()))?;
        releases
            .make_permanent(vsn, now)
            .map_err(|e| UnpackError::Releases(e.into()))
    })?;

    let abs = fs::canonicalize(&root.path).map_err(io(&root.path))?;
    let launcher = root.launcher(&unpacked.release.name);
    write_atomic_mode(&launcher, launcher_script(Some(&abs)).as_bytes(), 0o755)
        .map_err(io(&launcher))?;
    let live = root.config_file();
    if !live.exists() {
        let values =
            LiveConfig::load(&root.release_config(vsn)).map_err(|problem| UnpackError::Entry {
                tarball: tarball.to_path_buf(),
                entry: "config.toml".into(),
                problem,
                expected: "[app.module] tables of key = value".into(),
            })?;
        write_atomic(&live, values.render_for(&unpacked.release).as_bytes()).map_err(io(&live))?;
    }
    Ok(unpacked)
}

/// Removes release `vsn`: never the permanent or the current one, nor `running` (the
/// release a node runs, `current` in its memory only). Under the [`ReleasesLock`], the
/// directory is renamed aside (`releases/.remove-<vsn>-*`), then the `RELEASES` entry goes
/// (atomically), then the directory is deleted. A crash in between is put right at the next
/// start (see [`super::recover`]): the directory comes back while `RELEASES` lists it.
/// Returns the directory that was removed.
pub fn remove(
    root: &ReleaseRoot,
    vsn: &Version,
    running: Option<&Version>,
) -> Result<std::path::PathBuf, RemoveError> {
    let status = |source| RemoveError::Status {
        root: root.path.clone(),
        source,
    };
    let dir = root.release_dir(vsn);
    let aside = root.releases_dir().join(format!(
        "{}{vsn}-{}",
        super::recover::REMOVE_PREFIX,
        super::atomic::unique_suffix()
    ));
    {
        let _lock = ReleasesLock::acquire(root)?;
        let mut releases = Releases::load(root)?;
        if running == Some(vsn) {
            let mut overlay = releases.clone();
            overlay.set_current(vsn, now_unix()).map_err(status)?;
            overlay.remove(vsn).map_err(status)?;
        }
        releases.remove(vsn).map_err(status)?;
        fs::rename(&dir, &aside).map_err(|source| RemoveError::Io {
            path: dir.clone(),
            source,
        })?;
        crate::fault::crash_point(|| format!("remove: {} renamed aside", dir.display()));
        if let Err(e) = releases.save(root) {
            let _ = fs::rename(&aside, &dir);
            return Err(e.into());
        }
    }
    fs::remove_dir_all(&aside).map_err(|source| RemoveError::Io {
        path: aside.clone(),
        source,
    })?;
    sync_dir(&root.releases_dir()).map_err(|source| RemoveError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}
