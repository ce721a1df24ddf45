//! Printing results for people (and JSON for programs).

use relup_runtime::install::Progress;

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
