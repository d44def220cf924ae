//! Telemetry partitions kept ready: from yesterday to a week ahead, checked every hour (and at
//! start-up, by [`crate::serve::start`], before ingest takes its first reading).

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use gridmesh_db::Pool;

use super::{Job, JobCtx, Shutdown};

/// Days of telemetry partitions kept ready ahead of today.
const DAYS_AHEAD: u16 = 7;

/// How often the partitions are checked.
const EVERY: Duration = Duration::from_secs(3600);

/// Makes sure telemetry partitions exist from yesterday to [`DAYS_AHEAD`] days ahead.
///
/// # Errors
/// Database errors.
pub async fn ensure(pool: &Pool) -> anyhow::Result<()> {
    let yesterday = Utc::now().date_naive() - chrono::Days::new(1);
    let created = gridmesh_db::ensure_telemetry_partitions(pool, yesterday, DAYS_AHEAD + 2)
        .await
        .context("creating telemetry partitions")?;
    if created > 0 {
        tracing::info!(created, "telemetry partitions created");
    }
    Ok(())
}

/// Checks the partitions every hour until `shutdown`.
pub async fn run(ctx: JobCtx, mut shutdown: Shutdown) {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shutdown.tick(&mut every).await {
        ctx.round(Job::Partitions, "partition upkeep", ensure(&ctx.pool)).await;
    }
}
