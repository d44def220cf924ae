//! How every gridmesh process reaches an MQTT broker: one parsed address ([`BrokerAddr`], its
//! password kept out of logs) and one builder of MQTT 5 client options ([`options`]).
//!
//! The central server (its shared link and the ingest consumer) and the edge agent's uplink all
//! build their connections here, so credentials, TLS and keep-alive are handled one way.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rumqttc::v5::MqttOptions;

/// The usual form of a broker URL, quoted in errors.
pub const URL_FORM: &str = "expected mqtt://[user:password@]host[:port] (or mqtts:// for TLS)";

/// Why a broker URL or a set of options was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The text is not a URL of the expected form.
    #[error("{reason}; {URL_FORM}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// TLS was asked for, but this build has no TLS support.
    #[error("TLS to the broker (mqtts://) is not supported by this program; use mqtt://")]
    TlsUnsupported,
}

fn malformed(reason: impl Into<String>) -> BrokerError {
    BrokerError::Malformed { reason: reason.into() }
}

/// Where a broker is and how to sign in: `mqtt://` (plain, port 1883 by default) or `mqtts://`
/// (TLS, port 8883). `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether the connection uses TLS.
    pub tls: bool,
    /// User name, if the broker wants one.
    pub username: Option<String>,
    password: Option<String>,
}

impl BrokerAddr {
    /// A plain (no TLS) address without credentials.
    #[must_use]
    pub fn plain(host: impl Into<String>, port: u16) -> Self {
        Self { host: host.into(), port, tls: false, username: None, password: None }
    }

    /// Parses `mqtt://[user:password@]host[:port]` or `mqtts://...` (`tcp://` and `ssl://` are
    /// accepted as their synonyms). User and password may be percent-encoded (`p%40ss`).
    ///
    /// # Errors
    /// [`BrokerError::Malformed`] naming what is wrong.
    pub fn parse(s: &str) -> Result<Self, BrokerError> {
        let url = url::Url::parse(s).map_err(|e| malformed(e.to_string()))?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => return Err(malformed(format!("unknown scheme {other:?}"))),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| malformed("no host"))?;
        if url.path() != "" && url.path() != "/" {
            return Err(malformed(format!("unexpected path {:?}", url.path())));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(malformed("unexpected query or fragment"));
        }
        Ok(Self {
            host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
            username: Some(decode(url.username())).filter(|u| !u.is_empty()),
            password: url.password().map(decode),
        })
    }

    /// The same address with these credentials (for configurations that keep them apart from
    /// the URL).
    #[must_use]
    pub fn with_credentials(mut self, username: String, password: Option<String>) -> Self {
        self.username = Some(username);
        self.password = password;
        self
    }

    /// The password, if any: pass it to the client library, never to a log.
    #[must_use]
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

/// URL user and password parts arrive percent-encoded.
fn decode(part: &str) -> String {
    percent_encoding::percent_decode_str(part).decode_utf8_lossy().into_owned()
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => write!(f, "{scheme}://{u}:***@{host}:{}", self.port),
            (Some(u), None) => write!(f, "{scheme}://{u}@{host}:{}", self.port),
            _ => write!(f, "{scheme}://{host}:{}", self.port),
        }
    }
}

impl fmt::Debug for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for BrokerAddr {
    type Err = BrokerError;

    fn from_str(s: &str) -> Result<Self, BrokerError> {
        Self::parse(s)
    }
}

/// TLS material, PEM: the CA certificate(s), and a client certificate with its key for brokers
/// that want one.
#[derive(Clone, Default)]
pub struct TlsFiles {
    /// CA certificate(s).
    pub ca: Vec<u8>,
    /// Client certificate and key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client key is a secret; say only what is there.
        f.debug_struct("TlsFiles")
            .field("ca_bytes", &self.ca.len())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// MQTT 5 client options for `addr`: client id, keep-alive, credentials, and TLS when the
/// address asks for it (with `tls`, or the platform's defaults for an empty CA). Callers add
/// what is theirs (sessions, acknowledgement mode, flow control, last will).
///
/// # Errors
/// [`BrokerError::TlsUnsupported`] for an `mqtts://` address in a build without the `tls`
/// feature.
pub fn options(
    addr: &BrokerAddr,
    client_id: impl Into<String>,
    keep_alive: Duration,
    tls: Option<&TlsFiles>,
) -> Result<MqttOptions, BrokerError> {
    let mut options = MqttOptions::new(client_id, addr.host.clone(), addr.port);
    options.set_keep_alive(keep_alive);
    if let Some(user) = &addr.username {
        options.set_credentials(user.clone(), addr.password().unwrap_or_default().to_owned());
    }
    if addr.tls {
        set_tls(&mut options, tls)?;
    }
    Ok(options)
}

#[cfg(feature = "tls")]
fn set_tls(options: &mut MqttOptions, tls: Option<&TlsFiles>) -> Result<(), BrokerError> {
    let tls = tls.cloned().unwrap_or_default();
    options.set_transport(rumqttc::Transport::tls(tls.ca, tls.client, None));
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn set_tls(_: &mut MqttOptions, _: Option<&TlsFiles>) -> Result<(), BrokerError> {
    Err(BrokerError::TlsUnsupported)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn urls_parse_with_default_ports_and_decoded_credentials() {
        let a = BrokerAddr::parse("mqtt://ops%40site:p%40ss%3Aw@broker").unwrap();
        assert_eq!((a.host.as_str(), a.port, a.tls), ("broker", 1883, false));
        assert_eq!(a.username.as_deref(), Some("ops@site"));
        assert_eq!(a.password(), Some("p@ss:w"));
        let t = BrokerAddr::parse("mqtts://[::1]").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("::1", 8883, true));
        assert_eq!(t.to_string(), "mqtts://[::1]:8883");
        assert_eq!(BrokerAddr::parse("tcp://h:1884").unwrap(), BrokerAddr::plain("h", 1884));
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        let a = BrokerAddr::parse("mqtt://u:hunter2@broker:1884").unwrap();
        assert_eq!(a.to_string(), "mqtt://u:***@broker:1884");
        assert!(!format!("{a:?}").contains("hunter2"));
    }

    #[test]
    fn bad_urls_name_the_problem_and_the_form() {
        let e = |s: &str| BrokerAddr::parse(s).unwrap_err().to_string();
        assert!(e("localhost:1883").contains("expected mqtt://"), "{}", e("localhost:1883"));
        assert!(e("http://x").contains("unknown scheme \"http\""));
        assert!(e("mqtt://x/topic").contains("unexpected path"));
        assert!(e("mqtt://x:99999").contains("expected mqtt://"));
    }

    #[test]
    fn options_carry_credentials_and_keep_alive() {
        let a = BrokerAddr::parse("mqtt://u:p@broker:1884").unwrap();
        let o = options(&a, "id-1", Duration::from_secs(7), None).unwrap();
        assert_eq!(o.broker_address(), ("broker".to_owned(), 1884));
        assert_eq!(o.client_id(), "id-1");
        assert_eq!(o.keep_alive(), Duration::from_secs(7));
        let login = o.credentials().unwrap();
        assert_eq!((login.username.as_str(), login.password.as_str()), ("u", "p"));
    }
}
