//! Storing verified telemetry: readings, sequence bookkeeping, period summaries and the latest
//! reading per site, all in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use gridmesh_core::{AgentId, PeriodSummary, Reading, ReadingFlags, SiteId, WattHours, Watts, summarize};
use uuid::Uuid;

use crate::telemetry::{ensure_telemetry_partitions, storable_days};
use crate::{DbError, Pool};

/// One verified reading with its origin and plausibility flags.
#[derive(Debug, Clone, Copy)]
pub struct IngestRow<'a> {
    /// The agent that signed it.
    pub agent: AgentId,
    /// Its site.
    pub site: SiteId,
    /// Its sequence number.
    pub seq: u64,
    /// The reading.
    pub reading: &'a Reading,
    /// Plausibility flags from ingest's checks.
    pub flags: ReadingFlags,
}

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Rows that were new.
    pub inserted: u64,
    /// Rows already stored (a replay): skipped.
    pub duplicates: u64,
    /// Sequence numbers delivered before with other content, now stored and flagged
    /// [`ReadingFlags::SEQUENCE_REUSED`].
    pub reused: Vec<(AgentId, u64)>,
}

/// Stores `rows` in one transaction and returns what was new.
///
/// * Readings go to `telemetry` (partitions for their days are created as needed); a row with
///   the same agent, sequence number and time as a stored one is skipped.
/// * Each agent's delivered sequence numbers are added to `agent_sequences`; a sequence number
///   that was delivered before with another timestamp is stored too, and both readings (and
///   their periods) are flagged [`ReadingFlags::SEQUENCE_REUSED`]: a cloned device or a shared
///   key, and nobody can tell which is genuine.
/// * The period summaries of the new rows are merged into `site_period_counters`, and the
///   newest row per site into `site_latest`.
///
/// # Errors
/// [`DbError::Invalid`] for a time outside the storable window or a sequence number beyond
/// `i64::MAX` (nothing is written); [`DbError::Constraint`] `telemetry_agent_site` when an agent
/// reports for a site that is not its own; [`DbError::Unavailable`] when the database is gone
/// (nothing is written; retry).
pub async fn commit_ingest(pool: &Pool, rows: &[IngestRow<'_>]) -> Result<CommitReport, DbError> {
    if rows.is_empty() {
        return Ok(CommitReport::default());
    }
    let total = rows.len() as u64;
    let pairs: Vec<(u64, &Reading)> = rows.iter().map(|r| (r.seq, r.reading)).collect();
    let days = storable_days(&pairs, Utc::now())?;
    for r in rows {
        if i64::try_from(r.seq).is_err() {
            return Err(DbError::Invalid {
                field: "seq",
                reason: format!("{} is beyond the largest storable sequence number", r.seq),
            });
        }
    }
    for day in days {
        ensure_telemetry_partitions(pool, day, 1).await?;
    }

    // A batch resent into the same write counts once; one sequence number with two different
    // times inside the write is a reuse. (Hash sets: this runs for every reading.)
    let mut seen: HashSet<(AgentId, u64, i64)> = HashSet::with_capacity(rows.len());
    let rows: Vec<&IngestRow<'_>> =
        rows.iter().filter(|r| seen.insert((r.agent, r.seq, r.reading.at.timestamp_micros()))).collect();
    let mut seqs: BTreeMap<AgentId, Vec<u64>> = BTreeMap::new();
    for r in &rows {
        seqs.entry(r.agent).or_default().push(r.seq);
    }
    let mut reused: BTreeSet<(Uuid, i64)> = BTreeSet::new();
    for (agent, list) in &mut seqs {
        list.sort_unstable();
        for pair in list.windows(2) {
            if pair[0] == pair[1] {
                reused.insert((agent.0, pair[0] as i64));
            }
        }
        list.dedup();
    }

    // Per agent, the sequence numbers of this write as sorted spans.
    let spans: Vec<(AgentId, i64, i64)> = seqs
        .iter()
        .flat_map(|(agent, list)| spans_of(list).into_iter().map(move |(a, b)| (*agent, a as i64, b as i64)))
        .collect();

    let mut tx = pool.begin().await?;

    // Writers of the same agents (ingest replicas) take turns: lock their rows in id order.
    let agents: Vec<Uuid> = seqs.keys().map(|a| a.0).collect();
    sqlx::query("SELECT 1 FROM agent_sequences WHERE agent_id = ANY($1) ORDER BY agent_id FOR UPDATE")
        .bind(&agents)
        .execute(&mut *tx)
        .await?;

    // Which agents already delivered some of these sequence numbers? Their rows may be replays
    // (skipped by the insert) or reuses (flagged).
    let overlapping: BTreeSet<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT t.agent_id FROM UNNEST($1::uuid[], $2::int8[], $3::int8[]) AS t(agent_id, f, l)
         JOIN agent_sequences s USING (agent_id)
         WHERE s.ranges && int8range(t.f, t.l + 1)",
    )
    .bind(spans.iter().map(|s| s.0.0).collect::<Vec<_>>())
    .bind(spans.iter().map(|s| s.1).collect::<Vec<_>>())
    .bind(spans.iter().map(|s| s.2).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();

    // Agents without overlap send only new sequence numbers: all their rows are new, so they
    // go in without RETURNING (the fast path). For the others, what the insert actually stored
    // is what counts. Times compare in microseconds, the precision PostgreSQL keeps.
    let (fresh, maybe_old): (Vec<&IngestRow<'_>>, Vec<&IngestRow<'_>>) =
        rows.iter().partition(|r| !overlapping.contains(&r.agent.0));
    insert_rows(&mut tx, &fresh, false).await?;
    let inserted: HashSet<(Uuid, i64, i64)> = insert_rows(&mut tx, &maybe_old, true)
        .await?
        .into_iter()
        .map(|(a, s, at)| (a, s, at.timestamp_micros()))
        .collect();

    // Rows just stored for agents that had delivered those sequence numbers before are reuses.
    let candidates: Vec<(Uuid, i64)> = inserted.iter().map(|(a, s, _)| (*a, *s)).collect();
    if !candidates.is_empty() {
        let old: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT t.agent_id, t.seq FROM UNNEST($1::uuid[], $2::int8[]) AS t(agent_id, seq)
             JOIN agent_sequences s USING (agent_id) WHERE s.ranges @> t.seq",
        )
        .bind(candidates.iter().map(|c| c.0).collect::<Vec<_>>())
        .bind(candidates.iter().map(|c| c.1).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        reused.extend(old);
    }
    if !reused.is_empty() {
        // Both readings of a reused sequence number are suspect: nobody can tell which device
        // is the genuine one. Flag the earlier one and its period too.
        let touched: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE telemetry t SET flags = t.flags | $3
             FROM UNNEST($1::uuid[], $2::int8[]) AS u(agent_id, seq)
             WHERE t.agent_id = u.agent_id AND t.seq = u.seq
             RETURNING t.site_id, t.measured_at",
        )
        .bind(reused.iter().map(|c| c.0).collect::<Vec<_>>())
        .bind(reused.iter().map(|c| c.1).collect::<Vec<_>>())
        .bind(ReadingFlags::SEQUENCE_REUSED.bits() as i32)
        .fetch_all(&mut *tx)
        .await?;
        let periods: BTreeSet<(Uuid, DateTime<Utc>)> =
            touched.into_iter().map(|(s, at)| (s, gridmesh_core::Period::containing(at).start())).collect();
        sqlx::query(
            "UPDATE site_period_counters c SET flags = c.flags | $3,
                 resolved_at = CASE WHEN c.flags & $3 = 0 THEN NULL ELSE c.resolved_at END
             FROM UNNEST($1::uuid[], $2::timestamptz[]) AS u(site_id, period_start)
             WHERE c.site_id = u.site_id AND c.period_start = u.period_start",
        )
        .bind(periods.iter().map(|p| p.0).collect::<Vec<_>>())
        .bind(periods.iter().map(|p| p.1).collect::<Vec<_>>())
        .bind(ReadingFlags::SEQUENCE_REUSED.bits() as i32)
        .execute(&mut *tx)
        .await?;
    }

    // The rows that are new, with their final flags.
    let new_rows: Vec<(SiteId, AgentId, u64, &Reading, ReadingFlags)> = rows
        .iter()
        .filter(|r| {
            !overlapping.contains(&r.agent.0)
                || inserted.contains(&(r.agent.0, r.seq as i64, r.reading.at.timestamp_micros()))
        })
        .map(|r| {
            let mut flags = r.flags;
            if reused.contains(&(r.agent.0, r.seq as i64)) {
                flags |= ReadingFlags::SEQUENCE_REUSED;
            }
            (r.site, r.agent, r.seq, r.reading, flags)
        })
        .collect();

    sqlx::query(
        "INSERT INTO agent_sequences AS a (agent_id, ranges)
         SELECT agent_id, range_agg(int8range(f, l + 1))
         FROM UNNEST($1::uuid[], $2::int8[], $3::int8[]) AS t(agent_id, f, l)
         GROUP BY agent_id ORDER BY agent_id
         ON CONFLICT (agent_id) DO UPDATE SET ranges = a.ranges + EXCLUDED.ranges, updated_at = now()",
    )
    .bind(spans.iter().map(|s| s.0.0).collect::<Vec<_>>())
    .bind(spans.iter().map(|s| s.1).collect::<Vec<_>>())
    .bind(spans.iter().map(|s| s.2).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;

    let summaries = summarize(new_rows.iter().map(|(site, _, seq, r, f)| (*site, *seq, *r, *f)));
    upsert_periods(&mut tx, &summaries).await?;
    upsert_latest(&mut tx, &new_rows).await?;
    tx.commit().await?;

    let inserted = new_rows.len() as u64;
    Ok(CommitReport {
        inserted,
        duplicates: total - inserted,
        reused: reused.into_iter().map(|(a, s)| (AgentId(a), s as u64)).collect(),
    })
}

/// Consecutive runs of a sorted, deduplicated list: [1,2,3,7,8] gives [(1,3), (7,8)].
fn spans_of(set: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &s in set {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == s => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

fn col<T, U>(
    rows: &[&IngestRow<'_>],
    f: impl Fn(&Reading) -> Option<T>,
    g: impl Fn(T) -> U,
) -> Vec<Option<U>> {
    rows.iter().map(|r| f(r.reading).map(&g)).collect()
}

const INSERT_TELEMETRY: &str = "INSERT INTO telemetry (agent_id, site_id, seq, measured_at, flags,
         grid_power_w, pv_power_w, battery_power_w, battery_soc_bp, grid_import_wh, grid_export_wh,
         pv_energy_wh, battery_charged_wh, battery_discharged_wh)
     SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[], $4::timestamptz[], $5::int4[],
         $6::int8[], $7::int8[], $8::int8[], $9::int2[], $10::int8[], $11::int8[], $12::int8[],
         $13::int8[], $14::int8[])
     ON CONFLICT DO NOTHING";

/// Inserts rows, skipping stored ones; with `returning`, gives back (agent, seq, time) of the
/// rows that were new.
async fn insert_rows(
    tx: &mut sqlx::PgConnection,
    rows: &[&IngestRow<'_>],
    returning: bool,
) -> Result<Vec<(Uuid, i64, DateTime<Utc>)>, DbError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let sql = if returning {
        format!("{INSERT_TELEMETRY} RETURNING agent_id, seq, measured_at")
    } else {
        INSERT_TELEMETRY.to_owned()
    };
    // Built from constants only; without RETURNING the statement yields no rows.
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(rows.iter().map(|r| r.agent.0).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.site.0).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.seq as i64).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.reading.at).collect::<Vec<DateTime<Utc>>>())
        .bind(rows.iter().map(|r| r.flags.bits() as i32).collect::<Vec<_>>())
        .bind(col(rows, |r| r.grid_power, Watts::get))
        .bind(col(rows, |r| r.pv_power, Watts::get))
        .bind(col(rows, |r| r.battery_power, Watts::get))
        .bind(col(rows, |r| r.battery_soc, |s| s.basis_points() as i16))
        .bind(col(rows, |r| r.grid_import, WattHours::get))
        .bind(col(rows, |r| r.grid_export, WattHours::get))
        .bind(col(rows, |r| r.pv_energy, WattHours::get))
        .bind(col(rows, |r| r.battery_charged, WattHours::get))
        .bind(col(rows, |r| r.battery_discharged, WattHours::get))
        .fetch_all(&mut *tx)
        .await?)
}

