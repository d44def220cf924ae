//! The normal equations `(A Θ A' + δI) Δy = r` of one interior-point iteration, solved by
//! elimination in levels:
//!
//! 1. per site and step, the balance row (a scalar pivot);
//! 2. per site, the state-of-charge rows: a tridiagonal steps × steps matrix, factorised in
//!    linear time; what it leaves on the site's node rows is dense (the inverse of a tridiagonal
//!    matrix is), built column by column from the two-sided pivots in O(T²);
//! 3. per row node, a dense T × T matrix gathering its sites and its child nodes, Cholesky
//!    factorised; its Schur complement goes up to the parent node, level by level to the roots;
//! 4. back-substitution down the same path.
//!
//! Groups of sites and the nodes of one level are independent and run in parallel.

#![expect(
    clippy::needless_range_loop,
    reason = "the kernels walk several arrays by step index; index loops read like the formulas"
)]

use super::dense;
use super::model::{GroupModel, Model};
use super::par_each;

/// Factors of one group of sites, per site and step at `site * T + t`.
#[derive(Debug, Clone, Default)]
pub(super) struct GroupFactor {
    /// Balance-row pivot.
    beta: Vec<f64>,
    /// Balance–dynamics coupling.
    gam: Vec<f64>,
    /// Balance–node coupling (sum of the segments' Θ).
    omg: Vec<f64>,
    /// Inverse top-down pivots of the tridiagonal dynamics matrix, and the elimination ratios
    /// `off[t] / piv[t]` (kept so the solves only multiply).
    ipiv: Vec<f64>,
    ratio: Vec<f64>,
    /// Its off-diagonal between steps t and t+1.
    off: Vec<f64>,
    /// Dynamics–node coupling after the balance rows are eliminated.
    g: Vec<f64>,
    /// Forward solution of the dynamics rows, kept for the back-substitution.
    zs: Vec<f64>,
    /// The group's part of its node's matrix (T × T, lower triangle).
    pub contrib: Vec<f64>,
    /// The group's part of its node's right-hand side.
    pub nrhs: Vec<f64>,
}

/// Factors of the row nodes.
#[derive(Debug, Clone, Default)]
pub(super) struct NodeFactor {
    /// Per node: Cholesky factor of its T × T matrix.
    l: Vec<Vec<f64>>,
    /// Per node: its Schur complement for the parent, `D M⁻¹ R` (T × T, full).
    s: Vec<Vec<f64>>,
    /// Per node: Θ summed over its own segments per step (`D`).
    d: Vec<Vec<f64>>,
    /// Per node: reduced right-hand side, and `M⁻¹` of it.
    rhs: Vec<Vec<f64>>,
    u: Vec<Vec<f64>>,
    /// Pivots replaced in the last factorisation (a sign of a nearly singular system).
    pub replaced: usize,
}

impl GroupFactor {
    pub fn new(gm: &GroupModel) -> Self {
        let n = gm.sites.len() * gm.t;
        Self {
            beta: vec![0.0; n],
            gam: vec![0.0; n],
            omg: vec![0.0; n],
            ipiv: vec![0.0; n],
            ratio: vec![0.0; n],
            off: vec![0.0; n],
            g: vec![0.0; n],
            zs: vec![0.0; n],
            contrib: if gm.node.is_some() { vec![0.0; gm.t * gm.t] } else { Vec::new() },
            nrhs: vec![0.0; gm.t],
        }
    }
}

impl NodeFactor {
    pub fn new(model: &Model) -> Self {
        let t2 = model.t * model.t;
        let n = model.nodes.len();
        Self {
            l: vec![vec![0.0; t2]; n],
            s: vec![vec![0.0; t2]; n],
            d: vec![vec![0.0; model.t]; n],
            rhs: vec![vec![0.0; model.t]; n],
            u: vec![vec![0.0; model.t]; n],
            replaced: 0,
        }
    }
}

