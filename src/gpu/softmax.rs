//! Wrappers for kernels/softmax.cu: temperature softmax, greedy, sampling from logits and from
//! probabilities.

use cudarc::driver::{CudaView, CudaViewMut};

use super::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use crate::dtype::Logit;
use crate::error::{Error, Result};

impl Sampler {
    /// probs = softmax(z/τ) per row (dense `batch × vocab`), and log-probabilities when asked.
    /// τ is `temperature`, or `rows.temperature[r]` when given; a τ = 0 row is one-hot at its
    /// argmax (its log-probabilities are 0 there and −∞ elsewhere).
    pub fn softmax<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        rows: &RowParams<'_>,
        probs: &mut CudaViewMut<'_, f32>,
        log_probs: Option<&mut CudaViewMut<'_, f32>>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        let _ = (logits, temperature, rows, probs, log_probs, status);
        Err(Error::NotImplemented("softmax"))
    }

    /// The argmax of every row, ties to the lowest index.
    pub fn greedy<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        tokens: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        let _ = (logits, tokens, status);
        Err(Error::NotImplemented("greedy"))
    }

    /// One token per row from softmax(z/τ), reading the logits once (the tiled draw).
    /// τ = 0 rows are greedy in the same launch.
    pub fn sample_softmax<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        rows: &RowParams<'_>,
        seeds: &DeviceSeeds<'_>,
        tokens: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        let _ = (logits, temperature, rows, seeds, tokens, status);
        Err(Error::NotImplemented("sample_softmax"))
    }

    /// One token per row from given probabilities (dense `batch × vocab`, ≥ 0, need not sum
    /// to 1).
    pub fn sample_from_probs(
        &mut self,
        probs: &CudaView<'_, f32>,
        batch: usize,
        vocab: usize,
        seeds: &DeviceSeeds<'_>,
        tokens: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        let _ = (probs, batch, vocab, seeds, tokens, status);
        Err(Error::NotImplemented("sample_from_probs"))
    }
}
