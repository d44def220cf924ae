//! Property tests on random small instances: the structured interior-point solver agrees with
//! the monolithic HiGHS reference, and every plan is physically consistent and never missing.

mod common;

use common::{check_plan, random_instance, rel};
use gridmesh_optimizer::{ipm, reference};
use proptest::prelude::*;

fn agree(seed: u64, sites: usize, nodes: usize, steps: usize, extreme: bool) -> Result<(), TestCaseError> {
    let inst = random_instance(seed, sites, nodes, steps, extreme);
    inst.validate().map_err(|e| TestCaseError::fail(format!("generated an invalid instance: {e}")))?;
    let ipm_plan = ipm::solve(&inst, &ipm::IpmOptions::default())
        .map_err(|e| TestCaseError::fail(format!("ipm: {e}")))?;
    let ref_plan = reference::solve(&inst).map_err(|e| TestCaseError::fail(format!("highs: {e}")))?;
    check_plan(&inst, &ipm_plan, 1e-6);
    check_plan(&inst, &ref_plan, 1e-6);
    let (a, b) = (ipm_plan.objective.total, ref_plan.objective.total);
    prop_assert!(rel(a, b) <= 1e-6, "objective ipm {a} vs highs {b}: {:.2e}", rel(a, b));
    let st = &ipm_plan.stats;
    prop_assert!(st.relative_gap.is_some_and(|g| g <= 1e-6));
    prop_assert!(st.primal_infeasibility.is_some_and(|p| p <= 1e-6));
    Ok(())
}

/// 150 cases per property (quick in a debug build); `PROPTEST_CASES` overrides.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(150)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn ipm_matches_reference(seed in any::<u64>(), sites in 1_usize..9, nodes in 1_usize..6, steps in 2_usize..48) {
        agree(seed, sites, nodes, steps, false)?;
    }

    #[test]
    fn extreme_instances_are_never_infeasible(seed in any::<u64>(), sites in 1_usize..6, nodes in 1_usize..5, steps in 1_usize..16) {
        agree(seed, sites, nodes, steps, true)?;
    }
}

#[test]
#[ignore = "debugging aid: DBG_CASE=seed,sites,nodes,steps,extreme"]
fn debug_case() {
    let spec = std::env::var("DBG_CASE").unwrap_or_default();
    let p: Vec<u64> = spec.split(',').filter_map(|v| v.parse().ok()).collect();
    let inst = random_instance(p[0], p[1] as usize, p[2] as usize, p[3] as usize, p[4] == 1);
    println!("{}", serde_json::to_string(&inst).unwrap());
    let r = ipm::solve(&inst, &ipm::IpmOptions { log: true, threads: 1, ..Default::default() });
    println!("{:?}", r.as_ref().map(|p| p.objective.total));
    let b = reference::solve(&inst).unwrap();
    println!("highs {}", b.objective.total);
}
