//! The CPU reference: every decoder of the SPEC, in f64, written to be obviously right.
//!
//! This is the truth the kernels are tested against and what a user without a GPU runs.
//! Inputs are widened exactly (f16/bf16 → f32 → f64) and sanitised per SPEC "Bad input"
//! (NaN → −∞, +∞ → the largest finite f32). Speed is not a goal here: rows are sorted freely.
//!
//! | function                 | what it returns per row                                     |
//! |--------------------------|-------------------------------------------------------------|
//! | [`argmax`]               | the greedy token (ties: lowest index)                       |
//! | [`softmax()`]            | softmax(z/τ) (τ = 0: one-hot at the argmax)                  |
//! | [`log_softmax`]          | log softmax(z/τ)                                            |
//! | [`token_log_probs`]      | log softmax(z/τ) at n given tokens                          |
//! | [`top_k_select`]         | exactly k (value, index), value descending, ties lower index |
//! | [`kept`]                 | the support after top-k → top-p → min-p                      |
//! | [`masked_logits`]        | z where kept, −∞ elsewhere                                   |
//! | [`distribution`]         | q* of any decoder                                            |
//! | [`sample`]               | a token drawn from q* with the Philox stream                 |
//! | [`sample_from_probs`]    | a token drawn from given probabilities                       |
//! | [`sample_from_probs_n`]  | n tokens drawn from given probabilities (offsets o .. o + n − 1) |
//! | [`verify_draft`]         | speculative decoding: the accepted draft prefix and one more token |
//! | [`verify_draft_logits`]  | the same on the target's logits at a temperature per request |
//! | [`sparsemax()`]          | sparsemax's q, support size and θ                            |
//! | [`bok()`]                | BoK's q and J(q^t) at every step                             |
//! | [`mask_tokens`]          | logit edits, in place: −∞ where the allowed-token bitmask is 0 |
//! | [`apply_bias`]           | logit edits, in place: z_i + the biases listed for token i   |
//! | [`apply_penalties`]      | logit edits, in place: repetition / presence / frequency     |
#![forbid(unsafe_code)]

pub mod bok;
pub mod draw;
pub mod edits;
pub mod filters;
pub mod softmax;
pub mod sparsemax;
pub mod speculative;

pub use bok::{bok, bok_gradient, bok_objective, BokTrace};
pub use draw::{draw_log_weights, draw_weights, Draw, DRAW_TILE};
pub use edits::{apply_bias, apply_penalties, mask_tokens};
pub use filters::{kept_row, top_k_select_row};
pub use softmax::{log_softmax_row, softmax_row};
pub use sparsemax::{sparsemax, Sparsemax};
pub use speculative::{verify_draft, verify_draft_logits, Verdict};

use crate::batch::{check_shape, stream_of, Logits, Rows};
use crate::decoder::{BokWeights, Decoder, Regularizer};
use crate::dtype::Logit;
use crate::error::{Error, Result};
use crate::philox::Rng;
use crate::status;

/// A row widened to f64 and sanitised (NaN → −∞, +∞ → f32::MAX), with its status bits.
pub fn widen_row<T: Logit>(row: &[T]) -> (Vec<f64>, u32) {
    let mut st = 0;
    let z = row
        .iter()
        .map(|x| {
            let v = x.to_f32();
            if v.is_nan() {
                st |= status::NAN_LOGIT;
                f64::NEG_INFINITY
            } else if v == f32::INFINITY {
                st |= status::POS_INF_LOGIT;
                f64::from(f32::MAX)
            } else {
                f64::from(v)
            }
        })
        .collect();
    (z, st)
}

/// The greedy token of a sanitised row: argmax, ties to the lowest index; [`status::NO_TOKEN`]
/// when no value is finite.
pub fn argmax_row(z: &[f64]) -> u32 {
    let mut best = status::NO_TOKEN;
    let mut best_v = f64::NEG_INFINITY;
    for (i, &v) in z.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i as u32;
        }
    }
    best
}

/// Greedy tokens of every row.
pub fn argmax<T: Logit>(logits: &Logits<'_, T>) -> Vec<u32> {
    (0..logits.batch())
        .map(|r| argmax_row(&widen_row(logits.row(r)).0))
        .collect()
}

