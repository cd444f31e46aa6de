//! Speculative decoding's verification step (Leviathan et al., ICML 2023; Chen et al., 2023):
//! a draft model proposed n tokens, the target model scored them; keep the longest prefix the
//! target accepts and draw one more token, so that every emitted token is distributed exactly
//! as the target model's own draw would be.
//!
//! Row r has n draft tokens x_0 .. x_{n−1}, the draft's distributions q_0 .. q_{n−1} (it drew x_i
//! from q_i) and the target's p_0 .. p_n (p_n is the distribution after the whole draft).
//! Drafts proposed without a distribution (n-gram or prompt lookup, a greedy draft model) are
//! one-hot: q_i = δ(x_i), given by their tokens alone, so draft i is accepted with chance
//! p_i(x_i) and a rejected token is replaced from p_e without x_e. A
//! batch is padded to its longest draft: with per-row lengths, row r's draft is its first n_r
//! slots (a length above the padded n is taken as n, [`status::PARAM_CLAMPED`]); n below
//! stands for n_r, and the slots past it are not read. With the row's (seed, offset) = (s, o):
//!
//! 1. Draft i is accepted when p_i(x_i) > 0 and either q_i(x_i) ≤ p_i(x_i) or
//!    u_i · q_i(x_i) < p_i(x_i) (so with chance min(1, p/q); a token the target rules out is
//!    always rejected), with
//!    u_i = uniform_open(word 2 of Philox at (tile 0, stream, o + i)) — a word no draw reads.
//!    e = the first rejected i, or n when all are accepted. An id ≥ vocab is rejected
//!    ([`status::PARAM_CLAMPED`]).
//! 2. Token e is [`super::sample_from_probs`]'s draw at offset o + e from the residual
//!    max(p_e − q_e, 0) when e < n (from p_e itself when the residual has no mass), from p_n
//!    when e = n.
//! 3. The row's padded n + 1 tokens: x_0 .. x_{e−1}, token e, then [`status::NO_TOKEN`]. A
//!    serving loop emits e + 1 tokens and advances the offset by the padded n + 1.
//!
//! Probabilities are sanitised as the GPU's draws from probabilities do: NaN and negatives
//! weigh 0 (NaN flagged [`status::NAN_LOGIT`]), +∞ weighs f32::MAX ([`status::POS_INF_LOGIT`]);
//! the flags cover the values the row's verdict read (the tested draft entries up to e and the
//! rows drawn from).

use super::draw::{draw_weights, Draw};
use crate::batch::{stream_of, Logits, Rows};
use crate::dtype::Logit;
use crate::error::{Error, Result};
use crate::philox::{row_random, uniform_open, Rng};
use crate::status;

/// One row's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// n + 1 tokens (the padded n): the accepted draft tokens, the drawn token, then
    /// [`status::NO_TOKEN`].
    pub tokens: Vec<u32>,
    /// e: how many draft tokens were accepted.
    pub accepted: u32,
    /// Status bits ([`crate::status`]).
    pub status: u32,
    /// How close the verdict came to another: the smallest relative distance of an acceptance
    /// test's u_i to its boundary p/q, or the draw's margin ([`Draw::margin`]). A GPU verdict
    /// (f32) may differ only where this is below ~1e-5 (SPEC "Drawing a token").
    pub margin: f64,
}

/// Verifies `batch` rows of n draft slots: `draft_probs` is batch × n × vocab (`None`: one-hot
/// drafts, q_i = δ(x_i)), `draft_tokens` batch × n, `target_probs` batch × (n + 1) × vocab, all
/// dense and row-major (n ≥ 0 from `draft_tokens.len() / batch`); `draft_lens` (batch values),
/// when given, is each row's draft length (its first slots). See the module's text for the
/// method.
///
/// # Errors
/// [`Error::EmptyBatch`], [`Error::BadVocab`], [`Error::BadLength`] when a buffer does not fit
/// the shape or `draft_lens` or `seeds` has the wrong length.
pub fn verify_draft(
    draft_probs: Option<&[f32]>,
    draft_tokens: &[u32],
    draft_lens: Option<&[u32]>,
    target_probs: &[f32],
    batch: usize,
    vocab: usize,
    seeds: Rows<'_, Rng>,
) -> Result<Vec<Verdict>> {
    let n = check_draft_shape(
        draft_probs.map(<[f32]>::len),
        draft_tokens.len(),
        Target::Probs(target_probs.len()),
        batch,
        vocab,
    )?;
    if let Some(lens) = draft_lens {
        Rows::Each(lens).check_len("draft_lens", batch)?;
    }
    seeds.check_len("seeds", batch)?;
    Ok((0..batch)
        .map(|r| {
            let draft = |i| draft_probs.map(|q| dist_row(q, (r * n + i) * vocab, vocab));
            let target = |i| dist_row(target_probs, (r * (n + 1) + i) * vocab, vocab);
            let (len, clamped) = match draft_lens.map(|l| l[r] as usize) {
                Some(len) if len > n => (n, status::PARAM_CLAMPED),
                Some(len) => (len, 0),
                None => (n, 0),
            };
            let xs = &draft_tokens[r * n..r * n + len];
            let mut v = verify_row(xs, n, draft, target, seeds.get(r), stream_of(&seeds, r));
            v.status |= clamped;
            v
        })
        .collect())
}

