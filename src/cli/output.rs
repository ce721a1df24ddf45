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
