//! Shared support for the tests that drive the real `relup` binary.

#![allow(dead_code)]

use std::process::{Command, Output};

/// The `relup` binary under test.
pub const RELUP: &str = env!("CARGO_BIN_EXE_relup");

/// Runs `relup` with `args` (no backtraces in its errors).
pub fn relup(args: &[&str]) -> Output {
    Command::new(RELUP)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("relup runs")
}

/// Standard output and standard error together.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts success; returns the output text.
#[track_caller]
pub fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "expected success:\n{}",
        text(&output)
    );
    text(&output)
}

/// Asserts failure with `needle` in the output and a one-line reason on stderr.
#[track_caller]
pub fn fails(output: Output, needle: &str) -> String {
    let all = text(&output);
    assert!(!output.status.success(), "expected failure:\n{all}");
    assert!(all.contains(needle), "expected {needle:?} in:\n{all}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("relup: "),
        "one-line reason on stderr: {stderr}"
    );
    all
}
