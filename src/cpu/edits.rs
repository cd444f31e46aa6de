//! Logit edits on host rows (SPEC "Order of operations", first stage; [`crate::edits`]):
//! the allowed-token mask and the history penalties, in place, computed in f64 and written back
//! through f32 (as the device writes them).

use std::collections::BTreeMap;

use crate::batch::{check_shape, Rows};
use crate::dtype::Logit;
use crate::edits::{mask_words, History, Penalties};
use crate::error::{Error, Result};

/// z_i = −∞ wherever bit i of row r's bitmask (`allowed[r · mask_words(vocab) ..]`) is 0.
///
/// # Errors
/// The shape checks of [`crate::Logits::with_stride`]; [`Error::BadLength`] when `allowed`
/// does not hold `batch × mask_words(vocab)` words.
pub fn mask_tokens<T: Logit>(
    data: &mut [T],
    batch: usize,
    vocab: usize,
    stride: usize,
    allowed: &[u32],
) -> Result<()> {
    check_shape("logits", data.len(), batch, vocab, stride)?;
    let words = mask_words(vocab);
    if allowed.len() != batch * words {
        return Err(Error::BadLength {
            name: "allowed",
            got: allowed.len(),
            expected: batch * words,
        });
    }
    for r in 0..batch {
        let bits = &allowed[r * words..(r + 1) * words];
        for (i, z) in data[r * stride..r * stride + vocab].iter_mut().enumerate() {
            if (bits[i / 32] >> (i % 32)) & 1 == 0 {
                *z = T::from_f32(f32::NEG_INFINITY);
            }
        }
    }
    Ok(())
}

/// Each distinct token of row r's history, occurring c times, gets
/// `z ← (z > 0 ? z / repetition : z · repetition) − (frequency · c + presence)` ([`Penalties`]).
///
/// # Errors
/// The shape checks; [`Error::BadLength`] for a history that does not hold `batch × max_len`
/// tokens (or `batch` lengths) or per-row penalties not `batch` long; [`Error::BadParam`] for a
/// penalty out of range or a length above `max_len`.
pub fn apply_penalties<T: Logit>(
    data: &mut [T],
    batch: usize,
    vocab: usize,
    stride: usize,
    history: &History<'_>,
    penalties: Rows<'_, Penalties>,
) -> Result<()> {
    check_shape("logits", data.len(), batch, vocab, stride)?;
    history.check(batch)?;
    penalties.check_len("penalties", batch)?;
    for r in 0..batch {
        let pen = penalties.get(r);
        pen.validate()?;
        let mut counts = BTreeMap::<usize, u32>::new();
        for &t in row_list(history, r)? {
            if (t as usize) < vocab {
                *counts.entry(t as usize).or_default() += 1;
            }
        }
        let row = &mut data[r * stride..r * stride + vocab];
        for (t, c) in counts {
            let z = f64::from(row[t].to_f32());
            let rep = f64::from(pen.repetition);
            let scaled = if z > 0.0 { z / rep } else { z * rep };
            let edited =
                scaled - (f64::from(pen.frequency) * f64::from(c) + f64::from(pen.presence));
            row[t] = T::from_f32(edited as f32);
        }
    }
    Ok(())
}

/// Row r's entries of a padded list: the first `lengths[r]` (or `max_len`) of its `max_len`.
fn row_list<'h>(lists: &History<'h>, r: usize) -> Result<&'h [u32]> {
    let len = lists.lengths.map_or(lists.max_len, |l| l[r] as usize);
    if len > lists.max_len {
        return Err(Error::BadParam {
            name: "history length",
            value: len as f64,
            range: "<= max_len",
        });
    }
    Ok(&lists.tokens[r * lists.max_len..][..len])
}

/// The largest |bias| (2^20): a value beyond it, or NaN, is refused here and clamped on the device.
pub const MAX_BIAS: f32 = 1_048_576.0;

/// `z_i ← z_i + Σ b` over row r's entries `(tokens[k], values[k])` for token i (a list laid out as
/// a [`History`]; ids ≥ vocab are padding). The values count in units of 2^-24 (each rounded to
/// the nearest, ties to even: exact for |b| ≥ 1/2), the sum is added in f64 and rounded to f32
/// once, then to the logits' type — so the device's result is the same bits.
///
/// # Errors
/// The shape checks; [`Error::BadLength`] when `values` is not as long as `tokens`;
/// [`Error::BadParam`] for a value NaN or beyond ±[`MAX_BIAS`], or a length above `max_len`.
pub fn apply_bias<T: Logit>(
    data: &mut [T],
    batch: usize,
    vocab: usize,
    stride: usize,
    tokens: &History<'_>,
    values: &[f32],
) -> Result<()> {
    check_shape("logits", data.len(), batch, vocab, stride)?;
    tokens.check(batch)?;
    if values.len() != tokens.tokens.len() {
        return Err(Error::BadLength {
            name: "bias values",
            got: values.len(),
            expected: tokens.tokens.len(),
        });
    }
    for r in 0..batch {
        let list = row_list(tokens, r)?;
        let mut sums = BTreeMap::<usize, i64>::new();
        for (&t, &b) in list.iter().zip(&values[r * tokens.max_len..]) {
            if (t as usize) >= vocab {
                continue;
            }
            if b.is_nan() || b.abs() > MAX_BIAS {
                return Err(Error::BadParam {
                    name: "bias",
                    value: b.into(),
                    range: "in [-2^20, 2^20]",
                });
            }
            *sums.entry(t as usize).or_default() += (b * 16_777_216.0).round_ties_even() as i64;
        }
        let row = &mut data[r * stride..r * stride + vocab];
        for (t, sum) in sums {
            let z = f64::from(row[t].to_f32()) + sum as f64 / 16_777_216.0;
            row[t] = T::from_f32(z as f32);
        }
    }
    Ok(())
}
