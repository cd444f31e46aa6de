//! Best-of-K on the GPU (kernels/bok.cu) against the CPU reference: SPEC "Best-of-K",
//! "Drawing a token" and "Bad input". Every test skips (and says so) where there is no GPU.
//!
//! Every device path is covered: vocab ≤ 32768 runs `samplex_bok_row` (one block per row, the
//! state on chip); larger rows (up to 8 × 32768 tokens) run split over 2, 4 or 8 blocks per row
//! in one launch — `samplex_bok_cluster` on sm_90 (a thread-block cluster), else
//! `samplex_bok_grid` (a cooperative grid, when batch × blocks ≤ the SMs) — and otherwise the
//! multi-pass fallback, split over several blocks per row when the batch is small
//! (`samplex_bok_pass`, and `samplex_bok_topm` for top-M weights). The tests that say so choose
//! the path ([`Sampler::set_bok_split`]) to reach the others on the same device, and compare
//! them; on the emulator, `SAMPLEX_EMU_CC=80` runs the grid and the fallback.
//! The device works in f32: q agrees with the f64 reference within 1e-4 absolute.

mod common;

use common::{convert, download, upload};

use common::{assert_tokens_agree, chi_square_p, Dist};
use cudarc::driver::CudaSlice;
use half::{bf16, f16};
use samplex::cpu::{self, bok_gradient, Draw};
use samplex::gpu::bok::BokPath;
use samplex::gpu::{DeviceLogits, DeviceSeeds, RowParams, RowSplit, Sampler};
use samplex::{status, Bok, BokWeights, Decoder, Error, Logit, Logits, Rng, Rows, Support};

/// |q_gpu − q_cpu| bound.
const Q_TOL: f64 = 1e-4;

/// Per-row overrides as the host holds them.
#[derive(Default, Clone)]
struct HostRows {
    temperature: Option<Vec<f32>>,
    k: Option<Vec<u32>>,
    beta: Option<Vec<f32>>,
    lambda: Option<Vec<f32>>,
    eta: Option<Vec<f32>>,
    iterations: Option<Vec<u32>>,
    top_k: Option<Vec<u32>>,
}

/// One GPU call: logits placed `lead` elements into the buffer (lead = 1 misaligns them),
/// per-row buffers, custom weights; returns q, the objective (when asked) and the status.
struct Call<'a, T> {
    host: &'a [T],
    batch: usize,
    vocab: usize,
    lead: usize,
    bok: Bok,
    support: Support,
    rows: HostRows,
    weights: Option<&'a [f32]>,
}

struct Out {
    q: Vec<f32>,
    objective: Vec<f32>,
    status: Vec<u32>,
}

fn place<T: Logit>(s: &Sampler, host: &[T], lead: usize) -> CudaSlice<T> {
    let mut buf = vec![T::default(); lead];
    buf.extend_from_slice(host);
    upload(s, &buf)
}

/// The device buffers behind a [`HostRows`].
struct RowBuffers {
    temperature: Option<CudaSlice<f32>>,
    k: Option<CudaSlice<u32>>,
    beta: Option<CudaSlice<f32>>,
    lambda: Option<CudaSlice<f32>>,
    eta: Option<CudaSlice<f32>>,
    iterations: Option<CudaSlice<u32>>,
    top_k: Option<CudaSlice<u32>>,
}

impl RowBuffers {
    fn new(s: &Sampler, h: &HostRows) -> Self {
        RowBuffers {
            temperature: h.temperature.as_ref().map(|v| upload(s, v)),
            k: h.k.as_ref().map(|v| upload(s, v)),
            beta: h.beta.as_ref().map(|v| upload(s, v)),
            lambda: h.lambda.as_ref().map(|v| upload(s, v)),
            eta: h.eta.as_ref().map(|v| upload(s, v)),
            iterations: h.iterations.as_ref().map(|v| upload(s, v)),
            top_k: h.top_k.as_ref().map(|v| upload(s, v)),
        }
    }

    fn params(&self) -> RowParams<'_> {
        RowParams {
            temperature: self.temperature.as_ref().map(|b| b.as_view()),
            top_k: self.top_k.as_ref().map(|b| b.as_view()),
            bok_k: self.k.as_ref().map(|b| b.as_view()),
            bok_beta: self.beta.as_ref().map(|b| b.as_view()),
            bok_lambda: self.lambda.as_ref().map(|b| b.as_view()),
            bok_eta: self.eta.as_ref().map(|b| b.as_view()),
            bok_iterations: self.iterations.as_ref().map(|b| b.as_view()),
            ..Default::default()
        }
    }
}

impl<'a, T: Logit> Call<'a, T> {
    fn new(host: &'a [T], batch: usize, vocab: usize, bok: Bok) -> Self {
        Call {
            host,
            batch,
            vocab,
            lead: 0,
            bok,
            support: Support::ALL,
            rows: HostRows::default(),
            weights: None,
        }
    }

