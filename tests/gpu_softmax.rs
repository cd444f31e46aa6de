//! The softmax family on the GPU (kernels/softmax.cu) against the CPU reference: SPEC
//! "Temperature softmax", "Greedy", "Drawing a token" and "Bad input". Every test skips (and
//! says so) where there is no GPU.

mod common;

use common::{convert, download, upload, Batch, HostSeeds, SeedBuffers};

use common::{assert_tokens_agree, chi_square_p, Dist};
use half::{bf16, f16};
use samplex::cpu::{self, Draw};
use samplex::gpu::softmax::Staging;
use samplex::gpu::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use samplex::{status, Decoder, Error, Logit, Rng, Rows};

/// The vocabularies of the differential tests: tiny, ragged, one tile, many tiles, real
/// tokenizers (Llama 3, Qwen 2) and a ragged 128-tile row.
const VOCABS: [usize; 7] = [1, 7, 1000, 32000, 128256, 151936, 262147];

/// (batch, vocab) pairs covering every vocabulary, batches 1 to 512, rows split over many
/// blocks (small batches) and whole rows per block (large batches), ≤ ~4.2 M logits each.
fn shapes() -> Vec<(usize, usize)> {
    let mut v = vec![
        (1, 1),
        (512, 1),
        (3, 7),
        (512, 7),
        (1, 1000),
        (64, 1000),
        (512, 1000),
        (1, 32000),
        (8, 32000),
        (100, 32000),
        (1, 128256),
        (2, 128256),
        (24, 128256),
        (1, 151936),
        (5, 151936),
        (1, 262147),
        (3, 262147),
        (16, 262147),
    ];
    assert!(VOCABS.iter().all(|x| v.iter().any(|(_, vocab)| vocab == x)));
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Helpers: upload, download, one GPU call each, the CPU side of each.
// ---------------------------------------------------------------------------------------------

/// GPU `sample_softmax`: (tokens, status).
fn gpu_sample<T: Logit>(
    s: &mut Sampler,
    b: &Batch<T>,
    tau: f32,
    temps: Option<&[f32]>,
    seeds: &HostSeeds,
) -> (Vec<u32>, Vec<u32>) {
    let d = b.upload(s);
    let temps = temps.map(|t| upload(s, t));
    let rows = RowParams {
        temperature: temps.as_ref().map(|t| t.as_view()),
        ..Default::default()
    };
    let seed_bufs = SeedBuffers::new(s, seeds);
    let mut tokens = s.stream().alloc_zeros::<u32>(b.batch).unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(b.batch).unwrap();
    s.sample_softmax(
        &b.device(&d),
        tau,
        &rows,
        &seed_bufs.device(seeds),
        &mut tokens.as_view_mut(),
        Some(&mut st.as_view_mut()),
    )
    .unwrap();
    (download(s, &tokens), download(s, &st))
}

/// CPU draws for the same request.
fn cpu_sample<T: Logit>(
    b: &Batch<T>,
    tau: f32,
    temps: Option<&[f32]>,
    seeds: &HostSeeds,
) -> Vec<Draw> {
    let decoders: Vec<Decoder> = temps.map_or(Vec::new(), |t| {
        t.iter().map(|&x| Decoder::softmax(x)).collect()
    });
    let rows = match temps {
        Some(_) => Rows::Each(&decoders),
        None => Rows::All(Decoder::softmax(tau)),
    };
    cpu::sample(&b.cpu(), rows, seeds.rows(), None).unwrap()
}

/// GPU `greedy`: (tokens, status).
fn gpu_greedy<T: Logit>(s: &mut Sampler, b: &Batch<T>) -> (Vec<u32>, Vec<u32>) {
    let d = b.upload(s);
    let mut tokens = s.stream().alloc_zeros::<u32>(b.batch).unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(b.batch).unwrap();
    s.greedy(
        &b.device(&d),
        &mut tokens.as_view_mut(),
        Some(&mut st.as_view_mut()),
    )
    .unwrap();
    (download(s, &tokens), download(s, &st))
}

/// GPU `softmax`: (probs, log-probs, status).
fn gpu_softmax<T: Logit>(
    s: &mut Sampler,
    b: &Batch<T>,
    tau: f32,
    temps: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let d = b.upload(s);
    let temps = temps.map(|t| upload(s, t));
    let rows = RowParams {
        temperature: temps.as_ref().map(|t| t.as_view()),
        ..Default::default()
    };
    let n = b.batch * b.vocab;
    let mut probs = s.stream().alloc_zeros::<f32>(n).unwrap();
    let mut logp = s.stream().alloc_zeros::<f32>(n).unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(b.batch).unwrap();
    s.softmax(
        &b.device(&d),
        tau,
        &rows,
        &mut probs.as_view_mut(),
        Some(&mut logp.as_view_mut()),
        Some(&mut st.as_view_mut()),
    )
    .unwrap();
    (download(s, &probs), download(s, &logp), download(s, &st))
}

/// GPU `sample_from_probs`: (tokens, status).
fn gpu_sample_probs(
    s: &mut Sampler,
    probs: &[f32],
    batch: usize,
    vocab: usize,
    seeds: &HostSeeds,
) -> (Vec<u32>, Vec<u32>) {
    gpu_draw_probs(s, probs, (batch, vocab, None), seeds)
}

/// GPU `sample_from_probs_n`: (tokens, `batch × n`; status).
fn gpu_sample_probs_n(
    s: &mut Sampler,
    probs: &[f32],
    (batch, vocab, n): (usize, usize, usize),
    seeds: &HostSeeds,
) -> (Vec<u32>, Vec<u32>) {
    gpu_draw_probs(s, probs, (batch, vocab, Some(n)), seeds)
}

/// `sample_from_probs_n` with n draws per row, or `sample_from_probs` for `None`.
fn gpu_draw_probs(
    s: &mut Sampler,
    probs: &[f32],
    (batch, vocab, n): (usize, usize, Option<usize>),
    seeds: &HostSeeds,
) -> (Vec<u32>, Vec<u32>) {
    let d = upload(s, probs);
    let seed_bufs = SeedBuffers::new(s, seeds);
    let mut tokens = s
        .stream()
        .alloc_zeros::<u32>(batch * n.unwrap_or(1))
        .unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(batch).unwrap();
    let (probs, seeds) = (d.as_view(), seed_bufs.device(seeds));
    let (out, status) = (&mut tokens.as_view_mut(), Some(&mut st.as_view_mut()));
    match n {
        None => s.sample_from_probs(&probs, batch, vocab, &seeds, out, status),
        Some(_) => s.sample_from_probs_n(&probs, batch, vocab, &seeds, out, status),
    }
    .unwrap();
    (download(s, &tokens), download(s, &st))
}

/// The per-row temperatures the tests use: a mix around 1 with a greedy row every 5th.
fn mixed_temperatures(batch: usize) -> Vec<f32> {
    (0..batch)
        .map(|r| {
            if r % 5 == 3 {
                0.0
            } else {
                [0.7, 1.0, 1.3, 0.9][r % 4]
            }
        })
        .collect()
}

/// f32 probabilities against the f64 reference: relative 1e-5, plus the rounding of u = z/τ
/// in f32 (SPEC: all device arithmetic is f32), which grows with |u| and the row's max.
fn assert_probs_close(
    gpu: &[f32],
    gpu_log: &[f32],
    cpu_p: &[f64],
    cpu_log: Option<&[f64]>,
    u_scale: f64,
    what: &str,
) {
    let slack = 1e-5 + 3.0e-7 * u_scale;
    let mut sum = 0.0;
    for (i, (&g, &c)) in gpu.iter().zip(cpu_p).enumerate() {
        let tol = c * slack + 1e-35;
        assert!(
            (f64::from(g) - c).abs() <= tol,
            "{what}: p[{i}] gpu {g:e} cpu {c:e}"
        );
        sum += f64::from(g);
    }
    if cpu_p.iter().any(|&c| c > 0.0) {
        assert!(
            (sum - 1.0).abs() < 1e-4,
            "{what}: probabilities sum to {sum}"
        );
    }
    if let Some(cl) = cpu_log {
        for (i, (&g, &c)) in gpu_log.iter().zip(cl).enumerate() {
            if c == f64::NEG_INFINITY {
                assert_eq!(g, f32::NEG_INFINITY, "{what}: log p[{i}]");
            } else {
                let tol = 1e-5 * c.abs().max(1.0) + 3.0e-7 * u_scale;
                assert!(
                    (f64::from(g) - c).abs() <= tol,
                    "{what}: log p[{i}] gpu {g} cpu {c}"
                );
            }
        }
    }
}

/// The largest |u| = |z|/τ of a row (finite values only), for the f32 rounding slack.
fn u_scale(z: &[f64], tau: f64) -> f64 {
    z.iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()))
        / tau.max(1e-30)
        * 2.0
}

// ---------------------------------------------------------------------------------------------
// Temperature softmax.
// ---------------------------------------------------------------------------------------------

