//! The balancing LP in the form the structured solver works on, and its matrix products.
//!
//! Standard form with boxes: minimise `c'x + K` subject to `A x = b`, `0 ≤ x ≤ ub`, every
//! variable boxed. The balance equation is gone: a site's net import is `n = lo + Σ w_i`, where
//! the `w_i` are the segments of the site's convex piecewise-linear cost of `n` (feed-in,
//! import, overload, commitment deviation). A node's flow is `F = lo + Σ v_j` likewise, over the
//! segments of its cost (limits with violation penalties, requests). Rows:
//!
//! * `B[s,t]`: `Σ w − u − c + d = load − pv − lo`, the energy balance of site `s` in step `t`;
//! * `S[s,t]`: `soc_t − soc_{t−1} − Δh·η_c·c + Δh/η_d·d = l_{t−1} − l_t` (sites with a battery;
//!   `soc` is shifted by its lower bound `l_t`, `l_{−1}` is the initial state);
//! * `N[k,t]`: `Σ_{sites below} Σ w + Σ_{child nodes} Σ v_child − Σ v_k = …`: node `k`'s flow
//!   is the sum of what hangs below it.
//!
//! Only nodes with a limit or a request get rows ("row nodes"); a site or node below an
//! unconstrained node hangs on the nearest row node above it, or on nothing. Sites are cut into
//! groups under the same row node; groups are the unit of parallel work and own their data.

use crate::instance::{Instance, RequestKind};
use crate::plan::Tree;

/// Below this a PV forecast, a battery power or a segment is treated as zero (kW or kWh).
const TINY: f64 = 1e-9;

/// Where one step's variables of one site sit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Step {
    /// Offset of the step's first variable from the site's first variable.
    pub off: u32,
    /// Number of cost segments of the site's net import.
    pub nseg: u8,
    /// Whether PV can be curtailed (there is PV).
    pub has_u: bool,
    /// Whether the state of charge is a variable (it is fixed at the end when the final target
    /// equals the upper bound).
    pub has_soc: bool,
}

/// Indices of one site-step's variables within its group.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepIdx {
    pub seg: usize,
    pub nseg: usize,
    pub u: Option<usize>,
    pub c: Option<usize>,
    pub d: Option<usize>,
    pub soc: Option<usize>,
}

/// Battery coefficients of a site.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bat {
    /// `Δh·η_c`: stored kWh per kW charged over a step.
    pub a: f64,
    /// `Δh/η_d`: stored kWh per kW discharged over a step.
    pub b: f64,
    pub has_c: bool,
    pub has_d: bool,
}

/// One site in a group.
#[derive(Debug, Clone)]
pub(super) struct SiteModel {
    /// Index of the site in the instance.
    pub inst: usize,
    /// First variable within the group.
    pub var0: usize,
    /// First row within the group: `T` balance rows, then `T` dynamics rows with a battery.
    pub row0: usize,
    pub steps: Vec<Step>,
    pub bat: Option<Bat>,
}

impl SiteModel {
    pub fn idx(&self, t: usize) -> StepIdx {
        let st = self.steps[t];
        let seg = self.var0 + st.off as usize;
        let mut at = seg + usize::from(st.nseg);
        let mut take = |present: bool| {
            present.then(|| {
                at += 1;
                at - 1
            })
        };
        let u = take(st.has_u);
        let (c, d) = match self.bat {
            Some(b) => (take(b.has_c), take(b.has_d)),
            None => (None, None),
        };
        let soc = take(st.has_soc);
        StepIdx { seg, nseg: usize::from(st.nseg), u, c, d, soc }
    }
}

/// A group of sites hanging on the same row node (or on none).
#[derive(Debug, Clone)]
pub(super) struct GroupModel {
    /// The row node the sites' net import flows into.
    pub node: Option<usize>,
    pub sites: Vec<SiteModel>,
    /// Per variable: upper bound (lower bounds are 0) and cost.
    pub ub: Vec<f64>,
    pub cost: Vec<f64>,
    /// Per row: right-hand side.
    pub b: Vec<f64>,
    /// Number of steps.
    pub t: usize,
}

