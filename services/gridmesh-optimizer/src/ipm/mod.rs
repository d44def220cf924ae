//! A primal-dual interior-point solver for the balancing LP that exploits its structure: sites
//! only meet at their nodes, nodes only at their parents.
//!
//! Mehrotra's predictor-corrector on the boxed standard form of [`model`]; each iteration solves
//! the normal equations twice with one factorisation by elimination in levels (see [`kkt`]):
//! sites (balance pivots, tridiagonal state-of-charge blocks), then nodes (dense steps × steps
//! Cholesky) up the tree, then back down. Work per iteration is linear in the number of sites
//! (quadratic in the steps for battery sites, cubic in the steps for nodes), and groups of sites
//! and nodes of one level run in parallel.
//!
//! It stops when the relative duality gap and the scaled primal and dual infeasibilities are all
//! below their tolerances (defined in `docs/optimizer.md`) and reports them.

mod dense;
mod kkt;
mod model;

use std::sync::Mutex;
use std::time::Instant;

use kkt::{GroupFactor, NodeFactor};
use model::{GroupModel, Model};

use crate::OptimizeError;
use crate::instance::Instance;
use crate::plan::{Decisions, Plan, SolverStats, assemble};

/// Settings of the structured interior-point solver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IpmOptions {
    /// Stop when `|primal − dual| / max(1, |primal|)` is at most this.
    pub gap_tolerance: f64,
    /// ... and the scaled primal infeasibility is at most this ...
    pub primal_tolerance: f64,
    /// ... and the scaled dual infeasibility is at most this.
    pub dual_tolerance: f64,
    /// Give up after this many iterations ([`OptimizeError::NotConverged`]).
    pub max_iterations: u32,
    /// Worker threads; 0 = as many as the machine has.
    pub threads: usize,
    /// Gondzio centrality correctors per iteration (each costs one more solve with the same
    /// factorisation); 0 = plain Mehrotra predictor-corrector.
    pub correctors: usize,
    /// Write one line per iteration to stderr.
    pub log: bool,
}

impl Default for IpmOptions {
    fn default() -> Self {
        Self {
            gap_tolerance: 1e-6,
            // Tighter than the gap: the plan is derived from the primal values, and device
            // setpoints should meet balance and dynamics to far better than the cost's
            // tolerance (the last iterations usually bring these to 1e-10 anyway).
            primal_tolerance: 1e-8,
            dual_tolerance: 1e-8,
            max_iterations: 200,
            threads: 0,
            correctors: 0,
            log: false,
        }
    }
}

/// Share of the way to the boundary taken in each step.
const STEP_SHARE: f64 = 0.9995;
/// Primal regularisation added to Θ⁻¹, and dual regularisation added to the normal matrix.
const RHO: f64 = 1e-10;
const DELTA: f64 = 1e-10;
/// Below this many variables everything runs on the calling thread.
const PARALLEL_MIN_VARS: usize = 20_000;

/// Runs `f` on every item, on up to `threads` threads. Each item is handled exactly as it
/// would be on one thread, so results do not depend on the scheduling.
pub(crate) fn par_each<I, F>(threads: usize, items: impl IntoIterator<Item = I, IntoIter: Send>, f: F)
where
    I: Send,
    F: Fn(I) + Sync,
{
    let items = items.into_iter();
    if threads <= 1 {
        items.for_each(f);
        return;
    }
    let queue = Mutex::new(items);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let next = match queue.lock() {
                        Ok(mut q) => q.next(),
                        Err(_) => None,
                    };
                    match next {
                        Some(item) => f(item),
                        None => break,
                    }
                }
            });
        }
    });
}