/// Factorises the group's site blocks for the given Θ (`theta`, per variable) and dual
/// regularisation `delta`, and forms its contribution to its node's matrix.
pub(super) fn factor_group(gm: &GroupModel, theta: &[f64], delta: f64, f: &mut GroupFactor) {
    let t_len = gm.t;
    let has_node = gm.node.is_some();
    if has_node {
        f.contrib.fill(0.0);
    }
    let mut e = vec![0.0; t_len];
    let mut qa = vec![0.0; t_len];
    let mut dinv = vec![0.0; t_len];
    let mut nr = vec![0.0; t_len];
    for (i, sm) in gm.sites.iter().enumerate() {
        let base = i * t_len;
        for t in 0..t_len {
            let ix = sm.idx(t);
            let om: f64 = theta[ix.seg..ix.seg + ix.nseg].iter().sum();
            let tu = ix.u.map_or(0.0, |j| theta[j]);
            let tc = ix.c.map_or(0.0, |j| theta[j]);
            let td = ix.d.map_or(0.0, |j| theta[j]);
            let rest = tu + tc + td + delta;
            let beta = om + rest;
            f.beta[base + t] = beta;
            f.omg[base + t] = om;
            if has_node {
                // ω - ω²/β, written without cancellation.
                f.contrib[t * t_len + t] += om * rest / beta;
            }
            if let Some(bm) = sm.bat {
                let ts = ix.soc.map_or(0.0, |j| theta[j]);
                let gam = bm.a * tc + bm.b * td;
                f.gam[base + t] = gam;
                let r = om + tu + delta;
                // S diagonal minus γ²/β, without cancellation:
                // [θc θd (a-b)² + R (a² θc + b² θd)] / β
                let ab = bm.a - bm.b;
                let hcd = (tc * td * ab * ab + r * (bm.a * bm.a * tc + bm.b * bm.b * td)) / beta;
                // H = path Laplacian with weights s_t = Θ_soc(t) between t and t+1, plus the
                // diagonal e_t (and s_{T−1} on the last step). Pivots are computed from the
                // excess over the Laplacian part, which never cancels.
                e[t] = delta + hcd;
                f.off[base + t] = -ts;
                f.g[base + t] = -gam * om / beta;
            }
        }
        if sm.bat.is_none() {
            continue;
        }
        // Top-down pivots p_t = s_t + q_t with the excess q_t = e_t + s_{t−1} q_{t−1} / p_{t−1}.
        let ipiv = &mut f.ipiv[base..base + t_len];
        let off = &f.off[base..base + t_len];
        let rat = &mut f.ratio[base..base + t_len];
        let s_at = |t: usize| -off[t];
        let mut q_prev = e[0];
        qa[0] = 0.0;
        ipiv[0] = 1.0 / (s_at(0) + q_prev);
        for t in 1..t_len {
            rat[t - 1] = off[t - 1] * ipiv[t - 1];
            qa[t] = s_at(t - 1) * q_prev * ipiv[t - 1];
            q_prev = e[t] + qa[t];
            ipiv[t] = 1.0 / (s_at(t) + q_prev);
        }
        rat[t_len - 1] = 0.0;
        if !has_node {
            continue;
        }
        // Bottom-up likewise: b_t = s_{t−1} + r_t, r_t = e_t + s_t r_{t+1} / b_{t+1}, and
        // r_{T−1} = e_{T−1} + s_{T−1}. H⁻¹'s diagonal is 1 / (e_j + qa_j + rb_j); the entries
        // above it follow by the ratio recurrence x_i = −(off_i / p_i) x_{i+1}.
        let mut rb_next = s_at(t_len - 1);
        let mut r_next = e[t_len - 1] + rb_next;
        for j in (0..t_len).rev() {
            let rb = if j + 1 == t_len { s_at(j) } else { rb_next };
            dinv[j] = 1.0 / (e[j] + qa[j] + rb);
            nr[j] = -rat[j];
            if j > 0 {
                let r_j = if j + 1 == t_len { r_next } else { e[j] + rb };
                let b_j = s_at(j - 1) + r_j;
                rb_next = s_at(j - 1) * r_j / b_j;
                r_next = r_j;
            }
        }
        let g = &f.g[base..base + t_len];
        // Contribution −G H⁻¹ G, four columns at a time so their recurrences overlap.
        let c = &mut f.contrib;
        let mut j0 = 0;
        while j0 < t_len {
            let cols = (t_len - j0).min(4);
            let mut val = [0.0; 4];
            let mut gj = [0.0; 4];
            for k in 0..cols {
                let j = j0 + k;
                gj[k] = g[j];
                val[k] = dinv[j];
                c[j * t_len + j] -= g[j] * g[j] * val[k];
            }
            for i in (j0..j0 + cols - 1).rev() {
                for k in (i - j0 + 1)..cols {
                    val[k] *= nr[i];
                    c[(j0 + k) * t_len + i] -= gj[k] * g[i] * val[k];
                }
            }
            if cols == 4 {
                let (r0, rest) = c[j0 * t_len..].split_at_mut(t_len);
                let (r1, rest) = rest.split_at_mut(t_len);
                let (r2, r3) = rest.split_at_mut(t_len);
                for i in (0..j0).rev() {
                    let (n, gi) = (nr[i], g[i]);
                    val[0] *= n;
                    val[1] *= n;
                    val[2] *= n;
                    val[3] *= n;
                    r0[i] -= gj[0] * gi * val[0];
                    r1[i] -= gj[1] * gi * val[1];
                    r2[i] -= gj[2] * gi * val[2];
                    r3[i] -= gj[3] * gi * val[3];
                }
            } else {
                for i in (0..j0).rev() {
                    for k in 0..cols {
                        val[k] *= nr[i];
                        c[(j0 + k) * t_len + i] -= gj[k] * g[i] * val[k];
                    }
                }
            }
            j0 += cols;
        }
    }
}

