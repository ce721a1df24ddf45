//! The stop signals of a node: SIGTERM and SIGINT stop it; SIGHUP reopens `log/node.log` when
//! that is where its output goes (a node of `relup start`, after `logrotate` moved the file),
//! stops a console node (its terminal hung up), and is otherwise ignored.

use crossbeam_channel::Sender;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and so in every thread it starts
/// later), and returns the set for `sigwait`.
pub(super) fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// What SIGHUP does to the node, decided by where its output goes when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hangup {
    /// Output is `log/node.log` (a node of `relup start`): reopen it.
    Reopen,
    /// Output is a terminal (a console node): the terminal hung up, stop.
    Stop,
    /// Output goes elsewhere (a pipe, another file): nothing to reopen, keep running.
    Ignore,
}

/// The (device, inode) of an open descriptor.
fn fd_identity(fd: libc::c_int) -> Option<(u64, u64)> {
    // SAFETY: fstat fills a zeroed stat for a descriptor number; no memory is shared.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut stat) == 0).then_some((stat.st_dev, stat.st_ino))
    }
}

/// What SIGHUP will do, from what stdout is now.
fn on_hangup(log_path: &Path) -> Hangup {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1 {
        return Hangup::Stop;
    }
    let log = std::fs::metadata(log_path).ok().map(|m| (m.dev(), m.ino()));
    if log.is_some() && log == fd_identity(libc::STDOUT_FILENO) {
        Hangup::Reopen
    } else {
        Hangup::Ignore
    }
}

/// SIGHUP: opens `log_path` anew (creating it when `logrotate` moved it away) and puts it on
/// stdout and stderr; says so in the new file, or why not in the old one.
fn hangup_reopen(hangup: Hangup, log_path: &Path) {
    use std::io::Write;
    if hangup == Hangup::Ignore {
        println!(
            "SIGHUP: the output is not {}; nothing to reopen",
            log_path.display()
        );
        return;
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let reopened = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .and_then(|log| {
            for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
                // SAFETY: dup2 onto the standard descriptors of this process; `log` stays
                // open until both are duplicated.
                if unsafe { libc::dup2(log.as_raw_fd(), fd) } < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    match reopened {
        Ok(()) => println!("SIGHUP: reopened {}", log_path.display()),
        Err(e) => eprintln!(
            "SIGHUP: cannot reopen {}: {e}; the output still goes to the old file",
            log_path.display()
        ),
    }
}

/// Starts the thread that waits for the blocked stop signals of `signals` and sends
/// `signal <n>` to `stopper` for the ones that stop the node.
pub(super) fn watch(
    signals: libc::sigset_t,
    log_path: PathBuf,
    stopper: Sender<String>,
) -> std::io::Result<()> {
    let hangup = on_hangup(&log_path);
    std::thread::Builder::new()
        .name("relup-signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: waits for one of the blocked signals of `signals`.
                if unsafe { libc::sigwait(&signals, &mut sig) } != 0 {
                    continue;
                }
                if sig == libc::SIGHUP && hangup != Hangup::Stop {
                    hangup_reopen(hangup, &log_path);
                    continue;
                }
                let _ = stopper.send(format!("signal {sig}"));
                return;
            }
        })?;
    Ok(())
}
