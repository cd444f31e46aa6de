//! BENCH.md's benchmark: every operation over the whole grid, device-timed, one JSON line per
//! point.
//!
//! ```text
//! cargo bench --bench sampling                      # the full grid (a GPU host)
//! SAMPLEX_BENCH_QUICK=1 cargo bench --bench sampling  # vocab 128256, batch 1 and 128, normal1
//! ```
//!
//! | variable                  | effect                                                        |
//! |---------------------------|---------------------------------------------------------------|
//! | `SAMPLEX_BENCH_QUICK=1`   | the small subset above (f32 and bf16, every op)               |
//! | `SAMPLEX_BENCH_OPS=a,b`   | only these ops (names as in the result lines)                 |
//! | `SAMPLEX_BENCH_OUT=path`  | the results file (default `benches/results/<date>-<gpu>.jsonl`) |
//! | `SAMPLEX_BENCH_CRITERION=0` | skip criterion's own sampling (the result lines are unchanged) |
//! | `SAMPLEX_GIT`             | the commit written in each line (default `git rev-parse --short HEAD`) |
//!
//! Without a CUDA driver or GPU it prints `SKIPPED: no CUDA driver/GPU` and exits 0. Run
//! without `--bench` (`cargo test --benches`) it only launches each op once on a small shape.
//!
//! ## What is measured
//!
//! - Inputs: `max batch × vocab` logits per (distribution, vocab), generated on the host from a
//!   fixed seed (`common::Dist`), uploaded once as f32 and as bf16; a point of batch b reads the
//!   first b rows.
//! - Time: CUDA events around the op's launches on the sampler's stream, after warm-up; the
//!   median of [`common::RUNS`] runs is the reported number (`common::Timer` explains how the
//!   host's launch latency is kept out; cudarc's per-buffer event tracking is off, since one
//!   stream orders everything). L2 is not flushed (serving reads logits the last layer
//!   just wrote); one cold-L2 point per (op, dtype) — vocab 128256, batch 32, normal1 — writes a
//!   256 MiB buffer before every run and is marked `l2=cold` at the end of `params`.
//! - Roof: a 1 GiB device-to-device copy, timed the same way in the same process.
//! - Bytes per op: the logits read once plus the outputs written (parameter buffers, seeds and
//!   scratch are not counted):
//!
//!   | op                                   | bytes                                 |
//!   |--------------------------------------|---------------------------------------|
//!   | softmax, sparsemax, bok              | b·V·sizeof(T) + b·V·4 (f32 probabilities) |
//!   | sample, greedy, sample_top_k, sample_top_p, sample_min_p, sample_top_k_top_p, sample_sparsemax, sample_bok | b·V·sizeof(T) + b·4 (u32 tokens) |
//!   | top_k_select (k)                     | b·V·sizeof(T) + b·k·8 (f32 values + u32 indices) |
//!
//! - Parameters: τ = 1 everywhere; top-k 50, top-p 0.9, min-p 0.1, top-k + top-p (50, 0.9),
//!   selection k = 50 and 1024, BoK with `Bok::DEFAULT` (T = 5, K = 8, β = 1, λ = 1, η = 0.2,
//!   w = p). Batch-wide: scalars and one shared Philox stream. `per_row = true` (sampling ops
//!   only): every parameter of the op, τ included, is a per-row device buffer holding the same
//!   values, and seeds/offsets are per row.
//! - Criterion drives each point too (`iter_custom` returning the summed event times, flat
//!   sampling, 10 small samples) for its console report; the result lines hold the median above.
//!   Criterion's filter argument (`cargo bench -- sample_top_p`) narrows only its report; use
//!   `SAMPLEX_BENCH_OPS` to choose what runs.
//! - Row splitting: the ops whose kernels split a small batch's rows over several blocks (the
//!   filters, the selection, sparsemax, BoK) are timed again at vocab 128256, normal1, batch
//!   [`SPLIT_BATCHES`], batch-wide parameters, warm L2, with one block per row forced
//!   (`split=off` at the end of `params`) and with a cooperative grid forced (`split=grid`; the
//!   default already where there are no clusters), so the report can set each beside the
//!   default path (timed at those batches too, in the quick grid as well). Softmax, whose
//!   default on sm_90 holds each row of a large batch in a cluster's shared memory (one read),
//!   is timed the same way at batch [`STAGED_BATCHES`] with its two-read paths forced
//!   (`split=off`).
//! - Unaligned rows: every op is also timed at vocab 128255 (the same normal1 buffer read as
//!   contiguous rows of one token fewer), batch [`ODD_VOCAB_BATCHES`], warm L2, batch-wide
//!   parameters. Its rows start off 16-byte boundaries, so the wrappers take the unaligned
//!   twins (`_any`: 16-byte loads from the boundary below; BoK's pass and top-M kernels and
//!   the cooperative grid kernels of the filters and sparsemax are `_v1`: scalar loads; BoK's
//!   on-chip kernels test the alignment themselves): set beside vocab 128256, this is what an
//!   odd vocab (50257, 32001) costs.
//! - Probability ops: `sample_from_probs`, `sample_from_probs_n` and `verify_draft` (not in
//!   BENCH.md's grid) are timed after the logit ops of each (vocab, normal1) pair of the grid,
//!   on f32 probabilities made from those logits, at the grid's batches; benches/probs/mod.rs
//!   says how their inputs are built and their bytes counted. `SAMPLEX_BENCH_OPS` names them
//!   as any other op.

