//! Settlement storage: the inputs of a period (metering and trades), settled lines and ledger
//! entries written once per period and revision, anchors, reward addresses and distributions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use gridmesh_core::{Period, SiteId, UserId, WattHours};
use gridmesh_settlement::rewards::{Address, Distribution};
use gridmesh_settlement::{Line, LineStatus, Metering, SiteInput, Tariffs, TradeInput};
use uuid::Uuid;

use crate::{DbError, Pool};

fn period_of(t: DateTime<Utc>) -> Result<Period, DbError> {
    Period::starting_at(t).map_err(|e| DbError::Corrupt(format!("period {t}: {e}")))
}

/// Every site assigned to a feeder before `period` ended and not decommissioned before it began, with
/// its metering for the period: measured
/// when the period's 15-minute energy is complete and not flagged (or reviewed), flagged when
/// it has unreviewed flags, missing otherwise.
///
/// # Errors
/// Database errors.
pub async fn settlement_sites(pool: &Pool, period: Period) -> Result<Vec<SiteInput>, DbError> {
    type Row = (Uuid, Option<bool>, Option<i32>, Option<DateTime<Utc>>, Option<i64>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.id, e.complete_start, e.flags, e.resolved_at, e.imported_wh, e.exported_wh
         FROM sites s
         LEFT JOIN site_energy_15min e ON e.site_id = s.id AND e.period_start = $1
         WHERE s.assigned_at < $2 AND (s.decommissioned_at IS NULL OR s.decommissioned_at > $1)
         ORDER BY s.id",
    )
    .bind(period.start())
    .bind(period.end())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(site, complete, flags, resolved, imported, exported)| {
            let metering = match (complete, imported, exported) {
                _ if flags.unwrap_or(0) != 0 && resolved.is_none() => Metering::Flagged,
                (Some(true), Some(i), Some(x)) if i >= 0 && x >= 0 => {
                    Metering::Measured { imported: WattHours(i), exported: WattHours(x) }
                }
                _ => Metering::Missing,
            };
            SiteInput { site: SiteId(site), metering }
        })
        .collect())
}

/// True when every site has reported after `period` ended, so its energy in the period is final.
///
/// # Errors
/// Database errors.
pub async fn metering_complete(pool: &Pool, period: Period) -> Result<bool, DbError> {
    let missing: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sites s WHERE s.assigned_at < $2
             AND (s.decommissioned_at IS NULL OR s.decommissioned_at > $3) AND NOT EXISTS (
             SELECT 1 FROM site_period_counters c WHERE c.site_id = s.id AND c.period_start = $1))",
    )
    .bind(period.next().start())
    .bind(period.end())
    .bind(period.start())
    .fetch_one(pool)
    .await?;
    Ok(!missing)
}

/// The trades of a cleared period, as settlement takes them.
///
/// # Errors
/// Database errors.
pub async fn settlement_trades(pool: &Pool, period: Period) -> Result<Vec<TradeInput>, DbError> {
    let rows: Vec<(Uuid, Uuid, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT seller_site, buyer_site, energy_wh, seller_price, buyer_price, grid_fee_per_kwh
         FROM market_trades WHERE period_start = $1 ORDER BY seq",
    )
    .bind(period.start())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(s, b, e, sp, bp, fee)| TradeInput {
            seller: SiteId(s),
            buyer: SiteId(b),
            energy: WattHours(e),
            seller_price: sp,
            buyer_price: bp,
            grid_fee_per_kwh: fee,
        })
        .collect())
}

/// Cleared periods up to `latest` (and after `since`) that have no settlement yet, oldest first.
///
/// # Errors
/// Database errors.
pub async fn periods_to_settle(pool: &Pool, since: Period, latest: Period) -> Result<Vec<Period>, DbError> {
    let rows: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT c.period_start FROM market_clearings c
         WHERE c.period_start > $1 AND c.period_start <= $2
           AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.period_start = c.period_start)
         ORDER BY c.period_start",
    )
    .bind(since.start())
    .bind(latest.start())
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(period_of).collect()
}

/// Stores revision 1 of a period's settlement (summary, lines, ledger entries) in one
/// transaction. Returns false when the period was already settled (by another replica).
///
/// # Errors
/// Database errors; nothing is written then.
pub async fn store_settlement(
    pool: &Pool,
    s: &gridmesh_settlement::Settlement,
    tariffs: &Tariffs,
) -> Result<bool, DbError> {
    store_adjustment(pool, s, tariffs, 1, &s.postings).await
}

