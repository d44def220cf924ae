//! Clearing against a sorting reference, the optimality conditions on random networks, and
//! determinism under shuffled arrival.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use gridmesh_core::{GridNodeId, OrderId, SiteId, WattHours};
use gridmesh_market::{Clearing, Network, Order, Pricing, Rules, Side, Zone, clear};
use proptest::prelude::*;

fn zid(n: u8) -> GridNodeId {
    GridNodeId::from_bytes([n; 16])
}

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
}

fn zone(n: u8, parent: Option<u8>, imp: i64, exp: i64) -> Zone {
    Zone {
        id: zid(n),
        parent: parent.map(zid),
        import_limit: WattHours(imp),
        export_limit: WattHours(exp),
        fee_per_kwh: i64::from(n),
    }
}

/// A tiny deterministic generator, so one proptest seed makes one whole instance.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

fn random_orders(rng: &mut Rng, zones: &[u8], count: usize, max_price: u64) -> Vec<Order> {
    (0..count)
        .map(|k| {
            let mut id = [0_u8; 16];
            id[..8].copy_from_slice(&rng.next().to_be_bytes());
            id[8..].copy_from_slice(&(k as u64).to_be_bytes());
            Order {
                id: OrderId::from_bytes(id),
                site: SiteId::from_bytes([(k % 7) as u8; 16]),
                zone: zid(zones[rng.below(zones.len() as u64) as usize]),
                side: if rng.below(2) == 0 { Side::Buy } else { Side::Sell },
                // Few distinct prices and times: ties everywhere.
                price: rng.below(max_price),
                energy: WattHours(1 + rng.below(1_000)),
                submitted_at: t(rng.below(5)),
            }
        })
        .collect()
}

/// The textbook uniform-price double auction of one market: sort, walk, price in the middle.
fn reference(orders: &[Order]) -> (i64, Option<i64>, BTreeMap<OrderId, i64>) {
    let mut bids: Vec<&Order> = orders.iter().filter(|o| o.side == Side::Buy).collect();
    let mut offers: Vec<&Order> = orders.iter().filter(|o| o.side == Side::Sell).collect();
    bids.sort_by_key(|a| (-a.price, a.submitted_at, a.id));
    offers.sort_by_key(|a| (a.price, a.submitted_at, a.id));
    let mut filled: BTreeMap<OrderId, i64> = orders.iter().map(|o| (o.id, 0)).collect();
    let (mut i, mut j) = (0, 0);
    let (mut bi_left, mut oj_left) =
        (bids.first().map_or(0, |b| b.energy.get()), offers.first().map_or(0, |o| o.energy.get()));
    let mut volume = 0;
    while i < bids.len() && j < offers.len() && bids[i].price >= offers[j].price {
        let q = bi_left.min(oj_left);
        *filled.get_mut(&bids[i].id).unwrap() += q;
        *filled.get_mut(&offers[j].id).unwrap() += q;
        volume += q;
        bi_left -= q;
        oj_left -= q;
        if bi_left == 0 {
            i += 1;
            bi_left = bids.get(i).map_or(0, |b| b.energy.get());
        }
        if oj_left == 0 {
            j += 1;
            oj_left = offers.get(j).map_or(0, |o| o.energy.get());
        }
    }
    if orders.is_empty() {
        return (0, None, filled);
    }
    let smin = orders.iter().map(|o| o.price).min().unwrap();
    let smax = orders.iter().map(|o| o.price).max().unwrap();
    // Prices consistent with the allocation: at least every filled offer and every rejected
    // bid, at most every filled bid and every rejected offer.
    let mut lo = i64::MIN;
    let mut hi = i64::MAX;
    for o in orders {
        let f = filled[&o.id];
        match o.side {
            Side::Sell if f > 0 => lo = lo.max(o.price),
            Side::Buy if f < o.energy.get() => lo = lo.max(o.price),
            _ => {}
        }
        match o.side {
            Side::Buy if f > 0 => hi = hi.min(o.price),
            Side::Sell if f < o.energy.get() => hi = hi.min(o.price),
            _ => {}
        }
    }
    let lo = lo.max(smin).min(smax);
    let hi = hi.min(smax).max(lo);
    (volume, Some(lo + (hi - lo) / 2), filled)
}

