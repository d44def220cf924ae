//! `gridmesh ingest` killed with SIGKILL in the middle of a stream of batches: after a restart
//! with the same client id, every published reading is stored exactly once.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on a broken set-up")]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use gridmesh_core::GeoPoint;
use gridmesh_fixtures::provision;
use gridmesh_loadgen::neighbourhood::Speaker;
use gridmesh_loadgen::next_batch;
use gridmesh_loadgen::publisher::Publisher;
use gridmesh_wire::KeyPair;
use sqlx::PgPool;
use tokio::process::{Child, Command};

use common::database_url;

const BIN: &str = env!("CARGO_BIN_EXE_gridmesh");

fn spawn_ingest(db: &str, client_id: &str, group: &str, key_file: &std::path::Path) -> Child {
    let mqtt = std::env::var("GRIDMESH_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    Command::new(BIN)
        .args(["ingest", "--http-bind", "127.0.0.1:0", "--database-url", db, "--mqtt-url", &mqtt])
        .args(["--ingest-client-id", client_id, "--ingest-group", group, "--ingest-max-wait-ms", "5"])
        .arg("--server-key-file")
        .arg(key_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn server_key(path: &std::path::Path) -> Option<KeyPair> {
    KeyPair::from_seed_hex(&std::fs::read_to_string(path).ok()?).ok()
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn ingest_killed_mid_stream_stores_every_reading_exactly_once(pool: PgPool) {
    let db = database_url(&pool);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let key_file = std::env::temp_dir().join(format!("gridmesh-{tag}.key"));
    let (client_id, group) = (format!("ingest-{tag}"), format!("group-{tag}"));
    let mut child = spawn_ingest(&db, &client_id, &group, &key_file);

    let deadline = Instant::now() + Duration::from_secs(30);
    let key = loop {
        if let Some(k) = server_key(&key_file) {
            break k;
        }
        assert!(Instant::now() < deadline, "ingest did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut homes =
        provision(&pool, &format!("kill-{tag}"), 10, GeoPoint { lat: 52.5, lon: 13.4 }, Speaker::Loadgen)
            .await
            .unwrap();
    let mqtt = url::Url::parse(
        &std::env::var("GRIDMESH_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into()),
    )
    .unwrap();
    let publisher = Publisher::connect(
        mqtt.host_str().unwrap(),
        mqtt.port().unwrap_or(1883),
        &format!("agents-{tag}"),
        Some(key.public()),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut published = 0_i64;
    let mut killed = false;
    for round in 0..40 {
        let until = Utc::now() - chrono::Duration::seconds(3_000 - round * 20);
        for home in &mut homes {
            let batch = next_batch(home, until, 20, chrono::Duration::seconds(1));
            published += 20;
            publisher.send(&home.key.clone(), batch).await.unwrap();
        }
        // Kill once some batches are committed and many are still in flight.
        if !killed && round == 20 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while publisher.take_stats().committed_readings == 0 {
                assert!(Instant::now() < deadline, "nothing committed before the kill");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            child.start_kill().unwrap();
            child.wait().await.unwrap();
            killed = true;
            child = spawn_ingest(&db, &client_id, &group, &key_file);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while publisher.pending() > 0 {
        assert!(Instant::now() < deadline, "{} batches never acknowledged", publisher.pending());
        publisher.resend_older_than(Duration::from_secs(3)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT (agent_id, seq)) FROM telemetry")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (published, published));
    assert!(gridmesh_db::gaps(&pool, None, 10).await.unwrap().is_empty());
    child.start_kill().unwrap();
    let _ = std::fs::remove_file(key_file);
}
