//! Scheduled upgrades: `relup upgrade 0.2.0 --at 2026-12-01T03:00:00Z` (or `--in 10m`).
//!
//! The schedule lives in `<root>/releases/SCHEDULE` (TOML, written atomically), so it survives
//! a restart of the node. A thread of the handler sleeps until the earliest entry is due and
//! runs it as the operator's own `relup upgrade` would (snapshot, check, install, probation).
//! An entry is removed from the file before it runs, so a node that dies during a scheduled
//! upgrade does not run it again at its next start. An entry whose time passed while the node
//! was down runs at the next start if it is at most [`LATE_GRACE`] late, and is dropped (and
//! journaled as missed) otherwise: an upgrade at an unexpected time is worse than none.

use crate::release::write_atomic;
use semver::Version;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How late an entry may still run after a node restart.
pub const LATE_GRACE: Duration = Duration::from_secs(300);

/// One scheduled upgrade (or downgrade).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledUpgrade {
    /// Its id (for `relup cancel`).
    pub id: u64,
    /// The target release.
    pub version: Version,
    /// When it runs (RFC 3339, UTC).
    pub at: String,
    /// The same, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Make the release permanent once its probation passes.
    pub permanent: bool,
    /// The operator's probation window, in milliseconds, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation_ms: Option<u64>,
    /// When it was scheduled (RFC 3339).
    pub scheduled_at: String,
}

/// `releases/SCHEDULE`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The last id given out (ids are never reused, even after a cancel).
    #[serde(default)]
    pub last_id: u64,
    /// The entries, in the order they were added.
    #[serde(default, rename = "upgrade")]
    pub upgrades: Vec<ScheduledUpgrade>,
}

/// Why a schedule could not be read, written or changed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The file could not be read or written.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error(
        "{file}:{line}:{column}: {message}; expected [[upgrade]] tables with id, version, at, at_unix_ms, permanent, scheduled_at"
    )]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// The time is not an RFC 3339 time.
    #[error(
        "{text:?} is not a time: {reason}; expected RFC 3339 such as 2026-12-01T03:00:00Z (or 2026-12-01T04:00:00+01:00), or `now`"
    )]
    BadTime {
        /// What was given.
        text: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The time is in the past.
    #[error(
        "{at} is in the past: the node's time is {now}; use --in 10m for a delay from now, or --at now"
    )]
    Past {
        /// The time asked for.
        at: String,
        /// The node's clock.
        now: String,
    },
    /// Neither or both of `at` and `in` were given.
    #[error("give the time of a scheduled upgrade with exactly one of --at and --in")]
    NoTime,
    /// No entry with this id.
    #[error("no scheduled upgrade {id}; scheduled: {scheduled}")]
    NotFound {
        /// The id asked for.
        id: u64,
        /// What is scheduled.
        scheduled: String,
    },
}

/// Milliseconds since the Unix epoch of `time`.
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 text of a Unix time in milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Parses an RFC 3339 time (`Z` or a `±HH:MM` offset) or `now`.
pub fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, ScheduleError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    let bad = |reason: String| ScheduleError::BadTime {
        text: text.to_string(),
        reason,
    };
    // humantime reads UTC (`Z`) times; an offset is applied here.
    let (utc, offset_secs) = match text.len().checked_sub(6).map(|i| text.split_at(i)) {
        Some((head, tail))
            if (tail.starts_with('+') || tail.starts_with('-'))
                && tail.as_bytes().get(3) == Some(&b':') =>
        {
            let hours: i64 = tail[1..3]
                .parse()
                .map_err(|_| bad(format!("bad offset {tail}")))?;
            let minutes: i64 = tail[4..6]
                .parse()
                .map_err(|_| bad(format!("bad offset {tail}")))?;
            let sign = if tail.starts_with('-') { -1 } else { 1 };
            (format!("{head}Z"), sign * (hours * 3600 + minutes * 60))
        }
        _ => (text.to_string(), 0),
    };
    let time = humantime::parse_rfc3339(&utc).map_err(|e| bad(e.to_string()))?;
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    let time = if offset_secs >= 0 {
        time.checked_sub(shift)
    } else {
        time.checked_add(shift)
    };
    time.ok_or_else(|| bad("out of range".into()))
}