/// Primal-dual iterate and work vectors of a block of variables (`w` = upper slack).
#[derive(Debug, Clone, Default)]
struct Vars {
    x: Vec<f64>,
    w: Vec<f64>,
    z: Vec<f64>,
    v: Vec<f64>,
    /// `1/x`, `1/w` and `Θ = 1/(z/x + v/w + ρ)` at the current iterate.
    xi: Vec<f64>,
    wi: Vec<f64>,
    theta: Vec<f64>,
    /// Dual residual `c − A'y − z + v`.
    rd: Vec<f64>,
    /// Complementarity right-hand sides of the current direction.
    rxz: Vec<f64>,
    rwv: Vec<f64>,
    /// The direction; `dx` doubles as the vector A and A' write into.
    dx: Vec<f64>,
    dz: Vec<f64>,
    dv: Vec<f64>,
    /// The affine direction's `dx`.
    dxa: Vec<f64>,
    /// The direction before a trial correction (empty without correctors).
    sdx: Vec<f64>,
    sdz: Vec<f64>,
    sdv: Vec<f64>,
}

/// Row vectors of a block of rows.
#[derive(Debug, Clone, Default)]
struct Rows {
    y: Vec<f64>,
    rp: Vec<f64>,
    rhs: Vec<f64>,
    dy: Vec<f64>,
    abs: Vec<f64>,
}

struct GroupState {
    vars: Vars,
    rows: Rows,
    /// The group's part of its node's rows for `x` and for the vector of a direction.
    flow_x: Vec<f64>,
    flow_d: Vec<f64>,
    fac: GroupFactor,
}

/// Sums and maxima over a block, combined in a fixed order.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    cx: f64,
    by: f64,
    ubv: f64,
    compl: f64,
    pairs: usize,
    pinf: f64,
    dinf: f64,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.cx += o.cx;
        self.by += o.by;
        self.ubv += o.ubv;
        self.compl += o.compl;
        self.pairs += o.pairs;
        self.pinf = self.pinf.max(o.pinf);
        self.dinf = self.dinf.max(o.dinf);
    }
}

/// Step lengths (primal, dual).
#[derive(Debug, Clone, Copy, Default)]
struct Steps {
    ap: f64,
    ad: f64,
}

/// The longest steps of a direction, and the complementarity after steps `(αp, αd)` as a
/// polynomial `c0 + αp·cp + αd·cd + αp·αd·cpd`.
#[derive(Debug, Clone, Copy, Default)]
struct Reach {
    steps: Steps,
    cp: f64,
    cd: f64,
    cpd: f64,
}

impl Reach {
    fn join(self, o: Reach) -> Reach {
        Reach {
            steps: Steps { ap: self.steps.ap.min(o.steps.ap), ad: self.steps.ad.min(o.steps.ad) },
            cp: self.cp + o.cp,
            cd: self.cd + o.cd,
            cpd: self.cpd + o.cpd,
        }
    }

    /// Complementarity after steps `s`, given its current value `c0`.
    fn compl(&self, c0: f64, s: Steps) -> f64 {
        c0 + s.ap * self.cp + s.ad * self.cd + s.ap * s.ad * self.cpd
    }
}

/// Which complementarity right-hand side a direction is computed for.
#[derive(Debug, Clone, Copy)]
enum Rhs {
    /// Mehrotra's predictor: `−XZe`.
    Affine,
    /// Mehrotra's corrector with target `σμ`, from the affine direction.
    Combined(f64),
    /// A Gondzio correction of the current direction for trial steps, target `σμ`.
    Correct(Steps, f64),
}

impl Vars {
    fn new(ub: &[f64], cost: &[f64], zeta: f64, correctors: bool) -> Self {
        let n = ub.len();
        let x: Vec<f64> = ub.iter().map(|u| 0.5 * u).collect();
        let zero = || vec![0.0; n];
        let spare = || if correctors { vec![0.0; n] } else { Vec::new() };
        Self {
            w: x.clone(),
            x,
            // Dual feasible with y = 0: z − v = c.
            z: cost.iter().map(|c| zeta + c.max(0.0)).collect(),
            v: cost.iter().map(|c| zeta + (-c).max(0.0)).collect(),
            xi: zero(),
            wi: zero(),
            theta: zero(),
            rd: zero(),
            rxz: zero(),
            rwv: zero(),
            dx: zero(),
            dz: zero(),
            dv: zero(),
            dxa: zero(),
            sdx: spare(),
            sdz: spare(),
            sdv: spare(),
        }
    }

