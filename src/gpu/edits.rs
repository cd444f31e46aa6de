//! Wrappers for kernels/edits.cu: the logit edits of SPEC "Order of operations" (before
//! temperature), in place on the caller's logits — the allowed-token mask, the bias and the
//! history penalties ([`crate::edits`]).
//!
//! | kernel                        | C arguments (after the pointer to the rows)                          |
//! |-------------------------------|-----------------------------------------------------------------------|
//! | `samplex_edits_mask_<T>`      | stride, vocab, allowed, chunks                                        |
//! | `samplex_edits_bias_<T>`      | stride, vocab, tokens, values, max_len, lengths\[\], slot_bits, tables, status |
//! | `samplex_edits_penalize_<T>`  | stride, vocab, tokens, max_len, lengths\[\], r, a, f, r\[\], a\[\], f\[\], slot_bits, tables, status |
//!
//! Optional buffers are raw addresses, 0 when absent. The penalties (and the bias) count a
//! row's list in a hash table of `2^slot_bits ≥ 2 · max_len` slots (two u32 each; three for the
//! bias's u64 sums) in the ticket area, which
//! the kernel leaves empty as it found it; so nothing is cleared per call and a graph replays.

use cudarc::driver::{CudaView, CudaViewMut};

use super::launch::{self, Args, Kernel, Pointers, BLOCK_THREADS};
use super::{DeviceLogitsMut, Sampler};
use crate::dtype::Logit;
use crate::edits::{check_history, mask_words, Penalties};
use crate::error::{Error, Result};

/// Tokens per block of the mask kernel (`MASK_CHUNK` in kernels/edits.cu).
const MASK_CHUNK: usize = 1024;

/// A batch's token histories (or a bias's tokens) on the device, padded: row r's tokens are
/// `tokens[r · max_len ..][.. len_r]`, with `len_r = lengths[r]` (a device value: one above
/// `max_len` is clamped and flagged) or `max_len` when there are no lengths. Ids ≥ vocab are
/// ignored, so a history padded with such an id (vLLM pads with `vocab`) needs no lengths.
#[derive(Debug)]
pub struct DeviceHistory<'a> {
    pub tokens: CudaView<'a, u32>,
    pub max_len: usize,
    pub lengths: Option<CudaView<'a, u32>>,
}

/// Per-row device values that override [`Penalties`]' batch-wide ones; `None` takes the batch
/// value. Out-of-range values are clamped on the device and flagged with
/// [`crate::status::PARAM_CLAMPED`].
#[derive(Debug, Default)]
pub struct PenaltyRows<'a> {
    pub repetition: Option<CudaView<'a, f32>>,
    pub presence: Option<CudaView<'a, f32>>,
    pub frequency: Option<CudaView<'a, f32>>,
}

impl Sampler {
    /// SPEC's logit edits, the mask: z_i = −∞ in place wherever bit i % 32 of word i / 32 of
    /// the row's bitmask is 0 (`allowed[r · mask_words(vocab) ..]`, the layout of xgrammar's
    /// and vLLM's token bitmasks). Call it before sampling: a masked token can then never be
    /// drawn, and every filter measures its mass over the allowed tokens only. Only the
    /// masked tokens are written; the logits are not read.
    ///
    /// # Errors
    /// [`Error::BadLength`] when `allowed` does not hold `batch × mask_words(vocab)` words;
    /// [`Error::WrongDevice`]; [`Error::Driver`].
    pub fn mask_tokens<T: Logit>(
        &mut self,
        logits: &mut DeviceLogitsMut<'_, T>,
        allowed: &CudaView<'_, u32>,
    ) -> Result<()> {
        let (batch, vocab) = (logits.batch, logits.vocab);
        self.check_device("logits", &logits.data)?;
        self.check_buffer("allowed", allowed, batch * mask_words(vocab))?;
        let chunks = vocab.div_ceil(MASK_CHUNK);
        let cfg = launch::row_grid(batch, chunks as u32, BLOCK_THREADS)?;
        let func = self.function(Kernel::new("edits", "mask", T::DTYPE))?;

        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let logits_addr = ptrs.write(&mut logits.data);
        let allowed_addr = ptrs.read(allowed);
        let (stride, vocab, chunks) = (logits.stride as u64, vocab as u32, chunks as u32);
        let mut b = Args::new();
        b.arg(&logits_addr)
            .arg(&stride)
            .arg(&vocab)
            .arg(&allowed_addr)
            .arg(&chunks);
        // SAFETY: the arguments match samplex_edits_mask_<T>'s C signature in order and type;
        // `logits` holds `batch` rows of `stride` (≥ vocab) elements and `allowed` batch ×
        // ⌈vocab / 32⌉ words (checked); the grid is batch × chunks blocks of 256 threads, each
        // within its row's first vocab tokens.
        unsafe { b.launch(&func, &stream, cfg) }
    }

