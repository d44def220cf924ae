//! The balancing LP written the plain monolithic way with good_lp and solved by HiGHS: one
//! variable per quantity, one row per balance, dynamics, commitment, node limit and request.
//!
//! It is the reference the structured solver ([`crate::ipm`]) is tested against, and the
//! fallback for problems outside that structure. It is much slower and uses much more memory:
//! every node row sums all sites of its subtree.

use std::time::Instant;

use good_lp::{Expression, IntoAffineExpression, ProblemVariables, SolverModel, Variable, variable};
use highs::HighsModelStatus;

use crate::OptimizeError;
use crate::instance::{Instance, RequestKind};
use crate::plan::{Decisions, Plan, SolverStats, Tree, assemble};

/// Which HiGHS algorithm solves the reference LP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// HiGHS picks (dual simplex for these problems).
    Choose,
    /// Dual simplex.
    Simplex,
    /// Interior point (HiGHS's IPX), optionally followed by crossover to a vertex.
    Ipm {
        /// Run crossover after the interior point method.
        crossover: bool,
    },
}

/// Options of the reference solve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReferenceOptions {
    /// The HiGHS algorithm.
    pub method: Method,
    /// Let HiGHS write its log to stdout.
    pub verbose: bool,
    /// Stop after this many seconds (an error then).
    pub time_limit_seconds: Option<f64>,
}

impl Default for ReferenceOptions {
    fn default() -> Self {
        Self { method: Method::Choose, verbose: false, time_limit_seconds: None }
    }
}

/// Solves the instance with HiGHS's default method.
///
/// # Errors
///
/// [`OptimizeError::Instance`] for an invalid instance; [`OptimizeError::Solver`] if HiGHS fails
/// (it never should: the LP is always feasible and bounded).
pub fn solve(inst: &Instance) -> Result<Plan, OptimizeError> {
    solve_with(inst, &ReferenceOptions::default())
}

/// A good_lp variable with its column number in the HiGHS model (columns are created in order).
#[derive(Clone, Copy)]
struct Col {
    var: Variable,
    index: usize,
}

impl IntoAffineExpression for Col {
    type Iter = std::iter::Once<(Variable, f64)>;

    fn linear_coefficients(self) -> Self::Iter {
        std::iter::once((self.var, 1.0))
    }
}

/// good_lp's variables, numbering the columns as they are created.
struct Cols {
    vars: ProblemVariables,
    count: usize,
}

impl Cols {
    fn add(&mut self, def: good_lp::VariableDefinition) -> Col {
        let var = self.vars.add(def);
        self.count += 1;
        Col { var, index: self.count - 1 }
    }
}

/// Per-site variables of the monolithic LP.
struct SiteVars {
    imp: Vec<Col>,
    over: Vec<Col>,
    exp: Vec<Col>,
    curtail: Vec<Option<Col>>,
    charge: Vec<Col>,
    discharge: Vec<Col>,
}

