//! `gridmesh-sim`: a neighbourhood of simulated homes, each a SunSpec Modbus TCP device on its
//! own port.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use gridmesh_core::{BatterySpec, GeoPoint, WattHours, Watts};
use gridmesh_sim::device::{Profile, SimDevice};
use gridmesh_sim::home::Home;
use gridmesh_sim::server;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProfileArg {
    /// Integer values with scale factors (models 103, 160, 123, 124, 203).
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
    let mut running = Vec::new();
    for k in 0..cli.homes {
        let seed = u64::from(k) * 7_919 + 13;
        let battery = (k % 3 != 2).then_some(BatterySpec {
            capacity: WattHours(10_000),
            max_charge: Watts(4_000),
            max_discharge: Watts(4_000),
        });
        let home = Home::new(
            Watts(6_000 + i64::from(k % 4) * 1_000),
            battery,
            GeoPoint { lat: 52.52, lon: 13.40 },
            seed,
        );
        let device = SimDevice::new(home, profile, cli.meter_unit, &format!("SIM-{k:04}"))
            .context("building the device's register map")?;
        let port = cli.port.checked_add(k).context("ports run past 65535")?;
        let listener = tokio::net::TcpListener::bind((cli.host.as_str(), port))
            .await
            .with_context(|| format!("cannot listen on {}:{port}", cli.host))?;
        running.push(
            server::spawn(listener, device, Duration::from_secs(1)).context("starting the Modbus server")?,
        );
    }
    tracing::info!(homes = cli.homes, first_port = cli.port, "simulated SunSpec homes listening");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    drop(running);
    Ok(())
}
