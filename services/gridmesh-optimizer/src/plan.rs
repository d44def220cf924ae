//! The optimizer's output: setpoints per site and step, node flows with binding limits and shadow
//! prices, request outcomes, violations, the cost breakdown and solver statistics.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::instance::{Instance, RequestKind};

/// Deviations, violations and bindings smaller than this (kW, 1 W) are noise of the solver's
/// tolerance and not reported.
pub const REPORT_TOLERANCE_KW: f64 = 1e-3;

/// The balancing plan for an [`Instance`]; every series has one value per step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`Instance::input_hash`] of the instance solved, lowercase hex.
    pub input_hash: String,
    /// Step length in minutes, as in the instance.
    pub step_minutes: u32,
    /// Number of steps, as in the instance.
    pub steps: usize,
    /// One per site, in the instance's order.
    pub sites: Vec<SitePlan>,
    /// One per grid node, in the instance's order.
    pub nodes: Vec<NodePlan>,
    /// The whole area (all sites).
    pub area: AreaPlan,
    /// One per utility request, in the instance's order.
    pub requests: Vec<RequestOutcome>,
    /// Every node limit exceeded and site connection overloaded, by more than
    /// [`REPORT_TOLERANCE_KW`], in order of kind, item, step.
    pub violations: Vec<Violation>,
    /// The cost of the plan and its parts, computed from the plan's own values.
    pub objective: Objective,
    /// How the solver got there.
    pub stats: SolverStats,
}

/// Setpoints and resulting flows of one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SitePlan {
    /// The site's id.
    pub id: String,
    /// Battery charging power, kW ≥ 0 (zeros without a battery).
    pub charge_kw: Vec<f64>,
    /// Battery discharging power, kW ≥ 0 (zeros without a battery).
    pub discharge_kw: Vec<f64>,
    /// PV power curtailed, kW, between 0 and the forecast.
    pub curtail_kw: Vec<f64>,
    /// Power imported from the grid, kW ≥ 0.
    pub import_kw: Vec<f64>,
    /// Power exported to the grid, kW ≥ 0; `import_kw` and `export_kw` are never both positive.
    pub export_kw: Vec<f64>,
    /// Battery state of charge at the end of each step, kWh (empty without a battery).
    pub soc_kwh: Vec<f64>,
}

/// Which limit of a node its flow sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// At (or above) the import limit.
    Import,
    /// At (or beyond) the export limit.
    Export,
}

/// Flow and congestion of one grid node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePlan {
    /// The node's id.
    pub id: String,
    /// Net import of the node's subtree, kW (negative = export).
    pub net_kw: Vec<f64>,
    /// The limit the flow sits on (within [`REPORT_TOLERANCE_KW`]), if any.
    pub binding: Vec<Option<Binding>>,
    /// Marginal cost of the node's flow, currency units per kW for the step: what the plan's
    /// cost would fall if the node could carry one more kW of net import during that step at no
    /// cost (negative when export is what is constrained). It comes from the node's limits and
    /// the requests on the node; zero where neither binds. Divide by the step's hours for a
    /// price per kWh.
    pub shadow_price: Vec<f64>,
}

/// Flow and congestion of the whole area (the sum of all sites).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AreaPlan {
    /// Net import of all sites, kW.
    pub net_kw: Vec<f64>,
    /// Marginal cost of the area's flow from area-wide requests, currency units per kW per
    /// step (as [`NodePlan::shadow_price`]).
    pub shadow_price: Vec<f64>,
}

/// How a utility request came out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestOutcome {
    /// The request's id.
    pub id: String,
    /// The first step of the window; the series below cover the window only.
    pub from_step: usize,
    /// Priced deviation per step of the window, kW ≥ 0: above the cap, below the floor, or
    /// either side of the target.
    pub deviation_kw: Vec<f64>,
    /// Whether the flow sits on the requested level (or beyond it) in each step of the window.
    pub binding: Vec<bool>,
    /// Cost of the deviations, currency units.
    pub cost: f64,
}

/// What was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A site imported above its connection limit.
    SiteImport,
    /// A node's net import exceeded its import limit.
    NodeImport,
    /// A node's net export exceeded its export limit.
    NodeExport,
}

