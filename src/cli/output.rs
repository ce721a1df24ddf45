//! Printing results for people (and JSON for programs).

use relup_runtime::install::Progress;
use std::sync::Mutex;

/// One install step as a line: status, duration, step, detail.
pub fn progress_line(p: &Progress) -> String {
    let status = if p.ok { "ok" } else { "FAILED" };
    let ms = p.micros as f64 / 1000.0;
    if p.detail.is_empty() {
        format!("  [{status:>6}] {ms:>9.3} ms  {}", p.step)
    } else {
        format!("  [{status:>6}] {ms:>9.3} ms  {} — {}", p.step, p.detail)
    }
}

/// Prints a JSON value on one line.
pub fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

/// Fields added to the JSON object that a failed `--json` command prints (such as whether
/// the node runs), set by whatever learned them on the way; the last value of a key wins.
static ERROR_FIELDS: Mutex<Vec<(String, serde_json::Value)>> = Mutex::new(Vec::new());

/// Adds `key` to the JSON object of a failure of this command (see [`error_json`]).
pub fn add_error_field(key: &str, value: serde_json::Value) {
    let mut fields = ERROR_FIELDS.lock().unwrap_or_else(|e| e.into_inner());
    fields.push((key.to_string(), value));
}

/// The JSON object a failed `--json` command prints on stdout: `{"error": message}` and the
/// fields [`add_error_field`] added (`"running"`: whether a node answered on the root, when
/// the command tried to reach it).
pub fn error_json(message: &str) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    let fields = ERROR_FIELDS.lock().unwrap_or_else(|e| e.into_inner());
    for (key, value) in fields.iter() {
        object.insert(key.clone(), value.clone());
    }
    object.insert("error".into(), message.into());
    serde_json::Value::Object(object)
}

/// How `relup upgrade` / `relup downgrade` ended, for a fleet driver (issue 19): the exit
/// code and, with `--json`, the last JSON object on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Installed (and permanent unless `--no-permanent`): exit 0.
    Installed,
    /// Already running that version (and permanent): nothing changed, exit 0.
    Already,
    /// Scheduled for later (`--at` / `--in`): exit 0.
    Scheduled,
    /// The install started and failed (a step, or the probation): the node rolled back by
    /// itself and runs the version in `running`: exit [`EXIT_ROLLED_BACK`].
    RolledBack,
    /// Refused before anything was switched (not unpacked, the dry run failed, busy, on
    /// probation, the wrong direction...): nothing changed, exit [`EXIT_REFUSED`].
    Refused,
}

/// Exit code of an install that failed and was rolled back.
pub const EXIT_ROLLED_BACK: u8 = 2;
/// Exit code of an install refused before anything changed.
pub const EXIT_REFUSED: u8 = 3;

impl Outcome {
    /// The `"outcome"` value; `down` for `relup downgrade`.
    pub fn name(self, down: bool) -> &'static str {
        match self {
            Outcome::Installed if down => "downgraded",
            Outcome::Installed => "upgraded",
            Outcome::Already => "already",
            Outcome::Scheduled => "scheduled",
            Outcome::RolledBack => "rolled_back",
            Outcome::Refused => "refused",
        }
    }

    /// The process's exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::RolledBack => EXIT_ROLLED_BACK,
            Outcome::Refused => EXIT_REFUSED,
            _ => 0,
        }
    }
}

/// The exit code of this command's failure when it is not 1 (see [`set_exit_code`]).
static EXIT_CODE: Mutex<Option<u8>> = Mutex::new(None);

/// Sets the exit code that a failure of this command exits with (instead of 1).
pub fn set_exit_code(code: u8) {
    *EXIT_CODE.lock().unwrap_or_else(|e| e.into_inner()) = Some(code);
}

/// The exit code of a failure of this command: 1 unless [`set_exit_code`] said otherwise.
pub fn failure_exit_code() -> u8 {
    EXIT_CODE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or(1)
}
