//! Accounts and tokens. Operators manage them; every caller can see who they are.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gridmesh_core::{Role, UserId};
use gridmesh_db::{ApiToken, Caller, NewUser, User, UserFilter};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Page;
use crate::auth::Authenticated;
use crate::error::{Json, Path, Query};
use crate::{ApiError, AppState};

const OPERATOR: &[Role] = &[Role::Operator];

/// The caller's identity, as `GET /v1/me` shows it.
#[derive(Debug, Serialize)]
pub struct CallerOut {
    user_id: UserId,
    name: String,
    role: Role,
    /// The token this request was made with.
    token_id: Uuid,
}

impl From<Caller> for CallerOut {
    fn from(c: Caller) -> Self {
        Self { user_id: c.user_id, name: c.name, role: c.role, token_id: c.token_id }
    }
}

/// `GET /v1/me`: the caller's identity.
pub async fn me(caller: Authenticated) -> Json<CallerOut> {
    Json(caller.0.into())
}

/// An account as the API shows it.
#[derive(Debug, Serialize)]
pub struct UserOut {
    id: UserId,
    name: String,
    email: Option<String>,
    role: Role,
    created_at: DateTime<Utc>,
    /// When the account was disabled; its tokens stop working.
    disabled_at: Option<DateTime<Utc>>,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            name: u.name,
            email: u.email,
            role: u.role,
            created_at: u.created_at,
            disabled_at: u.disabled_at,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    name: String,
    #[serde(default)]
    email: Option<String>,
    role: Role,
}

/// `POST /v1/users` (operator): create an account.
pub async fn create(
    State(state): State<AppState>,
    caller: Authenticated,
    Json(body): Json<CreateUser>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    caller.require(OPERATOR)?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
    }
    let user =
        gridmesh_db::create_user(&state.pool, &NewUser { name, email: body.email, role: body.role }).await?;
    tracing::info!(user_id = %user.id, role = %user.role, "user created");
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    role: Option<Role>,
    after: Option<UserId>,
    limit: Option<u32>,
}

/// `GET /v1/users?role=&after=&limit=` (operator): accounts, 100 per page by default.
pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<UserOut>>, ApiError> {
    caller.require(OPERATOR)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let items =
        gridmesh_db::list_users(&state.pool, &UserFilter { role: params.role, after: params.after, limit })
            .await?;
    Ok(Json(Page::new(items, limit, |u| u.id.to_string(), UserOut::from)))
}

/// `GET /v1/users/{id}`: operators see anyone, others only themselves.
pub async fn get_one(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<UserId>,
) -> Result<Json<UserOut>, ApiError> {
    if caller.0.user_id != id {
        caller.require(OPERATOR)?;
    }
    let user =
        gridmesh_db::get_user(&state.pool, id).await?.ok_or_else(|| ApiError::NotFound("user".into()))?;
    Ok(Json(user.into()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    #[serde(default)]
    label: String,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// An issued token: its metadata and, this once, the secret.
#[derive(Debug, Serialize)]
pub struct IssuedToken {
    /// Token id (for revocation).
    id: Uuid,
    user_id: UserId,
    label: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    /// The secret, shown only in this answer.
    token: String,
}

impl IssuedToken {
    fn new(meta: ApiToken, token: String) -> Self {
        Self {
            id: meta.id,
            user_id: meta.user_id,
            label: meta.label,
            created_at: meta.created_at,
            expires_at: meta.expires_at,
            token,
        }
    }
}

/// `POST /v1/users/{id}/tokens` (operator): issue a token; the secret is in the answer only.
pub async fn issue_token(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<UserId>,
    Json(body): Json<IssueToken>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    caller.require(OPERATOR)?;
    if body.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(ApiError::invalid("expires_at", "must be in the future"));
    }
    let (meta, token) = gridmesh_db::issue_token(&state.pool, id, &body.label, body.expires_at).await?;
    tracing::info!(token_id = %meta.id, user_id = %id, "token issued");
    Ok((StatusCode::CREATED, Json(IssuedToken::new(meta, token))))
}

/// `DELETE /v1/tokens/{id}` (operator): revoke a token.
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.require(OPERATOR)?;
    if gridmesh_db::revoke_token(&state.pool, id).await? {
        tracing::info!(token_id = %id, "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("live token".into()))
    }
}
