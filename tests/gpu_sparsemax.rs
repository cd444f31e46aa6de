//! Sparsemax on the GPU (kernels/sparsemax.cu) against the CPU reference: SPEC "Sparsemax",
//! "Drawing a token" and "Bad input". Every test skips (and says so) where there is no GPU.
//!
//! Tolerances: q within 1e-6 of the f64 reference (the kernel works in f32 on u − max u, so
//! its error is a few ulps of 1, not of the logits); τ ∈ {0.5, 1, 2} makes z·(1/τ) exact in f32.
//! The support size k* may differ from the CPU's only by tokens whose u lies within 1e-6 of θ.

mod common;

use common::{convert, download, upload};

use common::{assert_tokens_agree, chi_square_p, Dist};
use cudarc::driver::CudaSlice;
use half::{bf16, f16};
use samplex::cpu::{self, Draw};
use samplex::gpu::sparsemax::SparsemaxPath;
use samplex::gpu::{DeviceLogits, DeviceSeeds, RowParams, RowSplit, Sampler};
use samplex::{status, Decoder, Error, Logit, Logits, Rng, Rows};

const TOL: f64 = 1e-6;

/// A dense host batch placed on the device `stride` apart, `lead` elements into the buffer
/// (lead = 1 misaligns the rows: the `_any` kernels, the cooperative grid's `_v1`).
fn place<T: Logit>(
    s: &Sampler,
    host: &[T],
    batch: usize,
    vocab: usize,
    stride: usize,
    lead: usize,
) -> CudaSlice<T> {
    let mut buf = vec![T::default(); lead + (batch - 1) * stride + vocab];
    for r in 0..batch {
        buf[lead + r * stride..lead + r * stride + vocab]
            .copy_from_slice(&host[r * vocab..(r + 1) * vocab]);
    }
    upload(s, &buf)
}

/// The GPU's q, k* and status for a dense host batch.
struct Out {
    q: Vec<f32>,
    support: Vec<u32>,
    status: Vec<u32>,
}

#[allow(clippy::too_many_arguments)]
fn gpu_sparsemax<T: Logit>(
    s: &mut Sampler,
    host: &[T],
    batch: usize,
    vocab: usize,
    stride: usize,
    lead: usize,
    tau: f32,
    temps: Option<&[f32]>,
) -> Out {
    let dev = place(s, host, batch, vocab, stride, lead);
    let logits = DeviceLogits::with_stride(dev.slice(lead..), batch, vocab, stride).unwrap();
    let temps = temps.map(|t| upload(s, t));
    let rows = RowParams {
        temperature: temps.as_ref().map(|t| t.as_view()),
        ..Default::default()
    };
    // NaN where nothing is written: every entry of q must be.
    let mut q = upload(s, &vec![f32::NAN; batch * vocab]);
    let mut k = s.stream().alloc_zeros::<u32>(batch).unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(batch).unwrap();
    s.sparsemax(
        &logits,
        tau,
        &rows,
        &mut q.as_view_mut(),
        Some(&mut k.as_view_mut()),
        Some(&mut st.as_view_mut()),
    )
    .unwrap();
    Out {
        q: download(s, &q),
        support: download(s, &k),
        status: download(s, &st),
    }
}

#[allow(clippy::too_many_arguments)]
fn gpu_sample<T: Logit>(
    s: &mut Sampler,
    host: &[T],
    batch: usize,
    vocab: usize,
    lead: usize,
    tau: f32,
    seeds: &[Rng],
    shared: bool,
) -> (Vec<u32>, Vec<u32>) {
    let dev = place(s, host, batch, vocab, vocab, lead);
    let logits = DeviceLogits::new(dev.slice(lead..), batch, vocab).unwrap();
    let sd: Vec<u64> = seeds.iter().map(|r| r.seed).collect();
    let off: Vec<u64> = seeds.iter().map(|r| r.offset).collect();
    let (sd, off) = (upload(s, &sd), upload(s, &off));
    let dseeds = if shared {
        DeviceSeeds::Shared(seeds[0])
    } else {
        DeviceSeeds::Each {
            seeds: sd.as_view(),
            offsets: off.as_view(),
        }
    };
    let mut tokens = s.stream().alloc_zeros::<u32>(batch).unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(batch).unwrap();
    s.sample_sparsemax(
        &logits,
        tau,
        &RowParams::default(),
        &dseeds,
        &mut tokens.as_view_mut(),
        Some(&mut st.as_view_mut()),
    )
    .unwrap();
    (download(s, &tokens), download(s, &st))
}

