//! The ops that take probabilities, not logits: `sample_from_probs`, `sample_from_probs_n` and
//! `verify_draft` (speculative decoding's verification step). BENCH.md's grid has none of them;
//! they are timed on a grid of their own: f32 probabilities, normal1, the grid's vocabs and
//! batches, batch-wide seeds, warm L2. scripts/peers.py builds the same inputs the same way.
//!
//! Inputs, per vocab V: the source rows P = softmax(normal1 logits) of the first M = max batch
//! rows. `sample_from_probs` and `sample_from_probs_n` (n = 4 draws) read the first b rows.
//! `verify_draft` with draft length n gives draft position i ≤ n of row r the source row
//! s(r, i) = (r·(n + 1) + i) mod M: the target's p_i is P[s(r, i)], and the draft
//!
//! - `accept=all`: q_i = P[s(r, i)] too, the draft token its most likely one. q = p accepts
//!   every draft, so the kernel draws from p_n: it reads one row of V floats per row.
//! - `accept=none`: q_i one-hot at P[s(r, i)]'s least likely token, the draft token that one.
//!   The target gives it ~1e-7 (or 0), so draft 0 is rejected and the kernel draws from
//!   max(p_0 − q_0, 0): it reads two rows of V floats per row.
//! - `accept=none,draft=tokens`: the same drafts as one-hot drafts, given by their tokens alone
//!   (no draft distributions, as n-gram and greedy drafters have them): the kernel draws from
//!   p_0 without x_0 and reads one row of V floats per row.
//! - `target=logits` (with either of the above): the target's rows are given as the normal1
//!   logits L that P is the softmax of (L[s(r, i)], τ = 1), and `verify_draft_logits` fuses
//!   the softmax into the verification: it reads the n + 1 logits rows once (and the row it
//!   draws from once more), where `softmax` + `verify_draft` would write and read back the
//!   n + 1 probability rows as well. The peers run their softmax and then their verification.
//!
//! The bench reads `accepted` back after timing and reports an error when a point's rows did
//! not take the path its bytes assume.
//!
//! Bytes per point: the rows read plus the outputs and draft ids (the 2 probabilities per
//! tested draft, and `target=logits`' second read of the drawn row, are not counted):
//!
//! | op                    | bytes                                                   |
//! |-----------------------|---------------------------------------------------------|
//! | sample_from_probs     | b·V·4 + b·4                                             |
//! | sample_from_probs_n   | b·V·4 + b·n·4                                           |
//! | verify_draft          | rows·b·V·4 + b·n·4 + b·(n + 1)·4 + b·4 (rows: 2 for `accept=none` with draft distributions, else 1; n + 1 more for `target=logits`, whose logits replace the probabilities) |

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};
use samplex::gpu::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use samplex::{DraftLayout, Error, Result};

/// (op, params) of every point set, in the order the bench and scripts/peers.py run them.
/// `n` is the draws per row (`sample_from_probs_n`) or the draft length (`verify_draft`);
/// `accept=all` makes every draft exact (accepted: the draw reads p_n), `accept=none` makes
/// every first draft a token the target all but rules out (rejected: the draw reads p_0 and q_0,
/// or p_0 alone with `draft=tokens`, one-hot drafts without distributions).
pub const OPS: &[(&str, &str)] = &[
    ("sample_from_probs", ""),
    ("sample_from_probs_n", "n=4"),
    ("verify_draft", "n=4,accept=all"),
    ("verify_draft", "n=4,accept=none"),
    ("verify_draft", "n=8,accept=all"),
    ("verify_draft", "n=8,accept=none"),
    ("verify_draft", "n=4,accept=none,draft=tokens"),
    ("verify_draft", "n=4,accept=all,target=logits"),
    ("verify_draft", "n=4,accept=none,draft=tokens,target=logits"),
];

