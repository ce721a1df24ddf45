//! One test per instruction kind and per validation error, each checking the file, line and
//! column reported.
mod common;
use common::*;
use relup_appup::*;

fn old() -> Release {
    release(
        "0.1.0",
        &[("srv", 'a'), ("util", 'a'), ("gone", 'a')],
        &[("w1", "srv"), ("w2", "srv")],
    )
}
fn new() -> Release {
    release(
        "0.2.0",
        &[("srv", 'b'), ("util", 'b'), ("fresh", 'b')],
        &[("w1", "srv"), ("w3", "fresh")],
    )
}

/// An appup with `up` instructions `ins` (one per line, starting on line 6).
fn up(ins: &[&str]) -> String {
    format!(
        "application = \"ticker\"\nversion = \"0.2.0\"\n[[up]]\nfrom = \"0.1.0\"\ninstructions = [\n{}\n]\n",
        ins.iter()
            .map(|i| format!("  {i},"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

const COMPLETE: &[&str] = &[
    r#"{ update = "srv" }"#,
    r#"{ load_module = "util" }"#,
    r#"{ add_module = "fresh" }"#,
    r#"{ delete_module = "gone" }"#,
];

fn check_up(extra: &[&str]) -> Result<(), Errors> {
    let mut ins: Vec<&str> = COMPLETE.to_vec();
    ins.extend_from_slice(extra);
    let a = Appup::parse(&up(&ins), "ticker.appup.toml")?;
    validate_entry(&a, Direction::Up, &a.up[0], &old(), &new())
}

fn err_text(extra: &[&str]) -> String {
    match check_up(extra) {
        Ok(()) => panic!("expected an error for {extra:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_instruction_kind_parses_and_validates() {
    let all = [
        r#"{ apply = "srv", function = "migrate", args = [1, "x"] }"#,
        r#"{ update_supervisor = "ticker" }"#,
        r#"{ add_child = "w3", supervisor = "ticker" }"#,
        r#"{ remove_child = "w2" }"#,
        r#"{ restart_child = "w1", supervisor = "ticker" }"#,
        r#"{ restart_application = "ticker" }"#,
        r#"{ restart_node = true }"#,
    ];
    check_up(&all).unwrap();
    let a = Appup::parse(&up(&all), "x").unwrap();
    let kinds: Vec<&str> = a.up[0]
        .instructions
        .iter()
        .map(|i| i.instruction.kind())
        .collect();
    assert_eq!(
        kinds,
        [
            "apply",
            "update_supervisor",
            "add_child",
            "remove_child",
            "restart_child",
            "restart_application",
            "restart_node"
        ]
    );
    // Aliases.
    let a = Appup::parse(
        &up(&[
            r#"{ start_child = "w3" }"#,
            r#"{ stop_child = "w2" }"#,
            r#"{ delete_child = "w9" }"#,
        ]),
        "x",
    )
    .unwrap();
    assert_eq!(a.up[0].instructions[0].instruction.kind(), "add_child");
    assert_eq!(a.up[0].instructions[1].instruction.kind(), "remove_child");
    assert_eq!(a.up[0].instructions[2].instruction.kind(), "remove_child");
    // Options.
    let a = Appup::parse(&up(&[r#"{ update = "srv", extra = { k = 1 }, timeout_ms = 7, purge = "brutal", depends_on = ["util"] }"#]), "x").unwrap();
    assert_eq!(
        a.up[0].instructions[0].instruction,
        Instruction::Update {
            module: "srv".into(),
            extra: toml::Value::Table(toml::toml! { k = 1 }),
            timeout_ms: Some(7),
            purge: Purge::Brutal,
            depends_on: vec!["util".into()],
        }
    );
}

#[test]
fn add_and_remove_application_validate_against_releases() {
    let o = Release::parse(
        &release_text_apps(
            "0.1.0",
            &[
                ("ticker", "0.1.0", &[("srv", 'a')], &[]),
                ("old", "1.0.0", &[("o", 'a')], &[]),
            ],
        ),
        "r1",
    )
    .unwrap();
    let n = Release::parse(
        &release_text_apps(
            "0.2.0",
            &[
                ("ticker", "0.2.0", &[("srv", 'a')], &[]),
                ("neu", "1.0.0", &[("n", 'a')], &[]),
            ],
        ),
        "r2",
    )
    .unwrap();
    let a = Appup::parse(
        &up(&[
            r#"{ add_application = "neu", start_type = "temporary" }"#,
            r#"{ remove_application = "old" }"#,
        ]),
        "x",
    )
    .unwrap();
    validate_entry(&a, Direction::Up, &a.up[0], &o, &n).unwrap();
    let a = Appup::parse(&up(&[r#"{ add_application = "nope" }"#]), "x").unwrap();
    let e = validate_entry(&a, Direction::Up, &a.up[0], &o, &n)
        .unwrap_err()
        .to_string();
    assert!(e.contains("x:6:3: unknown application `nope` in release ticker 0.2.0; expected one of: ticker, neu"), "{e}");
}

#[test]
fn unknown_module() {
    let e = err_text(&[r#"{ update = "nosuch" }"#]);
    assert!(e.contains("ticker.appup.toml:10:3: unknown module `nosuch` in application ticker of release ticker 0.2.0; expected one of: srv, util, fresh"), "{e}");
}

#[test]
fn unknown_application() {
    let e = err_text(&[r#"{ restart_application = "other" }"#]);
    assert!(
        e.contains("ticker.appup.toml:10:3: unknown application `other`"),
        "{e}"
    );
}

#[test]
fn update_of_module_not_in_release() {
    let a = Appup::parse(
        &up(&[
            r#"{ update = "srv" }"#,
            r#"{ load_module = "util" }"#,
            r#"{ update = "fresh" }"#,
            r#"{ update = "gone" }"#,
        ]),
        "f",
    )
    .unwrap();
    let e = validate_entry(&a, Direction::Up, &a.up[0], &old(), &new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("f:8:3: update of module `fresh`, which release ticker 0.1.0 does not have; expected add_module = \"fresh\""), "{e}");
    assert!(e.contains("f:9:3: update of module `gone`, which release ticker 0.2.0 does not have; expected delete_module = \"gone\""), "{e}");
}

#[test]
fn unknown_supervisor_and_child() {
    let e = err_text(&[
        r#"{ add_child = "w9" }"#,
        r#"{ update_supervisor = "ticker/x" }"#,
    ]);
    assert!(e.contains("ticker.appup.toml:10:3: unknown child `w9` in supervisor ticker of release ticker 0.2.0; expected one of: w1, w3"), "{e}");
    assert!(
        e.contains("ticker.appup.toml:11:3: unknown supervisor `ticker/x`"),
        "{e}"
    );
}

#[test]
fn duplicate_instruction() {
    let e = err_text(&[r#"{ update = "srv" }"#]);
    assert!(e.contains("ticker.appup.toml:10:3: duplicate instruction for module `srv`; first given at ticker.appup.toml:6:3"), "{e}");
}

#[test]
fn duplicate_entry() {
    let text = "application = \"a\"\nversion = \"0.2.0\"\n[[up]]\nfrom = \"0.1.0\"\n[[up]]\nfrom = \"0.1.0\"\n";
    let e = Appup::parse(text, "d.toml").unwrap_err().to_string();
    assert!(
        e.contains("d.toml:5:1: duplicate up entry for `0.1.0`; first given at d.toml:3:1"),
        "{e}"
    );
}

#[test]
fn duplicates_in_release() {
    let text = release_text(
        "0.1.0",
        &[("a", 'a'), ("a", 'b')],
        &[("w", "a"), ("w", "a")],
    );
    let e = Release::parse(&text, "release.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("duplicate module `a`"), "{e}");
    assert!(e.contains("duplicate child id `w`"), "{e}");
}

#[test]
fn anything_after_restart_node() {
    let e = err_text(&[
        r#"{ restart_node = true }"#,
        r#"{ apply = "srv", function = "f" }"#,
    ]);
    assert!(e.contains("ticker.appup.toml:11:3: `apply` after restart_node (at ticker.appup.toml:10:3); expected restart_node to be the last instruction"), "{e}");
}

#[test]
fn dependency_cycle() {
    let text = up(&[
        r#"{ update = "srv", depends_on = ["util"] }"#,
        r#"{ load_module = "util", depends_on = ["srv"] }"#,
    ]);
    let e = Appup::parse(&text, "c.toml").unwrap_err().to_string();
    assert!(
        e.contains("c.toml:6:3: dependency cycle srv -> util -> srv"),
        "{e}"
    );
}

#[test]
fn incomplete_appup() {
    let a = Appup::parse(&up(&[r#"{ update = "srv" }"#]), "i.toml").unwrap();
    let e = validate_entry(&a, Direction::Up, &a.up[0], &old(), &new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("i.toml:3:1: incomplete appup: module `util` of application ticker changed (sha256 aaaaaaaa.. -> bbbbbbbb..) between release ticker 0.1.0 and release ticker 0.2.0 but no instruction covers it; expected { load_module = \"util\" }"), "{e}");
    assert!(
        e.contains("module `fresh` of application ticker was added"),
        "{e}"
    );
    assert!(
        e.contains("module `gone` of application ticker was removed"),
        "{e}"
    );
    // restart_application covers everything.
    let a = Appup::parse(&up(&[r#"{ restart_application = "ticker" }"#]), "i.toml").unwrap();
    validate_entry(&a, Direction::Up, &a.up[0], &old(), &new()).unwrap();
}

#[test]
fn syntax_and_value_errors_name_line_and_column() {
    let e = Appup::parse("application = \"a\"\nversion = \"0.2.0\"\n[[up]]\nfrom = \"0.1.0\"\ninstructions = [ { update = 3 } ]\n", "s.toml").unwrap_err().to_string();
    assert!(
        e.contains("s.toml:5:29: invalid `update` `3`; expected a non-empty name string"),
        "{e}"
    );
    let e = Appup::parse(
        "application = \"a\"\nversion = \"0.2.0\"\n[[up]]\nfrom = \"x.y\"\n",
        "s.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("s.toml:4:8: invalid version `x.y`; expected an exact version"),
        "{e}"
    );
    let e = Appup::parse("application = \"a\"\nversion = \"0.2.0\"\n[[up]]\nfrom = \"0.1.0\"\ninstructions = [ { update = \"m\", bogus = 1 } ]\n", "s.toml").unwrap_err().to_string();
    assert!(e.contains("s.toml:5:42: unknown key `bogus` in a `update` instruction; expected one of: extra, timeout_ms, purge, depends_on"), "{e}");
    let e = Appup::parse("application = \"a\"\nversion = \"0.2.0\"\n[[up]]\nfrom = \"0.1.0\"\ninstructions = [ { update = \"m\", load_module = \"n\" } ]\n", "s.toml").unwrap_err().to_string();
    assert!(
        e.contains("s.toml:5:18: instruction with several tags"),
        "{e}"
    );
    let e = Release::parse("name = \"t\"\nversion = \"1.0.0\"\n[[applications]]\nname = \"a\"\nversion = \"1.0.0\"\n[[applications.modules]]\nname = \"m\"\nfile = \"f\"\nsha256 = \"xyz\"\n", "r.toml").unwrap_err().to_string();
    assert_eq!(
        e,
        "r.toml:9:10: invalid sha256 `xyz`; expected 64 hex digits"
    );
    let e = Appup::parse(
        "application = \"a\"\nversion = \"0.2.0\"\n[[up]\n",
        "s.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("s.toml:3:"), "{e}");
}

#[test]
fn release_checks() {
    let base = release_text("0.1.0", &[("m", 'a')], &[("w", "m")]);
    let e = Release::parse(&base.replace("module = \"m\"", "module = \"zz\""), "r.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown module `zz` in application ticker; expected one of: m"),
        "{e}"
    );
    let cfg = format!(
        "{base}[[applications.config]]\nmodule = \"m\"\nkey = \"k\"\ntype = \"integer\"\ndefault = 5\nrange = [10, 20]\n"
    );
    let e = Release::parse(&cfg, "r.toml").unwrap_err().to_string();
    assert!(
        e.contains("invalid default of config key `k` `5`; expected a value in [10, 20]"),
        "{e}"
    );
    let cfg = format!(
        "{base}[[applications.config]]\nmodule = \"m\"\nkey = \"k\"\ntype = \"string\"\ndefault = \"a\"\nallowed = [\"a\", \"b\"]\n"
    );
    let r = Release::parse(&cfg, "r.toml").unwrap();
    let k = &r.applications[0].config[0];
    assert!(k.check(&toml::Value::String("b".into())).is_ok());
    assert!(k.check(&toml::Value::String("c".into())).is_err());
    let bad = base.replace("strategy = \"one_for_one\"", "strategy = \"one_for_none\"");
    let e = Release::parse(&bad, "r.toml").unwrap_err().to_string();
    assert!(e.contains("invalid strategy `one_for_none`; expected one_for_one, one_for_all, rest_for_one or simple_one_for_one"), "{e}");
}

#[test]
fn nested_supervisors_have_paths() {
    let text = r#"
name = "t"
version = "1.0.0"
[probation]
seconds = 30
max_crashes = 3
[[applications]]
name = "a"
version = "1.0.0"
[[applications.modules]]
name = "m"
file = "lib/libm.so"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[applications.supervisor]
strategy = "one_for_all"
[[applications.supervisor.children]]
id = "pool"
kind = "supervisor"
strategy = "simple_one_for_one"
children = [ { id = "conn", module = "m", restart = "temporary", shutdown_ms = "brutal_kill" } ]
"#;
    let r = Release::parse(text, "r.toml").unwrap();
    assert_eq!(r.supervisor_paths(), ["a", "a/pool"]);
    assert_eq!(
        r.supervisor("a/pool").map(|s| s.strategy),
        Some(Strategy::SimpleOneForOne)
    );
    assert_eq!(r.running_modules(), ["m"]);
    assert_eq!(r.probation.as_ref().and_then(|p| p.max_crashes), Some(3));
}

#[test]
fn validate_checks_both_directions() {
    let g = generate(&old(), &new());
    assert_eq!(g.len(), 1);
    validate(&g[0], &old(), &new()).unwrap();
    let mut missing_down = g[0].clone();
    missing_down.down.clear();
    let e = validate(&missing_down, &old(), &new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no down entry of ticker 0.2.0 matches 0.1.0"),
        "{e}"
    );
}