/// Every row of a GPU `softmax` result against the CPU reference: one-hot at the argmax for
/// τ = 0 rows, else the probabilities and log-probabilities within the f32 slack; the status.
fn check_softmax_rows<T: Logit>(
    b: &Batch<T>,
    tau: f32,
    temps: Option<&[f32]>,
    (probs, logp, st): (&[f32], &[f32], &[u32]),
    name: &str,
) {
    let (batch, vocab) = (b.batch, b.vocab);
    let cpu_logits = b.cpu();
    for r in 0..batch {
        let what = format!(
            "{name} b{batch} v{vocab} per-row {} row {r}",
            temps.is_some()
        );
        let t = temps.map_or(tau, |t| t[r]);
        let (z, mut bits) = cpu::widen_row(cpu_logits.row(r));
        if z.iter().all(|&v| v == f64::NEG_INFINITY) {
            bits |= status::NO_FINITE_LOGIT;
        }
        let range = r * vocab..(r + 1) * vocab;
        if t == 0.0 {
            // One-hot at the argmax; log p is 0 there and -inf elsewhere.
            let at = cpu::argmax_row(&z) as usize;
            for i in 0..vocab {
                assert_eq!(
                    probs[r * vocab + i],
                    if i == at { 1.0 } else { 0.0 },
                    "{what}"
                );
                let want = if i == at { 0.0 } else { f32::NEG_INFINITY };
                assert_eq!(logp[r * vocab + i], want, "{what}");
            }
        } else {
            let p = cpu::softmax_row(&z, f64::from(t));
            let lp = cpu::log_softmax_row(&z, f64::from(t));
            assert_probs_close(
                &probs[range.clone()],
                &logp[range],
                &p,
                Some(&lp),
                u_scale(&z, f64::from(t)),
                &what,
            );
        }
        assert_eq!(st[r], bits, "{what}: status");
    }
}

fn softmax_matches_cpu<T: Logit>(s: &mut Sampler, name: &str) {
    for (k, (batch, vocab)) in shapes().into_iter().enumerate() {
        let dense = common::logits(Dist::Normal(2.0), batch, vocab, 11 + k as u64);
        let b = Batch::<T>::dense(convert(&dense), batch, vocab);
        let per_row = mixed_temperatures(batch);
        for temps in [None, Some(per_row.as_slice())] {
            let tau = 0.8;
            let (probs, logp, st) = gpu_softmax(s, &b, tau, temps);
            check_softmax_rows(&b, tau, temps, (&probs, &logp, &st), name);
        }
    }
}

#[test]
fn softmax_probabilities_match_the_cpu_reference_f32() {
    let mut s = gpu_or_skip!();
    softmax_matches_cpu::<f32>(&mut s, "f32");
}

#[test]
fn softmax_probabilities_match_the_cpu_reference_f16() {
    let mut s = gpu_or_skip!();
    softmax_matches_cpu::<f16>(&mut s, "f16");
}

#[test]
fn softmax_probabilities_match_the_cpu_reference_bf16() {
    let mut s = gpu_or_skip!();
    softmax_matches_cpu::<bf16>(&mut s, "bf16");
}

/// Logits up to the size where z/τ overflows f32 (FLT_MAX · τ), at temperatures below and above
/// 1, mixed within a thread's span of 8 with ordinary values, −∞, ±f32::MAX (τ ≥ 1 rows) and (one
/// row) NaN and +∞: the spans whose every |z| is below `unclamped_limit` (half the overflow) take
/// the kernels' shortcut (u = z/τ, no clamps), the others the value-by-value path, and both must
/// give the CPU's softmax, draw and status. (Past the overflow the device clamps u to FLT_MAX and
/// the f64 reference does not: no value goes there, nor does u − max u.)
fn huge_logits(batch: usize, vocab: usize, temps: &[f32]) -> Vec<f32> {
    let mut dense = common::logits(Dist::Normal(1.0), batch, vocab, 23);
    let factors = [0.3f32, 0.45, 0.499, 0.501, 0.55, 0.9, 0.99, 0.7];
    for (r, row) in dense.chunks_mut(vocab).enumerate() {
        let overflow = f32::MAX * temps[r].min(1.0); // |z| above this overflows z/τ
        let max = if temps[r] >= 1.0 { f32::MAX } else { 0.0 };
        let mut h = 0x9E37_79B9u32.wrapping_mul(r as u32 + 1);
        for (i, z) in row.iter_mut().enumerate() {
            h ^= h << 13;
            h ^= h >> 17;
            h ^= h << 5;
            // Most spans ordinary or huge throughout (the shortcut's two sides), some mixed.
            let span_kind = (i / 8 + r) % 4;
            // One sign a row: u − max u of a huge negative u under a huge positive max would
            // overflow f32 too (to a log p of −∞ on the device).
            let sign = if r % 2 == 0 { 1.0 } else { -1.0 };
            *z = match (span_kind, h % 16) {
                (0, _) => *z,
                (1 | 2, k) => sign * overflow * factors[k as usize % 4] * (1.0 + *z * 1e-3),
                (_, 0) => f32::NEG_INFINITY,
                (_, 1) => sign * max,
                (_, 2..=7) => sign * overflow * factors[(h as usize >> 4) % factors.len()],
                _ => *z,
            };
        }
        if r == 2 {
            row[5] = f32::NAN;
            row[vocab / 2] = f32::INFINITY;
        }
    }
    dense
}

fn huge_logits_match<T: Logit>(s: &mut Sampler, name: &str) {
    let (batch, vocab) = (5, 4099);
    let temps = [0.25f32, 1e-3, 1.0, 4.0, 0.7];
    let dense = huge_logits(batch, vocab, &temps);
    let b = Batch::<T>::dense(convert(&dense), batch, vocab);
    let (probs, logp, st) = gpu_softmax(s, &b, 1.0, Some(&temps));
    check_softmax_rows(&b, 1.0, Some(&temps), (&probs, &logp, &st), name);
    let seeds = HostSeeds::each(batch);
    let (tokens, st) = gpu_sample(s, &b, 1.0, Some(&temps), &seeds);
    let cpu_draws = cpu_sample(&b, 1.0, Some(&temps), &seeds);
    let what = format!("{name} huge logits");
    let near = assert_tokens_agree(&tokens, &cpu_draws, &what);
    assert!(near <= 1, "{what}: {near} near-boundary disagreements");
    let cpu_status: Vec<u32> = cpu_draws.iter().map(|d| d.status).collect();
    assert_eq!(st, cpu_status, "{what}: status");

    // One logit per row past the overflow (0.99 · f32::MAX at τ < 1): u is clamped to f32::MAX,
    // not +∞, so the row is one-hot there, as the reference's (whose u is exact) is.
    let temps = [0.25f32, 1e-3, 0.7];
    let (batch, vocab) = (temps.len(), 4099);
    let mut dense = common::logits(Dist::Normal(1.0), batch, vocab, 29);
    let at: Vec<usize> = (0..batch).map(|r| (r * 977 + 5) % vocab).collect();
    for r in 0..batch {
        dense[r * vocab + at[r]] = 0.99 * f32::MAX;
    }
    let b = Batch::<T>::dense(convert(&dense), batch, vocab);
    let (probs, _, st) = gpu_softmax(s, &b, 1.0, Some(&temps));
    for r in 0..batch {
        let row = &probs[r * vocab..(r + 1) * vocab];
        let want = |i| if i == at[r] { 1.0 } else { 0.0 };
        assert!(
            row.iter().enumerate().all(|(i, &p)| p == want(i)),
            "{name} overflowing logit, row {r}: not one-hot at {}",
            at[r]
        );
    }
    assert_eq!(st, [0; 3], "{name} overflowing logit: status");
    let seeds = HostSeeds::each(batch);
    let (tokens, _) = gpu_sample(s, &b, 1.0, Some(&temps), &seeds);
    let cpu_draws = cpu_sample(&b, 1.0, Some(&temps), &seeds);
    let cpu_tokens: Vec<u32> = cpu_draws.iter().map(|d| d.token).collect();
    let want: Vec<u32> = at.iter().map(|&i| i as u32).collect();
    assert_eq!(tokens, want, "{name} overflowing logit: drawn tokens");
    assert_eq!(
        cpu_tokens, want,
        "{name} overflowing logit: the reference's tokens"
    );
}

#[test]
fn logits_near_the_overflow_of_z_over_tau_match_the_cpu_reference() {
    let mut s = gpu_or_skip!();
    huge_logits_match::<f32>(&mut s, "f32");
    huge_logits_match::<bf16>(&mut s, "bf16");
}

