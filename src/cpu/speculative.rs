//! Speculative decoding's verification step (Leviathan et al., ICML 2023; Chen et al., 2023):
//! a draft model proposed n tokens, the target model scored them; keep the longest prefix the
//! target accepts and draw one more token, so that every emitted token is distributed exactly
//! as the target model's own draw would be.
//!
//! Row r has n draft tokens x_0 .. x_{n−1}, the draft's distributions q_0 .. q_{n−1} (it drew x_i
//! from q_i) and the target's p_0 .. p_n (p_n is the distribution after the whole draft).
//! Drafts proposed without a distribution (n-gram or prompt lookup, a greedy draft model) are
//! one-hot: q_i = δ(x_i), given by their tokens alone, so draft i is accepted with chance
//! p_i(x_i) and a rejected token is replaced from p_e without x_e. The verdicts are padded to
//! the longest draft n; the drafts and target rows come as a [`DraftLayout`] says: padded
//! alike, each row's draft all its n slots or, with per-row lengths, its first n_r (the slots
//! past it are not read); or packed, row r's n_r drafts and n_r + 1 target rows one after
//! another as a flattened batch holds them. A length above the padded n is taken as n
//! ([`status::PARAM_CLAMPED`]); n below stands for n_r. With the row's (seed, offset) = (s, o):
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
use crate::batch::{stream_of, DraftLayout, Logits, Rows};
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

/// Verifies `batch` requests' drafts: `draft_probs` holds the draft's distributions (`None`:
/// one-hot drafts, q_i = δ(x_i)), `draft_tokens` its tokens and `target_probs` the target's
/// distributions, all dense and row-major, laid out as `layout` says: padded, batch × n,
/// batch × n × vocab and batch × (n + 1) × vocab (n ≥ 0 from `draft_tokens.len() / batch`),
/// each request's draft all its n slots or, with [`DraftLayout::Lengths`], its first n_r;
/// or packed ([`DraftLayout::Packed`]: T draft tokens, T × vocab, (T + batch) × vocab, and n its
/// `max_drafts`). See the module's text for the method.
///
/// # Errors
/// [`Error::EmptyBatch`], [`Error::BadVocab`], [`Error::BadLength`] when a buffer does not fit
/// the shape or the layout's buffer or `seeds` has the wrong length.
pub fn verify_draft(
    draft_probs: Option<&[f32]>,
    draft_tokens: &[u32],
    layout: DraftLayout<&[u32]>,
    target_probs: &[f32],
    batch: usize,
    vocab: usize,
    seeds: Rows<'_, Rng>,
) -> Result<Vec<Verdict>> {
    let n = check_draft(
        draft_probs.map(<[f32]>::len),
        draft_tokens.len(),
        &layout,
        Target::Probs(target_probs.len()),
        batch,
        vocab,
    )?;
    seeds.check_len("seeds", batch)?;
    Ok((0..batch)
        .map(|r| {
            let sp = span(&layout, r, n, draft_tokens.len());
            let target = |i| dist_row(target_probs, (sp.target + i) * vocab, vocab);
            verify_request(draft_probs, draft_tokens, sp, (n, vocab), target, &seeds, r)
        })
        .collect())
}

fn dist_row(probs: &[f32], at: usize, vocab: usize) -> &[f32] {
    &probs[at..at + vocab]
}

/// Where request r's draft lies: its first draft entry (token, and row of the distributions),
/// its first target row, its length n_r, and PARAM_CLAMPED when its layout's values were out of
/// range.
#[derive(Clone, Copy, Debug)]
struct Span {
    draft: usize,
    target: usize,
    len: usize,
    status: u32,
}

/// Request r's span in `layout` (n: the padded length; `total`: the draft tokens), the rule of
/// kernels/softmax.cu's `draft_span`: packed offsets are clamped into 0 ..= total (the end to
/// no less than the start), and a length above n is taken as n.
fn span(layout: &DraftLayout<&[u32]>, r: usize, n: usize, total: usize) -> Span {
    let (draft, len, mut status) = match layout {
        DraftLayout::Packed { starts, .. } => {
            let (a, b) = (starts[r] as usize, starts[r + 1] as usize);
            let start = a.min(total);
            let end = b.clamp(start, total);
            let moved = (start, end) != (a, b);
            (
                start,
                end - start,
                if moved { status::PARAM_CLAMPED } else { 0 },
            )
        }
        DraftLayout::Lengths(lens) => (r * n, lens[r] as usize, 0),
        DraftLayout::Padded => (r * n, n, 0),
    };
    let target = match layout {
        DraftLayout::Packed { .. } => draft + r,
        _ => r * (n + 1),
    };
    if len > n {
        status |= status::PARAM_CLAMPED;
    }
    Span {
        draft,
        target,
        len: len.min(n),
        status,
    }
}

