//! Enrolment against the real service: the key lands for the site, the answer names the agent
//! and the server key, and a refusal carries the service's own words.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::Duration;

use gridmesh_core::{GeoPoint, Role};
use gridmesh_db::NewUser;
use gridmesh_server::AppState;
use gridmesh_server::broker::BrokerLink;
use gridmesh_server::config::MqttUrl;
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
    let server = gridmesh_e2e::Api::start(state).await;
    let api = server.url.clone();

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
    server.stop().await;
}

/// The owner asks for a code; a new agent on a SunSpec device, configured with nothing but the
/// device and the broker, enrols with the code (the configuration file gets the site, the agent
/// and the server key) and its first readings are stored. The code works once.
#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_code_enrols_a_new_agent_whose_readings_are_stored(pool: PgPool) {
    use gridmesh_sim::device::{Profile, SimDevice};

    let home_site = site_without_agent(&pool).await;
    let owner = gridmesh_db::get_site(&pool, home_site).await.unwrap().unwrap().owner;
    let token = gridmesh_db::issue_token(&pool, owner, "", None).await.unwrap().1;
    let broker = gridmesh_testkit::Mosquitto::start().await;
    let link: MqttUrl = format!("mqtt://127.0.0.1:{}", broker.port).parse().unwrap();
    let mut state = AppState::new(pool.clone(), BrokerLink::spawn(&link, "code-test").unwrap());
    let server_key = KeyPair::from_seed([7; 32]);
    state.server_key = Some(server_key.public());
    state.agent_broker_url = Some(link.to_string());
    let server = gridmesh_e2e::Api::start(state).await;
    let api = server.url.clone();

    // The owner asks for a code.
    let http = reqwest::Client::new();
    let answer: serde_json::Value = http
        .post(format!("{api}/v1/sites/{home_site}/enrolment-codes"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = answer["code"].as_str().unwrap().to_owned();

    // The installer's configuration: the device and the broker, no ids, no keys.
    let device = SimDevice::new(
        gridmesh_sim::home::Home::new(
            gridmesh_core::Watts(5_000),
            None,
            GeoPoint { lat: 52.5, lon: 13.4 },
            7,
        ),
        Profile::IntScale,
        1,
        "SIM-CODE",
    )
    .unwrap();
    let running = gridmesh_sim::server::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        device,
        Duration::from_millis(500),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("gridmesh-code-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_path = dir.join("agent.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "# The installer's file.\nkey_file = \"{d}/agent.key\"\npoll_ms = 500\nbatch_readings = 2\n\n[buffer]\ndir = \"{d}/buffer\"\n\n[central]\nurl = \"mqtt://127.0.0.1:1\"\nallow_plain = true\n\n[[sunspec]]\nname = \"inverter\"\naddress = \"{a}\"\n",
            d = dir.display(),
            a = running.addr
        ),
    )
    .unwrap();
    let before = gridmesh_agent::config::AgentConfig::load(&cfg_path).unwrap();
    assert!(before.site.is_none() && before.agent.is_none());
    let key = gridmesh_agent::key::load_or_create(&before.key_file).unwrap();

    // Typed as people type it: lower case, a space for the dash.
    let typed = code.to_lowercase().replace('-', " ");
    let enrolled = gridmesh_agent::enroll::enroll_with_code(&api, &typed, &key, "garage pi").await.unwrap();
    assert_eq!(enrolled.site, home_site);
    assert_eq!(enrolled.broker_url.as_deref(), Some(link.to_string().as_str()));
    let cfg = gridmesh_agent::config::write_enrolment(&cfg_path, &enrolled).unwrap();
    assert_eq!((cfg.site, cfg.agent), (Some(home_site), Some(enrolled.agent)));
    assert_eq!(cfg.central.server_key.as_deref(), Some(server_key.public().to_string().as_str()));
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    assert!(text.starts_with("# The installer's file."), "comments stay: {text}");
    // The code is used up; a second box with it is refused with the reason.
    let again = gridmesh_agent::enroll::enroll_with_code(&api, &code, &KeyPair::from_seed([8; 32]), "x")
        .await
        .unwrap_err();
    assert!(again.to_string().contains("used already"), "{again:#}");

    // The agent runs with the written configuration; ingest stores its readings.
    let ingest =
        gridmesh_e2e::Ingest::start(pool.clone(), broker.port, "code-test-ingest", server_key.clone());
    let (halt, halted) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(gridmesh_agent::run::run(cfg, key, halted));
    let started = std::time::Instant::now();
    let stored = loop {
        if let Some(r) = gridmesh_db::latest_reading(&pool, home_site).await.unwrap() {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no reading stored within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(stored.agent, enrolled.agent);
    assert!(stored.reading.pv_power.is_some(), "{stored:?}");
    // The home's agent list shows where its readings stand.
    let listed = gridmesh_db::list_agents(&pool, home_site).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].agent, enrolled.agent);
    assert!(listed[0].next_seq >= 2 && listed[0].last_seen.is_some(), "{listed:?}");
    assert_eq!(listed[0].missing, 0);

    let _ = halt.send(true);
    agent.await.unwrap().unwrap();
    ingest.stop().await;
    drop(running);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
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
        feeder: Some(feeder),
        name: "home".into(),
        location: Some(GeoPoint { lat: 52.5, lon: 13.4 }),
        rated_pv: Watts(5_000),
        pv_orientation: None,
        battery: None,
        grid: GridConnection { import_limit: Watts(10_000), export_limit: Watts(5_000) },
    };
    gridmesh_db::insert_site(pool, &site).await.unwrap();
    site.id
}
