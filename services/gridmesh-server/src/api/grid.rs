//! Provisioning with caller-chosen ids (operator only): grid nodes, sites, users and agents, for
//! tools that set up a known neighbourhood and may run again (the load generator, demos). Each
//! `PUT` creates the thing unless it exists (201) and otherwise leaves it as it is (200); the
//! answer shows what is stored either way, so a caller sees when an existing row differs from
//! what it asked for. The full onboarding (owners adding their own sites) is a later issue.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gridmesh_core::{
    AgentId, BatterySpec, GeoPoint, GridConnection, GridNode, GridNodeId, GridNodeKind, PvOrientation, Role,
    Site, SiteError, SiteId, UserId, WattHours, Watts,
};
use gridmesh_db::{AgentEnrolment, DbError, Ensured, Home, User};
use gridmesh_wire::PublicKey;
use serde::{Deserialize, Serialize};

use crate::auth::Authenticated;
use crate::error::{Json, Path};
use crate::{ApiError, AppState};

const OPERATOR: &[Role] = &[Role::Operator];

/// 201 for a row this call created, 200 for one that existed.
fn status<T>(e: &Ensured<T>) -> StatusCode {
    if e.created { StatusCode::CREATED } else { StatusCode::OK }
}

/// A name of 1 to 200 characters, trimmed.
fn name_field(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid(field, "must be 1 to 200 characters"));
    }
    Ok(name.to_owned())
}

/// A power limit in W, never negative.
fn watts(field: &str, w: i64) -> Result<Watts, ApiError> {
    if w < 0 {
        return Err(ApiError::invalid(field, format!("must not be negative, got {w}")));
    }
    Ok(Watts(w))
}

/// Body of `PUT /v1/grid/nodes/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridNodeIn {
    kind: GridNodeKind,
    #[serde(default)]
    parent: Option<GridNodeId>,
    name: String,
    import_limit_w: i64,
    export_limit_w: i64,
}

/// A grid node as the API shows it.
#[derive(Debug, Serialize)]
pub struct GridNodeOut {
    id: GridNodeId,
    kind: GridNodeKind,
    parent: Option<GridNodeId>,
    name: String,
    import_limit_w: i64,
    export_limit_w: i64,
}

impl From<GridNode> for GridNodeOut {
    fn from(n: GridNode) -> Self {
        Self {
            id: n.id,
            kind: n.kind,
            parent: n.parent,
            name: n.name,
            import_limit_w: n.import_limit.get(),
            export_limit_w: n.export_limit.get(),
        }
    }
}

/// `PUT /v1/grid/nodes/{id}` (operator): a transformer or feeder, created unless it exists.
pub async fn put_node(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<GridNodeId>,
    Json(body): Json<GridNodeIn>,
) -> Result<(StatusCode, Json<GridNodeOut>), ApiError> {
    caller.require(OPERATOR)?;
    if body.parent == Some(id) {
        return Err(ApiError::invalid("parent", "a node cannot be its own parent"));
    }
    let node = GridNode {
        id,
        kind: body.kind,
        parent: body.parent,
        name: name_field("name", &body.name)?,
        import_limit: watts("import_limit_w", body.import_limit_w)?,
        export_limit: watts("export_limit_w", body.export_limit_w)?,
    };
    let ensured = gridmesh_db::ensure_grid_node(&state.pool, &node).await?;
    if ensured.created {
        tracing::info!(node = %id, kind = node.kind.as_str(), "grid node created");
    }
    Ok((status(&ensured), Json(ensured.stored.into())))
}

/// A battery in a site body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatteryIo {
    pub(crate) capacity_wh: i64,
    pub(crate) max_charge_w: i64,
    pub(crate) max_discharge_w: i64,
}

/// The grid connection of a site body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionIo {
    pub(crate) import_limit_w: i64,
    pub(crate) export_limit_w: i64,
}

/// A PV array's orientation in a site body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrientationIo {
    /// Degrees clockwise from north, 0 to 359 (180 faces south).
    pub(crate) azimuth_deg: i16,
    /// Degrees from horizontal, 0 to 90.
    pub(crate) tilt_deg: i16,
}

impl From<OrientationIo> for PvOrientation {
    fn from(o: OrientationIo) -> Self {
        PvOrientation { azimuth_deg: o.azimuth_deg, tilt_deg: o.tilt_deg }
    }
}

