//! The metrics page of a node (issue 20) after real events: crashes restarted by a named
//! supervisor, a mailbox held full by a suspend, calls in the latency histogram. (Scraping it
//! with a real Prometheus server is `tests/metrics.rs` of the relup crate.)

mod common;

use common::{eventually, node_with_counter};
use relup_fixture_counter_api::{Args, Call, Cast, Reply};
use relup_runtime::metrics::Exposition;
use relup_runtime::{ChildSpec, Node, Strategy, SupervisorSpec};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn worker(id: &str) -> ChildSpec {
    ChildSpec::worker(
        id,
        "counter",
        &Args {
            start: 1,
            ..Args::default()
        },
    )
    .named(id)
}

/// The value of the sample `series` (name with its labels, as written) on `node`'s page.
fn sample(node: &Node, series: &str) -> f64 {
    let mut page = Exposition::new();
    node.write_metrics(&mut page);
    let page = page.finish();
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{page}"))
}

#[test]
fn restarts_crashes_mailboxes_and_calls_are_on_the_page() {
    let (node, _) = node_with_counter(2);
    let spec =
        SupervisorSpec::new(Strategy::OneForOne, vec![worker("a"), worker("b")]).intensity(5, T);
    node.start_supervisor(spec, Some("sup")).unwrap();
    assert_eq!(sample(&node, "relup_processes"), 3.0);

    for _ in 0..2 {
        let old = node.whereis("b").unwrap();
        node.cast(old, &Cast::Panic).unwrap();
        assert!(eventually(|| node.whereis("b").is_some_and(|p| p != old)));
    }
    assert_eq!(
        sample(&node, "relup_supervisor_restarts_total{supervisor=\"sup\"}"),
        2.0
    );
    assert_eq!(sample(&node, "relup_process_crashes_total"), 2.0);

    // Three casts wait in a's mailbox while it is suspended.
    let a = node.whereis("a").unwrap();
    node.suspend(&[a], T).unwrap();
    for n in 0..3 {
        node.cast(a, &Cast::Add(n)).unwrap();
    }
    assert_eq!(sample(&node, "relup_mailbox_messages{stat=\"max\"}"), 3.0);
    assert_eq!(sample(&node, "relup_mailbox_messages{stat=\"sum\"}"), 3.0);
    node.resume(&[a]);

    for _ in 0..5 {
        let _: Reply = node.call("a", &Call::Get, T).unwrap();
    }
    let calls = sample(&node, "relup_calls_total");
    assert!(calls >= 5.0, "{calls}");
    assert_eq!(
        sample(&node, "relup_call_duration_seconds_bucket{le=\"+Inf\"}"),
        calls
    );
    assert_eq!(sample(&node, "relup_call_duration_seconds_count"), calls);
    assert!(sample(&node, "relup_messages_total") >= calls + 5.0);
    assert_eq!(sample(&node, "relup_libraries_mapped"), 1.0);
    node.shutdown(T);
}