#[test]
fn softmax_of_strided_and_unaligned_rows_matches_the_cpu_reference() {
    let mut s = gpu_or_skip!();
    // (batch, vocab, stride, lead): aligned stride > vocab, a stride that breaks 16-byte
    // alignment, and a base one element in (rows off 16-byte boundaries: shifted vector loads);
    // 8 contiguous rows of an odd vocab start at every element offset there is, for f32 (4)
    // and for bf16 (8); 96 of them split 3 ways hold 3-4 tiles a block, so the bf16 draw and
    // probabilities carry a shifted prefetch from tile to tile.
    for (batch, vocab, stride, lead) in [
        (3, 5000, 5004, 0),
        (3, 5000, 5003, 0),
        (4, 1001, 1001, 1),
        (2, 70000, 70016, 1),
        (8, 4099, 4099, 0),
        (96, 20001, 20001, 0),
    ] {
        let dense = common::logits(Dist::Normal(1.0), batch, vocab, 5);
        let b = Batch::<f32>::laid_out(&dense, batch, vocab, stride, lead);
        let (probs, logp, st) = gpu_softmax(&mut s, &b, 1.0, None);
        for r in 0..batch {
            let (z, _) = cpu::widen_row(b.cpu().row(r));
            let range = r * vocab..(r + 1) * vocab;
            let what = format!("b{batch} v{vocab} stride {stride} lead {lead} row {r}");
            let lp = cpu::log_softmax_row(&z, 1.0);
            assert_probs_close(
                &probs[range.clone()],
                &logp[range],
                &cpu::softmax_row(&z, 1.0),
                Some(&lp),
                u_scale(&z, 1.0),
                &what,
            );
        }
        assert_eq!(
            st,
            vec![0; batch],
            "status: the padding (NaN) must never be read"
        );
        let bh = Batch::<bf16>::laid_out(&dense, batch, vocab, stride, lead);
        s.set_softmax_staging(Staging::Never); // the two-read path (staged_rows_… has the other)
        let out = gpu_softmax(&mut s, &bh, 1.0, None);
        s.set_softmax_staging(Staging::Auto);
        check_softmax_rows(&bh, 1.0, None, (&out.0, &out.1, &out.2), "bf16, strided");
        let (tokens, _) = gpu_greedy(&mut s, &bh);
        assert_eq!(
            tokens,
            cpu::argmax(&bh.cpu()),
            "bf16 greedy, stride {stride} lead {lead}"
        );
        let seeds = HostSeeds::Shared(Rng::new(3));
        let (tokens, _) = gpu_sample(&mut s, &bh, 1.0, None, &seeds);
        assert_tokens_agree(
            &tokens,
            &cpu_sample(&bh, 1.0, None, &seeds),
            "bf16 sample, strided",
        );
    }
}

/// The staged path (sm_90: a cluster per row holds it in shared memory and reads it once)
/// against the CPU reference: each cluster size, a row whose last block holds fewer tiles or
/// none, a ragged last tile, per-row τ with greedy rows, f32/f16/bf16, strided and unaligned
/// rows (shifted vector loads), NaN/+inf/all -inf rows, log-probabilities absent; and when it is
/// (not) taken. Without clusters (below sm_90) every case runs the two-read paths instead.
#[test]
fn staged_rows_match_the_cpu_reference() {
    let mut s = gpu_or_skip!();
    let clusters = common::cluster_launch(&s);
    s.set_softmax_staging(Staging::Always);
    // (batch, vocab, cluster size): 1 tile over 2 blocks (one empty), 20 tiles = 10 + 10,
    // 35 tiles over 4 blocks (9, 9, 9, 8), 63 over 8 (the last 7), 75 over 8 (10 each but 5).
    let cases = [
        (3, 1000, 2),
        (2, 40000, 2),
        (2, 70001, 4),
        (1, 128256, 8),
        (2, 151936, 8),
    ];
    for (k, &(batch, vocab, blocks)) in cases.iter().enumerate() {
        let want = clusters.then_some(blocks);
        for got in [
            s.softmax_staged_blocks::<f32>(batch, vocab).unwrap(),
            s.softmax_staged_blocks::<bf16>(batch, vocab).unwrap(),
        ] {
            assert_eq!(got, want, "b{batch} v{vocab}: staged cluster size");
        }
        let dense = common::logits(Dist::Normal(2.0), batch, vocab, 40 + k as u64);
        let per_row = mixed_temperatures(batch + 3)[3..].to_vec(); // row 0 greedy
        for temps in [None, Some(per_row.as_slice())] {
            let b = Batch::<f32>::dense(dense.clone(), batch, vocab);
            let out = gpu_softmax(&mut s, &b, 0.8, temps);
            check_softmax_rows(&b, 0.8, temps, (&out.0, &out.1, &out.2), "staged f32");
            let b = Batch::<bf16>::dense(convert(&dense), batch, vocab);
            let out = gpu_softmax(&mut s, &b, 0.8, temps);
            check_softmax_rows(&b, 0.8, temps, (&out.0, &out.1, &out.2), "staged bf16");
        }
    }
    // Strided and unaligned rows; f16; bad values (every kind of bad row twice over).
    let dense = common::logits(Dist::Normal(1.0), 3, 5000, 9);
    for (stride, lead) in [(5004, 0), (5003, 0), (5000, 1)] {
        let b = Batch::<f32>::laid_out(&dense, 3, 5000, stride, lead);
        let out = gpu_softmax(&mut s, &b, 1.0, None);
        let what = format!("staged stride {stride} lead {lead}");
        check_softmax_rows(&b, 1.0, None, (&out.0, &out.1, &out.2), &what);
        let b = Batch::<f16>::laid_out(&dense, 3, 5000, stride, lead);
        let out = gpu_softmax(&mut s, &b, 1.0, None);
        check_softmax_rows(
            &b,
            1.0,
            None,
            (&out.0, &out.1, &out.2),
            &format!("{what} f16"),
        );
    }
    // Unaligned 16-bit rows load two tiles a step (StageGroup in softmax.cu), aligned ones four:
    // 19 tiles over two blocks (10 + 9), so the second block's last step holds one tile.
    let dense = common::logits(Dist::Normal(1.0), 2, 38000, 10);
    for lead in [0, 3] {
        let b = Batch::<bf16>::laid_out(&dense, 2, 38000, 38003, lead);
        let out = gpu_softmax(&mut s, &b, 0.9, None);
        let what = format!("staged bf16 stride 38003 lead {lead}");
        check_softmax_rows(&b, 0.9, None, (&out.0, &out.1, &out.2), &what);
    }
    let bad: Vec<f32> = bad_rows(5000).repeat(2);
    let b = Batch::<f32>::dense(bad, 10, 5000);
    let (probs, logp, st) = gpu_softmax(&mut s, &b, 1.0, None);
    check_softmax_rows(&b, 1.0, None, (&probs, &logp, &st), "staged bad rows");
    assert!(
        probs.iter().all(|p| p.is_finite()),
        "staged bad rows: non-finite p"
    );
    // Without log-probabilities.
    let b = Batch::<f32>::dense(dense.clone(), 3, 5000);
    let d = b.upload(&s);
    let mut probs = s.stream().alloc_zeros::<f32>(3 * 5000).unwrap();
    s.softmax(
        &b.device(&d),
        1.0,
        &RowParams::default(),
        &mut probs.as_view_mut(),
        None,
        None,
    )
    .unwrap();
    let (full, _, _) = gpu_softmax(&mut s, &b, 1.0, None);
    assert_eq!(
        download(&s, &probs),
        full,
        "staged, with and without log-probabilities"
    );

    // When it is taken: never above 8 x 10 tiles, never when told not to; by default only
    // where the two-read paths' second read would miss L2 (a large batch of long rows).
    assert_eq!(s.softmax_staged_blocks::<f32>(1, 163_841).unwrap(), None);
    s.set_softmax_staging(Staging::Never);
    assert_eq!(s.softmax_staged_blocks::<f32>(512, 32000).unwrap(), None);
    s.set_softmax_staging(Staging::Auto);
    assert_eq!(s.softmax_staged_blocks::<f32>(3, 40000).unwrap(), None);
    assert_eq!(s.softmax_staged_blocks::<f32>(512, 1000).unwrap(), None);
    assert_eq!(
        s.softmax_staged_blocks::<f32>(512, 32000).unwrap(),
        clusters.then_some(2)
    );
}

// ---------------------------------------------------------------------------------------------
// Greedy.
// ---------------------------------------------------------------------------------------------
// Log-probabilities of given tokens.
// ---------------------------------------------------------------------------------------------

/// GPU `token_log_probs`: (log-probs, status).
fn gpu_token_log_probs<T: Logit>(
    s: &mut Sampler,
    b: &Batch<T>,
    tau: f32,
    temps: Option<&[f32]>,
    tokens: &[u32],
) -> (Vec<f32>, Vec<u32>) {
    let d = b.upload(s);
    let temps = temps.map(|t| upload(s, t));
    let rows = RowParams {
        temperature: temps.as_ref().map(|t| t.as_view()),
        ..Default::default()
    };
    let t = upload(s, tokens);
    let mut out = s.stream().alloc_zeros::<f32>(tokens.len()).unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(b.batch).unwrap();
    s.token_log_probs(
        &b.device(&d),
        tau,
        &rows,
        &t.as_view(),
        &mut out.as_view_mut(),
        Some(&mut st.as_view_mut()),
    )
    .unwrap();
    (download(s, &out), download(s, &st))
}

/// `n` tokens per row: the argmax, the last token, pseudo-random ones, and in every 7th row
/// one past the vocabulary (u32::MAX, the token of a row with no finite logit).
fn query_tokens(b: &Batch<impl Logit>, n: usize, seed: u64) -> Vec<u32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(b.batch * n);
    for r in 0..b.batch {
        let z = cpu::widen_row(b.cpu().row(r)).0;
        for k in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(match k {
                0 => cpu::argmax_row(&z),
                1 if r % 7 == 6 => u32::MAX,
                1 => b.vocab as u32 - 1,
                _ => (x % b.vocab as u64) as u32,
            });
        }
    }
    out
}

