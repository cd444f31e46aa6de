//! Random requests on the GPU against the CPU reference: shapes (batches on both sides of the
//! split thresholds, vocabularies around the draw-tile and slice sizes, padded strides), dtypes,
//! inputs with ties, −∞, NaN, +∞, ±f32::MAX and subnormals, every decoder, per-row parameters
//! and seeds. The cases come from a fixed seed, so a failure names a case that reproduces. Each
//! case compares q* (`Sampler::distribution`) and the tokens and status (`Sampler::sample`)
//! with the tolerances of the per-family tests; filtered rows whose kept set f32 arithmetic
//! could change are left out (`common::boundary_safe`) and counted. Random top-k selections (k
//! up to past the on-chip sort and past the vocabulary, per-row k with clamping) must give
//! every (value, index) pair bit for bit. Skips (and says so) where there is no GPU.

mod common;

use common::{assert_tokens_agree, boundary_safe, convert, download, upload, Dist};
use cudarc::driver::CudaSlice;
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use samplex::cpu::{self, Draw};
use samplex::gpu::softmax::Staging;
use samplex::gpu::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use samplex::{Bok, BokWeights, DType, Decoder, Logit, Logits, Regularizer, Rng, Rows, Support};

/// Logits per case at most, on a GPU and on the emulator (~10^4 times slower); the f64 CPU
/// reference bounds the GPU's (the device bundle's test stage shares its time budget).
const MAX_LOGITS: [usize; 2] = [1 << 20, 600_000];

/// Cases on a GPU and on the emulator (`SAMPLEX_PROPERTY_CASES` sets another count, and
/// `SAMPLEX_PROPERTY_SEED` another seed, for a longer search).
const CASES: [usize; 2] = [160, 96];

/// The run's case count and random generator: the test's own seed, or the environment's.
fn cases(s: &Sampler, seed: u64) -> (usize, StdRng) {
    let env = |name| {
        std::env::var(name)
            .ok()
            .and_then(|v: String| v.parse::<u64>().ok())
    };
    let n = env("SAMPLEX_PROPERTY_CASES")
        .map_or(CASES[usize::from(common::emulated(s))], |n| n as usize);
    let seed = env("SAMPLEX_PROPERTY_SEED").unwrap_or(seed);
    (n, StdRng::seed_from_u64(seed))
}

/// A padded stride's filler: a kernel that read past `vocab` would pick it or see it as the max.
const PAD: f32 = 1.0e4;

/// Per-row overrides of the decoder's parameters, all in range (the per-family tests cover the
/// clamping). A vector is empty where the decoder takes no such parameter.
#[derive(Clone, Debug, Default)]
struct PerRow {
    temperature: Vec<f32>,
    /// The support (softmax family and BoK; not sparsemax).
    top_k: Vec<u32>,
    top_p: Vec<f32>,
    min_p: Vec<f32>,
    /// BoK's K, β, λ, η and T (at most the batch's T).
    bok_k: Vec<u32>,
    bok_beta: Vec<f32>,
    bok_lambda: Vec<f32>,
    bok_eta: Vec<f32>,
    bok_iterations: Vec<u32>,
}

/// Which parameters a decoder takes per row.
#[derive(Clone, Copy, PartialEq)]
enum Takes {
    Softmax,
    Sparsemax,
    /// BoK, with the batch's T.
    Bok(u32),
}

/// `n` values of `f`.
fn each<V>(rng: &mut StdRng, n: usize, mut f: impl FnMut(&mut StdRng) -> V) -> Vec<V> {
    (0..n).map(|_| f(rng)).collect()
}