/// softmax(z/τ) of every row (τ = 0: one-hot at the argmax; no finite logit: all zero).
///
/// # Errors
/// [`Error::BadParam`] for τ < 0 or NaN; [`Error::BadLength`] for a per-row τ of wrong length.
pub fn softmax<T: Logit>(
    logits: &Logits<'_, T>,
    temperature: Rows<'_, f32>,
) -> Result<Vec<Vec<f64>>> {
    temperature.check_len("temperature", logits.batch())?;
    (0..logits.batch())
        .map(|r| {
            let t = temperature.get(r);
            crate::decoder::check_temperature(t)?;
            Ok(softmax_row(&widen_row(logits.row(r)).0, f64::from(t)))
        })
        .collect()
}

/// log softmax(z/τ) of every row, τ > 0 (−∞ for excluded tokens).
pub fn log_softmax<T: Logit>(
    logits: &Logits<'_, T>,
    temperature: Rows<'_, f32>,
) -> Result<Vec<Vec<f64>>> {
    temperature.check_len("temperature", logits.batch())?;
    (0..logits.batch())
        .map(|r| {
            let t = temperature.get(r);
            crate::decoder::check_temperature(t)?;
            if t == 0.0 {
                return Err(Error::BadParam {
                    name: "temperature",
                    value: 0.0,
                    range: "> 0 for log-probabilities",
                });
            }
            Ok(log_softmax_row(&widen_row(logits.row(r)).0, f64::from(t)))
        })
        .collect()
}

/// log softmax(z/τ) at `n` given tokens per row: `tokens` is `batch × n` (row-major, n ≥ 1),
/// and so is the result. A τ = 0 row is greedy (0 at the argmax, −∞ elsewhere); a token
/// ≥ vocab, and every token of a row with no finite logit, gets −∞.
///
/// # Errors
/// [`Error::BadParam`] for τ < 0 or NaN; [`Error::BadLength`] for a per-row τ of wrong
/// length, or `tokens` not a non-empty multiple of `batch` long.
pub fn token_log_probs<T: Logit>(
    logits: &Logits<'_, T>,
    temperature: Rows<'_, f32>,
    tokens: &[u32],
) -> Result<Vec<f64>> {
    temperature.check_len("temperature", logits.batch())?;
    let n = crate::batch::tokens_per_row(tokens.len(), logits.batch())? as usize;
    let mut out = Vec::with_capacity(tokens.len());
    for (r, want) in tokens.chunks(n).enumerate() {
        let t = temperature.get(r);
        crate::decoder::check_temperature(t)?;
        let z = widen_row(logits.row(r)).0;
        let lp = if t == 0.0 {
            let at = argmax_row(&z) as usize;
            (0..z.len())
                .map(|i| if i == at { 0.0 } else { f64::NEG_INFINITY })
                .collect()
        } else {
            log_softmax_row(&z, f64::from(t))
        };
        out.extend(
            want.iter()
                .map(|&i| lp.get(i as usize).copied().unwrap_or(f64::NEG_INFINITY)),
        );
    }
    Ok(out)
}

/// Exactly k (value, index) pairs per row, sorted by value descending, ties by lower index.
/// k is clamped to the vocabulary; values are the sanitised logits.
///
/// # Errors
/// [`Error::BadParam`] for k = 0; [`Error::BadLength`] for a per-row k of wrong length.
pub fn top_k_select<T: Logit>(
    logits: &Logits<'_, T>,
    k: Rows<'_, u32>,
) -> Result<Vec<Vec<(f32, u32)>>> {
    k.check_len("k", logits.batch())?;
    (0..logits.batch())
        .map(|r| {
            let k = k.get(r);
            if k == 0 {
                return Err(Error::BadParam {
                    name: "k",
                    value: 0.0,
                    range: ">= 1",
                });
            }
            Ok(top_k_select_row(&widen_row(logits.row(r)).0, k as usize))
        })
        .collect()
}

/// The kept set of every row after top-k → top-p → min-p at the decoder's temperature
/// (`true` = kept). Greedy (τ = 0) keeps the argmax only.
pub fn kept<T: Logit>(
    logits: &Logits<'_, T>,
    decoders: Rows<'_, Decoder>,
) -> Result<Vec<Vec<bool>>> {
    check_decoders(logits.batch(), &decoders)?;
    Ok((0..logits.batch())
        .map(|r| {
            let d = decoders.get(r);
            kept_row(
                &widen_row(logits.row(r)).0,
                &d.support,
                f64::from(d.temperature()),
            )
        })
        .collect())
}

/// z where kept, −∞ elsewhere (the filters' masked-logits output).
pub fn masked_logits<T: Logit>(
    logits: &Logits<'_, T>,
    decoders: Rows<'_, Decoder>,
) -> Result<Vec<Vec<f64>>> {
    let keep = kept(logits, decoders)?;
    Ok((0..logits.batch())
        .map(|r| {
            let (z, _) = widen_row(logits.row(r));
            z.iter()
                .zip(&keep[r])
                .map(|(&v, &k)| if k { v } else { f64::NEG_INFINITY })
                .collect()
        })
        .collect())
}

