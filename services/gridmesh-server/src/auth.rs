//! Caller identity from `Authorization: Bearer <token>`, and who may see and act for a site.
//!
//! Handlers that take [`Authenticated`] get the caller or the request is refused with 401
//! before the handler runs; [`Authenticated::require`] checks the role. Which sites a caller
//! sees is decided here and nowhere else: a site's owner, operators and regulators see it
//! ([`Authenticated::can_see`], [`Authenticated::require_site`], [`Authenticated::visible_owner`]);
//! its owner and operators act for it ([`Authenticated::can_act_for`]).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use gridmesh_core::{Role, Site, SiteId, UserId};
use gridmesh_db::Caller;

use crate::{ApiError, AppState};

/// Roles that see every site: operators run the system, regulators audit it.
pub const SEE_ALL: &[Role] = &[Role::Operator, Role::Regulator];

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

    /// True when the caller sees every site (operators and regulators).
    #[must_use]
    pub fn sees_all_sites(&self) -> bool {
        SEE_ALL.contains(&self.0.role)
    }

    /// True when the caller may see `site`'s data: its owner, operators and regulators.
    #[must_use]
    pub fn can_see(&self, site: &Site) -> bool {
        site.owner == self.0.user_id || self.sees_all_sites()
    }

    /// True when the caller may act for `site` (trade, enrol agents, set strategies): its owner
    /// and operators. Regulators see, but do not act.
    #[must_use]
    pub fn can_act_for(&self, site: &Site) -> bool {
        site.owner == self.0.user_id || self.0.role == Role::Operator
    }

    /// The owner whose sites a list shows the caller: `None` for every site.
    #[must_use]
    pub fn visible_owner(&self) -> Option<UserId> {
        (!self.sees_all_sites()).then_some(self.0.user_id)
    }

    /// The site, if it exists and the caller may see it.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] ("site not found") for an unknown site and for one the caller may
    /// not see alike, so ids cannot be probed; database errors.
    pub async fn require_site(&self, state: &AppState, id: SiteId) -> Result<Site, ApiError> {
        gridmesh_db::get_site(&state.pool, id)
            .await?
            .filter(|site| self.can_see(site))
            .ok_or_else(|| ApiError::NotFound("site".into()))
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
