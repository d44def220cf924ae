//! The anchor job, the one writer to the chain with the operator key: anchor each settled
//! period's root, publish its token rewards, and mirror device keys to the `MeterRegistry`.
//! One writer, so the operator account's nonces never race.
//!
//! Every step is idempotent and safe across restarts: the contract refuses a second anchor of
//! a period and is asked before every send, and a distribution is published only when the
//! contract has none for the period.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use gridmesh_chain::{Chain, ChainError, Deployment};
use gridmesh_core::Period;
use gridmesh_db::{DbError, Pool};
use serde::{Deserialize, Serialize};

use super::{Job, JobCtx, Shutdown};
use crate::config::ChainArgs;

/// How often the job looks for work.
const TICK: Duration = Duration::from_secs(10);

/// Longest wait between rounds after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

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

/// Connects to the chain when one is configured, then anchors, publishes rewards and mirrors
/// keys every `tick` until `shutdown`. Failures back off exponentially up to five minutes;
/// while something stays unanchored the link is made again, so a node that restarted or lost
/// transactions gets fresh nonces. Without `--chain-rpc-url` the job is not started.
pub async fn run(ctx: JobCtx, mut shutdown: Shutdown) {
    let chain = &ctx.settings.chain;
    let mut link: Option<ChainLink> = None;
    let mut backoff = TICK;
    loop {
        if shutdown.sleep(backoff).await {
            return;
        }
        let pool = &ctx.pool;
        let ok = ctx
            .round(Job::Anchor, "anchor round", async {
                if link.is_none() {
                    link = ChainLink::connect(chain).await.context("chain not available")?;
                }
                let Some(l) = &link else { return Ok(()) };
                let anchored = anchor_due(pool, l).await.map(drop).context("anchoring bookkeeping");
                let mirrored = sync_registry(pool, l).await.map(drop).context("registry bookkeeping");
                if gridmesh_db::anchors_due(pool, 1).await.is_ok_and(|due| !due.is_empty()) {
                    link = None;
                    anyhow::bail!("periods are still unanchored; reconnecting to the chain");
                }
                super::both(anchored, mirrored)
            })
            .await
            .is_some();
        backoff = if ok { TICK } else { (backoff * 2).min(MAX_BACKOFF) };
    }
}

/// Whether a chain error is about reaching the node (for the CLI's verdicts).
#[must_use]
pub fn unreachable(e: &ChainError) -> bool {
    matches!(e, ChainError::Unreachable { .. })
}
