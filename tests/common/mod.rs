//! Shared by the integration tests: input generators (BENCH.md's distributions), the GPU
//! sampler-or-skip, and the token-agreement check of SPEC "Drawing a token".
#![allow(dead_code)]

use cudarc::driver::{CudaSlice, DeviceRepr};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use rand_distr::{Distribution, Normal};
use samplex::cpu::Draw;
use samplex::gpu::{DeviceLogits, DeviceSeeds, Sampler};
use samplex::{Logit, Logits, Rng, Rows};

/// A host slice on the sampler's stream.
pub fn upload<T: DeviceRepr>(s: &Sampler, host: &[T]) -> CudaSlice<T> {
    s.stream().clone_htod(host).unwrap()
}

/// A device buffer back on the host.
pub fn download<T: DeviceRepr>(s: &Sampler, dev: &CudaSlice<T>) -> Vec<T> {
    s.stream().clone_dtoh(dev).unwrap()
}

/// f32 values in another logit dtype (rounded as `Logit::from_f32` rounds).
pub fn convert<T: Logit>(x: &[f32]) -> Vec<T> {
    x.iter().map(|&v| T::from_f32(v)).collect()
}

/// The input distributions of BENCH.md.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dist {
    /// N(0, σ²)
    Normal(f32),
    /// log(−log U)/β: β = 0.1 is very peaked, β = 1 mild.
    Gumbel(f32),
}

impl Dist {
    pub const ALL: [Dist; 4] = [
        Dist::Normal(1.0),
        Dist::Normal(5.0),
        Dist::Gumbel(0.1),
        Dist::Gumbel(1.0),
    ];
}

/// `batch × vocab` f32 logits from `dist`, reproducible from `seed`.
pub fn logits(dist: Dist, batch: usize, vocab: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = batch * vocab;
    match dist {
        Dist::Normal(s) => {
            let d = Normal::new(0.0f32, s).unwrap();
            (0..n).map(|_| d.sample(&mut rng)).collect()
        }
        Dist::Gumbel(beta) => (0..n)
            .map(|_| {
                let u: f32 = rng.random_range(f32::EPSILON..1.0);
                // BENCH.md's log(−log U)/β (a reflected Gumbel, scaled).
                (-u.ln()).ln() / beta
            })
            .collect(),
    }
}

/// A device sampler, or `None` after printing why the GPU test is skipped.
pub fn sampler_or_skip(test: &str) -> Option<Sampler> {
    if !samplex::gpu::driver_present() {
        eprintln!("SKIPPED {test}: no CUDA driver on this machine");
        return None;
    }
    match Sampler::on_device(0) {
        Ok(s) => Some(s),
        Err(e @ (samplex::Error::NoDriver | samplex::Error::NoDevice(_))) => {
            eprintln!("SKIPPED {test}: no usable GPU ({e})");
            None
        }
        // A driver and a device but no sampler (a module that fails to load, say) is a
        // failure, not a skip.
        Err(e) => panic!("{test}: the GPU is there but the sampler failed: {e}"),
    }
}

/// True when the device is the CPU emulator (scripts/emu), where a kernel runs about 10^4 times
/// slower than on a GPU.
pub fn emulated(s: &Sampler) -> bool {
    s.context()
        .name()
        .is_ok_and(|n| n.contains("samplex CPU emulator"))
}

/// A statistical test's sample count: `n` on a GPU; on the emulator `n / 50`, but not below
/// `min(n, 1000)` (the draw tests keep tens of draws per chi-square bin there).
pub fn scaled(s: &Sampler, n: usize) -> usize {
    if emulated(s) {
        (n / 50).max(n.min(1000))
    } else {
        n
    }
}

/// Skips the calling test (returning from it) when there is no GPU.
#[macro_export]
macro_rules! gpu_or_skip {
    () => {
        match common::sampler_or_skip(module_path!()) {
            Some(s) => s,
            None => return,
        }
    };
}

/// GPU tokens against CPU draws: equal, except where the CPU says the draw was within
/// `1e-5` (relative) of coming out otherwise. Returns how many such near-boundary rows
/// disagreed, and panics on any other disagreement.
pub fn assert_tokens_agree(gpu: &[u32], cpu: &[Draw], what: &str) -> usize {
    assert_eq!(gpu.len(), cpu.len(), "{what}: row count");
    let mut near = 0;
    for (r, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        if *g != c.token {
            assert!(
                c.margin < 1e-5,
                "{what}: row {r}: gpu token {g}, cpu token {} (margin {:.3e})",
                c.token,
                c.margin
            );
            near += 1;
        }
    }
    near
}