/// Checks the LP optimality conditions (which prove welfare-optimality) and the bookkeeping.
fn check_optimal(net: &Network, orders: &[Order], c: &Clearing) {
    let price: BTreeMap<GridNodeId, Option<i64>> = c.zones.iter().map(|z| (z.zone, z.price)).collect();
    let fills: BTreeMap<OrderId, i64> = c.fills.iter().map(|f| (f.order, f.filled.get())).collect();
    for o in orders {
        let f = fills[&o.id];
        let p = price[&o.zone].expect("a zone with orders has a price");
        assert!((0..=o.energy.get()).contains(&f));
        let in_the_money = match o.side {
            Side::Buy => o.price > p,
            Side::Sell => o.price < p,
        };
        let out_of_the_money = match o.side {
            Side::Buy => o.price < p,
            Side::Sell => o.price > p,
        };
        if in_the_money {
            assert_eq!(f, o.energy.get(), "order in the money at {p} not filled: {o:?}");
        }
        if out_of_the_money {
            assert_eq!(f, 0, "order out of the money at {p} filled: {o:?}");
        }
    }
    let out: BTreeMap<GridNodeId, &gridmesh_market::ZoneOutcome> =
        c.zones.iter().map(|z| (z.zone, z)).collect();
    for z in net.zones() {
        let zo = out[&z.id];
        let inflow: i64 =
            net.zones().iter().filter(|c| c.parent == Some(z.id)).map(|c| out[&c.id].net_export.get()).sum();
        assert_eq!(
            zo.sold.get() - zo.bought.get() + inflow,
            zo.net_export.get(),
            "zone {} does not balance",
            z.id
        );
        if let Some(parent) = z.parent {
            let flow = zo.net_export.get();
            assert!(
                flow <= z.export_limit.get() && -flow <= z.import_limit.get(),
                "flow {flow} beyond limits of {z:?}"
            );
            match (zo.price, price[&parent]) {
                (Some(pc), Some(pp)) if pc < pp => {
                    assert_eq!(flow, z.export_limit.get(), "cheaper zone must export at its limit")
                }
                (Some(pc), Some(pp)) if pc > pp => {
                    assert_eq!(flow, -z.import_limit.get(), "dearer zone must import at its limit")
                }
                _ => {}
            }
        }
    }
    // Trades add up to the fills.
    let mut traded: BTreeMap<OrderId, i64> = BTreeMap::new();
    for tr in &c.trades {
        assert!(tr.energy.get() > 0);
        *traded.entry(tr.sell_order).or_default() += tr.energy.get();
        *traded.entry(tr.buy_order).or_default() += tr.energy.get();
        let fee: i64 = tr.path.iter().map(|z| net.zone(*z).unwrap().fee_per_kwh).sum();
        assert_eq!(fee, tr.grid_fee_per_kwh);
    }
    for (id, f) in &fills {
        assert_eq!(traded.get(id).copied().unwrap_or(0), *f, "trades of {id} do not add up to its fill");
    }
    let bought: i64 = c.zones.iter().map(|z| z.bought.get()).sum();
    assert_eq!(bought, c.volume.get());
    assert_eq!(c.trades.iter().map(|t| t.energy.get()).sum::<i64>(), c.volume.get());
}

fn open_network() -> Network {
    Network::new([
        zone(1, None, 0, 0),
        zone(2, Some(1), i64::MAX / 64, i64::MAX / 64),
        zone(3, Some(1), i64::MAX / 64, i64::MAX / 64),
        zone(4, Some(3), i64::MAX / 64, i64::MAX / 64),
    ])
    .unwrap()
}