    /// SPEC's logit edits, the penalties: every distinct token of row r's history, occurring c
    /// times, gets `z ← (z > 0 ? z / repetition : z · repetition) − (frequency · c + presence)`
    /// in place ([`Penalties`]; per-row values in `rows`). Tokens that do not occur are not
    /// touched. The result does not depend on the order of the history, so it is the same
    /// run after run. `status` (optional, `batch` entries) gets each row's
    /// [`crate::status::PARAM_CLAMPED`] bit (a per-row penalty out of range, a length above
    /// `max_len`).
    ///
    /// The workspace holds a table per row of 2^k ≥ 2 · max_len slots, 8 bytes each (16 to 32
    /// bytes per history entry; `Sampler::reserve`'s tickets, 4 bytes each, before a capture).
    ///
    /// # Errors
    /// [`Error::BadParam`] for a penalty out of range ([`Penalties::validate`]);
    /// [`Error::BadLength`] when the history does not hold `batch × max_len` tokens (and
    /// `batch` lengths), or a per-row buffer or `status` is not `batch` long;
    /// [`Error::WrongDevice`]; [`Error::Driver`].
    pub fn apply_penalties<T: Logit>(
        &mut self,
        logits: &mut DeviceLogitsMut<'_, T>,
        history: &DeviceHistory<'_>,
        penalties: &Penalties,
        rows: &PenaltyRows<'_>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // 1. Validate.
        let (batch, vocab) = (logits.batch, logits.vocab);
        penalties.validate()?;
        self.check_device("logits", &logits.data)?;
        self.check_lists(history, batch)?;
        self.check_opt_buffer("repetition", rows.repetition.as_ref(), batch)?;
        self.check_opt_buffer("presence", rows.presence.as_ref(), batch)?;
        self.check_opt_buffer("frequency", rows.frequency.as_ref(), batch)?;
        self.check_opt_buffer("status", status.as_deref(), batch)?;

        // 2. Config: a count per slot.
        let (max_len, slot_bits, tables) = self.tables(batch, history.max_len, 2)?;
        let cfg = launch::row_grid(batch, 1, BLOCK_THREADS)?;
        let func = self.function(Kernel::new("edits", "penalize", T::DTYPE))?;

        // 3. Arguments in C-signature order.
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let logits_addr = ptrs.write(&mut logits.data);
        let tokens_addr = ptrs.read(&history.tokens);
        let lengths_addr = ptrs.read_opt(history.lengths.as_ref());
        let reps = ptrs.read_opt(rows.repetition.as_ref());
        let pres = ptrs.read_opt(rows.presence.as_ref());
        let freqs = ptrs.read_opt(rows.frequency.as_ref());
        let status_addr = ptrs.write_opt(status);
        let (stride, vocab) = (logits.stride as u64, vocab as u32);
        let mut b = Args::new();
        b.arg(&logits_addr)
            .arg(&stride)
            .arg(&vocab)
            .arg(&tokens_addr)
            .arg(&max_len)
            .arg(&lengths_addr)
            .arg(&penalties.repetition)
            .arg(&penalties.presence)
            .arg(&penalties.frequency)
            .arg(&reps)
            .arg(&pres)
            .arg(&freqs)
            .arg(&slot_bits)
            .arg(&tables)
            .arg(&status_addr);
        // SAFETY: the arguments match samplex_edits_penalize_<T>'s C signature in order and
        // type; `logits` holds `batch` rows of `stride` (≥ vocab) elements, the history batch ×
        // max_len tokens (and `batch` lengths), the per-row buffers and `status` `batch` entries
        // (checked); the ticket area holds batch × 2 × 2^slot_bits words, zero, and the kernel
        // leaves them zero; one block of 256 threads per row.
        unsafe { b.launch(&func, &stream, cfg) }
    }

