//! `Instance::validate`: one test per refusal, and the hash.

use gridmesh_optimizer::{Instance, InstanceError, RequestKind, UtilityRequest, generate};

fn base() -> Instance {
    generate::neighbourhood(3, 6, 2)
}

fn with_battery(mut f: impl FnMut(&mut gridmesh_optimizer::Battery)) -> Instance {
    let mut inst = base();
    let site = inst.sites.iter_mut().find(|s| s.battery.is_some()).expect("a battery");
    f(site.battery.as_mut().expect("a battery"));
    inst
}

fn err(inst: &Instance) -> InstanceError {
    inst.validate().expect_err("should be refused")
}

#[test]
fn generated_instance_is_valid() {
    base().validate().expect("valid");
}

#[test]
fn zero_steps() {
    let mut inst = base();
    inst.steps = 0;
    assert!(matches!(err(&inst), InstanceError::BadHorizon(_)));
}

#[test]
fn zero_step_minutes() {
    let mut inst = base();
    inst.step_minutes = 0;
    assert!(matches!(err(&inst), InstanceError::BadHorizon(_)));
}

#[test]
fn too_many_steps() {
    let mut inst = base();
    inst.steps = gridmesh_optimizer::MAX_STEPS + 1;
    assert!(matches!(err(&inst), InstanceError::BadHorizon(_)));
}

#[test]
fn non_finite_number() {
    let mut inst = base();
    inst.sites[1].pv_kw[40] = f64::NAN;
    match err(&inst) {
        InstanceError::NonFinite { field } => assert_eq!(field, "sites[\"s1\"].pv_kw[40]"),
        e => panic!("{e}"),
    }
    let mut inst = base();
    inst.tariff.import_price[3] = f64::INFINITY;
    assert!(matches!(err(&inst), InstanceError::NonFinite { .. }));
}

#[test]
fn negative_load() {
    let mut inst = base();
    inst.sites[0].load_kw[5] = -1.0;
    assert!(matches!(err(&inst), InstanceError::Negative { value, .. } if value == -1.0));
}

#[test]
fn negative_node_limit() {
    let mut inst = base();
    inst.nodes[1].import_limit_kw = Some(-3.0);
    assert!(matches!(err(&inst), InstanceError::Negative { .. }));
}

#[test]
fn negative_capacity() {
    let inst = with_battery(|b| b.capacity_kwh = -5.0);
    assert!(matches!(err(&inst), InstanceError::Negative { .. }));
}

#[test]
fn zero_capacity() {
    let inst = with_battery(|b| {
        b.capacity_kwh = 0.0;
        b.soc_min_kwh = 0.0;
        b.soc_max_kwh = 0.0;
        b.initial_soc_kwh = 0.0;
    });
    assert!(matches!(err(&inst), InstanceError::ZeroCapacity { .. }));
}

#[test]
fn horizons_of_different_lengths() {
    let mut inst = base();
    inst.sites[2].load_kw.pop();
    match err(&inst) {
        InstanceError::HorizonLength { expected, got, .. } => assert_eq!((expected, got), (96, 95)),
        e => panic!("{e}"),
    }
}

#[test]
fn commitment_of_wrong_length() {
    let mut inst = base();
    inst.sites[0].commitment_kw = Some(vec![None; 10]);
    assert!(matches!(err(&inst), InstanceError::HorizonLength { .. }));
}

#[test]
fn duplicate_node() {
    let mut inst = base();
    let dup = inst.nodes[1].clone();
    inst.nodes.push(dup);
    assert!(matches!(err(&inst), InstanceError::DuplicateId { kind: "node", .. }));
}

#[test]
fn duplicate_site() {
    let mut inst = base();
    let dup = inst.sites[0].clone();
    inst.sites.push(dup);
    assert!(matches!(err(&inst), InstanceError::DuplicateId { kind: "site", .. }));
}

#[test]
fn site_on_unknown_node() {
    let mut inst = base();
    inst.sites[0].node = "nowhere".into();
    assert!(matches!(err(&inst), InstanceError::UnknownSiteNode { .. }));
}

#[test]
fn unknown_parent() {
    let mut inst = base();
    inst.nodes[1].parent = Some("nowhere".into());
    assert!(matches!(err(&inst), InstanceError::UnknownParent { .. }));
}

#[test]
fn cycle() {
    let mut inst = base();
    // area <- t0 <- f0: make the area hang below f0.
    inst.nodes[0].parent = Some("f0".into());
    assert!(matches!(err(&inst), InstanceError::Cycle(_)));
}

#[test]
fn several_roots_are_allowed() {
    let mut inst = base();
    inst.nodes[1].parent = None;
    inst.validate().expect("a forest is a valid tree of nodes");
}

