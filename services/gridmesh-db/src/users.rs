use chrono::{DateTime, Utc};
use gridmesh_core::{Role, UserId};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{DbError, Pool};

/// Prefix of every API token, so that a leaked token is recognisable in logs and scanners.
const TOKEN_PREFIX: &str = "gmt_";

/// A person or organisation with an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The id.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Contact address, if given.
    pub email: Option<String>,
    /// What they may do.
    pub role: Role,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
    /// When the account was disabled; its tokens stop working.
    pub disabled_at: Option<DateTime<Utc>>,
}

/// What is needed to create a user.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Display name (1 to 200 characters).
    pub name: String,
    /// Contact address.
    pub email: Option<String>,
    /// Role.
    pub role: Role,
}

/// Filter and page for [`list_users`].
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Only users with this role.
    pub role: Option<Role>,
    /// Only users whose id sorts after this one (keyset pagination).
    pub after: Option<UserId>,
    /// Most rows returned (capped at 1000).
    pub limit: u32,
}

/// Metadata of an issued token (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Token id (for revocation).
    pub id: Uuid,
    /// The user it identifies.
    pub user_id: UserId,
    /// A label to tell tokens apart.
    pub label: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The identity behind a request, as established from its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user_id: UserId,
    /// Their name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// The token used.
    pub token_id: Uuid,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    name: String,
    email: Option<String>,
    role: String,
    created_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
}

impl TryFrom<UserRow> for User {
    type Error = DbError;

    fn try_from(r: UserRow) -> Result<Self, DbError> {
        Ok(User {
            id: UserId(r.id),
            name: r.name,
            email: r.email,
            role: r.role.parse().map_err(|e| DbError::Corrupt(format!("users.role: {e}")))?,
            created_at: r.created_at,
            disabled_at: r.disabled_at,
        })
    }
}

/// Creates a user.
///
/// # Errors
/// [`DbError::Constraint`] `users_email_key` for a taken email, `users_name_check` for a bad
/// name.
pub async fn create_user(pool: &Pool, new: &NewUser) -> Result<User, DbError> {
    let row: UserRow = sqlx::query_as(
        "INSERT INTO users (id, name, email, role) VALUES ($1, $2, $3, $4)
         RETURNING id, name, email, role, created_at, disabled_at",
    )
    .bind(Uuid::new_v4())
    .bind(&new.name)
    .bind(&new.email)
    .bind(new.role.as_str())
    .fetch_one(pool)
    .await?;
    row.try_into()
}

/// One user by id.
///
/// # Errors
/// Database errors only; an unknown id is `Ok(None)`.
pub async fn get_user(pool: &Pool, id: UserId) -> Result<Option<User>, DbError> {
    let row: Option<UserRow> =
        sqlx::query_as("SELECT id, name, email, role, created_at, disabled_at FROM users WHERE id = $1")
            .bind(id.0)
            .fetch_optional(pool)
            .await?;
    row.map(User::try_from).transpose()
}

/// Users ordered by id, filtered and paged.
///
/// # Errors
/// Database errors.
pub async fn list_users(pool: &Pool, filter: &UserFilter) -> Result<Vec<User>, DbError> {
    let rows: Vec<UserRow> = sqlx::query_as(
        "SELECT id, name, email, role, created_at, disabled_at FROM users
         WHERE ($1::text IS NULL OR role = $1) AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3",
    )
    .bind(filter.role.map(Role::as_str))
    .bind(filter.after.map(|u| u.0))
    .bind(i64::from(filter.limit.min(1000)))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(User::try_from).collect()
}

/// SHA-256 of a token as stored.
#[must_use]
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Issues a new random token for `user_id`. The secret is returned once and only its hash is
/// stored.
///
/// # Errors
/// [`DbError::Constraint`] `api_tokens_user_id_fkey` for an unknown user.
pub async fn issue_token(
    pool: &Pool,
    user_id: UserId,
    label: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(ApiToken, String), DbError> {
    let mut secret = [0_u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| DbError::Invalid { field: "token", reason: format!("no randomness: {e}") })?;
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let (id, created_at): (Uuid, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO api_tokens (id, user_id, label, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at",
    )
    .bind(Uuid::new_v4())
    .bind(user_id.0)
    .bind(label)
    .bind(hash_token(&token).as_slice())
    .bind(expires_at)
    .fetch_one(pool)
    .await?;
    let meta = ApiToken { id, user_id, label: label.to_owned(), created_at, expires_at };
    Ok((meta, token))
}

/// Revokes a token; returns whether a live token was revoked.
///
/// # Errors
/// Database errors.
pub async fn revoke_token(pool: &Pool, token_id: Uuid) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(token_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The caller a token belongs to, if the token is known, not revoked, not expired, and its user
/// is not disabled.
///
/// # Errors
/// Database errors only; an unknown or dead token is `Ok(None)`.
pub async fn authenticate(pool: &Pool, token: &str) -> Result<Option<Caller>, DbError> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let row: Option<(Uuid, String, String, Uuid)> = sqlx::query_as(
        "SELECT u.id, u.name, u.role, t.id FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1
           AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
           AND u.disabled_at IS NULL",
    )
    .bind(hash_token(token).as_slice())
    .fetch_optional(pool)
    .await?;
    if let Some((_, _, _, token_id)) = &row {
        // Coarse (one write a minute per token) so busy clients do not serialise on the row.
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = now() WHERE id = $1
             AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        )
        .bind(token_id)
        .execute(pool)
        .await?;
    }
    row.map(|(user, name, role, token_id)| {
        Ok(Caller {
            user_id: UserId(user),
            name,
            role: role.parse().map_err(|e| DbError::Corrupt(format!("users.role: {e}")))?,
            token_id,
        })
    })
    .transpose()
}
