//! Runs the embedding example as a real process, with and without a cdylib child.

use std::process::Command;

fn run(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relup-example-embed"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn native_and_cdylib_children_answer_and_the_node_shuts_down_cleanly() {
    let lib = &relup_testkit::fixtures().counter_v1;
    let (ok, stdout, stderr) = run(&[lib.as_os_str()]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("loaded module counter 1.0.0"), "{stdout}");
    assert!(
        stdout.contains(r#"greeter says: Text("Hello, operator!")"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"says: Text("Welcome back, operator!")"#),
        "{stdout}"
    );
    assert!(stdout.contains("counter says: Count(42)"), "{stdout}");
    assert!(
        stdout.contains("greeter: terminating (shutdown) after 2 greetings"),
        "{stdout}"
    );
    assert!(
        stdout.contains("clean shutdown: 0 processes left"),
        "{stdout}"
    );
}

#[test]
fn a_bad_module_path_is_a_clear_error() {
    let (ok, _, stderr) = run(&["/nonexistent/libnothing.so".as_ref()]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot read module library /nonexistent/libnothing.so"),
        "{stderr}"
    );
}