/// What one entry of [`OPS`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sample,
    SampleN(usize),
    Verify {
        n: usize,
        accept_all: bool,
        /// One-hot drafts, given by their tokens alone (`draft=tokens`).
        one_hot: bool,
        /// The target given as logits (`target=logits`: `verify_draft_logits`).
        logits: bool,
    },
}

/// One entry of [`OPS`], parsed.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub op: &'static str,
    pub params: &'static str,
    pub kind: Kind,
}

impl Spec {
    /// Criterion's group: the op and its params (`verify_draft_n4_accept_all`).
    pub fn label(&self) -> String {
        let mut l = self.op.to_string();
        for p in self.params.split(',').filter(|p| !p.is_empty()) {
            l.push('_');
            match p.split_once('=') {
                Some(("n", v)) => l.push_str(&format!("n{v}")),
                _ => l.push_str(&p.replace('=', "_")),
            }
        }
        l
    }
}

/// The entries of [`OPS`] whose op is in `names` (all of them for `None`).
pub fn specs(names: Option<&[String]>) -> Vec<Spec> {
    OPS.iter()
        .filter(|(op, _)| names.is_none_or(|ns| ns.iter().any(|n| n == op)))
        .map(|&(op, params)| Spec {
            op,
            params,
            kind: parse(op, params).expect("benches/probs OPS entries parse (self_check)"),
        })
        .collect()
}

/// The kind an (op, params) entry names, or why it names none.
pub fn parse(op: &str, params: &str) -> std::result::Result<Kind, String> {
    let mut n = None;
    let mut accept = None;
    let mut one_hot = false;
    let mut logits = false;
    for p in params.split(',').filter(|p| !p.is_empty()) {
        match p.split_once('=') {
            Some(("n", v)) => n = Some(v.parse::<usize>().map_err(|e| format!("{p}: {e}"))?),
            Some(("accept", "all")) => accept = Some(true),
            Some(("accept", "none")) => accept = Some(false),
            Some(("draft", "tokens")) if op == "verify_draft" => one_hot = true,
            Some(("target", "logits")) if op == "verify_draft" => logits = true,
            _ => return Err(format!("{op}: unknown param {p:?}")),
        }
    }
    match (op, n, accept) {
        ("sample_from_probs", None, None) => Ok(Kind::Sample),
        ("sample_from_probs_n", Some(n), None) if n > 0 => Ok(Kind::SampleN(n)),
        // One-hot drafts are accepted with chance p(x): no source row makes that certain.
        ("verify_draft", Some(n), Some(accept_all)) if n > 0 && !(accept_all && one_hot) => {
            Ok(Kind::Verify {
                n,
                accept_all,
                one_hot,
                logits,
            })
        }
        _ => Err(format!(
            "{op} with params {params:?} is not a probability op"
        )),
    }
}

impl Kind {
    /// Bytes the op must move (the table above).
    pub fn bytes(self, batch: usize, vocab: usize) -> usize {
        let row = batch * vocab * 4;
        match self {
            Kind::Sample => row + batch * 4,
            Kind::SampleN(n) => row + batch * n * 4,
            Kind::Verify {
                n,
                accept_all,
                one_hot,
                logits,
            } => {
                // The draw's row (target=logits: every target row, read once), and q_0.
                let target = if logits { n + 1 } else { 1 };
                let rows = if accept_all || one_hot {
                    target
                } else {
                    target + 1
                };
                rows * row + batch * n * 4 + batch * (n + 1) * 4 + batch * 4
            }
        }
    }

    /// The tokens it writes per row.
    fn tokens_per_row(self) -> usize {
        match self {
            Kind::Sample => 1,
            Kind::SampleN(n) => n,
            Kind::Verify { n, .. } => n + 1,
        }
    }
}

/// The source rows P of one vocab and the logits L they are the softmax of, on the device, with
/// each row's most and least likely token.
pub struct Source {
    pub probs: CudaSlice<f32>,
    logits: CudaSlice<f32>,
    pub rows: usize,
    pub vocab: usize,
    argmax: Vec<u32>,
    argmin: Vec<u32>,
}

