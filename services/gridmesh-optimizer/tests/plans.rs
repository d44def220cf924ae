//! Plans on hand-made and generated instances: shadow prices, violations, determinism, the
//! example file and the generator.

mod common;

use common::{check_plan, rel};
use gridmesh_optimizer::{
    Battery, Binding, GridNode, Instance, Penalties, Plan, RequestKind, Site, Tariff, UtilityRequest,
    ViolationKind, generate, ipm, reference,
};

/// One site with a battery under `f` below `root`; flat prices, so the battery only moves
/// energy when a limit or request makes it worth its losses and wear.
fn one_battery(load: [f64; 8], f_import_limit: Option<f64>, cap: Option<f64>) -> Instance {
    Instance {
        step_minutes: 15,
        steps: 8,
        nodes: vec![
            GridNode {
                id: "root".into(),
                parent: None,
                import_limit_kw: None,
                export_limit_kw: None,
                limit_windows: Vec::new(),
            },
            GridNode {
                id: "f".into(),
                parent: Some("root".into()),
                import_limit_kw: f_import_limit,
                export_limit_kw: None,
                limit_windows: Vec::new(),
            },
        ],
        sites: vec![Site {
            id: "home".into(),
            node: "f".into(),
            pv_kw: vec![0.0; 8],
            load_kw: load.to_vec(),
            import_limit_kw: 20.0,
            export_limit_kw: 5.0,
            battery: Some(Battery {
                capacity_kwh: 10.0,
                max_charge_kw: 5.0,
                max_discharge_kw: 5.0,
                charge_efficiency: 0.95,
                discharge_efficiency: 0.95,
                soc_min_kwh: 0.0,
                soc_max_kwh: 10.0,
                initial_soc_kwh: 5.0,
                final_soc_min_kwh: Some(5.0),
                degradation_cost_per_kwh: 0.02,
                terminal_value_per_kwh: 0.0,
            }),
            commitment_kw: None,
        }],
        tariff: Tariff {
            import_price: vec![0.3; 8],
            feed_in_price: vec![0.05; 8],
            imbalance_price: vec![0.5; 8],
        },
        requests: cap
            .map(|kw| UtilityRequest {
                id: "cap".into(),
                node: None,
                kind: RequestKind::Cap,
                kw,
                from_step: 4,
                to_step: 8,
                price_per_kw: 1.0,
            })
            .into_iter()
            .collect(),
        penalties: Penalties::default(),
    }
}

fn both(inst: &Instance) -> (Plan, Plan) {
    let a = ipm::solve(inst, &ipm::IpmOptions::default()).expect("ipm");
    let b = reference::solve(inst).expect("highs");
    check_plan(inst, &a, 1e-6);
    check_plan(inst, &b, 1e-6);
    assert!(
        rel(a.objective.total, b.objective.total) <= 1e-6,
        "{} vs {}",
        a.objective.total,
        b.objective.total
    );
    (a, b)
}

#[test]
fn binding_cap_has_a_positive_shadow_price() {
    let inst = one_battery([3.0, 3.0, 3.0, 3.0, 4.5, 4.5, 4.5, 4.5], None, Some(3.0));
    let (a, b) = both(&inst);
    // Meeting the cap costs the battery's round-trip losses and wear:
    // Δh [p/(ηc ηd) − p + wear (1 + 1/(ηc ηd))].
    let expected = 0.25 * (0.3 / (0.95 * 0.95) - 0.3 + 0.02 * (1.0 + 1.0 / (0.95 * 0.95)));
    for t in 4..8 {
        for plan in [&a, &b] {
            let price = plan.area.shadow_price[t];
            assert!(
                (price - expected).abs() < 1e-4,
                "{}: step {t}: {price} vs {expected}",
                plan.stats.solver
            );
            assert!((plan.area.net_kw[t] - 3.0).abs() < 1e-3);
        }
        assert!(a.requests[0].binding[t - 4]);
    }
    assert!(a.requests[0].deviation_kw.iter().all(|d| *d < 1e-6));
    for t in 0..4 {
        assert!(a.area.shadow_price[t].abs() < 1e-6);
    }
}

#[test]
fn slack_cap_has_a_zero_shadow_price() {
    let inst = one_battery([3.0, 3.0, 3.0, 3.0, 4.5, 4.5, 4.5, 4.5], None, Some(100.0));
    let (a, b) = both(&inst);
    for t in 0..8 {
        assert!(a.area.shadow_price[t].abs() < 1e-6, "step {t}: {}", a.area.shadow_price[t]);
        assert!(b.area.shadow_price[t].abs() < 1e-6);
    }
    assert!(a.requests[0].binding.iter().all(|b| !b));
    // Nothing to do: the battery stays put.
    assert!(a.sites[0].discharge_kw.iter().all(|d| *d < 1e-4));
}

