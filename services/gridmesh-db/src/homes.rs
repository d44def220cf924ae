//! A home's life: registered by its owner (pending: its agent may enrol and report), assigned
//! to a feeder by a utility or an operator (from then on planned, trading, settling), its
//! ratings edited, and decommissioned (history kept, agents revoked, strategies stopped).

use chrono::{DateTime, Utc};
use gridmesh_core::{
    BatterySpec, GeoPoint, GridConnection, GridNodeId, PvOrientation, Site, SiteId, UserId, WattHours, Watts,
};
use uuid::Uuid;

use crate::{DbError, Pool};

/// Where a home is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeStatus {
    /// Registered, waiting for its feeder.
    Pending,
    /// On a feeder: planned, trading, settling.
    Active,
    /// Left the network; history kept.
    Decommissioned,
}

impl HomeStatus {
    /// The name the API and the CLI use.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Decommissioned => "decommissioned",
        }
    }
}

/// A home as stored: the site and what only people read (the address as typed, its dates).
#[derive(Debug, Clone, PartialEq)]
pub struct Home {
    /// The site; its feeder is `None` while pending.
    pub site: Site,
    /// The address as the owner typed it.
    pub address: Option<String>,
    /// When it was registered.
    pub registered_at: DateTime<Utc>,
    /// When it was assigned to its first feeder.
    pub assigned_at: Option<DateTime<Utc>>,
    /// When it was decommissioned.
    pub decommissioned_at: Option<DateTime<Utc>>,
}

impl Home {
    /// Pending, active or decommissioned.
    #[must_use]
    pub fn status(&self) -> HomeStatus {
        match (self.decommissioned_at, self.site.feeder) {
            (Some(_), _) => HomeStatus::Decommissioned,
            (None, None) => HomeStatus::Pending,
            (None, Some(_)) => HomeStatus::Active,
        }
    }
}

#[derive(sqlx::FromRow)]
struct HomeRow {
    id: Uuid,
    owner_id: Uuid,
    feeder_id: Option<Uuid>,
    name: String,
    address: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    rated_pv_w: i64,
    pv_azimuth_deg: Option<i16>,
    pv_tilt_deg: Option<i16>,
    battery_capacity_wh: Option<i64>,
    battery_max_charge_w: Option<i64>,
    battery_max_discharge_w: Option<i64>,
    grid_import_limit_w: i64,
    grid_export_limit_w: i64,
    created_at: DateTime<Utc>,
    assigned_at: Option<DateTime<Utc>>,
    decommissioned_at: Option<DateTime<Utc>>,
}

/// The columns of [`HomeRow`]; the only text put into these queries, a constant (so
/// `AssertSqlSafe` below is safe).
const HOME_COLUMNS: &str = "id, owner_id, feeder_id, name, address, latitude, longitude, rated_pv_w,
     pv_azimuth_deg, pv_tilt_deg, battery_capacity_wh, battery_max_charge_w, battery_max_discharge_w,
     grid_import_limit_w, grid_export_limit_w, created_at, assigned_at, decommissioned_at";

fn battery_of(cap: Option<i64>, ch: Option<i64>, dis: Option<i64>) -> Option<BatterySpec> {
    match (cap, ch, dis) {
        (Some(c), Some(ch), Some(dis)) => {
            Some(BatterySpec { capacity: WattHours(c), max_charge: Watts(ch), max_discharge: Watts(dis) })
        }
        _ => None,
    }
}

fn home_of(r: HomeRow) -> Home {
    Home {
        site: Site {
            id: SiteId(r.id),
            owner: UserId(r.owner_id),
            feeder: r.feeder_id.map(GridNodeId),
            name: r.name,
            location: r.latitude.zip(r.longitude).map(|(lat, lon)| GeoPoint { lat, lon }),
            rated_pv: Watts(r.rated_pv_w),
            pv_orientation: r
                .pv_azimuth_deg
                .zip(r.pv_tilt_deg)
                .map(|(azimuth_deg, tilt_deg)| PvOrientation { azimuth_deg, tilt_deg }),
            battery: battery_of(r.battery_capacity_wh, r.battery_max_charge_w, r.battery_max_discharge_w),
            grid: GridConnection {
                import_limit: Watts(r.grid_import_limit_w),
                export_limit: Watts(r.grid_export_limit_w),
            },
        },
        address: r.address,
        registered_at: r.created_at,
        assigned_at: r.assigned_at,
        decommissioned_at: r.decommissioned_at,
    }
}

