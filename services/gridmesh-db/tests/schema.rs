//! The schema's constraints and the idempotent telemetry insert, each test in a fresh database
//! created by `#[sqlx::test]` from `DATABASE_URL` with every migration applied.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on a broken set-up; helpers outside #[test] fns unwrap too"
)]

use chrono::{DateTime, Duration, NaiveDate, Utc};
use gridmesh_core::{
    AgentId, BatterySpec, GeoPoint, GridConnection, GridNode, GridNodeId, GridNodeKind, Reading, Role, Site,
    SiteId, StateOfCharge, WattHours, Watts,
};
use gridmesh_db::{DbError, NewUser, Pool, UserFilter};

/// A recent time on a whole hour (yesterday, 10:00 UTC): inside the storable window whenever
/// the tests run.
fn base() -> DateTime<Utc> {
    (Utc::now().date_naive() - chrono::Days::new(1)).and_hms_opt(10, 0, 0).unwrap().and_utc()
}

fn node(kind: GridNodeKind, parent: Option<GridNodeId>) -> GridNode {
    GridNode {
        id: GridNodeId::new_random(),
        kind,
        parent,
        name: "node".into(),
        import_limit: Watts(400_000),
        export_limit: Watts(250_000),
    }
}

struct Fixture {
    transformer: GridNodeId,
    feeder: GridNodeId,
    site: Site,
    agent: AgentId,
}

async fn fixture(pool: &Pool) -> Fixture {
    let owner = gridmesh_db::create_user(
        pool,
        &NewUser { name: "Ada".into(), email: Some("ada@example.org".into()), role: Role::Homeowner },
    )
    .await
    .unwrap();
    let transformer = node(GridNodeKind::Transformer, None);
    let feeder = node(GridNodeKind::Feeder, Some(transformer.id));
    gridmesh_db::insert_grid_node(pool, &transformer).await.unwrap();
    gridmesh_db::insert_grid_node(pool, &feeder).await.unwrap();
    let site = Site {
        id: SiteId::new_random(),
        owner: owner.id,
        feeder: Some(feeder.id),
        name: "Maple St 12".into(),
        location: Some(GeoPoint { lat: 52.52, lon: 13.40 }),
        rated_pv: Watts(8_000),
        pv_orientation: None,
        battery: Some(BatterySpec {
            capacity: WattHours(10_000),
            max_charge: Watts(5_000),
            max_discharge: Watts(5_000),
        }),
        grid: GridConnection { import_limit: Watts(17_000), export_limit: Watts(7_000) },
    };
    gridmesh_db::insert_site(pool, &site).await.unwrap();
    let agent = gridmesh_db::create_agent(pool, site.id, "garage pi").await.unwrap();
    gridmesh_db::ensure_telemetry_partitions(pool, base().date_naive(), 1).await.unwrap();
    Fixture { transformer: transformer.id, feeder: feeder.id, site, agent }
}

fn reading(at: DateTime<Utc>, i: i64) -> Reading {
    Reading {
        at,
        grid_power: Some(Watts(1_000 - i)),
        pv_power: Some(Watts(2_000 + i)),
        battery_power: Some(Watts(-500)),
        battery_soc: StateOfCharge::from_basis_points(5_000),
        grid_import: Some(WattHours(10_000 + i)),
        grid_export: Some(WattHours(3_000)),
        pv_energy: None,
        battery_charged: None,
        battery_discharged: None,
    }
}

