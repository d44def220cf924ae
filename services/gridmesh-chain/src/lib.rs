//! gridmesh on an EVM chain, through alloy: deploying the contracts of `contracts/` (their
//! committed artifacts, so no node tooling is needed to build), anchoring settlement roots
//! exactly once, publishing reward distributions, claiming, and reading anchors back for
//! verification.
//!
//! Anchoring is idempotent against the chain itself: before sending, [`Chain::anchor_period`]
//! asks the contract whether the period is anchored (and with which root), and the contract
//! refuses a second anchor of a period. A transaction that is dropped, re-orged away or lost
//! with a node restart is simply sent again on the next attempt.

use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;
use gridmesh_core::Period;
use serde::{Deserialize, Serialize};
use thiserror::Error;

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    SettlementAnchor,
    "../../contracts/artifacts/SettlementAnchor.json"
);
alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    RewardDistributor,
    "../../contracts/artifacts/RewardDistributor.json"
);
alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    MeterRegistry,
    "../../contracts/artifacts/MeterRegistry.json"
);
alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    GridToken,
    "../../contracts/artifacts/GridToken.json"
);

/// What went wrong talking to the chain.
#[derive(Debug, Error)]
pub enum ChainError {
    /// The RPC URL does not parse.
    #[error("invalid RPC URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The operator key does not parse (its value is never printed).
    #[error("invalid operator key: expected 32 bytes as 64 hex digits (optionally 0x-prefixed)")]
    BadKey,
    /// Sending needs an operator key and none was configured.
    #[error("no operator key configured (GRIDMESH_OPERATOR_KEY or --operator-key-file)")]
    NoKey,
    /// The endpoint did not answer.
    #[error("cannot reach the RPC endpoint {url}: {reason}")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// The transport's error.
        reason: String,
    },
    /// The node answered with an error, or a call reverted.
    #[error("the chain refused: {0}")]
    Rpc(String),
    /// A transaction was mined but failed.
    #[error("transaction {0} reverted")]
    Reverted(B256),
    /// No receipt within the time allowed (dropped, or the node is slow).
    #[error("no receipt for the transaction within {0:?}")]
    Timeout(Duration),
    /// The period is on chain with another root: never overwritten, needs an operator.
    #[error("period {period} is anchored with root {on_chain}, not {ours}")]
    RootMismatch {
        /// The period.
        period: Period,
        /// The root on chain.
        on_chain: B256,
        /// Ours.
        ours: B256,
    },
}

impl ChainError {
    /// True when trying again later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, ChainError::Unreachable { .. } | ChainError::Timeout(_) | ChainError::Rpc(_))
    }
}

/// Addresses of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Chain id.
    pub chain_id: u64,
    /// `SettlementAnchor`.
    pub anchor: Address,
    /// `MeterRegistry`.
    pub registry: Address,
    /// `RewardDistributor`.
    pub distributor: Address,
    /// The reward token (`GridToken`), deployed by the distributor.
    pub token: Address,
}

/// An anchor as the chain has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnChainAnchor {
    /// The root.
    pub root: B256,
    /// Lines in the tree.
    pub line_count: u32,
    /// Metered energy, Wh.
    pub total_wh: u128,
    /// Block number of the anchoring transaction.
    pub block_number: u64,
}

/// A period's root to anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorRequest {
    /// The period.
    pub period: Period,
    /// Its settlement root.
    pub root: B256,
    /// Lines in the tree.
    pub line_count: u32,
    /// Metered energy, Wh.
    pub total_wh: u128,
}

/// The outcome of [`Chain::anchor_period`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchored {
    /// The transaction that anchored the period (`None` when it was found on chain without its
    /// event, which does not happen with our contract).
    pub tx_hash: Option<B256>,
    /// Its block.
    pub block_number: Option<u64>,
    /// True when the period was already anchored before this call sent anything.
    pub already: bool,
}

/// A connection to one chain, with the operator's key when it may send.
#[derive(Debug, Clone)]
pub struct Chain {
    provider: DynProvider,
    url: String,
    chain_id: u64,
    sender: Option<Address>,
}