/// The CPU's sparsemax of row r at τ (u = z/τ in f64, z widened from the same T values).
fn cpu_row<T: Logit>(
    host: &[T],
    vocab: usize,
    r: usize,
    tau: f32,
) -> (cpu::Sparsemax, Vec<f64>, u32) {
    let (z, st) = cpu::widen_row(&host[r * vocab..(r + 1) * vocab]);
    let u: Vec<f64> = z.iter().map(|v| v / f64::from(tau)).collect();
    (cpu::sparsemax(&u), u, st)
}

/// q within TOL everywhere; k* equal up to the tokens whose u lies within TOL of θ.
fn assert_row_matches(gpu_q: &[f32], gpu_k: u32, want: &cpu::Sparsemax, u: &[f64], what: &str) {
    for (i, (g, w)) in gpu_q.iter().zip(&want.q).enumerate() {
        assert!(
            (f64::from(*g) - w).abs() <= TOL,
            "{what}: token {i}: gpu q {g}, cpu q {w} (θ {}, k* {})",
            want.theta,
            want.support
        );
    }
    let near = u.iter().filter(|&&x| (x - want.theta).abs() <= TOL).count();
    let diff = (gpu_k as i64 - want.support as i64).unsigned_abs() as usize;
    assert!(
        diff <= near,
        "{what}: gpu k* {gpu_k}, cpu k* {} ({near} tokens near θ)",
        want.support
    );
}

impl Out {
    /// Row r of a dense `vocab`-wide batch against the CPU at τ: q and k* as
    /// [`assert_row_matches`], the status bit for bit (the sanitising bits, and NO_FINITE_LOGIT
    /// for a row with an empty support).
    fn check_row<T: Logit>(&self, host: &[T], vocab: usize, r: usize, tau: f32, label: &str) {
        let (want, u, st) = cpu_row(host, vocab, r, tau);
        let q = &self.q[r * vocab..(r + 1) * vocab];
        assert_row_matches(q, self.support[r], &want, &u, label);
        let no_finite = if want.support == 0 {
            status::NO_FINITE_LOGIT
        } else {
            0
        };
        assert_eq!(self.status[r], st | no_finite, "{label}: status");
    }
}

fn check_batch<T: Logit>(
    s: &mut Sampler,
    host: &[T],
    batch: usize,
    vocab: usize,
    tau: f32,
    lead: usize,
    what: &str,
) {
    let stride = if lead > 0 { vocab + 3 } else { vocab };
    let out = gpu_sparsemax(s, host, batch, vocab, stride, lead, tau, None);
    for r in 0..batch {
        out.check_row(
            host,
            vocab,
            r,
            tau,
            &format!("{what} row {r} (τ {tau}, vocab {vocab})"),
        );
    }
}

#[test]
fn sparsemax_matches_the_cpu_support_and_values() {
    let mut s = gpu_or_skip!();
    let mut seed = 0;
    for (batch, vocab) in [
        (3, 1),
        (4, 7),
        (5, 1000),
        (3, 32000),
        (2, 128256),
        (1, 262147),
    ] {
        for dist in Dist::ALL {
            for tau in [1.0f32, 0.5, 2.0] {
                seed += 1;
                let z = common::logits(dist, batch, vocab, seed);
                check_batch::<f32>(&mut s, &z, batch, vocab, tau, 0, &format!("f32 {dist:?}"));
            }
        }
    }
}

#[test]
fn sparsemax_reads_f16_bf16_and_unaligned_rows() {
    let mut s = gpu_or_skip!();
    for (i, vocab) in [7usize, 1000, 32001, 128256].into_iter().enumerate() {
        for dist in [Dist::Normal(1.0), Dist::Gumbel(0.1)] {
            let z = common::logits(dist, 3, vocab, 50 + i as u64);
            check_batch::<bf16>(
                &mut s,
                &convert(&z),
                3,
                vocab,
                1.0,
                0,
                &format!("bf16 {dist:?}"),
            );
            check_batch::<f16>(
                &mut s,
                &convert(&z),
                3,
                vocab,
                1.0,
                0,
                &format!("f16 {dist:?}"),
            );
            check_batch::<f32>(
                &mut s,
                &z,
                3,
                vocab,
                0.5,
                1,
                &format!("f32 unaligned {dist:?}"),
            );
            check_batch::<bf16>(
                &mut s,
                &convert(&z),
                3,
                vocab,
                2.0,
                1,
                &format!("bf16 unaligned {dist:?}"),
            );
        }
    }
}

