//! The logit edits on the GPU (kernels/edits.cu) against the CPU reference: SPEC "Order of
//! operations" (its first stage: masks and penalties) and "Bad input". Every test skips (and
//! says so) where there is no GPU.

mod common;

use common::{download, upload, Dist};
use cudarc::driver::CudaSlice;
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng as _, SeedableRng};
use samplex::gpu::{DeviceHistory, DeviceLogits, DeviceLogitsMut, PenaltyRows, Sampler};
use samplex::{cpu, mask_words, status, Decoder, Error, History, Logit, Penalties, Rows};

/// (batch, vocab, stride) of the tests: one token, ragged words and chunks, strided rows,
/// real vocabularies.
const SHAPES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
    (3, 7, 9),
    (2, 1000, 1000),
    (4, 32000, 32003),
    (1, 128256, 128256),
    (2, 151936, 151940),
];

/// A random bitmask: row 0 allows nothing, row 1 everything (when there are more rows), the
/// others about `density`; bits past vocab are random too (they must be ignored).
fn bitmask(batch: usize, vocab: usize, density: f64, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let words = mask_words(vocab);
    let mut m = vec![0u32; batch * words];
    for r in 0..batch {
        for w in 0..words {
            m[r * words + w] = match r {
                0 => rng.random::<u32>() & !low_bits(vocab, w),
                1 => u32::MAX,
                _ => (0..32).fold(0, |acc, b| acc | (u32::from(rng.random_bool(density)) << b)),
            };
        }
    }
    m
}

/// The bits of word `w` that stand for tokens below `vocab`.
fn low_bits(vocab: usize, w: usize) -> u32 {
    let n = vocab.saturating_sub(32 * w).min(32);
    if n == 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// Strided host rows: `batch × stride` values, the padding past vocab set to 7 (which no edit
/// may touch).
fn strided<T: Logit>(z: &[f32], batch: usize, vocab: usize, stride: usize) -> Vec<T> {
    let mut out = vec![T::from_f32(7.0); batch * stride];
    for r in 0..batch {
        for i in 0..vocab {
            out[r * stride + i] = T::from_f32(z[r * vocab + i]);
        }
    }
    out
}

fn bits<T: Logit>(x: &[T]) -> Vec<u32> {
    x.iter().map(|v| v.to_f32().to_bits()).collect()
}

fn mask_case<T: Logit>(s: &mut Sampler, batch: usize, vocab: usize, stride: usize, seed: u64) {
    let z = common::logits(Dist::Normal(5.0), batch, vocab, seed);
    let host: Vec<T> = strided(&z, batch, vocab, stride);
    let allowed = bitmask(batch, vocab, 0.3, seed + 1);
    let mut want = host.clone();
    cpu::mask_tokens(&mut want, batch, vocab, stride, &allowed).unwrap();

    let mut d = upload(s, &host);
    let m = upload(s, &allowed);
    let mut logits = DeviceLogitsMut::with_stride(d.as_view_mut(), batch, vocab, stride).unwrap();
    s.mask_tokens(&mut logits, &m.as_view()).unwrap();
    let got = download(s, &d);
    assert_eq!(
        bits(&got),
        bits(&want),
        "mask {:?} batch {batch} vocab {vocab} stride {stride}",
        T::DTYPE
    );
}

#[test]
fn masks_match_the_cpu_reference() {
    let mut s = gpu_or_skip!();
    for (i, &(batch, vocab, stride)) in SHAPES.iter().enumerate() {
        let seed = 100 + i as u64;
        mask_case::<f32>(&mut s, batch, vocab, stride, seed);
        mask_case::<f16>(&mut s, batch, vocab, stride, seed);
        mask_case::<bf16>(&mut s, batch, vocab, stride, seed);
    }
}

/// A padded history: row r has `len_r` tokens drawn from a few hot ids (so they repeat) and the
/// whole vocabulary, then padding ids ≥ vocab up to max_len.
fn history(batch: usize, vocab: usize, max_len: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tokens = vec![vocab as u32; batch * max_len];
    let mut lengths = vec![0u32; batch];
    for r in 0..batch {
        let len = if r == 0 {
            max_len
        } else {
            rng.random_range(0..=max_len)
        };
        lengths[r] = len as u32;
        for t in &mut tokens[r * max_len..][..len] {
            *t = if rng.random_bool(0.5) {
                rng.random_range(0..vocab.min(8)) as u32
            } else if rng.random_bool(0.05) {
                vocab as u32 + rng.random_range(0..3) // ignored inside the length too
            } else {
                rng.random_range(0..vocab) as u32
            };
        }
    }
    (tokens, lengths)
}

/// GPU and CPU agree to within two units in the last place of `T` at the operands' scale (they
/// round in different places: f32 steps on the device, f64 then f32 on the host).
fn assert_close<T: Logit>(got: &[T], want: &[T], before: &[T], what: &str) {
    let ulp = match T::DTYPE {
        samplex::DType::F32 => f32::EPSILON,
        samplex::DType::F16 => 2f32.powi(-10),
        samplex::DType::Bf16 => 2f32.powi(-7),
    };
    for (i, ((g, w), b)) in got.iter().zip(want).zip(before).enumerate() {
        let (g, w, b) = (g.to_f32(), w.to_f32(), b.to_f32());
        if g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()) {
            continue;
        }
        let scale = w.abs().max(b.abs()).max(f32::MIN_POSITIVE);
        assert!(
            (g - w).abs() <= 2.0 * ulp * scale,
            "{what}: element {i} was {b}, GPU {g}, CPU {w}"
        );
    }
}

