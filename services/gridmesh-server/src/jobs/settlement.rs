//! The settlement job: settle each cleared period once its metering is complete (or its grace
//! window has passed), with its token rewards, and re-settle periods whose late data arrived.
//!
//! Every step is idempotent: a period's settlement is written once (primary key), and an
//! adjustment only when the lines changed.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use gridmesh_core::Period;
use gridmesh_db::{DbError, Pool};
use gridmesh_settlement::rewards::{distribute, emission_for};
use gridmesh_settlement::{PeriodInput, Tariffs, settle};

use super::{Job, JobCtx, Shutdown};
use crate::config::SettlementArgs;

/// How often the job looks for due periods.
const TICK: Duration = Duration::from_secs(10);

/// Longest wait between rounds after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The tariffs when none are configured (the command line's defaults too).
pub const DEFAULT_TARIFFS: Tariffs =
    Tariffs { import_price: 30, feed_in_price: 8, grid_fee_per_kwh: 10, daily_fee: 40 };

/// How far back the job looks for unsettled periods.
const LOOKBACK_PERIODS: i64 = 2 * 96;

/// Settlement settings.
#[derive(Debug, Clone, Copy)]
pub struct SettlementSettings {
    /// Prices.
    pub tariffs: Tariffs,
    /// How long after a period ends it settles even with sites missing.
    pub grace: chrono::Duration,
}

impl SettlementSettings {
    /// From the command line.
    #[must_use]
    pub fn from_args(a: &SettlementArgs) -> Self {
        Self {
            tariffs: Tariffs {
                import_price: a.tariff_import,
                feed_in_price: a.tariff_feed_in,
                grid_fee_per_kwh: a.tariff_grid_fee,
                daily_fee: a.tariff_daily_fee,
            },
            grace: chrono::Duration::from_std(a.settlement_grace)
                .unwrap_or_else(|_| chrono::Duration::minutes(5)),
        }
    }
}

impl Default for SettlementSettings {
    fn default() -> Self {
        Self { tariffs: DEFAULT_TARIFFS, grace: chrono::Duration::minutes(5) }
    }
}

/// Settles `period` from what the database holds now (IO-free [`settle`] on its inputs).
async fn settle_period(
    pool: &Pool,
    settings: &SettlementSettings,
    period: Period,
) -> Result<gridmesh_settlement::Settlement, DbError> {
    let input = PeriodInput {
        period,
        tariffs: settings.tariffs,
        sites: gridmesh_db::settlement_sites(pool, period).await?,
        trades: gridmesh_db::settlement_trades(pool, period).await?,
    };
    settle(&input).map_err(|e| DbError::Invalid { field: "settlement", reason: e.to_string() })
}

/// Settles every cleared period that is due at `now`; returns the periods settled.
///
/// Each period stands on its own: one that cannot be settled (its inputs refused by the
/// settlement, a row the database will not take) is logged, counted in
/// `gridmesh_settlement_failed_periods_total{step="settle"}` and tried again next round, and
/// the later periods settle meanwhile.
///
/// # Errors
/// Database errors worth retrying (the database away, a lost serialisation race): the round
/// stops there and the next one goes on.
pub async fn settle_due(
    pool: &Pool,
    settings: &SettlementSettings,
    genesis: Option<Period>,
    now: DateTime<Utc>,
) -> Result<Vec<Period>, DbError> {
    let latest = Period::containing(now).prev();
    let mut done = Vec::new();
    for period in gridmesh_db::periods_to_settle(pool, latest.offset(-LOOKBACK_PERIODS), latest).await? {
        match settle_one(pool, settings, genesis, now, period).await {
            Ok(true) => done.push(period),
            Ok(false) => {}
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => period_failed("settle", period, &e),
        }
    }
    Ok(done)
}

/// Settles `period` if it is due; true when this call stored its settlement.
async fn settle_one(
    pool: &Pool,
    settings: &SettlementSettings,
    genesis: Option<Period>,
    now: DateTime<Utc>,
    period: Period,
) -> Result<bool, DbError> {
    if now < period.end() + settings.grace && !gridmesh_db::metering_complete(pool, period).await? {
        return Ok(false);
    }
    let s = settle_period(pool, settings, period).await?;
    if !gridmesh_db::store_settlement(pool, &s, &settings.tariffs).await? {
        return Ok(false);
    }
    metrics::counter!("gridmesh_settlement_periods_total").increment(1);
    tracing::info!(
        period = %period,
        lines = s.lines.len(),
        total_wh = s.total_wh,
        root = %hex::encode(s.root()),
        "period settled"
    );
    if let Some(genesis) = genesis {
        let accounts = gridmesh_db::site_reward_addresses(pool).await?;
        let d =
            distribute(period, emission_for(period, genesis), &s.lines, |site| accounts.get(&site).copied());
        gridmesh_db::store_distribution(pool, &d).await?;
    }
    Ok(true)
}

