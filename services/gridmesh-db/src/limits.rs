//! Limit windows: a node's limits for a while, replacing its own (a seasonal limit, an outage).

use chrono::{DateTime, Utc};
use gridmesh_core::{GridNodeId, LimitWindow, UserId, Watts};
use uuid::Uuid;

use crate::{DbError, Pool};

/// A stored window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLimitWindow {
    /// Its id.
    pub id: Uuid,
    /// The window.
    pub window: LimitWindow,
    /// Why (free text).
    pub reason: String,
    /// Who added it.
    pub created_by: Option<UserId>,
    /// When.
    pub created_at: DateTime<Utc>,
}

type WindowRow =
    (Uuid, Uuid, DateTime<Utc>, DateTime<Utc>, Option<i64>, Option<i64>, String, Option<Uuid>, DateTime<Utc>);

fn window_of(r: WindowRow) -> StoredLimitWindow {
    let (id, node, from, until, imp, exp, reason, by, at) = r;
    StoredLimitWindow {
        id,
        window: LimitWindow {
            node: GridNodeId(node),
            from,
            until,
            import_limit: imp.map(Watts),
            export_limit: exp.map(Watts),
        },
        reason,
        created_by: by.map(UserId),
        created_at: at,
    }
}

/// Stores a window; returns its id.
///
/// # Errors
/// [`DbError::Constraint`]: `grid_limit_windows_node_id_fkey` for an unknown node,
/// `grid_limit_windows_span` for an end not after the start, `grid_limit_windows_some_limit`
/// for a window that limits nothing.
pub async fn add_limit_window(
    pool: &Pool,
    window: &LimitWindow,
    reason: &str,
    created_by: Option<UserId>,
) -> Result<Uuid, DbError> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO grid_limit_windows (id, node_id, valid_from, valid_until, import_limit_w, export_limit_w,
             reason, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(window.node.0)
    .bind(window.from)
    .bind(window.until)
    .bind(window.import_limit.map(Watts::get))
    .bind(window.export_limit.map(Watts::get))
    .bind(reason)
    .bind(created_by.map(|u| u.0))
    .execute(pool)
    .await?;
    Ok(id)
}

/// Windows overlapping `[from, until)`, of `node` only when given, by start.
///
/// # Errors
/// Database errors.
pub async fn limit_windows_between(
    pool: &Pool,
    node: Option<GridNodeId>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<StoredLimitWindow>, DbError> {
    let rows: Vec<WindowRow> = sqlx::query_as(
        "SELECT id, node_id, valid_from, valid_until, import_limit_w, export_limit_w, reason, created_by, created_at
         FROM grid_limit_windows
         WHERE valid_until > $1 AND valid_from < $2 AND ($3::uuid IS NULL OR node_id = $3)
         ORDER BY valid_from, id",
    )
    .bind(from)
    .bind(until)
    .bind(node.map(|n| n.0))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(window_of).collect())
}

/// Removes a window; false when there was none.
///
/// # Errors
/// Database errors.
pub async fn remove_limit_window(pool: &Pool, id: Uuid) -> Result<bool, DbError> {
    Ok(sqlx::query("DELETE FROM grid_limit_windows WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
        == 1)
}

/// How many windows there are and when the last was added: the dispatch loop plans again when
/// this changes.
///
/// # Errors
/// Database errors.
pub async fn limit_windows_version(pool: &Pool) -> Result<(i64, Option<DateTime<Utc>>), DbError> {
    Ok(sqlx::query_as("SELECT count(*), max(created_at) FROM grid_limit_windows").fetch_one(pool).await?)
}
