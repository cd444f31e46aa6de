//! The device path: a [`Sampler`] on a caller's cudarc stream.
//!
//! | module          | what it holds                                                        |
//! |-----------------|----------------------------------------------------------------------|
//! | `module`        | finding the driver, loading the kernels (fatbin, or NVRTC) once per context |
//! | `launch`        | launch plumbing shared by every wrapper: shapes, vector width, row split, pointers |
//! | `softmax`       | temperature softmax, greedy, sampling from logits and from probabilities |
//! | `topk`          | radix top-k selection and the top-k filter                           |
//! | `topp`          | top-p, min-p and the combined filter pipeline                        |
//! | `sparsemax`     | sparsemax by sort-and-threshold                                      |
//! | `bok`           | Best-of-K mirror ascent                                              |
//! | `edits`         | logit edits in place: the allowed-token mask, the bias, the history penalties |
//! | `sample`        | `Sampler::sample` / `Sampler::distribution`: a `Decoder` to its family |
//!
//! Every operation is asynchronous on the sampler's stream and never synchronises the host;
//! once it has run at a shape (the workspace grown, [`Sampler::reserve`]) it allocates nothing,
//! on the device or the host (tests/gpu_host.rs), so a serving loop can capture it in a CUDA
//! graph.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr,
    DeviceSlice,
};

use crate::batch::check_shape;
use crate::dtype::Logit;
use crate::error::{Error, Result};

pub mod bok;
pub mod edits;
pub(crate) mod launch;

pub use edits::{DeviceHistory, PenaltyRows};
pub use launch::RowSplit;
pub mod module;
pub mod sample;
pub mod softmax;
pub mod sparsemax;
pub mod topk;
pub mod topp;

pub use module::{context, driver_present, kernels_source, nvrtc_present, KernelOrigin};
pub use softmax::MAX_DRAFTS;

/// The two device batches of logits, read-only and edited in place: one shape, one check.
macro_rules! device_batch {
    ($(#[$doc:meta])* $name:ident, $view:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<'a, T: Logit> {
            pub(crate) data: $view<'a, T>,
            pub(crate) batch: usize,
            pub(crate) vocab: usize,
            pub(crate) stride: usize,
        }

        impl<'a, T: Logit> $name<'a, T> {
            /// Dense rows (stride = vocab).
            ///
            /// # Errors
            /// [`Error::EmptyBatch`], [`Error::BadVocab`], [`Error::BadLength`].
            pub fn new(data: $view<'a, T>, batch: usize, vocab: usize) -> Result<Self> {
                Self::with_stride(data, batch, vocab, vocab)
            }

            /// Rows `stride` elements apart (stride ≥ vocab).
            ///
            /// # Errors
            /// As [`Self::new`], and [`Error::BadStride`] for a stride below vocab.
            pub fn with_stride(
                data: $view<'a, T>,
                batch: usize,
                vocab: usize,
                stride: usize,
            ) -> Result<Self> {
                check_shape("logits", data.len(), batch, vocab, stride)?;
                Ok($name {
                    data,
                    batch,
                    vocab,
                    stride,
                })
            }

            pub fn batch(&self) -> usize {
                self.batch
            }
            pub fn vocab(&self) -> usize {
                self.vocab
            }
            pub fn stride(&self) -> usize {
                self.stride
            }
        }
    };
}

device_batch!(
    /// A batch of logits on the device: `batch` rows of `vocab` values, row `r` at `r * stride`.
    DeviceLogits,
    CudaView
);

device_batch!(
    /// A batch of logits on the device that an operation edits in place (the logit edits of
    /// [`crate::edits`]): `batch` rows of `vocab` values, row `r` at `r * stride`.
    DeviceLogitsMut,
    CudaViewMut
);

/// One value for the whole batch, or a device buffer with one value per row.
#[derive(Debug)]
pub enum DeviceRows<'a, T> {
    All(T),
    Each(CudaView<'a, T>),
}

impl<T> From<T> for DeviceRows<'_, T> {
    fn from(v: T) -> Self {
        DeviceRows::All(v)
    }
}

