//! Runner counts of module versions, changed in bulk during an upgrade.
//!
//! Every process running a module version counts as one of its runners (for the soft purge).
//! Migrating N processes moves N runners from the old version to the new one; doing that with
//! two atomic updates per process on counters that every migrating thread shares makes the
//! threads fight over two cache lines. A tally collects one thread's changes instead and
//! applies them once.

use crate::code_server::LoadedModule;
use std::sync::Arc;

/// One thread's runner changes: processes that now run `to`, and the versions they left.
#[derive(Default)]
pub(crate) struct Tally {
    joined: i64,
    /// The version each migrated process ran before (the handle its process mirror held).
    left: Vec<Arc<LoadedModule>>,
}

impl Tally {
    /// A process moved from `old` (if it ran a module) to the version being tallied.
    pub(crate) fn moved(&mut self, old: Option<Arc<LoadedModule>>) {
        self.joined += 1;
        if let Some(old) = old {
            self.left.push(old);
        }
    }

    /// Applies the changes: `to` gains the processes that joined it, each old version loses
    /// the ones that left it. The old handles are released here, on the calling thread.
    pub(crate) fn apply(self, to: &LoadedModule) {
        to.add_runner(self.joined);
        let mut left = self.left.into_iter().peekable();
        while let Some(module) = left.next() {
            let mut count = 1;
            while left.next_if(|m| Arc::ptr_eq(m, &module)).is_some() {
                count += 1;
            }
            module.add_runner(-count);
        }
    }
}
