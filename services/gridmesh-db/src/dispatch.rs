//! Grid balancing records: utility requests, the optimizer's plans and the setpoints sent from
//! them, with the agents' answers.

use chrono::{DateTime, Utc};
use gridmesh_core::{CommandId, GridNodeId, SiteId, Timestamp, UserId};
use uuid::Uuid;

use crate::{DbError, Pool};

/// What a utility asks of a node's net power (import positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Follow this power.
    Target,
    /// Stay at or below it.
    Cap,
    /// Stay at or above it.
    Floor,
}

impl RequestKind {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Target => "target",
            Self::Cap => "cap",
            Self::Floor => "floor",
        }
    }

    fn parse(s: &str) -> Result<Self, DbError> {
        match s {
            "target" => Ok(Self::Target),
            "cap" => Ok(Self::Cap),
            "floor" => Ok(Self::Floor),
            other => Err(DbError::Corrupt(format!("utility_requests.kind {other:?}"))),
        }
    }
}

/// A new utility request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUtilityRequest {
    /// The node, or the whole area when `None`.
    pub node: Option<GridNodeId>,
    /// Target, cap or floor.
    pub kind: RequestKind,
    /// The power, W, import positive.
    pub power_w: i64,
    /// Window start.
    pub starts_at: Timestamp,
    /// Window end (exclusive).
    pub ends_at: Timestamp,
    /// Price of deviation, minor currency units per kWh.
    pub price_minor_per_kwh: i64,
}

/// A stored utility request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtilityRequest {
    /// Its id.
    pub id: Uuid,
    /// What was asked.
    pub request: NewUtilityRequest,
    /// Who asked.
    pub created_by: Option<UserId>,
    /// When.
    pub created_at: Timestamp,
    /// When it was withdrawn.
    pub cancelled_at: Option<Timestamp>,
}

type RequestRow = (
    Uuid,
    Option<Uuid>,
    String,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
    i64,
    Option<Uuid>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

const REQUEST_COLUMNS: &str = "id, node_id, kind, power_w, starts_at, ends_at, price_minor_per_kwh, created_by, created_at, cancelled_at";

fn request_from(r: RequestRow) -> Result<UtilityRequest, DbError> {
    Ok(UtilityRequest {
        id: r.0,
        request: NewUtilityRequest {
            node: r.1.map(GridNodeId),
            kind: RequestKind::parse(&r.2)?,
            power_w: r.3,
            starts_at: r.4,
            ends_at: r.5,
            price_minor_per_kwh: r.6,
        },
        created_by: r.7.map(UserId),
        created_at: r.8,
        cancelled_at: r.9,
    })
}

/// Stores a utility request.
///
/// # Errors
/// An unknown node (`utility_requests_node_id_fkey`), an empty window
/// (`utility_requests_window`), a negative price, or database errors.
pub async fn create_utility_request(
    pool: &Pool,
    new: &NewUtilityRequest,
    by: Option<UserId>,
) -> Result<UtilityRequest, DbError> {
    // Only constant column names are formatted in.
    let row: RequestRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO utility_requests (id, node_id, kind, power_w, starts_at, ends_at, price_minor_per_kwh, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {REQUEST_COLUMNS}"
    )))
    .bind(Uuid::new_v4())
    .bind(new.node.map(|n| n.0))
    .bind(new.kind.as_str())
    .bind(new.power_w)
    .bind(new.starts_at)
    .bind(new.ends_at)
    .bind(new.price_minor_per_kwh)
    .bind(by.map(|u| u.0))
    .fetch_one(pool)
    .await?;
    request_from(row)
}

/// Withdraws a request; false when there is none (or it was withdrawn already).
///
/// # Errors
/// Database errors.
pub async fn cancel_utility_request(pool: &Pool, id: Uuid) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE utility_requests SET cancelled_at = now() WHERE id = $1 AND cancelled_at IS NULL",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Requests in force at some point of `[from, to)`, not withdrawn, oldest first.
///
/// # Errors
/// Database errors.
pub async fn utility_requests_between(
    pool: &Pool,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<UtilityRequest>, DbError> {
    let rows: Vec<RequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS} FROM utility_requests
         WHERE cancelled_at IS NULL AND ends_at > $1 AND starts_at < $2
         ORDER BY created_at, id"
    )))
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(request_from).collect()
}

/// The latest moment any request was created or withdrawn (the scheduler replans when it moves).
///
/// # Errors
/// Database errors.
pub async fn utility_requests_changed_at(pool: &Pool) -> Result<Option<Timestamp>, DbError> {
    let at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT max(greatest(created_at, coalesce(cancelled_at, created_at))) FROM utility_requests",
    )
    .fetch_one(pool)
    .await?;
    Ok(at)
}

