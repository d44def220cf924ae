//! Starting and stopping the service.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use anyhow::Context;
use gridmesh_db::{ConnectOptions, Pool};
use gridmesh_ingest::worker::IngestConfig;
use gridmesh_wire::PublicKey;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::BrokerLink;
use crate::config::{DbConfig, ServeConfig};
use crate::jobs::{Job, JobBoard, JobCtx, JobSettings, Shutdown};

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database pool.
    pub pool: Pool,
    /// The process's MQTT connection.
    pub broker: BrokerLink,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The server's public key, which agents use to verify what the server signs.
    pub server_key: Option<PublicKey>,
    /// Market rules and timing.
    pub market: crate::jobs::market::MarketSettings,
    /// The background jobs of this process, for `/readyz`.
    pub jobs: JobBoard,
    /// The ingest worker's broker session, when this process runs ingest (for `/readyz`).
    pub ingest_link: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// The broker URL agents are told at enrolment (`--agent-broker-url`), if set.
    pub agent_broker_url: Option<String>,
    /// Most agents with an active key a home may have (`--max-agents-per-site`).
    pub max_agents_per_site: u32,
    /// Failed code enrolments this minute (`POST /v1/enrol`).
    pub enrol_guard: std::sync::Arc<crate::api::EnrolGuard>,
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
            market: crate::jobs::market::MarketSettings::default(),
            jobs: JobBoard::default(),
            ingest_link: None,
            agent_broker_url: None,
            max_agents_per_site: crate::config::DEFAULT_MAX_AGENTS_PER_SITE,
            enrol_guard: std::sync::Arc::default(),
        }
    }
}

/// What a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The API, ingest unless `--no-ingest`, and every job by default.
    Serve,
    /// Only ingest (and by default the partition and retention jobs), with health and metrics
    /// endpoints.
    Ingest,
}

/// A started service: its state, its background jobs and its ingest worker.
#[derive(Debug)]
pub struct Service {
    /// Shared state.
    pub state: AppState,
    role: Role,
    jobs: Vec<(Job, JoinHandle<()>)>,
    ingest: Option<JoinHandle<anyhow::Result<()>>>,
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

/// Connects, migrates, prepares partitions, opens the process's broker link and starts the
/// selected jobs (each under its lease) and, for [`Role::Ingest`] or [`Role::Serve`] without
/// `--no-ingest`, the ingest worker.
///
/// # Errors
/// When the database is unreachable, a migration fails, the server key cannot be read or the
/// broker address is refused.
pub async fn start(config: &ServeConfig, role: Role) -> anyhow::Result<Service> {
    let pool = connect_db(&config.db).await?;
    migrate(&pool).await?;
    // Before ingest takes its first reading, whichever process holds the partitions job.
    crate::jobs::partitions::ensure(&pool).await?;
    let server_key = crate::keys::load_or_create(&config.ingest.server_key_file)?;
    let broker =
        BrokerLink::spawn(&config.mqtt_url, &config.mqtt_client_id).context("the MQTT broker address")?;
    let mut state = AppState::new(pool, broker);
    state.server_key = Some(server_key.public());
    state.market = crate::jobs::market::MarketSettings::from_args(&config.market);
    state.agent_broker_url.clone_from(&config.agent_broker_url);
    state.max_agents_per_site = config.max_agents_per_site;
    let (stop, shutdown) = Shutdown::new();
    let ctx = JobCtx {
        pool: state.pool.clone(),
        broker: state.broker.clone(),
        server_key: server_key.clone(),
        settings: std::sync::Arc::new(JobSettings::from_config(config)),
        board: state.jobs.clone(),
        process: format!("{}@{}", config.mqtt_client_id, std::process::id()),
    };
    let selected = crate::jobs::selected(config, role);
    tracing::info!(jobs = ?selected.iter().map(|j| j.name()).collect::<Vec<_>>(), "starting jobs");
    let jobs = selected
        .into_iter()
        .map(|job| (job, crate::jobs::spawn(job, ctx.clone(), shutdown.clone())))
        .collect();
    let ingest =
        (role == Role::Ingest || !config.ingest.no_ingest).then(|| {
            let args = &config.ingest;
            let mut ingest =
                IngestConfig::new(config.mqtt_url.clone(), args.ingest_client_id.clone(), server_key);
            ingest.share_group = Some(args.ingest_group.clone()).filter(|g| !g.is_empty());
            ingest.max_group_readings = args.ingest_max_group as usize;
            ingest.max_wait = Duration::from_millis(u64::from(args.ingest_max_wait_ms));
            if args.raw_retention_days > 0 {
                ingest.max_age_days = u64::from(args.raw_retention_days);
            }
            state.ingest_link = Some(std::sync::Arc::clone(&ingest.link_up));
            let mut stopped = shutdown.clone();
            tokio::spawn(gridmesh_ingest::worker::run(state.pool.clone(), ingest, async move {
                stopped.wait().await
            }))
        });
    Ok(Service { state, role, jobs, ingest, stop })
}

impl Service {
    /// Wraps a state with no background jobs (tests).
    #[must_use]
    pub fn from_state(state: AppState) -> Self {
        Self { state, role: Role::Serve, jobs: Vec::new(), ingest: None, stop: watch::channel(false).0 }
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
        // Ingest finishes the transaction in progress (what it has not acknowledged, the broker
        // delivers again after a restart); each job finishes its round and gives its lease up.
        let _ = self.stop.send(true);
        // One deadline for ingest and the jobs together.
        let deadline = tokio::time::Instant::now() + grace;
        if let Some(ingest) = self.ingest {
            match tokio::time::timeout_at(deadline, ingest).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = format!("{e:#}"), "ingest stopped with an error"),
                Ok(_) => {}
                Err(_) => tracing::warn!("ingest did not stop within the grace period"),
            }
        }
        for (job, handle) in self.jobs {
            let abort = handle.abort_handle();
            match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(job = job.name(), error = %e, "a job ended abnormally"),
                Err(_) => {
                    tracing::warn!(job = job.name(), "a job did not stop within the grace period; cancelled");
                    abort.abort();
                }
            }
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
