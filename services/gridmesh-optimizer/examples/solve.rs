//! Solves an instance and prints the plan's summary.
//!
//! ```text
//! cargo run --release -p gridmesh-optimizer --example solve -- services/gridmesh-optimizer/examples/instance.json
//! cargo run --release -p gridmesh-optimizer --example solve -- gen:SEED:SITES:FEEDERS [ipm|highs|both] [--log]
//! ```
//!
//! `gen:…` solves a generated neighbourhood; `both` also solves with HiGHS and compares.

#![allow(clippy::print_stdout, reason = "an example printing its result")]

use gridmesh_optimizer::{Instance, generate, ipm, reference};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let source = args.first().map_or("gen:1:8:3", String::as_str);
    let which = args.get(1).map_or("ipm", String::as_str);
    let log = args.iter().any(|a| a == "--log");
    let inst: Instance = if let Some(spec) = source.strip_prefix("gen:") {
        let p: Vec<usize> = spec.split(':').map(str::parse).collect::<Result<_, _>>()?;
        generate::neighbourhood(
            *p.first().unwrap_or(&1) as u64,
            *p.get(1).unwrap_or(&8),
            *p.get(2).unwrap_or(&3),
        )
    } else {
        serde_json::from_str(&std::fs::read_to_string(source)?)?
    };
    if args.iter().any(|a| a == "--json") {
        println!("{}", serde_json::to_string_pretty(&inst)?);
        return Ok(());
    }
    let mut ipm_obj = None;
    if which == "ipm" || which == "both" {
        let plan = ipm::solve(&inst, &ipm::IpmOptions { log, ..Default::default() })?;
        println!("{}", plan.summary(&inst));
        ipm_obj = Some(plan.objective.total);
    }
    if which == "highs" || which == "both" {
        let opts = reference::ReferenceOptions {
            method: reference::Method::Ipm { crossover: false },
            ..Default::default()
        };
        let plan = reference::solve_with(&inst, &opts)?;
        println!("{}", plan.summary(&inst));
        if let Some(o) = ipm_obj {
            let r = plan.objective.total;
            println!(
                "objective ipm {o:.9} highs {r:.9} relative difference {:.2e}",
                (o - r).abs() / r.abs().max(1.0)
            );
        }
    }
    Ok(())
}