fn per_row(rng: &mut StdRng, batch: usize, vocab: usize, takes: Takes) -> PerRow {
    let mut p = PerRow {
        temperature: if let Takes::Bok(_) = takes {
            each(rng, batch, |rng| rng.random_range(0.5..1.5))
        } else {
            each(rng, batch, temperature)
        },
        ..PerRow::default()
    };
    if takes != Takes::Sparsemax {
        p.top_k = each(rng, batch, |rng| support(rng, vocab).top_k);
        p.top_p = each(rng, batch, |rng| rng.random_range(0.05..=1.0));
        p.min_p = each(rng, batch, |rng| rng.random_range(0.0..0.3));
    }
    if let Takes::Bok(t) = takes {
        p.bok_beta = each(rng, batch, |rng| rng.random_range(0.3..3.0));
        p.bok_lambda = each(rng, batch, |rng| rng.random_range(0.0..3.0));
        p.bok_eta = each(rng, batch, |rng| rng.random_range(0.05..0.3));
        p.bok_k = each(rng, batch, |rng| rng.random_range(1..=16));
        p.bok_iterations = each(rng, batch, |rng| rng.random_range(0..=t));
    }
    p
}

#[derive(Clone, Debug)]
struct Case {
    dtype: DType,
    batch: usize,
    vocab: usize,
    stride: usize,
    /// How the logits were made (for the failure message).
    input: String,
    /// `batch × stride` values, the padding [`PAD`].
    logits: Vec<f32>,
    decoder: Decoder,
    per_row: Option<PerRow>,
    /// BoK's custom weights, `batch × vocab`.
    weights: Option<Vec<f32>>,
    /// Per-row (seed, offset) rather than one stream for the batch.
    seeds: Vec<Rng>,
    each_seed: bool,
}

/// A vocabulary: tiny, small, on either side of a draw tile (2048), a split slice (C × 4096) or
/// BoK's on-chip row (32768), or anywhere up to 70000.
fn vocab(rng: &mut StdRng) -> usize {
    match rng.random_range(0..10) {
        0 => rng.random_range(1..=64),
        1 | 2 => rng.random_range(65..=5000),
        3 | 4 => rng.random_range(1..=20usize) * 2048 + rng.random_range(0..=2) - 1,
        5 => [2usize, 4, 8][rng.random_range(0..3)] * 4096 + rng.random_range(0..=6) - 3,
        6 => 32768 + rng.random_range(0..=2) - 1,
        _ => rng.random_range(5000..=70_000),
    }
}

/// A batch on either side of where rows stop splitting over 8, 4 and 2 blocks (132 SMs), or
/// small; at most `max_logits / stride` rows.
fn batch(rng: &mut StdRng, stride: usize, max_logits: usize) -> usize {
    let b = match rng.random_range(0..10) {
        0..=3 => rng.random_range(1..=4),
        4 | 5 => rng.random_range(5..=20),
        6 => rng.random_range(30..=36),
        7 => rng.random_range(60..=70),
        _ => rng.random_range(120..=140),
    };
    b.min(max_logits / stride).max(1)
}

