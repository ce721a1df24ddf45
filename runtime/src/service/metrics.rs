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
