//! End to end on a real PostgreSQL and a real anvil: a period is cleared, settled and anchored;
//! a line's proof verifies through the CLI and through the contract; one changed byte fails;
//! every failure of `gridmesh verify` has its own message and exit code; the ledger balances;
//! a household claims its reward once; anvil restarted mid-anchoring gives exactly one anchor.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on a broken set-up")]

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{Server, mqtt_url};
use gridmesh_chain::{Chain, parse_key};
use gridmesh_core::{GeoPoint, Period, Reading, ReadingFlags, WattHours};
use gridmesh_db::{IngestRow, NewOrder};
use gridmesh_fixtures::provision;
use gridmesh_loadgen::neighbourhood::SimHome;
use gridmesh_loadgen::neighbourhood::Speaker;
use gridmesh_market::{GridFees, Network, Rules, Side};
use gridmesh_server::jobs::anchor::{ChainLink, DeploymentFile, anchor_due};
use gridmesh_server::jobs::settlement::{SettlementSettings, settle_due};
use gridmesh_testkit::{ANVIL_KEY_0, ANVIL_KEY_1, Anvil};
use sqlx::PgPool;

/// Readings once a minute from the start of `from` to five minutes into `to`; home 0 exports
/// 20 Wh a minute, home 1 imports 30 Wh a minute.
async fn meter(pool: &PgPool, homes: &mut [SimHome], from: Period, to: Period) {
    let minutes = (to.start() - from.start()).num_minutes() + 5;
    for (i, home) in homes.iter_mut().enumerate() {
        let readings: Vec<Reading> = (0..minutes)
            .map(|m| Reading {
                at: from.start() + chrono::Duration::minutes(m),
                grid_import: Some(WattHours(1_000 + if i == 1 { 30 * m } else { 0 })),
                grid_export: Some(WattHours(1_000 + if i == 0 { 20 * m } else { 0 })),
                ..Reading::default()
            })
            .collect();
        let rows: Vec<IngestRow<'_>> = readings
            .iter()
            .enumerate()
            .map(|(k, r)| IngestRow {
                agent: home.agent,
                site: home.site,
                seq: home.next_seq + k as u64,
                reading: r,
                flags: ReadingFlags::NONE,
            })
            .collect();
        gridmesh_db::commit_ingest(pool, &rows).await.unwrap();
        home.next_seq += readings.len() as u64;
    }
}

/// Two homes (one owner) metered over `p - 1 ..= p + 2`, backdated so they existed then, and
/// one trade in `p`: home 0 sells 200 Wh to home 1.
async fn cleared_period(pool: &PgPool, p: Period) -> Vec<SimHome> {
    let mut homes =
        provision(pool, "anchor lane", 2, GeoPoint { lat: 52.5, lon: 13.4 }, Speaker::Loadgen).await.unwrap();
    sqlx::query(
        "UPDATE sites SET created_at = now() - interval '2 days', assigned_at = now() - interval '2 days'",
    )
    .execute(pool)
    .await
    .unwrap();
    meter(pool, &mut homes, p.prev(), p.offset(2)).await;
    let site0 = gridmesh_db::get_site(pool, homes[0].site).await.unwrap().unwrap();
    let owner = site0.owner;
    for (home, side, price) in [(&homes[0], Side::Sell, 10), (&homes[1], Side::Buy, 20)] {
        let o = NewOrder {
            site: home.site,
            zone: site0.feeder.unwrap(),
            period: p,
            side,
            price,
            energy: WattHours(200),
            placed_by: owner,
            strategy: None,
        };
        gridmesh_db::place_order(pool, &o, None).await.unwrap();
    }
    let network =
        Network::from_topology(&gridmesh_db::load_topology(pool).await.unwrap(), GridFees::default())
            .unwrap();
    for period in [p, p.next()] {
        let clear = |book: &[_]| gridmesh_market::clear_hashed(&network, book, Rules::default());
        gridmesh_db::clear_period(pool, period, "test", clear).await.unwrap().unwrap();
    }
    homes
}

