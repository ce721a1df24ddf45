//! Atomic file replacement: temp file in the same directory, write, fsync, rename, fsync of
//! the directory. A reader (or a crash) sees the old bytes or the new bytes, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Records a completed step for the unit tests, right after the call it names returned;
/// expands to nothing outside `cfg(test)`. A SIGKILL keeps the page cache, so the crash tests
/// cannot see the order of the syncs: these records are how it is checked.
macro_rules! step {
    ($step:expr) => {
        #[cfg(test)]
        STEPS.with(|s| s.borrow_mut().push($step));
    };
}

/// A name unlikely to collide with anything else in a directory: pid, time and a counter.
pub(crate) fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{nanos:x}-{n}", std::process::id())
}

/// Replaces `path` with `bytes` atomically: writes a temporary file in the same directory,
/// fsyncs it, renames it over `path`, then fsyncs the directory so the rename is durable.
///
/// The temporary file is removed if any step before the rename fails. The file's mode is
/// 0644 (less the umask).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o644)
}

/// [`write_atomic`] creating the file with `mode` (less the umask), e.g. 0755 for a script.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_dir(path);
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", unique_suffix()));
    let tmp = dir.join(tmp_name);
    let result = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        step!(Step::Write(tmp.clone(), bytes.len()));
        f.sync_all()?;
        step!(Step::SyncFile(tmp.clone()));
        drop(f);
        crate::fault::crash_point(|| format!("write_atomic {}: temp written", path.display()));
        fs::rename(&tmp, path)?;
        step!(Step::Rename(tmp.clone(), path.to_path_buf()));
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io::Error::new(
            e.kind(),
            format!("writing {} atomically: {e}", path.display()),
        ));
    }
    sync_dir(&dir)?;
    crate::fault::crash_point(|| format!("write_atomic {}: renamed", path.display()));
    Ok(())
}

/// Fsyncs a directory so that renames, creations and removals inside it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io::Error::new(e.kind(), format!("fsync of {}: {e}", dir.display())))?;
    step!(Step::SyncDir(dir.to_path_buf()));
    Ok(())
}

/// A step of an atomic write that completed, as the unit tests record it (see `step!`).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// The bytes (this many) were written to the temporary file.
    Write(PathBuf, usize),
    /// `fsync` of the temporary file returned.
    SyncFile(PathBuf),
    /// The temporary file was renamed over the target.
    Rename(PathBuf, PathBuf),
    /// `fsync` of the directory returned.
    SyncDir(PathBuf),
}

#[cfg(test)]
thread_local! {
    /// The steps this thread's atomic writes completed, in order (unit tests only).
    static STEPS: std::cell::RefCell<Vec<Step>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` and returns the steps it completed.
    fn steps_of(f: impl FnOnce()) -> Vec<Step> {
        STEPS.with(|s| s.borrow_mut().clear());
        f();
        STEPS.with(|s| s.borrow_mut().drain(..).collect())
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("relup-atomic-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_data_is_synced_before_the_rename_and_the_rename_before_returning() {
        let dir = scratch("order");
        let path = dir.join("RELEASES");
        fs::write(&path, b"old").unwrap();
        let steps = steps_of(|| write_atomic(&path, b"new bytes").unwrap());
        let tmp = match steps.first() {
            Some(Step::Write(tmp, 9)) => tmp.clone(),
            other => panic!("first step {other:?}: {steps:?}"),
        };
        assert_eq!(
            tmp.parent(),
            Some(dir.as_path()),
            "the temporary file is a sibling"
        );
        assert!(!tmp.exists(), "the temporary file is gone");
        // Write, fsync of the file, rename over the target, fsync of the directory: a power
        // cut at any instant leaves the old bytes or the new ones, and once write_atomic
        // returns the new ones survive it.
        assert_eq!(
            steps,
            [
                Step::Write(tmp.clone(), 9),
                Step::SyncFile(tmp.clone()),
                Step::Rename(tmp, path.clone()),
                Step::SyncDir(dir.clone()),
            ]
        );
        assert_eq!(fs::read(&path).unwrap(), b"new bytes");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_rename_leaves_the_target_and_no_temporary_file() {
        let dir = scratch("fail");
        // A directory cannot be replaced by a file: the rename fails.
        let path = dir.join("target");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"kept").unwrap();
        let steps = steps_of(|| {
            let e = write_atomic(&path, b"x").unwrap_err();
            assert!(e.to_string().contains("atomically"), "{e}");
        });
        // The data was synced, nothing was renamed, and the directory not synced for it.
        assert!(
            matches!(steps.as_slice(), [Step::Write(..), Step::SyncFile(..)]),
            "{steps:?}"
        );
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["target"], "no temporary file left");
        assert_eq!(fs::read(path.join("inside")).unwrap(), b"kept");
        fs::remove_dir_all(&dir).unwrap();
    }
}