impl<T> DeviceRows<'_, T> {
    /// True when each row has its own value.
    pub fn is_per_row(&self) -> bool {
        matches!(self, DeviceRows::Each(_))
    }
}

/// Per-row device values that override the [`crate::Decoder`]'s batch-wide ones.
/// A `None` field takes the decoder's value. Values out of range are clamped on the device and
/// flagged with [`crate::status::PARAM_CLAMPED`].
#[derive(Debug, Default)]
pub struct RowParams<'a> {
    pub temperature: Option<CudaView<'a, f32>>,
    pub top_k: Option<CudaView<'a, u32>>,
    pub top_p: Option<CudaView<'a, f32>>,
    pub min_p: Option<CudaView<'a, f32>>,
    /// BoK's K.
    pub bok_k: Option<CudaView<'a, u32>>,
    pub bok_beta: Option<CudaView<'a, f32>>,
    pub bok_lambda: Option<CudaView<'a, f32>>,
    pub bok_eta: Option<CudaView<'a, f32>>,
    pub bok_iterations: Option<CudaView<'a, u32>>,
}

impl RowParams<'_> {
    /// [`Error::Unsupported`] when a per-row top_k, top_p or min_p is given to `op`, which
    /// takes no support rule (`why`): refused rather than ignored.
    pub(crate) fn refuse_filters(&self, op: &str, why: &str) -> Result<()> {
        if self.top_k.is_some() || self.top_p.is_some() || self.min_p.is_some() {
            return Err(Error::Unsupported(format!(
                "{op} takes no per-row top_k/top_p/min_p: {why}"
            )));
        }
        Ok(())
    }

    /// Every per-row buffer given has `batch` entries and lives on the sampler's device.
    pub(crate) fn check(&self, batch: usize, s: &Sampler) -> Result<()> {
        s.check_opt_buffer("temperature", self.temperature.as_ref(), batch)?;
        s.check_opt_buffer("top_k", self.top_k.as_ref(), batch)?;
        s.check_opt_buffer("top_p", self.top_p.as_ref(), batch)?;
        s.check_opt_buffer("min_p", self.min_p.as_ref(), batch)?;
        s.check_opt_buffer("bok_k", self.bok_k.as_ref(), batch)?;
        s.check_opt_buffer("bok_beta", self.bok_beta.as_ref(), batch)?;
        s.check_opt_buffer("bok_lambda", self.bok_lambda.as_ref(), batch)?;
        s.check_opt_buffer("bok_eta", self.bok_eta.as_ref(), batch)?;
        s.check_opt_buffer("bok_iterations", self.bok_iterations.as_ref(), batch)
    }
}

/// The random streams of a batch: one shared (seed, offset), or per-row device buffers.
#[derive(Debug)]
pub enum DeviceSeeds<'a> {
    /// One stream for the batch; rows get distinct numbers (stream id = row index).
    Shared(crate::philox::Rng),
    /// Per-row seeds and offsets (stream id 0: a row's tokens do not depend on its position).
    Each {
        seeds: CudaView<'a, u64>,
        offsets: CudaView<'a, u64>,
    },
}

impl DeviceSeeds<'_> {
    /// Per-row seeds and offsets have `batch` entries and live on the sampler's device.
    pub(crate) fn check(&self, batch: usize, sampler: &Sampler) -> Result<()> {
        if let DeviceSeeds::Each { seeds, offsets } = self {
            sampler.check_buffer("seeds", seeds, batch)?;
            sampler.check_buffer("offsets", offsets, batch)?;
        }
        Ok(())
    }
}

/// Device addresses of the sampler's workspace (see [`Sampler::scratch`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scratch {
    /// Start of the scratch bytes (256-byte aligned).
    pub base: u64,
    /// Start of the u32 ticket counters.
    pub tickets: u64,
}

