//! `Sampler::sample` and `Sampler::distribution`: one entry point for any [`Decoder`],
//! dispatched to its kernel family.

use cudarc::driver::{CudaView, CudaViewMut};

use super::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use crate::decoder::{Decoder, Regularizer};
use crate::dtype::Logit;
use crate::error::Result;

impl Sampler {
    /// One token per row from q* of `decoder` (per-row overrides in `rows`), drawn with the
    /// Philox stream of `seeds`. `weights` is BoK's caller buffer, when it uses one.
    ///
    /// # Errors
    /// The host-side checks of SPEC "Bad input"; [`crate::Error::Driver`] on a driver failure.
    #[allow(clippy::too_many_arguments)]
    pub fn sample<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        decoder: &Decoder,
        rows: &RowParams<'_>,
        seeds: &DeviceSeeds<'_>,
        weights: Option<&CudaView<'_, f32>>,
        tokens: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        decoder.validate()?;
        let s = decoder.support;
        match decoder.regularizer {
            Regularizer::None => self.greedy(logits, tokens, status),
            Regularizer::Entropy { temperature }
                if s.is_all(logits.vocab)
                    && rows.top_k.is_none()
                    && rows.top_p.is_none()
                    && rows.min_p.is_none() =>
            {
                self.sample_softmax(logits, temperature, rows, seeds, tokens, status)
            }
            Regularizer::Entropy { temperature } => {
                self.sample_filtered(logits, temperature, &s, rows, seeds, tokens, status)
            }
            Regularizer::Euclidean { temperature } => {
                self.sample_sparsemax(logits, temperature, rows, seeds, tokens, status)
            }
            Regularizer::BestOfK(b) => {
                self.sample_bok(logits, &b, &s, rows, weights, seeds, tokens, status)
            }
        }
    }

    /// q* of `decoder` per row, dense `batch × vocab` f32.
    ///
    /// # Errors
    /// As [`Sampler::sample`].
    pub fn distribution<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        decoder: &Decoder,
        rows: &RowParams<'_>,
        weights: Option<&CudaView<'_, f32>>,
        probs: &mut CudaViewMut<'_, f32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        decoder.validate()?;
        let s = decoder.support;
        match decoder.regularizer {
            Regularizer::None => {
                self.softmax(logits, 0.0, &RowParams::default(), probs, None, status)
            }
            Regularizer::Entropy { temperature }
                if s.is_all(logits.vocab)
                    && rows.top_k.is_none()
                    && rows.top_p.is_none()
                    && rows.min_p.is_none() =>
            {
                self.softmax(logits, temperature, rows, probs, None, status)
            }
            Regularizer::Entropy { temperature } => {
                self.filtered_probs(logits, temperature, &s, rows, probs, status)
            }
            Regularizer::Euclidean { temperature } => {
                self.sparsemax(logits, temperature, rows, probs, None, status)
            }
            Regularizer::BestOfK(b) => self.bok(logits, &b, &s, rows, weights, probs, None, status),
        }
    }
}
