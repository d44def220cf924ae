//! Onboarding end to end, as people do it: a utility imports its grid, a new owner registers a
//! home and asks for a code, and an agent on a SunSpec device, configured with nothing but the
//! device, enrols with it; its first readings are stored while the home is pending (and no plan
//! includes it yet); the utility assigns the feeder and the next plan includes the home. Rotating the agent's key keeps the
//! readings flowing and the old key is refused; once the home is decommissioned, its agent's
//! readings are refused.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::{Duration, Instant};

use gridmesh_core::{GeoPoint, Role, SiteId};
use gridmesh_db::NewUser;
use gridmesh_server::AppState;
use gridmesh_server::broker::BrokerLink;
use gridmesh_server::config::MqttUrl;
use gridmesh_sim::device::{Profile, SimDevice};
use gridmesh_wire::KeyPair;
use serde_json::{Value, json};
use sqlx::PgPool;

async fn token(pool: &PgPool, name: &str, role: Role) -> String {
    let user =
        gridmesh_db::create_user(pool, &NewUser { name: name.into(), email: None, role }).await.unwrap();
    gridmesh_db::issue_token(pool, user.id, "", None).await.unwrap().1
}

/// A JSON call: the status and the answer.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The latest stored reading's agent and sequence number, once one newer than `after` exists.
async fn reading_after(
    pool: &PgPool,
    site: SiteId,
    after: Option<u64>,
    within: Duration,
) -> Option<(gridmesh_core::AgentId, u64)> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some(r) = gridmesh_db::latest_reading(pool, site).await.unwrap()
            && after.is_none_or(|a| r.seq > a)
        {
            return Some((r.agent, r.seq));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_new_home_is_onboarded_and_leaves_again(pool: PgPool) {
    let broker = gridmesh_testkit::Mosquitto::start().await;
    let link: MqttUrl = format!("mqtt://127.0.0.1:{}", broker.port).parse().unwrap();
    let mut state = AppState::new(pool.clone(), BrokerLink::spawn(&link, "onboarding-test").unwrap());
    let server_key = KeyPair::from_seed([50; 32]);
    state.server_key = Some(server_key.public());
    state.agent_broker_url = Some(link.to_string());
    let server = gridmesh_e2e::Api::start(state).await;
    let api = server.url.clone();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let utility = token(&pool, "grid co", Role::Utility).await;
    let owner = token(&pool, "ada", Role::Prosumer).await;
    use reqwest::Method as M;

    // The utility's grid, from a file.
    let grid = include_str!("../../../docs/examples/grid.csv");
    let imported = http
        .post(format!("{api}/v1/grid/import"))
        .bearer_auth(&utility)
        .header("content-type", "text/csv")
        .body(grid)
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200);
    let (_, nodes) = call(&http, M::GET, format!("{api}/v1/grid/nodes"), &utility, None).await;
    let feeder =
        nodes["items"].as_array().unwrap().iter().find(|n| n["code"] == "FDR-OAK-1").unwrap()["id"].clone();

    // The owner registers the home: pending, no feeder yet.
    let home = json!({ "name": "Ada's house", "location": { "lat": 52.5, "lon": 13.4 }, "rated_pv_w": 5000,
                       "pv_orientation": { "azimuth_deg": 180, "tilt_deg": 35 },
                       "grid": { "import_limit_w": 17000, "export_limit_w": 5000 } });
    let (status, pending) = call(&http, M::POST, format!("{api}/v1/sites"), &owner, Some(home)).await;
    assert_eq!(status, 201, "{pending}");
    assert_eq!(
        (pending["status"].as_str(), &pending["feeder"]),
        (Some("pending"), &Value::Null),
        "{pending}"
    );
    let site: SiteId = pending["id"].as_str().unwrap().parse().unwrap();

    // A code, and an agent that enrols with it while the home waits for its feeder.
    let (_, code) =
        call(&http, M::POST, format!("{api}/v1/sites/{site}/enrolment-codes"), &owner, Some(json!({}))).await;
    let code = code["code"].as_str().unwrap().to_owned();
    let device = SimDevice::new(
        gridmesh_sim::home::Home::new(
            gridmesh_core::Watts(5_000),
            None,
            GeoPoint { lat: 52.5, lon: 13.4 },
            11,
        ),
        Profile::IntScale,
        1,
        "SIM-ONBOARD",
    )
    .unwrap();
    let running = gridmesh_sim::server::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        device,
        Duration::from_millis(500),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("gridmesh-onboarding-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_path = dir.join("agent.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "key_file = \"{d}/agent.key\"\npoll_ms = 300\nbatch_readings = 2\n\n[buffer]\ndir = \"{d}/buffer\"\n\n[central]\nurl = \"mqtt://127.0.0.1:1\"\nallow_plain = true\n\n[[sunspec]]\nname = \"inverter\"\naddress = \"{a}\"\n",
            d = dir.display(),
            a = running.addr
        ),
    )
    .unwrap();
    let installed = gridmesh_agent::config::AgentConfig::load(&cfg_path).unwrap();
    let first_key = gridmesh_agent::key::load_or_create(&installed.key_file).unwrap();
    let enrolled =
        gridmesh_agent::enroll::enroll_with_code(&api, &code, &first_key, "garage pi").await.unwrap();
    let cfg = gridmesh_agent::config::write_enrolment(&cfg_path, &enrolled).unwrap();

    let ingest =
        gridmesh_e2e::Ingest::start(pool.clone(), broker.port, "onboarding-ingest", server_key.clone());
    let (halt_agent, agent_halted) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(gridmesh_agent::run::run(cfg.clone(), first_key.clone(), agent_halted));
    let (agent_id, seq) = reading_after(&pool, site, None, Duration::from_secs(30))
        .await
        .expect("a first reading while pending");
    assert_eq!(agent_id, enrolled.agent);

    // Pending: not planned, and it cannot trade.
    let settings = gridmesh_server::jobs::dispatch::DispatchSettings {
        plan: gridmesh_optimizer::grid::PlanSettings { steps: 4, ..Default::default() },
        ..Default::default()
    };
    let plans_home = async || {
        let made = gridmesh_server::jobs::dispatch::plan_once(&pool, &settings, chrono::Utc::now(), "test")
            .await
            .unwrap();
        made.instance.sites.iter().any(|s| s.id == site.to_string())
    };
    assert!(!plans_home().await, "a pending home is not planned");
    let next = gridmesh_core::Period::containing(chrono::Utc::now()).next().next();
    let order = json!({ "site": site, "period": next.start(), "side": "sell", "price_per_kwh": 10, "energy_wh": 100 });
    let (status, refused) =
        call(&http, M::POST, format!("{api}/v1/market/orders"), &owner, Some(order.clone())).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("pending"), "{refused}");

    // The utility assigns the feeder; the next plan includes the home, and it trades.
    let (status, assigned) = call(
        &http,
        M::POST,
        format!("{api}/v1/sites/{site}/assign"),
        &utility,
        Some(json!({ "feeder": feeder })),
    )
    .await;
    assert_eq!(status, 200, "{assigned}");
    assert!(plans_home().await, "the plan has the home once it is assigned");
    let (status, placed) = call(&http, M::POST, format!("{api}/v1/market/orders"), &owner, Some(order)).await;
    assert_eq!(status, 201, "{placed}");
    let (_, shown) = call(&http, M::GET, format!("{api}/v1/sites/{site}"), &owner, None).await;
    assert_eq!(shown["status"], "active", "{shown}");
    assert_eq!(shown["pv_orientation"], json!({ "azimuth_deg": 180, "tilt_deg": 35 }), "{shown}");

    // Key rotation: the box gets a new key, readings go on, the old key is refused.
    let _ = halt_agent.send(true);
    agent.await.unwrap().unwrap();
    let second_key = KeyPair::from_seed([51; 32]);
    let (status, _) = call(
        &http,
        M::POST,
        format!("{api}/v1/sites/{site}/agents/{}/key", enrolled.agent),
        &owner,
        Some(json!({ "public_key": second_key.public().to_string() })),
    )
    .await;
    assert_eq!(status, 200);
    assert!(gridmesh_db::find_active_key(&pool, first_key.public().as_bytes()).await.unwrap().is_none());
    std::fs::write(&cfg.key_file, second_key.seed_hex()).unwrap();
    let (halt_agent, agent_halted) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(gridmesh_agent::run::run(cfg.clone(), second_key.clone(), agent_halted));
    let (_, rotated_seq) = reading_after(&pool, site, Some(seq), Duration::from_secs(30))
        .await
        .expect("readings go on with the new key");

    // Decommissioned: the agent's readings are refused from then on.
    let (status, done) =
        call(&http, M::POST, format!("{api}/v1/sites/{site}/decommission"), &owner, None).await;
    assert_eq!(status, 200, "{done}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_decommission =
        gridmesh_db::latest_reading(&pool, site).await.unwrap().unwrap().seq.max(rotated_seq);
    assert!(
        reading_after(&pool, site, Some(at_decommission), Duration::from_secs(4)).await.is_none(),
        "a decommissioned home's agent is refused"
    );

    let _ = halt_agent.send(true);
    agent.await.unwrap().unwrap();
    ingest.stop().await;
    drop(running);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
