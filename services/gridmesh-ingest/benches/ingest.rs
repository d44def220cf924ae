//! Ingest benchmark: a fixed 10 000 readings/s load measures publish-to-commit latency; then
//! simulated homes publish signed batches to Mosquitto as fast as ingest commits them; then the
//! same number of rows goes into the same table with a raw `COPY`.
//!
//! ```sh
//! cargo bench -p gridmesh-ingest --bench ingest
//! ```
//!
//! Settings (environment): `BENCH_HOMES` (200), `BENCH_BATCH` (100 readings), `BENCH_SECONDS`
//! (30), `BENCH_LATENCY_RATE` (10 000 readings/s), `BENCH_LATENCY_SECONDS` (20). It uses its
//! own database, `gridmesh_bench`, created fresh next to `DATABASE_URL`'s, and the broker of
//! `GRIDMESH_TEST_MQTT_URL`.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark binary reports on stdout and stops on a broken set-up"
)]

// The neighbourhood helper of the ingest tests: the same homes, stored the same way.

use std::time::{Duration, Instant};

use chrono::Utc;
use gridmesh_core::GeoPoint;
use gridmesh_fixtures::provision;
use gridmesh_ingest::worker::{BrokerAddr, IngestConfig};
use gridmesh_loadgen::neighbourhood::Speaker;
use gridmesh_loadgen::next_batch;
use gridmesh_loadgen::publisher::Publisher;
use gridmesh_wire::KeyPair;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn fresh_database() -> (String, PgPool) {
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://gridmesh:gridmesh@127.0.0.1:5432/gridmesh".into());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query("DROP DATABASE IF EXISTS gridmesh_bench WITH (FORCE)").execute(&mut admin).await.unwrap();
    sqlx::query("CREATE DATABASE gridmesh_bench").execute(&mut admin).await.unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path("gridmesh_bench");
    let options = gridmesh_db::ConnectOptions { max_connections: 8, ..Default::default() };
    let pool = gridmesh_db::connect(url.as_str(), &options).await.unwrap();
    gridmesh_db::migrate(&pool).await.unwrap();
    (url.to_string(), pool)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let homes_n: usize = env_or("BENCH_HOMES", 200);
    let batch: usize = env_or("BENCH_BATCH", 100);
    let seconds: u64 = env_or("BENCH_SECONDS", 30);
    let latency_rate: usize = env_or("BENCH_LATENCY_RATE", 10_000);
    let latency_seconds: u64 = env_or("BENCH_LATENCY_SECONDS", 20);
    let mqtt = url::Url::parse(
        &std::env::var("GRIDMESH_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into()),
    )
    .unwrap();
    let (host, port) = (mqtt.host_str().unwrap().to_owned(), mqtt.port().unwrap_or(1883));

    let (_url, pool) = fresh_database().await;
    let mut homes = provision(&pool, "bench", homes_n, GeoPoint { lat: 52.52, lon: 13.40 }, Speaker::Loadgen)
        .await
        .unwrap();
    let server_key = KeyPair::generate().unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut config = IngestConfig::new(
        BrokerAddr::plain(host.clone(), port),
        format!("bench-ingest-{tag}"),
        server_key.clone(),
    );
    config.share_group = Some(format!("bench-{tag}"));
    let (stop, mut stop_rx) = watch::channel(false);
    let worker = tokio::spawn(gridmesh_ingest::worker::run(pool.clone(), config, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    let publisher =
        Publisher::connect(&host, port, &format!("bench-agents-{tag}"), Some(server_key.public()));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. Latency at a fixed rate, on a calm system: batches of 10 readings spread evenly.
    let per_batch = 10;
    let batches_per_s = (latency_rate / per_batch).max(1);
    let gap = Duration::from_secs_f64(1.0 / batches_per_s as f64);
    let lat_started = Instant::now();
    let mut next = Instant::now();
    let mut k = 0_usize;
    while lat_started.elapsed() < Duration::from_secs(latency_seconds) {
        let n = homes.len();
        let home = &mut homes[k % n];
        k += 1;
        let b = next_batch(home, Utc::now(), per_batch, chrono::Duration::milliseconds(100));
        publisher.send(&home.key.clone(), b).await.unwrap();
        next += gap;
        tokio::time::sleep_until(next.into()).await;
    }
    while publisher.pending() > 0 {
        publisher.resend_older_than(Duration::from_secs(10)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lat = publisher.take_stats().latencies;
    lat.sort_unstable();

    let _ = publisher.take_stats();

    // 2. Throughput: keep up to 2000 batches in flight, as agents with a backlog would.
    let mut t = Utc::now() - chrono::Duration::days(1);
    let warmup = Duration::from_secs(3);
    let started = Instant::now();
    let mut measured_from: Option<(Instant, u64)> = None;
    let mut committed = 0_u64;
    while started.elapsed() < warmup + Duration::from_secs(seconds) {
        t += chrono::Duration::seconds(batch as i64);
        for home in &mut homes {
            while publisher.pending() > 2_000 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let b = next_batch(home, t, batch, chrono::Duration::seconds(1));
            publisher.send(&home.key.clone(), b).await.unwrap();
        }
        committed += publisher.take_stats().committed_readings;
        if measured_from.is_none() && started.elapsed() >= warmup {
            measured_from = Some((Instant::now(), committed));
        }
    }
    let (from, base) = measured_from.unwrap();
    committed += publisher.take_stats().committed_readings;
    let rate = (committed - base) as f64 / from.elapsed().as_secs_f64();
    while publisher.pending() > 0 {
        publisher.resend_older_than(Duration::from_secs(10)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM telemetry").fetch_one(&pool).await.unwrap();
    eprintln!("ingest: {rate:.0} readings/s, {stored} stored");

    // 3. Raw COPY of as many rows into the same (emptied) table: the ceiling for this machine.
    let copy_rows = stored as usize;
    let rows: String = {
        let mut out = String::with_capacity(copy_rows * 160);
        let mut i = 0;
        'outer: for round in 0.. {
            for home in &mut homes {
                let b = next_batch(
                    home,
                    Utc::now() + chrono::Duration::seconds(round),
                    1,
                    chrono::Duration::seconds(1),
                );
                let r = &b.readings[0];
                let opt = |v: Option<i64>| v.map_or_else(|| "\\N".to_owned(), |v| v.to_string());
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    home.agent,
                    home.site,
                    b.first_seq,
                    r.at.to_rfc3339(),
                    opt(r.grid_power.map(|w| w.get())),
                    opt(r.pv_power.map(|w| w.get())),
                    opt(r.battery_power.map(|w| w.get())),
                    opt(r.battery_soc.map(|s| i64::from(s.basis_points()))),
                    opt(r.grid_import.map(|w| w.get())),
                    opt(r.grid_export.map(|w| w.get())),
                    opt(r.pv_energy.map(|w| w.get())),
                    opt(r.battery_charged.map(|w| w.get())),
                    opt(r.battery_discharged.map(|w| w.get())),
                ));
                i += 1;
                if i == copy_rows {
                    break 'outer;
                }
            }
        }
        out
    };
    sqlx::query("TRUNCATE telemetry").execute(&pool).await.unwrap();
    let today = Utc::now().date_naive();
    gridmesh_db::ensure_telemetry_partitions(&pool, today - chrono::Days::new(1), 4).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let copy_started = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY telemetry (agent_id, site_id, seq, measured_at, grid_power_w, pv_power_w, battery_power_w, battery_soc_bp,
                 grid_import_wh, grid_export_wh, pv_energy_wh, battery_charged_wh, battery_discharged_wh) FROM STDIN",
        )
        .await
        .unwrap();
    for chunk in rows.as_bytes().chunks(1 << 20) {
        copy.send(chunk).await.unwrap();
    }
    copy.finish().await.unwrap();
    let copy_rate = copy_rows as f64 / copy_started.elapsed().as_secs_f64();
    drop(conn);

    stop.send(true).unwrap();
    let _ = worker.await;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("| measure | result |");
    println!("|---|---|");
    println!("| homes, readings per batch | {homes_n}, {batch} |");
    println!(
        "| sustained ingest, readings committed per second ({seconds} s after {} s warm-up) | {rate:.0} |",
        warmup.as_secs()
    );
    println!("| readings stored (checked in PostgreSQL) | {stored} |");
    println!("| raw COPY of {copy_rows} rows into the same table, rows per second | {copy_rate:.0} |");
    println!("| ingest as a share of raw COPY | {:.0} % |", 100.0 * rate / copy_rate);
    println!(
        "| publish-to-commit latency at {latency_rate} readings/s ({} batches): p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        lat.len(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default())
    );
}