mod common;
mod probs;

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use criterion::{Criterion, SamplingMode};
use cudarc::driver::{CudaSlice, CudaStream};
use half::bf16;
use samplex::gpu::softmax::Staging;
use samplex::gpu::{DeviceLogits, DeviceSeeds, RowParams, RowSplit, Sampler};
use samplex::{Bok, Error, Logit, Rng, Support};

use common::{copy_roof, gbps, median, Dist, Dtype, Grid, Line, Results, Timer, L2};

// ---------------------------------------------------------------------------------------------
// The operations
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Softmax,
    Sample,
    Greedy,
    TopK,
    TopP,
    MinP,
    TopKTopP,
    Select(u32),
    Sparsemax,
    SampleSparsemax,
    Bok,
    SampleBok,
}

/// One benchmarked operation: its result-line name and params, its criterion group.
struct OpSpec {
    name: &'static str,
    label: &'static str,
    params: &'static str,
    kind: Kind,
}

const OPS: &[OpSpec] = &[
    op("softmax", "softmax", "t=1", Kind::Softmax),
    op("sample", "sample", "t=1", Kind::Sample),
    op("greedy", "greedy", "", Kind::Greedy),
    op("sample_top_k", "sample_top_k", "k=50", Kind::TopK),
    op("sample_top_p", "sample_top_p", "p=0.9", Kind::TopP),
    op("sample_min_p", "sample_min_p", "min_p=0.1", Kind::MinP),
    op(
        "sample_top_k_top_p",
        "sample_top_k_top_p",
        "k=50,p=0.9",
        Kind::TopKTopP,
    ),
    op("top_k_select", "top_k_select_k50", "k=50", Kind::Select(50)),
    op(
        "top_k_select",
        "top_k_select_k1024",
        "k=1024",
        Kind::Select(1024),
    ),
    op("sparsemax", "sparsemax", "t=1", Kind::Sparsemax),
    op(
        "sample_sparsemax",
        "sample_sparsemax",
        "t=1",
        Kind::SampleSparsemax,
    ),
    op("bok", "bok", "T=5,K=8", Kind::Bok),
    op("sample_bok", "sample_bok", "T=5,K=8", Kind::SampleBok),
];

const fn op(name: &'static str, label: &'static str, params: &'static str, kind: Kind) -> OpSpec {
    OpSpec {
        name,
        label,
        params,
        kind,
    }
}

const TOP_K: u32 = 50;
const TOP_P: f32 = 0.9;
const MIN_P: f32 = 0.1;
const TEMPERATURE: f32 = 1.0;

/// The batches of the forced split paths' points.
const SPLIT_BATCHES: [usize; 3] = [1, 8, 32];

/// The batches of the unaligned-rows points (vocab `COLD_VOCAB - 1`).
const ODD_VOCAB_BATCHES: [usize; 2] = [32, 128];

/// The batches at which softmax's two-read paths are timed beside its default (staged rows).
const STAGED_BATCHES: [usize; 2] = [128, 512];

/// The path a point forces: none (the default), one block per row (softmax: no staged rows),
/// a cooperative grid, or (softmax, smoke run only) staged rows wherever they fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    Default,
    Off,
    Grid,
    Staged,
}

impl Split {
    /// The marker at the end of the point's params.
    fn marker(self) -> Option<&'static str> {
        match self {
            Split::Default => None,
            Split::Off => Some("split=off"),
            Split::Grid => Some("split=grid"),
            Split::Staged => Some("split=staged"),
        }
    }
    /// The split kernels' setting.
    fn setting(self) -> RowSplit {
        match self {
            Split::Default | Split::Staged => RowSplit::Any,
            Split::Off => RowSplit::Off,
            Split::Grid => RowSplit::Grid,
        }
    }
    /// Softmax's setting.
    fn staging(self) -> Staging {
        match self {
            Split::Default | Split::Grid => Staging::Auto,
            Split::Off => Staging::Never,
            Split::Staged => Staging::Always,
        }
    }
}

impl Kind {
    /// Ops whose kernels may split a row over several blocks.
    fn splits(self) -> bool {
        !matches!(self, Kind::Softmax | Kind::Sample | Kind::Greedy)
    }

    /// The batches at which this op's forced paths are timed beside its default one, and those
    /// paths: the split ops at small batches, one block per row and a cooperative grid; softmax
    /// at large batches, its two-read paths (`split=off`: no rows staged in shared memory).
    fn forced_paths(self) -> (&'static [usize], &'static [Split]) {
        if self == Kind::Softmax {
            (&STAGED_BATCHES, &[Split::Off])
        } else if self.splits() {
            (&SPLIT_BATCHES, &[Split::Off, Split::Grid])
        } else {
            (&[], &[])
        }
    }