    fn update(&mut self, s: Steps) {
        // Slices of one length let the compiler drop bounds checks and vectorise.
        let n = self.x.len();
        let (x, w, z, v) = (&mut self.x[..n], &mut self.w[..n], &mut self.z[..n], &mut self.v[..n]);
        let (dx, dz, dv) = (&self.dx[..n], &self.dz[..n], &self.dv[..n]);
        for j in 0..n {
            let d = s.ap * dx[j];
            x[j] += d;
            w[j] -= d;
            z[j] += s.ad * dz[j];
            v[j] += s.ad * dv[j];
        }
    }

    /// `rd = c − A'y − z + v` from `dx = A'y`; sums for the objectives and complementarity;
    /// the inverses and Θ for this iteration.
    fn dual_residual(&mut self, ub: &[f64], cost: &[f64], cscale: f64) -> Sums {
        let mut s = Sums::default();
        let n = self.x.len();
        let (xs, ws, zs, vs, aty) = (&self.x[..n], &self.w[..n], &self.z[..n], &self.v[..n], &self.dx[..n]);
        let (rds, xis, wis, th) =
            (&mut self.rd[..n], &mut self.xi[..n], &mut self.wi[..n], &mut self.theta[..n]);
        let (ub, cost) = (&ub[..n], &cost[..n]);
        for j in 0..n {
            let (x, w, z, v) = (xs[j], ws[j], zs[j], vs[j]);
            let rd = cost[j] - aty[j] - z + v;
            rds[j] = rd;
            let (xi, wi) = (1.0 / x, 1.0 / w);
            xis[j] = xi;
            wis[j] = wi;
            th[j] = 1.0 / (z * xi + v * wi + RHO);
        }
        for j in 0..n {
            s.cx += cost[j] * xs[j];
            s.ubv += ub[j] * vs[j];
            s.compl += xs[j] * zs[j] + ws[j] * vs[j];
            s.dinf = s.dinf.max(rds[j].abs());
        }
        s.dinf /= cscale;
        s.pairs = 2 * self.x.len();
        s
    }

    /// Sets the complementarity right-hand sides and `dx = Θ r̂`, `r̂ = rd − r_xz/x + r_wv/w`:
    /// the vector A is applied to.
    fn reduced_rhs(&mut self, rhs: Rhs) {
        let n = self.x.len();
        match rhs {
            Rhs::Affine => {
                let (x, w, z, v) = (&self.x[..n], &self.w[..n], &self.z[..n], &self.v[..n]);
                let (rxz, rwv) = (&mut self.rxz[..n], &mut self.rwv[..n]);
                for j in 0..n {
                    rxz[j] = -x[j] * z[j];
                    rwv[j] = -w[j] * v[j];
                }
            }
            Rhs::Combined(smu) => {
                std::mem::swap(&mut self.dxa, &mut self.dx);
                let (x, w, z, v, a) =
                    (&self.x[..n], &self.w[..n], &self.z[..n], &self.v[..n], &self.dxa[..n]);
                let (xi, wi) = (&self.xi[..n], &self.wi[..n]);
                let (rxz, rwv) = (&mut self.rxz[..n], &mut self.rwv[..n]);
                for j in 0..n {
                    // Second-order terms ΔX_aff ΔZ_aff e (and for the upper bounds) with
                    // Δz_aff = −z (1 + Δx_aff / x), Δv_aff = −v (1 − Δx_aff / w).
                    rxz[j] = smu - x[j] * z[j] + z[j] * a[j] * (1.0 + a[j] * xi[j]);
                    rwv[j] = smu - w[j] * v[j] - v[j] * a[j] * (1.0 - a[j] * wi[j]);
                }
            }
            Rhs::Correct(trial, smu) => {
                self.correct(trial, smu, 1.0);
                std::mem::swap(&mut self.dx, &mut self.sdx);
                std::mem::swap(&mut self.dz, &mut self.sdz);
                std::mem::swap(&mut self.dv, &mut self.sdv);
            }
        }
        let (rd, rxz, rwv) = (&self.rd[..n], &self.rxz[..n], &self.rwv[..n]);
        let (xi, wi, th) = (&self.xi[..n], &self.wi[..n], &self.theta[..n]);
        let dx = &mut self.dx[..n];
        for j in 0..n {
            dx[j] = th[j] * (rd[j] - rxz[j] * xi[j] + rwv[j] * wi[j]);
        }
    }

