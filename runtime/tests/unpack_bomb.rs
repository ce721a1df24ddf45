//! Decompression bombs aimed at the tar reader's metadata, not at file data: a GNU long-name
//! entry or a PAX header of 256 MiB of zeros (a tarball of about 1 MB). A tar reader that
//! buffers such an entry in memory to learn the next file's name would take that much RAM
//! before any size check runs. The unpacker must refuse it after reading at most its small
//! metadata cap, with a clear error, and the process's peak memory must stay far below the
//! bomb's size. (Its own test binary: it measures the whole process's peak RSS.)

use flate2::Compression;
use flate2::write::GzEncoder;
use relup_runtime::release::{ReleaseRoot, unpack};
use std::io::Write;
use std::path::Path;

/// The bomb's expanded size.
const BOMB: u64 = 256 << 20;

/// Peak resident memory of this process, in KiB (`VmHWM` of /proc/self/status).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Writes a `.tar.gz` whose first entry is a metadata entry of `kind` (GNU long name `L` or
/// PAX `x`) announcing `BOMB` bytes of zeros, followed by one small file.
fn bomb(path: &Path, kind: tar::EntryType) {
    let mut gz = GzEncoder::new(std::fs::File::create(path).unwrap(), Compression::fast());
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(kind);
    h.set_size(BOMB);
    h.set_mode(0o644);
    h.set_cksum();
    gz.write_all(h.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(BOMB >> 20) {
        gz.write_all(&zeros).unwrap();
    }
    let mut f = tar::Header::new_gnu();
    f.set_path("release.toml").unwrap();
    f.set_size(1);
    f.set_mode(0o644);
    f.set_cksum();
    gz.write_all(f.as_bytes()).unwrap();
    gz.write_all(&[b'x'; 512]).unwrap();
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap();
}

#[test]
fn metadata_bombs_are_refused_without_being_read() {
    let tmp = tempfile::tempdir().unwrap();
    let root = ReleaseRoot::create(tmp.path().join("root")).unwrap();
    for (kind, what) in [
        (tar::EntryType::GNULongName, "GNU long name"),
        (tar::EntryType::XHeader, "PAX header"),
    ] {
        let tarball = tmp.path().join(format!("bomb-{what}.tar.gz"));
        bomb(&tarball, kind);
        let size = std::fs::metadata(&tarball).unwrap().len();
        assert!(size < 8 << 20, "the bomb is small: {size} bytes");
        let before = peak_rss_kib();
        let err = unpack(&root, &tarball).unwrap_err().to_string();
        let grew = peak_rss_kib().saturating_sub(before);
        eprintln!("{what}: {size}-byte tarball refused, peak RSS +{grew} KiB: {err}");
        assert!(err.contains(what), "{err}");
        assert!(err.contains(&BOMB.to_string()), "{err}");
        assert!(err.contains("at most 65536 bytes"), "{err}");
        assert!(
            grew < 64 << 10,
            "refusing a {BOMB}-byte {what} raised the peak RSS by {grew} KiB"
        );
        let left: Vec<_> = std::fs::read_dir(root.releases_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "left in releases/: {left:?}");
    }
}
