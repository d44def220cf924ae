//! Telemetry as ingest stored it: latest readings, history (raw and 15-minute), sequence gaps
//! and plausibility flags; agent enrolment. A site's data is visible to its owner, operators and
//! regulators ([`Authenticated::require_site`]); utilities see aggregates only (their API comes
//! with the balancing work).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use gridmesh_core::{AgentId, GridNodeId, Period, ReadingFlags, Role, SiteId, WattHours};
use gridmesh_db::{Gap, LatestFilter, PeriodEnergy, StoredReading};
use gridmesh_wire::PublicKey;
use serde::{Deserialize, Serialize};

use super::Page;
use crate::auth::Authenticated;
use crate::error::{Json, Path, Query};
use crate::{ApiError, AppState};

/// A reading as the API shows it.
#[derive(Debug, Serialize)]
pub struct ReadingOut {
    agent: AgentId,
    seq: u64,
    measured_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    grid_power_w: Option<i64>,
    pv_power_w: Option<i64>,
    battery_power_w: Option<i64>,
    battery_soc_pct: Option<f64>,
    grid_import_wh: Option<i64>,
    grid_export_wh: Option<i64>,
    pv_energy_wh: Option<i64>,
    battery_charged_wh: Option<i64>,
    battery_discharged_wh: Option<i64>,
    flags: ReadingFlags,
}

impl From<StoredReading> for ReadingOut {
    fn from(s: StoredReading) -> Self {
        let r = s.reading;
        Self {
            agent: s.agent,
            seq: s.seq,
            measured_at: r.at,
            received_at: s.received_at,
            grid_power_w: r.grid_power.map(|w| w.get()),
            pv_power_w: r.pv_power.map(|w| w.get()),
            battery_power_w: r.battery_power.map(|w| w.get()),
            battery_soc_pct: r.battery_soc.map(|s| s.percent()),
            grid_import_wh: r.grid_import.map(|w| w.get()),
            grid_export_wh: r.grid_export.map(|w| w.get()),
            pv_energy_wh: r.pv_energy.map(|w| w.get()),
            battery_charged_wh: r.battery_charged.map(|w| w.get()),
            battery_discharged_wh: r.battery_discharged.map(|w| w.get()),
            flags: ReadingFlags::from_bits(s.flags as u32),
        }
    }
}

/// A time window `[from, to)`; defaults to the last 24 hours.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    after: Option<String>,
    limit: Option<u32>,
}

impl Window {
    fn bounds(&self, max_days: i64) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
        let to = self.to.unwrap_or_else(Utc::now);
        let from = match self.from {
            Some(from) => from,
            None => to
                .checked_sub_signed(Duration::hours(24))
                .ok_or_else(|| ApiError::invalid("to", "is too far in the past"))?,
        };
        if from >= to {
            return Err(ApiError::invalid("from", "must be before to"));
        }
        if to - from > Duration::days(max_days) {
            return Err(ApiError::invalid("to", format!("the window may span at most {max_days} days")));
        }
        Ok((from, to))
    }

    fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        let limit = self.limit.unwrap_or(default);
        if (1..=max).contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::invalid("limit", format!("must be between 1 and {max}")))
        }
    }
}

/// `GET /v1/sites/{id}/latest`: the site's most recent reading.
pub async fn latest(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
) -> Result<Json<ReadingOut>, ApiError> {
    caller.require_site(&state, id).await?;
    let r = gridmesh_db::latest_reading(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("reading for this site".into()))?;
    Ok(Json(r.into()))
}

/// Cursor `{unix µs}:{agent}:{seq}` of the last row of a page (microseconds: what PostgreSQL keeps).
fn parse_cursor(text: &str) -> Result<(DateTime<Utc>, AgentId, u64), ApiError> {
    let bad = || ApiError::invalid("after", "is not a cursor from a previous page (expected µs:agent:seq)");
    let mut parts = text.splitn(3, ':');
    let micros: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let agent: AgentId = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let seq: u64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok((at, agent, seq))
}

