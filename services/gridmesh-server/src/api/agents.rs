//! A home's agents over their life. Enrolment with a one-time code: the home's owner (or an
//! operator) asks for a code, and a new agent enrols its device key with the code alone
//! (`gridmesh-agent enroll --code`), learning its site, its agent id, the server's key and,
//! where configured, the broker to use. Then: the home's agents listed with where their
//! readings stand, a key rotated (the old one revoked, its readings still verifiable), an agent
//! revoked (a lost or stolen box). The `MeterRegistry` mirror follows revocations by itself.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gridmesh_core::{AgentId, EnrolmentCode, SiteId};
use gridmesh_db::AgentSummary;
use gridmesh_db::{CodeRefusal, NewEnrolmentCode};
use gridmesh_wire::PublicKey;
use serde::{Deserialize, Serialize};

use crate::auth::Authenticated;
use crate::error::{Json, Path};
use crate::{ApiError, AppState};

/// How long a code works unless asked otherwise.
const DEFAULT_VALID_HOURS: u32 = 24;

/// The longest a code may work: a week.
const MAX_VALID_HOURS: u32 = 168;

/// Failed code enrolments the service takes in a minute, from everyone together, before it
/// answers 429 for the rest of the minute: with 60-bit codes this keeps guessing hopeless.
/// (Per-client limits belong in front of the service, at the proxy that sees client addresses.)
const FAILURES_PER_MINUTE: u32 = 30;

/// Counts failed code enrolments in the current minute.
#[derive(Debug, Default)]
pub struct EnrolGuard(std::sync::Mutex<(Option<std::time::Instant>, u32)>);

impl EnrolGuard {
    fn window<T>(&self, f: impl FnOnce(&mut (Option<std::time::Instant>, u32)) -> T) -> T {
        let mut w = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.0.is_none_or(|start| start.elapsed() >= std::time::Duration::from_secs(60)) {
            *w = (Some(std::time::Instant::now()), 0);
        }
        f(&mut w)
    }

    /// Refuses while this minute's failures are used up.
    fn check(&self) -> Result<(), ApiError> {
        self.window(|w| {
            if w.1 >= FAILURES_PER_MINUTE {
                let left = 60_u64.saturating_sub(w.0.map_or(0, |s| s.elapsed().as_secs()));
                Err(ApiError::TooManyRequests(format!("too many failed enrolments; try again in {left} s")))
            } else {
                Ok(())
            }
        })
    }

    fn failed(&self) {
        self.window(|w| w.1 += 1);
    }
}

/// Body of `POST /v1/sites/{id}/enrolment-codes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeIn {
    /// Hours the code works, 1 to 168 (default 24).
    #[serde(default)]
    valid_hours: Option<u32>,
}

/// A code handed out: shown once, stored only as a hash.
#[derive(Debug, Serialize)]
pub struct CodeOut {
    code: String,
    site_id: SiteId,
    expires_at: DateTime<Utc>,
}

/// `POST /v1/sites/{id}/enrolment-codes` (the site's owner or an operator): a one-time code for
/// a new agent of this site.
pub async fn create_code(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
    Json(body): Json<CodeIn>,
) -> Result<(StatusCode, Json<CodeOut>), ApiError> {
    let site = caller.require_site(&state, id).await?;
    if !caller.can_act_for(&site) {
        return Err(ApiError::Denied("only the site's owner or an operator may enrol agents for it".into()));
    }
    super::sites::require_active(&state, site.id).await?;
    let hours = body.valid_hours.unwrap_or(DEFAULT_VALID_HOURS);
    if !(1..=MAX_VALID_HOURS).contains(&hours) {
        return Err(ApiError::invalid("valid_hours", format!("must be 1 to {MAX_VALID_HOURS}, got {hours}")));
    }
    let mut random = [0_u8; 8];
    getrandom::fill(&mut random).map_err(|e| ApiError::Internal(anyhow::anyhow!("no randomness: {e}")))?;
    let code = EnrolmentCode::from_random(random);
    let expires_at = Utc::now() + chrono::Duration::hours(i64::from(hours));
    gridmesh_db::create_enrolment_code(
        &state.pool,
        &NewEnrolmentCode {
            site: site.id,
            created_by: caller.0.user_id,
            code_hash: gridmesh_db::hash_token(code.canonical()),
            expires_at,
        },
    )
    .await?;
    tracing::info!(site = %site.id, %expires_at, "enrolment code issued");
    Ok((StatusCode::CREATED, Json(CodeOut { code: code.to_string(), site_id: site.id, expires_at })))
}

