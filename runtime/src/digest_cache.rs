//! The sha256 of module libraries, remembered per file as long as the file is unchanged.
//!
//! Every load of a release's library checks its sha256 against the manifest. Hashing a 1 MB
//! library costs ~0.5 ms, a quarter of a one-process install, and the same files are loaded
//! again at every upgrade/downgrade cycle. A digest is reused only while the file's identity
//! and stamps are exactly those seen when it was hashed: device, inode, size, mtime and ctime
//! (nanoseconds). Writing the file, truncating it, renaming another file over it or
//! hard-linking it all change one of them; ctime cannot be set by an unprivileged user (this is
//! the check git's index and make rely on). A digest is remembered only when the stamps were
//! the same before and after the file was read, and when the file's last change is at least
//! [`SETTLED`] old: Linux stamps files with a clock that ticks every few milliseconds, so two
//! writes of the same size within one tick would look alike ("racy git"). A library is
//! normally unpacked well before it is loaded; one that was just written is hashed every time
//! until it settles.

use crate::release::sha256_file;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How old a file's last change must be before its digest is remembered.
/// Two seconds: FAT stamps files to 2 s, ext3 and some others to 1 s, Linux's native
/// filesystems to a clock tick.
pub(crate) const SETTLED: Duration = Duration::from_secs(2);

/// What identifies one content of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the last change is at least [`SETTLED`] before `now`.
    fn settled(&self, now: SystemTime) -> bool {
        let changed = Duration::new(
            u64::try_from(self.ctime.0).unwrap_or(0),
            u32::try_from(self.ctime.1).unwrap_or(0),
        );
        now.duration_since(UNIX_EPOCH)
            .is_ok_and(|now| now.saturating_sub(changed) >= SETTLED)
    }
}

/// sha256 digests of files, keyed by path and valid for one [`Stamp`].
#[derive(Default)]
pub(crate) struct DigestCache {
    known: Mutex<HashMap<PathBuf, (Stamp, String)>>,
    /// How many files were read and hashed (the rest were remembered).
    hashed: AtomicU64,
}

impl DigestCache {
    /// The sha256 of `path` (64 lowercase hex digits): remembered when the file is unchanged
    /// since it was last hashed, computed (and remembered) otherwise.
    pub(crate) fn sha256(&self, path: &Path) -> io::Result<String> {
        let before = Stamp::of(&std::fs::metadata(path)?);
        if let Some((stamp, digest)) = self.known.lock().get(path)
            && *stamp == before
        {
            return Ok(digest.clone());
        }
        let (digest, _) = sha256_file(path)?;
        self.hashed.fetch_add(1, Ordering::Relaxed);
        let after = Stamp::of(&std::fs::metadata(path)?);
        if after == before && after.settled(SystemTime::now()) {
            self.known
                .lock()
                .insert(path.to_path_buf(), (after, digest.clone()));
        }
        Ok(digest)
    }

    /// How many times a file was actually read and hashed.
    #[cfg(test)]
    fn hashed(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::sha256_hex;

    #[test]
    fn a_changed_file_is_hashed_again() {
        let dir = std::env::temp_dir().join(format!("relup-digest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lib.so");
        std::fs::write(&file, b"first").unwrap();
        let cache = DigestCache::default();
        // Just written: hashed every time until it settles.
        assert_eq!(cache.sha256(&file).unwrap(), sha256_hex(b"first"));
        assert_eq!(cache.sha256(&file).unwrap(), sha256_hex(b"first"));
        assert_eq!(cache.hashed(), 2);
        std::thread::sleep(SETTLED + Duration::from_millis(100));
        assert_eq!(cache.sha256(&file).unwrap(), sha256_hex(b"first"));
        assert_eq!(cache.sha256(&file).unwrap(), sha256_hex(b"first"));
        assert_eq!(cache.hashed(), 3, "a settled file is hashed once");
        // Same size, rewritten in place: ctime moves even if mtime were restored.
        std::fs::write(&file, b"other").unwrap();
        assert_eq!(cache.sha256(&file).unwrap(), sha256_hex(b"other"));
        // Replaced by a rename: another inode.
        let next = dir.join("next.so");
        std::fs::write(&next, b"third").unwrap();
        std::fs::rename(&next, &file).unwrap();
        assert_eq!(cache.sha256(&file).unwrap(), sha256_hex(b"third"));
        std::fs::remove_file(&file).unwrap();
        assert!(cache.sha256(&file).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
