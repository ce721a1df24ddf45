//! Shared test support: the fixture module libraries (real cdylibs from this workspace,
//! built by relup-testkit), and nodes with a quiet, recording logger.

#![allow(dead_code)]

use relup_runtime::{LogLine, Node, NodeConfig};
use std::sync::{Arc, Mutex};

pub use relup_testkit::fixtures;

/// Log lines a node wrote.
#[derive(Clone, Default)]
pub struct Logs(pub Arc<Mutex<Vec<String>>>);

impl Logs {
    pub fn contains(&self, needle: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

/// A node with `schedulers` threads whose log lines are recorded instead of printed.
pub fn node(schedulers: usize) -> (Node, Logs) {
    let logs = Logs::default();
    let sink = logs.clone();
    let config = NodeConfig {
        schedulers,
        logger: Some(Arc::new(move |line: &LogLine<'_>| {
            sink.0
                .lock()
                .unwrap()
                .push(format!("{:?} {:?}: {}", line.pid, line.name, line.text));
        })),
        ..NodeConfig::default()
    };
    (Node::start(config).expect("node starts"), logs)
}

/// A node with the counter v1 module loaded as current.
pub fn node_with_counter(schedulers: usize) -> (Node, Logs) {
    let (node, logs) = node(schedulers);
    node.code()
        .load_current(&fixtures().counter_v1, &relup_runtime::Expect::default())
        .expect("counter v1 loads");
    (node, logs)
}

/// Polls `check` for up to 5 s; true once it holds.
pub fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    check()
}
