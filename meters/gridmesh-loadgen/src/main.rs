//! `gridmesh-loadgen`: simulated homes publishing signed telemetry.
//!
//! `demo` runs a small neighbourhood in real time (the Quickstart's simulated homes); `agents`
//! provisions homes for edge agents and simulated devices; `flood` publishes as fast as ingest
//! takes it and reports the committed rate. Homes are created through the HTTP API with an
//! operator's token.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use gridmesh_core::GeoPoint;
use gridmesh_loadgen::neighbourhood::{self, SimHome, Speaker};
use gridmesh_loadgen::next_batch;
use gridmesh_loadgen::provision::{self, Api};
use gridmesh_loadgen::publisher::Publisher;
use gridmesh_wire::{KeyPair, PublicKey};

/// An API token, kept out of `Debug`.
#[derive(Clone)]
struct Token(String);

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Simulated homes that publish signed telemetry to gridmesh.
#[derive(Debug, Parser)]
#[command(name = "gridmesh-loadgen", version)]
struct Cli {
    /// The gridmesh API, where the simulated homes are created.
    #[arg(long, env = "GRIDMESH_API_URL", default_value = "http://127.0.0.1:8080")]
    api_url: String,
    /// An operator's API token (`gridmesh token issue`); when absent, read from --token-file.
    #[arg(long, env = "GRIDMESH_API_TOKEN", hide_env_values = true)]
    token: Option<Token>,
    /// File holding an operator's API token (as `scripts/run` writes it), used without --token.
    #[arg(long, default_value = ".gridmesh/operator.token")]
    token_file: PathBuf,
    /// MQTT broker host.
    #[arg(long, env = "GRIDMESH_MQTT_HOST", default_value = "127.0.0.1")]
    mqtt_host: String,
    /// MQTT broker port.
    #[arg(long, env = "GRIDMESH_MQTT_PORT", default_value_t = 1883)]
    mqtt_port: u16,
    /// The server's key file, to verify its acknowledgements (as written by `gridmesh serve`);
    /// when it cannot be read, the key is asked of the API (`GET /v1/server-key`).
    #[arg(long, env = "GRIDMESH_SERVER_KEY_FILE", default_value = ".gridmesh/server.key")]
    server_key_file: PathBuf,
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
        dir: PathBuf,
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

/// The server's key from its key file, else from the API; `None` (acknowledgements not
/// verified) only when neither has it.
async fn server_key(path: &Path, api: &Api) -> Option<PublicKey> {
    if let Some(key) = std::fs::read_to_string(path).ok().and_then(|t| KeyPair::from_seed_hex(&t).ok()) {
        return Some(key.public());
    }
    match api.server_key().await {
        Ok(key) => Some(key),
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                error = format!("{e:#}"),
                "no server key: acknowledgements are not verified"
            );
            None
        }
    }
}

/// The operator token: --token (or GRIDMESH_API_TOKEN), else the first line of --token-file.
fn operator_token(cli: &Cli) -> anyhow::Result<String> {
    if let Some(Token(token)) = &cli.token {
        return Ok(token.clone());
    }
    let text = std::fs::read_to_string(&cli.token_file).with_context(|| {
        format!(
            "reading the operator token from {} (give one with --token or GRIDMESH_API_TOKEN)",
            cli.token_file.display()
        )
    })?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "{} holds no token", cli.token_file.display());
    Ok(token)
}

/// Provisions the homes, and as their owner gives them strategies (unless `no_trading`) and a
/// reward address.
async fn homes_with_owner(
    api: &Api,
    name: &str,
    homes: usize,
    centre: GeoPoint,
    speaker: Speaker,
    no_trading: bool,
    reward_address: Option<&str>,
) -> anyhow::Result<Vec<SimHome>> {
    let plan = neighbourhood::plan(name, homes, centre, speaker);
    let owner = plan.owner;
    let homes = provision::provision(api, plan).await?;
    if reward_address.is_none() && no_trading {
        return Ok(homes);
    }
    provision::as_owner(api, owner, async |resident: &Api| {
        if let Some(address) = reward_address {
            provision::set_reward_address(resident, address).await.context("--reward-address")?;
        }
        if !no_trading {
            let sites: Vec<_> = homes.iter().map(|h| (h.site, &h.home)).collect();
            let created = provision::enable_trading(resident, &sites).await?;
            tracing::info!(created, "simulated homes trade through standing market strategies");
        }
        Ok(())
    })
    .await?;
    Ok(homes)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let api = Api::new(&cli.api_url, &operator_token(&cli)?)?;
    api.wait_until_up(Duration::from_secs(30)).await?;
    let key = server_key(&cli.server_key_file, &api).await;
    let centre = GeoPoint { lat: 52.52, lon: 13.40 };
    match cli.mode {
        Mode::Demo { homes, batch, no_trading, reward_address } => {
            let mut homes = homes_with_owner(
                &api,
                &cli.name,
                homes,
                centre,
                Speaker::Loadgen,
                no_trading,
                reward_address.as_deref(),
            )
            .await?;
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
            // Onboarded as people do it: homes registered by their owner, assigned to the
            // imported grid's feeders, agents enrolled with one-time codes.
            let plan = neighbourhood::plan(&cli.name, homes, centre, Speaker::EdgeAgent);
            let onboarded = provision::onboard(&api, &plan, |i| {
                !gridmesh_loadgen::edge::enrolled(&gridmesh_loadgen::edge::home_dir(&dir, i))
            })
            .await?;
            if reward_address.is_some() || !no_trading {
                provision::as_owner(&api, plan.owner, async |resident: &Api| {
                    if let Some(address) = reward_address.as_deref() {
                        provision::set_reward_address(resident, address).await.context("--reward-address")?;
                    }
                    if !no_trading {
                        let sites: Vec<_> =
                            onboarded.iter().zip(&plan.homes).map(|(o, h)| (o.site, &h.home)).collect();
                        let created = provision::enable_trading(resident, &sites).await?;
                        tracing::info!(created, "simulated homes trade through standing market strategies");
                    }
                    Ok(())
                })
                .await?;
            }
            let central = gridmesh_loadgen::edge::Central {
                host: cli.mqtt_host.clone(),
                port: cli.mqtt_port,
                server_key: key,
            };
            let edge: Vec<_> =
                plan.homes.iter().zip(&onboarded).map(|(h, o)| (&h.home, o.code.as_deref())).collect();
            let dirs = gridmesh_loadgen::edge::write(&dir, &edge, first_port, &central, batch)?;
            let mut feeders: Vec<String> = onboarded.iter().map(|o| o.feeder.clone()).collect();
            feeders.dedup();
            let list = dir.join("feeders.txt");
            std::fs::write(&list, feeders.join("\n") + "\n")
                .with_context(|| format!("writing {}", list.display()))?;
            let to_enrol = onboarded.iter().filter(|o| o.code.is_some()).count();
            tracing::info!(homes = dirs.len(), to_enrol, dir = %dir.display(), "edge agents written");
        }
        Mode::Flood { homes, batch, seconds } => {
            let plan = neighbourhood::plan(&cli.name, homes, centre, Speaker::Loadgen);
            let mut homes = provision::provision(&api, plan).await?;
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