    /// Sets the sampler's path for this op's kernels.
    fn set_split(self, s: &mut Sampler, split: Split) {
        let rows = split.setting();
        match self {
            Kind::Softmax => s.set_softmax_staging(split.staging()),
            Kind::Sample | Kind::Greedy => {}
            Kind::TopK | Kind::TopP | Kind::MinP | Kind::TopKTopP => s.set_filter_split(rows),
            Kind::Select(_) => s.set_top_k_split(rows),
            Kind::Sparsemax | Kind::SampleSparsemax => s.set_sparsemax_split(rows),
            Kind::Bok | Kind::SampleBok => s.set_bok_split(rows),
        }
    }

    /// Sampling ops are also timed with per-row parameters.
    fn is_sampling(self) -> bool {
        matches!(
            self,
            Kind::Sample
                | Kind::TopK
                | Kind::TopP
                | Kind::MinP
                | Kind::TopKTopP
                | Kind::SampleSparsemax
                | Kind::SampleBok
        )
    }

    /// The support rule of a filtered op.
    fn support(self) -> Support {
        match self {
            Kind::TopK => Support {
                top_k: TOP_K,
                ..Support::ALL
            },
            Kind::TopP => Support {
                top_p: TOP_P,
                ..Support::ALL
            },
            Kind::MinP => Support {
                min_p: MIN_P,
                ..Support::ALL
            },
            Kind::TopKTopP => Support {
                top_k: TOP_K,
                top_p: TOP_P,
                ..Support::ALL
            },
            _ => Support::ALL,
        }
    }

    /// Bytes the op must move: the logits once, plus its outputs (see the table above).
    fn bytes(self, dtype: Dtype, batch: usize, vocab: usize) -> usize {
        let read = batch * vocab * dtype.size();
        let written = match self {
            Kind::Softmax | Kind::Sparsemax | Kind::Bok => batch * vocab * 4,
            Kind::Select(k) => batch * (k as usize).min(vocab) * 8,
            _ => batch * 4,
        };
        read + written
    }
}

// ---------------------------------------------------------------------------------------------
// Device buffers
// ---------------------------------------------------------------------------------------------

/// Output buffers for the largest batch of the current vocabulary.
struct Outputs {
    tokens: CudaSlice<u32>,
    dense: CudaSlice<f32>,
    values: CudaSlice<f32>,
    indices: CudaSlice<u32>,
}

impl Outputs {
    fn new(
        stream: &std::sync::Arc<CudaStream>,
        batch: usize,
        vocab: usize,
    ) -> samplex::Result<Self> {
        Ok(Outputs {
            tokens: stream.alloc_zeros(batch)?,
            dense: stream.alloc_zeros(batch * vocab)?,
            values: stream.alloc_zeros(batch * 1024)?,
            indices: stream.alloc_zeros(batch * 1024)?,
        })
    }
}

/// Per-row parameters (the batch-wide values, one per row) and per-row Philox streams.
struct PerRow {
    temperature: CudaSlice<f32>,
    top_k: CudaSlice<u32>,
    top_p: CudaSlice<f32>,
    min_p: CudaSlice<f32>,
    bok_k: CudaSlice<u32>,
    bok_beta: CudaSlice<f32>,
    bok_lambda: CudaSlice<f32>,
    bok_eta: CudaSlice<f32>,
    bok_iterations: CudaSlice<u32>,
    seeds: CudaSlice<u64>,
    offsets: CudaSlice<u64>,
}

impl PerRow {
    fn new(stream: &std::sync::Arc<CudaStream>, n: usize) -> samplex::Result<Self> {
        let b = Bok::DEFAULT;
        let seeds: Vec<u64> = (0..n as u64).map(|r| 0x5EED_0000 + r).collect();
        Ok(PerRow {
            temperature: stream.clone_htod(&vec![TEMPERATURE; n])?,
            top_k: stream.clone_htod(&vec![TOP_K; n])?,
            top_p: stream.clone_htod(&vec![TOP_P; n])?,
            min_p: stream.clone_htod(&vec![MIN_P; n])?,
            bok_k: stream.clone_htod(&vec![b.k; n])?,
            bok_beta: stream.clone_htod(&vec![b.beta; n])?,
            bok_lambda: stream.clone_htod(&vec![b.lambda; n])?,
            bok_eta: stream.clone_htod(&vec![b.eta; n])?,
            bok_iterations: stream.clone_htod(&vec![b.iterations; n])?,
            seeds: stream.clone_htod(&seeds)?,
            offsets: stream.alloc_zeros(n)?,
        })
    }

