//! Delivery commitments: each site's net market position in a cleared period, from its trades.

use gridmesh_core::{Period, SiteId};
use uuid::Uuid;

use crate::{DbError, Pool};

/// What a site committed to deliver in a cleared period: energy sold minus energy bought in the
/// market, Wh (positive: the site must export that much beyond its baseline). The balancing
/// optimizer takes these as soft targets; settlement prices the difference from metered energy.
#[derive(Debug, Clone, PartialEq, Eq)]
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
