//! Starting and stopping the service.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use gridmesh_db::{ConnectOptions, Pool};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::broker::BrokerLink;
use crate::config::{DbConfig, ServeConfig};
use gridmesh_ingest::worker::{BrokerAddr, IngestConfig};
use gridmesh_wire::PublicKey;
use tokio::sync::watch;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database pool.
    pub pool: Pool,
    /// The MQTT broker link.
    pub broker: BrokerLink,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The server's public key, which agents use to verify what the server signs.
    pub server_key: Option<PublicKey>,
    /// Market rules and timing.
    pub market: crate::market::MarketSettings,
}

impl AppState {
    /// State around an existing pool and broker link (tests build it this way).
    #[must_use]
    pub fn new(pool: Pool, broker: BrokerLink) -> Self {
        Self {
            pool,
            broker,
            metrics: crate::metrics::install(),
            server_key: None,
            market: crate::market::MarketSettings::default(),
        }
    }
}

/// What a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The API, and ingest unless `--no-ingest`.
    Serve,
    /// Only ingest, with health and metrics endpoints.
    Ingest,
}

/// Days of telemetry partitions kept ready ahead of today.
const PARTITION_DAYS_AHEAD: u16 = 7;

/// A started service: its state and its background jobs.
#[derive(Debug)]
pub struct Service {
    /// Shared state.
    pub state: AppState,
    role: Role,
    jobs: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<anyhow::Result<()>>>,
    stop: watch::Sender<bool>,
}

/// Connects to the database, retrying with backoff for `db_connect_timeout`.
///
/// # Errors
/// When the database stays unreachable, with the URL (password hidden) and the last reason.
pub async fn connect_db(cfg: &DbConfig) -> anyhow::Result<Pool> {
    let options = ConnectOptions { max_connections: cfg.db_max_connections, ..ConnectOptions::default() };
    tracing::info!(database = %cfg.database_url, "connecting to the database");
    let url = &cfg.database_url;
    gridmesh_db::connect_with_retry(url.expose(), &options, cfg.db_connect_timeout).await.map_err(|e| {
        let hint = if e.is_unavailable() {
            format!(
                "could not connect to the database at {url} within {} s (GRIDMESH_DATABASE_URL / --database-url; is PostgreSQL running? scripts/setup starts it)",
                cfg.db_connect_timeout.as_secs()
            )
        } else {
            format!("the database at {url} refused the connection (check the user, password and database name in GRIDMESH_DATABASE_URL / --database-url)")
        };
        anyhow::Error::new(e).context(hint)
    })
}

/// Applies pending migrations.
///
/// # Errors
/// When a migration fails; the service must not run on a half-migrated schema.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    gridmesh_db::migrate(pool).await.context("applying database migrations")?;
    tracing::info!(applied = gridmesh_db::MIGRATOR.iter().count(), "database schema is up to date");
    Ok(())
}

/// Makes sure telemetry partitions exist from yesterday to a week ahead.
async fn ensure_partitions(pool: &Pool) -> anyhow::Result<()> {
    let yesterday = Utc::now().date_naive() - chrono::Days::new(1);
    let created = gridmesh_db::ensure_telemetry_partitions(pool, yesterday, PARTITION_DAYS_AHEAD + 2)
        .await
        .context("creating telemetry partitions")?;
    if created > 0 {
        tracing::info!(created, "telemetry partitions created");
    }
    Ok(())
}