    /// Gondzio's centrality correction for the trial steps `s`: products of the trial point
    /// outside `[0.1 σμ, 10 σμ]` are pulled back towards it, through the complementarity
    /// right-hand sides (`sign` −1 takes a correction back, from the same direction).
    fn correct(&mut self, s: Steps, smu: f64, sign: f64) {
        let (lo, hi) = (0.1 * smu, 10.0 * smu);
        let pull = |p: f64| {
            if p < lo {
                lo - p
            } else if p > hi {
                (hi - p).max(-hi)
            } else {
                0.0
            }
        };
        let n = self.x.len();
        let (x, w, z, v) = (&self.x[..n], &self.w[..n], &self.z[..n], &self.v[..n]);
        let (dx, dz, dv) = (&self.dx[..n], &self.dz[..n], &self.dv[..n]);
        let (rxz, rwv) = (&mut self.rxz[..n], &mut self.rwv[..n]);
        for j in 0..n {
            let p1 = (x[j] + s.ap * dx[j]) * (z[j] + s.ad * dz[j]);
            let p2 = (w[j] - s.ap * dx[j]) * (v[j] + s.ad * dv[j]);
            rxz[j] += sign * pull(p1);
            rwv[j] += sign * pull(p2);
        }
    }

    /// Drops the last correction: the direction kept aside comes back.
    fn uncorrect(&mut self, trial: Steps, smu: f64) {
        std::mem::swap(&mut self.dx, &mut self.sdx);
        std::mem::swap(&mut self.dz, &mut self.sdz);
        std::mem::swap(&mut self.dv, &mut self.sdv);
        self.correct(trial, smu, -1.0);
    }

    /// From `dx = A'Δy`: `Δx = Θ (A'Δy − r̂)`, `Δz`, `Δv`, and the longest steps that keep the
    /// iterate inside its bounds.
    fn finish(&mut self) -> Reach {
        let n = self.x.len();
        let (xs, ws) = (&self.x[..n], &self.w[..n]);
        let (zs, vs, xis, wis, th) =
            (&self.z[..n], &self.v[..n], &self.xi[..n], &self.wi[..n], &self.theta[..n]);
        let (rd, rxzs, rwvs) = (&self.rd[..n], &self.rxz[..n], &self.rwv[..n]);
        let (dxs, dzs, dvs) = (&mut self.dx[..n], &mut self.dz[..n], &mut self.dv[..n]);
        for j in 0..n {
            let (xi, wi, rxz, rwv) = (xis[j], wis[j], rxzs[j], rwvs[j]);
            let dx = th[j] * (dxs[j] - (rd[j] - rxz * xi + rwv * wi));
            dxs[j] = dx;
            dzs[j] = (rxz - zs[j] * dx) * xi;
            dvs[j] = (rwv + vs[j] * dx) * wi;
        }
        // Four lanes of accumulators for the inverse step ratios (the longest step is
        // 1 / max) and for the complementarity after the steps,
        // (x + αp dx)(z + αd dz) + (w − αp dx)(v + αd dv), by powers of the steps.
        let (mut ip, mut id) = ([1.0_f64; 4], [1.0_f64; 4]);
        let (mut cp, mut cd, mut cpd) = ([0.0_f64; 4], [0.0_f64; 4], [0.0_f64; 4]);
        let whole = n / 4 * 4;
        for j0 in (0..whole).step_by(4) {
            for l in 0..4 {
                let j = j0 + l;
                let (dx, dz, dv) = (dxs[j], dzs[j], dvs[j]);
                let a = (-dx * xis[j]).max(dx * wis[j]);
                let b = (-dz / zs[j]).max(-dv / vs[j]);
                ip[l] = if a > ip[l] { a } else { ip[l] };
                id[l] = if b > id[l] { b } else { id[l] };
                cp[l] += dx * (zs[j] - vs[j]);
                cd[l] += xs[j] * dz + ws[j] * dv;
                cpd[l] += dx * (dz - dv);
            }
        }
        for j in whole..n {
            let (dx, dz, dv) = (dxs[j], dzs[j], dvs[j]);
            ip[0] = ip[0].max(-dx * xis[j]).max(dx * wis[j]);
            id[0] = id[0].max(-dz / zs[j]).max(-dv / vs[j]);
            cp[0] += dx * (zs[j] - vs[j]);
            cd[0] += xs[j] * dz + ws[j] * dv;
            cpd[0] += dx * (dz - dv);
        }
        let sum = |a: [f64; 4]| (a[0] + a[1]) + (a[2] + a[3]);
        let (cp, cd, cpd) = (sum(cp), sum(cd), sum(cpd));
        let ip = ip[0].max(ip[1]).max(ip[2].max(ip[3]));
        let id = id[0].max(id[1]).max(id[2].max(id[3]));
        Reach { steps: Steps { ap: 1.0 / ip, ad: 1.0 / id }, cp, cd, cpd }
    }
}