/// Logs and counts a period that failed on its own, so the periods after it go on.
fn period_failed(step: &'static str, period: Period, error: &DbError) {
    metrics::counter!("gridmesh_settlement_failed_periods_total", "step" => step).increment(1);
    tracing::error!(step, period = %period, error = %error, "period failed; the later periods go on");
}

/// Re-settles periods whose lines waited for metering (flagged or missing) once their data
/// arrived or was reviewed: a new revision with the new lines, and adjusting ledger entries for
/// the difference; nothing posted before is changed, and revision 1 stays the anchored one.
/// Returns the periods adjusted. A period that fails on its own is logged and counted (see
/// [`settle_due`]) and the others go on.
///
/// # Errors
/// Database errors worth retrying.
pub async fn adjust_due(
    pool: &Pool,
    settings: &SettlementSettings,
    now: DateTime<Utc>,
) -> Result<Vec<Period>, DbError> {
    let since = Period::containing(now).offset(-LOOKBACK_PERIODS);
    let mut done = Vec::new();
    for (period, revision) in gridmesh_db::periods_awaiting_data(pool, since).await? {
        match adjust_one(pool, settings, period, revision).await {
            Ok(true) => done.push(period),
            Ok(false) => {}
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => period_failed("adjust", period, &e),
        }
    }
    Ok(done)
}

/// Re-settles `period` (last stored as `revision`); true when this call stored a new revision.
async fn adjust_one(
    pool: &Pool,
    settings: &SettlementSettings,
    period: Period,
    revision: i32,
) -> Result<bool, DbError> {
    let s = settle_period(pool, settings, period).await?;
    if gridmesh_db::revision_lines(pool, period, revision).await? == s.lines {
        return Ok(false);
    }
    let posted = gridmesh_db::period_postings(pool, period).await?;
    let entries = gridmesh_settlement::adjustments(&posted, &s.postings);
    if !gridmesh_db::store_adjustment(pool, &s, &settings.tariffs, revision + 1, &entries).await? {
        return Ok(false);
    }
    metrics::counter!("gridmesh_settlement_adjustments_total").increment(1);
    tracing::info!(period = %period, revision = revision + 1, entries = entries.len(), "late data adjusted");
    Ok(true)
}

/// Settles and adjusts every `tick` until `shutdown`; failures back off exponentially up to
/// five minutes. Reward distributions are stored with each settlement once the chain the
/// deployment file names has answered with that chain's id (the rewards' genesis comes from
/// that file); the anchor job publishes them. Until then periods settle without rewards, as
/// without a chain.
pub async fn run(ctx: JobCtx, mut shutdown: Shutdown) {
    let settings = ctx.settings.settlement;
    let chain = &ctx.settings.chain;
    let mut link: Option<super::anchor::ChainLink> = None;
    let mut chain_said: Option<String> = None;
    let mut backoff = TICK;
    loop {
        if shutdown.sleep(backoff).await {
            return;
        }
        if link.is_none() && chain.chain_rpc_url.is_some() {
            match super::anchor::ChainLink::connect(chain).await {
                Ok(l) => {
                    link = l;
                    chain_said = None;
                }
                Err(e) => {
                    // Said once per cause, not every round.
                    let why = format!("{e:#}");
                    if chain_said.as_deref() != Some(why.as_str()) {
                        tracing::warn!(error = %why, "chain not available; settling without rewards for now");
                        chain_said = Some(why);
                    }
                }
            }
        }
        let genesis = link.as_ref().and_then(|l| l.deployment.genesis().ok());
        let pool = &ctx.pool;
        let ok = ctx
            .round(Job::Settlement, "settlement round", async {
                let settled = settle_due(pool, &settings, genesis, Utc::now()).await;
                let adjusted = adjust_due(pool, &settings, Utc::now()).await;
                super::both(
                    settled.map(drop).context("settling due periods"),
                    adjusted.map(drop).context("adjusting for late data"),
                )
            })
            .await
            .is_some();
        backoff = if ok { TICK } else { (backoff * 2).min(MAX_BACKOFF) };
    }
}