impl Source {
    /// P = softmax of the first `rows` rows of `logits` (`host` holds the same values: softmax
    /// keeps their order, so their arg-max and arg-min are P's).
    pub fn new(
        sampler: &mut Sampler,
        logits: &CudaSlice<f32>,
        host: &[f32],
        rows: usize,
        vocab: usize,
    ) -> Result<Self> {
        let stream = sampler.stream().clone();
        let mut probs = stream.alloc_zeros::<f32>(rows * vocab)?;
        let logits = stream.clone_dtod(&logits.slice(0..rows * vocab))?;
        let x = DeviceLogits::new(logits.slice(..), rows, vocab)?;
        sampler.softmax(
            &x,
            1.0,
            &RowParams::default(),
            &mut probs.slice_mut(..),
            None,
            None,
        )?;
        let arg = |better: fn(f32, f32) -> bool| -> Vec<u32> {
            host.chunks(vocab)
                .take(rows)
                .map(|row| {
                    let mut best = 0;
                    for (i, &v) in row.iter().enumerate() {
                        if better(v, row[best]) {
                            best = i;
                        }
                    }
                    best as u32
                })
                .collect()
        };
        let argmax = arg(|a, b| a > b);
        let argmin = arg(|a, b| a < b);
        Ok(Source {
            probs,
            logits,
            rows,
            vocab,
            argmax,
            argmin,
        })
    }

    /// Draft position (r, i)'s source row, for draft length n.
    fn source_row(&self, n: usize, r: usize, i: usize) -> usize {
        (r * (n + 1) + i) % self.rows
    }

    /// Copies source row `s` (of P, or of L with `logits`) into row `at` of `dst`.
    fn copy_row(
        &self,
        stream: &Arc<CudaStream>,
        (s, logits): (usize, bool),
        dst: &mut CudaSlice<f32>,
        at: usize,
    ) -> Result<()> {
        let v = self.vocab;
        let rows = if logits { &self.logits } else { &self.probs };
        stream.memcpy_dtod(
            &rows.slice(s * v..(s + 1) * v),
            &mut dst.slice_mut(at * v..(at + 1) * v),
        )?;
        Ok(())
    }
}

/// `verify_draft`'s inputs for the largest batch (a prefix of `batch` rows is the input of
/// that batch).
pub struct Verify {
    /// Always a `Kind::Verify` (the constructor's).
    kind: Kind,
    /// The target's rows: probabilities, or logits for `target=logits`.
    target: CudaSlice<f32>,
    /// None for one-hot drafts (`draft=tokens`).
    draft: Option<CudaSlice<f32>>,
    draft_tokens: CudaSlice<u32>,
}

impl Verify {
    /// The inputs of a `Verify` kind; None for the other kinds.
    pub fn new(stream: &Arc<CudaStream>, src: &Source, kind: Kind) -> Result<Option<Self>> {
        let Kind::Verify {
            n,
            accept_all,
            one_hot,
            logits,
        } = kind
        else {
            return Ok(None);
        };
        let (m, v) = (src.rows, src.vocab);
        let mut target = stream.alloc_zeros::<f32>(m * (n + 1) * v)?;
        let mut draft = match one_hot {
            true => None,
            false => Some(stream.alloc_zeros::<f32>(m * n * v)?),
        };
        let mut tokens = Vec::with_capacity(m * n);
        for r in 0..m {
            for i in 0..=n {
                src.copy_row(
                    stream,
                    (src.source_row(n, r, i), logits),
                    &mut target,
                    r * (n + 1) + i,
                )?;
            }
            for i in 0..n {
                let s = src.source_row(n, r, i);
                let x = if accept_all {
                    src.argmax[s]
                } else {
                    src.argmin[s]
                };
                match &mut draft {
                    Some(q) if accept_all => src.copy_row(stream, (s, false), q, r * n + i)?,
                    Some(q) => {
                        let at = (r * n + i) * v + x as usize;
                        stream.memcpy_htod(&[1.0f32], &mut q.slice_mut(at..at + 1))?;
                    }
                    None => {}
                }
                tokens.push(x);
            }
        }
        let draft_tokens = stream.clone_htod(&tokens)?;
        Ok(Some(Verify {
            kind,
            target,
            draft,
            draft_tokens,
        }))
    }

