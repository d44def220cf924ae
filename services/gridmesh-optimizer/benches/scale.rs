//! Scale benchmark of the structured interior-point solver, with the monolithic HiGHS
//! interior-point solve as the yardstick on the smaller sizes.
//!
//! ```text
//! cargo bench -p gridmesh-optimizer --bench scale                          # 100 1000 10000 50000
//! cargo bench -p gridmesh-optimizer --bench scale -- 1000 10000 --highs-max 0 --threads 1
//! ```
//!
//! Each size runs in its own child process, so the peak resident memory (VmHWM) is that of one
//! solve. Instances come from `generate::neighbourhood(1, sites, max(1, sites / 100))`: one
//! feeder per hundred sites. HiGHS (IPX, no crossover, through the same good_lp model the
//! reference uses) runs for sizes up to `--highs-max` (default 1000).

#![allow(clippy::print_stdout, clippy::unwrap_used, reason = "a benchmark binary")]

use std::process::Command;
use std::time::Instant;

use gridmesh_optimizer::{ViolationKind, generate, ipm, reference};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn instance(sites: usize) -> gridmesh_optimizer::Instance {
    generate::neighbourhood(1, sites, (sites / 100).max(1))
}

/// Child: one IPM solve; prints `sites feeders iterations seconds rss gap pinf worst objective`.
fn child_ipm(sites: usize, threads: usize) {
    let inst = instance(sites);
    let started = Instant::now();
    let plan = ipm::solve(&inst, &ipm::IpmOptions { threads, ..Default::default() }).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let worst = plan
        .violations
        .iter()
        .filter(|v| v.kind != ViolationKind::SiteImport)
        .map(|v| v.excess_kw)
        .fold(0.0, f64::max);
    let st = &plan.stats;
    println!(
        "{} {} {} {} {} {} {} {} {} {}",
        sites,
        (sites / 100).max(1),
        st.iterations,
        seconds,
        peak_rss_mb(),
        st.relative_gap.unwrap_or(f64::NAN),
        st.primal_infeasibility.unwrap_or(f64::NAN),
        worst,
        plan.objective.total,
        st.threads,
    );
}

/// Child: one HiGHS IPM solve; prints `seconds rss iterations objective`.
fn child_highs(sites: usize) {
    let inst = instance(sites);
    let started = Instant::now();
    let opts = reference::ReferenceOptions {
        method: reference::Method::Ipm { crossover: false },
        ..Default::default()
    };
    let plan = reference::solve_with(&inst, &opts).unwrap();
    println!(
        "{} {} {} {}",
        started.elapsed().as_secs_f64(),
        peak_rss_mb(),
        plan.stats.iterations,
        plan.objective.total
    );
}

fn run_child(args: &[String]) -> Vec<f64> {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe).args(args).output().unwrap();
    if !out.status.success() {
        eprintln!("child {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let threads = value("--threads").unwrap_or(0);
    if let Some(n) = value("--child-ipm") {
        child_ipm(n, threads);
        return;
    }
    if let Some(n) = value("--child-highs") {
        child_highs(n);
        return;
    }
    let highs_max = value("--highs-max").unwrap_or(1000);
    let mut sizes: Vec<usize> = Vec::new();
    let mut skip = false;
    for a in &args {
        if skip {
            skip = false;
            continue;
        }
        if a.starts_with("--") {
            skip = true;
            continue;
        }
        if let Ok(n) = a.parse() {
            sizes.push(n);
        }
    }
    if sizes.is_empty() {
        sizes = vec![100, 1000, 10_000, 50_000];
    }
    println!(
        "| sites | feeders | threads | iterations | IPM time (s) | peak RSS (MB) | rel. gap | primal inf. | worst node violation (kW) | HiGHS IPM time (s) | HiGHS peak RSS (MB) | speed-up | objective rel. diff |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let mut child = vec!["--child-ipm".to_owned(), n.to_string()];
        if threads > 0 {
            child.extend(["--threads".to_owned(), threads.to_string()]);
        }
        let r = run_child(&child);
        if r.len() < 10 {
            println!("| {n} | failed |");
            continue;
        }
        let (mut hs, mut hr, mut speed, mut diff) =
            ("–".to_owned(), "–".to_owned(), "–".to_owned(), "–".to_owned());
        if n <= highs_max {
            let h = run_child(&["--child-highs".to_owned(), n.to_string()]);
            if h.len() >= 4 {
                hs = format!("{:.2}", h[0]);
                hr = format!("{:.0}", h[1]);
                speed = format!("{:.0}×", h[0] / r[3]);
                diff = format!("{:.1e}", (r[8] - h[3]).abs() / h[3].abs().max(1.0));
            }
        }
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.0} | {:.1e} | {:.1e} | {:.3} | {} | {} | {} | {} |",
            n, r[1], r[9], r[2], r[3], r[4], r[5], r[6], r[7], hs, hr, speed, diff
        );
    }
}
