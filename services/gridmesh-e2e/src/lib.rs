//! Tests of the edge (`meters/`) and the central service together live in this crate's `tests/`,
//! so that no edge crate depends on a central one, not even for its tests, and no central crate
//! on the agent (`tests/dependency_direction.rs` checks the first). Their database fixtures are
//! in `gridmesh-fixtures`; what the tests here share is below: the real server and the real
//! ingest worker, started and stopped.

use std::time::Duration;

use gridmesh_server::AppState;
use gridmesh_server::serve::Service;
use gridmesh_wire::KeyPair;
use tokio::task::JoinHandle;

/// The real HTTP server on a free loopback port.
#[derive(Debug)]
pub struct Api {
    /// Its base URL, `http://127.0.0.1:port`.
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Api {
    /// Serves `state` until [`Api::stop`].
    ///
    /// # Panics
    /// When no loopback port can be had: the test cannot run.
    pub async fn start(state: AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("a bound address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(Service::from_state(state).run(
            listener,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(2),
        ));
        Self { url, stop, task }
    }

    /// Stops the server and waits for it.
    ///
    /// # Panics
    /// When the server failed.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("the server task").expect("the server");
    }
}

/// The real ingest worker on the broker at 127.0.0.1:`port`, with its own plain subscription.
#[derive(Debug)]
pub struct Ingest {
    halt: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Ingest {
    /// Starts it; `client_id` keeps tests apart on a shared broker.
    #[must_use]
    pub fn start(pool: sqlx::PgPool, port: u16, client_id: &str, server_key: KeyPair) -> Self {
        let mut config = gridmesh_ingest::worker::IngestConfig::new(
            gridmesh_ingest::worker::BrokerAddr::plain("127.0.0.1", port),
            client_id.into(),
            server_key,
        );
        config.share_group = None;
        // Revocations take effect within a fifth of a second, so tests see them at once.
        config.cache_ttl = Duration::from_millis(200);
        let (halt, halted) = tokio::sync::watch::channel(false);
        let mut halted = halted;
        let task = tokio::spawn(gridmesh_ingest::worker::run(pool, config, async move {
            let _ = halted.wait_for(|s| *s).await;
        }));
        Self { halt, task }
    }

    /// Stops it after the transaction in progress.
    ///
    /// # Panics
    /// When the worker failed.
    pub async fn stop(self) {
        let _ = self.halt.send(true);
        self.task.await.expect("the ingest task").expect("ingest");
    }
}