fn dist_row(probs: &[f32], at: usize, vocab: usize) -> &[f32] {
    &probs[at..at + vocab]
}

/// How the target model's distributions come, for the shape checks: dense probabilities (their
/// length in elements) or logits (their rows; a row's layout is the logits' own).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    Probs(usize),
    LogitRows(usize),
}

/// The draft's length n from the buffers' lengths (`draft_probs` none for one-hot drafts), or
/// the error naming the one that does not fit `batch` rows of `vocab`.
pub(crate) fn check_draft_shape(
    draft_probs: Option<usize>,
    draft_tokens: usize,
    target: Target,
    batch: usize,
    vocab: usize,
) -> Result<usize> {
    match target {
        Target::Probs(len) => crate::batch::check_shape("target_probs", len, batch, vocab, vocab)?,
        // The logits' own shape was checked when they were wrapped: here the vocabulary.
        Target::LogitRows(_) => crate::batch::check_shape("target_logits", vocab, 1, vocab, vocab)?,
    }
    if batch == 0 {
        return Err(Error::EmptyBatch);
    }
    let n = draft_tokens / batch;
    let fits = |name, got, expected| {
        if got == expected {
            Ok(())
        } else {
            Err(Error::BadLength {
                name,
                got,
                expected,
            })
        }
    };
    fits("draft_tokens", draft_tokens, batch * n)?;
    if let Some(len) = draft_probs {
        fits("draft_probs", len, (batch * n).saturating_mul(vocab))?;
    }
    match target {
        Target::Probs(len) => fits("target_probs", len, (batch * (n + 1)).saturating_mul(vocab)),
        Target::LogitRows(rows) => fits("target_logits rows", rows, batch * (n + 1)),
    }?;
    Ok(n)
}

/// [`verify_draft`] on the target model's logits: `target_logits` holds batch × (n + 1) rows
/// (row r's n + 1 target rows in order), and row r's p_i is softmax(z_i / τ_r) as
/// [`super::softmax()`] computes it (one-hot at the argmax for τ_r = 0), rounded to f32, with
/// τ_r = `temperature.get(r)` (batch-wide or `batch` values). The verdicts are
/// [`verify_draft`]'s on those probabilities, and each row's status also has the softmax status
/// bits (NaN or +∞ logits, no finite logit) of the target rows its verdict read: 0 ..= e.
///
/// # Errors
/// As [`verify_draft`] (`target_logits rows` for a row count that is not batch × (n + 1));
/// [`Error::BadParam`] for a τ < 0, NaN or ∞; [`Error::BadLength`] for a per-row τ that is not
/// `batch` long.
pub fn verify_draft_logits<T: Logit>(
    draft_probs: Option<&[f32]>,
    draft_tokens: &[u32],
    draft_lens: Option<&[u32]>,
    target_logits: &Logits<'_, T>,
    temperature: Rows<'_, f32>,
    batch: usize,
    seeds: Rows<'_, Rng>,
) -> Result<Vec<Verdict>> {
    let vocab = target_logits.vocab();
    let rows = target_logits.batch();
    let n = check_draft_shape(
        draft_probs.map(<[f32]>::len),
        draft_tokens.len(),
        Target::LogitRows(rows),
        batch,
        vocab,
    )?;
    temperature.check_len("temperature", batch)?;
    let mut probs = Vec::with_capacity(rows * vocab);
    let mut row_status = Vec::with_capacity(rows);
    for t in 0..rows {
        let tau = temperature.get(t / (n + 1));
        crate::decoder::check_temperature(tau)?;
        let (z, mut st) = super::widen_row(target_logits.row(t));
        if z.iter().all(|&v| v == f64::NEG_INFINITY) {
            st |= status::NO_FINITE_LOGIT;
        }
        probs.extend(
            super::softmax_row(&z, f64::from(tau))
                .iter()
                .map(|&p| p as f32),
        );
        row_status.push(st);
    }
    let mut verdicts = verify_draft(
        draft_probs,
        draft_tokens,
        draft_lens,
        &probs,
        batch,
        vocab,
        seeds,
    )?;
    for (r, v) in verdicts.iter_mut().enumerate() {
        let read = &row_status[r * (n + 1)..=r * (n + 1) + v.accepted as usize];
        v.status |= read.iter().fold(0, |a, &b| a | b);
    }
    Ok(verdicts)
}

