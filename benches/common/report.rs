//! Machine-readable results: when `RELUP_BENCH_JSON` names a file, each figure a plain-main
//! benchmark prints is also appended to it as one JSON object per line,
//! `{"scenario":…,"n":…,"value":…,"unit":…}` (read by `benches/compare-otp.sh`).

use std::io::Write;

/// Appends one figure to `$RELUP_BENCH_JSON`, if set.
pub fn emit(scenario: &str, n: u64, value: f64, unit: &str) {
    let Some(path) = std::env::var_os("RELUP_BENCH_JSON") else {
        return;
    };
    let line = serde_json::json!({
        "scenario": scenario,
        "n": n,
        "value": value,
        "unit": unit,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("RELUP_BENCH_JSON can be opened for appending");
    writeln!(file, "{line}").expect("RELUP_BENCH_JSON is writable");
}

/// A list of numbers from the environment variable `name` (space or comma separated), or
/// `default` when it is unset or empty.
pub fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    let parsed: Vec<u64> = std::env::var(name)
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{name}: {s:?} is not a number"))
        })
        .collect();
    if parsed.is_empty() {
        default.to_vec()
    } else {
        parsed
    }
}

/// A number from the environment variable `name`, or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    env_list(name, &[default])[0]
}
