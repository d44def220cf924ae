//! Standing strategies: a site's automatic trading rules, stored with their parameters as JSON
//! (the strategy's own serialisation, `gridmesh_market::strategy::Strategy`).

use chrono::{DateTime, Utc};
use gridmesh_core::{Period, SiteId, StrategyId, UserId};
use gridmesh_market::strategy::Strategy;
use uuid::Uuid;

use crate::{DbError, Pool};

/// A standing strategy of a site.
#[derive(Debug, Clone, PartialEq, Eq)]
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