/// Solves the instance with the chosen HiGHS method.
///
/// # Errors
///
/// As [`solve`].
pub fn solve_with(inst: &Instance, opts: &ReferenceOptions) -> Result<Plan, OptimizeError> {
    inst.validate()?;
    let started = Instant::now();
    let steps = inst.steps;
    let dt = inst.step_hours();
    let pen = &inst.penalties;
    let tariff = &inst.tariff;
    let tree = Tree::new(inst);

    let mut vars = Cols { vars: ProblemVariables::new(), count: 0 };
    let mut objective = Expression::with_capacity(inst.sites.len() * steps * 8);
    // Rows are kept aside and added after the objective is fixed; good_lp numbers them in order.
    let mut rows: Vec<good_lp::Constraint> = Vec::new();
    let mut site_vars = Vec::with_capacity(inst.sites.len());
    for site in &inst.sites {
        let mut sv = SiteVars {
            imp: Vec::with_capacity(steps),
            over: Vec::with_capacity(steps),
            exp: Vec::with_capacity(steps),
            curtail: Vec::with_capacity(steps),
            charge: Vec::new(),
            discharge: Vec::new(),
        };
        let mut soc_prev: Option<Col> = None;
        for t in 0..steps {
            let imp = vars.add(variable().min(0.0).max(site.import_limit_kw));
            let over = vars.add(variable().min(0.0));
            let exp = vars.add(variable().min(0.0).max(site.export_limit_kw));
            objective.add_mul(dt * tariff.import_price[t], imp);
            objective.add_mul(dt * (tariff.import_price[t] + pen.site_overload_per_kwh), over);
            objective.add_mul(-dt * tariff.feed_in_price[t], exp);
            let curtail = (site.pv_kw[t] > 0.0).then(|| {
                let u = vars.add(variable().min(0.0).max(site.pv_kw[t]));
                objective.add_mul(dt * pen.curtailment_per_kwh, u);
                u
            });
            // pv - curtail + discharge + import = load + charge + export
            let mut balance = Expression::with_capacity(6);
            balance.add_mul(1.0, imp);
            balance.add_mul(1.0, over);
            balance.add_mul(-1.0, exp);
            if let Some(u) = curtail {
                balance.add_mul(-1.0, u);
            }
            if let Some(b) = &site.battery {
                let c = vars.add(variable().min(0.0).max(b.max_charge_kw));
                let d = vars.add(variable().min(0.0).max(b.max_discharge_kw));
                let low = if t + 1 == steps {
                    b.soc_min_kwh.max(b.final_soc_min_kwh.unwrap_or(b.soc_min_kwh))
                } else {
                    b.soc_min_kwh
                };
                let soc = vars.add(variable().min(low).max(b.soc_max_kwh));
                if t + 1 == steps {
                    objective.add_mul(-b.terminal_value_per_kwh, soc);
                }
                objective.add_mul(dt * b.degradation_cost_per_kwh, c);
                objective.add_mul(dt * b.degradation_cost_per_kwh, d);
                balance.add_mul(-1.0, c);
                balance.add_mul(1.0, d);
                // soc_t = soc_{t-1} + dt (eta_c c - d / eta_d)
                let mut dynamics = Expression::with_capacity(4);
                dynamics.add_mul(1.0, soc);
                dynamics.add_mul(-dt * b.charge_efficiency, c);
                dynamics.add_mul(dt / b.discharge_efficiency, d);
                let start = match soc_prev {
                    Some(p) => {
                        dynamics.add_mul(-1.0, p);
                        0.0
                    }
                    None => b.initial_soc_kwh,
                };
                rows.push(dynamics.eq(start));
                soc_prev = Some(soc);
                sv.charge.push(c);
                sv.discharge.push(d);
            }
            rows.push(balance.eq(site.load_kw[t] - site.pv_kw[t]));
            if let Some(Some(commit)) = site.commitment_kw.as_ref().map(|c| c[t]) {
                // export - import = commitment + above - below
                let above = vars.add(variable().min(0.0));
                let below = vars.add(variable().min(0.0));
                objective.add_mul(dt * tariff.imbalance_price[t], above);
                objective.add_mul(dt * tariff.imbalance_price[t], below);
                let mut e = Expression::with_capacity(5);
                e.add_mul(1.0, exp);
                e.add_mul(-1.0, imp);
                e.add_mul(-1.0, over);
                e.add_mul(-1.0, above);
                e.add_mul(1.0, below);
                rows.push(e.eq(commit));
            }
            sv.imp.push(imp);
            sv.over.push(over);
            sv.exp.push(exp);
            sv.curtail.push(curtail);
        }
        site_vars.push(sv);
    }

    // Sites below each node (whole subtree).
    let mut subtree: Vec<Vec<usize>> = vec![Vec::new(); inst.nodes.len()];
    for (s, &n) in tree.site_node.iter().enumerate() {
        let mut at = Some(n);
        while let Some(k) = at {
            subtree[k].push(s);
            at = tree.parent[k];
        }
    }
    let all_sites: Vec<usize> = (0..inst.sites.len()).collect();
    let net = |sites: &[usize], t: usize| {
        let mut e = Expression::with_capacity(sites.len() * 3 + 2);
        for &s in sites {
            e.add_mul(1.0, site_vars[s].imp[t]);
            e.add_mul(1.0, site_vars[s].over[t]);
            e.add_mul(-1.0, site_vars[s].exp[t]);
        }
        e
    };
    // Rows whose duals make up a node's (or the area's, index = nodes.len()) shadow price.
    let mut priced_rows: Vec<(usize, usize, usize)> = Vec::new();
    for (k, node) in inst.nodes.iter().enumerate() {
        for t in 0..steps {
            if let Some(limit) = node.import_limit_at(t) {
                let v = vars.add(variable().min(0.0));
                objective.add_mul(dt * pen.node_violation_per_kwh, v);
                let mut e = net(&subtree[k], t);
                e.add_mul(-1.0, v);
                priced_rows.push((k, t, rows.len()));
                rows.push(e.leq(limit));
            }
            if let Some(limit) = node.export_limit_at(t) {
                let v = vars.add(variable().min(0.0));
                objective.add_mul(dt * pen.node_violation_per_kwh, v);
                let mut e = net(&subtree[k], t);
                e.add_mul(1.0, v);
                priced_rows.push((k, t, rows.len()));
                rows.push(e.geq(-limit));
            }
        }
    }
    let area = inst.nodes.len();
    for r in &inst.requests {
        let (k, sites) = match &r.node {
            Some(id) => match inst.nodes.iter().position(|n| &n.id == id) {
                Some(k) => (k, &subtree[k]),
                None => (area, &all_sites),
            },
            None => (area, &all_sites),
        };
        for t in r.from_step..r.to_step {
            let mut e = net(sites, t);
            let up = vars.add(variable().min(0.0));
            objective.add_mul(r.price_per_kw, up);
            priced_rows.push((k, t, rows.len()));
            match r.kind {
                RequestKind::Cap => {
                    e.add_mul(-1.0, up);
                    rows.push(e.leq(r.kw));
                }
                RequestKind::Floor => {
                    e.add_mul(1.0, up);
                    rows.push(e.geq(r.kw));
                }
                RequestKind::Target => {
                    let down = vars.add(variable().min(0.0));
                    objective.add_mul(r.price_per_kw, down);
                    e.add_mul(-1.0, up);
                    e.add_mul(1.0, down);
                    rows.push(e.eq(r.kw));
                }
            }
        }
    }

    let mut problem = vars.vars.minimise(objective).using(good_lp::highs);
    for row in rows {
        problem.add_constraint(row);
    }
    let mut model = problem.try_into_inner().map_err(|e| OptimizeError::Solver(e.to_string()))?;
    if !opts.verbose {
        model.make_quiet();
    }
    let set = |model: &mut highs::Model, key: &str, value: &str| {
        model
            .try_set_option(key, value)
            .map_err(|e| OptimizeError::Solver(format!("HiGHS option {key}: {e:?}")))
    };
    let (name, crossover) = match opts.method {
        Method::Choose => ("highs", true),
        Method::Simplex => {
            set(&mut model, "solver", "simplex")?;
            ("highs-simplex", true)
        }
        Method::Ipm { crossover } => {
            set(&mut model, "solver", "ipm")?;
            set(&mut model, "run_crossover", if crossover { "on" } else { "off" })?;
            (if crossover { "highs-ipm+crossover" } else { "highs-ipm" }, crossover)
        }
    };
    if let Some(limit) = opts.time_limit_seconds {
        model
            .try_set_option("time_limit", limit)
            .map_err(|e| OptimizeError::Solver(format!("HiGHS option time_limit: {e:?}")))?;
    }
    let solved = model.try_solve().map_err(|e| OptimizeError::Solver(format!("HiGHS: {e:?}")))?;
    let status = solved.status();
    // Without crossover IPX stops at its own tolerances and reports an unknown status for a
    // solution that is optimal to those tolerances; the infeasibilities below say how close.
    let acceptable = matches!(status, HighsModelStatus::Optimal)
        || (!crossover && matches!(status, HighsModelStatus::Unknown));
    if !acceptable {
        return Err(OptimizeError::Solver(format!("HiGHS ended with status {status:?}")));
    }
    let iterations =
        [solved.simplex_iteration_count(), solved.ipm_iteration_count(), solved.crossover_iteration_count()]
            .iter()
            .map(|&i| i.max(0).unsigned_abs())
            .sum();
    let relative_gap = solved.double_info_value(c"primal_dual_objective_error").ok().filter(|v| *v >= 0.0);
    let primal = solved.double_info_value(c"max_primal_infeasibility").ok().filter(|v| *v >= 0.0);
    let dual = solved.double_info_value(c"max_dual_infeasibility").ok().filter(|v| *v >= 0.0);
    let solution = solved.get_solution();
    let cols = solution.columns();
    let row_duals = solution.dual_rows();
    let value = |v: Col| cols.get(v.index).copied().unwrap_or(0.0);

    let mut d = Decisions::default();
    for (site, sv) in inst.sites.iter().zip(&site_vars) {
        let pv = &site.pv_kw;
        d.curtail.push(
            sv.curtail
                .iter()
                .enumerate()
                .map(|(t, u)| u.map_or(0.0, |u| value(u).clamp(0.0, pv[t])))
                .collect(),
        );
        if let Some(b) = &site.battery {
            d.charge.push(sv.charge.iter().map(|&v| value(v).clamp(0.0, b.max_charge_kw)).collect());
            d.discharge.push(sv.discharge.iter().map(|&v| value(v).clamp(0.0, b.max_discharge_kw)).collect());
        } else {
            d.charge.push(vec![0.0; steps]);
            d.discharge.push(vec![0.0; steps]);
        }
    }
    let mut prices = vec![vec![0.0; steps]; inst.nodes.len() + 1];
    for (k, t, row) in priced_rows {
        // HiGHS's row dual is the objective's derivative by the row bound; relaxing the node by
        // one kW of import moves every bound of its rows by one.
        prices[k][t] -= row_duals.get(row).copied().unwrap_or(0.0);
    }
    d.area_price = prices.pop().unwrap_or_default();
    d.node_price = prices;

    let stats = SolverStats {
        solver: name.to_owned(),
        iterations,
        relative_gap,
        primal_infeasibility: primal,
        dual_infeasibility: dual,
        seconds: started.elapsed().as_secs_f64(),
        threads: 1,
    };
    Ok(assemble(inst, d, stats))
}