/// token_log_probs against the CPU reference (the f32 slack of the softmax tests), and bit
/// for bit against the log-probabilities Sampler::softmax writes on the two-read paths, at
/// split rows (small batches) and whole rows, with scalar and per-row τ (greedy rows too).
fn token_log_probs_match<T: Logit>(s: &mut Sampler, name: &str) {
    s.set_softmax_staging(Staging::Never);
    let cases = [
        (1, 1, 1),
        (3, 7, 2),
        (512, 7, 3),
        (64, 1000, 300),
        (1, 32000, 5),
        (8, 32000, 3),
        (2, 128256, 4),
        (1, 262147, 2),
    ];
    for (k, (batch, vocab, n)) in cases.into_iter().enumerate() {
        let dense = common::logits(Dist::Normal(2.0), batch, vocab, 71 + k as u64);
        let b = Batch::<T>::dense(convert(&dense), batch, vocab);
        let tokens = query_tokens(&b, n, k as u64);
        let per_row = mixed_temperatures(batch);
        for temps in [None, Some(per_row.as_slice())] {
            let tau = 0.8;
            let what = format!("{name} b{batch} v{vocab} n{n} per-row {}", temps.is_some());
            let (got, st) = gpu_token_log_probs(s, &b, tau, temps, &tokens);
            let cpu_temps = temps.map_or(Rows::All(tau), Rows::Each);
            let want = cpu::token_log_probs(&b.cpu(), cpu_temps, &tokens).unwrap();
            let (_, dense_lp, dense_st) = gpu_softmax(s, &b, tau, temps);
            for r in 0..batch {
                let t = f64::from(temps.map_or(tau, |t| t[r]));
                let z = cpu::widen_row(b.cpu().row(r)).0;
                let mut clamped = 0;
                for j in r * n..(r + 1) * n {
                    let (g, c, i) = (got[j], want[j], tokens[j] as usize);
                    if i >= vocab {
                        clamped = status::PARAM_CLAMPED;
                        assert_eq!(g, f32::NEG_INFINITY, "{what} row {r}: token {i}");
                        continue;
                    }
                    assert_eq!(
                        g.to_bits(),
                        dense_lp[r * vocab + i].to_bits(),
                        "{what} row {r}: token {i} vs softmax's log_probs"
                    );
                    if c == f64::NEG_INFINITY {
                        assert_eq!(g, f32::NEG_INFINITY, "{what} row {r}: token {i}");
                    } else {
                        let tol = 1e-5 * c.abs().max(1.0) + 3.0e-7 * u_scale(&z, t.max(1e-30));
                        assert!(
                            (f64::from(g) - c).abs() <= tol,
                            "{what} row {r}: token {i}: gpu {g} cpu {c}"
                        );
                    }
                }
                assert_eq!(st[r], dense_st[r] | clamped, "{what} row {r}: status");
            }
        }
    }
    s.set_softmax_staging(Staging::Auto);
}

#[test]
fn token_log_probs_match_the_cpu_reference_and_softmax_f32() {
    let mut s = gpu_or_skip!();
    token_log_probs_match::<f32>(&mut s, "f32");
}

#[test]
fn token_log_probs_match_the_cpu_reference_and_softmax_f16_bf16() {
    let mut s = gpu_or_skip!();
    token_log_probs_match::<f16>(&mut s, "f16");
    token_log_probs_match::<bf16>(&mut s, "bf16");
}

/// Bad rows and bad requests: NaN / +inf / all-NaN rows flagged as by softmax, strided and
/// unaligned rows (shifted vector loads), and the host-side checks.
#[test]
fn token_log_probs_handle_bad_rows_and_refuse_bad_requests() {
    let mut s = gpu_or_skip!();
    let vocab = 5000;
    let mut dense = common::logits(Dist::Normal(1.0), 3, vocab, 9);
    dense[17] = f32::NAN;
    dense[vocab + 4999] = f32::INFINITY;
    dense[2 * vocab..].fill(f32::NAN);
    let b = Batch::<f32>::laid_out(&dense, 3, vocab, 5003, 1);
    let tokens = [17, 3, vocab as u32 - 1, 0, 4, 4];
    let (got, st) = gpu_token_log_probs(&mut s, &b, 1.0, None, &tokens);
    let want = cpu::token_log_probs(&b.cpu(), Rows::All(1.0), &tokens).unwrap();
    assert_eq!(got[0], f32::NEG_INFINITY, "a NaN logit counts as -inf");
    assert!(
        (f64::from(got[1]) - want[1]).abs() < 1e-5,
        "{} {}",
        got[1],
        want[1]
    );
    assert_eq!(got[2], 0.0, "+inf is the largest finite f32: probability 1");
    assert!(got[3] < -1e30 || got[3] == f32::NEG_INFINITY);
    assert_eq!(&got[4..], [f32::NEG_INFINITY; 2], "no finite logit");
    assert_eq!(
        st,
        [
            status::NAN_LOGIT,
            status::POS_INF_LOGIT,
            status::NAN_LOGIT | status::NO_FINITE_LOGIT
        ]
    );

    // Host-side checks: (tokens, τ, per-row k) → the error's parameter and lengths.
    let d = upload(&s, &vec![0.0f32; 4 * 100]);
    let logits = DeviceLogits::new(d.as_view(), 4, 100).unwrap();
    let k = upload(&s, &[1u32; 4]);
    let refused = |s: &mut Sampler, tokens: usize, tau: f32, top_k: bool| {
        let t = s.stream().alloc_zeros::<u32>(tokens).unwrap();
        let mut out = s.stream().alloc_zeros::<f32>(8).unwrap();
        let rows = RowParams {
            top_k: top_k.then(|| k.as_view()),
            ..Default::default()
        };
        let (t, out) = (&t.as_view(), &mut out.as_view_mut());
        s.token_log_probs(&logits, tau, &rows, t, out, None)
            .unwrap_err()
    };
    for (len, expected) in [(0, 4), (6, 4), (9, 8)] {
        let err = refused(&mut s, len, 1.0, false);
        assert!(
            matches!(err, Error::BadLength { name: "tokens", got, expected: e } if got == len && e == expected),
            "{len} tokens: {err}"
        );
    }
    let err = refused(&mut s, 12, 1.0, false);
    let want = Error::BadLength {
        name: "log_probs",
        got: 8,
        expected: 12,
    };
    assert_eq!(err.to_string(), want.to_string());
    let err = refused(&mut s, 8, f32::NAN, false);
    assert!(
        matches!(
            err,
            Error::BadParam {
                name: "temperature",
                ..
            }
        ),
        "{err}"
    );
    let err = refused(&mut s, 8, 1.0, true);
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
}

// ---------------------------------------------------------------------------------------------

fn greedy_matches_cpu<T: Logit>(s: &mut Sampler, name: &str) {
    for (k, (batch, vocab)) in shapes().into_iter().enumerate() {
        // Values on a coarse grid: many exact ties, so the lowest-index rule is exercised.
        let mut dense: Vec<f32> = common::logits(Dist::Normal(1.0), batch, vocab, 40 + k as u64)
            .iter()
            .map(|x| (x * 2.0).round() / 2.0)
            .collect();
        // A tie for the maximum in the last tile and the first: the first must win, also
        // when the two sit in different blocks of a split row.
        for r in 0..batch {
            dense[r * vocab + vocab - 1] = 9.0;
            dense[r * vocab + (r * 13) % vocab] = 9.0;
        }
        let b = Batch::<T>::dense(convert(&dense), batch, vocab);
        let (tokens, st) = gpu_greedy(s, &b);
        assert_eq!(tokens, cpu::argmax(&b.cpu()), "{name} b{batch} v{vocab}");
        assert!(st.iter().all(|&x| x == 0), "{name}: status {st:?}");
        // sample_softmax at τ = 0 is greedy too.
        let (tokens0, _) = gpu_sample(s, &b, 0.0, None, &HostSeeds::Shared(Rng::new(1)));
        assert_eq!(tokens0, tokens, "{name} b{batch} v{vocab}: τ = 0 sampling");
    }
}

#[test]
fn greedy_takes_the_argmax_with_ties_to_the_lowest_index_f32() {
    let mut s = gpu_or_skip!();
    greedy_matches_cpu::<f32>(&mut s, "f32");
}

#[test]
fn greedy_takes_the_argmax_with_ties_to_the_lowest_index_f16_bf16() {
    let mut s = gpu_or_skip!();
    greedy_matches_cpu::<f16>(&mut s, "f16");
    greedy_matches_cpu::<bf16>(&mut s, "bf16");
}

// ---------------------------------------------------------------------------------------------
// Drawing tokens: agreement with the CPU's draw.
// ---------------------------------------------------------------------------------------------