#[test]
fn binding_node_limit_has_a_positive_shadow_price() {
    let inst = one_battery([2.0, 2.0, 2.0, 2.0, 3.5, 3.5, 3.5, 3.5], Some(3.0), None);
    let (a, b) = both(&inst);
    let f = 1;
    for t in 4..8 {
        assert_eq!(a.nodes[f].binding[t], Some(Binding::Import), "step {t}");
        assert!(a.nodes[f].shadow_price[t] > 1e-3);
        assert!((a.nodes[f].shadow_price[t] - b.nodes[f].shadow_price[t]).abs() < 1e-4);
    }
    // Before, charging has room under the limit: no price (with flat prices the charging
    // schedule is not unique, so the flow may touch the limit without a price).
    for t in 0..4 {
        assert!(a.nodes[f].shadow_price[t].abs() < 1e-6);
        assert!(b.nodes[f].shadow_price[t].abs() < 1e-6);
    }
    assert!(a.violations.is_empty());
    // The unconstrained root carries no price.
    assert!(a.nodes[0].shadow_price.iter().all(|p| *p == 0.0));
    let text = a.summary(&inst);
    assert!(text.contains("f import limit 3.0 kW"), "{text}");
    assert!(text.contains("+01:00-+02:00"), "{text}");
}

#[test]
fn load_above_the_connection_without_battery_is_a_reported_violation() {
    let mut inst = one_battery([8.0; 8], None, None);
    inst.sites[0].battery = None;
    inst.sites[0].import_limit_kw = 5.0;
    let (a, _) = both(&inst);
    assert_eq!(a.violations.len(), 8);
    for v in &a.violations {
        assert_eq!(v.kind, ViolationKind::SiteImport);
        assert!((v.excess_kw - 3.0).abs() < 1e-6);
    }
    assert!((a.objective.violations - 8.0 * 0.25 * 10.0 * 3.0).abs() < 1e-6);
    assert!(a.summary(&inst).contains("violations (8)"));
}

#[test]
fn node_limit_that_cannot_hold_is_a_reported_violation() {
    let inst = one_battery([9.0; 8], Some(2.0), None);
    let (a, _) = both(&inst);
    assert!(a.violations.iter().any(|v| v.kind == ViolationKind::NodeImport && v.id == "f"));
    // The limit is worth the penalty where it is violated.
    assert!(a.nodes[1].shadow_price.iter().any(|p| (p - 0.25 * 10.0).abs() < 1e-4));
}

fn canonical(plan: &Plan) -> String {
    let mut p = plan.clone();
    p.stats.seconds = 0.0;
    p.stats.threads = 0;
    serde_json::to_string(&p).expect("serialise")
}

#[test]
fn same_instance_same_plan_bytes() {
    // Large enough to be worth two threads.
    let inst = generate::neighbourhood(5, 60, 3);
    let one = ipm::solve(&inst, &ipm::IpmOptions { threads: 1, ..Default::default() }).expect("ipm");
    let two = ipm::solve(&inst, &ipm::IpmOptions { threads: 2, ..Default::default() }).expect("ipm");
    let again = ipm::solve(&inst, &ipm::IpmOptions { threads: 2, ..Default::default() }).expect("ipm");
    assert_eq!((one.stats.threads, two.stats.threads), (1, 2));
    assert_eq!(canonical(&one), canonical(&two));
    assert_eq!(canonical(&two), canonical(&again));
    assert_eq!(one.input_hash.len(), 64);
}

#[test]
fn example_instance_solves_and_its_cap_binds() {
    let text = include_str!("../examples/instance.json");
    let inst: Instance = serde_json::from_str(text).expect("parse the example");
    inst.validate().expect("valid");
    assert_eq!(inst.sites.len(), 8);
    let (a, b) = both(&inst);
    let r = &a.requests[0];
    let cap = &inst.requests[0];
    assert_eq!(cap.kind, RequestKind::Cap);
    assert!(r.binding.iter().any(|x| *x), "the evening cap should bind");
    let priced = (cap.from_step..cap.to_step).filter(|&t| a.area.shadow_price[t] > 1e-3).count();
    assert!(priced > 0, "the binding cap should carry a price");
    for t in 0..inst.steps {
        assert!((a.area.shadow_price[t] - b.area.shadow_price[t]).abs() < 1e-3, "step {t}");
    }
    let summary = a.summary(&inst);
    assert!(summary.contains("evening-cap"));
}

#[test]
fn generator_is_deterministic_and_plausible() {
    let a = generate::neighbourhood(11, 200, 5);
    let b = generate::neighbourhood(11, 200, 5);
    assert_eq!(a, b);
    assert_ne!(a, generate::neighbourhood(12, 200, 5));
    a.validate().expect("valid");
    let batteries = a.sites.iter().filter(|s| s.battery.is_some()).count();
    assert!((90..=150).contains(&batteries), "{batteries} batteries");
    // No sun at night, some at noon.
    assert!(a.sites.iter().all(|s| s.pv_kw[0] == 0.0 && s.pv_kw[95] == 0.0));
    assert!(a.sites.iter().filter(|s| s.pv_kw[48] > 0.0).count() > 100);
    assert_eq!(a.nodes.iter().filter(|n| n.id.starts_with('f')).count(), 5);
    assert_eq!(a.requests.len(), 1);
}
