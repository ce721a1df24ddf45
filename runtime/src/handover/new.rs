//! The new node's side of a handover (see [`super`] for the protocol): receiving the image
//! and the descriptors, restoring the node's tables, timers, ports and counters, and the
//! messages of the protocol. Booting the release with the processes restored, and taking
//! over, is the service's ([`crate::service`]).

use super::HANDOVER_FD_ENV;
use super::image::{IMAGE_FORMAT, NodeImage, PortImage};
use super::wire::{self, Msg};
use crate::node::Node;
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

/// The handover socket this process was started with (`RELUP_HANDOVER_FD`), if it is the
/// new side of a handover.
pub(crate) fn incoming() -> Option<Result<UnixStream, String>> {
    let value = std::env::var(HANDOVER_FD_ENV).ok()?;
    Some(adopt_channel(&value))
}

fn adopt_channel(value: &str) -> Result<UnixStream, String> {
    let fd: RawFd = value.trim().parse().map_err(|_| {
        format!("{HANDOVER_FD_ENV}={value:?} is not a descriptor number (expected e.g. 5)")
    })?;
    if fd < 3 {
        return Err(format!(
            "{HANDOVER_FD_ENV}={fd} names a standard stream, not a handover socket"
        ));
    }
    // SAFETY: fstat writes into the zeroed struct; a bad descriptor is an error, not UB.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(format!(
            "{HANDOVER_FD_ENV}={fd} is not an open socket (this process was not started by a handover)"
        ));
    }
    // SAFETY: the descriptor is an open socket that the old node passed to this process for
    // it to own; close-on-exec keeps it from the processes this node starts.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        Ok(UnixStream::from_raw_fd(fd))
    }
}

/// Loads the modules of the release the old node runs (named by `RELUP_HANDOVER_VERSION`)
/// before the new node says hello: the boot after the image finds them loaded, so loading
/// them (copy, sha256, dlopen) is not part of the clients' stall. Best effort: the boot
/// loads what this did not.
pub(crate) fn preload(node: &Node, root: &crate::release::ReleaseRoot) {
    let Some(version) = std::env::var(super::HANDOVER_VERSION_ENV)
        .ok()
        .and_then(|v| semver::Version::parse(&v).ok())
    else {
        return;
    };
    let Ok(releases) = crate::release::known_releases_each(root) else {
        return;
    };
    let Some(Ok(known)) = releases
        .into_iter()
        .find(|(v, _)| *v == version)
        .map(|(_, known)| known)
    else {
        return;
    };
    let dir = root.release_dir(&version);
    for app in &known.release.applications {
        for module in &app.modules {
            let _ = crate::install::boot::load_checked(node, &dir, module, "handover: preload");
        }
    }
}

/// What the old node handed over.
pub(crate) struct Received {
    /// The image.
    pub image: NodeImage,
    /// The node lock, with its `flock`.
    pub lock: File,
    /// The listening control socket.
    pub control: UnixListener,
    /// Each port with its socket.
    pub ports: Vec<(PortImage, OwnedFd)>,
    /// The host's listening sockets, by name.
    pub listeners: Vec<(String, OwnedFd)>,
    /// When the image arrived.
    pub arrived: Instant,
}

/// Says hello and receives the image: `None` when the old node went away before it was
/// all sent (the new node then starts as a plain start does).
pub(crate) fn receive(channel: &mut UnixStream) -> Result<Option<Received>, String> {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    match receive_image(channel) {
        Ok(received) => Ok(received),
        // The old node is our parent: when it died, we were handed to another.
        Err(_) if unsafe { libc::getppid() } != parent => Ok(None),
        Err(reason) => Err(reason),
    }
}

