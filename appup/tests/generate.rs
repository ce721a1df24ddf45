//! appup generation.
mod common;
use common::*;
use relup_appup::*;

#[test]
fn generated_appup_covers_every_change_and_round_trips() {
    let old = release(
        "0.1.0",
        &[("srv", 'a'), ("lib", 'a'), ("gone", 'a')],
        &[("w1", "srv"), ("w2", "gone")],
    );
    let new = release(
        "0.2.0",
        &[("srv", 'b'), ("lib", 'b'), ("fresh", 'a')],
        &[("w1", "srv"), ("w3", "fresh")],
    );
    let g = generate(&old, &new);
    assert_eq!(g.len(), 1);
    let a = &g[0];
    let kinds: Vec<String> = a.up[0]
        .instructions
        .iter()
        .map(|i| i.instruction.to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            r#"{ add_module = "fresh" }"#,
            r#"{ update = "srv", extra = {} }"#,
            r#"{ load_module = "lib" }"#,
            r#"{ remove_child = "w2", supervisor = "ticker" }"#,
            r#"{ add_child = "w3", supervisor = "ticker" }"#,
            r#"{ delete_module = "gone" }"#,
        ]
    );
    validate(a, &old, &new).unwrap();
    let text = a.to_toml();
    let back = Appup::parse(&text, &a.file).unwrap();
    assert_eq!(&back, a);
    // The plan from the generated appup works both ways.
    let known = vec![
        known(&old, ReleaseStatus::Permanent, vec![]),
        known(&new, ReleaseStatus::Unpacked, vec![back]),
    ];
    plan(&old, &new, &known).unwrap();
    plan(&new, &old, &known).unwrap();
}

#[test]
fn supervisor_flag_and_child_spec_changes() {
    let old = release("0.1.0", &[("srv", 'a')], &[("w1", "srv")]);
    let text = release_text("0.2.0", &[("srv", 'a')], &[("w1", "srv")])
        .replace("intensity = 3", "intensity = 9")
        .replace(
            "module = \"srv\"\n",
            "module = \"srv\"\nrestart = \"transient\"\n",
        );
    let new = Release::parse(&text, "r").unwrap();
    let g = generate(&old, &new);
    let up: Vec<&str> = g[0].up[0]
        .instructions
        .iter()
        .map(|i| i.instruction.kind())
        .collect();
    assert_eq!(up, ["update_supervisor", "restart_child"]);
    validate(&g[0], &old, &new).unwrap();
}

#[test]
fn unchanged_application_gets_no_appup() {
    let a = release("0.1.0", &[("srv", 'a')], &[]);
    let b = Release::parse(
        &release_text_apps("0.2.0", &[("ticker", "0.1.0", &[("srv", 'a')], &[])]),
        "r",
    )
    .unwrap();
    assert!(generate(&a, &b).is_empty());
}
