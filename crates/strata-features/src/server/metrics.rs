//! The feature server's metrics (the `metrics` crate; `strata serve` installs the Prometheus
//! exporter and serves `/metrics`):
//!
//! - `strata_features_lookups_total{view}`: online-store lookups (one per view a request reads,
//!   whatever the number of entities);
//! - `strata_features_entities_total{view,status}`: entities looked up, by what was found
//!   (`present`, `not_found`, `outside_max_age`);
//! - `strata_features_request_duration_seconds{endpoint}`: server-side time of a request, from
//!   its arrival to its answer being built (histogram);
//! - `strata_features_errors_total{code}`: requests answered with an error, by `code`.

use std::time::Duration;

use super::feast::Status;

pub(crate) fn lookup(view: &str) {
    metrics::counter!("strata_features_lookups_total", "view" => view.to_string()).increment(1);
}

/// Counts one view's entities by status.
pub(crate) fn entities(view: &str, statuses: &[Status]) {
    let (mut present, mut not_found, mut outside) = (0u64, 0u64, 0u64);
    for s in statuses {
        match s {
            Status::Present => present += 1,
            Status::NotFound => not_found += 1,
            Status::OutsideMaxAge => outside += 1,
        }
    }
    for (status, n) in [
        ("present", present),
        ("not_found", not_found),
        ("outside_max_age", outside),
    ] {
        if n > 0 {
            metrics::counter!(
                "strata_features_entities_total",
                "view" => view.to_string(),
                "status" => status
            )
            .increment(n);
        }
    }
}

pub(crate) fn duration(endpoint: &'static str, took: Duration) {
    metrics::histogram!("strata_features_request_duration_seconds", "endpoint" => endpoint)
        .record(took.as_secs_f64());
}

pub(crate) fn error(code: &'static str) {
    metrics::counter!("strata_features_errors_total", "code" => code).increment(1);
}