impl Rows {
    fn new(n: usize) -> Self {
        Self { y: vec![0.0; n], rp: vec![0.0; n], rhs: vec![0.0; n], dy: vec![0.0; n], abs: vec![0.0; n] }
    }

    /// `rp = b − Ax` from `rp = Ax`; scaled primal infeasibility and `b'y`.
    fn primal_residual(&mut self, b: &[f64]) -> Sums {
        let mut s = Sums::default();
        for (((rp, b), abs), y) in self.rp.iter_mut().zip(b).zip(&self.abs).zip(&self.y) {
            *rp = b - *rp;
            s.pinf = s.pinf.max(rp.abs() / (1.0 + b.abs() + abs));
            s.by += b * y;
        }
        s
    }

    /// `rhs += rp`.
    fn add_rp(&mut self) {
        for (r, p) in self.rhs.iter_mut().zip(&self.rp) {
            *r += p;
        }
    }
}

/// The solver's whole state.
struct Solver<'m> {
    model: &'m Model,
    groups: Vec<GroupState>,
    node_vars: Vars,
    node_rows: Rows,
    node_fac: NodeFactor,
    threads: usize,
    cscale: f64,
}

/// What the iteration loop ended with.
struct Outcome {
    iterations: u64,
    gap: f64,
    pinf: f64,
    dinf: f64,
}

/// Runs `f` on each group in parallel and combines the per-group results in group order.
fn collect<T: Send + Default>(
    threads: usize,
    model: &Model,
    groups: &mut [GroupState],
    f: impl Fn(&GroupModel, &mut GroupState) -> T + Sync,
) -> Vec<T> {
    let results: Vec<Mutex<T>> = groups.iter().map(|_| Mutex::new(T::default())).collect();
    par_each(threads, model.groups.iter().zip(groups.iter_mut()).zip(&results), |((gm, gs), out)| {
        let r = f(gm, gs);
        if let Ok(mut o) = out.lock() {
            *o = r;
        }
    });
    results.into_iter().map(|m| m.into_inner().unwrap_or_default()).collect()
}

impl<'m> Solver<'m> {
    fn new(model: &'m Model, threads: usize, correctors: bool) -> Self {
        let cmax = model
            .groups
            .iter()
            .flat_map(|g| g.cost.iter())
            .chain(&model.node_cost)
            .fold(0.0_f64, |m, c| m.max(c.abs()));
        // Initial duals: a tenth of the largest price, at least a small floor.
        let zeta = (0.1 * cmax).max(1e-3);
        let groups = model
            .groups
            .iter()
            .map(|gm| GroupState {
                vars: Vars::new(&gm.ub, &gm.cost, zeta, correctors),
                rows: Rows::new(gm.b.len()),
                flow_x: vec![0.0; model.t],
                flow_d: vec![0.0; model.t],
                fac: GroupFactor::new(gm),
            })
            .collect();
        Self {
            model,
            groups,
            node_vars: Vars::new(&model.node_ub, &model.node_cost, zeta, correctors),
            node_rows: Rows::new(model.node_b.len()),
            node_fac: NodeFactor::new(model),
            threads,
            cscale: 1.0 + cmax,
        }
    }

