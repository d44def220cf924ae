//! Each period's clearing, written once: the summary, zone prices, trades and fills.

use chrono::{DateTime, Utc};
use gridmesh_core::{GridNodeId, Period};
use gridmesh_market::{Clearing, ClearingError, Order};
use uuid::Uuid;

use super::{book, lock_period, period_of};
use crate::{DbError, Pool};

/// What a clearing stored.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Clears `period` if nobody has: takes the period's exclusive lock, loads its open book, hands
/// it to `clear`, and stores the result `clear` returns (with the SHA-256 of the result) as
/// prices, trades and fills, all in one transaction. Returns `None` when the period was already
/// cleared (by this or another replica); `clear` is not called then.
///
/// The clearing is the caller's (`gridmesh_market::clear_hashed`): this only loads and stores.
/// `clear` runs while the period is locked, so it should be a quick computation, not IO.
///
/// # Errors
/// [`DbError::Invalid`] (field `book`) when `clear` refuses the book (for example an order in a
/// zone its network does not know); database errors. Nothing is written then.
pub async fn clear_period(
    pool: &Pool,
    period: Period,
    replica: &str,
    clear: impl FnOnce(&[Order]) -> Result<(Clearing, [u8; 32]), ClearingError>,
) -> Result<Option<(ClearingSummary, Clearing)>, DbError> {
    let mut tx = pool.begin().await?;
    if lock_period(&mut tx, period, true).await? {
        return Ok(None);
    }
    let orders = book::open_orders(&mut tx, period).await?;
    let (clearing, hash) =
        clear(&orders).map_err(|e| DbError::Invalid { field: "book", reason: e.to_string() })?;
    let count = |n: usize| {
        i32::try_from(n).map_err(|_| DbError::Invalid { field: "book", reason: "too many orders".into() })
    };
    let summary: (DateTime<Utc>,) = sqlx::query_as(
        "INSERT INTO market_clearings (period_start, pricing, order_count, trade_count, volume_wh, welfare_milli,
             result_sha256, cleared_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING cleared_at",
    )
    .bind(period.start())
    .bind(clearing.rules.pricing.as_str())
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
        pricing: clearing.rules.pricing.as_str().to_owned(),
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
