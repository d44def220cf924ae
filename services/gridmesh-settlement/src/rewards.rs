//! Token rewards: per period, for generation that was sold to peers and verified by the meter,
//! under a capped emission schedule, published as a Merkle distribution.
//!
//! Emission (the same rule as `RewardDistributor.emissionFor` in `contracts/`): nothing before
//! the genesis period; then [`INITIAL_PER_PERIOD`] per period, halved every
//! [`HALVING_PERIODS`] periods (a year of quarter hours). The sum of all emission is below
//! `2 × INITIAL_PER_PERIOD × HALVING_PERIODS`, the token's cap.
//!
//! A period's emission is shared pro rata by verified Wh, rounded down; what rounding leaves is
//! never minted. A claim's leaf is the Merkle leaf of `period (u64) ‖ account (20 bytes) ‖
//! amount (u256)`, all big-endian: Solidity's `abi.encodePacked(uint64, address, uint256)`.

use std::collections::BTreeMap;

use gridmesh_core::{Period, SiteId};
use serde::{Deserialize, Serialize};

use crate::merkle::{self, Hash, Tree};
use crate::{Line, LineStatus};

/// Tokens (in 10⁻¹⁸ units) emitted per period in the first year: 100 tokens.
pub const INITIAL_PER_PERIOD: u128 = 100 * 10_u128.pow(18);
/// Periods between halvings: 365 days of 96 quarter hours.
pub const HALVING_PERIODS: i64 = 35_040;

/// The most that may be distributed for `period`.
#[must_use]
pub fn emission_for(period: Period, genesis: Period) -> u128 {
    let since = period.index() - genesis.index();
    if since < 0 {
        return 0;
    }
    let halvings = since / HALVING_PERIODS;
    if halvings >= 128 { 0 } else { INITIAL_PER_PERIOD >> halvings }
}

/// An EVM account, 20 bytes.
pub type Address = [u8; 20];

/// Generation a site sold to peers and delivered, as the meter confirms: the smaller of sold
/// and metered export; nothing for a line that is not metered.
#[must_use]
pub fn verified_generation(line: &Line) -> i64 {
    if line.status == LineStatus::Metered { line.sold_wh.min(line.exported_wh).max(0) } else { 0 }
}

/// One account's reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    /// Who may claim.
    #[serde(with = "hex_address")]
    pub account: Address,
    /// Verified Wh behind it.
    pub verified_wh: i64,
    /// Token amount, 10⁻¹⁸ units.
    pub amount: u128,
}

impl Reward {
    /// The claim's Merkle leaf for `period`.
    #[must_use]
    pub fn leaf(&self, period: Period) -> Hash {
        merkle::leaf(&claim_bytes(period, &self.account, self.amount))
    }
}

/// `period ‖ account ‖ amount` as the distributor contract hashes it.
#[must_use]
pub fn claim_bytes(period: Period, account: &Address, amount: u128) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 20 + 32);
    out.extend_from_slice(&period.index().to_be_bytes());
    out.extend_from_slice(account);
    out.extend_from_slice(&[0_u8; 16]);
    out.extend_from_slice(&amount.to_be_bytes());
    out
}

/// A period's reward distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    /// The period.
    pub period: Period,
    /// Rewards ordered by account.
    pub rewards: Vec<Reward>,
    /// Sum of the rewards (never above the period's emission).
    pub total: u128,
    /// Tree over the claims' leaves, in account order.
    pub tree: Tree,
}

impl Distribution {
    /// An account's reward and claim proof.
    #[must_use]
    pub fn proof_for(&self, account: &Address) -> Option<(Reward, Vec<Hash>)> {
        let i = self.rewards.binary_search_by_key(account, |r| r.account).ok()?;
        Some((self.rewards[i], self.tree.proof(i)?))
    }
}

/// Shares `emission` among the owners of `lines` by verified generation. `account_of` names the
/// account a site's rewards go to; sites without one earn nothing (their share is not minted).
#[must_use]
pub fn distribute(
    period: Period,
    emission: u128,
    lines: &[Line],
    account_of: impl Fn(SiteId) -> Option<Address>,
) -> Distribution {
    let mut by_account: BTreeMap<Address, i64> = BTreeMap::new();
    let mut all_wh: u128 = 0;
    for line in lines {
        let wh = verified_generation(line);
        if wh == 0 {
            continue;
        }
        all_wh += wh as u128;
        if let Some(a) = account_of(line.site) {
            *by_account.entry(a).or_default() += wh;
        }
    }
    let rewards: Vec<Reward> = by_account
        .into_iter()
        .map(|(account, wh)| Reward {
            account,
            verified_wh: wh,
            // emission ≤ 2^67 and wh ≤ all_wh: the product fits in u128 for any realistic town
            // (below 2^61 Wh); saturate rather than wrap beyond that.
            amount: emission.saturating_mul(wh as u128) / all_wh.max(1),
        })
        .filter(|r| r.amount > 0)
        .collect();
    let total = rewards.iter().map(|r| r.amount).sum();
    let tree = Tree::new(rewards.iter().map(|r| r.leaf(period)).collect());
    Distribution { period, rewards, total, tree }
}

mod hex_address {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(a: &[u8; 20], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(a)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 20], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0_u8; 20];
        hex::decode_to_slice(text.trim_start_matches("0x"), &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}
