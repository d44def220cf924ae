//! The single-battery dynamic program against the LP (HiGHS) on one-site instances.

mod common;

use common::{Rng, rel};
use gridmesh_optimizer::{
    Battery, GridNode, Instance, Penalties, Site, Tariff, reference, single::optimal_schedule,
};
use proptest::prelude::*;

fn random_battery(r: &mut Rng, steps: usize) -> Battery {
    let capacity = r.range(1.0, 15.0);
    let soc_min = capacity * r.range(0.0, 0.3);
    let soc_max = capacity * r.range(0.7, 1.0);
    let initial = r.range(soc_min, soc_max);
    let eff = |r: &mut Rng| if r.chance(0.2) { 1.0 } else { r.range(0.8, 0.99) };
    let max_charge_kw = if r.chance(0.1) { 0.0 } else { r.range(0.5, 6.0) };
    let charge_efficiency = eff(r);
    let reachable = (initial + steps as f64 * 0.25 * charge_efficiency * max_charge_kw).min(soc_max);
    Battery {
        capacity_kwh: capacity,
        max_charge_kw,
        max_discharge_kw: if r.chance(0.1) { 0.0 } else { r.range(0.5, 6.0) },
        charge_efficiency,
        discharge_efficiency: eff(r),
        soc_min_kwh: soc_min,
        soc_max_kwh: soc_max,
        initial_soc_kwh: initial,
        final_soc_min_kwh: r.chance(0.5).then(|| r.range(soc_min, reachable)),
        degradation_cost_per_kwh: if r.chance(0.2) { 0.0 } else { r.range(0.0, 0.05) },
        terminal_value_per_kwh: if r.chance(0.4) { r.range(0.0, 0.4) } else { 0.0 },
    }
}

/// The same battery as the only device of a site that trades at one price both ways.
fn as_instance(b: &Battery, prices: &[f64]) -> Instance {
    let steps = prices.len();
    Instance {
        step_minutes: 15,
        steps,
        nodes: vec![GridNode {
            id: "n".into(),
            parent: None,
            import_limit_kw: None,
            export_limit_kw: None,
            limit_windows: Vec::new(),
        }],
        sites: vec![Site {
            id: "home".into(),
            node: "n".into(),
            pv_kw: vec![0.0; steps],
            load_kw: vec![0.0; steps],
            import_limit_kw: 100.0,
            export_limit_kw: 100.0,
            battery: Some(b.clone()),
            commitment_kw: None,
        }],
        tariff: Tariff {
            import_price: prices.to_vec(),
            feed_in_price: prices.to_vec(),
            imbalance_price: vec![0.0; steps],
        },
        requests: Vec::new(),
        penalties: Penalties::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(150)))]

    #[test]
    fn dynamic_program_matches_the_lp(seed in any::<u64>(), steps in 1_usize..40, negative in any::<bool>()) {
        let mut r = Rng::new(seed);
        let b = random_battery(&mut r, steps);
        let prices: Vec<f64> = (0..steps)
            .map(|_| if negative && r.chance(0.3) { -r.range(0.0, 0.2) } else { r.range(0.05, 0.5) })
            .collect();
        let dp = optimal_schedule(&b, &prices, 0.25).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let lp = reference::solve(&as_instance(&b, &prices)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(rel(dp.cost, lp.objective.total) <= 1e-7, "dp {} lp {}", dp.cost, lp.objective.total);
        // The schedule is feasible and costs what it says.
        let mut level = b.initial_soc_kwh;
        let mut cost = 0.0;
        for (t, price) in prices.iter().enumerate() {
            let (c, d) = (dp.charge_kw[t], dp.discharge_kw[t]);
            prop_assert!((0.0..=b.max_charge_kw + 1e-9).contains(&c));
            prop_assert!((0.0..=b.max_discharge_kw + 1e-9).contains(&d));
            level += 0.25 * (b.charge_efficiency * c - d / b.discharge_efficiency);
            prop_assert!((level - dp.soc_kwh[t]).abs() < 1e-7, "step {t}: {level} vs {}", dp.soc_kwh[t]);
            prop_assert!(level >= b.soc_min_kwh - 1e-7 && level <= b.soc_max_kwh + 1e-7);
            cost += 0.25 * (price * (c - d) + b.degradation_cost_per_kwh * (c + d));
        }
        if let Some(target) = b.final_soc_min_kwh {
            prop_assert!(level >= target - 1e-7);
        }
        cost -= b.terminal_value_per_kwh * level;
        prop_assert!(rel(cost, dp.cost) <= 1e-9, "recomputed {cost} vs {}", dp.cost);
    }
}

#[test]
fn buys_low_sells_high() {
    let b = Battery {
        capacity_kwh: 10.0,
        max_charge_kw: 4.0,
        max_discharge_kw: 4.0,
        charge_efficiency: 1.0,
        discharge_efficiency: 1.0,
        soc_min_kwh: 0.0,
        soc_max_kwh: 10.0,
        initial_soc_kwh: 0.0,
        final_soc_min_kwh: None,
        degradation_cost_per_kwh: 0.0,
        terminal_value_per_kwh: 0.0,
    };
    let s = optimal_schedule(&b, &[0.1, 0.1, 0.5, 0.5], 1.0).expect("valid");
    assert_eq!(s.charge_kw, vec![4.0, 4.0, 0.0, 0.0]);
    assert_eq!(s.discharge_kw, vec![0.0, 0.0, 4.0, 4.0]);
    assert!((s.cost - (-3.2)).abs() < 1e-12);
}

#[test]
fn refuses_bad_input() {
    let mut b = Battery {
        capacity_kwh: 10.0,
        max_charge_kw: 4.0,
        max_discharge_kw: 4.0,
        charge_efficiency: 1.5,
        discharge_efficiency: 1.0,
        soc_min_kwh: 0.0,
        soc_max_kwh: 10.0,
        initial_soc_kwh: 0.0,
        final_soc_min_kwh: None,
        degradation_cost_per_kwh: 0.0,
        terminal_value_per_kwh: 0.0,
    };
    assert!(optimal_schedule(&b, &[0.1], 0.25).is_err());
    b.charge_efficiency = 0.9;
    assert!(optimal_schedule(&b, &[f64::NAN], 0.25).is_err());
    assert!(optimal_schedule(&b, &[0.1], 0.0).is_err());
}