/// The device sampler: a loaded kernel module, a reusable workspace, and the caller's stream.
///
/// Build one per stream and keep it: creating it loads the kernels (once per context) and
/// allocates the fixed exchange (about 48 KB per SM) through which a small batch's rows split
/// over several blocks below sm_90; the workspace grows only when a larger shape arrives.
/// Before capturing a CUDA graph, run the captured calls once at the largest shape (or size the
/// workspace with [`Sampler::reserve`]), so that no call inside the capture loads or allocates
/// (examples/serving_loop.rs).
pub struct Sampler {
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) module: Arc<CudaModule>,
    pub(crate) origin: KernelOrigin,
    pub(crate) functions: HashMap<launch::Kernel, CudaFunction>,
    pub(crate) workspace: Option<CudaSlice<u8>>,
    pub(crate) tickets: Option<CudaSlice<u32>>,
    pub(crate) sm_count: u32,
    pub(crate) ordinal: usize,
    /// The cooperative grids' barriers and exchange entries (`Sampler::new_exchange`).
    pub(crate) exchange: CudaSlice<u8>,
    /// How BoK may split a row above 32768 tokens over several blocks in one launch (tests
    /// change it to reach every path, the multi-pass fallback included, on one device).
    pub(crate) bok_split: launch::RowSplit,
    /// How the top-k/top-p/min-p threshold kernel may split a row over several blocks (tests
    /// change it to compare the paths on one device).
    pub(crate) filter_split: launch::RowSplit,
    /// The same for the top-k selection kernel.
    pub(crate) select_split: launch::RowSplit,
    /// The same for sparsemax.
    pub(crate) sparsemax_split: launch::RowSplit,
    /// When `softmax` holds rows in a cluster's shared memory (`softmax::Staging`).
    pub(crate) softmax_staging: softmax::Staging,
    /// The device's L2 cache in bytes (where a second read of the logits would still hit).
    pub(crate) l2_bytes: usize,
    /// `cluster_fits`' and `grid_fits`' answers by (function, blocks, threads, dynamic shared
    /// memory, cooperative): the driver queries behind one do not change, and the path is
    /// chosen on every call.
    pub(crate) cluster_fit: HashMap<(usize, u32, u32, usize, bool), bool>,
}

impl Sampler {
    /// A sampler on `stream`. Loads the kernels into the stream's context on first use
    /// (the embedded fatbin, or the embedded sources compiled by NVRTC).
    ///
    /// # Errors
    /// [`Error::NoNvrtc`] / [`Error::Compile`] when no fatbin was built and NVRTC is missing or
    /// fails; [`Error::Driver`] for a driver failure.
    pub fn new(stream: Arc<CudaStream>) -> Result<Self> {
        let ctx = stream.context().clone();
        let (module, origin) = module::load(&ctx)?;
        let sm_count = ctx.attribute(
            cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
        )? as u32;
        let l2_bytes = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?
            as usize;
        let exchange = Self::new_exchange(&stream, sm_count)?;
        Ok(Sampler {
            ordinal: ctx.ordinal(),
            stream,
            module,
            origin,
            functions: HashMap::new(),
            workspace: None,
            tickets: None,
            sm_count,
            exchange,
            bok_split: launch::RowSplit::Any,
            filter_split: launch::RowSplit::Any,
            select_split: launch::RowSplit::Any,
            sparsemax_split: launch::RowSplit::Any,
            softmax_staging: softmax::Staging::Auto,
            l2_bytes,
            cluster_fit: HashMap::new(),
        })
    }

    /// A sampler on a new stream of device `ordinal`.
    ///
    /// # Errors
    /// [`Error::NoDriver`] where no CUDA driver exists, [`Error::NoDevice`] where the ordinal
    /// is not a device, and those of [`Sampler::new`].
    pub fn on_device(ordinal: usize) -> Result<Self> {
        let ctx = context(ordinal)?;
        let stream = ctx.new_stream()?;
        Self::new(stream)
    }

    /// The stream every operation is queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The context of that stream.
    pub fn context(&self) -> &Arc<CudaContext> {
        self.stream.context()
    }

    /// Where the kernels came from: the prebuilt fatbin, or NVRTC at run time.
    pub fn kernel_origin(&self) -> KernelOrigin {
        self.origin
    }