fn tokens_agree_with_cpu<T: Logit>(s: &mut Sampler, name: &str) {
    let mut near = 0;
    let mut rows = 0;
    for (k, (batch, vocab)) in shapes().into_iter().enumerate() {
        let dist = Dist::ALL[k % Dist::ALL.len()];
        let dense = common::logits(dist, batch, vocab, 70 + k as u64);
        let b = Batch::<T>::dense(convert(&dense), batch, vocab);
        let per_row = mixed_temperatures(batch);
        let cases: [(f32, Option<&[f32]>, HostSeeds); 3] = [
            (1.0, None, HostSeeds::Shared(Rng::new(42).at(k as u64))),
            (0.7, None, HostSeeds::each(batch)),
            (
                1.0,
                Some(per_row.as_slice()),
                HostSeeds::Shared(Rng::new(9)),
            ),
        ];
        for (tau, temps, seeds) in cases {
            let (tokens, st) = gpu_sample(s, &b, tau, temps, &seeds);
            let cpu_draws = cpu_sample(&b, tau, temps, &seeds);
            let what = format!(
                "{name} {dist:?} b{batch} v{vocab} τ {tau} per-row τ {} {}",
                temps.is_some(),
                seeds.label()
            );
            near += assert_tokens_agree(&tokens, &cpu_draws, &what);
            let cpu_status: Vec<u32> = cpu_draws.iter().map(|d| d.status).collect();
            assert_eq!(st, cpu_status, "{what}: status");
            assert!(
                tokens.iter().all(|&t| (t as usize) < vocab),
                "{what}: a token out of range"
            );
            rows += batch;
        }
    }
    eprintln!("{name}: {near} near-boundary disagreements in {rows} rows");
    assert!(
        near * 100 <= rows,
        "{name}: {near} near-boundary disagreements in {rows} rows"
    );
}

#[test]
fn sampled_tokens_agree_with_the_cpu_draw_f32() {
    let mut s = gpu_or_skip!();
    tokens_agree_with_cpu::<f32>(&mut s, "f32");
}

#[test]
fn sampled_tokens_agree_with_the_cpu_draw_f16() {
    let mut s = gpu_or_skip!();
    tokens_agree_with_cpu::<f16>(&mut s, "f16");
}

#[test]
fn sampled_tokens_agree_with_the_cpu_draw_bf16() {
    let mut s = gpu_or_skip!();
    tokens_agree_with_cpu::<bf16>(&mut s, "bf16");
}

#[test]
fn tokens_drawn_from_probabilities_agree_with_the_cpu_draw() {
    let mut s = gpu_or_skip!();
    let mut near = 0;
    for (k, (batch, vocab)) in shapes().into_iter().enumerate() {
        // Unnormalised weights, zeros, and bad entries that must weigh 0.
        let probs = awkward_probs(batch, vocab, 90 + k as u64);
        for seeds in [
            HostSeeds::Shared(Rng::new(5).at(k as u64)),
            HostSeeds::each(batch),
        ] {
            let (tokens, st) = gpu_sample_probs(&mut s, &probs, batch, vocab, &seeds);
            let cpu_draws = cpu::sample_from_probs(&probs, batch, vocab, seeds.rows()).unwrap();
            let what = format!("b{batch} v{vocab} {}", seeds.label());
            near += assert_tokens_agree(&tokens, &cpu_draws, &what);
            for (r, (&t, &bits)) in tokens.iter().zip(&st).enumerate() {
                let row = &probs[r * vocab..(r + 1) * vocab];
                if !row.iter().any(|&p| p > 0.0) {
                    // vocab 1: some rows hold only a zero, a negative or a NaN.
                    assert_eq!(t, status::NO_TOKEN, "{what}: row {r} has no weight");
                    assert_ne!(bits & status::NO_FINITE_LOGIT, 0, "{what}: row {r}");
                    continue;
                }
                let p = row[t as usize];
                assert!(p > 0.0, "{what}: row {r} drew token {t} of weight {p}");
                assert_eq!(bits & status::NO_FINITE_LOGIT, 0, "{what}");
            }
        }
    }
    eprintln!("sample_from_probs: {near} near-boundary disagreements");
}

/// Probabilities from Gumbel logits, made awkward: unnormalised, zeros, negatives and NaNs.
fn awkward_probs(batch: usize, vocab: usize, seed: u64) -> Vec<f32> {
    let dense = common::logits(Dist::Gumbel(1.0), batch, vocab, seed);
    let mut probs = Vec::with_capacity(batch * vocab);
    for r in 0..batch {
        let (z, _) = cpu::widen_row(&dense[r * vocab..(r + 1) * vocab]);
        probs.extend(cpu::softmax_row(&z, 1.0).iter().map(|&p| p as f32));
    }
    for (i, p) in probs.iter_mut().enumerate() {
        match i % 11 {
            0 => *p *= 3.0,
            5 => *p = 0.0,
            7 if i % 3 == 0 => *p = -p.abs(),
            9 if i % 7 == 0 => *p = f32::NAN,
            _ => {}
        }
    }
    probs
}

#[test]
fn several_draws_per_row_are_the_single_draws_at_successive_offsets() {
    let mut s = gpu_or_skip!();
    let mut near = 0;
    // (batch, vocab, n): split rows (small batches of long rows: one tile per block), whole
    // rows of several tiles (a batch of 300 fills the GPU: one block walks all 5 tiles of its
    // row), more draws than one launch takes (256), a row with nothing to draw (vocab 1),
    // unaligned shapes.
    let cases = [
        (1, 1, 3),
        (300, 9000, 4),
        (3, 7, 5),
        (64, 1000, 3),
        (1, 32000, 300),
        (8, 32000, 2),
        (2, 128256, 40),
        (1, 262147, 7),
        (40, 5000, 1),
    ];
    for (k, &(batch, vocab, n)) in cases.iter().enumerate() {
        let probs = awkward_probs(batch, vocab, 300 + k as u64);
        let mut each = HostSeeds::each(batch);
        if let HostSeeds::Each(v) = &mut each {
            v[0] = v[0].at(u64::MAX - 1); // offsets wrap past u64::MAX
        }
        for seeds in [HostSeeds::Shared(Rng::new(11).at(k as u64)), each] {
            let what = format!("b{batch} v{vocab} n{n} {}", seeds.label());
            let (tokens, st) = gpu_sample_probs_n(&mut s, &probs, (batch, vocab, n), &seeds);
            let cpu_draws =
                cpu::sample_from_probs_n(&probs, batch, vocab, n, seeds.rows()).unwrap();
            near += assert_tokens_agree(&tokens, &cpu_draws, &what);
            // The single draws at offset + j: the same tokens (and the same row status), but
            // for draws whose f32 arithmetic could fall either side of a boundary.
            let single: Vec<Vec<u32>> = (0..n.min(4))
                .map(|j| gpu_sample_probs(&mut s, &probs, batch, vocab, &seeds.shifted(j as u64)).0)
                .collect();
            let (_, st0) = gpu_sample_probs(&mut s, &probs, batch, vocab, &seeds);
            assert_eq!(st, st0, "{what}: status");
            for r in 0..batch {
                for (j, one) in single.iter().enumerate() {
                    let (got, want) = (tokens[r * n + j], one[r]);
                    let margin = cpu_draws[r * n + j].margin;
                    assert!(
                        got == want || margin < 1e-5,
                        "{what}: row {r} draw {j}: {got} where one draw gives {want}"
                    );
                }
            }
        }
    }
    eprintln!("sample_from_probs_n: {near} near-boundary disagreements");
}

#[test]
fn several_draws_per_row_follow_the_probabilities() {
    let mut s = gpu_or_skip!();
    // Few rows, many draws each: the draws within a row must be independent samples of it.
    // 100 tokens with weight, spread over three tiles (so tiles compete), few enough that
    // every one is expected ≥ 5 times in the emulator's shorter run too.
    let (batch, vocab) = (2usize, 4100usize);
    let n = common::scaled(&s, 1 << 19).div_ceil(batch);
    let row: Vec<f32> = (0..vocab)
        .map(|i| {
            if i % 41 == 3 {
                1.0 + (i % 7) as f32
            } else {
                0.0
            }
        })
        .collect();
    let host: Vec<f32> = row.iter().copied().cycle().take(batch * vocab).collect();
    let seeds = HostSeeds::Shared(Rng::new(78));
    let (tokens, _) = gpu_sample_probs_n(&mut s, &host, (batch, vocab, n), &seeds);
    let total: f64 = row.iter().map(|&x| f64::from(x)).sum();
    let q: Vec<f64> = row.iter().map(|&x| f64::from(x) / total).collect();
    for r in 0..batch {
        let mut counts = vec![0u64; vocab];
        for &t in &tokens[r * n..(r + 1) * n] {
            counts[t as usize] += 1;
        }
        let p = chi_square_p(&counts, &q);
        eprintln!("{n} draws of row {r} (v4100): chi-square p = {p:.4}");
        assert!(p > 1e-4, "row {r}: chi-square p = {p}");
    }
    // Successive draws of a row are not copies of each other.
    let repeats = tokens[..n].windows(2).filter(|w| w[0] == w[1]).count();
    let expected = q.iter().map(|x| x * x).sum::<f64>() * (n - 1) as f64;
    assert!(
        (repeats as f64) < 2.0 * expected + 20.0,
        "{repeats} repeats in a row, about {expected:.0} expected"
    );
}

// ---------------------------------------------------------------------------------------------
// Drawing tokens: frequencies (chi-square on >= 10^6 draws from one row).
// ---------------------------------------------------------------------------------------------

