//! The settlement jobs: settle each cleared period once its metering is complete (or its grace
//! window has passed), anchor the root on chain, and publish the period's token rewards.
//!
//! Every step is idempotent and safe with replicas: a period's settlement is written once
//! (primary key), the contract refuses a second anchor of a period and is asked before every
//! send, and a distribution is published only when the contract has none for the period.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use gridmesh_chain::{Chain, ChainError, Deployment};
use gridmesh_core::Period;
use gridmesh_db::{DbError, Pool};
use gridmesh_settlement::rewards::{distribute, emission_for};
use gridmesh_settlement::{PeriodInput, Tariffs, settle};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{ChainArgs, SettlementArgs};

/// How far back the job looks for unsettled periods.
const LOOKBACK_PERIODS: i64 = 2 * 96;

/// Settlement settings.
#[derive(Debug, Clone, Copy)]
pub struct SettlementSettings {
    /// Prices.
    pub tariffs: Tariffs,
    /// How long after a period ends it settles even with sites missing.
    pub grace: chrono::Duration,
}

impl SettlementSettings {
    /// From the command line.
    #[must_use]
    pub fn from_args(a: &SettlementArgs) -> Self {
        Self {
            tariffs: Tariffs {
                import_price: a.tariff_import,
                feed_in_price: a.tariff_feed_in,
                grid_fee_per_kwh: a.tariff_grid_fee,
                daily_fee: a.tariff_daily_fee,
            },
            grace: chrono::Duration::from_std(a.settlement_grace)
                .unwrap_or_else(|_| chrono::Duration::minutes(5)),
        }
    }
}

impl Default for SettlementSettings {
    fn default() -> Self {
        Self {
            tariffs: Tariffs { import_price: 30, feed_in_price: 8, grid_fee_per_kwh: 10, daily_fee: 40 },
            grace: chrono::Duration::minutes(5),
        }
    }
}

/// What `gridmesh chain deploy` writes: the contracts and the rewards' genesis period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentFile {
    /// Addresses.
    #[serde(flatten)]
    pub deployment: Deployment,
    /// First period with rewards (index).
    pub genesis_period: i64,
}

impl DeploymentFile {
    /// Reads the file.
    ///
    /// # Errors
    /// Unreadable or malformed, with the path.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("reading the chain deployment {} (written by `gridmesh chain deploy`)", path.display())
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("the chain deployment {} is not valid", path.display()))
    }

    /// The genesis period.
    ///
    /// # Errors
    /// Out of range.
    pub fn genesis(&self) -> anyhow::Result<Period> {
        Period::from_index(self.genesis_period).context("genesis_period out of range")
    }
}

/// The chain side, when configured.
#[derive(Debug, Clone)]
pub struct ChainLink {
    /// The connection (with the operator key).
    pub chain: Chain,
    /// The contracts.
    pub deployment: DeploymentFile,
    /// Confirmations to wait for.
    pub confirmations: u64,
    /// Receipt timeout.
    pub tx_timeout: Duration,
}

impl ChainLink {
    /// Connects when `--chain-rpc-url` is set and the deployment file exists.
    ///
    /// # Errors
    /// A bad key or deployment file; an endpoint that does not answer.
    pub async fn connect(args: &ChainArgs) -> anyhow::Result<Option<Self>> {
        let Some(url) = &args.chain_rpc_url else { return Ok(None) };
        let deployment = DeploymentFile::load(&args.chain_deployment)?;
        let key = args
            .operator_key()
            .map_err(anyhow::Error::msg)?
            .map(|k| gridmesh_chain::parse_key(&k))
            .transpose()?;
        let chain = Chain::connect(url, key).await?;
        if chain.chain_id() != deployment.deployment.chain_id {
            anyhow::bail!(
                "the chain at {url} has id {}, but the deployment {} is for chain {}",
                chain.chain_id(),
                args.chain_deployment.display(),
                deployment.deployment.chain_id
            );
        }
        Ok(Some(Self {
            chain,
            deployment,
            confirmations: args.chain_confirmations,
            tx_timeout: args.chain_tx_timeout,
        }))
    }
}

/// Settles `period` from what the database holds now (IO-free [`settle`] on its inputs).
async fn settle_period(
    pool: &Pool,
    settings: &SettlementSettings,
    period: Period,
) -> Result<gridmesh_settlement::Settlement, DbError> {
    let input = PeriodInput {
        period,
        tariffs: settings.tariffs,
        sites: gridmesh_db::settlement_sites(pool, period).await?,
        trades: gridmesh_db::settlement_trades(pool, period).await?,
    };
    settle(&input).map_err(|e| DbError::Invalid { field: "settlement", reason: e.to_string() })
}