/// Per-row penalties on the device: the three columns a [`PenaltyRows`] borrows.
struct Columns([CudaSlice<f32>; 3]);

impl Columns {
    fn upload(s: &Sampler, each: &[Penalties]) -> Self {
        let col = |f: fn(&Penalties) -> f32| upload(s, &each.iter().map(f).collect::<Vec<_>>());
        Columns([
            col(|p| p.repetition),
            col(|p| p.presence),
            col(|p| p.frequency),
        ])
    }

    fn rows(&self) -> PenaltyRows<'_> {
        PenaltyRows {
            repetition: Some(self.0[0].as_view()),
            presence: Some(self.0[1].as_view()),
            frequency: Some(self.0[2].as_view()),
        }
    }
}

/// `apply_penalties` on `d` in place (`batch` rows of `vocab`, `stride` apart); each row's
/// status.
fn penalize_in_place<T: Logit>(
    s: &mut Sampler,
    d: &mut CudaSlice<T>,
    (batch, vocab, stride): (usize, usize, usize),
    hist: &DeviceHistory<'_>,
    pen: &Penalties,
    rows: &PenaltyRows<'_>,
) -> Vec<u32> {
    let mut st = upload(s, &vec![u32::MAX; batch]);
    let mut logits = DeviceLogitsMut::with_stride(d.as_view_mut(), batch, vocab, stride).unwrap();
    s.apply_penalties(&mut logits, hist, pen, rows, Some(&mut st.as_view_mut()))
        .unwrap();
    download(s, &st)
}

#[allow(clippy::too_many_arguments)]
fn penalty_case<T: Logit>(
    s: &mut Sampler,
    batch: usize,
    vocab: usize,
    stride: usize,
    max_len: usize,
    with_lengths: bool,
    per_row: bool,
    seed: u64,
) {
    let mut z = common::logits(Dist::Normal(5.0), batch, vocab, seed);
    z[0] = f32::NAN;
    if vocab > 2 {
        z[1] = f32::INFINITY;
        z[2] = f32::NEG_INFINITY;
    }
    let host: Vec<T> = strided(&z, batch, vocab, stride);
    let (mut tokens, lengths) = history(batch, vocab, max_len, seed + 1);
    if !with_lengths {
        // Padding beyond each length is the only thing that ends a row's history.
        for r in 0..batch {
            for t in &mut tokens[r * max_len..][lengths[r] as usize..] {
                *t = vocab as u32;
            }
        }
    }
    let pen = Penalties {
        repetition: 1.3,
        presence: 0.4,
        frequency: 0.25,
    };
    let mut rng = StdRng::seed_from_u64(seed + 2);
    let each: Vec<Penalties> = (0..batch)
        .map(|r| match r % 3 {
            0 => Penalties::NONE,
            1 => Penalties {
                repetition: rng.random_range(0.5..2.0),
                presence: rng.random_range(-2.0..2.0),
                frequency: rng.random_range(-2.0..2.0),
            },
            _ => Penalties {
                repetition: 1.0,
                presence: 0.0,
                frequency: 0.7,
            },
        })
        .collect();
    let mut want = host.clone();
    let cpu_hist = History {
        tokens: &tokens,
        max_len,
        lengths: with_lengths.then_some(&lengths[..]),
    };
    let cpu_pen = if per_row {
        Rows::Each(&each[..])
    } else {
        Rows::All(pen)
    };
    cpu::apply_penalties(&mut want, batch, vocab, stride, &cpu_hist, cpu_pen).unwrap();

    let mut d = upload(s, &host);
    let dt = upload(s, &tokens);
    let dl = upload(s, &lengths);
    let columns = Columns::upload(s, &each);
    let hist = DeviceHistory {
        tokens: dt.as_view(),
        max_len,
        lengths: with_lengths.then(|| dl.as_view()),
    };
    let rows = if per_row {
        columns.rows()
    } else {
        PenaltyRows::default()
    };
    let st = penalize_in_place(s, &mut d, (batch, vocab, stride), &hist, &pen, &rows);
    let got = download(s, &d);
    let what = format!(
        "penalties {:?} batch {batch} vocab {vocab} stride {stride} max_len {max_len} \
         lengths {with_lengths} per_row {per_row}",
        T::DTYPE
    );
    assert_close(&got, &want, &host, &what);
    // Untouched tokens (not in the history, or padding past vocab) keep their bits.
    for r in 0..batch {
        let len = lengths[r] as usize;
        let seen: std::collections::HashSet<u32> =
            tokens[r * max_len..][..len].iter().copied().collect();
        for i in 0..stride {
            if i >= vocab || !seen.contains(&(i as u32)) {
                let k = r * stride + i;
                assert_eq!(
                    got[k].to_f32().to_bits(),
                    host[k].to_f32().to_bits(),
                    "{what}: {k}"
                );
            }
        }
    }
    assert_eq!(st, vec![0; batch], "{what}: status");
}