/// Forward pass of the group: eliminates the balance and dynamics rows from the right-hand side
/// `r` (group rows), leaving the group's part of its node's right-hand side in `f.nrhs`.
pub(super) fn forward_group(gm: &GroupModel, r: &[f64], f: &mut GroupFactor) {
    let t_len = gm.t;
    let has_node = gm.node.is_some();
    f.nrhs.fill(0.0);
    for (i, sm) in gm.sites.iter().enumerate() {
        let base = i * t_len;
        let rb = &r[sm.row0..sm.row0 + t_len];
        if has_node {
            for t in 0..t_len {
                f.nrhs[t] -= f.omg[base + t] / f.beta[base + t] * rb[t];
            }
        }
        if sm.bat.is_none() {
            continue;
        }
        let rs = &r[sm.row0 + t_len..sm.row0 + 2 * t_len];
        let zs = &mut f.zs[base..base + t_len];
        for t in 0..t_len {
            zs[t] = rs[t] - f.gam[base + t] / f.beta[base + t] * rb[t];
        }
        tridiag_solve(
            &f.ipiv[base..base + t_len],
            &f.ratio[base..base + t_len],
            &f.off[base..base + t_len],
            zs,
        );
        if has_node {
            for t in 0..t_len {
                f.nrhs[t] -= f.g[base + t] * zs[t];
            }
        }
    }
}

/// Backward pass of the group: the solution for its rows `dy` from the right-hand side `r` and
/// the node's solution `dn` (T values).
pub(super) fn backward_group(
    gm: &GroupModel,
    r: &[f64],
    dn: Option<&[f64]>,
    f: &GroupFactor,
    dy: &mut [f64],
) {
    let t_len = gm.t;
    let mut w = vec![0.0; t_len];
    for (i, sm) in gm.sites.iter().enumerate() {
        let base = i * t_len;
        if sm.bat.is_some() {
            let ds = &mut dy[sm.row0 + t_len..sm.row0 + 2 * t_len];
            ds.copy_from_slice(&f.zs[base..base + t_len]);
            if let Some(dn) = dn {
                for t in 0..t_len {
                    w[t] = f.g[base + t] * dn[t];
                }
                tridiag_solve(
                    &f.ipiv[base..base + t_len],
                    &f.ratio[base..base + t_len],
                    &f.off[base..base + t_len],
                    &mut w,
                );
                for t in 0..t_len {
                    ds[t] -= w[t];
                }
            }
        }
        for t in 0..t_len {
            let mut v = r[sm.row0 + t];
            if sm.bat.is_some() {
                v -= f.gam[base + t] * dy[sm.row0 + t_len + t];
            }
            if let Some(dn) = dn {
                v -= f.omg[base + t] * dn[t];
            }
            dy[sm.row0 + t] = v / f.beta[base + t];
        }
    }
}

/// Solves `H x = b` in place for the tridiagonal H given by its inverse top-down pivots,
/// elimination ratios and off-diagonal.
fn tridiag_solve(ipiv: &[f64], ratio: &[f64], off: &[f64], b: &mut [f64]) {
    let n = b.len();
    let (ipiv, ratio, off) = (&ipiv[..n], &ratio[..n], &off[..n]);
    for t in 1..n {
        b[t] -= ratio[t - 1] * b[t - 1];
    }
    b[n - 1] *= ipiv[n - 1];
    for t in (0..n - 1).rev() {
        b[t] = (b[t] - off[t] * b[t + 1]) * ipiv[t];
    }
}

/// A node's buffers handed to a thread: its index, its factor and Schur buffers, and its
/// children's Schur complements.
type NodeWork = (usize, Vec<f64>, Vec<f64>, Vec<Vec<f64>>);

