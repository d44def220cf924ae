//! The market's storage: orders, standing strategies, and each period's clearing written once.
//!
//! Placing, cancelling and replacing an order take a shared advisory lock on the order's
//! period, and clearing takes it exclusively: an order either commits before the clearing reads
//! the book (and is cleared with it) or finds the period cleared and is refused. The clearing's
//! primary key on the period makes it happen exactly once, whatever number of replicas try.

use chrono::{DateTime, Utc};
use gridmesh_core::{GridNodeId, OrderId, Period, SiteId, StrategyId, UserId, WattHours};
use gridmesh_market::strategy::Strategy;
use gridmesh_market::{Clearing, Network, Order, Rules, Side};
use sha2::{Digest, Sha256};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::{DbError, Pool};

/// Class id of the market's advisory locks (the object id is the period index).
const MARKET_LOCK: i32 = 0x6d6b_7401;

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// In the book.
    Open,
    /// Withdrawn by its owner.
    Cancelled,
    /// Superseded by a new order that names it in `replaces`.
    Replaced,
    /// Its period cleared; see `filled` and `fill_price`.
    Cleared,
}

impl OrderStatus {
    /// The stored name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Open => "open",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Replaced => "replaced",
            OrderStatus::Cleared => "cleared",
        }
    }

    /// Parses a stored or queried name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => OrderStatus::Open,
            "cancelled" => OrderStatus::Cancelled,
            "replaced" => OrderStatus::Replaced,
            "cleared" => OrderStatus::Cleared,
            _ => return None,
        })
    }
}

/// An order to store.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// The site.
    pub site: SiteId,
    /// The site's feeder.
    pub zone: GridNodeId,
    /// The delivery period.
    pub period: Period,
    /// Buy or sell.
    pub side: Side,
    /// Limit price, minor units per kWh.
    pub price: i64,
    /// Energy, Wh.
    pub energy: WattHours,
    /// Who placed it.
    pub placed_by: UserId,
    /// The strategy that placed it, if any.
    pub strategy: Option<StrategyId>,
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    /// Id.
    pub id: OrderId,
    /// Site.
    pub site: SiteId,
    /// Zone (the site's feeder when placed).
    pub zone: GridNodeId,
    /// Delivery period.
    pub period: Period,
    /// Buy or sell.
    pub side: Side,
    /// Limit price, minor units per kWh.
    pub price: i64,
    /// Energy, Wh.
    pub energy: WattHours,
    /// Status.
    pub status: OrderStatus,
    /// Energy filled, once cleared.
    pub filled: Option<WattHours>,
    /// Price paid or received per kWh, once cleared with a fill.
    pub fill_price: Option<i64>,
    /// Who placed it.
    pub placed_by: UserId,
    /// The strategy that placed it, if any.
    pub strategy: Option<StrategyId>,
    /// The order it replaced, if any.
    pub replaces: Option<OrderId>,
    /// Time priority.
    pub submitted_at: DateTime<Utc>,
    /// When it stopped being open.
    pub closed_at: Option<DateTime<Utc>>,
}

const ORDER_COLUMNS: &str = "id, site_id, zone_id, period_start, side, price_per_kwh, energy_wh, status,
    filled_wh, fill_price, placed_by, strategy_id, replaces, submitted_at, closed_at";

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: Uuid,
    site_id: Uuid,
    zone_id: Uuid,
    period_start: DateTime<Utc>,
    side: String,
    price_per_kwh: i64,
    energy_wh: i64,
    status: String,
    filled_wh: Option<i64>,
    fill_price: Option<i64>,
    placed_by: Uuid,
    strategy_id: Option<Uuid>,
    replaces: Option<Uuid>,
    submitted_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
}

fn period_of(t: DateTime<Utc>) -> Result<Period, DbError> {
    Period::starting_at(t).map_err(|e| DbError::Corrupt(format!("market period {t}: {e}")))
}

