use chrono::{DateTime, Utc};
use gridmesh_core::{AgentId, SiteId};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{DbError, Pool};

/// An enrolled agent key and whom it speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentKey {
    /// Key id.
    pub id: Uuid,
    /// The agent holding the key.
    pub agent: AgentId,
    /// The agent's site.
    pub site: SiteId,
    /// The ed25519 public key.
    pub public_key: [u8; 32],
    /// When it was enrolled.
    pub enrolled_at: DateTime<Utc>,
}

/// `agent_keys` joined with the agent's site: key id, agent, site, key, enrolment time.
type KeyRow = (Uuid, Uuid, Uuid, Vec<u8>, DateTime<Utc>);

/// Registers an agent for a site.
///
/// # Errors
/// [`DbError::Constraint`] `agents_site_id_fkey` for an unknown site.
pub async fn create_agent(pool: &Pool, site: SiteId, name: &str) -> Result<AgentId, DbError> {
    let mut conn = pool.acquire().await?;
    insert_agent(&mut conn, site, name).await
}

/// Registers an agent for a site with its first key, in one transaction: when the key is
/// refused, no agent is left behind without one.
///
/// # Errors
/// [`DbError::Constraint`] `agent_keys_unique_key` when the key is already enrolled (for any
/// agent), `agents_site_id_fkey` for an unknown site; [`DbError::Limit`] when the site has
/// `max_agents` active agents already. Nothing is written then.
pub async fn enrol_agent(
    pool: &Pool,
    site: SiteId,
    name: &str,
    public_key: [u8; 32],
    max_agents: Option<u32>,
) -> Result<AgentId, DbError> {
    let mut tx = pool.begin().await?;
    check_room(&mut tx, site, max_agents).await?;
    let agent = insert_agent(&mut tx, site, name).await?;
    insert_key(&mut tx, agent, public_key).await?;
    tx.commit().await?;
    Ok(agent)
}

/// Enrolls `public_key` as the agent's active key, revoking any key it had (rotation), in one
/// transaction.
///
/// # Errors
/// [`DbError::Constraint`] `agent_keys_unique_key` when the key is already enrolled (for this or
/// another agent), `agent_keys_agent_id_fkey` for an unknown agent.
pub async fn enroll_key(pool: &Pool, agent: AgentId, public_key: [u8; 32]) -> Result<Uuid, DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE agent_keys SET revoked_at = now(), revoked_reason = 'rotated'
         WHERE agent_id = $1 AND revoked_at IS NULL",
    )
    .bind(agent.0)
    .execute(&mut *tx)
    .await?;
    let id = insert_key(&mut tx, agent, public_key).await?;
    tx.commit().await?;
    Ok(id)
}

/// Refuses a new agent (or key) for a decommissioned site, and a new agent when the site has
/// `max` agents with an active key already. The site's row is locked first, so neither a
/// decommissioning nor another enrolment can slip in between the check and the insert.
pub(crate) async fn check_room(
    conn: &mut PgConnection,
    site: SiteId,
    max: Option<u32>,
) -> Result<(), DbError> {
    let gone: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT decommissioned_at FROM sites WHERE id = $1 FOR UPDATE")
            .bind(site.0)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(Some(at)) = gone {
        return Err(DbError::Limit(format!("the home {site} was decommissioned at {at}")));
    }
    let Some(max) = max else { return Ok(()) };
    let active: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM agents a WHERE a.site_id = $1
           AND EXISTS (SELECT 1 FROM agent_keys k WHERE k.agent_id = a.id AND k.revoked_at IS NULL)",
    )
    .bind(site.0)
    .fetch_one(&mut *conn)
    .await?;
    if active >= i64::from(max) {
        return Err(DbError::Limit(format!(
            "the home has {active} active agent(s), the most allowed ({max}); revoke one before enrolling another"
        )));
    }
    Ok(())
}

/// Rotates the key of an agent of `site` that has an active key: the old one revoked, the new
/// one active, in one transaction with the site locked. `Ok(false)` when the agent has no
/// active key (a revoked agent stays revoked: a lost box is not revived by a new key).
///
/// # Errors
/// [`DbError::Limit`] for a decommissioned site; [`DbError::Constraint`]
/// `agent_keys_unique_key` for a key enrolled before.
pub async fn rotate_active_key(
    pool: &Pool,
    site: SiteId,
    agent: AgentId,
    public_key: [u8; 32],
) -> Result<bool, DbError> {
    let mut tx = pool.begin().await?;
    check_room(&mut tx, site, None).await?;
    let revoked = sqlx::query(
        "UPDATE agent_keys SET revoked_at = now(), revoked_reason = 'rotated'
         WHERE agent_id = $1 AND revoked_at IS NULL",
    )
    .bind(agent.0)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if revoked != 1 {
        return Ok(false);
    }
    insert_key(&mut tx, agent, public_key).await?;
    tx.commit().await?;
    Ok(true)
}

pub(crate) async fn insert_agent(
    conn: &mut PgConnection,
    site: SiteId,
    name: &str,
) -> Result<AgentId, DbError> {
    let id = AgentId::new_random();
    sqlx::query("INSERT INTO agents (id, site_id, name) VALUES ($1, $2, $3)")
        .bind(id.0)
        .bind(site.0)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(id)
}

