//! Wrappers for kernels/topk.cu: radix top-k selection.

use cudarc::driver::CudaViewMut;

use super::{DeviceLogits, RowParams, Sampler};
use crate::dtype::Logit;
use crate::error::{Error, Result};

impl Sampler {
    /// Exactly k (value, index) pairs per row, value descending, ties by lower index.
    /// `values`/`indices` are `batch × k`. With `rows.top_k`, row r selects k_r ≤ k pairs
    /// (k_r clamped to [1, min(k, vocab)] and flagged) and pads the rest with −∞ / u32::MAX.
    /// k > vocab is clamped to vocab the same way. Values are the sanitised logits widened to f32.
    pub fn top_k_select<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        k: u32,
        rows: &RowParams<'_>,
        values: &mut CudaViewMut<'_, f32>,
        indices: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        let _ = (logits, k, rows, values, indices, status);
        Err(Error::NotImplemented("top_k_select"))
    }
}
