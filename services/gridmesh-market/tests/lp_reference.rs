//! The clearing against the welfare LP written plainly with good_lp and solved by a general
//! simplex (microlp): on random small books over a tree with binding limits, both find the same
//! optimal welfare, and the clearing's flows respect every limit.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use chrono::{TimeZone, Utc};
use good_lp::{Expression, ProblemVariables, Solution, SolverModel, variable};
use gridmesh_core::{GridNodeId, OrderId, SiteId, WattHours};
use gridmesh_market::{Network, Order, Rules, Side, Zone, clear};
use proptest::prelude::*;

fn zid(n: u8) -> GridNodeId {
    GridNodeId::from_bytes([n; 16])
}

/// Maximise Σ bid price × bought − Σ offer price × sold subject to zone balance and the
/// transfer limits, as any LP user would write it.
fn lp_welfare(zones: &[Zone], orders: &[Order]) -> f64 {
    let mut vars = ProblemVariables::new();
    let x: Vec<_> = orders.iter().map(|o| vars.add(variable().min(0.0).max(o.energy.get() as f64))).collect();
    let flow: Vec<_> = zones
        .iter()
        .map(|z| {
            z.parent.map(|_| {
                vars.add(variable().min(-(z.import_limit.get() as f64)).max(z.export_limit.get() as f64))
            })
        })
        .collect();
    let mut objective = Expression::from(0.0);
    for (o, v) in orders.iter().zip(&x) {
        let sign = if o.side == Side::Buy { 1.0 } else { -1.0 };
        objective += sign * o.price as f64 * *v;
    }
    let mut model = vars.maximise(objective).using(good_lp::microlp);
    for (k, z) in zones.iter().enumerate() {
        // sold − bought + inflow from children − outflow to parent = 0
        let mut balance = Expression::from(0.0);
        for (o, v) in orders.iter().zip(&x) {
            if o.zone == z.id {
                balance += if o.side == Side::Sell { 1.0 } else { -1.0 } * *v;
            }
        }
        for (c, child) in zones.iter().enumerate() {
            if child.parent == Some(z.id) {
                balance += flow[c].unwrap();
            }
        }
        if let Some(f) = flow[k] {
            balance -= f;
        }
        model = model.with(balance.eq(0.0));
    }
    let solution = model.solve().unwrap();
    orders
        .iter()
        .zip(&x)
        .map(|(o, v)| if o.side == Side::Buy { 1.0 } else { -1.0 } * o.price as f64 * solution.value(*v))
        .sum()
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n) as i64
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn clearing_welfare_equals_the_lp_optimum(seed in 1_u64.., count in 1_usize..40) {
        let mut rng = Rng(seed);
        let mut lim = |n| WattHours(rng.below(n));
        let zones = vec![
            Zone { id: zid(1), parent: None, import_limit: WattHours(0), export_limit: WattHours(0), fee_per_kwh: 0 },
            Zone { id: zid(2), parent: Some(zid(1)), import_limit: lim(500), export_limit: lim(500), fee_per_kwh: 0 },
            Zone { id: zid(3), parent: Some(zid(1)), import_limit: lim(1_500), export_limit: lim(1_500), fee_per_kwh: 0 },
            Zone { id: zid(4), parent: Some(zid(3)), import_limit: lim(400), export_limit: lim(400), fee_per_kwh: 0 },
            Zone { id: zid(5), parent: Some(zid(3)), import_limit: lim(400), export_limit: lim(400), fee_per_kwh: 0 },
        ];
        let orders: Vec<Order> = (0..count)
            .map(|k| Order {
                id: OrderId::from_bytes([k as u8; 16]),
                site: SiteId::from_bytes([k as u8; 16]),
                zone: zid(1 + rng.below(5) as u8),
                side: if rng.below(2) == 0 { Side::Buy } else { Side::Sell },
                price: rng.below(40),
                energy: WattHours(1 + rng.below(600)),
                submitted_at: Utc.timestamp_opt(1_790_000_000 + rng.below(3), 0).unwrap(),
            })
            .collect();
        let net = Network::new(zones.clone()).unwrap();
        let c = clear(&net, &orders, Rules::default()).unwrap();
        let lp = lp_welfare(&zones, &orders);
        prop_assert!((c.welfare_milli as f64 - lp).abs() <= 1e-6 * lp.abs().max(1.0), "clearing {} vs LP {lp}", c.welfare_milli);
        for (z, out) in zones.iter().zip(&c.zones) {
            prop_assert!(out.net_export.get() <= z.export_limit.get() && -out.net_export.get() <= z.import_limit.get());
        }
    }
}