/// Draws `batch × launches` tokens from `row` at τ: a batch of identical rows under one
/// shared seed (stream = row index makes them independent), the offset stepping per launch.
fn draw_counts(s: &mut Sampler, row: &[f32], tau: f32, batch: usize, launches: usize) -> Vec<u64> {
    let vocab = row.len();
    let host: Vec<f32> = row.iter().copied().cycle().take(batch * vocab).collect();
    let d = upload(s, &host);
    let logits = DeviceLogits::new(d.as_view(), batch, vocab).unwrap();
    let mut all = s.stream().alloc_zeros::<u32>(batch * launches).unwrap();
    for k in 0..launches {
        let seeds = DeviceSeeds::Shared(Rng::new(0x5eed).at(k as u64));
        let mut out = all.slice_mut(k * batch..(k + 1) * batch);
        s.sample_softmax(&logits, tau, &RowParams::default(), &seeds, &mut out, None)
            .unwrap();
    }
    let mut counts = vec![0u64; vocab];
    for t in download(s, &all) {
        assert!((t as usize) < vocab, "token {t} out of range");
        counts[t as usize] += 1;
    }
    counts
}

fn assert_frequencies(
    s: &mut Sampler,
    row: &[f32],
    tau: f32,
    batch: usize,
    launches: usize,
    what: &str,
) {
    // Fewer launches on the emulator (tests/common::scaled).
    let launches = common::scaled(s, batch * launches).div_ceil(batch);
    assert!(batch * launches >= common::scaled(s, 1_000_000));
    let counts = draw_counts(s, row, tau, batch, launches);
    let q = cpu::softmax_row(&cpu::widen_row(row).0, f64::from(tau));
    let p = chi_square_p(&counts, &q);
    eprintln!("{what}: chi-square p = {p:.4}");
    assert!(p > 1e-4, "{what}: chi-square p = {p}");
    // Per draw tile too: the tiles' Gumbel competition decides these.
    let tiles = row.len().div_ceil(cpu::DRAW_TILE);
    if tiles > 1 {
        let per_tile =
            |v: &[f64]| -> Vec<f64> { v.chunks(cpu::DRAW_TILE).map(|c| c.iter().sum()).collect() };
        let c: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
        let tile_counts: Vec<u64> = per_tile(&c).iter().map(|&x| x as u64).collect();
        let p = chi_square_p(&tile_counts, &per_tile(&q));
        eprintln!("{what}: per-tile chi-square p = {p:.4}");
        assert!(p > 1e-4, "{what}: per-tile chi-square p = {p}");
    }
}

#[test]
fn draws_from_a_flat_row_are_uniform() {
    let mut s = gpu_or_skip!();
    assert_frequencies(&mut s, &vec![0.0; 1000], 1.0, 16384, 64, "flat v1000");
}

#[test]
fn draws_from_a_peaked_row_follow_its_softmax() {
    let mut s = gpu_or_skip!();
    let row = common::logits(Dist::Normal(5.0), 1, 1000, 123);
    assert_frequencies(&mut s, &row, 1.0, 16384, 64, "normal(5) v1000");
    let row = common::logits(Dist::Gumbel(0.1), 1, 1000, 124);
    assert_frequencies(&mut s, &row, 1.0, 16384, 64, "gumbel(0.1) v1000");
}

#[test]
fn draws_from_a_gumbel_row_follow_its_softmax_at_several_temperatures() {
    let mut s = gpu_or_skip!();
    let row = common::logits(Dist::Gumbel(1.0), 1, 3000, 125);
    for tau in [0.6, 1.0, 1.5] {
        assert_frequencies(
            &mut s,
            &row,
            tau,
            8192,
            128,
            &format!("gumbel(1) v3000 τ {tau}"),
        );
    }
}

#[test]
fn draws_from_rows_split_over_blocks_follow_the_softmax() {
    let mut s = gpu_or_skip!();
    // 20000 tokens = 10 tiles; 64 rows make the launch split each row over several blocks
    // (2 × SMs / 64 of them), so the ticketed merge decides every token. Mass sits in every
    // tile, unevenly: a background plus a few large logits.
    let mut row: Vec<f32> = (0..20000)
        .map(|i| -2.0 + ((i * 7919) % 101) as f32 / 100.0)
        .collect();
    for (j, i) in (0..20000).step_by(517).enumerate() {
        row[i] = 1.0 + (j % 5) as f32 * 0.5;
    }
    assert_frequencies(&mut s, &row, 1.0, 64, 16384, "split rows v20000");
}

#[test]
fn draws_from_probabilities_follow_them() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (4096usize, 2500usize);
    let launches = common::scaled(&s, batch * 256).div_ceil(batch);
    let row: Vec<f32> = (0..vocab)
        .map(|i| {
            if i % 10 == 0 {
                0.0
            } else {
                1.0 + (i % 7) as f32
            }
        })
        .collect();
    let host: Vec<f32> = row.iter().copied().cycle().take(batch * vocab).collect();
    let d = upload(&s, &host);
    let mut all = s.stream().alloc_zeros::<u32>(batch * launches).unwrap();
    for k in 0..launches {
        let seeds = DeviceSeeds::Shared(Rng::new(77).at(k as u64));
        let mut out = all.slice_mut(k * batch..(k + 1) * batch);
        s.sample_from_probs(&d.as_view(), batch, vocab, &seeds, &mut out, None)
            .unwrap();
    }
    let mut counts = vec![0u64; vocab];
    for t in download(&s, &all) {
        counts[t as usize] += 1;
    }
    let total: f64 = row.iter().map(|&x| f64::from(x)).sum();
    let q: Vec<f64> = row.iter().map(|&x| f64::from(x) / total).collect();
    let p = chi_square_p(&counts, &q);
    eprintln!("probabilities v2500: chi-square p = {p:.4}");
    assert!(p > 1e-4, "chi-square p = {p}");
}

#[test]
fn a_token_of_probability_zero_is_never_drawn() {
    let mut s = gpu_or_skip!();
    // Odd tokens are -inf (or NaN), over 3 tiles; huge logits on excluded neighbours do not leak.
    let vocab = 5000;
    let row: Vec<f32> = (0..vocab)
        .map(|i| match i % 4 {
            1 => f32::NEG_INFINITY,
            3 => f32::NAN,
            _ => ((i * 31) % 17) as f32 * 0.3,
        })
        .collect();
    for batch in [4, 2048] {
        let launches = common::scaled(&s, 200_000).div_ceil(batch);
        let counts = draw_counts(&mut s, &row, 1.0, batch, launches);
        for (i, &c) in counts.iter().enumerate() {
            if i % 2 == 1 {
                assert_eq!(c, 0, "batch {batch}: excluded token {i} drawn {c} times");
            }
        }
    }
    // One kept token in a long row: always that one.
    let mut row = vec![f32::NEG_INFINITY; 262147];
    row[200_001] = -50.0;
    let counts = draw_counts(&mut s, &row, 1.0, 4, 64);
    assert_eq!(counts[200_001], 256);
}

// ---------------------------------------------------------------------------------------------
// The random stream: reproducible, per-row, the same on both sides.
// ---------------------------------------------------------------------------------------------

#[test]
fn same_seed_and_offset_give_the_same_tokens_and_another_seed_or_offset_does_not() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (64, 32000);
    let b = Batch::<bf16>::dense(
        convert(&common::logits(Dist::Normal(1.0), batch, vocab, 8)),
        batch,
        vocab,
    );
    let base = HostSeeds::Shared(Rng::new(1234).at(5));
    let (t1, _) = gpu_sample(&mut s, &b, 1.0, None, &base);
    for _ in 0..3 {
        assert_eq!(
            gpu_sample(&mut s, &b, 1.0, None, &base).0,
            t1,
            "same seed and offset, other tokens"
        );
    }
    for other in [
        HostSeeds::Shared(Rng::new(1235).at(5)),
        HostSeeds::Shared(Rng::new(1234).at(6)),
    ] {
        let (t2, _) = gpu_sample(&mut s, &b, 1.0, None, &other);
        let same = t1.iter().zip(&t2).filter(|(a, b)| a == b).count();
        // Each row has ~32000 comparable choices: a few coincidences at most.
        assert!(
            same < batch / 4,
            "{}: {same} of {batch} tokens unchanged",
            other.label()
        );
    }
}

#[test]
fn per_row_seeds_make_a_rows_token_independent_of_its_position() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (48, 151936);
    let dense = common::logits(Dist::Gumbel(1.0), batch, vocab, 21);
    let b = Batch::<f16>::dense(convert(&dense), batch, vocab);
    let seeds = HostSeeds::each(batch);
    let (tokens, _) = gpu_sample(&mut s, &b, 1.0, None, &seeds);
    assert_tokens_agree(&tokens, &cpu_sample(&b, 1.0, None, &seeds), "per-row seeds");

    // The rows reversed, with their seeds: the tokens reverse.
    let mut rev = Vec::with_capacity(batch * vocab);
    for r in (0..batch).rev() {
        rev.extend_from_slice(&dense[r * vocab..(r + 1) * vocab]);
    }
    let HostSeeds::Each(v) = &seeds else {
        unreachable!()
    };
    let rev_seeds = HostSeeds::Each(v.iter().rev().copied().collect());
    let (rev_tokens, _) = gpu_sample(
        &mut s,
        &Batch::<f16>::dense(convert(&rev), batch, vocab),
        1.0,
        None,
        &rev_seeds,
    );
    let mut back = rev_tokens.clone();
    back.reverse();
    assert_eq!(back, tokens);

    // Each row alone (a batch of 1 is split over many blocks): bit-identical tokens, since a
    // tile's key and candidate do not depend on which block computed them.
    for r in [0, 17, 47] {
        let one = Batch::<f16>::dense(convert(&dense[r * vocab..(r + 1) * vocab]), 1, vocab);
        let (t, _) = gpu_sample(&mut s, &one, 1.0, None, &HostSeeds::Each(vec![v[r]]));
        assert_eq!(t[0], tokens[r], "row {r} alone");
    }
}