/// A stored settlement's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementSummary {
    /// The period.
    pub period: Period,
    /// When it was settled.
    pub settled_at: DateTime<Utc>,
    /// Number of lines.
    pub line_count: i32,
    /// Metered energy exchanged with the grid, Wh.
    pub total_wh: i64,
    /// Merkle root, hex with 0x.
    pub root: String,
}

/// Revision 1 of a period's settlement and its lines (in tree order).
///
/// # Errors
/// Database errors; [`DbError::Corrupt`] for a stored line that does not decode.
pub async fn settlement_of(
    pool: &Pool,
    period: Period,
) -> Result<Option<(SettlementSummary, Vec<Line>)>, DbError> {
    let row: Option<(DateTime<Utc>, i32, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT settled_at, line_count, total_wh, root FROM settlements WHERE period_start = $1 AND revision = 1",
    )
    .bind(period.start())
    .fetch_optional(pool)
    .await?;
    let Some((settled_at, line_count, total_wh, root)) = row else { return Ok(None) };
    let lines: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT line FROM settlement_lines WHERE period_start = $1 AND revision = 1 ORDER BY idx",
    )
    .bind(period.start())
    .fetch_all(pool)
    .await?;
    let lines = lines
        .iter()
        .map(|b| Line::decode(b).map_err(|e| DbError::Corrupt(format!("settlement line: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((
        SettlementSummary {
            period,
            settled_at,
            line_count,
            total_wh,
            root: format!("0x{}", hex::encode(root)),
        },
        lines,
    )))
}

/// Each account's balance from a period's ledger entries (all revisions); they sum to zero.
///
/// # Errors
/// Database errors.
pub async fn ledger_balances(pool: &Pool, period: Period) -> Result<Vec<(String, i64)>, DbError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT account, sum(amount)::bigint FROM (
             SELECT to_account AS account, amount FROM ledger_entries WHERE period_start = $1
             UNION ALL SELECT from_account, -amount FROM ledger_entries WHERE period_start = $1
         ) t GROUP BY account ORDER BY account",
    )
    .bind(period.start())
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// A settlement waiting for its anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorJob {
    /// The period.
    pub period: Period,
    /// Its root.
    pub root: [u8; 32],
    /// Lines in the tree.
    pub line_count: i32,
    /// Metered energy, Wh.
    pub total_wh: i64,
}

/// Settled periods whose anchor is not confirmed, oldest first (at most `limit`).
///
/// # Errors
/// Database errors.
pub async fn anchors_due(pool: &Pool, limit: i64) -> Result<Vec<AnchorJob>, DbError> {
    let rows: Vec<(DateTime<Utc>, Vec<u8>, i32, i64)> = sqlx::query_as(
        "SELECT s.period_start, s.root, s.line_count, s.total_wh FROM settlements s
         LEFT JOIN anchors a ON a.period_start = s.period_start
         WHERE s.revision = 1 AND s.line_count > 0 AND (a.status IS NULL OR a.status <> 'confirmed')
         ORDER BY s.period_start LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(p, root, line_count, total_wh)| {
            Ok(AnchorJob {
                period: period_of(p)?,
                root: root.try_into().map_err(|_| DbError::Corrupt("settlements.root".into()))?,
                line_count,
                total_wh,
            })
        })
        .collect()
}

/// Where an anchor stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorRecord {
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

/// Records an attempt or its outcome for a period's anchor.
///
/// # Errors
/// Database errors.
#[expect(clippy::too_many_arguments, reason = "one row's columns")]
pub async fn record_anchor(
    pool: &Pool,
    period: Period,
    chain_id: u64,
    contract: [u8; 20],
    root: [u8; 32],
    tx_hash: Option<[u8; 32]>,
    block_number: Option<u64>,
    confirmed: bool,
    error: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO anchors (period_start, chain_id, contract, root, tx_hash, block_number, status, attempts, last_error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)
         ON CONFLICT (period_start) DO UPDATE SET
             tx_hash = coalesce(EXCLUDED.tx_hash, anchors.tx_hash),
             block_number = coalesce(EXCLUDED.block_number, anchors.block_number),
             status = CASE WHEN anchors.status = 'confirmed' THEN 'confirmed' ELSE EXCLUDED.status END,
             attempts = anchors.attempts + 1, last_error = EXCLUDED.last_error, updated_at = now()",
    )
    .bind(period.start())
    .bind(i64::try_from(chain_id).map_err(|_| DbError::Invalid { field: "chain_id", reason: "too large".into() })?)
    .bind(&contract[..])
    .bind(&root[..])
    .bind(tx_hash.map(|h| h.to_vec()))
    .bind(block_number.and_then(|b| i64::try_from(b).ok()))
    .bind(if confirmed { "confirmed" } else { "pending" })
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// A period's anchor, if any.
///
/// # Errors
/// Database errors.
pub async fn anchor_of(pool: &Pool, period: Period) -> Result<Option<AnchorRecord>, DbError> {
    type Row = (i64, Vec<u8>, Option<Vec<u8>>, Option<i64>, String, i32, Option<String>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT chain_id, contract, tx_hash, block_number, status, attempts, last_error FROM anchors WHERE period_start = $1",
    )
    .bind(period.start())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(chain_id, contract, tx, block_number, status, attempts, last_error)| AnchorRecord {
        chain_id: chain_id.unsigned_abs(),
        contract: format!("0x{}", hex::encode(contract)),
        tx_hash: tx.map(|t| format!("0x{}", hex::encode(t))),
        block_number,
        status,
        attempts,
        last_error,
    }))
}

