//! Scheduled upgrades: `relup upgrade 0.2.0 --at 2026-12-01T03:00:00Z` (or `--in 10m`).
//!
//! The schedule lives in `<root>/releases/SCHEDULE` (TOML, written atomically), so it survives
//! a restart of the node. A thread of the handler sleeps until the earliest entry is due and
//! runs it as the operator's own `relup upgrade` would (snapshot, check, install, probation).
//! An entry is removed from the file before it runs, so a node that dies during a scheduled
//! upgrade does not run it again at its next start. An entry whose time passed while the node
//! was down runs at the next start if it is at most [`LATE_GRACE`] late, and is dropped (and
//! journaled as missed) otherwise: an upgrade at an unexpected time is worse than none.
//!
//! Every time and duration an operator gives is bounded, by the CLI and again by the node (the
//! control socket carries any `u64`): an upgrade is scheduled at most [`Schedule::MAX_AHEAD`]
//! (3650 days, about ten years) ahead, and a probation window lasts at most
//! [`Schedule::MAX_PROBATION`] (7 days: the install lock is held for the whole window). The
//! arithmetic on times is checked or saturating, so no input panics the request's thread.

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
    /// The time is further ahead than [`Schedule::MAX_AHEAD`].
    #[error(
        "{at} is too far ahead: an upgrade may be scheduled at most {} days (about ten years) ahead, by the node's clock until {latest}; give --at a time from now to {latest}, or --in up to {}d",
        Schedule::MAX_AHEAD.as_secs() / 86_400,
        Schedule::MAX_AHEAD.as_secs() / 86_400
    )]
    TooFar {
        /// The time asked for.
        at: String,
        /// The latest time accepted now (the node's clock plus [`Schedule::MAX_AHEAD`]).
        latest: String,
    },
    /// The delay is longer than [`Schedule::MAX_AHEAD`].
    #[error(
        "a delay (--in) of {given} is out of range: an upgrade may be scheduled at most {} days (about ten years) ahead; give a delay from 0s to {}d",
        Schedule::MAX_AHEAD.as_secs() / 86_400,
        Schedule::MAX_AHEAD.as_secs() / 86_400
    )]
    DelayOutOfRange {
        /// The delay asked for, as humantime writes it.
        given: String,
    },
    /// The probation window is longer than [`Schedule::MAX_PROBATION`].
    #[error(
        "a probation (--probation) of {given} is out of range: a probation window lasts at most {} days (the install lock is held for all of it); give 0 (none) to {}d",
        Schedule::MAX_PROBATION.as_secs() / 86_400,
        Schedule::MAX_PROBATION.as_secs() / 86_400
    )]
    ProbationOutOfRange {
        /// The window asked for, as humantime writes it.
        given: String,
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

/// Milliseconds since the Unix epoch of `time` (0 before the epoch, `u64::MAX` past it).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Milliseconds of `duration`, `u64::MAX` when they do not fit.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The first second humantime cannot write (year 10000).
const YEAR_10000_SECS: u64 = 253_402_300_800;

/// RFC 3339 text of a Unix time in milliseconds; a time after year 9999 (which RFC 3339
/// cannot write) is written as milliseconds since the epoch.
pub fn rfc3339_ms(ms: u64) -> String {
    if ms / 1000 >= YEAR_10000_SECS {
        return format!("{ms} ms after the Unix epoch (after year 9999)");
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Parses an RFC 3339 time (`Z` or a `±HH:MM` offset) or `now`. A time before 1970 is
/// [`ScheduleError::Past`].
pub fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, ScheduleError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    let bad = |reason: String| ScheduleError::BadTime {
        text: text.to_string(),
        reason,
    };
    // Before 1970 (which humantime calls out of range) is simply in the past.
    if let Some(year) = text.get(..5).and_then(|y| y.strip_suffix('-'))
        && year.bytes().all(|b| b.is_ascii_digit())
        && year.parse::<u32>().is_ok_and(|y| y < 1970)
    {
        return Err(ScheduleError::Past {
            at: text.to_string(),
            now: rfc3339_ms(unix_ms(now)),
        });
    }
    // humantime reads UTC (`Z`) times; an offset is applied here. Slices are taken with
    // `get`, so text with multi-byte characters is refused, never split inside a character.
    let offset = text
        .len()
        .checked_sub(6)
        .and_then(|i| Some((text.get(..i)?, text.get(i..)?)));
    let (utc, offset_secs) = match offset {
        Some((head, tail))
            if (tail.starts_with('+') || tail.starts_with('-'))
                && tail.as_bytes().get(3) == Some(&b':') =>
        {
            let field = |range: std::ops::Range<usize>| {
                tail.get(range)
                    .filter(|f| f.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|f| f.parse::<i64>().ok())
                    .ok_or_else(|| bad(format!("bad offset {tail}; expected +HH:MM or -HH:MM")))
            };
            let (hours, minutes) = (field(1..3)?, field(4..6)?);
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
    /// How far ahead an upgrade may be scheduled: 3650 days, about ten years. Further is a
    /// typo or an overflow, never a plan.
    pub const MAX_AHEAD: Duration = Duration::from_secs(3650 * 86_400);
    /// The longest probation window an operator may ask for: 7 days. The install lock is held
    /// for the whole window, so no other install runs meanwhile.
    pub const MAX_PROBATION: Duration = Duration::from_secs(7 * 86_400);

    /// Checks a delay from now (`--in`, `in_ms`): at most [`Schedule::MAX_AHEAD`].
    pub fn check_delay(delay: Duration) -> Result<Duration, ScheduleError> {
        if delay > Schedule::MAX_AHEAD {
            return Err(ScheduleError::DelayOutOfRange {
                given: humantime::format_duration(delay).to_string(),
            });
        }
        Ok(delay)
    }

    /// Checks a probation window (`--probation`, `probation_ms`): at most
    /// [`Schedule::MAX_PROBATION`].
    pub fn check_probation(window: Duration) -> Result<Duration, ScheduleError> {
        if window > Schedule::MAX_PROBATION {
            return Err(ScheduleError::ProbationOutOfRange {
                given: humantime::format_duration(window).to_string(),
            });
        }
        Ok(window)
    }

    /// When an upgrade asked for at `at` (RFC 3339 or `now`) or after `delay` runs, given the
    /// node's time `now`: exactly one of the two, not in the past (`now` excepted), at most
    /// [`Schedule::MAX_AHEAD`] ahead.
    pub fn due_time(
        at: Option<&str>,
        delay: Option<Duration>,
        now: SystemTime,
    ) -> Result<SystemTime, ScheduleError> {
        let latest = now.checked_add(Schedule::MAX_AHEAD).unwrap_or(now);
        match (at, delay) {
            (Some(at), None) => {
                let when = parse_time(at, now)?;
                if when < now && !at.trim().eq_ignore_ascii_case("now") {
                    return Err(ScheduleError::Past {
                        at: at.trim().to_string(),
                        now: rfc3339_ms(unix_ms(now)),
                    });
                }
                if when > latest {
                    return Err(ScheduleError::TooFar {
                        at: at.trim().to_string(),
                        latest: rfc3339_ms(unix_ms(latest)),
                    });
                }
                Ok(when)
            }
            (None, Some(delay)) => {
                let delay = Schedule::check_delay(delay)?;
                now.checked_add(delay)
                    .ok_or_else(|| ScheduleError::DelayOutOfRange {
                        given: humantime::format_duration(delay).to_string(),
                    })
            }
            _ => Err(ScheduleError::NoTime),
        }
    }

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
    fn hostile_times_are_refused_without_panics() {
        let now = SystemTime::now();
        // `split_at` at a byte offset inside a multi-byte character panicked.
        for text in [
            "é12345",
            "2026-12-01T03:00:00é",
            "2026-12-01T03:00:00+0é:00",
            "+é:00",
        ] {
            let e = parse_time(text, now).unwrap_err().to_string();
            assert!(e.contains("is not a time"), "{text}: {e}");
        }
        // Before 1970 is in the past, not "out of range".
        for text in ["1969-12-31T23:59:59Z", "0000-01-01T00:00:00Z"] {
            let e = parse_time(text, now).unwrap_err().to_string();
            assert!(e.contains("is in the past"), "{text}: {e}");
        }
        // Formatting any u64 of milliseconds does not panic (humantime stops at year 9999).
        assert_eq!(rfc3339_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert!(rfc3339_ms(u64::MAX).contains("after year 9999"));
        assert_eq!(
            unix_ms(UNIX_EPOCH + Duration::from_secs(u64::MAX / 2)),
            u64::MAX
        );
    }

    #[test]
    fn due_times_and_probations_are_bounded_inclusively() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ahead = Schedule::MAX_AHEAD;
        assert_eq!(
            Schedule::due_time(None, Some(ahead), now).unwrap(),
            now + ahead
        );
        let e = Schedule::due_time(None, Some(ahead + Duration::from_millis(1)), now)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at most 3650 days") && e.contains("0s to 3650d"),
            "{e}"
        );
        let e = Schedule::due_time(None, Some(Duration::MAX), now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 3650 days"), "{e}");
        let latest = rfc3339_ms(unix_ms(now + ahead));
        assert_eq!(
            Schedule::due_time(Some(&latest), None, now).unwrap(),
            now + ahead
        );
        let e = Schedule::due_time(Some("9999-12-31T23:59:59Z"), None, now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("too far ahead") && e.contains(&latest), "{e}");
        assert_eq!(Schedule::due_time(Some(" NOW "), None, now).unwrap(), now);
        assert!(matches!(
            Schedule::due_time(Some("now"), Some(Duration::ZERO), now),
            Err(ScheduleError::NoTime)
        ));
        assert!(Schedule::check_probation(Schedule::MAX_PROBATION).is_ok());
        let e = Schedule::check_probation(Duration::from_millis(u64::MAX))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at most 7 days") && e.contains("0 (none) to 7d"),
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
