//! The support rules on the GPU (kernels/topp.cu, kernels/topk.cu) against the CPU reference:
//! SPEC "Order of operations", "Top-k filter", "Top-p filter", "Min-p filter", "Drawing a
//! token" and "Bad input". Every test skips (and says so) where there is no GPU.
//!
//! Kept sets must equal the CPU's exactly. Top-k involves no arithmetic. Top-p and min-p
//! compare f32 weights on the device with f64 on the CPU, so a row is compared only when the
//! CPU's decision is farther from its boundary than the device's f32 error can reach
//! (`boundary_safe`, computed from the CPU data); the tests count the rows left out and fail
//! when there are many.

mod common;

use common::{convert, download, upload};

use std::time::Instant;

use common::{assert_tokens_agree, boundary_safe, chi_square_p, Dist};
use cudarc::driver::CudaSlice;
use half::{bf16, f16};
use samplex::cpu::{self, Draw};
use samplex::gpu::{DeviceLogits, DeviceSeeds, RowParams, RowSplit, Sampler};
use samplex::{status, Decoder, Error, Logit, Rng, Support};

fn support(top_k: u32, top_p: f32, min_p: f32) -> Support {
    Support {
        top_k,
        top_p,
        min_p,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests: batch-wide parameters plus per-row overrides, and the device's clamping of them.
// ---------------------------------------------------------------------------------------------

/// Per-row overrides (None: the batch-wide value).
#[derive(Clone, Debug, Default)]
struct HostRows {
    temperature: Option<Vec<f32>>,
    top_k: Option<Vec<u32>>,
    top_p: Option<Vec<f32>>,
    min_p: Option<Vec<f32>>,
}

/// The device copies of [`HostRows`].
struct RowBuffers {
    temperature: Option<CudaSlice<f32>>,
    top_k: Option<CudaSlice<u32>>,
    top_p: Option<CudaSlice<f32>>,
    min_p: Option<CudaSlice<f32>>,
}

impl RowBuffers {
    fn new(s: &Sampler, h: &HostRows) -> Self {
        RowBuffers {
            temperature: h.temperature.as_ref().map(|v| upload(s, v)),
            top_k: h.top_k.as_ref().map(|v| upload(s, v)),
            top_p: h.top_p.as_ref().map(|v| upload(s, v)),
            min_p: h.min_p.as_ref().map(|v| upload(s, v)),
        }
    }

    fn params(&self) -> RowParams<'_> {
        RowParams {
            temperature: self.temperature.as_ref().map(|d| d.as_view()),
            top_k: self.top_k.as_ref().map(|d| d.as_view()),
            top_p: self.top_p.as_ref().map(|d| d.as_view()),
            min_p: self.min_p.as_ref().map(|d| d.as_view()),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug)]
struct Request {
    temperature: f32,
    support: Support,
    rows: HostRows,
}

/// The device's clamp (`clamp_param` in common.cuh): NaN → `if_nan`, else into [lo, hi].
fn clamp(x: f32, lo: f32, hi: f32, if_nan: f32, clamped: &mut bool) -> f32 {
    let y = if x.is_nan() { if_nan } else { x.clamp(lo, hi) };
    *clamped |= x.is_nan() || y != x;
    y
}

impl Request {
    fn new(temperature: f32, support: Support) -> Self {
        Request {
            temperature,
            support,
            rows: HostRows::default(),
        }
    }

    /// Row r's (τ, support) after the device's clamping, and whether anything was clamped.
    fn row(&self, r: usize) -> (f32, Support, bool) {
        let mut c = false;
        let h = &self.rows;
        let t = h.temperature.as_ref().map_or(self.temperature, |v| {
            clamp(v[r], 0.0, f32::MAX, 1.0, &mut c)
        });
        let top_k = h.top_k.as_ref().map_or(self.support.top_k, |v| v[r]);
        let smallest = f32::from_bits(1);
        let top_p = h.top_p.as_ref().map_or(self.support.top_p, |v| {
            clamp(v[r], smallest, 1.0, 1.0, &mut c)
        });
        let min_p = h
            .min_p
            .as_ref()
            .map_or(self.support.min_p, |v| clamp(v[r], 0.0, 1.0, 0.0, &mut c));
        (t, support(top_k, top_p, min_p), c)
    }

    fn decoder(&self, r: usize) -> Decoder {
        let (t, sup, _) = self.row(r);
        Decoder::softmax(t).with_support(sup)
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs and the GPU calls.
// ---------------------------------------------------------------------------------------------

/// Rows `stride` elements apart, starting `lead` elements into `host` (a lead that is not a
/// multiple of 16 bytes runs the unaligned twins: `_any`, the cooperative grid's `_v1`).
struct Case<'a, T> {
    host: &'a [T],
    lead: usize,
    batch: usize,
    vocab: usize,
    stride: usize,
}

impl<'a, T: Logit> Case<'a, T> {
    fn dense(host: &'a [T], batch: usize, vocab: usize) -> Self {
        assert_eq!(host.len(), batch * vocab);
        Case {
            host,
            lead: 0,
            batch,
            vocab,
            stride: vocab,
        }
    }

    fn row(&self, r: usize) -> &'a [T] {
        let start = self.lead + r * self.stride;
        &self.host[start..start + self.vocab]
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Dense {
    Probs,
    Masked,
}

/// filtered_probs or filtered_logits: (batch × vocab output, status).
fn gpu_dense<T: Logit>(
    s: &mut Sampler,
    c: &Case<T>,
    req: &Request,
    what: Dense,
) -> (Vec<f32>, Vec<u32>) {
    let dev = upload(s, c.host);
    let logits =
        DeviceLogits::with_stride(dev.slice(c.lead..), c.batch, c.vocab, c.stride).unwrap();
    let bufs = RowBuffers::new(s, &req.rows);
    let rows = bufs.params();
    let mut out = s.stream().alloc_zeros::<f32>(c.batch * c.vocab).unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(c.batch).unwrap();
    let (t, sup) = (req.temperature, &req.support);
    let mut o = out.as_view_mut();
    let mut so = st.as_view_mut();
    match what {
        Dense::Probs => s.filtered_probs(&logits, t, sup, &rows, &mut o, Some(&mut so)),
        Dense::Masked => s.filtered_logits(&logits, t, sup, &rows, &mut o, Some(&mut so)),
    }
    .unwrap();
    (download(s, &out), download(s, &st))
}

/// Seeds as the host sees them.
#[derive(Clone, Debug)]
enum HostSeeds {
    Shared(Rng),
    Each(Vec<Rng>),
}

impl HostSeeds {
    fn get(&self, r: usize) -> (Rng, u32) {
        match self {
            HostSeeds::Shared(rng) => (*rng, r as u32),
            HostSeeds::Each(v) => (v[r], 0),
        }
    }

    fn each(batch: usize) -> Self {
        HostSeeds::Each(
            (0..batch)
                .map(|r| Rng::new(5000 + r as u64).at(3 * r as u64))
                .collect(),
        )
    }
}

/// sample_filtered: (tokens, status).
fn gpu_sample<T: Logit>(
    s: &mut Sampler,
    c: &Case<T>,
    req: &Request,
    seeds: &HostSeeds,
) -> (Vec<u32>, Vec<u32>) {
    let dev = upload(s, c.host);
    let logits =
        DeviceLogits::with_stride(dev.slice(c.lead..), c.batch, c.vocab, c.stride).unwrap();
    let bufs = RowBuffers::new(s, &req.rows);
    let rows = bufs.params();
    let seed_bufs = match seeds {
        HostSeeds::Shared(_) => None,
        HostSeeds::Each(v) => {
            let a: Vec<u64> = v.iter().map(|r| r.seed).collect();
            let b: Vec<u64> = v.iter().map(|r| r.offset).collect();
            Some((upload(s, &a), upload(s, &b)))
        }
    };
    let dseeds = match (seeds, &seed_bufs) {
        (HostSeeds::Shared(rng), _) => DeviceSeeds::Shared(*rng),
        (HostSeeds::Each(_), Some((a, b))) => DeviceSeeds::Each {
            seeds: a.as_view(),
            offsets: b.as_view(),
        },
        _ => unreachable!(),
    };
    let mut tokens = s.stream().alloc_zeros::<u32>(c.batch).unwrap();
    let mut st = s.stream().alloc_zeros::<u32>(c.batch).unwrap();
    s.sample_filtered(
        &logits,
        req.temperature,
        &req.support,
        &rows,
        &dseeds,
        &mut tokens.as_view_mut(),
        Some(&mut st.as_view_mut()),
    )
    .unwrap();
    (download(s, &tokens), download(s, &st))
}

// ---------------------------------------------------------------------------------------------
// The CPU side: what may be compared, and the comparisons.
// ---------------------------------------------------------------------------------------------

/// The status the device must write for row r.
fn expected_status<T: Logit>(row: &[T], clamped: bool) -> u32 {
    let (z, st) = cpu::widen_row(row);
    let none = !z.iter().any(|v| *v > f64::NEG_INFINITY);
    st | if clamped { status::PARAM_CLAMPED } else { 0 }
        | if none { status::NO_FINITE_LOGIT } else { 0 }
}

/// Masked logits, kept sets, probabilities and status against the CPU. Returns the number of
/// rows left out as near a boundary.
fn check_filters<T: Logit>(s: &mut Sampler, c: &Case<T>, req: &Request, what: &str) -> usize {
    let (masked, st_m) = gpu_dense(s, c, req, Dense::Masked);
    let (probs, st_p) = gpu_dense(s, c, req, Dense::Probs);
    let v = c.vocab;
    let mut skipped = 0;
    for r in 0..c.batch {
        let (t, sup, clamped) = req.row(r);
        let want = expected_status(c.row(r), clamped);
        assert_eq!(st_m[r], want, "{what}: row {r}: status (masked logits)");
        assert_eq!(st_p[r], want, "{what}: row {r}: status (probabilities)");
        let (z, _) = cpu::widen_row(c.row(r));
        if !boundary_safe(&z, f64::from(t), &sup) {
            skipped += 1;
            continue;
        }
        let keep = cpu::kept_row(&z, &sup, f64::from(t));
        let gm = &masked[r * v..(r + 1) * v];
        let bad: Vec<usize> = (0..v)
            .filter(|&i| (gm[i] > f32::NEG_INFINITY) != keep[i])
            .collect();
        assert!(
            bad.is_empty(),
            "{what}: row {r} (τ {t}, {sup:?}): {} tokens kept differently, first {} (z = {:e}, cpu kept {}); \
             cpu keeps {}, gpu {}",
            bad.len(),
            bad[0],
            z[bad[0]],
            keep[bad[0]],
            keep.iter().filter(|k| **k).count(),
            gm.iter().filter(|x| **x > f32::NEG_INFINITY).count()
        );
        for i in (0..v).filter(|&i| keep[i]) {
            assert_eq!(
                gm[i].to_bits(),
                (z[i] as f32).to_bits(),
                "{what}: row {r} token {i}: masked value"
            );
        }
        let q = cpu::row_distribution(&z, &Decoder::softmax(t).with_support(sup), None);
        let gp = &probs[r * v..(r + 1) * v];
        for i in 0..v {
            let (g, e) = (f64::from(gp[i]), q[i]);
            assert!(
                (g - e).abs() <= 2e-5 * e + 1e-7 && (e > 0.0 || g == 0.0),
                "{what}: row {r} token {i}: gpu p {g:e}, cpu p {e:e}"
            );
        }
    }
    skipped
}

/// Tokens and status against the CPU's draws (rows near a boundary left out). Returns
/// (rows that disagreed within the CDF margin, rows left out).
fn check_sampling<T: Logit>(
    s: &mut Sampler,
    c: &Case<T>,
    req: &Request,
    seeds: &HostSeeds,
    what: &str,
) -> (usize, usize) {
    let (tokens, st) = gpu_sample(s, c, req, seeds);
    let mut gpu = Vec::new();
    let mut cpu_draws: Vec<Draw> = Vec::new();
    let mut skipped = 0;
    for r in 0..c.batch {
        let (t, sup, clamped) = req.row(r);
        let (z, _) = cpu::widen_row(c.row(r));
        let (rng, stream) = seeds.get(r);
        let d = cpu::sample_row(&z, &req.decoder(r), None, rng, stream);
        assert_eq!(
            st[r],
            expected_status(c.row(r), clamped),
            "{what}: row {r}: status"
        );
        if !boundary_safe(&z, f64::from(t), &sup) {
            skipped += 1;
            continue;
        }
        gpu.push(tokens[r]);
        cpu_draws.push(d);
    }
    (assert_tokens_agree(&gpu, &cpu_draws, what), skipped)
}

/// The filter settings the differential tests sweep.
fn supports(vocab: usize) -> Vec<Support> {
    vec![
        support(50, 1.0, 0.0),
        support(0, 0.9, 0.0),
        support(0, 0.99, 0.0),
        support(0, 1.0, 0.05),
        support(100, 0.8, 0.02),
        support(1000, 0.95, 0.001),
        support(vocab as u32, 1.0, 0.0),
        support(0, 1e-6, 0.0),
        support(1, 0.5, 0.5),
    ]
}

// ---------------------------------------------------------------------------------------------
// Kept sets, masked logits, probabilities.
// ---------------------------------------------------------------------------------------------

#[test]
fn filters_keep_the_cpu_sets_on_every_dtype() {
    let mut s = gpu_or_skip!();
    let (mut rows, mut skipped) = (0, 0);
    for (batch, vocab) in [(6usize, 1000usize), (3, 32000), (2, 128_256)] {
        // The CPU sorts every row several times: keep the largest vocabulary's sweep short.
        let big = vocab > 100_000;
        for (j, dist) in Dist::ALL
            .iter()
            .enumerate()
            .filter(|(j, _)| !big || j % 2 == 0)
        {
            let x = common::logits(*dist, batch, vocab, 40 + j as u64);
            for sup in supports(vocab) {
                for t in [1.0f32, 0.7].into_iter().take(if big { 1 } else { 2 }) {
                    let req = Request::new(t, sup);
                    let what = format!("{dist:?} b{batch} v{vocab} τ{t} {sup:?}");
                    let hf: Vec<f32> = convert(&x);
                    let hh: Vec<f16> = convert(&x);
                    let hb: Vec<bf16> = convert(&x);
                    skipped += check_filters(
                        &mut s,
                        &Case::dense(&hf, batch, vocab),
                        &req,
                        &format!("f32 {what}"),
                    );
                    skipped += check_filters(
                        &mut s,
                        &Case::dense(&hh, batch, vocab),
                        &req,
                        &format!("f16 {what}"),
                    );
                    skipped += check_filters(
                        &mut s,
                        &Case::dense(&hb, batch, vocab),
                        &req,
                        &format!("bf16 {what}"),
                    );
                    rows += 3 * batch;
                }
            }
        }
    }
    eprintln!("filters_keep_the_cpu_sets_on_every_dtype: {skipped} of {rows} rows near a boundary, left out");
    assert!(
        skipped * 10 <= rows,
        "{skipped} of {rows} rows left out: the margin test is too coarse"
    );
}

#[test]
fn filters_probabilities_04_03_03_with_k2_keep_all_three() {
    let mut s = gpu_or_skip!();
    let z = [
        0.4f32.ln(),
        0.3f32.ln(),
        0.3f32.ln(),
        -30.0,
        f32::NEG_INFINITY,
    ];
    let req = Request::new(1.0, support(2, 1.0, 0.0));
    check_filters(
        &mut s,
        &Case::dense(&z, 1, 5),
        &req,
        "[0.4, 0.3, 0.3] k = 2",
    );
    let (m, _) = gpu_dense(&mut s, &Case::dense(&z, 1, 5), &req, Dense::Masked);
    assert_eq!(
        m.iter().filter(|v| **v > f32::NEG_INFINITY).count(),
        3,
        "the tie at the 2nd value is kept"
    );
    let (p, _) = gpu_dense(&mut s, &Case::dense(&z, 1, 5), &req, Dense::Probs);
    for (g, e) in p.iter().zip([0.4, 0.3, 0.3, 0.0, 0.0]) {
        assert!((f64::from(*g) - e).abs() < 1e-6, "{p:?}");
    }
    // Top-p 0.5 keeps 0.4 and both ties at 0.3 as well.
    check_filters(
        &mut s,
        &Case::dense(&z, 1, 5),
        &Request::new(1.0, support(0, 0.5, 0.0)),
        "p 0.5",
    );
}

/// τ above 2^126, where 1/τ would be subnormal (kernels/topp.cu `TauScale` prescales by 2^-64):
/// logits of τ's size make an ordinary distribution (u from 0 to 0.98, 50 values in ties), whose
/// kept sets and draws must be the CPU's.
#[test]
fn filters_temperatures_above_2_pow_126_keep_the_cpu_sets() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (2, 1000);
    let t = 2e38f32;
    let x: Vec<f32> = (0..batch * vocab)
        .map(|i| ((i * 37) % 50) as f32 * 4e36)
        .collect();
    let mut checked = 0;
    for sup in [
        support(0, 0.5, 0.0),
        support(100, 0.9, 0.0),
        support(0, 1.0, 0.6),
        support(0, 0.3, 0.5),
    ] {
        let req = Request::new(t, sup);
        let what = format!("τ {t:e} {sup:?}");
        checked += batch - check_filters(&mut s, &Case::dense(&x, batch, vocab), &req, &what);
        check_sampling(
            &mut s,
            &Case::dense(&x, batch, vocab),
            &req,
            &HostSeeds::Shared(Rng::new(5)),
            &what,
        );
    }
    assert!(
        checked > 0,
        "every row was near a boundary: nothing was compared"
    );
}

#[test]
fn filters_adversarial_rows() {
    let mut s = gpu_or_skip!();
    let vocab = 5000;
    let mut rows: Vec<Vec<f32>> = Vec::new();
    rows.push(vec![1.25; vocab]); // all equal
    rows.push((0..vocab).map(|i| ((i * 7919) % 4) as f32).collect()); // many ties at every cut
    let mut r = common::logits(Dist::Normal(1.0), 1, vocab, 2);
    r[777] = 1e30; // one huge logit
    rows.push(r.clone());
    r[4000] = f32::INFINITY; // +inf: counted as f32::MAX, flagged
    rows.push(r);
    let mut r = vec![f32::NEG_INFINITY; vocab];
    r[3333] = -7.0; // all −inf but one
    rows.push(r.clone());
    r[12] = f32::NAN; // NaN counts as −inf, flagged
    rows.push(r);
    rows.push(vec![f32::NEG_INFINITY; vocab]); // no finite logit
    rows.push(vec![f32::NAN; vocab]);
    let mut r: Vec<f32> = (0..vocab).map(|i| 1e-41 * ((i * 31) % 50) as f32).collect(); // denormals
    r[5] = -0.0;
    r[6] = 0.0;
    rows.push(r);
    let mut r = vec![f32::NEG_INFINITY; vocab]; // mostly −inf (a min-tokens mask)
    for i in (0..vocab).step_by(61) {
        r[i] = ((i * 13) % 7) as f32 * 0.75;
    }
    rows.push(r);
    rows.push(common::logits(Dist::Gumbel(0.1), 1, vocab, 5)); // peaked
    let batch = rows.len();
    let x = rows.concat();
    let mut all = supports(vocab);
    all.push(support(3, 1.0, 0.0));
    all.push(support(4999, 0.3, 0.0));
    all.push(support(0, 0.3, 0.9));
    for sup in all {
        for t in [1.0f32, 0.3, 1e-40] {
            let req = Request::new(t, sup);
            let what = format!("adversarial τ{t} {sup:?}");
            check_filters(&mut s, &Case::dense(&x, batch, vocab), &req, &what);
            let h: Vec<bf16> = convert(&x);
            check_filters(
                &mut s,
                &Case::dense(&h, batch, vocab),
                &req,
                &format!("bf16 {what}"),
            );
            check_sampling(
                &mut s,
                &Case::dense(&x, batch, vocab),
                &req,
                &HostSeeds::Shared(Rng::new(3)),
                &what,
            );
        }
    }
    // Fixed expectations, independent of the CPU.
    let req = Request::new(1.0, support(0, 0.9, 0.0));
    let (tokens, st) = gpu_sample(
        &mut s,
        &Case::dense(&x, batch, vocab),
        &req,
        &HostSeeds::Shared(Rng::new(9)),
    );
    assert_eq!(tokens[2], 777, "the huge logit takes all the mass");
    assert_eq!(tokens[3], 4000, "+inf counts as f32::MAX");
    assert_eq!(st[3], status::POS_INF_LOGIT);
    assert_eq!((tokens[4], tokens[5]), (3333, 3333));
    assert_eq!(st[5], status::NAN_LOGIT);
    assert_eq!(
        (tokens[6], st[6]),
        (status::NO_TOKEN, status::NO_FINITE_LOGIT)
    );
    assert_eq!(
        (tokens[7], st[7]),
        (
            status::NO_TOKEN,
            status::NO_FINITE_LOGIT | status::NAN_LOGIT
        )
    );
}

/// NaN and +inf in every lane of a span and at the rows' edges (common::edge_rows), aligned and
/// at three misalignments with NaN between the rows: kept sets, probabilities, draws and status
/// as the CPU's, through top-k, top-p, min-p alone and all three.
#[test]
fn filters_nan_and_inf_in_every_lane_and_at_the_row_edges() {
    let mut s = gpu_or_skip!();
    let vocab = 1001;
    let rows = common::edge_rows(vocab, 43);
    let batch = rows.len();
    let dense = rows.concat();
    for (lead, stride) in common::EDGE_LAYOUTS {
        let hf = common::Batch::<f32>::laid_out(&dense, batch, vocab, stride, lead).host;
        let hb = common::Batch::<bf16>::laid_out(&dense, batch, vocab, stride, lead).host;
        let cf = Case {
            host: &hf,
            lead,
            batch,
            vocab,
            stride,
        };
        let cb = Case {
            host: &hb,
            lead,
            batch,
            vocab,
            stride,
        };
        for sup in [
            support(7, 1.0, 0.0),
            support(0, 0.9, 0.0),
            support(0, 1.0, 0.05),
            support(50, 0.8, 0.02),
        ] {
            let req = Request::new(0.8, sup);
            let what = format!("lead {lead} stride {stride} {sup:?}");
            check_filters(&mut s, &cf, &req, &format!("f32 {what}"));
            check_filters(&mut s, &cb, &req, &format!("bf16 {what}"));
            check_sampling(&mut s, &cf, &req, &HostSeeds::each(batch), &what);
            check_sampling(&mut s, &cb, &req, &HostSeeds::each(batch), &what);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The threshold kernel's split paths (a cluster on sm_90, a cooperative grid everywhere) against
// its one-block path.
// ---------------------------------------------------------------------------------------------

/// The supports the cluster comparison sweeps: k = vocab, p = 1, tiny p, min-p, and mixes.
fn split_supports(vocab: usize) -> Vec<Support> {
    vec![
        support(50, 0.9, 0.0),
        support(0, 0.95, 0.05),
        support(vocab as u32, 1.0, 0.0),
        support(0, 1e-6, 0.0),
        support(1000, 1.0, 0.3),
        support(0, 1.0, 0.0),
    ]
}

/// Masked logits, probabilities, tokens and status, every value as bits.
fn filter_bits<T: Logit>(s: &mut Sampler, c: &Case<T>, req: &Request) -> Vec<Vec<u32>> {
    let (masked, st_m) = gpu_dense(s, c, req, Dense::Masked);
    let (probs, st_p) = gpu_dense(s, c, req, Dense::Probs);
    let (tokens, st_s) = gpu_sample(s, c, req, &HostSeeds::Shared(Rng::new(21)));
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<u32>>();
    vec![bits(masked), st_m, bits(probs), st_p, tokens, st_s]
}

/// Every split path this device has (the default; and the cooperative grid where the default
/// is a cluster) against the one-block path: the same bits.
fn check_split<T: Logit>(s: &mut Sampler, c: &Case<T>, req: &Request, what: &str) {
    s.set_filter_split(RowSplit::Off);
    let whole = filter_bits(s, c, req);
    let mut modes = vec![RowSplit::Any];
    if common::cluster_launch(s) {
        modes.push(RowSplit::Grid);
    }
    let names = [
        "masked",
        "masked status",
        "probs",
        "probs status",
        "tokens",
        "sample status",
    ];
    for mode in modes {
        s.set_filter_split(mode);
        let path = s.filter_threshold_path::<T>(c.batch, c.vocab).unwrap();
        let split = filter_bits(s, c, req);
        common::assert_split_bits(
            &split,
            &whole,
            &names,
            (c.batch, c.vocab),
            &format!("{what} {path:?}"),
        );
    }
    s.set_filter_split(RowSplit::Any);
}

#[test]
fn filters_split_paths_give_the_one_block_bits() {
    let mut s = gpu_or_skip!();
    for (vocab, n, batch, x) in common::split_cases(11) {
        let path = common::assert_staged_split_paths(
            &mut s,
            |s| s.filter_threshold_path::<f32>(batch, vocab).unwrap(),
            |s, split| s.set_filter_split(split),
            (batch, vocab),
        );
        let hb: Vec<bf16> = convert(&x);
        for (j, sup) in split_supports(vocab).into_iter().enumerate() {
            // Half the (batch, support) pairs each dtype, and τ = 1 or 0.6.
            let t = if j % 3 == 2 { 0.6 } else { 1.0 };
            let req = Request::new(t, sup);
            let what = format!("b{batch} v{vocab} τ{t} {sup:?} {path:?}");
            if (n + j) % 2 == 0 {
                check_split(
                    &mut s,
                    &Case::dense(&x, batch, vocab),
                    &req,
                    &format!("f32 {what}"),
                );
            } else {
                check_split(
                    &mut s,
                    &Case::dense(&hb, batch, vocab),
                    &req,
                    &format!("bf16 {what}"),
                );
            }
        }
    }
}

#[test]
fn filters_split_paths_without_staging_give_the_one_block_bits() {
    use samplex::gpu::topp::ThresholdPath;
    let mut s = gpu_or_skip!();
    // 17 rows: clusters of 4, whose 65537-logit slices do not fit the shared memory, so every
    // pass reads the logits again.
    let (batch, vocab) = (17usize, 262_147usize);
    let rows = common::split_rows(vocab, 11);
    let x: Vec<f32> = (0..batch)
        .flat_map(|j| rows[j % rows.len()].clone())
        .collect();
    let path = s.filter_threshold_path::<f32>(batch, vocab).unwrap();
    if common::cluster_launch(&s) {
        assert!(
            matches!(
                path,
                ThresholdPath::Cluster {
                    blocks: 4,
                    staged: false,
                    ..
                }
            ),
            "{path:?}"
        );
    }
    s.set_filter_split(RowSplit::Grid);
    let grid = s.filter_threshold_path::<f32>(batch, vocab).unwrap();
    s.set_filter_split(RowSplit::Any);
    assert!(
        matches!(
            grid,
            ThresholdPath::Grid {
                blocks: 4,
                staged: false,
                ..
            }
        ),
        "{grid:?}"
    );
    let req = Request::new(0.8, support(50, 0.9, 0.05));
    check_split(
        &mut s,
        &Case::dense(&x, batch, vocab),
        &req,
        &format!("{path:?}"),
    );
}

#[test]
fn filters_split_path_keeps_the_cpu_sets() {
    let mut s = gpu_or_skip!();
    // Odd vocab and unaligned rows: the slices' ragged ends and the _any entries.
    let vocab = 40_001;
    let rows = common::split_rows(vocab, 11);
    let batch = 4;
    for first in [0, 4] {
        let x: Vec<f32> = rows[first..first + batch].concat();
        let mut lead = vec![0.0f32; 1];
        lead.extend_from_slice(&x);
        for sup in split_supports(vocab) {
            let req = Request::new(1.0, sup);
            let what = format!("cluster rows {first}.. {sup:?}");
            check_filters(&mut s, &Case::dense(&x, batch, vocab), &req, &what);
            let c = Case {
                host: &lead,
                lead: 1,
                batch,
                vocab,
                stride: vocab,
            };
            check_filters(&mut s, &c, &req, &format!("unaligned {what}"));
            check_split(&mut s, &c, &req, &format!("unaligned {what}"));
            check_sampling(
                &mut s,
                &Case::dense(&x, batch, vocab),
                &req,
                &HostSeeds::Shared(Rng::new(4)),
                &what,
            );
        }
    }
}

#[test]
fn filters_vocab_one_and_tiny_rows() {
    let mut s = gpu_or_skip!();
    let x = [0.5f32, f32::NAN, -1.0, f32::NEG_INFINITY];
    for sup in supports(1) {
        check_filters(
            &mut s,
            &Case::dense(&x, 4, 1),
            &Request::new(1.0, sup),
            &format!("vocab 1 {sup:?}"),
        );
    }
    let y = common::logits(Dist::Normal(3.0), 9, 7, 8);
    for sup in supports(7) {
        let req = Request::new(0.8, sup);
        check_filters(
            &mut s,
            &Case::dense(&y, 9, 7),
            &req,
            &format!("vocab 7 {sup:?}"),
        );
        check_sampling(
            &mut s,
            &Case::dense(&y, 9, 7),
            &req,
            &HostSeeds::each(9),
            &format!("vocab 7 {sup:?}"),
        );
    }
}

#[test]
fn filters_greedy_rows_keep_the_lowest_argmax_alone() {
    let mut s = gpu_or_skip!();
    let mut x = common::logits(Dist::Normal(1.0), 4, 3000, 6);
    for r in 0..4 {
        for i in [100 + r, 2500, 2999] {
            x[r * 3000 + i] = 9.0; // ties at the max: the lowest index wins
        }
    }
    let req = Request::new(0.0, support(10, 0.5, 0.1));
    check_filters(&mut s, &Case::dense(&x, 4, 3000), &req, "greedy");
    let (m, _) = gpu_dense(&mut s, &Case::dense(&x, 4, 3000), &req, Dense::Masked);
    for r in 0..4 {
        let kept: Vec<usize> = (0..3000)
            .filter(|&i| m[r * 3000 + i] > f32::NEG_INFINITY)
            .collect();
        assert_eq!(kept, vec![100 + r], "row {r}");
    }
    let (tokens, _) = gpu_sample(
        &mut s,
        &Case::dense(&x, 4, 3000),
        &req,
        &HostSeeds::Shared(Rng::new(1)),
    );
    assert_eq!(tokens, vec![100, 101, 102, 103]);
    // Per-row τ: some rows greedy, some not, in one launch.
    let mut req = Request::new(1.0, support(10, 1.0, 0.0));
    req.rows.temperature = Some(vec![0.0, 1.0, 0.0, 0.5]);
    check_filters(&mut s, &Case::dense(&x, 4, 3000), &req, "per-row greedy");
    check_sampling(
        &mut s,
        &Case::dense(&x, 4, 3000),
        &req,
        &HostSeeds::each(4),
        "per-row greedy",
    );
}

#[test]
fn filters_per_row_parameters_are_really_per_row_and_clamped() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (10, 4000);
    let one = common::logits(Dist::Gumbel(1.0), 1, vocab, 14);
    let x: Vec<f32> = (0..batch).flat_map(|_| one.iter().copied()).collect();
    let mut req = Request::new(1.0, support(0, 1.0, 0.0));
    req.rows = HostRows {
        temperature: Some(vec![
            1.0,
            0.5,
            2.0,
            f32::NAN,
            -1.0,
            1.0,
            1.0,
            0.7,
            f32::INFINITY,
            1.3,
        ]),
        top_k: Some(vec![0, 5, 50, 4000, 9000, 1, 10, 100, 20, 300]),
        // (Row 8's τ = +∞ makes every f64 weight 1.0: top-p would tie distinct logits.)
        top_p: Some(vec![
            1.0,
            0.5,
            0.9,
            0.99,
            1.5,
            0.0,
            f32::NAN,
            0.3,
            1.0,
            -2.0,
        ]),
        min_p: Some(vec![
            0.0,
            0.1,
            0.0,
            0.01,
            -0.5,
            2.0,
            f32::NAN,
            0.05,
            0.0,
            0.2,
        ]),
    };
    let c = Case::dense(&x, batch, vocab);
    let skipped = check_filters(&mut s, &c, &req, "per-row");
    assert!(skipped <= 1, "{skipped} rows left out");
    check_sampling(&mut s, &c, &req, &HostSeeds::each(batch), "per-row");
    // The rows really differ, and the flags are where the clamps are.
    let (m, st) = gpu_dense(&mut s, &c, &req, Dense::Masked);
    let counts: Vec<usize> = (0..batch)
        .map(|r| {
            m[r * vocab..(r + 1) * vocab]
                .iter()
                .filter(|v| **v > f32::NEG_INFINITY)
                .count()
        })
        .collect();
    let mut distinct = counts.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 6, "kept counts {counts:?}");
    let flagged: Vec<bool> = st.iter().map(|s| s & status::PARAM_CLAMPED != 0).collect();
    assert_eq!(
        flagged,
        vec![false, false, false, true, true, true, true, false, true, true]
    );
    // One per-row field alone, the others batch-wide.
    let mut req = Request::new(0.9, support(0, 0.8, 0.01));
    req.rows.top_k = Some((0..batch as u32).map(|r| 1 + r * r * 40).collect());
    check_filters(&mut s, &c, &req, "per-row k only");
    let mut req = Request::new(0.9, support(40, 1.0, 0.0));
    req.rows.min_p = Some((0..batch).map(|r| 0.02 * r as f32).collect());
    check_filters(&mut s, &c, &req, "per-row min_p only");
}

#[test]
fn filters_strided_and_unaligned_rows() {
    let mut s = gpu_or_skip!();
    let (batch, vocab, stride, lead) = (4, 5001, 5013, 1);
    let x = common::logits(
        Dist::Normal(1.0),
        1,
        lead + (batch - 1) * stride + vocab,
        31,
    );
    let h: Vec<bf16> = convert(&x);
    let req = Request::new(0.8, support(200, 0.9, 0.01));
    let c32 = Case {
        host: &x[..],
        lead,
        batch,
        vocab,
        stride,
    };
    let c16 = Case {
        host: &h[..],
        lead,
        batch,
        vocab,
        stride,
    };
    check_filters(&mut s, &c32, &req, "f32 strided, unaligned");
    check_filters(&mut s, &c16, &req, "bf16 strided, unaligned");
    check_sampling(
        &mut s,
        &c32,
        &req,
        &HostSeeds::Shared(Rng::new(4)),
        "f32 strided, unaligned",
    );
    // bf16 rows start 1, 6, 3, 0 elements past a 16-byte boundary: three of the shifts the
    // draw's 16-byte loads take (odd and even), and an aligned row beside them.
    check_sampling(
        &mut s,
        &c16,
        &req,
        &HostSeeds::each(batch),
        "bf16 strided, unaligned",
    );
    let c = Case {
        host: &x[..],
        lead: 0,
        batch,
        vocab,
        stride: 5008,
    };
    check_filters(&mut s, &c, &req, "f32 stride 5008 (vector loads)");
    check_sampling(&mut s, &c, &req, &HostSeeds::each(batch), "f32 stride 5008");
    // 96 contiguous bf16 rows of an odd vocab (every shift there is), split 3 ways: 3-4 tiles a
    // block, so the draw carries a shifted prefetch from tile to tile.
    let (batch, vocab) = (96, 20001);
    let x: Vec<bf16> = convert(&common::logits(Dist::Normal(1.0), batch, vocab, 32));
    let c = Case {
        host: &x[..],
        lead: 0,
        batch,
        vocab,
        stride: vocab,
    };
    check_sampling(
        &mut s,
        &c,
        &req,
        &HostSeeds::each(batch),
        "bf16 contiguous, odd vocab",
    );
}

// ---------------------------------------------------------------------------------------------
// Draws.
// ---------------------------------------------------------------------------------------------

#[test]
fn filters_sampling_agrees_with_cpu_draws() {
    let mut s = gpu_or_skip!();
    let (mut near, mut skipped, mut rows) = (0, 0, 0);
    // Batch 1-3 split rows over many blocks (tickets); batch 64 takes whole rows.
    for (batch, vocab) in [
        (1usize, 128_256usize),
        (3, 262_147),
        (2, 32000),
        (64, 32000),
        (200, 1000),
    ] {
        let big = vocab > 100_000;
        for (j, dist) in Dist::ALL
            .iter()
            .enumerate()
            .filter(|(j, _)| !big || j % 2 == 1)
        {
            let x = common::logits(*dist, batch, vocab, 70 + j as u64);
            for sup in [
                support(50, 1.0, 0.0),
                support(0, 0.9, 0.0),
                support(100, 0.8, 0.02),
                support(0, 1.0, 0.05),
            ] {
                for seeds in [
                    HostSeeds::Shared(Rng::new(11).at(2)),
                    HostSeeds::each(batch),
                ] {
                    let req = Request::new(0.9, sup);
                    let what = format!("{dist:?} b{batch} v{vocab} {sup:?} {seeds:?}");
                    let c = Case::dense(&x, batch, vocab);
                    let (n, sk) = check_sampling(&mut s, &c, &req, &seeds, &what);
                    let h: Vec<f16> = convert(&x);
                    let (n2, sk2) =
                        check_sampling(&mut s, &Case::dense(&h, batch, vocab), &req, &seeds, &what);
                    near += n + n2;
                    skipped += sk + sk2;
                    rows += 2 * batch;
                }
            }
        }
    }
    eprintln!("filters_sampling_agrees_with_cpu_draws: {near} near-boundary disagreements, {skipped} of {rows} rows left out");
    assert!(near * 100 <= rows && skipped * 10 <= rows);
}

#[test]
fn filters_sampling_is_deterministic() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (5, 200_000);
    let x = common::logits(Dist::Normal(1.0), batch, vocab, 17);
    let req = Request::new(1.0, support(0, 0.95, 0.0));
    let c = Case::dense(&x, batch, vocab);
    let seeds = HostSeeds::each(batch);
    let first = gpu_sample(&mut s, &c, &req, &seeds);
    for _ in 0..5 {
        assert_eq!(gpu_sample(&mut s, &c, &req, &seeds), first);
    }
    // With per-row seeds a row's token does not depend on its position in the batch.
    let last = &x[4 * vocab..];
    let alone = gpu_sample(
        &mut s,
        &Case::dense(last, 1, vocab),
        &req,
        &HostSeeds::Each(vec![Rng::new(5004).at(12)]),
    );
    assert_eq!(alone.0[0], first.0[4]);
}

/// `draws` tokens of one row: `batch` copies per launch with a shared seed (stream = row),
/// a new offset per launch. Returns counts per token.
fn draw_counts(s: &mut Sampler, z: &[f32], req: &Request, batch: usize, launches: u64) -> Vec<u64> {
    let vocab = z.len();
    let x: Vec<f32> = (0..batch).flat_map(|_| z.iter().copied()).collect();
    let c = Case::dense(&x, batch, vocab);
    let mut counts = vec![0u64; vocab];
    for l in 0..launches {
        let (tokens, _) = gpu_sample(s, &c, req, &HostSeeds::Shared(Rng::new(77).at(l)));
        for t in tokens {
            counts[t as usize] += 1;
        }
    }
    counts
}

#[test]
fn filters_draws_pass_chi_square() {
    let mut s = gpu_or_skip!();
    let reqs = [
        Request::new(1.0, support(10, 1.0, 0.0)),
        Request::new(1.0, support(0, 0.8, 0.0)),
        Request::new(1.5, support(0, 1.0, 0.05)),
        Request::new(0.7, support(20, 0.9, 0.01)),
    ];
    for (j, dist) in Dist::ALL.iter().enumerate() {
        let z = common::logits(*dist, 1, 64, 7 + j as u64);
        for req in &reqs {
            let (zz, _) = cpu::widen_row(&z);
            if !boundary_safe(&zz, f64::from(req.temperature), &req.support) {
                continue;
            }
            let batch = common::scaled(&s, 20_000);
            let counts = draw_counts(&mut s, &z, req, batch, 2);
            let q = cpu::row_distribution(&zz, &req.decoder(0), None);
            let p = chi_square_p(&counts, &q);
            assert!(p > 1e-4, "{dist:?} {req:?}: chi-square p = {p}");
        }
    }
    // [0.4, 0.3, 0.3] with k = 2: all three, in those proportions.
    // Token 3 sits below the tie (ln 0.3 ≈ −1.20), so top-2 keeps exactly the three.
    let z = [0.4f32.ln(), 0.3f32.ln(), 0.3f32.ln(), -5.0, 0.0];
    let mut z5 = z.to_vec();
    z5[4] = f32::NEG_INFINITY;
    let req = Request::new(1.0, support(2, 1.0, 0.0));
    let batch = common::scaled(&s, 50_000);
    let counts = draw_counts(&mut s, &z5, &req, batch, 2);
    let p = chi_square_p(&counts, &[0.4, 0.3, 0.3, 0.0, 0.0]);
    assert!(p > 1e-4, "[0.4, 0.3, 0.3] k 2: {counts:?}, p = {p}");
}

#[test]
fn filters_draws_across_split_rows_pass_chi_square() {
    // One row of 3 tiles, batch 1: the row is split over blocks and merged by tickets.
    let mut s = gpu_or_skip!();
    let mut z = vec![-30.0f32; 5000];
    for (j, i) in [5usize, 2047, 2048, 3000, 4095, 4096, 4999]
        .iter()
        .enumerate()
    {
        z[*i] = j as f32 * 0.3;
    }
    let req = Request::new(1.0, support(5, 1.0, 0.0));
    let (zz, _) = cpu::widen_row(&z);
    let q = cpu::row_distribution(&zz, &req.decoder(0), None);
    let mut tokens = s.stream().alloc_zeros::<u32>(3000).unwrap();
    let dev = upload(&s, &z);
    let logits = DeviceLogits::new(dev.as_view(), 1, 5000).unwrap();
    for l in 0..3000 {
        let mut out = tokens.slice_mut(l..l + 1);
        s.sample_filtered(
            &logits,
            1.0,
            &req.support,
            &RowParams::default(),
            &DeviceSeeds::Shared(Rng::new(123).at(l as u64)),
            &mut out,
            None,
        )
        .unwrap();
    }
    let mut counts = vec![0u64; 5000];
    for t in download(&s, &tokens) {
        counts[t as usize] += 1;
    }
    let p = chi_square_p(&counts, &q);
    assert!(p > 1e-4, "split-row draws: chi-square p = {p}");
}

#[test]
fn filters_never_draw_a_token_outside_the_kept_set_in_a_million_draws() {
    let mut s = gpu_or_skip!();
    let z = common::logits(Dist::Normal(1.0), 1, 32, 5);
    let (zz, _) = cpu::widen_row(&z);
    for req in [
        Request::new(1.0, support(3, 1.0, 0.0)),
        Request::new(2.0, support(0, 0.5, 0.0)),
        Request::new(1.0, support(0, 1.0, 0.3)),
    ] {
        assert!(boundary_safe(&zz, f64::from(req.temperature), &req.support));
        let keep = cpu::kept_row(&zz, &req.support, f64::from(req.temperature));
        let batch = common::scaled(&s, 100_000);
        let counts = draw_counts(&mut s, &z, &req, batch, 10);
        assert_eq!(counts.iter().sum::<u64>(), 10 * batch as u64);
        for (i, c) in counts.iter().enumerate() {
            assert!(
                keep[i] || *c == 0,
                "{req:?}: token {i} outside the kept set drawn {c} times"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Speed of adversarial rows, bad arguments.
// ---------------------------------------------------------------------------------------------

/// Seconds for `reps` filtered draws (thresholds + draw) on `x`.
fn time_sampling(
    s: &mut Sampler,
    x: &[f32],
    batch: usize,
    vocab: usize,
    sup: Support,
    reps: usize,
) -> f64 {
    let dev = upload(s, x);
    let logits = DeviceLogits::new(dev.as_view(), batch, vocab).unwrap();
    let mut tokens = s.stream().alloc_zeros::<u32>(batch).unwrap();
    let rows = RowParams::default();
    let run = |s: &mut Sampler, tokens: &mut CudaSlice<u32>, l: usize| {
        let seeds = DeviceSeeds::Shared(Rng::new(1).at(l as u64));
        s.sample_filtered(
            &logits,
            1.0,
            &sup,
            &rows,
            &seeds,
            &mut tokens.as_view_mut(),
            None,
        )
        .unwrap();
    };
    run(s, &mut tokens, 0);
    s.stream().synchronize().unwrap();
    let start = Instant::now();
    for l in 0..reps {
        run(s, &mut tokens, l);
    }
    s.stream().synchronize().unwrap();
    start.elapsed().as_secs_f64()
}

#[test]
fn filters_rows_mostly_neg_inf_or_all_equal_are_not_slow() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (8, 128_256);
    let normal = common::logits(Dist::Normal(1.0), batch, vocab, 3);
    let mut masked = vec![f32::NEG_INFINITY; batch * vocab];
    for i in (0..batch * vocab).step_by(1009) {
        masked[i] = normal[i];
    }
    let equal = vec![0.5f32; batch * vocab];
    for sup in [support(50, 0.9, 0.0), support(0, 0.95, 0.05)] {
        let t_normal = time_sampling(&mut s, &normal, batch, vocab, sup, 20);
        let t_masked = time_sampling(&mut s, &masked, batch, vocab, sup, 20);
        let t_equal = time_sampling(&mut s, &equal, batch, vocab, sup, 20);
        eprintln!("{sup:?}: normal {t_normal:.4}s, mostly -inf {t_masked:.4}s, all equal {t_equal:.4}s (20 reps)");
        // Generous: this catches serialised atomics or hangs, not small differences.
        assert!(
            t_masked <= 4.0 * t_normal + 0.02,
            "mostly −inf rows are slow"
        );
        assert!(t_equal <= 4.0 * t_normal + 0.02, "all-equal rows are slow");
    }
}

#[test]
fn filters_reject_bad_arguments() {
    let mut s = gpu_or_skip!();
    let dev = upload(&s, &[0.0f32; 20]);
    let logits = DeviceLogits::new(dev.as_view(), 2, 10).unwrap();
    let rows = RowParams::default();
    let seeds = DeviceSeeds::Shared(Rng::new(0));
    let mut tokens = s.stream().alloc_zeros::<u32>(2).unwrap();
    let mut probs = s.stream().alloc_zeros::<f32>(20).unwrap();
    let ok = support(0, 1.0, 0.0);
    for (t, sup, name) in [
        (f32::NAN, ok, "temperature"),
        (-1.0, ok, "temperature"),
        (1.0, support(0, 0.0, 0.0), "top_p"),
        (1.0, support(0, 1.5, 0.0), "top_p"),
        (1.0, support(0, f32::NAN, 0.0), "top_p"),
        (1.0, support(0, 1.0, -0.1), "min_p"),
        (1.0, support(0, 1.0, 1.5), "min_p"),
    ] {
        let e = s
            .sample_filtered(
                &logits,
                t,
                &sup,
                &rows,
                &seeds,
                &mut tokens.as_view_mut(),
                None,
            )
            .unwrap_err();
        assert!(
            matches!(e, Error::BadParam { name: n, .. } if n == name),
            "{e}"
        );
        let e = s
            .filtered_probs(&logits, t, &sup, &rows, &mut probs.as_view_mut(), None)
            .unwrap_err();
        assert!(
            matches!(e, Error::BadParam { name: n, .. } if n == name),
            "{e}"
        );
    }
    let mut short = s.stream().alloc_zeros::<u32>(1).unwrap();
    let e = s
        .sample_filtered(
            &logits,
            1.0,
            &ok,
            &rows,
            &seeds,
            &mut short.as_view_mut(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadLength {
                name: "tokens",
                got: 1,
                expected: 2
            }
        ),
        "{e}"
    );
    let mut short = s.stream().alloc_zeros::<f32>(19).unwrap();
    let e = s
        .filtered_logits(&logits, 1.0, &ok, &rows, &mut short.as_view_mut(), None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadLength {
                name: "masked",
                got: 19,
                expected: 20
            }
        ),
        "{e}"
    );
    let p3 = upload(&s, &[0.5f32; 3]);
    let rows3 = RowParams {
        top_p: Some(p3.as_view()),
        ..Default::default()
    };
    let e = s
        .filtered_probs(&logits, 1.0, &ok, &rows3, &mut probs.as_view_mut(), None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadLength {
                name: "top_p",
                got: 3,
                expected: 2
            }
        ),
        "{e}"
    );
}

#[test]
fn a_captured_graph_replays_the_split_paths() {
    let mut s = gpu_or_skip!();
    // SAFETY: all work in this test is on one stream, and nothing is freed while in use.
    unsafe { s.context().disable_event_tracking() };
    let (batch, vocab) = (2usize, 40_000usize);
    // One kept token per row: a spike of 60 over normals; top-k 50 + top-p 0.5 keep it alone,
    // and sparsemax's support is it alone (every other u is more than 1 below it).
    let spiked = |k: usize| {
        let base = common::logits(Dist::Normal(1.0), batch, vocab, k as u64);
        common::spiked(base, batch, vocab, k)
    };
    let want = |k: usize| common::spike_tokens(batch, vocab, k);
    let sup = support(50, 0.5, 0.0);
    let seeds = DeviceSeeds::Shared(Rng::new(5));
    let mut modes = vec![RowSplit::Grid];
    if common::cluster_launch(&s) {
        modes.push(RowSplit::Any);
    }
    for mode in modes {
        s.set_filter_split(mode);
        s.set_sparsemax_split(mode);
        let path = s.filter_threshold_path::<f32>(batch, vocab).unwrap();
        assert_ne!(path, samplex::gpu::topp::ThresholdPath::Block, "{mode:?}");
        let sparse_path = s.sparsemax_path::<f32>(batch, vocab).unwrap();
        assert_eq!(
            std::mem::discriminant(&sparse_path),
            std::mem::discriminant(&path),
            "{mode:?}: {sparse_path:?}"
        );
        let mut d = upload(&s, &spiked(0));
        // Filtered tokens, then sparsemax's (one graph: both kernels' barriers in turn).
        let mut tokens = s.stream().alloc_zeros::<u32>(2 * batch).unwrap();
        // `reserve` and one call outside the capture: the scratch and the functions.
        s.reserve(0, 0).unwrap();
        let run = |s: &mut Sampler, d: &CudaSlice<f32>, tokens: &mut CudaSlice<u32>| {
            let logits = DeviceLogits::new(d.as_view(), batch, vocab).unwrap();
            s.sample_filtered(
                &logits,
                1.0,
                &sup,
                &RowParams::default(),
                &seeds,
                &mut tokens.slice_mut(..batch),
                None,
            )
            .unwrap();
            s.sample_sparsemax(
                &logits,
                1.0,
                &RowParams::default(),
                &seeds,
                &mut tokens.slice_mut(batch..),
                None,
            )
            .unwrap();
        };
        let twice = |k| [want(k), want(k)].concat();
        run(&mut s, &d, &mut tokens);
        assert_eq!(download(&s, &tokens), twice(0), "{path:?} direct");
        let graph = common::capture(&mut s, |s| run(s, &d, &mut tokens));
        // Replays on new logits, twice on the same ones: every barrier re-armed itself.
        for k in [1, 2, 2, 3] {
            s.stream().memcpy_htod(&spiked(k), &mut d).unwrap();
            s.stream().memset_zeros(&mut tokens).unwrap();
            graph.launch().unwrap();
            assert_eq!(download(&s, &tokens), twice(k), "{path:?} replay {k}");
        }
    }
    s.set_filter_split(RowSplit::Any);
    s.set_sparsemax_split(RowSplit::Any);
}
