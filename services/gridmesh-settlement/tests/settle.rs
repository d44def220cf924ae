//! Settlement: money per site, a ledger that always balances, lines that encode canonically and
//! prove their inclusion, rewards within the emission.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;

use gridmesh_core::{Period, SiteId, WattHours};
use gridmesh_settlement::merkle::{fold, leaf};
use gridmesh_settlement::rewards::{INITIAL_PER_PERIOD, distribute, emission_for};
use gridmesh_settlement::{
    Account, LINE_LEN, Line, LineError, LineStatus, Metering, PeriodInput, PostingKind, SiteInput, Tariffs,
    TradeInput, settle,
};
use proptest::prelude::*;

fn site(n: u8) -> SiteId {
    SiteId::from_bytes([n; 16])
}

fn period(s: &str) -> Period {
    Period::starting_at(s.parse().unwrap()).unwrap()
}

const TARIFFS: Tariffs = Tariffs { import_price: 30, feed_in_price: 8, grid_fee_per_kwh: 10, daily_fee: 40 };

fn measured(imported: i64, exported: i64) -> Metering {
    Metering::Measured { imported: WattHours(imported), exported: WattHours(exported) }
}

#[test]
fn trades_settle_against_metered_delivery() {
    let p = period("2026-12-01T12:00:00Z");
    let input = PeriodInput {
        period: p,
        tariffs: TARIFFS,
        sites: vec![
            // Seller: sold 500, delivered 600 (100 Wh long).
            SiteInput { site: site(1), metering: measured(0, 600) },
            // Buyer: bought 500, drew 700 (200 Wh short).
            SiteInput { site: site(2), metering: measured(700, 0) },
            // Flagged: its trade settles, the rest waits.
            SiteInput { site: site(3), metering: Metering::Flagged },
        ],
        trades: vec![
            TradeInput {
                seller: site(1),
                buyer: site(2),
                energy: WattHours(500),
                seller_price: 20,
                buyer_price: 20,
                grid_fee_per_kwh: 3,
            },
            TradeInput {
                seller: site(3),
                buyer: site(2),
                energy: WattHours(1),
                seller_price: 20,
                buyer_price: 21,
                grid_fee_per_kwh: 0,
            },
        ],
    };
    let s = settle(&input).unwrap();
    let line = |n: u8| *s.lines.iter().find(|l| l.site == site(n)).unwrap();
    let seller = line(1);
    assert_eq!((seller.sold_wh, seller.imbalance_wh, seller.market_received), (500, 100, 10));
    assert_eq!(seller.imbalance_amount, 1, "100 Wh at 8/kWh is 0.8, rounded to 1");
    assert_eq!(seller.net_amount, 11);
    let buyer = line(2);
    // 500 + 1 Wh bought: 10 (500 at 20) + 0 (1 Wh at 21 rounds to 0); fee 500 Wh at 3 = 1.5 → 2;
    // 199 Wh short at 30 = 5.97 → 6; grid fee on 700 Wh at 10 = 7.
    assert_eq!((buyer.bought_wh, buyer.imbalance_wh), (501, -199));
    assert_eq!(buyer.market_paid, 10);
    assert_eq!(buyer.imbalance_amount, -6);
    assert_eq!(buyer.network_fees, 2 + 7);
    assert_eq!(buyer.net_amount, -25);
    let flagged = line(3);
    assert_eq!((flagged.status, flagged.imbalance_wh, flagged.imbalance_amount), (LineStatus::Flagged, 0, 0));
    assert_eq!(s.total_wh, 1_300);
    assert_eq!(s.lines.iter().map(|l| l.daily_fee).sum::<i64>(), 0, "not the day's first period");

    // Each line's proof folds to the root; one changed byte does not.
    for l in &s.lines {
        let (_, stored, proof) = s.proof_for(l.site).unwrap();
        assert_eq!(fold(stored.leaf(), &proof), s.root());
        let mut bytes = stored.encode();
        bytes[40] ^= 1;
        assert_ne!(fold(leaf(&bytes), &proof), s.root());
    }
}

#[test]
fn the_daily_fee_falls_in_the_first_period_of_the_utc_day() {
    let input = PeriodInput {
        period: period("2026-12-01T00:00:00Z"),
        tariffs: TARIFFS,
        sites: vec![SiteInput { site: site(1), metering: Metering::Missing }],
        trades: vec![],
    };
    let s = settle(&input).unwrap();
    assert_eq!(
        (s.lines[0].daily_fee, s.lines[0].net_amount, s.lines[0].status),
        (40, -40, LineStatus::Missing)
    );
}