impl TryFrom<OrderRow> for StoredOrder {
    type Error = DbError;
    fn try_from(r: OrderRow) -> Result<Self, DbError> {
        Ok(Self {
            id: OrderId(r.id),
            site: SiteId(r.site_id),
            zone: GridNodeId(r.zone_id),
            period: period_of(r.period_start)?,
            side: Side::parse(&r.side)
                .ok_or_else(|| DbError::Corrupt(format!("market_orders.side {:?}", r.side)))?,
            price: r.price_per_kwh,
            energy: WattHours(r.energy_wh),
            status: OrderStatus::parse(&r.status)
                .ok_or_else(|| DbError::Corrupt(format!("market_orders.status {:?}", r.status)))?,
            filled: r.filled_wh.map(WattHours),
            fill_price: r.fill_price,
            placed_by: UserId(r.placed_by),
            strategy: r.strategy_id.map(StrategyId),
            replaces: r.replaces.map(OrderId),
            submitted_at: r.submitted_at,
            closed_at: r.closed_at,
        })
    }
}

fn lock_key(period: Period) -> Result<i32, DbError> {
    i32::try_from(period.index())
        .map_err(|_| DbError::Invalid { field: "period", reason: format!("{period} is out of range") })
}

/// Takes the period's lock (shared for book changes, exclusive for clearing) and tells whether
/// the period is already cleared.
async fn lock_period(
    tx: &mut Transaction<'_, Postgres>,
    period: Period,
    exclusive: bool,
) -> Result<bool, DbError> {
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock($1, $2)"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1, $2)"
    };
    sqlx::query(sql).bind(MARKET_LOCK).bind(lock_key(period)?).execute(&mut **tx).await?;
    let cleared: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM market_clearings WHERE period_start = $1)")
            .bind(period.start())
            .fetch_one(&mut **tx)
            .await?;
    Ok(cleared)
}

fn closed(period: Period) -> DbError {
    DbError::Invalid {
        field: "period",
        reason: format!("{period} is closed: its market has already cleared"),
    }
}

/// Stores an order, replacing the open order `replaces` (same site and period) if given.
///
/// Returns `None` only for a strategy's order when that strategy already has an order in the
/// period (another replica placed it first).
///
/// # Errors
/// [`DbError::Invalid`] when the period has cleared, or the order to replace is not an open
/// order of the same site and period; database errors.
pub async fn place_order(
    pool: &Pool,
    order: &NewOrder,
    replaces: Option<OrderId>,
) -> Result<Option<StoredOrder>, DbError> {
    let mut tx = pool.begin().await?;
    if lock_period(&mut tx, order.period, false).await? {
        return Err(closed(order.period));
    }
    if let Some(old) = replaces {
        let row: Option<(Uuid, DateTime<Utc>, String)> = sqlx::query_as(
            "SELECT site_id, period_start, status FROM market_orders WHERE id = $1 FOR UPDATE",
        )
        .bind(old.0)
        .fetch_optional(&mut *tx)
        .await?;
        match row {
            Some((site, period, status)) if site == order.site.0 && period == order.period.start() => {
                if status != "open" {
                    return Err(DbError::Invalid {
                        field: "order",
                        reason: format!("is {status}; only open orders can be replaced"),
                    });
                }
            }
            _ => {
                return Err(DbError::Invalid {
                    field: "order",
                    reason: "no such order for this site and period".into(),
                });
            }
        }
        sqlx::query("UPDATE market_orders SET status = 'replaced', closed_at = now() WHERE id = $1")
            .bind(old.0)
            .execute(&mut *tx)
            .await?;
    }
    let row: Option<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO market_orders (id, site_id, zone_id, period_start, side, price_per_kwh, energy_wh,
             placed_by, strategy_id, replaces)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (strategy_id, period_start) DO NOTHING
         RETURNING {ORDER_COLUMNS}"
    )))
    .bind(Uuid::new_v4())
    .bind(order.site.0)
    .bind(order.zone.0)
    .bind(order.period.start())
    .bind(order.side.as_str())
    .bind(order.price)
    .bind(order.energy.get())
    .bind(order.placed_by.0)
    .bind(order.strategy.map(|s| s.0))
    .bind(replaces.map(|r| r.0))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    tx.commit().await?;
    Ok(Some(row.try_into()?))
}

