//! Wrappers for kernels/sparsemax.cu: sparsemax by sort-and-threshold.

use cudarc::driver::CudaViewMut;

use super::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use crate::dtype::Logit;
use crate::error::{Error, Result};

impl Sampler {
    /// q = sparsemax(z/τ) per row (dense `batch × vocab`), and the support size k* per row
    /// when asked. τ = 0 rows are one-hot at the argmax.
    pub fn sparsemax<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        rows: &RowParams<'_>,
        probs: &mut CudaViewMut<'_, f32>,
        support_size: Option<&mut CudaViewMut<'_, u32>>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        let _ = (logits, temperature, rows, probs, support_size, status);
        Err(Error::NotImplemented("sparsemax"))
    }

    /// One token per row drawn from sparsemax(z/τ).
    pub fn sample_sparsemax<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        rows: &RowParams<'_>,
        seeds: &DeviceSeeds<'_>,
        tokens: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        let _ = (logits, temperature, rows, seeds, tokens, status);
        Err(Error::NotImplemented("sample_sparsemax"))
    }
}
