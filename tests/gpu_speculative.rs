//! Speculative decoding's verification on the GPU (`Sampler::verify_draft`, kernels/softmax.cu
//! `verify_draft`) against the CPU reference (`cpu::verify_draft`), and the property that makes
//! it worth having: the emitted tokens are distributed as the target model's own draws. Every
//! test skips (and says so) where there is no GPU.

mod common;

use common::{download, upload, Batch, Dist, HostSeeds, SeedBuffers};
use cudarc::driver::{CudaSlice, CudaView, DeviceRepr};
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use samplex::cpu::{self, Verdict};
use samplex::gpu::softmax::Staging;
use samplex::gpu::{DeviceLogits, RowParams, Sampler, MAX_DRAFTS};
use samplex::{status, DraftLayout, Error, Logit, Rng, Rows};

/// A verification's inputs on the host: batch × n draft distributions and tokens, batch ×
/// (n + 1) target distributions; or, packed ([`pack`]), each request's own draft and target
/// rows one after another, n its longest draft.
struct Draft {
    batch: usize,
    vocab: usize,
    n: usize,
    draft_probs: Vec<f32>,
    draft_tokens: Vec<u32>,
    target_probs: Vec<f32>,
}

/// A host layout's buffer (the lengths or the packed starts) on the device.
fn upload_layout(s: &Sampler, layout: DraftLayout<&[u32]>) -> Option<CudaSlice<u32>> {
    match layout {
        DraftLayout::Padded => None,
        DraftLayout::Lengths(v) | DraftLayout::Packed { starts: v, .. } => Some(upload(s, v)),
    }
}

/// `layout` with its buffer's device view (from [`upload_layout`]) for its host values.
fn on_device<'a, 'b>(
    layout: DraftLayout<&[u32]>,
    view: Option<&'a CudaView<'b, u32>>,
) -> DraftLayout<&'a CudaView<'b, u32>> {
    match (layout, view) {
        (DraftLayout::Lengths(_), Some(v)) => DraftLayout::Lengths(v),
        (DraftLayout::Packed { max_drafts, .. }, Some(v)) => DraftLayout::Packed {
            starts: v,
            max_drafts,
        },
        _ => DraftLayout::Padded,
    }
}

/// Request r's first target row in `layout` (its offsets in range; n the padded length).
fn first_target(layout: DraftLayout<&[u32]>, r: usize, n: usize) -> usize {
    match layout {
        DraftLayout::Packed { starts, .. } => starts[r] as usize + r,
        _ => r * (n + 1),
    }
}

/// The request each of the `rows` target rows belongs to (padded: r's n + 1; packed: its
/// n_r + 1, the offsets in range).
fn row_requests(layout: DraftLayout<&[u32]>, batch: usize, n: usize, rows: usize) -> Vec<usize> {
    match layout {
        DraftLayout::Packed { starts, .. } => (0..batch)
            .flat_map(|r| std::iter::repeat_n(r, (starts[r + 1] - starts[r]) as usize + 1))
            .collect(),
        _ => (0..rows).map(|t| t / (n + 1)).collect(),
    }
}

/// The GPU's verdicts: tokens, accepted counts, status.
type GpuVerdicts = (Vec<u32>, Vec<u32>, Vec<u32>);

/// The GPU's verdict: (tokens, batch × (n + 1); accepted; status), the draft laid out as
/// `layout` says, and as one-hot drafts (its tokens alone) when `one_hot`.
fn gpu_verify(
    s: &mut Sampler,
    d: &Draft,
    layout: DraftLayout<&[u32]>,
    one_hot: bool,
    seeds: &HostSeeds,
) -> GpuVerdicts {
    let (q, x, p) = (
        upload(s, &d.draft_probs),
        upload(s, &d.draft_tokens),
        upload(s, &d.target_probs),
    );
    let layout_buf = upload_layout(s, layout);
    let layout_view = layout_buf.as_ref().map(|b| b.as_view());
    let seed_bufs = SeedBuffers::new(s, seeds);
    let mut tokens = s.stream().alloc_zeros::<u32>(d.batch * (d.n + 1)).unwrap();
    let mut accepted = s.stream().alloc_zeros::<u32>(d.batch).unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(d.batch).unwrap();
    let q = (!one_hot).then(|| q.as_view());
    s.verify_draft(
        q.as_ref(),
        &x.as_view(),
        on_device(layout, layout_view.as_ref()),
        &p.as_view(),
        d.batch,
        d.vocab,
        &seed_bufs.device(seeds),
        &mut tokens.as_view_mut(),
        &mut accepted.as_view_mut(),
        Some(&mut st.as_view_mut()),
    )
    .unwrap();
    (
        download(s, &tokens),
        download(s, &accepted),
        download(s, &st),
    )
}