/// Body of `POST /v1/enrol`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolIn {
    /// The one-time code, as the owner read it out (`7KQ2-M9XD-4HPA`; case and dashes forgiven).
    code: String,
    /// The agent's ed25519 public key, 64 hex digits.
    public_key: String,
    /// A name for the agent (the box it runs on).
    #[serde(default)]
    name: String,
}

/// What an agent needs to run.
#[derive(Debug, Serialize)]
pub struct EnrolOut {
    site_id: SiteId,
    agent_id: AgentId,
    /// The key the server signs acknowledgements and setpoints with.
    server_key: String,
    /// The broker agents publish to, when the operator configured one (`--agent-broker-url`).
    broker_url: Option<String>,
}

/// `POST /v1/enrol` (no token: the code is the credential): enrols the key as a new agent of
/// the code's site and uses the code up, in one transaction.
pub async fn enrol(
    State(state): State<AppState>,
    Json(body): Json<EnrolIn>,
) -> Result<(StatusCode, Json<EnrolOut>), ApiError> {
    state.enrol_guard.check()?;
    let outcome = enrol_with(&state, body).await;
    if matches!(&outcome, Err(e) if e.status().is_client_error()) {
        state.enrol_guard.failed();
    }
    outcome
}

async fn enrol_with(state: &AppState, body: EnrolIn) -> Result<(StatusCode, Json<EnrolOut>), ApiError> {
    let code: EnrolmentCode =
        body.code.parse().map_err(|e: gridmesh_core::CodeError| ApiError::invalid("code", e.to_string()))?;
    let key =
        PublicKey::from_hex(&body.public_key).map_err(|e| ApiError::invalid("public_key", e.to_string()))?;
    let name = body.name.trim();
    if name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "must be at most 200 characters"));
    }
    let server_key = state.server_key.ok_or_else(|| ApiError::NotFound("server key".into()))?;
    let outcome = gridmesh_db::enrol_with_code(
        &state.pool,
        gridmesh_db::hash_token(code.canonical()),
        name,
        *key.as_bytes(),
        Some(state.max_agents_per_site),
    )
    .await?;
    let enrolled = outcome.map_err(|refusal| match refusal {
        CodeRefusal::Unknown => {
            ApiError::invalid("code", "no such enrolment code: check it with the home's owner")
        }
        CodeRefusal::Used(at) => {
            ApiError::Conflict(format!("this enrolment code was used already, at {at}; ask for a new one"))
        }
        CodeRefusal::Expired(at) => {
            ApiError::Conflict(format!("this enrolment code expired at {at}; ask for a new one"))
        }
        CodeRefusal::Decommissioned(at) => {
            ApiError::Conflict(format!("this enrolment code's home was decommissioned at {at}"))
        }
    })?;
    tracing::info!(site = %enrolled.site, agent = %enrolled.agent, "agent enrolled with a code");
    Ok((
        StatusCode::CREATED,
        Json(EnrolOut {
            site_id: enrolled.site,
            agent_id: enrolled.agent,
            server_key: server_key.to_string(),
            broker_url: state.agent_broker_url.clone(),
        }),
    ))
}

/// One agent of a home, as `GET /v1/sites/{id}/agents` lists it.
#[derive(Debug, Serialize)]
pub struct AgentOut {
    agent_id: AgentId,
    name: String,
    created_at: DateTime<Utc>,
    /// `active` or `revoked`.
    status: &'static str,
    /// The active key, 64 hex digits.
    public_key: Option<String>,
    key_enrolled_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    revoked_reason: Option<String>,
    /// The next sequence number expected from it.
    next_seq: u64,
    /// Readings between its first and its latest that have not arrived (yet).
    missing_readings: u64,
    /// When a reading of it was last stored.
    last_seen: Option<DateTime<Utc>>,
}