/// Settles every cleared period that is due at `now`; returns the periods settled.
///
/// # Errors
/// Database errors.
pub async fn settle_due(
    pool: &Pool,
    settings: &SettlementSettings,
    genesis: Option<Period>,
    now: DateTime<Utc>,
) -> Result<Vec<Period>, DbError> {
    let latest = Period::containing(now).prev();
    let mut done = Vec::new();
    for period in gridmesh_db::periods_to_settle(pool, latest.offset(-LOOKBACK_PERIODS), latest).await? {
        if now < period.end() + settings.grace && !gridmesh_db::metering_complete(pool, period).await? {
            continue;
        }
        let s = settle_period(pool, settings, period).await?;
        if !gridmesh_db::store_settlement(pool, &s, &settings.tariffs).await? {
            continue;
        }
        metrics::counter!("gridmesh_settlement_periods_total").increment(1);
        tracing::info!(
            period = %period,
            lines = s.lines.len(),
            total_wh = s.total_wh,
            root = %hex::encode(s.root()),
            "period settled"
        );
        if let Some(genesis) = genesis {
            let accounts = gridmesh_db::site_reward_addresses(pool).await?;
            let d = distribute(period, emission_for(period, genesis), &s.lines, |site| {
                accounts.get(&site).copied()
            });
            gridmesh_db::store_distribution(pool, &d).await?;
        }
        done.push(period);
    }
    Ok(done)
}

/// Re-settles periods whose lines waited for metering (flagged or missing) once their data
/// arrived or was reviewed: a new revision with the new lines, and adjusting ledger entries for
/// the difference; nothing posted before is changed, and revision 1 stays the anchored one.
/// Returns the periods adjusted.
///
/// # Errors
/// Database errors.
pub async fn adjust_due(
    pool: &Pool,
    settings: &SettlementSettings,
    now: DateTime<Utc>,
) -> Result<Vec<Period>, DbError> {
    let since = Period::containing(now).offset(-LOOKBACK_PERIODS);
    let mut done = Vec::new();
    for (period, revision) in gridmesh_db::periods_awaiting_data(pool, since).await? {
        let s = settle_period(pool, settings, period).await?;
        if gridmesh_db::revision_lines(pool, period, revision).await? == s.lines {
            continue;
        }
        let posted = gridmesh_db::period_postings(pool, period).await?;
        let entries = gridmesh_settlement::adjustments(&posted, &s.postings);
        if gridmesh_db::store_adjustment(pool, &s, &settings.tariffs, revision + 1, &entries).await? {
            metrics::counter!("gridmesh_settlement_adjustments_total").increment(1);
            tracing::info!(period = %period, revision = revision + 1, entries = entries.len(), "late data adjusted");
            done.push(period);
        }
    }
    Ok(done)
}

/// Anchors settled periods and publishes reward distributions; returns the periods anchored.
///
/// # Errors
/// Database errors; chain errors are recorded per period and retried at the next run.
pub async fn anchor_due(pool: &Pool, link: &ChainLink) -> Result<Vec<Period>, DbError> {
    let d = link.deployment.deployment;
    let mut done = Vec::new();
    for job in gridmesh_db::anchors_due(pool, 20).await? {
        let outcome = link
            .chain
            .anchor_period(
                d.anchor,
                gridmesh_chain::AnchorRequest {
                    period: job.period,
                    root: job.root.into(),
                    line_count: u32::try_from(job.line_count).unwrap_or(u32::MAX),
                    total_wh: u128::try_from(job.total_wh).unwrap_or_default(),
                },
                link.confirmations,
                link.tx_timeout,
            )
            .await;
        match outcome {
            Ok(a) => {
                gridmesh_db::record_anchor(
                    pool,
                    job.period,
                    d.chain_id,
                    d.anchor.into_array(),
                    job.root,
                    a.tx_hash.map(|h| h.0),
                    a.block_number,
                    true,
                    None,
                )
                .await?;
                metrics::counter!("gridmesh_anchor_confirmed_total").increment(1);
                tracing::info!(period = %job.period, tx = ?a.tx_hash, block = ?a.block_number, already = a.already, "period anchored");
                done.push(job.period);
            }
            Err(e) => {
                metrics::counter!("gridmesh_anchor_errors_total").increment(1);
                tracing::warn!(period = %job.period, error = %e, "anchoring failed; retrying later");
                gridmesh_db::record_anchor(
                    pool,
                    job.period,
                    d.chain_id,
                    d.anchor.into_array(),
                    job.root,
                    None,
                    None,
                    false,
                    Some(&e.to_string()),
                )
                .await?;
                if e.is_transient() {
                    // The node is down or slow: the next periods would fail the same way.
                    break;
                }
            }
        }
    }
    for (period, root, total) in gridmesh_db::distributions_due(pool).await? {
        match link.chain.publish_rewards(d.distributor, period, root.into(), total, link.tx_timeout).await {
            Ok(tx) => {
                gridmesh_db::mark_published(pool, period, tx.map(|h| h.0)).await?;
                tracing::info!(period = %period, total = %total, "rewards published");
            }
            Err(e) => {
                tracing::warn!(period = %period, error = %e, "publishing rewards failed; retrying later");
                if e.is_transient() {
                    break;
                }
            }
        }
    }
    Ok(done)
}