/// Cancels an open order; `None` when there is no such order.
///
/// # Errors
/// [`DbError::Invalid`] when the order is no longer open or its period has cleared.
pub async fn cancel_order(pool: &Pool, id: OrderId) -> Result<Option<StoredOrder>, DbError> {
    let mut tx = pool.begin().await?;
    let period: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT period_start FROM market_orders WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(period) = period else { return Ok(None) };
    let period = period_of(period)?;
    if lock_period(&mut tx, period, false).await? {
        return Err(closed(period));
    }
    let row: Option<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE market_orders SET status = 'cancelled', closed_at = now()
         WHERE id = $1 AND status = 'open' RETURNING {ORDER_COLUMNS}"
    )))
    .bind(id.0)
    .fetch_optional(&mut *tx)
    .await?;
    match row {
        Some(row) => {
            tx.commit().await?;
            Ok(Some(row.try_into()?))
        }
        None => {
            let status: String = sqlx::query_scalar("SELECT status FROM market_orders WHERE id = $1")
                .bind(id.0)
                .fetch_one(&mut *tx)
                .await?;
            Err(DbError::Invalid {
                field: "order",
                reason: format!("is {status}; only open orders can be cancelled"),
            })
        }
    }
}

/// One order by id.
///
/// # Errors
/// Database errors.
pub async fn get_order(pool: &Pool, id: OrderId) -> Result<Option<StoredOrder>, DbError> {
    let row: Option<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM market_orders WHERE id = $1"
    )))
    .bind(id.0)
    .fetch_optional(pool)
    .await?;
    row.map(StoredOrder::try_from).transpose()
}

/// Which orders to list.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    /// Only orders of sites owned by this user.
    pub owner: Option<UserId>,
    /// Only this site's orders.
    pub site: Option<SiteId>,
    /// Only this period's.
    pub period: Option<Period>,
    /// Only orders with this status.
    pub status: Option<OrderStatus>,
    /// Keyset pagination: ids after this one.
    pub after: Option<OrderId>,
    /// Most rows.
    pub limit: u32,
}

/// Orders matching `filter`, ordered by id.
///
/// # Errors
/// Database errors.
pub async fn list_orders(pool: &Pool, filter: &OrderFilter) -> Result<Vec<StoredOrder>, DbError> {
    let rows: Vec<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM market_orders o
         WHERE ($1::uuid IS NULL OR o.site_id IN (SELECT id FROM sites WHERE owner_id = $1))
           AND ($2::uuid IS NULL OR o.site_id = $2)
           AND ($3::timestamptz IS NULL OR o.period_start = $3)
           AND ($4::text IS NULL OR o.status = $4)
           AND ($5::uuid IS NULL OR o.id > $5)
         ORDER BY o.id LIMIT $6"
    )))
    .bind(filter.owner.map(|u| u.0))
    .bind(filter.site.map(|s| s.0))
    .bind(filter.period.map(Period::start))
    .bind(filter.status.map(OrderStatus::as_str))
    .bind(filter.after.map(|a| a.0))
    .bind(i64::from(filter.limit.min(1000)))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(StoredOrder::try_from).collect()
}

/// Open energy at one price in one zone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DepthLevel {
    /// Zone.
    pub zone: GridNodeId,
    /// Buy or sell.
    pub side: Side,
    /// Limit price, minor units per kWh.
    pub price: i64,
    /// Energy at this price, Wh.
    pub energy_wh: i64,
    /// Number of orders.
    pub orders: i64,
}

/// The open book of a period, aggregated by zone, side and price: bids dearest first, offers
/// cheapest first.
///
/// # Errors
/// Database errors.
pub async fn book_depth(
    pool: &Pool,
    period: Period,
    zone: Option<GridNodeId>,
) -> Result<Vec<DepthLevel>, DbError> {
    let rows: Vec<(Uuid, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT zone_id, side, price_per_kwh, sum(energy_wh)::bigint, count(*)
         FROM market_orders WHERE period_start = $1 AND status = 'open' AND ($2::uuid IS NULL OR zone_id = $2)
         GROUP BY zone_id, side, price_per_kwh
         ORDER BY zone_id, side, CASE WHEN side = 'buy' THEN -price_per_kwh ELSE price_per_kwh END",
    )
    .bind(period.start())
    .bind(zone.map(|z| z.0))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(zone, side, price, energy_wh, orders)| {
            Ok(DepthLevel {
                zone: GridNodeId(zone),
                side: Side::parse(&side)
                    .ok_or_else(|| DbError::Corrupt(format!("market_orders.side {side:?}")))?,
                price,
                energy_wh,
                orders,
            })
        })
        .collect()
}

