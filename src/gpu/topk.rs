//! Wrappers for kernels/topk.cu: radix top-k selection.
//!
//! | kernel                                  | C arguments                                                       |
//! |-----------------------------------------|-------------------------------------------------------------------|
//! | `samplex_topk_select_<T>[_any]`         | logits, stride, vocab, k, k\[\], values, indices, status, scratch |
//! | `samplex_topk_select_cluster_<T>[_any]` | the same                                                          |
//! | `samplex_topk_select_grid_<T>[_any]`    | the same, but blocks, barriers, exchange for scratch              |
//!
//! One block of 1024 threads per row does every pass (radix histograms, collect, sort), so a
//! row needs no host round trip. For min(k, vocab) ≤ 4096 and small batches ([`SelectPath`],
//! the rule of `launch::cluster_candidates`) a row is split over 2, 4 or 8 blocks instead: a
//! thread-block cluster on sm_90 (the `_cluster` twin: histograms summed over distributed
//! shared memory), else a cooperative grid (the `_grid` twin: the same through global memory);
//! the leader sorts, and the result is the same. Rows with min(k, vocab) > 4096 take the
//! slower path: their pairs are sorted through `batch × min(k, vocab)` u64 of scratch.
//! The top-k *filter* threshold is computed by the same radix passes inside the filter
//! kernels of kernels/topp.cu (see `src/gpu/topp.rs`).

use cudarc::driver::{CudaViewMut, DevicePtr};

use super::launch::{
    self, ArgSink, Args, LaunchEx, Pointers, RawArgs, RowSplit, SplitKernels, SplitPath,
    CLUSTER_HEAD_BYTES,
};
use super::{DeviceLogits, RowParams, Sampler};
use crate::dtype::{DType, Logit};
use crate::error::{Error, Result};

/// Threads per block of the one-block-per-row radix kernels (`SAMPLEX_RADIX_THREADS`).
pub(crate) const RADIX_THREADS: u32 = 1024;

/// The largest k a row sorts in shared memory (`SORT_MAX` in kernels/topk.cu).
const SORT_MAX: usize = 4096;

/// The vector width the logits allow (`launch::vector_width` of their address and stride).
pub(crate) fn logits_vector_width<T: Logit>(
    sampler: &Sampler,
    logits: &DeviceLogits<'_, T>,
) -> u32 {
    let (addr, _guard) = logits.data.device_ptr(&sampler.stream);
    launch::vector_width::<T>(addr, logits.stride)
}

/// Arguments of `samplex_topk_select` and its `_cluster` twin.
const SELECT_ARGS: usize = 9;

/// Arguments of `samplex_topk_select_grid`.
const SELECT_GRID_ARGS: usize = 11;

/// The selection kernels' first arguments in C-signature order (then: scratch, or the grid's
/// blocks, barriers, exchange).
struct SelectArgs {
    logits: u64,
    stride: u64,
    vocab: u32,
    k: u32,
    k_rows: u64,
    values: u64,
    indices: u64,
    status: u64,
}

impl SelectArgs {
    fn push<'a, S: ArgSink<'a>>(&'a self, b: &mut S) {
        b.push(&self.logits);
        b.push(&self.stride);
        b.push(&self.vocab);
        b.push(&self.k);
        b.push(&self.k_rows);
        b.push(&self.values);
        b.push(&self.indices);
        b.push(&self.status);
    }
}

/// How [`Sampler::top_k_select`] runs a call of a given shape.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectPath {
    /// `samplex_topk_select`: one block per row.
    Block,
    /// `samplex_topk_select_cluster` (sm_90): a cluster of `blocks` blocks per row.
    Cluster { blocks: u32 },
    /// `samplex_topk_select_grid`: a cooperative grid of `blocks` blocks per row.
    Grid { blocks: u32 },
}

