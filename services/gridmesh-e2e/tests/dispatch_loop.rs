//! The closed loop end to end: simulated homes (SunSpec devices) read by real agents, a real
//! broker, ingest into PostgreSQL, and the dispatch loop. A utility's cap on a feeder makes the
//! batteries hold the feeder's measured power (from the telemetry) under the cap, where the
//! homes on their own were above it; every setpoint is answered and stored.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on a broken set-up")]

use std::time::{Duration, Instant};

use clap::Parser;
use gridmesh_core::{GeoPoint, Watts};
use gridmesh_db::{LatestFilter, NewUtilityRequest, RequestKind};
use gridmesh_fixtures::provision;
use gridmesh_ingest::worker::{BrokerAddr, IngestConfig};
use gridmesh_loadgen::edge::{Central, agent_config};
use gridmesh_loadgen::neighbourhood::{SimHome, Speaker};
use gridmesh_optimizer::grid::PlanSettings;
use gridmesh_server::broker::BrokerLink;
use gridmesh_server::config::{Cli, Command};
use gridmesh_server::jobs::dispatch::DispatchSettings;
use gridmesh_server::jobs::{JobBoard, JobCtx, JobSettings, Shutdown};
use gridmesh_sim::device::{Profile, SimDevice};
use gridmesh_sim::server::Running;
use gridmesh_testkit::Mosquitto;
use gridmesh_wire::KeyPair;
use sqlx::PgPool;

/// The feeder's net power from the latest readings (W, import positive), and per site what its
/// battery could still give: grid − battery − max discharge is the lowest each site can reach.
async fn feeder_now(
    pool: &PgPool,
    homes: &[SimHome],
    since: chrono::DateTime<chrono::Utc>,
) -> Option<(i64, i64)> {
    let latest = gridmesh_db::latest_readings(pool, &LatestFilter { limit: 1000, ..LatestFilter::default() })
        .await
        .unwrap();
    let (mut net, mut lowest) = (0, 0);
    for h in homes {
        let (_, r) = latest.iter().find(|(s, _)| *s == h.site)?;
        if r.reading.at < since {
            return None;
        }
        let grid = r.reading.grid_power?.get();
        net += grid;
        lowest += match h.home.battery {
            Some(b) => grid - r.reading.battery_power.map_or(0, Watts::get) - b.max_discharge.get(),
            None => grid,
        };
    }
    Some((net, lowest))
}