fn tight_network(rng: &mut Rng) -> Network {
    Network::new([
        zone(1, None, 0, 0),
        zone(2, Some(1), rng.below(800), rng.below(800)),
        zone(3, Some(1), rng.below(2_000), rng.below(2_000)),
        zone(4, Some(3), rng.below(600), rng.below(600)),
        zone(5, Some(3), rng.below(600), rng.below(600)),
        zone(6, None, 0, 0),
        zone(7, Some(6), rng.below(300), rng.below(300)),
    ])
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn one_zone_equals_the_sorting_reference(seed in 1_u64.., count in 0_usize..80) {
        let mut rng = Rng(seed);
        let net = Network::new([zone(1, None, 0, 0)]).unwrap();
        let orders = random_orders(&mut rng, &[1], count, 30);
        let c = clear(&net, &orders, Rules::default()).unwrap();
        let (volume, price, filled) = reference(&orders);
        prop_assert_eq!(c.volume.get(), volume);
        prop_assert_eq!(c.zones[0].price, price);
        for f in &c.fills {
            prop_assert_eq!(f.filled.get(), filled[&f.order], "fill of {}", f.order);
        }
        check_optimal(&net, &orders, &c);
    }

    #[test]
    fn without_binding_limits_every_zone_clears_like_one_market(seed in 1_u64.., count in 0_usize..120) {
        let mut rng = Rng(seed);
        let net = open_network();
        let orders = random_orders(&mut rng, &[1, 2, 3, 4], count, 40);
        let c = clear(&net, &orders, Rules::default()).unwrap();
        let (volume, price, _) = reference(&orders);
        prop_assert_eq!(c.volume.get(), volume);
        for z in &c.zones {
            prop_assert_eq!(z.price, price);
            prop_assert!(!z.congested);
        }
        check_optimal(&net, &orders, &c);
    }

    #[test]
    fn binding_limits_keep_the_optimality_conditions(seed in 1_u64.., count in 0_usize..150) {
        let mut rng = Rng(seed);
        let net = tight_network(&mut rng);
        let orders = random_orders(&mut rng, &[1, 2, 3, 4, 5, 6, 7], count, 60);
        let c = clear(&net, &orders, Rules::default()).unwrap();
        check_optimal(&net, &orders, &c);
    }

    #[test]
    fn arrival_order_never_changes_a_byte(seed in 1_u64.., count in 1_usize..100) {
        let mut rng = Rng(seed);
        let net = tight_network(&mut rng);
        let mut orders = random_orders(&mut rng, &[2, 3, 4, 5, 7], count, 20);
        let rules = Rules { pricing: if seed % 2 == 0 { Pricing::PayAsBid } else { Pricing::PayAsClear }, max_price: 100 };
        let first = serde_json::to_vec(&clear(&net, &orders, rules).unwrap()).unwrap();
        for _ in 0..3 {
            // Fisher-Yates with the instance's own generator.
            for i in (1..orders.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                orders.swap(i, j);
            }
            let again = serde_json::to_vec(&clear(&net, &orders, rules).unwrap()).unwrap();
            prop_assert_eq!(&first, &again);
        }
    }
}

fn order(n: u8, zone: u8, side: Side, price: i64, wh: i64) -> Order {
    Order {
        id: OrderId::from_bytes([n; 16]),
        site: SiteId::from_bytes([n; 16]),
        zone: zid(zone),
        side,
        price,
        energy: WattHours(wh),
        submitted_at: t(i64::from(n)),
    }
}

#[test]
fn a_binding_feeder_limit_separates_prices() {
    // Feeder 2 has cheap solar, feeder 3 expensive demand; the link from 2 carries 300 Wh.
    let net =
        Network::new([zone(1, None, 0, 0), zone(2, Some(1), 1_000, 300), zone(3, Some(1), 5_000, 5_000)])
            .unwrap();
    let orders = [
        order(1, 2, Side::Sell, 8, 1_000),
        order(2, 2, Side::Buy, 30, 200),
        order(3, 3, Side::Buy, 30, 1_000),
        order(4, 3, Side::Sell, 25, 2_000),
    ];
    let c = clear(&net, &orders, Rules::default()).unwrap();
    check_optimal(&net, &orders, &c);
    let z: BTreeMap<GridNodeId, _> = c.zones.iter().map(|z| (z.zone, z)).collect();
    // Feeder 2 sells 200 locally and 300 up; its seller sets the price (8, the only order at the
    // margin: the 500 Wh it cannot sell).
    assert_eq!(z[&zid(2)].net_export, WattHours(300));
    assert!(z[&zid(2)].congested);
    assert_eq!(z[&zid(2)].price, Some(8));
    // Feeder 3 imports 300 and its own seller covers the rest at 25..30.
    assert_eq!(z[&zid(3)].net_export, WattHours(-300));
    let p3 = z[&zid(3)].price.unwrap();
    assert!((25..=30).contains(&p3), "{p3}");
    assert_eq!(c.volume, WattHours(1_200));
    // The 300 Wh crossing the transformer are one trade along feeder 2 → transformer → feeder 3.
    let crossing: Vec<_> = c.trades.iter().filter(|t| t.path.len() == 3).collect();
    assert_eq!(crossing.len(), 1);
    assert_eq!(crossing[0].energy, WattHours(300));
    assert_eq!(crossing[0].path, vec![zid(2), zid(1), zid(3)]);
    assert_eq!(crossing[0].grid_fee_per_kwh, 2 + 1 + 3);
    assert_eq!((crossing[0].seller_price, crossing[0].buyer_price), (8, p3));
}

