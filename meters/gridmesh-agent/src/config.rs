//! The agent's one TOML file. Every problem is refused at start with the field named.

use std::net::SocketAddr;
use std::path::PathBuf;

use gridmesh_core::{AgentId, SiteId};
use gridmesh_sunspec::Quirks;
use serde::Deserialize;
use thiserror::Error;

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse or does not fit.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of bounds.
    #[error("{path}: {field}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The site this agent reports for.
    pub site: SiteId,
    /// This agent's id, as `gridmesh-agent enroll` printed it (needed to `run`).
    pub agent: Option<AgentId>,
    /// The device key (created on first start, mode 0600).
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// How often to read the devices, milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Readings per signed batch.
    #[serde(default = "default_batch")]
    pub batch_readings: usize,
    /// The disk buffer.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// The central broker.
    pub central: CentralConfig,
    /// SunSpec devices over Modbus TCP.
    #[serde(default)]
    pub sunspec: Vec<SunSpecDevice>,
    /// The home broker the MQTT devices publish to.
    pub home_broker: Option<HomeBroker>,
    /// MQTT devices on the home broker (Tasmota, Shelly, OpenDTU/AhoyDTU, Home Assistant).
    #[serde(default)]
    pub mqtt_device: Vec<gridmesh_devices::DeviceConfig>,
}

/// The home broker: plain MQTT on the LAN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeBroker {
    /// `host:port` (1883 when no port is given).
    pub address: String,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
}

impl HomeBroker {
    /// Host and port.
    ///
    /// # Errors
    /// A bad port.
    pub fn host_port(&self) -> Result<(String, u16), String> {
        match self.address.rsplit_once(':') {
            Some((h, p)) => {
                Ok((h.to_owned(), p.parse().map_err(|_| format!("bad port in {:?}", self.address))?))
            }
            None => Ok((self.address.clone(), 1883)),
        }
    }
}

fn default_key_file() -> PathBuf {
    PathBuf::from("agent.key")
}
fn default_poll_ms() -> u64 {
    1_000
}
fn default_batch() -> usize {
    10
}

/// The disk buffer's place and size.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Its directory.
    #[serde(default = "default_buffer_dir")]
    pub dir: PathBuf,
    /// Most it keeps on disk, MiB; past that the oldest batches are dropped (and counted).
    #[serde(default = "default_buffer_mib")]
    pub max_mib: u64,
}

fn default_buffer_dir() -> PathBuf {
    PathBuf::from("buffer")
}
fn default_buffer_mib() -> u64 {
    512
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self { dir: default_buffer_dir(), max_mib: default_buffer_mib() }
    }
}

/// The central MQTT broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralConfig {
    /// `mqtts://host:port` (TLS) or, only when said so, `mqtt://host:port`.
    pub url: String,
    /// Allow `mqtt://` without TLS (a broker on the same host or LAN).
    #[serde(default)]
    pub allow_plain: bool,
    /// CA certificate (PEM) for TLS.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for brokers that want them.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key.
    pub client_key: Option<PathBuf>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// The server's public key (hex), to verify acknowledgements; without it any signer is
    /// accepted (not recommended).
    pub server_key: Option<String>,
}

/// A SunSpec device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SunSpecDevice {
    /// A name for logs and `check`.
    pub name: String,
    /// `host:port`.
    pub address: SocketAddr,
    /// Modbus unit id of the inverter and storage.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// Unit id of the meter when it has its own (some vendors use 200).
    pub meter_unit: Option<u8>,
    /// Vendor quirks.
    #[serde(default)]
    pub quirks: Quirks,
}

fn default_unit() -> u8 {
    1
}

/// The central broker's address, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS or not.
    pub tls: bool,
}

impl AgentConfig {
    /// Reads and checks a configuration file.
    ///
    /// # Errors
    /// Unreadable, malformed, or a value out of bounds, with the field named.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(path, &text)
    }

    /// Parses and checks configuration text (`path` only names it in errors).
    ///
    /// # Errors
    /// As [`AgentConfig::load`].
    pub fn parse(path: &std::path::Path, text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        let invalid = |field: &str, problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            field: field.into(),
            problem,
        };
        if !(100..=3_600_000).contains(&cfg.poll_ms) {
            return Err(invalid("poll_ms", format!("must be 100 to 3600000, got {}", cfg.poll_ms)));
        }
        if !(1..=gridmesh_wire::MAX_READINGS_PER_BATCH).contains(&cfg.batch_readings) {
            return Err(invalid(
                "batch_readings",
                format!("must be 1 to {}, got {}", gridmesh_wire::MAX_READINGS_PER_BATCH, cfg.batch_readings),
            ));
        }
        if cfg.buffer.max_mib == 0 {
            return Err(invalid("buffer.max_mib", "must be at least 1".into()));
        }
        cfg.broker().map_err(|p| invalid("central.url", p))?;
        if let Some(k) = &cfg.central.server_key {
            gridmesh_wire::PublicKey::from_hex(k)
                .map_err(|e| invalid("central.server_key", e.to_string()))?;
        }
        if cfg.central.client_cert.is_some() != cfg.central.client_key.is_some() {
            return Err(invalid("central.client_cert", "client_cert and client_key go together".into()));
        }
        if let Some(h) = &cfg.home_broker {
            h.host_port().map_err(|p| invalid("home_broker.address", p))?;
        }
        if !cfg.mqtt_device.is_empty() && cfg.home_broker.is_none() {
            return Err(invalid("home_broker", "mqtt_device entries need a [home_broker]".into()));
        }
        for (i, d) in cfg.mqtt_device.iter().enumerate() {
            d.validate().map_err(|e| invalid(&format!("mqtt_device[{i}]"), e.to_string()))?;
        }
        for (i, d) in cfg.sunspec.iter().enumerate() {
            if d.name.is_empty() {
                return Err(invalid(&format!("sunspec[{i}].name"), "must not be empty".into()));
            }
        }
        Ok(cfg)
    }

    /// The central broker's host, port and transport.
    ///
    /// # Errors
    /// A URL that is not `mqtts://host:port`, or `mqtt://` without `allow_plain`.
    pub fn broker(&self) -> Result<BrokerUrl, String> {
        let url = &self.central.url;
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            if !self.central.allow_plain {
                return Err("mqtt:// sends readings unencrypted; use mqtts://, or set allow_plain = true for a broker on this host or LAN".into());
            }
            (false, r)
        } else {
            return Err(format!("expected mqtts://host:port, got {url:?}"));
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad port in {url:?}"))?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        Ok(BrokerUrl { host: host.to_owned(), port, tls })
    }
}