/// A node with rows.
#[derive(Debug, Clone)]
pub(super) struct NodeModel {
    /// Index of the node in the instance; `None` for the area above all roots.
    pub inst: Option<usize>,
    /// Parent row node.
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    /// First variable (within the node variables) per step, and the number of segments.
    pub step_off: Vec<u32>,
    pub nseg: Vec<u8>,
}

impl NodeModel {
    pub fn seg(&self, t: usize) -> std::ops::Range<usize> {
        let o = self.step_off[t] as usize;
        o..o + usize::from(self.nseg[t])
    }
}

/// The whole structured LP.
#[derive(Debug, Clone)]
pub(super) struct Model {
    pub t: usize,
    pub groups: Vec<GroupModel>,
    /// Row nodes, children before parents.
    pub nodes: Vec<NodeModel>,
    /// Row nodes by height (leaves first): nodes of one level are independent.
    pub levels: Vec<Vec<usize>>,
    /// Node variables: upper bound and cost.
    pub node_ub: Vec<f64>,
    pub node_cost: Vec<f64>,
    /// Node rows (`T` per node, in node order): right-hand side.
    pub node_b: Vec<f64>,
    /// Constant part of the objective.
    pub constant: f64,
}

/// A convex piecewise-linear cost `a·x + k + Σ w_i·max(x − p_i, 0)` with `w_i ≥ 0`.
#[derive(Debug, Clone, Default)]
struct Pwl {
    a: f64,
    k: f64,
    hinges: Vec<(f64, f64)>,
}

impl Pwl {
    fn hinge(&mut self, at: f64, weight: f64) {
        if weight > 0.0 {
            self.hinges.push((at, weight));
        }
    }

    /// The cost at `lo`, and the segments (length, slope) covering `[lo, hi]`.
    fn segments(&mut self, lo: f64, hi: f64) -> (f64, Vec<(f64, f64)>) {
        self.hinges.sort_by(|x, y| x.0.total_cmp(&y.0));
        let value =
            self.a * lo + self.k + self.hinges.iter().map(|&(p, w)| w * (lo - p).max(0.0)).sum::<f64>();
        let eps = TINY * (1.0 + lo.abs().max(hi.abs()));
        let mut slope = self.a;
        let mut at = lo;
        let mut out = Vec::new();
        for &(p, w) in &self.hinges {
            if p >= hi - eps {
                break;
            }
            if p > at + eps {
                out.push((p - at, slope));
                at = p;
            }
            slope += w;
        }
        out.push((hi - at, slope));
        (value, out)
    }
}

/// Group size: enough sites to amortise the per-group dense matrix, enough groups to balance
/// the threads.
pub(super) const GROUP_SITES: usize = 64;

