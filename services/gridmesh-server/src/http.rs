//! The HTTP surface: router assembly, one span and one set of metrics per request, health,
//! readiness and metrics endpoints, and problem JSON for unknown routes and methods.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::problem_response;
use crate::{ApiError, AppState};

tokio::task_local! {
    static REQUEST_ID: Uuid;
}

/// The id of the request being handled (a fresh one outside a request).
#[must_use]
pub fn current_request_id() -> Uuid {
    REQUEST_ID.try_with(|id| *id).unwrap_or_else(|_| Uuid::new_v4())
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/v1", crate::api::router())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// Only the probes and metrics: what an ingest-only replica serves.
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// One span per request (method, route, request id), a log line when it ends, request metrics,
/// and the `x-request-id` header. The id is always ours, so one reference id means one request;
/// a caller's own `x-request-id` is logged beside it (`client_request_id`) to follow a request
/// across proxies.
async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = Uuid::new_v4();
    let client_request_id: Option<String> = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(128).collect());
    let method = req.method().clone();
    // The route template, not the raw path, so metrics do not explode with ids.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        %method,
        route = %route,
        request_id = %request_id,
        client_request_id = client_request_id.as_deref(),
        user_id = tracing::field::Empty
    );
    let mut response = REQUEST_ID.scope(request_id, next.run(req).instrument(span.clone())).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(status, latency_ms = elapsed.as_secs_f64() * 1e3, "request done");
    });
    crate::metrics::record_request(method.as_str(), &route, status, elapsed);
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn no_route(req: Request) -> ApiError {
    ApiError::NoRoute(req.uri().path().chars().take(200).collect())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Liveness: the process is up and serving. Never touches dependencies, so a database outage
/// does not get the pod restarted.
async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// How long the readiness probe waits for the database.
const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: the database answers, the broker link is up and, where this process runs ingest,
/// the ingest worker's session is up; the jobs are reported beside. 503 with problem JSON (and the
/// per-check details) otherwise, so a load balancer stops sending traffic.
async fn readyz(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let db = tokio::time::timeout(DB_CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&state.pool)).await;
    let db_check = match db {
        Ok(Ok(_)) => json!({ "ok": true, "latency_ms": started.elapsed().as_millis() as u64 }),
        Ok(Err(e)) => {
            // The detail goes to the log; the unauthenticated probe gets no internals.
            tracing::warn!(error = %gridmesh_db::DbError::from(e), "readiness: database check failed");
            json!({ "ok": false, "error": "database query failed" })
        }
        Err(_) => {
            json!({ "ok": false, "error": format!("no answer within {} s", DB_CHECK_TIMEOUT.as_secs()) })
        }
    };
    let db_ok = db_check["ok"] == true;
    let broker = state.broker.status();
    let broker_check = match &broker.last_error {
        _ if broker.connected => json!({ "ok": true }),
        Some(e) => {
            tracing::warn!(error = %e, "readiness: broker link down");
            json!({ "ok": false, "error": "not connected" })
        }
        None => json!({ "ok": false, "error": "not connected yet" }),
    };
    crate::metrics::record_readiness(db_ok, broker.connected);
    let mut checks =
        json!({ "database": db_check, "broker": broker_check, "jobs": jobs_report(&state.jobs) });
    // A process running ingest is only ready while the ingest worker's own session is up.
    let ingest_ok = state.ingest_link.as_ref().is_none_or(|up| up.load(std::sync::atomic::Ordering::Relaxed));
    if state.ingest_link.is_some() {
        checks["ingest"] =
            if ingest_ok { json!({ "ok": true }) } else { json!({ "ok": false, "error": "not connected" }) };
    }
    if db_ok && broker.connected && ingest_ok {
        axum::Json(json!({ "status": "ready", "checks": checks })).into_response()
    } else {
        let failing: Vec<&str> = [("database", db_ok), ("broker", broker.connected), ("ingest", ingest_ok)]
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(name, _)| name)
            .collect();
        problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            format!("not ready: {} unavailable", failing.join(" and ")),
            Some(json!({ "checks": checks })),
        )
    }
}

/// Each job of this process: whether it holds the job's lease here (`running`) or another
/// process does (`standby`), its last successful round and its last error. Informational: a
/// failing job (a chain that is away, say) does not take the API out of service.
fn jobs_report(board: &crate::jobs::JobBoard) -> serde_json::Value {
    let jobs: serde_json::Map<String, serde_json::Value> = board
        .snapshot()
        .into_iter()
        .map(|(job, s)| {
            let lease = match s.lease {
                crate::jobs::LeaseState::Held => "running",
                crate::jobs::LeaseState::Standby => "standby",
            };
            let report = json!({
                "lease": lease,
                "last_success": s.last_success.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                "last_error": s.last_error,
                "rounds": s.rounds,
            });
            (job.name().to_owned(), report)
        })
        .collect();
    serde_json::Value::Object(jobs)
}

/// Prometheus text exposition of every metric.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))],
        state.metrics.render(),
    )
}