/// A limit exceeded in one step: the plan's answer when nothing else was possible or the
/// alternative cost more than the penalty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// What kind of limit.
    pub kind: ViolationKind,
    /// The site or node id.
    pub id: String,
    /// The step.
    pub step: usize,
    /// By how much, kW.
    pub excess_kw: f64,
}

/// The plan's cost, currency units, computed from the plan's values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// Sum of the parts below.
    pub total: f64,
    /// Imports at the import price minus exports at the feed-in price.
    pub energy: f64,
    /// Battery wear: throughput times the degradation cost.
    pub degradation: f64,
    /// Curtailed PV at the curtailment penalty.
    pub curtailment: f64,
    /// Deviations from market commitments at the imbalance price.
    pub imbalance: f64,
    /// Deviations from utility requests at their prices.
    pub requests: f64,
    /// Node limit violations and site overloads at their penalties.
    pub violations: f64,
    /// Energy left in the batteries at the end at its terminal value, counted negative (a
    /// credit); 0 when no battery sets `terminal_value_per_kwh`.
    pub stored_value: f64,
}

/// How the solver got to the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolverStats {
    /// `gridmesh-ipm` or `highs-ipm`, `highs-simplex`, ...
    pub solver: String,
    /// Iterations of the method.
    pub iterations: u64,
    /// Relative duality gap at the end, as defined in `docs/optimizer.md` (`None` when the
    /// solver does not report it).
    pub relative_gap: Option<f64>,
    /// Scaled primal infeasibility at the end (see `docs/optimizer.md`).
    pub primal_infeasibility: Option<f64>,
    /// Scaled dual infeasibility at the end.
    pub dual_infeasibility: Option<f64>,
    /// Wall-clock time of the solve, seconds (the only field that differs between runs).
    pub seconds: f64,
    /// Threads used.
    pub threads: usize,
}

/// The decisions a solver produces, before everything else is derived from them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Decisions {
    /// Per site: charge, discharge, curtail (kW per step).
    pub charge: Vec<Vec<f64>>,
    pub discharge: Vec<Vec<f64>>,
    pub curtail: Vec<Vec<f64>>,
    /// Per node in instance order: shadow price per step.
    pub node_price: Vec<Vec<f64>>,
    /// Area shadow price per step.
    pub area_price: Vec<f64>,
}

/// Tree helpers shared by the plan and the solvers.
pub(crate) struct Tree {
    /// Parent index per node.
    pub parent: Vec<Option<usize>>,
    /// Node index per site.
    pub site_node: Vec<usize>,
    /// Nodes ordered so that every child comes before its parent.
    pub bottom_up: Vec<usize>,
}

impl Tree {
    /// Builds the index form of a validated instance's tree.
    pub fn new(inst: &Instance) -> Self {
        let index: std::collections::HashMap<&str, usize> =
            inst.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
        let parent: Vec<Option<usize>> =
            inst.nodes.iter().map(|n| n.parent.as_deref().and_then(|p| index.get(p).copied())).collect();
        let site_node = inst.sites.iter().map(|s| index.get(s.node.as_str()).copied().unwrap_or(0)).collect();
        // Depth-first post-order from the roots, children in instance order.
        let mut children = vec![Vec::new(); parent.len()];
        let mut roots = Vec::new();
        for (i, p) in parent.iter().enumerate() {
            match p {
                Some(p) => children[*p].push(i),
                None => roots.push(i),
            }
        }
        let mut bottom_up = Vec::with_capacity(parent.len());
        let mut stack: Vec<(usize, bool)> = roots.iter().rev().map(|&r| (r, false)).collect();
        while let Some((n, expanded)) = stack.pop() {
            if expanded {
                bottom_up.push(n);
            } else {
                stack.push((n, true));
                for &c in children[n].iter().rev() {
                    stack.push((c, false));
                }
            }
        }
        Self { parent, site_node, bottom_up }
    }

    /// Net flow per node and step from per-site net flows.
    pub fn node_flows(&self, site_net: &[Vec<f64>], steps: usize) -> Vec<Vec<f64>> {
        let mut flow = vec![vec![0.0; steps]; self.parent.len()];
        for (s, net) in site_net.iter().enumerate() {
            let f = &mut flow[self.site_node[s]];
            for (a, b) in f.iter_mut().zip(net) {
                *a += b;
            }
        }
        for &n in &self.bottom_up {
            if let Some(p) = self.parent[n] {
                let (child, parent) = if n < p {
                    let (lo, hi) = flow.split_at_mut(p);
                    (&lo[n], &mut hi[0])
                } else {
                    let (lo, hi) = flow.split_at_mut(n);
                    (&hi[0], &mut lo[p])
                };
                for (a, b) in parent.iter_mut().zip(child) {
                    *a += b;
                }
            }
        }
        flow
    }
}

