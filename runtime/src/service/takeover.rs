//! A node taking over from one that hands itself over (see [`crate::handover`]): it boots
//! the release the old node ran with every process restored at its place, says ready, and
//! on the old node's go serves the root: its pid, the node lock and the control socket it
//! was handed, its processes resumed and its sockets read again.

use super::{RunningService, Service, Serving, lock, signals};
use crate::control::ControlServer;
use crate::handler::ReleaseHandler;
use crate::handover::new::{self, Received};
use crate::handover::old::Lineage;
use crate::node::Node;
use crate::release::ReleaseRoot;
use relup_module::Pid;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// How long a restored process may take for its health check before the take-over.
const HEALTH_CHECK: Duration = Duration::from_secs(5);

impl Service {
    /// Takes over from the node that handed `received` over on `channel`. Any failure
    /// before the take-over gives up (the old node resumes) and ends this process.
    pub(super) fn take_over(
        self,
        root: ReleaseRoot,
        node: Node,
        signals: Option<libc::sigset_t>,
        mut channel: UnixStream,
        received: Received,
    ) -> RunningService {
        let Received {
            mut image,
            lock,
            control,
            ports,
            listeners,
            arrived,
        } = received;
        let parts_at = std::time::Instant::now();
        if let Err(e) = new::restore_node_parts(&node, &mut image, ports) {
            new::give_up(&mut channel, &e);
        }
        let parts = parts_at.elapsed();
        let version = match semver::Version::parse(&image.version) {
            Ok(v) => v,
            Err(e) => new::give_up(
                &mut channel,
                &format!("the old node runs {:?}: {e}", image.version),
            ),
        };
        let boot_at = std::time::Instant::now();
        let handler = match ReleaseHandler::start_booting(node.clone(), root.clone(), Some(version))
        {
            Ok(handler) => Arc::new(handler),
            Err(e) => new::give_up(&mut channel, &format!("boot: {e}")),
        };
        let boot = boot_at.elapsed();
        // Dynamic children (simple_one_for_one) start once their supervisor runs.
        for (parent, key, count) in node.inner.restoring.waiting() {
            for _ in 0..count {
                if let Err(e) = node.start_simple_child(Pid(parent), &()) {
                    handler.journal_line(&format!(
                        "handover: child {key} of {} not restored: {e}",
                        Pid(parent)
                    ));
                    break;
                }
            }
        }
        handler.set_inherited(listeners);
        let (left, restored) = node.inner.restoring.disarm();
        for image in &left {
            handler.journal_line(&format!(
                "handover: {} ({}) has no place in the release's tree: not restored, its ports and tables close",
                Pid(image.pid),
                image.key
            ));
        }
        node.inner.timers.import(&image.timers, image.next_timer);
        // Proven before the old node lets go: every restored process passes its module's
        // health check (on the state it was handed), or the old node resumes.
        for pid in &restored {
            if let Err(e) = node.health_check(*pid, HEALTH_CHECK) {
                new::give_up(
                    &mut channel,
                    &format!("health check of restored process {pid}: {e}"),
                );
            }
        }
        let micros = arrived.elapsed().as_micros() as u64;
        let restore_detail = format!(
            "restore {} ms: tables, ports and counters {} ms, boot with the states {} ms",
            micros / 1000,
            parts.as_millis(),
            boot.as_millis()
        );
        new::ready(&mut channel, restored.len(), micros);
        if let Err(e) = new::wait_commit(&mut channel) {
            new::give_up(&mut channel, &e);
        }
        // The take-over: from here this node serves the root.
        crate::fault::crash_point(|| "handover: new node takes over".into());
        let _ = lock::write_pid(&root, &lock);
        let _ = crate::release::write_atomic(
            &root.pid_file(),
            format!("{}\n", std::process::id()).as_bytes(),
        );
        // Said before anything is read or answered: past this the old node exits, and it
        // must never resume on its state after this node has answered a client.
        new::taken(&mut channel);
        // What the old node's host threads still send is answered here.
        crate::handover::forward::serve(node.clone(), channel);
        let server = match ControlServer::serve(handler.clone(), &root.control_socket(), control) {
            Ok(server) => server,
            Err(e) => {
                // The old node is going: this one cannot serve the root. A plain start can.
                eprintln!(
                    "relup: handover: cannot serve the control socket after the take-over: {e}"
                );
                crate::handover::exit_handed_over();
            }
        };
        // Ports and tables whose owner is not here (a process outside the supervision
        // trees, or one with no place in the release's tree) close as at their owner's exit;
        // only now, since closing shuts the socket down for the old node too.
        for owner in node.inner.ports.owners() {
            if !node.is_alive(owner) {
                node.inner.ports.owner_exited(owner);
            }
        }
        for table in node.inner.tables.list() {
            if !node.is_alive(table.owner) {
                node.inner.tables.owner_exited(&node.inner, table.owner);
            }
        }
        node.resume(&restored);
        node.inner.ports.thaw();
        handler.set_lineage(Lineage {
            handovers: image.handovers + 1,
            first_started: image.first_started,
            last_handover: Some(crate::release::now_unix()),
        });
        super::seat_handler(&handler, &lock, &server);
        handler.start_scheduler();
        if let Some(set) = signals
            && let Err(e) = signals::watch(set, root.node_log(), server.stopper())
        {
            handler.journal_line(&format!("handover: no signal thread: {e}"));
        }
        handler.journal_line(&format!(
            "handover: node {} took over from node {} ({} processes restored, {restore_detail})",
            std::process::id(),
            image.from_pid,
            restored.len(),
        ));
        if image.permanent_after {
            let running = handler.running().release.version;
            match handler.make_permanent(&running) {
                Ok(()) => handler.journal_line(&format!(
                    "handover: {running} made permanent, as the install asked"
                )),
                Err(e) => handler.journal_line(&format!(
                    "handover: {running} NOT made permanent: {e}; run `relup permanent {running}`"
                )),
            }
        }
        let metrics = super::metrics::serve_after_handover(&handler);
        RunningService {
            root,
            node,
            handler,
            serving: Some(Serving {
                server,
                lock,
                metrics,
            }),
            shutdown_timeout: self.shutdown_timeout,
        }
    }
}