    /// The node rows' part of a direction once the groups' forward passes are done: the
    /// right-hand side from `dx = Θ r̂` and the groups' flows, then the node solve into `dy`.
    fn node_direction(&mut self) {
        let model = self.model;
        {
            let flows: Vec<&[f64]> = self.groups.iter().map(|g| g.flow_d.as_slice()).collect();
            model.node_ax(&self.node_vars.dx, &flows, &mut self.node_rows.rhs, &mut self.node_rows.abs);
        }
        self.node_rows.add_rp();
        self.node_rows.dy.copy_from_slice(&self.node_rows.rhs);
        let facs: Vec<&GroupFactor> = self.groups.iter().map(|g| &g.fac).collect();
        kkt::solve_nodes(model, &facs, &mut self.node_fac, &mut self.node_rows.dy);
    }

    /// One pass over the groups that takes the previous step (if any), computes the residuals,
    /// factorises, and starts the affine direction; then the same for the nodes. Returns the
    /// measures of convergence and μ at the new iterate.
    fn start(&mut self, step: Option<Steps>) -> (Sums, f64) {
        let model = self.model;
        let t = model.t;
        if let Some(s) = step {
            self.node_vars.update(s);
            for (y, dy) in self.node_rows.y.iter_mut().zip(&self.node_rows.dy) {
                *y += s.ad * dy;
            }
        }
        let cscale = self.cscale;
        let ny = &self.node_rows.y;
        let sums = collect(self.threads, model, &mut self.groups, |gm, gs| {
            if let Some(s) = step {
                gs.vars.update(s);
                for (y, dy) in gs.rows.y.iter_mut().zip(&gs.rows.dy) {
                    *y += s.ad * dy;
                }
            }
            let nyg = gm.node.map(|j| &ny[j * t..(j + 1) * t]);
            gm.aty(&gs.rows.y, nyg, &mut gs.vars.dx);
            let mut sums = gs.vars.dual_residual(&gm.ub, &gm.cost, cscale);
            gm.ax(&gs.vars.x, &mut gs.rows.rp, &mut gs.rows.abs, &mut gs.flow_x);
            sums.add(&gs.rows.primal_residual(&gm.b));
            kkt::factor_group(gm, &gs.vars.theta, DELTA, &mut gs.fac);
            gs.vars.reduced_rhs(Rhs::Affine);
            gm.ax(&gs.vars.dx, &mut gs.rows.rhs, &mut gs.rows.abs, &mut gs.flow_d);
            gs.rows.add_rp();
            kkt::forward_group(gm, &gs.rows.rhs, &mut gs.fac);
            sums
        });
        let mut total = Sums::default();
        for s in &sums {
            total.add(s);
        }
        model.node_aty(&self.node_rows.y, &mut self.node_vars.dx);
        total.add(&self.node_vars.dual_residual(&model.node_ub, &model.node_cost, cscale));
        {
            let flows: Vec<&[f64]> = self.groups.iter().map(|g| g.flow_x.as_slice()).collect();
            model.node_ax(&self.node_vars.x, &flows, &mut self.node_rows.rp, &mut self.node_rows.abs);
        }
        total.add(&self.node_rows.primal_residual(&model.node_b));
        {
            let facs: Vec<&GroupFactor> = self.groups.iter().map(|g| &g.fac).collect();
            kkt::factor_nodes(model, &self.node_vars.theta, DELTA, &facs, &mut self.node_fac, self.threads);
        }
        self.node_vars.reduced_rhs(Rhs::Affine);
        self.node_direction();
        let mu = if total.pairs > 0 { total.compl / total.pairs as f64 } else { 0.0 };
        (total, mu)
    }