impl Sampler {
    /// Exactly k (value, index) pairs per row, value descending, ties by lower index.
    /// `values`/`indices` are `batch × k`. With `rows.top_k`, row r selects k_r ≤ k pairs
    /// (k_r clamped to [1, min(k, vocab)] and flagged) and pads the rest with −∞ / u32::MAX.
    /// k > vocab is clamped to vocab the same way. Values are the sanitised logits widened to f32.
    ///
    /// Edge cases: NaN logits count as −∞ (they are selected, lowest index first, only when
    /// fewer than k_r values are larger), +∞ as f32::MAX, both flagged in `status`; −0 ranks
    /// below +0 (the total order the CPU reference sorts by). A batch-wide k above the
    /// vocabulary selects the whole row and pads without a flag; a per-row k_r out of
    /// [1, min(k, vocab)] is clamped and flagged [`crate::status::PARAM_CLAMPED`].
    ///
    /// Cost: one block per row; k ≤ 4096 sorts in shared memory. Above that the sort merges
    /// runs in global memory (slower, `batch × min(k, vocab) × 8` bytes of workspace). For
    /// min(k, vocab) ≤ 4096 and a batch too small to fill the GPU, 2, 4 or 8 blocks per row
    /// (the rule of the threshold kernel, `src/gpu/topp.rs`: a cluster on sm_90, else a
    /// cooperative grid), with the same result.
    ///
    /// # Errors
    /// [`Error::BadParam`] for k = 0; [`Error::BadLength`] when `values`/`indices` are not
    /// `batch × k` or `status`/`rows.top_k` not `batch`; [`Error::WrongDevice`];
    /// [`Error::Driver`] when a launch fails.
    pub fn top_k_select<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        k: u32,
        rows: &RowParams<'_>,
        values: &mut CudaViewMut<'_, f32>,
        indices: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // Validate.
        let (batch, vocab) = (logits.batch, logits.vocab);
        if k == 0 {
            return Err(Error::BadParam {
                name: "k",
                value: 0.0,
                range: ">= 1",
            });
        }
        let width = batch.checked_mul(k as usize).ok_or(Error::BadLength {
            name: "values",
            got: values.len(),
            expected: usize::MAX,
        })?;
        self.check_device("logits", &logits.data)?;
        self.check_buffer("values", &*values, width)?;
        self.check_buffer("indices", &*indices, width)?;
        self.check_opt_buffer("status", status.as_deref(), batch)?;
        rows.check(batch, self)?;

        // Config: vector width, one block per row, scratch for the slower sort.
        let vec = logits_vector_width(self, logits);
        let cfg = launch::row_grid(batch, 1, RADIX_THREADS)?;
        let kmax = (k as usize).min(vocab);
        let scratch = if kmax > SORT_MAX {
            let bytes = batch
                .checked_mul(kmax)
                .and_then(|n| n.checked_mul(8))
                .ok_or(Error::BadLength {
                    name: "values",
                    got: width,
                    expected: usize::MAX,
                })?;
            self.scratch(bytes, 0)?.base
        } else {
            0
        };
        let path = self.select_path(T::DTYPE, batch, vocab, kmax, vec)?;
        let op = match path {
            SelectPath::Block => "select",
            SelectPath::Cluster { .. } => "select_cluster",
            SelectPath::Grid { .. } => "select_grid",
        };
        let func = self.function(launch::entry("topk", op, T::DTYPE, vec))?;

