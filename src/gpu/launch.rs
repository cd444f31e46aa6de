//! Launch plumbing every wrapper shares: device pointers, vector width, row splitting, kernel
//! names, and `cuLaunchKernelEx` launches: thread-block clusters (sm_90) and cooperative grids
//! (every GPU), the two ways a radix kernel splits a row over several blocks. Each wrapper in `src/gpu/<family>.rs` has
//! one shape: validate → choose the config here → push args in C-signature order → launch on
//! the stream.

use std::collections::HashMap;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::sys::{self, CUdevice_attribute, CUfunction_attribute_enum};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr,
    DevicePtrMut, DeviceRepr, LaunchConfig, SyncOnDrop,
};

use super::{DeviceSeeds, Sampler};
use crate::dtype::{DType, Logit};
use crate::error::{Error, Result};

/// Blocks per cluster of the cluster kernels: the portable cluster sizes (above 8 needs
/// CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED and is not used).
pub(crate) const CLUSTER_SIZES: [u32; 3] = [2, 4, 8];

/// Bytes at the head of the radix cluster kernels' dynamic shared memory (`ClusterHead` in
/// kernels/topk.cu: two 16-byte merge slots, two 2048-bin u32 and two 2048-bin u64
/// histograms), before the threshold kernel's staged slice. A cooperative grid's blocks
/// exchange the same entry through global memory ([`Sampler::grid_split`]).
pub(crate) const CLUSTER_HEAD_BYTES: usize = 2 * 16 + 2 * 2048 * 4 + 2 * 2048 * 8;

/// Bytes of one row's barrier in a cooperative grid (`RowBarrier` in kernels/common.cuh §9).
const ROW_BARRIER_BYTES: usize = 8;

/// How the radix kernels may split a row over several blocks when the batch is too small to
/// fill the GPU (tests and benchmarks set it, to compare the paths on one device).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowSplit {
    /// A thread-block cluster where the device and kernel have them (sm_90), else a
    /// cooperative grid (the default).
    Any,
    /// A cooperative grid only.
    Grid,
    /// Never: one block per row.
    Off,
}

impl RowSplit {
    pub(crate) fn clusters(self) -> bool {
        self == RowSplit::Any
    }
    pub(crate) fn grid(self) -> bool {
        self != RowSplit::Off
    }
}

/// How a kernel that may split a row over several blocks, keeping its slice in shared memory
/// (the top-k/top-p/min-p threshold kernel, sparsemax), runs a call of a given shape.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitPath {
    /// One block per row.
    Block,
    /// A cluster of `blocks` blocks per row, each with `shared` bytes of dynamic shared memory
    /// (the kernel's head, then the slice when `staged`: each block keeps its slice there).
    Cluster {
        blocks: u32,
        shared: u32,
        staged: bool,
    },
    /// A cooperative grid of `blocks` blocks per row, the same shared memory rule without the
    /// head (the exchange is in global memory).
    Grid {
        blocks: u32,
        shared: u32,
        staged: bool,
    },
}

/// The kernels [`Sampler::split_path`] chooses between, and their shared memory.
pub(crate) struct SplitKernels<'a> {
    /// The cluster entry.
    pub(crate) cluster: Kernel,
    /// The cooperative-grid entry.
    pub(crate) grid: Kernel,
    /// Threads per block.
    pub(crate) threads: u32,
    /// Bytes at the head of a cluster block's dynamic shared memory.
    pub(crate) head: usize,
    /// A block's staged slice in bytes, for `blocks` blocks per row.
    pub(crate) slice_bytes: &'a dyn Fn(u32) -> usize,
}

/// The most arguments a kernel takes (BoK's pass kernel has 36).
pub(crate) const ARGS_MAX: usize = 40;

/// The arguments of a plain launch ([`RawArgs::launch`]).
pub(crate) type Args<'a> = RawArgs<'a, ARGS_MAX>;

/// The fewest logits per block of a radix cluster (one 1024-thread chunk of f32 vectors).
const CLUSTER_MIN_SLICE: usize = 4096;

/// Logits per block of a `blocks`-block radix cluster (`SliceRow::place` in kernels/topk.cu):
/// ceil(vocab / blocks), rounded up to 16 bytes' worth of `dtype` so that every slice starts
/// at the row's alignment (both twins: the `_any` one loads 16 bytes at a time too).
pub(crate) fn slice_len(vocab: usize, blocks: u32, dtype: DType) -> usize {
    let lanes = 16 / dtype.size();
    vocab.div_ceil(blocks as usize).div_ceil(lanes) * lanes
}