    /// Starts a direction for another right-hand side with the same factorisation.
    fn restart(&mut self, rhs: Rhs) {
        let model = self.model;
        par_each(self.threads, model.groups.iter().zip(self.groups.iter_mut()), |(gm, gs)| {
            gs.vars.reduced_rhs(rhs);
            gm.ax(&gs.vars.dx, &mut gs.rows.rhs, &mut gs.rows.abs, &mut gs.flow_d);
            gs.rows.add_rp();
            kkt::forward_group(gm, &gs.rows.rhs, &mut gs.fac);
        });
        self.node_vars.reduced_rhs(rhs);
        self.node_direction();
    }

    /// Finishes the direction started: back-substitution through the groups, `dx`, `dz`, `dv`,
    /// the longest steps and the complementarity polynomial.
    fn finish(&mut self) -> Reach {
        let model = self.model;
        let t = model.t;
        let ndy = &self.node_rows.dy;
        let steps = collect(self.threads, model, &mut self.groups, |gm, gs| {
            let dn = gm.node.map(|j| &ndy[j * t..(j + 1) * t]);
            kkt::backward_group(gm, &gs.rows.rhs, dn, &gs.fac, &mut gs.rows.dy);
            gm.aty(&gs.rows.dy, dn, &mut gs.vars.dx);
            gs.vars.finish()
        });
        model.node_aty(&self.node_rows.dy, &mut self.node_vars.dx);
        steps.into_iter().fold(self.node_vars.finish(), Reach::join)
    }

    fn uncorrect(&mut self, trial: Steps, smu: f64) {
        par_each(self.threads, self.groups.iter_mut(), |gs| gs.vars.uncorrect(trial, smu));
        self.node_vars.uncorrect(trial, smu);
    }

    fn run(&mut self, opts: &IpmOptions) -> Result<Outcome, OptimizeError> {
        let model = self.model;
        let mut step = None;
        let mut last =
            Outcome { iterations: 0, gap: f64::INFINITY, pinf: f64::INFINITY, dinf: f64::INFINITY };
        for iter in 0..=opts.max_iterations {
            let (s, mu) = self.start(step);
            let primal = s.cx + model.constant;
            let dual = s.by - s.ubv + model.constant;
            let gap = (primal - dual).abs() / primal.abs().max(1.0);
            last = Outcome { iterations: u64::from(iter), gap, pinf: s.pinf, dinf: s.dinf };
            if opts.log {
                eprintln!(
                    "ipm {iter:3}: primal {primal:.9e} dual {dual:.9e} gap {gap:.2e} pinf {:.2e} dinf {:.2e} mu {mu:.2e}",
                    s.pinf, s.dinf
                );
            }
            if !(primal.is_finite() && dual.is_finite() && mu.is_finite()) {
                return Err(OptimizeError::NumericalTrouble(format!("iteration {iter}: non-finite iterate")));
            }
            if gap <= opts.gap_tolerance && s.pinf <= opts.primal_tolerance && s.dinf <= opts.dual_tolerance {
                return Ok(last);
            }
            if iter == opts.max_iterations {
                break;
            }

            // Predictor (its solve was started with the factorisation).
            let ra = self.finish();
            let sa = ra.steps;
            let mu_aff = ra.compl(s.compl, sa) / s.pairs.max(1) as f64;
            let sigma = (mu_aff / mu).powi(3).clamp(0.0, 1.0);
            let smu = sigma * mu;

            // Corrector.
            self.restart(Rhs::Combined(smu));
            let mut st = self.finish().steps;
            // Gondzio's centrality correctors: aim beyond the steps just found and pull the
            // outlying products back towards σμ; keep a correction only if it lengthens the
            // steps enough to pay for its solve.
            let mut corrections = 0;
            while corrections < opts.correctors && st.ap.min(st.ad) < 0.95 {
                let trial = Steps { ap: (1.5 * st.ap + 0.1).min(1.0), ad: (1.5 * st.ad + 0.1).min(1.0) };
                self.restart(Rhs::Correct(trial, smu));
                let st2 = self.finish().steps;
                if st2.ap + st2.ad >= 1.05 * (st.ap + st.ad) {
                    st = st2;
                    corrections += 1;
                } else {
                    self.uncorrect(trial, smu);
                    break;
                }
            }
            let next = Steps { ap: (STEP_SHARE * st.ap).min(1.0), ad: (STEP_SHARE * st.ad).min(1.0) };
            if opts.log {
                eprintln!(
                    "      affine {:.3} {:.3} sigma {sigma:.2e}; steps {:.3} {:.3} after {corrections} corrections",
                    sa.ap, sa.ad, next.ap, next.ad
                );
            }
            step = Some(next);
        }
        Err(OptimizeError::NotConverged {
            iterations: last.iterations,
            relative_gap: last.gap,
            primal_infeasibility: last.pinf,
            dual_infeasibility: last.dinf,
        })
    }