/// Rows that stress each step: ties, one huge value, few finite values, non-finite values, and
/// the candidates of one thread only (more than it keeps in registers).
fn adversarial_rows(vocab: usize) -> Vec<(&'static str, Vec<f32>)> {
    let normal = |seed| common::logits(Dist::Normal(1.0), 1, vocab, seed);
    let mut rows = vec![("all equal", vec![0.25f32; vocab])];
    // 1e15: huge, but below 2^53 so that the CPU reference's m − 1 is still below m (see
    // logits_beyond_f64_resolution_project_to_their_maxima for larger ones).
    let mut huge = normal(1);
    huge[vocab / 2] = 1e15;
    rows.push(("one huge", huge));
    let mut one = vec![f32::NEG_INFINITY; vocab];
    one[3.min(vocab - 1)] = 2.0;
    rows.push(("all -inf but one", one));
    let mut mostly = vec![f32::NEG_INFINITY; vocab];
    for (i, v) in normal(2).into_iter().enumerate().step_by(97) {
        mostly[i] = v;
    }
    rows.push(("mostly -inf", mostly));
    rows.push(("all -inf", vec![f32::NEG_INFINITY; vocab]));
    let mut bad = normal(3);
    for i in (0..vocab).step_by(11) {
        bad[i] = f32::NAN;
    }
    rows.push(("NaN logits", bad));
    let mut ties = common::logits(Dist::Normal(0.1), 1, vocab, 4);
    ties[5.min(vocab - 1)] = 3.0;
    ties[9.min(vocab - 1)] = 3.0;
    rows.push(("tied maximum", ties));
    let mut near = vec![-5.0f32; vocab];
    for (j, i) in (0..vocab).step_by(vocab / 8 + 1).enumerate() {
        near[i] = 1.0 - j as f32 * 1e-7;
    }
    rows.push(("near ties", near));
    // Thread 0's vectors (f32: every 1024th quad) hold every candidate.
    let spilled: Vec<f32> = (0..vocab)
        .map(|i| {
            if (i / 4) % 1024 == 0 {
                0.5 - (i % 7) as f32 * 0.01
            } else {
                -3.0
            }
        })
        .collect();
    rows.push(("one thread's candidates", spilled));
    rows
}

#[test]
fn logits_beyond_f64_resolution_project_to_their_maxima() {
    // +inf counts as f32::MAX. At |max u| ≥ 2^53, max u − 1 rounds to max u, so the support is
    // the maxima alone, q = 1/(their count); the CPU reference, which works on u − max u as the
    // kernel does, says the same.
    let mut s = gpu_or_skip!();
    for vocab in [5000usize, 40000] {
        let mut inf = common::logits(Dist::Normal(1.0), 1, vocab, 31);
        inf[17] = f32::INFINITY;
        inf[18] = f32::NAN;
        let mut two = common::logits(Dist::Normal(1.0), 1, vocab, 32);
        two[5] = 1e30;
        two[9] = 1e30;
        let all_max = vec![f32::MAX; vocab];
        let host: Vec<f32> = [inf, two, all_max].concat();
        let out = gpu_sparsemax(&mut s, &host, 3, vocab, vocab, 0, 1.0, None);
        let want: [(Vec<usize>, u32); 3] = [
            (vec![17], status::POS_INF_LOGIT | status::NAN_LOGIT),
            (vec![5, 9], 0),
            ((0..vocab).collect(), 0),
        ];
        for (r, (at, st)) in want.iter().enumerate() {
            let (cpu_q, _, _) = cpu_row(&host, vocab, r, 1.0);
            let cpu_at: Vec<usize> = (0..vocab).filter(|&i| cpu_q.q[i] > 0.0).collect();
            assert_eq!(&cpu_at, at, "vocab {vocab} row {r}: the CPU's support");
            let q = &out.q[r * vocab..(r + 1) * vocab];
            let each = 1.0 / at.len() as f64;
            for (i, &x) in q.iter().enumerate() {
                let w = if at.contains(&i) { each } else { 0.0 };
                assert!(
                    (f64::from(x) - w).abs() <= TOL,
                    "vocab {vocab} row {r} token {i}: {x} vs {w}"
                );
            }
            assert_eq!(out.support[r] as usize, at.len(), "vocab {vocab} row {r}");
            assert_eq!(out.status[r], *st, "vocab {vocab} row {r}");
        }
        let seeds: Vec<Rng> = (0..3).map(|r| Rng::new(r as u64)).collect();
        let (tokens, _) = gpu_sample(&mut s, &host, 3, vocab, 0, 1.0, &seeds, false);
        for (r, (at, _)) in want.iter().enumerate() {
            assert!(
                at.contains(&(tokens[r] as usize)),
                "vocab {vocab} row {r}: token {}",
                tokens[r]
            );
        }
    }
}

