//! Planner: single hops, downgrades, chains, missing paths, ordering.
mod common;
use common::*;
use relup_appup::*;

fn r1() -> Release {
    release(
        "0.1.0",
        &[("ticker_server", 'a'), ("fmt", 'a')],
        &[("ticker", "ticker_server")],
    )
}
fn r2() -> Release {
    release(
        "0.2.0",
        &[("ticker_server", 'b'), ("fmt", 'b'), ("stats", 'b')],
        &[("ticker", "ticker_server")],
    )
}
fn r3() -> Release {
    release(
        "0.3.0",
        &[("ticker_server", 'c'), ("fmt", 'b'), ("stats", 'c')],
        &[("ticker", "ticker_server")],
    )
}

const UP2: &str = r#"
application = "ticker"
version = "0.2.0"
[[up]]
from = "0.1.0"
instructions = [
  { add_module = "stats" },
  { update = "ticker_server", extra = { reset = true }, timeout_ms = 2000, depends_on = ["fmt"] },
  { load_module = "fmt" },
]
[[down]]
to = "0.1.0"
instructions = [
  { update = "ticker_server", extra = {} },
  { load_module = "fmt" },
  { delete_module = "stats" },
]
"#;

const UP3: &str = r#"
application = "ticker"
version = "0.3.0"
[[up]]
from = "0.2.0"
instructions = [ { update = "ticker_server" }, { load_module = "stats" } ]
[[down]]
to = "0.2.0"
instructions = [ { update = "ticker_server" }, { load_module = "stats" } ]
"#;

fn history() -> Vec<KnownRelease> {
    vec![
        known(&r1(), ReleaseStatus::Current, vec![]),
        known(&r2(), ReleaseStatus::Unpacked, vec![appup(UP2)]),
        known(&r3(), ReleaseStatus::Unpacked, vec![appup(UP3)]),
    ]
}

fn names(plan: &Plan) -> Vec<String> {
    plan.steps().map(|s| s.to_string()).collect()
}

#[test]
fn direct_upgrade_has_low_level_steps_in_order() {
    let p = plan(&r1(), &r2(), &history()).unwrap();
    assert_eq!(p.hops.len(), 1);
    let s = names(&p);
    let pos = |prefix: &str| {
        s.iter()
            .position(|x| x.starts_with(prefix))
            .unwrap_or(usize::MAX)
    };
    assert!(pos("hop 0.1.0 -> 0.2.0") == 0);
    assert!(pos("load_object_code") < pos("point_of_no_return"));
    assert!(pos("point_of_no_return") < pos("suspend ticker_server (timeout 2000 ms)"));
    assert!(pos("suspend") < pos("load "));
    // fmt is a dependency of ticker_server: loaded first on upgrade.
    assert!(pos("load fmt") < pos("load ticker_server"));
    assert!(pos("load ticker_server") < pos("code_change ticker_server up from 0.1.0"));
    assert!(pos("code_change") < pos("resume ticker_server"));
    assert!(pos("resume") < pos("purge ticker_server (soft)"));
    assert!(s.iter().any(|x| x.contains("extra {")), "{s:?}");
    let text = p.to_string();
    assert!(
        text.starts_with("upgrade ticker 0.1.0 -> 0.2.0\n"),
        "{text}"
    );
}

#[test]
fn downgrade_uses_the_newer_release_down_section() {
    let p = plan(&r2(), &r1(), &history()).unwrap();
    assert_eq!(p.hops[0].direction, Direction::Down);
    let s = names(&p);
    assert!(
        s.contains(&"code_change ticker_server down to 0.1.0".to_string()),
        "{s:?}"
    );
    assert!(s.contains(&"remove stats".to_string()), "{s:?}");
}

#[test]
fn multi_hop_chain_through_intermediate_release() {
    let p = plan(&r1(), &r3(), &history()).unwrap();
    assert_eq!(p.chain.len(), 3);
    assert!(p.is_multi_hop());
    let text = p.to_string();
    assert!(
        text.contains("no direct path, 2 hops through 0.2.0"),
        "{text}"
    );
    let back = plan(&r3(), &r1(), &history()).unwrap();
    assert_eq!(back.hops.len(), 2);
    assert_eq!(back.hops[1].to.to_string(), "0.1.0");
}

