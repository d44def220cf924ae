//! Reading what ingest stored: latest readings, history, 15-minute energy, gaps and flags.

use chrono::{DateTime, Utc};
use gridmesh_core::{AgentId, GridNodeId, Period, ReadingFlags, SiteId, UserId, WattHours, Watts};
use uuid::Uuid;

use crate::telemetry::{StoredReading, TelemetryRow};
use crate::{DbError, Pool};

const READING_COLUMNS: &str = "agent_id, seq, measured_at, received_at, grid_power_w, pv_power_w,
    battery_power_w, battery_soc_bp, grid_import_wh, grid_export_wh, pv_energy_wh,
    battery_charged_wh, battery_discharged_wh, flags";

/// Which sites' latest readings to list.
#[derive(Debug, Clone, Default)]
pub struct LatestFilter {
    /// Only sites owned by this user.
    pub owner: Option<UserId>,
    /// Only sites on this feeder.
    pub feeder: Option<GridNodeId>,
    /// Keyset pagination: sites whose id sorts after this one.
    pub after: Option<SiteId>,
    /// Most rows (capped at 1000).
    pub limit: u32,
}

/// The latest reading of each site that matches `filter`, ordered by site id.
///
/// # Errors
/// Database errors.
pub async fn latest_readings(
    pool: &Pool,
    filter: &LatestFilter,
) -> Result<Vec<(SiteId, StoredReading)>, DbError> {
    let rows: Vec<(Uuid, TelemetryRow)> = sqlx::query_as::<_, SiteAndRow>(
        "SELECT l.site_id, l.agent_id, l.seq, l.measured_at, l.received_at, l.grid_power_w,
             l.pv_power_w, l.battery_power_w, l.battery_soc_bp, l.grid_import_wh,
             l.grid_export_wh, l.pv_energy_wh, l.battery_charged_wh, l.battery_discharged_wh,
             l.flags
         FROM site_latest l JOIN sites s ON s.id = l.site_id
         WHERE ($1::uuid IS NULL OR s.owner_id = $1) AND ($2::uuid IS NULL OR s.feeder_id = $2)
           AND ($3::uuid IS NULL OR l.site_id > $3)
         ORDER BY l.site_id LIMIT $4",
    )
    .bind(filter.owner.map(|u| u.0))
    .bind(filter.feeder.map(|f| f.0))
    .bind(filter.after.map(|s| s.0))
    .bind(i64::from(filter.limit.min(1000)))
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.site_id, r.row))
    .collect();
    rows.into_iter().map(|(s, r)| Ok((SiteId(s), StoredReading::try_from(r)?))).collect()
}

#[derive(sqlx::FromRow)]
struct SiteAndRow {
    site_id: Uuid,
    #[sqlx(flatten)]
    row: TelemetryRow,
}

/// A page of one site's raw readings in `[from, to)`, ordered by (time, agent, sequence), after
/// the cursor `after` (the last row of the previous page).
///
/// # Errors
/// Database errors.
pub async fn site_readings(
    pool: &Pool,
    site: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: Option<(DateTime<Utc>, AgentId, u64)>,
    limit: u32,
) -> Result<Vec<StoredReading>, DbError> {
    let sql = format!(
        "SELECT {READING_COLUMNS} FROM telemetry
         WHERE site_id = $1 AND measured_at >= $2 AND measured_at < $3
           AND ($4::timestamptz IS NULL OR (measured_at, agent_id, seq) > ($4, $5, $6))
         ORDER BY measured_at, agent_id, seq LIMIT $7"
    );
    let rows: Vec<TelemetryRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(site.0)
        .bind(from)
        .bind(to)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1.0))
        .bind(after.map(|a| a.2 as i64))
        .bind(i64::from(limit.min(10_000)))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(StoredReading::try_from).collect()
}