/// Pearson's chi-square p-value of `counts` against probabilities `q` (bins with expected
/// count < 5 are pooled).
pub fn chi_square_p(counts: &[u64], q: &[f64]) -> f64 {
    use statrs::distribution::{ChiSquared, ContinuousCDF};
    let n: u64 = counts.iter().sum();
    let (mut stat, mut dof) = (0.0, 0usize);
    let (mut pool_obs, mut pool_exp) = (0.0, 0.0);
    for (c, p) in counts.iter().zip(q) {
        let e = p * n as f64;
        if e < 5.0 {
            pool_obs += *c as f64;
            pool_exp += e;
            if e == 0.0 {
                assert_eq!(*c, 0, "a token of probability 0 was drawn");
            }
            continue;
        }
        stat += (*c as f64 - e).powi(2) / e;
        dof += 1;
    }
    if pool_exp >= 5.0 {
        stat += (pool_obs - pool_exp).powi(2) / pool_exp;
        dof += 1;
    }
    if dof < 2 {
        return 1.0;
    }
    1.0 - ChiSquared::new((dof - 1) as f64).unwrap().cdf(stat)
}

/// The work `f` queues on the sampler's stream, captured into a CUDA graph (thread-local mode;
/// `f` must not synchronise or allocate, as in a serving loop's capture).
pub fn capture(s: &mut Sampler, f: impl FnOnce(&mut Sampler)) -> cudarc::driver::CudaGraph {
    use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
    s.stream()
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    f(s);
    s.stream()
        .end_capture(CUgraphInstantiate_flags(0))
        .unwrap()
        .expect("the capture recorded a graph")
}

/// Whether the device has cluster launch (sm_90 and up): where the cluster paths must be taken.
pub fn cluster_launch(s: &Sampler) -> bool {
    use cudarc::driver::sys::CUdevice_attribute;
    s.context()
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH)
        .unwrap()
        != 0
}

/// The split-path comparisons' cases, (vocab, case index within the vocab, batch, logits): rows
/// of [`split_rows`] (`seed`) cut into batches of 1-4 at vocab 40000, 128256, 151936, 262147
/// (odd, and above the largest cluster's slices).
pub fn split_cases(seed: u64) -> Vec<(usize, usize, usize, Vec<f32>)> {
    let mut cases = Vec::new();
    for (vocab, batches) in [
        (40_000usize, &[4usize, 3, 1][..]),
        (128_256, &[1, 2, 1, 4][..]),
        (151_936, &[2, 3, 3][..]),
        (262_147, &[3, 1, 4][..]),
    ] {
        let rows = split_rows(vocab, seed);
        let mut next = 0;
        for (n, &batch) in batches.iter().enumerate() {
            let x: Vec<f32> = (0..batch)
                .flat_map(|j| rows[(next + j) % rows.len()].clone())
                .collect();
            next += batch;
            cases.push((vocab, n, batch, x));
        }
    }
    cases
}

/// The layouts [`edge_rows`] are read in at vocab 1001, (lead, stride): aligned (1016 elements
/// are a multiple of 16 bytes in every dtype), and three misalignments (the `_any` twins).
pub const EDGE_LAYOUTS: [(usize, usize); 4] = [(0, 1016), (1, 1013), (3, 1013), (6, 1013)];

/// Rows with NaN and +inf in each lane of a thread's first span (lanes 0-7: every position of a
/// 16-byte vector of 16-bit logits, two of f32) and of the last, the rows' first and last
/// elements among them, then one at 19 and a clean row: the hot loops test a span for
/// non-finite values at once and must still sanitise and flag each one wherever it falls.
pub fn edge_rows(vocab: usize, seed: u64) -> Vec<Vec<f32>> {
    let base = logits(Dist::Normal(1.0), 1, vocab, seed);
    let mut rows: Vec<Vec<f32>> = (0..8)
        .map(|lane| {
            let mut r = base.clone();
            r[lane] = f32::NAN;
            r[vocab - 1 - lane] = if lane % 2 == 0 {
                f32::INFINITY
            } else {
                f32::NAN
            };
            r
        })
        .collect();
    let mut r = base.clone();
    r[19] = f32::INFINITY;
    rows.push(r);
    rows.push(base);
    rows
}