/// Sets the account a user's token rewards go to.
///
/// # Errors
/// Database errors.
pub async fn set_reward_address(pool: &Pool, user: UserId, address: Address) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO reward_addresses (user_id, address) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET address = EXCLUDED.address, updated_at = now()",
    )
    .bind(user.0)
    .bind(&address[..])
    .execute(pool)
    .await?;
    Ok(())
}

/// The reward account of each site's owner, for the sites that have one.
///
/// # Errors
/// Database errors.
pub async fn site_reward_addresses(pool: &Pool) -> Result<BTreeMap<SiteId, Address>, DbError> {
    let rows: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT s.id, r.address FROM sites s JOIN reward_addresses r ON r.user_id = s.owner_id",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(s, a)| {
            Ok((SiteId(s), a.try_into().map_err(|_| DbError::Corrupt("reward_addresses.address".into()))?))
        })
        .collect()
}

/// Stores a period's reward distribution (once). Returns false when it existed.
///
/// # Errors
/// Database errors.
pub async fn store_distribution(pool: &Pool, d: &Distribution) -> Result<bool, DbError> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO reward_distributions (period_start, root, total, claim_count, status)
         VALUES ($1, $2, $3::numeric, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(d.period.start())
    .bind(&d.tree.root()[..])
    .bind(d.total.to_string())
    .bind(i32::try_from(d.rewards.len()).unwrap_or(i32::MAX))
    .bind(if d.rewards.is_empty() { "empty" } else { "pending" })
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO reward_claims (period_start, address, idx, verified_wh, amount)
         SELECT $1, u.a, u.i, u.w, u.m::numeric FROM UNNEST($2::bytea[], $3::int4[], $4::bigint[], $5::text[]) AS u(a, i, w, m)",
    )
    .bind(d.period.start())
    .bind(d.rewards.iter().map(|r| r.account.to_vec()).collect::<Vec<_>>())
    .bind((0..d.rewards.len()).map(|i| i32::try_from(i).unwrap_or(i32::MAX)).collect::<Vec<_>>())
    .bind(d.rewards.iter().map(|r| r.verified_wh).collect::<Vec<_>>())
    .bind(d.rewards.iter().map(|r| r.amount.to_string()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Distributions not yet published on chain: period, root and total.
///
/// # Errors
/// Database errors.
pub async fn distributions_due(pool: &Pool) -> Result<Vec<(Period, [u8; 32], u128)>, DbError> {
    let rows: Vec<(DateTime<Utc>, Vec<u8>, String)> = sqlx::query_as(
        "SELECT period_start, root, total::text FROM reward_distributions WHERE status = 'pending' ORDER BY period_start",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(p, root, total)| {
            Ok((
                period_of(p)?,
                root.try_into().map_err(|_| DbError::Corrupt("reward_distributions.root".into()))?,
                total.parse().map_err(|_| DbError::Corrupt("reward_distributions.total".into()))?,
            ))
        })
        .collect()
}

/// Marks a distribution published by `tx_hash`.
///
/// # Errors
/// Database errors.
pub async fn mark_published(pool: &Pool, period: Period, tx_hash: Option<[u8; 32]>) -> Result<(), DbError> {
    sqlx::query("UPDATE reward_distributions SET status = 'published', tx_hash = $2 WHERE period_start = $1")
        .bind(period.start())
        .bind(tx_hash.map(|h| h.to_vec()))
        .execute(pool)
        .await?;
    Ok(())
}

/// A period's claims in tree order: account, verified Wh, amount; with the distribution status.
///
/// # Errors
/// Database errors.
pub async fn distribution_claims(
    pool: &Pool,
    period: Period,
) -> Result<Option<(String, Vec<(Address, i64, u128)>)>, DbError> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM reward_distributions WHERE period_start = $1")
            .bind(period.start())
            .fetch_optional(pool)
            .await?;
    let Some(status) = status else { return Ok(None) };
    let rows: Vec<(Vec<u8>, i64, String)> = sqlx::query_as(
        "SELECT address, verified_wh, amount::text FROM reward_claims WHERE period_start = $1 ORDER BY idx",
    )
    .bind(period.start())
    .fetch_all(pool)
    .await?;
    let claims = rows
        .into_iter()
        .map(|(a, wh, amount)| {
            Ok((
                a.try_into().map_err(|_| DbError::Corrupt("reward_claims.address".into()))?,
                wh,
                amount.parse().map_err(|_| DbError::Corrupt("reward_claims.amount".into()))?,
            ))
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Some((status, claims)))
}

/// Settled periods (after `since`) whose latest revision still has lines waiting for metering
/// (flagged or missing), with that revision, oldest first.
///
/// # Errors
/// Database errors.
pub async fn periods_awaiting_data(pool: &Pool, since: Period) -> Result<Vec<(Period, i32)>, DbError> {
    let rows: Vec<(DateTime<Utc>, i32)> = sqlx::query_as(
        "SELECT s.period_start, s.revision FROM settlements s
         WHERE s.period_start > $1
           AND s.revision = (SELECT max(revision) FROM settlements x WHERE x.period_start = s.period_start)
           AND EXISTS (SELECT 1 FROM settlement_lines l
                       WHERE l.period_start = s.period_start AND l.revision = s.revision AND l.status <> 'metered')
         ORDER BY s.period_start",
    )
    .bind(since.start())
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(|(p, r)| Ok((period_of(p)?, r))).collect()
}

/// A revision's lines, in tree order.
///
/// # Errors
/// Database errors; undecodable lines.
pub async fn revision_lines(pool: &Pool, period: Period, revision: i32) -> Result<Vec<Line>, DbError> {
    let lines: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT line FROM settlement_lines WHERE period_start = $1 AND revision = $2 ORDER BY idx",
    )
    .bind(period.start())
    .bind(revision)
    .fetch_all(pool)
    .await?;
    lines
        .iter()
        .map(|b| Line::decode(b).map_err(|e| DbError::Corrupt(format!("settlement line: {e}"))))
        .collect()
}

/// Every ledger entry of a period, all revisions.
///
/// # Errors
/// Database errors; unknown account or kind names.
pub async fn period_postings(
    pool: &Pool,
    period: Period,
) -> Result<Vec<gridmesh_settlement::Posting>, DbError> {
    let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
        "SELECT from_account, to_account, amount, kind FROM ledger_entries WHERE period_start = $1 ORDER BY id",
    )
    .bind(period.start())
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(from, to, amount, kind)| {
            let acc = |n: &str| {
                gridmesh_settlement::Account::parse(n)
                    .ok_or_else(|| DbError::Corrupt(format!("ledger account {n:?}")))
            };
            Ok(gridmesh_settlement::Posting {
                from: acc(&from)?,
                to: acc(&to)?,
                amount,
                kind: gridmesh_settlement::PostingKind::parse(&kind)
                    .ok_or_else(|| DbError::Corrupt(format!("ledger kind {kind:?}")))?,
            })
        })
        .collect()
}