impl Model {
    /// Builds the structured LP of a validated instance.
    pub fn build(inst: &Instance) -> Self {
        let t_len = inst.steps;
        let dt = inst.step_hours();
        let tree = Tree::new(inst);
        let pen = &inst.penalties;

        // Which instance nodes carry a cost, and the area.
        let n_nodes = inst.nodes.len();
        let area = n_nodes;
        let mut constrained = vec![false; n_nodes + 1];
        for (k, n) in inst.nodes.iter().enumerate() {
            constrained[k] = n.has_limits();
        }
        let node_index: std::collections::HashMap<&str, usize> =
            inst.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
        let request_node = |node: &Option<String>| match node {
            Some(id) => node_index.get(id.as_str()).copied().unwrap_or(area),
            None => area,
        };
        for r in &inst.requests {
            constrained[request_node(&r.node)] = true;
        }
        // Nearest row node at or above each instance node (top-down over the tree).
        let mut anchor: Vec<Option<usize>> = vec![None; n_nodes];
        let area_anchor = constrained[area].then_some(area);
        for &k in tree.bottom_up.iter().rev() {
            anchor[k] = if constrained[k] {
                Some(k)
            } else {
                match tree.parent[k] {
                    Some(p) => anchor[p],
                    None => area_anchor,
                }
            };
        }
        // Row nodes in bottom-up order, numbered 0..; the area last.
        let mut row_of = vec![usize::MAX; n_nodes + 1];
        let mut order: Vec<usize> = tree.bottom_up.iter().copied().filter(|&k| constrained[k]).collect();
        if constrained[area] {
            order.push(area);
        }
        for (j, &k) in order.iter().enumerate() {
            row_of[k] = j;
        }
        let row_parent = |k: usize| -> Option<usize> {
            if k == area {
                return None;
            }
            let up = match tree.parent[k] {
                Some(p) => anchor[p],
                None => area_anchor,
            };
            up.map(|u| row_of[u])
        };

        // Physical range of each site's net import per step: n ≥ -export limit (hard),
        // n ≤ load + max charge (implied).
        let site_lo: Vec<f64> = inst.sites.iter().map(|s| -s.export_limit_kw).collect();
        let site_hi: Vec<Vec<f64>> = inst
            .sites
            .iter()
            .map(|s| {
                let c = s.battery.as_ref().map_or(0.0, |b| b.max_charge_kw);
                s.load_kw.iter().map(|l| l + c).collect()
            })
            .collect();

        // Range of each row node's flow: sums over its whole subtree of sites.
        let mut node_lo = vec![0.0; order.len()];
        let mut node_hi = vec![vec![0.0; t_len]; order.len()];
        let site_anchor: Vec<Option<usize>> =
            tree.site_node.iter().map(|&k| anchor.get(k).copied().flatten().map(|a| row_of[a])).collect();
        let row_parents: Vec<Option<usize>> = order.iter().map(|&k| row_parent(k)).collect();
        for (s, a) in site_anchor.iter().enumerate() {
            let mut at = *a;
            while let Some(j) = at {
                node_lo[j] += site_lo[s];
                for (h, v) in node_hi[j].iter_mut().zip(&site_hi[s]) {
                    *h += v;
                }
                at = row_parents[j];
            }
        }

        let mut constant = 0.0;

        // Node variables and rows.
        let mut nodes = Vec::with_capacity(order.len());
        let mut node_ub = Vec::new();
        let mut node_cost = Vec::new();
        let mut node_base = vec![vec![0.0; t_len]; order.len()];
        for (j, &k) in order.iter().enumerate() {
            let mut step_off = Vec::with_capacity(t_len);
            let mut nseg = Vec::with_capacity(t_len);
            for t in 0..t_len {
                let mut f = Pwl::default();
                if k < n_nodes {
                    let n = &inst.nodes[k];
                    let w = dt * pen.node_violation_per_kwh;
                    if let Some(l) = n.import_limit_at(t) {
                        f.hinge(l, w);
                    }
                    if let Some(l) = n.export_limit_at(t) {
                        // max(-l - F, 0) = (-l - F) + max(F + l, 0)
                        f.a -= w;
                        f.k -= w * l;
                        f.hinge(-l, w);
                    }
                }
                for r in inst.requests.iter().filter(|r| request_node(&r.node) == k) {
                    if t < r.from_step || t >= r.to_step {
                        continue;
                    }
                    let p = r.price_per_kw;
                    match r.kind {
                        RequestKind::Cap => f.hinge(r.kw, p),
                        RequestKind::Floor => {
                            f.a -= p;
                            f.k += p * r.kw;
                            f.hinge(r.kw, p);
                        }
                        RequestKind::Target => {
                            f.a -= p;
                            f.k += p * r.kw;
                            f.hinge(r.kw, 2.0 * p);
                        }
                    }
                }
                let margin = 1.0 + 0.01 * node_lo[j].abs().max(node_hi[j][t].abs());
                let lo = node_lo[j] - margin;
                let hi = node_hi[j][t] + margin;
                let (value, segs) = f.segments(lo, hi);
                constant += value;
                node_base[j][t] = lo;
                step_off.push(node_ub.len() as u32);
                nseg.push(segs.len() as u8);
                for (len, slope) in segs {
                    node_ub.push(len);
                    node_cost.push(slope);
                }
            }
            nodes.push(NodeModel {
                inst: (k < n_nodes).then_some(k),
                parent: row_parents[j],
                children: Vec::new(),
                step_off,
                nseg,
            });
        }
        for j in 0..nodes.len() {
            if let Some(p) = nodes[j].parent {
                nodes[p].children.push(j);
            }
        }
        // N[k,t]: Σ_sites (lo_s + Σw) + Σ_children (lo_c + Σv_c) − (lo_k + Σv_k) = 0.
        let mut node_b = vec![0.0; order.len() * t_len];
        for (j, nm) in nodes.iter().enumerate() {
            for t in 0..t_len {
                let mut rhs = node_base[j][t];
                for &c in &nm.children {
                    rhs -= node_base[c][t];
                }
                node_b[j * t_len + t] = rhs;
            }
        }
        for (s, a) in site_anchor.iter().enumerate() {
            if let Some(j) = a {
                for t in 0..t_len {
                    node_b[j * t_len + t] -= site_lo[s];
                }
            }
        }

        // Heights for level-parallel elimination.
        let mut height = vec![0_usize; nodes.len()];
        for j in 0..nodes.len() {
            if let Some(p) = nodes[j].parent {
                height[p] = height[p].max(height[j] + 1);
            }
        }
        let levels_n = height.iter().copied().max().map_or(0, |h| h + 1);
        let mut levels = vec![Vec::new(); levels_n];
        for (j, &h) in height.iter().enumerate() {
            levels[h].push(j);
        }

        // Groups: sites by anchor, in instance order within each.
        let mut by_anchor: Vec<Vec<usize>> = vec![Vec::new(); order.len() + 1];
        for (s, a) in site_anchor.iter().enumerate() {
            by_anchor[a.unwrap_or(order.len())].push(s);
        }
        let mut groups = Vec::new();
        for (a, sites) in by_anchor.iter().enumerate() {
            for chunk in sites.chunks(GROUP_SITES) {
                let node = (a < order.len()).then_some(a);
                groups.push(build_group(inst, chunk, node, &site_lo, &site_hi, dt, &mut constant));
            }
        }
        Self { t: t_len, groups, nodes, levels, node_ub, node_cost, node_b, constant }
    }
}

