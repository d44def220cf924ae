//! Ingest upkeep, run in rounds by the server's retention job: the sequence-gap metric, the
//! feeder-wide PV comparison of recently completed periods, and dropping raw telemetry past its
//! retention.

use chrono::{DateTime, Utc};
use gridmesh_core::{Period, ReadingFlags};
use gridmesh_db::Pool;

use crate::plausibility::{PvSample, pv_outliers};

/// How long raw readings are kept (15-minute summaries are kept for good).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Days of raw telemetry to keep; `None` keeps everything.
    pub raw_days: Option<u32>,
}

/// Flags PV outliers among the sites of each feeder in `period`; returns how many were flagged.
///
/// # Errors
/// Database errors.
pub async fn flag_pv_outliers(pool: &Pool, period: Period) -> Result<usize, gridmesh_db::DbError> {
    let rows = gridmesh_db::period_pv(pool, period).await?;
    let mut by_feeder: std::collections::BTreeMap<_, Vec<PvSample>> = Default::default();
    for (feeder, site, rated_pv, pv) in rows {
        by_feeder.entry(feeder).or_default().push(PvSample { site, rated_pv, pv });
    }
    let mut flagged = 0;
    for samples in by_feeder.values() {
        let outliers = pv_outliers(samples);
        flagged += outliers.len();
        gridmesh_db::flag_period(pool, period, &outliers, ReadingFlags::PV_OUTLIER).await?;
    }
    Ok(flagged)
}

/// What the upkeep remembers between rounds, so each check runs once per period or day.
#[derive(Debug, Default)]
pub struct Upkeep {
    last_pv_period: Option<Period>,
    last_retention: Option<chrono::NaiveDate>,
}

impl Upkeep {
    /// One round at `now`: the gap metric, the PV neighbour check of the period that ended a
    /// minute or more ago (once), and the retention drop (once a day). Every step is tried;
    /// a failed one is tried again at the next round.
    ///
    /// # Errors
    /// The first failed step's database error (after the others were tried).
    pub async fn round(
        &mut self,
        pool: &Pool,
        retention: Retention,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let mut failed: Option<anyhow::Error> = None;
        match gridmesh_db::missing_total(pool).await {
            Ok(n) => metrics::gauge!("gridmesh_ingest_sequence_gap_readings").set(n as f64),
            Err(e) => tracing::debug!(error = %e, "gap metric not updated"),
        }
        // Compare the period that ended a minute ago or more, once, when most data is in.
        let done = Period::containing(now - chrono::Duration::minutes(1)).prev();
        if self.last_pv_period != Some(done) {
            match flag_pv_outliers(pool, done).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::warn!(flagged = n, period = %done, "PV far above the feeder neighbours");
                    }
                    self.last_pv_period = Some(done);
                }
                Err(e) => failed = Some(anyhow::Error::new(e).context("PV neighbour check")),
            }
        }
        let today = now.date_naive();
        if let Some(days) = retention.raw_days
            && self.last_retention != Some(today)
        {
            let before = today - chrono::Days::new(u64::from(days));
            match gridmesh_db::drop_telemetry_before(pool, before).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(dropped = n, %before, "raw telemetry past retention dropped");
                    }
                    self.last_retention = Some(today);
                }
                Err(e) => {
                    failed =
                        failed.or_else(|| Some(anyhow::Error::new(e).context("raw telemetry retention")));
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}