impl From<PvOrientation> for OrientationIo {
    fn from(o: PvOrientation) -> Self {
        OrientationIo { azimuth_deg: o.azimuth_deg, tilt_deg: o.tilt_deg }
    }
}

/// A location in a site body (WGS84 degrees).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationIo {
    pub(crate) lat: f64,
    pub(crate) lon: f64,
}

impl From<LocationIo> for GeoPoint {
    fn from(l: LocationIo) -> Self {
        GeoPoint { lat: l.lat, lon: l.lon }
    }
}

impl From<BatteryIo> for BatterySpec {
    fn from(b: BatteryIo) -> Self {
        BatterySpec {
            capacity: WattHours(b.capacity_wh),
            max_charge: Watts(b.max_charge_w),
            max_discharge: Watts(b.max_discharge_w),
        }
    }
}

impl From<ConnectionIo> for GridConnection {
    fn from(g: ConnectionIo) -> Self {
        GridConnection { import_limit: Watts(g.import_limit_w), export_limit: Watts(g.export_limit_w) }
    }
}

/// Body of `PUT /v1/sites/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteIn {
    owner: UserId,
    feeder: GridNodeId,
    name: String,
    #[serde(default)]
    location: Option<LocationIo>,
    #[serde(default)]
    rated_pv_w: i64,
    #[serde(default)]
    pv_orientation: Option<OrientationIo>,
    #[serde(default)]
    battery: Option<BatteryIo>,
    grid: ConnectionIo,
}

/// A home as the API shows it to whoever may see it (its owner, operators, regulators).
#[derive(Debug, Serialize)]
pub struct SiteOut {
    id: SiteId,
    owner: UserId,
    /// `pending` (no feeder yet), `active` or `decommissioned`.
    status: &'static str,
    /// `null` while pending.
    feeder: Option<GridNodeId>,
    name: String,
    /// The address as the owner typed it.
    address: Option<String>,
    location: Option<LocationIo>,
    rated_pv_w: i64,
    pv_orientation: Option<OrientationIo>,
    battery: Option<BatteryIo>,
    grid: ConnectionIo,
    registered_at: DateTime<Utc>,
    assigned_at: Option<DateTime<Utc>>,
    decommissioned_at: Option<DateTime<Utc>>,
}

impl From<Home> for SiteOut {
    fn from(h: Home) -> Self {
        let status = h.status().as_str();
        let s = h.site;
        Self {
            id: s.id,
            owner: s.owner,
            status,
            feeder: s.feeder,
            name: s.name,
            address: h.address,
            location: s.location.map(|l| LocationIo { lat: l.lat, lon: l.lon }),
            rated_pv_w: s.rated_pv.get(),
            pv_orientation: s.pv_orientation.map(OrientationIo::from),
            battery: s.battery.map(BatteryIo::from),
            grid: s.grid.into(),
            registered_at: h.registered_at,
            assigned_at: h.assigned_at,
            decommissioned_at: h.decommissioned_at,
        }
    }
}

impl From<BatterySpec> for BatteryIo {
    fn from(b: BatterySpec) -> Self {
        BatteryIo {
            capacity_wh: b.capacity.get(),
            max_charge_w: b.max_charge.get(),
            max_discharge_w: b.max_discharge.get(),
        }
    }
}

impl From<GridConnection> for ConnectionIo {
    fn from(g: GridConnection) -> Self {
        ConnectionIo { import_limit_w: g.import_limit.get(), export_limit_w: g.export_limit.get() }
    }
}

/// The home as stored now, for an answer.
pub(crate) async fn home_out(state: &AppState, id: SiteId) -> Result<SiteOut, ApiError> {
    gridmesh_db::get_home(&state.pool, id)
        .await?
        .map(SiteOut::from)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the home {id} vanished")))
}

/// The field of the API body that a [`SiteError`] is about.
pub(crate) fn site_error(e: &SiteError) -> ApiError {
    let field = match e {
        SiteError::Negative { field, .. } => match *field {
            "rated_pv" => "rated_pv_w",
            "grid.import_limit" => "grid.import_limit_w",
            "grid.export_limit" => "grid.export_limit_w",
            "battery.capacity" => "battery.capacity_wh",
            "battery.max_charge" => "battery.max_charge_w",
            "battery.max_discharge" => "battery.max_discharge_w",
            other => other,
        },
        SiteError::BadLocation { .. } => "location",
        SiteError::BadName(_) => "name",
        SiteError::BadOrientation { field, .. } => field,
    };
    ApiError::invalid(field, e.to_string())
}

