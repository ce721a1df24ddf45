//! Shared support for the tests that drive the real `relup` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
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

/// A source release directory `base/src-<version>` of release `demo`: module `counter` from
/// `lib` at `module_vsn`, one registered child `c1`, a 1 s probation with health checks every
/// 200 ms, and `appup` as its appup.toml when given.
pub fn release_dir(
    base: &Path,
    version: &str,
    lib: &Path,
    module_vsn: &str,
    appup: Option<&str>,
) -> PathBuf {
    let dir = base.join(format!("src-{version}"));
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::copy(lib, dir.join("lib/libcounter.so")).unwrap();
    std::fs::write(
        dir.join("release.toml"),
        format!(
            r#"name = "demo"
version = "{version}"

[probation]
seconds = 1
health_interval_ms = 200

[[applications]]
name = "app"
version = "{version}"

[[applications.modules]]
name = "counter"
file = "lib/libcounter.so"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
version = "{module_vsn}"

[applications.supervisor]
strategy = "one_for_one"

[[applications.supervisor.children]]
id = "c1"
module = "counter"
args = {{ start = 7, register_as = "c1" }}
"#
        ),
    )
    .unwrap();
    if let Some(appup) = appup {
        std::fs::write(dir.join("appup.toml"), appup).unwrap();
    }
    dir
}

/// Packs each source release of `dirs` into `base/out` with `relup release` and deploys
/// `demo-0.1.0` from there into `base/root`; returns the root.
pub fn pack_and_deploy(base: &Path, dirs: &[&Path]) -> PathBuf {
    let out = base.join("out");
    for dir in dirs {
        ok(relup(&[
            "release",
            dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]));
    }
    let root = base.join("root");
    ok(relup(&[
        "deploy",
        out.join("demo-0.1.0.tar.gz").to_str().unwrap(),
        root.to_str().unwrap(),
    ]));
    root
}
