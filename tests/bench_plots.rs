//! The charts of BENCHMARKS.md (docs/bench/*.svg) are what `benches/plots.py` draws from its
//! tables today (issue 20, item 5): a table edited without its charts redrawn fails here.

use std::process::Command;

#[test]
fn the_benchmark_charts_match_the_tables() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/plots.py");
    let output = Command::new("python3")
        .arg(script)
        .arg("--check")
        .output()
        .unwrap_or_else(|e| panic!("python3 {script} --check cannot run ({e}): install python3"));
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
