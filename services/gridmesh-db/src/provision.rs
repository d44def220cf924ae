//! Idempotent creation with caller-chosen ids, for tools that set up a known neighbourhood
//! (the simulator, benchmarks) and may run again: existing rows are left as they are.

use gridmesh_core::{AgentId, GridNode, Role, Site, SiteId, UserId};

use crate::{DbError, Pool};

/// Creates the user unless one with this id exists.
///
/// # Errors
/// Database errors.
pub async fn ensure_user(pool: &Pool, id: UserId, name: &str, role: Role) -> Result<(), DbError> {
    sqlx::query("INSERT INTO users (id, name, role) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
        .bind(id.0)
        .bind(name)
        .bind(role.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

/// Creates the grid node unless one with this id exists.
///
/// # Errors
/// Database errors, including the tree checks of [`crate::insert_grid_node`].
pub async fn ensure_grid_node(pool: &Pool, node: &GridNode) -> Result<(), DbError> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM grid_nodes WHERE id = $1)")
        .bind(node.id.0)
        .fetch_one(pool)
        .await?;
    if exists { Ok(()) } else { crate::insert_grid_node(pool, node).await }
}

/// Creates the site unless one with this id exists.
///
/// # Errors
/// Database errors, including the checks of [`crate::insert_site`].
pub async fn ensure_site(pool: &Pool, site: &Site) -> Result<(), DbError> {
    if crate::get_site(pool, site.id).await?.is_some() {
        Ok(())
    } else {
        crate::insert_site(pool, site).await
    }
}

/// Creates the agent with its key unless the agent exists; returns the next sequence number the
/// agent should use (one past the highest it has delivered), so a restarted simulator never
/// reuses one.
///
/// # Errors
/// Database errors.
pub async fn ensure_agent(
    pool: &Pool,
    id: AgentId,
    site: SiteId,
    name: &str,
    public_key: [u8; 32],
) -> Result<u64, DbError> {
    sqlx::query("INSERT INTO agents (id, site_id, name) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
        .bind(id.0)
        .bind(site.0)
        .bind(name)
        .execute(pool)
        .await?;
    if crate::find_active_key(pool, &public_key).await?.is_none() {
        crate::enroll_key(pool, id, public_key).await?;
    }
    let next: Option<i64> =
        sqlx::query_scalar("SELECT upper(ranges) FROM agent_sequences WHERE agent_id = $1")
            .bind(id.0)
            .fetch_optional(pool)
            .await?
            .flatten();
    Ok(next.map_or(0, |n| n.max(0) as u64))
}
