//! Publishes signed telemetry batches the way an agent does: QoS 1, each batch kept until the
//! central service's signed `TelemetryCommitted` arrives, and sent again if it does not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gridmesh_core::AgentId;
use gridmesh_wire::topics::{self, Channel};
use gridmesh_wire::{Ack, KeyPair, Message, PublicKey, TelemetryBatch};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::task::JoinHandle;

struct Pending {
    topic: String,
    bytes: Vec<u8>,
    readings: usize,
    first_sent: Instant,
    last_sent: Instant,
}

#[derive(Default)]
struct Shared {
    pending: HashMap<(AgentId, u64), Pending>,
    latencies: Vec<Duration>,
    committed: u64,
    acks_refused: u64,
}

/// What was committed since the last [`Publisher::take_stats`].
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Readings acknowledged as committed.
    pub committed_readings: u64,
    /// Publish-to-acknowledgement time of each committed batch.
    pub latencies: Vec<Duration>,
    /// Acknowledgements that did not verify against the server key.
    pub acks_refused: u64,
}

/// An MQTT connection publishing for many simulated agents.
pub struct Publisher {
    client: AsyncClient,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Publisher {
    /// Connects to `host:port`; acknowledgements are trusted only when signed by `server_key`
    /// (any signer when `None`, for a first demo run that does not know the key yet).
    #[must_use]
    pub fn connect(host: &str, port: u16, client_id: &str, server_key: Option<PublicKey>) -> Self {
        let mut options = MqttOptions::new(client_id, host, port);
        options.set_keep_alive(Duration::from_secs(10)).set_outgoing_inflight_upper_limit(1_000);
        let (client, mut eventloop) = AsyncClient::new(options, 10_000);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = Arc::clone(&shared);
        let sub = client.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ =
                            sub.subscribe(topics::all_sites(Channel::TelemetryAck), QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Ok(signed) = gridmesh_wire::decode(&p.payload) else { continue };
                        let mut s = lock(&state);
                        if server_key.is_some_and(|k| k != signed.signer) {
                            s.acks_refused += 1;
                            continue;
                        }
                        if let Message::Ack(Ack::TelemetryCommitted(c)) = signed.message
                            && let Some(done) = s.pending.remove(&(c.agent, c.first_seq))
                        {
                            s.committed += done.readings as u64;
                            s.latencies.push(done.first_sent.elapsed());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        });
        Self { client, shared, task }
    }

    /// Signs and publishes a batch and keeps it until it is acknowledged.
    ///
    /// # Errors
    /// When the batch does not encode or the client's queue is closed.
    pub async fn send(&self, key: &KeyPair, batch: TelemetryBatch) -> anyhow::Result<()> {
        let topic = topics::topic(batch.site, Channel::Telemetry);
        let readings = batch.readings.len();
        let id = (batch.agent, batch.first_seq);
        let bytes = gridmesh_wire::encode(&Message::Telemetry(batch), key)?;
        let now = Instant::now();
        lock(&self.shared).pending.insert(
            id,
            Pending { topic: topic.clone(), bytes: bytes.clone(), readings, first_sent: now, last_sent: now },
        );
        self.client.publish(topic, QoS::AtLeastOnce, false, bytes).await?;
        Ok(())
    }

    /// Batches not yet acknowledged.
    #[must_use]
    pub fn pending(&self) -> usize {
        lock(&self.shared).pending.len()
    }

    /// Readings not yet acknowledged.
    #[must_use]
    pub fn pending_readings(&self) -> usize {
        lock(&self.shared).pending.values().map(|p| p.readings).sum()
    }

    /// Publishes again every batch unacknowledged for longer than `after`; returns how many.
    ///
    /// # Errors
    /// When the client's queue is closed.
    pub async fn resend_older_than(&self, after: Duration) -> anyhow::Result<usize> {
        let due: Vec<(String, Vec<u8>)> = {
            let mut s = lock(&self.shared);
            let now = Instant::now();
            s.pending
                .values_mut()
                .filter(|p| now.duration_since(p.last_sent) >= after)
                .map(|p| {
                    p.last_sent = now;
                    (p.topic.clone(), p.bytes.clone())
                })
                .collect()
        };
        for (topic, bytes) in &due {
            self.client.publish(topic.clone(), QoS::AtLeastOnce, false, bytes.clone()).await?;
        }
        Ok(due.len())
    }

    /// Takes the statistics gathered since the last call.
    pub fn take_stats(&self) -> Stats {
        let mut s = lock(&self.shared);
        Stats {
            committed_readings: std::mem::take(&mut s.committed),
            latencies: std::mem::take(&mut s.latencies),
            acks_refused: std::mem::take(&mut s.acks_refused),
        }
    }

    /// Publishes raw bytes on a topic (for tests that send malformed payloads).
    ///
    /// # Errors
    /// When the client's queue is closed.
    pub async fn publish_raw(&self, topic: String, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.client.publish(topic, QoS::AtLeastOnce, false, bytes).await?;
        Ok(())
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
