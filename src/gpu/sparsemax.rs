//! Wrappers for kernels/sparsemax.cu: sparsemax by sort-and-threshold.
//!
//! One kernel, `samplex_sparsemax_project_<T>` (and its `_any` twin for rows that are not
//! 16-byte aligned), computes per row θ, then whichever outputs it is given: q (dense), the
//! support size k*, a token drawn from q, the status. C arguments after the rows:
//! stride, vocab, τ, τ\[\], seed, offset, seeds\[\], offsets\[\], probs, support, tokens, status
//! (optional buffers as raw addresses, 0 when absent).
//!
//! One block of 1024 threads per row; no scratch, no tickets. The candidates u_i ≥ max u − 1
//! are sorted on chip when there are at most 4096 of them; flatter rows find θ by a radix
//! search with fixed-point sums (see the kernel's header).
//!
//! When the batch is too small to fill the GPU ([`SparsemaxPath`], the threshold kernel's rule:
//! the largest C in {8, 4, 2} with batch × C ≤ the SM count and vocab ≥ C × 4096), a row is
//! split over C blocks, each over whole draw tiles of it: a thread-block cluster per row on
//! sm_90 (`samplex_sparsemax_project_cluster_<T>`, arguments as above, then stage), else a
//! cooperative grid (`samplex_sparsemax_project_grid_<T>`: then stage, blocks, barriers,
//! exchange). Each block keeps its slice in shared memory when it fits (stage = 1); the blocks
//! merge the maximum, the candidate count, the candidates themselves (every block sorts all of
//! them), the radix histograms and the draw, in rank order: the same bits as one block.

use cudarc::driver::CudaViewMut;

use super::launch::{
    self, ArgSink, Args, KernelArgs, Pointers, SeedArgs, SplitEntries, SplitKernels, DRAW_TILE,
};
use super::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use crate::decoder::check_temperature;
use crate::dtype::{DType, Logit};
use crate::error::{Error, Result};

/// Threads per block of `samplex_sparsemax_project` (`THREADS` in kernels/sparsemax.cu).
const THREADS: u32 = 1024;

/// Bytes of a split block's `SparseHead` (kernels/sparsemax.cu): the head of a cluster block's
/// dynamic shared memory, and a cooperative grid's exchange entry.
const SPARSE_HEAD_BYTES: usize = 38_944;

/// How sparsemax runs a call of a given shape: `samplex_sparsemax_project` (Block), `_cluster`
/// or `_grid`.
pub use super::launch::SplitPath as SparsemaxPath;

/// Tokens per block of a `blocks`-block split row (`SplitRow::place` in kernels/sparsemax.cu):
/// ceil(vocab / blocks) rounded up to whole draw tiles.
fn slice_len(vocab: usize, blocks: u32) -> usize {
    vocab.div_ceil(blocks as usize).div_ceil(DRAW_TILE) * DRAW_TILE
}

/// The kernels' arguments in C-signature order (the split entries add theirs after).
struct ProjectArgs {
    logits: u64,
    stride: u64,
    vocab: u32,
    temperature: f32,
    temps: u64,
    rng: SeedArgs,
    probs: u64,
    support: u64,
    tokens: u64,
    status: u64,
}

impl KernelArgs for ProjectArgs {
    fn push<'a, S: ArgSink<'a>>(&'a self, b: &mut S) {
        b.push(&self.logits);
        b.push(&self.stride);
        b.push(&self.vocab);
        b.push(&self.temperature);
        b.push(&self.temps);
        self.rng.push(b);
        b.push(&self.probs);
        b.push(&self.support);
        b.push(&self.tokens);
        b.push(&self.status);
    }
}

