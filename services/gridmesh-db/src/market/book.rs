//! The open book of a period: its depth for callers to show, and its orders as the clearing
//! takes them.

use gridmesh_core::{GridNodeId, Period};
use gridmesh_market::{Order, Side};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::orders::{ORDER_COLUMNS, OrderRow};
use crate::{DbError, Pool, StoredOrder};

/// Open energy at one price in one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The period's open orders as the clearing takes them, locked (`FOR UPDATE`) in `tx`: the
/// caller holds the period's exclusive lock, so no order can join or leave the book before the
/// result is stored.
///
/// # Errors
/// Database errors; [`DbError::Corrupt`] for a stored order that does not decode.
pub(super) async fn open_orders(
    tx: &mut Transaction<'_, Postgres>,
    period: Period,
) -> Result<Vec<Order>, DbError> {
    let rows: Vec<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM market_orders WHERE period_start = $1 AND status = 'open' FOR UPDATE"
    )))
    .bind(period.start())
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
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
        .collect()
}
