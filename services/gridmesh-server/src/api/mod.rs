//! The `/v1` API, one module per resource. Handlers take [`crate::auth::Authenticated`] and the
//! problem-JSON extractors of [`crate::error`].

use axum::Router;
use axum::routing::{delete, get, post};

use crate::AppState;

mod users;

/// Routes under `/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(users::me))
        .route("/users", post(users::create).get(users::list))
        .route("/users/{id}", get(users::get_one))
        .route("/users/{id}/tokens", post(users::issue_token))
        .route("/tokens/{id}", delete(users::revoke_token))
}