/// A site's energy in one 15-minute period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodEnergy {
    /// The period.
    pub period: Period,
    /// Readings received for it.
    pub readings: i32,
    /// Readings among them with flags.
    pub flagged: i32,
    /// Union of their flags.
    pub flags: ReadingFlags,
    /// Whether an operator resolved the flags.
    pub resolved: bool,
    /// Whether the previous period had data, so the energy covers the whole period.
    pub complete: bool,
    /// Energy imported.
    pub imported: Option<WattHours>,
    /// Energy exported.
    pub exported: Option<WattHours>,
    /// PV production.
    pub pv: Option<WattHours>,
    /// Energy into the battery.
    pub battery_in: Option<WattHours>,
    /// Energy out of the battery.
    pub battery_out: Option<WattHours>,
}

type EnergyRow = (
    DateTime<Utc>,
    i32,
    i32,
    i32,
    Option<DateTime<Utc>>,
    bool,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A site's 15-minute energy for the periods starting in `[from, to)`.
///
/// # Errors
/// Database errors.
pub async fn site_energy(
    pool: &Pool,
    site: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<PeriodEnergy>, DbError> {
    let rows: Vec<EnergyRow> = sqlx::query_as(
        "SELECT period_start, readings, flagged, flags, resolved_at, complete_start,
             imported_wh, exported_wh, pv_wh, battery_in_wh, battery_out_wh
         FROM site_energy_15min WHERE site_id = $1 AND period_start >= $2 AND period_start < $3
         ORDER BY period_start",
    )
    .bind(site.0)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(start, readings, flagged, flags, resolved, complete, imp, exp, pv, bin, bout)| {
            Ok(PeriodEnergy {
                period: Period::starting_at(start).map_err(|e| DbError::Corrupt(e.to_string()))?,
                readings,
                flagged,
                flags: ReadingFlags::from_bits(flags as u32),
                resolved: resolved.is_some(),
                complete,
                imported: imp.map(WattHours),
                exported: exp.map(WattHours),
                pv: pv.map(WattHours),
                battery_in: bin.map(WattHours),
                battery_out: bout.map(WattHours),
            })
        })
        .collect()
}

/// A run of sequence numbers an agent has not delivered (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The agent.
    pub agent: AgentId,
    /// Its site.
    pub site: SiteId,
    /// First missing sequence number.
    pub first: u64,
    /// Last missing sequence number (inclusive).
    pub last: u64,
}

/// Sequence gaps, for one site or all, ordered by agent and sequence number.
///
/// # Errors
/// Database errors.
pub async fn gaps(pool: &Pool, site: Option<SiteId>, limit: u32) -> Result<Vec<Gap>, DbError> {
    let rows: Vec<(Uuid, Uuid, i64, i64)> = sqlx::query_as(
        "SELECT s.agent_id, a.site_id, lower(g), upper(g) - 1
         FROM agent_sequences s JOIN agents a ON a.id = s.agent_id,
              unnest(int8multirange(int8range(0, upper(s.ranges))) - s.ranges) AS g
         WHERE $1::uuid IS NULL OR a.site_id = $1
         ORDER BY s.agent_id, lower(g) LIMIT $2",
    )
    .bind(site.map(|s| s.0))
    .bind(i64::from(limit.min(10_000)))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(agent, site, first, last)| Gap {
            agent: AgentId(agent),
            site: SiteId(site),
            first: first as u64,
            last: last as u64,
        })
        .collect())
}

/// How many sequence numbers are missing across all agents (for the gap metric).
///
/// # Errors
/// Database errors.
pub async fn missing_total(pool: &Pool) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(upper(ranges) - (SELECT sum(upper(r) - lower(r)) FROM unnest(ranges) r)), 0)::int8
         FROM agent_sequences",
    )
    .fetch_one(pool)
    .await?)
}

