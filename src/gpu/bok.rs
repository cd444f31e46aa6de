//! Wrappers for kernels/bok.cu: Best-of-K mirror ascent.
//!
//! Four ways through the same arithmetic, picked per call ([`BokPath`]):
//!
//! * **One launch, one block per row** (`samplex_bok_row_<T>`): vocab ≤ 32768 and the row's z
//!   (4 bytes a token) fits the device's opt-in shared memory. One block of 512 threads per row
//!   reads the logits once, keeps each token's state in registers across the T iterations, and
//!   writes q, J(q^t) and the drawn token. It checks the rows' alignment itself (no `_v1` twin).
//! * **One launch, one cluster per row** (`samplex_bok_cluster_<T>`): sm_90 and up (a device
//!   with cluster launch and a kernel built from compute_90 or later), 32768 < vocab ≤ 8 × 32768.
//!   The smallest cluster of C = 2, 4 or 8 blocks (the portable sizes) with vocab ≤ C × 32768
//!   holds a row, each block a contiguous run of its draw tiles with their state on chip as in
//!   `samplex_bok_row`; the reductions merge the blocks' partials through distributed shared
//!   memory. Same arguments as `samplex_bok_row`; launched with `cuLaunchKernelEx` and the
//!   cluster dimension (cudarc's launch builder has no cluster launch), so that one kernel
//!   serves every C and the cluster size is chosen here, like the grid.
//! * **One launch, a cooperative grid of C blocks per row** (`samplex_bok_grid_<T>`): every
//!   GPU, for the same rows as the cluster path when there are no clusters (or they do not
//!   fit) and batch × C ≤ the SM count (a cooperative launch needs every block resident at
//!   once). The same body over blocks that publish their partials into an exchange in global
//!   memory (`Sampler::grid_split`) and meet at a barrier per row; the same arguments as
//!   `samplex_bok_row`, then blocks, barriers, exchange.
//! * **One launch per pass** (`samplex_bok_pass_<T>[_v1]`, plus `samplex_bok_topm_<T>[_v1]`
//!   for top-M weights): any vocab, any GPU. Each row is split over `launch::blocks_per_row`
//!   blocks of 256 threads; the state a = ln q + η·g lives in scratch (`batch × vocab` f32) and
//!   each launch is one pass (T + 2 launches, T + 3 with top-M): the launch boundary is the
//!   grid-wide barrier, partials are merged in part order, the last pass takes one ticket per
//!   row.
//!
//! C arguments, common to the five kernels (optional buffers as raw addresses, 0 = absent):
//! logits, stride, vocab, τ, τ\[\], K, K\[\], β, β\[\], λ, λ\[\], η, η\[\], T, T\[\], weight mode,
//! M, weights, thresholds; then `row`, `cluster`, `grid` and `pass`: seed, offset, seeds\[\],
//! offsets\[\], q, objective, tokens, status, status_or; then `grid`: blocks, barriers, exchange;
//! `pass`: parts, pass, state, part_u, part_prev, part_next, topm, tickets; `topm` ends with topm
//! instead.
//!
//! A support rule (or per-row top-k/top-p/min-p) becomes one f32 logit threshold per row from
//! `Sampler::support_thresholds` (kept: z ≥ threshold), at the start of the scratch; it
//! writes the status first and the BoK kernels OR into it.

use cudarc::driver::{CudaFunction, CudaView, CudaViewMut, LaunchConfig};

use super::launch::{
    self, ArgSink, Args, Kernel, KernelArgs, LaunchEx, Pointers, RawArgs, RowSplit, SeedArgs,
    CLUSTER_SIZES, DRAW_TILE,
};
use super::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use crate::decoder::{Bok, BokWeights, Support};
use crate::dtype::Logit;
use crate::error::{Error, Result};

