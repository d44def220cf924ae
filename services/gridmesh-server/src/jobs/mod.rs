//! Every background job of the central service, in one shape.
//!
//! A job is `run(ctx, shutdown)`: a loop of rounds, each in its own span (`round`, inside the
//! job's span `job`), that
//! returns when `shutdown` fires (and is joined then, not aborted). Each job is a singleton
//! across processes: [`spawn`] first takes the job's lease (a PostgreSQL advisory lock, see
//! [`lease`]), so two `gridmesh serve` processes against one database never run the same job
//! at once; the other stands by and takes over when the holder goes away. The last successful
//! round of every job is in `/metrics` (`gridmesh_job_last_success_timestamp_seconds{job}`)
//! and in `/readyz`.
//!
//! Where each job lives: [`dispatch`] (plans and setpoints), [`market`] (clearing and standing
//! strategies), [`settlement`] (settling periods and adjusting for late data), [`anchor`] (the
//! chain writer: anchors, reward distributions, device-key mirroring), [`partitions`]
//! (telemetry partitions ahead of time), [`retention`] (ingest upkeep: the gap metric, the PV
//! neighbour check, dropping raw telemetry past its retention).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use gridmesh_db::Pool;
use gridmesh_wire::KeyPair;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::broker::BrokerLink;
use crate::config::ServeConfig;

pub mod anchor;
pub mod dispatch;
pub mod lease;
pub mod market;
pub mod partitions;
pub mod retention;
pub mod settlement;

/// A background job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Job {
    /// The balancing loop: plans, setpoints, the agents' answers.
    Dispatch,
    /// Market clearing at gate closure, and the standing strategies' orders.
    Market,
    /// Settling cleared periods, and adjusting them for late data.
    Settlement,
    /// The one chain writer: anchors, reward distributions, device-key mirroring.
    Anchor,
    /// Telemetry partitions kept ready ahead of time.
    Partitions,
    /// Ingest upkeep: sequence-gap metric, PV neighbour check, raw-telemetry retention.
    Retention,
}

impl Job {
    /// Every job, in lease-key order.
    pub const ALL: [Job; 6] =
        [Job::Dispatch, Job::Market, Job::Settlement, Job::Anchor, Job::Partitions, Job::Retention];

    /// The job's name in flags, logs and metrics.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Job::Dispatch => "dispatch",
            Job::Market => "market",
            Job::Settlement => "settlement",
            Job::Anchor => "anchor",
            Job::Partitions => "partitions",
            Job::Retention => "retention",
        }
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `--jobs` values: a job, or all / none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobArg {
    /// Every job.
    All,
    /// No job.
    None,
    /// See [`Job::Dispatch`].
    Dispatch,
    /// See [`Job::Market`].
    Market,
    /// See [`Job::Settlement`].
    Settlement,
    /// See [`Job::Anchor`].
    Anchor,
    /// See [`Job::Partitions`].
    Partitions,
    /// See [`Job::Retention`].
    Retention,
}

/// The jobs a process runs: `--jobs` (default: every job for `serve`, partitions and retention
/// for `ingest`), less those the `--no-*` flags turn off, the retention job by default where
/// ingest does not run, and the anchor job where no chain is configured.
#[must_use]
pub fn selected(config: &ServeConfig, role: crate::serve::Role) -> BTreeSet<Job> {
    let mut jobs: BTreeSet<Job> = match &config.jobs {
        Some(args) => args
            .iter()
            .flat_map(|a| match a {
                JobArg::All => Job::ALL.to_vec(),
                JobArg::None => Vec::new(),
                JobArg::Dispatch => vec![Job::Dispatch],
                JobArg::Market => vec![Job::Market],
                JobArg::Settlement => vec![Job::Settlement],
                JobArg::Anchor => vec![Job::Anchor],
                JobArg::Partitions => vec![Job::Partitions],
                JobArg::Retention => vec![Job::Retention],
            })
            .collect(),
        None => match role {
            crate::serve::Role::Serve => Job::ALL.into_iter().collect(),
            crate::serve::Role::Ingest => [Job::Partitions, Job::Retention].into_iter().collect(),
        },
    };
    if config.market.no_market {
        jobs.remove(&Job::Market);
    }
    if config.settlement.no_settlement {
        jobs.remove(&Job::Settlement);
        jobs.remove(&Job::Anchor);
    }
    if config.dispatch.no_dispatch {
        jobs.remove(&Job::Dispatch);
    }
    // The ingest upkeep runs where ingest runs, unless asked for by name.
    if config.jobs.is_none() && role == crate::serve::Role::Serve && config.ingest.no_ingest {
        jobs.remove(&Job::Retention);
    }
    // Without a chain the anchor job has nothing to do; it would only hold a lease.
    if config.chain.chain_rpc_url.is_none() && jobs.remove(&Job::Anchor) {
        tracing::info!("no chain configured (--chain-rpc-url): the anchor job does not run");
    }
    jobs
}

