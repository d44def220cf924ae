//! Small random instances for the property tests, including extreme ones.

#![allow(dead_code, reason = "each test file uses part of the helpers")]

use gridmesh_optimizer::{
    Battery, GridNode, Instance, Penalties, Plan, RequestKind, Site, Tariff, UtilityRequest,
};

/// A fixed pseudo-random sequence (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1_u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A random instance with up to `sites` sites, `nodes` nodes and `steps` steps. With `extreme`,
/// limits, loads and prices are pushed to the corners (zero limits, loads far above the
/// connection, equal import and feed-in prices, free violations, fixed final states).
pub fn random_instance(seed: u64, sites: usize, nodes: usize, steps: usize, extreme: bool) -> Instance {
    let mut r = Rng::new(seed);
    let x = |r: &mut Rng, p: f64| extreme && r.chance(p);
    let mut node_list = Vec::new();
    for k in 0..nodes.max(1) {
        let parent = if k == 0 || x(&mut r, 0.2) { None } else { Some(format!("n{}", r.below(k))) };
        let limit = |r: &mut Rng| {
            if r.chance(0.6) {
                Some(if x(r, 0.3) { 0.0 } else { (r.range(0.5, 12.0) * 10.0).round() / 10.0 })
            } else {
                None
            }
        };
        node_list.push(GridNode {
            id: format!("n{k}"),
            parent,
            import_limit_kw: limit(&mut r),
            export_limit_kw: limit(&mut r),
            limit_windows: Vec::new(),
        });
    }
    let mut site_list = Vec::new();
    for i in 0..sites.max(1) {
        let kwp = if r.chance(0.7) { r.range(1.0, 8.0) } else { 0.0 };
        let pv_kw = (0..steps)
            .map(|t| {
                let shape = (std::f64::consts::PI * (t as f64 + 0.5) / steps as f64).sin();
                (kwp * shape * r.range(0.5, 1.0) * 1000.0).round() / 1000.0
            })
            .collect();
        let load_scale = if x(&mut r, 0.3) { 30.0 } else { 4.0 };
        let load_kw = (0..steps).map(|_| (r.range(0.1, load_scale) * 1000.0).round() / 1000.0).collect();
        let battery = r.chance(0.6).then(|| {
            let capacity = r.range(2.0, 14.0);
            let soc_min = capacity * r.range(0.0, 0.2);
            let soc_max = capacity * r.range(0.8, 1.0);
            let initial = r.range(soc_min, soc_max);
            let eff = |r: &mut Rng| if x(r, 0.3) { 1.0 } else { r.range(0.85, 0.99) };
            let power = |r: &mut Rng| if x(r, 0.15) { 0.0 } else { r.range(1.0, 6.0) };
            let max_charge_kw = power(&mut r);
            let max_discharge_kw = power(&mut r);
            let charge_efficiency = eff(&mut r);
            let final_soc_min_kwh = if x(&mut r, 0.3) {
                // The upper bound when reachable: a fixed final state.
                let reachable = initial + steps as f64 * 0.25 * charge_efficiency * max_charge_kw;
                (reachable >= soc_max).then_some(soc_max)
            } else if r.chance(0.4) {
                Some(initial.min(soc_max))
            } else {
                None
            };
            Battery {
                capacity_kwh: capacity,
                max_charge_kw,
                max_discharge_kw,
                charge_efficiency,
                discharge_efficiency: eff(&mut r),
                soc_min_kwh: soc_min,
                soc_max_kwh: soc_max,
                initial_soc_kwh: initial,
                final_soc_min_kwh,
                degradation_cost_per_kwh: if x(&mut r, 0.3) { 0.0 } else { r.range(0.0, 0.05) },
                terminal_value_per_kwh: if r.chance(0.3) { r.range(0.0, 0.3) } else { 0.0 },
            }
        });
        let commitment_kw = r.chance(0.3).then(|| {
            (0..steps)
                .map(|_| {
                    r.chance(0.5)
                        .then(|| (r.range(-3.0, if extreme { 20.0 } else { 4.0 }) * 10.0).round() / 10.0)
                })
                .collect()
        });
        site_list.push(Site {
            id: format!("s{i}"),
            node: format!("n{}", r.below(node_list.len())),
            pv_kw,
            load_kw,
            import_limit_kw: if x(&mut r, 0.3) { r.range(0.0, 2.0) } else { r.range(5.0, 20.0) },
            export_limit_kw: if x(&mut r, 0.3) { 0.0 } else { r.range(2.0, 10.0) },
            battery,
            commitment_kw,
        });
    }
    let import_price: Vec<f64> =
        (0..steps).map(|_| if x(&mut r, 0.2) { -r.range(0.0, 0.1) } else { r.range(0.1, 0.5) }).collect();
    let feed_in_price =
        import_price.iter().map(|&p| if x(&mut r, 0.3) { p } else { p - r.range(0.05, 0.3) }).collect();
    let mut requests = Vec::new();
    for q in 0..r.below(3) {
        let from_step = r.below(steps);
        let to_step = from_step + 1 + r.below(steps - from_step);
        let node = r.chance(0.5).then(|| format!("n{}", r.below(node_list.len())));
        requests.push(UtilityRequest {
            id: format!("q{q}"),
            node,
            kind: [RequestKind::Target, RequestKind::Cap, RequestKind::Floor][r.below(3)],
            kw: (r.range(-10.0, 15.0) * 10.0).round() / 10.0,
            from_step,
            to_step,
            price_per_kw: r.range(0.0, 2.0),
        });
    }
    let penalties = if x(&mut r, 0.2) {
        Penalties { node_violation_per_kwh: 0.0, site_overload_per_kwh: 0.0, curtailment_per_kwh: 0.0 }
    } else {
        Penalties { node_violation_per_kwh: r.range(1.0, 20.0), ..Penalties::default() }
    };
    Instance {
        step_minutes: 15,
        steps,
        nodes: node_list,
        sites: site_list,
        tariff: Tariff {
            import_price,
            feed_in_price,
            imbalance_price: (0..steps).map(|_| r.range(0.0, 1.0)).collect(),
        },
        requests,
        penalties,
    }
}

