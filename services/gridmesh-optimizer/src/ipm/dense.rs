//! Small dense symmetric positive definite kernels (row-major, lower triangle) for the node
//! matrices, which are steps × steps.

/// Pivots below this fraction of the original diagonal are treated as zero and replaced by a
/// huge value, which drops the direction (the usual remedy for a rank-deficient normal matrix
/// late in an interior-point run).
const PIVOT_FLOOR: f64 = 1e-14;
const HUGE_PIVOT: f64 = 1e64;

/// In-place Cholesky `A = L L'` of the lower triangle of `a` (n × n, row-major). The upper
/// triangle is left alone. Returns the number of pivots replaced.
pub(super) fn cholesky(a: &mut [f64], n: usize) -> usize {
    let mut replaced = 0;
    for j in 0..n {
        let (head, tail) = a.split_at_mut(j * n);
        let row_j = &mut tail[..n];
        // Row j against the finished rows above.
        for i in 0..j {
            let row_i = &head[i * n..i * n + n];
            let s = dot(&row_i[..i], &row_j[..i]);
            row_j[i] = (row_j[i] - s) / row_i[i];
        }
        let orig = row_j[j];
        let d = orig - dot(&row_j[..j], &row_j[..j]);
        if d <= PIVOT_FLOOR * orig.abs().max(f64::MIN_POSITIVE) || !d.is_finite() {
            row_j[j] = HUGE_PIVOT.sqrt();
            replaced += 1;
        } else {
            row_j[j] = d.sqrt();
        }
    }
    replaced
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four independent sums let the compiler pipeline the loop.
    let mut s = [0.0; 4];
    let chunks = a.len() / 4;
    for k in 0..chunks {
        for l in 0..4 {
            s[l] += a[4 * k + l] * b[4 * k + l];
        }
    }
    let mut tail = 0.0;
    for k in chunks * 4..a.len() {
        tail += a[k] * b[k];
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// Solves `L L' x = b` in place.
pub(super) fn solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let row = &l[i * n..i * n + n];
        b[i] = (b[i] - dot(&row[..i], &b[..i])) / row[i];
    }
    for i in (0..n).rev() {
        let row = &l[i * n..i * n + n];
        b[i] /= row[i];
        let bi = b[i];
        for (bk, lk) in b[..i].iter_mut().zip(&row[..i]) {
            *bk -= lk * bi;
        }
    }
}

/// Solves `L L' Y = B` in place for a full n × n right-hand side `b` (row-major).
pub(super) fn solve_matrix(l: &[f64], n: usize, b: &mut [f64]) {
    // Forward: row i of Y = (row i of B - Σ_{k<i} L_ik row k of Y) / L_ii.
    for i in 0..n {
        let (done, rest) = b.split_at_mut(i * n);
        let yi = &mut rest[..n];
        let li = &l[i * n..i * n + n];
        for k in 0..i {
            let lik = li[k];
            if lik != 0.0 {
                axpy(-lik, &done[k * n..k * n + n], yi);
            }
        }
        let inv = 1.0 / li[i];
        for v in yi.iter_mut() {
            *v *= inv;
        }
    }
    // Backward with L': row i = (row i - Σ_{k>i} L_ki row k) / L_ii.
    for i in (0..n).rev() {
        let (head, done) = b.split_at_mut((i + 1) * n);
        let yi = &mut head[i * n..];
        for k in i + 1..n {
            let lki = l[k * n + i];
            if lki != 0.0 {
                axpy(-lki, &done[(k - i - 1) * n..(k - i) * n], yi);
            }
        }
        let inv = 1.0 / l[i * n + i];
        for v in yi.iter_mut() {
            *v *= inv;
        }
    }
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

/// Fills the upper triangle from the lower one.
pub(super) fn symmetrize_from_lower(a: &mut [f64], n: usize) {
    for i in 0..n {
        for j in 0..i {
            a[j * n + i] = a[i * n + j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves() {
        let n = 5;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = 1.0 / (1.0 + (i as f64 - j as f64).abs()) + if i == j { 2.0 } else { 0.0 };
            }
        }
        let orig = a.clone();
        let x: Vec<f64> = (0..n).map(|i| i as f64 - 1.5).collect();
        let mut b: Vec<f64> = (0..n).map(|i| (0..n).map(|j| orig[i * n + j] * x[j]).sum()).collect();
        assert_eq!(cholesky(&mut a, n), 0);
        solve(&a, n, &mut b);
        for i in 0..n {
            assert!((b[i] - x[i]).abs() < 1e-12);
        }
        let mut m = orig.clone();
        solve_matrix(&a, n, &mut m);
        for i in 0..n {
            for j in 0..n {
                let e = if i == j { 1.0 } else { 0.0 };
                assert!((m[i * n + j] - e).abs() < 1e-12, "{i} {j} {}", m[i * n + j]);
            }
        }
    }
}
