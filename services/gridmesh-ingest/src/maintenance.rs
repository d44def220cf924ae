//! Periodic ingest jobs: the sequence-gap metric, the feeder-wide PV comparison of recently
//! completed periods, and dropping raw telemetry past its retention.

use std::time::Duration;

use chrono::Utc;
use gridmesh_core::{Period, ReadingFlags};
use gridmesh_db::Pool;
use tokio::sync::watch;

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

/// Runs the jobs until `stop` changes.
pub async fn run(pool: Pool, retention: Retention, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    let mut last_pv_period: Option<Period> = None;
    let mut last_retention: Option<chrono::NaiveDate> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        match gridmesh_db::missing_total(&pool).await {
            Ok(n) => metrics::gauge!("gridmesh_ingest_sequence_gap_readings").set(n as f64),
            Err(e) => tracing::debug!(error = %e, "gap metric not updated"),
        }
        // Compare the period that ended a minute ago or more, once, when most data is in.
        let done = Period::containing(Utc::now() - chrono::Duration::minutes(1)).prev();
        if last_pv_period != Some(done) {
            match flag_pv_outliers(&pool, done).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::warn!(flagged = n, period = %done, "PV far above the feeder neighbours");
                    }
                    last_pv_period = Some(done);
                }
                Err(e) => tracing::warn!(error = %e, "PV neighbour check failed; retrying"),
            }
        }
        let today = Utc::now().date_naive();
        if let Some(days) = retention.raw_days
            && last_retention != Some(today)
        {
            let before = today - chrono::Days::new(u64::from(days));
            match gridmesh_db::drop_telemetry_before(&pool, before).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(dropped = n, %before, "raw telemetry past retention dropped");
                    }
                    last_retention = Some(today);
                }
                Err(e) => tracing::warn!(error = %e, "retention job failed; retrying"),
            }
        }
    }
}
