//! The agent's one TOML file. Every problem is refused at start with the field named.

use std::net::SocketAddr;
use std::path::PathBuf;

use gridmesh_core::{AgentId, SiteId};
use gridmesh_sunspec::Quirks;

use crate::sunspec::{Endpoint, SerialLine};
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
    /// The file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
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
    /// The site this agent reports for (written by `gridmesh-agent enroll --code`; needed to
    /// `run`).
    pub site: Option<SiteId>,
    /// This agent's id (written by `gridmesh-agent enroll --code`; needed to `run`).
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
    /// `host:port` for Modbus TCP (give this or `serial`).
    pub address: Option<SocketAddr>,
    /// A serial line for Modbus RTU (give this or `address`).
    pub serial: Option<SerialLine>,
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

impl SunSpecDevice {
    /// Where the device is (checked at load: exactly one of `address` and `serial`).
    #[must_use]
    pub fn endpoint(&self) -> Endpoint {
        match (&self.serial, self.address) {
            (Some(line), _) => Endpoint::Serial(line.clone()),
            (None, Some(a)) => Endpoint::Tcp(a),
            // Refused by `AgentConfig::parse`; an unroutable address keeps this total.
            (None, None) => Endpoint::Tcp(SocketAddr::from(([0, 0, 0, 0], 502))),
        }
    }

    /// Whether all unit ids of the device share one connection: always on a serial line, and
    /// for TCP devices that accept one client only.
    #[must_use]
    pub fn shared_link(&self) -> bool {
        self.serial.is_some() || self.quirks.single_client
    }
}

/// The central broker's address, parsed (the address type every gridmesh process uses).
pub use gridmesh_mqtt::BrokerAddr;

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
            match (&d.address, &d.serial) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        &format!("sunspec[{i}]"),
                        "give either address (Modbus TCP) or serial (Modbus RTU), not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(invalid(
                        &format!("sunspec[{i}]"),
                        "needs address = \"host:port\" (Modbus TCP) or serial = { path = ... } (Modbus RTU)"
                            .into(),
                    ));
                }
                (None, Some(line)) => {
                    line.validate().map_err(|p| invalid(&format!("sunspec[{i}].serial"), p))?;
                }
                (Some(_), None) => {}
            }
            if d.unit == 0 || d.meter_unit == Some(0) {
                return Err(invalid(
                    &format!("sunspec[{i}].unit"),
                    "unit ids are 1 to 247 (0 is broadcast)".into(),
                ));
            }
            // A single-client device or a serial line takes one connection: two entries for it
            // would open two.
            if let Some(j) = cfg.sunspec[..i]
                .iter()
                .position(|o| o.endpoint() == d.endpoint() && (o.shared_link() || d.shared_link()))
            {
                return Err(invalid(
                    &format!("sunspec[{i}]"),
                    format!(
                        "{} is also sunspec[{j}]: a serial line or a single-client device is one entry (use meter_unit for its meter)",
                        d.endpoint()
                    ),
                ));
            }
        }
        Ok(cfg)
    }

    /// The central broker's address, transport and credentials.
    ///
    /// # Errors
    /// A URL that is not `mqtts://host:port`, or `mqtt://` without `allow_plain`.
    pub fn broker(&self) -> Result<BrokerAddr, String> {
        let url = &self.central.url;
        if url.starts_with("mqtt://") && !self.central.allow_plain {
            return Err("mqtt:// sends readings unencrypted; use mqtts://, or set allow_plain = true for a broker on this host or LAN".into());
        }
        if !url.starts_with("mqtts://") && !url.starts_with("mqtt://") {
            return Err(format!("expected mqtts://host:port, got {url:?}"));
        }
        let addr = BrokerAddr::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
        if addr.username.is_some() {
            // One place for credentials: the URL is printed by `check` and may be shared.
            return Err("put the broker's user and password in central.username and central.password, not in central.url".into());
        }
        Ok(match &self.central.username {
            Some(user) => addr.with_credentials(user.clone(), self.central.password.clone()),
            None => addr,
        })
    }
}

/// What an enrolment gives an agent, to write into its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The site it reports for.
    pub site: SiteId,
    /// Its agent id.
    pub agent: AgentId,
    /// The server's public key (hex), for `central.server_key`.
    pub server_key: String,
    /// The broker to use, when the service named one (`central.url`).
    pub broker_url: Option<String>,
}