pub(crate) async fn insert_key(
    conn: &mut PgConnection,
    agent: AgentId,
    public_key: [u8; 32],
) -> Result<Uuid, DbError> {
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO agent_keys (id, agent_id, public_key) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(agent.0)
        .bind(public_key.as_slice())
        .execute(conn)
        .await?;
    Ok(id)
}

/// Revokes an agent's active key with a reason; returns whether a key was revoked.
///
/// # Errors
/// Database errors.
pub async fn revoke_key(pool: &Pool, agent: AgentId, reason: &str) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE agent_keys SET revoked_at = now(), revoked_reason = $2
         WHERE agent_id = $1 AND revoked_at IS NULL",
    )
    .bind(agent.0)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The active (not revoked) enrolment of `public_key`, if any: what ingest checks before it
/// trusts a signature.
///
/// # Errors
/// Database errors.
pub async fn find_active_key(pool: &Pool, public_key: &[u8; 32]) -> Result<Option<AgentKey>, DbError> {
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT k.id, k.agent_id, a.site_id, k.public_key, k.enrolled_at
         FROM agent_keys k JOIN agents a ON a.id = k.agent_id
         WHERE k.public_key = $1 AND k.revoked_at IS NULL",
    )
    .bind(public_key.as_slice())
    .fetch_optional(pool)
    .await?;
    row.map(|(id, agent, site, key, enrolled_at)| {
        let public_key: [u8; 32] =
            key.try_into().map_err(|_| DbError::Corrupt("agent_keys.public_key is not 32 bytes".into()))?;
        Ok(AgentKey { id, agent: AgentId(agent), site: SiteId(site), public_key, enrolled_at })
    })
    .transpose()
}

/// An agent of a site as its owner sees it: its key, where its sequence numbers stand, and
/// what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSummary {
    /// The agent.
    pub agent: AgentId,
    /// Its name.
    pub name: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// Its active key and when it was enrolled; `None` once revoked.
    pub active_key: Option<([u8; 32], DateTime<Utc>)>,
    /// When its last key was revoked and why, for an agent without an active key.
    pub revoked: Option<(DateTime<Utc>, Option<String>)>,
    /// The next sequence number it should send (0 before its first reading).
    pub next_seq: u64,
    /// Readings between its first and latest that have not arrived (yet).
    pub missing: u64,
    /// When ingest last stored a reading of it.
    pub last_seen: Option<DateTime<Utc>>,
}

type SummaryRow = (
    Uuid,
    String,
    DateTime<Utc>,
    Option<Vec<u8>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<DateTime<Utc>>,
);

/// The agents of `site`, oldest first.
///
/// # Errors
/// Database errors.
pub async fn list_agents(pool: &Pool, site: SiteId) -> Result<Vec<AgentSummary>, DbError> {
    let rows: Vec<SummaryRow> = sqlx::query_as(
        "SELECT a.id, a.name, a.created_at,
                k.public_key, k.enrolled_at,
                r.revoked_at, r.revoked_reason,
                upper(s.ranges),
                (upper(s.ranges) - lower(s.ranges))
                  - (SELECT coalesce(sum(upper(x) - lower(x)), 0) FROM unnest(s.ranges) AS x)::bigint,
                s.updated_at
         FROM agents a
         LEFT JOIN agent_keys k ON k.agent_id = a.id AND k.revoked_at IS NULL
         LEFT JOIN LATERAL (
             SELECT revoked_at, revoked_reason FROM agent_keys
             WHERE agent_id = a.id AND revoked_at IS NOT NULL ORDER BY revoked_at DESC LIMIT 1
         ) r ON k.id IS NULL
         LEFT JOIN agent_sequences s ON s.agent_id = a.id
         WHERE a.site_id = $1
         ORDER BY a.created_at, a.id",
    )
    .bind(site.0)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(agent, name, created_at, key, enrolled_at, revoked_at, reason, next, missing, seen)| {
            let active_key = match (key, enrolled_at) {
                (Some(k), Some(at)) => Some((
                    k.try_into()
                        .map_err(|_| DbError::Corrupt("agent_keys.public_key is not 32 bytes".into()))?,
                    at,
                )),
                _ => None,
            };
            Ok(AgentSummary {
                agent: AgentId(agent),
                name,
                created_at,
                active_key,
                revoked: revoked_at.map(|at| (at, reason)),
                next_seq: next.map_or(0, |n| u64::try_from(n).unwrap_or(0)),
                missing: missing.map_or(0, |n| u64::try_from(n).unwrap_or(0)),
                last_seen: seen,
            })
        })
        .collect()
}

/// Whether `agent` is registered for `site`.
///
/// # Errors
/// Database errors.
pub async fn agent_of_site(pool: &Pool, site: SiteId, agent: AgentId) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM agents WHERE id = $1 AND site_id = $2)")
        .bind(agent.0)
        .bind(site.0)
        .fetch_one(pool)
        .await?)
}

/// Readings of `site` flagged as implausible and not reviewed yet (from the per-period
/// counters, so no telemetry is scanned).
///
/// # Errors
/// Database errors.
pub async fn unresolved_flagged(pool: &Pool, site: SiteId) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(flagged), 0)::bigint FROM site_period_counters WHERE site_id = $1 AND resolved_at IS NULL",
    )
    .bind(site.0)
    .fetch_one(pool)
    .await?)
}