#[test]
fn sparsemax_handles_adversarial_rows() {
    let mut s = gpu_or_skip!();
    for vocab in [1usize, 2, 5000, 40000] {
        let rows = adversarial_rows(vocab);
        let batch = rows.len();
        let host: Vec<f32> = rows.iter().flat_map(|(_, r)| r.iter().copied()).collect();
        for lead in [0, 1] {
            let out = gpu_sparsemax(&mut s, &host, batch, vocab, vocab, lead, 1.0, None);
            for (r, (name, _)) in rows.iter().enumerate() {
                out.check_row(
                    &host,
                    vocab,
                    r,
                    1.0,
                    &format!("{name} (vocab {vocab}, lead {lead})"),
                );
            }
        }
    }
}

#[test]
fn flat_rows_with_more_candidates_than_fit_on_chip_find_theta_exactly() {
    // N(0, 0.01²) at vocab 128256: every token is a candidate (> 4096), so θ comes from the
    // radix search with fixed-point sums; equal values and a few hundred spread-out values too.
    let mut s = gpu_or_skip!();
    let vocab = 128_256;
    let mut host = common::logits(Dist::Normal(0.01), 2, vocab, 77);
    host.extend(vec![-1.5f32; vocab]);
    host.extend(common::logits(Dist::Normal(0.3), 1, vocab, 78));
    let mut skewed = common::logits(Dist::Normal(0.001), 1, vocab, 79);
    skewed[1234] = 0.9;
    host.extend(skewed);
    let batch = host.len() / vocab;
    for tau in [1.0f32, 0.5] {
        let out = gpu_sparsemax(&mut s, &host, batch, vocab, vocab, 0, tau, None);
        for r in 0..batch {
            let label = format!("flat row {r} (τ {tau})");
            out.check_row(&host, vocab, r, tau, &label);
            let sum: f64 = out.q[r * vocab..(r + 1) * vocab]
                .iter()
                .map(|&x| f64::from(x))
                .sum();
            assert!((sum - 1.0).abs() < 1e-4, "{label}: Σq = {sum}");
        }
    }
    // Also a 6000-candidate row just past the on-chip limit.
    let z = common::logits(Dist::Normal(0.001), 1, 6000, 80);
    check_batch::<f32>(&mut s, &z, 1, 6000, 1.0, 0, "6000 candidates");
}

#[test]
fn sparsemax_at_zero_temperature_is_one_hot_at_the_first_argmax() {
    let mut s = gpu_or_skip!();
    let vocab = 3000;
    let mut host = common::logits(Dist::Normal(1.0), 2, vocab, 9);
    host[100] = 10.0;
    host[200] = 10.0; // tie: the lower index wins
    host[vocab + 2999] = 11.0;
    let out = gpu_sparsemax(&mut s, &host, 2, vocab, vocab, 0, 0.0, None);
    for (r, want) in [(0usize, 100usize), (1, 2999)] {
        let q = &out.q[r * vocab..(r + 1) * vocab];
        assert_eq!(q[want], 1.0, "row {r}");
        assert_eq!(q.iter().filter(|&&x| x != 0.0).count(), 1, "row {r}");
        assert_eq!(out.support[r], 1);
    }
    let (tokens, _) = gpu_sample(&mut s, &host, 2, vocab, 0, 0.0, &[Rng::new(1)], true);
    assert_eq!(tokens, vec![100, 2999]);
}