/// What a clearing stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClearingSummary {
    /// The period.
    pub period: Period,
    /// When it cleared.
    pub cleared_at: DateTime<Utc>,
    /// `pay_as_clear` or `pay_as_bid`.
    pub pricing: String,
    /// Orders in the book.
    pub order_count: i32,
    /// Trades made.
    pub trade_count: i32,
    /// Energy traded, Wh.
    pub volume_wh: i64,
    /// Welfare in thousandths of a minor unit.
    pub welfare_milli: i64,
    /// SHA-256 of the result's canonical JSON, hex.
    pub result_sha256: String,
    /// The replica that cleared it.
    pub cleared_by: String,
}

/// A zone's clearing price and flows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ZonePrice {
    /// Zone.
    pub zone: GridNodeId,
    /// Price, minor units per kWh; `None` when no order reached the zone's market.
    pub price_per_kwh: Option<i64>,
    /// Bought by the zone's own bids, Wh.
    pub bought_wh: i64,
    /// Sold by the zone's own offers, Wh.
    pub sold_wh: i64,
    /// Net energy sent to the parent zone, Wh.
    pub net_export_wh: i64,
    /// The link to the parent is congested.
    pub congested: bool,
}

/// Clears `period` if nobody has: reads the open book under the period's exclusive lock, runs
/// `gridmesh_market::clear`, and stores prices, trades and fills in one transaction. Returns
/// `None` when the period was already cleared (by this or another replica).
///
/// # Errors
/// [`DbError::Invalid`] when the stored book does not clear (an order in a zone that is not in
/// `network`); database errors. Nothing is written then.
pub async fn clear_period(
    pool: &Pool,
    period: Period,
    network: &Network,
    rules: Rules,
    replica: &str,
) -> Result<Option<(ClearingSummary, Clearing)>, DbError> {
    let mut tx = pool.begin().await?;
    if lock_period(&mut tx, period, true).await? {
        return Ok(None);
    }
    let rows: Vec<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM market_orders WHERE period_start = $1 AND status = 'open' FOR UPDATE"
    )))
    .bind(period.start())
    .fetch_all(&mut *tx)
    .await?;
    let orders = rows
        .into_iter()
        .map(|row| {
            let o = StoredOrder::try_from(row)?;
            Ok(Order {
                id: o.id,
                site: o.site,
                zone: o.zone,
                side: o.side,
                price: o.price,
                energy: o.energy,
                submitted_at: o.submitted_at,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let clearing = gridmesh_market::clear(network, &orders, rules)
        .map_err(|e| DbError::Invalid { field: "book", reason: e.to_string() })?;
    let canonical = serde_json::to_vec(&clearing).map_err(|e| DbError::Corrupt(e.to_string()))?;
    let hash: [u8; 32] = Sha256::digest(&canonical).into();
    let count = |n: usize| {
        i32::try_from(n).map_err(|_| DbError::Invalid { field: "book", reason: "too many orders".into() })
    };
    let summary: (DateTime<Utc>,) = sqlx::query_as(
        "INSERT INTO market_clearings (period_start, pricing, order_count, trade_count, volume_wh, welfare_milli,
             result_sha256, cleared_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING cleared_at",
    )
    .bind(period.start())
    .bind(rules.pricing.as_str())
    .bind(count(orders.len())?)
    .bind(count(clearing.trades.len())?)
    .bind(clearing.volume.get())
    .bind(clearing.welfare_milli)
    .bind(&hash[..])
    .bind(replica)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO market_zone_prices (period_start, zone_id, price_per_kwh, bought_wh, sold_wh, net_export_wh, congested)
         SELECT $1, * FROM UNNEST($2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bool[])",
    )
    .bind(period.start())
    .bind(clearing.zones.iter().map(|z| z.zone.0).collect::<Vec<_>>())
    .bind(clearing.zones.iter().map(|z| z.price).collect::<Vec<_>>())
    .bind(clearing.zones.iter().map(|z| z.bought.get()).collect::<Vec<_>>())
    .bind(clearing.zones.iter().map(|z| z.sold.get()).collect::<Vec<_>>())
    .bind(clearing.zones.iter().map(|z| z.net_export.get()).collect::<Vec<_>>())
    .bind(clearing.zones.iter().map(|z| z.congested).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    let t = &clearing.trades;
    sqlx::query(
        "INSERT INTO market_trades (period_start, seq, sell_order, buy_order, seller_site, buyer_site, energy_wh,
             seller_price, buyer_price, path, grid_fee_per_kwh)
         SELECT $1, u.seq, u.s, u.b, u.ss, u.bs, u.e, u.sp, u.bp, string_to_array(u.path, ',')::uuid[], u.fee
         FROM UNNEST($2::int4[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::bigint[], $8::bigint[],
                     $9::bigint[], $10::text[], $11::bigint[]) AS u(seq, s, b, ss, bs, e, sp, bp, path, fee)",
    )
    .bind(period.start())
    .bind((0..t.len()).map(count).collect::<Result<Vec<_>, _>>()?)
    .bind(t.iter().map(|x| x.sell_order.0).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.buy_order.0).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.seller.0).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.buyer.0).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.energy.get()).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.seller_price).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.buyer_price).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.path.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")).collect::<Vec<_>>())
    .bind(t.iter().map(|x| x.grid_fee_per_kwh).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    let f = &clearing.fills;
    sqlx::query(
        "UPDATE market_orders o SET status = 'cleared', filled_wh = u.filled, fill_price = u.price, closed_at = now()
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[]) AS u(id, filled, price) WHERE o.id = u.id",
    )
    .bind(f.iter().map(|x| x.order.0).collect::<Vec<_>>())
    .bind(f.iter().map(|x| x.filled.get()).collect::<Vec<_>>())
    .bind(f.iter().map(|x| x.price).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let summary = ClearingSummary {
        period,
        cleared_at: summary.0,
        pricing: rules.pricing.as_str().to_owned(),
        order_count: count(orders.len())?,
        trade_count: count(clearing.trades.len())?,
        volume_wh: clearing.volume.get(),
        welfare_milli: clearing.welfare_milli,
        result_sha256: hex::encode(hash),
        cleared_by: replica.to_owned(),
    };
    Ok(Some((summary, clearing)))
}