#[test]
fn a_site_whose_numbers_overflow_is_flagged_and_the_others_settle() {
    let input = PeriodInput {
        period: period("2026-12-01T12:00:00Z"),
        tariffs: TARIFFS,
        sites: vec![
            // A counter that jumped to near i64::MAX: its own numbers fit, the period's total not.
            SiteInput { site: site(1), metering: measured(0, i64::MAX - 10) },
            // Import plus export leave the 64-bit range on their own.
            SiteInput { site: site(2), metering: measured(i64::MAX, 1) },
            SiteInput { site: site(3), metering: measured(700, 0) },
        ],
        trades: vec![TradeInput {
            seller: site(1),
            buyer: site(3),
            energy: WattHours(500),
            seller_price: 20,
            buyer_price: 20,
            grid_fee_per_kwh: 0,
        }],
    };
    let s = settle(&input).unwrap();
    let line = |n: u8| *s.lines.iter().find(|l| l.site == site(n)).unwrap();
    for n in [1, 2] {
        let l = line(n);
        assert_eq!(
            (l.status, l.imported_wh, l.exported_wh, l.imbalance_wh, l.imbalance_amount, l.network_fees),
            (LineStatus::Flagged, 0, 0, 0, 0, 0),
            "site {n}"
        );
    }
    // The flagged seller's trade still settles: 500 Wh at 20 is 10.
    assert_eq!((line(1).sold_wh, line(1).market_received, line(1).net_amount), (500, 10, 10));
    // The honest site settles in full: 10 for its purchase, 200 Wh short at 30 = 6, grid fee on
    // 700 Wh at 10 = 7.
    let honest = line(3);
    assert_eq!(honest.status, LineStatus::Metered);
    assert_eq!((honest.imported_wh, honest.imbalance_wh, honest.net_amount), (700, -200, -23));
    assert_eq!(s.total_wh, 700);
    // No metered money for the flagged sites, and the ledger still balances.
    let flagged = [Account::Site(site(1)), Account::Site(site(2))];
    assert!(s.postings.iter().all(|p| {
        !matches!(p.kind, PostingKind::ImbalanceLong | PostingKind::ImbalanceShort | PostingKind::GridFee)
            || !(flagged.contains(&p.from) || flagged.contains(&p.to))
    }));
    let mut balance: BTreeMap<Account, i64> = BTreeMap::new();
    for p in &s.postings {
        *balance.entry(p.from).or_default() -= p.amount;
        *balance.entry(p.to).or_default() += p.amount;
    }
    for l in &s.lines {
        assert_eq!(balance.get(&Account::Site(l.site)).copied().unwrap_or(0), l.net_amount);
    }
}

#[test]
fn bad_input_is_refused_by_name() {
    let mut input = PeriodInput {
        period: period("2026-12-01T00:15:00Z"),
        tariffs: TARIFFS,
        sites: vec![SiteInput { site: site(1), metering: Metering::Missing }; 2],
        trades: vec![],
    };
    assert_eq!(settle(&input).unwrap_err().to_string(), format!("site {} appears twice", site(1)));
    input.sites.pop();
    input.trades.push(TradeInput {
        seller: site(1),
        buyer: site(9),
        energy: WattHours(1),
        seller_price: 1,
        buyer_price: 1,
        grid_fee_per_kwh: 0,
    });
    assert!(settle(&input).unwrap_err().to_string().contains("not among the sites settled"));
    input.trades.clear();
    input.tariffs.import_price = -1;
    assert_eq!(settle(&input).unwrap_err().to_string(), "import_price must not be negative");
}

#[test]
fn lines_refuse_bytes_that_are_not_lines() {
    let line = Line {
        period: period("2026-12-01T00:15:00Z"),
        site: site(7),
        status: LineStatus::Metered,
        imported_wh: 1,
        exported_wh: 2,
        sold_wh: 3,
        bought_wh: 4,
        imbalance_wh: -5,
        market_received: 6,
        market_paid: 7,
        imbalance_amount: -8,
        network_fees: 9,
        daily_fee: 10,
        net_amount: -11,
    };
    let bytes = line.encode();
    assert_eq!(bytes.len(), LINE_LEN);
    assert_eq!(Line::decode(&bytes).unwrap(), line);
    assert_eq!(Line::decode(&bytes[1..]), Err(LineError::Length(LINE_LEN - 1)));
    let mut v = bytes.clone();
    v[0] = 9;
    assert_eq!(Line::decode(&v), Err(LineError::Version(9)));
    let mut s = bytes.clone();
    s[25] = 7;
    assert_eq!(Line::decode(&s), Err(LineError::Status(7)));
}

