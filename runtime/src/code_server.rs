//! The code server: which versions of each module are loaded, which is current, and which old
//! ones are still run by some process.
//!
//! Like OTP, a module has a current version and old versions; each process runs the version it
//! was started or last migrated with. A version leaves the table (soft purge) once no process
//! runs it. Its image is never unloaded (see [`crate::loader`]): the server counts what stays
//! mapped.

use crate::digest_cache::DigestCache;
use crate::error::LoadError;
use crate::loader;
use parking_lot::Mutex;
use relup_module::Server;
use relup_module::abi::ModuleDescriptor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Where a loaded module's code lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A cdylib loaded from `source` (through its private copy `copy`).
    Library {
        /// The file the operator named.
        source: PathBuf,
        /// The private copy that was opened.
        copy: PathBuf,
        /// Size of the file in bytes.
        size: u64,
    },
    /// A server type linked into the service binary.
    Native,
}

/// One loaded version of a module. Processes hold it (through an `Arc`) while they run it.
pub struct LoadedModule {
    name: String,
    version: semver::Version,
    /// `version` as text (what a migration tells the new code it comes from).
    version_text: String,
    descriptor: &'static ModuleDescriptor,
    origin: Origin,
    serial: u64,
    runners: AtomicI64,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("origin", &self.origin)
            .finish()
    }
}

impl LoadedModule {
    /// The module name from its descriptor.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The module version from its descriptor.
    pub fn version(&self) -> &semver::Version {
        &self.version
    }

    /// The module version as text.
    pub(crate) fn version_text(&self) -> &str {
        &self.version_text
    }

    /// Where the code came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// A number unique to this load (two loads of one file differ).
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// Address of the module's descriptor in memory: two loads of one file have different
    /// addresses, because each opened its own image (diagnostics and tests).
    pub fn image_address(&self) -> usize {
        self.descriptor as *const ModuleDescriptor as usize
    }

    /// Number of processes running this version now.
    pub fn runners(&self) -> u64 {
        self.runners.load(Ordering::SeqCst).max(0) as u64
    }

    pub(crate) fn add_runner(&self, delta: i64) {
        self.runners.fetch_add(delta, Ordering::SeqCst);
    }

    pub(crate) fn descriptor(&self) -> &'static ModuleDescriptor {
        self.descriptor
    }
}

/// What a caller expects a library to be; a mismatch is a load error.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Expected module name.
    pub name: Option<String>,
    /// Expected module version.
    pub version: Option<semver::Version>,
}

/// The versions of one module, for status displays.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModuleVersions {
    /// The module name.
    pub name: String,
    /// The current version (what new processes run).
    pub current: Option<semver::Version>,
    /// Old versions still run by some process.
    pub old: Vec<semver::Version>,
}

/// Counters of code the node has mapped and cannot unmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CodeStats {
    /// Libraries opened since the node started (each stays mapped).
    pub images_mapped: u64,
    /// Total size of their files in bytes.
    pub bytes_mapped: u64,
    /// Of those, versions no longer in the table (purged, or never made current).
    pub images_retired: u64,
}

/// A mapped image that can serve another load of the same file contents.
#[derive(Clone)]
struct Image {
    name: String,
    version: semver::Version,
    descriptor: &'static ModuleDescriptor,
    copy: PathBuf,
    size: u64,
}

#[derive(Default)]
struct Versions {
    current: Option<Arc<LoadedModule>>,
    old: Vec<Arc<LoadedModule>>,
}

/// The node's table of loaded modules.
pub struct CodeServer {
    table: Mutex<HashMap<String, Versions>>,
    /// Images already mapped, by the sha256 of their file: loading the same bytes again
    /// reuses the image instead of mapping another copy (images are never unmapped).
    by_digest: Mutex<HashMap<String, Image>>,
    /// The sha256 of library files, remembered while they are unchanged.
    digests: DigestCache,
    copy_dir: PathBuf,
    serial: AtomicU64,
    images: AtomicU64,
    bytes: AtomicU64,
}