fn constraint(e: DbError) -> String {
    e.constraint().map(str::to_owned).unwrap_or_else(|| panic!("expected a constraint error, got {e}"))
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn telemetry_insert_is_idempotent(pool: Pool) {
    let f = fixture(&pool).await;
    let base = base();
    let readings: Vec<Reading> = (0..100).map(|i| reading(base + Duration::seconds(i), i)).collect();
    let batch: Vec<(u64, &Reading)> = (0_u64..).zip(readings.iter()).collect();

    assert_eq!(gridmesh_db::insert_telemetry(&pool, f.agent, f.site.id, &batch).await.unwrap(), 100);
    // Replaying the same batch changes nothing.
    assert_eq!(gridmesh_db::insert_telemetry(&pool, f.agent, f.site.id, &batch).await.unwrap(), 0);
    // An overlapping batch stores only what is new.
    let more: Vec<Reading> = (100..150).map(|i| reading(base + Duration::seconds(i), i)).collect();
    let mut overlap: Vec<(u64, &Reading)> = batch[50..].to_vec();
    overlap.extend((100_u64..).zip(more.iter()));
    assert_eq!(gridmesh_db::insert_telemetry(&pool, f.agent, f.site.id, &overlap).await.unwrap(), 50);
    assert_eq!(gridmesh_db::count_telemetry(&pool, f.agent).await.unwrap(), 150);
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_bad_row_stores_none_of_its_batch(pool: Pool) {
    let f = fixture(&pool).await;
    let good = reading(base(), 0);
    // Years ahead of the clock: refused before anything is written, the good row included.
    let far = reading(base() + Duration::days(5 * 365), 1);
    let err =
        gridmesh_db::insert_telemetry(&pool, f.agent, f.site.id, &[(0, &good), (1, &far)]).await.unwrap_err();
    assert!(matches!(err, DbError::Invalid { field: "measured_at", .. }), "{err}");
    assert!(err.to_string().contains("outside the storable window"), "{err}");
    // A violated check in the second row also stores nothing.
    let mut bad = reading(base(), 2);
    bad.grid_export = Some(WattHours(-1));
    let err =
        gridmesh_db::insert_telemetry(&pool, f.agent, f.site.id, &[(0, &good), (2, &bad)]).await.unwrap_err();
    assert_eq!(constraint(err), "telemetry_grid_export_wh_check");
    assert_eq!(gridmesh_db::count_telemetry(&pool, f.agent).await.unwrap(), 0);

    let too_big =
        gridmesh_db::insert_telemetry(&pool, f.agent, f.site.id, &[(u64::MAX, &good)]).await.unwrap_err();
    assert!(matches!(too_big, DbError::Invalid { field: "seq", .. }));
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn readings_from_a_long_outage_get_their_partitions(pool: Pool) {
    let f = fixture(&pool).await;
    // An agent back after a month offline: those days have no partition yet.
    let old: Vec<Reading> = (0..3).map(|i| reading(base() - Duration::days(30 + i), i)).collect();
    let batch: Vec<(u64, &Reading)> = (0_u64..).zip(old.iter()).collect();
    assert_eq!(gridmesh_db::insert_telemetry(&pool, f.agent, f.site.id, &batch).await.unwrap(), 3);
    assert_eq!(gridmesh_db::insert_telemetry(&pool, f.agent, f.site.id, &batch).await.unwrap(), 0);
    assert_eq!(gridmesh_db::count_telemetry(&pool, f.agent).await.unwrap(), 3);
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn readings_for_unknown_sites_or_agents_are_refused(pool: Pool) {
    let f = fixture(&pool).await;
    let r = reading(base(), 0);
    let err =
        gridmesh_db::insert_telemetry(&pool, f.agent, SiteId::new_random(), &[(0, &r)]).await.unwrap_err();
    assert_eq!(constraint(err), "telemetry_agent_site");
    let err =
        gridmesh_db::insert_telemetry(&pool, AgentId::new_random(), f.site.id, &[(0, &r)]).await.unwrap_err();
    assert_eq!(constraint(err), "telemetry_agent_site");

    // An agent may only report for its own site, even when both exist.
    let neighbour = Site { id: SiteId::new_random(), name: "Maple St 14".into(), ..f.site.clone() };
    gridmesh_db::insert_site(&pool, &neighbour).await.unwrap();
    let err = gridmesh_db::insert_telemetry(&pool, f.agent, neighbour.id, &[(0, &r)]).await.unwrap_err();
    assert_eq!(constraint(err), "telemetry_agent_site");
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn check_constraints_refuse_nonsense(pool: Pool) {
    let f = fixture(&pool).await;
    // Bypass the domain validation to prove the database holds the line on its own.
    let err = sqlx::query("UPDATE sites SET rated_pv_w = -1 WHERE id = $1")
        .bind(f.site.id.0)
        .execute(&pool)
        .await
        .map_err(DbError::from)
        .unwrap_err();
    assert_eq!(constraint(err), "sites_rated_pv_w_check");
    let err = sqlx::query("UPDATE sites SET battery_capacity_wh = NULL WHERE id = $1")
        .bind(f.site.id.0)
        .execute(&pool)
        .await
        .map_err(DbError::from)
        .unwrap_err();
    assert_eq!(constraint(err), "sites_battery_complete");
    let err = sqlx::query("INSERT INTO telemetry (agent_id, seq, site_id, measured_at, battery_soc_bp) VALUES ($1, 0, $2, $3, 10001)")
        .bind(f.agent.0)
        .bind(f.site.id.0)
        .bind(base())
        .execute(&pool)
        .await
        .map_err(DbError::from)
        .unwrap_err();
    assert_eq!(constraint(err), "telemetry_battery_soc_bp_check");

    let mut bad = node(GridNodeKind::Feeder, Some(f.transformer));
    bad.import_limit = Watts(-5);
    let err = gridmesh_db::insert_grid_node(&pool, &bad).await.unwrap_err();
    assert_eq!(constraint(err), "grid_nodes_import_limit_w_check");
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn the_grid_stays_a_tree_and_sites_hang_off_feeders(pool: Pool) {
    let f = fixture(&pool).await;
    // Making the transformer a child of its own feeder would close a cycle.
    let err = sqlx::query("UPDATE grid_nodes SET parent_id = $1 WHERE id = $2")
        .bind(f.feeder.0)
        .bind(f.transformer.0)
        .execute(&pool)
        .await
        .map_err(DbError::from)
        .unwrap_err();
    assert_eq!(constraint(err), "grid_nodes_no_cycle");

    let orphan = node(GridNodeKind::Feeder, Some(GridNodeId::new_random()));
    let err = gridmesh_db::insert_grid_node(&pool, &orphan).await.unwrap_err();
    assert_eq!(constraint(err), "grid_nodes_parent_id_fkey");

    let on_transformer = Site { id: SiteId::new_random(), feeder: Some(f.transformer), ..f.site.clone() };
    let err = gridmesh_db::insert_site(&pool, &on_transformer).await.unwrap_err();
    assert_eq!(constraint(err), "sites_feeder");

    let topology = gridmesh_db::load_topology(&pool).await.unwrap();
    assert_eq!(topology.site_path(f.site.id), vec![f.feeder, f.transformer]);
    let stored = gridmesh_db::get_site(&pool, f.site.id).await.unwrap().unwrap();
    assert_eq!(stored, f.site);
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn agent_keys_rotate_and_revoke(pool: Pool) {
    let f = fixture(&pool).await;
    let k1 = [1_u8; 32];
    let k2 = [2_u8; 32];
    gridmesh_db::enroll_key(&pool, f.agent, k1).await.unwrap();
    let found = gridmesh_db::find_active_key(&pool, &k1).await.unwrap().unwrap();
    assert_eq!((found.agent, found.site), (f.agent, f.site.id));

    // Rotation: the new key is active, the old one no longer is.
    gridmesh_db::enroll_key(&pool, f.agent, k2).await.unwrap();
    assert!(gridmesh_db::find_active_key(&pool, &k1).await.unwrap().is_none());
    assert!(gridmesh_db::find_active_key(&pool, &k2).await.unwrap().is_some());

    // A key cannot be enrolled twice, not even for another agent.
    let other = gridmesh_db::create_agent(&pool, f.site.id, "second").await.unwrap();
    let err = gridmesh_db::enroll_key(&pool, other, k2).await.unwrap_err();
    assert_eq!(constraint(err), "agent_keys_unique_key");

    assert!(gridmesh_db::revoke_key(&pool, f.agent, "device stolen").await.unwrap());
    assert!(gridmesh_db::find_active_key(&pool, &k2).await.unwrap().is_none());
    assert!(!gridmesh_db::revoke_key(&pool, f.agent, "again").await.unwrap());
}

async fn agents_of(pool: &Pool, site: SiteId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM agents WHERE site_id = $1")
        .bind(site.0)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn enrolling_a_used_key_leaves_no_agent_behind(pool: Pool) {
    let f = fixture(&pool).await;
    let key = [7_u8; 32];
    let agent = gridmesh_db::enrol_agent(&pool, f.site.id, "roof pi", key, None).await.unwrap();
    let found = gridmesh_db::find_active_key(&pool, &key).await.unwrap().unwrap();
    assert_eq!((found.agent, found.site), (agent, f.site.id));
    let before = agents_of(&pool, f.site.id).await;
    assert_eq!(before, 2, "the fixture's agent and the enrolled one");

    // The key is taken: refused, and the agent row made for it is rolled back with it.
    let err = gridmesh_db::enrol_agent(&pool, f.site.id, "clone", key, None).await.unwrap_err();
    assert_eq!(constraint(err), "agent_keys_unique_key");
    assert_eq!(agents_of(&pool, f.site.id).await, before, "no agent is left without a key");
    assert_eq!(gridmesh_db::find_active_key(&pool, &key).await.unwrap().unwrap().agent, agent);

    // An unknown site: neither agent nor key.
    let stray = [8_u8; 32];
    let err = gridmesh_db::enrol_agent(&pool, SiteId::new_random(), "stray", stray, None).await.unwrap_err();
    assert_eq!(constraint(err), "agents_site_id_fkey");
    assert!(gridmesh_db::find_active_key(&pool, &stray).await.unwrap().is_none());
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn tokens_identify_callers_until_revoked(pool: Pool) {
    let user = gridmesh_db::create_user(
        &pool,
        &NewUser { name: "Grid Co".into(), email: None, role: Role::Utility },
    )
    .await
    .unwrap();
    let (meta, secret) = gridmesh_db::issue_token(&pool, user.id, "ci", None).await.unwrap();
    assert!(secret.starts_with("gmt_") && secret.len() == 68);
    let caller = gridmesh_db::authenticate(&pool, &secret).await.unwrap().unwrap();
    assert_eq!((caller.user_id, caller.role, caller.token_id), (user.id, Role::Utility, meta.id));

    // Only the hash is stored.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM api_tokens WHERE id = $1")
        .bind(meta.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, gridmesh_db::hash_token(&secret).to_vec());

    assert!(gridmesh_db::authenticate(&pool, "gmt_wrong").await.unwrap().is_none());
    assert!(gridmesh_db::revoke_token(&pool, meta.id).await.unwrap());
    assert!(gridmesh_db::authenticate(&pool, &secret).await.unwrap().is_none());

    let (_, expired) =
        gridmesh_db::issue_token(&pool, user.id, "old", Some(Utc::now() - Duration::hours(1))).await.unwrap();
    assert!(gridmesh_db::authenticate(&pool, &expired).await.unwrap().is_none());

    let err =
        gridmesh_db::issue_token(&pool, gridmesh_core::UserId::new_random(), "x", None).await.unwrap_err();
    assert_eq!(constraint(err), "api_tokens_user_id_fkey");
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn users_are_validated_and_listed_by_role(pool: Pool) {
    for (name, role) in [("a", Role::Utility), ("b", Role::Prosumer), ("c", Role::Utility)] {
        gridmesh_db::create_user(&pool, &NewUser { name: name.into(), email: None, role }).await.unwrap();
    }
    let utilities =
        gridmesh_db::list_users(&pool, &UserFilter { role: Some(Role::Utility), limit: 10, after: None })
            .await
            .unwrap();
    assert_eq!(utilities.len(), 2);
    let page =
        gridmesh_db::list_users(&pool, &UserFilter { role: None, limit: 2, after: None }).await.unwrap();
    let next = gridmesh_db::list_users(&pool, &UserFilter { role: None, limit: 2, after: Some(page[1].id) })
        .await
        .unwrap();
    assert_eq!(page.len() + next.len(), 3);

    let err =
        gridmesh_db::create_user(&pool, &NewUser { name: String::new(), email: None, role: Role::Operator })
            .await
            .unwrap_err();
    assert_eq!(constraint(err), "users_name_check");
    let err = gridmesh_db::create_user(
        &pool,
        &NewUser { name: "x".into(), email: Some("not an email".into()), role: Role::Operator },
    )
    .await
    .unwrap_err();
    assert_eq!(constraint(err), "users_email_check");
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn partitions_are_created_once(pool: Pool) {
    let day = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
    assert_eq!(gridmesh_db::ensure_telemetry_partitions(&pool, day, 7).await.unwrap(), 7);
    assert_eq!(gridmesh_db::ensure_telemetry_partitions(&pool, day, 8).await.unwrap(), 1);
    let bounds: String = sqlx::query_scalar(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'telemetry_20270101'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        bounds.contains("2027-01-01 00:00:00+00") && bounds.contains("2027-01-02 00:00:00+00"),
        "{bounds}"
    );
}

fn row<'a>(f: &Fixture, seq: u64, r: &'a Reading) -> gridmesh_db::IngestRow<'a> {
    gridmesh_db::IngestRow {
        agent: f.agent,
        site: f.site.id,
        seq,
        reading: r,
        flags: gridmesh_core::ReadingFlags::NONE,
    }
}

/// Readings a minute apart from `base()`, import counter rising 10 Wh a minute.
fn minutes(range: std::ops::Range<i64>) -> Vec<Reading> {
    range
        .map(|i| Reading {
            at: base() + Duration::minutes(i),
            grid_power: Some(Watts(600)),
            grid_import: Some(WattHours(5_000 + 10 * i)),
            grid_export: Some(WattHours(100)),
            ..Reading::default()
        })
        .collect()
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn ingest_commits_count_replays_and_close_gaps(pool: Pool) {
    let f = fixture(&pool).await;
    let rs = minutes(0..45);
    let rows = |range: std::ops::Range<usize>| -> Vec<gridmesh_db::IngestRow<'_>> {
        range.map(|i| row(&f, i as u64, &rs[i])).collect()
    };
    let report = gridmesh_db::commit_ingest(&pool, &rows(0..10)).await.unwrap();
    assert_eq!((report.inserted, report.duplicates), (10, 0));
    // 10..14 are late.
    gridmesh_db::commit_ingest(&pool, &rows(15..45)).await.unwrap();
    let gaps = gridmesh_db::gaps(&pool, Some(f.site.id), 100).await.unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!((gaps[0].first, gaps[0].last, gaps[0].agent), (10, 14, f.agent));
    assert_eq!(gridmesh_db::missing_total(&pool).await.unwrap(), 5);

    // A replay changes nothing.
    let again = gridmesh_db::commit_ingest(&pool, &rows(0..10)).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 10));
    assert!(again.reused.is_empty());

    // The late readings close the gap and correct the period they fall in.
    gridmesh_db::commit_ingest(&pool, &rows(10..15)).await.unwrap();
    assert!(gridmesh_db::gaps(&pool, Some(f.site.id), 100).await.unwrap().is_empty());
    assert_eq!(gridmesh_db::count_telemetry(&pool, f.agent).await.unwrap(), 45);

    let energy =
        gridmesh_db::site_energy(&pool, f.site.id, base(), base() + Duration::hours(1)).await.unwrap();
    assert_eq!(energy.len(), 3);
    assert_eq!(energy.iter().map(|e| e.readings).collect::<Vec<_>>(), vec![15, 15, 15]);
    // First period: from its first reading (5000) to its last (5140); then 150 Wh each.
    assert_eq!(energy[0].imported, Some(WattHours(140)));
    assert!(!energy[0].complete);
    assert_eq!(energy[1].imported, Some(WattHours(150)));
    assert!(energy[1].complete);
    assert_eq!(energy[2].imported, Some(WattHours(150)));
    assert_eq!(energy[2].exported, Some(WattHours(0)));
    assert!(energy.iter().all(|e| e.flags.is_empty()));

    // The latest reading is the newest, not the last to arrive.
    let latest = gridmesh_db::latest_reading(&pool, f.site.id).await.unwrap().unwrap();
    assert_eq!((latest.seq, latest.reading), (44, rs[44]));
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_reused_sequence_number_is_stored_and_flagged(pool: Pool) {
    let f = fixture(&pool).await;
    let rs = minutes(0..5);
    let first: Vec<_> = (0..5).map(|i| row(&f, i as u64, &rs[i])).collect();
    gridmesh_db::commit_ingest(&pool, &first).await.unwrap();
    // A clone of the device sends sequence numbers 3 and 4 again, measured later.
    let clone = minutes(20..22);
    let second = vec![row(&f, 3, &clone[0]), row(&f, 4, &clone[1])];
    let report = gridmesh_db::commit_ingest(&pool, &second).await.unwrap();
    assert_eq!(report.reused, vec![(f.agent, 3), (f.agent, 4)]);
    assert_eq!(report.inserted, 2);
    let flagged = gridmesh_db::flagged_readings(&pool, f.site.id, base(), base() + Duration::hours(1), 100)
        .await
        .unwrap();
    // Both the first and the second reading of 3 and 4: nobody can tell which is genuine.
    assert_eq!(flagged.len(), 4);
    assert!(flagged.iter().all(|r| r.flags & 16 == 16));
    let energy =
        gridmesh_db::site_energy(&pool, f.site.id, base(), base() + Duration::hours(1)).await.unwrap();
    assert!(energy[1].flags.contains(gridmesh_core::ReadingFlags::SEQUENCE_REUSED), "{energy:?}");
    assert!(energy[0].flags.contains(gridmesh_core::ReadingFlags::SEQUENCE_REUSED));
    // An operator reviews the periods: they are resolved.
    assert_eq!(
        gridmesh_db::resolve_flags(&pool, f.site.id, base(), base() + Duration::hours(1)).await.unwrap(),
        2
    );
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_batch_twice_in_one_write_counts_once(pool: Pool) {
    let f = fixture(&pool).await;
    let rs = minutes(0..5);
    let mut rows: Vec<_> = (0..5).map(|i| row(&f, i as u64, &rs[i])).collect();
    rows.extend((0..5).map(|i| row(&f, i as u64, &rs[i])));
    // And a clone's reading with sequence number 2 at another time, in the same write.
    let clone = minutes(7..8);
    rows.push(row(&f, 2, &clone[0]));
    let report = gridmesh_db::commit_ingest(&pool, &rows).await.unwrap();
    assert_eq!((report.inserted, report.duplicates), (6, 5));
    assert_eq!(report.reused, vec![(f.agent, 2)]);
    let energy =
        gridmesh_db::site_energy(&pool, f.site.id, base(), base() + Duration::hours(1)).await.unwrap();
    assert_eq!(energy[0].readings, 6);
    assert!(energy[0].flags.contains(gridmesh_core::ReadingFlags::SEQUENCE_REUSED));
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn retention_drops_old_days_and_keeps_the_energy(pool: Pool) {
    let f = fixture(&pool).await;
    let old: Vec<Reading> =
        (0..3).map(|i| reading(base() - Duration::days(40) + Duration::minutes(i), i)).collect();
    let recent = reading(base(), 9);
    let mut rows: Vec<(u64, &Reading)> = (0_u64..).zip(old.iter()).collect();
    rows.push((9, &recent));
    gridmesh_db::insert_telemetry(&pool, f.agent, f.site.id, &rows).await.unwrap();
    let cutoff = (base() - Duration::days(30)).date_naive();
    assert_eq!(gridmesh_db::drop_telemetry_before(&pool, cutoff).await.unwrap(), 1);
    assert_eq!(gridmesh_db::drop_telemetry_before(&pool, cutoff).await.unwrap(), 0);
    // The raw rows of that day are gone, the recent one stays, the 15-minute summary stays.
    assert_eq!(gridmesh_db::count_telemetry(&pool, f.agent).await.unwrap(), 1);
    let from = base() - Duration::days(41);
    let energy = gridmesh_db::site_energy(&pool, f.site.id, from, from + Duration::days(2)).await.unwrap();
    assert_eq!(energy.iter().map(|e| e.readings).sum::<i32>(), 3);
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn grid_size_counts_nodes_and_sites_so_new_homes_get_planned(pool: Pool) {
    assert_eq!(gridmesh_db::grid_size(&pool).await.unwrap(), (0, 0));
    let f = fixture(&pool).await;
    assert_eq!(gridmesh_db::grid_size(&pool).await.unwrap(), (2, 1));
    let neighbour = Site { id: SiteId::new_random(), name: "Maple St 14".into(), ..f.site.clone() };
    gridmesh_db::insert_site(&pool, &neighbour).await.unwrap();
    assert_eq!(gridmesh_db::grid_size(&pool).await.unwrap(), (2, 2));
}