#[test]
fn penalties_match_the_cpu_reference() {
    let mut s = gpu_or_skip!();
    for (i, &(batch, vocab, stride)) in SHAPES.iter().enumerate() {
        for (j, &max_len) in [0usize, 1, 37, 600].iter().enumerate() {
            let seed = 1000 + 10 * i as u64 + j as u64;
            let (lengths, per_row) = (j % 2 == 0, i % 2 == 1);
            penalty_case::<f32>(
                &mut s, batch, vocab, stride, max_len, lengths, per_row, seed,
            );
            penalty_case::<f16>(
                &mut s, batch, vocab, stride, max_len, !lengths, per_row, seed,
            );
            penalty_case::<bf16>(
                &mut s, batch, vocab, stride, max_len, lengths, !per_row, seed,
            );
        }
    }
}

fn bias_case<T: Logit>(
    s: &mut Sampler,
    batch: usize,
    vocab: usize,
    stride: usize,
    max_len: usize,
    seed: u64,
) {
    let mut z = common::logits(Dist::Normal(5.0), batch, vocab, seed);
    z[0] = f32::NAN;
    let host: Vec<T> = strided(&z, batch, vocab, stride);
    // Repeating ids (a token biased several times), padding, lengths; values of OpenAI's range
    // and small ones that the fixed point rounds.
    let (tokens, lengths) = history(batch, vocab, max_len, seed + 1);
    let mut rng = StdRng::seed_from_u64(seed + 2);
    let values: Vec<f32> = (0..tokens.len())
        .map(|i| match i % 3 {
            0 => rng.random_range(-100.0..100.0),
            1 => rng.random_range(-1e-6..1e-6),
            _ => rng.random_range(-3i32..=3) as f32,
        })
        .collect();
    let mut want = host.clone();
    let hist = History {
        tokens: &tokens,
        max_len,
        lengths: Some(&lengths),
    };
    cpu::apply_bias(&mut want, batch, vocab, stride, &hist, &values).unwrap();

    let mut d = upload(s, &host);
    let (dt, dl, dv) = (upload(s, &tokens), upload(s, &lengths), upload(s, &values));
    let mut st = upload(s, &vec![u32::MAX; batch]);
    {
        let hist = DeviceHistory {
            tokens: dt.as_view(),
            max_len,
            lengths: Some(dl.as_view()),
        };
        let mut logits =
            DeviceLogitsMut::with_stride(d.as_view_mut(), batch, vocab, stride).unwrap();
        s.apply_bias(
            &mut logits,
            &hist,
            &dv.as_view(),
            Some(&mut st.as_view_mut()),
        )
        .unwrap();
    }
    let what = format!(
        "bias {:?} batch {batch} vocab {vocab} stride {stride} max_len {max_len}",
        T::DTYPE
    );
    // The same f64 sum rounded the same way: the same bits (NaN stays NaN).
    assert_eq!(bits(&download(s, &d)), bits(&want), "{what}");
    assert_eq!(download(s, &st), vec![0; batch], "{what}: status");
}