    /// SPEC's logit edits, the bias: `z_i ← z_i + Σ b` over the row's entries for token i
    /// (OpenAI's `logit_bias`), in place. Row r's entries are `(tokens[k], values[k])` for k in
    /// its list (`tokens` laid out as a [`DeviceHistory`]: ids ≥ vocab are padding); a token
    /// listed twice gets both values. The values are summed in fixed point, in units of 2^-24
    /// (exact for every |b| ≥ 1/2), so the result does not depend on the list's order, and then
    /// added in f64 and rounded once to f32 (bit for bit [`crate::cpu::apply_bias`]). A value
    /// only the device sees that is NaN or beyond ±2^20 is clamped (NaN to 0) and flagged with
    /// [`crate::status::PARAM_CLAMPED`] in `status`, as is a length above `max_len`.
    ///
    /// The workspace holds a table per row of 2^k ≥ 2 · max_len slots, 12 bytes each.
    ///
    /// # Errors
    /// [`Error::BadLength`] when `tokens` does not hold `batch × max_len` ids (and `batch`
    /// lengths), `values` not as many values as ids, or `status` not `batch` entries;
    /// [`Error::WrongDevice`]; [`Error::Driver`].
    pub fn apply_bias<T: Logit>(
        &mut self,
        logits: &mut DeviceLogitsMut<'_, T>,
        tokens: &DeviceHistory<'_>,
        values: &CudaView<'_, f32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        let (batch, vocab) = (logits.batch, logits.vocab);
        self.check_device("logits", &logits.data)?;
        self.check_lists(tokens, batch)?;
        self.check_buffer("bias values", values, tokens.tokens.len())?;
        self.check_opt_buffer("status", status.as_deref(), batch)?;
        // A key and a u64 sum per slot.
        let (max_len, slot_bits, tables) = self.tables(batch, tokens.max_len, 3)?;
        let cfg = launch::row_grid(batch, 1, BLOCK_THREADS)?;
        let func = self.function(Kernel::new("edits", "bias", T::DTYPE))?;

        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let logits_addr = ptrs.write(&mut logits.data);
        let tokens_addr = ptrs.read(&tokens.tokens);
        let values_addr = ptrs.read(values);
        let lengths_addr = ptrs.read_opt(tokens.lengths.as_ref());
        let status_addr = ptrs.write_opt(status);
        let (stride, vocab) = (logits.stride as u64, vocab as u32);
        let mut b = Args::new();
        b.arg(&logits_addr)
            .arg(&stride)
            .arg(&vocab)
            .arg(&tokens_addr)
            .arg(&values_addr)
            .arg(&max_len)
            .arg(&lengths_addr)
            .arg(&slot_bits)
            .arg(&tables)
            .arg(&status_addr);
        // SAFETY: the arguments match samplex_edits_bias_<T>'s C signature in order and type;
        // `logits` holds `batch` rows of `stride` (≥ vocab) elements, `tokens` and `values` batch
        // × max_len entries (and `batch` lengths), `status` `batch` (checked); the ticket area
        // holds batch × 3 × 2^slot_bits words, zero, and the kernel leaves them zero.
        unsafe { b.launch(&func, &stream, cfg) }
    }

    /// A padded per-row token list (a history, a bias's tokens): `batch × max_len` ids and
    /// `batch` lengths, on this device.
    fn check_lists(&self, lists: &DeviceHistory<'_>, batch: usize) -> Result<()> {
        check_history(
            lists.tokens.len(),
            lists.max_len,
            lists.lengths.as_ref().map(|l| l.len()),
            batch,
        )?;
        self.check_device("history tokens", &lists.tokens)?;
        match &lists.lengths {
            Some(l) => self.check_device("history lengths", l),
            None => Ok(()),
        }
    }

    /// The per-row hash tables of lists of `max_len` tokens, in the ticket area: 2^slot_bits ≥
    /// 2 · max_len slots (at least 2) of `words` u32 each per row. Returns (max_len, slot_bits,
    /// the tables' address).
    fn tables(&mut self, batch: usize, max_len: usize, words: usize) -> Result<(u32, u32, u64)> {
        let too_long = |range| Error::BadParam {
            name: "max_len",
            value: max_len as f64,
            range,
        };
        let len = u32::try_from(max_len)
            .ok()
            .filter(|&m| m < 1 << 30)
            .ok_or(too_long("< 2^30"))?;
        let slot_bits = (2 * len).max(2).next_power_of_two().trailing_zeros();
        let table_words = batch
            .checked_mul(words << slot_bits)
            .ok_or(too_long("such that the rows' tables fit in memory"))?;
        Ok((len, slot_bits, self.scratch(0, table_words)?.tickets))
    }
}
