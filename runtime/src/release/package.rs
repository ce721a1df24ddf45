//! Packing a release directory into `<name>-<vsn>.tar.gz`, deterministically.
//!
//! The package holds, at the top level of the archive (no leading directory):
//! `MANIFEST` (first), then sorted by path: `appup/<app>.toml`, `bin/<name>` (launcher,
//! mode 0755), `bin/relup-node` (the node executable, mode 0755, when the release directory
//! has one: a self-contained release), `config.toml` (if the release has one), the module
//! libraries at the paths release.toml names, and `release.toml` with every module's sha256
//! filled in / verified. The MANIFEST lists the sha256 of every file, the executable's too,
//! and unpack checks them all before anything is installed.
//! Every entry has mtime 0, uid/gid 0, no user/group names, mode 0644 (0755 for the
//! launcher); the gzip header has no name and mtime 0. Packing twice gives the same bytes.

use super::atomic::write_atomic;
use super::error::PackError;
use super::layout::{launcher_script, tarball_name};
use super::manifest::{
    MANIFEST, Manifest, ManifestFile, is_safe_relative, is_valid_name, sha256_hex,
};
use super::unpack::Limits;
use flate2::Compression;
use flate2::write::GzEncoder;
use relup_appup::{Appup, Pos, Release};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Options of [`pack_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackOptions {
    /// Replace every module's declared sha256 with its library's actual sha256 (after a
    /// rebuild) instead of refusing a mismatch. Missing, empty or all-zero sha256 values are
    /// always filled in.
    pub refresh_sha256: bool,
}

/// One file of the package: its bytes and mode.
struct Item {
    bytes: Vec<u8>,
    mode: u32,
    source: PathBuf,
}

/// Packs the release in `release_dir` into `<out_dir>/<name>-<vsn>.tar.gz` (written
/// atomically) and returns that path. Missing, empty or all-zero module sha256 values are
/// filled in; a mismatching one is refused (see [`pack_with`]).
pub fn pack(release_dir: &Path, out_dir: &Path) -> Result<PathBuf, PackError> {
    pack_with(release_dir, out_dir, PackOptions::default())
}

/// [`pack`] with options.
pub fn pack_with(
    release_dir: &Path,
    out_dir: &Path,
    options: PackOptions,
) -> Result<PathBuf, PackError> {
    let (release, items) = collect(release_dir, options)?;
    let bytes = build_tarball(&release, &items)?;
    fs::create_dir_all(out_dir).map_err(|source| PackError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let out = out_dir.join(tarball_name(&release.name, &release.version));
    write_atomic(&out, &bytes).map_err(|source| PackError::Io {
        path: out.clone(),
        source,
    })?;
    Ok(out)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PackError + '_ {
    move |source| PackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn toml_err(file: &Path, text: &str, e: &toml::de::Error, expected: &str) -> PackError {
    let pos = e.span().map(|s| Pos::at(text, s.start)).unwrap_or_default();
    PackError::Toml {
        file: file.to_path_buf(),
        line: pos.line,
        column: pos.column,
        message: e.message().trim().to_string(),
        expected: expected.to_string(),
    }
}

/// Reads and checks everything the package will hold.
fn collect(
    release_dir: &Path,
    options: PackOptions,
) -> Result<(Release, BTreeMap<String, Item>), PackError> {
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    let mut add = |entry: String, item: Item| -> Result<(), PackError> {
        if items.contains_key(&entry) {
            return Err(PackError::Duplicate {
                path: item.source,
                entry,
            });
        }
        items.insert(entry, item);
        Ok(())
    };

    // release.toml, with sha256 filled in / verified.
    let manifest_path = release_dir.join("release.toml");
    let text = fs::read_to_string(&manifest_path).map_err(io_err(&manifest_path))?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| {
        toml_err(
            &manifest_path,
            &text,
            &e,
            "a release.toml (see relup-appup)",
        )
    })?;
    let mut libraries: BTreeMap<String, Item> = BTreeMap::new();
    let changed = fill_sha256(
        release_dir,
        &manifest_path,
        &mut table,
        options,
        &mut libraries,
    )?;
    let text = if changed {
        toml::to_string(&table).map_err(|e| PackError::Io {
            path: manifest_path.clone(),
            source: io::Error::other(e.to_string()),
        })?
    } else {
        text
    };
    let release =
        Release::parse(&text, &manifest_path.to_string_lossy()).map_err(PackError::Invalid)?;
    if !is_valid_name(&release.name) {
        return Err(PackError::BadName {
            name: release.name.clone(),
        });
    }
    add(
        "release.toml".into(),
        Item {
            bytes: text.into_bytes(),
            mode: 0o644,
            source: manifest_path.clone(),
        },
    )?;
    for (entry, item) in libraries {
        add(entry, item)?;
    }

    // appups: appup/*.toml and/or a top-level appup.toml, packed as appup/<file>.
    let mut appup_files: Vec<(PathBuf, String)> = Vec::new();
    let appup_dir = release_dir.join("appup");
    if appup_dir.is_dir() {
        let mut names: Vec<PathBuf> = fs::read_dir(&appup_dir)
            .map_err(io_err(&appup_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        names.sort();
        for p in names {
            let file_name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            appup_files.push((p, format!("appup/{file_name}")));
        }
    }
    let single = release_dir.join("appup.toml");
    if single.is_file() {
        appup_files.push((single, String::new()));
    }
    for (path, mut entry) in appup_files {
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let appup = Appup::parse(&text, &path.to_string_lossy()).map_err(PackError::Invalid)?;
        if entry.is_empty() {
            entry = format!("appup/{}.toml", appup.application);
        }
        add(
            entry,
            Item {
                bytes: text.into_bytes(),
                mode: 0o644,
                source: path,
            },
        )?;
    }

    // Default config (optional): must be TOML.
    let config = release_dir.join("config.toml");
    if config.is_file() {
        let text = fs::read_to_string(&config).map_err(io_err(&config))?;
        toml::from_str::<toml::Table>(&text)
            .map_err(|e| toml_err(&config, &text, &e, "a TOML table of config values"))?;
        add(
            "config.toml".into(),
            Item {
                bytes: text.into_bytes(),
                mode: 0o644,
                source: config,
            },
        )?;
    }

    add(
        format!("bin/{}", release.name),
        Item {
            bytes: launcher_script(None).into_bytes(),
            mode: 0o755,
            source: release_dir.join("bin").join(&release.name),
        },
    )?;

    let executable = release_dir.join(super::layout::NODE_EXECUTABLE);
    if executable.is_file() {
        add(
            super::layout::NODE_EXECUTABLE.to_string(),
            Item {
                bytes: fs::read(&executable).map_err(io_err(&executable))?,
                mode: 0o755,
                source: executable,
            },
        )?;
    }

    let limits = Limits::default();
    let total: u64 = items.values().map(|i| i.bytes.len() as u64).sum();
    if total > limits.max_total || items.len() + 1 > limits.max_entries {
        return Err(PackError::TooLarge {
            what: format!("{} files, {total} bytes", items.len() + 1),
            limit: format!(
                "{} files and {} bytes (unpack's limits)",
                limits.max_entries, limits.max_total
            ),
        });
    }
    Ok((release, items))
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Computes every module library's sha256, fills in missing ones and checks declared ones;
/// collects the libraries as package items. Returns whether the table changed.
fn fill_sha256(
    release_dir: &Path,
    manifest_path: &Path,
    table: &mut toml::Table,
    options: PackOptions,
    libraries: &mut BTreeMap<String, Item>,
) -> Result<bool, PackError> {
    let mut changed = false;
    let Some(toml::Value::Array(apps)) = table.get_mut("applications") else {
        return Ok(false);
    };
    for app in apps.iter_mut() {
        let Some(toml::Value::Array(mods)) = app.get_mut("modules") else {
            continue;
        };
        for m in mods.iter_mut() {
            let Some(m) = m.as_table_mut() else { continue };
            let module = m
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string();
            let Some(file) = m.get("file").and_then(|v| v.as_str()).map(str::to_string) else {
                continue; // Release::parse reports it
            };
            if !is_safe_relative(&file) {
                return Err(PackError::BadPath {
                    file: manifest_path.to_path_buf(),
                    module,
                    path: file,
                });
            }
            let path = release_dir.join(&file);
            let bytes = fs::read(&path).map_err(|source| PackError::MissingLibrary {
                module: module.clone(),
                path: path.clone(),
                source,
            })?;
            let actual = sha256_hex(&bytes);
            let declared = m
                .get("sha256")
                .and_then(|v| v.as_str())
                .map(str::to_ascii_lowercase);
            match declared.as_deref() {
                Some(d) if d == actual => {}
                Some(d) if !d.is_empty() && d != ZERO_SHA && !options.refresh_sha256 => {
                    return Err(PackError::Sha256Mismatch {
                        file: manifest_path.to_path_buf(),
                        module,
                        path,
                        declared: d.to_string(),
                        actual,
                    });
                }
                _ => {
                    m.insert("sha256".into(), toml::Value::String(actual));
                    changed = true;
                }
            }
            libraries.entry(file).or_insert(Item {
                bytes,
                mode: 0o644,
                source: path,
            });
        }
    }
    Ok(changed)
}

/// The gzip'd tar bytes: MANIFEST first, then the items sorted by path.
fn build_tarball(release: &Release, items: &BTreeMap<String, Item>) -> Result<Vec<u8>, PackError> {
    let manifest = Manifest {
        name: release.name.clone(),
        version: release.version.clone(),
        files: items
            .iter()
            .map(|(path, item)| ManifestFile {
                path: path.clone(),
                sha256: sha256_hex(&item.bytes),
                size: item.bytes.len() as u64,
            })
            .collect(),
    };
    let manifest_text = manifest.to_toml();
    let err = |source: io::Error| PackError::Io {
        path: PathBuf::from(tarball_name(&release.name, &release.version)),
        source,
    };
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    append(&mut tar, MANIFEST, manifest_text.as_bytes(), 0o644).map_err(err)?;
    for (path, item) in items {
        append(&mut tar, path, &item.bytes, item.mode).map_err(err)?;
    }
    let gz: GzEncoder<Vec<u8>> = tar.into_inner().map_err(err)?;
    gz.finish().map_err(err)
}

fn append(
    tar: &mut tar::Builder<GzEncoder<Vec<u8>>>,
    path: &str,
    bytes: &[u8],
    mode: u32,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(bytes.len() as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    tar.append_data(&mut h, path, bytes)
}