#[test]
fn split_rows_give_the_same_tokens_as_whole_rows() {
    let mut s = gpu_or_skip!();
    // 512 rows run one block per row; the same rows one at a time run split over many
    // blocks. Per-row seeds (stream 0) make the two comparable token for token.
    let (batch, vocab) = (512, 32000);
    let dense = common::logits(Dist::Normal(1.0), batch, vocab, 33);
    let b = Batch::<f32>::dense(dense.clone(), batch, vocab);
    let seeds = HostSeeds::each(batch);
    let (whole, _) = gpu_sample(&mut s, &b, 1.0, None, &seeds);
    let (greedy_whole, _) = gpu_greedy(&mut s, &b);
    let HostSeeds::Each(v) = &seeds else {
        unreachable!()
    };
    for r in (0..batch).step_by(37) {
        let one = Batch::<f32>::dense(dense[r * vocab..(r + 1) * vocab].to_vec(), 1, vocab);
        let (t, _) = gpu_sample(&mut s, &one, 1.0, None, &HostSeeds::Each(vec![v[r]]));
        assert_eq!(t[0], whole[r], "row {r}: sampled");
        assert_eq!(
            gpu_greedy(&mut s, &one).0[0],
            greedy_whole[r],
            "row {r}: greedy"
        );
    }
}