/// Makes a solver's charge and discharge exactly feasible: within their limits, and with the
/// state of charge they imply within its bounds and at or above the final target. Solvers meet
/// the dynamics only to their tolerance, so the state recomputed from the powers can be off by
/// microwatt-hours; the smallest change of the powers that fixes this is applied step by step.
fn repair_battery(b: &crate::instance::Battery, dt: f64, charge: &mut [f64], discharge: &mut [f64]) {
    let steps = charge.len();
    if steps == 0 {
        return;
    }
    let (a, e) = (dt * b.charge_efficiency, dt / b.discharge_efficiency);
    let target = b.soc_min_kwh.max(b.final_soc_min_kwh.unwrap_or(b.soc_min_kwh));
    let low = |t: usize| if t + 1 == steps { target } else { b.soc_min_kwh };
    for _ in 0..3 {
        // Forward: keep each step's state within its bounds.
        let mut level = b.initial_soc_kwh;
        for t in 0..steps {
            let (c, d) = (&mut charge[t], &mut discharge[t]);
            *c = c.clamp(0.0, b.max_charge_kw);
            *d = d.clamp(0.0, b.max_discharge_kw);
            let mut next = level + a * *c - e * *d;
            if next > b.soc_max_kwh {
                *c -= ((next - b.soc_max_kwh) / a).min(*c);
                next = level + a * *c - e * *d;
                if next > b.soc_max_kwh {
                    *d = (*d + (next - b.soc_max_kwh) / e).min(b.max_discharge_kw);
                    next = level + a * *c - e * *d;
                }
            }
            if next < low(t) {
                *d -= ((low(t) - next) / e).min(*d);
                next = level + a * *c - e * *d;
                if next < low(t) {
                    *c = (*c + (low(t) - next) / a).min(b.max_charge_kw);
                    next = level + a * *c - e * *d;
                }
            }
            level = next;
        }
        // Backward: a final state still short of its target takes energy from earlier steps.
        let mut short = target - level;
        if short <= 0.0 {
            return;
        }
        for t in (0..steps).rev() {
            let less = (short / e).min(discharge[t]);
            discharge[t] -= less;
            short -= less * e;
            let more = (short / a).min(b.max_charge_kw - charge[t]).max(0.0);
            charge[t] += more;
            short -= more * a;
            if short <= 0.0 {
                break;
            }
        }
    }
}

/// The priced deviation of a flow from a request's level.
pub(crate) fn request_deviation(kind: RequestKind, flow: f64, kw: f64) -> f64 {
    match kind {
        RequestKind::Target => (flow - kw).abs(),
        RequestKind::Cap => (flow - kw).max(0.0),
        RequestKind::Floor => (kw - flow).max(0.0),
    }
}

