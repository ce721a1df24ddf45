//! Deterministic fault injection for the crash-consistency tests (see RELIABILITY.md).
//!
//! The node passes numbered *crash points*: after each journal line is synced, before and
//! after each atomic file replacement, and at each step of unpacking a tarball and of
//! processing `config.toml.new`. Two environment variables, read once, act on them:
//!
//! - `RELUP_FAULT_KILL_AT=<n>`: the process kills itself with SIGKILL at the n-th crash point
//!   it passes (1-based, counted over the life of the process, all threads together).
//! - `RELUP_FAULT_TRACE=<file>`: appends `<n> <label>` to `<file>` at every crash point, so a
//!   harness can learn which number is which step.
//!
//! A node handing itself over (`crate::handover`) starts the new node without these two; it
//! gives it `RELUP_FAULT_NEW_KILL_AT` and `RELUP_FAULT_NEW_TRACE` as them instead, so that a
//! test kills either side at each of its own steps.
//!
//! With neither set (the normal case) a crash point costs one check of a `OnceLock`. The
//! numbering is deterministic for a given sequence of operations, since the points are passed
//! by the one thread doing the operation.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Faults {
    kill_at: Option<u64>,
    trace: Option<std::path::PathBuf>,
    passed: AtomicU64,
}

fn faults() -> Option<&'static Faults> {
    static FAULTS: OnceLock<Option<Faults>> = OnceLock::new();
    FAULTS
        .get_or_init(|| {
            let kill_at = std::env::var("RELUP_FAULT_KILL_AT")
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            let trace = std::env::var_os("RELUP_FAULT_TRACE").map(std::path::PathBuf::from);
            (kill_at.is_some() || trace.is_some()).then_some(Faults {
                kill_at,
                trace,
                passed: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Passes a crash point; `label` (only built when fault injection is on) says which.
pub(crate) fn crash_point(label: impl FnOnce() -> String) {
    let Some(faults) = faults() else {
        return;
    };
    let n = faults.passed.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(trace) = &faults.trace {
        let line = format!("{n} {}\n", label().replace('\n', " "));
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(trace)
        {
            let _ = file.write_all(line.as_bytes());
        }
    }
    if faults.kill_at == Some(n) {
        // SAFETY: sending a signal to this very process; SIGKILL cannot be caught, so nothing
        // runs after this line, as in a power cut or an OOM kill.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