/// Rows that stress the split of a row over a cluster's blocks (`seed`, `seed + 1`, `seed + 2`
/// for the random ones): ties across slice boundaries, maxima and lone finite values near them,
/// non-finite values and signed zeros in several slices.
pub fn split_rows(vocab: usize, seed: u64) -> Vec<Vec<f32>> {
    let eighth = vocab / 8; // near the slice boundaries of every cluster size
    let mut rows = vec![
        vec![1.25; vocab],                                     // all equal
        (0..vocab).map(|i| ((i * 7919) % 4) as f32).collect(), // ties at every cut, in every slice
    ];
    let mut r = logits(Dist::Normal(1.0), 1, vocab, seed);
    r[vocab - 3] = 1e30; // one huge logit, in the last slice
    rows.push(r);
    let mut r = vec![f32::NEG_INFINITY; vocab];
    r[3 * eighth + 1] = -7.0; // all −inf but one
    rows.push(r);
    let mut r = vec![f32::NEG_INFINITY; vocab]; // mostly −inf, ties straddling the boundaries
    for b in 1..8 {
        let start = b * eighth - 40;
        for (i, v) in r[start..start + 80].iter_mut().enumerate() {
            *v = (((start + i) * 13) % 3) as f32 * 0.5;
        }
    }
    rows.push(r);
    let mut r = logits(Dist::Normal(2.0), 1, vocab, seed + 1);
    for b in 0..8 {
        r[b * eighth + 5] = f32::NAN;
        r[b * eighth + 9] = f32::NEG_INFINITY;
        r[b * eighth + 11] = -0.0;
        r[b * eighth + 12] = 0.0;
    }
    r[2 * eighth + 2] = f32::INFINITY; // two +inf in different slices: the lower index is the max
    r[6 * eighth + 2] = f32::INFINITY;
    rows.push(r);
    rows.push(vec![f32::NAN; vocab]);
    rows.push(logits(Dist::Gumbel(0.1), 1, vocab, seed + 2)); // peaked
    rows
}

/// A split path's outputs (`split`, as bits, one vector per named output) against the one-block
/// path's (`whole`): panics at the first differing entry, naming the output, index and row
/// (an output of `batch` entries has one per row, else `vocab` per row).
pub fn assert_split_bits(
    split: &[Vec<u32>],
    whole: &[Vec<u32>],
    names: &[&str],
    (batch, vocab): (usize, usize),
    what: &str,
) {
    assert_eq!(split.len(), whole.len(), "{what}: outputs");
    for ((a, b), name) in split.iter().zip(whole).zip(names) {
        assert_eq!(a.len(), b.len(), "{what}: {name} length");
        if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
            panic!(
                "{what}: {name}[{i}] (row {}): split {:#x}, one block {:#x}",
                i / if a.len() == batch { 1 } else { vocab },
                a[i],
                b[i]
            );
        }
    }
}

/// Where the capture tests put row r's spike in logits number `k` (a different token per row and
/// per k).
pub fn spike_token(k: usize, r: usize, vocab: usize) -> u32 {
    ((k * 7919 + r * 1013) % vocab) as u32
}

/// `base` (batch × vocab) with a logit of 60 at each row's [`spike_token`]: the token that row
/// must draw (60 above the rest carries all but e^-60·vocab of the mass, and is the only
/// sparsemax candidate where the rest lie more than 1 below it).
pub fn spiked(mut base: Vec<f32>, batch: usize, vocab: usize, k: usize) -> Vec<f32> {
    for r in 0..batch {
        base[r * vocab + spike_token(k, r, vocab) as usize] = 60.0;
    }
    base
}

/// The tokens of [`spiked`]'s rows.
pub fn spike_tokens(batch: usize, vocab: usize, k: usize) -> Vec<u32> {
    (0..batch).map(|r| spike_token(k, r, vocab)).collect()
}