/// One row: `xs` its draft (n_r tokens), `width` the padded n (its verdict has n + 1 tokens),
/// `draft(i)` q_i (`None`: one-hot at x_i).
fn verify_row<'a>(
    xs: &[u32],
    width: usize,
    draft: impl Fn(usize) -> Option<&'a [f32]>,
    target: impl Fn(usize) -> &'a [f32],
    rng: Rng,
    stream: u32,
) -> Verdict {
    let n = xs.len();
    let mut status = 0;
    let mut margin = f64::INFINITY;
    let mut e = n;
    for (i, &x) in xs.iter().enumerate() {
        let x = x as usize;
        let accepted = if x < target(i).len() {
            let q = draft(i).map_or(1.0, |q| weight(q[x], &mut status));
            let p = weight(target(i)[x], &mut status);
            let word = row_random(rng.seed, rng.offset.wrapping_add(i as u64), stream, 0)[2];
            let u = uniform_open(word);
            if q > p && p > 0.0 {
                margin = margin.min((u * q - p).abs() / p);
            }
            p > 0.0 && (q <= p || u * q < p)
        } else {
            status |= status::PARAM_CLAMPED;
            false
        };
        if !accepted {
            e = i;
            break;
        }
    }
    let at = rng.at(rng.offset.wrapping_add(e as u64));
    let p: Vec<f64> = target(e).iter().map(|&v| weight(v, &mut status)).collect();
    let mut draw = if e < n {
        let residual: Vec<f64> = match draft(e) {
            Some(q) => q
                .iter()
                .zip(&p)
                .map(|(&q, &p)| (p - weight(q, &mut status)).max(0.0))
                .collect(),
            None => {
                // max(p − δ(x_e), 0): p without x_e's unit (an id ≥ vocab takes nothing).
                let mut r = p.clone();
                if let Some(w) = r.get_mut(xs[e] as usize) {
                    *w = (*w - 1.0).max(0.0);
                }
                r
            }
        };
        draw_weights(&residual, at, stream)
    } else {
        Draw::none(0)
    };
    if draw.token == status::NO_TOKEN {
        draw = draw_weights(&p, at, stream);
    }
    if draw.token == status::NO_TOKEN {
        status |= status::NO_FINITE_LOGIT;
    }
    let mut tokens = vec![status::NO_TOKEN; width + 1];
    tokens[..e].copy_from_slice(&xs[..e]);
    tokens[e] = draw.token;
    Verdict {
        tokens,
        accepted: e as u32,
        status: status | draw.status,
        margin: margin.min(draw.margin),
    }
}

