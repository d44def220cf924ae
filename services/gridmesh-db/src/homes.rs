//! A home's life: registered by its owner (pending), assigned to a feeder by a utility or an
//! operator (then it is a site: planned, trading, settling), its ratings edited, and
//! decommissioned (history kept, agents revoked, strategies stopped).

use chrono::{DateTime, Utc};
use gridmesh_core::{
    BatterySpec, GeoPoint, GridConnection, GridNodeId, Site, SiteId, UserId, WattHours, Watts,
};
use uuid::Uuid;

use crate::{DbError, Pool};

/// A home waiting for its feeder: everything a site has but the feeder.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The home's id, kept when it becomes a site.
    pub id: SiteId,
    /// Its owner.
    pub owner: UserId,
    /// Its name.
    pub name: String,
    /// The address as the owner typed it.
    pub address: Option<String>,
    /// Where it is.
    pub location: Option<GeoPoint>,
    /// PV rating.
    pub rated_pv: Watts,
    /// The battery, if any.
    pub battery: Option<BatterySpec>,
    /// The grid connection's limits.
    pub grid: GridConnection,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl Registration {
    /// The site it becomes on `feeder`.
    #[must_use]
    pub fn on_feeder(&self, feeder: GridNodeId) -> Site {
        Site {
            id: self.id,
            owner: self.owner,
            feeder,
            name: self.name.clone(),
            location: self.location,
            rated_pv: self.rated_pv,
            battery: self.battery,
            grid: self.grid,
        }
    }
}

type RegistrationRow = (
    Uuid,
    Uuid,
    String,
    Option<String>,
    Option<f64>,
    Option<f64>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    DateTime<Utc>,
);

/// The registration columns in [`RegistrationRow`] order; the only text put into these queries,
/// a constant (so `AssertSqlSafe` below is safe).
const REGISTRATION_COLUMNS: &str =
    "id, owner_id, name, address, latitude, longitude, rated_pv_w, battery_capacity_wh,
     battery_max_charge_w, battery_max_discharge_w, grid_import_limit_w, grid_export_limit_w, created_at";

fn registration_of(r: RegistrationRow) -> Registration {
    let (id, owner, name, address, lat, lon, pv, cap, ch, dis, imp, exp, created_at) = r;
    Registration {
        id: SiteId(id),
        owner: UserId(owner),
        name,
        address,
        location: lat.zip(lon).map(|(lat, lon)| GeoPoint { lat, lon }),
        rated_pv: Watts(pv),
        battery: match (cap, ch, dis) {
            (Some(c), Some(ch), Some(dis)) => {
                Some(BatterySpec { capacity: WattHours(c), max_charge: Watts(ch), max_discharge: Watts(dis) })
            }
            _ => None,
        },
        grid: GridConnection { import_limit: Watts(imp), export_limit: Watts(exp) },
        created_at,
    }
}

/// Stores a new registration (the caller validated its ratings).
///
/// # Errors
/// [`DbError::Constraint`] naming the check broken; `site_registrations_owner_id_fkey` for an
/// unknown owner.
pub async fn register_home(pool: &Pool, r: &Registration) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO site_registrations (id, owner_id, name, address, latitude, longitude, rated_pv_w,
             battery_capacity_wh, battery_max_charge_w, battery_max_discharge_w, grid_import_limit_w,
             grid_export_limit_w)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(r.id.0)
    .bind(r.owner.0)
    .bind(&r.name)
    .bind(r.address.as_deref())
    .bind(r.location.map(|l| l.lat))
    .bind(r.location.map(|l| l.lon))
    .bind(r.rated_pv.get())
    .bind(r.battery.map(|b| b.capacity.get()))
    .bind(r.battery.map(|b| b.max_charge.get()))
    .bind(r.battery.map(|b| b.max_discharge.get()))
    .bind(r.grid.import_limit.get())
    .bind(r.grid.export_limit.get())
    .execute(pool)
    .await?;
    Ok(())
}

/// Registrations waiting for a feeder, `owner`'s only when given, oldest first.
///
/// # Errors
/// Database errors.
pub async fn pending_homes(pool: &Pool, owner: Option<UserId>) -> Result<Vec<Registration>, DbError> {
    let rows: Vec<RegistrationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {REGISTRATION_COLUMNS} FROM site_registrations
         WHERE $1::uuid IS NULL OR owner_id = $1 ORDER BY created_at, id"
    )))
    .bind(owner.map(|o| o.0))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(registration_of).collect())
}

/// One registration waiting for its feeder.
///
/// # Errors
/// Database errors.
pub async fn pending_home(pool: &Pool, id: SiteId) -> Result<Option<Registration>, DbError> {
    let row: Option<RegistrationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {REGISTRATION_COLUMNS} FROM site_registrations WHERE id = $1"
    )))
    .bind(id.0)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(registration_of))
}

/// Assigns a pending home to `feeder`: the registration becomes a site under the same id, in
/// one transaction. `Ok(None)` when no such registration waits.
///
/// # Errors
/// [`DbError::Constraint`] `sites_feeder` when `feeder` is not a feeder.
pub async fn assign_home(pool: &Pool, id: SiteId, feeder: GridNodeId) -> Result<Option<Site>, DbError> {
    let mut tx = pool.begin().await?;
    let row: Option<RegistrationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM site_registrations WHERE id = $1 RETURNING {REGISTRATION_COLUMNS}"
    )))
    .bind(id.0)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(registration) = row.map(registration_of) else { return Ok(None) };
    let site = registration.on_feeder(feeder);
    crate::grid::insert_site_on(&mut tx, &site, registration.address.as_deref()).await?;
    tx.commit().await?;
    Ok(Some(site))
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

/// Changes a site's name and ratings (its owner and feeder stay), keeping the ratings it
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
             grid_export_limit_w = $10
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
            let battery = match (cap, ch, dis) {
                (Some(c), Some(ch), Some(dis)) => Some(BatterySpec {
                    capacity: WattHours(c),
                    max_charge: Watts(ch),
                    max_discharge: Watts(dis),
                }),
                _ => None,
            };
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