/// The split paths a staged-split kernel takes for a split case: on a device with clusters a
/// staged cluster by default and a staged grid when forced (`set(s, RowSplit::Grid)`); elsewhere
/// a cooperative grid. Returns the default path.
pub fn assert_staged_split_paths(
    s: &mut Sampler,
    path: impl Fn(&mut Sampler) -> samplex::gpu::topp::ThresholdPath,
    set: impl Fn(&mut Sampler, samplex::gpu::RowSplit),
    (batch, vocab): (usize, usize),
) -> samplex::gpu::topp::ThresholdPath {
    use samplex::gpu::topp::ThresholdPath as P;
    use samplex::gpu::RowSplit;
    let default = path(s);
    if cluster_launch(s) {
        assert!(
            matches!(default, P::Cluster { staged: true, .. }),
            "b{batch} v{vocab}: {default:?}"
        );
        set(s, RowSplit::Grid);
        let grid = path(s);
        set(s, RowSplit::Any);
        assert!(
            matches!(grid, P::Grid { staged: true, .. }),
            "b{batch} v{vocab}: {grid:?}"
        );
    } else {
        assert!(
            matches!(default, P::Grid { .. }),
            "no cluster launch here: a cooperative grid, b{batch} v{vocab}: {default:?}"
        );
    }
    default
}

