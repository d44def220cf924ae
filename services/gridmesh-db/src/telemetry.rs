use std::collections::BTreeSet;

use chrono::{DateTime, Days, NaiveDate, Utc};
use gridmesh_core::{AgentId, Reading, SiteId, StateOfCharge, WattHours, Watts};
use uuid::Uuid;

use crate::{DbError, Pool};

/// How far back a reading may be measured and still be stored (an agent's disk buffer holds
/// about a week; this leaves room for long outages and back-fills).
pub const TELEMETRY_DAYS_BACK: u64 = 400;

/// How far ahead of the server's clock a reading may be measured and still be stored.
pub const TELEMETRY_DAYS_AHEAD: u64 = 2;

/// A reading as stored, with its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReading {
    /// The agent that sent it.
    pub agent: AgentId,
    /// Its sequence number.
    pub seq: u64,
    /// The measurements.
    pub reading: Reading,
    /// When ingest stored it.
    pub received_at: DateTime<Utc>,
    /// Plausibility flags (0 = none).
    pub flags: i32,
}

/// Creates the daily telemetry partitions for `[first_day, first_day + days)` (UTC) that do not
/// exist yet; returns how many were created. Idempotent and safe to run concurrently.
///
/// # Errors
/// Database errors, or a refusal for `days` outside 0..=3660.
pub async fn ensure_telemetry_partitions(
    pool: &Pool,
    first_day: NaiveDate,
    days: u16,
) -> Result<i32, DbError> {
    let created: i32 = sqlx::query_scalar("SELECT gridmesh_ensure_telemetry_partitions($1, $2)")
        .bind(first_day)
        .bind(i32::from(days))
        .fetch_one(pool)
        .await?;
    Ok(created)
}

/// Stores readings of one agent and site without plausibility flags: [`crate::commit_ingest`]
/// for one batch. Rows already stored (same agent,
/// sequence number and time) are skipped, so a replayed batch changes nothing; returns how many
/// rows were new. All or nothing: a refused row (unknown agent, an agent that is not the site's,
/// a violated check) stores none of the batch.
///
/// A day's partition that does not exist yet is created on demand, so readings from an agent
/// that was offline for weeks are stored; times outside [`TELEMETRY_DAYS_BACK`] days back to
/// [`TELEMETRY_DAYS_AHEAD`] days ahead of `now` are refused before anything is written.
///
/// # Errors
/// [`DbError::Invalid`] for a sequence number beyond `i64::MAX` or a time outside the window;
/// [`DbError::Constraint`] `telemetry_agent_site` for an unknown agent or another site's.
pub async fn insert_telemetry(
    pool: &Pool,
    agent: AgentId,
    site: SiteId,
    readings: &[(u64, &Reading)],
) -> Result<u64, DbError> {
    let rows: Vec<crate::IngestRow<'_>> = readings
        .iter()
        .map(|(seq, reading)| crate::IngestRow {
            agent,
            site,
            seq: *seq,
            reading,
            flags: gridmesh_core::ReadingFlags::NONE,
        })
        .collect();
    Ok(crate::commit_ingest(pool, &rows).await?.inserted)
}

/// The UTC days the readings fall on, after checking each is inside the storable window.
pub(crate) fn storable_days(
    readings: &[(u64, &Reading)],
    now: DateTime<Utc>,
) -> Result<BTreeSet<NaiveDate>, DbError> {
    let today = now.date_naive();
    let first = today - Days::new(TELEMETRY_DAYS_BACK);
    let last = today + Days::new(TELEMETRY_DAYS_AHEAD);
    readings
        .iter()
        .map(|(seq, r)| {
            let day = r.at.date_naive();
            if (first..=last).contains(&day) {
                Ok(day)
            } else {
                Err(DbError::Invalid {
                    field: "measured_at",
                    reason: format!(
                        "reading {seq} was measured at {}, outside the storable window {first} to {last} (UTC days)",
                        r.at
                    ),
                })
            }
        })
        .collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct TelemetryRow {
    agent_id: Uuid,
    seq: i64,
    measured_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    grid_power_w: Option<i64>,
    pv_power_w: Option<i64>,
    battery_power_w: Option<i64>,
    battery_soc_bp: Option<i16>,
    grid_import_wh: Option<i64>,
    grid_export_wh: Option<i64>,
    pv_energy_wh: Option<i64>,
    battery_charged_wh: Option<i64>,
    battery_discharged_wh: Option<i64>,
    flags: i32,
}

impl TryFrom<TelemetryRow> for StoredReading {
    type Error = DbError;

    fn try_from(r: TelemetryRow) -> Result<Self, DbError> {
        let battery_soc = r
            .battery_soc_bp
            .map(|bp| {
                u16::try_from(bp)
                    .ok()
                    .and_then(StateOfCharge::from_basis_points)
                    .ok_or_else(|| DbError::Corrupt(format!("telemetry.battery_soc_bp {bp}")))
            })
            .transpose()?;
        Ok(StoredReading {
            agent: AgentId(r.agent_id),
            seq: u64::try_from(r.seq).map_err(|_| DbError::Corrupt(format!("telemetry.seq {}", r.seq)))?,
            received_at: r.received_at,
            flags: r.flags,
            reading: Reading {
                at: r.measured_at,
                grid_power: r.grid_power_w.map(Watts),
                pv_power: r.pv_power_w.map(Watts),
                battery_power: r.battery_power_w.map(Watts),
                battery_soc,
                grid_import: r.grid_import_wh.map(WattHours),
                grid_export: r.grid_export_wh.map(WattHours),
                pv_energy: r.pv_energy_wh.map(WattHours),
                battery_charged: r.battery_charged_wh.map(WattHours),
                battery_discharged: r.battery_discharged_wh.map(WattHours),
            },
        })
    }
}

/// The most recent reading of a site, by measurement time (kept by ingest in `site_latest`).
///
/// # Errors
/// Database errors.
pub async fn latest_reading(pool: &Pool, site: SiteId) -> Result<Option<StoredReading>, DbError> {
    let row: Option<TelemetryRow> = sqlx::query_as(
        "SELECT agent_id, seq, measured_at, received_at, grid_power_w, pv_power_w,
             battery_power_w, battery_soc_bp, grid_import_wh, grid_export_wh, pv_energy_wh,
             battery_charged_wh, battery_discharged_wh, flags
         FROM site_latest WHERE site_id = $1",
    )
    .bind(site.0)
    .fetch_optional(pool)
    .await?;
    row.map(StoredReading::try_from).transpose()
}

/// Number of stored readings of an agent.
///
/// # Errors
/// Database errors.
pub async fn count_telemetry(pool: &Pool, agent: AgentId) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM telemetry WHERE agent_id = $1")
        .bind(agent.0)
        .fetch_one(pool)
        .await?)
}