#[test]
fn no_path_lists_what_exists() {
    let known = vec![
        known(&r1(), ReleaseStatus::Current, vec![]),
        known(&r2(), ReleaseStatus::Unpacked, vec![]),
    ];
    let mut all = known.clone();
    all.push(common::known(
        &r3(),
        ReleaseStatus::Unpacked,
        vec![appup(UP3)],
    ));
    let e = plan(&r1(), &r3(), &all[..]).unwrap_err().to_string();
    assert_eq!(
        e,
        "no upgrade path from 0.1.0 to 0.3.0; 0.3.0 upgrades from 0.2.0; known releases: 0.1.0 (current), 0.2.0 (unpacked), 0.3.0 (unpacked)"
    );
    // target not among known releases: its appups are unknown.
    let e = plan(&r1(), &r3(), &known).unwrap_err().to_string();
    assert_eq!(
        e,
        "no upgrade path from 0.1.0 to 0.3.0; 0.3.0 upgrades from no known release; known releases: 0.1.0 (current), 0.2.0 (unpacked)"
    );
    let e = plan(&r3(), &r1(), &all[..]).unwrap_err().to_string();
    assert!(
        e.starts_with("no downgrade path from 0.3.0 to 0.1.0; 0.3.0 downgrades to 0.2.0"),
        "{e}"
    );
}

#[test]
fn same_version_and_different_names_are_refused() {
    assert!(matches!(
        plan(&r1(), &r1(), &history()),
        Err(PlanError::SameVersion { .. })
    ));
    let mut other = r2();
    other.name = "other".into();
    assert!(matches!(
        plan(&r1(), &other, &history()),
        Err(PlanError::DifferentNames { .. })
    ));
}

#[test]
fn invalid_appup_on_the_path_is_reported_with_location() {
    let bad = r#"
application = "ticker"
version = "0.2.0"
[[up]]
from = "0.1.0"
instructions = [ { update = "ticker_server" } ]
[[down]]
to = "0.1.0"
instructions = [ { update = "ticker_server" } ]
"#;
    let known = vec![
        known(&r1(), ReleaseStatus::Current, vec![]),
        known(&r2(), ReleaseStatus::Unpacked, vec![appup(bad)]),
    ];
    let e = plan(&r1(), &r2(), &known).unwrap_err().to_string();
    assert!(
        e.contains("appup.toml:4:1: incomplete appup: module `fmt`"),
        "{e}"
    );
    assert!(
        e.contains("module `stats` of application ticker was added"),
        "{e}"
    );
}

#[test]
fn plan_round_trips_through_serde() {
    let p = plan(&r1(), &r3(), &history()).unwrap();
    let toml_text = toml::to_string(&p).unwrap();
    let back: Plan = toml::from_str(&toml_text).unwrap();
    assert_eq!(p, back);
}

#[test]
fn added_and_removed_applications_are_started_and_stopped() {
    let a = Release::parse(
        &release_text_apps(
            "0.1.0",
            &[
                ("ticker", "0.1.0", &[("t", 'a')], &[("w", "t")]),
                ("old", "1.0.0", &[("o", 'a')], &[]),
            ],
        ),
        "r1",
    )
    .unwrap();
    let b = Release::parse(
        &release_text_apps(
            "0.2.0",
            &[
                ("ticker", "0.1.0", &[("t", 'a')], &[("w", "t")]),
                ("metrics", "1.0.0", &[("m", 'b')], &[("mw", "m")]),
            ],
        ),
        "r2",
    )
    .unwrap();
    let known = vec![
        known(&a, ReleaseStatus::Permanent, vec![]),
        known(&b, ReleaseStatus::Unpacked, vec![]),
    ];
    let p = plan(&a, &b, &known).unwrap();
    let s = names(&p);
    for want in [
        "stop_application old",
        "remove o",
        "load m 1.0.0",
        "start_application metrics (Permanent)",
    ] {
        assert!(s.contains(&want.to_string()), "missing {want}: {s:?}");
    }
}