/// `n` logits: one of BENCH.md's distributions, or coarse values full of ties, sometimes with
/// −∞ holes, an all −∞ row, NaN and +∞ entries.
fn logits(rng: &mut StdRng, batch: usize, vocab: usize) -> (Vec<f32>, String) {
    let seed = rng.random();
    let mut desc = String::new();
    let mut z = match rng.random_range(0..5) {
        4 => {
            desc.push_str("ties");
            common::logits(Dist::Normal(2.0), batch, vocab, seed)
                .into_iter()
                .map(|v| (v * 2.0).round() / 2.0)
                .collect()
        }
        d => {
            desc.push_str(&format!("{:?}", Dist::ALL[d]));
            common::logits(Dist::ALL[d], batch, vocab, seed)
        }
    };
    if rng.random_bool(0.2) {
        desc.push_str(" + -inf holes");
        for v in z.iter_mut() {
            if rng.random_bool(0.3) {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    if rng.random_bool(0.1) {
        let r = rng.random_range(0..batch);
        desc.push_str(&format!(" + row {r} all -inf"));
        z[r * vocab..(r + 1) * vocab].fill(f32::NEG_INFINITY);
    }
    if rng.random_bool(0.1) {
        desc.push_str(" + ±f32::MAX, 3e37 and subnormals");
        for v in [f32::MAX, -f32::MAX, 3e37, 1e-40, -1e-40] {
            let i = rng.random_range(0..z.len());
            z[i] = v;
        }
    }
    if rng.random_bool(0.1) {
        desc.push_str(" + NaN and +inf");
        for _ in 0..3 {
            let i = rng.random_range(0..z.len());
            z[i] = f32::NAN;
        }
        let i = rng.random_range(0..z.len());
        z[i] = f32::INFINITY;
    }
    (z, desc)
}

fn temperature(rng: &mut StdRng) -> f32 {
    if rng.random_bool(0.1) {
        0.0
    } else {
        rng.random_range(0.3..2.0)
    }
}

fn support(rng: &mut StdRng, vocab: usize) -> Support {
    let top_k = match rng.random_range(0..4) {
        0 => 0,
        1 => rng.random_range(1..=vocab as u32 + 3),
        _ => rng.random_range(1..=(vocab as u32).min(300)),
    };
    Support {
        top_k,
        top_p: if rng.random_bool(0.5) {
            rng.random_range(0.05..=1.0)
        } else {
            1.0
        },
        min_p: if rng.random_bool(0.4) {
            rng.random_range(0.0..0.3)
        } else {
            0.0
        },
    }
}

fn case(rng: &mut StdRng, max_logits: usize) -> Case {
    let dtype = [DType::F32, DType::F16, DType::Bf16][rng.random_range(0..3)];
    let vocab = vocab(rng);
    let stride = vocab
        + if rng.random_bool(0.3) {
            rng.random_range(1..=9)
        } else {
            0
        };
    let batch = batch(rng, stride, max_logits);
    let (dense, dist) = logits(rng, batch, vocab);
    let mut logits = vec![PAD; batch * stride];
    for r in 0..batch {
        logits[r * stride..r * stride + vocab].copy_from_slice(&dense[r * vocab..(r + 1) * vocab]);
    }
    let (mut rows, mut weights) = (None, None);
    let decoder = match rng.random_range(0..13) {
        0 => Decoder::greedy(),
        1 | 2 => Decoder::softmax(temperature(rng)),
        3..=6 => Decoder::softmax(temperature(rng)).with_support(support(rng, vocab)),
        7 => {
            rows = Some(per_row(rng, batch, vocab, Takes::Softmax));
            Decoder::softmax(temperature(rng)).with_support(support(rng, vocab))
        }
        8 | 9 => {
            if rng.random_bool(0.3) {
                rows = Some(per_row(rng, batch, vocab, Takes::Sparsemax));
            }
            Decoder::sparsemax(temperature(rng))
        }
        _ => {
            let weights_kind = match rng.random_range(0..3) {
                0 => BokWeights::Prob,
                1 => BokWeights::TopM(rng.random_range(1..=64)),
                _ => {
                    weights = Some(
                        (0..batch * vocab)
                            .map(|_| rng.random_range(0.0..1.0))
                            .collect(),
                    );
                    BokWeights::Custom
                }
            };
            let bok = Bok {
                temperature: rng.random_range(0.5..1.5),
                k: rng.random_range(1..=16),
                iterations: rng.random_range(0..=6),
                weights: weights_kind,
                ..Bok::DEFAULT
            };
            let sup = if rng.random_bool(0.5) {
                support(rng, vocab)
            } else {
                Support::default()
            };
            if rng.random_bool(0.3) {
                rows = Some(per_row(rng, batch, vocab, Takes::Bok(bok.iterations)));
            }
            Decoder::bok(bok).with_support(sup)
        }
    };
    let seeds = (0..batch)
        .map(|_| Rng::new(rng.random()).at(rng.random_range(0..1000)))
        .collect();
    Case {
        dtype,
        batch,
        vocab,
        stride,
        input: dist,
        logits,
        decoder,
        per_row: rows,
        weights,
        seeds,
        each_seed: rng.random_bool(0.5),
    }
}

impl Case {
    /// Row r's decoder, with its per-row overrides.
    fn row_decoder(&self, r: usize) -> Decoder {
        let Some(p) = &self.per_row else {
            return self.decoder;
        };
        let t = p.temperature[r];
        if let Regularizer::Euclidean { .. } = self.decoder.regularizer {
            return Decoder::sparsemax(t);
        }
        let support = Support {
            top_k: p.top_k[r],
            top_p: p.top_p[r],
            min_p: p.min_p[r],
        };
        match self.decoder.regularizer {
            Regularizer::BestOfK(b) => Decoder::bok(Bok {
                temperature: t,
                k: p.bok_k[r],
                beta: p.bok_beta[r],
                lambda: p.bok_lambda[r],
                eta: p.bok_eta[r],
                iterations: p.bok_iterations[r],
                ..b
            }),
            _ => Decoder::softmax(t),
        }
        .with_support(support)
    }

    /// Whether row r's q* passes through a kept set that f32 arithmetic could change.
    fn row_unsafe(&self, z: &[f64], r: usize) -> bool {
        let d = self.row_decoder(r);
        let filtered = !d.support.is_all(self.vocab);
        let t = match d.regularizer {
            Regularizer::Entropy { temperature } => temperature,
            Regularizer::BestOfK(b) => b.temperature,
            _ => return false,
        };
        filtered && !boundary_safe(z, f64::from(t), &d.support)
    }
}

fn view<V>(b: &Option<CudaSlice<V>>) -> Option<cudarc::driver::CudaView<'_, V>> {
    b.as_ref().map(|b| b.as_view())
}

/// `v` on the device, unless it is empty.
fn nonempty<V: cudarc::driver::DeviceRepr>(s: &Sampler, v: &[V]) -> Option<CudaSlice<V>> {
    (!v.is_empty()).then(|| upload(s, v))
}

/// The device's q* and its tokens and status for `c`.
fn run_gpu<T: Logit>(s: &mut Sampler, c: &Case) -> (Vec<f32>, Vec<u32>, Vec<u32>) {
    let host: Vec<T> = convert(&c.logits);
    let dev = upload(s, &host);
    let none = PerRow::default();
    let p = c.per_row.as_ref().unwrap_or(&none);
    let (temps, top_k, top_p, min_p) = (
        nonempty(s, &p.temperature),
        nonempty(s, &p.top_k),
        nonempty(s, &p.top_p),
        nonempty(s, &p.min_p),
    );
    let (bok_k, bok_beta, bok_lambda, bok_eta, bok_iterations) = (
        nonempty(s, &p.bok_k),
        nonempty(s, &p.bok_beta),
        nonempty(s, &p.bok_lambda),
        nonempty(s, &p.bok_eta),
        nonempty(s, &p.bok_iterations),
    );
    let rows = RowParams {
        temperature: view(&temps),
        top_k: view(&top_k),
        top_p: view(&top_p),
        min_p: view(&min_p),
        bok_k: view(&bok_k),
        bok_beta: view(&bok_beta),
        bok_lambda: view(&bok_lambda),
        bok_eta: view(&bok_eta),
        bok_iterations: view(&bok_iterations),
    };
    let weights = c.weights.as_ref().map(|w| upload(s, w));
    let weights = weights.as_ref().map(|w| w.as_view());
    let seeds = upload(s, &c.seeds.iter().map(|r| r.seed).collect::<Vec<_>>());
    let offsets = upload(s, &c.seeds.iter().map(|r| r.offset).collect::<Vec<_>>());
    let rng = if c.each_seed {
        DeviceSeeds::Each {
            seeds: seeds.as_view(),
            offsets: offsets.as_view(),
        }
    } else {
        DeviceSeeds::Shared(c.seeds[0])
    };
    let logits = DeviceLogits::with_stride(dev.as_view(), c.batch, c.vocab, c.stride).unwrap();
    let mut q = s.stream().alloc_zeros::<f32>(c.batch * c.vocab).unwrap();
    let mut tokens = s.stream().alloc_zeros::<u32>(c.batch).unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(c.batch).unwrap();
    s.distribution(
        &logits,
        &c.decoder,
        &rows,
        weights.as_ref(),
        &mut q.as_view_mut(),
        None,
    )
    .unwrap();
    s.sample(
        &logits,
        &c.decoder,
        &rows,
        &rng,
        weights.as_ref(),
        &mut tokens.as_view_mut(),
        Some(&mut st.as_view_mut()),
    )
    .unwrap();
    (download(s, &q), download(s, &tokens), download(s, &st))
}

/// Checks one case; returns (rows left out near a boundary, rows whose tokens differed within
/// the CDF margin).
fn check<T: Logit>(s: &mut Sampler, c: &Case, what: &str) -> (usize, usize) {
    let (q, tokens, st) = run_gpu::<T>(s, c);
    let host: Vec<T> = convert(&c.logits);
    let logits = Logits::with_stride(&host, c.batch, c.vocab, c.stride).unwrap();
    let decoders: Vec<Decoder> = (0..c.batch).map(|r| c.row_decoder(r)).collect();
    let weights = c.weights.as_deref();
    let want = cpu::distribution(&logits, Rows::Each(&decoders), weights).unwrap();
    let seeds = if c.each_seed {
        Rows::Each(&c.seeds)
    } else {
        Rows::All(c.seeds[0])
    };
    let draws = cpu::sample(&logits, Rows::Each(&decoders), seeds, weights).unwrap();
    let (v, mut skipped) = (c.vocab, 0);
    let mut kept_tokens = Vec::new();
    let mut kept_draws: Vec<Draw> = Vec::new();
    for r in 0..c.batch {
        let label = format!("{what}: row {r} ({:?})", decoders[r]);
        assert_eq!(st[r], draws[r].status, "{label}: status");
        let (z, _) = cpu::widen_row(&host[r * c.stride..r * c.stride + v]);
        if c.row_unsafe(&z, r) {
            skipped += 1;
            continue;
        }
        kept_tokens.push(tokens[r]);
        kept_draws.push(draws[r]);
        assert_q_close(&q[r * v..(r + 1) * v], &want[r], &z, &decoders[r], &label);
    }
    let near = assert_tokens_agree(&kept_tokens, &kept_draws, what);
    (skipped, near)
}

/// The per-family tests' tolerances: softmax and filters relative (with the spread of u), a
/// support that matches exactly; sparsemax absolute, scaled with |u|; BoK 1e-4 absolute.
fn assert_q_close(gpu: &[f32], cpu: &[f64], z: &[f64], d: &Decoder, what: &str) {
    let t = f64::from(d.temperature());
    let finite = || z.iter().filter(|v| v.is_finite());
    let (hi, lo) = (
        finite().fold(f64::MIN, |a, &b| a.max(b)),
        finite().fold(f64::MAX, |a, &b| a.min(b)),
    );
    for (i, (&g, &e)) in gpu.iter().zip(cpu).enumerate() {
        let g = f64::from(g);
        let ok = match d.regularizer {
            _ if t == 0.0 => g == e,
            Regularizer::None => g == e,
            Regularizer::Entropy { .. } => {
                let spread = if hi >= lo { (hi - lo) / t } else { 0.0 };
                (g - e).abs() <= (2e-5 + 3e-7 * spread) * e + 1e-7 && (e > 0.0 || g == 0.0)
            }
            Regularizer::Euclidean { .. } => {
                let scale = hi.abs().max(lo.abs()) / t;
                (g - e).abs() <= 1e-6f64.max(2.4e-7 * scale)
            }
            Regularizer::BestOfK(_) => (g - e).abs() <= 1e-4 && (e > 0.0 || g == 0.0),
        };
        assert!(ok, "{what}: token {i}: gpu q {g:e}, cpu q {e:e}");
    }
}

/// A selection's k: small, up to the on-chip sort's 4096, past it (the scratch path), or past
/// the vocabulary (padded with (−∞, u32::MAX)).
fn select_k(rng: &mut StdRng, vocab: usize) -> u32 {
    match rng.random_range(0..6) {
        0 | 1 => rng.random_range(1..=64),
        2 | 3 => rng.random_range(65..=4096),
        4 => rng.random_range(4097..=6000),
        _ => vocab as u32 + rng.random_range(0..=5),
    }
}

#[test]
fn random_selections_match_the_cpu_reference() {
    let mut s = gpu_or_skip!();
    let emu = usize::from(common::emulated(&s));
    let (cases, mut rng) = cases(&s, 0x5e1e_c7ed);
    for n in 0..cases.div_ceil(2) {
        let c = case(&mut rng, MAX_LOGITS[emu]);
        let k = select_k(&mut rng, c.vocab);
        // Per-row k within [0, k + 5]: 0 and past min(k, vocab) are clamped (and flagged).
        let ks = rng
            .random_bool(0.3)
            .then(|| each(&mut rng, c.batch, |rng| rng.random_range(0..=k + 5)));
        let what = format!(
            "selection {n}: {:?} {} x {} (stride {}), {}, k {k}, per-row k {}",
            c.dtype,
            c.batch,
            c.vocab,
            c.stride,
            c.input,
            ks.is_some()
        );
        let ks = ks.as_deref();
        match c.dtype {
            DType::F32 => check_selection::<f32>(&mut s, &c, k, ks, &what),
            DType::F16 => check_selection::<f16>(&mut s, &c, k, ks, &what),
            DType::Bf16 => check_selection::<bf16>(&mut s, &c, k, ks, &what),
        }
    }
}

/// `c`'s logits as `T`, selected on the device and checked pair by pair.
fn check_selection<T: Logit>(s: &mut Sampler, c: &Case, k: u32, ks: Option<&[u32]>, what: &str) {
    let x = convert::<T>(&c.logits);
    common::Selection::new(&x, c.batch, c.vocab, k)
        .stride(c.stride)
        .per_row(ks)
        .check(s, what);
}

#[test]
fn random_requests_match_the_cpu_reference() {
    let mut s = gpu_or_skip!();
    let emu = usize::from(common::emulated(&s));
    let (cases, mut rng) = cases(&s, 0x5a3d_1e55);
    let (mut rows, mut skipped, mut near) = (0, 0, 0);
    for n in 0..cases {
        let c = case(&mut rng, MAX_LOGITS[emu]);
        // Every other case stages softmax rows wherever they fit (sm_90), not only where the
        // default would: random shapes for the staged kernel too.
        let staging = if n % 2 == 1 {
            Staging::Always
        } else {
            Staging::Auto
        };
        s.set_softmax_staging(staging);
        let what = format!(
            "case {n}: {:?} {} x {} (stride {}), {}, per-row {}, per-row seeds {}, staging {staging:?}",
            c.dtype,
            c.batch,
            c.vocab,
            c.stride,
            c.input,
            c.per_row.is_some(),
            c.each_seed
        );
        let (left_out, differed) = match c.dtype {
            DType::F32 => check::<f32>(&mut s, &c, &what),
            DType::F16 => check::<f16>(&mut s, &c, &what),
            DType::Bf16 => check::<bf16>(&mut s, &c, &what),
        };
        rows += c.batch;
        skipped += left_out;
        near += differed;
    }
    eprintln!(
        "{} cases, {rows} rows: {skipped} left out near a kept-set boundary, {near} tokens \
         differed within the CDF margin",
        cases
    );
    assert!(skipped * 10 <= rows, "{skipped} of {rows} rows left out");
    assert!(
        near * 100 <= rows + 200,
        "{near} of {rows} rows differed near a CDF boundary"
    );
}