/// Request r's verdict over its span: `target(i)` is its target row i (0 ..= n_r), `n` the
/// padded length.
fn verify_request<'a>(
    draft_probs: Option<&'a [f32]>,
    draft_tokens: &[u32],
    sp: Span,
    (n, vocab): (usize, usize),
    target: impl Fn(usize) -> &'a [f32],
    seeds: &Rows<'_, Rng>,
    r: usize,
) -> Verdict {
    let draft = |i| draft_probs.map(|q| dist_row(q, (sp.draft + i) * vocab, vocab));
    let xs = &draft_tokens[sp.draft..sp.draft + sp.len];
    let mut v = verify_row(xs, n, draft, target, seeds.get(r), stream_of(seeds, r));
    v.status |= sp.status;
    v
}

/// How the target model's distributions come, for the shape checks: dense probabilities (their
/// length in elements) or logits (their rows; a row's layout is the logits' own).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    Probs(usize),
    LogitRows(usize),
}

/// The padded draft length n from the buffers' lengths (`draft_probs` none for one-hot drafts)
/// and the layout (a packed one says n; its draft is `draft_tokens` entries), or the error
/// naming the buffer that does not fit `batch` requests of `vocab`. The layout's own buffer is
/// the caller's to check ([`DraftLayout`]'s `buffer`).
pub(crate) fn check_draft_shape<B>(
    draft_probs: Option<usize>,
    draft_tokens: usize,
    layout: &DraftLayout<B>,
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
    // n and the draft's entries: batch × n padded, any number packed.
    let (n, entries) = match layout.packed_max() {
        Some(max) => (max, draft_tokens),
        None => {
            let n = draft_tokens / batch;
            fits("draft_tokens", draft_tokens, batch * n)?;
            (n, batch * n)
        }
    };
    if let Some(len) = draft_probs {
        fits("draft_probs", len, entries.saturating_mul(vocab))?;
    }
    let target_rows = entries + batch;
    match target {
        Target::Probs(len) => fits("target_probs", len, target_rows.saturating_mul(vocab)),
        Target::LogitRows(rows) => fits("target_logits rows", rows, target_rows),
    }?;
    Ok(n)
}

/// [`check_draft_shape`] and the layout's buffer, on the host.
fn check_draft(
    draft_probs: Option<usize>,
    draft_tokens: usize,
    layout: &DraftLayout<&[u32]>,
    target: Target,
    batch: usize,
    vocab: usize,
) -> Result<usize> {
    let n = check_draft_shape(draft_probs, draft_tokens, layout, target, batch, vocab)?;
    if let Some((values, name, len)) = layout.buffer(batch) {
        Rows::Each(values).check_len(name, len)?;
    }
    Ok(n)
}