#[test]
fn the_bias_matches_the_cpu_reference_bit_for_bit() {
    let mut s = gpu_or_skip!();
    for (i, &(batch, vocab, stride)) in SHAPES.iter().enumerate() {
        for (j, &max_len) in [0usize, 5, 300].iter().enumerate() {
            let seed = 2000 + 10 * i as u64 + j as u64;
            bias_case::<f32>(&mut s, batch, vocab, stride, max_len, seed);
            bias_case::<f16>(&mut s, batch, vocab, stride, max_len, seed);
            bias_case::<bf16>(&mut s, batch, vocab, stride, max_len, seed);
        }
    }
}

#[test]
fn bias_values_out_of_range_are_clamped_and_flagged() {
    let mut s = gpu_or_skip!();
    let (batch, vocab, max_len) = (4, 50, 3);
    let z = vec![1.0f32; batch * vocab];
    // Row 0 fine; 1: a NaN (→ 0); 2: 3e6 (→ 2^20); 3: length 5 > max_len (→ 3).
    let tokens = [1u32, 2, 1, 4, 5, 6, 7, 7, 8, 9, 10, 11];
    let values = [
        1.0f32,
        2.0,
        3.0,
        f32::NAN,
        1.0,
        1.0,
        3e6,
        -1.0,
        1.0,
        0.5,
        0.5,
        0.5,
    ];
    let lengths = [3u32, 3, 3, 5];
    let clamped = [
        1.0f32,
        2.0,
        3.0,
        0.0,
        1.0,
        1.0,
        1_048_576.0,
        -1.0,
        1.0,
        0.5,
        0.5,
        0.5,
    ];
    let mut want = z.clone();
    let hist = History {
        tokens: &tokens,
        max_len,
        lengths: Some(&[3, 3, 3, 3]),
    };
    cpu::apply_bias(&mut want, batch, vocab, vocab, &hist, &clamped).unwrap();

    let mut d = upload(&s, &z);
    let (dt, dl, dv) = (
        upload(&s, &tokens),
        upload(&s, &lengths),
        upload(&s, &values),
    );
    let mut st = upload(&s, &[u32::MAX; 4]);
    {
        let hist = DeviceHistory {
            tokens: dt.as_view(),
            max_len,
            lengths: Some(dl.as_view()),
        };
        let mut logits = DeviceLogitsMut::new(d.as_view_mut(), batch, vocab).unwrap();
        s.apply_bias(
            &mut logits,
            &hist,
            &dv.as_view(),
            Some(&mut st.as_view_mut()),
        )
        .unwrap();
    }
    assert_eq!(download(&s, &d), want);
    let c = status::PARAM_CLAMPED;
    assert_eq!(download(&s, &st), vec![0, c, c, c]);
}

/// Runs the penalties on `z` (batch × vocab f32) with `tokens` as every row's full history.
fn penalize(s: &mut Sampler, z: &[f32], vocab: usize, tokens: &[u32], max_len: usize) -> Vec<u32> {
    let batch = z.len() / vocab;
    let mut d = upload(s, z);
    let dt = upload(s, tokens);
    let hist = DeviceHistory {
        tokens: dt.as_view(),
        max_len,
        lengths: None,
    };
    let pen = Penalties {
        repetition: 1.5,
        presence: 0.5,
        frequency: 0.125,
    };
    let none = PenaltyRows::default();
    penalize_in_place(s, &mut d, (batch, vocab, vocab), &hist, &pen, &none);
    bits(&download(s, &d))
}

#[test]
fn penalties_do_not_depend_on_the_history_order_and_leave_their_table_empty() {
    let mut s = gpu_or_skip!();
    let (batch, vocab, max_len) = (3, 5000, 2000);
    let z = common::logits(Dist::Normal(1.0), batch, vocab, 5);
    let (tokens, _) = history(batch, vocab, max_len, 6);
    let first = penalize(&mut s, &z, vocab, &tokens, max_len);
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..3 {
        let mut shuffled = tokens.clone();
        for row in shuffled.chunks_mut(max_len) {
            row.shuffle(&mut rng);
        }
        // A table left dirty by a call (here one with another history in between) would
        // count, or edit, that call's tokens again.
        let (other, _) = history(batch, vocab, max_len, 60 + round);
        penalize(&mut s, &z, vocab, &other, max_len);
        assert_eq!(
            penalize(&mut s, &z, vocab, &shuffled, max_len),
            first,
            "round {round}"
        );
    }
}