#[test]
fn per_row_temperatures_are_used_and_clamped() {
    let mut s = gpu_or_skip!();
    let vocab = 2000;
    let temps = [1.0f32, 0.5, 0.0, f32::NAN, -1.0, f32::INFINITY];
    // What the device uses: NaN → 1, −1 → 0 (greedy), +inf → f32::MAX.
    let used = [1.0f32, 0.5, 0.0, 1.0, 0.0, f32::MAX];
    let clamped = [false, false, false, true, true, true];
    let batch = temps.len();
    let host = common::logits(Dist::Gumbel(1.0), batch, vocab, 12);
    let out = gpu_sparsemax(&mut s, &host, batch, vocab, vocab, 0, 1.0, Some(&temps));
    let decoders: Vec<Decoder> = used.iter().map(|&t| Decoder::sparsemax(t)).collect();
    let logits = Logits::new(&host, batch, vocab).unwrap();
    let want = cpu::distribution(&logits, Rows::Each(&decoders), None).unwrap();
    for r in 0..batch {
        for (i, (g, w)) in out.q[r * vocab..(r + 1) * vocab]
            .iter()
            .zip(&want[r])
            .enumerate()
        {
            assert!(
                (f64::from(*g) - w).abs() <= TOL,
                "row {r} (τ {}): token {i}: {g} vs {w}",
                temps[r]
            );
        }
        let flag = out.status[r] & status::PARAM_CLAMPED != 0;
        assert_eq!(flag, clamped[r], "row {r}: PARAM_CLAMPED");
    }
}

#[test]
fn sample_sparsemax_draws_the_cpu_tokens() {
    let mut s = gpu_or_skip!();
    let mut near = 0;
    let mut rows = 0;
    for (batch, vocab) in [(64, 7), (200, 1000), (16, 32000), (8, 128256), (3, 262147)] {
        for (d, dist) in Dist::ALL.into_iter().enumerate() {
            let host = common::logits(dist, batch, vocab, 300 + d as u64);
            let seeds: Vec<Rng> = (0..batch)
                .map(|r| Rng::new(40 + r as u64).at(3 * r as u64))
                .collect();
            for (shared, lead, tau) in [(true, 0, 1.0f32), (false, 1, 0.5), (false, 0, 2.0)] {
                let (tokens, st) =
                    gpu_sample(&mut s, &host, batch, vocab, lead, tau, &seeds, shared);
                let logits = Logits::new(&host, batch, vocab).unwrap();
                let rng_rows = if shared {
                    Rows::All(seeds[0])
                } else {
                    Rows::Each(&seeds)
                };
                let want: Vec<Draw> =
                    cpu::sample(&logits, Rows::All(Decoder::sparsemax(tau)), rng_rows, None)
                        .unwrap();
                let what =
                    format!("{dist:?} b{batch} v{vocab} τ {tau} shared {shared} lead {lead}");
                near += assert_tokens_agree(&tokens, &want, &what);
                rows += batch;
                for (r, d) in want.iter().enumerate() {
                    assert_eq!(st[r], d.status, "{what}: row {r} status");
                }
            }
        }
    }
    eprintln!("sample_sparsemax: {near} near-boundary disagreements in {rows} rows");
    assert!(
        near * 100 <= rows,
        "{near} near-boundary disagreements in {rows} rows"
    );
}

#[test]
fn sample_sparsemax_adversarial_rows_agree_with_the_cpu() {
    let mut s = gpu_or_skip!();
    for vocab in [1usize, 5000, 40000] {
        let rows = adversarial_rows(vocab);
        let batch = rows.len();
        let host: Vec<f32> = rows.iter().flat_map(|(_, r)| r.iter().copied()).collect();
        let seeds: Vec<Rng> = (0..batch).map(|r| Rng::new(5 + r as u64)).collect();
        let (tokens, st) = gpu_sample(&mut s, &host, batch, vocab, 0, 1.0, &seeds, false);
        let logits = Logits::new(&host, batch, vocab).unwrap();
        let want = cpu::sample(
            &logits,
            Rows::All(Decoder::sparsemax(1.0)),
            Rows::Each(&seeds),
            None,
        )
        .unwrap();
        assert_tokens_agree(&tokens, &want, &format!("adversarial rows, vocab {vocab}"));
        for (r, (name, _)) in rows.iter().enumerate() {
            assert_eq!(st[r], want[r].status, "{name}: status");
        }
    }
}