/// `GET /v1/sites/{id}/readings?from=&to=&after=&limit=`: raw readings, oldest first, at most
/// 7 days per request and 5000 rows per page (1000 by default).
pub async fn history(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
    Query(w): Query<Window>,
) -> Result<Json<Page<ReadingOut>>, ApiError> {
    caller.require_site(&state, id).await?;
    let (from, to) = w.bounds(7)?;
    let limit = w.limit(1000, 5000)?;
    let after = w.after.as_deref().map(parse_cursor).transpose()?;
    let rows = gridmesh_db::site_readings(&state.pool, id, from, to, after, limit).await?;
    let cursor = |r: &StoredReading| format!("{}:{}:{}", r.reading.at.timestamp_micros(), r.agent, r.seq);
    Ok(Json(Page::new(rows, limit, cursor, ReadingOut::from)))
}

/// A site's energy in one 15-minute period, as the API shows it.
#[derive(Debug, Serialize)]
pub struct PeriodEnergyOut {
    period: Period,
    /// Readings received for it.
    readings: i32,
    /// Readings among them with flags.
    flagged: i32,
    /// Union of their flags.
    flags: ReadingFlags,
    /// Whether an operator resolved the flags.
    resolved: bool,
    /// Whether the previous period had data, so the energy covers the whole period.
    complete: bool,
    imported: Option<WattHours>,
    exported: Option<WattHours>,
    pv: Option<WattHours>,
    battery_in: Option<WattHours>,
    battery_out: Option<WattHours>,
}

impl From<PeriodEnergy> for PeriodEnergyOut {
    fn from(e: PeriodEnergy) -> Self {
        Self {
            period: e.period,
            readings: e.readings,
            flagged: e.flagged,
            flags: e.flags,
            resolved: e.resolved,
            complete: e.complete,
            imported: e.imported,
            exported: e.exported,
            pv: e.pv,
            battery_in: e.battery_in,
            battery_out: e.battery_out,
        }
    }
}

/// `GET /v1/sites/{id}/energy?from=&to=`: 15-minute energy (integer Wh), at most 93 days.
pub async fn energy(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
    Query(w): Query<Window>,
) -> Result<Json<Vec<PeriodEnergyOut>>, ApiError> {
    caller.require_site(&state, id).await?;
    let (from, to) = w.bounds(93)?;
    let energy = gridmesh_db::site_energy(&state.pool, id, from, to).await?;
    Ok(Json(energy.into_iter().map(PeriodEnergyOut::from).collect()))
}

/// A run of sequence numbers an agent has not delivered (yet), as the API shows it.
#[derive(Debug, Serialize)]
pub struct GapOut {
    agent: AgentId,
    site: SiteId,
    /// First missing sequence number.
    first: u64,
    /// Last missing sequence number (inclusive).
    last: u64,
}

impl From<Gap> for GapOut {
    fn from(g: Gap) -> Self {
        Self { agent: g.agent, site: g.site, first: g.first, last: g.last }
    }
}

/// `GET /v1/sites/{id}/gaps`: sequence numbers the site's agents have not delivered.
pub async fn site_gaps(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
) -> Result<Json<Vec<GapOut>>, ApiError> {
    caller.require_site(&state, id).await?;
    let gaps = gridmesh_db::gaps(&state.pool, Some(id), 10_000).await?;
    Ok(Json(gaps.into_iter().map(GapOut::from).collect()))
}

/// `GET /v1/ingest/gaps` (operator): every agent's gaps.
pub async fn all_gaps(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<Json<Vec<GapOut>>, ApiError> {
    caller.require(&[Role::Operator])?;
    let gaps = gridmesh_db::gaps(&state.pool, None, 10_000).await?;
    Ok(Json(gaps.into_iter().map(GapOut::from).collect()))
}

/// `GET /v1/sites/{id}/flags?from=&to=&limit=`: flagged readings.
pub async fn flags(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
    Query(w): Query<Window>,
) -> Result<Json<Vec<ReadingOut>>, ApiError> {
    caller.require_site(&state, id).await?;
    let (from, to) = w.bounds(31)?;
    let limit = w.limit(1000, 10_000)?;
    let rows = gridmesh_db::flagged_readings(&state.pool, id, from, to, limit).await?;
    Ok(Json(rows.into_iter().map(ReadingOut::from).collect()))
}

/// Body of `POST /v1/sites/{id}/flags/resolve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

/// Answer of `POST /v1/sites/{id}/flags/resolve`.
#[derive(Debug, Serialize)]
pub struct ResolvedOut {
    /// Periods that were flagged and are now reviewed.
    resolved_periods: u64,
}

/// `POST /v1/sites/{id}/flags/resolve` (operator): mark the flagged periods in `[from, to)` as
/// reviewed, so settlement may use them.
pub async fn resolve(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
    Json(body): Json<Resolve>,
) -> Result<Json<ResolvedOut>, ApiError> {
    caller.require(&[Role::Operator])?;
    caller.require_site(&state, id).await?;
    if body.from >= body.to {
        return Err(ApiError::invalid("from", "must be before to"));
    }
    let resolved = gridmesh_db::resolve_flags(&state.pool, id, body.from, body.to).await?;
    tracing::info!(site = %id, resolved, "flagged periods resolved");
    Ok(Json(ResolvedOut { resolved_periods: resolved }))
}

/// Query of `GET /v1/readings/latest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatestParams {
    feeder: Option<GridNodeId>,
    after: Option<SiteId>,
    limit: Option<u32>,
}

