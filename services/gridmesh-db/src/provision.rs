//! Idempotent creation with caller-chosen ids, for tools that set up a known neighbourhood
//! (the provisioning endpoints of the API, central tests and benchmarks) and may run again:
//! existing rows are left as they are, and the caller is told what is stored.

use gridmesh_core::{AgentId, GridNode, GridNodeId, GridNodeKind, Role, Site, SiteId, UserId, Watts};
use uuid::Uuid;

use crate::{DbError, Pool, User};

/// What an `ensure_*` call found or made.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensured<T> {
    /// True when this call created the row; false when it existed already.
    pub created: bool,
    /// The row as stored: when it existed, as it was, whatever the caller asked for.
    pub stored: T,
}

/// What [`ensure_agent`] found or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnsuredAgent {
    /// True when this call registered the agent.
    pub created: bool,
    /// The next sequence number the agent should use: one past the highest it has delivered.
    pub next_seq: u64,
}

/// An agent with its device key, as [`ensure_agent`] takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentEnrolment<'a> {
    /// The agent.
    pub id: AgentId,
    /// Its site.
    pub site: SiteId,
    /// A name for people (at most 200 characters).
    pub name: &'a str,
    /// Its ed25519 public key.
    pub public_key: [u8; 32],
}

/// A whole simulated neighbourhood, for [`ensure_neighbourhood`].
#[derive(Debug, Clone, Copy)]
pub struct Neighbourhood<'a> {
    /// The account that owns every site.
    pub owner: UserId,
    /// The owner's name.
    pub owner_name: &'a str,
    /// The owner's role.
    pub owner_role: Role,
    /// Transformers and feeders, every parent before its children.
    pub nodes: &'a [GridNode],
    /// The sites, on feeders of `nodes` (or already stored).
    pub sites: &'a [Site],
    /// The agents, on sites of `sites` (or already stored).
    pub agents: &'a [AgentEnrolment<'a>],
}

