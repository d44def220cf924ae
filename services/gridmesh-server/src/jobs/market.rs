//! The market job: clearing each period at gate closure, and placing the orders of standing
//! strategies before it.
//!
//! Both are safe with several replicas: clearing takes the period's lock and is written once
//! (`gridmesh_db::clear_period`), and a strategy places at most one order per period
//! (`market_orders_strategy_once`).

use std::time::{Duration, Instant};

use anyhow::Context;

use chrono::{DateTime, Utc};
use gridmesh_core::forecast::{Baseline, Forecaster};
use gridmesh_core::{Period, WattHours};
use gridmesh_db::{ClearingSummary, DbError, NewOrder, Pool, StoredStrategy};
use gridmesh_market::strategy::{BatteryOutlook, Outlook};
use gridmesh_market::{GridFees, Network, Pricing, Rules};

use super::{Job, JobCtx, Shutdown};
use crate::config::{MarketArgs, PricingArg};

/// Market rules and timing, shared by the API and the jobs.
#[derive(Debug, Clone, Copy)]
pub struct MarketSettings {
    /// How long before a period starts its book closes.
    pub gate_closure: chrono::Duration,
    /// Pricing and price bounds.
    pub rules: Rules,
    /// Largest order, Wh.
    pub max_order_wh: i64,
    /// How far ahead orders may be placed.
    pub horizon: chrono::Duration,
    /// Network fees.
    pub fees: GridFees,
    /// How often the jobs look for work.
    pub tick: Duration,
}

impl Default for MarketSettings {
    fn default() -> Self {
        Self {
            gate_closure: chrono::Duration::minutes(5),
            rules: Rules::default(),
            max_order_wh: 1_000_000,
            horizon: chrono::Duration::days(7),
            fees: GridFees::default(),
            tick: Duration::from_secs(5),
        }
    }
}

impl MarketSettings {
    /// Settings from the command line.
    #[must_use]
    pub fn from_args(a: &MarketArgs) -> Self {
        Self {
            gate_closure: chrono::Duration::seconds(i64::from(a.market_gate_closure)),
            rules: Rules {
                pricing: match a.market_pricing {
                    PricingArg::PayAsClear => Pricing::PayAsClear,
                    PricingArg::PayAsBid => Pricing::PayAsBid,
                },
                max_price: a.market_max_price,
            },
            max_order_wh: a.market_max_order_wh,
            horizon: chrono::Duration::days(i64::from(a.market_horizon_days)),
            fees: GridFees { feeder: a.market_fee_feeder, transformer: a.market_fee_transformer },
            tick: a.market_tick.max(Duration::from_secs(1)),
        }
    }

    /// The latest period whose book has closed at `now`.
    #[must_use]
    pub fn latest_closed(&self, now: DateTime<Utc>) -> Period {
        Period::containing(now + self.gate_closure)
    }

    /// When the book of `period` closes.
    #[must_use]
    pub fn gate_of(&self, period: Period) -> DateTime<Utc> {
        period.start() - self.gate_closure
    }
}