/// One site's latest reading.
#[derive(Debug, Serialize)]
pub struct SiteReading {
    site: SiteId,
    #[serde(flatten)]
    reading: ReadingOut,
}

/// `GET /v1/readings/latest?feeder=&after=&limit=`: the latest reading of every site the caller
/// may see (own sites; all for operators and regulators), by site id.
pub async fn latest_all(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(p): Query<LatestParams>,
) -> Result<Json<Page<SiteReading>>, ApiError> {
    if caller.0.role == Role::Utility {
        return Err(ApiError::Forbidden {
            needed: &[Role::Operator, Role::Regulator, Role::Homeowner, Role::Prosumer],
            have: Role::Utility,
        });
    }
    let limit = p.limit.unwrap_or(500);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let owner = caller.visible_owner();
    let rows = gridmesh_db::latest_readings(
        &state.pool,
        &LatestFilter { owner, feeder: p.feeder, after: p.after, limit },
    )
    .await?;
    Ok(Json(Page::new(
        rows,
        limit,
        |(s, _)| s.to_string(),
        |(site, r)| SiteReading { site, reading: r.into() },
    )))
}

/// Body of `POST /v1/sites/{id}/agents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrol {
    #[serde(default)]
    name: String,
    /// The agent's ed25519 public key, 64 hex digits (`gridmesh-agent enroll` prints it).
    public_key: String,
}

/// Answer of `POST /v1/sites/{id}/agents`.
///
/// The fields are in alphabetical order, as this answer has always had them (it was a JSON map).
#[derive(Debug, Serialize)]
pub struct EnrolledOut {
    agent_id: AgentId,
    /// The enrolled key, 64 hex digits.
    public_key: String,
    site_id: SiteId,
}

/// `POST /v1/sites/{id}/agents` (the site's owner or an operator): register an agent and its
/// device key; ingest accepts its telemetry from then on.
pub async fn enrol(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
    Json(body): Json<Enrol>,
) -> Result<(StatusCode, Json<EnrolledOut>), ApiError> {
    let site = caller.require_site(&state, id).await?;
    if !caller.can_act_for(&site) {
        return Err(ApiError::Forbidden { needed: &[Role::Operator], have: caller.0.role });
    }
    let key =
        PublicKey::from_hex(&body.public_key).map_err(|e| ApiError::invalid("public_key", e.to_string()))?;
    if body.name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "must be at most 200 characters"));
    }
    super::sites::require_active(&state, id).await?;
    // One transaction: a key that is already enrolled leaves no agent behind.
    let agent = gridmesh_db::enrol_agent(
        &state.pool,
        id,
        &body.name,
        *key.as_bytes(),
        Some(state.max_agents_per_site),
    )
    .await?;
    tracing::info!(site = %id, agent = %agent, "agent enrolled");
    Ok((StatusCode::CREATED, Json(EnrolledOut { agent_id: agent, public_key: key.to_string(), site_id: id })))
}

/// Answer of `GET /v1/server-key`.
#[derive(Debug, Serialize)]
pub struct ServerKeyOut {
    /// The server's ed25519 public key, 64 hex digits.
    public_key: String,
}

/// `GET /v1/server-key`: the server's public key, for agents to verify what it signs.
pub async fn server_key(State(state): State<AppState>) -> Result<Json<ServerKeyOut>, ApiError> {
    let key = state.server_key.ok_or_else(|| ApiError::NotFound("server key".into()))?;
    Ok(Json(ServerKeyOut { public_key: key.to_string() }))
}