#[test]
fn efficiency_outside_unit_interval() {
    for bad in [0.0, -0.5, 1.2] {
        let inst = with_battery(|b| b.charge_efficiency = bad);
        assert!(matches!(err(&inst), InstanceError::Efficiency { field: "charge_efficiency", .. }), "{bad}");
    }
    let inst = with_battery(|b| b.discharge_efficiency = 1.01);
    assert!(matches!(err(&inst), InstanceError::Efficiency { field: "discharge_efficiency", .. }));
    with_battery(|b| b.discharge_efficiency = 1.0).validate().expect("1 is allowed");
}

#[test]
fn soc_bounds_inconsistent() {
    let inst = with_battery(|b| b.soc_min_kwh = b.soc_max_kwh + 1.0);
    assert!(matches!(err(&inst), InstanceError::SocBounds { .. }));
    let inst = with_battery(|b| b.soc_max_kwh = b.capacity_kwh * 2.0);
    assert!(matches!(err(&inst), InstanceError::SocBounds { .. }));
}

#[test]
fn initial_soc_outside_bounds() {
    let inst = with_battery(|b| b.initial_soc_kwh = b.soc_max_kwh + 0.5);
    assert!(matches!(err(&inst), InstanceError::InitialSoc { .. }));
}

#[test]
fn final_soc_unreachable() {
    let inst = with_battery(|b| {
        b.initial_soc_kwh = b.soc_min_kwh;
        b.max_charge_kw = 0.01;
        b.final_soc_min_kwh = Some(b.soc_max_kwh);
    });
    assert!(matches!(err(&inst), InstanceError::FinalSoc { .. }));
    let inst = with_battery(|b| b.final_soc_min_kwh = Some(b.soc_max_kwh + 1.0));
    assert!(matches!(err(&inst), InstanceError::FinalSoc { .. }));
}

fn request(from_step: usize, to_step: usize, node: Option<&str>) -> UtilityRequest {
    UtilityRequest {
        id: "r".into(),
        node: node.map(Into::into),
        kind: RequestKind::Target,
        kw: 1.0,
        from_step,
        to_step,
        price_per_kw: 1.0,
    }
}

#[test]
fn empty_window() {
    let mut inst = base();
    inst.requests = vec![request(10, 10, None)];
    assert!(matches!(err(&inst), InstanceError::BadWindow { .. }));
}

#[test]
fn window_past_horizon() {
    let mut inst = base();
    inst.requests = vec![request(90, 97, None)];
    assert!(matches!(err(&inst), InstanceError::BadWindow { .. }));
}

#[test]
fn request_on_unknown_node() {
    let mut inst = base();
    inst.requests = vec![request(1, 2, Some("nowhere"))];
    assert!(matches!(err(&inst), InstanceError::UnknownRequestNode { .. }));
}

#[test]
fn duplicate_request() {
    let mut inst = base();
    inst.requests = vec![request(1, 2, None), request(3, 4, Some("f0"))];
    assert!(matches!(err(&inst), InstanceError::DuplicateId { kind: "request", .. }));
}

#[test]
fn negative_request_price() {
    let mut inst = base();
    let mut r = request(1, 2, None);
    r.price_per_kw = -1.0;
    inst.requests = vec![r];
    assert!(matches!(err(&inst), InstanceError::Negative { .. }));
}

#[test]
fn feed_in_above_import() {
    let mut inst = base();
    inst.tariff.feed_in_price[7] = inst.tariff.import_price[7] + 0.01;
    assert!(matches!(err(&inst), InstanceError::FeedInAboveImport { step: 7, .. }));
}

#[test]
fn negative_penalty() {
    let mut inst = base();
    inst.penalties.node_violation_per_kwh = -1.0;
    assert!(matches!(err(&inst), InstanceError::Negative { .. }));
}

#[test]
fn input_hash_is_canonical() {
    let inst = base();
    let h = inst.input_hash();
    // Same after a JSON round trip, whatever the formatting.
    let json = serde_json::to_string_pretty(&inst).expect("serialise");
    let back: Instance = serde_json::from_str(&json).expect("parse");
    assert_eq!(back.input_hash(), h);
    // -0.0 and 0.0 are the same number.
    let mut signed = inst.clone();
    signed.sites[0].pv_kw[0] = -0.0;
    assert_eq!(signed.sites[0].pv_kw[0].to_bits(), (-0.0_f64).to_bits());
    assert_eq!(signed.input_hash(), h);
    // Any change changes it.
    let mut changed = inst.clone();
    changed.sites[3].load_kw[50] += 0.001;
    assert_ne!(changed.input_hash(), h);
    let mut renamed = inst;
    renamed.nodes[2].id.push('x');
    assert_ne!(renamed.input_hash(), h);
}

#[test]
fn unknown_json_fields_are_refused() {
    let json = serde_json::to_value(base()).expect("serialise");
    let mut obj = json;
    obj["sites"][0]["colour"] = serde_json::json!("red");
    assert!(serde_json::from_value::<Instance>(obj).is_err());
}
