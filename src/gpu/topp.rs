//! Wrappers for kernels/topp.cu (and the filter parts of kernels/topk.cu): the support rules
//! top-k → top-p → min-p as per-row logit thresholds, and sampling, renormalised
//! probabilities and masked logits under them.
//!
//! Every op is two launches: the threshold kernel (the radix passes of docs/ARCHITECTURE.md
//! "Support rules as logit thresholds") leaves a 32-byte `RowInfo` per row in scratch, then a
//! kernel split over `launch::blocks_per_row` blocks per row draws, or writes the dense output.
//!
//! The threshold kernel runs one block of 1024 threads per row, or ([`ThresholdPath`]) C = 2, 4
//! or 8 such blocks per row when the batch is too small to fill the GPU: one thread-block
//! cluster per row on sm_90 (histograms and merges over distributed shared memory), else a
//! cooperative grid (the same merges through global memory and a barrier per row). C is the
//! largest size with batch × C ≤ the SM count (one block per SM) and vocab ≥ C × 4096 (a slice
//! of at least one 1024-thread f32 chunk per block; below that the barriers cost more than the
//! split saves). Each block takes a contiguous slice of the row and, when it fits in shared
//! memory, stages it there on the first read, so that the later passes do not read L2/HBM
//! again. The results are the same bits on every path.
//!
//! | kernel                                      | C arguments                                                            |
//! |---------------------------------------------|------------------------------------------------------------------------|
//! | `samplex_topp_thresholds_<T>[_any]`         | logits, stride, vocab, τ, τ\[\], k, k\[\], p, p\[\], min_p, min_p\[\], want_mass, thresholds, row_info, status |
//! | `samplex_topp_thresholds_cluster_<T>[_any]` | the same, then stage                                                   |
//! | `samplex_topp_thresholds_grid_<T>[_v1]`     | the same, then stage, blocks, barriers, exchange                       |
//! | `samplex_topp_sample_<T>[_any]`             | logits, stride, vocab, row_info, seed, offset, seeds\[\], offsets\[\], tokens, status, blocks_per_row, partials, tickets |
//! | `samplex_topp_probs_<T>`                    | logits, stride, vocab, row_info, probs, status, blocks_per_row         |
//! | `samplex_topp_logits_<T>`                   | logits, stride, vocab, row_info, masked, status, blocks_per_row        |
//!
//! Scratch: `batch × 32` bytes of `RowInfo`, then (sampling) `batch × blocks_per_row × 8`
//! bytes of per-block draws; one ticket per row.

use cudarc::driver::CudaViewMut;

use super::launch::{
    self, slice_len, ArgSink, Args, Kernel, KernelArgs, Pointers, RowSplit, SeedArgs, SplitEntries,
    SplitKernels, CLUSTER_HEAD_BYTES,
};
use super::topk::{logits_vector_width, RADIX_THREADS};
use super::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use crate::decoder::{check_temperature, Support};
use crate::dtype::{DType, Logit};
use crate::error::Result;

/// Bytes of one row's `RowInfo` (kernels/topp.cu).
const ROW_INFO_BYTES: usize = 32;

/// Bytes of one block's partial draw (`TileDraw` in kernels/common.cuh).
const TILE_DRAW_BYTES: usize = 8;

/// The threshold kernels: `samplex_topp_thresholds`, `_cluster`, `_grid`.
const THRESHOLDS: SplitEntries = SplitEntries {
    family: "topp",
    block: "thresholds",
    cluster: "thresholds_cluster",
    grid: "thresholds_grid",
};

/// How the threshold kernel runs a call of a given shape: `samplex_topp_thresholds` (Block),
/// `_cluster` or `_grid`.
pub use super::launch::SplitPath as ThresholdPath;

