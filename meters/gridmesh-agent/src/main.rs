//! `gridmesh-agent`: reads a home's inverter, battery and meter and reports signed readings.
#![expect(
    clippy::print_stdout,
    reason = "a command-line tool: `key` and `check` answer on stdout, logs go to stderr"
)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gridmesh_agent::config::AgentConfig;
use gridmesh_agent::sunspec::Device;
use gridmesh_sunspec::{Value, readout};

/// The gridmesh edge agent.
#[derive(Debug, Parser)]
#[command(name = "gridmesh-agent", version)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        env = "GRIDMESH_AGENT_CONFIG",
        default_value = "/etc/gridmesh/agent.toml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read the devices and report until stopped (SIGTERM or Ctrl-C).
    Run,
    /// Check the configuration, probe every SunSpec device and listen to every MQTT device for a
    /// few seconds, and print what it found.
    Check {
        /// How long to listen to the MQTT devices on the home broker, seconds.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
        listen_seconds: u64,
    },
    /// Print the device's public key (creating the key on first use), for enrolment.
    Key,
    /// Register the device key with the service. With `--code` (a one-time code from the home's
    /// owner) the service names the site, and the site, the agent id and the server key are
    /// written into the configuration file. With `--token` (the owner's or an operator's API
    /// token) the key is registered for the configured site, and the lines to add are printed.
    Enroll {
        /// The gridmesh service, e.g. https://gridmesh.example.
        #[arg(long, visible_alias = "server", env = "GRIDMESH_API_URL")]
        api_url: String,
        /// The one-time enrolment code (like 7KQ2-M9XD-4HPA).
        #[arg(long, conflicts_with = "token", required_unless_present = "token")]
        code: Option<String>,
        /// The site owner's (or an operator's) API token, for a configured site.
        #[arg(long, env = "GRIDMESH_API_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A name for this agent ("garage pi").
        #[arg(long, default_value = "gridmesh-agent")]
        name: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match real_main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRIDMESH_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let cfg = AgentConfig::load(&cli.config)?;
    match cli.command {
        Command::Key => {
            let key = gridmesh_agent::key::load_or_create(&cfg.key_file)?;
            println!("{}", key.public());
            eprintln!(
                "enrol it: gridmesh-agent enroll --server <gridmesh URL> --code <code from the home's owner>"
            );
            Ok(())
        }
        Command::Check { listen_seconds } => check(&cfg, Duration::from_secs(listen_seconds)).await,
        Command::Enroll { api_url, code: Some(code), name, .. } => {
            // Checked before the code is spent: the file must take the enrolment.
            let text = std::fs::read_to_string(&cli.config)
                .with_context(|| format!("reading {}", cli.config.display()))?;
            let placeholder = gridmesh_agent::config::Enrolled {
                site: gridmesh_core::SiteId::from_bytes([0; 16]),
                agent: gridmesh_core::AgentId::from_bytes([0; 16]),
                server_key: "00".repeat(32),
                broker_url: None,
            };
            AgentConfig::parse(&cli.config, &gridmesh_agent::config::with_enrolment(&text, &placeholder))
                .context(
                    "the configuration cannot take the enrolment; fix it first (the code is not used yet)",
                )?;
            let key = gridmesh_agent::key::load_or_create(&cfg.key_file)?;
            let e = gridmesh_agent::enroll::enroll_with_code(&api_url, &code, &key, &name).await?;
            if let Err(err) = gridmesh_agent::config::write_enrolment(&cli.config, &e) {
                // Enrolled already: say what to write by hand rather than lose it.
                eprintln!("enrolled, but {err}; put these lines in {}:", cli.config.display());
                println!(
                    "site = \"{}\"\nagent = \"{}\"\n# in [central]:\nserver_key = \"{}\"",
                    e.site, e.agent, e.server_key
                );
                if let Some(url) = &e.broker_url {
                    println!("url = \"{url}\"");
                }
                anyhow::bail!("the configuration was not updated");
            }
            println!("enrolled: site {}, agent {}; written to {}", e.site, e.agent, cli.config.display());
            Ok(())
        }
        Command::Enroll { api_url, token, name, .. } => {
            let token = token.context("give --code or --token")?;
            let site =
                cfg.site.context("`site` is not set in the configuration: enrol with --code instead")?;
            let key = gridmesh_agent::key::load_or_create(&cfg.key_file)?;
            let e = gridmesh_agent::enroll::enroll(&api_url, &token, site, &key, &name).await?;
            println!("agent = \"{}\"", e.agent);
            println!("# in [central]:");
            println!("server_key = \"{}\"", e.server_key);
            eprintln!("enrolled: put these lines in {}", cli.config.display());
            Ok(())
        }
        Command::Run => {
            let key = gridmesh_agent::key::load_or_create(&cfg.key_file)?;
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            let agent = tokio::spawn(gridmesh_agent::run::run(cfg, key, stop_rx));
            tokio::select! {
                r = tokio::signal::ctrl_c() => r.context("waiting for a signal")?,
                () = terminate() => {}
            }
            tracing::info!("stopping: readings not yet acknowledged stay in the disk buffer");
            let _ = stop.send(true);
            agent.await.context("the agent task")?
        }
    }
}