    /// The decisions at the current iterate: device powers and the nodes' shadow prices.
    fn decisions(&self, inst: &Instance) -> Decisions {
        let model = self.model;
        let t_len = model.t;
        let mut d = Decisions {
            charge: vec![vec![0.0; t_len]; inst.sites.len()],
            discharge: vec![vec![0.0; t_len]; inst.sites.len()],
            curtail: vec![vec![0.0; t_len]; inst.sites.len()],
            node_price: vec![vec![0.0; t_len]; inst.nodes.len()],
            area_price: vec![0.0; t_len],
        };
        for (gm, gs) in model.groups.iter().zip(&self.groups) {
            for sm in &gm.sites {
                let site = &inst.sites[sm.inst];
                for t in 0..t_len {
                    let ix = sm.idx(t);
                    let x = &gs.vars.x;
                    if let Some(u) = ix.u {
                        d.curtail[sm.inst][t] = x[u].clamp(0.0, site.pv_kw[t]);
                    }
                    if let Some(c) = ix.c {
                        d.charge[sm.inst][t] = x[c].max(0.0);
                    }
                    if let Some(dd) = ix.d {
                        d.discharge[sm.inst][t] = x[dd].max(0.0);
                    }
                }
            }
        }
        let ny = &self.node_rows.y;
        for (j, nm) in model.nodes.iter().enumerate() {
            let price: Vec<f64> = (0..t_len)
                .map(|t| nm.parent.map_or(0.0, |p| ny[p * t_len + t]) - ny[j * t_len + t])
                .collect();
            match nm.inst {
                Some(k) => d.node_price[k] = price,
                None => d.area_price = price,
            }
        }
        d
    }
}

/// Solves the instance with the structured interior-point method.
///
/// # Errors
///
/// [`OptimizeError::Instance`] for an invalid instance; [`OptimizeError::NotConverged`] if the
/// tolerances are not met within the iteration limit; [`OptimizeError::NumericalTrouble`] if
/// the iterates stop being finite.
pub fn solve(inst: &Instance, opts: &IpmOptions) -> Result<Plan, OptimizeError> {
    inst.validate()?;
    let started = Instant::now();
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    } else {
        opts.threads
    };
    let model = Model::build(inst);
    // Threads only pay off with enough work per sweep.
    let vars: usize = model.groups.iter().map(|g| g.ub.len()).sum();
    let threads = if vars < PARALLEL_MIN_VARS { 1 } else { threads.min(model.groups.len()).max(1) };
    let mut solver = Solver::new(&model, threads, opts.correctors > 0);
    let out = solver.run(opts)?;
    let decisions = solver.decisions(inst);
    drop(solver);
    let stats = SolverStats {
        solver: "gridmesh-ipm".to_owned(),
        iterations: out.iterations,
        relative_gap: Some(out.gap),
        primal_infeasibility: Some(out.pinf),
        dual_infeasibility: Some(out.dinf),
        seconds: started.elapsed().as_secs_f64(),
        threads,
    };
    Ok(assemble(inst, decisions, stats))
}
