//! Loading one module library: pre-flight ELF checks, a private copy, `dlopen`, and descriptor
//! validation. Every bad file becomes a [`LoadError`], never a crash.
//!
//! Why a copy: `dlopen` of a path that is already loaded returns the cached handle, so loading
//! "the same file" twice would silently give the same code. Each load opens its own copy.
//! Why never `dlclose`: unloading Rust code with thread-locals is unsafe or a silent no-op;
//! images stay mapped and are counted instead.

use crate::error::LoadError;
use relup_module::abi::{ABI_VERSION, DESCRIPTOR_SYMBOL, ModuleDescriptor, Slice};
use std::io::Read;
use std::mem::{offset_of, size_of};
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

/// A descriptor as a library hands it over: the layout of [`ModuleDescriptor`], its entry
/// points read as nullable pointers. Every bit pattern is a valid `RawDescriptor`, so it can
/// be read before anything is known of the library; a `ModuleDescriptor` whose entry point is
/// null is undefined behaviour, so one is only made of a `RawDescriptor` whose entry points
/// are all set.
#[repr(C)]
struct RawDescriptor {
    abi_version: u32,
    descriptor_size: u32,
    name: Slice,
    version: Slice,
    /// In the order of [`ENTRY_POINTS`].
    entry_points: [Option<unsafe extern "C" fn()>; ENTRY_POINTS.len()],
}

/// The entry points of a [`ModuleDescriptor`], in layout order, with their offsets.
const ENTRY_POINTS: [(&str, usize); 11] = [
    ("init", offset_of!(ModuleDescriptor, init)),
    ("handle_call", offset_of!(ModuleDescriptor, handle_call)),
    ("handle_cast", offset_of!(ModuleDescriptor, handle_cast)),
    ("handle_info", offset_of!(ModuleDescriptor, handle_info)),
    ("terminate", offset_of!(ModuleDescriptor, terminate)),
    ("export_state", offset_of!(ModuleDescriptor, export_state)),
    ("code_change", offset_of!(ModuleDescriptor, code_change)),
    ("config_change", offset_of!(ModuleDescriptor, config_change)),
    ("health", offset_of!(ModuleDescriptor, health)),
    ("apply", offset_of!(ModuleDescriptor, apply)),
    ("drop_instance", offset_of!(ModuleDescriptor, drop_instance)),
];

// The two layouts agree field by field: a change to the ABI that this file does not follow
// fails the build.
const _: () = {
    assert!(size_of::<RawDescriptor>() == size_of::<ModuleDescriptor>());
    assert!(std::mem::align_of::<RawDescriptor>() == std::mem::align_of::<ModuleDescriptor>());
    assert!(offset_of!(RawDescriptor, abi_version) == offset_of!(ModuleDescriptor, abi_version));
    assert!(
        offset_of!(RawDescriptor, descriptor_size) == offset_of!(ModuleDescriptor, descriptor_size)
    );
    assert!(offset_of!(RawDescriptor, name) == offset_of!(ModuleDescriptor, name));
    assert!(offset_of!(RawDescriptor, version) == offset_of!(ModuleDescriptor, version));
    let pointer = size_of::<Option<unsafe extern "C" fn()>>();
    assert!(pointer == size_of::<unsafe extern "C" fn()>());
    let first = offset_of!(RawDescriptor, entry_points);
    let mut i = 0;
    while i < ENTRY_POINTS.len() {
        assert!(ENTRY_POINTS[i].1 == first + i * pointer);
        i += 1;
    }
    assert!(first + ENTRY_POINTS.len() * pointer == size_of::<ModuleDescriptor>());
};

/// Checks the descriptor a library's descriptor function returned, reading nothing a
/// check has not allowed yet: the ABI version, then the size, then the alignment, then the
/// whole descriptor with every entry point checked for null. Returns it as a
/// [`ModuleDescriptor`] once it is one.
///
/// # Safety
/// `raw` is not null and points to memory that stays mapped for the life of the process and
/// holds at least a `u32` (the ABI version), and, if that is [`ABI_VERSION`], at least the
/// descriptor size the next `u32` states (a library following the ABI guarantees both).
unsafe fn check_descriptor(
    raw: *const ModuleDescriptor,
) -> Result<&'static ModuleDescriptor, DescriptorError> {
    let bytes = raw.cast::<u8>();
    // SAFETY: the caller guarantees a u32 first; read unaligned, nothing assumed yet.
    let abi_version = unsafe { std::ptr::read_unaligned(bytes.cast::<u32>()) };
    if abi_version != ABI_VERSION {
        return Err(DescriptorError::AbiVersion(abi_version));
    }
    let size_at = offset_of!(ModuleDescriptor, descriptor_size);
    // SAFETY: the ABI of this version puts the descriptor's size in the second u32.
    let size = unsafe { std::ptr::read_unaligned(bytes.add(size_at).cast::<u32>()) };
    let expected = size_of::<ModuleDescriptor>();
    if size as usize != expected {
        return Err(DescriptorError::Bad(format!(
            "descriptor is {size} bytes, ABI version {ABI_VERSION} has {expected}"
        )));
    }
    let raw = raw.cast::<RawDescriptor>();
    if !raw.is_aligned() {
        return Err(DescriptorError::Bad(format!(
            "descriptor at {raw:p} is not aligned to {} bytes",
            std::mem::align_of::<RawDescriptor>()
        )));
    }
    // SAFETY: aligned, `expected` bytes long (the caller guarantees the size it states), and
    // any bytes are a valid `RawDescriptor`; the image is never unmapped.
    let checked: &'static RawDescriptor = unsafe { &*raw };
    for ((name, _), entry) in ENTRY_POINTS.iter().zip(&checked.entry_points) {
        if entry.is_none() {
            return Err(DescriptorError::Bad(format!(
                "entry point `{name}` is null"
            )));
        }
    }
    // SAFETY: the same layout field by field (checked at build time) and no entry point null:
    // a valid `ModuleDescriptor`.
    Ok(unsafe { &*raw.cast::<ModuleDescriptor>() })
}

