//! Best-of-K by mirror ascent with log-sum-exp (SPEC "Best-of-K").
//!
//! J(q) = ⟨q, z⟩ − β·KL(q‖p) + λ·Σ_i w_i·(1 − (1 − q_i)^K), p = softmax(z/τ) over the support,
//! g_i  = z_i − β·(ln q_i − ln p_i) + λ·w_i·K·(1 − q_i)^(K−1),
//! a_i  = ln q_i + η·g_i,   ln q_i' = a_i − max a − ln Σ_j e^{a_j − max a},   from q⁰ = p.

use crate::decoder::{Bok, BokWeights};

/// q after T steps, and J at q⁰ … q^T.
#[derive(Clone, Debug, PartialEq)]
pub struct BokTrace {
    /// The final distribution (0 outside the support).
    pub q: Vec<f64>,
    /// J(q^t) for t = 0..=T.
    pub objective: Vec<f64>,
}

/// The reference p (as log p) and the coverage weights w of a masked row
/// (−∞ = outside the support).
fn reference(z: &[f64], b: &Bok, custom: Option<&[f64]>) -> (Vec<f64>, Vec<f64>) {
    let t = f64::from(b.temperature);
    let log_p = super::log_softmax_row(z, t);
    let w = match b.weights {
        BokWeights::Prob => log_p.iter().map(|l| l.exp()).collect(),
        BokWeights::TopM(m) => {
            let top = super::top_k_select_row(&log_p, m as usize);
            let mut w = vec![0.0; z.len()];
            for (v, i) in top {
                if v > f32::NEG_INFINITY {
                    w[i as usize] = 1.0;
                }
            }
            w
        }
        BokWeights::Custom => custom
            .expect("BokWeights::Custom needs a weights row (checked by the caller)")
            .to_vec(),
    };
    (log_p, w)
}

/// J(q) for a masked row z, its log p, weights w; `log_q` is −∞ outside the support.
pub fn bok_objective(z: &[f64], log_p: &[f64], w: &[f64], log_q: &[f64], b: &Bok) -> f64 {
    let (beta, lambda, k) = (f64::from(b.beta), f64::from(b.lambda), f64::from(b.k));
    let mut j = 0.0;
    for i in 0..z.len() {
        if log_q[i] == f64::NEG_INFINITY {
            continue;
        }
        let q = log_q[i].exp();
        j +=
            q * z[i] - beta * q * (log_q[i] - log_p[i]) + lambda * w[i] * (1.0 - (1.0 - q).powf(k));
    }
    j
}

/// The gradient g (0 outside the support).
pub fn bok_gradient(z: &[f64], log_p: &[f64], w: &[f64], log_q: &[f64], b: &Bok) -> Vec<f64> {
    let (beta, lambda, k) = (f64::from(b.beta), f64::from(b.lambda), f64::from(b.k));
    (0..z.len())
        .map(|i| {
            if log_q[i] == f64::NEG_INFINITY {
                return 0.0;
            }
            let q = log_q[i].exp();
            z[i] - beta * (log_q[i] - log_p[i]) + lambda * w[i] * k * (1.0 - q).powf(k - 1.0)
        })
        .collect()
}

/// Runs BoK on a masked row z (−∞ = outside the support). `custom` is the row's weights when
/// `b.weights` is [`BokWeights::Custom`]. A row with no finite value gives q = 0.
pub fn bok(z: &[f64], b: &Bok, custom: Option<&[f64]>) -> BokTrace {
    let (log_p, w) = reference(z, b, custom);
    if log_p.iter().all(|&l| l == f64::NEG_INFINITY) {
        return BokTrace {
            q: vec![0.0; z.len()],
            objective: Vec::new(),
        };
    }
    let eta = f64::from(b.eta);
    let mut log_q = log_p.clone();
    let mut objective = vec![bok_objective(z, &log_p, &w, &log_q, b)];
    for _ in 0..b.iterations {
        let g = bok_gradient(z, &log_p, &w, &log_q, b);
        let a: Vec<f64> = log_q
            .iter()
            .zip(&g)
            .map(|(&l, &gi)| {
                if l == f64::NEG_INFINITY {
                    l
                } else {
                    l + eta * gi
                }
            })
            .collect();
        // SPEC's order, a − max a − ln Σ: (max a + ln Σ) first would lose ln Σ for a huge max.
        let m = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ln_sum = a.iter().map(|&x| (x - m).exp()).sum::<f64>().ln();
        log_q = a.iter().map(|&x| (x - m) - ln_sum).collect();
        objective.push(bok_objective(z, &log_p, &w, &log_q, b));
    }
    BokTrace {
        q: log_q.iter().map(|l| l.exp()).collect(),
        objective,
    }
}