#[test]
fn emission_halves_every_year_and_rewards_stay_within_it() {
    let genesis = period("2026-01-01T00:00:00Z");
    assert_eq!(emission_for(genesis.offset(-1), genesis), 0);
    assert_eq!(emission_for(genesis, genesis), INITIAL_PER_PERIOD);
    assert_eq!(emission_for(genesis.offset(35_040), genesis), INITIAL_PER_PERIOD / 2);
    let p = period("2026-12-01T12:00:00Z");
    let input = PeriodInput {
        period: p,
        tariffs: TARIFFS,
        sites: vec![
            SiteInput { site: site(1), metering: measured(0, 300) },
            SiteInput { site: site(2), metering: measured(0, 1_000) },
            SiteInput { site: site(3), metering: measured(900, 0) },
        ],
        trades: vec![
            TradeInput {
                seller: site(1),
                buyer: site(3),
                energy: WattHours(300),
                seller_price: 10,
                buyer_price: 10,
                grid_fee_per_kwh: 0,
            },
            TradeInput {
                seller: site(2),
                buyer: site(3),
                energy: WattHours(600),
                seller_price: 10,
                buyer_price: 10,
                grid_fee_per_kwh: 0,
            },
        ],
    };
    let s = settle(&input).unwrap();
    let e = emission_for(p, genesis);
    let d = distribute(p, e, &s.lines, |id| Some([id.as_bytes()[0]; 20]));
    assert_eq!(d.rewards.len(), 2);
    assert_eq!(d.rewards[0].amount, e / 3, "300 of 900 verified Wh");
    assert_eq!(d.rewards[1].amount, e * 2 / 3);
    assert!(d.total <= e);
    let (r, proof) = d.proof_for(&[2; 20]).unwrap();
    assert_eq!(fold(r.leaf(p), &proof), d.tree.root());
}

fn arb_input() -> impl Strategy<Value = PeriodInput> {
    let sites = 1_u8..12;
    (sites, any::<u64>(), 0_usize..30).prop_map(|(n, seed, trades)| {
        let mut x = seed | 1;
        let mut next = move |m: i64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as i64
        };
        let sites: Vec<SiteInput> = (0..n)
            .map(|k| SiteInput {
                site: site(k),
                metering: match next(4) {
                    0 => Metering::Flagged,
                    1 => Metering::Missing,
                    _ => measured(next(5_000), next(5_000)),
                },
            })
            .collect();
        let trades = (0..trades)
            .map(|_| TradeInput {
                seller: site(next(i64::from(n)) as u8),
                buyer: site(next(i64::from(n)) as u8),
                energy: WattHours(1 + next(3_000)),
                seller_price: next(60),
                buyer_price: next(60),
                grid_fee_per_kwh: next(5),
            })
            .collect();
        PeriodInput {
            period: Period::from_index(1_900_000 + next(200)).unwrap(),
            tariffs: Tariffs {
                import_price: next(50),
                feed_in_price: next(20),
                grid_fee_per_kwh: next(10),
                daily_fee: next(100),
            },
            sites,
            trades,
        }
    })
}

proptest! {
    #[test]
    fn the_ledger_balances_and_lines_are_the_sites_share(input in arb_input()) {
        let s = settle(&input).unwrap();
        let mut balance: BTreeMap<Account, i64> = BTreeMap::new();
        for p in &s.postings {
            prop_assert!(p.amount > 0);
            *balance.entry(p.from).or_default() -= p.amount;
            *balance.entry(p.to).or_default() += p.amount;
        }
        prop_assert_eq!(balance.values().sum::<i64>(), 0);
        for l in &s.lines {
            prop_assert_eq!(balance.get(&Account::Site(l.site)).copied().unwrap_or(0), l.net_amount);
            prop_assert_eq!(Line::decode(&l.encode()).unwrap(), *l);
        }
        // Settling again, with sites and trades in another order, gives the same root.
        let mut again = input.clone();
        again.sites.reverse();
        prop_assert_eq!(settle(&again).unwrap().root(), s.root());
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(line) = Line::decode(&bytes) {
            prop_assert_eq!(line.encode(), bytes);
        }
    }
}

proptest! {
    #[test]
    fn adjustments_take_any_ledger_to_the_new_settlement(first in arb_input(), second in arb_input()) {
        // Old postings from one settlement, the target from another of the same sites.
        let old = settle(&first).unwrap();
        let mut later = second.clone();
        later.sites = first.sites.iter().map(|s| SiteInput { site: s.site, metering: Metering::Missing }).collect();
        later.trades.retain(|t| first.sites.iter().any(|s| s.site == t.seller) && first.sites.iter().any(|s| s.site == t.buyer));
        let new = settle(&later).unwrap();
        let adj = gridmesh_settlement::adjustments(&old.postings, &new.postings);
        let net = |ps: &[gridmesh_settlement::Posting]| {
            let mut m: BTreeMap<Account, i64> = BTreeMap::new();
            for p in ps {
                *m.entry(p.from).or_default() -= p.amount;
                *m.entry(p.to).or_default() += p.amount;
            }
            m.retain(|_, v| *v != 0);
            m
        };
        let mut all = old.postings.clone();
        all.extend(adj.iter().copied());
        prop_assert_eq!(net(&all), net(&new.postings));
        prop_assert!(adj.iter().all(|p| p.amount > 0 && p.from != p.to));
        prop_assert!(gridmesh_settlement::adjustments(&new.postings, &new.postings).is_empty());
    }
}