/// A probability as a weight, as the GPU sanitises it: NaN and negatives → 0, +∞ → f32::MAX.
fn weight(p: f32, status: &mut u32) -> f64 {
    if p.is_nan() {
        *status |= status::NAN_LOGIT;
        0.0
    } else if p == f32::INFINITY {
        *status |= status::POS_INF_LOGIT;
        f64::from(f32::MAX)
    } else {
        f64::from(p.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_row(draft: &[f32], xs: &[u32], target: &[f32], vocab: usize, rng: Rng) -> Verdict {
        verify_draft(Some(draft), xs, None, target, 1, vocab, Rows::All(rng))
            .unwrap()
            .remove(0)
    }

    #[test]
    fn a_draft_the_target_agrees_with_is_always_accepted() {
        let q = [0.25f32, 0.25, 0.5, 0.0];
        let p = [0.25f32, 0.25, 0.5, 0.0, 0.0, 0.0, 0.0, 1.0];
        for seed in 0..50 {
            let v = one_row(&q, &[2], &p, 4, Rng::new(seed));
            assert_eq!(
                (v.accepted, v.tokens.as_slice()),
                (1, &[2, 3][..]),
                "{seed}"
            );
        }
    }

    #[test]
    fn a_draft_the_target_rules_out_is_rejected_and_replaced_from_the_residual() {
        // p(x = 0) = 0: always rejected; the residual max(p − q, 0) is all on token 1.
        let q = [1.0f32, 0.0, 0.0];
        let p = [0.0f32, 1.0, 0.0, 0.0, 0.0, 1.0];
        for seed in 0..50 {
            let v = one_row(&q, &[0], &p, 3, Rng::new(seed));
            assert_eq!(
                (v.accepted, v.tokens.as_slice()),
                (0, &[1, status::NO_TOKEN][..])
            );
        }
    }

    #[test]
    fn rejection_follows_the_ratio_and_the_first_token_follows_the_target() {
        // q = (0.8, 0.2), p = (0.5, 0.5): x = 0 is kept with chance 5/8; the emitted first
        // token is distributed as p whatever was drafted (drafts drawn from q by the seed).
        let (q, p) = ([0.8f32, 0.2], [0.5f32, 0.5, 0.5, 0.5]);
        let (mut kept, mut zeros, mut firsts) = (0, 0, [0usize; 2]);
        let trials = 20_000u64;
        for seed in 0..trials {
            let x = u32::from(uniform_open(row_random(seed, 999, 0, 0)[0]) >= 0.8);
            let v = one_row(&q, &[x], &p, 2, Rng::new(seed));
            if x == 0 {
                zeros += 1;
                kept += usize::from(v.accepted == 1);
            }
            firsts[v.tokens[0] as usize] += 1;
        }
        let rate = kept as f64 / zeros as f64;
        assert!((rate - 0.625).abs() < 0.02, "{rate}");
        let share = firsts[0] as f64 / trials as f64;
        assert!((share - 0.5).abs() < 0.015, "{share}");
    }

    #[test]
    fn an_empty_residual_draws_from_the_target_and_bad_ids_are_rejected() {
        // p = q but the target gives x no mass: rejected, and the residual is empty.
        let q = [0.0f32, 0.5, 0.5];
        let v = one_row(&q, &[0], &[0.0, 0.5, 0.5, 1.0, 0.0, 0.0], 3, Rng::new(7));
        assert_eq!(v.accepted, 0);
        assert!(v.tokens[0] == 1 || v.tokens[0] == 2, "{:?}", v.tokens);
        let v = one_row(&q, &[3], &[0.0, 0.5, 0.5, 1.0, 0.0, 0.0], 3, Rng::new(7));
        assert_eq!((v.accepted, v.status), (0, status::PARAM_CLAMPED));
    }

    #[test]
    fn shapes_are_checked() {
        let r = verify_draft(
            Some(&[0.5; 4]),
            &[0, 1],
            None,
            &[0.5; 5],
            1,
            2,
            Rows::All(Rng::new(0)),
        );
        assert!(matches!(
            r,
            Err(Error::BadLength {
                name: "target_probs",
                ..
            })
        ));
        let r = verify_draft(
            Some(&[0.5; 3]),
            &[0, 1],
            None,
            &[0.5; 6],
            1,
            2,
            Rows::All(Rng::new(0)),
        );
        assert!(matches!(
            r,
            Err(Error::BadLength {
                name: "draft_probs",
                ..
            })
        ));
        let r = verify_draft(
            Some(&[]),
            &[0],
            None,
            &[0.5; 4],
            2,
            2,
            Rows::All(Rng::new(0)),
        );
        assert!(matches!(
            r,
            Err(Error::BadLength {
                name: "draft_tokens",
                ..
            })
        ));
        // n = 0: a draw from the target's one distribution.
        let v = verify_draft(
            Some(&[]),
            &[],
            None,
            &[0.0, 1.0],
            1,
            2,
            Rows::All(Rng::new(0)),
        )
        .unwrap();
        assert_eq!((v[0].accepted, v[0].tokens.as_slice()), (0, &[1][..]));
        let r = verify_draft(
            Some(&[0.5; 4]),
            &[0, 1],
            Some(&[1, 1]),
            &[0.5; 6],
            1,
            2,
            Rows::All(Rng::new(0)),
        );
        assert!(matches!(
            r,
            Err(Error::BadLength {
                name: "draft_lens",
                got: 2,
                expected: 1
            })
        ));
    }

    #[test]
    fn a_row_of_draft_length_k_is_verified_as_its_first_k_slots_alone() {
        // Three slots of a 4-token vocab; the slots past a row's length hold what would flag or
        // change its verdict (an id ≥ vocab, distributions of other tokens), so reading them shows.
        let (n, vocab) = (3, 4);
        let q: Vec<f32> = (0..n * vocab)
            .map(|k| [0.4, 0.3, 0.2, 0.1][k % 4])
            .collect();
        let p: Vec<f32> = (0..(n + 1) * vocab)
            .map(|k| [0.1, 0.2, 0.3, 0.4][(k + k / 4) % 4])
            .collect();
        let xs = [0u32, 1, 9];
        for seed in 0..200 {
            let rng = Rng::new(seed);
            for len in 0..=n {
                let padded =
                    verify_draft(Some(&q), &xs, Some(&[len as u32]), &p, 1, vocab, rng.into())
                        .unwrap()
                        .remove(0);
                let alone = verify_draft(
                    Some(&q[..len * vocab]),
                    &xs[..len],
                    None,
                    &p[..(len + 1) * vocab],
                    1,
                    vocab,
                    rng.into(),
                )
                .unwrap()
                .remove(0);
                assert_eq!(
                    padded.tokens[..=len],
                    alone.tokens[..],
                    "seed {seed} len {len}"
                );
                assert!(padded.tokens[len + 1..]
                    .iter()
                    .all(|&t| t == status::NO_TOKEN));
                assert_eq!(
                    (padded.accepted, padded.status),
                    (alone.accepted, alone.status)
                );
            }
            // A length above the padded n is n, flagged.
            let over = verify_draft(Some(&q), &xs, Some(&[7]), &p, 1, vocab, rng.into()).unwrap();
            let full = verify_draft(Some(&q), &xs, None, &p, 1, vocab, rng.into()).unwrap();
            assert_eq!(over[0].tokens, full[0].tokens);
            assert_eq!(over[0].status, full[0].status | status::PARAM_CLAMPED);
        }
    }

    #[test]
    fn one_hot_drafts_are_their_one_hot_rows() {
        // Tokens alone (None) must verify as the explicit one-hot rows δ(x_i) would, bit for
        // bit, margins included; an id ≥ vocab as a zero row. Unnormalised targets (a weight
        // above 1, +∞) reach the residual's max(p(x) − 1, 0).
        let (n, vocab) = (3, 5);
        let p: Vec<f32> = (0..(n + 1) * vocab)
            .map(|k| [0.1, 0.05, 0.4, 0.25, 0.2, 1.5, f32::INFINITY][(k * 3 + k / 5) % 7])
            .collect();
        for (xs, lens) in [
            ([2u32, 4, 0], None),
            ([0, 7, 3], None),
            ([1, 2, 3], Some([2u32])),
        ] {
            let mut q = vec![0.0f32; n * vocab];
            for (i, &x) in xs.iter().enumerate() {
                if (x as usize) < vocab {
                    q[i * vocab + x as usize] = 1.0;
                }
            }
            for seed in 0..300 {
                let lens = lens.as_ref().map(|l| l.as_slice());
                let rng = Rows::All(Rng::new(seed));
                let tokens = verify_draft(None, &xs, lens, &p, 1, vocab, rng).unwrap();
                let rows = verify_draft(Some(&q), &xs, lens, &p, 1, vocab, rng).unwrap();
                assert_eq!(tokens, rows, "seed {seed} drafts {xs:?}");
            }
        }
    }

    #[test]
    fn one_hot_drafts_are_accepted_with_the_target_chance_and_emit_the_target() {
        // x = 0 always: kept with chance p(0) = 0.5, and the first emitted token follows p.
        let p = [0.5f32, 0.3, 0.2, 0.0, 0.0, 1.0];
        let (mut kept, mut firsts) = (0usize, [0usize; 3]);
        let trials = 20_000u64;
        for seed in 0..trials {
            let v = verify_draft(None, &[0], None, &p, 1, 3, Rows::All(Rng::new(seed)))
                .unwrap()
                .remove(0);
            kept += usize::from(v.accepted == 1);
            firsts[v.tokens[0] as usize] += 1;
            if v.accepted == 1 {
                assert_eq!(v.tokens[1], 2, "the bonus token is p_1's only one");
            }
        }
        let rate = kept as f64 / trials as f64;
        assert!((rate - 0.5).abs() < 0.015, "{rate}");
        for (k, want) in [0.5, 0.3, 0.2].into_iter().enumerate() {
            let share = firsts[k] as f64 / trials as f64;
            assert!((share - want).abs() < 0.015, "token {k}: {share}");
        }
        // No draft_probs to check: n comes from the tokens, the target must fit it.
        assert!(verify_draft(None, &[0, 1], None, &[0.5; 6], 1, 2, Rows::All(Rng::new(0))).is_ok());
        let r = verify_draft(None, &[0, 1], None, &[0.5; 5], 1, 2, Rows::All(Rng::new(0)));
        assert!(matches!(
            r,
            Err(Error::BadLength {
                name: "target_probs",
                ..
            })
        ));
    }

    #[test]
    fn greedy_verification_on_logits_keeps_the_argmax_chain() {
        // τ = 0 and one-hot drafts: a draft is kept iff it is its row's argmax, and the first
        // that is not is replaced by the argmax. Target argmaxes 2, 4, 1, (3); drafts 2, 4, 3.
        let nan = f32::NAN;
        let z: [f32; 20] = [
            0.0,
            1.0,
            5.0,
            2.0,
            -1.0, // row 0: argmax 2
            0.0,
            1.0,
            2.0,
            3.0,
            4.0, // row 1: argmax 4
            0.0,
            9.0,
            nan,
            2.0,
            1.0, // row 2: argmax 1 (the NaN counts as −∞, and is flagged)
            0.0,
            0.0,
            0.0,
            f32::INFINITY,
            0.0, // row 3: not read (e = 2), not flagged
        ];
        let logits = Logits::new(&z, 4, 5).unwrap();
        for seed in 0..20 {
            let v = verify_draft_logits(
                None,
                &[2, 4, 3],
                None,
                &logits,
                Rows::All(0.0),
                1,
                Rows::All(Rng::new(seed)),
            )
            .unwrap()
            .remove(0);
            assert_eq!(v.tokens, [2, 4, 1, status::NO_TOKEN]);
            assert_eq!(v.accepted, 2);
            assert_eq!(v.status, status::NAN_LOGIT);
        }
        // All three kept: the bonus token is row 3's argmax, and row 3's +∞ is flagged.
        let v = verify_draft_logits(
            None,
            &[2, 4, 1],
            None,
            &logits,
            Rows::Each(&[0.0]),
            1,
            Rows::All(Rng::new(3)),
        )
        .unwrap()
        .remove(0);
        assert_eq!(v.tokens, [2, 4, 1, 3]);
        assert_eq!(v.status, status::NAN_LOGIT | status::POS_INF_LOGIT);
    }

    #[test]
    fn logits_verification_checks_rows_and_temperatures() {
        let z = [0.0f32; 12];
        let logits = Logits::new(&z, 4, 3).unwrap();
        let run = |xs: &[u32], batch, t: Rows<'_, f32>| {
            verify_draft_logits(None, xs, None, &logits, t, batch, Rows::All(Rng::new(1)))
        };
        assert!(run(&[0, 1, 2], 1, Rows::All(1.0)).is_ok());
        assert!(run(&[0, 1], 2, Rows::Each(&[1.0, 0.5])).is_ok());
        assert!(matches!(
            run(&[0, 1], 1, Rows::All(1.0)),
            Err(Error::BadLength {
                name: "target_logits rows",
                got: 4,
                expected: 3
            })
        ));
        assert!(matches!(
            run(&[0, 1], 2, Rows::Each(&[1.0])),
            Err(Error::BadLength {
                name: "temperature",
                ..
            })
        ));
        assert!(matches!(
            run(&[0, 1, 2], 1, Rows::All(-1.0)),
            Err(Error::BadParam {
                name: "temperature",
                ..
            })
        ));
        assert!(matches!(
            run(&[], 0, Rows::All(1.0)),
            Err(Error::EmptyBatch)
        ));
    }
}
