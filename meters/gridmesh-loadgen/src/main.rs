//! `gridmesh-loadgen`: simulated homes publishing signed telemetry.
//!
//! `demo` runs a small neighbourhood in real time (the Quickstart's simulated homes); `flood`
//! publishes as fast as ingest takes it and reports the committed rate.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use gridmesh_core::GeoPoint;
use gridmesh_loadgen::neighbourhood::provision;
use gridmesh_loadgen::next_batch;
use gridmesh_loadgen::publisher::Publisher;
use gridmesh_wire::{KeyPair, PublicKey};

/// Simulated homes that publish signed telemetry to gridmesh.
#[derive(Debug, Parser)]
#[command(name = "gridmesh-loadgen", version)]
struct Cli {
    /// PostgreSQL URL, for enrolling the simulated homes.
    #[arg(
        long,
        env = "GRIDMESH_DATABASE_URL",
        default_value = "postgres://gridmesh:gridmesh@127.0.0.1:5432/gridmesh",
        hide_env_values = true
    )]
    database_url: String,
    /// MQTT broker host.
    #[arg(long, env = "GRIDMESH_MQTT_HOST", default_value = "127.0.0.1")]
    mqtt_host: String,
    /// MQTT broker port.
    #[arg(long, env = "GRIDMESH_MQTT_PORT", default_value_t = 1883)]
    mqtt_port: u16,
    /// The server's key file, to verify its acknowledgements (as written by `gridmesh serve`).
    #[arg(long, env = "GRIDMESH_SERVER_KEY_FILE", default_value = ".gridmesh/server.key")]
    server_key_file: std::path::PathBuf,
    /// Name of the neighbourhood (ids and keys derive from it).
    #[arg(long, default_value = "Sunny Hill")]
    name: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Homes read every second and publish a batch every few seconds, in real time.
    Demo {
        /// Number of homes.
        #[arg(long, default_value_t = 20)]
        homes: usize,
        /// Readings per batch (one a second).
        #[arg(long, default_value_t = 5)]
        batch: usize,
        /// Do not give the homes standing market strategies.
        #[arg(long)]
        no_trading: bool,
        /// EVM address the residents' token rewards go to.
        #[arg(long)]
        reward_address: Option<String>,
    },
    /// Provision homes for the edge demo and exit: each gets a simulated SunSpec device (an entry
    /// of DIR/homes.json for `gridmesh-sim --homes-file`) and an enrolled `gridmesh-agent`
    /// configuration (DIR/home-NNN/agent.toml) that reads it.
    Agents {
        /// Number of homes.
        #[arg(long, default_value_t = 20)]
        homes: usize,
        /// Where the files go.
        #[arg(long, default_value = ".gridmesh/homes")]
        dir: std::path::PathBuf,
        /// The first home's Modbus TCP port; home k listens on this + k.
        #[arg(long, default_value_t = 15020)]
        first_port: u16,
        /// Readings per batch (one a second).
        #[arg(long, default_value_t = 5)]
        batch: usize,
        /// Do not give the homes standing market strategies.
        #[arg(long)]
        no_trading: bool,
        /// EVM address the residents' token rewards go to.
        #[arg(long)]
        reward_address: Option<String>,
    },
    /// Publish back-to-back batches for a while and report the committed rate.
    Flood {
        /// Number of homes.
        #[arg(long, default_value_t = 200)]
        homes: usize,
        /// Readings per batch.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// How long to publish.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

fn server_key(path: &std::path::Path) -> Option<PublicKey> {
    let text = std::fs::read_to_string(path).ok()?;
    KeyPair::from_seed_hex(&text).ok().map(|k| k.public())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let pool = gridmesh_db::connect_with_retry(
        &cli.database_url,
        &gridmesh_db::ConnectOptions::default(),
        Duration::from_secs(30),
    )
    .await
    .context("connecting to the database (GRIDMESH_DATABASE_URL / --database-url)")?;
    gridmesh_db::migrate(&pool).await.context("applying migrations")?;
    let key = server_key(&cli.server_key_file);
    if key.is_none() {
        tracing::warn!(path = %cli.server_key_file.display(), "no server key: acknowledgements are not verified");
    }
    let centre = GeoPoint { lat: 52.52, lon: 13.40 };
    match cli.mode {
        Mode::Demo { homes, batch, no_trading, reward_address } => {
            let mut homes = provision(&pool, &cli.name, homes, centre).await?;
            if let Some(address) = reward_address {
                gridmesh_loadgen::neighbourhood::set_reward_address(&pool, &cli.name, &address).await?;
            }
            if !no_trading {
                let created =
                    gridmesh_loadgen::neighbourhood::enable_trading(&pool, &cli.name, &homes).await?;
                tracing::info!(created, "simulated homes trade through standing market strategies");
            }
            let publisher = Publisher::connect(
                &cli.mqtt_host,
                cli.mqtt_port,
                &format!("gridmesh-sim-{}", std::process::id()),
                key,
            );
            tracing::info!(homes = homes.len(), batch, "simulated homes publishing");
            let mut tick = tokio::time::interval(Duration::from_secs(batch as u64));
            let mut last_report = Instant::now();
            loop {
                tick.tick().await;
                let now = chrono::Utc::now();
                for home in &mut homes {
                    let b = next_batch(home, now, batch, chrono::Duration::seconds(1));
                    publisher.send(&home.key, b).await?;
                }
                publisher.resend_older_than(Duration::from_secs(15)).await?;
                if last_report.elapsed() >= Duration::from_secs(10) {
                    let stats = publisher.take_stats();
                    tracing::info!(
                        committed_readings = stats.committed_readings,
                        pending_batches = publisher.pending(),
                        "simulated homes"
                    );
                    last_report = Instant::now();
                }
            }
        }
        Mode::Agents { homes, dir, first_port, batch, no_trading, reward_address } => {
            let homes = gridmesh_loadgen::neighbourhood::provision_for(
                &pool,
                &cli.name,
                homes,
                centre,
                gridmesh_loadgen::neighbourhood::Speaker::EdgeAgent,
            )
            .await?;
            if let Some(address) = reward_address {
                gridmesh_loadgen::neighbourhood::set_reward_address(&pool, &cli.name, &address).await?;
            }
            if !no_trading {
                gridmesh_loadgen::neighbourhood::enable_trading(&pool, &cli.name, &homes).await?;
            }
            let central = gridmesh_loadgen::edge::Central {
                host: cli.mqtt_host.clone(),
                port: cli.mqtt_port,
                server_key: key,
            };
            let configs = gridmesh_loadgen::edge::write(&dir, &homes, first_port, &central, batch)?;
            let feeders: Vec<String> =
                (0..homes.len().div_ceil(gridmesh_loadgen::neighbourhood::HOMES_PER_FEEDER))
                    .map(|n| gridmesh_loadgen::neighbourhood::feeder_id(&cli.name, n as u64).to_string())
                    .collect();
            let list = dir.join("feeders.txt");
            std::fs::write(&list, feeders.join("\n") + "\n")
                .with_context(|| format!("writing {}", list.display()))?;
            tracing::info!(homes = configs.len(), dir = %dir.display(), "edge agents provisioned");
        }
        Mode::Flood { homes, batch, seconds } => {
            let mut homes = provision(&pool, &cli.name, homes, centre).await?;
            let publisher = Publisher::connect(
                &cli.mqtt_host,
                cli.mqtt_port,
                &format!("gridmesh-flood-{}", std::process::id()),
                key,
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            let started = Instant::now();
            let mut t = chrono::Utc::now() - chrono::Duration::days(1);
            let mut sent = 0_u64;
            while started.elapsed() < Duration::from_secs(seconds) {
                t += chrono::Duration::seconds(batch as i64);
                for home in &mut homes {
                    while publisher.pending() > 2_000 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    let b = next_batch(home, t, batch, chrono::Duration::seconds(1));
                    publisher.send(&home.key, b).await?;
                    sent += batch as u64;
                }
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while publisher.pending() > 0 && Instant::now() < deadline {
                publisher.resend_older_than(Duration::from_secs(10)).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let stats = publisher.take_stats();
            tracing::info!(
                sent,
                committed = stats.committed_readings,
                seconds = elapsed,
                readings_per_s = (stats.committed_readings as f64 / elapsed).round(),
                "flood finished"
            );
        }
    }
    Ok(())
}