/// True when the device's f32 arithmetic cannot change this row's kept set.
///
/// Top-k compares keys: exact. Top-p: the device's weights e^{d} = exp2(d·log2 e), with d·log2 e
/// = (z − max z)·(log2 e / τ), carry a relative error |e| ≤ 2.4e-7 (exp2f) + 2.0e-7·|d| (three
/// roundings: the difference, the factor, the product; and log2 e's in f32); its cumulative
/// mass fractions then move by at most 2·Σ w|e| / Σ w. The row is safe when every running sum
/// of the CPU (at the end of each group of equal logits) is farther than that (+1e-7) from
/// p · mass, and when the CPU's stop group does not share its f64 weight with the next group
/// (distinct logits whose weights round alike: the CPU keeps both, exact maths keeps one).
/// Min-p: safe when no token of the top-p set but the max (d = 0 exactly on both sides) has
/// |d − ln min_p| < 1e-6 · max(1, |ln min_p|) (the device's d is within ~3e-7 of it).
pub fn boundary_safe(z: &[f64], t: f64, sup: &samplex::Support) -> bool {
    if t == 0.0 {
        return true;
    }
    let mut order: Vec<usize> = (0..z.len()).filter(|&i| z[i] > f64::NEG_INFINITY).collect();
    if order.is_empty() {
        return true;
    }
    order.sort_by(|&a, &b| z[b].total_cmp(&z[a]).then(a.cmp(&b)));
    let k = sup.top_k as usize;
    if k > 0 && k < order.len() {
        let kth = z[order[k - 1]];
        order.retain(|&i| z[i] >= kth);
    }
    let m = z[order[0]] / t;
    let d = |i: usize| z[i] / t - m;
    let w = |i: usize| d(i).exp();
    let p = f64::from(sup.top_p);
    if p < 1.0 {
        let mass: f64 = order.iter().map(|&i| w(i)).sum();
        let err: f64 = order
            .iter()
            .map(|&i| w(i) * (2.4e-7 + 2.0e-7 * d(i).abs()))
            .sum();
        let tol = (2.0 * err / mass + 1e-7) * mass;
        let target = p * mass;
        let mut run = 0.0;
        let mut stop: Option<(usize, f64)> = None; // (end of the kept prefix, its weight)
        let mut j = 0;
        while j < order.len() {
            let mut e = j;
            while e < order.len() && z[order[e]] == z[order[j]] {
                run += w(order[e]);
                e += 1;
            }
            if (run - target).abs() < tol {
                return false;
            }
            match stop {
                None if run >= target => stop = Some((e, w(order[j]))),
                Some((_, ws)) if w(order[j]) == ws => return false,
                Some(_) => break,
                None => {}
            }
            j = e;
        }
        if let Some((end, _)) = stop {
            order.truncate(end);
        }
    }
    let min_p = f64::from(sup.min_p);
    if min_p > 0.0 {
        let lm = min_p.ln();
        // The max itself has d = 0 exactly on both sides.
        if order
            .iter()
            .any(|&i| d(i) != 0.0 && (d(i) - lm).abs() < 1e-6 * lm.abs().max(1.0))
        {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// The top-k selection (gpu_topk, gpu_properties).
// ---------------------------------------------------------------------------------------------

/// What one selection returned: `batch × k` values and indices, and the row status.
pub struct Selected {
    pub values: Vec<f32>,
    pub indices: Vec<u32>,
    pub status: Vec<u32>,
}

/// One selection: `batch` rows of `vocab` logits, `stride` apart from `lead` elements into
/// `host` (a non-zero lead misaligns the rows and exercises the `_any` kernels), k per call or
/// per row.
#[derive(Clone, Copy)]
pub struct Selection<'a, T> {
    pub host: &'a [T],
    pub lead: usize,
    pub batch: usize,
    pub vocab: usize,
    pub stride: usize,
    pub k: u32,
    pub per_row_k: Option<&'a [u32]>,
}

impl<'a, T: Logit> Selection<'a, T> {
    /// Dense rows from the buffer's start, one k.
    pub fn new(host: &'a [T], batch: usize, vocab: usize, k: u32) -> Self {
        Selection {
            host,
            lead: 0,
            batch,
            vocab,
            stride: vocab,
            k,
            per_row_k: None,
        }
    }

    pub fn lead(self, lead: usize) -> Self {
        Selection { lead, ..self }
    }

    pub fn stride(self, stride: usize) -> Self {
        Selection { stride, ..self }
    }

    pub fn per_row(self, per_row_k: Option<&'a [u32]>) -> Self {
        Selection { per_row_k, ..self }
    }

    /// `top_k_select` on the device.
    pub fn run(&self, s: &mut samplex::gpu::Sampler) -> Selected {
        let dev = upload(s, self.host);
        let view = dev.slice(self.lead..);
        let logits =
            samplex::gpu::DeviceLogits::with_stride(view, self.batch, self.vocab, self.stride)
                .unwrap();
        let k_dev = self.per_row_k.map(|v| upload(s, v));
        let rows = samplex::gpu::RowParams {
            top_k: k_dev.as_ref().map(|d| d.as_view()),
            ..Default::default()
        };
        let n = self.batch * self.k as usize;
        let mut values = s.stream().alloc_zeros::<f32>(n).unwrap();
        let mut indices = s.stream().alloc_zeros::<u32>(n).unwrap();
        let mut st = s.stream().alloc_zeros::<u32>(self.batch).unwrap();
        s.top_k_select(
            &logits,
            self.k,
            &rows,
            &mut values.as_view_mut(),
            &mut indices.as_view_mut(),
            Some(&mut st.as_view_mut()),
        )
        .unwrap();
        Selected {
            values: download(s, &values),
            indices: download(s, &indices),
            status: download(s, &st),
        }
    }

    /// Every pair (value bits and index) and every status equals the CPU's.
    pub fn check(&self, s: &mut samplex::gpu::Sampler, what: &str) {
        let got = self.run(s);
        let k = self.k as usize;
        for r in 0..self.batch {
            let start = self.lead + r * self.stride;
            let row = &self.host[start..start + self.vocab];
            let (want, st) = cpu_selection(row, self.k, self.per_row_k.map(|v| v[r]));
            assert_eq!(got.status[r], st, "{what}: row {r}: status");
            for (j, (v, i)) in want.iter().enumerate() {
                let (gv, gi) = (got.values[r * k + j], got.indices[r * k + j]);
                assert!(
                    gv.to_bits() == v.to_bits() && gi == *i,
                    "{what}: row {r} slot {j}: gpu ({gv:e}, {gi}), cpu ({v:e}, {i})"
                );
            }
        }
    }
}

/// The CPU's answer for row `r`: k_r pairs, then (−∞, u32::MAX) up to k; and its status.
pub fn cpu_selection<T: Logit>(row: &[T], k: u32, want: Option<u32>) -> (Vec<(f32, u32)>, u32) {
    let (z, mut st) = samplex::cpu::widen_row(row);
    let kmax = (k as usize).min(row.len()) as u32;
    let kr = match want {
        Some(w) => {
            let c = w.clamp(1, kmax);
            if c != w {
                st |= samplex::status::PARAM_CLAMPED;
            }
            c
        }
        None => kmax,
    };
    let mut pairs = samplex::cpu::top_k_select_row(&z, kr as usize);
    pairs.resize(k as usize, (f32::NEG_INFINITY, samplex::status::NO_TOKEN));
    (pairs, st)
}

/// Seeds as the host sees them.
#[derive(Clone, Debug)]
pub enum HostSeeds {
    Shared(Rng),
    Each(Vec<Rng>),
}

impl HostSeeds {
    pub fn rows(&self) -> Rows<'_, Rng> {
        match self {
            HostSeeds::Shared(r) => Rows::All(*r),
            HostSeeds::Each(v) => Rows::Each(v),
        }
    }

    /// A short name for failure messages.
    pub fn label(&self) -> String {
        match self {
            HostSeeds::Shared(r) => format!("shared seed {} offset {}", r.seed, r.offset),
            HostSeeds::Each(v) => format!("{} per-row seeds", v.len()),
        }
    }

    /// Per-row seeds 1000 + r and offsets 7·r.
    pub fn each(batch: usize) -> Self {
        HostSeeds::Each(
            (0..batch)
                .map(|r| Rng::new(1000 + r as u64).at(7 * r as u64))
                .collect(),
        )
    }

    /// The same seeds with every offset advanced by `j` (wrapping).
    pub fn shifted(&self, j: u64) -> Self {
        let at = |r: &Rng| r.at(r.offset.wrapping_add(j));
        match self {
            HostSeeds::Shared(r) => HostSeeds::Shared(at(r)),
            HostSeeds::Each(v) => HostSeeds::Each(v.iter().map(at).collect()),
        }
    }
}

/// The device buffers behind [`HostSeeds::Each`].
pub struct SeedBuffers(Option<(CudaSlice<u64>, CudaSlice<u64>)>);

impl SeedBuffers {
    pub fn new(s: &Sampler, h: &HostSeeds) -> Self {
        SeedBuffers(match h {
            HostSeeds::Shared(_) => None,
            HostSeeds::Each(v) => {
                let seeds: Vec<u64> = v.iter().map(|r| r.seed).collect();
                let offsets: Vec<u64> = v.iter().map(|r| r.offset).collect();
                Some((upload(s, &seeds), upload(s, &offsets)))
            }
        })
    }

    pub fn device<'a>(&'a self, h: &HostSeeds) -> DeviceSeeds<'a> {
        match (h, &self.0) {
            (HostSeeds::Shared(r), _) => DeviceSeeds::Shared(*r),
            (HostSeeds::Each(_), Some((seeds, offsets))) => DeviceSeeds::Each {
                seeds: seeds.as_view(),
                offsets: offsets.as_view(),
            },
            _ => unreachable!(),
        }
    }
}