fn build_group(
    inst: &Instance,
    sites: &[usize],
    node: Option<usize>,
    site_lo: &[f64],
    site_hi: &[Vec<f64>],
    dt: f64,
    constant: &mut f64,
) -> GroupModel {
    let t_len = inst.steps;
    let pen = &inst.penalties;
    let tariff = &inst.tariff;
    let mut ub = Vec::new();
    let mut cost = Vec::new();
    let mut b = Vec::new();
    let mut models = Vec::with_capacity(sites.len());
    for &s in sites {
        let site = &inst.sites[s];
        let var0 = ub.len();
        let row0 = b.len();
        let bat = site.battery.as_ref().and_then(|bt| {
            let has_c = bt.max_charge_kw > TINY;
            let has_d = bt.max_discharge_kw > TINY;
            (has_c || has_d).then_some(Bat {
                a: dt * bt.charge_efficiency,
                b: dt / bt.discharge_efficiency,
                has_c,
                has_d,
            })
        });
        // Lower bound of the state of charge per step, and whether the last one is fixed.
        let soc_lo = |t: usize| {
            site.battery.as_ref().map_or(0.0, |bt| {
                if t + 1 == t_len {
                    bt.soc_min_kwh.max(bt.final_soc_min_kwh.unwrap_or(bt.soc_min_kwh))
                } else {
                    bt.soc_min_kwh
                }
            })
        };
        let mut steps = Vec::with_capacity(t_len);
        let mut dyn_rhs = Vec::new();
        for t in 0..t_len {
            let pv = if site.pv_kw[t] > TINY { site.pv_kw[t] } else { 0.0 };
            let p = tariff.import_price[t];
            let f_in = tariff.feed_in_price[t];
            // Cost of the net import n: energy, overload, commitment deviation.
            let mut f = Pwl { a: dt * f_in, k: 0.0, hinges: Vec::new() };
            f.hinge(0.0, dt * (p - f_in));
            f.hinge(site.import_limit_kw, dt * pen.site_overload_per_kwh);
            if let Some(Some(commit)) = site.commitment_kw.as_ref().map(|c| c[t]) {
                // |n + commit| = -(n + commit) + 2 max(n + commit, 0)
                let w = dt * tariff.imbalance_price[t];
                f.a -= w;
                f.k -= w * commit;
                f.hinge(-commit, 2.0 * w);
            }
            let lo = site_lo[s];
            let hi = site_hi[s][t] + 1.0 + 0.01 * site_hi[s][t].abs();
            let (value, segs) = f.segments(lo, hi);
            *constant += value;
            let off = (ub.len() - var0) as u32;
            let nseg = segs.len() as u8;
            for (len, slope) in segs {
                ub.push(len);
                cost.push(slope);
            }
            if pv > 0.0 {
                ub.push(pv);
                cost.push(dt * pen.curtailment_per_kwh);
            }
            let mut has_soc = false;
            if let (Some(bm), Some(bt)) = (bat, site.battery.as_ref()) {
                if bm.has_c {
                    ub.push(bt.max_charge_kw);
                    cost.push(dt * bt.degradation_cost_per_kwh);
                }
                if bm.has_d {
                    ub.push(bt.max_discharge_kw);
                    cost.push(dt * bt.degradation_cost_per_kwh);
                }
                let width = bt.soc_max_kwh - soc_lo(t);
                let fixed = t + 1 == t_len && width <= 1e-7 * bt.capacity_kwh.max(1.0);
                // A fixed final state sits at its lower bound; the row below carries it.
                // Stored energy left at the end is worth `terminal_value_per_kwh`; the
                // variable is the state above its lower bound, so the bound's worth is constant.
                let worth = if t + 1 == t_len { bt.terminal_value_per_kwh } else { 0.0 };
                *constant -= worth * soc_lo(t);
                if !fixed {
                    ub.push(width);
                    cost.push(-worth);
                    has_soc = true;
                }
                let prev = if t == 0 { bt.initial_soc_kwh } else { soc_lo(t - 1) };
                dyn_rhs.push(prev - soc_lo(t));
            }
            steps.push(Step { off, nseg, has_u: pv > 0.0, has_soc });
            let pv_model = pv;
            b.push(site.load_kw[t] - pv_model - lo);
        }
        b.extend(dyn_rhs);
        models.push(SiteModel { inst: s, var0, row0, steps, bat });
    }
    GroupModel { node, sites: models, ub, cost, b, t: t_len }
}

