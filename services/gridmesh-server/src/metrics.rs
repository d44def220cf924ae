//! Prometheus metrics: one process-wide recorder, rendered by `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder on first use and returns the handle that renders it. Later
/// calls (a second server in the same test process) share the same recorder.
#[must_use]
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours stays unused.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics shows only defaults");
            }
            metrics::describe_counter!(
                "http_requests_total",
                "HTTP requests answered, by method, route and status"
            );
            metrics::describe_histogram!(
                "http_request_duration_seconds",
                "HTTP request latency, by method and route"
            );
            metrics::describe_gauge!(
                "gridmesh_database_up",
                "1 when the last readiness check reached the database"
            );
            metrics::describe_gauge!("gridmesh_broker_connected", "1 while the MQTT broker link is up");
            metrics::describe_gauge!("gridmesh_build_info", "Always 1; labels carry the version");
            metrics::gauge!("gridmesh_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// Counts and times one answered request.
pub fn record_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let labels = [("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..2]).record(elapsed.as_secs_f64());
}

/// Records the outcome of a readiness check.
pub fn record_readiness(database: bool, broker: bool) {
    metrics::gauge!("gridmesh_database_up").set(f64::from(u8::from(database)));
    metrics::gauge!("gridmesh_broker_connected").set(f64::from(u8::from(broker)));
}