#[test]
fn per_row_values_out_of_range_are_clamped_and_flagged() {
    let mut s = gpu_or_skip!();
    let (batch, vocab, max_len) = (5, 300, 4);
    let z = common::logits(Dist::Normal(3.0), batch, vocab, 11);
    let tokens: Vec<u32> = (0..batch * max_len).map(|i| (i % 7) as u32 * 3).collect();
    let pen = |repetition, presence| Penalties {
        repetition,
        presence,
        frequency: 0.1,
    };
    // Row 0 fine; 1: NaN repetition (→ 1); 2: presence −∞ (→ −f32::MAX); 3: length 9 > max_len
    // (→ max_len); 4: repetition −2 (→ the smallest normal f32).
    let given = [
        pen(1.2, 0.3),
        pen(f32::NAN, 0.3),
        pen(1.0, f32::NEG_INFINITY),
        pen(1.0, 0.3),
        pen(-2.0, 0.0),
    ];
    let clamped = [
        pen(1.2, 0.3),
        pen(1.0, 0.3),
        pen(1.0, -f32::MAX),
        pen(1.0, 0.3),
        pen(f32::MIN_POSITIVE, 0.0),
    ];
    let (lengths, clamped_lengths) = ([4u32, 2, 3, 9, 4], [4u32, 2, 3, 4, 4]);
    let mut want = z.clone();
    let hist = History {
        tokens: &tokens,
        max_len,
        lengths: Some(&clamped_lengths),
    };
    cpu::apply_penalties(&mut want, batch, vocab, vocab, &hist, Rows::Each(&clamped)).unwrap();

    let mut d = upload(&s, &z);
    let (dt, dl) = (upload(&s, &tokens), upload(&s, &lengths));
    let columns = Columns::upload(&s, &given);
    let hist = DeviceHistory {
        tokens: dt.as_view(),
        max_len,
        lengths: Some(dl.as_view()),
    };
    let st = penalize_in_place(
        &mut s,
        &mut d,
        (batch, vocab, vocab),
        &hist,
        &Penalties::NONE,
        &columns.rows(),
    );
    assert_close(&download(&s, &d), &want, &z, "clamped rows");
    let c = status::PARAM_CLAMPED;
    assert_eq!(st, vec![0, c, c, c, c]);
}

#[test]
fn masked_tokens_are_never_drawn() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (4, 32000);
    let z = common::logits(Dist::Normal(5.0), batch, vocab, 21);
    // Row r allows the tokens ≡ r (mod 5) only.
    let mut allowed = vec![0u32; batch * mask_words(vocab)];
    for r in 0..batch {
        for i in (r..vocab).step_by(5) {
            allowed[r * mask_words(vocab) + i / 32] |= 1 << (i % 32);
        }
    }
    let mut d = upload(&s, &z);
    let m = upload(&s, &allowed);
    {
        let mut logits = DeviceLogitsMut::new(d.as_view_mut(), batch, vocab).unwrap();
        s.mask_tokens(&mut logits, &m.as_view()).unwrap();
    }
    let mut tokens = s.stream().alloc_zeros::<u32>(batch).unwrap();
    for decoder in [
        Decoder::greedy(),
        Decoder::top_p(0.9, 1.0),
        Decoder::softmax(2.0),
    ] {
        for step in 0..4 {
            let logits = DeviceLogits::new(d.as_view(), batch, vocab).unwrap();
            s.sample(
                &logits,
                &decoder,
                &Default::default(),
                &samplex::gpu::DeviceSeeds::Shared(samplex::Rng::new(3).at(step)),
                None,
                &mut tokens.as_view_mut(),
                None,
            )
            .unwrap();
            for (r, &t) in download(&s, &tokens).iter().enumerate() {
                assert_eq!(
                    t as usize % 5,
                    r,
                    "{decoder:?} step {step} row {r}: token {t}"
                );
            }
        }
    }
}