fn counter(
    p: &gridmesh_core::Point,
    f: impl Fn(&gridmesh_core::Counters) -> Option<WattHours>,
) -> Option<i64> {
    f(&p.counters).map(WattHours::get)
}

/// Merges period summaries with the rule of [`PeriodSummary::merge`]: counts add, flags OR,
/// the earlier first point and the later last point win (by time, then sequence number).
async fn upsert_periods(tx: &mut sqlx::PgConnection, sums: &[PeriodSummary]) -> Result<(), DbError> {
    if sums.is_empty() {
        return Ok(());
    }
    type Get = fn(&gridmesh_core::Counters) -> Option<WattHours>;
    let getters: [Get; 5] = [
        |c| c.grid_import,
        |c| c.grid_export,
        |c| c.pv_energy,
        |c| c.battery_charged,
        |c| c.battery_discharged,
    ];
    let mut q = sqlx::query(
        "INSERT INTO site_period_counters AS c (site_id, period_start, readings, flagged, flags,
             first_at, first_seq, last_at, last_seq,
             first_grid_import_wh, first_grid_export_wh, first_pv_energy_wh,
             first_battery_charged_wh, first_battery_discharged_wh,
             last_grid_import_wh, last_grid_export_wh, last_pv_energy_wh,
             last_battery_charged_wh, last_battery_discharged_wh)
         SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::int4[], $4::int4[], $5::int4[],
             $6::timestamptz[], $7::int8[], $8::timestamptz[], $9::int8[],
             $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::int8[],
             $15::int8[], $16::int8[], $17::int8[], $18::int8[], $19::int8[])
         ON CONFLICT (site_id, period_start) DO UPDATE SET
             readings = c.readings + EXCLUDED.readings,
             flagged = c.flagged + EXCLUDED.flagged,
             flags = c.flags | EXCLUDED.flags,
             resolved_at = CASE WHEN EXCLUDED.flags & ~c.flags <> 0 THEN NULL ELSE c.resolved_at END,
             first_at = CASE WHEN (EXCLUDED.first_at, EXCLUDED.first_seq) < (c.first_at, c.first_seq) THEN EXCLUDED.first_at ELSE c.first_at END,
             first_seq = CASE WHEN (EXCLUDED.first_at, EXCLUDED.first_seq) < (c.first_at, c.first_seq) THEN EXCLUDED.first_seq ELSE c.first_seq END,
             first_grid_import_wh = CASE WHEN (EXCLUDED.first_at, EXCLUDED.first_seq) < (c.first_at, c.first_seq) THEN EXCLUDED.first_grid_import_wh ELSE c.first_grid_import_wh END,
             first_grid_export_wh = CASE WHEN (EXCLUDED.first_at, EXCLUDED.first_seq) < (c.first_at, c.first_seq) THEN EXCLUDED.first_grid_export_wh ELSE c.first_grid_export_wh END,
             first_pv_energy_wh = CASE WHEN (EXCLUDED.first_at, EXCLUDED.first_seq) < (c.first_at, c.first_seq) THEN EXCLUDED.first_pv_energy_wh ELSE c.first_pv_energy_wh END,
             first_battery_charged_wh = CASE WHEN (EXCLUDED.first_at, EXCLUDED.first_seq) < (c.first_at, c.first_seq) THEN EXCLUDED.first_battery_charged_wh ELSE c.first_battery_charged_wh END,
             first_battery_discharged_wh = CASE WHEN (EXCLUDED.first_at, EXCLUDED.first_seq) < (c.first_at, c.first_seq) THEN EXCLUDED.first_battery_discharged_wh ELSE c.first_battery_discharged_wh END,
             last_at = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_seq) > (c.last_at, c.last_seq) THEN EXCLUDED.last_at ELSE c.last_at END,
             last_seq = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_seq) > (c.last_at, c.last_seq) THEN EXCLUDED.last_seq ELSE c.last_seq END,
             last_grid_import_wh = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_seq) > (c.last_at, c.last_seq) THEN EXCLUDED.last_grid_import_wh ELSE c.last_grid_import_wh END,
             last_grid_export_wh = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_seq) > (c.last_at, c.last_seq) THEN EXCLUDED.last_grid_export_wh ELSE c.last_grid_export_wh END,
             last_pv_energy_wh = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_seq) > (c.last_at, c.last_seq) THEN EXCLUDED.last_pv_energy_wh ELSE c.last_pv_energy_wh END,
             last_battery_charged_wh = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_seq) > (c.last_at, c.last_seq) THEN EXCLUDED.last_battery_charged_wh ELSE c.last_battery_charged_wh END,
             last_battery_discharged_wh = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_seq) > (c.last_at, c.last_seq) THEN EXCLUDED.last_battery_discharged_wh ELSE c.last_battery_discharged_wh END",
    )
    .bind(sums.iter().map(|s| s.site.0).collect::<Vec<_>>())
    .bind(sums.iter().map(|s| s.period.start()).collect::<Vec<_>>())
    .bind(sums.iter().map(|s| s.readings as i32).collect::<Vec<_>>())
    .bind(sums.iter().map(|s| s.flagged as i32).collect::<Vec<_>>())
    .bind(sums.iter().map(|s| s.flags.bits() as i32).collect::<Vec<_>>())
    .bind(sums.iter().map(|s| s.first.at).collect::<Vec<_>>())
    .bind(sums.iter().map(|s| s.first.seq as i64).collect::<Vec<_>>())
    .bind(sums.iter().map(|s| s.last.at).collect::<Vec<_>>())
    .bind(sums.iter().map(|s| s.last.seq as i64).collect::<Vec<_>>());
    for g in getters {
        q = q.bind(sums.iter().map(|s| counter(&s.first, g)).collect::<Vec<_>>());
    }
    for g in getters {
        q = q.bind(sums.iter().map(|s| counter(&s.last, g)).collect::<Vec<_>>());
    }
    q.execute(&mut *tx).await?;
    Ok(())
}

