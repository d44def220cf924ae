//! The grid as a file: a utility or an operator imports a whole grid (CSV or JSON, checked as a
//! whole, applied in one transaction or not at all, with a dry run), and exports it back in the
//! same form. Nodes are matched by their codes, so importing the same file again changes
//! nothing. The checks and the diff are `gridmesh_core::grid_file`'s.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gridmesh_core::Role;
use gridmesh_core::grid_file::{GridFile, GridFileError, ImportPlan};
use serde::{Deserialize, Serialize};

use crate::auth::Authenticated;
use crate::error::{Json, Query};
use crate::{ApiError, AppState};

/// Who may change the grid.
const GRID_WRITERS: &[Role] = &[Role::Utility, Role::Operator];
/// Who may read it (the grid's shape is no household's data).
const GRID_READERS: &[Role] = &[Role::Utility, Role::Operator, Role::Regulator];

/// `?dry_run=` of an import.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// Only say what would change.
    #[serde(default)]
    dry_run: bool,
}

/// One node an import changes.
#[derive(Debug, Serialize)]
pub struct ChangeOut {
    code: String,
    /// `created`, or each field with its old and new value.
    changes: Vec<String>,
}

/// What an import did (or would do).
#[derive(Debug, Serialize)]
pub struct ImportOut {
    dry_run: bool,
    created: usize,
    updated: usize,
    unchanged: usize,
    changes: Vec<ChangeOut>,
    warnings: Vec<String>,
}

impl ImportOut {
    fn new(plan: &ImportPlan, dry_run: bool) -> Self {
        let created = plan
            .changes
            .iter()
            .filter(|c| matches!(c, gridmesh_core::grid_file::Change::Create { .. }))
            .count();
        Self {
            dry_run,
            created,
            updated: plan.changes.len() - created,
            unchanged: plan.unchanged,
            changes: plan
                .changes
                .iter()
                .map(|c| ChangeOut { code: c.code().to_owned(), changes: c.describe() })
                .collect(),
            warnings: plan.warnings.clone(),
        }
    }
}

/// Reads a grid file: JSON when the body says so (`Content-Type: application/json`, or a body
/// starting with `{`), CSV otherwise.
///
/// # Errors
/// Every problem of the file, in one message.
pub fn read_file(content_type: Option<&str>, body: &str) -> Result<GridFile, ApiError> {
    let json = content_type.is_some_and(|t| t.starts_with("application/json"))
        || (content_type.is_none_or(|t| !t.starts_with("text/csv")) && body.trim_start().starts_with('{'));
    let parsed = if json { GridFile::from_json(body) } else { GridFile::from_csv(body) };
    parsed.map_err(|errors| refused(&errors))
}

/// A refused file: 422 naming every problem.
fn refused(errors: &[GridFileError]) -> ApiError {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    ApiError::BadBody(
        format!("the grid file was refused, nothing was changed: {}", list.join("; ")),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
}

/// `POST /v1/grid/import[?dry_run=true]` (utility, operator): a whole grid file, CSV
/// (`Content-Type: text/csv`) or JSON.
pub async fn import(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<ImportOut>, ApiError> {
    caller.require(GRID_WRITERS)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let file = read_file(content_type, &body)?;
    let plan = gridmesh_db::import_grid(&state.pool, params.dry_run, |stored, homes| {
        gridmesh_core::grid_file::plan(&file, stored, homes, gridmesh_core::GridNodeId::new_random)
    })
    .await?
    .map_err(|errors| refused(&errors))?;
    if !params.dry_run {
        tracing::info!(changes = plan.changes.len(), unchanged = plan.unchanged, "grid imported");
    }
    Ok(Json(ImportOut::new(&plan, params.dry_run)))
}

/// `?format=` of an export.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `csv` (default) or `json`.
    #[serde(default)]
    format: Format,
}

/// A grid file's form.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// CSV with a header row.
    #[default]
    Csv,
    /// JSON.
    Json,
}

/// `GET /v1/grid/export[?format=csv|json]` (utility, operator, regulator): the stored grid as a
/// file that imports back unchanged.
pub async fn export(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(params): Query<ExportParams>,
) -> Result<Response, ApiError> {
    caller.require(GRID_READERS)?;
    let file = gridmesh_core::grid_file::export(&gridmesh_db::stored_grid(&state.pool).await?);
    let (body, kind) = match params.format {
        Format::Csv => (file.to_csv(), "text/csv; charset=utf-8"),
        Format::Json => (file.to_json(), "application/json"),
    };
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(kind))], body).into_response())
}