    /// Whether `accepted` (one count per row) is what the inputs were built to give: n for every
    /// row (accept=all), 0 for all but a rare row (accept=none: each first draft has a chance of
    /// ~1e-7); else a message saying what came out. With `target=logits` and accept=all, q is
    /// `softmax`'s output and p the fused kernel's, computed in another order: where p falls an
    /// ulp below q, the draft is rejected with a chance of ~1e-7, so one row in a thousand (and
    /// one more) may be off there without the inputs being wrong.
    pub fn check_accepted(&self, accepted: &[u32]) -> std::result::Result<(), String> {
        check_accepted(self.kind, accepted)
    }
}

/// [`Verify::check_accepted`] for a `Kind::Verify`.
fn check_accepted(kind: Kind, accepted: &[u32]) -> std::result::Result<(), String> {
    let Kind::Verify {
        n,
        accept_all,
        logits,
        ..
    } = kind
    else {
        unreachable!("Verify::new builds only Verify kinds")
    };
    let want = if accept_all { n as u32 } else { 0 };
    let off = accepted.iter().filter(|&&e| e != want).count();
    let tolerated = match (accept_all, logits) {
        (true, false) => 0,
        (true, true) => accepted.len() / 1000 + 1,
        (false, _) => accepted.len() / 100,
    };
    if off > tolerated {
        let mean = accepted.iter().map(|&e| e as f64).sum::<f64>() / accepted.len() as f64;
        return Err(format!(
            "{off} of {} rows accepted other than {want} drafts (mean {mean:.3}): \
             the inputs do not take the path the bytes assume",
            accepted.len()
        ));
    }
    Ok(())
}

/// Output buffers for the largest batch.
pub struct Outputs {
    pub tokens: CudaSlice<u32>,
    pub accepted: CudaSlice<u32>,
}

impl Outputs {
    pub fn new(stream: &Arc<CudaStream>, batch: usize, max_tokens_per_row: usize) -> Result<Self> {
        Ok(Outputs {
            tokens: stream.alloc_zeros(batch * max_tokens_per_row)?,
            accepted: stream.alloc_zeros(batch)?,
        })
    }

    /// The most tokens per row any of `specs` writes.
    pub fn tokens_per_row(specs: &[Spec]) -> usize {
        specs
            .iter()
            .map(|s| s.kind.tokens_per_row())
            .max()
            .unwrap_or(1)
    }
}