/// How many grid nodes and active (assigned, not decommissioned) sites there are: the dispatch loop plans
/// again when this changes (homes enrolled after the last plan would otherwise wait for the
/// next step).
///
/// # Errors
/// Database errors.
pub async fn grid_size(pool: &Pool) -> Result<(i64, i64), DbError> {
    let size: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM grid_nodes WHERE retired_at IS NULL),
                    (SELECT count(*) FROM sites WHERE feeder_id IS NOT NULL AND decommissioned_at IS NULL)",
    )
    .fetch_one(pool)
    .await?;
    Ok(size)
}

/// A plan to store.
#[derive(Debug, Clone)]
pub struct NewPlan {
    /// Start of its first step.
    pub horizon_start: Timestamp,
    /// Number of steps.
    pub steps: i32,
    /// Step length.
    pub step_seconds: i32,
    /// Why it was made ("schedule", "request", "cli").
    pub trigger: String,
    /// SHA-256 of the optimizer's input.
    pub input_hash: [u8; 32],
    /// Objective value.
    pub objective: f64,
    /// Solve time.
    pub solve_seconds: f64,
    /// A short summary (binding constraints, peaks, stats).
    pub summary: serde_json::Value,
    /// The whole plan.
    pub plan: serde_json::Value,
}

/// A stored plan, without its body.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRecord {
    /// Its id.
    pub id: Uuid,
    /// When it was made.
    pub created_at: Timestamp,
    /// Start of its first step.
    pub horizon_start: Timestamp,
    /// Number of steps.
    pub steps: i32,
    /// Step length.
    pub step_seconds: i32,
    /// Why it was made.
    pub trigger: String,
    /// SHA-256 of the input, hex.
    pub input_hash: String,
    /// Objective value.
    pub objective: f64,
    /// Solve time.
    pub solve_seconds: f64,
    /// Summary.
    pub summary: serde_json::Value,
}

/// Stores a plan; returns its id.
///
/// # Errors
/// Database errors.
pub async fn store_plan(pool: &Pool, plan: &NewPlan) -> Result<Uuid, DbError> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO dispatch_plans (id, horizon_start, steps, step_seconds, trigger, input_hash, objective, solve_seconds, summary, plan)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id)
    .bind(plan.horizon_start)
    .bind(plan.steps)
    .bind(plan.step_seconds)
    .bind(&plan.trigger)
    .bind(plan.input_hash.as_slice())
    .bind(plan.objective)
    .bind(plan.solve_seconds)
    .bind(&plan.summary)
    .bind(&plan.plan)
    .execute(pool)
    .await?;
    Ok(id)
}

type PlanRow = (Uuid, DateTime<Utc>, DateTime<Utc>, i32, i32, String, Vec<u8>, f64, f64, serde_json::Value);

/// The most recent plans, newest first.
///
/// # Errors
/// Database errors.
pub async fn recent_plans(pool: &Pool, limit: i64) -> Result<Vec<PlanRecord>, DbError> {
    let rows: Vec<PlanRow> = sqlx::query_as(
        "SELECT id, created_at, horizon_start, steps, step_seconds, trigger, input_hash, objective, solve_seconds, summary
         FROM dispatch_plans ORDER BY created_at DESC, id LIMIT $1",
    )
    .bind(limit.clamp(1, 1_000))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| PlanRecord {
            id: r.0,
            created_at: r.1,
            horizon_start: r.2,
            steps: r.3,
            step_seconds: r.4,
            trigger: r.5,
            input_hash: hex::encode(r.6),
            objective: r.7,
            solve_seconds: r.8,
            summary: r.9,
        })
        .collect())
}