async fn link(anvil: &Anvil, genesis: Period, confirmations: u64, timeout: Duration) -> ChainLink {
    let chain = Chain::connect(&anvil.url(), Some(parse_key(ANVIL_KEY_0).unwrap())).await.unwrap();
    let deployment = chain.deploy(genesis).await.unwrap();
    ChainLink {
        chain,
        deployment: DeploymentFile { deployment, genesis_period: genesis.index() },
        confirmations,
        tx_timeout: timeout,
    }
}

async fn gridmesh(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gridmesh")).args(args).output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, body: &str) -> String {
    let path = std::env::temp_dir().join(format!("gridmesh-{}-{name}", uuid::Uuid::new_v4()));
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn a_period_is_settled_anchored_verified_and_rewarded(pool: PgPool) {
    let p = Period::containing(Utc::now()).offset(-6);
    let homes = cleared_period(&pool, p).await;
    let anvil = Anvil::start(None).await;
    let link = link(&anvil, p.offset(-1), 1, Duration::from_secs(30)).await;
    let settings = SettlementSettings::default();
    let genesis = Some(link.deployment.genesis().unwrap());
    let owner = gridmesh_db::get_site(&pool, homes[0].site).await.unwrap().unwrap().owner;
    let claimer = parse_key(ANVIL_KEY_1).unwrap().address();
    gridmesh_db::set_reward_address(&pool, owner, claimer.into_array()).await.unwrap();

    // Only p is due at first: p + 1 is left settled but unanchored below.
    let early = p.end() + settings.grace + chrono::Duration::seconds(1);
    assert_eq!(settle_due(&pool, &settings, genesis, early).await.unwrap(), vec![p]);
    assert!(settle_due(&pool, &settings, genesis, early).await.unwrap().is_empty(), "settled once");
    assert_eq!(anchor_due(&pool, &link).await.unwrap(), vec![p]);
    assert!(anchor_due(&pool, &link).await.unwrap().is_empty(), "anchored once");
    assert_eq!(settle_due(&pool, &settings, genesis, Utc::now()).await.unwrap(), vec![p.next()]);
    let contract = link.deployment.deployment.anchor;
    assert_eq!(link.chain.anchor_events(contract, p).await.unwrap(), 1);

    // The ledger balances to zero; the seller got the trade (15/kWh) and its 100 Wh extra.
    let balances = gridmesh_db::ledger_balances(&pool, p).await.unwrap();
    assert_eq!(balances.iter().map(|b| b.1).sum::<i64>(), 0, "{balances:?}");

    let server = Server::start(pool.clone(), &mqtt_url()).await;
    let (_, operator) = {
        let u = gridmesh_db::create_user(
            &pool,
            &gridmesh_db::NewUser { name: "ops".into(), email: None, role: gridmesh_core::Role::Operator },
        )
        .await
        .unwrap();
        (u.id, format!("Bearer {}", gridmesh_db::issue_token(&pool, u.id, "", None).await.unwrap().1))
    };
    let api = server.client();
    let get = |path: String| {
        let operator = operator.clone();
        let api = api.clone();
        async move { api.get(&path).auth(&operator).await }
    };
    let summary = get(format!("/v1/settlements/{p}")).await;
    assert_eq!(summary.status, 200, "{}", summary.body);
    assert_eq!(summary.json()["anchor"]["status"], "confirmed");
    assert_eq!(summary.json()["line_count"], 2);
    let doc = get(format!("/v1/settlements/{p}/sites/{}", homes[0].site)).await;
    assert_eq!(doc.status, 200, "{}", doc.body);
    let doc_json = doc.json();
    assert_eq!(doc_json["decoded"]["sold_wh"], 200);
    assert_eq!(doc_json["decoded"]["market_received"], 3);
    assert_eq!(doc_json["decoded"]["imbalance_wh"], 100);

    // The contract's own view agrees, and refuses a changed line.
    let line = hex::decode(doc_json["line"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let proof: Vec<[u8; 32]> = doc_json["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex::decode(h.as_str().unwrap().trim_start_matches("0x")).unwrap().try_into().unwrap())
        .collect();
    assert!(link.chain.verify_line(contract, p, &line, &proof).await.unwrap());
    let mut changed = line.clone();
    changed[60] ^= 1;
    assert!(!link.chain.verify_line(contract, p, &changed, &proof).await.unwrap());

    // The CLI: included; tampered; another period; not anchored; unreachable; offline.
    let good = temp_file("good.json", &doc.body);
    let url = anvil.url();
    let (code, stdout, stderr) = gridmesh(&["verify", "--proof-file", &good, "--rpc-url", &url]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("OK:"), "{stdout}");
    let site = homes[0].site.to_string();
    let period = p.to_string();
    let (code, _, _) =
        gridmesh(&["verify", "--proof-file", &good, "--rpc-url", &url, "--site", &site, "--period", &period])
            .await;
    assert_eq!(code, 0);
    let mut tampered_json = doc_json.clone();
    tampered_json["line"] = serde_json::json!(format!("0x{}", hex::encode(&changed)));
    let tampered = temp_file("tampered.json", &tampered_json.to_string());
    let (code, _, stderr) = gridmesh(&["verify", "--proof-file", &tampered, "--rpc-url", &url]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("FAILED: the line does not match"), "{stderr}");
    let other = p.next().to_string();
    let (code, _, stderr) =
        gridmesh(&["verify", "--proof-file", &good, "--rpc-url", &url, "--period", &other]).await;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains(&format!("this proof is for period {p}, not {}", p.next())), "{stderr}");
    let unanchored = get(format!("/v1/settlements/{}/sites/{}", p.next(), homes[0].site)).await;
    assert_eq!(unanchored.status, 200, "{}", unanchored.body);
    let unanchored_file = temp_file("unanchored.json", &unanchored.body);
    let contract_hex = contract.to_string();
    let (code, _, stderr) = gridmesh(&[
        "verify",
        "--proof-file",
        &unanchored_file,
        "--rpc-url",
        &url,
        "--contract",
        &contract_hex,
    ])
    .await;
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("has no root in contract"), "{stderr}");
    let (code, _, stderr) =
        gridmesh(&["verify", "--proof-file", &good, "--rpc-url", "http://127.0.0.1:9"]).await;
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("cannot reach the RPC endpoint"), "{stderr}");
    let root = doc_json["root"].as_str().unwrap();
    assert_eq!(gridmesh(&["verify", "--proof-file", &good, "--root", root]).await.0, 0);
    assert_eq!(gridmesh(&["verify", "--proof-file", &tampered, "--root", root]).await.0, 2);
    let junk = temp_file("junk.json", "{\"line\": 1}");
    let (code, _, stderr) = gridmesh(&["verify", "--proof-file", &junk, "--root", root]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("not a proof document"), "{stderr}");

    // Rewards: the seller's 200 verified Wh earn the period's whole emission, claimed once.
    let claim = get(format!("/v1/rewards/{p}/claims/{claimer}")).await;
    assert_eq!(claim.status, 200, "{}", claim.body);
    let c = claim.json();
    assert_eq!(c["status"], "published");
    assert_eq!(c["amount"], "100000000000000000000");
    let proof: Vec<[u8; 32]> = c["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex::decode(h.as_str().unwrap().trim_start_matches("0x")).unwrap().try_into().unwrap())
        .collect();
    let household = Chain::connect(&url, Some(parse_key(ANVIL_KEY_1).unwrap())).await.unwrap();
    let d = link.deployment.deployment;
    household.claim(d.distributor, p, claimer, 100 * 10_u128.pow(18), &proof).await.unwrap();
    assert_eq!(
        household.token_balance(d.token, claimer).await.unwrap(),
        alloy::primitives::U256::from(100 * 10_u128.pow(18))
    );
    let again = household.claim(d.distributor, p, claimer, 100 * 10_u128.pow(18), &proof).await;
    assert!(again.is_err(), "a second claim must fail");
    server.stop().await;
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn late_data_adds_adjusting_entries_and_never_edits(pool: PgPool) {
    let p = Period::containing(Utc::now()).offset(-6);
    let homes = cleared_period(&pool, p).await;
    // A flagged reading in p for home 0: its line waits for review.
    let at = p.start() + chrono::Duration::minutes(7);
    sqlx::query("UPDATE telemetry SET flags = 4 WHERE site_id = $1 AND measured_at = $2")
        .bind(homes[0].site.0)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE site_period_counters SET flagged = 1, flags = 4 WHERE site_id = $1 AND period_start = $2",
    )
    .bind(homes[0].site.0)
    .bind(p.start())
    .execute(&pool)
    .await
    .unwrap();
    let settings = SettlementSettings::default();
    let early = p.end() + settings.grace + chrono::Duration::seconds(1);
    settle_due(&pool, &settings, None, early).await.unwrap();
    let first = gridmesh_db::revision_lines(&pool, p, 1).await.unwrap();
    assert_eq!(first[0].status, gridmesh_settlement::LineStatus::Flagged);
    let before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_entries").fetch_one(&pool).await.unwrap();
    // Nothing changed yet: no new revision.
    assert!(
        gridmesh_server::jobs::settlement::adjust_due(&pool, &settings, Utc::now()).await.unwrap().is_empty()
    );

    // An operator reviews the flags: the line is metered now, settled by adjusting entries.
    gridmesh_db::resolve_flags(&pool, homes[0].site, p.start(), p.end()).await.unwrap();
    assert_eq!(
        gridmesh_server::jobs::settlement::adjust_due(&pool, &settings, Utc::now()).await.unwrap(),
        vec![p]
    );
    assert!(
        gridmesh_server::jobs::settlement::adjust_due(&pool, &settings, Utc::now()).await.unwrap().is_empty()
    );
    let second = gridmesh_db::revision_lines(&pool, p, 2).await.unwrap();
    assert_eq!(second[0].status, gridmesh_settlement::LineStatus::Metered);
    assert_eq!(second[0].imbalance_wh, 100);
    let after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_entries").fetch_one(&pool).await.unwrap();
    assert!(after > before, "adjustments are new entries");
    assert_eq!(
        gridmesh_db::revision_lines(&pool, p, 1).await.unwrap(),
        first,
        "revision 1 is kept as it was"
    );
    let balances = gridmesh_db::ledger_balances(&pool, p).await.unwrap();
    assert_eq!(balances.iter().map(|b| b.1).sum::<i64>(), 0);
    let site_balance = balances.iter().find(|b| b.0 == format!("site:{}", homes[0].site)).unwrap().1;
    assert_eq!(site_balance, second[0].net_amount, "the ledger now says what the new line says");
    // The ledger is append-only.
    let edit = sqlx::query("UPDATE ledger_entries SET amount = amount + 1").execute(&pool).await;
    assert!(edit.unwrap_err().to_string().contains("never changed"));
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn anvil_restarted_mid_anchoring_gives_exactly_one_anchor(pool: PgPool) {
    let p = Period::containing(Utc::now()).offset(-6);
    cleared_period(&pool, p).await;
    let settings = SettlementSettings::default();
    let early = p.end() + settings.grace + chrono::Duration::seconds(1);
    assert_eq!(settle_due(&pool, &settings, None, early).await.unwrap(), vec![p]);
    let state = std::env::temp_dir().join(format!("gridmesh-anvil-{}.json", uuid::Uuid::new_v4()));
    let mut anvil = Anvil::start(Some(state.clone())).await;
    // Two confirmations on a node that mines only on demand: the anchor is mined, but its
    // second confirmation never comes, so the job gives up waiting, mid-anchoring.
    let waiting = link(&anvil, p, 2, Duration::from_secs(2)).await;
    assert!(anchor_due(&pool, &waiting).await.unwrap().is_empty());
    let record = gridmesh_db::anchor_of(&pool, p).await.unwrap().unwrap();
    assert_eq!(record.status, "pending");
    assert!(record.last_error.unwrap().contains("no receipt"));

    // The node restarts from its saved state; the job finds the anchor and does not resend.
    anvil.restart().await;
    let mut resumed = waiting.clone();
    resumed.chain = Chain::connect(&anvil.url(), Some(parse_key(ANVIL_KEY_0).unwrap())).await.unwrap();
    resumed.confirmations = 1;
    assert_eq!(anchor_due(&pool, &resumed).await.unwrap(), vec![p]);
    let contract = resumed.deployment.deployment.anchor;
    assert_eq!(resumed.chain.anchor_events(contract, p).await.unwrap(), 1);

    // Next period: the node is down when the job runs; nothing is lost, it anchors on return.
    settle_due(&pool, &settings, None, Utc::now()).await.unwrap();
    anvil.stop(true).await;
    assert!(anchor_due(&pool, &resumed).await.unwrap().is_empty());
    let record = gridmesh_db::anchor_of(&pool, p.next()).await.unwrap().unwrap();
    assert!(record.last_error.unwrap().contains("cannot reach"), "unreachable recorded");
    anvil.restart().await;
    assert_eq!(anchor_due(&pool, &resumed).await.unwrap(), vec![p.next()]);
    assert_eq!(resumed.chain.anchor_events(contract, p.next()).await.unwrap(), 1);
    assert_eq!(resumed.chain.anchor_events(contract, p).await.unwrap(), 1);
    assert_eq!(gridmesh_db::anchor_of(&pool, p).await.unwrap().unwrap().status, "confirmed");
    let _ = std::fs::remove_file(state);
}

#[sqlx::test(migrator = "gridmesh_db::MIGRATOR")]
async fn device_keys_are_mirrored_to_the_meter_registry(pool: PgPool) {
    let homes = provision(&pool, "registry road", 2, GeoPoint { lat: 52.5, lon: 13.4 }, Speaker::Loadgen)
        .await
        .unwrap();
    let anvil = Anvil::start(None).await;
    let link = link(&anvil, Period::containing(Utc::now()), 1, Duration::from_secs(30)).await;
    let registry = link.deployment.deployment.registry;
    let agent = *homes[0].agent.as_bytes();
    let first = *homes[0].key.public().as_bytes();
    assert_eq!(gridmesh_server::jobs::anchor::sync_registry(&pool, &link).await.unwrap(), 2);
    assert_eq!(link.chain.registry_key(registry, agent).await.unwrap(), Some((first, true)));
    assert_eq!(gridmesh_server::jobs::anchor::sync_registry(&pool, &link).await.unwrap(), 0, "nothing twice");

    // Rotation: the old key is revoked on chain, then the new one registered.
    let rotated = [7_u8; 32];
    gridmesh_db::enroll_key(&pool, homes[0].agent, rotated).await.unwrap();
    assert_eq!(gridmesh_server::jobs::anchor::sync_registry(&pool, &link).await.unwrap(), 2);
    assert_eq!(link.chain.registry_key(registry, agent).await.unwrap(), Some((rotated, true)));

    // Revocation.
    gridmesh_db::revoke_key(&pool, homes[1].agent, "stolen").await.unwrap();
    assert_eq!(gridmesh_server::jobs::anchor::sync_registry(&pool, &link).await.unwrap(), 1);
    let (_, active) = link.chain.registry_key(registry, *homes[1].agent.as_bytes()).await.unwrap().unwrap();
    assert!(!active);
}