/// Periods up to `latest` that still need clearing: those with open orders, and `latest` itself
/// when it has not cleared, oldest first.
///
/// # Errors
/// Database errors.
pub async fn periods_to_clear(pool: &Pool, latest: Period) -> Result<Vec<Period>, DbError> {
    let rows: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT p FROM (
             SELECT DISTINCT period_start AS p FROM market_orders WHERE status = 'open' AND period_start <= $1
             UNION SELECT $1
         ) due
         WHERE NOT EXISTS (SELECT 1 FROM market_clearings c WHERE c.period_start = due.p)
         ORDER BY p",
    )
    .bind(latest.start())
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(period_of).collect()
}

#[derive(sqlx::FromRow)]
struct ClearingRow {
    cleared_at: DateTime<Utc>,
    pricing: String,
    order_count: i32,
    trade_count: i32,
    volume_wh: i64,
    welfare_milli: i64,
    result_sha256: Vec<u8>,
    cleared_by: String,
}

/// A period's clearing summary and zone prices, if it has cleared.
///
/// # Errors
/// Database errors.
pub async fn clearing_result(
    pool: &Pool,
    period: Period,
) -> Result<Option<(ClearingSummary, Vec<ZonePrice>)>, DbError> {
    let row: Option<ClearingRow> = sqlx::query_as(
        "SELECT cleared_at, pricing, order_count, trade_count, volume_wh, welfare_milli, result_sha256, cleared_by
         FROM market_clearings WHERE period_start = $1",
    )
    .bind(period.start())
    .fetch_optional(pool)
    .await?;
    let Some(ClearingRow {
        cleared_at,
        pricing,
        order_count,
        trade_count,
        volume_wh,
        welfare_milli,
        result_sha256: hash,
        cleared_by,
    }) = row
    else {
        return Ok(None);
    };
    let zones: Vec<(Uuid, Option<i64>, i64, i64, i64, bool)> = sqlx::query_as(
        "SELECT zone_id, price_per_kwh, bought_wh, sold_wh, net_export_wh, congested
         FROM market_zone_prices WHERE period_start = $1 ORDER BY zone_id",
    )
    .bind(period.start())
    .fetch_all(pool)
    .await?;
    Ok(Some((
        ClearingSummary {
            period,
            cleared_at,
            pricing,
            order_count,
            trade_count,
            volume_wh,
            welfare_milli,
            result_sha256: hex::encode(hash),
            cleared_by,
        },
        zones
            .into_iter()
            .map(|(zone, price, bought, sold, net, congested)| ZonePrice {
                zone: GridNodeId(zone),
                price_per_kwh: price,
                bought_wh: bought,
                sold_wh: sold,
                net_export_wh: net,
                congested,
            })
            .collect(),
    )))
}

