//! The demo's edge side: for each home, a simulated SunSpec device (an entry of the
//! neighbourhood file `gridmesh-sim --homes-file` serves) and a `gridmesh-agent` configuration
//! that reads it: enrolled already (the tests' [`agent_config`]), or waiting for
//! `gridmesh-agent enroll --code` with its code beside it (the demo's [`write`]).

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

/// The agent configuration of a home whose agent has yet to enrol: the device and the broker,
/// no ids and no key (`gridmesh-agent enroll --code` creates the key and writes the rest).
#[must_use]
pub fn unenrolled_config(home_dir: &Path, device_port: u16, central: &Central, batch: usize) -> String {
    format!(
        r#"# Written by `gridmesh-loadgen agents` for the demo: a simulated home's edge agent.
# `gridmesh-agent enroll --code` adds site, agent and central.server_key.
key_file = "{dir}/agent.key"
poll_ms = 1000
batch_readings = {batch}

[buffer]
dir = "{dir}/buffer"
max_mib = 64

[central]
url = "mqtt://{host}:{port}"
allow_plain = true

[[sunspec]]
name = "simulated home"
address = "127.0.0.1:{device_port}"
"#,
        dir = home_dir.display(),
        host = central.host,
        port = central.port,
    )
}

/// Whether the agent of `home_dir` is enrolled already (its configuration names its agent).
#[must_use]
pub fn enrolled(home_dir: &Path) -> bool {
    std::fs::read_to_string(home_dir.join("agent.toml")).is_ok_and(|t| {
        t.lines().any(|l| l.trim_start().starts_with("agent =") || l.trim_start().starts_with("agent="))
    })
}

/// The directory of home `i` (from 0).
#[must_use]
pub fn home_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("home-{:03}", i + 1))
}

/// Writes `dir/homes.json` (the devices, on ports from `first_port`) and, for every home whose
/// agent has yet to enrol, `dir/home-NNN/agent.toml` and `dir/home-NNN/enrolment.code` (0600)
/// for `gridmesh-agent enroll --code`. Enrolled agents' files stay as they are. Returns the
/// homes' directories.
///
/// # Errors
/// The directory cannot be written, or the ports run past 65535.
pub fn write(
    dir: &Path,
    homes: &[(&crate::home::Home, Option<&str>)],
    first_port: u16,
    central: &Central,
    batch: usize,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let mut specs = Vec::with_capacity(homes.len());
    let mut dirs = Vec::with_capacity(homes.len());
    for (i, (home, code)) in homes.iter().enumerate() {
        let port =
            u16::try_from(i).ok().and_then(|i| first_port.checked_add(i)).context("ports run past 65535")?;
        specs.push(HomeSpec {
            port,
            serial: format!("SIM-{:04}", i + 1),
            rated_pv: home.rated_pv,
            battery: home.battery,
            location: home.location,
            seed: home.seed,
        });
        let home_dir = home_dir(&dir, i);
        std::fs::create_dir_all(&home_dir).with_context(|| format!("creating {}", home_dir.display()))?;
        if let Some(code) = code {
            let cfg = home_dir.join("agent.toml");
            std::fs::write(&cfg, unenrolled_config(&home_dir, port, central, batch))
                .with_context(|| format!("writing {}", cfg.display()))?;
            write_private(&home_dir.join("enrolment.code"), code)?;
        }
        dirs.push(home_dir);
    }
    let file = dir.join("homes.json");
    std::fs::write(&file, serde_json::to_string_pretty(&specs)?)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(dirs)
}