/// Each job's settings, from the command line once.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Dispatch.
    pub dispatch: dispatch::DispatchSettings,
    /// Market.
    pub market: market::MarketSettings,
    /// Settlement.
    pub settlement: settlement::SettlementSettings,
    /// The chain the anchor job writes to (and whose deployment names the reward genesis).
    pub chain: crate::config::ChainArgs,
    /// Raw-telemetry retention.
    pub retention: gridmesh_ingest::maintenance::Retention,
}

impl JobSettings {
    /// Settings from `gridmesh serve`'s configuration.
    #[must_use]
    pub fn from_config(config: &ServeConfig) -> Self {
        Self {
            dispatch: dispatch::DispatchSettings::from_args(&config.dispatch, &config.settlement),
            market: market::MarketSettings::from_args(&config.market),
            settlement: settlement::SettlementSettings::from_args(&config.settlement),
            chain: config.chain.clone(),
            retention: gridmesh_ingest::maintenance::Retention {
                raw_days: Some(config.ingest.raw_retention_days).filter(|d| *d > 0),
            },
        }
    }
}

/// What every job can reach.
#[derive(Clone)]
pub struct JobCtx {
    /// The database.
    pub pool: Pool,
    /// The process's one MQTT connection, for the jobs that publish or listen.
    pub broker: BrokerLink,
    /// Signs what the server sends to agents.
    pub server_key: KeyPair,
    /// Settings.
    pub settings: Arc<JobSettings>,
    /// Where rounds are reported.
    pub board: JobBoard,
    /// This process's name in what the jobs record (who cleared a period): the MQTT client id
    /// prefix and the process id.
    pub process: String,
}

impl std::fmt::Debug for JobCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobCtx")
            .field("broker", &self.broker)
            .field("board", &self.board)
            .finish_non_exhaustive()
    }
}

impl JobCtx {
    /// Runs one round of `job` in its span and reports it: a success updates the job's last
    /// success (metric and `/readyz`), a failure is kept as the job's last error and counted,
    /// and logged with the job's own `what` when it differs from the last round's (a database
    /// that stays away is said once, not every tick). Returns the round's value on success.
    pub async fn round<T>(
        &self,
        job: Job,
        what: &'static str,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> Option<T> {
        let round = self.board.next_round(job);
        // Inside the task's span, which names the job (see [`spawn`]).
        let span = tracing::info_span!("round", round);
        match work.instrument(span.clone()).await {
            Ok(value) => {
                if self.board.succeeded(job) {
                    span.in_scope(|| tracing::info!("{what} succeeded again"));
                }
                Some(value)
            }
            Err(e) => {
                let error = format!("{e:#}");
                if self.board.failed(job, error.clone()) {
                    span.in_scope(|| tracing::warn!(error = %error, "{what} failed; retrying"));
                }
                None
            }
        }
    }
}

/// The outcome of two independent steps of a round, both tried: the first error, with the
/// second's added when both failed.
///
/// # Errors
/// Either step's error.
pub fn both(first: anyhow::Result<()>, second: anyhow::Result<()>) -> anyhow::Result<()> {
    match (first, second) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(a), Err(b)) => Err(anyhow::anyhow!("{a:#}; and {b:#}")),
    }
}

/// Stops the jobs: every clone fires together.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A stop signal and its trigger (send `true` to stop).
    #[must_use]
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Completes when the stop fires (at once if it has, or if the trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }

    /// Sleeps for `d`; returns true when the stop fired meanwhile.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => false,
            () = self.wait() => true,
        }
    }

    /// Waits for the next tick of `interval`; returns true when the stop fired first.
    pub async fn tick(&mut self, interval: &mut tokio::time::Interval) -> bool {
        tokio::select! {
            _ = interval.tick() => false,
            () = self.wait() => true,
        }
    }

    /// Whether the stop has fired.
    #[must_use]
    pub fn fired(&self) -> bool {
        *self.0.borrow()
    }
}

/// Whether this process runs a job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeaseState {
    /// Another process holds the lease (or the database is away); this one stands by.
    #[default]
    Standby,
    /// This process holds the lease and runs the job.
    Held,
}

/// One job's state, as `/readyz` shows it.
#[derive(Debug, Clone, Default)]
pub struct JobStatus {
    /// Whether this process runs it now.
    pub lease: LeaseState,
    /// End of the last successful round.
    pub last_success: Option<DateTime<Utc>>,
    /// The last round's error, cleared by a success.
    pub last_error: Option<String>,
    /// Rounds started in this process.
    pub rounds: u64,
}

/// The jobs of this process and how their rounds went.
#[derive(Debug, Clone, Default)]
pub struct JobBoard(Arc<Mutex<BTreeMap<Job, JobStatus>>>);