/// [`verify_draft`] on the target model's logits: `target_logits` holds the target rows the
/// layout says (padded: batch × (n + 1), row r's n + 1 rows in order; packed: T + batch), and
/// request r's p_i is softmax(z_i / τ_r) as [`super::softmax()`] computes it (one-hot at the
/// argmax for τ_r = 0), rounded to f32, with τ_r = `temperature.get(r)` (batch-wide or `batch`
/// values). The verdicts are [`verify_draft`]'s on those probabilities, and each request's
/// status also has the softmax status bits (NaN or +∞ logits, no finite logit) of the target
/// rows its verdict read: 0 ..= e.
///
/// # Errors
/// As [`verify_draft`] (`target_logits rows` for a row count the layout does not have);
/// [`Error::BadParam`] for a τ < 0, NaN or ∞; [`Error::BadLength`] for a per-row τ that is not
/// `batch` long.
pub fn verify_draft_logits<T: Logit>(
    draft_probs: Option<&[f32]>,
    draft_tokens: &[u32],
    layout: DraftLayout<&[u32]>,
    target_logits: &Logits<'_, T>,
    temperature: Rows<'_, f32>,
    batch: usize,
    seeds: Rows<'_, Rng>,
) -> Result<Vec<Verdict>> {
    let vocab = target_logits.vocab();
    let n = check_draft(
        draft_probs.map(<[f32]>::len),
        draft_tokens.len(),
        &layout,
        Target::LogitRows(target_logits.batch()),
        batch,
        vocab,
    )?;
    temperature.check_len("temperature", batch)?;
    seeds.check_len("seeds", batch)?;
    (0..batch)
        .map(|r| {
            let tau = temperature.get(r);
            crate::decoder::check_temperature(tau)?;
            let sp = span(&layout, r, n, draft_tokens.len());
            // The request's target rows 0 ..= n_r, and each one's softmax status.
            let mut probs = Vec::with_capacity((sp.len + 1) * vocab);
            let mut row_status = Vec::with_capacity(sp.len + 1);
            for i in 0..=sp.len {
                let (z, mut st) = super::widen_row(target_logits.row(sp.target + i));
                if z.iter().all(|&v| v == f64::NEG_INFINITY) {
                    st |= status::NO_FINITE_LOGIT;
                }
                let p = super::softmax_row(&z, f64::from(tau));
                probs.extend(p.iter().map(|&p| p as f32));
                row_status.push(st);
            }
            let target = |i| dist_row(&probs, i * vocab, vocab);
            let mut v =
                verify_request(draft_probs, draft_tokens, sp, (n, vocab), target, &seeds, r);
            let read = &row_status[..=v.accepted as usize];
            v.status |= read.iter().fold(0, |a, &b| a | b);
            Ok(v)
        })
        .collect()
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
        verify_draft(
            Some(draft),
            xs,
            DraftLayout::Padded,
            target,
            1,
            vocab,
            Rows::All(rng),
        )
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
            DraftLayout::Padded,
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
            DraftLayout::Padded,
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
            DraftLayout::Padded,
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
            DraftLayout::Padded,
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
            DraftLayout::Lengths(&[1, 1]),
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
                let padded = verify_draft(
                    Some(&q),
                    &xs,
                    DraftLayout::Lengths(&[len as u32]),
                    &p,
                    1,
                    vocab,
                    rng.into(),
                )
                .unwrap()
                .remove(0);
                let alone = verify_draft(
                    Some(&q[..len * vocab]),
                    &xs[..len],
                    DraftLayout::Padded,
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
            let over = verify_draft(
                Some(&q),
                &xs,
                DraftLayout::Lengths(&[7]),
                &p,
                1,
                vocab,
                rng.into(),
            )
            .unwrap();
            let full =
                verify_draft(Some(&q), &xs, DraftLayout::Padded, &p, 1, vocab, rng.into()).unwrap();
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
                let tokens = verify_draft(None, &xs, lens.into(), &p, 1, vocab, rng).unwrap();
                let rows = verify_draft(Some(&q), &xs, lens.into(), &p, 1, vocab, rng).unwrap();
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
            let v = verify_draft(
                None,
                &[0],
                DraftLayout::Padded,
                &p,
                1,
                3,
                Rows::All(Rng::new(seed)),
            )
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
        assert!(verify_draft(
            None,
            &[0, 1],
            DraftLayout::Padded,
            &[0.5; 6],
            1,
            2,
            Rows::All(Rng::new(0))
        )
        .is_ok());
        let r = verify_draft(
            None,
            &[0, 1],
            DraftLayout::Padded,
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
                DraftLayout::Padded,
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
            DraftLayout::Padded,
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
            verify_draft_logits(
                None,
                xs,
                DraftLayout::Padded,
                &logits,
                t,
                batch,
                Rows::All(Rng::new(1)),
            )
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

    /// Three requests padded to n = 3 over a 5-token vocab, with lengths 2, 0 and 3; and the
    /// same packed (their own drafts and target rows one after another), with its starts.
    #[allow(clippy::type_complexity)]
    fn padded_and_packed() -> (
        (Vec<f32>, Vec<u32>, Vec<f32>),
        (Vec<f32>, Vec<u32>, Vec<f32>),
    ) {
        let (n, vocab, lens) = (3, 5, [2usize, 0, 3]);
        let dist = |k: usize| -> Vec<f32> {
            let w: Vec<f32> = (0..vocab)
                .map(|i| ((i * 7 + k * 3) % 11 + 1) as f32)
                .collect();
            let sum: f32 = w.iter().sum();
            w.iter().map(|x| x / sum).collect()
        };
        let q: Vec<f32> = (0..3 * n).flat_map(dist).collect();
        let p: Vec<f32> = (0..3 * (n + 1)).flat_map(|k| dist(k + 50)).collect();
        let xs: Vec<u32> = (0..3 * n).map(|k| (k * 2 % vocab) as u32).collect();
        let (mut pq, mut px, mut pp) = (vec![], vec![], vec![]);
        for (r, &len) in lens.iter().enumerate() {
            pq.extend_from_slice(&q[r * n * vocab..][..len * vocab]);
            px.extend_from_slice(&xs[r * n..][..len]);
            pp.extend_from_slice(&p[r * (n + 1) * vocab..][..(len + 1) * vocab]);
        }
        ((q, xs, p), (pq, px, pp))
    }

    #[test]
    fn a_packed_draft_is_verified_as_its_padded_twin_with_lengths() {
        let ((q, xs, p), (pq, px, pp)) = padded_and_packed();
        let (lens, starts) = ([2u32, 0, 3], [0u32, 2, 2, 5]);
        let packed = DraftLayout::Packed {
            starts: starts.as_slice(),
            max_drafts: 3,
        };
        for seed in 0..100 {
            let rng = Rows::All(Rng::new(seed).at(seed * 3));
            let want = verify_draft(Some(&q), &xs, DraftLayout::Lengths(&lens), &p, 3, 5, rng);
            let got = verify_draft(Some(&pq), &px, packed, &pp, 3, 5, rng);
            assert_eq!(got.unwrap(), want.unwrap(), "seed {seed}");
            let got = verify_draft(None, &px, packed, &pp, 3, 5, rng).unwrap();
            let want = verify_draft(None, &xs, DraftLayout::Lengths(&lens), &p, 3, 5, rng);
            assert_eq!(got, want.unwrap(), "seed {seed}, one-hot");
            // On logits, ln p: the same rows at τ = 1.
            let (zp, zpp): (Vec<f32>, Vec<f32>) = (
                p.iter().map(|v| v.ln()).collect(),
                pp.iter().map(|v| v.ln()).collect(),
            );
            let (lp, lpp) = (
                Logits::new(&zp, 12, 5).unwrap(),
                Logits::new(&zpp, 8, 5).unwrap(),
            );
            let t = Rows::Each(&[1.0, 0.0, 0.7]);
            let want =
                verify_draft_logits(Some(&q), &xs, DraftLayout::Lengths(&lens), &lp, t, 3, rng);
            let got = verify_draft_logits(Some(&pq), &px, packed, &lpp, t, 3, rng);
            assert_eq!(got.unwrap(), want.unwrap(), "seed {seed}, logits");
        }
    }

    #[test]
    fn packed_offsets_are_clamped_into_the_draft() {
        fn packed(starts: &[u32]) -> DraftLayout<&[u32]> {
            DraftLayout::Packed {
                starts,
                max_drafts: 2,
            }
        }
        let span_of = |starts: &[u32], r| {
            let s = span(&packed(starts), r, 2, 6);
            (s.draft, s.target, s.len, s.status)
        };
        let c = status::PARAM_CLAMPED;
        // In range: r's drafts starts[r] .., its target rows from starts[r] + r.
        assert_eq!(span_of(&[0, 2, 2, 3], 1), (2, 3, 0, 0));
        assert_eq!(span_of(&[0, 2, 2, 3], 2), (2, 4, 1, 0));
        // Longer than max_drafts: its first max_drafts.
        assert_eq!(span_of(&[0, 3], 0), (0, 0, 2, c));
        // Out of order: empty at its start. Past the draft: clamped to its end.
        assert_eq!(span_of(&[4, 1], 0), (4, 4, 0, c));
        assert_eq!(span_of(&[0, 5, 9], 1), (5, 6, 1, c));
        assert_eq!(span_of(&[0, 7, 9], 1), (6, 7, 0, c));
        // The host checks the starts' length; the verdicts flag the clamp.
        let p = [0.2f32; 5 * 4];
        let r = verify_draft(
            None,
            &[1, 2],
            packed(&[0, 2]),
            &p,
            2,
            5,
            Rows::All(Rng::new(0)),
        );
        assert!(matches!(
            r,
            Err(Error::BadLength {
                name: "draft starts",
                got: 2,
                expected: 3
            })
        ));
        let v = verify_draft(
            None,
            &[1, 2],
            packed(&[0, 2, 1]),
            &p,
            2,
            5,
            Rows::All(Rng::new(0)),
        );
        let v = v.unwrap();
        assert_eq!((v[0].status & c, v[1].status & c), (0, c));
        assert_eq!((v[1].accepted, v[1].tokens[1]), (0, status::NO_TOKEN));
    }
}