    /// The op's parameters as per-row buffers of `batch` rows, or none at all.
    fn params(&self, kind: Kind, per_row: bool, batch: usize) -> RowParams<'_> {
        if !per_row {
            return RowParams::default();
        }
        let k = matches!(kind, Kind::TopK | Kind::TopKTopP);
        let p = matches!(kind, Kind::TopP | Kind::TopKTopP);
        let bok = kind == Kind::SampleBok;
        RowParams {
            temperature: Some(self.temperature.slice(0..batch)),
            top_k: k.then(|| self.top_k.slice(0..batch)),
            top_p: p.then(|| self.top_p.slice(0..batch)),
            min_p: (kind == Kind::MinP).then(|| self.min_p.slice(0..batch)),
            bok_k: bok.then(|| self.bok_k.slice(0..batch)),
            bok_beta: bok.then(|| self.bok_beta.slice(0..batch)),
            bok_lambda: bok.then(|| self.bok_lambda.slice(0..batch)),
            bok_eta: bok.then(|| self.bok_eta.slice(0..batch)),
            bok_iterations: bok.then(|| self.bok_iterations.slice(0..batch)),
        }
    }

    fn seeds(&self, per_row: bool, batch: usize) -> DeviceSeeds<'_> {
        if per_row {
            DeviceSeeds::Each {
                seeds: self.seeds.slice(0..batch),
                offsets: self.offsets.slice(0..batch),
            }
        } else {
            DeviceSeeds::Shared(Rng::new(7))
        }
    }
}

