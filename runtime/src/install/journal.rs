//! The upgrade journal: one line per step of every install, appended and synced.
//!
//! Each line is written to the file at once (it survives a crash of the node). It is synced
//! to disk (it survives a crash of the machine) at once too, except inside a [`Batch`]: an
//! install writes its lines as it goes and syncs them once, when it ends. A sync costs
//! 0.2–4 ms on a busy disk, and a hop records ~20 lines, several of them while processes
//! are suspended; the state that decides what boots (`RELEASES`) is synced on its own.
//!
//! The file may be rotated (moved away by `logrotate`) under the running node: before each
//! line the journal checks that its path still names the open file (same device and inode)
//! and, if not, opens the path anew, so that lines go where `relup log` reads them.
//!
//! An install that is not made permanent opens a [`Journal::deferred`] batch: its lines are
//! synced by the next sync of the journal (the next line outside a batch, such as
//! `permanent`, or the end of a synced batch), not when it ends. Such an install is itself
//! undone by a crash of the machine (the permanent release boots), so its lines are exactly
//! as durable as what they record, and the install does not wait for the disk. A batch
//! belongs to the thread that opened it: lines other threads record meanwhile are synced at
//! once.

use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An append-only log file; each line is written before the step it records is considered
/// done, and synced then too unless a [`Batch`] is open.
pub struct Journal {
    path: PathBuf,
    file: Mutex<Writer>,
}

impl Writer {
    fn open_batch(&mut self) {
        if self.batches == 0 {
            self.owner = Some(std::thread::current().id());
        }
        self.batches += 1;
    }
}

#[derive(Default)]
struct Writer {
    file: Option<File>,
    /// Open batches; lines are synced when the last one closes, if one of them asked for it.
    batches: usize,
    /// The thread that opened the first open batch: lines other threads record meanwhile (an
    /// operator's `permanent`, an unpack) are synced at once, as outside a batch.
    owner: Option<std::thread::ThreadId>,
    /// Whether an open batch syncs when the last one closes (not only deferred ones).
    sync_at_end: bool,
    /// Lines written since the last sync.
    unsynced: bool,
    /// How many times the file was synced.
    syncs: u64,
}

/// While alive, the journal's lines are written but not synced; dropping the last open batch
/// syncs them once (see [`Journal::batch`]).
#[must_use = "the batch ends (and syncs) when dropped"]
pub struct Batch<'a> {
    journal: &'a Journal,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let mut writer = self.journal.file.lock();
        writer.batches = writer.batches.saturating_sub(1);
        if writer.batches > 0 {
            return;
        }
        if writer.unsynced && writer.sync_at_end {
            writer.unsynced = false;
            writer.syncs += 1;
            if let Some(file) = writer.file.as_ref() {
                let _ = file.sync_data();
            }
        }
        writer.sync_at_end = false;
        writer.owner = None;
    }
}

/// Opens `path` for appending, creating it and its directory.
fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Whether `path` no longer names `file` (moved or removed); false when it cannot tell.
fn moved(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), file.metadata()) {
        (Err(e), _) => e.kind() == std::io::ErrorKind::NotFound,
        (Ok(named), Ok(open)) => (named.dev(), named.ino()) != (open.dev(), open.ino()),
        (Ok(_), Err(_)) => false,
    }
}

/// Formats a time as RFC 3339 UTC with milliseconds (`2026-11-21T23:55:01.123Z`).
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

impl Journal {
    /// A journal appending to `path` (created with its directory when first written).
    pub fn new(path: &Path) -> Journal {
        Journal {
            path: path.to_path_buf(),
            file: Mutex::new(Writer::default()),
        }
    }