/// Connects, migrates, prepares partitions and starts the background jobs: partition upkeep,
/// and for [`Role::Ingest`] (or [`Role::Serve`] without `--no-ingest`) the ingest worker and its
/// maintenance jobs.
///
/// # Errors
/// When the database is unreachable, a migration fails or the server key cannot be read.
pub async fn start(config: &ServeConfig, role: Role) -> anyhow::Result<Service> {
    let pool = connect_db(&config.db).await?;
    migrate(&pool).await?;
    ensure_partitions(&pool).await?;
    let server_key = crate::keys::load_or_create(&config.ingest.server_key_file)?;
    let broker = BrokerLink::spawn(&config.mqtt_url, &config.mqtt_client_id);
    let mut state = AppState::new(pool, broker);
    state.server_key = Some(server_key.public());
    state.market = crate::market::MarketSettings::from_args(&config.market);
    let maintenance = {
        let pool = state.pool.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(e) = ensure_partitions(&pool).await {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "partition maintenance failed; retrying in an hour"
                    );
                }
            }
        })
    };
    let (stop, stop_rx) = watch::channel(false);
    let mut service = Service { state, role, jobs: vec![maintenance], workers: Vec::new(), stop };
    if role == Role::Serve && !config.market.no_market {
        let pool = service.state.pool.clone();
        let replica = format!("{}@{}", config.mqtt_client_id, std::process::id());
        service.jobs.push(tokio::spawn(crate::market::run(
            pool,
            service.state.market,
            replica,
            stop_rx.clone(),
        )));
    }
    if role == Role::Serve && !config.settlement.no_settlement {
        let pool = service.state.pool.clone();
        let settings = crate::settlement::SettlementSettings::from_args(&config.settlement);
        service.jobs.push(tokio::spawn(crate::settlement::run(
            pool,
            settings,
            config.chain.clone(),
            Duration::from_secs(10),
            stop_rx.clone(),
        )));
    }
    if role == Role::Serve && !config.dispatch.no_dispatch {
        let settings = crate::dispatch::DispatchSettings::from_args(&config.dispatch, &config.settlement);
        service.jobs.push(tokio::spawn(crate::dispatch::run(
            service.state.pool.clone(),
            settings,
            config.mqtt_url.clone(),
            server_key.clone(),
            format!("{}-dispatch-{}", config.mqtt_client_id, std::process::id()),
            stop_rx.clone(),
        )));
    }
    if role == Role::Ingest || !config.ingest.no_ingest {
        let args = &config.ingest;
        let broker = BrokerAddr {
            host: config.mqtt_url.host.clone(),
            port: config.mqtt_url.port,
            credentials: config
                .mqtt_url
                .username
                .clone()
                .map(|u| (u, config.mqtt_url.password().unwrap_or_default().to_owned())),
        };
        let mut ingest = IngestConfig::new(broker, args.ingest_client_id.clone(), server_key);
        ingest.share_group = Some(args.ingest_group.clone()).filter(|g| !g.is_empty());
        ingest.max_group_readings = args.ingest_max_group as usize;
        ingest.max_wait = Duration::from_millis(u64::from(args.ingest_max_wait_ms));
        if args.raw_retention_days > 0 {
            ingest.max_age_days = u64::from(args.raw_retention_days);
        }
        let pool = service.state.pool.clone();
        let mut rx = stop_rx.clone();
        service.workers.push(tokio::spawn(gridmesh_ingest::worker::run(pool, ingest, async move {
            let _ = rx.wait_for(|s| *s).await;
        })));
        let retention = gridmesh_ingest::maintenance::Retention {
            raw_days: Some(args.raw_retention_days).filter(|d| *d > 0),
        };
        let pool = service.state.pool.clone();
        service.jobs.push(tokio::spawn(gridmesh_ingest::maintenance::run(pool, retention, stop_rx)));
    }
    Ok(service)
}

impl Service {
    /// Wraps a state with no background jobs (tests).
    #[must_use]
    pub fn from_state(state: AppState) -> Self {
        Self {
            state,
            role: Role::Serve,
            jobs: Vec::new(),
            workers: Vec::new(),
            stop: watch::channel(false).0,
        }
    }

    /// Serves HTTP on `listener` until `shutdown` completes, then lets in-flight requests
    /// finish for up to `grace`, stops the jobs and closes the broker link and the pool.
    ///
    /// # Errors
    /// When the HTTP server fails.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr().context("reading the listening address")?;
        tracing::info!(%addr, "gridmesh listening");
        let app = match self.role {
            Role::Serve => crate::http::router(self.state.clone()),
            Role::Ingest => crate::http::health_router(self.state.clone()),
        };
        let (fired, mut fired_rx) = tokio::sync::watch::channel(false);
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections, finishing requests in flight");
                let _ = fired.send(true);
            })
            .into_future();
        let deadline = async move {
            let _ = fired_rx.wait_for(|f| *f).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result.context("HTTP server failed")?,
            () = deadline => tracing::warn!(grace_secs = grace.as_secs(), "requests still running after the grace period; closing them"),
        }
        // Ingest finishes the transaction in progress; what it has not acknowledged, the
        // broker delivers again after a restart.
        let _ = self.stop.send(true);
        for worker in self.workers {
            match tokio::time::timeout(grace, worker).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = format!("{e:#}"), "a worker stopped with an error"),
                Ok(_) => {}
                Err(_) => tracing::warn!("a worker did not stop within the grace period"),
            }
        }
        for job in &self.jobs {
            job.abort();
        }
        self.state.broker.shutdown().await;
        self.state.pool.close().await;
        tracing::info!("gridmesh stopped");
        Ok(())
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "signal received"),
        () = term => tracing::info!(signal = "SIGTERM", "signal received"),
    }
}
