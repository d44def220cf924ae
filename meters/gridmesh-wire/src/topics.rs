//! The MQTT topic layout, versioned with the protocol.
//!
//! ```text
//! gridmesh/v1/sites/{site}/telemetry       agent -> central  TelemetryBatch       QoS 1
//! gridmesh/v1/sites/{site}/telemetry/ack   central -> agent  Ack::TelemetryCommitted QoS 1
//! gridmesh/v1/sites/{site}/setpoints       central -> agent  Setpoint             QoS 1, retained
//! gridmesh/v1/sites/{site}/setpoints/ack   agent -> central  Ack::Setpoint        QoS 1
//! gridmesh/v1/sites/{site}/status          agent -> central  AgentStatus          QoS 1, retained, last will
//! ```
//!
//! `{site}` is the site id in hyphenated UUID form. Several ingest replicas share the telemetry
//! through an MQTT 5 / Mosquitto shared subscription, see [`ingest_subscription`].

use std::fmt;

use gridmesh_core::SiteId;
use thiserror::Error;

/// Prefix of every topic; the `v1` changes with the protocol's major version.
pub const ROOT: &str = "gridmesh/v1/sites";

/// One of a site's topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Readings from the agent.
    Telemetry,
    /// Commit acknowledgements to the agent.
    TelemetryAck,
    /// Commands to the agent.
    Setpoints,
    /// Command results from the agent.
    SetpointAck,
    /// Agent presence (retained; the broker publishes the last will here).
    Status,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 5] = [
        Channel::Telemetry,
        Channel::TelemetryAck,
        Channel::Setpoints,
        Channel::SetpointAck,
        Channel::Status,
    ];

    /// The topic suffix after the site id.
    #[must_use]
    pub const fn suffix(self) -> &'static str {
        match self {
            Channel::Telemetry => "telemetry",
            Channel::TelemetryAck => "telemetry/ack",
            Channel::Setpoints => "setpoints",
            Channel::SetpointAck => "setpoints/ack",
            Channel::Status => "status",
        }
    }

    /// Whether messages on this channel are published with the retain flag.
    #[must_use]
    pub const fn retained(self) -> bool {
        matches!(self, Channel::Setpoints | Channel::Status)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

/// The full topic of `channel` for `site`.
#[must_use]
pub fn topic(site: SiteId, channel: Channel) -> String {
    format!("{ROOT}/{site}/{}", channel.suffix())
}

/// The filter matching `channel` for every site.
#[must_use]
pub fn all_sites(channel: Channel) -> String {
    format!("{ROOT}/+/{}", channel.suffix())
}

/// The telemetry subscription for ingest: with a group name, an MQTT shared subscription
/// (`$share/{group}/...`) so that replicas in the group split the load; without, a plain one.
#[must_use]
pub fn ingest_subscription(group: Option<&str>) -> String {
    let filter = all_sites(Channel::Telemetry);
    match group {
        Some(group) => format!("$share/{group}/{filter}"),
        None => filter,
    }
}

/// A topic that is not one of the layout's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    /// Does not start with [`ROOT`].
    #[error("topic {0:?} is outside {ROOT}/")]
    Foreign(String),
    /// The site segment is not a UUID.
    #[error("topic {topic:?}: {segment:?} is not a site id (expected a hyphenated UUID)")]
    BadSite {
        /// The topic.
        topic: String,
        /// The segment found.
        segment: String,
    },
    /// The part after the site is not a known channel.
    #[error("topic {topic:?}: unknown channel {suffix:?}")]
    UnknownChannel {
        /// The topic.
        topic: String,
        /// The part after the site id.
        suffix: String,
    },
}

/// Splits a concrete topic into its site and channel.
///
/// # Errors
/// A [`TopicError`] naming the part that does not fit the layout.
pub fn parse(topic: &str) -> Result<(SiteId, Channel), TopicError> {
    let rest = topic
        .strip_prefix(ROOT)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| TopicError::Foreign(topic.to_owned()))?;
    let (segment, suffix) = rest.split_once('/').unwrap_or((rest, ""));
    // Accept only the canonical lowercase hyphenated form, so one site has one topic.
    let site = segment
        .parse::<SiteId>()
        .ok()
        .filter(|s| s.to_string() == segment)
        .ok_or_else(|| TopicError::BadSite { topic: topic.to_owned(), segment: segment.to_owned() })?;
    let channel = Channel::ALL
        .into_iter()
        .find(|c| c.suffix() == suffix)
        .ok_or_else(|| TopicError::UnknownChannel { topic: topic.to_owned(), suffix: suffix.to_owned() })?;
    Ok((site, channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        let site = SiteId::from_bytes([0xab; 16]);
        for channel in Channel::ALL {
            let t = topic(site, channel);
            assert!(t.starts_with("gridmesh/v1/sites/abababab-abab-abab-abab-abababababab/"));
            assert_eq!(parse(&t).unwrap(), (site, channel));
        }
    }

    #[test]
    fn subscriptions() {
        assert_eq!(ingest_subscription(None), "gridmesh/v1/sites/+/telemetry");
        assert_eq!(ingest_subscription(Some("ingest")), "$share/ingest/gridmesh/v1/sites/+/telemetry");
    }

    #[test]
    fn foreign_and_malformed_topics_are_refused() {
        assert!(matches!(parse("tele/tasmota/SENSOR"), Err(TopicError::Foreign(_))));
        assert!(matches!(parse("gridmesh/v1/sites/xyz/telemetry"), Err(TopicError::BadSite { .. })));
        let upper = "gridmesh/v1/sites/ABABABAB-ABAB-ABAB-ABAB-ABABABABABAB/telemetry";
        assert!(matches!(parse(upper), Err(TopicError::BadSite { .. })));
        let t = format!("{ROOT}/{}/bogus", SiteId::from_bytes([1; 16]));
        let err = parse(&t).unwrap_err();
        assert!(err.to_string().contains("unknown channel \"bogus\""), "{err}");
    }
}