impl GroupModel {
    /// `out = A' y` for the group's variables; `ny` is the anchor node's rows (T values).
    pub fn aty(&self, y: &[f64], ny: Option<&[f64]>, out: &mut [f64]) {
        let t_len = self.t;
        for sm in &self.sites {
            let rb = sm.row0;
            let rs = sm.row0 + t_len;
            for t in 0..t_len {
                let ix = sm.idx(t);
                let yb = y[rb + t];
                let yw = yb + ny.map_or(0.0, |n| n[t]);
                for o in &mut out[ix.seg..ix.seg + ix.nseg] {
                    *o = yw;
                }
                if let Some(u) = ix.u {
                    out[u] = -yb;
                }
                if let Some(bm) = sm.bat {
                    let ys = y[rs + t];
                    if let Some(c) = ix.c {
                        out[c] = -yb - bm.a * ys;
                    }
                    if let Some(d) = ix.d {
                        out[d] = yb + bm.b * ys;
                    }
                    if let Some(soc) = ix.soc {
                        out[soc] = ys - if t + 1 < t_len { y[rs + t + 1] } else { 0.0 };
                    }
                }
            }
        }
    }

    /// `out = A x` for the group's rows, `absout = |A| |x|` row sums, and `flow[t] = Σ w` over
    /// the group's sites (the group's part of its node's rows).
    pub fn ax(&self, x: &[f64], out: &mut [f64], absout: &mut [f64], flow: &mut [f64]) {
        let t_len = self.t;
        flow.fill(0.0);
        for sm in &self.sites {
            let rb = sm.row0;
            let rs = sm.row0 + t_len;
            for t in 0..t_len {
                let ix = sm.idx(t);
                let w: f64 = x[ix.seg..ix.seg + ix.nseg].iter().sum();
                flow[t] += w;
                let mut r = w;
                let mut ra = w;
                if let Some(u) = ix.u {
                    r -= x[u];
                    ra += x[u];
                }
                if let Some(bm) = sm.bat {
                    let mut s = 0.0;
                    let mut sa = 0.0;
                    if let Some(c) = ix.c {
                        r -= x[c];
                        ra += x[c];
                        s -= bm.a * x[c];
                        sa += bm.a * x[c];
                    }
                    if let Some(d) = ix.d {
                        r += x[d];
                        ra += x[d];
                        s += bm.b * x[d];
                        sa += bm.b * x[d];
                    }
                    if let Some(soc) = ix.soc {
                        s += x[soc];
                        sa += x[soc];
                    }
                    if t > 0
                        && let Some(prev) = sm.idx(t - 1).soc
                    {
                        s -= x[prev];
                        sa += x[prev];
                    }
                    out[rs + t] = s;
                    absout[rs + t] = sa;
                }
                out[rb + t] = r;
                absout[rb + t] = ra;
            }
        }
    }
}

