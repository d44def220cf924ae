use gridmesh_core::{GridNode, GridNodeId, GridNodeKind, Site, SiteId, Topology, UserId, Watts};
use uuid::Uuid;

use crate::{DbError, Pool};

/// Stores a grid node. The database refuses an unknown parent (`grid_nodes_parent_id_fkey`), a
/// cycle (`grid_nodes_no_cycle`) and negative limits.
///
/// # Errors
/// [`DbError::Constraint`] naming the rule broken.
pub async fn insert_grid_node(pool: &Pool, node: &GridNode) -> Result<(), DbError> {
    insert_node_on(&mut *pool.acquire().await?, node, None).await
}

/// Inserts a grid node with its code, if any.
pub(crate) async fn insert_node_on(
    conn: &mut sqlx::PgConnection,
    node: &GridNode,
    code: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO grid_nodes (id, parent_id, kind, name, import_limit_w, export_limit_w, code)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(node.id.0)
    .bind(node.parent.map(|p| p.0))
    .bind(node.kind.as_str())
    .bind(&node.name)
    .bind(node.import_limit.get())
    .bind(node.export_limit.get())
    .bind(code)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores a site after [`Site::validate`]; the database also refuses an unknown owner, a feeder
/// that is unknown or a transformer (`sites_feeder`), and negative ratings. A site with a feeder
/// is assigned from now; one without is pending.
///
/// # Errors
/// [`DbError::Invalid`] for a site that fails validation, [`DbError::Constraint`] otherwise.
pub async fn insert_site(pool: &Pool, site: &Site) -> Result<(), DbError> {
    site.validate().map_err(|e| DbError::Invalid { field: "site", reason: e.to_string() })?;
    insert_site_on(&mut *pool.acquire().await?, site, None).await
}

/// Inserts a site with the address its owner typed, if any.
pub(crate) async fn insert_site_on(
    conn: &mut sqlx::PgConnection,
    site: &Site,
    address: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO sites (id, owner_id, feeder_id, assigned_at, name, latitude, longitude, rated_pv_w,
             pv_azimuth_deg, pv_tilt_deg, battery_capacity_wh, battery_max_charge_w,
             battery_max_discharge_w, grid_import_limit_w, grid_export_limit_w, address)
         VALUES ($1, $2, $3, CASE WHEN $3::uuid IS NULL THEN NULL ELSE now() END, $4, $5, $6, $7, $8,
             $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(site.id.0)
    .bind(site.owner.0)
    .bind(site.feeder.map(|f| f.0))
    .bind(&site.name)
    .bind(site.location.map(|l| l.lat))
    .bind(site.location.map(|l| l.lon))
    .bind(site.rated_pv.get())
    .bind(site.pv_orientation.map(|o| o.azimuth_deg))
    .bind(site.pv_orientation.map(|o| o.tilt_deg))
    .bind(site.battery.map(|b| b.capacity.get()))
    .bind(site.battery.map(|b| b.max_charge.get()))
    .bind(site.battery.map(|b| b.max_discharge.get()))
    .bind(site.grid.import_limit.get())
    .bind(site.grid.export_limit.get())
    .bind(address)
    .execute(conn)
    .await?;
    Ok(())
}

/// One site by id, pending or assigned, decommissioned or not.
///
/// # Errors
/// Database errors only; an unknown id is `Ok(None)`.
pub async fn get_site(pool: &Pool, id: SiteId) -> Result<Option<Site>, DbError> {
    Ok(crate::homes::get_home(pool, id).await?.map(|h| h.site))
}

/// Sites by id, `owner`'s only when given, after the id `after`, at most `limit`.
///
/// # Errors
/// Database errors.
pub async fn list_sites(
    pool: &Pool,
    owner: Option<UserId>,
    after: Option<SiteId>,
    limit: u32,
) -> Result<Vec<Site>, DbError> {
    Ok(crate::homes::list_homes(pool, owner, after, limit).await?.into_iter().map(|h| h.site).collect())
}

/// Changes a grid node's parent, name and limits (its kind and code stay). The database
/// refuses an unknown parent and a cycle as for [`insert_grid_node`]; `Ok(false)` for an
/// unknown node.
///
/// # Errors
/// [`DbError::Constraint`] naming the rule broken.
pub async fn update_grid_node(pool: &Pool, node: &GridNode) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE grid_nodes SET parent_id = $2, name = $3, import_limit_w = $4, export_limit_w = $5
         WHERE id = $1 AND retired_at IS NULL",
    )
    .bind(node.id.0)
    .bind(node.parent.map(|p| p.0))
    .bind(&node.name)
    .bind(node.import_limit.get())
    .bind(node.export_limit.get())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The whole grid tree with every site's feeder, validated.
///
/// # Errors
/// Database errors, or [`DbError::Corrupt`] if the stored tree is not a valid topology.
pub async fn load_topology(pool: &Pool) -> Result<Topology, DbError> {
    // One snapshot for both queries, so a site added in between cannot point at a node we
    // did not read.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let nodes: Vec<(Uuid, Option<Uuid>, String, String, i64, i64)> =
        sqlx::query_as(
            "SELECT id, parent_id, kind, name, import_limit_w, export_limit_w FROM grid_nodes WHERE retired_at IS NULL",
        )
            .fetch_all(&mut *tx)
            .await?;
    let nodes = nodes
        .into_iter()
        .map(|(id, parent, kind, name, imp, exp)| {
            let kind = match kind.as_str() {
                "transformer" => GridNodeKind::Transformer,
                "feeder" => GridNodeKind::Feeder,
                other => return Err(DbError::Corrupt(format!("grid_nodes.kind {other:?}"))),
            };
            Ok(GridNode {
                id: GridNodeId(id),
                kind,
                parent: parent.map(GridNodeId),
                name,
                import_limit: Watts(imp),
                export_limit: Watts(exp),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Pending homes are not planned yet, decommissioned ones no longer.
    let sites: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT id, feeder_id FROM sites WHERE feeder_id IS NOT NULL AND decommissioned_at IS NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    Topology::new(nodes, sites.into_iter().map(|(s, f)| (SiteId(s), GridNodeId(f))))
        .map_err(|e| DbError::Corrupt(e.to_string()))
}

/// Why a node cannot retire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireRefusal {
    /// No such node, or retired already.
    Unknown,
    /// Homes (not decommissioned) are on it: this many.
    Homes(i64),
    /// Nodes (not retired) hang off it: this many.
    Children(i64),
}

/// Retires a grid node, with the tree locked: it stays for the history that names it but is no
/// longer part of the grid. Refused while homes or live nodes hang off it.
///
/// # Errors
/// Database errors; a node that cannot retire is `Ok(Err(why))`.
pub async fn retire_grid_node(pool: &Pool, id: GridNodeId) -> Result<Result<(), RetireRefusal>, DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('gridmesh_grid_nodes_tree'))")
        .execute(&mut *tx)
        .await?;
    let live: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM grid_nodes WHERE id = $1 AND retired_at IS NULL)")
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await?;
    if !live {
        return Ok(Err(RetireRefusal::Unknown));
    }
    let homes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sites WHERE feeder_id = $1 AND decommissioned_at IS NULL")
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await?;
    if homes > 0 {
        return Ok(Err(RetireRefusal::Homes(homes)));
    }
    let children: i64 =
        sqlx::query_scalar("SELECT count(*) FROM grid_nodes WHERE parent_id = $1 AND retired_at IS NULL")
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await?;
    if children > 0 {
        return Ok(Err(RetireRefusal::Children(children)));
    }
    sqlx::query("UPDATE grid_nodes SET retired_at = now() WHERE id = $1")
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(()))
}