/// q* of every row, for any decoder. `weights` is BoK's caller buffer (batch × vocab,
/// required exactly when a decoder uses [`BokWeights::Custom`]).
///
/// # Errors
/// Every host-side check of SPEC "Bad input" on the decoders, the per-row lengths and the
/// weights buffer.
pub fn distribution<T: Logit>(
    logits: &Logits<'_, T>,
    decoders: Rows<'_, Decoder>,
    weights: Option<&[f32]>,
) -> Result<Vec<Vec<f64>>> {
    check_decoders(logits.batch(), &decoders)?;
    check_weights(logits, &decoders, weights)?;
    Ok((0..logits.batch())
        .map(|r| {
            let (z, _) = widen_row(logits.row(r));
            row_distribution(
                &z,
                &decoders.get(r),
                weights.map(|w| weight_row(w, logits, r)),
            )
        })
        .collect())
}

/// Draws one token per row from q* with the Philox stream (ARCHITECTURE.md "Drawing a
/// token"). Greedy rows (τ = 0) take the argmax. A row with no finite logit gets
/// [`status::NO_TOKEN`] and [`status::NO_FINITE_LOGIT`].
///
/// # Errors
/// As [`distribution`], plus [`Error::BadLength`] for per-row seeds of the wrong length.
pub fn sample<T: Logit>(
    logits: &Logits<'_, T>,
    decoders: Rows<'_, Decoder>,
    seeds: Rows<'_, Rng>,
    weights: Option<&[f32]>,
) -> Result<Vec<Draw>> {
    check_decoders(logits.batch(), &decoders)?;
    check_weights(logits, &decoders, weights)?;
    seeds.check_len("seeds", logits.batch())?;
    Ok((0..logits.batch())
        .map(|r| {
            let (z, st) = widen_row(logits.row(r));
            let d = decoders.get(r);
            let stream = stream_of(&seeds, r);
            let mut draw = sample_row(
                &z,
                &d,
                weights.map(|w| weight_row(w, logits, r)),
                seeds.get(r),
                stream,
            );
            draw.status |= st;
            draw
        })
        .collect())
}

/// Draws one token per row from given probabilities (`batch × vocab`, dense, ≥ 0; they need
/// not sum to 1). A row with no positive entry gets [`status::NO_TOKEN`].
pub fn sample_from_probs(
    probs: &[f32],
    batch: usize,
    vocab: usize,
    seeds: Rows<'_, Rng>,
) -> Result<Vec<Draw>> {
    check_shape("probs", probs.len(), batch, vocab, vocab)?;
    seeds.check_len("seeds", batch)?;
    Ok((0..batch)
        .map(|r| {
            let w = probs_row_weights(&probs[r * vocab..(r + 1) * vocab]);
            with_no_token_status(draw_weights(&w, seeds.get(r), stream_of(&seeds, r)))
        })
        .collect())
}

/// Draws `n` tokens per row from given probabilities: `batch × n` draws, row-major, draw j
/// of a row the one [`sample_from_probs`] makes at the row's offset + j (wrapping).
pub fn sample_from_probs_n(
    probs: &[f32],
    batch: usize,
    vocab: usize,
    n: usize,
    seeds: Rows<'_, Rng>,
) -> Result<Vec<Draw>> {
    check_shape("probs", probs.len(), batch, vocab, vocab)?;
    seeds.check_len("seeds", batch)?;
    let mut out = Vec::with_capacity(batch * n);
    for r in 0..batch {
        let (rng, stream) = (seeds.get(r), stream_of(&seeds, r));
        let w = probs_row_weights(&probs[r * vocab..(r + 1) * vocab]);
        for j in 0..n as u64 {
            let at = rng.at(rng.offset.wrapping_add(j));
            out.push(with_no_token_status(draw_weights(&w, at, stream)));
        }
    }
    Ok(out)
}

/// A row of probabilities as draw weights: NaN weighs 0 (`draw_weights` zeroes negatives).
fn probs_row_weights(row: &[f32]) -> Vec<f64> {
    row.iter()
        .map(|&p| if p.is_nan() { 0.0 } else { f64::from(p) })
        .collect()
}

fn with_no_token_status(mut d: Draw) -> Draw {
    if d.token == status::NO_TOKEN {
        d.status |= status::NO_FINITE_LOGIT;
    }
    d
}