        // Arguments in C-signature order.
        let mut ptrs = Pointers::new(&self.stream);
        let args = SelectArgs {
            logits: ptrs.read(&logits.data),
            stride: logits.stride as u64,
            vocab: vocab as u32,
            k,
            k_rows: ptrs.read_opt(rows.top_k.as_ref()),
            values: ptrs.write(values),
            indices: ptrs.write(indices),
            status: ptrs.write_opt(status),
        };
        if let SelectPath::Cluster { blocks } = path {
            let mut params = RawArgs::<SELECT_ARGS>::new();
            args.push(&mut params);
            params.push(&scratch);
            let mut launch = LaunchEx::cluster(
                blocks,
                batch as u32,
                RADIX_THREADS,
                CLUSTER_HEAD_BYTES as u32,
                self.stream.cu_stream(),
            );
            // SAFETY: `params` points at the 9 arguments of samplex_topk_select_cluster's C
            // signature (samplex_topk_select's) in order and type, alive until the launch is
            // queued. `launch` is a cluster launch on the sampler's stream, whose context is
            // current: one cluster of `blocks` ≤ 8 blocks of 1024 threads per row, batch ×
            // blocks ≤ the SM count; select_path checked that the device has cluster launch,
            // the kernel comes from compute_90 or later and such a cluster can be scheduled
            // with the ClusterHead as dynamic shared memory (within the function's maximum),
            // and that min(k, vocab) ≤ 4096 (the kernel's shared-memory sort; no scratch).
            // The rest as for the one-block launch below.
            unsafe { launch.queue(self.context(), &func, &mut params) }?;
            drop(ptrs);
            return Ok(());
        }
        if let SelectPath::Grid { blocks } = path {
            let split = self.grid_split(blocks);
            let mut params = RawArgs::<SELECT_GRID_ARGS>::new();
            args.push(&mut params);
            split.push(&mut params);
            let mut launch = split.launch(batch, RADIX_THREADS, 0, self.stream.cu_stream());
            // SAFETY: `params` points at the 11 arguments of samplex_topk_select_grid's C
            // signature in order and type, alive until the launch is queued. `launch` is a
            // cooperative launch on the sampler's stream, whose context is current: `blocks`
            // blocks of 1024 threads per row, batch × blocks ≤ the SM count, so the exchange
            // holds a barrier per row and an entry per block (grid_split; only kernels on
            // this stream use it, one after another); select_path checked that the device has
            // cooperative launch and room for every block at once, and that min(k, vocab) ≤
            // 4096 (the kernel's shared-memory sort). The rest as for the one-block launch below.
            unsafe { launch.queue(self.context(), &func, &mut params) }?;
            drop(ptrs);
            return Ok(());
        }
        let mut builder = Args::new();
        args.push(&mut builder);
        builder.arg(&scratch);
        // SAFETY: the argument list matches samplex_topk_select's C signature (pointers as u64
        // device addresses). Checked above: the logits cover `batch` rows of `stride` ≥ vocab
        // elements (DeviceLogits), values/indices hold exactly batch × k, status and the per-row
        // k hold batch entries, all on this device; vector width 4/8 only for a 16-byte-aligned
        // base and stride; the scratch holds batch × min(k, vocab) u64 whenever the kernel can
        // take the slower path (min(k, vocab) > 4096). The guards in `ptrs` live until the
        // launch is queued.
        unsafe { builder.launch(&func, &self.stream, cfg) }?;
        drop(ptrs);
        Ok(())
    }

    /// Which selection kernel [`Sampler::top_k_select`] runs for `batch` rows of `vocab`
    /// logits of type `T` (16-byte-aligned rows) and k (for tests and benchmarks).
    ///
    /// # Errors
    /// [`Error::Driver`] when the driver fails to load a kernel or answer a query.
    #[doc(hidden)]
    pub fn top_k_select_path<T: Logit>(
        &mut self,
        batch: usize,
        vocab: usize,
        k: u32,
    ) -> Result<SelectPath> {
        let vec = (16 / T::DTYPE.size()) as u32;
        self.select_path(T::DTYPE, batch, vocab, (k as usize).min(vocab), vec)
    }

    /// Which split paths the selection may take ([`RowSplit::Any`] by default), so that tests
    /// can compare them with each other and with the one-block path on one device.
    #[doc(hidden)]
    pub fn set_top_k_split(&mut self, split: RowSplit) {
        self.select_split = split;
    }

    /// The selection's path: `Sampler::split_path`'s rule, for min(k, vocab) ≤ SORT_MAX (the
    /// blocks hold no staged slice, so only the cluster head is dynamic shared memory).
    fn select_path(
        &mut self,
        dtype: DType,
        batch: usize,
        vocab: usize,
        kmax: usize,
        vec: u32,
    ) -> Result<SelectPath> {
        if kmax > SORT_MAX {
            return Ok(SelectPath::Block);
        }
        let kernels = SplitKernels {
            cluster: launch::entry("topk", "select_cluster", dtype, vec),
            grid: launch::entry("topk", "select_grid", dtype, vec),
            threads: RADIX_THREADS,
            head: CLUSTER_HEAD_BYTES,
            slice_bytes: &|_| 0,
        };
        Ok(
            match self.split_path(self.select_split, &kernels, batch, vocab)? {
                SplitPath::Block => SelectPath::Block,
                SplitPath::Cluster { blocks, .. } => SelectPath::Cluster { blocks },
                SplitPath::Grid { blocks, .. } => SelectPath::Grid { blocks },
            },
        )
    }
}