async fn terminate() {
    #[cfg(unix)]
    if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        s.recv().await;
        return;
    }
    std::future::pending::<()>().await;
}

async fn check(cfg: &AgentConfig, listen: Duration) -> anyhow::Result<()> {
    match cfg.agent {
        Some(agent) => println!(
            "configuration OK: site {}, agent {agent}",
            cfg.site.map_or_else(|| "not set".to_owned(), |s| s.to_string())
        ),
        None => println!("configuration OK, not enrolled yet (gridmesh-agent enroll --code)"),
    }
    let broker = cfg.broker().map_err(anyhow::Error::msg)?;
    println!(
        "central broker: {}:{} ({})",
        broker.host,
        broker.port,
        if broker.tls { "TLS" } else { "plain" }
    );
    let mut failed = 0;
    for d in &cfg.sunspec {
        let link = gridmesh_agent::sunspec::Link::new(d.endpoint(), Duration::from_secs(3));
        for unit in std::iter::once(d.unit).chain(d.meter_unit) {
            match Device::discover_on(std::sync::Arc::clone(&link), unit).await {
                Ok(mut dev) => {
                    let blocks = dev.read_models().await?;
                    println!("\n{} ({} unit {unit})", d.name, d.endpoint());
                    println!("  {:<8} {:<8} {:<30} points", "model", "address", "name");
                    for (h, b) in dev.models().iter().zip(&blocks) {
                        let name = gridmesh_sunspec::model(h.id).map_or("?", |m| m.name);
                        let shown: Vec<String> =
                            ["W", "WH", "TotWhImp", "TotWhExp", "ChaState", "SoC", "Mn", "SN"]
                                .iter()
                                .filter_map(|p| {
                                    b.values.get(p).map(|v| match v {
                                        Value::Number(n) => format!("{p}={}", (n * 1e6).round() / 1e6),
                                        Value::Text(t) => format!("{p}={t}"),
                                        Value::Enum(e) | Value::Bits(e) => format!("{p}={e}"),
                                    })
                                })
                                .collect();
                        println!("  {:<8} {:<8} {:<30} {}", h.id, h.address, name, shown.join(" "));
                    }
                    let r = readout(&blocks, d.quirks);
                    println!("  reading: {r:?}");
                }
                Err(e) => {
                    failed += 1;
                    println!("\n{}: {e}", d.name);
                }
            }
        }
    }
    if let Some(b) = cfg.home_broker.as_ref().filter(|_| !cfg.mqtt_device.is_empty()) {
        let (host, port) = b.host_port().map_err(anyhow::Error::msg).context("home_broker.address")?;
        let credentials = b.username.clone().map(|u| (u, b.password.clone().unwrap_or_default()));
        println!("\nlistening {} s to the MQTT devices on {host}:{port}", listen.as_secs());
        let (client, events) = gridmesh_agent::home::connect(host, port, credentials);
        let devices = gridmesh_agent::home::devices(&cfg.mqtt_device)?;
        match gridmesh_agent::home::listen(client, events, devices, listen).await {
            Ok(heard) => {
                for h in heard {
                    if h.messages == 0 && h.last_refusal.is_some() {
                        println!("  {}: nothing usable arrived on {}", h.name, h.topics.join(", "));
                    } else if h.messages == 0 {
                        println!("  {}: nothing arrived on {}", h.name, h.topics.join(", "));
                    } else {
                        println!("  {}: {} message(s), {:?}", h.name, h.messages, h.state);
                    }
                    if let Some(why) = h.last_refusal {
                        println!("    refused: {why}");
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("  {e:#}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} device(s) could not be read");
    }
    Ok(())
}