    /// The number of streaming multiprocessors (used to split rows across blocks).
    pub fn sm_count(&self) -> u32 {
        self.sm_count
    }

    /// Grows the workspace to at least `scratch_bytes` of scratch and `tickets` ticket
    /// counters (never shrinks). Operations call this themselves; call it up front with the
    /// largest shape to keep allocation out of a captured graph.
    pub fn reserve(&mut self, scratch_bytes: usize, tickets: usize) -> Result<()> {
        let have = self.workspace.as_ref().map_or(0, |w| w.len());
        if have < scratch_bytes {
            // Round up so that slowly growing shapes do not reallocate every call.
            let want = scratch_bytes.next_power_of_two().max(1 << 16);
            self.workspace = None;
            self.workspace = Some(self.stream.alloc_zeros::<u8>(want)?);
        }
        let have = self.tickets.as_ref().map_or(0, |t| t.len());
        if have < tickets {
            let want = tickets.next_power_of_two().max(1024);
            self.tickets = None;
            self.tickets = Some(self.stream.alloc_zeros::<u32>(want)?);
        }
        Ok(())
    }

    /// The workspace's scratch size in bytes.
    pub fn workspace_bytes(&self) -> usize {
        self.workspace.as_ref().map_or(0, |w| w.len())
    }

    /// Device addresses of at least `scratch_bytes` of scratch (contents undefined) and
    /// `tickets` ticket counters. Addresses, not views, so that a wrapper can hand parts of
    /// the scratch to another wrapper: reserve the total first, since growing reallocates.
    ///
    /// Ticket counters are zero when a kernel starts and every kernel that uses them leaves
    /// them at zero (the last ticket of a row is an `atomicInc` that wraps), so they need no
    /// memset per call. Nothing but tickets may be stored there.
    pub(crate) fn scratch(&mut self, scratch_bytes: usize, tickets: usize) -> Result<Scratch> {
        self.reserve(scratch_bytes.max(1), tickets.max(1))?;
        let ws = self.workspace.as_ref().expect("reserved above");
        let tk = self.tickets.as_ref().expect("reserved above");
        let (base, _g1) = ws.device_ptr(&self.stream);
        let (tickets_addr, _g2) = tk.device_ptr(&self.stream);
        Ok(Scratch {
            base,
            tickets: tickets_addr,
        })
    }

    /// The function of `kernel`, loaded from the module once and kept.
    pub(crate) fn function(&mut self, kernel: launch::Kernel) -> Result<CudaFunction> {
        if let Some(f) = self.functions.get(&kernel) {
            return Ok(f.clone());
        }
        let f = self.module.load_function(&kernel.name())?;
        self.functions.insert(kernel, f.clone());
        Ok(f)
    }

    /// A device buffer (an output, a per-row parameter, a test input): exactly `len` entries
    /// ([`Error::BadLength`]), on this sampler's device ([`Error::WrongDevice`]).
    pub(crate) fn check_buffer<T, S: DeviceSlice<T>>(
        &self,
        name: &'static str,
        buffer: &S,
        len: usize,
    ) -> Result<()> {
        if buffer.len() != len {
            return Err(Error::BadLength {
                name,
                got: buffer.len(),
                expected: len,
            });
        }
        self.check_device(name, buffer)
    }

    /// An optional buffer (a status, a per-row parameter): when given, as
    /// [`Sampler::check_buffer`].
    pub(crate) fn check_opt_buffer<T, S: DeviceSlice<T>>(
        &self,
        name: &'static str,
        buffer: Option<&S>,
        len: usize,
    ) -> Result<()> {
        buffer.map_or(Ok(()), |b| self.check_buffer(name, b, len))
    }

    /// SPEC "Bad input": a device buffer must live on this sampler's device.
    pub(crate) fn check_device<T, S: DeviceSlice<T>>(
        &self,
        name: &'static str,
        buffer: &S,
    ) -> Result<()> {
        let got = buffer.stream().context().ordinal();
        if got != self.ordinal {
            return Err(Error::WrongDevice {
                name,
                got,
                expected: self.ordinal,
            });
        }
        Ok(())
    }
}