/// Why [`check_descriptor`] refused a descriptor.
#[derive(Debug, PartialEq, Eq)]
enum DescriptorError {
    /// Another ABI version.
    AbiVersion(u32),
    /// Malformed for this ABI version.
    Bad(String),
}

/// Opens `source` from a private copy in `copy_dir` and validates its descriptor. With
/// `sha256`, the private copy (the bytes `dlopen` maps) must have that digest.
pub(crate) fn open(
    source: &Path,
    copy_dir: &Path,
    serial: u64,
    sha256: Option<&str>,
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
    if let Some(expected) = sha256 {
        // The copy is what is opened: its digest is the one that counts, whatever the
        // source file holds by now.
        let found = crate::release::sha256_file(&copy).map(|(digest, _)| digest);
        let refused = match found {
            Ok(found) if found == expected => None,
            Ok(found) => Some(LoadError::Digest {
                path: source.to_path_buf(),
                expected: expected.to_string(),
                found,
            }),
            Err(e) => Some(io(e)),
        };
        if let Some(refused) = refused {
            let _ = std::fs::remove_file(&copy);
            return Err(refused);
        }
    }
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
    // SAFETY: the library's descriptor lives in its image, never unmapped; a library that
    // exports the descriptor symbol states the ABI version first and, at this version, the
    // descriptor's size after it. This is the trust boundary of loading code at all.
    let descriptor = unsafe { check_descriptor(raw) }.map_err(|e| match e {
        DescriptorError::AbiVersion(found) => LoadError::AbiVersion {
            path: source.to_path_buf(),
            found,
            supported: ABI_VERSION,
        },
        DescriptorError::Bad(reason) => bad(reason),
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use relup_module::{Context, Server};

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Nothing;

    impl Server for Nothing {
        type Args = ();
        type Call = ();
        type Reply = ();
        type Cast = ();
        type Info = ();

        fn init(_args: (), _ctx: &mut Context<'_>) -> Result<Self, String> {
            Ok(Nothing)
        }

        fn handle_call(&mut self, _request: (), _ctx: &mut Context<'_>) {}
    }

    /// A well-formed descriptor, as its raw form.
    fn raw() -> RawDescriptor {
        let descriptor = relup_module::descriptor::<Nothing>("nothing", "1.0.0");
        // SAFETY: the same layout field by field (checked at build time); every
        // `ModuleDescriptor` is a valid `RawDescriptor`.
        unsafe { std::mem::transmute::<ModuleDescriptor, RawDescriptor>(descriptor) }
    }

    /// Checks `raw`, leaked for the `'static` a loaded image has.
    fn check(raw: RawDescriptor) -> Result<&'static ModuleDescriptor, DescriptorError> {
        let raw: &'static RawDescriptor = Box::leak(Box::new(raw));
        // SAFETY: a whole, aligned descriptor that is never freed.
        unsafe { check_descriptor(std::ptr::from_ref(raw).cast()) }
    }

    #[test]
    fn a_well_formed_descriptor_passes() {
        let descriptor = check(raw()).expect("a descriptor the module crate built");
        assert_eq!(describe(descriptor).unwrap().0, "nothing");
    }

    #[test]
    fn every_null_entry_point_is_refused_by_name() {
        for (i, (name, _)) in ENTRY_POINTS.iter().enumerate() {
            let mut raw = raw();
            raw.entry_points[i] = None;
            assert_eq!(
                check(raw).err(),
                Some(DescriptorError::Bad(format!(
                    "entry point `{name}` is null"
                )))
            );
        }
    }

    #[test]
    fn another_abi_version_or_size_is_refused_before_the_rest_is_read() {
        let mut raw = raw();
        raw.abi_version = ABI_VERSION + 1;
        raw.entry_points = [None; ENTRY_POINTS.len()];
        assert_eq!(
            check(raw).err(),
            Some(DescriptorError::AbiVersion(ABI_VERSION + 1))
        );
        let mut raw = self::raw();
        raw.descriptor_size -= 8;
        assert!(
            matches!(check(raw), Err(DescriptorError::Bad(ref r)) if r.contains("bytes")),
            "a short descriptor passed"
        );
    }

    #[test]
    fn a_misaligned_descriptor_is_refused() {
        let raw = raw();
        let size = size_of::<RawDescriptor>();
        let buffer: &'static mut [u8] = Box::leak(vec![0u8; size + 1].into_boxed_slice());
        let at = if buffer
            .as_ptr()
            .align_offset(std::mem::align_of::<RawDescriptor>())
            == 0
        {
            1
        } else {
            0
        };
        let target = &mut buffer[at..at + size];
        // SAFETY: `size` bytes of `raw` into `size` bytes of the buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                std::ptr::from_ref(&raw).cast::<u8>(),
                target.as_mut_ptr(),
                size,
            )
        };
        // SAFETY: a whole descriptor, never freed; misaligned on purpose (read unaligned).
        let checked = unsafe { check_descriptor(target.as_ptr().cast()) };
        assert!(
            matches!(checked, Err(DescriptorError::Bad(ref r)) if r.contains("not aligned")),
            "a misaligned descriptor passed"
        );
    }
}
