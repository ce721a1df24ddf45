//! Loading one module library: pre-flight ELF checks, a private copy, `dlopen`, and descriptor
//! validation. Every bad file becomes a [`LoadError`], never a crash.
//!
//! Why a copy: `dlopen` of a path that is already loaded returns the cached handle, so loading
//! "the same file" twice would silently give the same code. Each load opens its own copy.
//! Why never `dlclose`: unloading Rust code with thread-locals is unsafe or a silent no-op;
//! images stay mapped and are counted instead.

use crate::error::LoadError;
use relup_module::abi::{ABI_VERSION, DESCRIPTOR_SYMBOL, ModuleDescriptor};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A library that passed every check; its image stays mapped for the life of the process.
pub(crate) struct OpenedLibrary {
    pub(crate) descriptor: &'static ModuleDescriptor,
    pub(crate) name: String,
    pub(crate) version: semver::Version,
    pub(crate) copy: PathBuf,
    pub(crate) size: u64,
}

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const ET_DYN: u16 = 3;

fn host_machine() -> Option<u16> {
    if cfg!(target_arch = "x86_64") {
        Some(EM_X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(EM_AARCH64)
    } else {
        None
    }
}

fn machine_name(machine: u16) -> String {
    match machine {
        3 => "x86 (32-bit)".into(),
        40 => "ARM (32-bit)".into(),
        EM_X86_64 => "x86_64".into(),
        EM_AARCH64 => "aarch64".into(),
        243 => "RISC-V".into(),
        other => format!("ELF machine {other}"),
    }
}

/// Checks the ELF header for the mistakes `dlopen` reports badly: not ELF, wrong class, wrong
/// byte order, wrong architecture, not a shared object, truncated file.
fn check_elf(path: &Path, size: u64) -> Result<(), LoadError> {
    let bad = |reason: String| LoadError::NotALibrary {
        path: path.to_path_buf(),
        reason,
    };
    let mut header = [0u8; 64];
    let mut file = std::fs::File::open(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(source) => {
                return Err(LoadError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    if read < 4 || &header[..4] != b"\x7fELF" {
        return Err(bad(format!("not an ELF file ({size} bytes, no ELF magic)")));
    }
    if read < 64 {
        return Err(bad(format!(
            "truncated: {size} bytes, shorter than an ELF header"
        )));
    }
    if header[4] != 2 {
        return Err(bad("a 32-bit ELF file; this node runs 64-bit code".into()));
    }
    if header[5] != 1 {
        return Err(bad(
            "a big-endian ELF file; this node is little-endian".into()
        ));
    }
    let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (e_type, e_machine) = (u16_at(16), u16_at(18));
    if let Some(host) = host_machine()
        && e_machine != host
    {
        return Err(bad(format!(
            "built for {}, this node runs {}",
            machine_name(e_machine),
            machine_name(host)
        )));
    }
    if e_type != ET_DYN {
        return Err(bad(format!(
            "ELF type {e_type} is not a shared object (type {ET_DYN})"
        )));
    }
    let (e_phoff, e_shoff) = (u64_at(32), u64_at(40));
    let (e_phentsize, e_phnum) = (u64::from(u16_at(54)), u64::from(u16_at(56)));
    let (e_shentsize, e_shnum) = (u64::from(u16_at(58)), u64::from(u16_at(60)));
    let ph_end = e_phoff.saturating_add(e_phentsize.saturating_mul(e_phnum));
    let sh_end = e_shoff.saturating_add(e_shentsize.saturating_mul(e_shnum));
    let needed = ph_end.max(sh_end);
    if needed > size {
        return Err(bad(format!(
            "truncated: {size} bytes, its headers say at least {needed}"
        )));
    }
    Ok(())
}

/// Opens `source` from a private copy in `copy_dir` and validates its descriptor.
pub(crate) fn open(
    source: &Path,
    copy_dir: &Path,
    serial: u64,
) -> Result<OpenedLibrary, LoadError> {
    let io = |source_err: std::io::Error| LoadError::Io {
        path: source.to_path_buf(),
        source: source_err,
    };
    let meta = std::fs::metadata(source).map_err(io)?;
    if !meta.is_file() {
        return Err(LoadError::NotALibrary {
            path: source.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    check_elf(source, meta.len())?;
    let stem = source
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("module");
    let copy = copy_dir.join(format!("{stem}.{serial}.so"));
    std::fs::copy(source, &copy).map_err(io)?;
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
    // SAFETY: loading runs the library's initializers; a relup module has none beyond Rust's
    // own. This is the trust boundary of loading code at all.
    let opened = unsafe { libloading::os::unix::Library::open(Some(&copy), flags) };
    // The mapping outlives the file: the private copy is not needed on disk any more, and
    // removing it keeps repeated loads from filling the disk.
    let _ = std::fs::remove_file(&copy);
    let library = opened.map_err(|e| LoadError::Open {
        path: source.to_path_buf(),
        reason: e.to_string(),
    })?;
    // From here on the image is never unloaded, whatever happens: leak the handle first.
    let symbol = {
        // SAFETY: the symbol's type is the one the ABI fixes; it is checked by the ABI version.
        let found = unsafe {
            library.get::<unsafe extern "C" fn() -> *const ModuleDescriptor>(
                DESCRIPTOR_SYMBOL.as_bytes(),
            )
        };
        found.map(|s| *s)
    };
    let _never_closed = library.into_raw();
    let symbol = symbol.map_err(|e| LoadError::NotAModule {
        path: source.to_path_buf(),
        symbol: DESCRIPTOR_SYMBOL,
        reason: e.to_string(),
    })?;
    // SAFETY: calling the exported descriptor function; it takes no arguments.
    let raw = unsafe { symbol() };
    let bad = |reason: String| LoadError::BadDescriptor {
        path: source.to_path_buf(),
        reason,
    };
    if raw.is_null() {
        return Err(bad("the descriptor function returned null".into()));
    }
    // SAFETY: the ABI guarantees a u32 version first; nothing else is read before it matches.
    let abi_version = unsafe { std::ptr::read(raw as *const u32) };
    if abi_version != ABI_VERSION {
        return Err(LoadError::AbiVersion {
            path: source.to_path_buf(),
            found: abi_version,
            supported: ABI_VERSION,
        });
    }
    // SAFETY: ABI version matches, so the struct layout is ours; the image is never unmapped.
    let descriptor: &'static ModuleDescriptor = unsafe { &*raw };
    let expected_size = std::mem::size_of::<ModuleDescriptor>() as u32;
    if descriptor.descriptor_size != expected_size {
        return Err(bad(format!(
            "descriptor is {} bytes, ABI version {ABI_VERSION} has {expected_size}",
            descriptor.descriptor_size
        )));
    }
    let (name, version) = describe(descriptor).map_err(bad)?;
    Ok(OpenedLibrary {
        descriptor,
        name,
        version,
        copy,
        size: meta.len(),
    })
}

/// Reads and checks a descriptor's name and version.
pub(crate) fn describe(descriptor: &ModuleDescriptor) -> Result<(String, semver::Version), String> {
    const MAX: usize = 1024;
    if descriptor.name.len > MAX || descriptor.version.len > MAX {
        return Err("name or version longer than 1024 bytes".into());
    }
    // SAFETY: the slices point to static data in the module (lengths bounded above).
    let (name, version) = unsafe { (descriptor.name.as_bytes(), descriptor.version.as_bytes()) };
    let name = std::str::from_utf8(name).map_err(|_| "module name is not UTF-8".to_string())?;
    if name.is_empty() {
        return Err("module name is empty".into());
    }
    let version =
        std::str::from_utf8(version).map_err(|_| "module version is not UTF-8".to_string())?;
    let version = semver::Version::parse(version)
        .map_err(|e| format!("module version {version:?} is not semver: {e}"))?;
    Ok((name.to_string(), version))
}