#[test]
fn a_captured_graph_replays_the_edits() {
    let mut s = gpu_or_skip!();
    let (batch, vocab, max_len) = (2, 3000, 64);
    let z = common::logits(Dist::Normal(2.0), batch, vocab, 31);
    let allowed = bitmask(batch, vocab, 0.5, 32);
    let mut d = upload(&s, &z);
    let m = upload(&s, &allowed);
    let mut dt = upload(&s, &vec![vocab as u32; batch * max_len]);
    let pen = Penalties {
        repetition: 1.1,
        presence: 0.2,
        frequency: 0.3,
    };
    let bias_values: Vec<f32> = (0..batch * max_len).map(|i| (i % 9) as f32 - 4.0).collect();
    let dv = upload(&s, &bias_values);
    let run = |s: &mut Sampler,
               d: &mut cudarc::driver::CudaSlice<f32>,
               dt: &cudarc::driver::CudaSlice<u32>| {
        let hist = DeviceHistory {
            tokens: dt.as_view(),
            max_len,
            lengths: None,
        };
        let mut logits = DeviceLogitsMut::new(d.as_view_mut(), batch, vocab).unwrap();
        s.apply_penalties(&mut logits, &hist, &pen, &PenaltyRows::default(), None)
            .unwrap();
        // The same lists as a bias's tokens.
        s.apply_bias(&mut logits, &hist, &dv.as_view(), None)
            .unwrap();
        s.mask_tokens(&mut logits, &m.as_view()).unwrap();
    };
    run(&mut s, &mut d, &dt); // warm-up: loads the kernels, grows the ticket area
    let graph = common::capture(&mut s, |s| run(s, &mut d, &dt));
    for k in 0..3u64 {
        let (tokens, _) = history(batch, vocab, max_len, 40 + k);
        let mut want = z.clone();
        let hist = History {
            tokens: &tokens,
            max_len,
            lengths: None,
        };
        cpu::apply_penalties(&mut want, batch, vocab, vocab, &hist, Rows::All(pen)).unwrap();
        cpu::apply_bias(&mut want, batch, vocab, vocab, &hist, &bias_values).unwrap();
        cpu::mask_tokens(&mut want, batch, vocab, vocab, &allowed).unwrap();
        s.stream().memcpy_htod(&z, &mut d).unwrap();
        s.stream().memcpy_htod(&tokens, &mut dt).unwrap();
        graph.launch().unwrap();
        assert_close(&download(&s, &d), &want, &z, &format!("replay {k}"));
    }
}

#[test]
fn bad_input_is_refused_before_any_launch() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (2, 100);
    let mut d = s.stream().alloc_zeros::<f32>(batch * vocab).unwrap();
    let short = s
        .stream()
        .alloc_zeros::<u32>(mask_words(vocab) * batch - 1)
        .unwrap();
    let tokens = s.stream().alloc_zeros::<u32>(batch * 3).unwrap();
    let one = s.stream().alloc_zeros::<f32>(1).unwrap();
    let mut logits = DeviceLogitsMut::new(d.as_view_mut(), batch, vocab).unwrap();
    assert!(matches!(
        s.mask_tokens(&mut logits, &short.as_view()),
        Err(Error::BadLength {
            name: "allowed",
            got: 7,
            expected: 8
        })
    ));
    let hist = |max_len| DeviceHistory {
        tokens: tokens.as_view(),
        max_len,
        lengths: None,
    };
    let none = PenaltyRows::default();
    assert!(matches!(
        s.apply_penalties(&mut logits, &hist(4), &Penalties::NONE, &none, None),
        Err(Error::BadLength {
            name: "history tokens",
            got: 6,
            expected: 8
        })
    ));
    let bad = Penalties {
        repetition: 0.0,
        ..Penalties::NONE
    };
    assert!(matches!(
        s.apply_penalties(&mut logits, &hist(3), &bad, &none, None),
        Err(Error::BadParam {
            name: "repetition",
            ..
        })
    ));
    let bad = Penalties {
        frequency: f32::NAN,
        ..Penalties::NONE
    };
    assert!(matches!(
        s.apply_penalties(&mut logits, &hist(3), &bad, &none, None),
        Err(Error::BadParam {
            name: "frequency",
            ..
        })
    ));
    assert!(matches!(
        s.apply_bias(&mut logits, &hist(3), &one.as_view(), None),
        Err(Error::BadLength {
            name: "bias values",
            got: 1,
            expected: 6
        })
    ));
    let rows = PenaltyRows {
        presence: Some(one.as_view()),
        ..Default::default()
    };
    assert!(matches!(
        s.apply_penalties(&mut logits, &hist(3), &Penalties::NONE, &rows, None),
        Err(Error::BadLength {
            name: "presence",
            got: 1,
            expected: 2
        })
    ));
}
