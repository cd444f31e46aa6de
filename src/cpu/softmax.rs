//! Temperature softmax in f64 (SPEC "Temperature softmax").

/// softmax(z/τ) of a sanitised row; −∞ entries get 0. τ = 0 gives one-hot at the argmax;
/// a row with no finite value gives all zeros.
pub fn softmax_row(z: &[f64], t: f64) -> Vec<f64> {
    if t == 0.0 {
        let mut q = vec![0.0; z.len()];
        let i = super::argmax_row(z);
        if let Some(x) = q.get_mut(i as usize) {
            *x = 1.0;
        }
        return q;
    }
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max) / t;
    if m == f64::NEG_INFINITY {
        return vec![0.0; z.len()];
    }
    let e: Vec<f64> = z.iter().map(|&v| (v / t - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// log softmax(z/τ) of a sanitised row, τ > 0; −∞ entries stay −∞. A row with no finite
/// value gives all −∞.
pub fn log_softmax_row(z: &[f64], t: f64) -> Vec<f64> {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max) / t;
    if m == f64::NEG_INFINITY {
        return vec![f64::NEG_INFINITY; z.len()];
    }
    // (u − max u) − ln Σ, in that order: max u + ln Σ would round ln Σ away for a huge max
    // (a +∞ logit counts as f32::MAX).
    let ln_sum = z.iter().map(|&v| (v / t - m).exp()).sum::<f64>().ln();
    z.iter().map(|&v| (v / t - m) - ln_sum).collect()
}
