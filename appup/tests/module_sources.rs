//! Where a module's code comes from in release.toml: a cdylib with its sha256 (optional in a
//! source manifest, required in a packed one), or a native type linked into the executable.

use relup_appup::Release;

fn manifest(module: &str) -> String {
    format!(
        r#"name = "shop"
version = "0.1.0"

[[applications]]
name = "shop"
version = "0.1.0"

[[applications.modules]]
{module}

[applications.supervisor]
strategy = "one_for_one"

[[applications.supervisor.children]]
id = "cart"
module = "cart"
"#
    )
}

const SHA: &str = "ab00000000000000000000000000000000000000000000000000000000000000";

#[test]
fn a_source_manifest_may_leave_out_sha256_and_a_packed_one_may_not() {
    let text = manifest("name = \"cart\"\nfile = \"lib/libcart.so\"");
    let source = Release::parse_source(&text, "src/release.toml").unwrap();
    let (_, cart) = source.module("cart").unwrap();
    assert_eq!(cart.sha256, "");
    assert!(!cart.native);
    let err = Release::parse(&text, "releases/0.1.0/release.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("releases/0.1.0/release.toml:8:")
            && err.contains("without sha256")
            && err.contains("64 hex digits"),
        "{err}"
    );
    // A given sha256 is checked in both.
    let bad = manifest("name = \"cart\"\nfile = \"lib/libcart.so\"\nsha256 = \"xyz\"");
    for err in [
        Release::parse_source(&bad, "release.toml").unwrap_err(),
        Release::parse(&bad, "release.toml").unwrap_err(),
    ] {
        let err = err.to_string();
        assert!(
            err.contains("release.toml:11:") && err.contains("invalid sha256 `xyz`"),
            "{err}"
        );
    }
    let good = manifest(&format!(
        "name = \"cart\"\nfile = \"lib/libcart.so\"\nsha256 = \"{}\"",
        SHA.to_uppercase()
    ));
    let packed = Release::parse(&good, "release.toml").unwrap();
    assert_eq!(packed.module("cart").unwrap().1.sha256, SHA);
}

#[test]
fn a_native_module_has_no_file_and_no_sha256() {
    let text = manifest("name = \"cart\"\nversion = \"1.2.0\"\nnative = true");
    let release = Release::parse(&text, "release.toml").unwrap();
    let (_, cart) = release.module("cart").unwrap();
    assert!(cart.native);
    assert_eq!((cart.file.as_str(), cart.sha256.as_str()), ("", ""));
    assert_eq!(cart.version.to_string(), "1.2.0");
    assert_eq!(release.running_modules(), ["cart"]);

    let with_file = manifest("name = \"cart\"\nnative = true\nfile = \"lib/libcart.so\"");
    let err = Release::parse_source(&with_file, "release.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("release.toml:8:") && err.contains("native module `cart`"),
        "{err}"
    );
    let neither = manifest("name = \"cart\"");
    let err = Release::parse_source(&neither, "release.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("release.toml:8:")
            && err.contains("without file")
            && err.contains("native = true"),
        "{err}"
    );
}

#[test]
fn a_plan_refuses_a_native_module_of_another_version() {
    let release = |version: &str, native: &str| {
        let text = manifest(&format!(
            "name = \"cart\"\nversion = \"{native}\"\nnative = true"
        ))
        .replacen(
            "version = \"0.1.0\"",
            &format!("version = \"{version}\""),
            2,
        );
        Release::parse(&text, "release.toml").unwrap()
    };
    let err =
        relup_appup::plan(&release("0.1.0", "1.0.0"), &release("0.2.0", "1.1.0"), &[]).unwrap_err();
    assert!(
        matches!(err, relup_appup::PlanError::NativeChanged { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("native module `cart` is 1.0.0 in release 0.1.0 and 1.1.0 in release 0.2.0"),
        "{text}"
    );
    // The same native version is no obstacle (here the plan fails later: no appup).
    let same = relup_appup::plan(&release("0.1.0", "1.0.0"), &release("0.2.0", "1.0.0"), &[]);
    assert!(
        !matches!(same, Err(relup_appup::PlanError::NativeChanged { .. })),
        "{same:?}"
    );
}
