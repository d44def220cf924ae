//! `/v1/dispatch`: utility requests on a node's (or the whole area's) net power, the plans the
//! optimizer made (with what binds and why), and the setpoints sent to each site with the
//! agents' answers and the measured deviation.
//!
//! Utilities and operators place and withdraw requests; utilities, regulators and operators
//! read plans; homeowners and prosumers see the setpoints of their own sites.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use gridmesh_core::{GridNodeId, Role, SiteId};
use gridmesh_db::{NewUtilityRequest, PlanRecord, RequestKind, SetpointRecord, UtilityRequest};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::{Json, Path, Query};
use crate::{ApiError, AppState};

/// Roles that ask for flexibility.
const REQUESTERS: &[Role] = &[Role::Utility, Role::Operator];
/// Roles that read plans and every site's setpoints.
const GRID_VIEW: &[Role] = &[Role::Utility, Role::Regulator, Role::Operator];
/// Longest request window accepted.
const MAX_WINDOW_DAYS: i64 = 31;

/// A request as posted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestIn {
    /// The grid node; absent for the whole area.
    node: Option<GridNodeId>,
    /// `target`, `cap` or `floor`.
    kind: RequestKind,
    /// Net power, W, import positive.
    power_w: i64,
    /// Window start.
    starts_at: DateTime<Utc>,
    /// Window end.
    ends_at: DateTime<Utc>,
    /// Price of deviation, minor units per kWh.
    price_minor_per_kwh: i64,
}

/// `POST /v1/dispatch/requests`: the dispatch loop plans around it from its next tick.
pub async fn create_request(
    State(state): State<AppState>,
    caller: Authenticated,
    Json(body): Json<RequestIn>,
) -> Result<(StatusCode, Json<UtilityRequest>), ApiError> {
    let me = caller.require(REQUESTERS)?;
    if body.ends_at <= body.starts_at {
        return Err(ApiError::invalid("ends_at", "must be after starts_at"));
    }
    if body.ends_at <= Utc::now() {
        return Err(ApiError::invalid("ends_at", "is in the past"));
    }
    if body.ends_at - body.starts_at > Duration::days(MAX_WINDOW_DAYS) {
        return Err(ApiError::invalid("ends_at", format!("a window is at most {MAX_WINDOW_DAYS} days")));
    }
    if body.power_w.abs() > 1_000_000_000_000 {
        return Err(ApiError::invalid("power_w", "must be within ±10^12 W"));
    }
    if !(0..=1_000_000_000).contains(&body.price_minor_per_kwh) {
        return Err(ApiError::invalid("price_minor_per_kwh", "must be 0 to 10^9"));
    }
    let new = NewUtilityRequest {
        node: body.node,
        kind: body.kind,
        power_w: body.power_w,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        price_minor_per_kwh: body.price_minor_per_kwh,
    };
    let stored = gridmesh_db::create_utility_request(&state.pool, &new, Some(me.user_id)).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// `GET /v1/dispatch/requests`: requests in force now or later.
pub async fn list_requests(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<Json<Vec<UtilityRequest>>, ApiError> {
    caller.require(GRID_VIEW)?;
    let now = Utc::now();
    Ok(Json(gridmesh_db::utility_requests_between(&state.pool, now, now + Duration::days(3_650)).await?))
}

/// `DELETE /v1/dispatch/requests/{id}`: withdraws a request (204).
pub async fn cancel_request(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.require(REQUESTERS)?;
    if gridmesh_db::cancel_utility_request(&state.pool, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("request {id} in force")))
    }
}

/// Query of `GET /v1/dispatch/plans`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlansQuery {
    /// Most plans (1 to 1000, default 20).
    limit: Option<i64>,
}

/// `GET /v1/dispatch/plans`: the latest plans, newest first, with their summaries (objective,
/// binding node limits and their shadow prices, solver statistics) and input hashes.
pub async fn list_plans(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(q): Query<PlansQuery>,
) -> Result<Json<Vec<PlanRecord>>, ApiError> {
    caller.require(GRID_VIEW)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=1_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    Ok(Json(gridmesh_db::recent_plans(&state.pool, limit).await?))
}

/// `GET /v1/dispatch/plans/{id}`: the whole plan (per site and step, per node and step).
pub async fn get_plan(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<Uuid>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(GRID_VIEW)?;
    gridmesh_db::plan_body(&state.pool, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("plan {id}")))
}

/// Query of `GET /v1/dispatch/setpoints`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetpointsQuery {
    /// One site (required for homeowners and prosumers).
    site: Option<SiteId>,
    /// Windows starting at or after (default: a day ago).
    from: Option<DateTime<Utc>>,
    /// Windows starting before (default: now plus a day).
    to: Option<DateTime<Utc>>,
    /// Most rows (1 to 10000, default 500).
    limit: Option<i64>,
}

/// `GET /v1/dispatch/setpoints`: setpoints sent, newest first, with the agents' answers and the
/// measured grid power's deviation from the plan.
pub async fn list_setpoints(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(q): Query<SetpointsQuery>,
) -> Result<Json<Vec<SetpointRecord>>, ApiError> {
    let me = &caller.0;
    if !GRID_VIEW.contains(&me.role) {
        let site = q.site.ok_or_else(|| ApiError::invalid("site", "name one of your sites"))?;
        let s = gridmesh_db::get_site(&state.pool, site).await?;
        if s.is_none_or(|s| s.owner != me.user_id) {
            return Err(ApiError::NotFound("site".into()));
        }
    }
    let now = Utc::now();
    let (from, to) = (q.from.unwrap_or(now - Duration::days(1)), q.to.unwrap_or(now + Duration::days(1)));
    if to <= from {
        return Err(ApiError::invalid("to", "must be after from"));
    }
    let limit = q.limit.unwrap_or(500);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 10000"));
    }
    Ok(Json(gridmesh_db::setpoint_records(&state.pool, q.site, from, to, limit).await?))
}