/// softmax of `rows` rows of Gumbel logits, reproducible from `seed`.
fn softmax_rows(rows: usize, vocab: usize, seed: u64) -> Vec<f32> {
    let z = common::logits(Dist::Gumbel(1.0), rows, vocab, seed);
    z.chunks(vocab)
        .flat_map(|row| {
            let (w, _) = cpu::widen_row(row);
            cpu::softmax_row(&w, 1.0)
                .into_iter()
                .map(|p| p as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A draft whose model is close to the target's (so drafts are often accepted, and sometimes
/// not): target p = softmax of Gumbel logits, draft q = p tilted by ±30 % per token, each draft
/// token drawn from its q on the CPU; at the first `exact` positions q = p (always accepted, so
/// a row can reach a long accepted prefix). Row r's special cases, by r mod 5: 1, a draft token the
/// target rules out (p(x) = 0, so it is rejected); 2, an id ≥ vocab at the last position;
/// 3, q = p with p(x) = 0 at the first position (rejected, an empty residual: the draw falls back
/// to p); 4, a NaN and a negative entry in the first target row.
fn close_draft(batch: usize, vocab: usize, (n, exact): (usize, usize), seed: u64) -> Draft {
    let target_probs = softmax_rows(batch * (n + 1), vocab, seed);
    let mut draft_probs = Vec::with_capacity(batch * n * vocab);
    for r in 0..batch {
        for i in 0..n {
            let p = &target_probs[(r * (n + 1) + i) * vocab..][..vocab];
            let tilt = |k: usize| match i < exact {
                true => 1.0,
                false => 1.0 + 0.3 * ((((k * 7919 + i * 31 + r) % 13) as f32) / 6.0 - 1.0),
            };
            let q: Vec<f32> = p.iter().enumerate().map(|(k, &v)| v * tilt(k)).collect();
            let sum: f32 = q.iter().sum();
            draft_probs.extend(q.iter().map(|v| v / sum));
        }
    }
    let rng = Rows::All(Rng::new(seed ^ 0x5eed));
    let draws = if n == 0 {
        Vec::new()
    } else {
        cpu::sample_from_probs(&draft_probs, batch * n, vocab, rng).unwrap()
    };
    let mut d = Draft {
        batch,
        vocab,
        n,
        draft_tokens: draws.iter().map(|d| d.token).collect(),
        draft_probs,
        target_probs,
    };
    for r in 0..batch {
        let (target, draft) = (r * (n + 1) * vocab, r * n * vocab);
        match r % 5 {
            1 if n > 0 && vocab > 1 => {
                let x = d.draft_tokens[r * n] as usize;
                d.target_probs[target + x] = 0.0;
            }
            2 if n > 0 => d.draft_tokens[r * n + n - 1] = vocab as u32 + r as u32,
            3 if n > 0 => {
                let x = d.draft_tokens[r * n] as usize;
                d.target_probs[target + x] = 0.0;
                let p = d.target_probs[target..target + vocab].to_vec();
                d.draft_probs[draft..draft + vocab].copy_from_slice(&p);
            }
            4 if vocab > 2 => {
                d.target_probs[target + vocab / 2] = f32::NAN;
                d.target_probs[target + vocab - 1] = -0.5;
            }
            _ => {}
        }
    }
    d
}

/// The GPU's verdicts equal the CPU's, except where the CPU says an acceptance test or the draw
/// was within 1e-5 (relative) of coming out otherwise; returns how many such rows differed.
fn assert_verdicts_agree(
    (tokens, accepted, st): &GpuVerdicts,
    cpu: &[Verdict],
    n: usize,
    what: &str,
) -> usize {
    let mut near = 0;
    for (r, v) in cpu.iter().enumerate() {
        let got = &tokens[r * (n + 1)..(r + 1) * (n + 1)];
        if got != v.tokens.as_slice() || accepted[r] != v.accepted {
            assert!(
                v.margin < 1e-5,
                "{what}: row {r}: gpu {got:?} accepting {}, cpu {:?} accepting {} (margin {:.3e})",
                accepted[r],
                v.tokens,
                v.accepted,
                v.margin
            );
            near += 1;
            continue;
        }
        assert_eq!(st[r], v.status, "{what}: row {r}: status");
    }
    near
}

/// The verification on the GPU and on the CPU, compared ([`assert_verdicts_agree`]): the CPU's
/// verdicts, how many rows differed within the margin, and the GPU's verdicts.
fn verify_both(
    s: &mut Sampler,
    d: &Draft,
    layout: DraftLayout<&[u32]>,
    one_hot: bool,
    seeds: &HostSeeds,
    what: &str,
) -> (Vec<Verdict>, usize, GpuVerdicts) {
    let gpu = gpu_verify(s, d, layout, one_hot, seeds);
    let cpu = cpu::verify_draft(
        (!one_hot).then_some(d.draft_probs.as_slice()),
        &d.draft_tokens,
        layout,
        &d.target_probs,
        d.batch,
        d.vocab,
        seeds.rows(),
    )
    .unwrap();
    let near = assert_verdicts_agree(&gpu, &cpu, d.n, what);
    (cpu, near, gpu)
}

#[test]
fn verification_agrees_with_the_cpu_reference() {
    let mut s = gpu_or_skip!();
    let mut near = 0;
    // (batch, vocab, n): split rows (small batches of long rows, the fallback's last block
    // walking every tile alone), whole rows of several tiles (a batch of 300 fills the GPU),
    // no draft, a long draft, vocab 1, unaligned rows (an odd vocab: the _any kernel); n as
    // (drafts, how many of them exact). Split rows whose first 40 drafts are exact reach
    // e ≥ 32, where the token the last block merged is written by a thread outside warp 0.
    let cases = [
        (1, 128256, (4, 0)),
        (4, 32000, (3, 0)),
        (5, 40001, (2, 0)),
        (3, 60000, (48, 40)),
        (1, 30000, (40, 40)),
        (300, 5000, (2, 0)),
        (6, 1000, (0, 0)),
        (2, 300, (256, 0)),
        (5, 1, (3, 0)),
        (10, 7, (5, 0)),
        (40, 2049, (1, 0)),
    ];
    for (k, &(batch, vocab, (n, exact))) in cases.iter().enumerate() {
        let d = close_draft(batch, vocab, (n, exact), 400 + k as u64);
        let mut each = HostSeeds::each(batch);
        if let HostSeeds::Each(v) = &mut each {
            v[0] = v[0].at(u64::MAX - 1); // offsets wrap past u64::MAX
        }
        // Per-row draft lengths: every length 0 ..= n, and n + 1 (clamped to n and flagged);
        // the rows whose checks below need the whole draft keep it. Then the draft as one-hot
        // drafts (its tokens alone), with and without the lengths.
        let lens: Vec<u32> = (0..batch)
            .map(|r| match r % 5 {
                0 | 2 => n as u32,
                _ => ((r / 5 + k) % (n + 2)) as u32,
            })
            .collect();
        let mut cases = vec![];
        for seeds in [HostSeeds::Shared(Rng::new(21).at(k as u64)), each] {
            cases.push((None, false, seeds));
        }
        let shared = |seed| HostSeeds::Shared(Rng::new(seed).at(k as u64));
        cases.push((Some(lens.as_slice()), false, shared(22)));
        cases.push((None, true, shared(23)));
        cases.push((Some(lens.as_slice()), true, shared(24)));
        for (lens, one_hot, seeds) in cases {
            let what = format!(
                "b{batch} v{vocab} n{n} {}{}{}",
                seeds.label(),
                if lens.is_some() { " lens" } else { "" },
                if one_hot { " one-hot" } else { "" }
            );
            let (cpu, differ, _) = verify_both(&mut s, &d, lens.into(), one_hot, &seeds, &what);
            near += differ;
            // The cases the draft's special rows make must have come out as designed.
            for (r, v) in cpu.iter().enumerate() {
                if r % 5 == 0 && !one_hot {
                    assert!(v.accepted >= exact as u32, "{what}: row {r}: exact drafts");
                }
                if n > 0 && (r % 5 == 1 && vocab > 1 || r % 5 == 3) {
                    assert_eq!(v.accepted, 0, "{what}: row {r} must reject its first draft");
                }
                if n > 0 && r % 5 == 2 {
                    assert!(v.accepted < n as u32, "{what}: row {r} holds a bad id");
                    if v.accepted == n as u32 - 1 {
                        assert_ne!(v.status & status::PARAM_CLAMPED, 0, "{what}: row {r}");
                    }
                }
            }
        }
    }
    eprintln!("verify_draft: {near} near-boundary disagreements");
}

/// Target logits for [`Sampler::verify_draft_logits`]: batch × (n + 1) rows of `vocab` laid
/// out as a [`Batch`] (an odd lead or stride takes the `_any` kernels), with τ batch-wide or
/// per request.
struct TargetLogits<T> {
    rows: Batch<T>,
    tau: f32,
    temps: Option<Vec<f32>>,
}

impl<T: Logit + DeviceRepr> TargetLogits<T> {
    /// The Gumbel logits `close_draft(…, seed)`'s target probabilities are the softmax of (so
    /// its drafts are often accepted at τ near 1), with row r's special cases, by r mod 5: 1,
    /// the first draft token's logit −∞ (rejected); 4, a NaN in every target row (so in the row
    /// drawn from, whichever it is: its tile must still be drawn from); and by
    /// r mod 7 = 6, a first target row with no finite logit (nothing to draw: NO_TOKEN).
    fn new(
        d: &Draft,
        seed: u64,
        (stride, lead): (usize, usize),
        tau: f32,
        temps: Option<Vec<f32>>,
    ) -> Self {
        let (vocab, n) = (d.vocab, d.n);
        let rows = d.batch * (n + 1);
        let mut z = common::logits(Dist::Gumbel(1.0), rows, vocab, seed);
        for r in 0..d.batch {
            let first = r * (n + 1) * vocab;
            match r % 5 {
                1 if n > 0 && (d.draft_tokens[r * n] as usize) < vocab => {
                    z[first + d.draft_tokens[r * n] as usize] = f32::NEG_INFINITY;
                }
                4 => {
                    (0..=n).for_each(|i| z[first + i * vocab + (vocab / 2 + i) % vocab] = f32::NAN)
                }
                _ => {}
            }
            if r % 7 == 6 {
                z[first..first + vocab].fill(f32::NEG_INFINITY);
            }
        }
        Self::from_rows(&z, vocab, (stride, lead), tau, temps)
    }

    /// The rows of `z` (dense, `vocab` wide), laid out `stride` apart from `lead` on.
    fn from_rows(
        z: &[f32],
        vocab: usize,
        (stride, lead): (usize, usize),
        tau: f32,
        temps: Option<Vec<f32>>,
    ) -> Self {
        TargetLogits {
            rows: Batch::laid_out(z, z.len() / vocab, vocab, stride, lead),
            tau,
            temps,
        }
    }
}

/// The target's probabilities and softmax status per target row as `Sampler::softmax` gives
/// them on its two-read paths (each request's τ on its rows: `requests[t]` is row t's).
fn softmax_targets<T: Logit + DeviceRepr>(
    s: &mut Sampler,
    device: &DeviceLogits<'_, T>,
    target: &TargetLogits<T>,
    requests: &[usize],
) -> (CudaSlice<f32>, Vec<u32>) {
    let row_temps = target.temps.as_ref().map(|t| {
        let each: Vec<f32> = requests.iter().map(|&r| t[r]).collect();
        upload(s, &each)
    });
    let row_params = RowParams {
        temperature: row_temps.as_ref().map(|t| t.as_view()),
        ..Default::default()
    };
    let mut probs = s
        .stream()
        .alloc_zeros::<f32>(target.rows.batch * target.rows.vocab)
        .unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(target.rows.batch).unwrap();
    s.set_softmax_staging(Staging::Never);
    s.softmax(
        device,
        target.tau,
        &row_params,
        &mut probs.as_view_mut(),
        None,
        Some(&mut st.as_view_mut()),
    )
    .unwrap();
    s.set_softmax_staging(Staging::Auto);
    let st = download(s, &st);
    (probs, st)
}

/// `verify_draft_logits` on the GPU: (tokens, accepted, status).
fn fused_verify_logits<T: Logit + DeviceRepr>(
    s: &mut Sampler,
    d: &Draft,
    target: &TargetLogits<T>,
    layout: DraftLayout<&[u32]>,
    one_hot: bool,
    seeds: &HostSeeds,
) -> GpuVerdicts {
    let logits = target.rows.upload(s);
    let device = target.rows.device(&logits);
    let (q, x) = (upload(s, &d.draft_probs), upload(s, &d.draft_tokens));
    let q = (!one_hot).then(|| q.as_view());
    let layout_buf = upload_layout(s, layout);
    let layout_view = layout_buf.as_ref().map(|b| b.as_view());
    let seed_bufs = SeedBuffers::new(s, seeds);
    let mut tokens = s.stream().alloc_zeros::<u32>(d.batch * (d.n + 1)).unwrap();
    let mut accepted = s.stream().alloc_zeros::<u32>(d.batch).unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(d.batch).unwrap();
    let temps = target.temps.as_ref().map(|t| upload(s, t));
    let rows = RowParams {
        temperature: temps.as_ref().map(|t| t.as_view()),
        ..Default::default()
    };
    s.verify_draft_logits(
        q.as_ref(),
        &x.as_view(),
        on_device(layout, layout_view.as_ref()),
        &device,
        target.tau,
        &rows,
        d.batch,
        &seed_bufs.device(seeds),
        &mut tokens.as_view_mut(),
        &mut accepted.as_view_mut(),
        Some(&mut st.as_view_mut()),
    )
    .unwrap();
    (
        download(s, &tokens),
        download(s, &accepted),
        download(s, &st),
    )
}

/// `verify_draft_logits` on the GPU ([`fused_verify_logits`]), and the same verdicts by the
/// two ops it fuses: `softmax` on the target rows (its two-read paths, which the statistics
/// match bit for bit), then `verify_draft` on those probabilities. Asserts that both give the
/// same tokens and counts, and that the fused op's status is the verification's plus the
/// softmax status of the target rows the verdict read; returns the fused op's verdicts. A
/// packed layout's offsets must be in range.
fn gpu_verify_logits<T: Logit + DeviceRepr>(
    s: &mut Sampler,
    d: &Draft,
    target: &TargetLogits<T>,
    layout: DraftLayout<&[u32]>,
    one_hot: bool,
    seeds: &HostSeeds,
    what: &str,
) -> GpuVerdicts {
    let fused = fused_verify_logits(s, d, target, layout, one_hot, seeds);

    // softmax with each request's τ on its rows, then verify_draft on the probabilities.
    let (batch, n) = (d.batch, d.n);
    let logits = target.rows.upload(s);
    let device = target.rows.device(&logits);
    let requests = row_requests(layout, batch, n, target.rows.batch);
    let (probs, softmax_st) = softmax_targets(s, &device, target, &requests);
    let host_probs = download(s, &probs);
    let two = Draft {
        target_probs: host_probs,
        draft_probs: d.draft_probs.clone(),
        draft_tokens: d.draft_tokens.clone(),
        ..*d
    };
    let (two_tokens, two_accepted, two_st) = gpu_verify(s, &two, layout, one_hot, seeds);
    assert_eq!(
        fused.0, two_tokens,
        "{what}: tokens, fused vs softmax + verify_draft"
    );
    assert_eq!(
        fused.1, two_accepted,
        "{what}: accepted, fused vs softmax + verify_draft"
    );
    for r in 0..batch {
        let first = first_target(layout, r, n);
        let read = &softmax_st[first..=first + two_accepted[r] as usize];
        let want = read.iter().fold(two_st[r], |a, &b| a | b);
        assert_eq!(fused.2[r], want, "{what}: row {r}: status");
    }
    fused
}

/// The fused verification against the two ops it fuses (bit for bit) and the CPU reference
/// (`cpu::verify_draft_logits`, within the margins); returns the CPU's verdicts, how many rows
/// differed within the margin, and the fused op's verdicts.
#[allow(clippy::too_many_arguments)]
fn verify_logits_both<T: Logit + DeviceRepr>(
    s: &mut Sampler,
    d: &Draft,
    target: &TargetLogits<T>,
    layout: DraftLayout<&[u32]>,
    one_hot: bool,
    seeds: &HostSeeds,
    what: &str,
) -> (Vec<Verdict>, usize, GpuVerdicts) {
    let gpu = gpu_verify_logits(s, d, target, layout, one_hot, seeds, what);
    let temperature = match &target.temps {
        Some(t) => Rows::Each(t.as_slice()),
        None => Rows::All(target.tau),
    };
    let cpu = cpu::verify_draft_logits(
        (!one_hot).then_some(d.draft_probs.as_slice()),
        &d.draft_tokens,
        layout,
        &target.rows.cpu(),
        temperature,
        d.batch,
        seeds.rows(),
    )
    .unwrap();
    let near = assert_verdicts_agree(&gpu, &cpu, d.n, what);
    (cpu, near, gpu)
}

/// Per-request temperatures for `batch` requests: around 1, one greedy request (τ = 0).
fn request_temperatures(batch: usize) -> Vec<f32> {
    (0..batch)
        .map(|r| {
            if r % 4 == 3 {
                0.0
            } else {
                0.7 + 0.1 * (r % 7) as f32
            }
        })
        .collect()
}

#[test]
fn verification_on_logits_is_softmax_then_verification() {
    let mut s = gpu_or_skip!();
    let mut near = 0;
    // (batch, vocab, (n, exact), stride pad, lead): split rows (one or a few requests over a
    // long vocabulary: both launches split), whole rows, no draft, a long draft, vocab 1, an
    // odd stride or lead (the _any kernels), a batch whose statistics split and whose
    // verification does not, aligned logits rows beside draft rows that are not (the
    // statistics' aligned kernel, the verification's _any twin).
    let cases = [
        (1, 128256, (4, 0), 0, 0),
        (3, 32000, (3, 0), 8, 0),
        (5, 40001, (2, 0), 0, 0),
        (2, 30000, (40, 36), 0, 3),
        (40, 5000, (2, 0), 0, 0),
        (6, 1000, (0, 0), 1, 1),
        (5, 1, (3, 0), 0, 0),
        (10, 7, (5, 0), 0, 0),
        (12, 20000, (3, 0), 0, 0),
        (2, 30001, (3, 0), 7, 0),
    ];
    for (k, &(batch, vocab, (n, exact), pad, lead)) in cases.iter().enumerate() {
        let d = close_draft(batch, vocab, (n, exact), 900 + k as u64);
        let lens: Vec<u32> = (0..batch).map(|r| ((r + k) % (n + 2)) as u32).collect();
        let temps = request_temperatures(batch);
        let shared = |seed| HostSeeds::Shared(Rng::new(seed).at(k as u64));
        // f32 at τ = 1 with the draft's distributions; bf16 with per-request τ (a greedy
        // request among them), per-row lengths and per-row seeds; f16 one-hot at τ = 0.8.
        let what =
            |dtype: &str| format!("b{batch} v{vocab} n{n} stride +{pad} lead {lead} {dtype}");
        let seed = 900 + k as u64;
        let f32s = TargetLogits::<f32>::new(&d, seed, (vocab + pad, lead), 1.0, None);
        let bf16s = TargetLogits::<bf16>::new(&d, seed, (vocab + pad, lead), 1.0, Some(temps));
        let f16s = TargetLogits::<f16>::new(&d, seed, (vocab + pad, lead), 0.8, None);
        let each = HostSeeds::each(batch);
        let (lens, shared_a, shared_b) = (Some(lens.as_slice()), shared(31), shared(32));
        let (lens, padded) = (lens.into(), DraftLayout::Padded);
        let runs = [
            verify_logits_both(&mut s, &d, &f32s, padded, false, &shared_a, &what("f32")),
            verify_logits_both(
                &mut s,
                &d,
                &bf16s,
                lens,
                false,
                &each,
                &what("bf16 τ_r lens"),
            ),
            verify_logits_both(
                &mut s,
                &d,
                &f16s,
                lens,
                true,
                &shared_b,
                &what("f16 one-hot lens"),
            ),
        ];
        for (cpu, differ, _) in runs {
            near += differ;
            // A request whose first target row has no finite logit draws nothing.
            for (r, v) in cpu.iter().enumerate().filter(|(r, _)| r % 7 == 6) {
                assert_eq!((v.accepted, v.tokens[0]), (0, status::NO_TOKEN), "row {r}");
                assert_ne!(v.status & status::NO_FINITE_LOGIT, 0, "row {r}");
            }
        }
    }
    eprintln!("verify_draft_logits: {near} near-boundary disagreements");
}

#[test]
fn knife_edge_acceptances_on_logits_match_softmax_then_verification() {
    let mut s = gpu_or_skip!();
    // Drafts whose acceptance test sits on its boundary: q(x) = p(x)/u to within an ulp, with
    // p the GPU softmax's own value and u the test's uniform, so u·q < p turns on p's last
    // bits. The fused op must decide each one as softmax + verify_draft does: a p off by a
    // part in a million would flip many of them.
    let (batch, vocab, n) = (96usize, 5000usize, 1usize);
    let seeds = HostSeeds::Shared(Rng::new(41).at(5));
    let mut d = Draft {
        batch,
        vocab,
        n,
        draft_probs: Vec::new(),
        draft_tokens: (0..batch).map(|r| ((r * 997) % vocab) as u32).collect(),
        target_probs: Vec::new(),
    };
    let target = TargetLogits::<f32>::new(&d, 77, (vocab, 0), 0.9, None);
    let logits = target.rows.upload(&s);
    let device = target.rows.device(&logits);
    let requests = row_requests(DraftLayout::Padded, batch, n, batch * (n + 1));
    let probs = softmax_targets(&mut s, &device, &target, &requests).0;
    let probs = download(&s, &probs);
    let HostSeeds::Shared(rng) = seeds else {
        unreachable!()
    };
    let mut edges = 0;
    for r in 0..batch {
        let mut q = probs[r * (n + 1) * vocab..][..vocab].to_vec();
        let x = d.draft_tokens[r] as usize;
        if q[x] > 0.0 {
            let word = samplex::philox::row_random(rng.seed, rng.offset, r as u32, 0)[2];
            let u = samplex::philox::uniform_open(word) as f32; // exact in f32
            let edge = q[x] / u;
            q[x] = [edge.next_down(), edge, edge.next_up()][r % 3];
            edges += 1;
        }
        d.draft_probs.extend_from_slice(&q);
    }
    let (_, accepted, _) = gpu_verify_logits(
        &mut s,
        &d,
        &target,
        DraftLayout::Padded,
        false,
        &seeds,
        "knife edge",
    );
    let kept = accepted.iter().filter(|&&a| a == 1).count();
    eprintln!("{edges} drafts on the boundary: {kept} accepted");
    assert!(
        kept > 0 && kept < edges,
        "both outcomes must occur ({kept} of {edges})"
    );
}

/// One random distribution of `vocab` for the property test: a softmax of Gumbel logits, the
/// same cut to a few tokens, one-hot, or unnormalised (scaled), with a rare NaN, negative or +∞.
fn random_dist(rng: &mut StdRng, vocab: usize) -> Vec<f32> {
    let z = common::logits(
        Dist::Gumbel(rng.random_range(0.2..2.0)),
        1,
        vocab,
        rng.random(),
    );
    let (w, _) = cpu::widen_row(&z);
    let mut p: Vec<f32> = cpu::softmax_row(&w, 1.0)
        .iter()
        .map(|&x| x as f32)
        .collect();
    match rng.random_range(0..6) {
        0 => {
            let keep: Vec<usize> = (0..rng.random_range(1..4))
                .map(|_| rng.random_range(0..vocab))
                .collect();
            for (k, x) in p.iter_mut().enumerate() {
                if !keep.contains(&k) {
                    *x = 0.0;
                }
            }
        }
        1 => {
            p.iter_mut().for_each(|x| *x = 0.0);
            p[rng.random_range(0..vocab)] = 1.0;
        }
        2 => {
            let scale = [0.25f32, 3.0][rng.random_range(0..2)];
            p.iter_mut().for_each(|x| *x *= scale);
        }
        _ => {}
    }
    if rng.random_range(0..12) == 0 {
        let k = rng.random_range(0..vocab);
        p[k] = [f32::NAN, -0.5, f32::INFINITY][rng.random_range(0..3)];
    }
    p
}

#[test]
fn random_verifications_match_the_cpu_reference() {
    let mut s = gpu_or_skip!();
    // Random shapes (vocabularies around the draw tile and odd ones, batches on both sides of
    // the row split, drafts from none to long), draft distributions given or one-hot, per-row
    // lengths or none, shared or per-row seeds; drafts close to the target, exact, unrelated,
    // or bad ids; each case on the target's probabilities and on its logits. From a fixed
    // seed, so a failure names a case that reproduces.
    let emulated = common::emulated(&s);
    let (cases, budget) = if emulated {
        (48, 600_000)
    } else {
        (160, 4 << 20)
    };
    let mut rng = StdRng::seed_from_u64(0x5bec);
    let mut near = 0;
    for case in 0..cases {
        let vocab = match rng.random_range(0..4) {
            0 => rng.random_range(1..40),
            1 => 4096 * rng.random_range(1..5) + rng.random_range(0..3) * 2047,
            _ => rng.random_range(40..70_000),
        };
        let n = match rng.random_range(0..8) {
            0 => 0,
            1 => rng.random_range(9..40),
            _ => rng.random_range(1..9),
        };
        let batch = rng
            .random_range(1..40usize)
            .min((budget / ((2 * n + 1) * vocab)).max(1));
        let one_hot = rng.random_bool(0.4);
        let mut target = Vec::with_capacity(batch * (n + 1) * vocab);
        let mut draft_probs = Vec::with_capacity(batch * n * vocab);
        let mut draft_tokens = Vec::with_capacity(batch * n);
        for _ in 0..batch {
            let p: Vec<Vec<f32>> = (0..=n).map(|_| random_dist(&mut rng, vocab)).collect();
            for (i, p_i) in p.iter().take(n).enumerate() {
                let q = match rng.random_range(0..3) {
                    0 => p_i.clone(),
                    _ => random_dist(&mut rng, vocab),
                };
                let x = match rng.random_range(0..10) {
                    0 => (vocab + i) as u32,
                    1..=3 => rng.random_range(0..vocab) as u32,
                    _ => {
                        // Drawn from q (sanitised as the draws sanitise; none when q has no mass).
                        let d =
                            cpu::sample_from_probs(&q, 1, vocab, Rows::All(Rng::new(rng.random())));
                        d.unwrap()[0].token.min(vocab as u32 - 1)
                    }
                };
                draft_tokens.push(x);
                draft_probs.extend_from_slice(&q);
            }
            p.iter().for_each(|p_i| target.extend_from_slice(p_i));
        }
        let d = Draft {
            batch,
            vocab,
            n,
            draft_probs,
            draft_tokens,
            target_probs: target,
        };
        let lens: Option<Vec<u32>> = rng.random_bool(0.5).then(|| {
            (0..batch)
                .map(|_| rng.random_range(0..=n as u32 + 1))
                .collect()
        });
        let seeds = if rng.random_bool(0.5) {
            HostSeeds::Shared(Rng::new(rng.random()).at(rng.random()))
        } else {
            HostSeeds::each(batch)
        };
        let what = format!(
            "case {case}: b{batch} v{vocab} n{n} {}{}{}",
            seeds.label(),
            if lens.is_some() { " lens" } else { "" },
            if one_hot { " one-hot" } else { "" }
        );
        let (_, differ, padded) =
            verify_both(&mut s, &d, lens.as_deref().into(), one_hot, &seeds, &what);
        near += differ;
        // With lengths, the same drafts packed (a length above n packs as n, unflagged).
        if let Some(lens) = &lens {
            let fit: Vec<u32> = lens.iter().map(|&l| l.min(n as u32)).collect();
            let (p, starts) = pack(&d, &fit);
            let packed = DraftLayout::Packed {
                starts: starts.as_slice(),
                max_drafts: n,
            };
            let what = format!("{what} packed");
            let (_, differ, same) = verify_both(&mut s, &p, packed, one_hot, &seeds, &what);
            near += differ;
            let clamped = |r: usize| lens[r] > n as u32;
            for r in 0..batch {
                let (a, b) = (r * (n + 1), (r + 1) * (n + 1));
                assert_eq!(same.0[a..b], padded.0[a..b], "{what}: row {r}: tokens");
                let flag = if clamped(r) { status::PARAM_CLAMPED } else { 0 };
                assert_eq!(same.2[r] | flag, padded.2[r], "{what}: row {r}: status");
            }
        }

        // The same case on the target's logits, ln p (0 becomes −∞, a negative NaN), at a
        // random τ, batch-wide or per request, in f32 or bf16, at an aligned or odd stride and
        // start. Its choices come from a generator of their own, so the cases above stay.
        let mut lr = StdRng::seed_from_u64(0x1091 ^ case as u64);
        let z: Vec<f32> = d.target_probs.iter().map(|p| p.ln()).collect();
        let tau = [0.0, 0.6, 1.0, 1.7][lr.random_range(0..4)];
        let temps: Option<Vec<f32>> = lr.random_bool(0.4).then(|| {
            (0..batch)
                .map(|_| [0.0, 0.8, 1.3][lr.random_range(0..3)])
                .collect()
        });
        let layout = [(vocab, 0), (vocab + 1, 1), (vocab + 8, 0)][lr.random_range(0..3)];
        let what = format!("{what} logits τ {tau} {temps:?} layout {layout:?}");
        let lens = lens.as_deref().into();
        near += match lr.random_bool(0.5) {
            true => {
                let t = TargetLogits::<f32>::from_rows(&z, vocab, layout, tau, temps);
                verify_logits_both(&mut s, &d, &t, lens, one_hot, &seeds, &what).1
            }
            false => {
                let t = TargetLogits::<bf16>::from_rows(&z, vocab, layout, tau, temps);
                verify_logits_both(&mut s, &d, &t, lens, one_hot, &seeds, &what).1
            }
        };
    }
    eprintln!("{cases} random verifications (on probabilities and on logits): {near} near-boundary disagreements");
}

/// (p, q) weights of one row: 20 tokens spread over two draw tiles of a 4100-token row; some
/// only the draft proposes (p = 0: always rejected), some only the target has (q = 0: reached
/// through the residual alone).
fn weighted_pair(vocab: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut p, mut q) = (vec![0.0; vocab], vec![0.0; vocab]);
    for (k, i) in (3..vocab).step_by(205).enumerate() {
        p[i] = if k % 5 == 0 { 0.0 } else { (k % 7 + 1) as f64 };
        q[i] = if k % 4 == 0 { 0.0 } else { (k % 3 + 1) as f64 };
    }
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    (
        p.iter().map(|x| x / sp).collect(),
        q.iter().map(|x| x / sq).collect(),
    )
}

#[test]
fn emitted_tokens_follow_the_target_distribution() {
    let mut s = gpu_or_skip!();
    check_emitted_tokens(&mut s, false);
}

#[test]
fn one_hot_drafts_emit_tokens_that_follow_the_target_distribution() {
    let mut s = gpu_or_skip!();
    check_emitted_tokens(&mut s, true);
}

/// Many rows of one (q, p_0, p_1) with one draft token each, drawn from q on the GPU under its
/// own seed; rows are independent (a shared seed, stream = row), and each launch steps the
/// offsets. Speculative sampling's guarantee: the first emitted token is distributed as p_0
/// whatever q is, the draft is accepted with chance Σ min(p_0, q), and the token after an
/// accepted draft is distributed as p_1. With `one_hot` the verification is not told q (the
/// drafts are one-hot, δ(x)): the first token still follows p_0, and the draft is accepted with
/// chance p_0(x), Σ q·p_0 over the drafts.
fn check_emitted_tokens(s: &mut Sampler, one_hot: bool) {
    let (batch, vocab) = (1024usize, 4100usize);
    let launches = common::scaled(s, 1 << 16).div_ceil(batch);
    let (p0, q) = weighted_pair(vocab);
    let p1: Vec<f64> = (0..vocab)
        .map(|i| if i % 410 == 17 { 0.1 } else { 0.0 })
        .collect();
    let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    let rows = |v: &[Vec<f32>]| -> Vec<f32> { (0..batch).flat_map(|_| v.concat()).collect() };
    let draft_probs = rows(&[as_f32(&q)]);
    let target_probs = rows(&[as_f32(&p0), as_f32(&p1)]);
    let q_dev = upload(s, &draft_probs);
    let mut first = vec![0u64; vocab];
    let mut bonus = vec![0u64; vocab];
    let mut accepted_total = 0u64;
    for l in 0..launches as u64 {
        let mut x = s.stream().alloc_zeros::<u32>(batch).unwrap();
        let draft_seeds = samplex::gpu::DeviceSeeds::Shared(Rng::new(500).at(l));
        s.sample_from_probs(
            &q_dev.as_view(),
            batch,
            vocab,
            &draft_seeds,
            &mut x.as_view_mut(),
            None,
        )
        .unwrap();
        let d = Draft {
            batch,
            vocab,
            n: 1,
            draft_tokens: download(s, &x),
            draft_probs: draft_probs.clone(),
            target_probs: target_probs.clone(),
        };
        let seeds = HostSeeds::Shared(Rng::new(78).at(2 * l));
        let (tokens, accepted, _) = gpu_verify(s, &d, DraftLayout::Padded, one_hot, &seeds);
        for r in 0..batch {
            first[tokens[2 * r] as usize] += 1;
            if accepted[r] == 1 {
                accepted_total += 1;
                bonus[tokens[2 * r + 1] as usize] += 1;
            } else {
                assert_eq!(tokens[2 * r + 1], status::NO_TOKEN, "row {r}");
            }
        }
    }
    let draws = (launches * batch) as f64;
    let p = common::chi_square_p(&first, &p0);
    eprintln!("{draws} verified drafts: first token against p_0, chi-square p = {p:.4}");
    assert!(p > 1e-4, "first token: chi-square p = {p}");
    let p = common::chi_square_p(&bonus, &p1);
    eprintln!("{accepted_total} bonus tokens against p_1, chi-square p = {p:.4}");
    assert!(p > 1e-4, "bonus token: chi-square p = {p}");
    let rate: f64 = match one_hot {
        false => p0.iter().zip(&q).map(|(a, b)| a.min(*b)).sum(),
        true => p0.iter().zip(&q).map(|(a, b)| a * b).sum(),
    };
    let sd = (rate * (1.0 - rate) / draws).sqrt();
    let seen = accepted_total as f64 / draws;
    eprintln!("acceptance {seen:.4}, expected {rate:.4} (sd {sd:.4}; one-hot {one_hot})");
    assert!(
        (seen - rate).abs() < 5.0 * sd,
        "acceptance {seen}, expected {rate}"
    );
}

/// Request r's first `counts[r]` of its `width` rows (`row` values each) of `v`, one after
/// another.
fn pack_rows<T: Copy>(v: &[T], row: usize, width: usize, counts: &[usize]) -> Vec<T> {
    counts
        .iter()
        .enumerate()
        .flat_map(|(r, &c)| v[r * width * row..][..c * row].iter().copied())
        .collect()
}

/// `d` (padded) packed as a flattened batch holds it: request r keeps its first `lens[r]`
/// drafts and `lens[r] + 1` target rows; with the starts (batch + 1 offsets).
fn pack(d: &Draft, lens: &[u32]) -> (Draft, Vec<u32>) {
    let drafts: Vec<usize> = lens.iter().map(|&l| l as usize).collect();
    let targets: Vec<usize> = drafts.iter().map(|l| l + 1).collect();
    let starts = std::iter::once(0)
        .chain(lens.iter().scan(0, |at, &l| {
            *at += l;
            Some(*at)
        }))
        .collect();
    let (n, vocab) = (d.n, d.vocab);
    let packed = Draft {
        batch: d.batch,
        vocab,
        n,
        draft_probs: pack_rows(&d.draft_probs, vocab, n, &drafts),
        draft_tokens: pack_rows(&d.draft_tokens, 1, n, &drafts),
        target_probs: pack_rows(&d.target_probs, vocab, n + 1, &targets),
    };
    (packed, starts)
}

impl<T: Logit + DeviceRepr> TargetLogits<T> {
    /// These target rows packed as [`pack`] packs `d`'s, laid out alike.
    fn packed(&self, n: usize, lens: &[u32]) -> Self {
        let rows = self.rows.cpu();
        let dense: Vec<f32> = (0..rows.batch())
            .flat_map(|t| rows.row(t).iter().map(|z| z.to_f32()))
            .collect();
        let counts: Vec<usize> = lens.iter().map(|&l| l as usize + 1).collect();
        let (vocab, layout) = (self.rows.vocab, (self.rows.stride, self.rows.lead));
        let z = pack_rows(&dense, vocab, n + 1, &counts);
        Self::from_rows(&z, vocab, layout, self.tau, self.temps.clone())
    }
}

#[test]
fn packed_drafts_verify_as_padded_drafts_with_lengths() {
    let mut s = gpu_or_skip!();
    let mut near = 0;
    // A flattened batch (each request's drafts and target rows one after another, as a
    // varlen verification pass leaves them) must give the verdicts its padded twin with the
    // same lengths gives, bit for bit: the same rows, seeds and draws. (batch, vocab, (n,
    // exact)): split rows, a long draft, whole rows of several tiles, vocab 1 and an odd vocab
    // (the _any kernels), lengths from 0 to n.
    let cases = [
        (1, 128256, (4, 0)),
        (4, 32000, (3, 0)),
        (3, 30000, (40, 36)),
        (300, 2048, (2, 0)),
        (6, 1000, (0, 0)),
        (5, 1, (3, 0)),
        (10, 7, (5, 0)),
    ];
    for (k, &(batch, vocab, (n, exact))) in cases.iter().enumerate() {
        let d = close_draft(batch, vocab, (n, exact), 1300 + k as u64);
        let lens: Vec<u32> = (0..batch)
            .map(|r| match r % 4 {
                0 => n as u32,
                _ => ((r * 3 + k) % (n + 1)) as u32,
            })
            .collect();
        let (p, starts) = pack(&d, &lens);
        let packed = DraftLayout::Packed {
            starts: starts.as_slice(),
            max_drafts: n,
        };
        let lengths = DraftLayout::Lengths(lens.as_slice());
        let seeds = [
            HostSeeds::Shared(Rng::new(61).at(k as u64)),
            HostSeeds::each(batch),
        ];
        for (one_hot, seeds) in [(false, &seeds[0]), (true, &seeds[1])] {
            let what = format!("b{batch} v{vocab} n{n} packed {}", seeds.label());
            let what = if one_hot { what + " one-hot" } else { what };
            let padded = gpu_verify(&mut s, &d, lengths, one_hot, seeds);
            let (cpu, differ, got) = verify_both(&mut s, &p, packed, one_hot, seeds, &what);
            near += differ;
            assert_eq!(got, padded, "{what}");
            let q = (!one_hot).then_some(d.draft_probs.as_slice());
            let cpu_padded = cpu::verify_draft(
                q,
                &d.draft_tokens,
                lengths,
                &d.target_probs,
                batch,
                vocab,
                seeds.rows(),
            )
            .unwrap();
            assert_eq!(
                cpu, cpu_padded,
                "{what}: the CPU reference, packed vs lengths"
            );
        }

        // On the logits: f32 at τ = 1 with the draft's distributions, and bf16 with
        // per-request τ, one-hot drafts and per-row seeds. Rows 16-byte aligned, so that a
        // row's statistics do not depend on where it sits; then an odd stride and lead (the
        // _any kernels), against the CPU reference alone.
        let seed = 1300 + k as u64;
        let stride = vocab.next_multiple_of(4);
        let temps = Some(request_temperatures(batch));
        let f32s = TargetLogits::<f32>::new(&d, seed, (stride, 0), 1.0, None);
        let bf16s = TargetLogits::<bf16>::new(&d, seed, (stride + 8, 0), 1.0, temps.clone());
        let what = format!("b{batch} v{vocab} n{n} packed logits");
        let padded = gpu_verify_logits(&mut s, &d, &f32s, lengths, false, &seeds[0], &what);
        let (p32, pbf) = (f32s.packed(n, &lens), bf16s.packed(n, &lens));
        let (_, differ, got) =
            verify_logits_both(&mut s, &p, &p32, packed, false, &seeds[0], &what);
        near += differ;
        assert_eq!(got, padded, "{what} f32");
        let what = format!("{what} bf16 τ_r one-hot");
        let padded = gpu_verify_logits(&mut s, &d, &bf16s, lengths, true, &seeds[1], &what);
        let got = gpu_verify_logits(&mut s, &p, &pbf, packed, true, &seeds[1], &what);
        assert_eq!(got, padded, "{what}");
        let odd = TargetLogits::<bf16>::new(&d, seed, (vocab + 1, 1), 0.8, temps).packed(n, &lens);
        let what = format!("b{batch} v{vocab} n{n} packed logits bf16 odd stride");
        near += verify_logits_both(&mut s, &p, &odd, packed, false, &seeds[1], &what).1;
    }
    eprintln!("packed verify_draft: {near} near-boundary disagreements");
}

#[test]
fn packed_offsets_out_of_range_are_clamped_and_flagged() {
    let mut s = gpu_or_skip!();
    // Starts a caller got wrong: a draft longer than max_drafts (taken as max_drafts), starts
    // out of order (an empty draft at the later start), past the draft's end (clamped to it),
    // and one request laid out right. Nothing outside the buffers may be read: the CPU
    // reference would panic, and on a GPU the bundle runs this test under compute-sanitizer's
    // memcheck (the emulator does not check bounds). The verdicts are the clamped layout's, and
    // exactly the requests whose values moved are flagged PARAM_CLAMPED.
    let (batch, vocab, max) = (6usize, 3000usize, 4usize);
    let total = 10usize;
    let starts = [0u32, 5, 3, 3, 4, 11, 100];
    let clamped = [true, true, false, false, true, true];
    let q = softmax_rows(total, vocab, 5);
    let p = softmax_rows(total + batch, vocab, 6);
    let draft_tokens: Vec<u32> = (0..total).map(|i| (i * 277 % vocab) as u32).collect();
    let d = Draft {
        batch,
        vocab,
        n: max,
        draft_probs: q,
        draft_tokens,
        target_probs: p,
    };
    let packed = DraftLayout::Packed {
        starts: starts.as_slice(),
        max_drafts: max,
    };
    let seeds = HostSeeds::Shared(Rng::new(71));
    let logits: Vec<f32> = d.target_probs.iter().map(|p| p.ln()).collect();
    let target = TargetLogits::<f32>::from_rows(&logits, vocab, (vocab, 0), 1.0, None);
    for one_hot in [false, true] {
        let what = format!("bad starts, one-hot {one_hot}");
        let (cpu, _, _) = verify_both(&mut s, &d, packed, one_hot, &seeds, &what);
        let gpu = fused_verify_logits(&mut s, &d, &target, packed, one_hot, &seeds);
        let q = (!one_hot).then_some(d.draft_probs.as_slice());
        let rows = target.rows.cpu();
        let on_logits = cpu::verify_draft_logits(
            q,
            &d.draft_tokens,
            packed,
            &rows,
            Rows::All(1.0),
            batch,
            seeds.rows(),
        )
        .unwrap();
        assert_verdicts_agree(&gpu, &on_logits, max, &format!("{what}, on logits"));
        for (r, v) in cpu.iter().chain(&on_logits).enumerate() {
            let r = r % batch;
            let flagged = v.status & status::PARAM_CLAMPED != 0;
            assert_eq!(
                flagged, clamped[r],
                "{what}: request {r}: status {:#x}",
                v.status
            );
        }
        // Request 0's draft is its first max_drafts tokens; requests 1 and 5 have none.
        let none = |v: &Verdict| v.accepted == 0 && v.tokens[1] == status::NO_TOKEN;
        assert!(none(&cpu[1]) && none(&cpu[5]), "{what}");
        let first: Vec<u32> = d.draft_tokens[..max].to_vec();
        let e = cpu[0].accepted as usize;
        assert_eq!(cpu[0].tokens[..e], first[..e], "{what}");
    }
}

#[test]
fn verification_refuses_bad_shapes() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (2usize, 10usize);
    let buf = |n: usize| s.stream().alloc_zeros::<f32>(n).unwrap();
    let (q, p) = (buf(batch * 3 * vocab), buf(batch * 4 * vocab));
    let (short_q, short_p) = (buf(batch * 3 * vocab - 1), buf(batch * 4 * vocab - 1));
    let long = MAX_DRAFTS + 1; // more draft tokens than a block has threads
    let (lq, lp) = (buf(long * vocab), buf((long + 1) * vocab));
    let ids = |n: usize| s.stream().alloc_zeros::<u32>(n).unwrap();
    let (x, odd, lx) = (ids(batch * 3), ids(batch * 3 + 1), ids(long));
    let (mut tokens, mut accepted, mut lt) = (ids(batch * 4), ids(batch), ids(long + 1));
    let lens = ids(batch + 1); // one length too many
                               // Packed: T = 5 draft tokens over the 2 requests, T × vocab draft rows, (T + batch) × vocab
                               // target rows and batch + 1 starts (all 0: empty drafts, in range).
    let (pq, pp, short_pp) = (buf(5 * vocab), buf(7 * vocab), buf(7 * vocab - 1));
    let (px, starts, short_starts) = (ids(5), ids(batch + 1), ids(batch));
    let seeds = samplex::gpu::DeviceSeeds::Shared(Rng::new(1));
    type Buf<T> = cudarc::driver::CudaSlice<T>;
    // (q or None for one-hot drafts, x, draft_lens, p, batch, tokens' and accepted's lengths)
    let mut run = |q: Option<&Buf<f32>>,
                   x: &Buf<u32>,
                   lens: Option<&Buf<u32>>,
                   p: &Buf<f32>,
                   (batch, tokens_len, accepted_len): (usize, usize, usize)| {
        s.verify_draft(
            q.map(|q| q.as_view()).as_ref(),
            &x.as_view(),
            lens.map(|l| l.as_view()).as_ref().into(),
            &p.as_view(),
            batch,
            vocab,
            &seeds,
            &mut tokens.slice_mut(..tokens_len),
            &mut accepted.slice_mut(..accepted_len),
            None,
        )
    };
    let fits = (batch, 8, 2);
    assert!(run(Some(&q), &x, None, &p, fits).is_ok());
    let name = |r: samplex::Result<()>| match r {
        Err(Error::BadLength { name, .. }) => name,
        other => panic!("expected BadLength, got {other:?}"),
    };
    assert_eq!(name(run(Some(&short_q), &x, None, &p, fits)), "draft_probs");
    assert_eq!(
        name(run(Some(&q), &x, None, &short_p, fits)),
        "target_probs"
    );
    assert_eq!(name(run(Some(&q), &x, None, &p, (batch, 7, 2))), "tokens");
    assert_eq!(name(run(Some(&q), &x, None, &p, (batch, 8, 1))), "accepted");
    assert_eq!(name(run(Some(&q), &odd, None, &p, fits)), "draft_tokens");
    assert_eq!(name(run(Some(&q), &x, Some(&lens), &p, fits)), "draft_lens");
    assert!(matches!(
        run(Some(&q), &x, None, &p, (0, 8, 2)),
        Err(Error::EmptyBatch)
    ));
    // One-hot drafts: no draft distributions to check; the target must still fit n.
    assert!(run(None, &x, None, &p, fits).is_ok());
    assert_eq!(name(run(None, &x, None, &short_p, fits)), "target_probs");
    let r = s.verify_draft(
        Some(&lq.as_view()),
        &lx.as_view(),
        DraftLayout::Padded,
        &lp.as_view(),
        1,
        vocab,
        &seeds,
        &mut lt.as_view_mut(),
        &mut accepted.slice_mut(..1),
        None,
    );
    assert!(
        matches!(r, Err(Error::BadParam { name: "draft length", value, .. }) if value == long as f64),
        "{r:?}"
    );

    // Packed, max_drafts 3 (the verdicts' n: tokens batch × 4).
    let mut packed = |q: &Buf<f32>, p: &Buf<f32>, starts: &Buf<u32>, max_drafts: usize| {
        s.verify_draft(
            Some(&q.as_view()),
            &px.as_view(),
            DraftLayout::Packed {
                starts: &starts.as_view(),
                max_drafts,
            },
            &p.as_view(),
            batch,
            vocab,
            &seeds,
            &mut tokens.as_view_mut(),
            &mut accepted.slice_mut(..batch),
            None,
        )
    };
    assert!(packed(&pq, &pp, &starts, 3).is_ok());
    assert_eq!(name(packed(&pq, &short_pp, &starts, 3)), "target_probs");
    assert_eq!(name(packed(&pp, &pp, &starts, 3)), "draft_probs");
    assert_eq!(name(packed(&pq, &pp, &short_starts, 3)), "draft starts");
    assert_eq!(name(packed(&pq, &pp, &starts, 2)), "tokens");
    let r = packed(&pq, &pp, &starts, MAX_DRAFTS + 1);
    assert!(
        matches!(
            r,
            Err(Error::BadParam {
                name: "draft length",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn verification_on_logits_refuses_bad_shapes() {
    let mut s = gpu_or_skip!();
    let (batch, vocab, n) = (2usize, 10usize, 3usize);
    let buf = |len: usize| s.stream().alloc_zeros::<f32>(len).unwrap();
    let ids = |len: usize| s.stream().alloc_zeros::<u32>(len).unwrap();
    let (q, z, short_z) = (
        buf(batch * n * vocab),
        buf(batch * (n + 1) * vocab),
        buf(7 * vocab),
    );
    let (temps, short_temps) = (buf(batch), buf(batch - 1));
    let top_k = ids(batch);
    let x = ids(batch * n);
    let (mut tokens, mut accepted) = (ids(batch * (n + 1)), ids(batch));
    // Packed: T = 4 draft tokens, so T + batch = 6 target rows.
    let (px, pq, starts) = (ids(4), buf(4 * vocab), ids(batch + 1));
    let seeds = samplex::gpu::DeviceSeeds::Shared(Rng::new(1));
    // (logits, their rows, τ, the per-row parameters, batch)
    let mut run = |z: &CudaSlice<f32>, rows: usize, tau: f32, params: &RowParams, batch: usize| {
        let logits = DeviceLogits::new(z.as_view(), rows, vocab).unwrap();
        s.verify_draft_logits(
            Some(&q.as_view()),
            &x.as_view(),
            DraftLayout::Padded,
            &logits,
            tau,
            params,
            batch,
            &seeds,
            &mut tokens.as_view_mut(),
            &mut accepted.as_view_mut(),
            None,
        )
    };
    let none = RowParams::default();
    let per_request = RowParams {
        temperature: Some(temps.as_view()),
        ..Default::default()
    };
    let short_per_request = RowParams {
        temperature: Some(short_temps.as_view()),
        ..Default::default()
    };
    assert!(run(&z, 8, 1.0, &none, batch).is_ok());
    assert!(run(&z, 8, 0.7, &per_request, batch).is_ok());
    let r = run(&short_z, 7, 1.0, &none, batch);
    assert!(
        matches!(
            r,
            Err(Error::BadLength {
                name: "target_logits rows",
                got: 7,
                expected: 8
            })
        ),
        "{r:?}"
    );
    let r = run(&z, 8, 1.0, &short_per_request, batch);
    assert!(
        matches!(
            r,
            Err(Error::BadLength {
                name: "temperature",
                ..
            })
        ),
        "{r:?}"
    );
    let r = run(&z, 8, -1.0, &none, batch);
    assert!(
        matches!(
            r,
            Err(Error::BadParam {
                name: "temperature",
                ..
            })
        ),
        "{r:?}"
    );
    let filtered = RowParams {
        top_k: Some(top_k.as_view()),
        ..Default::default()
    };
    let r = run(&z, 8, 1.0, &filtered, batch);
    assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
    assert!(matches!(run(&z, 8, 1.0, &none, 0), Err(Error::EmptyBatch)));

    let mut packed = |rows: usize| {
        let logits = DeviceLogits::new(z.slice(..rows * vocab), rows, vocab).unwrap();
        s.verify_draft_logits(
            Some(&pq.as_view()),
            &px.as_view(),
            DraftLayout::Packed {
                starts: &starts.as_view(),
                max_drafts: n,
            },
            &logits,
            1.0,
            &none,
            batch,
            &seeds,
            &mut tokens.as_view_mut(),
            &mut accepted.as_view_mut(),
            None,
        )
    };
    assert!(packed(6).is_ok());
    let r = packed(8);
    assert!(
        matches!(
            r,
            Err(Error::BadLength {
                name: "target_logits rows",
                got: 8,
                expected: 6
            })
        ),
        "{r:?}"
    );
}
