//! Unpacking a release tarball into the root: extract into `releases/.unpack-*`, verify
//! everything, then rename into `releases/<vsn>/` and record it as `unpacked`.
//!
//! Refused: absolute paths, `..`, symlinks, hard links, devices, fifos and any other
//! non-file non-directory entry, duplicate entries, entries over the size caps, too many
//! entries, files whose sha256 or size differ from the MANIFEST, files the MANIFEST lists
//! but the archive lacks and files it does not list, an invalid release.toml or appup, a
//! module whose library sha256 differs from release.toml, a release of another name than
//! the root's, and a version already known. On any failure the temporary directory is
//! removed and `RELEASES` is unchanged.

use super::atomic::{sync_dir, unique_suffix};
use super::error::UnpackError;
use super::layout::ReleaseRoot;
use super::manifest::{MANIFEST, Manifest, is_safe_relative, is_valid_name};
use super::releases_file::{Releases, ReleasesLock, now_unix};
use flate2::read::GzDecoder;
use relup_appup::{Appup, Release};
use semver::Version;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Caps that protect against decompression bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of all files (default 512 MiB).
    pub max_total: u64,
    /// Bytes of one file (default 256 MiB).
    pub max_entry: u64,
    /// Number of archive entries, directories included (default 10 000).
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_total: 512 << 20,
            max_entry: 256 << 20,
            max_entries: 10_000,
        }
    }
}

/// A release unpacked into the root and recorded as `unpacked`.
#[derive(Debug, Clone)]
pub struct UnpackedRelease {
    /// Its manifest (as parsed from the unpacked release.toml).
    pub release: Release,
    /// Its appups.
    pub appups: Vec<Appup>,
    /// Its directory, `releases/<vsn>/`.
    pub dir: PathBuf,
    /// The package MANIFEST.
    pub manifest: Manifest,
}

/// Unpacks `tarball` into `root` with the default [`Limits`].
pub fn unpack(root: &ReleaseRoot, tarball: &Path) -> Result<UnpackedRelease, UnpackError> {
    unpack_with(root, tarball, Limits::default())
}

/// Unpacks `tarball` into `root`: verified in a temporary directory under `releases/`, then
/// renamed to `releases/<vsn>/` and recorded as `unpacked` in `RELEASES` (atomically).
pub fn unpack_with(
    root: &ReleaseRoot,
    tarball: &Path,
    limits: Limits,
) -> Result<UnpackedRelease, UnpackError> {
    let releases = Releases::load(root)?;
    let tmp = TempDir::create(root)?;
    let verified = verify_traced(root, &releases, tarball, limits, &tmp.path, None)?;
    crate::fault::crash_point(|| format!("unpack: extracted into {}", tmp.path.display()));
    // From here to the RELEASES write, no other writer runs; RELEASES is read again, as the
    // verification may have taken seconds (another unpack or `permanent` may have written it).
    let _lock = ReleasesLock::acquire(root)?;
    let mut releases = fresh_releases(root, &verified)?;
    let dest = root.release_dir(&verified.release.version);
    if dest.exists() {
        return Err(UnpackError::DirExists {
            tarball: tarball.to_path_buf(),
            dir: dest,
        });
    }
    fs::rename(&tmp.path, &dest).map_err(|source| UnpackError::Io {
        path: dest.clone(),
        source,
    })?;
    tmp.disarm();
    crate::fault::crash_point(|| format!("unpack: renamed into {}", dest.display()));
    commit(root, &mut releases, verified, dest, |dest| {
        let _ = fs::remove_dir_all(dest);
    })
}

