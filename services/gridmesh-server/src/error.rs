//! One error type for the HTTP API, answered as RFC 7807 problem JSON.
//!
//! The status is chosen in one place ([`ApiError::status`]). Every problem carries the request's
//! reference id in `instance` (also in the `x-request-id` header and in the request's log span),
//! so a user can quote it and an operator can find the log line. Internal errors are logged in
//! full and answered with a generic message: nothing about the database leaks.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gridmesh_core::Role;
use gridmesh_db::DbError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::http::current_request_id;

/// An error answered to an API caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or not the JSON expected.
    #[error("{0}")]
    BadBody(String, StatusCode),
    /// The query string does not parse.
    #[error("{0}")]
    BadQuery(String),
    /// A path parameter does not parse.
    #[error("{0}")]
    BadPath(String),
    /// Well-formed but invalid input; names the field.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No or an unknown token.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Authenticated, but the role may not do this.
    #[error("this needs the role {}; you are {have}", needed.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" or "))]
    Forbidden {
        /// Roles that may.
        needed: &'static [Role],
        /// The caller's role.
        have: Role,
    },
    /// Authenticated with the right role, but not allowed this particular thing (another
    /// user's site).
    #[error("{0}")]
    Denied(String),
    /// The thing asked for does not exist (or is not the caller's to see).
    #[error("{0} not found")]
    NotFound(String),
    /// No route for this path.
    #[error("no route for {0}")]
    NoRoute(String),
    /// The route exists, the method does not.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// Conflicts with stored state (a duplicate).
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts of something that must not be guessed; try again later.
    #[error("{0}")]
    TooManyRequests(String),
    /// A dependency (the database) is unavailable.
    #[error("service temporarily unavailable; try again shortly")]
    Unavailable(#[source] DbError),
    /// Anything else: logged in full, answered generically.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// RFC 7807 problem details.
#[derive(Debug, Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    instance: String,
}

impl ApiError {
    /// The HTTP status for this error.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadBody(_, status) => *status,
            ApiError::BadQuery(_) | ApiError::BadPath(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } | ApiError::Denied(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable name, used in the problem `type` URI.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadBody(_, s) if *s == StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
            ApiError::BadBody(_, s) if *s == StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            ApiError::BadBody(..) => "malformed-body",
            ApiError::BadQuery(_) => "malformed-query",
            ApiError::BadPath(_) => "malformed-path",
            ApiError::Invalid { .. } => "invalid-input",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::Forbidden { .. } | ApiError::Denied(_) => "forbidden",
            ApiError::NotFound(_) | ApiError::NoRoute(_) => "not-found",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooManyRequests(_) => "too-many-requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// Shorthand for [`ApiError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid { field: field.into(), message: message.into() }
    }
}

/// Builds a problem response; also used by `/readyz` with its own extension fields.
pub(crate) fn problem_response(
    status: StatusCode,
    code: &str,
    detail: String,
    extra: Option<serde_json::Value>,
) -> Response {
    let request_id = current_request_id();
    let problem = Problem {
        kind: format!("urn:gridmesh:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail,
        instance: format!("urn:uuid:{request_id}"),
    };
    let mut body = serde_json::to_value(&problem).unwrap_or_default();
    if let (Some(obj), Some(serde_json::Value::Object(more))) = (body.as_object_mut(), extra) {
        obj.extend(more);
    }
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(e) => tracing::error!(error = format!("{e:#}"), "internal error"),
            ApiError::Unavailable(e) => tracing::warn!(error = %e, "dependency unavailable"),
            other => tracing::info!(status = status.as_u16(), error = %other, "request refused"),
        }
        let mut response = problem_response(status, self.code(), self.to_string(), None);
        if matches!(self, ApiError::Unauthenticated(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"gridmesh\""));
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(_) => ApiError::Unavailable(e),
            DbError::Invalid { field, reason } => ApiError::invalid(field, reason),
            DbError::Limit(reason) => ApiError::Conflict(reason),
            DbError::Constraint { ref constraint, .. } => {
                constraint_error(constraint).unwrap_or_else(|| ApiError::Internal(anyhow::Error::new(e)))
            }
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// Turns a violated constraint into a message for the caller: the one table of constraint names
/// the API knows, used by every handler through `From<DbError>` (so a handler just uses `?`).
/// Constraints not listed here are programming errors (the handler should have validated) and
/// become 500s.
fn constraint_error(constraint: &str) -> Option<ApiError> {
    Some(match constraint {
        "users_email_key" => ApiError::Conflict("a user with this email already exists".into()),
        "users_email_check" => ApiError::invalid("email", "is not an email address"),
        "users_name_check" => ApiError::invalid("name", "must be 1 to 200 characters"),
        "api_tokens_user_id_fkey" => ApiError::NotFound("user".into()),
        "api_tokens_label_check" => ApiError::invalid("label", "must be at most 200 characters"),
        "agent_keys_unique_key" => ApiError::Conflict(
            "this public key is already enrolled (a revoked key is never taken back)".into(),
        ),
        "agents_site_id_fkey" => ApiError::NotFound("site".into()),
        "grid_nodes_parent_id_fkey" => ApiError::invalid("parent", "no such grid node"),
        "grid_nodes_no_cycle" => ApiError::invalid("parent", "would make the node its own ancestor"),
        "sites_owner_id_fkey" | "site_registrations_owner_id_fkey" => {
            ApiError::invalid("owner", "no such user")
        }
        "grid_nodes_code" | "grid_nodes_code_live" => {
            ApiError::Conflict("another grid node has this code".into())
        }
        "grid_limit_windows_node_id_fkey" => ApiError::NotFound("grid node".into()),
        "sites_feeder" => {
            ApiError::invalid("feeder", "no such feeder (a site hangs off a feeder, not a transformer)")
        }
        "utility_requests_node_id_fkey" => ApiError::invalid("node", "no such grid node"),
        "market_strategies_one_kind" => {
            ApiError::Conflict("the site already has an active strategy of this kind; delete it first".into())
        }
        _ => return None,
    })
}

/// `axum::Json` that answers bad bodies with problem JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(r: &JsonRejection) -> ApiError {
    let detail = match r {
        JsonRejection::JsonDataError(e) => {
            format!("the JSON body does not match the expected shape: {}", e.body_text())
        }
        JsonRejection::JsonSyntaxError(e) => {
            format!("the body is not valid JSON: {}", e.body_text())
        }
        JsonRejection::MissingJsonContentType(_) => {
            "expected a body with Content-Type: application/json".into()
        }
        other => other.body_text(),
    };
    ApiError::BadBody(detail, r.status())
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` that answers bad query strings with problem JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state).await.map(|q| Query(q.0)).map_err(
            |r: QueryRejection| ApiError::BadQuery(format!("the query string is invalid: {}", r.body_text())),
        )
    }
}

/// `axum::extract::Path` that answers bad path parameters with problem JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|p| Path(p.0)).map_err(
            |r: PathRejection| ApiError::BadPath(format!("a path parameter is invalid: {}", r.body_text())),
        )
    }
}
