//! The tiled draw in f64 (ARCHITECTURE.md "Drawing a token"; `kernels/common.cuh` step 7 is
//! the same method in f32).
//!
//! A row is cut into tiles of [`DRAW_TILE`] consecutive tokens. Tile t has a log-scale m_t and
//! weights w_i ≥ 0 (0 = not kept), W_t = Σ w_i. With r = Philox(tile t) and ua, ub its first
//! two words as open uniforms:
//!
//! 1. key_t = m_t + ln W_t + Gumbel(ua)  (−∞ when W_t = 0);
//! 2. the winning tile has the largest key (ties: the lowest tile);
//! 3. inside it, the token is the first i whose inclusive prefix sum of w exceeds ub · W_t.
//!
//! P(i) = P(t wins) · w_i/W_t = (e^{m_t} W_t / Σ_s e^{m_s} W_s) · (w_i / W_t): exact.

use crate::philox::{gumbel, row_random, uniform_open, Rng};
use crate::status::NO_TOKEN;

/// Tokens per draw tile; must equal `SAMPLEX_DRAW_TILE` in kernels/common.cuh.
pub const DRAW_TILE: usize = 2048;

/// A drawn token and how far the draw was from coming out differently.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    /// The token, or [`NO_TOKEN`] when nothing had weight.
    pub token: u32,
    /// Status bits ([`crate::status`]).
    pub status: u32,
    /// How close the draw came to another token: the smaller of (a) the gap between the
    /// winning and the runner-up tile keys and (b) the distance of ub·W_t to the nearest CDF
    /// boundary relative to W_t. A GPU (f32) draw may differ from this one only when the
    /// margin is below ~1e-5 (SPEC "Drawing a token").
    pub margin: f64,
}

impl Draw {
    /// A row with nothing to draw.
    pub fn none(status: u32) -> Self {
        Draw {
            token: NO_TOKEN,
            status,
            margin: f64::INFINITY,
        }
    }
}

/// Draws from log-weights: token i has weight e^{logw_i} (−∞ = excluded).
pub fn draw_log_weights(logw: &[f64], rng: Rng, stream: u32) -> Draw {
    draw_tiles(logw.len(), rng, stream, |range| {
        let m = logw[range.clone()]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let w = logw[range]
            .iter()
            .map(|&l| {
                if m == f64::NEG_INFINITY {
                    0.0
                } else {
                    (l - m).exp()
                }
            })
            .collect();
        (if m == f64::NEG_INFINITY { 0.0 } else { m }, w)
    })
}

/// Draws from non-negative linear weights (probabilities, sparsemax's q): log-scale 0.
pub fn draw_weights(w: &[f64], rng: Rng, stream: u32) -> Draw {
    draw_tiles(w.len(), rng, stream, |range| {
        (0.0, w[range].iter().map(|&x| x.max(0.0)).collect())
    })
}

/// The method itself, over `n` tokens; `tile(range)` gives a tile's (log-scale, weights).
fn draw_tiles(
    n: usize,
    rng: Rng,
    stream: u32,
    tile: impl Fn(std::ops::Range<usize>) -> (f64, Vec<f64>),
) -> Draw {
    let mut best: Option<(f64, u32, f64)> = None; // (key, token, within-tile margin)
    let mut runner_up = f64::NEG_INFINITY;
    for t in 0..n.div_ceil(DRAW_TILE) {
        let start = t * DRAW_TILE;
        let range = start..n.min(start + DRAW_TILE);
        let (scale, w) = tile(range);
        let total: f64 = w.iter().sum();
        if total <= 0.0 {
            continue;
        }
        let r = row_random(rng.seed, rng.offset, stream, t as u32);
        let (ua, ub) = (uniform_open(r[0]), uniform_open(r[1]));
        let key = scale + total.ln() + gumbel(ua);
        if best.is_some_and(|(k, _, _)| key <= k) {
            runner_up = runner_up.max(key);
            continue;
        }
        if let Some((k, _, _)) = best {
            runner_up = runner_up.max(k);
        }
        let target = ub * total;
        let mut acc = 0.0;
        let mut token = None;
        let mut last_kept = 0;
        let mut margin = f64::INFINITY;
        for (i, &wi) in w.iter().enumerate() {
            if wi <= 0.0 {
                continue;
            }
            margin = margin.min((acc - target).abs());
            acc += wi;
            margin = margin.min((acc - target).abs());
            last_kept = i;
            if token.is_none() && acc > target {
                token = Some(i);
            }
        }
        let token = token.unwrap_or(last_kept);
        best = Some((key, (start + token) as u32, margin / total));
    }
    match best {
        None => Draw::none(0),
        Some((key, token, within)) => Draw {
            token,
            status: 0,
            margin: within.min(key - runner_up),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_kept_token_is_always_drawn() {
        let mut logw = vec![f64::NEG_INFINITY; 5000];
        logw[4321] = -3.0;
        for seed in 0..20 {
            assert_eq!(draw_log_weights(&logw, Rng::new(seed), 0).token, 4321);
        }
    }

    #[test]
    fn nothing_kept_gives_no_token() {
        let logw = vec![f64::NEG_INFINITY; 10];
        assert_eq!(draw_log_weights(&logw, Rng::new(1), 0).token, NO_TOKEN);
        assert_eq!(draw_weights(&[0.0; 10], Rng::new(1), 0).token, NO_TOKEN);
    }

    #[test]
    fn log_and_linear_weights_draw_alike() {
        let w: Vec<f64> = (0..5000).map(|i| ((i * 7919) % 97) as f64 + 0.5).collect();
        let logw: Vec<f64> = w.iter().map(|x| x.ln()).collect();
        let mut same = 0;
        for seed in 0..50 {
            let a = draw_weights(&w, Rng::new(seed), 3);
            let b = draw_log_weights(&logw, Rng::new(seed), 3);
            same += usize::from(a.token == b.token);
        }
        // The tile scales differ (0 vs the tile max), so keys differ by rounding only.
        assert!(same >= 49, "{same}");
    }
}