    fn q(&self, s: &mut Sampler, objective: bool) -> Out {
        let dev = place(s, self.host, self.lead);
        let logits = DeviceLogits::new(dev.slice(self.lead..), self.batch, self.vocab).unwrap();
        let rb = RowBuffers::new(s, &self.rows);
        let w = self.weights.map(|w| upload(s, w));
        let wv = w.as_ref().map(|w| w.as_view());
        let mut q = s
            .stream()
            .alloc_zeros::<f32>(self.batch * self.vocab)
            .unwrap();
        let t1 = self.bok.iterations as usize + 1;
        let mut obj = s.stream().alloc_zeros::<f32>(self.batch * t1).unwrap();
        let mut st = s.stream().alloc_zeros::<u32>(self.batch).unwrap();
        let mut ov = obj.as_view_mut();
        s.bok(
            &logits,
            &self.bok,
            &self.support,
            &rb.params(),
            wv.as_ref(),
            &mut q.as_view_mut(),
            if objective { Some(&mut ov) } else { None },
            Some(&mut st.as_view_mut()),
        )
        .unwrap();
        Out {
            q: download(s, &q),
            objective: if objective {
                download(s, &obj)
            } else {
                Vec::new()
            },
            status: download(s, &st),
        }
    }

    fn sample(&self, s: &mut Sampler, seeds: &[Rng], shared: bool) -> (Vec<u32>, Vec<u32>) {
        let dev = place(s, self.host, self.lead);
        let logits = DeviceLogits::new(dev.slice(self.lead..), self.batch, self.vocab).unwrap();
        let rb = RowBuffers::new(s, &self.rows);
        let w = self.weights.map(|w| upload(s, w));
        let wv = w.as_ref().map(|w| w.as_view());
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
        let mut tokens = s.stream().alloc_zeros::<u32>(self.batch).unwrap();
        let mut st = s.stream().alloc_zeros::<u32>(self.batch).unwrap();
        s.sample_bok(
            &logits,
            &self.bok,
            &self.support,
            &rb.params(),
            wv.as_ref(),
            &dseeds,
            &mut tokens.as_view_mut(),
            Some(&mut st.as_view_mut()),
        )
        .unwrap();
        (download(s, &tokens), download(s, &st))
    }

    /// The decoders the CPU runs for each row (per-row values already clamped by the caller).
    fn decoders(&self, per_row: Option<&[Bok]>) -> Vec<Decoder> {
        (0..self.batch)
            .map(|r| {
                let b = per_row.map_or(self.bok, |v| v[r]);
                let mut sup = self.support;
                if let Some(k) = &self.rows.top_k {
                    sup.top_k = k[r];
                }
                Decoder::bok(b).with_support(sup)
            })
            .collect()
    }

    fn cpu_q(&self, per_row: Option<&[Bok]>) -> Vec<Vec<f64>> {
        let logits = Logits::new(self.host, self.batch, self.vocab).unwrap();
        let d = self.decoders(per_row);
        cpu::distribution(&logits, Rows::Each(&d), self.weights).unwrap()
    }
}

fn assert_q_close(gpu: &[f32], want: &[Vec<f64>], vocab: usize, what: &str) {
    for (r, w) in want.iter().enumerate() {
        for (i, (&g, &x)) in gpu[r * vocab..(r + 1) * vocab].iter().zip(w).enumerate() {
            assert!(
                (f64::from(g) - x).abs() <= Q_TOL,
                "{what}: row {r} token {i}: gpu {g}, cpu {x}"
            );
            if x == 0.0 {
                assert_eq!(g, 0.0, "{what}: row {r} token {i} is outside the support");
            }
        }
    }
}

/// (batch, vocab, blocks per cluster): one shape per cluster size of `samplex_bok_cluster`.
const CLUSTER_SHAPES: [(usize, usize, u32); 3] = [(2, 40000, 2), (2, 128256, 4), (1, 262144, 8)];

/// True when `s` runs [`CLUSTER_SHAPES`] on a split on-chip path (a cluster on sm_9x, else a
/// cooperative grid), with the expected blocks per row; otherwise says why `test` is skipped.
/// On sm_9x (the emulator's default) and sm_80 (its SAMPLEX_EMU_CC=80) it must.
fn split_path_or_skip(s: &mut Sampler, test: &str) -> bool {
    let (major, minor) = s.context().compute_capability().unwrap();
    for (batch, vocab, blocks) in CLUSTER_SHAPES {
        for path in [
            s.bok_path::<f32>(batch, vocab).unwrap(),
            s.bok_path::<bf16>(batch, vocab).unwrap(),
        ] {
            match path {
                BokPath::Cluster { blocks: b, .. } => assert_eq!(b, blocks, "v{vocab}"),
                BokPath::Grid { blocks: b, .. } if major != 9 => assert_eq!(b, blocks, "v{vocab}"),
                other => {
                    assert!(
                        major != 9 && (major, minor) != (8, 0),
                        "sm_{major}{minor}: v{vocab} runs {other:?}, not a split on-chip path"
                    );
                    eprintln!("SKIPPED {test}: no split on-chip path on sm_{major}{minor} (v{vocab}: {other:?})");
                    return false;
                }
            }
        }
    }
    true
}

/// The support rules the cluster tests use: none, and one that keeps a few tokens per block.
const CLUSTER_SUPPORTS: [Support; 2] = [
    Support::ALL,
    Support {
        top_k: 3000,
        top_p: 0.9,
        min_p: 0.0,
    },
];

fn custom_weights(batch: usize, vocab: usize) -> Vec<f32> {
    (0..batch * vocab)
        .map(|i| ((i * 7919) % 5) as f32 * 0.5)
        .collect()
}

