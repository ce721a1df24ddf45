//! Test support shared by the workspace's tests and benchmarks: builds the fixture module
//! libraries (real cdylibs from `tests/modules/`) once per test binary and returns their
//! paths.
//!
//! The build goes to its own target directory (`target/fixtures`), so it never waits on the
//! lock of the `cargo test` or `cargo bench` that runs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the built fixture libraries.
#[derive(Debug, Clone)]
pub struct Fixtures {
    /// Module `counter` 1.0.0.
    pub counter_v1: PathBuf,
    /// Module `counter` 2.0.0 (adds a state field).
    pub counter_v2: PathBuf,
    /// A cdylib without the relup descriptor.
    pub not_a_module: PathBuf,
    /// A cdylib whose descriptor claims ABI version 999.
    pub bad_abi: PathBuf,
    /// The ticker tutorial's module, release 0.4.0 (reads its interval from config).
    pub ticker_v040: PathBuf,
    /// Module `echo` 1.0.0: a TCP echo server on the node's ports.
    pub echo_v1: PathBuf,
    /// Module `echo` 2.0.0 (the same source).
    pub echo_v2: PathBuf,
    /// Module `counter` 2.0.0 that panics in every entry point (`init` only when asked).
    pub panicky: PathBuf,
    /// Module `counter` 2.0.0, hand-written against the ABI, returning garbage everywhere.
    pub garbage: PathBuf,
    /// A descriptor of the current ABI version whose name claims 5000 bytes.
    pub bad_descriptor: PathBuf,
    /// A descriptor of the current ABI version and size whose `health` entry point is null.
    pub null_entry_point: PathBuf,
    /// Module `counter` 2.0.0 whose `code_change` never returns.
    pub counter_hang: PathBuf,
    /// Module `tables` 1.0.0: drives the node-table API (`Context::table_*`).
    pub tables_v1: PathBuf,
    /// Module `tables` 2.0.0 (the same source; its code_change can be told to fail).
    pub tables_v2: PathBuf,
}

const PACKAGES: [&str; 14] = [
    "relup-fixture-counter-v1",
    "relup-fixture-counter-v2",
    "relup-fixture-not-a-module",
    "relup-fixture-bad-abi",
    "relup-example-ticker-v040",
    "relup-fixture-echo-v1",
    "relup-fixture-echo-v2",
    "relup-fixture-panicky",
    "relup-fixture-garbage",
    "relup-fixture-bad-descriptor",
    "relup-fixture-null-entry-point",
    "relup-fixture-counter-hang",
    "relup-fixture-tables-v1",
    "relup-fixture-tables-v2",
];

/// The workspace root (this crate lives in `tests/testkit`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

fn build(release: bool) -> Fixtures {
    let root = workspace_root();
    let target = root.join("target").join("fixtures");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(&root).args(["build", "--quiet"]);
    for package in PACKAGES {
        command.args(["-p", package]);
    }
    if release {
        command.arg("--release");
    }
    let status = command
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the fixture modules: {e}"));
    assert!(status.success(), "building the fixture modules failed");
    let profile = if release { "release" } else { "debug" };
    let lib = |name: &str| {
        target
            .join(profile)
            .join(format!("librelup_fixture_{name}.so"))
    };
    Fixtures {
        counter_v1: lib("counter_v1"),
        counter_v2: lib("counter_v2"),
        not_a_module: lib("not_a_module"),
        bad_abi: lib("bad_abi"),
        ticker_v040: target.join(profile).join("librelup_example_ticker_v040.so"),
        echo_v1: lib("echo_v1"),
        echo_v2: lib("echo_v2"),
        panicky: lib("panicky"),
        garbage: lib("garbage"),
        bad_descriptor: lib("bad_descriptor"),
        null_entry_point: lib("null_entry_point"),
        counter_hang: lib("counter_hang"),
        tables_v1: lib("tables_v1"),
        tables_v2: lib("tables_v2"),
    }
}

/// The fixtures built in the debug profile (for tests).
pub fn fixtures() -> &'static Fixtures {
    static DEBUG: OnceLock<Fixtures> = OnceLock::new();
    DEBUG.get_or_init(|| build(false))
}

/// The fixtures built in the release profile (for benchmarks).
pub fn release_fixtures() -> &'static Fixtures {
    static RELEASE: OnceLock<Fixtures> = OnceLock::new();
    RELEASE.get_or_init(|| build(true))
}
