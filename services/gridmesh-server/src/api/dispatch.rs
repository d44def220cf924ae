//! `/v1/dispatch`: utility requests on a node's (or the whole area's) net power, the plans the
//! optimizer made (with what binds and why), and the setpoints sent to each site with the
//! agents' answers and the measured deviation.
//!
//! Utilities and operators place and withdraw requests; utilities, regulators and operators
//! read plans; homeowners and prosumers see the setpoints of their own sites.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use gridmesh_core::{CommandId, GridNodeId, Role, SiteId, UserId};
use gridmesh_db::{NewUtilityRequest, PlanRecord, RequestKind, SetpointRecord, UtilityRequest};
use serde::{Deserialize, Serialize};
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

/// What a utility asks of a node's net power, as the API spells it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Follow this power.
    Target,
    /// Stay at or below it.
    Cap,
    /// Stay at or above it.
    Floor,
}

impl From<Kind> for RequestKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Target => RequestKind::Target,
            Kind::Cap => RequestKind::Cap,
            Kind::Floor => RequestKind::Floor,
        }
    }
}

impl From<RequestKind> for Kind {
    fn from(k: RequestKind) -> Self {
        match k {
            RequestKind::Target => Kind::Target,
            RequestKind::Cap => Kind::Cap,
            RequestKind::Floor => Kind::Floor,
        }
    }
}

/// A request as posted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestIn {
    /// The grid node; absent for the whole area.
    node: Option<GridNodeId>,
    /// `target`, `cap` or `floor`.
    kind: Kind,
    /// Net power, W, import positive.
    power_w: i64,
    /// Window start.
    starts_at: DateTime<Utc>,
    /// Window end.
    ends_at: DateTime<Utc>,
    /// Price of deviation, minor units per kWh.
    price_minor_per_kwh: i64,
}

/// A utility request as the API shows it.
#[derive(Debug, Serialize)]
pub struct RequestOut {
    id: Uuid,
    node: Option<GridNodeId>,
    kind: Kind,
    power_w: i64,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    price_minor_per_kwh: i64,
    created_by: Option<UserId>,
    created_at: DateTime<Utc>,
    cancelled_at: Option<DateTime<Utc>>,
}

impl From<UtilityRequest> for RequestOut {
    fn from(r: UtilityRequest) -> Self {
        let q = r.request;
        Self {
            id: r.id,
            node: q.node,
            kind: q.kind.into(),
            power_w: q.power_w,
            starts_at: q.starts_at,
            ends_at: q.ends_at,
            price_minor_per_kwh: q.price_minor_per_kwh,
            created_by: r.created_by,
            created_at: r.created_at,
            cancelled_at: r.cancelled_at,
        }
    }
}

/// `POST /v1/dispatch/requests`: the dispatch loop plans around it from its next tick.
pub async fn create_request(
    State(state): State<AppState>,
    caller: Authenticated,
    Json(body): Json<RequestIn>,
) -> Result<(StatusCode, Json<RequestOut>), ApiError> {
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
        kind: body.kind.into(),
        power_w: body.power_w,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        price_minor_per_kwh: body.price_minor_per_kwh,
    };
    let stored = gridmesh_db::create_utility_request(&state.pool, &new, Some(me.user_id)).await?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// `GET /v1/dispatch/requests`: requests in force now or later.
pub async fn list_requests(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<Json<Vec<RequestOut>>, ApiError> {
    caller.require(GRID_VIEW)?;
    let now = Utc::now();
    let requests =
        gridmesh_db::utility_requests_between(&state.pool, now, now + Duration::days(3_650)).await?;
    Ok(Json(requests.into_iter().map(RequestOut::from).collect()))
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

/// A stored plan without its body, as the API shows it.
#[derive(Debug, Serialize)]
pub struct PlanOut {
    id: Uuid,
    created_at: DateTime<Utc>,
    horizon_start: DateTime<Utc>,
    steps: i32,
    step_seconds: i32,
    trigger: String,
    /// SHA-256 of the optimizer's input, hex.
    input_hash: String,
    objective: f64,
    solve_seconds: f64,
    /// The summary the dispatch loop stored with the plan, as stored.
    summary: serde_json::Value,
}

impl From<PlanRecord> for PlanOut {
    fn from(p: PlanRecord) -> Self {
        Self {
            id: p.id,
            created_at: p.created_at,
            horizon_start: p.horizon_start,
            steps: p.steps,
            step_seconds: p.step_seconds,
            trigger: p.trigger,
            input_hash: p.input_hash,
            objective: p.objective,
            solve_seconds: p.solve_seconds,
            summary: p.summary,
        }
    }
}

/// `GET /v1/dispatch/plans`: the latest plans, newest first, with their summaries (objective,
/// binding node limits and their shadow prices, solver statistics) and input hashes.
pub async fn list_plans(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(q): Query<PlansQuery>,
) -> Result<Json<Vec<PlanOut>>, ApiError> {
    caller.require(GRID_VIEW)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=1_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    let plans = gridmesh_db::recent_plans(&state.pool, limit).await?;
    Ok(Json(plans.into_iter().map(PlanOut::from).collect()))
}

/// `GET /v1/dispatch/plans/{id}`: the whole plan (per site and step, per node and step).
///
/// The body is the document the dispatch loop stored, answered as stored (not a fixed shape of
/// this API: a plan made by an older version reads back as it was made).
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

/// A setpoint sent, with the agent's answer and the measured deviation, as the API shows it.
#[derive(Debug, Serialize)]
pub struct SetpointOut {
    command: CommandId,
    plan: Uuid,
    site: SiteId,
    valid_from: DateTime<Utc>,
    valid_until: DateTime<Utc>,
    battery_power_w: Option<i64>,
    pv_limit_w: Option<i64>,
    planned_grid_w: i64,
    outcome: Option<String>,
    applied_battery_power_w: Option<i64>,
    applied_pv_limit_w: Option<i64>,
    reason: Option<String>,
    measured_grid_w: Option<i64>,
    deviation_w: Option<i64>,
}

impl From<SetpointRecord> for SetpointOut {
    fn from(r: SetpointRecord) -> Self {
        let s = r.setpoint;
        Self {
            command: s.command,
            plan: s.plan,
            site: s.site,
            valid_from: s.valid_from,
            valid_until: s.valid_until,
            battery_power_w: s.battery_power_w,
            pv_limit_w: s.pv_limit_w,
            planned_grid_w: s.planned_grid_w,
            outcome: r.outcome,
            applied_battery_power_w: r.applied_battery_power_w,
            applied_pv_limit_w: r.applied_pv_limit_w,
            reason: r.reason,
            measured_grid_w: r.measured_grid_w,
            deviation_w: r.deviation_w,
        }
    }
}

/// `GET /v1/dispatch/setpoints`: setpoints sent, newest first, with the agents' answers and the
/// measured grid power's deviation from the plan.
pub async fn list_setpoints(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(q): Query<SetpointsQuery>,
) -> Result<Json<Vec<SetpointOut>>, ApiError> {
    if !GRID_VIEW.contains(&caller.0.role) {
        let site = q.site.ok_or_else(|| ApiError::invalid("site", "name one of your sites"))?;
        caller.require_site(&state, site).await?;
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
    let records = gridmesh_db::setpoint_records(&state.pool, q.site, from, to, limit).await?;
    Ok(Json(records.into_iter().map(SetpointOut::from).collect()))
}
