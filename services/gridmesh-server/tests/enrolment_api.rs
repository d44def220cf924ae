//! Enrolment codes over real HTTP and a real PostgreSQL: only the site's owner or an operator
//! gets one; an agent enrols with the code alone, once; mistyped, used and expired codes, and a
//! key enrolled before, are refused with the reason and leave nothing behind.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on a broken set-up")]

mod common;

use common::{Method, Server, mqtt_url, user};
use gridmesh_core::{GridConnection, GridNode, GridNodeId, GridNodeKind, Role, Site, SiteId, Watts};
use gridmesh_server::AppState;
use gridmesh_server::broker::BrokerLink;
use gridmesh_wire::KeyPair;
use serde_json::json;
use sqlx::PgPool;

/// A home of `owner` on a new feeder.
async fn home(pool: &PgPool, owner: gridmesh_core::UserId) -> SiteId {
    let feeder = GridNodeId::new_random();
    let node = GridNode {
        id: feeder,
        kind: GridNodeKind::Feeder,
        parent: None,
        name: "f".into(),
        import_limit: Watts(100_000),
        export_limit: Watts(100_000),
    };
    gridmesh_db::insert_grid_node(pool, &node).await.unwrap();
    let site = Site {
        id: SiteId::new_random(),
        owner,
        feeder: Some(feeder),
        name: "home".into(),
        location: None,
        rated_pv: Watts(4_000),
        pv_orientation: None,
        battery: None,
        grid: GridConnection { import_limit: Watts(10_000), export_limit: Watts(4_000) },
    };
    gridmesh_db::insert_site(pool, &site).await.unwrap();
    site.id
}

