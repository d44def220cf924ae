//! `gridmesh-sim`: a neighbourhood of simulated homes, each a SunSpec Modbus TCP device on its
//! own port, or one home on a serial line (Modbus RTU).

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use gridmesh_core::{BatterySpec, GeoPoint, WattHours, Watts};
use gridmesh_sim::device::{Profile, SimDevice};
use gridmesh_sim::home::Home;
use gridmesh_sim::neighbourhood::{self, HomeSpec};
use gridmesh_sim::server::{self, TcpOptions};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProfileArg {
    /// Integer values with scale factors (models 103, 160, 123, 124, 802, 203).
    Int,
    /// Floats and DER models (113, 701, 704, 802, 213).
    Float,
}

/// Simulated homes as SunSpec Modbus TCP devices.
#[derive(Debug, Parser)]
#[command(name = "gridmesh-sim", version)]
struct Cli {
    /// Number of homes; home k listens on --port + k.
    #[arg(long, default_value_t = 1)]
    homes: u16,
    /// First port.
    #[arg(long, default_value_t = 15020)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// SunSpec profile.
    #[arg(long, value_enum, default_value_t = ProfileArg::Int)]
    profile: ProfileArg,
    /// Modbus unit id of the meter (1 shares the inverter's unit; 200 as some vendors do).
    #[arg(long, default_value_t = 1)]
    meter_unit: u8,
    /// The homes to serve, from a neighbourhood file (JSON, as `gridmesh-loadgen agents` writes
    /// it); each listens on its own port. Replaces --homes and --port.
    #[arg(long, conflicts_with_all = ["homes", "port", "serial"])]
    homes_file: Option<std::path::PathBuf>,
    /// Accept one Modbus client at a time per home, as some inverters do.
    #[arg(long)]
    single_client: bool,
    /// Serve one home as Modbus RTU on this serial line instead of TCP (8N1).
    #[arg(long, conflicts_with_all = ["homes", "port"])]
    serial: Option<String>,
    /// Baud rate of --serial.
    #[arg(long, default_value_t = 9_600)]
    baud: u32,
}

/// The homes of `--homes N`: varied ratings, two in three with a battery.
fn numbered(homes: u16, first_port: u16) -> anyhow::Result<Vec<HomeSpec>> {
    (0..homes)
        .map(|k| {
            Ok(HomeSpec {
                port: first_port.checked_add(k).context("ports run past 65535")?,
                serial: format!("SIM-{k:04}"),
                rated_pv: Watts(6_000 + i64::from(k % 4) * 1_000),
                battery: (k % 3 != 2).then_some(BatterySpec {
                    capacity: WattHours(10_000),
                    max_charge: Watts(4_000),
                    max_discharge: Watts(4_000),
                }),
                location: GeoPoint { lat: 52.52, lon: 13.40 },
                seed: u64::from(k) * 7_919 + 13,
            })
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let profile = match cli.profile {
        ProfileArg::Int => Profile::IntScale,
        ProfileArg::Float => Profile::Float,
    };
    let homes = match &cli.homes_file {
        Some(path) => neighbourhood::load(path)?,
        None => numbered(cli.homes, cli.port)?,
    };
    let device = |h: &HomeSpec| {
        let home = Home::new(h.rated_pv, h.battery, h.location, h.seed);
        SimDevice::new(home, profile, cli.meter_unit, &h.serial).context("building the device's register map")
    };
    let tick = Duration::from_secs(1);
    let mut running = Vec::new();
    let mut rtu = None;
    if let Some(path) = &cli.serial {
        let h = homes.first().context("no home to serve")?;
        rtu = Some(
            server::spawn_rtu(path, cli.baud, device(h)?, tick)
                .with_context(|| format!("cannot open the serial line {path}"))?,
        );
        tracing::info!(serial = %path, baud = cli.baud, "simulated SunSpec home on Modbus RTU");
    } else {
        let options = TcpOptions { single_client: cli.single_client };
        for h in &homes {
            let listener = tokio::net::TcpListener::bind((cli.host.as_str(), h.port))
                .await
                .with_context(|| format!("cannot listen on {}:{}", cli.host, h.port))?;
            running.push(
                server::spawn_with(listener, device(h)?, tick, options)
                    .context("starting the Modbus server")?,
            );
        }
        tracing::info!(homes = homes.len(), "simulated SunSpec homes listening");
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    drop(running);
    drop(rtu);
    Ok(())
}