/// A host batch and how it sits on the device: `stride` apart, starting `lead` elements
/// into the buffer (lead = 1 misaligns the base: the rows start off 16-byte boundaries, which
/// the kernels read with shifted vector loads).
pub struct Batch<T> {
    pub host: Vec<T>,
    pub batch: usize,
    pub vocab: usize,
    pub stride: usize,
    pub lead: usize,
}

impl<T: Logit> Batch<T> {
    pub fn dense(host: Vec<T>, batch: usize, vocab: usize) -> Self {
        Batch {
            host,
            batch,
            vocab,
            stride: vocab,
            lead: 0,
        }
    }

    /// From dense f32 values: rows `stride` apart (padding NaN, which must never be read),
    /// starting `lead` elements in.
    pub fn laid_out(dense: &[f32], batch: usize, vocab: usize, stride: usize, lead: usize) -> Self {
        let mut host = vec![T::from_f32(f32::NAN); lead + (batch - 1) * stride + vocab];
        for r in 0..batch {
            for i in 0..vocab {
                host[lead + r * stride + i] = T::from_f32(dense[r * vocab + i]);
            }
        }
        Batch {
            host,
            batch,
            vocab,
            stride,
            lead,
        }
    }

    pub fn cpu(&self) -> Logits<'_, T> {
        Logits::with_stride(&self.host[self.lead..], self.batch, self.vocab, self.stride).unwrap()
    }

    pub fn upload(&self, s: &Sampler) -> CudaSlice<T> {
        upload(s, &self.host)
    }

    pub fn device<'a>(&self, d: &'a CudaSlice<T>) -> DeviceLogits<'a, T> {
        DeviceLogits::with_stride(d.slice(self.lead..), self.batch, self.vocab, self.stride)
            .unwrap()
    }
}