/// Threads of `samplex_bok_row` (`ROW_THREADS` in kernels/bok.cu).
const ROW_THREADS: u32 = 512;
/// The largest vocab `samplex_bok_row` holds on chip (`ROW_TILES` draw tiles), and what each
/// block of `samplex_bok_cluster` holds.
const ROW_MAX_VOCAB: usize = 16 * DRAW_TILE;
/// Bytes at the head of `samplex_bok_cluster`'s dynamic shared memory (`ClusterShared`: two
/// 16-byte partial slots and two 256-bin histograms), before the block's tiles.
const CLUSTER_HEAD_BYTES: usize = 2 * 16 + 2 * 256 * 4;
/// Arguments of `samplex_bok_row` and `samplex_bok_cluster` (the common and output lists).
const ROW_ARGS: usize = 28;
/// Arguments of `samplex_bok_grid` (those, then blocks, barriers, exchange).
const GRID_ARGS: usize = 31;
/// Threads of `samplex_bok_pass`.
const PASS_THREADS: u32 = 256;
/// Threads of `samplex_bok_topm`.
const SELECT_THREADS: u32 = 512;
/// Bytes of one (row, part) partial (`Part` / `FinalPart` in kernels/bok.cu).
const PART_BYTES: usize = 16;
/// Bytes of one row's top-M threshold (key, tie index).
const TOPM_BYTES: usize = 8;
/// Scratch regions start on this boundary.
const ALIGN: usize = 256;
/// The most iterations a GPU call runs (the fallback launches T + 2 kernels from the host).
const MAX_ITERATIONS: u32 = 1 << 20;

/// How [`Sampler::bok`] and [`Sampler::sample_bok`] run a call of a given shape.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BokPath {
    /// `samplex_bok_row`: one block per row, with this much dynamic shared memory.
    Row { shared: u32 },
    /// `samplex_bok_cluster`: a cluster of `blocks` blocks per row, each with this much dynamic
    /// shared memory.
    Cluster { blocks: u32, shared: u32 },
    /// `samplex_bok_grid`: a cooperative grid of `blocks` blocks per row, each with this much
    /// dynamic shared memory.
    Grid { blocks: u32, shared: u32 },
    /// `samplex_bok_pass`: `parts` blocks per row, one launch per pass.
    Passes { parts: u32 },
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Floats per row of the fallback's state: vocab rounded up to `samplex_bok_pass`'s 8 tokens a
/// thread, so that each thread's slots are two aligned 16-byte vectors (kernels/bok.cu:
/// state_row).
fn state_row(vocab: usize) -> usize {
    vocab.next_multiple_of(8)
}

/// The scalar and address arguments of the BoK kernels (kept alive while the launch builder
/// holds references to them).
struct BokArgs {
    logits: u64,
    stride: u64,
    vocab: u32,
    temperature: f32,
    temps: u64,
    k: u32,
    ks: u64,
    beta: f32,
    betas: u64,
    lambda: f32,
    lambdas: u64,
    eta: f32,
    etas: u64,
    iterations: u32,
    iterss: u64,
    weight_mode: u32,
    top_m: u32,
    weights: u64,
    thresholds: u64,
    rng: SeedArgs,
    q: u64,
    objective: u64,
    tokens: u64,
    status: u64,
    status_or: u32,
}

impl BokArgs {
    /// `SAMPLEX_BOK_COMMON_PARAMS` in C-signature order.
    fn push_common<'a, S: ArgSink<'a>>(&'a self, b: &mut S) {
        b.push(&self.logits);
        b.push(&self.stride);
        b.push(&self.vocab);
        b.push(&self.temperature);
        b.push(&self.temps);
        b.push(&self.k);
        b.push(&self.ks);
        b.push(&self.beta);
        b.push(&self.betas);
        b.push(&self.lambda);
        b.push(&self.lambdas);
        b.push(&self.eta);
        b.push(&self.etas);
        b.push(&self.iterations);
        b.push(&self.iterss);
        b.push(&self.weight_mode);
        b.push(&self.top_m);
        b.push(&self.weights);
        b.push(&self.thresholds);
    }

    /// `SAMPLEX_BOK_OUTPUT_PARAMS` in C-signature order.
    fn push_outputs<'a, S: ArgSink<'a>>(&'a self, b: &mut S) {
        self.rng.push(b);
        b.push(&self.q);
        b.push(&self.objective);
        b.push(&self.tokens);
        b.push(&self.status);
        b.push(&self.status_or);
    }
}

