//! Regressions found by fuzzing `config_line` (see RELIABILITY.md): `config.toml` as relup
//! writes it must read back as what it holds, or the next boot stops on its own file.

use relup_runtime::config::{LiveConfig, parse_line};

/// Writes `live` the way the node does, reads it back the way boot does.
fn round_trip(live: &LiveConfig) -> LiveConfig {
    let text = live.render();
    LiveConfig::parse(&text, "config.toml")
        .unwrap_or_else(|e| panic!("relup wrote a config.toml it cannot read: {e}\n{text}"))
}

#[test]
fn a_table_valued_key_stays_under_its_module() {
    // `app:m:t:{ a = 1, b = { c = "d" } }` used to be written as a `[t]` section of its own,
    // which the next boot read as an application `t` and refused.
    let change = parse_line(r#"app:m:t:{ a = 1, b = { c = "d" } }"#).unwrap();
    let mut live = LiveConfig::default();
    live.set(&change.app, &change.module, &change.key, change.value);
    live.set("app", "m", "i", toml::Value::Integer(5));
    let text = live.render();
    assert!(text.contains("[app.m.t]"), "{text}");
    assert_eq!(round_trip(&live), live);
}

#[test]
fn names_are_escaped_the_toml_way() {
    // A hand-written `["a\u001B".m]` table used to come back as `["a\u{1b}".m]` (Rust's
    // escape, not TOML's) as soon as any change rewrote the file.
    let live = LiveConfig::parse("[\"a\\u001B\".\"m 2\"]\nk = 1\n", "config.toml").unwrap();
    assert_eq!(round_trip(&live), live);
    let mut weird = LiveConfig::default();
    weird.set(
        "é\"quote",
        "tab\there",
        "new\nline",
        toml::Value::Boolean(true),
    );
    assert_eq!(round_trip(&weird), weird);
}

#[test]
fn an_error_next_to_a_multibyte_character_is_an_error_not_a_panic() {
    // Found by fuzzing config_line: a malformed escape followed by `Ο` (2 bytes) made the
    // error's line number slice the text inside the character, and the boot panicked.
    let text = "[\"a\\u00\u{39f}\".\nk = 1\n";
    let err = LiveConfig::parse(text, "config.toml").unwrap_err();
    assert!(err.starts_with("config.toml line 1:"), "{err}");
    let err = LiveConfig::parse("[a.m]\nk = 1\n\u{39f} = ", "config.toml").unwrap_err();
    assert!(err.starts_with("config.toml line 3:"), "{err}");
}