impl Model {
    /// `out = A' y` for the node variables.
    pub fn node_aty(&self, ny: &[f64], out: &mut [f64]) {
        let t_len = self.t;
        for (j, nm) in self.nodes.iter().enumerate() {
            for t in 0..t_len {
                let up = nm.parent.map_or(0.0, |p| ny[p * t_len + t]);
                let v = up - ny[j * t_len + t];
                for o in &mut out[nm.seg(t)] {
                    *o = v;
                }
            }
        }
    }

    /// `out = A x` for the node rows, given each group's flows; `absout` as in
    /// [`GroupModel::ax`].
    pub fn node_ax(&self, nx: &[f64], group_flows: &[&[f64]], out: &mut [f64], absout: &mut [f64]) {
        let t_len = self.t;
        out.fill(0.0);
        absout.fill(0.0);
        for (g, gm) in self.groups.iter().enumerate() {
            if let Some(j) = gm.node {
                for t in 0..t_len {
                    out[j * t_len + t] += group_flows[g][t];
                    absout[j * t_len + t] += group_flows[g][t].abs();
                }
            }
        }
        for (j, nm) in self.nodes.iter().enumerate() {
            for t in 0..t_len {
                let v: f64 = nx[nm.seg(t)].iter().sum();
                out[j * t_len + t] -= v;
                absout[j * t_len + t] += v.abs();
                if let Some(p) = nm.parent {
                    out[p * t_len + t] += v;
                    absout[p * t_len + t] += v.abs();
                }
            }
        }
    }
}