/// Checks the physical consistency of a plan; `tol` in kW / kWh.
pub fn check_plan(inst: &Instance, plan: &Plan, tol: f64) {
    assert_eq!(plan.sites.len(), inst.sites.len());
    let dt = inst.step_hours();
    for (site, sp) in inst.sites.iter().zip(&plan.sites) {
        for t in 0..inst.steps {
            let supply = site.pv_kw[t] - sp.curtail_kw[t] + sp.discharge_kw[t] + sp.import_kw[t];
            let demand = site.load_kw[t] + sp.charge_kw[t] + sp.export_kw[t];
            assert!(
                (supply - demand).abs() <= tol,
                "site {} step {t}: balance {supply} vs {demand}",
                site.id
            );
            assert!(sp.curtail_kw[t] >= 0.0 && sp.curtail_kw[t] <= site.pv_kw[t] + tol);
            assert!(sp.import_kw[t] >= 0.0 && sp.export_kw[t] >= 0.0);
            assert!(sp.import_kw[t] == 0.0 || sp.export_kw[t] == 0.0);
            assert!(
                sp.export_kw[t] <= site.export_limit_kw + tol,
                "site {} exports {}",
                site.id,
                sp.export_kw[t]
            );
            match &site.battery {
                Some(b) => {
                    assert!(sp.charge_kw[t] >= 0.0 && sp.charge_kw[t] <= b.max_charge_kw + tol);
                    assert!(sp.discharge_kw[t] >= 0.0 && sp.discharge_kw[t] <= b.max_discharge_kw + tol);
                    let soc = sp.soc_kwh[t];
                    assert!(
                        soc >= b.soc_min_kwh - tol && soc <= b.soc_max_kwh + tol,
                        "site {} step {t}: soc {soc} outside {}..{}",
                        site.id,
                        b.soc_min_kwh,
                        b.soc_max_kwh
                    );
                    let prev = if t == 0 { b.initial_soc_kwh } else { sp.soc_kwh[t - 1] };
                    let expect = prev
                        + dt * (b.charge_efficiency * sp.charge_kw[t]
                            - sp.discharge_kw[t] / b.discharge_efficiency);
                    assert!((soc - expect).abs() <= tol);
                }
                None => {
                    assert_eq!(sp.charge_kw[t], 0.0);
                    assert_eq!(sp.discharge_kw[t], 0.0);
                    assert!(sp.soc_kwh.is_empty());
                }
            }
        }
        if let Some(b) = &site.battery
            && let Some(target) = b.final_soc_min_kwh
        {
            let last = sp.soc_kwh[inst.steps - 1];
            assert!(last >= target - tol, "site {}: final soc {last} below {target}", site.id);
        }
    }
    // Node limits hold or their excess is reported.
    for (node, np) in inst.nodes.iter().zip(&plan.nodes) {
        for t in 0..inst.steps {
            let f = np.net_kw[t];
            if let Some(l) = node.import_limit_kw
                && f > l + gridmesh_optimizer::REPORT_TOLERANCE_KW
            {
                assert!(plan.violations.iter().any(|v| v.id == node.id && v.step == t));
            }
            if let Some(l) = node.export_limit_kw
                && -f > l + gridmesh_optimizer::REPORT_TOLERANCE_KW
            {
                assert!(plan.violations.iter().any(|v| v.id == node.id && v.step == t));
            }
        }
    }
    let o = &plan.objective;
    let sum =
        o.energy + o.degradation + o.curtailment + o.imbalance + o.requests + o.violations + o.stored_value;
    assert!((sum - o.total).abs() <= 1e-9 * (1.0 + o.total.abs()));
}

/// `|a - b| / max(1, |b|)`.
pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1.0)
}