/// The threshold kernel's arguments in C-signature order (the cluster entry adds `stage`).
struct ThresholdArgs {
    logits: u64,
    stride: u64,
    vocab: u32,
    temperature: f32,
    tau_rows: u64,
    top_k: u32,
    k_rows: u64,
    top_p: f32,
    p_rows: u64,
    min_p: f32,
    min_p_rows: u64,
    want_mass: u32,
    thresholds: u64,
    row_info: u64,
    status: u64,
}

impl KernelArgs for ThresholdArgs {
    fn push<'a, S: ArgSink<'a>>(&'a self, b: &mut S) {
        b.push(&self.logits);
        b.push(&self.stride);
        b.push(&self.vocab);
        b.push(&self.temperature);
        b.push(&self.tau_rows);
        b.push(&self.top_k);
        b.push(&self.k_rows);
        b.push(&self.top_p);
        b.push(&self.p_rows);
        b.push(&self.min_p);
        b.push(&self.min_p_rows);
        b.push(&self.want_mass);
        b.push(&self.thresholds);
        b.push(&self.row_info);
        b.push(&self.status);
    }
}

/// Where the threshold kernel writes (device addresses, 0 = not wanted).
#[derive(Clone, Copy)]
struct ThresholdOut {
    thresholds: u64,
    row_info: u64,
    status: u64,
    want_mass: bool,
}

/// The dense outputs of the filter.
#[derive(Clone, Copy)]
enum Dense {
    Probs,
    Logits,
}

impl Sampler {
    /// One token per row from softmax(z/τ) over the support (top-k → top-p → min-p).
    ///
    /// τ = `temperature` or `rows.temperature[r]`; k, p, min_p from `support` or the per-row
    /// buffers in `rows` (0 or ≥ vocab / 1 / 0 turn a filter off). A τ = 0 row is greedy (the
    /// argmax, ties to the lowest index). The same inputs and seeds give the same tokens,
    /// run after run.
    ///
    /// Edge cases: NaN logits count as −∞ and +∞ as f32::MAX (flagged); a row with no finite
    /// logit gets `u32::MAX` and [`crate::status::NO_FINITE_LOGIT`]; per-row values out of
    /// range are clamped (τ to [0, f32::MAX], NaN → 1; p to (0, 1], NaN → 1; min_p to [0, 1],
    /// NaN → 0) and flagged [`crate::status::PARAM_CLAMPED`].
    ///
    /// # Errors
    /// [`crate::Error::BadParam`] for τ < 0 / NaN / ∞, p ∉ (0, 1], min_p ∉ [0, 1];
    /// [`crate::Error::BadLength`] when `tokens`, `status`, a per-row buffer or per-row seeds
    /// are not `batch` long; [`crate::Error::WrongDevice`]; [`crate::Error::Driver`].
    #[allow(clippy::too_many_arguments)]
    pub fn sample_filtered<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        support: &Support,
        rows: &RowParams<'_>,
        seeds: &DeviceSeeds<'_>,
        tokens: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // Validate.
        let batch = logits.batch;
        self.check_filter(logits, temperature, support, rows)?;
        seeds.check(batch, self)?;
        self.check_buffer("tokens", &*tokens, batch)?;
        self.check_opt_buffer("status", status.as_deref(), batch)?;

        // Config.
        let vec = logits_vector_width(self, logits);
        let nb = launch::blocks_per_row(batch, logits.vocab, self.sm_count);
        let cfg = launch::row_grid(batch, nb, launch::BLOCK_THREADS)?;
        let info_bytes = batch * ROW_INFO_BYTES;
        let scratch = self.scratch(info_bytes + batch * nb as usize * TILE_DRAW_BYTES, batch)?;
        let (row_info, partials) = (scratch.base, scratch.base + info_bytes as u64);

        // 1. thresholds → RowInfo.
        let out = ThresholdOut {
            thresholds: 0,
            row_info,
            status: 0,
            want_mass: false,
        };
        self.launch_thresholds(logits, temperature, support, rows, vec, out)?;