#[test]
fn device_philox_matches_the_host_stream_bit_for_bit() {
    let mut s = gpu_or_skip!();
    // SPEC's known answers, laid out as row_random's (seed, offset, stream, tile), then a
    // spread of other inputs compared with src/philox.rs.
    let mut seeds = vec![0, u64::MAX, 0x299f_31d0_a409_3822];
    let mut offsets = vec![0, u64::MAX, 0x0370_7344_1319_8a2e];
    let mut streams = vec![0, u32::MAX, 0x85a3_08d3];
    let mut tiles = vec![0, u32::MAX, 0x243f_6a88];
    let known = [
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..1000 {
        seeds.push(next());
        offsets.push(next());
        streams.push(next() as u32);
        tiles.push((next() % 1024) as u32);
    }
    let n = seeds.len();
    let (ds, dof, dst, dt) = (
        upload(&s, &seeds),
        upload(&s, &offsets),
        upload(&s, &streams),
        upload(&s, &tiles),
    );
    let mut out = s.stream().alloc_zeros::<u32>(4 * n).unwrap();
    s.philox_words(
        &ds.as_view(),
        &dof.as_view(),
        &dst.as_view(),
        &dt.as_view(),
        &mut out.as_view_mut(),
    )
    .unwrap();
    let words = download(&s, &out);
    for i in 0..n {
        let host = samplex::philox::row_random(seeds[i], offsets[i], streams[i], tiles[i]);
        assert_eq!(words[4 * i..4 * i + 4], host, "input {i}");
        if i < known.len() {
            assert_eq!(host, known[i], "known answer {i}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input (SPEC "Bad input").
// ---------------------------------------------------------------------------------------------

/// Rows of `vocab` with bad values: NaN among finite, one +inf, all -inf, all NaN, one finite.
fn bad_rows(vocab: usize) -> Vec<f32> {
    let mut v = Vec::new();
    for r in 0..5 {
        for i in 0..vocab {
            v.push(match r {
                0 => {
                    if i % 3 == 0 {
                        f32::NAN
                    } else {
                        (i % 10) as f32 * 0.1
                    }
                }
                1 => {
                    if i == vocab - 5 {
                        f32::INFINITY
                    } else {
                        (i % 10) as f32
                    }
                }
                2 => f32::NEG_INFINITY,
                3 => f32::NAN,
                _ => {
                    if i == vocab / 2 {
                        -3.0
                    } else {
                        f32::NEG_INFINITY
                    }
                }
            });
        }
    }
    v
}

fn bad_logits_are_handled<T: Logit>(s: &mut Sampler, name: &str) {
    let vocab = 5000;
    let rows = bad_rows(vocab);
    // 5 rows: split over blocks; the same rows repeated to 500: one block per row.
    for reps in [1, 100] {
        let batch = 5 * reps;
        let dense: Vec<f32> = rows.iter().copied().cycle().take(batch * vocab).collect();
        let b = Batch::<T>::dense(convert(&dense), batch, vocab);
        let what = format!("{name} batch {batch}");
        let seeds = HostSeeds::Shared(Rng::new(2));
        let (tokens, st) = gpu_sample(s, &b, 1.0, None, &seeds);
        let (gtokens, gst) = gpu_greedy(s, &b);
        let (probs, logp, pst) = gpu_softmax(s, &b, 1.0, None);
        let cpu_draws = cpu_sample(&b, 1.0, None, &seeds);
        assert_tokens_agree(&tokens, &cpu_draws, &what);
        for r in 0..batch {
            let kind = r % 5;
            let want: u32 = match kind {
                0 => status::NAN_LOGIT,
                1 => status::POS_INF_LOGIT,
                2 => status::NO_FINITE_LOGIT,
                3 => status::NAN_LOGIT | status::NO_FINITE_LOGIT,
                _ => 0,
            };
            assert_eq!(st[r], want, "{what} row {r}: sample status");
            assert_eq!(gst[r], want, "{what} row {r}: greedy status");
            assert_eq!(pst[r], want, "{what} row {r}: softmax status");
            let row_p = &probs[r * vocab..(r + 1) * vocab];
            match kind {
                0 => assert!(tokens[r] % 3 != 0, "{what}: drew a NaN token"),
                1 => {
                    // +inf counts as f32::MAX: it takes all the mass.
                    assert_eq!(tokens[r] as usize, vocab - 5);
                    assert_eq!(gtokens[r] as usize, vocab - 5);
                    assert_eq!(row_p[vocab - 5], 1.0);
                }
                2 | 3 => {
                    assert_eq!(tokens[r], status::NO_TOKEN);
                    assert_eq!(gtokens[r], status::NO_TOKEN);
                    assert!(
                        row_p.iter().all(|&p| p == 0.0),
                        "{what}: probabilities of an empty row"
                    );
                    assert!(logp[r * vocab..(r + 1) * vocab]
                        .iter()
                        .all(|&l| l == f32::NEG_INFINITY));
                }
                _ => {
                    assert_eq!(tokens[r] as usize, vocab / 2);
                    assert_eq!(gtokens[r] as usize, vocab / 2);
                    assert_eq!(row_p[vocab / 2], 1.0);
                }
            }
            assert!(
                row_p.iter().all(|p| p.is_finite()),
                "{what} row {r}: non-finite probability"
            );
        }
        assert_eq!(gtokens, cpu::argmax(&b.cpu()), "{what}: greedy");
    }
}

#[test]
fn nan_and_infinite_logits_are_sanitised_and_flagged() {
    let mut s = gpu_or_skip!();
    bad_logits_are_handled::<f32>(&mut s, "f32");
    bad_logits_are_handled::<f16>(&mut s, "f16");
    bad_logits_are_handled::<bf16>(&mut s, "bf16");
}

#[test]
fn a_row_without_positive_probability_gets_no_token() {
    let mut s = gpu_or_skip!();
    let vocab = 3000;
    let mut probs = vec![0.0f32; 3 * vocab];
    probs[vocab..2 * vocab].fill(f32::NAN);
    probs[2 * vocab + 2999] = 0.25;
    let (tokens, st) = gpu_sample_probs(&mut s, &probs, 3, vocab, &HostSeeds::Shared(Rng::new(1)));
    assert_eq!(tokens, [status::NO_TOKEN, status::NO_TOKEN, 2999]);
    assert_eq!(st[0], status::NO_FINITE_LOGIT);
    assert_eq!(st[1], status::NO_FINITE_LOGIT | status::NAN_LOGIT);
    assert_eq!(st[2], 0);
}

#[test]
fn per_row_temperatures_override_the_scalar_and_bad_ones_are_clamped() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (40, 7000);
    let dense = common::logits(Dist::Normal(1.0), batch, vocab, 61);
    let b = Batch::<f32>::dense(dense, batch, vocab);
    // Valid per-row values (0 = greedy) against the CPU with the same per-row decoders.
    let temps = mixed_temperatures(batch);
    let seeds = HostSeeds::Shared(Rng::new(8));
    let (tokens, st) = gpu_sample(&mut s, &b, 5.0, Some(&temps), &seeds);
    assert_tokens_agree(
        &tokens,
        &cpu_sample(&b, 5.0, Some(&temps), &seeds),
        "per-row τ",
    );
    assert!(st.iter().all(|&x| x == 0));
    // Out of range: negative -> 0 (greedy), NaN -> 1, +inf -> f32::MAX; each flagged.
    let bad: Vec<f32> = (0..batch)
        .map(|r| match r % 4 {
            0 => -1.0,
            1 => f32::NAN,
            2 => f32::INFINITY,
            _ => 1.0,
        })
        .collect();
    let clamped: Vec<f32> = bad
        .iter()
        .map(|&t| {
            if t.is_nan() {
                1.0
            } else {
                t.clamp(0.0, f32::MAX)
            }
        })
        .collect();
    let (tokens, st) = gpu_sample(&mut s, &b, 1.0, Some(&bad), &seeds);
    let cpu_draws = cpu_sample(&b, 1.0, Some(&clamped), &seeds);
    assert_tokens_agree(&tokens, &cpu_draws, "clamped per-row τ");
    let (probs, _, pst) = gpu_softmax(&mut s, &b, 1.0, Some(&bad));
    for r in 0..batch {
        let want = if r % 4 == 3 { 0 } else { status::PARAM_CLAMPED };
        assert_eq!(st[r], want, "row {r}: sample status");
        assert_eq!(pst[r], want, "row {r}: softmax status");
        if r % 4 == 0 {
            let at = cpu::argmax_row(&cpu::widen_row(b.cpu().row(r)).0) as usize;
            assert_eq!(tokens[r] as usize, at, "row {r}: τ < 0 must be greedy");
            assert_eq!(probs[r * vocab + at], 1.0, "row {r}: τ < 0 must be one-hot");
        }
    }
}

#[test]
fn host_side_checks_refuse_bad_requests_before_launching() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (4, 100);
    let d = upload(&s, &vec![0.0f32; batch * vocab]);
    let logits = DeviceLogits::new(d.as_view(), batch, vocab).unwrap();
    let mut tokens = s.stream().alloc_zeros::<u32>(batch).unwrap();
    let mut short = s.stream().alloc_zeros::<u32>(batch - 1).unwrap();
    let mut probs = s.stream().alloc_zeros::<f32>(batch * vocab).unwrap();
    let shared = DeviceSeeds::Shared(Rng::new(1));
    let none = RowParams::default();
    for tau in [-1.0, f32::NAN, f32::INFINITY] {
        let r = s.sample_softmax(
            &logits,
            tau,
            &none,
            &shared,
            &mut tokens.as_view_mut(),
            None,
        );
        assert!(
            matches!(
                r,
                Err(Error::BadParam {
                    name: "temperature",
                    ..
                })
            ),
            "τ {tau}: {r:?}"
        );
        let r = s.softmax(&logits, tau, &none, &mut probs.as_view_mut(), None, None);
        assert!(
            matches!(
                r,
                Err(Error::BadParam {
                    name: "temperature",
                    ..
                })
            ),
            "τ {tau}: {r:?}"
        );
    }
    let r = s.sample_softmax(&logits, 1.0, &none, &shared, &mut short.as_view_mut(), None);
    assert!(
        matches!(r, Err(Error::BadLength { name: "tokens", .. })),
        "{r:?}"
    );
    let r = s.greedy(&logits, &mut short.as_view_mut(), None);
    assert!(
        matches!(r, Err(Error::BadLength { name: "tokens", .. })),
        "{r:?}"
    );
    let r = s.sample_softmax(
        &logits,
        1.0,
        &none,
        &shared,
        &mut tokens.as_view_mut(),
        Some(&mut short.as_view_mut()),
    );
    assert!(
        matches!(r, Err(Error::BadLength { name: "status", .. })),
        "{r:?}"
    );
    let mut small = s.stream().alloc_zeros::<f32>(batch * vocab - 1).unwrap();
    let r = s.softmax(&logits, 1.0, &none, &mut small.as_view_mut(), None, None);
    assert!(
        matches!(r, Err(Error::BadLength { name: "probs", .. })),
        "{r:?}"
    );
    let temps = upload(&s, &[1.0f32; 3]);
    let rows = RowParams {
        temperature: Some(temps.as_view()),
        ..Default::default()
    };
    let r = s.sample_softmax(
        &logits,
        1.0,
        &rows,
        &shared,
        &mut tokens.as_view_mut(),
        None,
    );
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
    let (seeds, offsets) = (upload(&s, &[1u64; 4]), upload(&s, &[1u64; 5]));
    let each = DeviceSeeds::Each {
        seeds: seeds.as_view(),
        offsets: offsets.as_view(),
    };
    let r = s.sample_softmax(&logits, 1.0, &none, &each, &mut tokens.as_view_mut(), None);
    assert!(
        matches!(
            r,
            Err(Error::BadLength {
                name: "offsets",
                ..
            })
        ),
        "{r:?}"
    );
    let r = s.sample_from_probs(
        &d.as_view(),
        batch,
        vocab + 1,
        &shared,
        &mut tokens.as_view_mut(),
        None,
    );
    assert!(
        matches!(r, Err(Error::BadLength { name: "probs", .. })),
        "{r:?}"
    );
    let r = s.sample_from_probs(
        &d.as_view(),
        0,
        vocab,
        &shared,
        &mut tokens.as_view_mut(),
        None,
    );
    assert!(matches!(r, Err(Error::EmptyBatch)), "{r:?}");
    // n draws per row: `tokens` must be a non-empty multiple of the batch (6 = 4 + 2 is not).
    let mut six = s.stream().alloc_zeros::<u32>(6).unwrap();
    for out in [&mut short, &mut six] {
        let r = s.sample_from_probs_n(
            &d.as_view(),
            batch,
            vocab,
            &shared,
            &mut out.as_view_mut(),
            None,
        );
        assert!(
            matches!(r, Err(Error::BadLength { name: "tokens", .. })),
            "{r:?}"
        );
    }
    let mut eight = s.stream().alloc_zeros::<u32>(2 * batch).unwrap();
    let r = s.sample_from_probs_n(
        &d.as_view(),
        batch,
        vocab,
        &shared,
        &mut eight.as_view_mut(),
        Some(&mut short.as_view_mut()),
    );
    assert!(
        matches!(r, Err(Error::BadLength { name: "status", .. })),
        "{r:?}"
    );
    let r = s.sample_from_probs_n(
        &d.as_view(),
        batch,
        vocab + 1,
        &shared,
        &mut eight.as_view_mut(),
        None,
    );
    assert!(
        matches!(r, Err(Error::BadLength { name: "probs", .. })),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// CUDA graphs: no host sync, no allocation, no hidden state between calls.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_captured_graph_replays_on_new_logits() {
    let mut s = gpu_or_skip!();
    // Every buffer here lives on the sampler's stream; no cross-stream events inside capture.
    // SAFETY: all work in this test is on one stream, and nothing is freed while in use.
    unsafe { s.context().disable_event_tracking() };
    let (batch, vocab) = (4, 32000); // split rows: partials and tickets inside the graph
    let seed = Rng::new(99).at(3);
    // One token per row: a spike of 60 over zeros.
    let spiked = |k: usize| common::spiked(vec![0.0f32; batch * vocab], batch, vocab, k);
    let want = |k: usize| common::spike_tokens(batch, vocab, k);
    let mut d = upload(&s, &spiked(0));
    let mut tokens = s.stream().alloc_zeros::<u32>(batch).unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(batch).unwrap();

    // Warm up outside the capture: loads the function and grows the workspace.
    {
        let logits = DeviceLogits::new(d.as_view(), batch, vocab).unwrap();
        s.sample_softmax(
            &logits,
            1.0,
            &RowParams::default(),
            &DeviceSeeds::Shared(seed),
            &mut tokens.as_view_mut(),
            Some(&mut st.as_view_mut()),
        )
        .unwrap();
    }
    assert_eq!(download(&s, &tokens), want(0));
    s.stream().synchronize().unwrap();

    let graph = common::capture(&mut s, |s| {
        let logits = DeviceLogits::new(d.as_view(), batch, vocab).unwrap();
        s.sample_softmax(
            &logits,
            1.0,
            &RowParams::default(),
            &DeviceSeeds::Shared(seed),
            &mut tokens.as_view_mut(),
            Some(&mut st.as_view_mut()),
        )
        .unwrap();
    });

    for k in [1, 2, 2, 3] {
        s.stream().memcpy_htod(&spiked(k), &mut d).unwrap();
        s.stream().memset_zeros(&mut tokens).unwrap();
        graph.launch().unwrap();
        assert_eq!(download(&s, &tokens), want(k), "replay on logits {k}");
        assert_eq!(
            download(&s, &st),
            vec![0; batch],
            "replay on logits {k}: status"
        );
    }

    // A graph replay draws exactly what a direct call draws on the same inputs.
    let dense = common::logits(Dist::Normal(1.0), batch, vocab, 4);
    s.stream().memcpy_htod(&dense, &mut d).unwrap();
    graph.launch().unwrap();
    let replayed = download(&s, &tokens);
    let b = Batch::<f32>::dense(dense, batch, vocab);
    let (direct, _) = gpu_sample(&mut s, &b, 1.0, None, &HostSeeds::Shared(seed));
    assert_eq!(replayed, direct);
}