/// Mirrors device keys to the `MeterRegistry`: revocations first (so a rotated agent can take
/// its new key), then new keys. Returns the number of transactions sent.
///
/// # Errors
/// Database errors; chain errors stop this round and are retried at the next.
pub async fn sync_registry(pool: &Pool, link: &ChainLink) -> Result<usize, DbError> {
    let registry = link.deployment.deployment.registry;
    let (register, revoke) = gridmesh_db::chain_keys_due(pool).await?;
    let mut sent = 0;
    for k in revoke {
        match link.chain.revoke_key(registry, *k.agent.as_bytes(), k.public_key, link.tx_timeout).await {
            Ok(tx) => {
                sent += usize::from(tx.is_some());
                gridmesh_db::mark_chain_key(pool, k.key_id, tx.map_or([0; 32], |h| h.0), true).await?;
            }
            Err(e) => {
                tracing::warn!(agent = %k.agent, error = %e, "revoking a key on chain failed; retrying later");
                return Ok(sent);
            }
        }
    }
    for k in register {
        match link
            .chain
            .register_key(registry, *k.agent.as_bytes(), *k.site.as_bytes(), k.public_key, link.tx_timeout)
            .await
        {
            Ok(tx) => {
                sent += usize::from(tx.is_some());
                gridmesh_db::mark_chain_key(pool, k.key_id, tx.map_or([0; 32], |h| h.0), false).await?;
            }
            Err(e) => {
                tracing::warn!(agent = %k.agent, error = %e, "registering a key on chain failed; retrying later");
                return Ok(sent);
            }
        }
    }
    if sent > 0 {
        tracing::info!(transactions = sent, "device keys mirrored to the MeterRegistry");
    }
    Ok(sent)
}

/// Runs settlement every `tick`, and anchoring when a chain is configured, until `stop`.
/// Failures back off exponentially up to five minutes.
pub async fn run(
    pool: Pool,
    settings: SettlementSettings,
    chain: ChainArgs,
    tick: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut link: Option<ChainLink> = None;
    let mut backoff = tick;
    loop {
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut failed = false;
        if link.is_none() && chain.chain_rpc_url.is_some() {
            match ChainLink::connect(&chain).await {
                Ok(l) => link = l,
                Err(e) => {
                    // Backs off like any failure, so a missing deployment does not log every tick.
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "chain not available; settling without anchoring for now"
                    );
                    failed = true;
                }
            }
        }
        let genesis = link.as_ref().and_then(|l| l.deployment.genesis().ok());
        if let Err(e) = settle_due(&pool, &settings, genesis, Utc::now()).await {
            tracing::warn!(error = %e, "settlement failed; retrying");
            failed = true;
        }
        if let Err(e) = adjust_due(&pool, &settings, Utc::now()).await {
            tracing::warn!(error = %e, "adjusting for late data failed; retrying");
            failed = true;
        }
        if let Some(l) = &link {
            if let Err(e) = anchor_due(&pool, l).await {
                tracing::warn!(error = %e, "anchoring bookkeeping failed; retrying");
                failed = true;
            }
            if let Err(e) = sync_registry(&pool, l).await {
                tracing::warn!(error = %e, "registry bookkeeping failed; retrying");
                failed = true;
            }
            if gridmesh_db::anchors_due(&pool, 1).await.is_ok_and(|due| !due.is_empty()) {
                // Something is still unanchored: reconnect next time, so a node that restarted
                // or lost transactions gets fresh nonces.
                failed = true;
                link = None;
            }
        }
        backoff = if failed { (backoff * 2).min(Duration::from_secs(300)) } else { tick };
    }
}

/// Whether a chain error is about reaching the node (for the CLI's verdicts).
#[must_use]
pub fn unreachable(e: &ChainError) -> bool {
    matches!(e, ChainError::Unreachable { .. })
}