/// Creates the user unless one with this id exists.
///
/// # Errors
/// Database errors (`users_name_check` for a name that is empty or too long).
pub async fn ensure_user(pool: &Pool, id: UserId, name: &str, role: Role) -> Result<Ensured<User>, DbError> {
    let done =
        sqlx::query("INSERT INTO users (id, name, role) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(id.0)
            .bind(name)
            .bind(role.as_str())
            .execute(pool)
            .await?;
    let stored = crate::get_user(pool, id)
        .await?
        .ok_or_else(|| DbError::Corrupt(format!("user {id} neither inserted nor found")))?;
    Ok(Ensured { created: done.rows_affected() == 1, stored })
}

/// Creates the grid node unless one with this id exists.
///
/// # Errors
/// Database errors, including the tree checks of [`crate::insert_grid_node`].
pub async fn ensure_grid_node(pool: &Pool, node: &GridNode) -> Result<Ensured<GridNode>, DbError> {
    // Look first: an existing node is answered as it is even when the new description would
    // break a rule (a parent since deleted, say), and the tree trigger's lock is not taken.
    if let Some(stored) = get_grid_node(pool, node.id).await? {
        return Ok(Ensured { created: false, stored });
    }
    match crate::insert_grid_node(pool, node).await {
        Ok(()) => Ok(Ensured { created: true, stored: node.clone() }),
        // Created by a concurrent call between the look and the insert.
        Err(e) if e.constraint() == Some("grid_nodes_pkey") => {
            let stored = get_grid_node(pool, node.id).await?.ok_or(e)?;
            Ok(Ensured { created: false, stored })
        }
        Err(e) => Err(e),
    }
}

/// Creates the site unless one with this id exists.
///
/// # Errors
/// Database errors, including the checks of [`crate::insert_site`].
pub async fn ensure_site(pool: &Pool, site: &Site) -> Result<Ensured<Site>, DbError> {
    if let Some(stored) = crate::get_site(pool, site.id).await? {
        return Ok(Ensured { created: false, stored });
    }
    match crate::insert_site(pool, site).await {
        Ok(()) => Ok(Ensured { created: true, stored: site.clone() }),
        Err(e) if e.constraint() == Some("sites_pkey") => {
            let stored = crate::get_site(pool, site.id).await?.ok_or(e)?;
            Ok(Ensured { created: false, stored })
        }
        Err(e) => Err(e),
    }
}

/// Registers the agent for its site unless it exists, and makes `public_key` its active key
/// (rotating out another key it had), in one transaction. Returns the next sequence number the
/// agent should use, so a restarted simulator never reuses one.
///
/// # Errors
/// [`DbError::Invalid`] (field `agent`) when the agent exists for another site, or the key is
/// active for another agent; nothing is written then. [`DbError::Constraint`]
/// `agents_site_id_fkey` for an unknown site, `agent_keys_unique_key` for a key that was
/// enrolled once and revoked (a revoked key is never taken back).
pub async fn ensure_agent(pool: &Pool, agent: &AgentEnrolment<'_>) -> Result<EnsuredAgent, DbError> {
    let mut tx = pool.begin().await?;
    let holder: Option<Uuid> =
        sqlx::query_scalar("SELECT agent_id FROM agent_keys WHERE public_key = $1 AND revoked_at IS NULL")
            .bind(agent.public_key.as_slice())
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(other) = holder.filter(|a| *a != agent.id.0) {
        return Err(DbError::Invalid {
            field: "agent",
            reason: format!("the key is enrolled for agent {other}, not {}", agent.id),
        });
    }
    let done =
        sqlx::query("INSERT INTO agents (id, site_id, name) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(agent.id.0)
            .bind(agent.site.0)
            .bind(agent.name)
            .execute(&mut *tx)
            .await?;
    let site: Uuid = sqlx::query_scalar("SELECT site_id FROM agents WHERE id = $1")
        .bind(agent.id.0)
        .fetch_one(&mut *tx)
        .await?;
    if site != agent.site.0 {
        return Err(DbError::Invalid {
            field: "agent",
            reason: format!("agent {} belongs to site {site}, not {}", agent.id, agent.site),
        });
    }
    if holder.is_none() {
        // The same rotation as `enroll_key`, inside this transaction.
        sqlx::query(
            "UPDATE agent_keys SET revoked_at = now(), revoked_reason = 'rotated'
             WHERE agent_id = $1 AND revoked_at IS NULL",
        )
        .bind(agent.id.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO agent_keys (id, agent_id, public_key) VALUES ($1, $2, $3)")
            .bind(Uuid::new_v4())
            .bind(agent.id.0)
            .bind(agent.public_key.as_slice())
            .execute(&mut *tx)
            .await?;
    }
    let next: Option<i64> =
        sqlx::query_scalar("SELECT upper(ranges) FROM agent_sequences WHERE agent_id = $1")
            .bind(agent.id.0)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
    tx.commit().await?;
    Ok(EnsuredAgent { created: done.rows_affected() == 1, next_seq: next.map_or(0, |n| n.max(0) as u64) })
}

/// Ensures a whole neighbourhood in one go: the owner, the grid nodes (in order), the sites and
/// the agents with their keys, each as its `ensure_*` function does. Returns each agent's next
/// sequence number, in the order of `agents`.
///
/// # Errors
/// The first error of the `ensure_*` functions; what was ensured before it stays (running
/// again completes it).
pub async fn ensure_neighbourhood(pool: &Pool, n: &Neighbourhood<'_>) -> Result<Vec<u64>, DbError> {
    ensure_user(pool, n.owner, n.owner_name, n.owner_role).await?;
    for node in n.nodes {
        ensure_grid_node(pool, node).await?;
    }
    for site in n.sites {
        ensure_site(pool, site).await?;
    }
    let mut next = Vec::with_capacity(n.agents.len());
    for agent in n.agents {
        next.push(ensure_agent(pool, agent).await?.next_seq);
    }
    Ok(next)
}

/// One grid node by id.
async fn get_grid_node(pool: &Pool, id: GridNodeId) -> Result<Option<GridNode>, DbError> {
    let row: Option<(Option<Uuid>, String, String, i64, i64)> = sqlx::query_as(
        "SELECT parent_id, kind, name, import_limit_w, export_limit_w FROM grid_nodes WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(pool)
    .await?;
    row.map(|(parent, kind, name, import, export)| {
        let kind = match kind.as_str() {
            "transformer" => GridNodeKind::Transformer,
            "feeder" => GridNodeKind::Feeder,
            other => return Err(DbError::Corrupt(format!("grid_nodes.kind {other:?}"))),
        };
        Ok(GridNode {
            id,
            kind,
            parent: parent.map(GridNodeId),
            name,
            import_limit: Watts(import),
            export_limit: Watts(export),
        })
    })
    .transpose()
}