#[test]
fn pay_as_bid_prices_each_side_at_its_limit() {
    let net = Network::new([zone(1, None, 0, 0), zone(2, Some(1), 10_000, 10_000)]).unwrap();
    let orders = [order(1, 2, Side::Sell, 10, 500), order(2, 2, Side::Buy, 20, 500)];
    let c = clear(&net, &orders, Rules { pricing: Pricing::PayAsBid, max_price: 100 }).unwrap();
    assert_eq!(c.trades.len(), 1);
    assert_eq!((c.trades[0].seller_price, c.trades[0].buyer_price), (10, 20));
    let clear_c = clear(&net, &orders, Rules::default()).unwrap();
    assert_eq!((clear_c.trades[0].seller_price, clear_c.trades[0].buyer_price), (15, 15));
    assert_eq!(clear_c.welfare_milli, 500 * 20 - 500 * 10);
}

#[test]
fn equal_prices_fill_by_time_then_id() {
    let net = Network::new([zone(1, None, 0, 0)]).unwrap();
    let mut late = order(1, 1, Side::Sell, 10, 100);
    late.submitted_at = t(100);
    let early = order(2, 1, Side::Sell, 10, 100);
    let buyer = order(3, 1, Side::Buy, 10, 150);
    let c = clear(&net, &[late.clone(), early.clone(), buyer], Rules::default()).unwrap();
    let f: BTreeMap<OrderId, i64> = c.fills.iter().map(|f| (f.order, f.filled.get())).collect();
    assert_eq!(f[&early.id], 100);
    assert_eq!(f[&late.id], 50);
}

#[test]
fn bad_books_are_refused_with_the_order_named() {
    let net = Network::new([zone(1, None, 0, 0)]).unwrap();
    let mut o = order(1, 9, Side::Buy, 10, 100);
    let e = clear(&net, std::slice::from_ref(&o), Rules::default()).unwrap_err();
    assert!(e.to_string().contains("unknown zone"), "{e}");
    o.zone = zid(1);
    o.energy = WattHours(0);
    assert!(
        clear(&net, std::slice::from_ref(&o), Rules::default())
            .unwrap_err()
            .to_string()
            .contains("energy must be 1")
    );
    o.energy = WattHours(5);
    o.price = 10_001;
    assert!(
        clear(&net, std::slice::from_ref(&o), Rules::default())
            .unwrap_err()
            .to_string()
            .contains("price must be 0 to 10000")
    );
    o.price = 5;
    assert!(
        clear(&net, &[o.clone(), o], Rules::default()).unwrap_err().to_string().contains("appears twice")
    );
    assert!(
        Network::new([zone(1, Some(2), 0, 0), zone(2, Some(1), 0, 0)])
            .unwrap_err()
            .to_string()
            .contains("cycle")
    );
    assert!(
        Network::new([zone(1, None, -1, 0)])
            .unwrap_err()
            .to_string()
            .contains("import_limit must not be negative")
    );
}

#[test]
fn an_empty_book_clears_to_nothing() {
    let c = clear(&open_network(), &[], Rules::default()).unwrap();
    assert!(c.trades.is_empty());
    assert!(c.zones.iter().all(|z| z.price.is_none()));
    assert_eq!(c.volume, WattHours(0));
}
