//! The grid as grid files see it: nodes with their codes, each feeder's homes, and an import
//! applied in one transaction. What to change is decided in `gridmesh_core::grid_file::plan`;
//! this module only reads and writes.

use std::collections::HashMap;

use gridmesh_core::grid_file::{Change, ImportPlan, StoredNode};
use gridmesh_core::{GridNode, GridNodeId, GridNodeKind, Watts};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{DbError, Pool};

type NodeRow = (Uuid, Option<Uuid>, String, String, i64, i64, Option<String>);

/// Every grid node with its code, oldest first.
///
/// # Errors
/// Database errors; a stored kind this version does not know is [`DbError::Corrupt`].
pub async fn stored_grid(pool: &Pool) -> Result<Vec<StoredNode>, DbError> {
    stored_grid_on(&mut *pool.acquire().await?).await
}

async fn stored_grid_on(conn: &mut PgConnection) -> Result<Vec<StoredNode>, DbError> {
    let rows: Vec<NodeRow> = sqlx::query_as(
        "SELECT id, parent_id, kind, name, import_limit_w, export_limit_w, code FROM grid_nodes
         WHERE retired_at IS NULL ORDER BY created_at, id",
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(id, parent, kind, name, imp, exp, code)| {
            let kind = match kind.as_str() {
                "transformer" => GridNodeKind::Transformer,
                "feeder" => GridNodeKind::Feeder,
                other => return Err(DbError::Corrupt(format!("grid_nodes.kind {other:?}"))),
            };
            let node = GridNode {
                id: GridNodeId(id),
                kind,
                parent: parent.map(GridNodeId),
                name,
                import_limit: Watts(imp),
                export_limit: Watts(exp),
            };
            Ok(StoredNode { node, code })
        })
        .collect()
}

/// Each feeder's sum of its homes' import connection limits, W.
///
/// # Errors
/// Database errors.
pub async fn homes_import_by_feeder(pool: &Pool) -> Result<HashMap<GridNodeId, i64>, DbError> {
    homes_import_on(&mut *pool.acquire().await?).await
}

async fn homes_import_on(conn: &mut PgConnection) -> Result<HashMap<GridNodeId, i64>, DbError> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT feeder_id, sum(grid_import_limit_w)::bigint FROM sites
             WHERE feeder_id IS NOT NULL AND decommissioned_at IS NULL
             GROUP BY feeder_id",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(f, w)| (GridNodeId(f), w)).collect())
}

/// Imports a grid: with the tree locked (as the cycle trigger locks it), reads the stored grid
/// and each feeder's homes, asks `plan` what to change, and applies it in one transaction, or
/// only answers it for a dry run. A plan made and applied under one lock cannot be overtaken by
/// another change of the tree.
///
/// # Errors
/// [`DbError::Constraint`] naming a rule the database enforces; nothing is written then. A
/// refused plan is `Ok(Err(..))`.
pub async fn import_grid<E>(
    pool: &Pool,
    dry_run: bool,
    plan: impl FnOnce(&[StoredNode], &HashMap<GridNodeId, i64>) -> Result<ImportPlan, E>,
) -> Result<Result<ImportPlan, E>, DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('gridmesh_grid_nodes_tree'))")
        .execute(&mut *tx)
        .await?;
    let stored = stored_grid_on(&mut tx).await?;
    let homes = homes_import_on(&mut tx).await?;
    let plan = match plan(&stored, &homes) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    if dry_run {
        return Ok(Ok(plan));
    }
    // Moved nodes let go of their old parents first, so that a new shape the plan checked as a
    // tree is never refused for a loop that exists only halfway through.
    for change in &plan.changes {
        if let Change::Update { before, after, .. } = change
            && before.parent != after.parent
        {
            sqlx::query("UPDATE grid_nodes SET parent_id = NULL WHERE id = $1")
                .bind(after.id.0)
                .execute(&mut *tx)
                .await?;
        }
    }
    for change in &plan.changes {
        match change {
            Change::Create { code, node } => crate::grid::insert_node_on(&mut tx, node, Some(code)).await?,
            Change::Update { after, .. } => {
                sqlx::query(
                    "UPDATE grid_nodes SET parent_id = $2, kind = $3, name = $4, import_limit_w = $5,
                         export_limit_w = $6
                     WHERE id = $1",
                )
                .bind(after.id.0)
                .bind(after.parent.map(|p| p.0))
                .bind(after.kind.as_str())
                .bind(&after.name)
                .bind(after.import_limit.get())
                .bind(after.export_limit.get())
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(Ok(plan))
}