impl Schedule {
    /// Reads the schedule (empty when the file does not exist).
    pub fn load(file: &Path) -> Result<Schedule, ScheduleError> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Schedule::default()),
            Err(source) => {
                return Err(ScheduleError::Io {
                    file: file.to_path_buf(),
                    source,
                });
            }
        };
        toml::from_str(&text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start).min(text.len());
            let before = &text[..offset];
            ScheduleError::Syntax {
                file: file.to_path_buf(),
                line: before.matches('\n').count() + 1,
                column: before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1,
                message: e.message().to_string(),
            }
        })
    }

    /// Writes the schedule atomically.
    pub fn save(&self, file: &Path) -> Result<(), ScheduleError> {
        let io = |source| ScheduleError::Io {
            file: file.to_path_buf(),
            source,
        };
        let text = toml::to_string(self).map_err(|e| io(std::io::Error::other(e)))?;
        write_atomic(file, text.as_bytes()).map_err(io)
    }

    /// Takes the next id.
    pub fn next_id(&mut self) -> u64 {
        self.last_id = self
            .upgrades
            .iter()
            .map(|u| u.id)
            .max()
            .unwrap_or(0)
            .max(self.last_id)
            + 1;
        self.last_id
    }

    /// The entry due first.
    pub fn next_due(&self) -> Option<&ScheduledUpgrade> {
        self.upgrades.iter().min_by_key(|u| u.at_unix_ms)
    }

    /// Removes entry `id` (every entry when `None`); returns what was removed.
    pub fn cancel(&mut self, id: Option<u64>) -> Result<Vec<ScheduledUpgrade>, ScheduleError> {
        match id {
            None => Ok(std::mem::take(&mut self.upgrades)),
            Some(id) => {
                let index = self
                    .upgrades
                    .iter()
                    .position(|u| u.id == id)
                    .ok_or_else(|| ScheduleError::NotFound {
                        id,
                        scheduled: self.describe(),
                    })?;
                Ok(vec![self.upgrades.remove(index)])
            }
        }
    }

    /// One line listing the entries.
    pub fn describe(&self) -> String {
        if self.upgrades.is_empty() {
            return "none".into();
        }
        self.upgrades
            .iter()
            .map(|u| format!("{} ({} at {})", u.id, u.version, u.at))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_offsets_and_now() {
        let now = SystemTime::now();
        assert_eq!(parse_time("now", now).unwrap(), now);
        let utc = parse_time("2026-12-01T03:00:00Z", now).unwrap();
        assert_eq!(rfc3339_ms(unix_ms(utc)), "2026-12-01T03:00:00.000Z");
        let plus = parse_time("2026-12-01T04:00:00+01:00", now).unwrap();
        assert_eq!(plus, utc);
        let minus = parse_time("2026-11-30T22:30:00-04:30", now).unwrap();
        assert_eq!(minus, utc);
        let e = parse_time("tomorrow", now).unwrap_err().to_string();
        assert!(
            e.contains("\"tomorrow\" is not a time") && e.contains("RFC 3339"),
            "{e}"
        );
    }

    #[test]
    fn schedule_round_trips_and_cancels() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("SCHEDULE");
        let mut s = Schedule::load(&file).unwrap();
        assert!(s.upgrades.is_empty());
        for ms in [2_000, 1_000] {
            let id = s.next_id();
            s.upgrades.push(ScheduledUpgrade {
                id,
                version: Version::new(0, 2, 0),
                at: rfc3339_ms(ms),
                at_unix_ms: ms,
                permanent: true,
                probation_ms: None,
                scheduled_at: rfc3339_ms(0),
            });
        }
        s.save(&file).unwrap();
        let mut back = Schedule::load(&file).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.next_due().map(|u| u.id), Some(2));
        assert!(
            back.cancel(Some(9))
                .unwrap_err()
                .to_string()
                .contains("no scheduled upgrade 9")
        );
        assert_eq!(back.cancel(Some(2)).unwrap().len(), 1);
        assert_eq!(back.next_id(), 3, "ids are not reused");
        std::fs::write(&file, "[[upgrade]]\nid = \"one\"\n").unwrap();
        let e = Schedule::load(&file).unwrap_err().to_string();
        assert!(e.contains("SCHEDULE:2:"), "{e}");
    }
}
