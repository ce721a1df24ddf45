//! Every migration of the tutorial, run with the real code of both versions.
//!
//! Each version's `code_change` decodes its neighbour's state through a mirror struct (see the
//! comments at the top of the `server.rs` files). This test compiles the three `server.rs` files
//! side by side and feeds each `code_change` the bytes the other version's real state encodes
//! to, in the order of the tutorial: 0.1.0 -> 0.2.0 -> 0.1.0 -> 0.2.0 -> 0.3.0 -> 0.2.0.
//! A mirror that drifts from the shape it mirrors fails here.

#[path = "../../v0.1.0/src/server.rs"]
mod v010;
#[path = "../../v0.2.0/src/server.rs"]
mod v020;
#[path = "../../v0.3.0/src/server.rs"]
mod v030;

use relup_module::{Direction, OldState, Server, codec};
use serde::Serialize;

/// Runs `S::code_change` on the exported state of `from`, as the runtime does.
fn migrate<S: Server, F: Serialize>(
    from: &F,
    from_vsn: &str,
    direction: Direction,
) -> Result<S, String> {
    let bytes = codec::encode(from).map_err(|e| e.to_string())?;
    let extra = codec::encode(&()).map_err(|e| e.to_string())?;
    S::code_change(OldState {
        from_vsn,
        direction,
        bytes: &bytes,
        extra: &extra,
    })
}

#[derive(Serialize)]
struct Start {
    count: u64,
    interval_ms: u64,
    count_at_load: u64,
}

#[test]
fn the_count_survives_every_step_of_the_tutorial() {
    // A 0.1.0 process that has ticked 10 times at 1 s (reloaded as 0.1.0 to build it).
    let start = Start {
        count: 10,
        interval_ms: 1000,
        count_at_load: 0,
    };
    let s010: v010::TickerServer = migrate(&start, "0.1.0", Direction::Up).unwrap();
    assert_eq!(
        format!("{s010:?}"),
        "TickerServer { count: 10, interval_ms: 1000, count_at_load: 0 }"
    );

    let s020: v020::TickerServer = migrate(&s010, "0.1.0", Direction::Up).unwrap();
    assert_eq!(
        format!("{s020:?}"),
        "TickerServer { ticks: 10, interval: 1s, started_at_tick: 10, last_tick_unix_ms: None }"
    );

    let back: v010::TickerServer = migrate(&s020, "0.2.0", Direction::Down).unwrap();
    assert_eq!(
        format!("{back:?}"),
        "TickerServer { count: 10, interval_ms: 1000, count_at_load: 10 }"
    );

    // 0.1.0 -> 0.3.0 is planned as two hops; the intermediate state is 0.2.0's.
    let hop1: v020::TickerServer = migrate(&back, "0.1.0", Direction::Up).unwrap();
    let s030: v030::TickerServer = migrate(&hop1, "0.2.0", Direction::Up).unwrap();
    assert_eq!(
        format!("{s030:?}"),
        "TickerServer { ticks: 10, started_at_tick: 10, last_tick_unix_ms: None }"
    );

    let down: v020::TickerServer = migrate(&s030, "0.3.0", Direction::Down).unwrap();
    assert_eq!(
        format!("{down:?}"),
        "TickerServer { ticks: 10, interval: 500ms, started_at_tick: 10, last_tick_unix_ms: None }"
    );
}

#[test]
fn there_is_no_direct_migration_from_010_to_030() {
    let s010: v010::TickerServer = migrate(
        &Start {
            count: 3,
            interval_ms: 1000,
            count_at_load: 0,
        },
        "0.1.0",
        Direction::Up,
    )
    .unwrap();
    let err = migrate::<v030::TickerServer, _>(&s010, "0.1.0", Direction::Up).unwrap_err();
    assert!(err.contains("upgrade through 0.2.0"), "{err}");
}
