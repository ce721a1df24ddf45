//! How an install ended, told to the metrics (`relup_upgrades_total`) and as a tracing event
//! (see [`crate::trace`]).

use super::{HandlerError, InstallReport, ReleaseHandler};
use crate::metrics::Outcome;
use semver::Version;

impl ReleaseHandler {
    /// Counts and traces the end of an install from `from` to `target`; returns `result`.
    pub(super) fn observed(
        &self,
        from: &Version,
        target: &Version,
        result: Result<InstallReport, HandlerError>,
    ) -> Result<InstallReport, HandlerError> {
        let outcome = outcome_of(&result);
        self.node.inner.metrics.upgrade(outcome);
        let detail = match &result {
            Ok(report) => format!(
                "running {}, {} process(es) migrated, longest pause {} us",
                report.to, report.migrated, report.max_pause_micros
            ),
            Err(error) => error.to_string(),
        };
        crate::trace::outcome(outcome.label(), from, target, &detail);
        result
    }
}

/// The outcome an install's result counts as.
fn outcome_of(result: &Result<InstallReport, HandlerError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        // A hop failed and was undone, or the probation failed and the node went back.
        Err(HandlerError::Install { .. } | HandlerError::ProbationFailed { .. }) => {
            Outcome::RolledBack
        }
        Err(HandlerError::RollbackFailed { .. }) => Outcome::Failed,
        Err(HandlerError::ProbationInterrupted { .. }) => Outcome::Interrupted,
        // Nothing was changed: a failed check, another install, an unknown version...
        Err(_) => Outcome::Refused,
    }
}

impl ReleaseHandler {
    /// The metrics page of this node (see [`crate::metrics`]): the node's families, the
    /// probation state and the running release.
    pub fn metrics_page(&self) -> String {
        use crate::metrics::{Exposition, Kind};
        let mut page = Exposition::new();
        self.node.write_metrics(&mut page);
        let probation = self.probation();
        page.single(
            "relup_probation_active",
            Kind::Gauge,
            "1 while a release is on probation.",
            if probation.is_some() { 1.0 } else { 0.0 },
        );
        page.single(
            "relup_probation_remaining_seconds",
            Kind::Gauge,
            "Time left of the probation under way (0 when none).",
            probation.map_or(0.0, |p| p.remaining_ms as f64 / 1000.0),
        );
        let release = self.running().release;
        let name = "relup_release_info";
        let version = release.version.to_string();
        page.family(name, Kind::Gauge, "The running release (value 1).")
            .sample(name, &[("name", &release.name), ("version", &version)], 1.0);
        page.finish()
    }
}
