//! Orders: placing, replacing and cancelling them under the period's shared lock, and reading
//! them back.

use chrono::{DateTime, Utc};
use gridmesh_core::{GridNodeId, OrderId, Period, SiteId, StrategyId, UserId, WattHours};
use gridmesh_market::Side;
use uuid::Uuid;

use super::{closed, lock_period, period_of};
use crate::{DbError, Pool};

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The columns of `market_orders` that `OrderRow` reads, in its order.
pub(super) const ORDER_COLUMNS: &str =
    "id, site_id, zone_id, period_start, side, price_per_kwh, energy_wh, status,
    filled_wh, fill_price, placed_by, strategy_id, replaces, submitted_at, closed_at";

#[derive(sqlx::FromRow)]
pub(super) struct OrderRow {
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
