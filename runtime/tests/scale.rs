//! 100,000 processes under one simple_one_for_one supervisor, every one answering a call.

mod common;

use common::node_with_counter;
use relup_fixture_counter_api::{Args, Call, Reply};
use relup_runtime::{ChildSpec, Pid, Restart, Strategy, SupervisorSpec};
use std::time::Duration;

#[test]
fn one_hundred_thousand_supervised_processes_each_answer_a_call() {
    const N: i64 = 100_000;
    let (node, _) = node_with_counter(2);
    let template = ChildSpec::worker("w", "counter", &Args::default()).restart(Restart::Temporary);
    let sup = node
        .start_supervisor(
            SupervisorSpec::new(Strategy::SimpleOneForOne, vec![template]),
            Some("pool"),
        )
        .unwrap();
    let pids: Vec<Pid> = (0..N)
        .map(|i| {
            node.start_simple_child(
                sup,
                &Args {
                    start: i,
                    ..Args::default()
                },
            )
            .unwrap()
        })
        .collect();
    assert_eq!(node.count_children(sup).unwrap().active, N as usize);
    assert_eq!(node.process_count(), N as usize + 1);
    for (i, pid) in pids.iter().enumerate() {
        let reply: Reply = node
            .call(*pid, &Call::Get, Duration::from_secs(10))
            .unwrap();
        assert_eq!(reply, Reply::Count(i as i64));
    }
    node.shutdown(Duration::from_secs(60));
    assert_eq!(node.process_count(), 0);
}
