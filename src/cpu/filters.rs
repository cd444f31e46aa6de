//! The support rules in f64, by sorting (SPEC "Top-k filter", "Top-p filter", "Min-p filter").

use crate::decoder::Support;

/// Indices of a row sorted by value descending, ties by lower index.
fn order_desc(z: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..z.len()).collect();
    // total_cmp orders −∞ last; NaN never reaches here (sanitised).
    idx.sort_by(|&a, &b| z[b].total_cmp(&z[a]).then(a.cmp(&b)));
    idx
}

/// Exactly min(k, n) (value, index) pairs, value descending, ties by lower index.
pub fn top_k_select_row(z: &[f64], k: usize) -> Vec<(f32, u32)> {
    order_desc(z)
        .into_iter()
        .take(k)
        .map(|i| (z[i] as f32, i as u32))
        .collect()
}

/// The kept set of a sanitised row at temperature `t`: finite logits, then top-k (ties at
/// the k-th value kept), then top-p on the distribution renormalised over what top-k kept
/// (ties at the threshold kept), then min-p. `t = 0` (greedy) keeps the argmax alone.
pub fn kept_row(z: &[f64], support: &Support, t: f64) -> Vec<bool> {
    let n = z.len();
    let mut keep: Vec<bool> = z.iter().map(|v| *v > f64::NEG_INFINITY).collect();
    if t == 0.0 {
        let best = super::argmax_row(z);
        return (0..n).map(|i| i as u32 == best).collect();
    }
    if !keep.iter().any(|&k| k) {
        return keep;
    }
    let k = support.top_k as usize;
    if k > 0 && k < n {
        let kth = z[order_desc(z)[k - 1]];
        for (i, kp) in keep.iter_mut().enumerate() {
            *kp &= z[i] >= kth;
        }
    }
    // Unnormalised probabilities over the kept set: e^{u_i − max u}, the top one is 1.
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max) / t;
    let weight = |i: usize| (z[i] / t - m).exp();
    let p = f64::from(support.top_p);
    if p < 1.0 {
        let kept: Vec<usize> = order_desc(z).into_iter().filter(|&i| keep[i]).collect();
        let mass: f64 = kept.iter().map(|&i| weight(i)).sum();
        let mut run = 0.0;
        let mut threshold = 0.0;
        for &i in &kept {
            run += weight(i);
            threshold = weight(i);
            if run >= p * mass {
                break;
            }
        }
        for (i, kp) in keep.iter_mut().enumerate() {
            *kp &= *kp && weight(i) >= threshold;
        }
    }
    let min_p = f64::from(support.min_p);
    if min_p > 0.0 {
        // max p over the kept set is the top token's, weight 1.
        for (i, kp) in keep.iter_mut().enumerate() {
            *kp &= *kp && weight(i) >= min_p;
        }
    }
    keep
}