/// Parses a hex private key (32 bytes).
///
/// # Errors
/// [`ChainError::BadKey`], which never echoes the key.
pub fn parse_key(text: &str) -> Result<PrivateKeySigner, ChainError> {
    text.trim().parse::<PrivateKeySigner>().map_err(|_| ChainError::BadKey)
}

impl Chain {
    /// Connects to `rpc_url` and reads the chain id; with `key`, transactions are signed by it.
    ///
    /// # Errors
    /// A bad URL, or an endpoint that does not answer.
    pub async fn connect(rpc_url: &str, key: Option<PrivateKeySigner>) -> Result<Self, ChainError> {
        let url: Url = rpc_url.parse().map_err(|e: url_error::ParseError| ChainError::BadUrl {
            url: rpc_url.to_owned(),
            reason: e.to_string(),
        })?;
        let sender = key.as_ref().map(PrivateKeySigner::address);
        let provider = match key {
            Some(k) => ProviderBuilder::new().wallet(EthereumWallet::from(k)).connect_http(url).erased(),
            None => ProviderBuilder::new().connect_http(url).erased(),
        };
        let mut chain = Self { provider, url: rpc_url.to_owned(), chain_id: 0, sender };
        chain.chain_id = chain.provider.get_chain_id().await.map_err(|e| chain.transport(&e))?;
        Ok(chain)
    }

    /// The chain id.
    #[must_use]
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The operator's address, when a key is configured.
    #[must_use]
    pub fn sender(&self) -> Option<Address> {
        self.sender
    }

    fn transport(&self, e: &impl std::fmt::Display) -> ChainError {
        let text = e.to_string();
        let lower = text.to_lowercase();
        if lower.contains("error sending request")
            || lower.contains("connection refused")
            || lower.contains("connect")
            || lower.contains("timed out")
            || lower.contains("dns")
        {
            ChainError::Unreachable { url: self.url.clone(), reason: text }
        } else {
            ChainError::Rpc(text)
        }
    }

    fn need_sender(&self) -> Result<Address, ChainError> {
        self.sender.ok_or(ChainError::NoKey)
    }

    /// Deploys `SettlementAnchor`, `MeterRegistry` and `RewardDistributor` (which deploys the
    /// token), with the operator's account as owner and operator of each.
    ///
    /// # Errors
    /// No key, or the chain refused.
    pub async fn deploy(&self, genesis: Period) -> Result<Deployment, ChainError> {
        let me = self.need_sender()?;
        let anchor = SettlementAnchor::deploy(&self.provider).await.map_err(|e| self.transport(&e))?;
        let registry = MeterRegistry::deploy(&self.provider).await.map_err(|e| self.transport(&e))?;
        let genesis =
            u64::try_from(genesis.index()).map_err(|_| ChainError::Rpc("genesis before 1970".into()))?;
        let distributor =
            RewardDistributor::deploy(&self.provider, genesis).await.map_err(|e| self.transport(&e))?;
        for call in [
            anchor.setOperator(me, true).send().await,
            registry.setOperator(me, true).send().await,
            distributor.setOperator(me, true).send().await,
        ] {
            let pending = call.map_err(|e| self.transport(&e))?;
            self.settle_tx(pending, 1, Duration::from_secs(60)).await?;
        }
        let token = distributor.token().call().await.map_err(|e| self.transport(&e))?;
        Ok(Deployment {
            chain_id: self.chain_id,
            anchor: *anchor.address(),
            registry: *registry.address(),
            distributor: *distributor.address(),
            token,
        })
    }