/// One home by id, whatever its status.
///
/// # Errors
/// Database errors only; an unknown id is `Ok(None)`.
pub async fn get_home(pool: &Pool, id: SiteId) -> Result<Option<Home>, DbError> {
    let row: Option<HomeRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {HOME_COLUMNS} FROM sites WHERE id = $1")))
            .bind(id.0)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(home_of))
}

/// Homes by id, whatever their status, `owner`'s only when given, after the id `after`, at most
/// `limit`.
///
/// # Errors
/// Database errors.
pub async fn list_homes(
    pool: &Pool,
    owner: Option<UserId>,
    after: Option<SiteId>,
    limit: u32,
) -> Result<Vec<Home>, DbError> {
    let rows: Vec<HomeRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {HOME_COLUMNS} FROM sites
         WHERE ($1::uuid IS NULL OR owner_id = $1) AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    )))
    .bind(owner.map(|o| o.0))
    .bind(after.map(|a| a.0))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(home_of).collect())
}

/// Stores a newly registered home, pending (the caller validated it; its feeder is ignored).
///
/// # Errors
/// [`DbError::Constraint`] naming the check broken; `sites_owner_id_fkey` for an unknown owner.
pub async fn register_home(pool: &Pool, site: &Site, address: Option<&str>) -> Result<(), DbError> {
    let pending = Site { feeder: None, ..site.clone() };
    crate::grid::insert_site_on(&mut *pool.acquire().await?, &pending, address).await
}

/// Homes waiting for a feeder (not decommissioned), `owner`'s only when given, oldest first.
///
/// # Errors
/// Database errors.
pub async fn pending_homes(pool: &Pool, owner: Option<UserId>) -> Result<Vec<Home>, DbError> {
    let rows: Vec<HomeRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {HOME_COLUMNS} FROM sites
         WHERE feeder_id IS NULL AND decommissioned_at IS NULL AND ($1::uuid IS NULL OR owner_id = $1)
         ORDER BY created_at, id"
    )))
    .bind(owner.map(|o| o.0))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(home_of).collect())
}

/// Puts a pending home on `feeder`: from now on it is planned, trades and settles. `Ok(None)`
/// when no such home waits (unknown, assigned already, or decommissioned).
///
/// # Errors
/// [`DbError::Constraint`] `sites_feeder` when `feeder` is not a feeder.
pub async fn assign_home(pool: &Pool, id: SiteId, feeder: GridNodeId) -> Result<Option<Site>, DbError> {
    let row: Option<HomeRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE sites SET feeder_id = $2, assigned_at = now()
         WHERE id = $1 AND feeder_id IS NULL AND decommissioned_at IS NULL
         RETURNING {HOME_COLUMNS}"
    )))
    .bind(id.0)
    .bind(feeder.0)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| home_of(r).site))
}

/// When the site was decommissioned, if it was (`Ok(None)` also for an unknown site).
///
/// # Errors
/// Database errors.
pub async fn decommissioned_at(pool: &Pool, id: SiteId) -> Result<Option<DateTime<Utc>>, DbError> {
    Ok(sqlx::query_scalar::<_, Option<DateTime<Utc>>>("SELECT decommissioned_at FROM sites WHERE id = $1")
        .bind(id.0)
        .fetch_optional(pool)
        .await?
        .flatten())
}