/// The configuration text `text` with the enrolment written in: `site` and `agent` at the top
/// level, `server_key` (and `url`, when given) under `[central]`. Lines it does not set stay as
/// they are, comments included.
#[must_use]
pub fn with_enrolment(text: &str, e: &Enrolled) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let is_table = |l: &str| l.trim_start().starts_with('[');
    let key_of = |l: &str| l.split_once('=').map(|(k, _)| k.trim().to_owned());
    // Sets `key` inside the section that starts after line `start` (the top level: no start).
    let set = |lines: &mut Vec<String>, start: Option<usize>, key: &str, value: &str| {
        let from = start.map_or(0, |s| s + 1);
        let end = lines.iter().skip(from).position(|l| is_table(l)).map_or(lines.len(), |p| from + p);
        let line = format!("{key} = \"{value}\"");
        match (from..end).find(|&i| key_of(&lines[i]).as_deref() == Some(key)) {
            Some(i) => lines[i] = line,
            None => {
                // At the top, below the file's opening comments; in a table, under its header.
                let at = if start.is_some() {
                    from
                } else {
                    (from..end)
                        .find(|&i| {
                            let t = lines[i].trim();
                            !(t.is_empty() || t.starts_with('#'))
                        })
                        .unwrap_or(end)
                };
                lines.insert(at, line);
            }
        }
    };
    set(&mut lines, None, "agent", &e.agent.to_string());
    set(&mut lines, None, "site", &e.site.to_string());
    // `[central]`, also written `[ central ]` or with a comment after it.
    let is_central = |l: &str| {
        let header: String =
            l.split('#').next().unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
        header == "[central]"
    };
    let central = lines.iter().position(|l| is_central(l));
    let central = central.unwrap_or_else(|| {
        lines.push(String::new());
        lines.push("[central]".to_owned());
        lines.len() - 1
    });
    set(&mut lines, Some(central), "server_key", &e.server_key);
    if let Some(url) = &e.broker_url {
        set(&mut lines, Some(central), "url", url);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Writes the enrolment into the configuration file at `path` (see [`with_enrolment`]), only
/// if the result is a valid configuration, and atomically (a new file renamed over the old).
///
/// # Errors
/// The file cannot be read or written, or the result does not load (named as for
/// [`AgentConfig::load`]).
pub fn write_enrolment(path: &std::path::Path, e: &Enrolled) -> Result<AgentConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let updated = with_enrolment(&text, e);
    let cfg = AgentConfig::parse(path, &updated)?;
    let tmp = path.with_extension("toml.new");
    // The file may hold broker passwords: the new one gets the old one's permissions, and is
    // on disk before it replaces it.
    let write = (|| {
        let permissions = std::fs::metadata(path)?.permissions();
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, updated.as_bytes())?;
        file.set_permissions(permissions)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    write.map_err(|source| ConfigError::Write { path: path.to_owned(), source })?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;
    use proptest::prelude::*;

    const HEAD: &str = r#"
site = "00000000-0000-4000-8000-000000000001"
[central]
url = "mqtt://127.0.0.1:1883"
allow_plain = true
"#;

    fn parse(extra: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(std::path::Path::new("agent.toml"), &format!("{HEAD}{extra}"))
    }

    fn refused(extra: &str) -> String {
        parse(extra).unwrap_err().to_string()
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let text = include_str!("../agent.example.toml");
        let cfg = AgentConfig::parse(std::path::Path::new("agent.example.toml"), text).unwrap();
        assert!(!cfg.sunspec.is_empty());
        assert!(cfg.sunspec.iter().any(|d| d.serial.is_some()), "the example shows a serial device");
    }

    #[test]
    fn tcp_and_serial_devices_are_read() {
        let cfg = parse(
            r#"
[[sunspec]]
name = "inverter"
address = "192.168.1.20:502"
meter_unit = 200
quirks = { single_client = true }
[[sunspec]]
name = "battery"
serial = { path = "/dev/ttyUSB0", baud = 19200, parity = "even" }
unit = 3
"#,
        )
        .unwrap();
        assert!(cfg.sunspec[0].shared_link() && cfg.sunspec[1].shared_link());
        assert_eq!(cfg.sunspec[1].endpoint().to_string(), "/dev/ttyUSB0");
        let Some(line) = &cfg.sunspec[1].serial else { panic!("serial") };
        assert_eq!(
            (line.baud, line.parity, line.data_bits, line.stop_bits),
            (19_200, crate::sunspec::Parity::Even, 8, 1)
        );
    }

    #[test]
    fn the_central_url_gives_the_broker_and_credentials_stay_in_their_fields() {
        let central = |url: &str, extra: &str| {
            let text = format!(
                "site = \"00000000-0000-4000-8000-000000000001\"\n[central]\nurl = \"{url}\"\nca_file = \"/ca.pem\"\n{extra}"
            );
            AgentConfig::parse(std::path::Path::new("agent.toml"), &text).map(|c| c.broker().unwrap())
        };
        let tls =
            central("mqtts://broker.example:8884", "username = \"home-7\"\npassword = \"s3cret\"").unwrap();
        assert_eq!((tls.host.as_str(), tls.port, tls.tls), ("broker.example", 8884, true));
        assert_eq!((tls.username.as_deref(), tls.password()), (Some("home-7"), Some("s3cret")));
        assert_eq!(tls.to_string(), "mqtts://home-7:***@broker.example:8884");
        assert_eq!(central("mqtts://[::1]", "").unwrap().port, 8883);
        let refused = |url: &str| central(url, "").unwrap_err().to_string();
        assert!(refused("mqtts://u:p@broker").contains("central.username and central.password"));
        assert!(refused("https://broker").contains("expected mqtts://host:port"));
        assert!(refused("mqtts://broker:99999").contains("central.url"));
    }

    #[test]
    fn an_enrolment_is_written_into_the_file_keeping_everything_else() {
        let e = Enrolled {
            site: "00000000-0000-4000-8000-0000000000aa".parse().unwrap(),
            agent: "00000000-0000-4000-8000-0000000000bb".parse().unwrap(),
            server_key: "ab".repeat(32),
            broker_url: Some("mqtts://broker.example:8883".into()),
        };
        // The example file: comments, devices and the old central.url stay or are replaced in
        // place, and the result loads.
        let example = include_str!("../agent.example.toml");
        let written = with_enrolment(example, &e);
        let cfg = AgentConfig::parse(std::path::Path::new("agent.toml"), &written).unwrap();
        assert_eq!((cfg.site, cfg.agent), (Some(e.site), Some(e.agent)));
        assert_eq!(cfg.central.server_key.as_deref(), Some(e.server_key.as_str()));
        assert_eq!(cfg.central.url, "mqtts://broker.example:8883");
        let comments = |t: &str| t.lines().filter(|l| l.trim_start().starts_with('#')).count();
        assert_eq!(comments(&written), comments(example));
        // Writing again changes nothing; a file without [central] gets one.
        assert_eq!(with_enrolment(&written, &e), written);
        let bare = with_enrolment("poll_ms = 1000\n", &Enrolled { broker_url: None, ..e.clone() });
        assert!(bare.contains("[central]\nserver_key = "), "{bare}");
        assert!(bare.starts_with("site = "), "{bare}");
        let commented = with_enrolment("# my box\n\npoll_ms = 1000\n", &e);
        assert!(commented.starts_with("# my box\n\nsite = "), "{commented}");
        let spaced = with_enrolment("[ central ] # the broker\nurl = \"mqtt://h\"\n", &e);
        assert_eq!(spaced.matches("central").count(), 1, "{spaced}");
        assert!(spaced.contains("[ central ] # the broker\nserver_key = "), "{spaced}");
    }

    #[test]
    fn each_problem_is_named() {
        let dev = |body: &str| format!("[[sunspec]]\nname = \"inv\"\n{body}\n");
        let cases = [
            (dev(""), "sunspec[0]: needs address"),
            (dev("address = \"10.0.0.2:502\"\nserial = { path = \"/dev/ttyS0\" }"), "not both"),
            (dev("serial = { path = \"/dev/ttyS0\", baud = 10 }"), "sunspec[0].serial: baud must be 300"),
            (dev("serial = { path = \"/dev/ttyS0\", data_bits = 9 }"), "data_bits must be 7 or 8"),
            (dev("serial = { path = \"/dev/ttyS0\", stop_bits = 3 }"), "stop_bits must be 1 or 2"),
            (dev("serial = { path = \"/dev/ttyS0\", parity = \"mark\" }"), "unknown variant `mark`"),
            (dev("address = \"10.0.0.2:502\"\nunit = 0"), "unit ids are 1 to 247"),
            (dev("address = \"10.0.0.2\""), "invalid socket address"),
            (
                format!(
                    "{}{}",
                    dev("address = \"10.0.0.2:502\"\nquirks = { single_client = true }"),
                    dev("address = \"10.0.0.2:502\"\nunit = 2")
                ),
                "sunspec[1]: 10.0.0.2:502 is also sunspec[0]",
            ),
            (
                format!(
                    "{}{}",
                    dev("serial = { path = \"/dev/ttyS0\" }"),
                    dev("serial = { path = \"/dev/ttyS0\" }\nunit = 2")
                ),
                "/dev/ttyS0 is also sunspec[0]",
            ),
            ("poll_ms = 5\n".into(), "poll_ms: must be 100 to 3600000"),
            (dev("address = \"10.0.0.2:502\"\nquirks = { fast = true }"), "unknown field `fast`"),
        ];
        for (extra, expected) in cases {
            // Top-level keys must come before the [central] table.
            let text = if extra.starts_with("poll_ms") {
                format!("{extra}{HEAD}")
            } else {
                format!("{HEAD}{extra}")
            };
            let e = AgentConfig::parse(std::path::Path::new("agent.toml"), &text).unwrap_err().to_string();
            assert!(e.starts_with("agent.toml: "), "{e}");
            assert!(e.contains(expected), "expected {expected:?} in: {e}");
        }
        // Two TCP entries for one multi-client device are fine.
        parse(&format!(
            "{}{}",
            dev("address = \"10.0.0.2:502\""),
            dev("address = \"10.0.0.2:502\"\nunit = 2")
        ))
        .unwrap();
        assert!(refused("[home_broker]\naddress = \"h:x\"\n").contains("home_broker.address: bad port"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever the text, parsing answers (a configuration or an error naming the file),
        /// never panics.
        #[test]
        fn any_text_is_answered(extra in "[ -~\n]{0,200}") {
            match AgentConfig::parse(std::path::Path::new("agent.toml"), &format!("{HEAD}{extra}")) {
                Ok(_) => {}
                Err(e) => prop_assert!(e.to_string().starts_with("agent.toml")),
            }
        }
    }
}