/// A page of a site's flagged readings in `[from, to)`.
///
/// # Errors
/// Database errors.
pub async fn flagged_readings(
    pool: &Pool,
    site: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<StoredReading>, DbError> {
    let sql = format!(
        "SELECT {READING_COLUMNS} FROM telemetry
         WHERE site_id = $1 AND measured_at >= $2 AND measured_at < $3 AND flags <> 0
         ORDER BY measured_at, agent_id, seq LIMIT $4"
    );
    let rows: Vec<TelemetryRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(site.0)
        .bind(from)
        .bind(to)
        .bind(i64::from(limit.min(10_000)))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(StoredReading::try_from).collect()
}

/// Marks the periods of a site starting in `[from, to)` as reviewed, so settlement may use
/// them (a period's energy also depends on the period before it, so a reviewed range covers
/// both); returns how many of them were flagged and not yet resolved.
///
/// # Errors
/// Database errors.
pub async fn resolve_flags(
    pool: &Pool,
    site: SiteId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<u64, DbError> {
    let flagged: i64 = sqlx::query_scalar(
        "WITH done AS (
             UPDATE site_period_counters SET resolved_at = now()
             WHERE site_id = $1 AND period_start >= $2 AND period_start < $3 AND resolved_at IS NULL
             RETURNING flags)
         SELECT count(*) FROM done WHERE flags <> 0",
    )
    .bind(site.0)
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    Ok(flagged as u64)
}

/// Each site's PV energy in `period` with its feeder and rating, for the neighbour comparison.
///
/// # Errors
/// Database errors.
pub async fn period_pv(
    pool: &Pool,
    period: Period,
) -> Result<Vec<(GridNodeId, SiteId, Watts, WattHours)>, DbError> {
    let rows: Vec<(Uuid, Uuid, i64, i64)> = sqlx::query_as(
        "SELECT s.feeder_id, e.site_id, s.rated_pv_w, e.pv_wh
         FROM site_energy_15min e JOIN sites s ON s.id = e.site_id
         WHERE e.period_start = $1 AND e.pv_wh IS NOT NULL AND e.complete_start AND s.feeder_id IS NOT NULL
         ORDER BY s.feeder_id, e.site_id",
    )
    .bind(period.start())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(f, s, r, pv)| (GridNodeId(f), SiteId(s), Watts(r), WattHours(pv))).collect())
}

/// Adds `flag` to the given sites' summaries of `period` (and to their readings in it).
///
/// # Errors
/// Database errors.
pub async fn flag_period(
    pool: &Pool,
    period: Period,
    sites: &[SiteId],
    flag: ReadingFlags,
) -> Result<(), DbError> {
    if sites.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = sites.iter().map(|s| s.0).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE site_period_counters SET flags = flags | $3, resolved_at = NULL
         WHERE period_start = $1 AND site_id = ANY($2) AND flags & $3 = 0",
    )
    .bind(period.start())
    .bind(&ids)
    .bind(flag.bits() as i32)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE telemetry SET flags = flags | $4
         WHERE measured_at >= $1 AND measured_at < $2 AND site_id = ANY($3)",
    )
    .bind(period.start())
    .bind(period.end())
    .bind(&ids)
    .bind(flag.bits() as i32)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Drops raw telemetry partitions of days before `before` (UTC); returns how many.
///
/// # Errors
/// Database errors.
pub async fn drop_telemetry_before(pool: &Pool, before: chrono::NaiveDate) -> Result<i32, DbError> {
    Ok(sqlx::query_scalar("SELECT gridmesh_drop_telemetry_partitions_before($1)")
        .bind(before)
        .fetch_one(pool)
        .await?)
}

/// Sites by id (any that exist), for ingest's profile cache.
///
/// # Errors
/// Database errors.
pub async fn get_sites(pool: &Pool, ids: &[SiteId]) -> Result<Vec<gridmesh_core::Site>, DbError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(site) = crate::get_site(pool, *id).await? {
            out.push(site);
        }
    }
    Ok(out)
}
