//! Wrappers for kernels/sparsemax.cu: sparsemax by sort-and-threshold.
//!
//! One kernel, `samplex_sparsemax_project_<T>` (and its `_v1` twin for rows that are not
//! 16-byte aligned), computes per row θ, then whichever outputs it is given: q (dense), the
//! support size k*, a token drawn from q, the status. C arguments after the rows:
//! stride, vocab, τ, τ\[\], seed, offset, seeds\[\], offsets\[\], probs, support, tokens, status
//! (optional buffers as raw addresses, 0 when absent).
//!
//! One block of 1024 threads per row; no scratch, no tickets. The candidates u_i ≥ max u − 1
//! are sorted on chip when there are at most 4096 of them; flatter rows find θ by a radix
//! search with fixed-point sums (see the kernel's header).

use cudarc::driver::{CudaViewMut, DeviceSlice, LaunchConfig, PushKernelArg};

use super::launch::{self, Pointers};
use super::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use crate::decoder::check_temperature;
use crate::dtype::Logit;
use crate::error::{Error, Result};

/// Threads per block of `samplex_sparsemax_project` (`THREADS` in kernels/sparsemax.cu).
const THREADS: u32 = 1024;

/// A buffer's length must be exactly `expected`.
fn check_len(name: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::BadLength {
            name,
            got,
            expected,
        })
    }
}

/// Sparsemax takes no support rule (SPEC: its support comes from θ).
fn check_no_filters(rows: &RowParams<'_>) -> Result<()> {
    if rows.top_k.is_some() || rows.top_p.is_some() || rows.min_p.is_some() {
        return Err(Error::Unsupported(
            "sparsemax takes no support rule (its support comes from θ): per-row top_k/top_p/min_p \
             are not allowed"
                .into(),
        ));
    }
    Ok(())
}

/// A device buffer: exactly `len` entries, on the sampler's device.
fn check_out<T, S: DeviceSlice<T>>(
    s: &Sampler,
    name: &'static str,
    buffer: &S,
    len: usize,
) -> Result<()> {
    check_len(name, buffer.len(), len)?;
    s.check_device(name, buffer)
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
        check_out(self, "probs", &*probs, batch * vocab)?;
        if let Some(s) = support_size.as_deref() {
            check_out(self, "support_size", s, batch)?;
        }
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
        check_out(self, "tokens", &*tokens, logits.batch)?;
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
        check_no_filters(rows)?;
        self.check_device("logits", &logits.data)?;
        rows.check(batch, self)?;
        if let Some(s) = status.as_deref() {
            check_out(self, "status", s, batch)?;
        }
        if batch > i32::MAX as usize {
            return Err(Error::BadParam {
                name: "batch",
                value: batch as f64,
                range: "< 2^31",
            });
        }

        // 2. Config: one block per row; the vector width from the rows' alignment.
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let logits_addr = ptrs.read(&logits.data);
        let vec = launch::vector_width::<T>(logits_addr, logits.stride);
        let mut name = launch::kernel_name("sparsemax", "project", T::DTYPE);
        if vec == 1 {
            name.push_str("_v1");
        }
        let func = self.function(&name)?;
        let cfg = LaunchConfig {
            grid_dim: (batch as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };

        // 3. Arguments in C-signature order.
        let stride = logits.stride as u64;
        let vocab = logits.vocab as u32;
        let temps = ptrs.read_opt(rows.temperature.as_ref());
        let (seed, offset, seeds_addr, offsets_addr) = match seeds {
            None => (0u64, 0u64, 0u64, 0u64),
            Some(DeviceSeeds::Shared(rng)) => (rng.seed, rng.offset, 0, 0),
            Some(DeviceSeeds::Each { seeds, offsets }) => {
                (0, 0, ptrs.read(seeds), ptrs.read(offsets))
            }
        };
        let probs = ptrs.write_opt(probs);
        let support = ptrs.write_opt(support);
        let tokens = ptrs.write_opt(tokens);
        let status = ptrs.write_opt(status);
        let mut b = stream.launch_builder(&func);
        b.arg(&logits_addr)
            .arg(&stride)
            .arg(&vocab)
            .arg(&temperature)
            .arg(&temps)
            .arg(&seed)
            .arg(&offset)
            .arg(&seeds_addr)
            .arg(&offsets_addr)
            .arg(&probs)
            .arg(&support)
            .arg(&tokens)
            .arg(&status);

        // 4. Launch.
        // SAFETY: the arguments match samplex_sparsemax_project's C signature in order and type
        // (u64 addresses, u32 vocab, f32 τ). Checked above: the logits view holds
        // (batch − 1)·stride + vocab elements (DeviceLogits), probs is batch × vocab, support,
        // tokens, status and every per-row buffer hold batch entries, all on this device;
        // the grid is one block per row (< 2^31), and the kernel reads no further than those.
        unsafe { b.launch(cfg) }?;
        drop(ptrs);
        Ok(())
    }
}