fn receive_image(channel: &mut UnixStream) -> Result<Option<Received>, String> {
    if wire::send(
        channel,
        &Msg::Hello {
            pid: std::process::id(),
        },
    )
    .is_err()
    {
        return Ok(None);
    }
    let (mut image, count) = match wire::recv(channel) {
        Ok(Msg::Image { image, fds }) => (image, fds),
        Ok(other) => return Err(format!("expected the image, got {other:?}")),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("cannot read the image: {e}")),
    };
    let arrived = Instant::now();
    let fds = wire::recv_fds(channel, count)
        .map_err(|e| format!("cannot receive the {count} sockets: {e}"))?;
    if image.format != IMAGE_FORMAT {
        return Err(format!(
            "image format {} (this node reads {IMAGE_FORMAT})",
            image.format
        ));
    }
    if fds.len() != image.ports.len() + image.listeners.len() + 2 {
        return Err(format!(
            "{} descriptors for {} ports and {} listeners (expected the lock, the control socket and one per port and listener)",
            fds.len(),
            image.ports.len(),
            image.listeners.len()
        ));
    }
    let mut fds = fds.into_iter();
    let (Some(lock), Some(control)) = (fds.next(), fds.next()) else {
        return Err("the node lock and control socket are missing".into());
    };
    let ports: Vec<(PortImage, OwnedFd)> = std::mem::take(&mut image.ports)
        .into_iter()
        .zip(fds.by_ref())
        .collect();
    let listeners = std::mem::take(&mut image.listeners)
        .into_iter()
        .zip(fds)
        .collect();
    Ok(Some(Received {
        image: *image,
        lock: File::from(lock),
        control: UnixListener::from(control),
        ports,
        listeners,
        arrived,
    }))
}

/// Restores the node-wide parts of the image on a fresh node, before the release boots:
/// the counters, the tables and the ports (frozen, output held); the processes are armed
/// for the boot to restore at their places. Timers come after the boot.
pub(crate) fn restore_node_parts(
    node: &Node,
    image: &mut NodeImage,
    ports: Vec<(PortImage, OwnedFd)>,
) -> Result<(), String> {
    let inner = &node.inner;
    inner.numbers_from(image.next_pid, image.next_ref);
    inner
        .tables
        .import(std::mem::take(&mut image.tables), image.next_table)
        .map_err(|e| format!("tables: {e}"))?;
    inner
        .ports
        .adopt(inner, ports, image.next_port)
        .map_err(|e| format!("ports: {e}"))?;
    inner.restoring.arm(std::mem::take(&mut image.processes));
    Ok(())
}

/// Tells the old node this one is ready to take over. A failure means the old node is gone:
/// [`wait_commit`] then sees the end of the stream, and this node takes over on its own.
pub(crate) fn ready(channel: &mut UnixStream, restored: usize, micros: u64) {
    let _ = wire::send(channel, &Msg::Ready { restored, micros });
}

/// Waits for the old node's go: Ok when told to take over, or when the old node is gone
/// (nobody else serves then).
pub(crate) fn wait_commit(channel: &mut UnixStream) -> Result<(), String> {
    let _ = channel.set_read_timeout(None);
    match wire::recv(channel) {
        Ok(Msg::Commit) => Ok(()),
        Ok(other) => Err(format!("expected the commit, got {other:?}")),
        // The old node is gone (killed after it handed everything over): nobody else serves.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("cannot read the commit: {e}")),
    }
}

/// Tells the old node this one serves now (it may be gone already).
pub(crate) fn taken(channel: &mut UnixStream) {
    let _ = wire::send(channel, &Msg::Taken);
}

/// Gives up before taking over: says why to the old node (which resumes) and on stderr, and
/// exits at once, without shutting down a socket the old node still serves.
pub(crate) fn give_up(channel: &mut UnixStream, reason: &str) -> ! {
    eprintln!("relup: handover: this new node gives up: {reason}");
    let _ = wire::send(
        channel,
        &Msg::Failed {
            reason: reason.to_string(),
        },
    );
    // SAFETY: see `super::exit_handed_over`: nothing of this node may be shut down.
    unsafe { libc::_exit(1) }
}