/// The blocks per row worth trying for a radix kernel split over a cluster or a cooperative
/// grid (one 1024-thread block per SM), largest first: batch × C ≤ the SM count (every block
/// has an SM to itself) and vocab ≥ C × CLUSTER_MIN_SLICE (below that the barriers cost more
/// than the split saves).
pub(crate) fn cluster_candidates(
    batch: usize,
    vocab: usize,
    sm_count: u32,
) -> impl Iterator<Item = u32> {
    CLUSTER_SIZES.into_iter().rev().filter(move |&c| {
        batch.saturating_mul(c as usize) <= sm_count as usize
            && vocab >= c as usize * CLUSTER_MIN_SLICE
    })
}

/// The first PTX (virtual architecture) version with clusters: a kernel JIT-compiled from the
/// compute_80 PTX has only the trap body (kernels/common.cuh §8).
const CLUSTER_PTX_VERSION: i32 = 90;

/// Threads per block of the row kernels (one draw tile = 256 threads × 8 elements).
pub(crate) const BLOCK_THREADS: u32 = 256;

/// Tokens per draw tile (`SAMPLEX_DRAW_TILE` in kernels/common.cuh).
pub(crate) const DRAW_TILE: usize = 2048;

/// One entry of the kernel module, `samplex_<family>_<op>[_<dtype>][_v1|_any]`: the key under which
/// the sampler keeps its loaded functions, so that a call finds its kernel without formatting a
/// name (the name is built once, when the function is first loaded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Kernel {
    family: &'static str,
    op: &'static str,
    dtype: Option<DType>,
    /// "" for the 16-byte kernel, else its twin for rows that are not 16-byte aligned: `_v1`
    /// (scalar loads) or `_any` (16-byte loads from the boundary below; softmax, top-k, the
    /// filters and sparsemax).
    twin: &'static str,
}

impl Kernel {
    /// `samplex_<family>_<op>_<dtype>`.
    pub(crate) const fn new(family: &'static str, op: &'static str, dtype: DType) -> Self {
        Kernel {
            family,
            op,
            dtype: Some(dtype),
            twin: "",
        }
    }

    /// `samplex_<family>_<op>`, an entry with no dtype.
    pub(crate) const fn untyped(family: &'static str, op: &'static str) -> Self {
        Kernel {
            family,
            op,
            dtype: None,
            twin: "",
        }
    }

    /// The twin for vector width `vec`: `_v1` when it is 1.
    pub(crate) const fn at_width(self, vec: u32) -> Self {
        Kernel {
            twin: if vec == 1 { "_v1" } else { "" },
            ..self
        }
    }

    /// The twin for vector width `vec` of a family whose rows load 16 bytes at a time at any
    /// alignment: `_any` when `vec` is 1.
    pub(crate) const fn any_alignment_at_width(self, vec: u32) -> Self {
        Kernel {
            twin: if vec == 1 { "_any" } else { "" },
            ..self
        }
    }

    /// The entry's name in the module.
    pub(crate) fn name(&self) -> String {
        let mut name = format!("samplex_{}_{}", self.family, self.op);
        if let Some(dtype) = self.dtype {
            name.push('_');
            name.push_str(dtype.name());
        }
        name.push_str(self.twin);
        name
    }
}

/// `samplex_<family>_<op>_<dtype>` for a family whose rows load 16 bytes at a time at any
/// alignment: its `_any` twin at vector width 1 (rows not 16-byte aligned).
pub(crate) const fn entry(
    family: &'static str,
    op: &'static str,
    dtype: DType,
    vec: u32,
) -> Kernel {
    Kernel::new(family, op, dtype).any_alignment_at_width(vec)
}