    async fn settle_tx(
        &self,
        pending: alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
        confirmations: u64,
        timeout: Duration,
    ) -> Result<(B256, Option<u64>), ChainError> {
        let hash = *pending.tx_hash();
        // alloy's own timeout is checked as blocks arrive; a node that mines nothing more would
        // keep us waiting, so the wait is bounded here too.
        let wait = pending
            .with_required_confirmations(confirmations.max(1))
            .with_timeout(Some(timeout))
            .get_receipt();
        let receipt = tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ChainError::Timeout(timeout))?
            .map_err(|e| match e {
                alloy::providers::PendingTransactionError::TxWatcher(_) => ChainError::Timeout(timeout),
                other => self.transport(&other),
            })?;
        if !receipt.status() {
            return Err(ChainError::Reverted(hash));
        }
        Ok((hash, receipt.block_number))
    }

    /// The period's anchor on chain, if any.
    ///
    /// # Errors
    /// The endpoint did not answer or refused.
    pub async fn anchored(
        &self,
        contract: Address,
        period: Period,
    ) -> Result<Option<OnChainAnchor>, ChainError> {
        let c = SettlementAnchor::new(contract, &self.provider);
        let p = period_u64(period)?;
        let a = c.anchorOf(p).call().await.map_err(|e| self.transport(&e))?;
        if a.root == B256::ZERO {
            return Ok(None);
        }
        Ok(Some(OnChainAnchor {
            root: a.root,
            line_count: a.lineCount,
            total_wh: a.totalWh,
            block_number: a.blockNumber,
        }))
    }

    /// Anchors a period's root unless it already is; waits for `confirmations`.
    ///
    /// # Errors
    /// Transient errors (unreachable node, timeout) to retry; a root mismatch; a revert.
    pub async fn anchor_period(
        &self,
        contract: Address,
        request: AnchorRequest,
        confirmations: u64,
        timeout: Duration,
    ) -> Result<Anchored, ChainError> {
        let AnchorRequest { period, root, line_count, total_wh } = request;
        self.need_sender()?;
        if let Some(existing) = self.anchored(contract, period).await? {
            if existing.root != root {
                return Err(ChainError::RootMismatch { period, on_chain: existing.root, ours: root });
            }
            let tx = self.anchor_tx(contract, period).await?;
            return Ok(Anchored { tx_hash: tx, block_number: Some(existing.block_number), already: true });
        }
        let c = SettlementAnchor::new(contract, &self.provider);
        let pending = c
            .anchor(period_u64(period)?, root, line_count, total_wh)
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        tracing::info!(period = %period, tx = %pending.tx_hash(), "anchor transaction sent");
        let (hash, block) = self.settle_tx(pending, confirmations, timeout).await?;
        Ok(Anchored { tx_hash: Some(hash), block_number: block, already: false })
    }

    /// The contract's `Anchored` events for `period`: the transaction hash of each.
    async fn anchor_logs(&self, contract: Address, period: Period) -> Result<Vec<Option<B256>>, ChainError> {
        let c = SettlementAnchor::new(contract, &self.provider);
        let logs = c
            .Anchored_filter()
            .topic1(U256::from(period_u64(period)?))
            .from_block(0)
            .query()
            .await
            .map_err(|e| self.transport(&e))?;
        Ok(logs.into_iter().map(|(_, log)| log.transaction_hash).collect())
    }

    /// The transaction that anchored `period`, from the contract's `Anchored` event.
    async fn anchor_tx(&self, contract: Address, period: Period) -> Result<Option<B256>, ChainError> {
        Ok(self.anchor_logs(contract, period).await?.into_iter().next().flatten())
    }

    /// How many `Anchored` events the contract has emitted for `period` (one, or none).
    ///
    /// # Errors
    /// The endpoint did not answer.
    pub async fn anchor_events(&self, contract: Address, period: Period) -> Result<usize, ChainError> {
        Ok(self.anchor_logs(contract, period).await?.len())
    }

    /// Asks the contract itself whether `line` with `proof` is in the period's anchored tree.
    ///
    /// # Errors
    /// The endpoint did not answer.
    pub async fn verify_line(
        &self,
        contract: Address,
        period: Period,
        line: &[u8],
        proof: &[[u8; 32]],
    ) -> Result<bool, ChainError> {
        let c = SettlementAnchor::new(contract, &self.provider);
        let proof: Vec<B256> = proof.iter().map(|p| B256::from(*p)).collect();
        c.verifyLine(period_u64(period)?, Bytes::copy_from_slice(line), proof)
            .call()
            .await
            .map_err(|e| self.transport(&e))
    }

    /// Publishes a period's reward distribution, unless published; returns the transaction.
    ///
    /// # Errors
    /// Transient errors to retry; a revert (over the emission).
    pub async fn publish_rewards(
        &self,
        distributor: Address,
        period: Period,
        root: B256,
        total: u128,
        timeout: Duration,
    ) -> Result<Option<B256>, ChainError> {
        self.need_sender()?;
        let c = RewardDistributor::new(distributor, &self.provider);
        let p = period_u64(period)?;
        let existing = c.distributionOf(p).call().await.map_err(|e| self.transport(&e))?;
        if existing.root != B256::ZERO {
            return Ok(None);
        }
        let pending = c.publish(p, root, U256::from(total)).send().await.map_err(|e| self.transport(&e))?;
        let (hash, _) = self.settle_tx(pending, 1, timeout).await?;
        Ok(Some(hash))
    }

    /// Claims `amount` for `account` with `proof` (anyone may send it; the tokens go to
    /// `account`).
    ///
    /// # Errors
    /// A revert (already claimed, invalid proof) or transport errors.
    pub async fn claim(
        &self,
        distributor: Address,
        period: Period,
        account: Address,
        amount: u128,
        proof: &[[u8; 32]],
    ) -> Result<B256, ChainError> {
        self.need_sender()?;
        let c = RewardDistributor::new(distributor, &self.provider);
        let proof: Vec<B256> = proof.iter().map(|p| B256::from(*p)).collect();
        let pending = c
            .claim(period_u64(period)?, account, U256::from(amount), proof)
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        Ok(self.settle_tx(pending, 1, Duration::from_secs(60)).await?.0)
    }

    /// The key a `MeterRegistry` holds for an agent, and whether it is active.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn registry_key(
        &self,
        registry: Address,
        agent: [u8; 16],
    ) -> Result<Option<([u8; 32], bool)>, ChainError> {
        let c = MeterRegistry::new(registry, &self.provider);
        let k = c.keyOf(agent.into()).call().await.map_err(|e| self.transport(&e))?;
        if k.publicKey == B256::ZERO {
            return Ok(None);
        }
        let active = c.isActive(agent.into()).call().await.map_err(|e| self.transport(&e))?;
        Ok(Some((k.publicKey.0, active)))
    }

    /// Registers an agent's key unless it is registered and active already; returns the
    /// transaction (`None` when there was nothing to do).
    ///
    /// # Errors
    /// Transient errors to retry; a revert (the key was used before).
    pub async fn register_key(
        &self,
        registry: Address,
        agent: [u8; 16],
        site: [u8; 16],
        key: [u8; 32],
        timeout: Duration,
    ) -> Result<Option<B256>, ChainError> {
        self.need_sender()?;
        if self.registry_key(registry, agent).await? == Some((key, true)) {
            return Ok(None);
        }
        let c = MeterRegistry::new(registry, &self.provider);
        let pending =
            c.register(agent.into(), site.into(), key.into()).send().await.map_err(|e| self.transport(&e))?;
        Ok(Some(self.settle_tx(pending, 1, timeout).await?.0))
    }

    /// Revokes an agent's key if that key is the agent's active one on chain; returns the
    /// transaction (`None` when there was nothing to do).
    ///
    /// # Errors
    /// Transient errors to retry.
    pub async fn revoke_key(
        &self,
        registry: Address,
        agent: [u8; 16],
        key: [u8; 32],
        timeout: Duration,
    ) -> Result<Option<B256>, ChainError> {
        self.need_sender()?;
        if self.registry_key(registry, agent).await? != Some((key, true)) {
            return Ok(None);
        }
        let c = MeterRegistry::new(registry, &self.provider);
        let pending = c.revoke(agent.into()).send().await.map_err(|e| self.transport(&e))?;
        Ok(Some(self.settle_tx(pending, 1, timeout).await?.0))
    }

    /// An account's balance of the reward token.
    ///
    /// # Errors
    /// Transport errors.
    pub async fn token_balance(&self, token: Address, account: Address) -> Result<U256, ChainError> {
        GridToken::new(token, &self.provider).balanceOf(account).call().await.map_err(|e| self.transport(&e))
    }
}

fn period_u64(period: Period) -> Result<u64, ChainError> {
    u64::try_from(period.index()).map_err(|_| ChainError::Rpc(format!("period {period} is before 1970")))
}

mod url_error {
    pub(crate) use alloy::transports::http::reqwest::Url;
    pub(crate) type ParseError = <Url as std::str::FromStr>::Err;
}
