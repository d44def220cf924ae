//! A pending home in the data layer: it is a site without a feeder, so its agent may enrol and
//! its readings are stored, but planning, the market's grid and settlement leave it out until
//! it is assigned, and settlement only from the period in which it was assigned.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on a broken set-up")]

use chrono::Utc;
use gridmesh_core::{
    GridConnection, GridNode, GridNodeId, GridNodeKind, Period, PvOrientation, Role, Site, SiteId, Watts,
};
use gridmesh_db::{HomeStatus, NewUser, Pool};

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_pending_home_reports_but_is_neither_planned_nor_settled_until_assigned(pool: Pool) {
    let owner =
        gridmesh_db::create_user(&pool, &NewUser { name: "Ada".into(), email: None, role: Role::Homeowner })
            .await
            .unwrap();
    let feeder = GridNode {
        id: GridNodeId::new_random(),
        kind: GridNodeKind::Feeder,
        parent: None,
        name: "F1".into(),
        import_limit: Watts(100_000),
        export_limit: Watts(100_000),
    };
    gridmesh_db::insert_grid_node(&pool, &feeder).await.unwrap();
    let site = Site {
        id: SiteId::new_random(),
        owner: owner.id,
        feeder: Some(feeder.id),
        name: "Ada's house".into(),
        location: None,
        rated_pv: Watts(5_000),
        pv_orientation: Some(PvOrientation { azimuth_deg: 200, tilt_deg: 30 }),
        battery: None,
        grid: GridConnection { import_limit: Watts(17_000), export_limit: Watts(5_000) },
    };
    // Registration ignores a feeder given with it: a home always starts pending.
    gridmesh_db::register_home(&pool, &site, Some("3 Oak Lane")).await.unwrap();
    let home = gridmesh_db::get_home(&pool, site.id).await.unwrap().unwrap();
    assert_eq!((home.status(), home.site.feeder, home.assigned_at), (HomeStatus::Pending, None, None));
    assert_eq!(home.site.pv_orientation, site.pv_orientation);
    assert_eq!(home.address.as_deref(), Some("3 Oak Lane"));
    assert_eq!(gridmesh_db::pending_homes(&pool, Some(owner.id)).await.unwrap().len(), 1);

    // Its agent enrols while it waits.
    gridmesh_db::enrol_agent(&pool, site.id, "pi", [7; 32], None).await.unwrap();

    // Not planned, not in settlement, not waited for.
    let now = Period::containing(Utc::now());
    assert!(gridmesh_db::load_topology(&pool).await.unwrap().sites_on(feeder.id).is_empty());
    assert!(gridmesh_db::settlement_sites(&pool, now).await.unwrap().is_empty());
    assert!(gridmesh_db::metering_complete(&pool, now).await.unwrap());
    assert_eq!(gridmesh_db::grid_size(&pool).await.unwrap(), (1, 0));

    // Assigned: planned from now, settled from the period it was assigned in, not before.
    let assigned = gridmesh_db::assign_home(&pool, site.id, feeder.id).await.unwrap().unwrap();
    assert_eq!(assigned.feeder, Some(feeder.id));
    assert_eq!(gridmesh_db::load_topology(&pool).await.unwrap().sites_on(feeder.id), &[site.id]);
    assert_eq!(gridmesh_db::grid_size(&pool).await.unwrap(), (1, 1));
    let settled: Vec<SiteId> =
        gridmesh_db::settlement_sites(&pool, now).await.unwrap().into_iter().map(|s| s.site).collect();
    assert_eq!(settled, [site.id]);
    let before = Period::containing(Utc::now() - chrono::Duration::hours(1));
    assert!(gridmesh_db::settlement_sites(&pool, before).await.unwrap().is_empty());
    assert!(gridmesh_db::pending_homes(&pool, None).await.unwrap().is_empty());
    // Assigned once: a second assignment finds no pending home.
    assert!(gridmesh_db::assign_home(&pool, site.id, feeder.id).await.unwrap().is_none());

    // Decommissioned while pending: never assigned afterwards.
    let other = Site { id: SiteId::new_random(), name: "Shed".into(), ..site.clone() };
    gridmesh_db::register_home(&pool, &other, None).await.unwrap();
    gridmesh_db::decommission_site(&pool, other.id).await.unwrap().unwrap();
    let gone = gridmesh_db::get_home(&pool, other.id).await.unwrap().unwrap();
    assert_eq!(gone.status(), HomeStatus::Decommissioned);
    assert!(gridmesh_db::assign_home(&pool, other.id, feeder.id).await.unwrap().is_none());
    assert!(gridmesh_db::pending_homes(&pool, None).await.unwrap().is_empty());
}