/// A stored trade.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredTrade {
    /// Delivery period.
    pub period: Period,
    /// Position in the clearing's canonical order.
    pub seq: i32,
    /// The offer.
    pub sell_order: OrderId,
    /// The bid.
    pub buy_order: OrderId,
    /// Selling site.
    pub seller_site: SiteId,
    /// Buying site.
    pub buyer_site: SiteId,
    /// Energy, Wh.
    pub energy_wh: i64,
    /// Seller receives, minor units per kWh.
    pub seller_price: i64,
    /// Buyer pays, minor units per kWh.
    pub buyer_price: i64,
    /// Zones from seller to buyer.
    pub path: Vec<GridNodeId>,
    /// Network fee, minor units per kWh.
    pub grid_fee_per_kwh: i64,
}

/// Which trades to list.
#[derive(Debug, Clone, Default)]
pub struct TradeFilter {
    /// Only trades where a site of this owner buys or sells.
    pub owner: Option<UserId>,
    /// Only trades where this site buys or sells.
    pub site: Option<SiteId>,
    /// Only this period.
    pub period: Option<Period>,
    /// Keyset pagination: after this (period, seq).
    pub after: Option<(Period, i32)>,
    /// Most rows.
    pub limit: u32,
}

/// Trades matching `filter`, by period then position.
///
/// # Errors
/// Database errors.
pub async fn list_trades(pool: &Pool, filter: &TradeFilter) -> Result<Vec<StoredTrade>, DbError> {
    type Row = (DateTime<Utc>, i32, Uuid, Uuid, Uuid, Uuid, i64, i64, i64, Vec<Uuid>, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT period_start, seq, sell_order, buy_order, seller_site, buyer_site, energy_wh, seller_price,
             buyer_price, path, grid_fee_per_kwh
         FROM market_trades t
         WHERE ($1::uuid IS NULL OR t.seller_site IN (SELECT id FROM sites WHERE owner_id = $1)
                OR t.buyer_site IN (SELECT id FROM sites WHERE owner_id = $1))
           AND ($2::uuid IS NULL OR t.seller_site = $2 OR t.buyer_site = $2)
           AND ($3::timestamptz IS NULL OR t.period_start = $3)
           AND ($4::timestamptz IS NULL OR (t.period_start, t.seq) > ($4, $5))
         ORDER BY t.period_start, t.seq LIMIT $6",
    )
    .bind(filter.owner.map(|u| u.0))
    .bind(filter.site.map(|s| s.0))
    .bind(filter.period.map(Period::start))
    .bind(filter.after.map(|a| a.0.start()))
    .bind(filter.after.map_or(0, |a| a.1))
    .bind(i64::from(filter.limit.min(1000)))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(p, seq, so, bo, ss, bs, e, sp, bp, path, fee)| {
            Ok(StoredTrade {
                period: period_of(p)?,
                seq,
                sell_order: OrderId(so),
                buy_order: OrderId(bo),
                seller_site: SiteId(ss),
                buyer_site: SiteId(bs),
                energy_wh: e,
                seller_price: sp,
                buyer_price: bp,
                path: path.into_iter().map(GridNodeId).collect(),
                grid_fee_per_kwh: fee,
            })
        })
        .collect()
}

/// A standing strategy of a site.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredStrategy {
    /// Id.
    pub id: StrategyId,
    /// Site.
    pub site: SiteId,
    /// The strategy.
    pub strategy: Strategy,
    /// Who set it up.
    pub created_by: UserId,
    /// When.
    pub created_at: DateTime<Utc>,
}

type StrategyRow = (Uuid, Uuid, serde_json::Value, Uuid, DateTime<Utc>);

fn strategy_from(r: StrategyRow) -> Result<StoredStrategy, DbError> {
    Ok(StoredStrategy {
        id: StrategyId(r.0),
        site: SiteId(r.1),
        strategy: serde_json::from_value(r.2)
            .map_err(|e| DbError::Corrupt(format!("market_strategies.params: {e}")))?,
        created_by: UserId(r.3),
        created_at: r.4,
    })
}