/// Clears every period whose gate has closed and that has not cleared yet (also the latest one
/// when its book is empty, so every period has a result). Returns what this call cleared.
///
/// # Errors
/// Database errors; periods cleared before the error stay cleared.
pub async fn clear_due(
    pool: &Pool,
    settings: &MarketSettings,
    now: DateTime<Utc>,
    replica: &str,
) -> Result<Vec<ClearingSummary>, DbError> {
    let due = gridmesh_db::periods_to_clear(pool, settings.latest_closed(now)).await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let topology = gridmesh_db::load_topology(pool).await?;
    let (first, last) = (due[0], due[due.len() - 1]);
    let windows: Vec<gridmesh_core::LimitWindow> =
        gridmesh_db::limit_windows_between(pool, None, first.start(), last.end())
            .await?
            .into_iter()
            .map(|w| w.window)
            .collect();
    let mut done = Vec::new();
    for period in due {
        let started = Instant::now();
        // Zone limits as in force when the period starts (a seasonal or outage window).
        let network =
            Network::from_topology(&topology.with_limits_at(&windows, period.start()), settings.fees)
                .map_err(|e| DbError::Invalid { field: "market fees", reason: e.to_string() })?;
        let clear = |book: &[_]| gridmesh_market::clear_hashed(&network, book, settings.rules);
        match gridmesh_db::clear_period(pool, period, replica, clear).await? {
            Some((summary, _)) => {
                metrics::counter!("gridmesh_market_clearings_total").increment(1);
                metrics::histogram!("gridmesh_market_clearing_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("gridmesh_market_traded_wh_total")
                    .increment(summary.volume_wh.unsigned_abs());
                tracing::info!(
                    period = %period,
                    orders = summary.order_count,
                    trades = summary.trade_count,
                    volume_wh = summary.volume_wh,
                    result_sha256 = %summary.result_sha256,
                    "market period cleared"
                );
                done.push(summary);
            }
            None => tracing::debug!(period = %period, "period already cleared by another replica"),
        }
    }
    Ok(done)
}

/// Places the orders of every strategy that has none yet for the next open period. Returns the
/// number placed.
///
/// # Errors
/// Database errors.
pub async fn run_strategies(
    pool: &Pool,
    settings: &MarketSettings,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    let period = settings.latest_closed(now).next();
    let due = gridmesh_db::strategies_due(pool, period).await?;
    let mut placed = 0;
    for s in due {
        match place_for(pool, settings, &s, period, now).await {
            Ok(true) => placed += 1,
            Ok(false) => {}
            // One site's odd data must not stop the others.
            Err(e) if !e.is_retryable() => {
                tracing::warn!(strategy = %s.id, site = %s.site, error = %e, "strategy skipped this period");
            }
            Err(e) => return Err(e),
        }
    }
    if placed > 0 {
        metrics::counter!("gridmesh_market_strategy_orders_total").increment(placed as u64);
        tracing::info!(period = %period, placed, "strategy orders placed");
    }
    Ok(placed)
}

/// The outlook of a site for `period`: the baseline forecast from its 15-minute history, and its
/// battery's state from the latest reading.
///
/// # Errors
/// Database errors.
pub async fn outlook(
    pool: &Pool,
    site: &gridmesh_core::Site,
    period: Period,
    now: DateTime<Utc>,
) -> Result<Outlook, DbError> {
    let (history, latest) = crate::forecast::site_history(pool, site, now).await?;
    let forecast = Baseline.forecast(site, &history, period);
    let battery = site.battery.map(|b| {
        let soc = latest.as_ref().and_then(|r| r.reading.battery_soc).map_or(0.5, |s| s.percent() / 100.0);
        BatteryOutlook {
            capacity: b.capacity,
            stored: WattHours((b.capacity.get() as f64 * soc).round() as i64),
            max_charge: WattHours(b.max_charge.get() / 4),
            max_discharge: WattHours(b.max_discharge.get() / 4),
        }
    });
    Ok(Outlook {
        pv: forecast.pv,
        load: forecast.load,
        battery,
        import_limit: WattHours(site.grid.import_limit.get() / 4),
        export_limit: WattHours(site.grid.export_limit.get() / 4),
    })
}

async fn place_for(
    pool: &Pool,
    settings: &MarketSettings,
    s: &StoredStrategy,
    period: Period,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let Some(site) = gridmesh_db::get_site(pool, s.site).await? else { return Ok(false) };
    // A pending home does not trade until it is on a feeder.
    let Some(zone) = site.feeder else { return Ok(false) };
    let outlook = outlook(pool, &site, period, now).await?;
    let Some(intent) = s.strategy.size(&outlook) else { return Ok(false) };
    let order = NewOrder {
        site: site.id,
        zone,
        period,
        side: intent.side,
        price: intent.price.clamp(0, settings.rules.max_price),
        energy: WattHours(intent.energy.get().min(settings.max_order_wh)),
        placed_by: s.created_by,
        strategy: Some(s.id),
    };
    Ok(gridmesh_db::place_order(pool, &order, None).await?.is_some())
}

/// How often strategies without an order for the next period are looked at again (their
/// forecast changes slowly; each look reads a week of the site's history).
const STRATEGY_EVERY: Duration = Duration::from_secs(60);

/// Runs the clearing every `settings.tick` and the strategies every minute, until `shutdown`.
pub async fn run(ctx: JobCtx, mut shutdown: Shutdown) {
    let settings = ctx.settings.market;
    let mut every = tokio::time::interval(settings.tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut strategies_ran: Option<(Instant, Period)> = None;
    while !shutdown.tick(&mut every).await {
        let now = Utc::now();
        let pool = &ctx.pool;
        ctx.round(Job::Market, "market round", async {
            let cleared =
                clear_due(pool, &settings, now, &ctx.process).await.map(drop).context("clearing the market");
            // A new open period is looked at at once; the same one again after a minute.
            let next = settings.latest_closed(now).next();
            let mut placed = Ok(());
            if !strategies_ran.is_some_and(|(at, p)| p == next && at.elapsed() < STRATEGY_EVERY) {
                placed =
                    run_strategies(pool, &settings, now).await.map(drop).context("placing strategy orders");
                if placed.is_ok() {
                    strategies_ran = Some((Instant::now(), next));
                }
            }
            super::both(cleared, placed)
        })
        .await;
    }
}