impl CodeServer {
    /// A code server that opens its private library copies in `copy_dir` (created if missing).
    pub fn new(copy_dir: PathBuf) -> std::io::Result<CodeServer> {
        std::fs::create_dir_all(&copy_dir)?;
        Ok(CodeServer {
            table: Mutex::new(HashMap::new()),
            by_digest: Mutex::new(HashMap::new()),
            digests: DigestCache::default(),
            copy_dir,
            serial: AtomicU64::new(1),
            images: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    /// The sha256 of the library file at `path`, as [`crate::digest_cache`] remembers it.
    pub fn file_sha256(&self, path: &Path) -> std::io::Result<String> {
        self.digests.sha256(path)
    }

    /// The directory holding the private copies of loaded libraries.
    pub fn copy_dir(&self) -> &Path {
        &self.copy_dir
    }

    /// Loads and checks a library without making it current (an upgrade decides that).
    ///
    /// # Safety
    ///
    /// This maps the library into the process and runs its initializers; its entry points run
    /// later in this process, as any Rust code of it does. Nothing checks that this code is
    /// sound: the checks (ELF header, descriptor symbol, ABI version and size, no null entry
    /// point, name and version) refuse a wrong or malformed file, not a library whose code is
    /// unsound or malicious. The caller must trust `path` as it trusts the binary itself: a
    /// relup module built against this ABI from code it means to run (a release whose sha256
    /// it checked, see [`CodeServer::load_verified`]), not a file an untrusted party can write.
    pub unsafe fn load(
        &self,
        path: &Path,
        expect: &Expect,
    ) -> Result<Arc<LoadedModule>, LoadError> {
        self.open(path, expect, None)
    }

    /// Opens a new image of `path` (see [`loader::open`]).
    fn open(
        &self,
        path: &Path,
        expect: &Expect,
        sha256: Option<&str>,
    ) -> Result<Arc<LoadedModule>, LoadError> {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let opened = loader::open(path, &self.copy_dir, serial, sha256)?;
        self.images.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(opened.size, Ordering::Relaxed);
        let image = Image {
            name: opened.name,
            version: opened.version,
            descriptor: opened.descriptor,
            copy: opened.copy,
            size: opened.size,
        };
        Self::module(path, expect, &image, serial)
    }

    /// Loads the library at `path` whose contents must have the sha256 `sha256`: when an
    /// image of those bytes is already mapped (an earlier version came back, as in a
    /// downgrade), it is reused instead of mapping one more copy; otherwise the private copy
    /// that is opened must have that digest (checked before it is opened), else
    /// [`LoadError::Digest`].
    ///
    /// # Safety
    ///
    /// As for [`CodeServer::load`]: the bytes with this sha256 must be code the caller trusts.
    pub unsafe fn load_verified(
        &self,
        path: &Path,
        expect: &Expect,
        sha256: &str,
    ) -> Result<Arc<LoadedModule>, LoadError> {
        let known = self.by_digest.lock().get(sha256).cloned();
        if let Some(image) = known {
            let serial = self.serial.fetch_add(1, Ordering::Relaxed);
            return Self::module(path, expect, &image, serial);
        }
        let module = self.open(path, expect, Some(sha256))?;
        if let Origin::Library { copy, size, .. } = &module.origin {
            let image = Image {
                name: module.name.clone(),
                version: module.version.clone(),
                descriptor: module.descriptor,
                copy: copy.clone(),
                size: *size,
            };
            self.by_digest.lock().insert(sha256.to_string(), image);
        }
        Ok(module)
    }

    /// A new handle on a mapped image, checked against what the caller expects.
    fn module(
        path: &Path,
        expect: &Expect,
        image: &Image,
        serial: u64,
    ) -> Result<Arc<LoadedModule>, LoadError> {
        if let Some(name) = &expect.name
            && *name != image.name
        {
            return Err(LoadError::NameMismatch {
                path: path.to_path_buf(),
                expected: name.clone(),
                found: image.name.clone(),
            });
        }
        if let Some(version) = &expect.version
            && *version != image.version
        {
            return Err(LoadError::VersionMismatch {
                path: path.to_path_buf(),
                name: image.name.clone(),
                expected: version.to_string(),
                found: image.version.to_string(),
            });
        }
        Ok(Arc::new(LoadedModule {
            name: image.name.clone(),
            version_text: image.version.to_string(),
            version: image.version.clone(),
            descriptor: image.descriptor,
            origin: Origin::Library {
                source: path.to_path_buf(),
                copy: image.copy.clone(),
                size: image.size,
            },
            serial,
            runners: AtomicI64::new(0),
        }))
    }

    /// Loads a library and makes it the current version at once.
    ///
    /// # Safety
    ///
    /// As for [`CodeServer::load`].
    pub unsafe fn load_current(
        &self,
        path: &Path,
        expect: &Expect,
    ) -> Result<Arc<LoadedModule>, LoadError> {
        let module = self.open(path, expect, None)?;
        self.make_current(&module);
        Ok(module)
    }

    /// Registers a server type linked into the binary as module `name` at `version`, current.
    pub fn register_native<S: Server>(
        &self,
        name: &'static str,
        version: &'static str,
    ) -> Result<Arc<LoadedModule>, LoadError> {
        let descriptor: &'static ModuleDescriptor =
            Box::leak(Box::new(relup_module::descriptor::<S>(name, version)));
        let (name, version) =
            loader::describe(descriptor).map_err(|reason| LoadError::BadDescriptor {
                path: PathBuf::from(format!("<native {name}>")),
                reason,
            })?;
        let module = Arc::new(LoadedModule {
            name,
            version_text: version.to_string(),
            version,
            descriptor,
            origin: Origin::Native,
            serial: self.serial.fetch_add(1, Ordering::Relaxed),
            runners: AtomicI64::new(0),
        });
        self.make_current(&module);
        Ok(module)
    }

    /// Makes `module` the current version of its name; the previous current becomes old.
    pub fn make_current(&self, module: &Arc<LoadedModule>) {
        let mut table = self.table.lock();
        let versions = table.entry(module.name.clone()).or_default();
        if let Some(previous) = versions.current.replace(module.clone())
            && !Arc::ptr_eq(&previous, module)
        {
            versions.old.push(previous);
        }
        versions.old.retain(|m| !Arc::ptr_eq(m, module));
    }

    /// The current version of a module.
    pub fn current(&self, name: &str) -> Option<Arc<LoadedModule>> {
        self.table.lock().get(name).and_then(|v| v.current.clone())
    }

    /// Drops old versions of `name` that no process runs (OTP's soft_purge); returns how many
    /// old versions are still in use.
    pub fn soft_purge(&self, name: &str) -> usize {
        let mut table = self.table.lock();
        let Some(versions) = table.get_mut(name) else {
            return 0;
        };
        versions.old.retain(|m| m.runners() > 0);
        versions.old.len()
    }

    /// Soft-purges every module; returns how many old versions are still in use.
    pub fn soft_purge_all(&self) -> usize {
        let names: Vec<String> = self.table.lock().keys().cloned().collect();
        names.iter().map(|n| self.soft_purge(n)).sum()
    }

    /// Forgets a module entirely (appup `delete_module`); processes running it keep running it.
    pub fn delete(&self, name: &str) -> bool {
        self.table.lock().remove(name).is_some()
    }

    /// The versions of every module, sorted by name.
    pub fn modules(&self) -> Vec<ModuleVersions> {
        let table = self.table.lock();
        let mut list: Vec<ModuleVersions> = table
            .iter()
            .map(|(name, v)| ModuleVersions {
                name: name.clone(),
                current: v.current.as_ref().map(|m| m.version.clone()),
                old: v.old.iter().map(|m| m.version.clone()).collect(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Counters of mapped code.
    pub fn stats(&self) -> CodeStats {
        let table = self.table.lock();
        let in_table: u64 = table
            .values()
            .flat_map(|v| v.current.iter().chain(v.old.iter()))
            .filter(|m| matches!(m.origin, Origin::Library { .. }))
            .count() as u64;
        let images = self.images.load(Ordering::Relaxed);
        CodeStats {
            images_mapped: images,
            bytes_mapped: self.bytes.load(Ordering::Relaxed),
            images_retired: images.saturating_sub(in_table),
        }
    }
}
