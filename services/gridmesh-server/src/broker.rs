//! The service's link to the MQTT broker. For now it keeps a connection up and reports its
//! state to `/readyz`; ingest and setpoint publishing use the same link in later parts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use tokio::task::JoinHandle;

use crate::config::MqttUrl;

/// A snapshot of the link's state.
#[derive(Debug, Clone, Default)]
pub struct BrokerStatus {
    /// True between a CONNACK and the next connection error.
    pub connected: bool,
    /// The last connection error, if any.
    pub last_error: Option<String>,
}

/// A connection to the broker, kept up in the background with reconnects.
#[derive(Clone)]
pub struct BrokerLink {
    status: Arc<Mutex<BrokerStatus>>,
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

impl BrokerLink {
    /// Starts connecting in the background; check [`BrokerLink::status`] for the outcome.
    #[must_use]
    pub fn spawn(url: &MqttUrl, client_id_prefix: &str) -> Self {
        let client_id = format!("{client_id_prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut options = MqttOptions::new(client_id, url.host.clone(), url.port);
        options.set_keep_alive(Duration::from_secs(5));
        if let Some(user) = &url.username {
            options.set_credentials(user.clone(), url.password().unwrap_or_default().to_owned());
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let status = Arc::new(Mutex::new(BrokerStatus::default()));
        let shared = Arc::clone(&status);
        let broker = url.to_string();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!(%broker, "connected to the MQTT broker");
                        set(&shared, true, None);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let was_connected = lock(&shared).connected;
                        if was_connected {
                            tracing::warn!(%broker, error = %e, "lost the MQTT broker; reconnecting");
                        } else {
                            tracing::debug!(%broker, error = %e, "MQTT broker not reachable; retrying");
                        }
                        set(&shared, false, Some(e.to_string()));
                        tokio::time::sleep(RECONNECT_DELAY).await;
                    }
                }
            }
        });
        Self { status, client, task: Arc::new(task) }
    }

    /// The current state of the link.
    #[must_use]
    pub fn status(&self) -> BrokerStatus {
        lock(&self.status).clone()
    }

    /// The client, for publishing and subscribing.
    #[must_use]
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// Disconnects cleanly and stops the background task.
    pub async fn shutdown(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.disconnect()).await;
        self.task.abort();
    }
}

fn lock(m: &Mutex<BrokerStatus>) -> std::sync::MutexGuard<'_, BrokerStatus> {
    // A panic while holding this lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn set(m: &Mutex<BrokerStatus>, connected: bool, error: Option<String>) {
    let mut s = lock(m);
    s.connected = connected;
    if error.is_some() {
        s.last_error = error;
    }
}