/// The extra arguments of one `samplex_bok_pass` launch.
struct PassArgs {
    parts: u32,
    pass: u32,
    state: u64,
    part_u: u64,
    part_prev: u64,
    part_next: u64,
    topm: u64,
    tickets: u64,
}

/// Byte offsets of the fallback's scratch regions (after the thresholds).
struct PassScratch {
    state: usize,
    part_u: usize,
    part_a: [usize; 2],
    part_f: usize,
    topm: usize,
    end: usize,
}

impl PassScratch {
    fn new(start: usize, batch: usize, vocab: usize, parts: u32) -> Self {
        let parts_bytes = align(batch * parts as usize * PART_BYTES);
        let state = start;
        let part_u = state + align(batch * state_row(vocab) * 4);
        let part_a = [part_u + parts_bytes, part_u + 2 * parts_bytes];
        let part_f = part_u + 3 * parts_bytes;
        let topm = part_f + parts_bytes;
        let end = topm + align(batch * TOPM_BYTES);
        PassScratch {
            state,
            part_u,
            part_a,
            part_f,
            topm,
            end,
        }
    }
}

impl Sampler {
    /// BoK's q after T steps per row (dense `batch × vocab`), over the support; `objective`
    /// (`batch × (T + 1)`, T the batch-wide iterations) gets J(q^t) for t = 0..=T when asked.
    /// `weights` is the caller's coverage weights (`batch × vocab`), required exactly when
    /// `params.weights` is `BokWeights::Custom`.
    ///
    /// p = softmax(z/τ) over the support (`support`, or the per-row top_k/top_p/min_p in
    /// `rows`, at BoK's τ); tokens outside it stay at q = 0. Per-row K, β, λ, η, T, τ in `rows`
    /// override `params`; out-of-range values are clamped on the device and flagged with
    /// [`crate::status::PARAM_CLAMPED`] (a per-row T is capped at `params.iterations`, which
    /// sizes the objective; a row's J(q^t) for t past its own T repeats J at its last step).
    /// Custom weights that are NaN or negative count as 0 (flagged). NaN logits count as −∞,
    /// +∞ as f32::MAX (flagged); a row with nothing kept gets q = 0, J = 0 and
    /// [`crate::status::NO_FINITE_LOGIT`]. All arithmetic is f32.
    ///
    /// # Errors
    /// [`Error::BadParam`] for a parameter outside SPEC "Bad input" (τ ≤ 0, K = 0, β ≤ 0,
    /// λ < 0, η ≤ 0, M = 0, top_p, min_p) or T > 2^20; [`Error::BadLength`] for `q`,
    /// `objective`, `weights`, `status` or a per-row buffer of the wrong length (and a missing
    /// custom `weights`); [`Error::WrongDevice`]; [`Error::Driver`] when a launch fails.
    #[allow(clippy::too_many_arguments)]
    pub fn bok<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        params: &Bok,
        support: &Support,
        rows: &RowParams<'_>,
        weights: Option<&CudaView<'_, f32>>,
        q: &mut CudaViewMut<'_, f32>,
        objective: Option<&mut CudaViewMut<'_, f32>>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        let (batch, vocab) = (logits.batch, logits.vocab);
        self.check_buffer("q", &*q, batch * vocab)?;
        self.check_opt_buffer(
            "objective",
            objective.as_deref(),
            batch * (params.iterations as usize + 1),
        )?;
        self.run_bok(
            logits,
            params,
            support,
            rows,
            weights,
            None,
            Some(q),
            objective,
            None,
            status,
        )
    }

    /// One token per row drawn from BoK's q after T steps, in the same launch (or, on the
    /// multi-pass path, the same sequence of launches). The draw is the tiled draw with
    /// log-weights ln q: the same method and random numbers as [`crate::cpu::sample`].
    ///
    /// # Errors
    /// As [`Sampler::bok`], plus [`Error::BadLength`] for `tokens` or per-row seeds of the
    /// wrong length.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_bok<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        params: &Bok,
        support: &Support,
        rows: &RowParams<'_>,
        weights: Option<&CudaView<'_, f32>>,
        seeds: &DeviceSeeds<'_>,
        tokens: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        self.check_buffer("tokens", &*tokens, logits.batch)?;
        seeds.check(logits.batch, self)?;
        self.run_bok(
            logits,
            params,
            support,
            rows,
            weights,
            Some(seeds),
            None,
            None,
            Some(tokens),
            status,
        )
    }

    /// Whether `samplex_bok_row` can hold a row of `vocab` tokens on this device, and its
    /// dynamic shared memory in bytes.
    fn bok_row_fits(&self, func: &CudaFunction, vocab: usize) -> Result<Option<u32>> {
        if vocab > ROW_MAX_VOCAB {
            return Ok(None);
        }
        let dynamic = vocab.div_ceil(DRAW_TILE) * DRAW_TILE * 4;
        Ok(self
            .fits_shared_memory(func, dynamic)?
            .then_some(dynamic as u32))
    }

    /// The blocks per row of the split on-chip paths for `vocab` tokens: the smallest C of 2, 4
    /// or 8 with vocab ≤ C × 32768 (None: the row fits one block, or not even 8).
    fn bok_split_blocks(vocab: usize) -> Option<u32> {
        CLUSTER_SIZES
            .iter()
            .copied()
            .find(|&c| vocab > ROW_MAX_VOCAB && vocab <= c as usize * ROW_MAX_VOCAB)
    }

    /// Whether `samplex_bok_cluster` can hold a row of `vocab` tokens here: (blocks per
    /// cluster, dynamic shared memory per block). Needs a device with cluster launch (sm_90 and
    /// up), a kernel built for it (PTX version ≥ 90: the compute_80 PTX has the trap body), the
    /// shared memory, and a cluster of that shape the device can schedule at all.
    fn bok_cluster_fits(
        &mut self,
        func: &CudaFunction,
        vocab: usize,
    ) -> Result<Option<(u32, u32)>> {
        let Some(blocks) = Self::bok_split_blocks(vocab) else {
            return Ok(None);
        };
        let per_block = vocab.div_ceil(DRAW_TILE).div_ceil(blocks as usize);
        let dynamic = CLUSTER_HEAD_BYTES + per_block * DRAW_TILE * 4;
        Ok(self
            .cluster_fits(func, blocks, ROW_THREADS, dynamic)?
            .then_some((blocks, dynamic as u32)))
    }

    /// Whether `samplex_bok_grid` can hold `batch` rows of `vocab` tokens here: (blocks per row,
    /// dynamic shared memory per block). batch × C ≤ the SM count (the exchange's size, and one
    /// 512-thread, 128-register block per SM), cooperative launch, the shared memory, and room
    /// for every block at once.
    fn bok_grid_fits(
        &mut self,
        func: &CudaFunction,
        batch: usize,
        vocab: usize,
    ) -> Result<Option<(u32, u32)>> {
        let Some(blocks) = Self::bok_split_blocks(vocab) else {
            return Ok(None);
        };
        if batch.saturating_mul(blocks as usize) > self.sm_count as usize {
            return Ok(None);
        }
        let per_block = vocab.div_ceil(DRAW_TILE).div_ceil(blocks as usize);
        let dynamic = per_block * DRAW_TILE * 4;
        let total = blocks * batch as u32;
        Ok(self
            .grid_fits(func, total, ROW_THREADS, dynamic)?
            .then_some((blocks, dynamic as u32)))
    }

    /// Which kernels [`Sampler::bok`] and [`Sampler::sample_bok`] run for `batch` rows of
    /// `vocab` logits of type `T` on this device (for tests and benchmarks).
    ///
    /// # Errors
    /// [`Error::Driver`] when the driver fails to load a kernel or answer a query.
    #[doc(hidden)]
    pub fn bok_path<T: Logit>(&mut self, batch: usize, vocab: usize) -> Result<BokPath> {
        let row = self.function(Kernel::new("bok", "row", T::DTYPE))?;
        if let Some(shared) = self.bok_row_fits(&row, vocab)? {
            return Ok(BokPath::Row { shared });
        }
        if self.bok_split.clusters() {
            let cluster = self.function(Kernel::new("bok", "cluster", T::DTYPE))?;
            if let Some((blocks, shared)) = self.bok_cluster_fits(&cluster, vocab)? {
                return Ok(BokPath::Cluster { blocks, shared });
            }
        }
        if self.bok_split.grid() {
            let grid = self.function(Kernel::new("bok", "grid", T::DTYPE))?;
            if let Some((blocks, shared)) = self.bok_grid_fits(&grid, batch, vocab)? {
                return Ok(BokPath::Grid { blocks, shared });
            }
        }
        Ok(BokPath::Passes {
            parts: launch::blocks_per_row(batch, vocab, self.sm_count),
        })
    }

    /// Which split paths BoK may take for rows above 32768 tokens ([`RowSplit::Any`] by
    /// default; [`RowSplit::Off`]: the multi-pass fallback), so that tests reach every path on
    /// one device.
    #[doc(hidden)]
    pub fn set_bok_split(&mut self, split: RowSplit) {
        self.bok_split = split;
    }

    /// Both wrappers: the checks, the support thresholds, the config and the launches.
    #[allow(clippy::too_many_arguments)]
    fn run_bok<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        params: &Bok,
        support: &Support,
        rows: &RowParams<'_>,
        weights: Option<&CudaView<'_, f32>>,
        seeds: Option<&DeviceSeeds<'_>>,
        q: Option<&mut CudaViewMut<'_, f32>>,
        objective: Option<&mut CudaViewMut<'_, f32>>,
        tokens: Option<&mut CudaViewMut<'_, u32>>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // 1. Validate (SPEC "Bad input").
        let (batch, vocab) = (logits.batch, logits.vocab);
        params.validate()?;
        support.validate()?;
        if params.iterations > MAX_ITERATIONS {
            return Err(Error::BadParam {
                name: "iterations",
                value: params.iterations.into(),
                range: "<= 2^20 on the GPU",
            });
        }
        self.check_device("logits", &logits.data)?;
        rows.check(batch, self)?;
        match (weights, params.weights) {
            (Some(w), _) => self.check_buffer("weights", w, batch * vocab)?,
            (None, BokWeights::Custom) => {
                return Err(Error::BadLength {
                    name: "weights",
                    got: 0,
                    expected: batch * vocab,
                })
            }
            (None, _) => {}
        }
        self.check_opt_buffer("status", status.as_deref(), batch)?;

        // 2. Config: one block per row on chip, one cluster or cooperative grid per row on chip,
        //    or the multi-pass fallback.
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let logits_addr = ptrs.read(&logits.data);
        let path = self.bok_path::<T>(batch, vocab)?;
        let parts = match path {
            BokPath::Row { .. } => 1,
            BokPath::Cluster { blocks, .. } | BokPath::Grid { blocks, .. } => blocks,
            BokPath::Passes { parts } => parts,
        };
        let filtered = !support.is_all(vocab)
            || rows.top_k.is_some()
            || rows.top_p.is_some()
            || rows.min_p.is_some();
        let thr_bytes = if filtered { align(batch * 4) } else { 0 };
        let layout = PassScratch::new(thr_bytes, batch, vocab, parts);
        let (scratch_bytes, tickets) = match path {
            BokPath::Passes { .. } => (layout.end, batch),
            _ => (thr_bytes, 0),
        };
        // batch × parts < 2^31 blocks, checked here for every path (the passes' grid).
        let pass_cfg = launch::row_grid(batch, parts, PASS_THREADS)?;
        let sc = self.scratch(scratch_bytes, tickets)?;
        let status_addr = ptrs.write_opt(status);
        if filtered {
            // Thresholds at the start of the scratch; that op uses none of it (or only past
            // our regions), and writes the status that our kernels then OR into.
            self.support_thresholds(
                logits,
                params.temperature,
                support,
                rows,
                sc.base,
                status_addr,
                scratch_bytes,
            )?;
            debug_assert_eq!(
                self.scratch(scratch_bytes, tickets)?.base,
                sc.base,
                "the workspace moved"
            );
        }

        // 3. Arguments in C-signature order.
        let args = BokArgs {
            logits: logits_addr,
            stride: logits.stride as u64,
            vocab: vocab as u32,
            temperature: params.temperature,
            temps: ptrs.read_opt(rows.temperature.as_ref()),
            k: params.k,
            ks: ptrs.read_opt(rows.bok_k.as_ref()),
            beta: params.beta,
            betas: ptrs.read_opt(rows.bok_beta.as_ref()),
            lambda: params.lambda,
            lambdas: ptrs.read_opt(rows.bok_lambda.as_ref()),
            eta: params.eta,
            etas: ptrs.read_opt(rows.bok_eta.as_ref()),
            iterations: params.iterations,
            iterss: ptrs.read_opt(rows.bok_iterations.as_ref()),
            weight_mode: match params.weights {
                BokWeights::Prob => 0,
                BokWeights::TopM(_) => 1,
                BokWeights::Custom => 2,
            },
            top_m: match params.weights {
                BokWeights::TopM(m) => m,
                _ => 0,
            },
            weights: match params.weights {
                BokWeights::Custom => ptrs.read_opt(weights),
                _ => 0,
            },
            thresholds: if filtered { sc.base } else { 0 },
            rng: SeedArgs::new(&mut ptrs, seeds),
            q: ptrs.write_opt(q),
            objective: ptrs.write_opt(objective),
            tokens: ptrs.write_opt(tokens),
            status: status_addr,
            status_or: u32::from(filtered),
        };

        // 4. Launch.
        if let BokPath::Row { shared: dynamic } = path {
            let row_func = self.function(Kernel::new("bok", "row", T::DTYPE))?;
            launch::allow_dynamic_shared(&row_func, dynamic as usize)?;
            let cfg = LaunchConfig {
                shared_mem_bytes: dynamic,
                ..launch::row_grid(batch, 1, ROW_THREADS)?
            };
            let mut b = Args::new();
            args.push_common(&mut b);
            args.push_outputs(&mut b);
            // SAFETY: the arguments follow samplex_bok_row's C signature (SAMPLEX_BOK_COMMON_PARAMS
            // then SAMPLEX_BOK_OUTPUT_PARAMS) in order and type. Checked above: the logits view
            // covers (batch − 1)·stride + vocab elements, q and weights are batch × vocab,
            // objective batch × (T + 1), tokens, status and every per-row buffer batch, all on this
            // device; vocab ≤ 32768 and the dynamic shared memory (tiles × 2048 × 4 bytes, within
            // the function's maximum) fits the device; the thresholds (batch f32) are at the start
            // of the reserved scratch; one block per row, batch < 2^31.
            unsafe { b.launch(&row_func, &stream, cfg) }?;
        } else if let BokPath::Cluster { blocks, shared } = path {
            let func = self.function(Kernel::new("bok", "cluster", T::DTYPE))?;
            launch::allow_dynamic_shared(&func, shared as usize)?;
            let mut params = RawArgs::<ROW_ARGS>::new();
            args.push_common(&mut params);
            args.push_outputs(&mut params);
            debug_assert_eq!(params.len(), ROW_ARGS);
            let mut launch = LaunchEx::cluster(
                blocks,
                batch as u32,
                ROW_THREADS,
                shared,
                stream.cu_stream(),
            );
            // SAFETY: `params` points at the 28 arguments of samplex_bok_cluster's C signature
            // (SAMPLEX_BOK_COMMON_PARAMS then SAMPLEX_BOK_OUTPUT_PARAMS, as samplex_bok_row) in
            // order and type, all alive in `args` until the launch is queued. `launch` is a cluster
            // launch on the sampler's stream, whose context is current: clusters of `blocks` ≤ 8
            // blocks (bok_cluster_fits: a device with cluster launch, the kernel built from
            // compute_90 or later, a schedulable cluster) of ROW_THREADS threads, one cluster per
            // row, batch · blocks < 2^31 blocks; `shared` (the head plus ceil(tiles / blocks) ≤ 16
            // tiles of 8 KB, since vocab ≤ blocks · 32768) fits the device and within the function's
            // maximum, raised above. Checked above: the logits view covers (batch − 1)·stride + vocab
            // elements, q and weights are batch × vocab, objective batch × (T + 1), tokens, status
            // and every per-row buffer batch, all on this device; the thresholds (batch f32) are at
            // the start of the reserved scratch. The kernel checks the rows' alignment itself.
            unsafe { launch.queue(self.context(), &func, &mut params) }?;
        } else if let BokPath::Grid { blocks, shared } = path {
            let func = self.function(Kernel::new("bok", "grid", T::DTYPE))?;
            let split = self.grid_split(blocks);
            let mut params = RawArgs::<GRID_ARGS>::new();
            args.push_common(&mut params);
            args.push_outputs(&mut params);
            split.push(&mut params);
            debug_assert_eq!(params.len(), GRID_ARGS);
            let mut launch = split.launch(batch, ROW_THREADS, shared, stream.cu_stream());
            // SAFETY: `params` points at the 31 arguments of samplex_bok_grid's C signature
            // (samplex_bok_row's, then blocks, barriers, exchange) in order and type, all alive
            // until the launch is queued. `launch` is a cooperative launch on the sampler's
            // stream, whose context is current: `blocks` blocks of ROW_THREADS threads per row,
            // batch × blocks ≤ the SM count (bok_grid_fits), so the exchange holds a barrier per
            // row and an entry per block (grid_split's entries are larger than BoK's; only
            // kernels on this stream use it, one after another); bok_grid_fits checked that the
            // device has cooperative launch and room for every block at once with `shared`
            // bytes of dynamic shared memory (ceil(tiles / blocks) ≤ 16 tiles of 8 KB), within
            // the function's maximum. The rest as for the cluster launch above.
            unsafe { launch.queue(self.context(), &func, &mut params) }?;
        } else {
            let vec = launch::vector_width::<T>(logits_addr, logits.stride);
            let pass_func = self.function(Kernel::new("bok", "pass", T::DTYPE).at_width(vec))?;
            let at = |off: usize| sc.base + off as u64;
            if let BokWeights::TopM(_) = params.weights {
                let func = self.function(Kernel::new("bok", "topm", T::DTYPE).at_width(vec))?;
                let topm = at(layout.topm);
                let cfg = launch::row_grid(batch, 1, SELECT_THREADS)?;
                let mut b = Args::new();
                args.push_common(&mut b);
                b.arg(&topm);
                // SAFETY: samplex_bok_topm's C signature is SAMPLEX_BOK_COMMON_PARAMS then the
                // topm address; the buffers are checked as for samplex_bok_pass below, and topm
                // has 8 bytes per row inside the reserved scratch. One block per row.
                unsafe { b.launch(&func, &stream, cfg) }?;
            }
            let last = params.iterations + 1;
            for pass in 0..=last {
                let pa = PassArgs {
                    parts,
                    pass,
                    state: at(layout.state),
                    part_u: at(layout.part_u),
                    part_prev: if pass >= 2 {
                        at(layout.part_a[(pass as usize - 1) & 1])
                    } else {
                        0
                    },
                    part_next: match pass {
                        0 => 0,
                        p if p == last => at(layout.part_f),
                        p => at(layout.part_a[p as usize & 1]),
                    },
                    topm: at(layout.topm),
                    tickets: sc.tickets,
                };
                let mut b = Args::new();
                args.push_common(&mut b);
                args.push_outputs(&mut b);
                b.arg(&pa.parts)
                    .arg(&pa.pass)
                    .arg(&pa.state)
                    .arg(&pa.part_u)
                    .arg(&pa.part_prev)
                    .arg(&pa.part_next)
                    .arg(&pa.topm)
                    .arg(&pa.tickets);
                // SAFETY: the arguments follow samplex_bok_pass's C signature
                // (SAMPLEX_BOK_COMMON_PARAMS, SAMPLEX_BOK_OUTPUT_PARAMS, then parts, pass and the
                // scratch addresses) in order and type. Checked above: every buffer has the
                // length its shape needs and lives on this device; the rows are 16-byte aligned
                // when the vector kernel is picked (launch::vector_width); the scratch holds the
                // thresholds, the state (batch × state_row(vocab) f32, 256-byte aligned) and the
                // partials (batch × parts × 16 bytes each) laid out by PassScratch, and `batch`
                // tickets, all zero between ops; the grid is batch × parts < 2^31 blocks, parts ≤
                // the row's draw tiles.
                unsafe { b.launch(&pass_func, &stream, pass_cfg) }?;
            }
        }
        drop(ptrs);
        Ok(())
    }
}
