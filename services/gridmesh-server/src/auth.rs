//! Caller identity from `Authorization: Bearer <token>`.
//!
//! Handlers that take [`Authenticated`] get the caller or the request is refused with 401
//! before the handler runs; [`Authenticated::require`] checks the role. Ownership checks (a
//! homeowner's own sites) use [`Caller::user_id`](gridmesh_db::Caller) in the handler.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use gridmesh_core::Role;
use gridmesh_db::Caller;

use crate::{ApiError, AppState};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl Authenticated {
    /// Refuses with 403 unless the caller has one of `roles`.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`].
    pub fn require(&self, roles: &'static [Role]) -> Result<&Caller, ApiError> {
        if roles.contains(&self.0.role) {
            Ok(&self.0)
        } else {
            Err(ApiError::Forbidden { needed: roles, have: self.0.role })
        }
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthenticated("missing Authorization: Bearer <token> header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthenticated("the Authorization header must be \"Bearer <token>\""))?;
        let caller = gridmesh_db::authenticate(&state.pool, token)
            .await?
            .ok_or(ApiError::Unauthenticated("unknown, expired or revoked token"))?;
        tracing::Span::current().record("user_id", tracing::field::display(caller.user_id));
        Ok(Authenticated(caller))
    }
}
