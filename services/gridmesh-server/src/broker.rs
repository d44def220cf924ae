//! The process's one MQTT connection, shared by every job that publishes or listens (the
//! dispatch job's setpoints and their answers), and the state `/readyz` reports.
//!
//! The ingest consumer keeps a session of its own: it needs a stable client id whose persistent
//! session holds unacknowledged telemetry across restarts, manual acknowledgements after its
//! database commit, and flow control (receive maximum) sized for telemetry; a setpoint should
//! not queue behind that.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridmesh_mqtt::BrokerAddr;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, ClientError, Event};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A snapshot of the link's state.
#[derive(Debug, Clone, Default)]
pub struct BrokerStatus {
    /// True between a CONNACK and the next connection error.
    pub connected: bool,
    /// The last connection error, if any.
    pub last_error: Option<String>,
}

/// A message that arrived on a subscription.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

struct Subscription {
    filter: String,
    qos: QoS,
    to: mpsc::Sender<Delivery>,
}

#[derive(Default)]
struct Shared {
    status: BrokerStatus,
    subscriptions: Vec<Subscription>,
}

/// The connection, kept up in the background with reconnects; cheap to clone.
#[derive(Clone)]
pub struct BrokerLink {
    shared: Arc<Mutex<Shared>>,
    client: AsyncClient,
    task: Arc<JoinHandle<()>>,
}

impl std::fmt::Debug for BrokerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerLink").field("status", &self.status()).finish_non_exhaustive()
    }
}

/// Pause between reconnect attempts.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Requests the client may queue before `publish` waits (a setpoint round for a town).
const REQUEST_QUEUE: usize = 1_024;

impl BrokerLink {
    /// Starts connecting in the background; check [`BrokerLink::status`] for the outcome. The
    /// client id is `client_id_prefix` with a random suffix, so replicas never take over each
    /// other's connection.
    ///
    /// # Errors
    /// An address the options builder refuses (`mqtts://` in this build).
    pub fn spawn(url: &BrokerAddr, client_id_prefix: &str) -> Result<Self, gridmesh_mqtt::BrokerError> {
        let client_id = format!("{client_id_prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let options = gridmesh_mqtt::options(url, client_id, Duration::from_secs(5), None)?;
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = Arc::clone(&shared);
        let resubscribe = client.clone();
        let broker = url.to_string();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!(%broker, "connected to the MQTT broker");
                        let filters: Vec<(String, QoS)> = {
                            let mut s = lock(&state);
                            s.status.connected = true;
                            s.subscriptions.iter().map(|sub| (sub.filter.clone(), sub.qos)).collect()
                        };
                        // A clean session: what was subscribed before is asked for again, from
                        // a task of its own: this task is the one that drains the request queue,
                        // so waiting here on a queue full of setpoints (queued while the broker
                        // was away) would stop the connection for good.
                        let client = resubscribe.clone();
                        tokio::spawn(async move {
                            for (filter, qos) in filters {
                                if let Err(e) = client.subscribe(filter.clone(), qos).await {
                                    tracing::warn!(%filter, error = %e, "cannot subscribe");
                                }
                            }
                        });
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        deliver(&state, Delivery { topic, payload: p.payload.to_vec() });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let was_connected = {
                            let mut s = lock(&state);
                            let was = s.status.connected;
                            s.status.connected = false;
                            s.status.last_error = Some(e.to_string());
                            was
                        };
                        if was_connected {
                            tracing::warn!(%broker, error = %e, "lost the MQTT broker; reconnecting");
                        } else {
                            tracing::debug!(%broker, error = %e, "MQTT broker not reachable; retrying");
                        }
                        tokio::time::sleep(RECONNECT_DELAY).await;
                    }
                }
            }
        });
        Ok(Self { shared, client, task: Arc::new(task) })
    }

    /// The current state of the link.
    #[must_use]
    pub fn status(&self) -> BrokerStatus {
        lock(&self.shared).status.clone()
    }

    /// Publishes a message (queued while the broker is away, up to the client's queue).
    ///
    /// # Errors
    /// The link has stopped.
    pub async fn publish(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), ClientError> {
        self.client.publish(topic, qos, retain, payload).await
    }

    /// Subscribes to `filter`, now and after every reconnect; messages arrive on the receiver.
    /// A full receiver drops messages (logged): a slow job must not stall the connection.
    ///
    /// # Errors
    /// The link has stopped.
    pub async fn subscribe(
        &self,
        filter: &str,
        qos: QoS,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Delivery>, ClientError> {
        let (to, from) = mpsc::channel(capacity.max(1));
        lock(&self.shared).subscriptions.push(Subscription { filter: filter.to_owned(), qos, to });
        self.client.subscribe(filter.to_owned(), qos).await?;
        Ok(from)
    }

    /// Disconnects cleanly and stops the background task.
    pub async fn shutdown(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.disconnect()).await;
        self.task.abort();
    }
}

/// Hands a message to every subscription whose filter matches its topic.
fn deliver(state: &Mutex<Shared>, delivery: Delivery) {
    let mut s = lock(state);
    // Subscribers that went away are forgotten.
    s.subscriptions.retain(|sub| !sub.to.is_closed());
    for sub in
        s.subscriptions.iter().filter(|sub| rumqttc::v5::mqttbytes::matches(&delivery.topic, &sub.filter))
    {
        if sub.to.try_send(delivery.clone()).is_err() {
            tracing::warn!(filter = %sub.filter, topic = %delivery.topic, "subscriber is behind; message dropped");
        }
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A panic while holding this lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
