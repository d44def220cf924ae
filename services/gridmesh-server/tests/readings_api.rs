//! The readings API over real HTTP, with telemetry stored through the ingest commit path.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on a broken set-up")]

mod common;

use chrono::{Duration, Utc};
use common::{Server, mqtt_url};
use gridmesh_core::{GeoPoint, ReadingFlags, Role, Watts};
use gridmesh_db::{IngestRow, NewUser};
use gridmesh_fixtures::provision;
use gridmesh_loadgen::neighbourhood::Speaker;
use gridmesh_loadgen::next_batch;
use gridmesh_wire::KeyPair;
use sqlx::PgPool;

async fn token(pool: &PgPool, role: Role) -> (gridmesh_core::UserId, String) {
    let user = gridmesh_db::create_user(pool, &NewUser { name: format!("{role}"), email: None, role })
        .await
        .unwrap();
    (user.id, format!("Bearer {}", gridmesh_db::issue_token(pool, user.id, "", None).await.unwrap().1))
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn owners_operators_and_regulators_read_what_ingest_stored(pool: PgPool) {
    let mut homes =
        provision(&pool, "api street", 2, GeoPoint { lat: 52.5, lon: 13.4 }, Speaker::Loadgen).await.unwrap();
    let owner: (uuid::Uuid,) = sqlx::query_as("SELECT owner_id FROM sites WHERE id = $1")
        .bind(homes[0].site.0)
        .fetch_one(&pool)
        .await
        .unwrap();
    let (_, owner_token) = {
        let id = gridmesh_core::UserId(owner.0);
        (id, format!("Bearer {}", gridmesh_db::issue_token(&pool, id, "", None).await.unwrap().1))
    };
    let (_, operator) = token(&pool, Role::Operator).await;
    let (_, regulator) = token(&pool, Role::Regulator).await;
    let (_, stranger) = token(&pool, Role::Homeowner).await;
    let (_, utility) = token(&pool, Role::Utility).await;

    // 30 minutes of one reading a minute for home 0, the last one over-rated.
    let mut batch = next_batch(&mut homes[0], Utc::now() - Duration::minutes(1), 30, Duration::minutes(1));
    batch.readings[29].pv_power = Some(Watts(1_000_000));
    let rows: Vec<IngestRow<'_>> = batch
        .sequenced()
        .map(|(seq, r)| IngestRow {
            agent: batch.agent,
            site: batch.site,
            seq,
            reading: r,
            flags: if seq == 29 { ReadingFlags::OVER_RATED } else { ReadingFlags::NONE },
        })
        .collect();
    gridmesh_db::commit_ingest(&pool, &rows).await.unwrap();

    let server = Server::start(pool.clone(), &mqtt_url()).await;
    let client = server.client();
    let api = &client;
    let site = homes[0].site;
    let get = |path: String, auth: String| async move { api.get(&path).auth(&auth).await };

    let latest = get(format!("/v1/sites/{site}/latest"), owner_token.clone()).await;
    assert_eq!(latest.status, 200, "{}", latest.body);
    assert_eq!(latest.json()["seq"], 29);
    assert_eq!(latest.json()["flags"], serde_json::json!(["over_rated"]));
    assert_eq!(get(format!("/v1/sites/{site}/latest"), regulator.clone()).await.status, 200);
    // Another homeowner cannot even learn that the site exists.
    assert_eq!(get(format!("/v1/sites/{site}/latest"), stranger.clone()).await.status, 404);

    // Raw history, paged.
    let page = get(format!("/v1/sites/{site}/readings?limit=20"), operator.clone()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let body = page.json();
    assert_eq!(body["items"].as_array().unwrap().len(), 20);
    let cursor = body["next_after"].as_str().unwrap().to_owned();
    let next =
        get(format!("/v1/sites/{site}/readings?limit=20&after={cursor}"), operator.clone()).await.json();
    assert_eq!(next["items"].as_array().unwrap().len(), 10);
    assert!(next["next_after"].is_null());
    assert_eq!(next["items"][0]["seq"], 20);

    // 15-minute energy and flags.
    let energy = get(format!("/v1/sites/{site}/energy"), owner_token.clone()).await.json();
    let periods = energy.as_array().unwrap();
    assert!(periods.len() >= 2, "{energy}");
    assert_eq!(periods.iter().map(|p| p["readings"].as_i64().unwrap()).sum::<i64>(), 30);
    let flags = get(format!("/v1/sites/{site}/flags"), owner_token.clone()).await.json();
    assert_eq!(flags.as_array().unwrap().len(), 1);
    assert_eq!(
        get(format!("/v1/sites/{site}/gaps"), owner_token.clone()).await.json(),
        serde_json::json!([])
    );

    // The latest reading of every visible site.
    let all = get("/v1/readings/latest".into(), operator.clone()).await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        get("/v1/readings/latest".into(), stranger.clone()).await.json()["items"],
        serde_json::json!([])
    );
    assert_eq!(get("/v1/readings/latest".into(), utility.clone()).await.status, 403);

    // Bad windows and cursors get problem JSON naming the field.
    let bad = get(format!("/v1/sites/{site}/readings?after=yesterday"), operator.clone()).await;
    assert_eq!(bad.status, 422);
    assert!(bad.json()["detail"].as_str().unwrap().starts_with("after:"));
    let bad = get(
        format!("/v1/sites/{site}/readings?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"),
        operator.clone(),
    )
    .await;
    assert_eq!(bad.status, 422);
    let bad = get(
        format!("/v1/sites/{site}/readings?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z"),
        operator.clone(),
    )
    .await;
    assert!(bad.json()["detail"].as_str().unwrap().contains("at most 7 days"));

    // An operator resolves the flagged period.
    let body = format!(
        r#"{{"from":"{}","to":"{}"}}"#,
        (Utc::now() - Duration::hours(2)).to_rfc3339(),
        Utc::now().to_rfc3339()
    );
    let resolved = api.post(&format!("/v1/sites/{site}/flags/resolve")).auth(&operator).json_text(body).await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    assert_eq!(resolved.json()["resolved_periods"], 1);
    server.stop().await;
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn owners_enrol_agents_with_a_valid_unused_key(pool: PgPool) {
    let homes = provision(&pool, "enrol street", 1, GeoPoint { lat: 52.5, lon: 13.4 }, Speaker::Loadgen)
        .await
        .unwrap();
    let site = homes[0].site;
    let owner: (uuid::Uuid,) = sqlx::query_as("SELECT owner_id FROM sites WHERE id = $1")
        .bind(site.0)
        .fetch_one(&pool)
        .await
        .unwrap();
    let owner_token = format!(
        "Bearer {}",
        gridmesh_db::issue_token(&pool, gridmesh_core::UserId(owner.0), "", None).await.unwrap().1
    );
    let (_, stranger) = token(&pool, Role::Homeowner).await;
    let server = Server::start(pool.clone(), &mqtt_url()).await;
    let client = server.client();
    let api = &client;
    let post = |auth: String, body: String| async move {
        api.post(&format!("/v1/sites/{site}/agents")).auth(&auth).json_text(body).await
    };
    let key = KeyPair::from_seed([0x31; 32]).public();
    let created = post(owner_token.clone(), format!(r#"{{"name":"garage pi","public_key":"{key}"}}"#)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let agent: gridmesh_core::AgentId = created.json()["agent_id"].as_str().unwrap().parse().unwrap();
    let found = gridmesh_db::find_active_key(&pool, key.as_bytes()).await.unwrap().unwrap();
    assert_eq!((found.agent, found.site), (agent, site));

    let again = post(owner_token.clone(), format!(r#"{{"public_key":"{key}"}}"#)).await;
    assert_eq!(again.status, 409, "{}", again.body);
    let bad = post(owner_token.clone(), r#"{"public_key":"abc"}"#.into()).await;
    assert_eq!(bad.status, 422);
    assert!(bad.json()["detail"].as_str().unwrap().starts_with("public_key:"));
    let other = KeyPair::from_seed([0x32; 32]).public();
    assert_eq!(post(stranger, format!(r#"{{"public_key":"{other}"}}"#)).await.status, 404);
    server.stop().await;
}