/// Keeps, per site, the reading with the latest (time, sequence number).
async fn upsert_latest(
    tx: &mut sqlx::PgConnection,
    rows: &[(SiteId, AgentId, u64, &Reading, ReadingFlags)],
) -> Result<(), DbError> {
    let mut newest: BTreeMap<SiteId, &(SiteId, AgentId, u64, &Reading, ReadingFlags)> = BTreeMap::new();
    // A reading from a clock running ahead would hold the place of "latest" until real time
    // caught up; it is stored, but never shown as the latest.
    for row in rows.iter().filter(|r| !r.4.contains(ReadingFlags::CLOCK_FUTURE)) {
        let better = newest.get(&row.0).is_none_or(|cur| (row.3.at, row.2) > (cur.3.at, cur.2));
        if better {
            newest.insert(row.0, row);
        }
    }
    if newest.is_empty() {
        return Ok(());
    }
    let picked: Vec<&(SiteId, AgentId, u64, &Reading, ReadingFlags)> = newest.into_values().collect();
    let opt = |f: fn(&Reading) -> Option<i64>| picked.iter().map(|r| f(r.3)).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO site_latest AS l (site_id, agent_id, seq, measured_at, received_at, flags,
             grid_power_w, pv_power_w, battery_power_w, battery_soc_bp, grid_import_wh,
             grid_export_wh, pv_energy_wh, battery_charged_wh, battery_discharged_wh)
         SELECT s, a, q, m, now(), f, g, p, b, soc, gi, ge, pe, bc, bd
         FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[], $4::timestamptz[], $5::int4[],
             $6::int8[], $7::int8[], $8::int8[], $9::int2[], $10::int8[], $11::int8[],
             $12::int8[], $13::int8[], $14::int8[])
             AS t(s, a, q, m, f, g, p, b, soc, gi, ge, pe, bc, bd)
         ON CONFLICT (site_id) DO UPDATE SET
             agent_id = EXCLUDED.agent_id, seq = EXCLUDED.seq, measured_at = EXCLUDED.measured_at,
             received_at = EXCLUDED.received_at, flags = EXCLUDED.flags,
             grid_power_w = EXCLUDED.grid_power_w, pv_power_w = EXCLUDED.pv_power_w,
             battery_power_w = EXCLUDED.battery_power_w, battery_soc_bp = EXCLUDED.battery_soc_bp,
             grid_import_wh = EXCLUDED.grid_import_wh, grid_export_wh = EXCLUDED.grid_export_wh,
             pv_energy_wh = EXCLUDED.pv_energy_wh, battery_charged_wh = EXCLUDED.battery_charged_wh,
             battery_discharged_wh = EXCLUDED.battery_discharged_wh
         WHERE (EXCLUDED.measured_at, EXCLUDED.seq) > (l.measured_at, l.seq)",
    )
    .bind(picked.iter().map(|r| r.0.0).collect::<Vec<_>>())
    .bind(picked.iter().map(|r| r.1.0).collect::<Vec<_>>())
    .bind(picked.iter().map(|r| r.2 as i64).collect::<Vec<_>>())
    .bind(picked.iter().map(|r| r.3.at).collect::<Vec<_>>())
    .bind(picked.iter().map(|r| r.4.bits() as i32).collect::<Vec<_>>())
    .bind(opt(|r| r.grid_power.map(Watts::get)))
    .bind(opt(|r| r.pv_power.map(Watts::get)))
    .bind(opt(|r| r.battery_power.map(Watts::get)))
    .bind(picked.iter().map(|r| r.3.battery_soc.map(|s| s.basis_points() as i16)).collect::<Vec<_>>())
    .bind(opt(|r| r.grid_import.map(WattHours::get)))
    .bind(opt(|r| r.grid_export.map(WattHours::get)))
    .bind(opt(|r| r.pv_energy.map(WattHours::get)))
    .bind(opt(|r| r.battery_charged.map(WattHours::get)))
    .bind(opt(|r| r.battery_discharged.map(WattHours::get)))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
