//! Homes over their life and the grid's nodes. A homeowner or prosumer registers a home (it
//! waits, pending, for its feeder, but its agent may enrol and report already); a utility or an
//! operator assigns it to a feeder, and only then is it planned, does it trade and settle; its
//! owner edits its ratings and finally
//! decommissions it (history kept, agents revoked, strategies stopped). Owners see their own
//! homes, operators and regulators every home; utilities see no household's home beyond what
//! assignment needs (a pending home's ratings and location, without owner or address).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gridmesh_core::{
    BatterySpec, GeoPoint, GridConnection, GridNode, GridNodeId, PvOrientation, Role, Site, SiteId, UserId,
    Watts,
};
use gridmesh_db::Home;
use serde::{Deserialize, Serialize};

use super::Page;
use super::grid::{BatteryIo, ConnectionIo, LocationIo, OrientationIo, SiteOut, home_out, site_error};
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
/// (operators, regulators), by id, pending, active and decommissioned alike.
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
    let homes = gridmesh_db::list_homes(&state.pool, caller.visible_owner(), params.after, limit).await?;
    Ok(Json(Page::new(homes, limit, |h| h.site.id.to_string(), SiteOut::from)))
}

/// `GET /v1/sites/{id}`: one home, for whoever may see it.
pub async fn get_one(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
) -> Result<Json<SiteOut>, ApiError> {
    caller.require_site(&state, id).await?;
    Ok(Json(home_out(&state, id).await?))
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
    let Some(current) = stored.iter().find(|s| s.node.id == id).cloned() else {
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
    if let Some(parent) = node.parent
        && !stored.iter().any(|s| s.node.id == parent)
    {
        return Err(ApiError::invalid("parent", "no such grid node"));
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

/// Refuses with 409 when the site was decommissioned: it takes no new agents, codes or orders.
///
/// # Errors
/// [`ApiError::Conflict`] naming when; database errors.
pub async fn require_active(state: &AppState, id: SiteId) -> Result<(), ApiError> {
    match gridmesh_db::decommissioned_at(&state.pool, id).await? {
        Some(at) => Err(ApiError::Conflict(format!("the home {id} was decommissioned at {at}"))),
        None => Ok(()),
    }
}

/// Body of `POST /v1/sites`: a home to register.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterIn {
    /// Whose home (operators only; others register their own).
    owner: Option<UserId>,
    name: String,
    /// The address as typed, stored as given.
    address: Option<String>,
    location: Option<LocationIo>,
    #[serde(default)]
    rated_pv_w: i64,
    pv_orientation: Option<OrientationIo>,
    battery: Option<BatteryIo>,
    grid: ConnectionIo,
}

/// A pending home as the API shows it.
#[derive(Debug, Serialize)]
pub struct PendingOut {
    id: SiteId,
    status: &'static str,
    /// Absent for utilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<UserId>,
    /// Absent for utilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Absent for utilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    location: Option<LocationIo>,
    rated_pv_w: i64,
    pv_orientation: Option<OrientationIo>,
    battery: Option<BatteryIo>,
    grid: ConnectionIo,
    registered_at: DateTime<Utc>,
}

/// A pending home as its owner, operators and regulators see it (`personal`), or as a utility
/// does: enough to pick its feeder, not who lives where (no owner, name or address; the
/// location rounded to about 100 m).
fn pending_out(h: Home, personal: bool) -> PendingOut {
    let round = |x: f64| if personal { x } else { (x * 1_000.0).round() / 1_000.0 };
    let s = h.site;
    PendingOut {
        id: s.id,
        status: "pending",
        owner: personal.then_some(s.owner),
        name: personal.then_some(s.name),
        address: h.address.filter(|_| personal),
        location: s.location.map(|l| LocationIo { lat: round(l.lat), lon: round(l.lon) }),
        rated_pv_w: s.rated_pv.get(),
        pv_orientation: s.pv_orientation.map(OrientationIo::from),
        battery: s.battery.map(BatteryIo::from),
        grid: ConnectionIo::from(s.grid),
        registered_at: h.registered_at,
    }
}

/// `POST /v1/sites` (homeowner, prosumer: their own; operator: anyone's): registers a home,
/// pending until it is assigned to a feeder; its owner may ask for enrolment codes at once.
pub async fn register(
    State(state): State<AppState>,
    caller: Authenticated,
    Json(body): Json<RegisterIn>,
) -> Result<(StatusCode, Json<SiteOut>), ApiError> {
    let me = caller.require(&[Role::Homeowner, Role::Prosumer, Role::Operator])?;
    let owner = match body.owner {
        Some(o) if o != me.user_id && me.role != Role::Operator => {
            return Err(ApiError::Denied("only operators register homes for someone else".into()));
        }
        Some(o) => o,
        None => me.user_id,
    };
    if body.address.as_ref().is_some_and(|a| a.chars().count() > 500) {
        return Err(ApiError::invalid("address", "must be at most 500 characters"));
    }
    let site = Site {
        id: SiteId::new_random(),
        owner,
        feeder: None,
        name: body.name.trim().to_owned(),
        location: body.location.map(GeoPoint::from),
        rated_pv: Watts(body.rated_pv_w),
        pv_orientation: body.pv_orientation.map(PvOrientation::from),
        battery: body.battery.map(BatterySpec::from),
        grid: body.grid.into(),
    };
    site.validate().map_err(|e| site_error(&e))?;
    let address = body.address.map(|a| a.trim().to_owned()).filter(|a| !a.is_empty());
    gridmesh_db::register_home(&state.pool, &site, address.as_deref()).await?;
    tracing::info!(site = %site.id, "home registered, pending its feeder");
    Ok((StatusCode::CREATED, Json(home_out(&state, site.id).await?)))
}

/// Pending homes.
#[derive(Debug, Serialize)]
pub struct PendingList {
    items: Vec<PendingOut>,
}

/// `GET /v1/sites/pending`: homes waiting for their feeder: the caller's own (homeowners,
/// prosumers), or all (operators, regulators; utilities without owner and address).
pub async fn pending(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<Json<PendingList>, ApiError> {
    let role = caller.0.role;
    let personal = role != Role::Utility;
    let owner = if role == Role::Utility { None } else { caller.visible_owner() };
    let items = gridmesh_db::pending_homes(&state.pool, owner)
        .await?
        .into_iter()
        .map(|r| pending_out(r, personal))
        .collect();
    Ok(Json(PendingList { items }))
}

/// Body of `POST /v1/sites/{id}/assign`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignIn {
    feeder: GridNodeId,
}

/// What an assignment answers: the home and its feeder, nothing about who lives there (a
/// utility assigns).
#[derive(Debug, Serialize)]
pub struct AssignedOut {
    id: SiteId,
    feeder: GridNodeId,
    status: &'static str,
}

/// `POST /v1/sites/{id}/assign` (utility, operator): a pending home goes on a feeder; from now
/// on it is planned, trades and settles.
pub async fn assign(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
    Json(body): Json<AssignIn>,
) -> Result<Json<AssignedOut>, ApiError> {
    caller.require(GRID_WRITERS)?;
    let Some(site) = gridmesh_db::assign_home(&state.pool, id, body.feeder).await? else {
        return Err(match gridmesh_db::get_home(&state.pool, id).await? {
            Some(h) if h.decommissioned_at.is_some() => {
                ApiError::Conflict(format!("the home {id} was decommissioned; it cannot be assigned"))
            }
            Some(h) => ApiError::Conflict(format!(
                "the home {id} is on feeder {} already",
                h.site.feeder.map_or_else(|| "?".to_owned(), |f| f.to_string())
            )),
            None => ApiError::NotFound("pending home".into()),
        });
    };
    tracing::info!(site = %id, feeder = %body.feeder, "home assigned to its feeder");
    Ok(Json(AssignedOut { id: site.id, feeder: body.feeder, status: "active" }))
}

/// Body of `PATCH /v1/sites/{id}`: what changes; the rest stays.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SitePatch {
    name: Option<String>,
    location: Option<LocationIo>,
    rated_pv_w: Option<i64>,
    /// A new orientation; `null` for unknown.
    #[serde(default, with = "serde_with_null")]
    pv_orientation: Option<Option<OrientationIo>>,
    /// A new battery; `null` for none.
    #[serde(default, with = "serde_with_null")]
    battery: Option<Option<BatteryIo>>,
    grid: Option<ConnectionIo>,
}

/// `PATCH /v1/sites/{id}` (the owner, an operator): the home's name, location or ratings.
pub async fn patch_site(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
    Json(patch): Json<SitePatch>,
) -> Result<Json<SiteOut>, ApiError> {
    let current = caller.require_site(&state, id).await?;
    if !caller.can_act_for(&current) {
        return Err(ApiError::Denied("only the home's owner or an operator may change it".into()));
    }
    require_active(&state, id).await?;
    let site = Site {
        name: patch.name.map_or(current.name.clone(), |n| n.trim().to_owned()),
        location: patch.location.map(GeoPoint::from).or(current.location),
        rated_pv: patch.rated_pv_w.map_or(current.rated_pv, Watts),
        pv_orientation: match patch.pv_orientation {
            Some(o) => o.map(PvOrientation::from),
            None => current.pv_orientation,
        },
        battery: match patch.battery {
            Some(b) => b.map(BatterySpec::from),
            None => current.battery,
        },
        grid: patch.grid.map_or(current.grid, GridConnection::from),
        ..current
    };
    site.validate().map_err(|e| site_error(&e))?;
    gridmesh_db::update_site(&state.pool, &site).await?;
    tracing::info!(site = %id, "home changed");
    Ok(Json(home_out(&state, id).await?))
}

/// What decommissioning did.
#[derive(Debug, Serialize)]
pub struct DecommissionedOut {
    site_id: SiteId,
    decommissioned_at: DateTime<Utc>,
    keys_revoked: u64,
    strategies_stopped: u64,
    orders_cancelled: u64,
}

/// `POST /v1/sites/{id}/decommission` (the owner, an operator): the home leaves the network;
/// its readings, trades and settlements stay, its agents are revoked and its strategies stop.
pub async fn decommission(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
) -> Result<Json<DecommissionedOut>, ApiError> {
    let site = caller.require_site(&state, id).await?;
    if !caller.can_act_for(&site) {
        return Err(ApiError::Denied("only the home's owner or an operator may decommission it".into()));
    }
    require_active(&state, id).await?;
    let done = gridmesh_db::decommission_site(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("the home {id} was decommissioned already")))?;
    tracing::info!(site = %id, keys = done.keys_revoked, "home decommissioned");
    Ok(Json(DecommissionedOut {
        site_id: id,
        decommissioned_at: done.at,
        keys_revoked: done.keys_revoked,
        strategies_stopped: done.strategies_stopped,
        orders_cancelled: done.orders_cancelled,
    }))
}

