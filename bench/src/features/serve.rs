//! The feature server as the benchmark runs it in its own process: `FeatureServer`'s router
//! (the same one `strata serve` mounts) plus `GET /bench/server-times`, which answers the
//! quantiles of `strata_features_request_duration_seconds` recorded since the last call (every
//! sample, not Prometheus buckets) and starts over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Router;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use serde_json::{json, Value};

/// The histogram the feature server records each request's server-side time in.
pub const DURATION_METRIC: &str = "strata_features_request_duration_seconds";

/// Server-side times by endpoint, in seconds.
#[derive(Default)]
pub struct ServerTimes {
    samples: Mutex<HashMap<String, Vec<f64>>>,
}

impl ServerTimes {
    /// Quantiles by endpoint (ms) of the samples recorded so far; clears them.
    pub fn take(&self) -> Value {
        let mut taken = match self.samples.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => HashMap::new(),
        };
        let mut out = serde_json::Map::new();
        for (endpoint, samples) in taken.iter_mut() {
            samples.sort_by(f64::total_cmp);
            let q = |p: f64| {
                let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
                samples.get(i).map_or(f64::NAN, |s| s * 1000.0)
            };
            out.insert(
                endpoint.clone(),
                json!({
                    "count": samples.len(),
                    "p50_ms": q(0.5),
                    "p99_ms": q(0.99),
                    "p999_ms": q(0.999),
                    "max_ms": q(1.0),
                }),
            );
        }
        Value::Object(out)
    }
}

struct EndpointTimes {
    times: Arc<ServerTimes>,
    endpoint: String,
}

impl HistogramFn for EndpointTimes {
    fn record(&self, value: f64) {
        if let Ok(mut s) = self.times.samples.lock() {
            s.entry(self.endpoint.clone()).or_default().push(value);
        }
    }
}

/// A `metrics` recorder that keeps every sample of [`DURATION_METRIC`] and drops the rest.
pub struct TimesRecorder(pub Arc<ServerTimes>);

impl Recorder for TimesRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        if key.name() != DURATION_METRIC {
            return Histogram::noop();
        }
        let endpoint = key
            .labels()
            .find(|l| l.key() == "endpoint")
            .map_or_else(|| "-".to_string(), |l| l.value().to_string());
        Histogram::from_arc(Arc::new(EndpointTimes {
            times: self.0.clone(),
            endpoint,
        }))
    }
}

/// Installs the recorder process-wide and returns the times it keeps.
pub fn install_recorder() -> anyhow::Result<Arc<ServerTimes>> {
    let times = Arc::new(ServerTimes::default());
    metrics::set_global_recorder(TimesRecorder(times.clone()))
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    Ok(times)
}

/// `router` plus `GET /bench/server-times`.
pub fn with_times_route(router: Router, times: Arc<ServerTimes>) -> Router {
    router.route(
        "/bench/server-times",
        get(move || {
            let times = times.clone();
            async move { axum::Json(times.take()) }
        }),
    )
}