/// (batch, vocab): the on-chip path (≤ 32768), the fallback split over blocks (small batch),
/// and the fallback with whole rows per block (large batch).
const SHAPES: [(usize, usize); 9] = [
    (3, 1),
    (4, 7),
    (4, 1000),
    (2, 32000),
    (1, 32768),
    (1, 32769),
    (2, 40000),
    (1, 128256),
    (300, 33000),
];

#[test]
fn bok_q_matches_the_cpu_distribution() {
    let mut s = gpu_or_skip!();
    let weightings = [BokWeights::Prob, BokWeights::TopM(5), BokWeights::Custom];
    let mut n = 0u64;
    for (batch, vocab) in SHAPES {
        for (d, dist) in Dist::ALL.into_iter().enumerate() {
            let z = common::logits(dist, batch, vocab, 1000 + n);
            n += 1;
            let w = weightings[(d + n as usize) % 3];
            let b = Bok {
                weights: w,
                ..Bok::DEFAULT
            };
            let cw = custom_weights(batch, vocab);
            let mut call = Call::new(&z, batch, vocab, b);
            if w == BokWeights::Custom {
                call.weights = Some(&cw);
            }
            let what = format!("{dist:?} {w:?} b{batch} v{vocab}");
            assert_q_close(&call.q(&mut s, false).q, &call.cpu_q(None), vocab, &what);
        }
    }
}

#[test]
fn bok_reads_f16_bf16_and_unaligned_rows_on_both_paths() {
    let mut s = gpu_or_skip!();
    for (batch, vocab) in [(3, 1001), (2, 20000), (2, 40000)] {
        let z = common::logits(Dist::Normal(1.0), batch, vocab, 7);
        let b = Bok {
            temperature: 0.8,
            weights: BokWeights::TopM(3),
            ..Bok::DEFAULT
        };
        for lead in [0, 1] {
            let hb: Vec<bf16> = convert(&z);
            let mut c = Call::new(&hb, batch, vocab, b);
            c.lead = lead;
            assert_q_close(
                &c.q(&mut s, false).q,
                &c.cpu_q(None),
                vocab,
                &format!("bf16 v{vocab} lead {lead}"),
            );
            let hh: Vec<f16> = convert(&z);
            let mut c = Call::new(&hh, batch, vocab, b);
            c.lead = lead;
            assert_q_close(
                &c.q(&mut s, false).q,
                &c.cpu_q(None),
                vocab,
                &format!("f16 v{vocab} lead {lead}"),
            );
            let mut c = Call::new(&z, batch, vocab, b);
            c.lead = lead;
            assert_q_close(
                &c.q(&mut s, false).q,
                &c.cpu_q(None),
                vocab,
                &format!("f32 v{vocab} lead {lead}"),
            );
        }
    }
}