/// A 1-D grid of `blocks_per_row` blocks of `threads` for each of `batch` rows, no dynamic
/// shared memory; [`Error::BadParam`] for `batch` when there would be 2^31 blocks or more
/// (the x dimension's limit).
pub(crate) fn row_grid(batch: usize, blocks_per_row: u32, threads: u32) -> Result<LaunchConfig> {
    let blocks = batch
        .checked_mul(blocks_per_row as usize)
        .filter(|&b| b <= i32::MAX as usize)
        .ok_or(Error::BadParam {
            name: "batch",
            value: batch as f64,
            range: "such that batch x blocks per row < 2^31",
        })?;
    Ok(LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// The entries of a kernel whose rows may split over blocks, one per [`SplitPath`]:
/// `samplex_<family>_<block>`, `_<cluster>` and `_<grid>` (the threshold kernel of topp.cu,
/// sparsemax's projection). Their twins for rows that are not 16-byte aligned are `_any`,
/// except the cooperative grid's, which is `_v1` (scalar loads): the `_any` head pushed those
/// grid kernels, at 63–64 registers already, into spills.
#[derive(Clone, Copy)]
pub(crate) struct SplitEntries {
    pub(crate) family: &'static str,
    pub(crate) block: &'static str,
    pub(crate) cluster: &'static str,
    pub(crate) grid: &'static str,
}

impl SplitEntries {
    /// The cluster entry at vector width `vec`.
    pub(crate) const fn cluster(self, dtype: DType, vec: u32) -> Kernel {
        entry(self.family, self.cluster, dtype, vec)
    }

    /// The cooperative-grid entry at vector width `vec`.
    pub(crate) const fn grid(self, dtype: DType, vec: u32) -> Kernel {
        Kernel::new(self.family, self.grid, dtype).at_width(vec)
    }

    /// The entry that runs `path` at vector width `vec`.
    pub(crate) const fn on(self, path: &SplitPath, dtype: DType, vec: u32) -> Kernel {
        match path {
            SplitPath::Block => entry(self.family, self.block, dtype, vec),
            SplitPath::Cluster { .. } => self.cluster(dtype, vec),
            SplitPath::Grid { .. } => self.grid(dtype, vec),
        }
    }
}

/// Elements per vector load: 16 bytes' worth when the buffer's base address and the row
/// stride (in bytes) are multiples of 16, else 1. The kernels are instantiated for both.
pub(crate) fn vector_width<T: Logit>(base_addr: u64, stride: usize) -> u32 {
    let size = T::DTYPE.size();
    if base_addr % 16 == 0 && (stride * size) % 16 == 0 {
        (16 / size) as u32
    } else {
        1
    }
}

/// How many blocks share one row: enough that `batch × blocks_per_row` covers every SM about
/// twice, but never more than there are draw tiles in the row (a block works on whole tiles).
pub(crate) fn blocks_per_row(batch: usize, vocab: usize, sm_count: u32) -> u32 {
    let tiles = vocab.div_ceil(DRAW_TILE).max(1);
    let want = (2 * sm_count as usize).div_ceil(batch).max(1);
    want.min(tiles) as u32
}

/// Raw device pointers for kernel arguments. The guards cudarc hands out with each pointer
/// (which record the read/write for multi-stream safety) are kept until the launch is queued,
/// then dropped with this value.
///
/// The guards live in a fixed array (no wrapper has more buffers), so that a call allocates
/// nothing on the host; any beyond it would go to a vector.
pub(crate) struct Pointers<'a> {
    stream: &'a CudaStream,
    guards: [Option<SyncOnDrop<'a>>; GUARDS],
    len: usize,
    more: Vec<SyncOnDrop<'a>>,
}

/// Buffers one launch's [`Pointers`] hold without allocating (BoK's, the most, has 14).
const GUARDS: usize = 24;

impl<'a> Pointers<'a> {
    pub(crate) fn new(stream: &'a CudaStream) -> Self {
        Pointers {
            stream,
            guards: std::array::from_fn(|_| None),
            len: 0,
            more: Vec::new(),
        }
    }

    fn keep(&mut self, guard: SyncOnDrop<'a>) {
        if self.len < GUARDS {
            self.guards[self.len] = Some(guard);
            self.len += 1;
        } else {
            self.more.push(guard);
        }
    }

    /// The address of a read-only view.
    pub(crate) fn read<T>(&mut self, view: &'a CudaView<'_, T>) -> u64 {
        let (ptr, guard) = view.device_ptr(self.stream);
        self.keep(guard);
        ptr
    }

    /// The address of a written view.
    pub(crate) fn write<T>(&mut self, view: &'a mut CudaViewMut<'_, T>) -> u64 {
        let (ptr, guard) = view.device_ptr_mut(self.stream);
        self.keep(guard);
        ptr
    }

    /// The address of an optional read-only view, or 0 (the kernels test for null).
    pub(crate) fn read_opt<T>(&mut self, view: Option<&'a CudaView<'_, T>>) -> u64 {
        view.map_or(0, |v| self.read(v))
    }

    /// The address of an optional written view, or 0.
    pub(crate) fn write_opt<T>(&mut self, view: Option<&'a mut CudaViewMut<'_, T>>) -> u64 {
        match view {
            Some(v) => self.write(v),
            None => 0,
        }
    }
}

/// The random streams as kernel arguments, in the kernels' order (seed, offset, seeds[],
/// offsets[]): the shared (seed, offset) and null row buffers, or zeros and the per-row
/// buffers' addresses.
pub(crate) struct SeedArgs {
    pub(crate) seed: u64,
    pub(crate) offset: u64,
    pub(crate) seeds: u64,
    pub(crate) offsets: u64,
}

impl SeedArgs {
    /// The arguments of `seeds`; all zero for an op that draws nothing (`None`).
    pub(crate) fn new<'a>(ptrs: &mut Pointers<'a>, seeds: Option<&'a DeviceSeeds<'_>>) -> Self {
        let (seed, offset, seeds, offsets) = match seeds {
            None => (0, 0, 0, 0),
            Some(DeviceSeeds::Shared(rng)) => (rng.seed, rng.offset, 0, 0),
            Some(DeviceSeeds::Each { seeds, offsets }) => {
                (0, 0, ptrs.read(seeds), ptrs.read(offsets))
            }
        };
        SeedArgs {
            seed,
            offset,
            seeds,
            offsets,
        }
    }
}

impl KernelArgs for SeedArgs {
    fn push<'a, S: ArgSink<'a>>(&'a self, b: &mut S) {
        b.push(&self.seed);
        b.push(&self.offset);
        b.push(&self.seeds);
        b.push(&self.offsets);
    }
}

/// Where kernel arguments go: the pointer array of a launch ([`RawArgs`]).
pub(crate) trait ArgSink<'a> {
    fn push<A: DeviceRepr>(&mut self, arg: &'a A);
}

/// A kernel's leading arguments, pushed in C-signature order (a split entry adds its own after).
pub(crate) trait KernelArgs {
    fn push<'a, S: ArgSink<'a>>(&'a self, b: &mut S);
}

/// The argument pointers of a launch (at most `N`), in C order; they borrow the values for
/// `'a`. A fixed array, where cudarc's launch builder grows a vector on every call.
pub(crate) struct RawArgs<'a, const N: usize = ARGS_MAX> {
    ptrs: [*mut c_void; N],
    len: usize,
    _args: PhantomData<&'a ()>,
}

impl<const N: usize> RawArgs<'_, N> {
    pub(crate) fn new() -> Self {
        RawArgs {
            ptrs: [std::ptr::null_mut(); N],
            len: 0,
            _args: PhantomData,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The array `cuLaunchKernel[Ex]` takes as `kernelParams`.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut *mut c_void {
        self.ptrs.as_mut_ptr()
    }
}

impl<'a, const N: usize> RawArgs<'a, N> {
    /// Appends `arg` (chained, as cudarc's builder does).
    pub(crate) fn arg<A: DeviceRepr>(&mut self, arg: &'a A) -> &mut Self {
        self.push(arg);
        self
    }

    /// Queues `func` on `stream` in the shape `cfg` with these arguments, with the stream's
    /// context made current first.
    ///
    /// # Safety
    /// As cudarc's `LaunchArgs::launch`: these are `func`'s C arguments in order and type, the
    /// shape is one `func` may run with, and every buffer behind the arguments stays alive until
    /// the kernel has run.
    pub(crate) unsafe fn launch(
        &mut self,
        func: &CudaFunction,
        stream: &CudaStream,
        cfg: LaunchConfig,
    ) -> Result<()> {
        stream.context().bind_to_thread()?;
        let (grid, block) = (cfg.grid_dim, cfg.block_dim);
        // SAFETY: the caller's contract; `self` holds pointers to the arguments, alive for `'a`.
        unsafe {
            sys::cuLaunchKernel(
                func.cu_function(),
                grid.0,
                grid.1,
                grid.2,
                block.0,
                block.1,
                block.2,
                cfg.shared_mem_bytes,
                stream.cu_stream(),
                self.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
        .result()?;
        Ok(())
    }
}

impl<'a, const N: usize> ArgSink<'a> for RawArgs<'a, N> {
    fn push<A: DeviceRepr>(&mut self, arg: &'a A) {
        self.ptrs[self.len] = arg as *const A as *mut c_void;
        self.len += 1;
    }
}

/// The arguments a cooperative-grid kernel ends with (blocks per row, barriers, exchange), and
/// its launch.
pub(crate) struct GridSplit {
    blocks: u32,
    barriers: u64,
    exchange: u64,
}

impl GridSplit {
    pub(crate) fn push<'a, S: ArgSink<'a>>(&'a self, b: &mut S) {
        b.push(&self.blocks);
        b.push(&self.barriers);
        b.push(&self.exchange);
    }

    /// The cooperative launch of `rows` rows of these blocks.
    pub(crate) fn launch(
        &self,
        rows: usize,
        threads: u32,
        shared: u32,
        stream: sys::CUstream,
    ) -> LaunchEx {
        LaunchEx::cooperative(self.blocks * rows as u32, threads, shared, stream)
    }
}

/// A `cuLaunchKernelEx` launch's configuration (a cluster or a cooperative grid): `cfg()`
/// points at `attr`, so build it where it is used.
pub(crate) struct LaunchEx {
    attr: sys::CUlaunchAttribute,
    grid: u32,
    threads: u32,
    shared: u32,
    stream: sys::CUstream,
}

impl LaunchEx {
    /// `rows` clusters of `blocks` blocks of `threads` threads, `shared` bytes of dynamic shared
    /// memory per block.
    pub(crate) fn cluster(
        blocks: u32,
        rows: u32,
        threads: u32,
        shared: u32,
        stream: sys::CUstream,
    ) -> Self {
        let mut value = sys::CUlaunchAttributeValue { pad: [0; 64] };
        value.clusterDim = sys::CUlaunchAttributeValue_union__bindgen_ty_1 {
            x: blocks,
            y: 1,
            z: 1,
        };
        LaunchEx {
            attr: sys::CUlaunchAttribute {
                id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION,
                pad: [0; 4],
                value,
            },
            grid: rows * blocks,
            threads,
            shared,
            stream,
        }
    }

    /// A cooperative grid of `blocks` blocks (the driver runs them all at once, so that they
    /// may wait for each other) of `threads` threads, `shared` bytes of dynamic shared memory
    /// per block.
    pub(crate) fn cooperative(
        blocks: u32,
        threads: u32,
        shared: u32,
        stream: sys::CUstream,
    ) -> Self {
        let mut value = sys::CUlaunchAttributeValue { pad: [0; 64] };
        value.cooperative = 1;
        LaunchEx {
            attr: sys::CUlaunchAttribute {
                id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_COOPERATIVE,
                pad: [0; 4],
                value,
            },
            grid: blocks,
            threads,
            shared,
            stream,
        }
    }

    /// Queues `func` with `args` on the launch's stream, with `ctx` made current first.
    ///
    /// # Safety
    /// `args` holds `func`'s C arguments in order and type; the shape, the dynamic shared
    /// memory (at most `func`'s maximum) and the stream are ones `func` may run with
    /// ([`Sampler::cluster_fits`] or [`Sampler::grid_fits`] said so), and every buffer behind
    /// the arguments stays alive until the kernel has run.
    pub(crate) unsafe fn queue<const N: usize>(
        &mut self,
        ctx: &CudaContext,
        func: &CudaFunction,
        args: &mut RawArgs<'_, N>,
    ) -> Result<()> {
        ctx.bind_to_thread()?;
        let cfg = self.cfg();
        // SAFETY: `cfg` and its attribute (in `self`) are alive for the call; the arguments and
        // the launch's validity are the caller's contract.
        unsafe {
            sys::cuLaunchKernelEx(
                &cfg,
                func.cu_function(),
                args.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
        .result()?;
        Ok(())
    }

    pub(crate) fn cfg(&mut self) -> sys::CUlaunchConfig {
        sys::CUlaunchConfig {
            gridDimX: self.grid,
            gridDimY: 1,
            gridDimZ: 1,
            blockDimX: self.threads,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: self.shared,
            hStream: self.stream,
            attrs: &mut self.attr,
            numAttrs: 1,
        }
    }
}

/// Raises `func`'s dynamic shared memory maximum (launches and occupancy queries check against
/// it) to at least `bytes`, and never lowers it: the maximum only permits, the launch's own size
/// decides the occupancy. The value set is kept per function for the whole process, behind one
/// lock, because samplers on one context share the module's functions: a sampler that lowered
/// it could fail another's launch. A call at a size already allowed makes no driver call.
pub(crate) fn allow_dynamic_shared(func: &CudaFunction, bytes: usize) -> Result<()> {
    static ALLOWED: OnceLock<Mutex<HashMap<usize, usize>>> = OnceLock::new();
    let mut allowed = ALLOWED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let key = func.cu_function() as usize;
    if allowed.get(&key).is_none_or(|&have| have < bytes) {
        func.set_attribute(
            CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes as i32,
        )?;
        allowed.insert(key, bytes);
    }
    Ok(())
}

impl Sampler {
    /// Whether `dynamic` bytes of dynamic shared memory plus `func`'s static ones fit a block.
    pub(crate) fn fits_shared_memory(&self, func: &CudaFunction, dynamic: usize) -> Result<bool> {
        let optin = self
            .context()
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?
            as usize;
        let fixed = func.shared_size_bytes()? as usize;
        Ok(dynamic + fixed <= optin)
    }

    /// Whether clusters of `blocks` blocks of `threads` threads with `dynamic` bytes of dynamic
    /// shared memory each can run `func` here: a device with cluster launch (sm_90 and up), a
    /// kernel built for it (PTX version ≥ 90: the compute_80 PTX has the trap body), the shared
    /// memory, and at least one such cluster the device can schedule. Raises `func`'s dynamic
    /// shared memory maximum to at least `dynamic` (the occupancy query and the launch check
    /// against it; [`allow_dynamic_shared`]). The answer is kept per shape.
    pub(crate) fn cluster_fits(
        &mut self,
        func: &CudaFunction,
        blocks: u32,
        threads: u32,
        dynamic: usize,
    ) -> Result<bool> {
        self.kept_fit(func, (blocks, threads, dynamic, false), |s| {
            s.query_cluster_fit(func, blocks, threads, dynamic)
        })
    }

    /// `query`'s answer for `func` in `shape` (blocks, threads, dynamic shared memory,
    /// cooperative), asked once and kept; when it fits, `func`'s dynamic shared memory maximum
    /// is raised to the shape's if below it (the launch checks against it).
    fn kept_fit(
        &mut self,
        func: &CudaFunction,
        shape: (u32, u32, usize, bool),
        query: impl FnOnce(&Self) -> Result<bool>,
    ) -> Result<bool> {
        let key = (
            func.cu_function() as usize,
            shape.0,
            shape.1,
            shape.2,
            shape.3,
        );
        let fits = match self.cluster_fit.get(&key) {
            Some(&fits) => fits,
            None => {
                let fits = query(self)?;
                self.cluster_fit.insert(key, fits);
                fits
            }
        };
        if fits {
            allow_dynamic_shared(func, shape.2)?;
        }
        Ok(fits)
    }

    /// The driver queries behind [`Sampler::cluster_fits`].
    fn query_cluster_fit(
        &self,
        func: &CudaFunction,
        blocks: u32,
        threads: u32,
        dynamic: usize,
    ) -> Result<bool> {
        let ctx = self.context();
        if ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH)? == 0
            || func.get_attribute(CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_PTX_VERSION)?
                < CLUSTER_PTX_VERSION
            || !self.fits_shared_memory(func, dynamic)?
        {
            return Ok(false);
        }
        allow_dynamic_shared(func, dynamic)?;
        let mut launch =
            LaunchEx::cluster(blocks, 1, threads, dynamic as u32, std::ptr::null_mut());
        let cfg = launch.cfg();
        let mut clusters = 0i32;
        // SAFETY: `cfg` is a valid launch configuration of `func` (one cluster of `blocks` blocks
        // of `threads` threads, its attribute array alive in `launch`), and the driver only
        // reads it and writes `clusters`.
        unsafe { sys::cuOccupancyMaxActiveClusters(&mut clusters, func.cu_function(), &cfg) }
            .result()?;
        Ok(clusters > 0)
    }

    /// Whether a cooperative grid of `blocks` blocks of `threads` threads with `dynamic` bytes of
    /// dynamic shared memory each can run `func` here: a device with cooperative launch, the
    /// shared memory, and room for every block at once (occupancy × SMs ≥ blocks). Raises `func`'s
    /// dynamic shared memory maximum as [`Sampler::cluster_fits`] does; the answer is kept per
    /// shape.
    pub(crate) fn grid_fits(
        &mut self,
        func: &CudaFunction,
        blocks: u32,
        threads: u32,
        dynamic: usize,
    ) -> Result<bool> {
        self.kept_fit(func, (blocks, threads, dynamic, true), |s| {
            if s.context()
                .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH)?
                == 0
                || !s.fits_shared_memory(func, dynamic)?
            {
                return Ok(false);
            }
            allow_dynamic_shared(func, dynamic)?;
            let per_sm =
                func.occupancy_max_active_blocks_per_multiprocessor(threads, dynamic, None)?;
            Ok(per_sm as u64 * s.sm_count as u64 >= blocks as u64)
        })
    }

    /// The path of a kernel that may split a row (`kernels`) for `batch` rows of `vocab`: none
    /// when `split` is off or no C of `cluster_candidates` applies; else a cluster where the
    /// device has them (and `split` allows), else a cooperative grid; for each C from the
    /// largest, staged when the slice fits the shared memory, else re-reading the logits.
    pub(crate) fn split_path(
        &mut self,
        split: RowSplit,
        kernels: &SplitKernels<'_>,
        batch: usize,
        vocab: usize,
    ) -> Result<SplitPath> {
        if !split.grid()
            || cluster_candidates(batch, vocab, self.sm_count)
                .next()
                .is_none()
        {
            return Ok(SplitPath::Block);
        }
        let threads = kernels.threads;
        if split.clusters() {
            let func = self.function(kernels.cluster)?;
            for blocks in cluster_candidates(batch, vocab, self.sm_count) {
                let staged = kernels.head + (kernels.slice_bytes)(blocks);
                for (shared, staged) in [(staged, true), (kernels.head, false)] {
                    if self.cluster_fits(&func, blocks, threads, shared)? {
                        return Ok(SplitPath::Cluster {
                            blocks,
                            shared: shared as u32,
                            staged,
                        });
                    }
                }
            }
        }
        let func = self.function(kernels.grid)?;
        for blocks in cluster_candidates(batch, vocab, self.sm_count) {
            let total = blocks * batch as u32;
            for (shared, staged) in [((kernels.slice_bytes)(blocks), true), (0, false)] {
                if self.grid_fits(&func, total, threads, shared)? {
                    return Ok(SplitPath::Grid {
                        blocks,
                        shared: shared as u32,
                        staged,
                    });
                }
            }
        }
        Ok(SplitPath::Block)
    }

    /// Queues `func`, the split entry of `path` (a cluster or a cooperative grid, from
    /// [`Sampler::split_path`] for `func`, `rows` rows and `threads` threads), with `args`, then
    /// `stage` (the path's `staged`), then for a grid the [`GridSplit`] arguments.
    ///
    /// # Safety
    /// `args` are `func`'s leading C arguments in order and type, after which `func` takes
    /// `u32 stage` (and, for a grid, `u32 blocks, u64 barriers, u64 exchange`); every buffer
    /// behind them stays alive until the kernel has run, and holds what the kernel reads or
    /// writes for `rows` rows. `path` was chosen by `split_path` for this function and shape, so
    /// the launch fits (cluster: the device has clusters, a compute_90+ kernel, `shared` bytes
    /// of dynamic shared memory within its maximum and a schedulable cluster; grid: cooperative
    /// launch and every block resident at once, rows × blocks ≤ the SM count, so the exchange
    /// holds a barrier per row and an entry per block).
    pub(crate) unsafe fn queue_split<A: KernelArgs>(
        &self,
        func: &CudaFunction,
        path: SplitPath,
        args: &A,
        rows: usize,
        threads: u32,
    ) -> Result<()> {
        let (blocks, shared, staged, cooperative) = match path {
            SplitPath::Cluster {
                blocks,
                shared,
                staged,
            } => (blocks, shared, staged, false),
            SplitPath::Grid {
                blocks,
                shared,
                staged,
            } => (blocks, shared, staged, true),
            SplitPath::Block => unreachable!("queue_split takes a split path"),
        };
        let stage = u32::from(staged);
        // Only a grid takes the exchange (asking for its address is stream work when cudarc
        // tracks events).
        let split = cooperative.then(|| self.grid_split(blocks));
        let mut params = Args::new();
        args.push(&mut params);
        let lead = params.len();
        params.push(&stage);
        let mut launch = if let Some(split) = &split {
            split.push(&mut params);
            split.launch(rows, threads, shared, self.stream.cu_stream())
        } else {
            LaunchEx::cluster(
                blocks,
                rows as u32,
                threads,
                shared,
                self.stream.cu_stream(),
            )
        };
        debug_assert_eq!(params.len(), lead + if cooperative { 4 } else { 1 });
        // SAFETY: the caller's contract (above); `params` points at `args`, `stage` and `split`,
        // alive until the launch is queued, and `launch` is on the sampler's stream.
        unsafe { launch.queue(self.context(), func, &mut params) }
    }

    /// The cooperative grids' exchange, zeroed (made once, by [`Sampler::new`]): a `RowBarrier`
    /// for each of up to `sm_count` rows, then a `ClusterHead` for each of up to `sm_count`
    /// blocks (a grid never has more: `cluster_candidates`). Every barrier leaves its counter
    /// at zero, so it is never cleared again.
    pub(crate) fn new_exchange(stream: &Arc<CudaStream>, sm_count: u32) -> Result<CudaSlice<u8>> {
        let n = sm_count as usize;
        Ok(stream.alloc_zeros::<u8>(barrier_bytes(n) + n * CLUSTER_HEAD_BYTES)?)
    }

    /// The last arguments of a cooperative grid of `blocks` blocks per row: `blocks` and the
    /// device addresses of the exchange's barriers and entries.
    pub(crate) fn grid_split(&self, blocks: u32) -> GridSplit {
        let (base, _guard) = self.exchange.device_ptr(&self.stream);
        GridSplit {
            blocks,
            barriers: base,
            exchange: base + barrier_bytes(self.sm_count as usize) as u64,
        }
    }
}

/// Bytes of the exchange's barriers, for `rows` rows (then the entries, 256-byte aligned).
fn barrier_bytes(rows: usize) -> usize {
    (rows * ROW_BARRIER_BYTES).next_multiple_of(256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_entries_take_any_except_on_the_cooperative_grid() {
        let e = SplitEntries {
            family: "sparsemax",
            block: "project",
            cluster: "project_cluster",
            grid: "project_grid",
        };
        let (blocks, shared, staged) = (4, 0, true);
        let paths = [
            SplitPath::Block,
            SplitPath::Cluster {
                blocks,
                shared,
                staged,
            },
            SplitPath::Grid {
                blocks,
                shared,
                staged,
            },
        ];
        let names = |vec| paths.map(|p| e.on(&p, DType::Bf16, vec).name());
        assert_eq!(
            names(1),
            [
                "samplex_sparsemax_project_bf16_any",
                "samplex_sparsemax_project_cluster_bf16_any",
                "samplex_sparsemax_project_grid_bf16_v1",
            ]
        );
        assert_eq!(
            names(8),
            [
                "samplex_sparsemax_project_bf16",
                "samplex_sparsemax_project_cluster_bf16",
                "samplex_sparsemax_project_grid_bf16",
            ]
        );
        assert_eq!(e.cluster(DType::F32, 1), e.on(&paths[1], DType::F32, 1));
        assert_eq!(e.grid(DType::F32, 1), e.on(&paths[2], DType::F32, 1));
    }

    #[test]
    fn kernel_names_follow_the_module() {
        let k = Kernel::new("topp", "thresholds_grid", DType::Bf16);
        assert_eq!(k.name(), "samplex_topp_thresholds_grid_bf16");
        assert_eq!(
            k.any_alignment_at_width(1).name(),
            "samplex_topp_thresholds_grid_bf16_any"
        );
        assert_eq!(k.any_alignment_at_width(8), k);
        let b = Kernel::new("bok", "pass", DType::F16);
        assert_eq!(b.at_width(1).name(), "samplex_bok_pass_f16_v1");
        assert_eq!(b.at_width(8), b);
        let s = Kernel::new("softmax", "sample", DType::F32);
        assert_eq!(
            s.any_alignment_at_width(1).name(),
            "samplex_softmax_sample_f32_any"
        );
        assert_eq!(s.any_alignment_at_width(4), s);
        assert_eq!(
            Kernel::untyped("softmax", "philox_words").name(),
            "samplex_softmax_philox_words"
        );
    }

    #[test]
    fn vector_width_needs_aligned_base_and_stride() {
        assert_eq!(vector_width::<f32>(0x1000, 1024), 4);
        assert_eq!(vector_width::<half::bf16>(0x1000, 1024), 8);
        assert_eq!(vector_width::<f32>(0x1004, 1024), 1);
        assert_eq!(vector_width::<f32>(0x1000, 1023), 1);
        assert_eq!(vector_width::<half::f16>(0x1000, 1004), 1);
    }

    #[test]
    fn radix_clusters_leave_a_block_per_sm_and_a_chunk_per_block() {
        let sizes = |b, v| cluster_candidates(b, v, 132).collect::<Vec<_>>();
        assert_eq!(sizes(1, 128_256), [8, 4, 2]);
        assert_eq!(sizes(17, 262_147), [4, 2]);
        assert_eq!(sizes(67, 262_147), Vec::<u32>::new());
        assert_eq!(sizes(1, 20_000), [4, 2]);
        assert_eq!(sizes(1, 8191), Vec::<u32>::new());
        assert_eq!(slice_len(128_256, 8, DType::Bf16), 16_032);
        assert_eq!(slice_len(40_001, 8, DType::F32), 5004);
        assert_eq!(slice_len(40_001, 8, DType::F16), 5008);
    }

    #[test]
    fn small_batches_split_rows_but_never_past_the_tiles() {
        assert_eq!(blocks_per_row(1, 128_256, 132), 63);
        assert_eq!(blocks_per_row(1, 1000, 132), 1);
        assert_eq!(blocks_per_row(512, 128_256, 132), 1);
        assert_eq!(blocks_per_row(8, 262_144, 132), 33);
    }
}