        // 2. the draw.
        let func = self.function(launch::entry("topp", "sample", T::DTYPE, vec))?;
        let mut ptrs = Pointers::new(&self.stream);
        let logits_addr = ptrs.read(&logits.data);
        let stride = logits.stride as u64;
        let vocab = logits.vocab as u32;
        let rng = SeedArgs::new(&mut ptrs, Some(seeds));
        let tokens_addr = ptrs.write(tokens);
        let status_addr = ptrs.write_opt(status);
        let mut builder = Args::new();
        builder
            .arg(&logits_addr)
            .arg(&stride)
            .arg(&vocab)
            .arg(&row_info);
        rng.push(&mut builder);
        builder
            .arg(&tokens_addr)
            .arg(&status_addr)
            .arg(&nb)
            .arg(&partials)
            .arg(&scratch.tickets);
        // SAFETY: the arguments match samplex_topp_sample's C signature. Checked above: the
        // logits cover `batch` rows of `stride` ≥ vocab elements; tokens and status hold
        // `batch` entries, per-row seeds and offsets `batch` each, all on this device; vector
        // width 4/8 only for a 16-byte-aligned base and stride. The scratch holds the `batch`
        // RowInfo that the threshold launch, queued before on this stream, writes, then
        // `batch × nb` partial draws; the ticket counters (≥ batch) are zero between launches
        // (the last block of each split row resets its own). Grid: batch × nb blocks of 256.
        unsafe { builder.launch(&func, &self.stream, cfg) }?;
        drop(ptrs);
        Ok(())
    }

    /// softmax(z/τ) renormalised over the support, dense `batch × vocab` (0 outside).
    ///
    /// A τ = 0 row is one-hot at its argmax; a row with no finite logit is all 0 (flagged
    /// [`crate::status::NO_FINITE_LOGIT`]). Edge cases and clamping as
    /// [`Sampler::sample_filtered`].
    ///
    /// # Errors
    /// As [`Sampler::sample_filtered`], with `probs` required to be `batch × vocab`.
    pub fn filtered_probs<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        support: &Support,
        rows: &RowParams<'_>,
        probs: &mut CudaViewMut<'_, f32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        self.filter_dense(
            logits,
            temperature,
            support,
            rows,
            Dense::Probs,
            probs,
            status,
        )
    }

    /// The logits (sanitised, widened to f32, not divided by τ) where kept, −∞ elsewhere,
    /// dense `batch × vocab`.
    ///
    /// A τ = 0 row keeps its argmax alone (the lowest index of the max); a row with no
    /// finite logit is all −∞. Edge cases and clamping as [`Sampler::sample_filtered`].
    ///
    /// # Errors
    /// As [`Sampler::sample_filtered`], with `masked` required to be `batch × vocab`.
    pub fn filtered_logits<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        support: &Support,
        rows: &RowParams<'_>,
        masked: &mut CudaViewMut<'_, f32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        self.filter_dense(
            logits,
            temperature,
            support,
            rows,
            Dense::Logits,
            masked,
            status,
        )
    }

    /// Writes one f32 logit threshold per row to the device address `thresholds`: row r keeps
    /// exactly the tokens with sanitised z_i ≥ thresholds[r] (−∞: every finite token; +∞: none).
    /// Uses the scratch from byte `scratch_offset` on (the caller owns the bytes before it);
    /// `status` is a device address or 0. Shared by the filter ops and BoK.
    ///
    /// The kernel needs no scratch (one block per row keeps everything in shared memory), so
    /// the workspace is left untouched. `status` is *written* (sanitising bits, clamped
    /// per-row parameters, no finite logit); a later kernel of the same op should OR into it.
    /// A τ = 0 row gets its max logit as threshold (every tie of the max would pass; greedy
    /// callers keep the lowest index alone). −∞ logits are never kept, whatever the threshold.
    #[allow(clippy::too_many_arguments)]
    #[allow(dead_code)] // the BoK wrapper (src/gpu/bok.rs) is its caller
    pub(crate) fn support_thresholds<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        support: &Support,
        rows: &RowParams<'_>,
        thresholds: u64,
        status: u64,
        scratch_offset: usize,
    ) -> Result<()> {
        let _ = scratch_offset; // no scratch needed (see above)
        self.check_filter(logits, temperature, support, rows)?;
        let vec = logits_vector_width(self, logits);
        let out = ThresholdOut {
            thresholds,
            row_info: 0,
            status,
            want_mass: false,
        };
        self.launch_thresholds(logits, temperature, support, rows, vec, out)
    }

    /// The host-side checks every filter op shares (SPEC "Bad input").
    fn check_filter<T: Logit>(
        &self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        support: &Support,
        rows: &RowParams<'_>,
    ) -> Result<()> {
        check_temperature(temperature)?;
        support.validate()?;
        self.check_device("logits", &logits.data)?;
        rows.check(logits.batch, self)
    }

    /// Thresholds, then the dense writer.
    #[allow(clippy::too_many_arguments)]
    fn filter_dense<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        support: &Support,
        rows: &RowParams<'_>,
        what: Dense,
        out: &mut CudaViewMut<'_, f32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // Validate.
        let (batch, vocab) = (logits.batch, logits.vocab);
        self.check_filter(logits, temperature, support, rows)?;
        let name = match what {
            Dense::Probs => "probs",
            Dense::Logits => "masked",
        };
        let len = batch.saturating_mul(vocab);
        self.check_buffer(name, &*out, len)?;
        self.check_opt_buffer("status", status.as_deref(), batch)?;

        // Config.
        let vec = logits_vector_width(self, logits);
        let nb = launch::blocks_per_row(batch, vocab, self.sm_count);
        let cfg = launch::row_grid(batch, nb, launch::BLOCK_THREADS)?;
        let row_info = self.scratch(batch * ROW_INFO_BYTES, 0)?.base;

        // 1. thresholds (and the kept mass, for probabilities) → RowInfo.
        let t_out = ThresholdOut {
            thresholds: 0,
            row_info,
            status: 0,
            want_mass: matches!(what, Dense::Probs),
        };
        self.launch_thresholds(logits, temperature, support, rows, vec, t_out)?;

        // 2. the dense writer.
        let op = match what {
            Dense::Probs => "probs",
            Dense::Logits => "logits",
        };
        let func = self.function(Kernel::new("topp", op, T::DTYPE))?;
        let mut ptrs = Pointers::new(&self.stream);
        let logits_addr = ptrs.read(&logits.data);
        let stride = logits.stride as u64;
        let vocab_u32 = vocab as u32;
        let out_addr = ptrs.write(out);
        let status_addr = ptrs.write_opt(status);
        let mut builder = Args::new();
        builder
            .arg(&logits_addr)
            .arg(&stride)
            .arg(&vocab_u32)
            .arg(&row_info)
            .arg(&out_addr)
            .arg(&status_addr)
            .arg(&nb);
        // SAFETY: the arguments match samplex_topp_{probs,logits}'s C signature. Checked
        // above: the logits cover `batch` rows of `stride` ≥ vocab elements; `out` holds
        // exactly batch × vocab f32 and `status` batch u32, on this device; the scratch holds
        // the `batch` RowInfo that the threshold launch, queued before on this stream, writes;
        // the grid is batch × nb blocks of 256 threads, as the kernel's row/tile split assumes.
        unsafe { builder.launch(&func, &self.stream, cfg) }?;
        drop(ptrs);
        Ok(())
    }

    /// Which threshold kernel the filter ops (and BoK's support thresholds) run for `batch` rows
    /// of `vocab` logits of type `T` with 16-byte-aligned rows (for tests and benchmarks).
    ///
    /// # Errors
    /// [`crate::Error::Driver`] when the driver fails to load a kernel or answer a query.
    #[doc(hidden)]
    pub fn filter_threshold_path<T: Logit>(
        &mut self,
        batch: usize,
        vocab: usize,
    ) -> Result<ThresholdPath> {
        self.threshold_path(T::DTYPE, batch, vocab, (16 / T::DTYPE.size()) as u32)
    }

    /// Which split paths the threshold kernel may take ([`RowSplit::Any`] by default), so that
    /// tests can compare them with each other and with the one-block path on one device.
    #[doc(hidden)]
    pub fn set_filter_split(&mut self, split: RowSplit) {
        self.filter_split = split;
    }

    /// The threshold path for this shape and vector width (the rule in the module header,
    /// `Sampler::split_path`).
    fn threshold_path(
        &mut self,
        dtype: DType,
        batch: usize,
        vocab: usize,
        vec: u32,
    ) -> Result<ThresholdPath> {
        let slice_bytes = |blocks| slice_len(vocab, blocks, dtype) * 4;
        let kernels = SplitKernels {
            cluster: THRESHOLDS.cluster(dtype, vec),
            grid: THRESHOLDS.grid(dtype, vec),
            threads: RADIX_THREADS,
            head: CLUSTER_HEAD_BYTES,
            slice_bytes: &slice_bytes,
        };
        self.split_path(self.filter_split, &kernels, batch, vocab)
    }

    /// The threshold kernel (validated by the caller): one block of 1024 threads per row, or
    /// one cluster per row (`threshold_path`).
    fn launch_thresholds<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        support: &Support,
        rows: &RowParams<'_>,
        vec: u32,
        out: ThresholdOut,
    ) -> Result<()> {
        let batch = logits.batch;
        let cfg = launch::row_grid(batch, 1, RADIX_THREADS)?;
        let path = self.threshold_path(T::DTYPE, batch, logits.vocab, vec)?;
        let func = self.function(THRESHOLDS.on(&path, T::DTYPE, vec))?;
        let mut ptrs = Pointers::new(&self.stream);
        let args = ThresholdArgs {
            logits: ptrs.read(&logits.data),
            stride: logits.stride as u64,
            vocab: logits.vocab as u32,
            temperature,
            tau_rows: ptrs.read_opt(rows.temperature.as_ref()),
            top_k: support.top_k,
            k_rows: ptrs.read_opt(rows.top_k.as_ref()),
            top_p: support.top_p,
            p_rows: ptrs.read_opt(rows.top_p.as_ref()),
            min_p: support.min_p,
            min_p_rows: ptrs.read_opt(rows.min_p.as_ref()),
            want_mass: u32::from(out.want_mass),
            thresholds: out.thresholds,
            row_info: out.row_info,
            status: out.status,
        };
        if path == ThresholdPath::Block {
            let mut builder = Args::new();
            args.push(&mut builder);
            // SAFETY: the arguments match samplex_topp_thresholds's C signature. The caller ran
            // `check_filter`: τ ≥ 0 and finite, p ∈ (0, 1], min_p ∈ [0, 1], per-row buffers of
            // `batch` entries on this device; the logits cover `batch` rows of `stride` ≥ vocab
            // elements; vector width 4/8 only for a 16-byte-aligned base and stride.
            // `thresholds` (f32), `row_info` (32 bytes) and `status` (u32) are 0 or addresses of
            // `batch` entries owned by the caller (scratch reserved before this call, or BoK's
            // buffers).
            unsafe { builder.launch(&func, &self.stream, cfg) }?;
        } else {
            // SAFETY: `args` are the leading C arguments of samplex_topp_thresholds_cluster /
            // _grid (samplex_topp_thresholds's, then stage [, blocks, barriers, exchange]), with
            // the buffers as for the one-block launch (above); `path` is threshold_path's for
            // this function, batch and vocab (the staged slice is slice_len(vocab, blocks, dtype)
            // f32, or fewer for the grid's `_v1` twin, whose slices are not rounded up).
            unsafe { self.queue_split(&func, path, &args, batch, RADIX_THREADS) }?;
        }
        drop(ptrs);
        Ok(())
    }
}