/// Queues one run of `kind` on the sampler's stream.
fn launch<T: Logit>(
    s: &mut Sampler,
    kind: Kind,
    x: &DeviceLogits<'_, T>,
    rows: &RowParams<'_>,
    seeds: &DeviceSeeds<'_>,
    out: &mut Outputs,
) -> samplex::Result<()> {
    let (b, v) = (x.batch(), x.vocab());
    let tokens = &mut out.tokens.slice_mut(0..b);
    let dense = &mut out.dense.slice_mut(0..b * v);
    let support = kind.support();
    let bok = Bok::DEFAULT;
    match kind {
        Kind::Softmax => s.softmax(x, TEMPERATURE, rows, dense, None, None),
        Kind::Sample => s.sample_softmax(x, TEMPERATURE, rows, seeds, tokens, None),
        Kind::Greedy => s.greedy(x, tokens, None),
        Kind::TopK | Kind::TopP | Kind::MinP | Kind::TopKTopP => {
            s.sample_filtered(x, TEMPERATURE, &support, rows, seeds, tokens, None)
        }
        Kind::Select(k) => {
            let n = b * (k as usize).min(v);
            let values = &mut out.values.slice_mut(0..n);
            let indices = &mut out.indices.slice_mut(0..n);
            s.top_k_select(x, k, rows, values, indices, None)
        }
        Kind::Sparsemax => s.sparsemax(x, TEMPERATURE, rows, dense, None, None),
        Kind::SampleSparsemax => s.sample_sparsemax(x, TEMPERATURE, rows, seeds, tokens, None),
        Kind::Bok => s.bok(x, &bok, &support, rows, None, dense, None, None),
        Kind::SampleBok => s.sample_bok(x, &bok, &support, rows, None, seeds, tokens, None),
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// One grid point.
#[derive(Clone, Copy)]
struct Point<'a> {
    spec: &'a OpSpec,
    dtype: Dtype,
    dist: Dist,
    batch: usize,
    vocab: usize,
    per_row: bool,
    l2: L2,
    split: Split,
}

impl Point<'_> {
    /// Criterion's id, STYLE.md's shape: `bf16/gumbel0.1/b32/v128256[/per_row][/cold]`.
    fn id(&self) -> String {
        let mut id = format!(
            "{}/{}/b{}/v{}",
            self.dtype.name(),
            self.dist.name(),
            self.batch,
            self.vocab
        );
        if self.per_row {
            id.push_str("/per_row");
        }
        if self.l2 == L2::Cold {
            id.push_str("/cold");
        }
        if let Some(m) = self.split.marker() {
            id.push('/');
            id.push_str(&m.replace('=', "_"));
        }
        id
    }

    fn params(&self) -> String {
        let cold = (self.l2 == L2::Cold).then_some("l2=cold");
        [Some(self.spec.params), cold, self.split.marker()]
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What a point's result line and console line say, and the bytes its GB/s counts.
struct Meta<'a> {
    /// Criterion's group.
    label: &'a str,
    /// Criterion's id within the group.
    id: String,
    op: &'a str,
    dtype: &'static str,
    dist: &'static str,
    batch: usize,
    vocab: usize,
    params: String,
    per_row: bool,
    l2: L2,
    bytes: usize,
}

/// Times points and writes their lines: what every op's points share.
struct Recorder {
    timer: Timer,
    results: Results,
    roof: f64,
    criterion: Option<Criterion>,
    points: usize,
    errors: usize,
}

impl Recorder {
    /// Times `op` at one point, writes its line, and runs criterion on it. Returns the error of
    /// a first timing that failed (nothing written); later failures are counted here.
    fn measure<F>(&mut self, m: &Meta<'_>, op: &mut F) -> samplex::Result<()>
    where
        F: FnMut() -> samplex::Result<()>,
    {
        let times = self.timer.time(common::RUNS, m.l2, op)?;
        let us = median(&times);
        let bw = gbps(m.bytes, us);
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "{:<20} {:<36} {:>10.2} µs  [p10 {:.2}, p90 {:.2}]  {:>8.1} GB/s  {:.3} of roof",
            m.label,
            m.id,
            us,
            sorted[sorted.len() / 10],
            sorted[sorted.len() * 9 / 10],
            bw,
            bw / self.roof
        );
        let line = Line {
            op: m.op,
            dtype: m.dtype,
            dist: m.dist,
            batch: m.batch,
            vocab: m.vocab,
            params: m.params.clone(),
            per_row: m.per_row,
            median_us: us,
            gbps: bw,
            roof_gbps: self.roof,
        };
        if let Err(e) = self.results.write(&line) {
            eprintln!("ERROR writing {}: {e}", self.results.path.display());
            self.errors += 1;
            return Ok(());
        }
        self.points += 1;

        // Criterion's own report of the same point (device time via iter_custom).
        let (timer, criterion) = (&mut self.timer, &mut self.criterion);
        if let Some(c) = criterion.as_mut() {
            let mut failure = None;
            let mut group = c.benchmark_group(m.label);
            group.sampling_mode(SamplingMode::Flat);
            group.bench_function(&m.id, |b| {
                b.iter_custom(|iters| {
                    let mut total = 0.0;
                    let mut left = iters as usize;
                    while left > 0 && failure.is_none() {
                        let n = left.min(100);
                        match timer.time(n, m.l2, op) {
                            Ok(t) => total += t.iter().sum::<f64>(),
                            Err(e) => failure = Some(e),
                        }
                        left -= n;
                    }
                    Duration::from_secs_f64(total.max(1e-3) * 1e-6)
                })
            });
            group.finish();
            if let Some(e) = failure {
                self.fail(m.label, &m.id, &e);
            }
        }
        Ok(())
    }

    fn fail(&mut self, label: &str, id: &str, e: &dyn std::fmt::Display) {
        eprintln!("ERROR {label} {id}: {e}");
        self.errors += 1;
    }
}

/// Everything a point needs besides its inputs.
struct Bench {
    sampler: Sampler,
    outputs: Outputs,
    per_row: PerRow,
    rec: Recorder,
    /// (label, dtype, per_row) found not implemented: reported once, then skipped.
    not_implemented: HashSet<(&'static str, &'static str, bool)>,
}

impl Bench {
    /// Times one point, writes its line, and runs criterion on it. A failure is counted and
    /// reported; an op without a kernel is remembered and skipped from then on.
    fn run<T: Logit>(&mut self, logits: &CudaSlice<T>, p: Point<'_>) {
        let key = (p.spec.label, p.dtype.name(), p.per_row);
        if self.not_implemented.contains(&key) {
            return;
        }
        let Some(rows) = logits.try_slice(0..p.batch * p.vocab) else {
            let e = Error::BadLength {
                name: "bench logits",
                got: logits.len(),
                expected: p.batch * p.vocab,
            };
            return self.fail(&p, &e);
        };
        let x = match DeviceLogits::new(rows, p.batch, p.vocab) {
            Ok(x) => x,
            Err(e) => return self.fail(&p, &e),
        };
        let rows = self.per_row.params(p.spec.kind, p.per_row, p.batch);
        let seeds = self.per_row.seeds(p.per_row, p.batch);
        // Every point sets its op's split path (the default points too), so none is left over.
        p.spec.kind.set_split(&mut self.sampler, p.split);
        let meta = Meta {
            label: p.spec.label,
            id: p.id(),
            op: p.spec.name,
            dtype: p.dtype.name(),
            dist: p.dist.name(),
            batch: p.batch,
            vocab: p.vocab,
            params: p.params(),
            per_row: p.per_row,
            l2: p.l2,
            bytes: p.spec.kind.bytes(p.dtype, p.batch, p.vocab),
        };
        let (sampler, outputs) = (&mut self.sampler, &mut self.outputs);
        let mut op = || launch(sampler, p.spec.kind, &x, &rows, &seeds, outputs);
        match self.rec.measure(&meta, &mut op) {
            Ok(()) => {}
            Err(Error::NotImplemented(what)) => {
                println!(
                    "SKIPPED {} {} per_row={}: {what} has no GPU kernel yet",
                    p.spec.label,
                    p.dtype.name(),
                    p.per_row
                );
                self.not_implemented.insert(key);
            }
            Err(e) => self.rec.fail(meta.label, &meta.id, &e),
        }
    }

    fn fail(&mut self, p: &Point<'_>, e: &Error) {
        self.rec.fail(p.spec.label, &p.id(), e);
    }

    /// The probability ops (benches/probs) at the source's vocab, at every batch of `batches`.
    /// A `verify_draft` point's `accepted` is read back after timing: rows that did not take
    /// the path its bytes assume are an error.
    fn run_probs(
        &mut self,
        src: &probs::Source,
        specs: &[probs::Spec],
        batches: &[usize],
        out: &mut probs::Outputs,
    ) {
        let stream = self.sampler.stream().clone();
        let mut verify = None;
        for spec in specs {
            let label = spec.label();
            if let probs::Kind::Verify { .. } = spec.kind {
                verify = None; // freed before the next inputs are built
                match probs::Verify::new(&stream, src, spec.kind) {
                    Ok(v) => verify = v,
                    Err(e) => {
                        self.rec.fail(&label, &format!("v{} inputs", src.vocab), &e);
                        continue;
                    }
                }
            }
            for &batch in batches.iter().filter(|&&b| b <= src.rows) {
                let meta = Meta {
                    label: &label,
                    id: format!("f32/normal1/b{batch}/v{}", src.vocab),
                    op: spec.op,
                    dtype: "f32",
                    dist: "normal1",
                    batch,
                    vocab: src.vocab,
                    params: spec.params.to_string(),
                    per_row: false,
                    l2: L2::Hot,
                    bytes: spec.kind.bytes(batch, src.vocab),
                };
                let seeds = DeviceSeeds::Shared(Rng::new(7));
                let sampler = &mut self.sampler;
                let verify = verify.as_ref();
                let r = self.rec.measure(&meta, &mut || {
                    probs::launch(sampler, spec.kind, src, verify, batch, &seeds, out)
                });
                if let Err(e) = r {
                    self.rec.fail(&label, &meta.id, &e);
                    continue;
                }
                if let Some(v) = verify {
                    let accepted = stream
                        .clone_dtoh(&out.accepted.slice(0..batch))
                        .map_err(Error::from)
                        .and_then(|a| v.check_accepted(&a).map_err(Error::Unsupported));
                    if let Err(e) = accepted {
                        self.rec.fail(&label, &meta.id, &e);
                    }
                }
            }
        }
    }
}

/// Runs every point of `grid` for `ops`, and the probability ops' grid for `prob_ops`; returns
/// the exit code.
fn bench(
    sampler: Sampler,
    grid: &Grid,
    ops: &[&OpSpec],
    prob_ops: &[probs::Spec],
) -> samplex::Result<ExitCode> {
    let device = sampler.context().name()?;
    let stream = sampler.stream().clone();
    // The largest batch of any point: the grid's and the cold point's (`Grid::max_batch`), and
    // the forced paths' and unaligned rows', which the quick grid's batches do not cover.
    let max_batch = SPLIT_BATCHES
        .into_iter()
        .chain(STAGED_BATCHES)
        .chain(ODD_VOCAB_BATCHES)
        .fold(grid.max_batch(), usize::max);
    println!(
        "samplex bench on {device} ({:?} kernels), git {}, {} grid, {} ops, {} probability \
         ops",
        sampler.kernel_origin(),
        common::git_commit(),
        if grid.quick { "quick" } else { "full" },
        ops.len(),
        prob_ops.len()
    );

    let mut timer = Timer::new(stream.clone())?;
    let roof = copy_roof(&mut timer)?;
    println!("roof: {roof:.1} GB/s (1 GiB device-to-device copy, read + written)");

    let results =
        Results::open(&device).map_err(|e| Error::Unsupported(format!("results file: {e}")))?;
    println!("results: {}", results.path.display());

    let criterion =
        (!matches!(std::env::var("SAMPLEX_BENCH_CRITERION").as_deref(), Ok("0"))).then(|| {
            Criterion::default()
                .sample_size(10)
                .warm_up_time(Duration::from_millis(20))
                .measurement_time(Duration::from_millis(60))
                .nresamples(1000)
                .without_plots()
                .configure_from_args()
        });

    let mut b = Bench {
        outputs: Outputs::new(&stream, 1, 1)?,
        per_row: PerRow::new(&stream, max_batch)?,
        sampler,
        rec: Recorder {
            timer,
            results,
            roof,
            criterion,
            points: 0,
            errors: 0,
        },
        not_implemented: HashSet::new(),
    };
    // The probability ops read softmax(normal1) rows of the grid's vocabs: source rows for the
    // grid's largest batch, made from that pair's logits.
    let prob_rows = grid.batches.iter().copied().max().unwrap_or(1);
    let mut prob_out =
        probs::Outputs::new(&stream, prob_rows, probs::Outputs::tokens_per_row(prob_ops))?;
    let prob_pair = |v: usize, d: Dist| {
        !prob_ops.is_empty() && d == Dist::Normal(1.0) && grid.vocabs.contains(&v)
    };

    // (vocab, dist) pairs: the grid's, plus the cold point's when the grid lacks it.
    let mut pairs: Vec<(usize, Dist)> = grid
        .vocabs
        .iter()
        .flat_map(|&v| grid.dists.iter().map(move |&d| (v, d)))
        .collect();
    if !pairs.contains(&(common::COLD_VOCAB, common::COLD_DIST)) {
        pairs.push((common::COLD_VOCAB, common::COLD_DIST));
    }
    if ops.is_empty() {
        pairs.retain(|&(v, d)| prob_pair(v, d)); // no logits op: only what the others read
    }
    let in_grid = |v: usize, d: Dist| grid.vocabs.contains(&v) && grid.dists.contains(&d);

    let mut current_vocab = 0;
    for (vocab, dist) in pairs {
        let host = dist.logits(max_batch, vocab);
        let f32_logits = stream.clone_htod(&host)?;
        let source = if prob_pair(vocab, dist) {
            Some(probs::Source::new(
                &mut b.sampler,
                &f32_logits,
                &host,
                prob_rows,
                vocab,
            )?)
        } else {
            None
        };
        let host16: Vec<bf16> = host.iter().map(|&x| bf16::from_f32(x)).collect();
        drop(host);
        let bf16_logits = stream.clone_htod(&host16)?;
        drop(host16);
        if vocab != current_vocab {
            b.outputs = Outputs::new(&stream, 1, 1)?; // free before growing
            b.outputs = Outputs::new(&stream, max_batch, vocab)?;
            current_vocab = vocab;
        }
        stream.synchronize()?;

        for &dtype in &grid.dtypes {
            for spec in ops {
                let point = |batch, per_row, l2, split| Point {
                    spec,
                    dtype,
                    dist,
                    batch,
                    vocab,
                    per_row,
                    l2,
                    split,
                };
                let mut points = Vec::new();
                if in_grid(vocab, dist) {
                    for &batch in &grid.batches {
                        let per_rows: &[bool] = if spec.kind.is_sampling() {
                            &[false, true]
                        } else {
                            &[false]
                        };
                        for &per_row in per_rows {
                            points.push(point(batch, per_row, L2::Hot, Split::Default));
                        }
                    }
                }
                if (vocab, dist) == (common::COLD_VOCAB, common::COLD_DIST) {
                    let (batches, forced) = spec.kind.forced_paths();
                    for &batch in batches {
                        // The default path at this batch too, when the grid lacks it (quick).
                        if !(in_grid(vocab, dist) && grid.batches.contains(&batch)) {
                            points.push(point(batch, false, L2::Hot, Split::Default));
                        }
                        for &split in forced {
                            points.push(point(batch, false, L2::Hot, split));
                        }
                    }
                    points.push(point(common::COLD_BATCH, false, L2::Cold, Split::Default));
                    for &batch in &ODD_VOCAB_BATCHES {
                        points.push(Point {
                            vocab: vocab - 1,
                            ..point(batch, false, L2::Hot, Split::Default)
                        });
                    }
                }
                for p in points {
                    match dtype {
                        Dtype::F32 => b.run(&f32_logits, p),
                        Dtype::Bf16 => b.run(&bf16_logits, p),
                    }
                }
            }
        }
        if let Some(src) = &source {
            b.run_probs(src, prob_ops, &grid.batches, &mut prob_out);
        }
    }

    if let Some(c) = b.rec.criterion.as_mut() {
        c.final_summary();
    }
    println!(
        "done: {} points written to {}, {} not implemented (op, dtype, per_row), {} errors, \
         {} timed batches where the device waited for the host",
        b.rec.points,
        b.rec.results.path.display(),
        b.not_implemented.len(),
        b.rec.errors,
        b.rec.timer.host_bound_batches
    );
    Ok(if b.rec.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Without `--bench` (`cargo test --benches`): each op once on a small shape (whose rows the
/// split kernels split, and once more with each forced split path, and once on rows of one
/// token fewer, which are not 16-byte aligned), no timing.
fn smoke(
    mut sampler: Sampler,
    ops: &[&OpSpec],
    prob_ops: &[probs::Spec],
) -> samplex::Result<ExitCode> {
    let (batch, vocab) = (2, 32000);
    let stream = sampler.stream().clone();
    let host = Dist::Normal(1.0).logits(batch, vocab);
    let f32_logits = stream.clone_htod(&host)?;
    let bf16_logits =
        stream.clone_htod(&host.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>())?;
    let mut outputs = Outputs::new(&stream, batch, vocab)?;
    let per_row = PerRow::new(&stream, batch)?;
    let mut failed = 0;
    for spec in ops {
        for dtype in [Dtype::F32, Dtype::Bf16] {
            let mut cases = vec![(false, Split::Default, vocab)];
            if spec.kind.is_sampling() {
                cases.push((true, Split::Default, vocab));
            }
            cases.extend(
                spec.kind
                    .forced_paths()
                    .1
                    .iter()
                    .map(|&f| (false, f, vocab)),
            );
            if spec.kind == Kind::Softmax {
                cases.push((false, Split::Staged, vocab)); // the staged kernel, at the smoke's shape
            }
            cases.push((false, Split::Default, vocab - 1)); // the unaligned twins
            for (pr, split, v) in cases {
                let rows = per_row.params(spec.kind, pr, batch);
                let seeds = per_row.seeds(pr, batch);
                spec.kind.set_split(&mut sampler, split);
                let r = match dtype {
                    Dtype::F32 => DeviceLogits::new(f32_logits.slice(0..batch * v), batch, v)
                        .and_then(|x| {
                            launch(&mut sampler, spec.kind, &x, &rows, &seeds, &mut outputs)
                        }),
                    Dtype::Bf16 => DeviceLogits::new(bf16_logits.slice(0..batch * v), batch, v)
                        .and_then(|x| {
                            launch(&mut sampler, spec.kind, &x, &rows, &seeds, &mut outputs)
                        }),
                }
                .and_then(|()| stream.synchronize().map_err(Error::from));
                let what = format!(
                    "{} {} v{v} per_row={pr}{}",
                    spec.label,
                    dtype.name(),
                    split.marker().map_or(String::new(), |m| format!(" {m}"))
                );
                match r {
                    Ok(()) => println!("ok      {what}"),
                    Err(Error::NotImplemented(w)) => {
                        println!("SKIPPED {what}: {w} has no GPU kernel yet")
                    }
                    Err(e) => {
                        println!("FAILED  {what}: {e}");
                        failed += 1;
                    }
                }
            }
        }
    }
    // The probability ops once each, on rows of the smoke's vocab and of one token fewer (the
    // unaligned twins); verify_draft's rows must take the path its inputs were built for.
    let mut prob_out =
        probs::Outputs::new(&stream, batch, probs::Outputs::tokens_per_row(prob_ops))?;
    for v in [vocab, vocab - 1] {
        if prob_ops.is_empty() {
            break;
        }
        let src = probs::Source::new(&mut sampler, &f32_logits, &host, batch, v)?;
        for spec in prob_ops {
            let what = format!("{} v{v}", spec.label());
            let r = probs::Verify::new(&stream, &src, spec.kind).and_then(|verify| {
                let seeds = DeviceSeeds::Shared(Rng::new(7));
                let d = verify.as_ref();
                probs::launch(
                    &mut sampler,
                    spec.kind,
                    &src,
                    d,
                    batch,
                    &seeds,
                    &mut prob_out,
                )?;
                // The copy waits for the launch, as the synchronize does for the other ops.
                match d {
                    Some(d) => d
                        .check_accepted(&stream.clone_dtoh(&prob_out.accepted)?)
                        .map_err(Error::Unsupported),
                    None => Ok(stream.synchronize()?),
                }
            });
            match r {
                Ok(()) => println!("ok      {what}"),
                Err(e) => {
                    println!("FAILED  {what}: {e}");
                    failed += 1;
                }
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The errors that mean "this machine has no GPU": no driver, no device, or a driver that
/// finds none (`cuInit` answers CUDA_ERROR_NO_DEVICE where the library exists without a GPU).
fn no_gpu(e: &Error) -> bool {
    match e {
        Error::NoDriver | Error::NoDevice(_) => true,
        Error::Driver(d) => d.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_NO_DEVICE,
        _ => false,
    }
}

fn main() -> ExitCode {
    common::self_check();
    probs::self_check();
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        return ExitCode::SUCCESS; // the grid is not registered with criterion up front
    }
    let measuring = has("--bench") && !has("--test");

    let known: Vec<&str> = OPS
        .iter()
        .map(|o| o.name)
        .chain(probs::OPS.iter().map(|&(op, _)| op))
        .collect();
    let (ops, prob_ops): (Vec<&OpSpec>, Vec<probs::Spec>) = match common::ops_filter(&known) {
        Ok(None) => (OPS.iter().collect(), probs::specs(None)),
        Ok(Some(names)) => (
            OPS.iter()
                .filter(|o| names.iter().any(|n| n == o.name))
                .collect(),
            probs::specs(Some(&names)),
        ),
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };

    if !samplex::gpu::driver_present() {
        println!("SKIPPED: no CUDA driver/GPU");
        return ExitCode::SUCCESS;
    }
    let ctx = match samplex::gpu::context(0) {
        Ok(c) => c,
        Err(e) if no_gpu(&e) => {
            println!("SKIPPED: no CUDA driver/GPU ({e})");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ERROR: no CUDA context on device 0: {e}");
            return ExitCode::FAILURE;
        }
    };
    // cudarc's cross-stream bookkeeping queues an event record (and a wait) per buffer per
    // call: device work inside the timed window that a single-stream server turns off too.
    // SAFETY: every buffer of this process is allocated, used and freed on the one stream
    // made below, so stream order alone keeps each use after its writes and before its free.
    unsafe { ctx.disable_event_tracking() };
    // Failing here, on a machine with a GPU, is an error: a bench that skips would hide it.
    let sampler = match ctx.new_stream().map_err(Error::from).and_then(Sampler::new) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ERROR: no sampler on device 0: {e}");
            return ExitCode::FAILURE;
        }
    };

    let result = if measuring {
        bench(sampler, &Grid::from_env(), &ops, &prob_ops)
    } else {
        smoke(sampler, &ops, &prob_ops)
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}
