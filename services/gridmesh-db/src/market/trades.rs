//! The trades of cleared periods, as the clearing stored them.

use chrono::{DateTime, Utc};
use gridmesh_core::{GridNodeId, OrderId, Period, SiteId, UserId};
use uuid::Uuid;

use super::period_of;
use crate::{DbError, Pool};

/// A stored trade.
#[derive(Debug, Clone, PartialEq, Eq)]
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
