//! The link to the central broker: sends what the disk buffer holds, oldest first, with QoS 1,
//! and removes a batch only when the service's signed `TelemetryCommitted` for it arrives.
//! Unacknowledged batches are sent again after a while; the service stores each reading once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gridmesh_core::{AgentId, SiteId};
use gridmesh_wire::topics::{self, Channel};
use gridmesh_wire::{Ack, Message, PublicKey};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event};
use tokio::sync::watch;

use crate::buffer::Buffer;
use crate::config::BrokerAddr;

/// TLS material for the uplink (PEM).
pub use gridmesh_mqtt::TlsFiles;

/// How the uplink behaves.
#[derive(Debug, Clone)]
pub struct UplinkOptions {
    /// Broker.
    pub broker: BrokerAddr,
    /// MQTT client id.
    pub client_id: String,
    /// TLS settings when `broker.tls`: CA and optional client certificate and key (PEM bytes).
    pub tls: Option<TlsFiles>,
    /// Acknowledgements must be signed by this key, when given.
    pub server_key: Option<PublicKey>,
    /// Batches in flight at once.
    pub window: usize,
    /// Send an unacknowledged batch again after this long.
    pub resend_after: Duration,
}

/// The buffer, shared by the poller (appends) and the uplink (sends, acknowledges).
pub type SharedBuffer = Arc<Mutex<Buffer>>;

/// A setpoint as it arrived, and whether the server signed it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The command.
    pub setpoint: gridmesh_core::Setpoint,
    /// True when signed by the configured server key (or no key is configured).
    pub signed_by_server: bool,
}

/// The setpoint side of the uplink: commands in, answers out.
#[derive(Debug)]
pub struct Commands {
    /// Where received setpoints go.
    pub setpoints: tokio::sync::mpsc::Sender<Incoming>,
    /// Answers to publish.
    pub answers: tokio::sync::mpsc::Receiver<gridmesh_wire::SetpointResult>,
    /// The agent's key, to sign the answers.
    pub key: gridmesh_wire::KeyPair,
}

/// Runs the uplink until `stop` turns true.
///
/// # Errors
/// The buffer cannot be read or written (the disk), which the agent cannot work around.
pub async fn run(
    site: SiteId,
    agent: AgentId,
    buffer: SharedBuffer,
    opts: UplinkOptions,
    mut commands: Commands,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut mqtt = gridmesh_mqtt::options(
        &opts.broker,
        opts.client_id.clone(),
        Duration::from_secs(15),
        opts.tls.as_ref(),
    )?;
    // The window bounds what is in flight; rumqttc sizes its in-flight table from this limit
    // up front (about 10 MB at its default of 65535), so it is kept to what the window needs.
    let inflight = u16::try_from(opts.window.saturating_mul(2)).unwrap_or(u16::MAX).max(16);
    mqtt.set_clean_start(false).set_outgoing_inflight_upper_limit(inflight);
    // Presence: the broker announces "offline" for us when the connection dies.
    let status_topic = topics::topic(site, Channel::Status);
    let status = |state: gridmesh_wire::AgentState| -> anyhow::Result<Vec<u8>> {
        let s = gridmesh_wire::AgentStatus {
            agent,
            site,
            at: chrono::Utc::now(),
            state,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        Ok(gridmesh_wire::encode(&Message::Status(s), &commands.key)?)
    };
    mqtt.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        status_topic.clone(),
        status(gridmesh_wire::AgentState::Offline)?,
        QoS::AtLeastOnce,
        true,
        None,
    ));
    let (client, mut events) = AsyncClient::new(mqtt, 1_000);
    let ack_topic = topics::topic(site, Channel::TelemetryAck);
    let setpoint_topic = topics::topic(site, Channel::Setpoints);
    let answer_topic = topics::topic(site, Channel::SetpointAck);
    let telemetry = topics::topic(site, Channel::Telemetry);
    let mut sent: std::collections::HashMap<u64, Instant> = std::collections::HashMap::new();
    let mut connected = false;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        if *stop.borrow() {
            // A clean stop says so itself (the broker sends the last will only on a broken link).
            if connected {
                let _ = client
                    .publish(
                        status_topic.clone(),
                        QoS::AtLeastOnce,
                        true,
                        status(gridmesh_wire::AgentState::Offline)?,
                    )
                    .await;
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    while let Ok(e) = events.poll().await {
                        if matches!(e, Event::Incoming(Packet::PubAck(_))) {
                            break;
                        }
                    }
                })
                .await;
            }
            return Ok(());
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    // Everything unacknowledged goes again on a new connection.
                    sent.clear();
                    client.subscribe(ack_topic.clone(), QoS::AtLeastOnce).await?;
                    client.subscribe(setpoint_topic.clone(), QoS::AtLeastOnce).await?;
                    client.publish(status_topic.clone(), QoS::AtLeastOnce, true, status(gridmesh_wire::AgentState::Online)?).await?;
                    tracing::info!(host = %opts.broker.host, port = opts.broker.port, "connected to the central broker");
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Ok(signed) = gridmesh_wire::decode(&p.payload) else { continue };
                    if let Message::Setpoint(setpoint) = signed.message {
                        let signed_by_server = opts.server_key.is_none_or(|k| k == signed.signer);
                        let _ = commands.setpoints.try_send(Incoming { setpoint, signed_by_server });
                        continue;
                    }
                    if opts.server_key.is_some_and(|k| k != signed.signer) {
                        tracing::warn!("an acknowledgement not signed by the server key was ignored");
                        continue;
                    }
                    if let Message::Ack(Ack::TelemetryCommitted(c)) = signed.message
                        && c.agent == agent
                    {
                        buffer.lock().unwrap_or_else(PoisonError::into_inner).ack(c.last_seq)?;
                        sent.remove(&c.last_seq);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if connected {
                        tracing::warn!(error = %e, "central broker link lost; readings stay in the disk buffer");
                    }
                    connected = false;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            Some(answer) = commands.answers.recv() => {
                let bytes = gridmesh_wire::encode(&Message::Ack(Ack::Setpoint(answer)), &commands.key)?;
                client.publish(answer_topic.clone(), QoS::AtLeastOnce, false, bytes).await?;
            }
            _ = tick.tick(), if connected => {
                // Only batches not sent recently are read from disk and sent.
                let due: Vec<(u64, Vec<u8>)> = {
                    let b = buffer.lock().unwrap_or_else(PoisonError::into_inner);
                    let mut out = Vec::new();
                    for seq in b.pending_seqs(opts.window) {
                        if sent.get(&seq).is_none_or(|at| at.elapsed() >= opts.resend_after)
                            && let Some(bytes) = b.payload(seq)?
                        {
                            out.push((seq, bytes));
                        }
                    }
                    out
                };
                for (seq, bytes) in due {
                    client.publish(telemetry.clone(), QoS::AtLeastOnce, false, bytes).await?;
                    sent.insert(seq, Instant::now());
                }
            }
        }
    }
}
