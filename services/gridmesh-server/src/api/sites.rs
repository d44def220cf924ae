//! Homes as their owners (and operators and regulators) see them, and the grid's nodes for
//! those who describe the grid. Utilities see the grid but no household's home: they get
//! aggregates elsewhere.

use axum::extract::State;
use gridmesh_core::{GridNode, GridNodeId, Role, SiteId, Watts};
use serde::{Deserialize, Serialize};

use super::Page;
use super::grid::SiteOut;
use crate::auth::Authenticated;
use crate::error::{Json, Path, Query};
use crate::{ApiError, AppState};

/// `?after=&limit=` of the site list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// The last id of the previous page.
    after: Option<SiteId>,
    /// Page size, 1 to 1000 (100).
    limit: Option<u32>,
}

/// `GET /v1/sites?after=&limit=`: the caller's own homes (homeowners, prosumers), or every home
/// (operators, regulators), by id.
pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<SiteOut>>, ApiError> {
    caller.require(&[Role::Homeowner, Role::Prosumer, Role::Operator, Role::Regulator])?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let sites = gridmesh_db::list_sites(&state.pool, caller.visible_owner(), params.after, limit).await?;
    Ok(Json(Page::new(sites, limit, |s| s.id.to_string(), SiteOut::from)))
}

/// `GET /v1/sites/{id}`: one home, for whoever may see it.
pub async fn get_one(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
) -> Result<Json<SiteOut>, ApiError> {
    Ok(Json(caller.require_site(&state, id).await?.into()))
}

/// Who describes the grid.
const GRID_WRITERS: &[Role] = &[Role::Utility, Role::Operator];

/// A grid node as the API shows it.
#[derive(Debug, Serialize)]
pub struct NodeOut {
    id: GridNodeId,
    code: Option<String>,
    kind: &'static str,
    parent: Option<GridNodeId>,
    name: String,
    import_limit_w: i64,
    export_limit_w: i64,
    /// Homes connected (feeders only).
    homes: usize,
}

/// The grid's nodes.
#[derive(Debug, Serialize)]
pub struct NodesOut {
    items: Vec<NodeOut>,
}

/// `GET /v1/grid/nodes` (utility, operator, regulator): every node, oldest first, with its code
/// and the number of homes on it.
pub async fn nodes(State(state): State<AppState>, caller: Authenticated) -> Result<Json<NodesOut>, ApiError> {
    caller.require(&[Role::Utility, Role::Operator, Role::Regulator])?;
    let stored = gridmesh_db::stored_grid(&state.pool).await?;
    let topology = gridmesh_db::load_topology(&state.pool).await?;
    let items = stored
        .into_iter()
        .map(|s| NodeOut {
            homes: topology.sites_on(s.node.id).len(),
            id: s.node.id,
            code: s.code,
            kind: s.node.kind.as_str(),
            parent: s.node.parent,
            name: s.node.name,
            import_limit_w: s.node.import_limit.get(),
            export_limit_w: s.node.export_limit.get(),
        })
        .collect();
    Ok(Json(NodesOut { items }))
}

/// Body of `PATCH /v1/grid/nodes/{id}`: what changes; the rest stays.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodePatch {
    name: Option<String>,
    /// The new parent; `null` makes the node a root.
    #[serde(default, with = "serde_with_null")]
    parent: Option<Option<GridNodeId>>,
    import_limit_w: Option<i64>,
    export_limit_w: Option<i64>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
mod serde_with_null {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// `PATCH /v1/grid/nodes/{id}` (utility, operator): rename a node, move it under another
/// parent, or change its limits. The tree stays a tree (a move under its own descendant is
/// refused) and an unknown parent is named.
pub async fn patch_node(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<GridNodeId>,
    Json(patch): Json<NodePatch>,
) -> Result<Json<NodeOut>, ApiError> {
    caller.require(GRID_WRITERS)?;
    let stored = gridmesh_db::stored_grid(&state.pool).await?;
    let Some(current) = stored.into_iter().find(|s| s.node.id == id) else {
        return Err(ApiError::NotFound("grid node".into()));
    };
    let limit = |field: &str, w: Option<i64>, old: Watts| match w {
        Some(w) if w < 0 => Err(ApiError::invalid(field, format!("must not be negative, got {w}"))),
        Some(w) => Ok(Watts(w)),
        None => Ok(old),
    };
    let name = match patch.name {
        Some(n) if n.trim().is_empty() || n.trim().chars().count() > 200 => {
            return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
        }
        Some(n) => n.trim().to_owned(),
        None => current.node.name.clone(),
    };
    let node = GridNode {
        id,
        kind: current.node.kind,
        parent: patch.parent.unwrap_or(current.node.parent),
        name,
        import_limit: limit("import_limit_w", patch.import_limit_w, current.node.import_limit)?,
        export_limit: limit("export_limit_w", patch.export_limit_w, current.node.export_limit)?,
    };
    if node.parent == Some(id) {
        return Err(ApiError::invalid("parent", "would make the node its own ancestor"));
    }
    if !gridmesh_db::update_grid_node(&state.pool, &node).await? {
        return Err(ApiError::NotFound("grid node".into()));
    }
    tracing::info!(node = %id, "grid node changed");
    let homes = gridmesh_db::load_topology(&state.pool).await?.sites_on(id).len();
    Ok(Json(NodeOut {
        id,
        code: current.code,
        kind: node.kind.as_str(),
        parent: node.parent,
        name: node.name,
        import_limit_w: node.import_limit.get(),
        export_limit_w: node.export_limit.get(),
        homes,
    }))
}