/// The body of a stored plan.
///
/// # Errors
/// Database errors.
pub async fn plan_body(pool: &Pool, id: Uuid) -> Result<Option<serde_json::Value>, DbError> {
    Ok(sqlx::query_scalar("SELECT plan FROM dispatch_plans WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// A setpoint sent to an agent from a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchSetpoint {
    /// The command id (the setpoint's).
    pub command: CommandId,
    /// The plan it came from.
    pub plan: Uuid,
    /// The site.
    pub site: SiteId,
    /// Window start.
    pub valid_from: Timestamp,
    /// Window end.
    pub valid_until: Timestamp,
    /// Battery power asked, W, charging positive.
    pub battery_power_w: Option<i64>,
    /// PV limit asked, W.
    pub pv_limit_w: Option<i64>,
    /// Grid power the plan expects meanwhile, W, import positive.
    pub planned_grid_w: i64,
}

/// Records setpoints as sent.
///
/// # Errors
/// Database errors.
pub async fn record_setpoints(pool: &Pool, setpoints: &[DispatchSetpoint]) -> Result<(), DbError> {
    if setpoints.is_empty() {
        return Ok(());
    }
    let mut q = sqlx::QueryBuilder::new(
        "INSERT INTO dispatch_setpoints (command_id, plan_id, site_id, valid_from, valid_until, battery_power_w, pv_limit_w, planned_grid_w) ",
    );
    q.push_values(setpoints, |mut b, s| {
        b.push_bind(s.command.0)
            .push_bind(s.plan)
            .push_bind(s.site.0)
            .push_bind(s.valid_from)
            .push_bind(s.valid_until)
            .push_bind(s.battery_power_w)
            .push_bind(s.pv_limit_w)
            .push_bind(s.planned_grid_w);
    });
    q.push(" ON CONFLICT (command_id) DO NOTHING");
    q.build().execute(pool).await?;
    Ok(())
}

/// An agent's answer to a dispatch setpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetpointAnswer {
    /// The command answered.
    pub command: CommandId,
    /// The site the answer came from.
    pub site: SiteId,
    /// "applied", "clamped", "refused" or "expired".
    pub outcome: &'static str,
    /// Battery power applied.
    pub battery_power_w: Option<i64>,
    /// PV limit applied.
    pub pv_limit_w: Option<i64>,
    /// Why (refusals).
    pub reason: String,
    /// When the agent acted.
    pub at: Timestamp,
}

/// Stores an answer on its setpoint (the first answer counts). False when no setpoint of that
/// command exists for that site (not ours, or forged for another site).
///
/// # Errors
/// Database errors.
pub async fn record_setpoint_answer(pool: &Pool, a: &SetpointAnswer) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE dispatch_setpoints SET outcome = $3, applied_battery_power_w = $4, applied_pv_limit_w = $5,
             reason = $6, answered_at = $7
         WHERE command_id = $1 AND site_id = $2 AND outcome IS NULL",
    )
    .bind(a.command.0)
    .bind(a.site.0)
    .bind(a.outcome)
    .bind(a.battery_power_w)
    .bind(a.pv_limit_w)
    .bind(&a.reason)
    .bind(a.at)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A setpoint with its answer and what the meter measured in its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetpointRecord {
    /// What was sent.
    pub setpoint: DispatchSetpoint,
    /// The answer's outcome, when one came.
    pub outcome: Option<String>,
    /// Battery power applied.
    pub applied_battery_power_w: Option<i64>,
    /// PV limit applied.
    pub applied_pv_limit_w: Option<i64>,
    /// Why (refusals).
    pub reason: Option<String>,
    /// Average grid power measured in the window (from the readings), W.
    pub measured_grid_w: Option<i64>,
    /// Measured minus planned grid power, W.
    pub deviation_w: Option<i64>,
}

type SetpointRow = (
    Uuid,
    Uuid,
    Uuid,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<f64>,
);

/// The setpoints sent to a site (all sites when `None`) whose window starts in `[from, to)`,
/// newest first, with their answers and the deviation of the measured grid power from the plan.
///
/// # Errors
/// Database errors.
pub async fn setpoint_records(
    pool: &Pool,
    site: Option<SiteId>,
    from: Timestamp,
    to: Timestamp,
    limit: i64,
) -> Result<Vec<SetpointRecord>, DbError> {
    // A setpoint's measurement runs until the next one for the site took over (windows
    // overlap by a grace), its own end, or now.
    let rows: Vec<SetpointRow> = sqlx::query_as(
        "WITH d AS (
             SELECT *, lead(valid_from) OVER (PARTITION BY site_id ORDER BY valid_from) AS next_from
             FROM dispatch_setpoints
             WHERE ($1::uuid IS NULL OR site_id = $1) AND valid_from >= $2 AND valid_from < $3 + interval '1 day'
         )
         SELECT d.command_id, d.plan_id, d.site_id, d.valid_from, d.valid_until, d.battery_power_w,
                d.pv_limit_w, d.planned_grid_w, d.outcome, d.applied_battery_power_w,
                d.applied_pv_limit_w, d.reason,
                (SELECT avg(t.grid_power_w)::float8 FROM telemetry t
                  WHERE t.site_id = d.site_id AND t.measured_at >= d.valid_from
                    AND t.measured_at < least(d.valid_until, d.next_from, now()))
         FROM d
         WHERE d.valid_from < $3
         ORDER BY d.valid_from DESC, d.site_id LIMIT $4",
    )
    .bind(site.map(|s| s.0))
    .bind(from)
    .bind(to)
    .bind(limit.clamp(1, 10_000))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let measured = r.12.map(|m| m.round() as i64);
            SetpointRecord {
                setpoint: DispatchSetpoint {
                    command: CommandId(r.0),
                    plan: r.1,
                    site: SiteId(r.2),
                    valid_from: r.3,
                    valid_until: r.4,
                    battery_power_w: r.5,
                    pv_limit_w: r.6,
                    planned_grid_w: r.7,
                },
                outcome: r.8,
                applied_battery_power_w: r.9,
                applied_pv_limit_w: r.10,
                reason: r.11,
                measured_grid_w: measured,
                deviation_w: measured.map(|m| m - r.7),
            }
        })
        .collect())
}