/// Changes a site's name, place, orientation and ratings (its owner and feeder stay), keeping the ratings it
/// replaces in the site's rating history, in one transaction.
///
/// # Errors
/// [`DbError::Constraint`] naming the check broken.
pub async fn update_site(pool: &Pool, site: &Site) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    // The ratings valid until now, kept for readings measured before the change.
    sqlx::query(
        "INSERT INTO site_rating_history (site_id, valid_until, rated_pv_w, battery_capacity_wh,
             battery_max_charge_w, battery_max_discharge_w, grid_import_limit_w, grid_export_limit_w)
         SELECT id, clock_timestamp(), rated_pv_w, battery_capacity_wh, battery_max_charge_w,
             battery_max_discharge_w, grid_import_limit_w, grid_export_limit_w
         FROM sites WHERE id = $1
           AND (rated_pv_w, battery_capacity_wh, battery_max_charge_w, battery_max_discharge_w,
                grid_import_limit_w, grid_export_limit_w)
               IS DISTINCT FROM ($2, $3, $4, $5, $6, $7)",
    )
    .bind(site.id.0)
    .bind(site.rated_pv.get())
    .bind(site.battery.map(|b| b.capacity.get()))
    .bind(site.battery.map(|b| b.max_charge.get()))
    .bind(site.battery.map(|b| b.max_discharge.get()))
    .bind(site.grid.import_limit.get())
    .bind(site.grid.export_limit.get())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE sites SET name = $2, latitude = $3, longitude = $4, rated_pv_w = $5, battery_capacity_wh = $6,
             battery_max_charge_w = $7, battery_max_discharge_w = $8, grid_import_limit_w = $9,
             grid_export_limit_w = $10, pv_azimuth_deg = $11, pv_tilt_deg = $12
         WHERE id = $1",
    )
    .bind(site.id.0)
    .bind(&site.name)
    .bind(site.location.map(|l| l.lat))
    .bind(site.location.map(|l| l.lon))
    .bind(site.rated_pv.get())
    .bind(site.battery.map(|b| b.capacity.get()))
    .bind(site.battery.map(|b| b.max_charge.get()))
    .bind(site.battery.map(|b| b.max_discharge.get()))
    .bind(site.grid.import_limit.get())
    .bind(site.grid.export_limit.get())
    .bind(site.pv_orientation.map(|o| o.azimuth_deg))
    .bind(site.pv_orientation.map(|o| o.tilt_deg))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

type RatingRow = (DateTime<Utc>, i64, Option<i64>, Option<i64>, Option<i64>, i64, i64);

/// A site's earlier ratings, oldest first: each the site as it was rated until `valid_until`
/// (name, place and feeder as today).
///
/// # Errors
/// Database errors.
pub async fn rating_history(pool: &Pool, current: &Site) -> Result<Vec<(DateTime<Utc>, Site)>, DbError> {
    let rows: Vec<RatingRow> = sqlx::query_as(
        "SELECT valid_until, rated_pv_w, battery_capacity_wh, battery_max_charge_w, battery_max_discharge_w,
             grid_import_limit_w, grid_export_limit_w
         FROM site_rating_history WHERE site_id = $1 ORDER BY valid_until",
    )
    .bind(current.id.0)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(until, pv, cap, ch, dis, imp, exp)| {
            let battery = battery_of(cap, ch, dis);
            let grid = GridConnection { import_limit: Watts(imp), export_limit: Watts(exp) };
            (until, Site { rated_pv: Watts(pv), battery, grid, ..current.clone() })
        })
        .collect())
}

/// What decommissioning did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decommissioned {
    /// When.
    pub at: DateTime<Utc>,
    /// Agent keys revoked.
    pub keys_revoked: u64,
    /// Standing strategies stopped.
    pub strategies_stopped: u64,
    /// Open orders cancelled.
    pub orders_cancelled: u64,
}

/// Decommissions a site in one transaction: marked, its agents' keys revoked, its standing
/// strategies stopped and its open orders cancelled; readings, trades and settlements stay,
/// and periods from then on settle without it. `Ok(None)` when it is unknown or
/// was decommissioned before.
///
/// # Errors
/// Database errors.
pub async fn decommission_site(pool: &Pool, id: SiteId) -> Result<Option<Decommissioned>, DbError> {
    let mut tx = pool.begin().await?;
    let at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE sites SET decommissioned_at = now() WHERE id = $1 AND decommissioned_at IS NULL
         RETURNING decommissioned_at",
    )
    .bind(id.0)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(at) = at else { return Ok(None) };
    let keys = sqlx::query(
        "UPDATE agent_keys SET revoked_at = now(), revoked_reason = 'site decommissioned'
         WHERE revoked_at IS NULL AND agent_id IN (SELECT id FROM agents WHERE site_id = $1)",
    )
    .bind(id.0)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let strategies = sqlx::query(
        "UPDATE market_strategies SET disabled_at = now() WHERE site_id = $1 AND disabled_at IS NULL",
    )
    .bind(id.0)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Open orders would still clear into trades the home can no longer deliver.
    let orders = sqlx::query(
        "UPDATE market_orders SET status = 'cancelled', closed_at = now() WHERE site_id = $1 AND status = 'open'",
    )
    .bind(id.0)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Some(Decommissioned {
        at,
        keys_revoked: keys,
        strategies_stopped: strategies,
        orders_cancelled: orders,
    }))
}
