//! The node lock of a release root (`<root>/run/node.lock`): one node per root.
//!
//! The node takes an `flock` on the file before it boots anything and holds it for its whole
//! life (the kernel releases it when the process dies, however it dies); the file holds the
//! node's pid. A second node on the same root finds the lock taken and gives up at once,
//! touching neither `run/node.pid` nor the socket.

use super::error::ServiceError;
use crate::release::ReleaseRoot;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

/// How long taking the node lock is retried: a `relup start` that only checks the lock holds
/// it for microseconds, a node holds it for its life.
const LOCK_PATIENCE: Duration = Duration::from_millis(200);

/// The node lock of a root: taken, or held by another process.
#[derive(Debug)]
pub enum NodeLock {
    /// Taken: held while the file stays open.
    Held(File),
    /// Another process holds it; the pid it wrote, if any yet.
    Busy(Option<i32>),
}

impl NodeLock {
    /// Takes the node lock of `root` (retried for a fraction of a second), creating
    /// `<root>/run` and the lock file when missing.
    pub fn take(root: &ReleaseRoot) -> Result<NodeLock, ServiceError> {
        let path = root.node_lock();
        let cannot = |source: std::io::Error| ServiceError::Lock {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(root.run_dir()).map_err(cannot)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(cannot)?;
        let deadline = Instant::now() + LOCK_PATIENCE;
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(NodeLock::Held(file));
            }
            let error = std::io::Error::last_os_error();
            match error.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => {}
                _ => return Err(cannot(error)),
            }
            if Instant::now() >= deadline {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| text.lines().next()?.trim().parse().ok())
                    .filter(|pid: &i32| *pid > 0);
                return Ok(NodeLock::Busy(holder));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Writes this process's pid into the held lock file (over any older pid).
pub(super) fn write_pid(root: &ReleaseRoot, lock: &File) -> Result<(), ServiceError> {
    let text = format!("{}\n", std::process::id());
    lock.write_all_at(text.as_bytes(), 0)
        .and_then(|()| lock.set_len(text.len() as u64))
        .map_err(|source| ServiceError::Io {
            path: root.node_lock(),
            source,
        })
}