/// Unpacks the tarball dropped in `releases/<vsn>/`, a directory that must hold only
/// `<name>-<vsn>.tar.gz`. The tarball stays in the release directory.
pub fn unpack_in_place(root: &ReleaseRoot, vsn: &Version) -> Result<UnpackedRelease, UnpackError> {
    let releases = Releases::load(root)?;
    let dir = root.release_dir(vsn);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UnpackError::Io { path, source }
    };
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(io(&dir))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let suffix = format!("-{vsn}.tar.gz");
    let tarball_name = match names.as_slice() {
        [one] if one.ends_with(&suffix) && one.len() > suffix.len() => one.clone(),
        _ => {
            return Err(UnpackError::Package {
                tarball: dir.clone(),
                problem: format!("the directory holds [{}]", names.join(", ")),
                expected: format!("only one file, <name>{suffix}"),
            });
        }
    };
    let tarball = dir.join(&tarball_name);
    let tmp = TempDir::create(root)?;
    let verified = verify_traced(
        root,
        &releases,
        &tarball,
        Limits::default(),
        &tmp.path,
        Some(vsn),
    )?;
    // As in `unpack_with`: the swap and the RELEASES write under the lock, on a fresh read.
    let _lock = ReleasesLock::acquire(root)?;
    let mut releases = fresh_releases(root, &verified)?;
    // Move the tarball next to the verified files, swap the directories.
    let kept = tmp.path.join(&tarball_name);
    crate::fault::crash_point(|| format!("unpack in place: extracted into {}", tmp.path.display()));
    fs::rename(&tarball, &kept).map_err(io(&tarball))?;
    crate::fault::crash_point(|| format!("unpack in place: tarball moved to {}", kept.display()));
    let swapped = fs::remove_dir(&dir).and_then(|()| {
        crate::fault::crash_point(|| format!("unpack in place: {} removed", dir.display()));
        fs::rename(&tmp.path, &dir)
    });
    if let Err(source) = swapped {
        let _ = fs::create_dir(&dir);
        let _ = fs::rename(&kept, &tarball);
        return Err(UnpackError::Io { path: dir, source });
    }
    tmp.disarm();
    crate::fault::crash_point(|| format!("unpack in place: renamed into {}", dir.display()));
    let tarball_for_undo = tarball.clone();
    commit(root, &mut releases, verified, dir, move |dir| {
        // Put the directory back as it was: only the tarball.
        let back = dir.with_extension(format!("undo-{}", unique_suffix()));
        if fs::rename(dir, &back).is_ok() && fs::create_dir(dir).is_ok() {
            let name = tarball_for_undo
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_default();
            let _ = fs::rename(back.join(&name), &tarball_for_undo);
            let _ = fs::remove_dir_all(&back);
        }
    })
}

/// `RELEASES` read again under the [`ReleasesLock`], refusing a version that another writer
/// recorded while this one was verifying.
fn fresh_releases(root: &ReleaseRoot, verified: &Verified) -> Result<Releases, UnpackError> {
    let releases = Releases::load(root)?;
    if let Some(e) = releases.get(&verified.release.version) {
        return Err(UnpackError::AlreadyKnown {
            tarball: verified.tarball.clone(),
            source: super::releases_file::StatusError::AlreadyKnown {
                version: e.version.clone(),
                status: e.status,
            },
        });
    }
    Ok(releases)
}

/// Records the renamed release in RELEASES (the caller holds the [`ReleasesLock`]); on
/// failure runs `undo` on its directory.
fn commit(
    root: &ReleaseRoot,
    releases: &mut Releases,
    verified: Verified,
    dir: PathBuf,
    undo: impl FnOnce(&Path),
) -> Result<UnpackedRelease, UnpackError> {
    let result = sync_dir(&root.releases_dir())
        .map_err(|source| UnpackError::Io {
            path: root.releases_dir(),
            source,
        })
        .and_then(|()| {
            releases
                .add_unpacked(&verified.release.version, now_unix())
                .map_err(|source| UnpackError::AlreadyKnown {
                    tarball: verified.tarball.clone(),
                    source,
                })?;
            if releases.name.is_none() {
                releases.name = Some(verified.release.name.clone());
            }
            releases.save(root).map_err(UnpackError::from)
        });
    if let Err(e) = result {
        undo(&dir);
        return Err(e);
    }
    Ok(UnpackedRelease {
        release: verified.release,
        appups: verified.appups,
        dir,
        manifest: verified.manifest,
    })
}

/// The release name of the root: RELEASES' `name`, else that of any listed release.
pub(crate) fn root_release_name(root: &ReleaseRoot, releases: &Releases) -> Option<String> {
    if let Some(n) = &releases.name {
        return Some(n.clone());
    }
    releases.releases.iter().find_map(|e| {
        let file = root.release_manifest(&e.version);
        let text = fs::read_to_string(&file).ok()?;
        Release::parse(&text, &file.to_string_lossy())
            .ok()
            .map(|r| r.name)
    })
}

