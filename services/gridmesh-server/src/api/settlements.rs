//! `/v1/settlements` and `/v1/rewards`: settled periods, a site's line with its Merkle proof
//! (what `gridmesh verify` checks against the chain), ledger balances, reward addresses and
//! claim proofs.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gridmesh_core::{Period, SiteId};
use gridmesh_db::AnchorRecord;
use gridmesh_settlement::Line;
use gridmesh_settlement::merkle::Tree;
use serde::{Deserialize, Serialize};

use super::market::period_param;
use crate::auth::Authenticated;
use crate::error::{Json, Path};
use crate::proof::{ClaimDocument, ProofDocument, hex0x};
use crate::{ApiError, AppState};

/// A settled period.
#[derive(Debug, Serialize)]
pub struct SettlementOut {
    period: Period,
    settled_at: DateTime<Utc>,
    /// Number of lines.
    line_count: i32,
    /// Metered energy exchanged with the grid, Wh.
    total_wh: i64,
    /// Merkle root, hex with 0x.
    root: String,
    anchor: Option<AnchorOut>,
    /// Each ledger account's balance for the period (operators and regulators only); they sum
    /// to zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    balances: Option<Vec<(String, i64)>>,
}

/// Where a period's anchor stands, as the API shows it; also part of a proof document
/// ([`ProofDocument`]), which `gridmesh verify` reads back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnchorOut {
    /// The chain.
    pub chain_id: u64,
    /// The `SettlementAnchor` contract, hex with 0x.
    pub contract: String,
    /// Transaction hash, hex with 0x, once sent.
    pub tx_hash: Option<String>,
    /// Block of the transaction, once mined.
    pub block_number: Option<i64>,
    /// `pending` or `confirmed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
}

impl From<AnchorRecord> for AnchorOut {
    fn from(a: AnchorRecord) -> Self {
        Self {
            chain_id: a.chain_id,
            contract: a.contract,
            tx_hash: a.tx_hash,
            block_number: a.block_number,
            status: a.status,
            attempts: a.attempts,
            last_error: a.last_error,
        }
    }
}

/// `GET /v1/settlements/{start}`: the settlement summary, its root and anchor.
pub async fn get_one(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(start): Path<String>,
) -> Result<Json<SettlementOut>, ApiError> {
    let period = period_param(&start)?;
    let (summary, _) = gridmesh_db::settlement_of(&state.pool, period)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("settlement of {period}")))?;
    let anchor = gridmesh_db::anchor_of(&state.pool, period).await?.map(AnchorOut::from);
    let balances = if caller.sees_all_sites() {
        Some(gridmesh_db::ledger_balances(&state.pool, period).await?)
    } else {
        None
    };
    Ok(Json(SettlementOut {
        period: summary.period,
        settled_at: summary.settled_at,
        line_count: summary.line_count,
        total_wh: summary.total_wh,
        root: summary.root,
        anchor,
        balances,
    }))
}

/// `GET /v1/settlements/{start}/sites/{site}`: the site's line, decoded and encoded, with its
/// inclusion proof and the anchor. Save it and `gridmesh verify --proof-file` checks it.
pub async fn line(
    State(state): State<AppState>,
    caller: Authenticated,
    Path((start, site)): Path<(String, SiteId)>,
) -> Result<Json<ProofDocument>, ApiError> {
    let period = period_param(&start)?;
    caller.require_site(&state, site).await?;
    let (summary, lines) = gridmesh_db::settlement_of(&state.pool, period)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("settlement of {period}")))?;
    let tree = Tree::new(lines.iter().map(Line::leaf).collect());
    let idx = lines
        .binary_search_by_key(&site, |l| l.site)
        .map_err(|_| ApiError::NotFound(format!("line of site {site} in {period}")))?;
    let proof =
        tree.proof(idx).ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no proof for index {idx}")))?;
    let anchor = gridmesh_db::anchor_of(&state.pool, period).await?.map(AnchorOut::from);
    Ok(Json(ProofDocument {
        period,
        period_index: period.index(),
        site,
        line: hex0x(&lines[idx].encode()),
        decoded: lines[idx],
        index: idx,
        proof: proof.iter().map(|p| hex0x(p)).collect(),
        root: summary.root,
        anchor,
    }))
}

/// Body of `PUT /v1/me/reward-address`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardAddress {
    address: String,
}

/// `PUT /v1/me/reward-address`: where the caller's token rewards go (an EVM address).
pub async fn set_reward_address(
    State(state): State<AppState>,
    caller: Authenticated,
    Json(body): Json<RewardAddress>,
) -> Result<StatusCode, ApiError> {
    let hex = body.address.strip_prefix("0x").unwrap_or(&body.address);
    let mut address = [0_u8; 20];
    hex::decode_to_slice(hex, &mut address)
        .map_err(|_| ApiError::invalid("address", "must be an EVM address: 0x and 40 hex digits"))?;
    if address == [0; 20] {
        return Err(ApiError::invalid("address", "must not be the zero address"));
    }
    gridmesh_db::set_reward_address(&state.pool, caller.0.user_id, address).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/rewards/{start}/claims/{address}`: an account's reward for a period and the proof
/// that `RewardDistributor.claim` takes.
pub async fn claim(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path((start, address)): Path<(String, String)>,
) -> Result<Json<ClaimDocument>, ApiError> {
    let period = period_param(&start)?;
    let mut account = [0_u8; 20];
    hex::decode_to_slice(address.strip_prefix("0x").unwrap_or(&address), &mut account)
        .map_err(|_| ApiError::BadPath("the address must be 0x and 40 hex digits".into()))?;
    let (status, claims) = gridmesh_db::distribution_claims(&state.pool, period)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("reward distribution of {period}")))?;
    let rewards: Vec<gridmesh_settlement::rewards::Reward> = claims
        .iter()
        .map(|&(account, verified_wh, amount)| gridmesh_settlement::rewards::Reward {
            account,
            verified_wh,
            amount,
        })
        .collect();
    let tree = Tree::new(rewards.iter().map(|r| r.leaf(period)).collect());
    let idx = rewards
        .iter()
        .position(|r| r.account == account)
        .ok_or_else(|| ApiError::NotFound(format!("reward for {address} in {period}")))?;
    Ok(Json(ClaimDocument {
        period,
        period_index: period.index(),
        account: hex0x(&account),
        amount: rewards[idx].amount.to_string(),
        verified_wh: rewards[idx].verified_wh,
        proof: tree.proof(idx).unwrap_or_default().iter().map(|p| hex0x(p)).collect(),
        root: hex0x(&tree.root()),
        status,
    }))
}