/// Factorises the node matrices bottom-up, level by level, from the groups' contributions.
pub(super) fn factor_nodes(
    model: &Model,
    node_theta: &[f64],
    delta: f64,
    groups: &[&GroupFactor],
    nf: &mut NodeFactor,
    threads: usize,
) {
    let t_len = model.t;
    for (j, nm) in model.nodes.iter().enumerate() {
        for t in 0..t_len {
            nf.d[j][t] = node_theta[nm.seg(t)].iter().sum();
        }
    }
    // Which groups feed which node, in group order.
    let mut feeds: Vec<Vec<usize>> = vec![Vec::new(); model.nodes.len()];
    for (g, gm) in model.groups.iter().enumerate() {
        if let Some(j) = gm.node {
            feeds[j].push(g);
        }
    }
    let mut replaced = 0;
    for level in &model.levels {
        // The children's Schur complements were finished at lower levels; take them out so
        // the level's nodes can be handed to threads with their own buffers.
        let mut work: Vec<NodeWork> = level
            .iter()
            .map(|&j| {
                let kids = model.nodes[j].children.iter().map(|&c| std::mem::take(&mut nf.s[c])).collect();
                (j, std::mem::take(&mut nf.l[j]), std::mem::take(&mut nf.s[j]), kids)
            })
            .collect();
        let results: Vec<std::sync::Mutex<usize>> = work.iter().map(|_| std::sync::Mutex::new(0)).collect();
        let d = &nf.d;
        par_each(threads, work.iter_mut().zip(&results), |((j, l, s, kids), res)| {
            let j = *j;
            // R = δI + Σ groups + Σ children's Schur complements (all lower triangles).
            l.fill(0.0);
            for &g in &feeds[j] {
                for (a, b) in l.iter_mut().zip(&groups[g].contrib) {
                    *a += b;
                }
            }
            for kid in kids.iter() {
                for (a, b) in l.iter_mut().zip(kid) {
                    *a += b;
                }
            }
            for t in 0..t_len {
                l[t * t_len + t] += delta;
            }
            dense::symmetrize_from_lower(l, t_len);
            let has_parent = model.nodes[j].parent.is_some();
            if has_parent {
                s.copy_from_slice(l);
            }
            for t in 0..t_len {
                l[t * t_len + t] += d[j][t];
            }
            let rep = dense::cholesky(l, t_len);
            if has_parent {
                // S = D M⁻¹ R, symmetric; kept in the lower triangle.
                dense::solve_matrix(l, t_len, s);
                for a in 0..t_len {
                    for b in 0..=a {
                        let v = 0.5 * (d[j][a] * s[a * t_len + b] + d[j][b] * s[b * t_len + a]);
                        s[a * t_len + b] = v;
                    }
                }
            }
            if let Ok(mut r) = res.lock() {
                *r = rep;
            }
        });
        for ((j, l, s, kids), res) in work.into_iter().zip(results) {
            nf.l[j] = l;
            nf.s[j] = s;
            for (c, kid) in model.nodes[j].children.iter().zip(kids) {
                nf.s[*c] = kid;
            }
            replaced += res.into_inner().unwrap_or(0);
        }
    }
    nf.replaced = replaced;
}

/// Solves the node part: `nr` holds the node rows' right-hand side (in node order, T each) and
/// receives the solution. The groups' forward passes must have run.
pub(super) fn solve_nodes(model: &Model, groups: &[&GroupFactor], nf: &mut NodeFactor, nr: &mut [f64]) {
    let t_len = model.t;
    for j in 0..model.nodes.len() {
        nf.rhs[j].copy_from_slice(&nr[j * t_len..(j + 1) * t_len]);
    }
    for (g, gm) in model.groups.iter().enumerate() {
        if let Some(j) = gm.node {
            for (a, b) in nf.rhs[j].iter_mut().zip(&groups[g].nrhs) {
                *a += b;
            }
        }
    }
    // Up: nodes are stored children first.
    for j in 0..model.nodes.len() {
        let mut u = nf.rhs[j].clone();
        dense::solve(&nf.l[j], t_len, &mut u);
        if let Some(p) = model.nodes[j].parent {
            for t in 0..t_len {
                nf.rhs[p][t] += nf.d[j][t] * u[t];
            }
        }
        nf.u[j] = u;
    }
    // Down: dy_j = M⁻¹ (rhs_j + D_j dy_parent).
    for j in (0..model.nodes.len()).rev() {
        let mut dy = nf.u[j].clone();
        if let Some(p) = model.nodes[j].parent {
            let mut w: Vec<f64> = (0..t_len).map(|t| nf.d[j][t] * nr[p * t_len + t]).collect();
            dense::solve(&nf.l[j], t_len, &mut w);
            for t in 0..t_len {
                dy[t] += w[t];
            }
        }
        nr[j * t_len..(j + 1) * t_len].copy_from_slice(&dy);
    }
}