    /// Opens a batch: until it is dropped, [`Journal::record`] writes lines without syncing
    /// each; the drop syncs them once. Batches nest.
    pub fn batch(&self) -> Batch<'_> {
        let mut writer = self.file.lock();
        writer.open_batch();
        writer.sync_at_end = true;
        Batch { journal: self }
    }

    /// Opens a batch whose lines are left to the journal's next sync (see the module doc):
    /// for an install that a crash of the machine undoes anyway. Inside a synced batch it is
    /// synced with it.
    pub fn deferred(&self) -> Batch<'_> {
        self.file.lock().open_batch();
        Batch { journal: self }
    }

    /// A journal that records nothing (for callers without a release root).
    pub fn disabled() -> Journal {
        Journal {
            path: PathBuf::new(),
            file: Mutex::new(Writer::default()),
        }
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (a timestamp is prepended) and syncs it, or leaves the sync to the
    /// open [`Batch`]. Journal I/O errors are returned so that an install can refuse to go on
    /// without its record.
    pub fn record(&self, line: &str) -> std::io::Result<()> {
        if self.path.as_os_str().is_empty() {
            return Ok(());
        }
        let mut writer = self.file.lock();
        let writer = &mut *writer;
        if writer
            .file
            .as_ref()
            .is_some_and(|file| moved(&self.path, file))
        {
            // Rotated: the old file keeps its lines (synced first, as they would have been) and
            // the next ones go to a new file at the path. If the path cannot be opened, the
            // line still goes to the old file rather than nowhere.
            if let Ok(new) = open_append(&self.path) {
                if writer.unsynced
                    && let Some(old) = writer.file.as_ref()
                {
                    let _ = old.sync_data();
                }
                writer.file = Some(new);
            }
        }
        if writer.file.is_none() {
            writer.file = Some(open_append(&self.path)?);
        }
        let Some(file) = writer.file.as_mut() else {
            return Ok(());
        };
        let clean: String = line
            .chars()
            .map(|c| if c == '\n' { ' ' } else { c })
            .collect();
        // One write call per line, so that lines from a crash are whole.
        let text = format!("{} {clean}\n", rfc3339(SystemTime::now()));
        file.write_all(text.as_bytes())?;
        if writer.batches > 0 && writer.owner == Some(std::thread::current().id()) {
            writer.unsynced = true;
        } else {
            // Also syncs what a deferred batch left.
            file.sync_data()?;
            writer.unsynced = false;
            writer.syncs += 1;
        }
        crate::fault::crash_point(|| format!("journal: {clean}"));
        Ok(())
    }

    /// How many times the file was synced so far.
    pub fn syncs(&self) -> u64 {
        self.file.lock().syncs
    }

    /// Reads the whole journal (empty when it does not exist yet).
    pub fn read(&self) -> std::io::Result<String> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_304_983_123);
        assert_eq!(rfc3339(t), "2026-11-21T23:49:43.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_deferred_batch_is_synced_by_the_next_sync() {
        let dir = std::env::temp_dir().join(format!("relup-journal-d-{}", std::process::id()));
        let journal = Journal::new(&dir.join("log/upgrade.log"));
        journal.record("one").unwrap();
        assert_eq!(journal.syncs(), 1);
        {
            let _install = journal.deferred();
            journal.record("hop").unwrap();
            journal.record("done").unwrap();
        }
        assert_eq!(
            journal.syncs(),
            1,
            "a deferred batch does not sync when it ends"
        );
        assert!(
            journal.read().unwrap().contains(" done\n"),
            "written at once"
        );
        journal.record("permanent").unwrap();
        assert_eq!(journal.syncs(), 2);
        {
            let _install = journal.batch();
            let _hop = journal.deferred();
            journal.record("hop").unwrap();
        }
        assert_eq!(
            journal.syncs(),
            3,
            "a deferred batch inside a synced one syncs with it"
        );
        {
            let _nothing = journal.batch();
        }
        assert_eq!(journal.syncs(), 3, "nothing written, nothing synced");
        {
            let _install = journal.deferred();
            journal.record("hop").unwrap();
            std::thread::scope(|s| {
                s.spawn(|| journal.record("permanent 0.1.0 (another thread)").unwrap());
            });
            assert_eq!(
                journal.syncs(),
                4,
                "another thread's line is synced at once"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rotated_journal_is_reopened() {
        let dir = std::env::temp_dir().join(format!("relup-journal-r-{}", std::process::id()));
        let journal = Journal::new(&dir.join("log/upgrade.log"));
        journal.record("before").unwrap();
        std::fs::rename(dir.join("log/upgrade.log"), dir.join("log/upgrade.log.1")).unwrap();
        journal.record("after").unwrap();
        let old = std::fs::read_to_string(dir.join("log/upgrade.log.1")).unwrap();
        let new = journal.read().unwrap();
        assert!(old.contains(" before\n") && !old.contains("after"), "{old}");
        assert!(new.contains(" after\n") && !new.contains("before"), "{new}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_of_a_batch_are_written_at_once_and_batches_nest() {
        let dir = std::env::temp_dir().join(format!("relup-journal-{}", std::process::id()));
        let journal = Journal::new(&dir.join("log/upgrade.log"));
        journal.record("before").unwrap();
        {
            let _outer = journal.batch();
            {
                let _inner = journal.batch();
                journal.record("inside").unwrap();
            }
            journal.record("still inside").unwrap();
            let text = journal.read().unwrap();
            assert!(
                text.contains(" inside\n") && text.contains(" still inside\n"),
                "{text}"
            );
        }
        journal.record("after").unwrap();
        let lines: Vec<String> = journal
            .read()
            .unwrap()
            .lines()
            .map(|l| l.split_once(' ').unwrap().1.to_string())
            .collect();
        assert_eq!(lines, ["before", "inside", "still inside", "after"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
