//! Ingest upkeep every 30 seconds: the sequence-gap metric, the feeder-wide PV comparison of the
//! period that just ended, and dropping raw telemetry past its retention once a day. The checks
//! themselves are [`gridmesh_ingest::maintenance`]'s.

use std::time::Duration;

use chrono::Utc;

use super::{Job, JobCtx, Shutdown};

/// How often the upkeep runs.
const EVERY: Duration = Duration::from_secs(30);

/// Runs the upkeep until `shutdown`.
pub async fn run(ctx: JobCtx, mut shutdown: Shutdown) {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = gridmesh_ingest::maintenance::Upkeep::default();
    let retention = ctx.settings.retention;
    while !shutdown.tick(&mut every).await {
        ctx.round(Job::Retention, "ingest upkeep", state.round(&ctx.pool, retention, Utc::now())).await;
    }
}