/// Derives the full plan from a solver's decisions: net flows from the energy balance, states
/// of charge from the dynamics, node flows from the sites, costs from all of these.
pub(crate) fn assemble(inst: &Instance, d: Decisions, stats: SolverStats) -> Plan {
    let steps = inst.steps;
    let dt = inst.step_hours();
    let tree = Tree::new(inst);
    let pen = &inst.penalties;
    let mut obj = Objective {
        total: 0.0,
        energy: 0.0,
        degradation: 0.0,
        stored_value: 0.0,
        curtailment: 0.0,
        imbalance: 0.0,
        requests: 0.0,
        violations: 0.0,
    };
    let mut violations = Vec::new();
    let mut site_net = Vec::with_capacity(inst.sites.len());
    let mut sites = Vec::with_capacity(inst.sites.len());
    for (s, site) in inst.sites.iter().enumerate() {
        let zeros = || vec![0.0; steps];
        let mut charge = d.charge.get(s).cloned().unwrap_or_else(zeros);
        let mut discharge = d.discharge.get(s).cloned().unwrap_or_else(zeros);
        if site.battery.is_none() {
            charge.fill(0.0);
            discharge.fill(0.0);
        }
        let mut curtail = d.curtail.get(s).cloned().unwrap_or_else(zeros);
        // The export limit is hard; a solver may pass it by its tolerance. Curtail (or
        // discharge less) by that much.
        for t in 0..steps {
            curtail[t] = curtail[t].clamp(0.0, site.pv_kw[t]);
            let n = site.load_kw[t] - site.pv_kw[t] + curtail[t] + charge[t] - discharge[t];
            let short = -site.export_limit_kw - n;
            if short > 0.0 {
                let more = short.min(site.pv_kw[t] - curtail[t]);
                curtail[t] += more;
                discharge[t] = (discharge[t] - (short - more)).max(0.0);
            }
        }
        if let Some(b) = &site.battery {
            repair_battery(b, dt, &mut charge, &mut discharge);
        }
        let mut import = Vec::with_capacity(steps);
        let mut export = Vec::with_capacity(steps);
        let mut net = Vec::with_capacity(steps);
        for t in 0..steps {
            let n = site.load_kw[t] - site.pv_kw[t] + curtail[t] + charge[t] - discharge[t];
            net.push(n);
            import.push(n.max(0.0));
            export.push((-n).max(0.0));
            obj.energy += dt
                * (inst.tariff.import_price[t] * n.max(0.0) - inst.tariff.feed_in_price[t] * (-n).max(0.0));
            obj.curtailment += dt * pen.curtailment_per_kwh * curtail[t];
            let over = n - site.import_limit_kw;
            if over > 0.0 {
                obj.violations += dt * pen.site_overload_per_kwh * over;
                if over > REPORT_TOLERANCE_KW {
                    violations.push(Violation {
                        kind: ViolationKind::SiteImport,
                        id: site.id.clone(),
                        step: t,
                        excess_kw: over,
                    });
                }
            }
            if let Some(Some(c)) = site.commitment_kw.as_ref().map(|c| c[t]) {
                obj.imbalance += dt * inst.tariff.imbalance_price[t] * (-n - c).abs();
            }
        }
        let mut soc = Vec::new();
        if let Some(b) = &site.battery {
            let mut level = b.initial_soc_kwh;
            for t in 0..steps {
                level += dt * (b.charge_efficiency * charge[t] - discharge[t] / b.discharge_efficiency);
                soc.push(level);
                obj.degradation += dt * b.degradation_cost_per_kwh * (charge[t] + discharge[t]);
            }
            obj.stored_value -= b.terminal_value_per_kwh * level;
        }
        site_net.push(net);
        sites.push(SitePlan {
            id: site.id.clone(),
            charge_kw: charge,
            discharge_kw: discharge,
            curtail_kw: curtail,
            import_kw: import,
            export_kw: export,
            soc_kwh: soc,
        });
    }

    let flows = tree.node_flows(&site_net, steps);
    let mut node_violations = Vec::new();
    let mut nodes = Vec::with_capacity(inst.nodes.len());
    for (k, node) in inst.nodes.iter().enumerate() {
        let mut binding = vec![None; steps];
        for t in 0..steps {
            let f = flows[k][t];
            if let Some(l) = node.import_limit_at(t) {
                let over = f - l;
                if over > -REPORT_TOLERANCE_KW {
                    binding[t] = Some(Binding::Import);
                }
                if over > 0.0 {
                    obj.violations += dt * pen.node_violation_per_kwh * over;
                    if over > REPORT_TOLERANCE_KW {
                        node_violations.push(Violation {
                            kind: ViolationKind::NodeImport,
                            id: node.id.clone(),
                            step: t,
                            excess_kw: over,
                        });
                    }
                }
            }
            if let Some(l) = node.export_limit_at(t) {
                let over = -f - l;
                if over > -REPORT_TOLERANCE_KW {
                    binding[t] = Some(Binding::Export);
                }
                if over > 0.0 {
                    obj.violations += dt * pen.node_violation_per_kwh * over;
                    if over > REPORT_TOLERANCE_KW {
                        node_violations.push(Violation {
                            kind: ViolationKind::NodeExport,
                            id: node.id.clone(),
                            step: t,
                            excess_kw: over,
                        });
                    }
                }
            }
        }
        nodes.push(NodePlan {
            id: node.id.clone(),
            net_kw: flows[k].clone(),
            binding,
            shadow_price: d.node_price.get(k).cloned().unwrap_or_else(|| vec![0.0; steps]),
        });
    }
    node_violations.sort_by_key(|v| v.kind == ViolationKind::NodeExport);
    violations.extend(node_violations);

    let mut area_net = vec![0.0; steps];
    for net in &site_net {
        for (a, b) in area_net.iter_mut().zip(net) {
            *a += b;
        }
    }
    let node_index: std::collections::HashMap<&str, usize> =
        inst.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let requests = inst
        .requests
        .iter()
        .map(|r| {
            let flow = match &r.node {
                Some(n) => node_index.get(n.as_str()).map_or(&area_net, |&k| &flows[k]),
                None => &area_net,
            };
            let window = &flow[r.from_step..r.to_step];
            let deviation_kw: Vec<f64> = window.iter().map(|&f| request_deviation(r.kind, f, r.kw)).collect();
            let binding = window
                .iter()
                .map(|&f| request_deviation(r.kind, f, r.kw) > 0.0 || (f - r.kw).abs() <= REPORT_TOLERANCE_KW)
                .collect();
            let cost = r.price_per_kw * deviation_kw.iter().sum::<f64>();
            obj.requests += cost;
            RequestOutcome { id: r.id.clone(), from_step: r.from_step, deviation_kw, binding, cost }
        })
        .collect();

    obj.total = obj.energy
        + obj.degradation
        + obj.curtailment
        + obj.imbalance
        + obj.requests
        + obj.violations
        + obj.stored_value;
    let area_price = if d.area_price.len() == steps { d.area_price } else { vec![0.0; steps] };
    Plan {
        input_hash: hex(&inst.input_hash()),
        step_minutes: inst.step_minutes,
        steps,
        sites,
        nodes,
        area: AreaPlan { net_kw: area_net, shadow_price: area_price },
        requests,
        violations,
        objective: obj,
        stats,
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Plan {
    /// A readable account of the plan for a terminal: the cost and its parts, the solver's
    /// certificate, every binding node limit with its shadow prices, the requests, and node peaks
    /// before (load − PV, no battery, no curtailment) and after.
    #[must_use]
    pub fn summary(&self, inst: &Instance) -> String {
        let mut out = String::new();
        let o = &self.objective;
        let clock = |step: usize| {
            let minutes = step * self.step_minutes as usize;
            format!("+{:02}:{:02}", minutes / 60, minutes % 60)
        };
        let _ = writeln!(
            out,
            "plan for {} sites under {} nodes, {} steps of {} min (input {})",
            self.sites.len(),
            self.nodes.len(),
            self.steps,
            self.step_minutes,
            self.input_hash.get(..12).unwrap_or(&self.input_hash),
        );
        let _ = write!(
            out,
            "total cost {:.2} = energy {:.2} + degradation {:.2} + curtailment {:.2} + imbalance {:.2} + requests {:.2} + violations {:.2}",
            o.total, o.energy, o.degradation, o.curtailment, o.imbalance, o.requests, o.violations
        );
        if o.stored_value != 0.0 {
            let _ = write!(out, " - stored at the end {:.2}", -o.stored_value);
        }
        out.push('\n');
        let st = &self.stats;
        let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1e}"));
        let _ = writeln!(
            out,
            "solver {}: {} iterations, relative gap {}, primal infeasibility {}, {:.3} s on {} thread(s)",
            st.solver,
            st.iterations,
            opt(st.relative_gap),
            opt(st.primal_infeasibility),
            st.seconds,
            st.threads
        );

        let _ = writeln!(out, "binding node limits (shadow price per kW per step):");
        let mut any = false;
        for (k, n) in self.nodes.iter().enumerate() {
            for side in [Binding::Import, Binding::Export] {
                let steps: Vec<usize> = (0..self.steps).filter(|&t| n.binding[t] == Some(side)).collect();
                if steps.is_empty() {
                    continue;
                }
                any = true;
                // The limit at the first binding step (a window may change it).
                let first = steps[0];
                let limit = match side {
                    Binding::Import => inst.nodes[k].import_limit_at(first),
                    Binding::Export => inst.nodes[k].export_limit_at(first),
                }
                .unwrap_or(f64::NAN);
                let prices: Vec<f64> = steps.iter().map(|&t| n.shadow_price[t]).collect();
                let max = prices.iter().copied().map(f64::abs).fold(0.0, f64::max);
                let mean = prices.iter().map(|p| p.abs()).sum::<f64>() / prices.len() as f64;
                // Runs of consecutive steps, as clock ranges.
                let mut runs: Vec<(usize, usize)> = Vec::new();
                for &t in &steps {
                    match runs.last_mut() {
                        Some(r) if r.1 == t => r.1 = t + 1,
                        _ => runs.push((t, t + 1)),
                    }
                }
                let mut when: Vec<String> =
                    runs.iter().take(4).map(|&(a, b)| format!("{}-{}", clock(a), clock(b))).collect();
                if runs.len() > 4 {
                    when.push(format!("and {} more", runs.len() - 4));
                }
                let _ = writeln!(
                    out,
                    "  {} {} limit {:.1} kW: {} steps ({}), shadow price mean {:.4}, max {:.4}",
                    n.id,
                    match side {
                        Binding::Import => "import",
                        Binding::Export => "export",
                    },
                    limit,
                    steps.len(),
                    when.join(", "),
                    mean,
                    max
                );
            }
        }
        if !any {
            let _ = writeln!(out, "  none");
        }

        if !self.requests.is_empty() {
            let _ = writeln!(out, "utility requests:");
        }
        for (r, req) in self.requests.iter().zip(&inst.requests) {
            let bound = r.binding.iter().filter(|b| **b).count();
            let max_dev = r.deviation_kw.iter().copied().fold(0.0, f64::max);
            let prices: Vec<f64> = (req.from_step..req.to_step)
                .map(|t| match &req.node {
                    Some(id) => self.nodes.iter().find(|n| &n.id == id).map_or(0.0, |n| n.shadow_price[t]),
                    None => self.area.shadow_price[t],
                })
                .collect();
            let max_price = prices.iter().copied().map(f64::abs).fold(0.0, f64::max);
            let _ = writeln!(
                out,
                "  {} ({:?} {:.1} kW on {}, {}..{}): at the level in {} of {} steps, largest deviation {:.3} kW, cost {:.2}, shadow price max {:.4}",
                r.id,
                req.kind,
                req.kw,
                req.node.as_deref().unwrap_or("area"),
                clock(req.from_step),
                clock(req.to_step),
                bound,
                r.binding.len(),
                max_dev,
                r.cost,
                max_price
            );
        }

        // Peaks before: the uncontrolled net (load - pv) per node.
        let tree = Tree::new(inst);
        let raw: Vec<Vec<f64>> =
            inst.sites.iter().map(|s| s.load_kw.iter().zip(&s.pv_kw).map(|(l, p)| l - p).collect()).collect();
        let before = tree.node_flows(&raw, self.steps);
        let mut area_before = vec![0.0; self.steps];
        for r in &raw {
            for (a, b) in area_before.iter_mut().zip(r) {
                *a += b;
            }
        }
        let peak = |v: &[f64]| {
            (v.iter().copied().fold(0.0_f64, f64::max), v.iter().map(|x| -x).fold(0.0_f64, f64::max))
        };
        let _ =
            writeln!(out, "node peaks, kW (import / export): {:>22} {:>22}", "before (load - pv)", "after");
        let mut row = |name: &str, b: &[f64], a: &[f64]| {
            let (bi, be) = peak(b);
            let (ai, ae) = peak(a);
            let _ = writeln!(out, "  {name:<32} {:>10.1} / {:>9.1} {:>10.1} / {:>9.1}", bi, be, ai, ae);
        };
        row("(all sites)", &area_before, &self.area.net_kw);
        for (k, n) in self.nodes.iter().enumerate() {
            row(&n.id, &before[k], &n.net_kw);
        }

        if self.violations.is_empty() {
            let _ = writeln!(out, "violations: none");
        } else {
            let _ = writeln!(out, "violations ({}):", self.violations.len());
            for v in self.violations.iter().take(20) {
                let _ =
                    writeln!(out, "  {:?} {} at {}: {:.3} kW over", v.kind, v.id, clock(v.step), v.excess_kw);
            }
            if self.violations.len() > 20 {
                let _ = writeln!(out, "  ... and {} more", self.violations.len() - 20);
            }
        }
        out
    }
}
