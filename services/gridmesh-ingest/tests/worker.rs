//! The ingest worker end to end: simulated homes publish signed batches to the real Mosquitto,
//! the worker stores them in a fresh PostgreSQL database per test, and the publisher sees the
//! signed commit acknowledgements. Outages are made with a private broker or a proxy.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on a broken set-up")]

use std::time::{Duration, Instant};

use chrono::Utc;
use gridmesh_core::{GeoPoint, ReadingFlags, Watts};
use gridmesh_fixtures::provision;
use gridmesh_ingest::worker::{BrokerAddr, IngestConfig};
use gridmesh_loadgen::neighbourhood::SimHome;
use gridmesh_loadgen::neighbourhood::Speaker;
use gridmesh_loadgen::next_batch;
use gridmesh_loadgen::publisher::Publisher;
use gridmesh_testkit::{Mosquitto, Proxy};
use gridmesh_wire::topics::{self, Channel};
use gridmesh_wire::{KeyPair, Message, TelemetryBatch};
use sqlx::PgPool;
use tokio::sync::watch;

const SERVER_SEED: [u8; 32] = [0x5e; 32];

fn shared_broker() -> (String, u16) {
    let url = url::Url::parse(
        &std::env::var("GRIDMESH_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into()),
    )
    .unwrap();
    (url.host_str().unwrap().to_owned(), url.port().unwrap_or(1883))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Starts the worker; dropping the returned sender stops it.
fn start_worker(
    pool: PgPool,
    host: &str,
    port: u16,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let mut config = IngestConfig::new(
        BrokerAddr::plain(host.to_owned(), port),
        unique("ingest-test"),
        KeyPair::from_seed(SERVER_SEED),
    );
    // A group of its own: other tests' telemetry on the shared broker reaches this worker too,
    // and is refused as signed by unknown keys.
    config.share_group = Some(unique("group"));
    config.max_wait = Duration::from_millis(10);
    config.cache_ttl = Duration::from_millis(200);
    let (stop, mut rx) = watch::channel(false);
    let task = tokio::spawn(gridmesh_ingest::worker::run(pool, config, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    (stop, task)
}

async fn homes(pool: &PgPool, n: usize) -> Vec<SimHome> {
    provision(pool, &unique("street"), n, GeoPoint { lat: 52.52, lon: 13.40 }, Speaker::Loadgen)
        .await
        .unwrap()
}

fn publisher(host: &str, port: u16) -> Publisher {
    Publisher::connect(host, port, &unique("agents"), Some(KeyPair::from_seed(SERVER_SEED).public()))
}

async fn count(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), count(DISTINCT (agent_id, seq)) FROM telemetry")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Publishes `batches` batches of `size` readings per home, ending now.
async fn publish(p: &Publisher, homes: &mut [SimHome], batches: usize, size: usize) -> i64 {
    let mut total = 0;
    for b in 0..batches {
        let until = Utc::now() - chrono::Duration::seconds(((batches - b) * size) as i64);
        for home in homes.iter_mut() {
            let batch = next_batch(home, until, size, chrono::Duration::seconds(1));
            total += batch.readings.len() as i64;
            p.send(&home.key, batch).await.unwrap();
        }
    }
    total
}

async fn all_acknowledged(p: &Publisher, within: Duration) {
    let deadline = Instant::now() + within;
    while p.pending() > 0 {
        assert!(Instant::now() < deadline, "{} batches never acknowledged", p.pending());
        p.resend_older_than(Duration::from_secs(3)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn batches_are_stored_once_and_acknowledged_after_commit(pool: PgPool) {
    let (host, port) = shared_broker();
    let (stop, task) = start_worker(pool.clone(), &host, port);
    let mut homes = homes(&pool, 5).await;
    let p = publisher(&host, port);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let published = publish(&p, &mut homes, 4, 10).await;
    all_acknowledged(&p, Duration::from_secs(20)).await;
    let stats = p.take_stats();
    assert_eq!(stats.committed_readings as i64, published);
    assert_eq!(stats.acks_refused, 0);
    assert_eq!(count(&pool).await, (published, published));

    // Replaying a batch (an agent that missed the acknowledgement) stores nothing new, and is
    // acknowledged again.
    let home = &homes[0];
    let replay = TelemetryBatch {
        agent: home.agent,
        site: home.site,
        first_seq: 0,
        readings: {
            let rows = gridmesh_db::site_readings(
                &pool,
                home.site,
                Utc::now() - chrono::Duration::hours(1),
                Utc::now(),
                None,
                10,
            )
            .await
            .unwrap();
            rows.iter().map(|r| r.reading).collect()
        },
    };
    p.send(&home.key, replay).await.unwrap();
    all_acknowledged(&p, Duration::from_secs(20)).await;
    assert_eq!(count(&pool).await, (published, published));
    assert!(gridmesh_db::gaps(&pool, None, 100).await.unwrap().is_empty());

    // The 15-minute summaries and the latest reading are maintained.
    let energy = gridmesh_db::site_energy(
        &pool,
        home.site,
        Utc::now() - chrono::Duration::hours(2),
        Utc::now() + chrono::Duration::minutes(15),
    )
    .await
    .unwrap();
    assert_eq!(energy.iter().map(|e| e.readings).sum::<i32>(), 40);
    let latest = gridmesh_db::latest_reading(&pool, home.site).await.unwrap().unwrap();
    assert_eq!(latest.seq, 39);

    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn bad_payloads_are_refused_and_the_worker_carries_on(pool: PgPool) {
    let (host, port) = shared_broker();
    let (stop, task) = start_worker(pool.clone(), &host, port);
    let mut homes = homes(&pool, 2).await;
    let p = publisher(&host, port);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let topic = topics::topic(homes[0].site, Channel::Telemetry);

    // Garbage, JSON, a future protocol version, a truncated message.
    p.publish_raw(topic.clone(), b"\x00\x01garbage".to_vec()).await.unwrap();
    p.publish_raw(topic.clone(), br#"{"power": 5}"#.to_vec()).await.unwrap();
    let good = gridmesh_wire::encode(
        &Message::Telemetry(next_batch(&mut homes[0], Utc::now(), 3, chrono::Duration::seconds(1))),
        &homes[0].key,
    )
    .unwrap();
    let mut v2 = good.clone();
    v2[2] = 2;
    p.publish_raw(topic.clone(), v2).await.unwrap();
    p.publish_raw(topic.clone(), good[..good.len() - 1].to_vec()).await.unwrap();
    // A well-formed batch signed by a key nobody enrolled.
    let stranger = KeyPair::from_seed([0x77; 32]);
    let forged = next_batch(&mut homes[0], Utc::now(), 3, chrono::Duration::seconds(1));
    p.publish_raw(topic.clone(), gridmesh_wire::encode(&Message::Telemetry(forged), &stranger).unwrap())
        .await
        .unwrap();
    // Home 1's key signing a batch that claims to be home 0's agent: one key, two agents.
    let mut claimed = next_batch(&mut homes[1], Utc::now(), 3, chrono::Duration::seconds(1));
    claimed.agent = homes[0].agent;
    claimed.site = homes[0].site;
    p.publish_raw(topic.clone(), gridmesh_wire::encode(&Message::Telemetry(claimed), &homes[1].key).unwrap())
        .await
        .unwrap();
    // A batch published on another site's topic.
    let elsewhere = next_batch(&mut homes[1], Utc::now(), 3, chrono::Duration::seconds(1));
    p.publish_raw(
        topic.clone(),
        gridmesh_wire::encode(&Message::Telemetry(elsewhere), &homes[1].key).unwrap(),
    )
    .await
    .unwrap();

    // None of that stops a good batch behind it.
    let fresh = next_batch(&mut homes[0], Utc::now(), 4, chrono::Duration::seconds(1));
    let key = homes[0].key.clone();
    p.send(&key, fresh).await.unwrap();
    all_acknowledged(&p, Duration::from_secs(20)).await;
    assert_eq!(count(&pool).await, (4, 4));
    assert!(!task.is_finished());
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn implausible_readings_are_stored_with_their_flags(pool: PgPool) {
    let (host, port) = shared_broker();
    let (stop, task) = start_worker(pool.clone(), &host, port);
    let mut homes = homes(&pool, 1).await;
    let p = publisher(&host, port);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let home = &mut homes[0];
    let rated = home.home.rated_pv;

    // A normal minute, then one fault per reading.
    let mut batch =
        next_batch(home, Utc::now() - chrono::Duration::minutes(30), 6, chrono::Duration::seconds(1));
    batch.readings[1].pv_power = Some(Watts(rated.get() * 3));
    batch.readings[2].grid_import = batch.readings[1].grid_import.map(|w| w - gridmesh_core::WattHours(500));
    batch.readings[3].at = Utc::now() + chrono::Duration::hours(2);
    batch.readings[4].grid_power = Some(Watts(-(rated.get())));
    batch.readings[4].pv_power = Some(Watts(0));
    batch.readings[4].battery_power = batch.readings[4].battery_power.map(|_| Watts(0));
    let key = home.key.clone();
    p.send(&key, batch).await.unwrap();
    all_acknowledged(&p, Duration::from_secs(20)).await;

    let rows: Vec<(i64, i32)> =
        sqlx::query_as("SELECT seq, flags FROM telemetry ORDER BY seq").fetch_all(&pool).await.unwrap();
    let flags = |seq: i64| ReadingFlags::from_bits(rows.iter().find(|r| r.0 == seq).unwrap().1 as u32);
    assert!(flags(0).is_empty() || flags(0) == ReadingFlags::PV_AT_NIGHT, "{:?}", flags(0));
    assert!(flags(1).contains(ReadingFlags::OVER_RATED), "{:?}", flags(1));
    assert!(flags(2).contains(ReadingFlags::COUNTER_BACKWARDS), "{:?}", flags(2));
    assert!(flags(3).contains(ReadingFlags::CLOCK_FUTURE), "{:?}", flags(3));
    assert!(flags(4).contains(ReadingFlags::METER_INVERTER_MISMATCH), "{:?}", flags(4));
    // Flagged readings are kept, and their periods are marked for settlement to skip.
    assert_eq!(rows.len(), 6);
    let periods: Vec<(i32,)> =
        sqlx::query_as("SELECT flags FROM site_period_counters").fetch_all(&pool).await.unwrap();
    assert!(periods.iter().any(|(f,)| *f != 0));

    // A counter jump in the next batch, against the last reading of this one: 10^9 Wh of
    // export in a minute, with the power values as the simulator made them.
    let mut next =
        next_batch(home, Utc::now() - chrono::Duration::minutes(29), 2, chrono::Duration::seconds(1));
    let jump = gridmesh_core::WattHours(1_000_000_000);
    next.readings[0].grid_export = next.readings[0].grid_export.map(|w| w + jump);
    p.send(&key, next).await.unwrap();
    all_acknowledged(&p, Duration::from_secs(20)).await;
    let jumped: (i32,) =
        sqlx::query_as("SELECT flags FROM telemetry WHERE seq = 6").fetch_one(&pool).await.unwrap();
    let jumped = ReadingFlags::from_bits(jumped.0 as u32);
    assert!(jumped.contains(ReadingFlags::COUNTER_JUMP), "{jumped:?}");

    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_database_outage_loses_nothing_and_duplicates_nothing(pool: PgPool) {
    let (host, port) = shared_broker();
    let upstream = {
        let url = url::Url::parse(&std::env::var("DATABASE_URL").unwrap()).unwrap();
        tokio::net::lookup_host((url.host_str().unwrap().to_owned(), url.port().unwrap_or(5432)))
            .await
            .unwrap()
            .next()
            .unwrap()
    };
    let proxy = Proxy::start(upstream).await;
    let options = (*pool.connect_options()).clone().host("127.0.0.1").port(proxy.addr.port());
    let via_proxy = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(options)
        .await
        .unwrap();
    let (stop, task) = start_worker(via_proxy, &host, port);
    let mut homes = homes(&pool, 4).await;
    let p = publisher(&host, port);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut published = publish(&p, &mut homes, 3, 10).await;
    proxy.cut();
    published += publish(&p, &mut homes, 3, 10).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    published += publish(&p, &mut homes, 3, 10).await;
    all_acknowledged(&p, Duration::from_secs(40)).await;
    assert_eq!(count(&pool).await, (published, published));
    assert!(gridmesh_db::gaps(&pool, None, 100).await.unwrap().is_empty());
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn ingest_resumes_by_itself_after_a_broker_restart(pool: PgPool) {
    let mut broker = Mosquitto::start().await;
    let (stop, task) = start_worker(pool.clone(), "127.0.0.1", broker.port);
    let mut homes = homes(&pool, 3).await;
    let p = publisher("127.0.0.1", broker.port);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut published = publish(&p, &mut homes, 2, 10).await;
    all_acknowledged(&p, Duration::from_secs(20)).await;
    broker.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.restart().await;
    // Agents resend what was not acknowledged; the worker reconnects and subscribes again.
    published += publish(&p, &mut homes, 2, 10).await;
    all_acknowledged(&p, Duration::from_secs(40)).await;
    assert_eq!(count(&pool).await, (published, published));
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn pv_far_above_the_neighbours_is_flagged(pool: PgPool) {
    // Three neighbours' counters over two periods; the third claims triple the yield.
    let homes = homes(&pool, 4).await;
    let period = gridmesh_core::Period::containing(Utc::now() - chrono::Duration::hours(1));
    let mut rows_owned = Vec::new();
    for (i, home) in homes.iter().enumerate() {
        let specific = if i == 2 { 600 } else { 200 }; // mWh per rated W per period
        let rated = home.home.rated_pv.get();
        for (k, p) in [period.prev(), period].into_iter().enumerate() {
            let reading = gridmesh_core::Reading {
                at: p.start() + chrono::Duration::minutes(14),
                pv_energy: Some(gridmesh_core::WattHours(1_000_000 + rated * specific * k as i64 / 1000)),
                ..gridmesh_core::Reading::default()
            };
            rows_owned.push((home.agent, home.site, k as u64, reading));
        }
    }
    let rows: Vec<gridmesh_db::IngestRow<'_>> = rows_owned
        .iter()
        .map(|(agent, site, seq, reading)| gridmesh_db::IngestRow {
            agent: *agent,
            site: *site,
            seq: *seq,
            reading,
            flags: ReadingFlags::NONE,
        })
        .collect();
    gridmesh_db::commit_ingest(&pool, &rows).await.unwrap();
    assert_eq!(gridmesh_ingest::maintenance::flag_pv_outliers(&pool, period).await.unwrap(), 1);
    let flagged: Vec<(uuid::Uuid,)> =
        sqlx::query_as("SELECT site_id FROM site_period_counters WHERE flags & 64 <> 0")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(flagged, vec![(homes[2].site.0,)]);
}