async fn wait_for<T>(within: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_feeder_cap_is_held_by_the_batteries_in_the_measured_telemetry(pool: PgPool) {
    let broker = Mosquitto::start().await;
    let server_key = KeyPair::from_seed([42; 32]);
    let homes: Vec<SimHome> =
        provision(&pool, "cap street", 6, GeoPoint { lat: 52.5, lon: 13.4 }, Speaker::EdgeAgent)
            .await
            .unwrap()
            .into_iter()
            .filter(|h| h.home.battery.is_some())
            .collect();
    assert!(homes.len() >= 3, "the neighbourhood has homes with batteries");
    let site = gridmesh_db::get_site(&pool, homes[0].site).await.unwrap().unwrap();
    let feeder = site.feeder;

    // Devices, and one agent per home reading its device.
    let dir = std::env::temp_dir().join(format!("gridmesh-dispatch-{}", uuid::Uuid::new_v4()));
    let central =
        Central { host: "127.0.0.1".into(), port: broker.port, server_key: Some(server_key.public()) };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut devices: Vec<Running> = Vec::new();
    let mut agents = Vec::new();
    for (i, h) in homes.iter().enumerate() {
        let home =
            gridmesh_sim::home::Home::new(h.home.rated_pv, h.home.battery, h.home.location, h.home.seed);
        let device = SimDevice::new(home, Profile::IntScale, 1, &format!("SIM-{i}")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = gridmesh_sim::server::spawn(listener, device, Duration::from_millis(500)).unwrap();
        let home_dir = dir.join(format!("home-{i}"));
        std::fs::create_dir_all(&home_dir).unwrap();
        std::fs::write(home_dir.join("agent.key"), h.key.seed_hex()).unwrap();
        let cfg_path = home_dir.join("agent.toml");
        std::fs::write(&cfg_path, agent_config(h, &home_dir, running.addr.port(), &central, 2)).unwrap();
        let cfg = gridmesh_agent::config::AgentConfig::load(&cfg_path).unwrap();
        let key = gridmesh_agent::key::load_or_create(&cfg.key_file).unwrap();
        agents.push(tokio::spawn(gridmesh_agent::run::run(cfg, key, stop_rx.clone())));
        devices.push(running);
    }
    // Ingest stores what the agents send.
    let mut ingest = IngestConfig::new(
        BrokerAddr::plain("127.0.0.1", broker.port),
        "dispatch-test-ingest".into(),
        server_key.clone(),
    );
    ingest.share_group = None;
    let mut ingest_stop = stop_rx.clone();
    let ingest = tokio::spawn(gridmesh_ingest::worker::run(pool.clone(), ingest, async move {
        let _ = ingest_stop.wait_for(|s| *s).await;
    }));

    // On their own, the homes' batteries only cover their own deficits.
    let started = chrono::Utc::now();
    let (baseline, lowest) =
        wait_for(Duration::from_secs(30), async || feeder_now(&pool, &homes, started).await).await;
    let headroom = baseline - lowest;
    assert!(headroom >= 1_500, "the batteries can push the feeder down by {headroom} W: too little to test");
    let cap = baseline - headroom * 6 / 10;
    gridmesh_db::create_utility_request(
        &pool,
        &NewUtilityRequest {
            node: feeder,
            kind: RequestKind::Cap,
            power_w: cap,
            starts_at: chrono::Utc::now() - chrono::Duration::seconds(1),
            ends_at: chrono::Utc::now() + chrono::Duration::minutes(10),
            price_minor_per_kwh: 1_000,
        },
        None,
    )
    .await
    .unwrap();
    assert!(baseline > cap, "without the request the feeder is above the cap");

    // The loop plans in 20-second steps and sends setpoints; the agents apply them.
    let Command::Serve(config) = Cli::try_parse_from(["gridmesh", "serve"]).unwrap().command else {
        panic!("serve parses")
    };
    let mut settings = JobSettings::from_config(&config);
    settings.dispatch = DispatchSettings {
        plan: PlanSettings { step: chrono::Duration::seconds(20), steps: 12, ..PlanSettings::default() },
        tick: Duration::from_millis(500),
    };
    let link = format!("mqtt://127.0.0.1:{}", broker.port).parse().unwrap();
    let ctx = JobCtx {
        pool: pool.clone(),
        broker: BrokerLink::spawn(&link, "dispatch-test").unwrap(),
        server_key: server_key.clone(),
        settings: std::sync::Arc::new(settings),
        board: JobBoard::default(),
        process: "dispatch-test".into(),
    };
    let (stop_dispatch, shutdown) = Shutdown::new();
    let dispatch = tokio::spawn(gridmesh_server::jobs::dispatch::run(ctx, shutdown));
    let applied_at = wait_for(Duration::from_secs(30), async || {
        let records = gridmesh_db::setpoint_records(
            &pool,
            None,
            started - chrono::Duration::hours(1),
            chrono::Utc::now() + chrono::Duration::hours(1),
            100,
        )
        .await
        .unwrap();
        let answered = homes.iter().all(|h| {
            records.iter().any(|r| {
                r.setpoint.site == h.site && matches!(r.outcome.as_deref(), Some("applied" | "clamped"))
            })
        });
        answered.then(chrono::Utc::now)
    })
    .await;
    let plans = gridmesh_db::recent_plans(&pool, 10).await.unwrap();
    assert!(!plans.is_empty() && plans.iter().all(|p| p.input_hash.len() == 64));

    // Readings taken after the setpoints landed: the feeder stays under the cap (within a
    // fifth of the headroom, for load changing between the plan and the reading), well below
    // where the homes were on their own.
    let tolerance = headroom / 5;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let since = applied_at + chrono::Duration::seconds(2);
        let (measured, _) =
            wait_for(Duration::from_secs(20), async || feeder_now(&pool, &homes, since).await).await;
        eprintln!("feeder: on their own {baseline} W, cap {cap} W, measured {measured} W");
        assert!(
            measured <= cap + tolerance,
            "feeder at {measured} W with a cap of {cap} W (on their own {baseline} W, tolerance {tolerance} W)"
        );
    }

    let _ = stop.send(true);
    let _ = stop_dispatch.send(true);
    for a in agents {
        a.await.unwrap().unwrap();
    }
    dispatch.await.unwrap();
    ingest.await.unwrap().unwrap();
    drop(devices);
    let _ = std::fs::remove_dir_all(&dir);
}
