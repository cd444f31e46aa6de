//! Sparsemax by sort-and-threshold (SPEC "Sparsemax").

/// Sparsemax's result for one row.
#[derive(Clone, Debug, PartialEq)]
pub struct Sparsemax {
    /// q_i = max(u_i − θ, 0).
    pub q: Vec<f64>,
    /// k*: how many tokens have q_i > 0.
    pub support: usize,
    /// θ, the threshold making Σ q = 1.
    pub theta: f64,
}

/// The Euclidean projection of u (= z/τ, sanitised) onto the simplex. Only the candidates
/// u_i > max u − 1 can be in the support (θ ≥ max u − 1), so only they are sorted.
/// A row with no finite value gives q = 0, support 0, θ = −∞.
///
/// The work is done on d = u − max u (θ = max u + θ_d), as the kernel does: for a huge max
/// (|max u| ≥ 2^53, e.g. a +∞ logit at τ < 1) `max u − 1` rounds to `max u`, and the unshifted
/// test would keep no candidate at all.
pub fn sparsemax(u: &[f64]) -> Sparsemax {
    let m = u.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return Sparsemax {
            q: vec![0.0; u.len()],
            support: 0,
            theta: f64::NEG_INFINITY,
        };
    }
    let d = |v: f64| v - m;
    let mut cand: Vec<f64> = u.iter().map(|&v| d(v)).filter(|&x| x > -1.0).collect();
    cand.sort_by(|a, b| b.total_cmp(a));
    // The max itself has d = 0 > −1, so `cand` is never empty.
    let (mut k_star, mut sum_star, mut run) = (1, cand[0], 0.0);
    for (j, &x) in cand.iter().enumerate() {
        run += x;
        let k = j + 1;
        if 1.0 + k as f64 * x > run {
            k_star = k;
            sum_star = run;
        }
    }
    let theta_d = (sum_star - 1.0) / k_star as f64;
    let q = u.iter().map(|&v| (d(v) - theta_d).max(0.0)).collect();
    Sparsemax {
        q,
        support: k_star,
        theta: m + theta_d,
    }
}