impl From<AgentSummary> for AgentOut {
    fn from(a: AgentSummary) -> Self {
        Self {
            agent_id: a.agent,
            name: a.name,
            created_at: a.created_at,
            status: if a.active_key.is_some() { "active" } else { "revoked" },
            public_key: a.active_key.map(|(k, _)| hex::encode(k)),
            key_enrolled_at: a.active_key.map(|(_, at)| at),
            revoked_at: a.revoked.as_ref().map(|(at, _)| *at),
            revoked_reason: a.revoked.and_then(|(_, r)| r),
            next_seq: a.next_seq,
            missing_readings: a.missing,
            last_seen: a.last_seen,
        }
    }
}

/// The agents of a home.
#[derive(Debug, Serialize)]
pub struct AgentsOut {
    items: Vec<AgentOut>,
    /// The home's readings flagged as implausible and not reviewed yet (all its agents).
    unresolved_flagged_readings: i64,
}

/// `GET /v1/sites/{id}/agents` (whoever may see the site): its agents, oldest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
) -> Result<Json<AgentsOut>, ApiError> {
    let site = caller.require_site(&state, id).await?;
    let items =
        gridmesh_db::list_agents(&state.pool, site.id).await?.into_iter().map(AgentOut::from).collect();
    let unresolved_flagged_readings = gridmesh_db::unresolved_flagged(&state.pool, site.id).await?;
    Ok(Json(AgentsOut { items, unresolved_flagged_readings }))
}

/// The site, when the caller may act for it, and the agent, when it is the site's.
async fn own_agent(
    state: &AppState,
    caller: &Authenticated,
    site: SiteId,
    agent: AgentId,
) -> Result<SiteId, ApiError> {
    let site = caller.require_site(state, site).await?;
    if !caller.can_act_for(&site) {
        return Err(ApiError::Denied("only the site's owner or an operator may change its agents".into()));
    }
    if !gridmesh_db::agent_of_site(&state.pool, site.id, agent).await? {
        return Err(ApiError::NotFound("agent".into()));
    }
    Ok(site.id)
}

/// Body of `POST /v1/sites/{id}/agents/{agent}/key`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    /// The new ed25519 public key, 64 hex digits.
    public_key: String,
}

/// The agent's key after a rotation.
#[derive(Debug, Serialize)]
pub struct RotatedOut {
    agent_id: AgentId,
    public_key: String,
}

/// `POST /v1/sites/{id}/agents/{agent}/key` (the site's owner or an operator): the agent's new
/// key; the old one is revoked at once (readings it signed stay verifiable).
pub async fn rotate(
    State(state): State<AppState>,
    caller: Authenticated,
    Path((site, agent)): Path<(SiteId, AgentId)>,
    Json(body): Json<KeyIn>,
) -> Result<Json<RotatedOut>, ApiError> {
    let key =
        PublicKey::from_hex(&body.public_key).map_err(|e| ApiError::invalid("public_key", e.to_string()))?;
    let site = own_agent(&state, &caller, site, agent).await?;
    if !gridmesh_db::rotate_active_key(&state.pool, site, agent, *key.as_bytes()).await? {
        return Err(ApiError::Conflict(
            "this agent was revoked and stays so; enrol the box again with a new code".into(),
        ));
    }
    tracing::info!(%site, %agent, "agent key rotated");
    Ok(Json(RotatedOut { agent_id: agent, public_key: key.to_string() }))
}

/// `DELETE /v1/sites/{id}/agents/{agent}` (the site's owner or an operator): revokes the
/// agent's key (a lost or stolen box); its readings from then on are refused. 204, or 404 when
/// it has no active key.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Authenticated,
    Path((site, agent)): Path<(SiteId, AgentId)>,
) -> Result<StatusCode, ApiError> {
    let site = own_agent(&state, &caller, site, agent).await?;
    let reason = format!("revoked by {} ({})", caller.0.user_id, caller.0.role.as_str());
    if !gridmesh_db::revoke_key(&state.pool, agent, &reason).await? {
        return Err(ApiError::NotFound("active key of this agent".into()));
    }
    tracing::info!(%site, %agent, "agent revoked");
    Ok(StatusCode::NO_CONTENT)
}