/// A temporary directory `releases/.unpack-*` removed on drop unless disarmed.
struct TempDir {
    path: PathBuf,
    armed: bool,
}

impl TempDir {
    fn create(root: &ReleaseRoot) -> Result<TempDir, UnpackError> {
        let path = root
            .releases_dir()
            .join(format!(".unpack-{}", unique_suffix()));
        DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(|source| UnpackError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(TempDir { path, armed: true })
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// What verification found.
struct Verified {
    tarball: PathBuf,
    release: Release,
    appups: Vec<Appup>,
    manifest: Manifest,
}

/// [`verify`] in a `verify` span (see [`crate::trace`]): `from` is the tarball, `to` the
/// version it holds once verified.
fn verify_traced(
    root: &ReleaseRoot,
    releases: &Releases,
    tarball: &Path,
    limits: Limits,
    tmp: &Path,
    expect_vsn: Option<&Version>,
) -> Result<Verified, UnpackError> {
    let to = expect_vsn.map_or(String::new(), Version::to_string);
    let span = crate::trace::phase(crate::trace::Phase::Verify, &tarball.display(), &to);
    let verified = span.in_scope(|| verify(root, releases, tarball, limits, tmp, expect_vsn))?;
    span.record("to", verified.release.version.to_string());
    Ok(verified)
}

/// Extracts `tarball` into `tmp` and checks everything; `expect_vsn` for in-place unpacks.
fn verify(
    root: &ReleaseRoot,
    releases: &Releases,
    tarball: &Path,
    limits: Limits,
    tmp: &Path,
    expect_vsn: Option<&Version>,
) -> Result<Verified, UnpackError> {
    let tb = || tarball.to_path_buf();
    let package = |problem: String, expected: String| UnpackError::Package {
        tarball: tb(),
        problem,
        expected,
    };
    let files = extract(tarball, tmp, limits)?;

    // MANIFEST: present, parses, matches the files exactly.
    if !files.contains_key(MANIFEST) {
        return Err(package(
            "no MANIFEST entry".into(),
            "a MANIFEST listing every file (made by `relup release`)".into(),
        ));
    }
    let manifest_path = tmp.join(MANIFEST);
    let text = fs::read_to_string(&manifest_path).map_err(|e| UnpackError::Entry {
        tarball: tb(),
        entry: MANIFEST.into(),
        problem: format!("cannot be read as text: {e}"),
        expected: "UTF-8 TOML".into(),
    })?;
    let manifest = Manifest::parse(&text).map_err(|e| UnpackError::Entry {
        tarball: tb(),
        entry: format!("{MANIFEST}:{e}"),
        problem: "invalid MANIFEST".into(),
        expected: "`name`, `version` and [[file]] tables with path, sha256, size".into(),
    })?;
    let mut listed = BTreeSet::new();
    for f in &manifest.files {
        if !listed.insert(f.path.as_str()) || f.path == MANIFEST {
            return Err(UnpackError::Entry {
                tarball: tb(),
                entry: MANIFEST.into(),
                problem: format!("lists `{}` twice", f.path),
                expected: "each file listed once (and not the MANIFEST itself)".into(),
            });
        }
        match files.get(&f.path) {
            None => {
                return Err(UnpackError::Entry {
                    tarball: tb(),
                    entry: f.path.clone(),
                    problem: "listed in the MANIFEST but missing from the archive".into(),
                    expected: format!("a file of {} bytes with sha256 {}", f.size, f.sha256),
                });
            }
            Some((sha, size)) if *sha != f.sha256 || *size != f.size => {
                return Err(UnpackError::Entry {
                    tarball: tb(),
                    entry: f.path.clone(),
                    problem: format!("has sha256 {sha} and {size} bytes"),
                    expected: format!(
                        "sha256 {} and {} bytes as the MANIFEST says",
                        f.sha256, f.size
                    ),
                });
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = files
        .keys()
        .find(|p| p.as_str() != MANIFEST && !listed.contains(p.as_str()))
    {
        return Err(UnpackError::Entry {
            tarball: tb(),
            entry: extra.clone(),
            problem: "not listed in the MANIFEST".into(),
            expected: "only the files the MANIFEST lists".into(),
        });
    }

    // release.toml: parses, agrees with the MANIFEST, modules' sha256 match.
    let label = format!("{}-{}", manifest.name, manifest.version);
    let rel_text =
        fs::read_to_string(tmp.join("release.toml")).map_err(|e| UnpackError::Entry {
            tarball: tb(),
            entry: "release.toml".into(),
            problem: format!("cannot be read: {e}"),
            expected: "a UTF-8 release.toml".into(),
        })?;
    let release =
        Release::parse(&rel_text, &format!("{label}/release.toml")).map_err(|errors| {
            UnpackError::Invalid {
                tarball: tb(),
                errors,
            }
        })?;
    if release.name != manifest.name || release.version != manifest.version {
        return Err(UnpackError::Entry {
            tarball: tb(),
            entry: "release.toml".into(),
            problem: format!("is release {} {}", release.name, release.version),
            expected: format!(
                "release {} {} as the MANIFEST says",
                manifest.name, manifest.version
            ),
        });
    }
    if !is_valid_name(&release.name) {
        return Err(UnpackError::Entry {
            tarball: tb(),
            entry: "release.toml".into(),
            problem: format!("release name `{}` cannot name files", release.name),
            expected: "letters, digits, `_`, `-` or `.`, not starting with `.`".into(),
        });
    }
    for app in &release.applications {
        for m in app.modules.iter().filter(|m| !m.native) {
            let found = files.get(&m.file).map(|(sha, _)| sha.as_str());
            if found != Some(m.sha256.as_str()) {
                return Err(UnpackError::Entry {
                    tarball: tb(),
                    entry: m.file.clone(),
                    problem: match found {
                        Some(sha) => format!("library of module `{}` has sha256 {sha}", m.name),
                        None => format!("library of module `{}` is not in the archive", m.name),
                    },
                    expected: format!("sha256 {} as release.toml says", m.sha256),
                });
            }
        }
    }
    let mut appups = Vec::new();
    for path in files.keys().filter(|p| p.starts_with("appup/")) {
        let text = fs::read_to_string(tmp.join(path)).map_err(|e| UnpackError::Entry {
            tarball: tb(),
            entry: path.clone(),
            problem: format!("cannot be read: {e}"),
            expected: "a UTF-8 appup".into(),
        })?;
        appups.push(
            Appup::parse(&text, &format!("{label}/{path}")).map_err(|errors| {
                UnpackError::Invalid {
                    tarball: tb(),
                    errors,
                }
            })?,
        );
    }

    // Against the root.
    if let Some(expected) = expect_vsn
        && *expected != release.version
    {
        return Err(package(
            format!("holds release {}", release.version),
            format!("release {expected}, the directory it was dropped in"),
        ));
    }
    if let Some(name) = root_release_name(root, releases)
        && name != release.name
    {
        return Err(UnpackError::WrongName {
            tarball: tb(),
            found: release.name,
            expected: name,
        });
    }
    if let Some(e) = releases.get(&release.version) {
        return Err(UnpackError::AlreadyKnown {
            tarball: tb(),
            source: super::releases_file::StatusError::AlreadyKnown {
                version: e.version.clone(),
                status: e.status,
            },
        });
    }
    Ok(Verified {
        tarball: tb(),
        release,
        appups,
        manifest,
    })
}

/// Most bytes a metadata entry (GNU long name or link, PAX header) may have: names longer
/// than a path can be are no names, and nothing else in them is kept.
const META_MAX: u64 = 64 << 10;

/// What a raw metadata entry is, for errors; `None` for an entry that is a file system
/// object of its own.
fn metadata_kind(kind: tar::EntryType) -> Option<&'static str> {
    match kind {
        tar::EntryType::GNULongName => Some("GNU long name"),
        tar::EntryType::GNULongLink => Some("GNU long link name"),
        tar::EntryType::XHeader => Some("PAX header"),
        tar::EntryType::XGlobalHeader => Some("PAX global header"),
        _ => None,
    }
}

/// The path a PAX header gives the next entry, if any. Records that would change how the
/// archive is read (`size`) or what an entry is (`linkpath`) are refused: relup's packer
/// never writes them, and a reader that honoured them differently from this one could be
/// shown a different archive.
fn pax_path(data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut path = None;
    for record in tar::PaxExtensions::new(data) {
        let record = record.map_err(|e| format!("a malformed PAX record: {e}"))?;
        match record.key_bytes() {
            b"path" => path = Some(record.value_bytes().to_vec()),
            b"size" | b"linkpath" | b"GNU.sparse.size" | b"GNU.sparse.map" => {
                return Err(format!(
                    "a PAX `{}` record",
                    String::from_utf8_lossy(record.key_bytes())
                ));
            }
            _ => {}
        }
    }
    Ok(path)
}

/// Extracts every entry into `tmp`, refusing anything unsafe; returns each file's sha256 and
/// size by package path.
fn extract(
    tarball: &Path,
    tmp: &Path,
    limits: Limits,
) -> Result<BTreeMap<String, (String, u64)>, UnpackError> {
    let tb = || tarball.to_path_buf();
    let archive_err = |e: io::Error| UnpackError::Archive {
        tarball: tb(),
        message: e.to_string(),
    };
    let file = File::open(tarball).map_err(|source| UnpackError::Io { path: tb(), source })?;
    let mut archive = tar::Archive::new(GzDecoder::new(io::BufReader::new(file)));
    let mut files: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut total = 0u64;
    let mut count = 0usize;
    // Raw entries: the tar reader would buffer a GNU long name or a PAX header whole, in
    // memory, before any check of ours runs (a 1 GiB long name of zeros is a 1 MB
    // tarball); they are read here, capped at META_MAX, and applied to the next entry.
    let mut long_name: Option<Vec<u8>> = None;
    for entry in archive.entries().map_err(archive_err)?.raw(true) {
        let mut entry = entry.map_err(archive_err)?;
        count += 1;
        if count > limits.max_entries {
            return Err(UnpackError::Package {
                tarball: tb(),
                problem: format!("more than {} entries", limits.max_entries),
                expected: format!("at most {} entries", limits.max_entries),
            });
        }
        let kind = entry.header().entry_type();
        if let Some(what) = metadata_kind(kind) {
            let header_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let refuse_meta = |problem: String, expected: &str| UnpackError::Entry {
                tarball: tb(),
                entry: header_path.clone(),
                problem,
                expected: expected.to_string(),
            };
            let size = entry.size();
            if size > META_MAX {
                return Err(refuse_meta(
                    format!("a {what} of {size} bytes"),
                    &format!("at most {META_MAX} bytes of metadata per entry"),
                ));
            }
            let mut data = Vec::with_capacity(size as usize);
            (&mut entry)
                .take(META_MAX)
                .read_to_end(&mut data)
                .map_err(|e| refuse_meta(format!("cannot be read: {e}"), "a readable entry"))?;
            let path = match kind {
                tar::EntryType::GNULongName => {
                    if data.last() == Some(&0) {
                        data.pop();
                    }
                    Some(data)
                }
                tar::EntryType::XHeader => pax_path(&data).map_err(|problem| {
                    refuse_meta(problem, "PAX records of a path, times or owners only")
                })?,
                // Global PAX headers and GNU long link names describe nothing relup keeps
                // (a link entry is refused anyway).
                _ => None,
            };
            if let Some(path) = path {
                if long_name.is_some() {
                    return Err(refuse_meta(
                        "a second long name for the same entry".into(),
                        "one long name (GNU or PAX) per entry",
                    ));
                }
                long_name = Some(path);
            }
            continue;
        }
        let raw = match long_name.take() {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
        };
        let refuse = |problem: &str, expected: &str| UnpackError::Entry {
            tarball: tb(),
            entry: raw.clone(),
            problem: problem.to_string(),
            expected: expected.to_string(),
        };
        let name = raw.strip_prefix("./").unwrap_or(&raw);
        let name = if kind.is_dir() {
            name.trim_end_matches('/')
        } else {
            name
        };
        if kind.is_dir() && (name.is_empty() || name == ".") && !raw.starts_with('/') {
            continue; // the archive's own top directory
        }
        if raw.starts_with('/') {
            return Err(refuse("absolute path", "a relative path"));
        }
        if name.split('/').any(|c| c == "..") {
            return Err(refuse(
                "path has a `..` component",
                "a path inside the release",
            ));
        }
        if !is_safe_relative(name) {
            return Err(refuse(
                "unsafe path",
                "a relative `/`-separated path without empty or `.` components",
            ));
        }
        let name = name.to_string();
        match kind {
            tar::EntryType::Directory => {
                if entry.size() > 0 {
                    // Its bytes would only be skipped: decompression work for nothing.
                    return Err(refuse(
                        &format!("a directory with {} bytes of data", entry.size()),
                        "directories without data",
                    ));
                }
                if files.contains_key(&name) {
                    return Err(refuse(
                        "duplicate entry (file and directory)",
                        "each path once",
                    ));
                }
                fs::create_dir_all(tmp.join(&name))
                    .map_err(|e| refuse(&format!("cannot create directory: {e}"), "a directory"))?;
                dirs.insert(name);
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink => return Err(refuse("symbolic link", "regular files only")),
            tar::EntryType::Link => return Err(refuse("hard link", "regular files only")),
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(refuse("device file", "regular files only"));
            }
            tar::EntryType::Fifo => return Err(refuse("fifo", "regular files only")),
            other => {
                return Err(refuse(
                    &format!("unsupported entry type {other:?}"),
                    "regular files and directories only",
                ));
            }
        }
        if files.contains_key(&name) || dirs.contains(&name) {
            return Err(refuse("duplicate entry", "each path once"));
        }
        // Raw entries: the size the reader will read is the header's (a PAX `size` record
        // would be ignored, and PAX records other than a path are refused above).
        let declared = entry.size();
        if declared > limits.max_entry {
            return Err(refuse(
                &format!("{declared} bytes"),
                &format!("at most {} bytes per file", limits.max_entry),
            ));
        }
        if total.saturating_add(declared) > limits.max_total {
            return Err(UnpackError::Package {
                tarball: tb(),
                problem: format!(
                    "more than {} bytes in all (at entry `{raw}`)",
                    limits.max_total
                ),
                expected: format!("at most {} bytes in all", limits.max_total),
            });
        }
        let executable = entry
            .header()
            .mode()
            .map(|m| m & 0o111 != 0)
            .unwrap_or(false);
        let dest = tmp.join(&name);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| refuse(&format!("cannot create its directory: {e}"), "a file path"))?;
        }
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if executable { 0o755 } else { 0o644 })
            .open(&dest)
            .map_err(|e| refuse(&format!("cannot be created: {e}"), "a new file"))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let mut limited = (&mut entry).take(limits.max_entry + 1);
        loop {
            let n = limited
                .read(&mut buf)
                .map_err(|e| refuse(&format!("cannot be read: {e}"), "a readable entry"))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > limits.max_entry {
                return Err(refuse(
                    "larger than its header says",
                    &format!("at most {} bytes per file", limits.max_entry),
                ));
            }
            if total.saturating_add(size) > limits.max_total {
                return Err(UnpackError::Package {
                    tarball: tb(),
                    problem: format!(
                        "more than {} bytes in all (at entry `{raw}`)",
                        limits.max_total
                    ),
                    expected: format!("at most {} bytes in all", limits.max_total),
                });
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|source| UnpackError::Io {
                path: dest.clone(),
                source,
            })?;
        }
        out.sync_all().map_err(|source| UnpackError::Io {
            path: dest.clone(),
            source,
        })?;
        total += size;
        let sha: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        files.insert(name, (sha, size));
    }
    if let Some(name) = long_name {
        return Err(UnpackError::Entry {
            tarball: tb(),
            entry: String::from_utf8_lossy(&name).into_owned(),
            problem: "a long name that describes no entry (the archive ends)".into(),
            expected: "a file or directory entry after each long name".into(),
        });
    }
    // Make the extracted tree durable before it is renamed into place.
    let mut dirs_to_sync: BTreeSet<PathBuf> = BTreeSet::new();
    dirs_to_sync.insert(tmp.to_path_buf());
    for name in files.keys().chain(dirs.iter()) {
        let mut p = tmp.join(name);
        while let Some(parent) = p.parent().map(Path::to_path_buf) {
            if !parent.starts_with(tmp) || !dirs_to_sync.insert(parent.clone()) {
                break;
            }
            p = parent;
        }
    }
    for d in dirs.iter().map(|d| tmp.join(d)).chain(dirs_to_sync) {
        sync_dir(&d).map_err(|source| UnpackError::Io { path: d, source })?;
    }
    Ok(files)
}
