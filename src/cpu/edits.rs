//! Logit edits on host rows (SPEC "Order of operations", first stage; [`crate::edits`]):
//! the allowed-token mask and the history penalties, in place, computed in f64 and written back
//! through f32 (as the device writes them).

use std::collections::BTreeMap;

use crate::batch::{check_shape, Rows};
use crate::dtype::Logit;
use crate::edits::{check_history, mask_words, History, Penalties};
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
    check_history(
        history.tokens.len(),
        history.max_len,
        history.lengths.map(<[u32]>::len),
        batch,
    )?;
    penalties.check_len("penalties", batch)?;
    for r in 0..batch {
        let pen = penalties.get(r);
        pen.validate()?;
        let len = history.lengths.map_or(history.max_len, |l| l[r] as usize);
        if len > history.max_len {
            return Err(Error::BadParam {
                name: "history length",
                value: len as f64,
                range: "<= max_len",
            });
        }
        let mut counts = BTreeMap::<usize, u32>::new();
        for &t in &history.tokens[r * history.max_len..][..len] {
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
