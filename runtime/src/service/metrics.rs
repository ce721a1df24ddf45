//! The service's metrics endpoint: `RELUP_METRICS_LISTEN` or the booted release's
//! `[metrics] listen`, serving [`ReleaseHandler::metrics_page`].
//!
//! Its socket is taken through [`ReleaseHandler::listener`] under [`LISTENER_NAME`], so a
//! handover (`relup restart`) passes it on: the node that takes over serves the same
//! address without rebinding it.

use crate::handler::ReleaseHandler;
use crate::metrics::{LISTEN_ENV, MetricsError, MetricsServer, parse_listen};
use std::sync::{Arc, Weak};

/// The name the endpoint's socket goes by in a handover.
pub(super) const LISTENER_NAME: &str = "relup-metrics";

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
    if !addr.ip().is_loopback() {
        return Err(MetricsError::NotLoopback { addr, origin });
    }
    let listener = handler
        .listener(LISTENER_NAME, &addr.to_string())
        .map_err(|source| MetricsError::Io { addr, source })?;
    // Weak: the endpoint does not keep a stopped handler alive.
    let weak: Weak<ReleaseHandler> = Arc::downgrade(handler);
    let render = Arc::new(move || {
        weak.upgrade()
            .map_or_else(String::new, |h| h.metrics_page())
    });
    let server = MetricsServer::serve(listener, &origin, render)?;
    tracing::info!(
        target: "relup::node",
        "metrics on http://{}/metrics (from {origin})",
        server.addr()
    );
    Ok(Some(server))
}

/// [`serve`] for a node that took over by handover (the socket is the one the old node
/// passed on): a failure leaves the node without metrics, said in the journal and the log,
/// not without service.
pub(super) fn serve_after_handover(handler: &Arc<ReleaseHandler>) -> Option<MetricsServer> {
    serve(handler).unwrap_or_else(|e| {
        let line = format!("handover: no metrics endpoint: {e}");
        tracing::warn!(target: "relup::node", "{line}");
        handler.journal_line(&line);
        None
    })
}