/// Stores revision `revision` of a period: its lines and `entries` (for revision 1 the
/// settlement's postings, later the adjusting entries). Returns false when that revision exists
/// already (another replica).
///
/// # Errors
/// Database errors; nothing is written then.
pub async fn store_adjustment(
    pool: &Pool,
    s: &gridmesh_settlement::Settlement,
    tariffs: &Tariffs,
    revision: i32,
    entries: &[gridmesh_settlement::Posting],
) -> Result<bool, DbError> {
    let mut tx = pool.begin().await?;
    let count = |n: usize| {
        i32::try_from(n).map_err(|_| DbError::Invalid { field: "lines", reason: "too many".into() })
    };
    let inserted = sqlx::query(
        "INSERT INTO settlements (period_start, revision, line_count, total_wh, root, tariffs)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(s.period.start())
    .bind(revision)
    .bind(count(s.lines.len())?)
    .bind(s.total_wh)
    .bind(&s.root()[..])
    .bind(serde_json::to_value(tariffs).map_err(|e| DbError::Corrupt(e.to_string()))?)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    let status = |l: &Line| match l.status {
        LineStatus::Metered => "metered",
        LineStatus::Flagged => "flagged",
        LineStatus::Missing => "missing",
    };
    sqlx::query(
        "INSERT INTO settlement_lines (period_start, revision, site_id, idx, status, net_amount, line)
         SELECT $1, $2, * FROM UNNEST($3::uuid[], $4::int4[], $5::text[], $6::bigint[], $7::bytea[])",
    )
    .bind(s.period.start())
    .bind(revision)
    .bind(s.lines.iter().map(|l| l.site.0).collect::<Vec<_>>())
    .bind((0..s.lines.len()).map(count).collect::<Result<Vec<_>, _>>()?)
    .bind(s.lines.iter().map(status).collect::<Vec<_>>())
    .bind(s.lines.iter().map(|l| l.net_amount).collect::<Vec<_>>())
    .bind(s.lines.iter().map(Line::encode).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_entries (period_start, revision, from_account, to_account, amount, kind)
         SELECT $1, $2, * FROM UNNEST($3::text[], $4::text[], $5::bigint[], $6::text[])",
    )
    .bind(s.period.start())
    .bind(revision)
    .bind(entries.iter().map(|p| p.from.name()).collect::<Vec<_>>())
    .bind(entries.iter().map(|p| p.to.name()).collect::<Vec<_>>())
    .bind(entries.iter().map(|p| p.amount).collect::<Vec<_>>())
    .bind(entries.iter().map(|p| p.kind.as_str()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// A device key to mirror on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainKey {
    /// The key's row.
    pub key_id: Uuid,
    /// Its agent.
    pub agent: gridmesh_core::AgentId,
    /// The agent's site.
    pub site: SiteId,
    /// The ed25519 public key.
    pub public_key: [u8; 32],
}

/// Keys to register on chain (active, not registered yet) and keys to revoke there (revoked
/// here, registered there, not revoked there), each oldest first.
///
/// # Errors
/// Database errors.
pub async fn chain_keys_due(pool: &Pool) -> Result<(Vec<ChainKey>, Vec<ChainKey>), DbError> {
    type Row = (Uuid, Uuid, Uuid, Vec<u8>);
    let to_key = |(key_id, agent, site, pk): Row| {
        Ok(ChainKey {
            key_id,
            agent: gridmesh_core::AgentId(agent),
            site: SiteId(site),
            public_key: pk.try_into().map_err(|_| DbError::Corrupt("agent_keys.public_key".into()))?,
        })
    };
    let register: Vec<Row> = sqlx::query_as(
        "SELECT k.id, k.agent_id, a.site_id, k.public_key FROM agent_keys k JOIN agents a ON a.id = k.agent_id
         LEFT JOIN chain_agent_keys c ON c.key_id = k.id
         WHERE k.revoked_at IS NULL AND c.registered_tx IS NULL ORDER BY k.enrolled_at LIMIT 100",
    )
    .fetch_all(pool)
    .await?;
    let revoke: Vec<Row> = sqlx::query_as(
        "SELECT k.id, k.agent_id, a.site_id, k.public_key FROM agent_keys k JOIN agents a ON a.id = k.agent_id
         JOIN chain_agent_keys c ON c.key_id = k.id
         WHERE k.revoked_at IS NOT NULL AND c.registered_tx IS NOT NULL AND c.revoked_tx IS NULL
         ORDER BY k.revoked_at LIMIT 100",
    )
    .fetch_all(pool)
    .await?;
    Ok((
        register.into_iter().map(to_key).collect::<Result<_, DbError>>()?,
        revoke.into_iter().map(to_key).collect::<Result<_, DbError>>()?,
    ))
}

/// Records that a key was registered (or revoked) on chain by `tx` (all zeros when it was
/// found there already).
///
/// # Errors
/// Database errors.
pub async fn mark_chain_key(pool: &Pool, key_id: Uuid, tx: [u8; 32], revoked: bool) -> Result<(), DbError> {
    let sql = if revoked {
        "INSERT INTO chain_agent_keys (key_id, registered_tx, revoked_tx) VALUES ($1, $2, $2)
         ON CONFLICT (key_id) DO UPDATE SET revoked_tx = EXCLUDED.revoked_tx, updated_at = now()"
    } else {
        "INSERT INTO chain_agent_keys (key_id, registered_tx) VALUES ($1, $2)
         ON CONFLICT (key_id) DO UPDATE SET registered_tx = EXCLUDED.registered_tx, updated_at = now()"
    };
    sqlx::query(sql).bind(key_id).bind(&tx[..]).execute(pool).await?;
    Ok(())
}
