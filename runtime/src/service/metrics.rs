//! The service's metrics endpoint: `RELUP_METRICS_LISTEN` or the booted release's
//! `[metrics] listen`, serving [`ReleaseHandler::metrics_page`].

use crate::handler::ReleaseHandler;
use crate::metrics::{LISTEN_ENV, MetricsError, MetricsServer, parse_listen};
use std::sync::{Arc, Weak};

/// Starts the endpoint when one is configured (the environment wins over release.toml).
pub(super) fn serve(handler: &Arc<ReleaseHandler>) -> Result<Option<MetricsServer>, MetricsError> {
    let release = handler.running().release;
    let (addr, origin) = match std::env::var(LISTEN_ENV) {
        Ok(value) if !value.trim().is_empty() => {
            (parse_listen(&value, LISTEN_ENV)?, LISTEN_ENV.to_string())
        }
        _ => match release.metrics.as_ref().and_then(|m| m.listen) {
            Some(addr) => (addr, format!("[metrics] listen of {}", release.file)),
            None => return Ok(None),
        },
    };
    // Weak: the endpoint does not keep a stopped handler alive.
    let weak: Weak<ReleaseHandler> = Arc::downgrade(handler);
    let render = Arc::new(move || {
        weak.upgrade()
            .map_or_else(String::new, |h| h.metrics_page())
    });
    let server = MetricsServer::bind(addr, &origin, render)?;
    tracing::info!(
        target: "relup::node",
        "metrics on http://{}/metrics (from {origin})",
        server.addr()
    );
    Ok(Some(server))
}

/// [`serve`] for a node that took over by handover: the old node holds the address until it
/// has stopped, so a bind refused with "address in use" is tried again for up to
/// [`HANDOVER_BIND_WAIT`]. A failure leaves the node without metrics (said in the journal and
/// the log), not without service.
pub(super) fn serve_after_handover(handler: &Arc<ReleaseHandler>) -> Option<MetricsServer> {
    let started = std::time::Instant::now();
    loop {
        match serve(handler) {
            Ok(server) => return server,
            Err(MetricsError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse
                    && started.elapsed() < HANDOVER_BIND_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => {
                let line = format!("handover: no metrics endpoint: {e}");
                tracing::warn!(target: "relup::node", "{line}");
                handler.journal_line(&line);
                return None;
            }
        }
    }
}

/// How long a node that took over waits for the old node to free the metrics address.
pub(super) const HANDOVER_BIND_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
