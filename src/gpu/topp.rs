//! Wrappers for kernels/topp.cu (and the filter parts of kernels/topk.cu): the support rules
//! top-k → top-p → min-p as per-row logit thresholds, and sampling, renormalised
//! probabilities and masked logits under them.

use cudarc::driver::CudaViewMut;

use super::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use crate::decoder::Support;
use crate::dtype::Logit;
use crate::error::{Error, Result};

impl Sampler {
    /// One token per row from softmax(z/τ) over the support (top-k → top-p → min-p).
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
        let _ = (logits, temperature, support, rows, seeds, tokens, status);
        Err(Error::NotImplemented("sample_filtered"))
    }

    /// softmax(z/τ) renormalised over the support, dense `batch × vocab` (0 outside).
    pub fn filtered_probs<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        support: &Support,
        rows: &RowParams<'_>,
        probs: &mut CudaViewMut<'_, f32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        let _ = (logits, temperature, support, rows, probs, status);
        Err(Error::NotImplemented("filtered_probs"))
    }

    /// The logits (sanitised, widened to f32, not divided by τ) where kept, −∞ elsewhere,
    /// dense `batch × vocab`.
    pub fn filtered_logits<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        support: &Support,
        rows: &RowParams<'_>,
        masked: &mut CudaViewMut<'_, f32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        let _ = (logits, temperature, support, rows, masked, status);
        Err(Error::NotImplemented("filtered_logits"))
    }

    /// Writes one f32 logit threshold per row to the device address `thresholds`: row r keeps
    /// exactly the tokens with sanitised z_i ≥ thresholds[r] (−∞: every finite token; +∞: none).
    /// Uses the scratch from byte `scratch_offset` on (the caller owns the bytes before it);
    /// `status` is a device address or 0. Shared by the filter ops and BoK.
    #[allow(clippy::too_many_arguments)]
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
        let _ = (logits, temperature, support, rows, thresholds, status, scratch_offset);
        Err(Error::NotImplemented("support thresholds"))
    }
}
