//! Wrappers for kernels/bok.cu: Best-of-K mirror ascent.

use cudarc::driver::{CudaView, CudaViewMut};

use super::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use crate::decoder::{Bok, Support};
use crate::dtype::Logit;
use crate::error::{Error, Result};

impl Sampler {
    /// BoK's q after T steps per row (dense `batch × vocab`), over the support; `objective`
    /// (`batch × (T + 1)`, T the batch-wide iterations) gets J(q^t) for t = 0..=T when asked.
    /// `weights` is the caller's coverage weights (`batch × vocab`), required exactly when
    /// `params.weights` is `BokWeights::Custom`.
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
        let _ = (logits, params, support, rows, weights, q, objective, status);
        Err(Error::NotImplemented("bok"))
    }

    /// One token per row drawn from BoK's q after T steps, in the same launch.
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
        let _ = (logits, params, support, rows, weights, seeds, tokens, status);
        Err(Error::NotImplemented("sample_bok"))
    }
}
