//! The demo's edge side: for each provisioned home, a simulated SunSpec device (an entry of the
//! neighbourhood file `gridmesh-sim --homes-file` serves) and a `gridmesh-agent` configuration
//! with its device key, enrolled already, that reads that device.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gridmesh_sim::neighbourhood::HomeSpec;
use gridmesh_wire::PublicKey;

use crate::neighbourhood::SimHome;

/// Where the central broker is, for the agents.
#[derive(Debug, Clone)]
pub struct Central {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The server's key, to check acknowledgements and setpoints.
    pub server_key: Option<PublicKey>,
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// The agent configuration of one home.
#[must_use]
pub fn agent_config(
    home: &SimHome,
    home_dir: &Path,
    device_port: u16,
    central: &Central,
    batch: usize,
) -> String {
    let server_key = central.server_key.map_or_else(
        || "# server_key unknown: start `gridmesh serve` first".to_owned(),
        |k| format!("server_key = \"{k}\""),
    );
    format!(
        r#"# Written by `gridmesh-loadgen agents` for the demo: a simulated home's edge agent.
site = "{site}"
agent = "{agent}"
key_file = "{dir}/agent.key"
poll_ms = 1000
batch_readings = {batch}

[buffer]
dir = "{dir}/buffer"
max_mib = 64

[central]
url = "mqtt://{host}:{port}"
allow_plain = true
{server_key}

[[sunspec]]
name = "simulated home"
address = "127.0.0.1:{device_port}"
"#,
        site = home.site,
        agent = home.agent,
        dir = home_dir.display(),
        host = central.host,
        port = central.port,
    )
}

/// Writes `dir/homes.json` (the devices, on ports from `first_port`) and `dir/home-NNN/`
/// (`agent.toml`, `agent.key`) for every home. Returns the agent configuration files.
///
/// # Errors
/// The directory cannot be written, or the ports run past 65535.
pub fn write(
    dir: &Path,
    homes: &[SimHome],
    first_port: u16,
    central: &Central,
    batch: usize,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let mut specs = Vec::with_capacity(homes.len());
    let mut configs = Vec::with_capacity(homes.len());
    for (i, home) in homes.iter().enumerate() {
        let port =
            u16::try_from(i).ok().and_then(|i| first_port.checked_add(i)).context("ports run past 65535")?;
        specs.push(HomeSpec {
            port,
            serial: format!("SIM-{:04}", i + 1),
            rated_pv: home.home.rated_pv,
            battery: home.home.battery,
            location: home.home.location,
            seed: home.home.seed,
        });
        let home_dir = dir.join(format!("home-{:03}", i + 1));
        std::fs::create_dir_all(&home_dir).with_context(|| format!("creating {}", home_dir.display()))?;
        write_private(&home_dir.join("agent.key"), &home.key.seed_hex())?;
        let cfg = home_dir.join("agent.toml");
        std::fs::write(&cfg, agent_config(home, &home_dir, port, central, batch))
            .with_context(|| format!("writing {}", cfg.display()))?;
        configs.push(cfg);
    }
    let file = dir.join("homes.json");
    std::fs::write(&file, serde_json::to_string_pretty(&specs)?)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(configs)
}