#[test]
fn sample_sparsemax_follows_q_chi_square() {
    // 200 000 rows (fewer on the emulator) of the same logits, one shared seed: stream = row,
    // so the draws are independent; their histogram must fit the CPU's q.
    let mut s = gpu_or_skip!();
    let vocab = 300;
    let one: Vec<f32> = common::logits(Dist::Normal(0.4), 1, vocab, 21);
    let batch = common::scaled(&s, 200_000);
    let host: Vec<f32> = one.iter().copied().cycle().take(batch * vocab).collect();
    let (tokens, _) = gpu_sample(
        &mut s,
        &host,
        batch,
        vocab,
        0,
        1.0,
        &[Rng::new(99).at(5)],
        true,
    );
    let q = cpu::sparsemax(&one.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()).q;
    let mut counts = vec![0u64; vocab];
    for t in tokens {
        counts[t as usize] += 1;
    }
    let p = chi_square_p(&counts, &q);
    assert!(p > 1e-4, "chi-square p-value {p}");
}

#[test]
fn sparsemax_is_the_same_run_after_run() {
    let mut s = gpu_or_skip!();
    let host = common::logits(Dist::Normal(0.01), 2, 128_256, 5);
    let a = gpu_sparsemax(&mut s, &host, 2, 128_256, 128_256, 0, 1.0, None);
    let b = gpu_sparsemax(&mut s, &host, 2, 128_256, 128_256, 0, 1.0, None);
    assert!(a
        .q
        .iter()
        .zip(&b.q)
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    assert_eq!(a.support, b.support);
    let seeds = [Rng::new(3)];
    let t1 = gpu_sample(&mut s, &host, 2, 128_256, 0, 1.0, &seeds, true);
    let t2 = gpu_sample(&mut s, &host, 2, 128_256, 0, 1.0, &seeds, true);
    assert_eq!(t1, t2);
}

#[test]
fn sparsemax_refuses_bad_input_before_launching() {
    let mut s = gpu_or_skip!();
    let host = vec![0.0f32; 20];
    let dev = upload(&s, &host);
    let logits = DeviceLogits::new(dev.as_view(), 2, 10).unwrap();
    let mut q = s.stream().alloc_zeros::<f32>(20).unwrap();
    let none = RowParams::default();
    for bad in [-1.0f32, f32::NAN, f32::INFINITY] {
        let e = s
            .sparsemax(&logits, bad, &none, &mut q.as_view_mut(), None, None)
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::BadParam {
                    name: "temperature",
                    ..
                }
            ),
            "{e}"
        );
    }
    let mut short = s.stream().alloc_zeros::<f32>(19).unwrap();
    let e = s
        .sparsemax(&logits, 1.0, &none, &mut short.as_view_mut(), None, None)
        .unwrap_err();
    assert!(matches!(e, Error::BadLength { name: "probs", .. }), "{e}");
    let mut k = s.stream().alloc_zeros::<u32>(3).unwrap();
    let e = s
        .sparsemax(
            &logits,
            1.0,
            &none,
            &mut q.as_view_mut(),
            Some(&mut k.as_view_mut()),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadLength {
                name: "support_size",
                ..
            }
        ),
        "{e}"
    );
    let ks = upload(&s, &[3u32, 3]);
    let with_k = RowParams {
        top_k: Some(ks.as_view()),
        ..Default::default()
    };
    let e = s
        .sparsemax(&logits, 1.0, &with_k, &mut q.as_view_mut(), None, None)
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    let mut tokens = s.stream().alloc_zeros::<u32>(1).unwrap();
    let e = s
        .sample_sparsemax(
            &logits,
            1.0,
            &none,
            &DeviceSeeds::Shared(Rng::new(1)),
            &mut tokens.as_view_mut(),
            None,
        )
        .unwrap_err();
    assert!(matches!(e, Error::BadLength { name: "tokens", .. }), "{e}");
}