async fn agents_of(pool: &PgPool, site: SiteId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM agents WHERE site_id = $1")
        .bind(site.0)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_code_enrols_one_agent_once_and_says_why_it_will_not(pool: PgPool) {
    let server_key = KeyPair::from_seed([3; 32]);
    let mut state = AppState::new(pool.clone(), BrokerLink::spawn(&mqtt_url(), "codes-test").unwrap());
    state.server_key = Some(server_key.public());
    state.max_agents_per_site = 2;
    let server = Server::with_state(state).await;
    let api = server.client();
    let (owner_id, owner) = user(&pool, "owner", Role::Homeowner).await;
    let (_, stranger) = user(&pool, "stranger", Role::Prosumer).await;
    let (_, regulator) = user(&pool, "regulator", Role::Regulator).await;
    let (_, operator) = user(&pool, "operator", Role::Operator).await;
    let site = home(&pool, owner_id).await;
    let codes = format!("/v1/sites/{site}/enrolment-codes");

    // Who may ask: the owner and operators; a stranger does not even see the site; a regulator
    // sees it but enrols nothing.
    let (status, issued) = api.call(Method::POST, &codes, &owner, Some(json!({}))).await;
    assert_eq!(status, 201, "{issued}");
    let code = issued["code"].as_str().unwrap().to_owned();
    assert!(code.len() == 14 && &code[4..5] == "-" && &code[9..10] == "-", "{code}");
    assert_eq!(issued["site_id"], site.to_string());
    let (status, _) = api.call(Method::POST, &codes, &operator, Some(json!({ "valid_hours": 2 }))).await;
    assert_eq!(status, 201);
    assert_eq!(api.call(Method::POST, &codes, &stranger, Some(json!({}))).await.0, 404);
    assert_eq!(api.call(Method::POST, &codes, &regulator, Some(json!({}))).await.0, 403);
    let (status, bad) = api.call(Method::POST, &codes, &owner, Some(json!({ "valid_hours": 0 }))).await;
    assert_eq!(status, 422);
    assert!(bad["detail"].as_str().unwrap().contains("valid_hours"), "{bad}");

    // The agent enrols with the code alone (no token).
    let key = KeyPair::from_seed([10; 32]);
    let enrol = |code: &str, key: &KeyPair| json!({ "code": code, "public_key": key.public().to_string(), "name": "pi" });
    let (status, enrolled) = api.call(Method::POST, "/v1/enrol", "", Some(enrol(&code, &key))).await;
    assert_eq!(status, 201, "{enrolled}");
    assert_eq!(enrolled["site_id"], site.to_string());
    assert_eq!(enrolled["server_key"], server_key.public().to_string());
    let stored = gridmesh_db::find_active_key(&pool, key.public().as_bytes()).await.unwrap().unwrap();
    assert_eq!(
        (stored.site, stored.agent.to_string()),
        (site, enrolled["agent_id"].as_str().unwrap().to_owned())
    );

    // Once only.
    let other = KeyPair::from_seed([11; 32]);
    let (status, used) = api.call(Method::POST, "/v1/enrol", "", Some(enrol(&code, &other))).await;
    assert_eq!(status, 409);
    assert!(used["detail"].as_str().unwrap().contains("used already"), "{used}");

    // Mistyped or unknown codes name the field.
    let (status, typo) = api.call(Method::POST, "/v1/enrol", "", Some(enrol("ABC-123", &other))).await;
    assert_eq!(status, 422);
    assert!(typo["detail"].as_str().unwrap().contains("code"), "{typo}");
    let (status, unknown) =
        api.call(Method::POST, "/v1/enrol", "", Some(enrol("ZZZZ-ZZZZ-ZZZZ", &other))).await;
    assert_eq!(status, 422);
    assert!(unknown["detail"].as_str().unwrap().contains("no such enrolment code"), "{unknown}");

    // A key enrolled before is refused, and the code stays good for the right key.
    let (_, fresh) = api.call(Method::POST, &codes, &owner, Some(json!({}))).await;
    let fresh = fresh["code"].as_str().unwrap().to_owned();
    let (status, reused) = api.call(Method::POST, "/v1/enrol", "", Some(enrol(&fresh, &key))).await;
    assert_eq!(status, 409, "{reused}");
    assert_eq!(agents_of(&pool, site).await, 1, "the refused enrolment left no agent behind");
    assert_eq!(api.call(Method::POST, "/v1/enrol", "", Some(enrol(&fresh, &other))).await.0, 201);
    assert_eq!(agents_of(&pool, site).await, 2);

    // Two active agents are the most this server allows a home: a third waits for a revocation.
    let (_, third) = api.call(Method::POST, &codes, &owner, Some(json!({}))).await;
    let third = third["code"].as_str().unwrap().to_owned();
    let third_box = KeyPair::from_seed([13; 32]);
    let (status, full) = api.call(Method::POST, "/v1/enrol", "", Some(enrol(&third, &third_box))).await;
    assert_eq!(status, 409, "{full}");
    assert!(full["detail"].as_str().unwrap().contains("the most allowed (2)"), "{full}");
    assert_eq!(agents_of(&pool, site).await, 2);
    let first_agent = enrolled["agent_id"].as_str().unwrap();
    assert_eq!(
        api.call(Method::DELETE, &format!("/v1/sites/{site}/agents/{first_agent}"), &owner, None).await.0,
        204
    );
    assert_eq!(api.call(Method::POST, "/v1/enrol", "", Some(enrol(&third, &third_box))).await.0, 201);
    assert_eq!(agents_of(&pool, site).await, 3);

    // An expired code says so.
    let (_, late) = api.call(Method::POST, &codes, &owner, Some(json!({ "valid_hours": 1 }))).await;
    let late = late["code"].as_str().unwrap().to_owned();
    sqlx::query(
        "UPDATE enrolment_codes SET created_at = now() - interval '3 hours', expires_at = now() - interval '1 hour'
         WHERE used_at IS NULL",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (status, expired) =
        api.call(Method::POST, "/v1/enrol", "", Some(enrol(&late, &KeyPair::from_seed([12; 32])))).await;
    assert_eq!(status, 409);
    assert!(expired["detail"].as_str().unwrap().contains("expired"), "{expired}");
    assert_eq!(agents_of(&pool, site).await, 3);

    // Guessing is cut short: after 30 failures in a minute every attempt waits, a good code too.
    let (_, good) = api.call(Method::POST, &codes, &owner, Some(json!({}))).await;
    let good = good["code"].as_str().unwrap().to_owned();
    let mut tries = 0;
    loop {
        let (status, answer) =
            api.call(Method::POST, "/v1/enrol", "", Some(enrol("0000-0000-0000", &other))).await;
        if status == 429 {
            assert!(answer["detail"].as_str().unwrap().contains("try again in"), "{answer}");
            break;
        }
        assert_eq!(status, 422);
        tries += 1;
        assert!(tries <= 30, "no limit after {tries} failures");
    }
    let spare = KeyPair::from_seed([14; 32]);
    assert_eq!(api.call(Method::POST, "/v1/enrol", "", Some(enrol(&good, &spare))).await.0, 429);
    server.stop().await;
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_homes_agents_are_listed_rotated_and_revoked_by_its_owner(pool: PgPool) {
    let server = Server::start(pool.clone(), &mqtt_url()).await;
    let api = server.client();
    let (owner_id, owner) = user(&pool, "owner", Role::Prosumer).await;
    let (_, stranger) = user(&pool, "stranger", Role::Homeowner).await;
    let (_, regulator) = user(&pool, "regulator", Role::Regulator).await;
    let site = home(&pool, owner_id).await;
    let elsewhere = home(&pool, owner_id).await;
    let first = KeyPair::from_seed([20; 32]);
    let agent =
        gridmesh_db::enrol_agent(&pool, site, "garage pi", *first.public().as_bytes(), None).await.unwrap();
    let agents = format!("/v1/sites/{site}/agents");
    // Readings 0 to 2 and 5 to 6 arrived; 3 and 4 are missing.
    let now = chrono::Utc::now();
    let readings: Vec<gridmesh_core::Reading> = (0..7)
        .map(|i| gridmesh_core::Reading { at: now - chrono::Duration::seconds(60 - i), ..Default::default() })
        .collect();
    let rows: Vec<gridmesh_db::IngestRow<'_>> = [0_u64, 1, 2, 5, 6]
        .iter()
        .map(|&seq| gridmesh_db::IngestRow {
            agent,
            site,
            seq,
            reading: &readings[seq as usize],
            // The last one was implausible.
            flags: if seq == 6 {
                gridmesh_core::ReadingFlags::OVER_RATED
            } else {
                gridmesh_core::ReadingFlags::NONE
            },
        })
        .collect();
    gridmesh_db::commit_ingest(&pool, &rows).await.unwrap();

    let (status, list) = api.call(Method::GET, &agents, &owner, None).await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["agent_id"], agent.to_string());
    assert_eq!(items[0]["status"], "active");
    assert_eq!(items[0]["public_key"], first.public().to_string());
    assert_eq!((items[0]["next_seq"].as_u64(), items[0]["missing_readings"].as_u64()), (Some(7), Some(2)));
    assert!(items[0]["last_seen"].is_string(), "{list}");
    assert_eq!(list["unresolved_flagged_readings"].as_i64(), Some(1), "{list}");
    assert_eq!(api.call(Method::GET, &agents, &regulator, None).await.0, 200);
    assert_eq!(api.call(Method::GET, &agents, &stranger, None).await.0, 404);

    // Rotation: the new key is the active one, the old one is refused from now on.
    let second = KeyPair::from_seed([21; 32]);
    let rotate = format!("/v1/sites/{site}/agents/{agent}/key");
    let body = json!({ "public_key": second.public().to_string() });
    assert_eq!(api.call(Method::POST, &rotate, &regulator, Some(body.clone())).await.0, 403);
    let (status, rotated) = api.call(Method::POST, &rotate, &owner, Some(body.clone())).await;
    assert_eq!(status, 200, "{rotated}");
    assert!(gridmesh_db::find_active_key(&pool, first.public().as_bytes()).await.unwrap().is_none());
    assert_eq!(
        gridmesh_db::find_active_key(&pool, second.public().as_bytes()).await.unwrap().unwrap().agent,
        agent
    );
    // The same key again, or the old one: refused, it was enrolled before.
    let (status, again) = api
        .call(Method::POST, &rotate, &owner, Some(json!({ "public_key": first.public().to_string() })))
        .await;
    assert_eq!(status, 409, "{again}");
    let (status, bad) = api.call(Method::POST, &rotate, &owner, Some(json!({ "public_key": "zz" }))).await;
    assert_eq!(status, 422);
    assert!(bad["detail"].as_str().unwrap().contains("public_key"), "{bad}");
    // An agent is changed only through its own site.
    let wrong = format!("/v1/sites/{elsewhere}/agents/{agent}");
    assert_eq!(api.call(Method::DELETE, &wrong, &owner, None).await.0, 404);

    // Revocation: listed as revoked with who did it; a second time there is nothing to revoke.
    let revoke = format!("/v1/sites/{site}/agents/{agent}");
    assert_eq!(api.call(Method::DELETE, &revoke, &stranger, None).await.0, 404);
    assert_eq!(api.call(Method::DELETE, &revoke, &owner, None).await.0, 204);
    assert!(gridmesh_db::find_active_key(&pool, second.public().as_bytes()).await.unwrap().is_none());
    let (_, list) = api.call(Method::GET, &agents, &owner, None).await;
    let item = &list["items"][0];
    assert_eq!(item["status"], "revoked");
    assert!(item["public_key"].is_null());
    assert!(item["revoked_reason"].as_str().unwrap().contains("prosumer"), "{item}");
    assert_eq!(api.call(Method::DELETE, &revoke, &owner, None).await.0, 404);
    // A revoked agent stays revoked: a new key does not bring a lost box back.
    let third = KeyPair::from_seed([22; 32]);
    let (status, revived) = api
        .call(Method::POST, &rotate, &owner, Some(json!({ "public_key": third.public().to_string() })))
        .await;
    assert_eq!(status, 409, "{revived}");
    assert!(gridmesh_db::find_active_key(&pool, third.public().as_bytes()).await.unwrap().is_none());
    server.stop().await;
}