impl JobBoard {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<Job, JobStatus>) -> T) -> T {
        // A panic while holding this lock leaves plain data behind; keep using it.
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut map)
    }

    fn register(&self, job: Job) {
        self.with(|m| {
            m.entry(job).or_default();
        });
        metrics::gauge!("gridmesh_job_lease_held", "job" => job.name()).set(0.0);
    }

    fn set_lease(&self, job: Job, lease: LeaseState) {
        self.with(|m| m.entry(job).or_default().lease = lease);
        metrics::gauge!("gridmesh_job_lease_held", "job" => job.name()).set(if lease == LeaseState::Held {
            1.0
        } else {
            0.0
        });
    }

    fn next_round(&self, job: Job) -> u64 {
        self.with(|m| {
            let s = m.entry(job).or_default();
            s.rounds += 1;
            s.rounds
        })
    }

    /// Records a successful round; true when it follows a failed one.
    fn succeeded(&self, job: Job) -> bool {
        let now = Utc::now();
        let recovered = self.with(|m| {
            let s = m.entry(job).or_default();
            s.last_success = Some(now);
            s.last_error.take().is_some()
        });
        metrics::gauge!("gridmesh_job_last_success_timestamp_seconds", "job" => job.name())
            .set(now.timestamp_millis() as f64 / 1_000.0);
        recovered
    }

    /// Records a failed round; true when its error differs from the last round's.
    fn failed(&self, job: Job, error: String) -> bool {
        metrics::counter!("gridmesh_job_failed_rounds_total", "job" => job.name()).increment(1);
        self.with(|m| {
            let s = m.entry(job).or_default();
            let new = s.last_error.as_deref() != Some(error.as_str());
            s.last_error = Some(error);
            new
        })
    }

    /// Every job this process runs or stands by for, with its state.
    #[must_use]
    pub fn snapshot(&self) -> BTreeMap<Job, JobStatus> {
        self.with(|m| m.clone())
    }
}

/// How long a job whose lease was lost may take to finish the round in progress before it is
/// cancelled: a round is left whole where it can be (a settlement stored with its rewards), and
/// every round is idempotent, so the new holder repeating part of it changes nothing.
const LOST_LEASE_GRACE: Duration = Duration::from_secs(30);

/// Starts `job`: waits for its lease, runs it while the lease holds, and returns when
/// `shutdown` fires (releasing the lease). When the lease is lost (its connection failed or
/// stopped answering), the job is asked to stop after its round, and the task goes back to
/// waiting for the lease.
pub fn spawn(job: Job, ctx: JobCtx, shutdown: Shutdown) -> JoinHandle<()> {
    ctx.board.register(job);
    tokio::spawn(
        async move {
            let mut waiting = shutdown.clone();
            loop {
                let Some(mut lease) = lease::Lease::acquire(&ctx.pool, job, &mut waiting).await else {
                    return;
                };
                ctx.board.set_lease(job, LeaseState::Held);
                tracing::info!("lease taken; job running");
                // The job's own stop: the process's shutdown, or the lease lost.
                let (stop_job, job_shutdown) = Shutdown::new();
                let stop_job = Arc::new(stop_job);
                let mut process = shutdown.clone();
                let relay = tokio::spawn({
                    let stop_job = Arc::clone(&stop_job);
                    async move {
                        process.wait().await;
                        let _ = stop_job.send(true);
                    }
                });
                let running = run(job, ctx.clone(), job_shutdown);
                tokio::pin!(running);
                let lost = tokio::select! {
                    () = &mut running => None,
                    reason = lease.lost() => Some(reason),
                };
                relay.abort();
                ctx.board.set_lease(job, LeaseState::Standby);
                match lost {
                    Some(reason) => {
                        tracing::warn!(reason = %reason, "lease lost; the job stops after its round");
                        let _ = stop_job.send(true);
                        if tokio::time::timeout(LOST_LEASE_GRACE, &mut running).await.is_err() {
                            tracing::warn!("the job's round outlived the grace; cancelled");
                        }
                    }
                    None if shutdown.fired() => {
                        lease.release().await;
                        tracing::info!("job stopped; lease released");
                        return;
                    }
                    None => {
                        // A job returns only when told to stop: anything else is a bug, and the
                        // job is started again rather than silently given up.
                        tracing::error!("the job returned without being stopped; restarting it");
                        lease.release().await;
                    }
                }
            }
        }
        .instrument(tracing::info_span!("job", job = job.name())),
    )
}

async fn run(job: Job, ctx: JobCtx, shutdown: Shutdown) {
    match job {
        Job::Dispatch => dispatch::run(ctx, shutdown).await,
        Job::Market => market::run(ctx, shutdown).await,
        Job::Settlement => settlement::run(ctx, shutdown).await,
        Job::Anchor => anchor::run(ctx, shutdown).await,
        Job::Partitions => partitions::run(ctx, shutdown).await,
        Job::Retention => retention::run(ctx, shutdown).await,
    }
}
