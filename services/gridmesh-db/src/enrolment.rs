//! One-time enrolment codes: handed out for a site, used once by a new agent to enrol its key.
//! Only a code's hash is stored ([`crate::hash_token`] of its canonical form).

use gridmesh_core::{AgentId, SiteId, Timestamp, UserId};
use uuid::Uuid;

use crate::{DbError, Pool};

/// A code to store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewEnrolmentCode {
    /// The site an agent enrolled with it reports for.
    pub site: SiteId,
    /// Who asked for it.
    pub created_by: UserId,
    /// SHA-256 of the code's canonical form.
    pub code_hash: [u8; 32],
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// Stores a new code.
///
/// # Errors
/// [`DbError::Constraint`] `enrolment_codes_site_id_fkey` for an unknown site,
/// `enrolment_codes_window` for an expiry not after now.
pub async fn create_enrolment_code(pool: &Pool, code: &NewEnrolmentCode) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO enrolment_codes (code_hash, site_id, created_by, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(code.code_hash.as_slice())
    .bind(code.site.0)
    .bind(code.created_by.0)
    .bind(code.expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Why a code enrolled nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefusal {
    /// No such code (mistyped, or never issued).
    Unknown,
    /// The code was used already, at this time.
    Used(Timestamp),
    /// The code expired at this time.
    Expired(Timestamp),
    /// The code's home was decommissioned at this time.
    Decommissioned(Timestamp),
}

/// What a code enrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeEnrolment {
    /// The site the agent reports for.
    pub site: SiteId,
    /// The new agent.
    pub agent: AgentId,
}

type CodeRow = (Uuid, Timestamp, Option<Timestamp>, Timestamp, Option<Timestamp>);

/// Enrols a new agent named `name` with `public_key` for the code's site, and marks the code
/// used, in one transaction: a refused code, or a key the database refuses, leaves nothing
/// behind and the code unused.
///
/// # Errors
/// [`DbError::Constraint`] `agent_keys_unique_key` when the key is already enrolled;
/// [`DbError::Limit`] when the site has `max_agents` active agents already; database errors. A code that cannot be used is `Ok(Err(refusal))`.
pub async fn enrol_with_code(
    pool: &Pool,
    code_hash: [u8; 32],
    name: &str,
    public_key: [u8; 32],
    max_agents: Option<u32>,
) -> Result<Result<CodeEnrolment, CodeRefusal>, DbError> {
    let mut tx = pool.begin().await?;
    // Locked, so two agents racing with one code cannot both use it.
    let row: Option<CodeRow> = sqlx::query_as(
        "SELECT c.site_id, c.expires_at, c.used_at, now(), s.decommissioned_at
         FROM enrolment_codes c JOIN sites s ON s.id = c.site_id
         WHERE c.code_hash = $1 FOR UPDATE OF c",
    )
    .bind(code_hash.as_slice())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((site, expires_at, used_at, now, gone)) = row else { return Ok(Err(CodeRefusal::Unknown)) };
    if let Some(at) = gone {
        return Ok(Err(CodeRefusal::Decommissioned(at)));
    }
    if let Some(at) = used_at {
        return Ok(Err(CodeRefusal::Used(at)));
    }
    if expires_at <= now {
        return Ok(Err(CodeRefusal::Expired(expires_at)));
    }
    let site = SiteId(site);
    crate::agents::check_room(&mut tx, site, max_agents).await?;
    let agent = crate::agents::insert_agent(&mut tx, site, name).await?;
    crate::agents::insert_key(&mut tx, agent, public_key).await?;
    sqlx::query("UPDATE enrolment_codes SET used_at = now(), agent_id = $2 WHERE code_hash = $1")
        .bind(code_hash.as_slice())
        .bind(agent.0)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(CodeEnrolment { site, agent }))
}