impl Sampler {
    /// q = sparsemax(z/τ) per row (dense `batch × vocab`), and the support size k* per row
    /// when asked. τ = 0 rows are one-hot at the argmax.
    ///
    /// τ is `temperature`, or `rows.temperature[r]` when given (a per-row τ that is negative,
    /// NaN or +∞ is clamped to 0, 1 and f32::MAX and flagged). NaN logits count as −∞, +∞ as
    /// f32::MAX (flagged in `status`). A row with no finite logit gets q = 0, k* = 0 and
    /// [`crate::status::NO_FINITE_LOGIT`].
    ///
    /// # Errors
    /// [`Error::BadParam`] for τ < 0, NaN or ∞; [`Error::BadLength`] when `probs` is not
    /// `batch × vocab` or `support_size`, `status`, `rows.temperature` not `batch`;
    /// [`Error::Unsupported`] for per-row top-k/top-p/min-p; [`Error::WrongDevice`];
    /// [`Error::Driver`] when the launch fails.
    pub fn sparsemax<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        rows: &RowParams<'_>,
        probs: &mut CudaViewMut<'_, f32>,
        support_size: Option<&mut CudaViewMut<'_, u32>>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        let (batch, vocab) = (logits.batch, logits.vocab);
        self.check_buffer("probs", &*probs, batch * vocab)?;
        self.check_opt_buffer("support_size", support_size.as_deref(), batch)?;
        self.launch_sparsemax(
            logits,
            temperature,
            rows,
            None,
            Some(probs),
            support_size,
            None,
            status,
        )
    }

    /// One token per row drawn from sparsemax(z/τ) (the tiled draw with linear weights q, the
    /// same method and random numbers as [`crate::cpu::sample`]). τ = 0 rows take the argmax;
    /// a row with no finite logit gets `u32::MAX` and [`crate::status::NO_FINITE_LOGIT`].
    ///
    /// # Errors
    /// As [`Sampler::sparsemax`], plus [`Error::BadLength`] for `tokens` or per-row seeds of
    /// the wrong length.
    pub fn sample_sparsemax<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        rows: &RowParams<'_>,
        seeds: &DeviceSeeds<'_>,
        tokens: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        self.check_buffer("tokens", &*tokens, logits.batch)?;
        seeds.check(logits.batch, self)?;
        self.launch_sparsemax(
            logits,
            temperature,
            rows,
            Some(seeds),
            None,
            None,
            Some(tokens),
            status,
        )
    }

    /// Which kernel sparsemax runs for `batch` rows of `vocab` logits of type `T` with
    /// 16-byte-aligned rows (for tests and benchmarks).
    ///
    /// # Errors
    /// [`Error::Driver`] when the driver fails to load a kernel or answer a query.
    #[doc(hidden)]
    pub fn sparsemax_path<T: Logit>(
        &mut self,
        batch: usize,
        vocab: usize,
    ) -> Result<SparsemaxPath> {
        self.project_path(T::DTYPE, batch, vocab, (16 / T::DTYPE.size()) as u32)
    }

    /// Which split paths sparsemax may take ([`launch::RowSplit::Any`] by default), so that
    /// tests can compare them with each other and with the one-block path on one device.
    #[doc(hidden)]
    pub fn set_sparsemax_split(&mut self, split: launch::RowSplit) {
        self.sparsemax_split = split;
    }

    fn project_path(
        &mut self,
        dtype: DType,
        batch: usize,
        vocab: usize,
        vec: u32,
    ) -> Result<SparsemaxPath> {
        let slice_bytes = |blocks| slice_len(vocab, blocks) * 4;
        let kernels = SplitKernels {
            cluster: PROJECT.cluster(dtype, vec),
            grid: PROJECT.grid(dtype, vec),
            threads: THREADS,
            head: SPARSE_HEAD_BYTES,
            slice_bytes: &slice_bytes,
        };
        self.split_path(self.sparsemax_split, &kernels, batch, vocab)
    }

    /// The common tail of both wrappers: the remaining checks, the config, the launch.
    #[allow(clippy::too_many_arguments)]
    fn launch_sparsemax<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        rows: &RowParams<'_>,
        seeds: Option<&DeviceSeeds<'_>>,
        probs: Option<&mut CudaViewMut<'_, f32>>,
        support: Option<&mut CudaViewMut<'_, u32>>,
        tokens: Option<&mut CudaViewMut<'_, u32>>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // 1. Validate (SPEC "Bad input").
        let batch = logits.batch;
        check_temperature(temperature)?;
        rows.refuse_filters("sparsemax", "its support comes from θ (SPEC)")?;
        self.check_device("logits", &logits.data)?;
        rows.check(batch, self)?;
        self.check_opt_buffer("status", status.as_deref(), batch)?;
        if batch > i32::MAX as usize {
            return Err(Error::BadParam {
                name: "batch",
                value: batch as f64,
                range: "< 2^31",
            });
        }

        // 2. Config: one block per row, or a split row (`project_path`); the vector width from
        // the rows' alignment.
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let logits_addr = ptrs.read(&logits.data);
        let vec = launch::vector_width::<T>(logits_addr, logits.stride);
        let path = self.project_path(T::DTYPE, batch, logits.vocab, vec)?;
        let func = self.function(PROJECT.on(&path, T::DTYPE, vec))?;

        // 3. Arguments in C-signature order.
        let args = ProjectArgs {
            logits: logits_addr,
            stride: logits.stride as u64,
            vocab: logits.vocab as u32,
            temperature,
            temps: ptrs.read_opt(rows.temperature.as_ref()),
            rng: SeedArgs::new(&mut ptrs, seeds),
            probs: ptrs.write_opt(probs),
            support: ptrs.write_opt(support),
            tokens: ptrs.write_opt(tokens),
            status: ptrs.write_opt(status),
        };

        // 4. Launch.
        if path == SparsemaxPath::Block {
            let cfg = launch::row_grid(batch, 1, THREADS)?;
            let mut b = Args::new();
            args.push(&mut b);
            // SAFETY: the arguments match samplex_sparsemax_project's C signature in order and
            // type (u64 addresses, u32 vocab, f32 τ). Checked above: the logits view holds
            // (batch − 1)·stride + vocab elements (DeviceLogits), probs is batch × vocab,
            // support, tokens, status and every per-row buffer hold batch entries, all on this
            // device; the grid is one block per row (< 2^31), and the kernel reads no further
            // than those.
            unsafe { b.launch(&func, &stream, cfg) }?;
        } else {
            // SAFETY: `args` are the leading C arguments of samplex_sparsemax_project_cluster /
            // _grid (samplex_sparsemax_project's, then stage [, blocks, barriers, exchange]),
            // with the buffers as for the one-block launch (above); `path` is project_path's for
            // this function, batch and vocab (the staged slice is slice_len(vocab, blocks) f32).
            unsafe { self.queue_split(&func, path, &args, batch, THREADS) }?;
        }
        drop(ptrs);
        Ok(())
    }
}

/// The projection's kernels: `samplex_sparsemax_project`, `_cluster`, `_grid`.
const PROJECT: SplitEntries = SplitEntries {
    family: "sparsemax",
    block: "project",
    cluster: "project_cluster",
    grid: "project_grid",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_slices_are_whole_draw_tiles() {
        assert_eq!(slice_len(128_256, 8), 16_384);
        assert_eq!(slice_len(128_256, 2), 65_536);
        // 40000 tokens = 20 tiles over 8 blocks: 3 tiles each, the last block empty.
        assert_eq!(slice_len(40_000, 8), 6144);
        assert!(7 * slice_len(40_000, 8) >= 40_000);
        assert_eq!(slice_len(262_147, 4), 67_584);
    }
}