#[test]
fn bok_objective_rises_every_step_with_the_defaults_on_the_gpu() {
    let mut s = gpu_or_skip!();
    for (batch, vocab) in [(2, 1000), (2, 32000), (2, 40000), (1, 128256), (1, 262144)] {
        for (d, dist) in Dist::ALL.into_iter().enumerate() {
            for (w, iterations) in [
                (BokWeights::Prob, 5),
                (BokWeights::Prob, 30),
                (BokWeights::TopM(5), 30),
            ] {
                let z = common::logits(dist, batch, vocab, 500 + d as u64);
                let b = Bok {
                    weights: w,
                    iterations,
                    ..Bok::DEFAULT
                };
                let call = Call::new(&z, batch, vocab, b);
                let out = call.q(&mut s, true);
                let t1 = iterations as usize + 1;
                for r in 0..batch {
                    let what = format!("{dist:?} {w:?} T{iterations} v{vocab} row {r}");
                    let j = &out.objective[r * t1..(r + 1) * t1];
                    let zr: Vec<f64> = z[r * vocab..(r + 1) * vocab]
                        .iter()
                        .map(|&v| f64::from(v))
                        .collect();
                    let want = cpu::bok(&zr, &b, None).objective;
                    for t in 0..t1 {
                        let scale = want[t].abs().max(1.0);
                        assert!(
                            (f64::from(j[t]) - want[t]).abs() <= 1e-4 * scale,
                            "{what}: J(q^{t}) gpu {}, cpu {}",
                            j[t],
                            want[t]
                        );
                    }
                    for t in 0..t1 - 1 {
                        let scale = f64::from(j[t]).abs().max(1.0);
                        assert!(
                            f64::from(j[t + 1]) >= f64::from(j[t]) - 4e-6 * scale,
                            "{what}: J fell at step {t}: {} -> {}",
                            j[t],
                            j[t + 1]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn bok_meets_the_first_order_condition_at_large_t_on_the_gpu() {
    // At a fixed point g_i is the same on the whole support (the multiplier of Σ q = 1). The
    // gradient is the CPU's (f64) at the GPU's q; tokens whose f32 q underflowed carry no
    // weight in the condition.
    let mut s = gpu_or_skip!();
    for (vocab, iterations) in [(1000usize, 2000u32), (40000, 400)] {
        for (d, dist) in Dist::ALL.into_iter().enumerate() {
            let z = common::logits(dist, 1, vocab, 900 + d as u64);
            let b = Bok {
                iterations,
                ..Bok::DEFAULT
            };
            let out = Call::new(&z, 1, vocab, b).q(&mut s, false);
            let zr: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
            let log_p = cpu::log_softmax_row(&zr, 1.0);
            let p: Vec<f64> = log_p.iter().map(|l| l.exp()).collect();
            let log_q: Vec<f64> = out.q.iter().map(|&q| f64::from(q).ln()).collect();
            let g = bok_gradient(&zr, &log_p, &p, &log_q, &b);
            let on: Vec<f64> = g
                .iter()
                .zip(&out.q)
                .filter(|(_, &q)| q > 1e-30)
                .map(|(g, _)| *g)
                .collect();
            let (lo, hi) = on
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, c), &x| {
                    (a.min(x), c.max(x))
                });
            let scale = lo.abs().max(hi.abs()).max(1.0);
            assert!(
                hi - lo <= 2e-4 * scale,
                "{dist:?} v{vocab} T{iterations}: gradient spread {} over {} tokens (|g| ≤ {scale})",
                hi - lo,
                on.len()
            );
        }
    }
}

#[test]
fn bok_with_zero_iterations_is_the_reference_distribution() {
    let mut s = gpu_or_skip!();
    for vocab in [1000usize, 40000] {
        let z = common::logits(Dist::Gumbel(1.0), 2, vocab, 4);
        let b = Bok {
            iterations: 0,
            temperature: 0.7,
            ..Bok::DEFAULT
        };
        let out = Call::new(&z, 2, vocab, b).q(&mut s, true);
        for r in 0..2 {
            let zr: Vec<f64> = z[r * vocab..(r + 1) * vocab]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let p = cpu::softmax_row(&zr, 0.7);
            for (i, &pi) in p.iter().enumerate() {
                assert!(
                    (f64::from(out.q[r * vocab + i]) - pi).abs() <= 1e-6,
                    "v{vocab} row {r} token {i}"
                );
            }
        }
    }
}

#[test]
fn bok_keeps_q_inside_the_support() {
    let mut s = gpu_or_skip!();
    let supports = [
        Support {
            top_k: 50,
            top_p: 0.9,
            min_p: 0.0,
        },
        Support {
            top_k: 0,
            top_p: 1.0,
            min_p: 0.05,
        },
        Support {
            top_k: 3,
            top_p: 1.0,
            min_p: 0.0,
        },
    ];
    for (batch, vocab) in [(3, 1000), (2, 40000)] {
        for (d, dist) in Dist::ALL.into_iter().enumerate() {
            for (k, sup) in supports.iter().enumerate() {
                let z = common::logits(dist, batch, vocab, 60 + d as u64);
                let cw = custom_weights(batch, vocab);
                let mut call = Call::new(&z, batch, vocab, Bok::DEFAULT);
                call.support = *sup;
                if k == 2 {
                    call.bok.weights = BokWeights::Custom;
                    call.weights = Some(&cw);
                }
                let out = call.q(&mut s, false);
                assert_q_close(
                    &out.q,
                    &call.cpu_q(None),
                    vocab,
                    &format!("{dist:?} {sup:?} v{vocab}"),
                );
                assert!(out.status.iter().all(|&x| x == 0), "{:?}", out.status);
            }
            // Per-row top-k from a device buffer.
            let z = common::logits(dist, batch, vocab, 70 + d as u64);
            let mut call = Call::new(&z, batch, vocab, Bok::DEFAULT);
            call.rows.top_k = Some((0..batch).map(|r| [5u32, 0, 40][r % 3]).collect());
            assert_q_close(
                &call.q(&mut s, false).q,
                &call.cpu_q(None),
                vocab,
                &format!("{dist:?} per-row top-k"),
            );
        }
    }
}

#[test]
fn per_row_parameters_are_used_and_clamped() {
    let mut s = gpu_or_skip!();
    let k = vec![1u32, 2, 8, 16, 3, 0];
    let beta = vec![1.0f32, 0.5, 2.0, 1.0, 1.0, 1.0];
    let lambda = vec![0.0f32, 1.0, 3.0, 1.0, 1.0, 1.0];
    let eta = vec![0.2f32, 0.1, 0.05, 0.2, 0.2, 0.2];
    let iters = vec![5u32, 0, 3, 5, 9, 5];
    let temps = vec![1.0f32, 0.7, 2.0, 1.0, 1.0, f32::NAN];
    // What the device uses: K 0 → 1, T 9 → the batch's 5, τ NaN → 1.
    let used: Vec<Bok> = (0..6)
        .map(|r| Bok {
            k: k[r].max(1),
            beta: beta[r],
            lambda: lambda[r],
            eta: eta[r],
            iterations: iters[r].min(5),
            temperature: if temps[r].is_nan() { 1.0 } else { temps[r] },
            ..Bok::DEFAULT
        })
        .collect();
    let clamped = [false, false, false, false, true, true];
    for vocab in [1000usize, 40000] {
        let z = common::logits(Dist::Normal(1.0), 6, vocab, 33);
        let mut call = Call::new(&z, 6, vocab, Bok::DEFAULT);
        call.rows = HostRows {
            temperature: Some(temps.clone()),
            k: Some(k.clone()),
            beta: Some(beta.clone()),
            lambda: Some(lambda.clone()),
            eta: Some(eta.clone()),
            iterations: Some(iters.clone()),
            top_k: None,
        };
        let out = call.q(&mut s, true);
        assert_q_close(
            &out.q,
            &call.cpu_q(Some(&used)),
            vocab,
            &format!("per-row v{vocab}"),
        );
        for r in 0..6 {
            assert_eq!(
                out.status[r] & status::PARAM_CLAMPED != 0,
                clamped[r],
                "v{vocab} row {r}"
            );
            // Past its own T a row's objective stays at J(q^T_r).
            let j = &out.objective[r * 6..(r + 1) * 6];
            let tr = used[r].iterations as usize;
            for t in tr..6 {
                assert!(
                    (j[t] - j[tr]).abs() <= 1e-5 * j[tr].abs().max(1.0),
                    "v{vocab} row {r}: J {j:?}"
                );
            }
        }
    }
}

/// Rows that stress each step (SPEC "Bad input" and the edges of the support).
fn adversarial_rows(vocab: usize) -> Vec<(&'static str, Vec<f32>)> {
    let normal = |seed| common::logits(Dist::Normal(1.0), 1, vocab, seed);
    let mut rows = vec![("all equal", vec![0.5f32; vocab])];
    let mut huge = normal(1);
    huge[vocab / 2] = 1e30;
    rows.push(("one huge", huge));
    let mut one = vec![f32::NEG_INFINITY; vocab];
    one[3.min(vocab - 1)] = -2.0;
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
    bad[vocab - 1] = f32::INFINITY;
    rows.push(("NaN and +inf logits", bad));
    let mut ties = normal(4);
    ties[5.min(vocab - 1)] = 4.0;
    ties[9.min(vocab - 1)] = 4.0;
    rows.push(("tied maximum", ties));
    // Beyond f32's resolution of max + ln Σ: ln q must be (a − max) − ln Σ, or both get q = 1.
    let mut huge_ties = normal(5);
    huge_ties[0] = 1e30;
    huge_ties[vocab - 1] = 1e30;
    rows.push(("two huge, tied", huge_ties));
    let mut inf_ties = normal(6);
    inf_ties[vocab / 3] = f32::INFINITY;
    inf_ties[vocab - 1] = f32::INFINITY;
    rows.push(("two +inf", inf_ties));
    rows
}

#[test]
fn bok_handles_adversarial_rows() {
    let mut s = gpu_or_skip!();
    // The default paths (one block, and a cluster or grid at 40000), then the multi-pass one,
    // also at a vocab that is no multiple of 8 (its state rows are padded to one).
    for (vocab, split) in [
        (1usize, RowSplit::Any),
        (2, RowSplit::Any),
        (5000, RowSplit::Any),
        (40000, RowSplit::Any),
        (40000, RowSplit::Off),
        (40001, RowSplit::Off),
    ] {
        s.set_bok_split(split);
        let rows = adversarial_rows(vocab);
        let batch = rows.len();
        if split == RowSplit::Off {
            let path = s.bok_path::<f32>(batch, vocab).unwrap();
            assert!(matches!(path, BokPath::Passes { .. }), "v{vocab}: {path:?}");
        }
        let host: Vec<f32> = rows.iter().flat_map(|(_, r)| r.iter().copied()).collect();
        for w in [BokWeights::Prob, BokWeights::TopM(2)] {
            let call = Call::new(
                &host,
                batch,
                vocab,
                Bok {
                    weights: w,
                    ..Bok::DEFAULT
                },
            );
            let out = call.q(&mut s, true);
            assert_q_close(
                &out.q,
                &call.cpu_q(None),
                vocab,
                &format!("adversarial v{vocab} {split:?} {w:?}"),
            );
            assert!(
                out.objective.iter().all(|j| !j.is_nan()),
                "v{vocab}: NaN in J"
            );
            for (r, (name, _)) in rows.iter().enumerate() {
                let (z, st) = cpu::widen_row(&host[r * vocab..(r + 1) * vocab]);
                let none = z.iter().all(|&v| v == f64::NEG_INFINITY);
                let want = st | if none { status::NO_FINITE_LOGIT } else { 0 };
                assert_eq!(out.status[r], want, "{name} (v{vocab}): status");
            }
            let seeds: Vec<Rng> = (0..batch).map(|r| Rng::new(17 + r as u64)).collect();
            let (tokens, st) = call.sample(&mut s, &seeds, false);
            let logits = Logits::new(&host, batch, vocab).unwrap();
            let d = call.decoders(None);
            let want = cpu::sample(&logits, Rows::Each(&d), Rows::Each(&seeds), None).unwrap();
            assert_tokens_agree(
                &tokens,
                &want,
                &format!("adversarial draws v{vocab} {split:?} {w:?}"),
            );
            for r in 0..batch {
                assert_eq!(
                    st[r], want[r].status,
                    "{} (v{vocab}): draw status",
                    rows[r].0
                );
            }
        }
    }
}

#[test]
fn sample_bok_draws_the_cpu_tokens() {
    let mut s = gpu_or_skip!();
    let (mut near, mut rows) = (0, 0);
    for (batch, vocab) in [
        (64, 7),
        (100, 1000),
        (8, 32000),
        (4, 40000),
        (2, 128256),
        (1, 262144),
    ] {
        for (d, dist) in Dist::ALL.into_iter().enumerate() {
            let host = common::logits(dist, batch, vocab, 700 + d as u64);
            let seeds: Vec<Rng> = (0..batch)
                .map(|r| Rng::new(90 + r as u64).at(r as u64))
                .collect();
            for (w, shared, lead) in [(BokWeights::Prob, true, 0), (BokWeights::TopM(5), false, 1)]
            {
                let mut call = Call::new(
                    &host,
                    batch,
                    vocab,
                    Bok {
                        weights: w,
                        ..Bok::DEFAULT
                    },
                );
                call.lead = lead;
                let (tokens, st) = call.sample(&mut s, &seeds, shared);
                let logits = Logits::new(&host, batch, vocab).unwrap();
                let rng_rows = if shared {
                    Rows::All(seeds[0])
                } else {
                    Rows::Each(&seeds)
                };
                let d = call.decoders(None);
                let want: Vec<Draw> = cpu::sample(&logits, Rows::Each(&d), rng_rows, None).unwrap();
                let what = format!("{dist:?} {w:?} b{batch} v{vocab} shared {shared}");
                near += assert_tokens_agree(&tokens, &want, &what);
                rows += batch;
                assert!(st.iter().all(|&x| x == 0), "{what}: status {st:?}");
            }
        }
    }
    eprintln!("sample_bok: {near} near-boundary disagreements in {rows} rows");
    assert!(
        near * 50 <= rows,
        "{near} near-boundary disagreements in {rows} rows"
    );
}

#[test]
fn sample_bok_follows_q_chi_square() {
    // 200 000 copies (fewer on the emulator) of one row, one shared seed (stream = row):
    // independent draws whose histogram must fit the CPU's q.
    let mut s = gpu_or_skip!();
    let vocab = 300;
    let one = common::logits(Dist::Normal(1.0), 1, vocab, 23);
    let batch = common::scaled(&s, 200_000);
    let host: Vec<f32> = one.iter().copied().cycle().take(batch * vocab).collect();
    let call = Call::new(&host, batch, vocab, Bok::DEFAULT);
    let (tokens, _) = call.sample(&mut s, &[Rng::new(5).at(11)], true);
    let zr: Vec<f64> = one.iter().map(|&v| f64::from(v)).collect();
    let q = cpu::bok(&zr, &Bok::DEFAULT, None).q;
    let mut counts = vec![0u64; vocab];
    for t in tokens {
        counts[t as usize] += 1;
    }
    let p = chi_square_p(&counts, &q);
    assert!(p > 1e-4, "chi-square p-value {p}");
}

#[test]
fn bok_is_the_same_run_after_run() {
    let mut s = gpu_or_skip!();
    for (batch, vocab) in [(3, 20000), (2, 40000), (1, 128256), (1, 262144)] {
        let z = common::logits(Dist::Normal(5.0), batch, vocab, 8);
        let call = Call::new(
            &z,
            batch,
            vocab,
            Bok {
                weights: BokWeights::TopM(7),
                ..Bok::DEFAULT
            },
        );
        let a = call.q(&mut s, true);
        let b = call.q(&mut s, true);
        assert!(
            a.q.iter()
                .zip(&b.q)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "v{vocab}: q"
        );
        assert!(
            a.objective
                .iter()
                .zip(&b.objective)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "v{vocab}: J"
        );
        let seeds = [Rng::new(4)];
        assert_eq!(
            call.sample(&mut s, &seeds, true),
            call.sample(&mut s, &seeds, true),
            "v{vocab}: tokens"
        );
    }
}

#[test]
fn bok_refuses_bad_input_before_launching() {
    let mut s = gpu_or_skip!();
    let host = vec![0.0f32; 20];
    let dev = upload(&s, &host);
    let logits = DeviceLogits::new(dev.as_view(), 2, 10).unwrap();
    let mut q = s.stream().alloc_zeros::<f32>(20).unwrap();
    let none = RowParams::default();
    let all = Support::ALL;
    let mut run = |b: Bok, s: &mut Sampler| {
        s.bok(
            &logits,
            &b,
            &all,
            &none,
            None,
            &mut q.as_view_mut(),
            None,
            None,
        )
    };
    let cases: [(Bok, &str); 7] = [
        (
            Bok {
                k: 0,
                ..Bok::DEFAULT
            },
            "k",
        ),
        (
            Bok {
                beta: 0.0,
                ..Bok::DEFAULT
            },
            "beta",
        ),
        (
            Bok {
                lambda: -1.0,
                ..Bok::DEFAULT
            },
            "lambda",
        ),
        (
            Bok {
                eta: f32::NAN,
                ..Bok::DEFAULT
            },
            "eta",
        ),
        (
            Bok {
                temperature: 0.0,
                ..Bok::DEFAULT
            },
            "temperature",
        ),
        (
            Bok {
                weights: BokWeights::TopM(0),
                ..Bok::DEFAULT
            },
            "top_m",
        ),
        (
            Bok {
                iterations: u32::MAX,
                ..Bok::DEFAULT
            },
            "iterations",
        ),
    ];
    for (b, name) in cases {
        match run(b, &mut s) {
            Err(Error::BadParam { name: got, .. }) => assert_eq!(got, name),
            other => panic!("{name}: {other:?}"),
        }
    }
    let custom = Bok {
        weights: BokWeights::Custom,
        ..Bok::DEFAULT
    };
    assert!(matches!(
        run(custom, &mut s),
        Err(Error::BadLength {
            name: "weights",
            ..
        })
    ));
    let short = upload(&s, &[1.0f32; 19]);
    let e = s
        .bok(
            &logits,
            &custom,
            &all,
            &none,
            Some(&short.as_view()),
            &mut q.as_view_mut(),
            None,
            None,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadLength {
                name: "weights",
                ..
            }
        ),
        "{e}"
    );
    let mut obj = s.stream().alloc_zeros::<f32>(2 * 5).unwrap(); // T = 5 needs 2 × 6
    let e = s
        .bok(
            &logits,
            &Bok::DEFAULT,
            &all,
            &none,
            None,
            &mut q.as_view_mut(),
            Some(&mut obj.as_view_mut()),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadLength {
                name: "objective",
                ..
            }
        ),
        "{e}"
    );
    let bad_support = Support {
        top_p: 1.5,
        ..Support::ALL
    };
    let e = s
        .bok(
            &logits,
            &Bok::DEFAULT,
            &bad_support,
            &none,
            None,
            &mut q.as_view_mut(),
            None,
            None,
        )
        .unwrap_err();
    assert!(matches!(e, Error::BadParam { name: "top_p", .. }), "{e}");
    let mut tokens = s.stream().alloc_zeros::<u32>(3).unwrap();
    let e = s
        .sample_bok(
            &logits,
            &Bok::DEFAULT,
            &all,
            &none,
            None,
            &DeviceSeeds::Shared(Rng::new(1)),
            &mut tokens.as_view_mut(),
            None,
        )
        .unwrap_err();
    assert!(matches!(e, Error::BadLength { name: "tokens", .. }), "{e}");
}

#[test]
fn bok_picks_its_path_by_vocab_and_device() {
    let mut s = gpu_or_skip!();
    let (major, minor) = s.context().compute_capability().unwrap();
    for vocab in [1, 1000, 32768] {
        assert!(
            matches!(s.bok_path::<f32>(4, vocab).unwrap(), BokPath::Row { .. }),
            "v{vocab}"
        );
    }
    // The smallest cluster of 2, 4 or 8 blocks with vocab ≤ blocks × 32768, on sm_9x.
    for (vocab, blocks) in [
        (32769, 2),
        (65536, 2),
        (65537, 4),
        (131072, 4),
        (131073, 8),
        (262144, 8),
    ] {
        let path = s.bok_path::<bf16>(1, vocab).unwrap();
        match major {
            9 => assert!(
                matches!(path, BokPath::Cluster { blocks: b, .. } if b == blocks),
                "v{vocab}: {path:?}"
            ),
            8 if minor == 0 => assert!(
                matches!(path, BokPath::Grid { blocks: b, .. } if b == blocks),
                "v{vocab}: {path:?}"
            ),
            _ => {}
        }
        // Where clusters exist, the cooperative grid when asked for.
        s.set_bok_split(RowSplit::Grid);
        let grid = s.bok_path::<bf16>(1, vocab).unwrap();
        s.set_bok_split(RowSplit::Any);
        if major == 9 || (major, minor) == (8, 0) {
            assert!(
                matches!(grid, BokPath::Grid { blocks: b, .. } if b == blocks),
                "v{vocab}: {grid:?}"
            );
        }
    }
    // A batch too large for one block per SM takes the fallback instead of a grid.
    s.set_bok_split(RowSplit::Grid);
    let sms = s.sm_count() as usize;
    assert!(matches!(
        s.bok_path::<f32>(sms, 40000).unwrap(),
        BokPath::Passes { .. }
    ));
    s.set_bok_split(RowSplit::Any);
    assert!(matches!(
        s.bok_path::<f32>(1, 262145).unwrap(),
        BokPath::Passes { .. }
    ));
    s.set_bok_split(RowSplit::Off);
    assert!(matches!(
        s.bok_path::<f32>(1, 40000).unwrap(),
        BokPath::Passes { .. }
    ));
    s.set_bok_split(RowSplit::Any);
}

#[test]
fn bok_split_q_matches_the_cpu_for_every_weighting_and_support() {
    let mut s = gpu_or_skip!();
    if !split_path_or_skip(&mut s, module_path!()) {
        return;
    }
    let mut n = 0u64;
    for (batch, vocab, _) in CLUSTER_SHAPES {
        let cw = custom_weights(batch, vocab);
        for w in [BokWeights::Prob, BokWeights::TopM(5), BokWeights::Custom] {
            for support in CLUSTER_SUPPORTS {
                let dist = Dist::ALL[n as usize % Dist::ALL.len()];
                let z = common::logits(dist, batch, vocab, 1300 + n);
                n += 1;
                let b = Bok {
                    weights: w,
                    ..Bok::DEFAULT
                };
                let weights = (w == BokWeights::Custom).then_some(cw.as_slice());
                let what = format!("{dist:?} {w:?} {support:?} b{batch} v{vocab}");
                let mut call = Call::new(&z, batch, vocab, b);
                call.support = support;
                call.weights = weights;
                let out = call.q(&mut s, false);
                assert_q_close(&out.q, &call.cpu_q(None), vocab, &format!("f32 {what}"));
                assert!(
                    out.status.iter().all(|&x| x == 0),
                    "{what}: {:?}",
                    out.status
                );
                let hb: Vec<bf16> = convert(&z);
                let mut call = Call::new(&hb, batch, vocab, b);
                call.support = support;
                call.weights = weights;
                assert_q_close(
                    &call.q(&mut s, false).q,
                    &call.cpu_q(None),
                    vocab,
                    &format!("bf16 {what}"),
                );
            }
        }
    }
}

#[test]
fn bok_split_top_m_ties_span_the_blocks() {
    // All-equal rows: the M-th largest key ties with every token, so the tie walk finds the
    // M-th token in whichever block holds it (block r of a row holds the tiles from
    // r · ceil(tiles / blocks)). Also a row of a few levels, each tying across blocks.
    let mut s = gpu_or_skip!();
    if !split_path_or_skip(&mut s, module_path!()) {
        return;
    }
    for (vocab, ms) in [
        (40000usize, [5u32, 20480, 39999]),
        (128256, [3, 70000, 128000]),
    ] {
        let flat = vec![0.25f32; vocab];
        let levels: Vec<f32> = (0..vocab).map(|i| ((i * 7) % 3) as f32).collect();
        let host: Vec<f32> = flat.iter().chain(&levels).copied().collect();
        for m in ms {
            let call = Call::new(
                &host,
                2,
                vocab,
                Bok {
                    weights: BokWeights::TopM(m),
                    ..Bok::DEFAULT
                },
            );
            assert_q_close(
                &call.q(&mut s, false).q,
                &call.cpu_q(None),
                vocab,
                &format!("v{vocab} top_m {m}"),
            );
        }
    }
}

#[test]
fn bok_split_and_multi_pass_paths_agree() {
    let mut s = gpu_or_skip!();
    if !split_path_or_skip(&mut s, module_path!()) {
        return;
    }
    let (mut near, mut rows) = (0, 0);
    let mut n = 0u64;
    for (batch, vocab, _) in CLUSTER_SHAPES {
        let cw = custom_weights(batch, vocab);
        for (w, support) in [
            (BokWeights::Prob, CLUSTER_SUPPORTS[0]),
            (BokWeights::TopM(5), CLUSTER_SUPPORTS[1]),
            (BokWeights::Custom, CLUSTER_SUPPORTS[0]),
        ] {
            let dist = Dist::ALL[n as usize % Dist::ALL.len()];
            let z = common::logits(dist, batch, vocab, 1500 + n);
            n += 1;
            let mut call = Call::new(
                &z,
                batch,
                vocab,
                Bok {
                    weights: w,
                    ..Bok::DEFAULT
                },
            );
            call.support = support;
            if w == BokWeights::Custom {
                call.weights = Some(&cw);
            }
            let seeds: Vec<Rng> = (0..batch).map(|r| Rng::new(31 + r as u64)).collect();
            let what = format!("{dist:?} {w:?} b{batch} v{vocab}");
            s.set_bok_split(RowSplit::Off);
            assert!(
                matches!(
                    s.bok_path::<f32>(batch, vocab).unwrap(),
                    BokPath::Passes { .. }
                ),
                "{what}"
            );
            let passes = call.q(&mut s, true);
            let passes_tokens = call.sample(&mut s, &seeds, false);
            // The default split path, and the cooperative grid where the default is a cluster.
            let mut modes = vec![RowSplit::Any];
            if common::cluster_launch(&s) {
                modes.push(RowSplit::Grid);
            }
            let logits = Logits::new(&z, batch, vocab).unwrap();
            let d = call.decoders(None);
            let want =
                cpu::sample(&logits, Rows::Each(&d), Rows::Each(&seeds), call.weights).unwrap();
            for mode in modes {
                s.set_bok_split(mode);
                let path = s.bok_path::<f32>(batch, vocab).unwrap();
                if mode == RowSplit::Grid {
                    assert!(matches!(path, BokPath::Grid { .. }), "{what}: {path:?}");
                }
                let split = call.q(&mut s, true);
                let split_tokens = call.sample(&mut s, &seeds, false);
                let what = format!("{what} {path:?}");
                for (i, (a, b)) in split.q.iter().zip(&passes.q).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5,
                        "{what}: q[{i}] split {a}, passes {b}"
                    );
                }
                for (t, (a, b)) in split.objective.iter().zip(&passes.objective).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                        "{what}: J[{t}] split {a}, passes {b}"
                    );
                }
                assert_eq!(split.status, passes.status, "{what}: status");
                assert_eq!(split_tokens.1, passes_tokens.1, "{what}: draw status");
                // The same tokens, except where the draw was within rounding of a boundary.
                for (r, ((a, b), cpu)) in split_tokens
                    .0
                    .iter()
                    .zip(&passes_tokens.0)
                    .zip(&want)
                    .enumerate()
                {
                    if a != b {
                        assert!(
                            cpu.margin < 1e-5,
                            "{what}: row {r}: split token {a}, passes token {b} (margin {:.3e})",
                            cpu.margin
                        );
                        near += 1;
                    }
                }
                rows += batch;
                assert_tokens_agree(&split_tokens.0, &want, &format!("split {what}"));
            }
            s.set_bok_split(RowSplit::Any);
            assert_tokens_agree(&passes_tokens.0, &want, &format!("passes {what}"));
        }
    }
    eprintln!("split vs passes: {near} near-boundary differences in {rows} rows");
}