/// Every output of both ops as bits, on the sampler's current path: q, k*, status of
/// `sparsemax`; tokens, status of `sample_sparsemax` (per-row seeds).
fn sparsemax_bits<T: Logit>(
    s: &mut Sampler,
    host: &[T],
    batch: usize,
    vocab: usize,
    lead: usize,
    tau: f32,
) -> Vec<Vec<u32>> {
    let o = gpu_sparsemax(s, host, batch, vocab, vocab, lead, tau, None);
    let seeds: Vec<Rng> = (0..batch).map(|r| Rng::new(40 + r as u64).at(3)).collect();
    let (tokens, st) = gpu_sample(s, host, batch, vocab, lead, tau, &seeds, false);
    vec![
        o.q.iter().map(|x| x.to_bits()).collect(),
        o.support,
        o.status,
        tokens,
        st,
    ]
}

/// Each split path the device has (the default; the cooperative grid too where clusters are
/// the default) gives the one-block path's bits.
fn check_split<T: Logit>(
    s: &mut Sampler,
    host: &[T],
    (batch, vocab, lead): (usize, usize, usize),
    tau: f32,
    what: &str,
) {
    s.set_sparsemax_split(RowSplit::Off);
    assert_eq!(
        s.sparsemax_path::<T>(batch, vocab).unwrap(),
        SparsemaxPath::Block
    );
    let whole = sparsemax_bits(s, host, batch, vocab, lead, tau);
    let mut modes = vec![RowSplit::Any];
    if common::cluster_launch(s) {
        modes.push(RowSplit::Grid);
    }
    let names = ["q", "support", "status", "tokens", "sample status"];
    for mode in modes {
        s.set_sparsemax_split(mode);
        let path = s.sparsemax_path::<T>(batch, vocab).unwrap();
        assert_ne!(path, SparsemaxPath::Block, "{what} {mode:?}");
        let split = sparsemax_bits(s, host, batch, vocab, lead, tau);
        common::assert_split_bits(
            &split,
            &whole,
            &names,
            (batch, vocab),
            &format!("{what} {path:?}"),
        );
    }
    s.set_sparsemax_split(RowSplit::Any);
}

#[test]
fn sparsemax_split_paths_give_the_one_block_bits() {
    let mut s = gpu_or_skip!();
    for (vocab, n, batch, x) in common::split_cases(21) {
        let path = common::assert_staged_split_paths(
            &mut s,
            |s| s.sparsemax_path::<f32>(batch, vocab).unwrap(),
            |s, split| s.set_sparsemax_split(split),
            (batch, vocab),
        );
        // Both dtypes, τ = 1, 0.5 and (greedy) 0, and unaligned rows (_any; the grid's _v1).
        let tau = [1.0, 0.5, 1.0, 0.0][n % 4];
        let what = format!("b{batch} v{vocab} τ{tau} {path:?}");
        if n % 2 == 0 {
            check_split(&mut s, &x, (batch, vocab, 0), tau, &format!("f32 {what}"));
        } else {
            let hb: Vec<bf16> = convert(&x);
            check_split(&mut s, &hb, (batch, vocab, 0), tau, &format!("bf16 {what}"));
        }
        if n == 1 {
            check_split(
                &mut s,
                &x,
                (batch, vocab, 1),
                tau,
                &format!("f32 unaligned {what}"),
            );
        }
    }
}

#[test]
fn sparsemax_split_paths_without_staging_give_the_one_block_bits() {
    let mut s = gpu_or_skip!();
    // 17 rows: 4 blocks per row, whose 67584-token slices do not fit the shared memory, so
    // every pass reads the logits again.
    let (batch, vocab) = (17usize, 262_147usize);
    let rows = common::split_rows(vocab, 21);
    let x: Vec<f32> = (0..batch)
        .flat_map(|j| rows[j % rows.len()].clone())
        .collect();
    let path = s.sparsemax_path::<f32>(batch, vocab).unwrap();
    let want_cluster = SparsemaxPath::Cluster {
        blocks: 4,
        shared: 38_944,
        staged: false,
    };
    if common::cluster_launch(&s) {
        assert_eq!(path, want_cluster);
    } else {
        assert!(
            matches!(
                path,
                SparsemaxPath::Grid {
                    blocks: 4,
                    staged: false,
                    ..
                }
            ),
            "{path:?}"
        );
    }
    check_split(&mut s, &x, (batch, vocab, 0), 1.0, &format!("{path:?}"));
}