/// Body of `POST /v1/grid/nodes/{id}/limits`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowIn {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    import_limit_w: Option<i64>,
    export_limit_w: Option<i64>,
    #[serde(default)]
    reason: String,
}

/// A limit window as the API shows it.
#[derive(Debug, Serialize)]
pub struct WindowOut {
    id: uuid::Uuid,
    node: GridNodeId,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    import_limit_w: Option<i64>,
    export_limit_w: Option<i64>,
    reason: String,
    created_at: DateTime<Utc>,
}

impl From<gridmesh_db::StoredLimitWindow> for WindowOut {
    fn from(w: gridmesh_db::StoredLimitWindow) -> Self {
        Self {
            id: w.id,
            node: w.window.node,
            from: w.window.from,
            until: w.window.until,
            import_limit_w: w.window.import_limit.map(Watts::get),
            export_limit_w: w.window.export_limit.map(Watts::get),
            reason: w.reason,
            created_at: w.created_at,
        }
    }
}

/// `POST /v1/grid/nodes/{id}/limits` (utility, operator): the node's limits for a while (a
/// seasonal limit, an outage), replacing its own there; the plan and the market use them for
/// the steps and periods they cover.
pub async fn add_window(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<GridNodeId>,
    Json(body): Json<WindowIn>,
) -> Result<(StatusCode, Json<WindowOut>), ApiError> {
    let me = caller.require(GRID_WRITERS)?;
    if body.until <= body.from {
        return Err(ApiError::invalid("until", "must be after from"));
    }
    if body.import_limit_w.is_none() && body.export_limit_w.is_none() {
        return Err(ApiError::invalid("import_limit_w", "give import_limit_w, export_limit_w or both"));
    }
    for (field, w) in [("import_limit_w", body.import_limit_w), ("export_limit_w", body.export_limit_w)] {
        if w.is_some_and(|w| w < 0) {
            return Err(ApiError::invalid(field, "must not be negative"));
        }
    }
    if body.reason.chars().count() > 500 {
        return Err(ApiError::invalid("reason", "must be at most 500 characters"));
    }
    let window = gridmesh_core::LimitWindow {
        node: id,
        from: body.from,
        until: body.until,
        import_limit: body.import_limit_w.map(Watts),
        export_limit: body.export_limit_w.map(Watts),
    };
    let wid =
        gridmesh_db::add_limit_window(&state.pool, &window, body.reason.trim(), Some(me.user_id)).await?;
    tracing::info!(node = %id, window = %wid, from = %body.from, until = %body.until, "limit window added");
    let stored = gridmesh_db::limit_windows_between(&state.pool, Some(id), body.from, body.until)
        .await?
        .into_iter()
        .find(|w| w.id == wid)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a limit window vanished")))?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// Windows of a node.
#[derive(Debug, Serialize)]
pub struct WindowsOut {
    items: Vec<WindowOut>,
}

/// `GET /v1/grid/nodes/{id}/limits` (utility, operator, regulator): the node's windows in force
/// now or later.
pub async fn windows(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<GridNodeId>,
) -> Result<Json<WindowsOut>, ApiError> {
    caller.require(&[Role::Utility, Role::Operator, Role::Regulator])?;
    let now = Utc::now();
    let items =
        gridmesh_db::limit_windows_between(&state.pool, Some(id), now, now + chrono::Duration::days(3_650))
            .await?
            .into_iter()
            .map(WindowOut::from)
            .collect();
    Ok(Json(WindowsOut { items }))
}

/// `DELETE /v1/grid/limits/{id}` (utility, operator): withdraws a window.
pub async fn remove_window(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.require(GRID_WRITERS)?;
    if gridmesh_db::remove_limit_window(&state.pool, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("limit window".into()))
    }
}

/// `POST /v1/grid/nodes/{id}/retire` (utility, operator): the node leaves the grid; the history
/// that names it stays. Refused while homes or live nodes hang off it.
pub async fn retire_node(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<GridNodeId>,
) -> Result<StatusCode, ApiError> {
    caller.require(GRID_WRITERS)?;
    match gridmesh_db::retire_grid_node(&state.pool, id).await? {
        Ok(()) => {
            tracing::info!(node = %id, "grid node retired");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(gridmesh_db::RetireRefusal::Unknown) => Err(ApiError::NotFound("grid node".into())),
        Err(gridmesh_db::RetireRefusal::Homes(n)) => Err(ApiError::Conflict(format!(
            "{n} home(s) are on this node; assign them elsewhere or decommission them first"
        ))),
        Err(gridmesh_db::RetireRefusal::Children(n)) => {
            Err(ApiError::Conflict(format!("{n} grid node(s) hang off this node; move or retire them first")))
        }
    }
}