/// q* of one sanitised row.
pub fn row_distribution(z: &[f64], d: &Decoder, weights: Option<Vec<f64>>) -> Vec<f64> {
    let t = f64::from(d.temperature());
    match d.regularizer {
        _ if t == 0.0 => one_hot(z.len(), argmax_row(z)),
        Regularizer::None => one_hot(z.len(), argmax_row(z)),
        Regularizer::Entropy { .. } => {
            let keep = kept_row(z, &d.support, t);
            softmax_row(&mask(z, &keep), t)
        }
        Regularizer::Euclidean { .. } => {
            let u: Vec<f64> = z.iter().map(|v| v / t).collect();
            sparsemax(&u).q
        }
        Regularizer::BestOfK(b) => {
            let keep = kept_row(z, &d.support, t);
            bok(&mask(z, &keep), &b, weights.as_deref()).q
        }
    }
}

/// One row's draw (no status from the logits; [`sample`] adds it).
pub fn sample_row(
    z: &[f64],
    d: &Decoder,
    weights: Option<Vec<f64>>,
    rng: Rng,
    stream: u32,
) -> Draw {
    let t = f64::from(d.temperature());
    let draw = match d.regularizer {
        _ if t == 0.0 => greedy_draw(z),
        Regularizer::None => greedy_draw(z),
        Regularizer::Entropy { .. } => {
            // Draw straight from the (masked) logits: weights e^{u_i}, the same as softmax.
            let keep = kept_row(z, &d.support, t);
            let logw: Vec<f64> = z
                .iter()
                .zip(&keep)
                .map(|(&v, &k)| if k { v / t } else { f64::NEG_INFINITY })
                .collect();
            draw_log_weights(&logw, rng, stream)
        }
        Regularizer::Euclidean { .. } => {
            let u: Vec<f64> = z.iter().map(|v| v / t).collect();
            draw_weights(&sparsemax(&u).q, rng, stream)
        }
        Regularizer::BestOfK(b) => {
            let keep = kept_row(z, &d.support, t);
            let q = bok(&mask(z, &keep), &b, weights.as_deref()).q;
            let logw: Vec<f64> = q.iter().map(|&x| x.ln()).collect();
            draw_log_weights(&logw, rng, stream)
        }
    };
    with_no_token_status(draw)
}

fn greedy_draw(z: &[f64]) -> Draw {
    Draw {
        token: argmax_row(z),
        status: 0,
        margin: f64::INFINITY,
    }
}

fn one_hot(n: usize, at: u32) -> Vec<f64> {
    let mut q = vec![0.0; n];
    if let Some(x) = q.get_mut(at as usize) {
        *x = 1.0;
    }
    q
}

/// z where kept, −∞ elsewhere.
fn mask(z: &[f64], keep: &[bool]) -> Vec<f64> {
    z.iter()
        .zip(keep)
        .map(|(&v, &k)| if k { v } else { f64::NEG_INFINITY })
        .collect()
}

fn weight_row<T: Logit>(w: &[f32], logits: &Logits<'_, T>, r: usize) -> Vec<f64> {
    let v = logits.vocab();
    w[r * v..(r + 1) * v]
        .iter()
        .map(|&x| f64::from(x))
        .collect()
}

fn check_decoders(batch: usize, decoders: &Rows<'_, Decoder>) -> Result<()> {
    decoders.check_len("decoders", batch)?;
    match decoders {
        Rows::All(d) => d.validate(),
        Rows::Each(ds) => ds.iter().try_for_each(|d| d.validate()),
    }
}

fn check_weights<T: Logit>(
    logits: &Logits<'_, T>,
    decoders: &Rows<'_, Decoder>,
    weights: Option<&[f32]>,
) -> Result<()> {
    let custom = (0..logits.batch()).any(|r| {
        matches!(
            decoders.get(r).regularizer,
            Regularizer::BestOfK(b) if b.weights == BokWeights::Custom
        )
    });
    let expected = logits.batch() * logits.vocab();
    match weights {
        Some(w) if w.len() != expected => Err(Error::BadLength {
            name: "weights",
            got: w.len(),
            expected,
        }),
        None if custom => Err(Error::BadLength {
            name: "weights",
            got: 0,
            expected,
        }),
        Some(w) => match w.iter().find(|x| !(**x >= 0.0 && x.is_finite())) {
            Some(bad) => Err(Error::BadParam {
                name: "weights",
                value: f64::from(*bad),
                range: "finite and >= 0",
            }),
            None => Ok(()),
        },
        None => Ok(()),
    }
}