/// Queues one run of `kind` at `batch` rows on the sampler's stream. `verify` holds the inputs
/// of a `Verify` kind (built for its n and accept).
pub fn launch(
    s: &mut Sampler,
    kind: Kind,
    src: &Source,
    verify: Option<&Verify>,
    batch: usize,
    seeds: &DeviceSeeds<'_>,
    out: &mut Outputs,
) -> Result<()> {
    let v = src.vocab;
    let probs = src.probs.slice(0..batch * v);
    let tokens = &mut out.tokens.slice_mut(0..batch * kind.tokens_per_row());
    match kind {
        Kind::Sample => s.sample_from_probs(&probs, batch, v, seeds, tokens, None),
        Kind::SampleN(_) => s.sample_from_probs_n(&probs, batch, v, seeds, tokens, None),
        Kind::Verify { n, logits, .. } => {
            let d = verify.filter(|d| d.kind == kind).ok_or_else(|| {
                Error::Unsupported(format!("verify_draft n={n}: inputs not built"))
            })?;
            let draft = d.draft.as_ref().map(|q| q.slice(0..batch * n * v));
            let draft_tokens = d.draft_tokens.slice(0..batch * n);
            let target = d.target.slice(0..batch * (n + 1) * v);
            let accepted = &mut out.accepted.slice_mut(0..batch);
            if logits {
                let target = DeviceLogits::new(target, batch * (n + 1), v)?;
                let rows = RowParams::default();
                s.verify_draft_logits(
                    draft.as_ref(),
                    &draft_tokens,
                    DraftLayout::Padded,
                    &target,
                    1.0,
                    &rows,
                    batch,
                    seeds,
                    tokens,
                    accepted,
                    None,
                )
            } else {
                s.verify_draft(
                    draft.as_ref(),
                    &draft_tokens,
                    DraftLayout::Padded,
                    &target,
                    batch,
                    v,
                    seeds,
                    tokens,
                    accepted,
                    None,
                )
            }
        }
    }
}

/// Every entry of [`OPS`] parses (run by the bench's self-check).
pub fn self_check() {
    for &(op, params) in OPS {
        if let Err(e) = parse(op, params) {
            panic!("benches/probs OPS: {e}");
        }
    }
    assert_eq!(
        parse("verify_draft", "n=8,accept=none"),
        Ok(Kind::Verify {
            n: 8,
            accept_all: false,
            one_hot: false,
            logits: false
        })
    );
    let one_hot = parse("verify_draft", "n=4,accept=none,draft=tokens");
    assert_eq!(
        one_hot.map(|k| k.bytes(2, 10)),
        Ok(2 * 10 * 4 + 2 * 4 * 4 + 2 * 5 * 4 + 2 * 4)
    );
    assert!(parse("verify_draft", "n=4,accept=all,draft=tokens").is_err());
    assert!(parse("sample_from_probs", "draft=tokens").is_err());
    assert_eq!(
        Kind::Verify {
            n: 4,
            accept_all: false,
            one_hot: false,
            logits: false
        }
        .bytes(2, 10),
        2 * 2 * 10 * 4 + 2 * 4 * 4 + 2 * 5 * 4 + 2 * 4
    );
    // target=logits: the n + 1 logits rows (and q_0 when given) replace the draw's row.
    let logits = parse("verify_draft", "n=4,accept=none,draft=tokens,target=logits");
    assert_eq!(
        logits.map(|k| k.bytes(2, 10)),
        Ok(5 * 2 * 10 * 4 + 2 * 4 * 4 + 2 * 5 * 4 + 2 * 4)
    );
    assert_eq!(
        parse("verify_draft", "n=4,accept=none,target=logits").map(|k| k.bytes(2, 10)),
        Ok(6 * 2 * 10 * 4 + 2 * 4 * 4 + 2 * 5 * 4 + 2 * 4)
    );
    assert!(parse("sample_from_probs", "target=logits").is_err());
    assert!(parse("verify_draft", "n=4").is_err());
    assert!(parse("sample", "").is_err());
    // The path check: accept=all exact on probabilities, one row in 1000 (+ 1) off on logits.
    let kind = |params| parse("verify_draft", params).expect("parses");
    let mut rows = vec![4u32; 512];
    assert!(check_accepted(kind("n=4,accept=all"), &rows).is_ok());
    rows[7] = 2;
    assert!(check_accepted(kind("n=4,accept=all"), &rows).is_err());
    assert!(check_accepted(kind("n=4,accept=all,target=logits"), &rows).is_ok());
    rows[9] = 0;
    assert!(check_accepted(kind("n=4,accept=all,target=logits"), &rows).is_err());
    assert!(check_accepted(kind("n=4,accept=none"), &[0, 0, 1]).is_err());
    assert!(check_accepted(kind("n=4,accept=none"), &vec![0; 100]).is_ok());
}