/// `PUT /v1/sites/{id}` (operator): a household site on a feeder, created unless it exists.
pub async fn put_site(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<SiteId>,
    Json(body): Json<SiteIn>,
) -> Result<(StatusCode, Json<SiteOut>), ApiError> {
    caller.require(OPERATOR)?;
    let site = Site {
        id,
        owner: body.owner,
        feeder: Some(body.feeder),
        name: body.name.trim().to_owned(),
        location: body.location.map(GeoPoint::from),
        rated_pv: Watts(body.rated_pv_w),
        pv_orientation: body.pv_orientation.map(PvOrientation::from),
        battery: body.battery.map(BatterySpec::from),
        grid: body.grid.into(),
    };
    // Checked here, not left to `insert_site`, so the answer names the body's field.
    site.validate().map_err(|e| site_error(&e))?;
    let ensured = gridmesh_db::ensure_site(&state.pool, &site).await?;
    if ensured.created {
        tracing::info!(site = %id, owner = %site.owner, feeder = %body.feeder, "site created");
    }
    Ok((status(&ensured), Json(home_out(&state, id).await?)))
}

/// Body of `PUT /v1/users/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    name: String,
    role: Role,
}

/// A provisioned user as the API shows it.
#[derive(Debug, Serialize)]
pub struct UserOut {
    id: UserId,
    name: String,
    role: Role,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        Self { id: u.id, name: u.name, role: u.role }
    }
}

/// `PUT /v1/users/{id}` (operator): an account with a chosen id, created unless it exists. It
/// has no token yet: `POST /v1/users/{id}/tokens` issues one.
pub async fn put_user(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<UserId>,
    Json(body): Json<UserIn>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    caller.require(OPERATOR)?;
    let name = name_field("name", &body.name)?;
    let ensured = gridmesh_db::ensure_user(&state.pool, id, &name, body.role).await?;
    if ensured.created {
        tracing::info!(user_id = %id, role = %body.role, "user created");
    }
    Ok((status(&ensured), Json(ensured.stored.into())))
}

/// Body of `PUT /v1/sites/{site}/agents/{agent}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentIn {
    #[serde(default)]
    name: String,
    /// The agent's ed25519 public key, 64 hex digits.
    public_key: String,
}

/// An ensured agent: who it is and where its sequence numbers continue.
#[derive(Debug, Serialize)]
pub struct AgentOut {
    agent_id: AgentId,
    site_id: SiteId,
    public_key: String,
    /// The next sequence number the agent should use: one past the highest it has delivered.
    next_seq: u64,
}

/// `PUT /v1/sites/{site}/agents/{agent}` (operator): the agent, registered for the site unless
/// it exists, with `public_key` as its active key (replacing another key it had). Answers the
/// agent's next sequence number, so a restarted simulator never reuses one.
pub async fn put_agent(
    State(state): State<AppState>,
    caller: Authenticated,
    Path((site, agent)): Path<(SiteId, AgentId)>,
    Json(body): Json<AgentIn>,
) -> Result<(StatusCode, Json<AgentOut>), ApiError> {
    caller.require(OPERATOR)?;
    let key =
        PublicKey::from_hex(&body.public_key).map_err(|e| ApiError::invalid("public_key", e.to_string()))?;
    let name = body.name.trim();
    if name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "must be at most 200 characters"));
    }
    let enrolment = AgentEnrolment { id: agent, site, name, public_key: *key.as_bytes() };
    let ensured = gridmesh_db::ensure_agent(&state.pool, &enrolment).await.map_err(|e| match e {
        // Not a constraint: the agent or the key belongs elsewhere, said by the data layer.
        DbError::Invalid { field: "agent", reason } => ApiError::Conflict(reason),
        e => ApiError::from(e),
    })?;
    if ensured.created {
        tracing::info!(site = %site, agent = %agent, "agent enrolled");
    }
    let status = if ensured.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(AgentOut {
            agent_id: agent,
            site_id: site,
            public_key: key.to_string(),
            next_seq: ensured.next_seq,
        }),
    ))
}