/// Stores a strategy for a site; one active strategy of each kind per site
/// (`market_strategies_one_kind`).
///
/// # Errors
/// [`DbError::Constraint`] for a second strategy of the same kind; database errors.
pub async fn create_strategy(
    pool: &Pool,
    site: SiteId,
    strategy: &Strategy,
    created_by: UserId,
) -> Result<StoredStrategy, DbError> {
    let params = serde_json::to_value(strategy).map_err(|e| DbError::Corrupt(e.to_string()))?;
    let row: StrategyRow = sqlx::query_as(
        "INSERT INTO market_strategies (id, site_id, kind, params, created_by) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, site_id, params, created_by, created_at",
    )
    .bind(Uuid::new_v4())
    .bind(site.0)
    .bind(strategy.kind())
    .bind(params)
    .bind(created_by.0)
    .fetch_one(pool)
    .await?;
    strategy_from(row)
}

/// Active strategies, of one owner's sites and/or one site.
///
/// # Errors
/// Database errors.
pub async fn list_strategies(
    pool: &Pool,
    owner: Option<UserId>,
    site: Option<SiteId>,
) -> Result<Vec<StoredStrategy>, DbError> {
    let rows: Vec<StrategyRow> = sqlx::query_as(
        "SELECT s.id, s.site_id, s.params, s.created_by, s.created_at FROM market_strategies s
         WHERE s.disabled_at IS NULL
           AND ($1::uuid IS NULL OR s.site_id IN (SELECT id FROM sites WHERE owner_id = $1))
           AND ($2::uuid IS NULL OR s.site_id = $2)
         ORDER BY s.site_id, s.kind LIMIT 1000",
    )
    .bind(owner.map(|u| u.0))
    .bind(site.map(|s| s.0))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(strategy_from).collect()
}

/// One active strategy by id.
///
/// # Errors
/// Database errors.
pub async fn get_strategy(pool: &Pool, id: StrategyId) -> Result<Option<StoredStrategy>, DbError> {
    let row: Option<StrategyRow> = sqlx::query_as(
        "SELECT id, site_id, params, created_by, created_at FROM market_strategies WHERE id = $1 AND disabled_at IS NULL",
    )
    .bind(id.0)
    .fetch_optional(pool)
    .await?;
    row.map(strategy_from).transpose()
}

/// Stops a strategy (orders it placed stay as they are). Returns false when it was not active.
///
/// # Errors
/// Database errors.
pub async fn disable_strategy(pool: &Pool, id: StrategyId) -> Result<bool, DbError> {
    let done =
        sqlx::query("UPDATE market_strategies SET disabled_at = now() WHERE id = $1 AND disabled_at IS NULL")
            .bind(id.0)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Active strategies that have not placed an order for `period` yet, by id.
///
/// # Errors
/// Database errors.
pub async fn strategies_due(pool: &Pool, period: Period) -> Result<Vec<StoredStrategy>, DbError> {
    let rows: Vec<StrategyRow> = sqlx::query_as(
        "SELECT s.id, s.site_id, s.params, s.created_by, s.created_at FROM market_strategies s
         WHERE s.disabled_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM market_orders o WHERE o.strategy_id = s.id AND o.period_start = $1)
         ORDER BY s.id",
    )
    .bind(period.start())
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(strategy_from).collect()
}

/// What a site committed to deliver in a cleared period: energy sold minus energy bought in the
/// market, Wh (positive: the site must export that much beyond its baseline). The balancing
/// optimizer takes these as soft targets; settlement prices the difference from metered energy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Commitment {
    /// The site.
    pub site: SiteId,
    /// Sold in the market, Wh.
    pub sold_wh: i64,
    /// Bought in the market, Wh.
    pub bought_wh: i64,
    /// `sold_wh − bought_wh`.
    pub net_wh: i64,
}

/// Every site's market position in a cleared period, by site id.
///
/// # Errors
/// Database errors.
pub async fn delivery_commitments(pool: &Pool, period: Period) -> Result<Vec<Commitment>, DbError> {
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT site, sum(sold)::bigint, sum(bought)::bigint FROM (
             SELECT seller_site AS site, energy_wh AS sold, 0 AS bought FROM market_trades WHERE period_start = $1
             UNION ALL
             SELECT buyer_site, 0, energy_wh FROM market_trades WHERE period_start = $1
         ) t GROUP BY site ORDER BY site",
    )
    .bind(period.start())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(site, sold, bought)| Commitment {
            site: SiteId(site),
            sold_wh: sold,
            bought_wh: bought,
            net_wh: sold - bought,
        })
        .collect())
}
