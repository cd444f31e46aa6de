//! Logit edits: the first stage of SPEC "Order of operations" (edits → temperature → top-k →
//! top-p → min-p → renormalise → draw). They change the scores s before any decoder sees
//! them, in place: an allowed-token mask (structured output, banned tokens), a per-token bias
//! (OpenAI's `logit_bias`) and the repetition / presence / frequency penalties of a sequence's
//! history. Each is its own call, applied in the order the caller queues them.
//!
//! [`cpu::mask_tokens`](crate::cpu::mask_tokens), [`cpu::apply_bias`](crate::cpu::apply_bias),
//! [`cpu::apply_penalties`](crate::cpu::apply_penalties) and `gpu::Sampler::mask_tokens`,
//! `::apply_bias`, `::apply_penalties` compute the same thing.

use crate::error::{Error, Result};

/// The number of u32 words of one row's allowed-token bitmask: ⌈vocab / 32⌉. Token i is
/// allowed where bit i % 32 of word i / 32 is 1 (the layout of xgrammar's and vLLM's token
/// bitmasks; bits past `vocab` are ignored).
pub fn mask_words(vocab: usize) -> usize {
    vocab.div_ceil(32)
}

/// The penalties on the tokens of a row's history, with c_i the number of times token i
/// occurs in it:
///
/// ```text
/// z_i ← (z_i > 0 ? z_i / repetition : z_i · repetition) − (frequency · c_i + presence)   (c_i ≥ 1)
/// ```
///
/// Tokens that do not occur are untouched. The repetition penalty is HF's and vLLM's
/// (> 1 discourages repeats); presence and frequency are OpenAI's (> 0 discourages). To apply
/// vLLM's split (repetition over prompt and output, the other two over the output only), call
/// the operation twice with the two histories.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Penalties {
    /// > 0 and finite; 1 is off.
    pub repetition: f32,
    /// Finite; 0 is off.
    pub presence: f32,
    /// Finite; 0 is off.
    pub frequency: f32,
}

impl Penalties {
    /// Every penalty off.
    pub const NONE: Penalties = Penalties {
        repetition: 1.0,
        presence: 0.0,
        frequency: 0.0,
    };

    /// Host-side checks (SPEC "Bad input").
    ///
    /// # Errors
    /// [`Error::BadParam`] for a repetition ≤ 0, NaN or ∞, or a presence/frequency NaN or ∞.
    pub fn validate(&self) -> Result<()> {
        if !(self.repetition > 0.0 && self.repetition.is_finite()) {
            return Err(Error::BadParam {
                name: "repetition",
                value: self.repetition.into(),
                range: "> 0 and finite",
            });
        }
        for (name, v) in [("presence", self.presence), ("frequency", self.frequency)] {
            if !v.is_finite() {
                return Err(Error::BadParam {
                    name,
                    value: v.into(),
                    range: "finite",
                });
            }
        }
        Ok(())
    }
}

impl Default for Penalties {
    fn default() -> Self {
        Penalties::NONE
    }
}

/// A batch's token histories (or a bias's tokens) in host memory, padded: row r's tokens are
/// `tokens[r · max_len ..][.. len_r]`, with `len_r = lengths[r]` or `max_len` when there are no
/// lengths. Ids ≥ vocab are ignored, so a history padded with such an id (vLLM pads with
/// `vocab`) needs no lengths.
#[derive(Clone, Copy, Debug)]
pub struct History<'a> {
    pub tokens: &'a [u32],
    pub max_len: usize,
    pub lengths: Option<&'a [u32]>,
}

impl History<'_> {
    /// `tokens` holds `batch × max_len` ids and `lengths`, when given, `batch` entries.
    pub(crate) fn check(&self, batch: usize) -> Result<()> {
        check_history(
            self.tokens.len(),
            self.max_len,
            self.lengths.map(<[u32]>::len),
            batch,
        )
    }
}

/// `tokens` holds `batch × max_len` ids and `lengths`, when given, `batch` entries.
pub(crate) fn check_history(
    tokens: usize,
    max_len: usize,
    lengths: Option<usize>,
    batch: usize,
) -> Result<()> {
    let expected = batch.checked_mul(max_len).ok_or(Error::BadParam {
        name: "max_len",
        value: max_len as f64,
        range: "such that batch x max_len fits in memory",
    })?;
    if tokens != expected {
        return Err(Error::BadLength {
            name: "history tokens",
            got: tokens,
            expected,
        });
    }
    match lengths {
        Some(got) if got != batch => Err(Error::BadLength {
            name: "history lengths",
            got,
            expected: batch,
        }),
        _ => Ok(()),
    }
}
