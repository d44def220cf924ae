//! Enrolment against the real service: the key lands for the site, the answer names the agent
//! and the server key, and a refusal carries the service's own words.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::Duration;

use gridmesh_core::{GeoPoint, Role};
use gridmesh_db::NewUser;
use gridmesh_server::AppState;
use gridmesh_server::broker::BrokerLink;
use gridmesh_server::config::MqttUrl;
use gridmesh_server::serve::Service;
use gridmesh_wire::KeyPair;
use sqlx::PgPool;

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn the_device_key_is_enrolled_for_the_site(pool: PgPool) {
    let homes = site_without_agent(&pool).await;
    let owner = gridmesh_db::get_site(&pool, homes).await.unwrap().unwrap().owner;
    let token = gridmesh_db::issue_token(&pool, owner, "", None).await.unwrap().1;
    let mqtt: MqttUrl = std::env::var("GRIDMESH_TEST_MQTT_URL")
        .unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into())
        .parse()
        .unwrap();
    let mut state = AppState::new(
        pool.clone(),
        BrokerLink::spawn(&mqtt, "enroll-test").expect("a plain mqtt:// test broker"),
    );
    let server_key = KeyPair::from_seed([4; 32]);
    state.server_key = Some(server_key.public());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(Service::from_state(state).run(
        listener,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(2),
    ));

    let key = KeyPair::from_seed([5; 32]);
    let e = gridmesh_agent::enroll::enroll(&api, &token, homes, &key, "garage pi").await.unwrap();
    assert_eq!(e.server_key, server_key.public());
    let stored = gridmesh_db::find_active_key(&pool, key.public().as_bytes()).await.unwrap().unwrap();
    assert_eq!((stored.agent, stored.site), (e.agent, homes));

    // The same key twice, or a stranger's token: the service's reason comes through.
    let again = gridmesh_agent::enroll::enroll(&api, &token, homes, &key, "again").await.unwrap_err();
    assert!(again.to_string().contains("already enrolled"), "{again:#}");
    let stranger =
        gridmesh_db::create_user(&pool, &NewUser { name: "s".into(), email: None, role: Role::Homeowner })
            .await
            .unwrap();
    let other = gridmesh_db::issue_token(&pool, stranger.id, "", None).await.unwrap().1;
    let refused = gridmesh_agent::enroll::enroll(&api, &other, homes, &KeyPair::from_seed([6; 32]), "x")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("refused the enrolment (404"), "{refused:#}");
    let unreachable =
        gridmesh_agent::enroll::enroll("http://127.0.0.1:9", &token, homes, &key, "x").await.unwrap_err();
    assert!(unreachable.to_string().contains("cannot reach"), "{unreachable:#}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A site with an owner, without an agent.
async fn site_without_agent(pool: &PgPool) -> gridmesh_core::SiteId {
    use gridmesh_core::{GridConnection, GridNode, GridNodeId, GridNodeKind, Site, SiteId, Watts};
    let owner =
        gridmesh_db::create_user(pool, &NewUser { name: "owner".into(), email: None, role: Role::Prosumer })
            .await
            .unwrap();
    let feeder = GridNodeId::new_random();
    gridmesh_db::insert_grid_node(
        pool,
        &GridNode {
            id: feeder,
            kind: GridNodeKind::Feeder,
            parent: None,
            name: "f".into(),
            import_limit: Watts(100_000),
            export_limit: Watts(100_000),
        },
    )
    .await
    .unwrap();
    let site = Site {
        id: SiteId::new_random(),
        owner: owner.id,
        feeder,
        name: "home".into(),
        location: Some(GeoPoint { lat: 52.5, lon: 13.4 }),
        rated_pv: Watts(5_000),
        battery: None,
        grid: GridConnection { import_limit: Watts(10_000), export_limit: Watts(5_000) },
    };
    gridmesh_db::insert_site(pool, &site).await.unwrap();
    site.id
}
