//! Wrappers for kernels/softmax.cu: temperature softmax, greedy, sampling from logits and from
//! probabilities.
//!
//! Every wrapper has one shape: validate (SPEC "Bad input") → choose the config (vector width
//! from the buffer's address and stride, `launch::blocks_per_row` from the batch and the SM
//! count) → load the function → scratch for split rows → push the arguments in the kernel's
//! C-signature order → launch on the sampler's stream. Nothing synchronises the host, and
//! nothing allocates (device or host) once the op has run at the shape.
//!
//! | kernel                               | C arguments (after the pointer to the rows)                              |
//! |--------------------------------------|---------------------------------------------------------------------------|
//! | `samplex_softmax_stats_<T>`          | stride, vocab, τ, τ\[\], parts, partials                                |
//! | `samplex_softmax_probs_<T>`          | stride, vocab, τ, τ\[\], parts, partials, probs, log_probs, status      |
//! | `samplex_softmax_probs_staged_<T>`   | stride, vocab, τ, τ\[\], probs, log_probs, status (a cluster per row, sm_90) |
//! | `samplex_softmax_token_log_probs_<T>` | stride, vocab, τ, τ\[\], tokens, n, parts, partials, tickets, log_probs, status |
//! | `samplex_softmax_greedy_<T>`         | stride, vocab, parts, partials, tickets, tokens, status                  |
//! | `samplex_softmax_sample_<T>`         | stride, vocab, τ, τ\[\], seed, offset, seeds\[\], offsets\[\], parts, partials, tickets, tokens, status |
//! | `samplex_softmax_sample_probs_f32`   | stride, vocab, seed, offset, seeds\[\], offsets\[\], parts, partials, tickets, tokens, status |
//! | `samplex_softmax_sample_probs_n_f32` | stride, vocab, seed, offset, seeds\[\], offsets\[\], first_draw, draws, per_row, parts, partials, tickets, tokens, status |
//! | `samplex_softmax_verify_draft_f32`   | (draft probs,) draft tokens, lens, target probs, vocab, drafts, seed, offset, seeds\[\], offsets\[\], parts, partials, tickets, tokens, accepted, status |
//! | `samplex_softmax_row_stats_<T>`      | stride, vocab, τ, τ\[\], group, lens, parts, partials, tickets, stats      |
//! | `samplex_softmax_verify_draft_logits_<T>` | (draft probs,) draft tokens, lens, logits, stride, vocab, τ, τ\[\], stats, drafts, seed, offset, seeds\[\], offsets\[\], parts, partials, tickets, tokens, accepted, status |
//!
//! Each has an `_any` twin for rows that are not 16-byte aligned: the same 16-byte loads from
//! the boundary below each row's start, shifted in registers. Optional buffers are raw
//! addresses, 0 when absent; a split row (parts > 1) needs 16 bytes of scratch per (row, part)
//! and one ticket per row.

use cudarc::driver::{CudaFunction, CudaView, CudaViewMut, LaunchConfig};

use super::launch::{self, Args, Kernel, KernelArgs, LaunchEx, Pointers, SeedArgs, BLOCK_THREADS};
use super::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use crate::batch::{check_shape, tokens_per_row, DraftLayout};
use crate::cpu::speculative::{check_draft_shape, Target};
use crate::decoder::check_temperature;
use crate::dtype::{DType, Logit};
use crate::error::{Error, Result};

/// Why the softmax ops refuse per-row top-k/top-p/min-p (`RowParams::refuse_filters`).
const NO_FILTERS: &str = "they need a filtered decoder (Sampler::sample / Sampler::distribution)";

/// Bytes of one (row, part) partial result in the scratch (`Partial` in kernels/softmax.cu).
const PARTIAL_BYTES: usize = 16;

/// Draws per row in one launch of `samplex_softmax_sample_probs_n` (`MAX_DRAWS` there: one per
/// thread of a block).
const MAX_DRAWS: u32 = 256;

/// The most draft tokens a row may have in [`Sampler::verify_draft`] (one per thread of a
/// block in `samplex_softmax_verify_draft`).
pub const MAX_DRAFTS: usize = 256;

/// Bytes of one row's statistics in the scratch (`RowStats` in kernels/softmax.cu), as
/// `samplex_softmax_row_stats` writes them for [`Sampler::verify_draft_logits`].
const ROW_STATS_BYTES: usize = 16;

/// Bytes of a staged block's head (its `RowStats` in kernels/softmax.cu), before its tiles.
const STAGED_HEAD_BYTES: usize = 16;

/// The cluster sizes the staged probabilities kernel may use, smallest first.
const STAGED_CLUSTERS: [u32; 3] = [2, 4, 8];

/// The most draw tiles a staged block holds (8 KiB each: 80 KiB, so that two blocks share an
/// SM and one's loads overlap the other's stores). Rows of up to 8 × 10 tiles (163840 tokens)
/// can be staged.
const STAGED_MAX_TILES: usize = 10;

/// Whether `Sampler::softmax` may hold each row in a cluster's shared memory (sm_90), so that
/// it reads the logits once instead of twice (tests and benchmarks set it).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staging {
    /// Where the two-read paths' second read would miss L2: more than half the L2 is read
    /// between a token's two reads (the default).
    Auto,
    /// Whenever the device, the kernel and the row's size allow it.
    Always,
    /// Never: the two-read paths.
    Never,
}

/// The arguments every softmax-family statistics/probabilities kernel starts with, in order:
/// the logits, their row stride, vocab, the scalar τ and the per-row τ buffer (0 = none).
struct RowArgs {
    logits: u64,
    stride: u64,
    vocab: u32,
    temperature: f32,
    temps: u64,
}

impl RowArgs {
    fn new<'a, T: Logit>(
        ptrs: &mut Pointers<'a>,
        logits: &'a DeviceLogits<'_, T>,
        temperature: f32,
        rows: &'a RowParams<'_>,
    ) -> Self {
        RowArgs {
            logits: ptrs.read(&logits.data),
            stride: logits.stride as u64,
            vocab: logits.vocab as u32,
            temperature,
            temps: ptrs.read_opt(rows.temperature.as_ref()),
        }
    }

    fn push<'a>(&'a self, b: &mut Args<'a>) {
        b.arg(&self.logits)
            .arg(&self.stride)
            .arg(&self.vocab)
            .arg(&self.temperature)
            .arg(&self.temps);
    }
}

/// Rows split over `parts` blocks each (`launch::blocks_per_row`): the grid of batch × parts
/// blocks of 256 threads, and where a row's blocks meet: a 16-byte partial per (row, part) and
/// a ticket per row in the scratch (0 and 0 when parts is 1).
struct SplitRows {
    parts: u32,
    cfg: LaunchConfig,
    partials: u64,
    tickets: u64,
}

impl SplitRows {
    /// parts, partials, tickets: in this order in every kernel that takes the three.
    fn push<'a>(&'a self, b: &mut Args<'a>) {
        b.arg(&self.parts).arg(&self.partials).arg(&self.tickets);
    }
}

/// The arguments both verification kernels take besides their target, as addresses (0 for an
/// absent buffer): in C-signature order, the draft (rows, tokens, layout: lengths, packed
/// starts, how many draft tokens) before the target, and after it the padded draft length, the
/// seeds, the split and the outputs (tokens, accepted, status).
struct DraftArgs {
    draft: u64,
    draft_tokens: u64,
    layout: LayoutArgs,
    drafts: u32,
    rng: SeedArgs,
    tokens: u64,
    accepted: u64,
    status: u64,
}

/// A verification's draft: its distributions (None: one-hot drafts), tokens and layout.
type Draft<'a, 'b> = (
    Option<&'a CudaView<'b, f32>>,
    &'a CudaView<'b, u32>,
    DraftLayout<&'a CudaView<'b, u32>>,
);

/// A draft layout as the kernels take it (`draft_span` in kernels/softmax.cu): the lengths or
/// the packed starts (0 when absent), and the draft's token count.
struct LayoutArgs {
    lens: u64,
    starts: u64,
    total: u32,
}

impl LayoutArgs {
    fn new<'a>(
        ptrs: &mut Pointers<'a>,
        layout: DraftLayout<&'a CudaView<'_, u32>>,
        total: usize,
    ) -> Self {
        let (lens, starts) = match layout {
            DraftLayout::Padded => (None, None),
            DraftLayout::Lengths(lens) => (Some(lens), None),
            DraftLayout::Packed { starts, .. } => (None, Some(starts)),
        };
        LayoutArgs {
            lens: ptrs.read_opt(lens),
            starts: ptrs.read_opt(starts),
            total: total as u32, // checked to fit by check_draft
        }
    }

    /// lens, starts, total: in this order in every kernel that takes them.
    fn push<'a>(&'a self, b: &mut Args<'a>) {
        b.arg(&self.lens).arg(&self.starts).arg(&self.total);
    }
}

/// A verification's outputs: tokens, accepted counts, status.
type Verdicts<'a, 'b, 'c, 'd> = (
    &'a mut CudaViewMut<'b, u32>,
    &'a mut CudaViewMut<'c, u32>,
    Option<&'a mut CudaViewMut<'d, u32>>,
);

impl DraftArgs {
    fn new<'a>(
        ptrs: &mut Pointers<'a>,
        (draft_probs, draft_tokens, layout): Draft<'a, '_>,
        drafts: usize,
        seeds: &'a DeviceSeeds<'_>,
        (tokens, accepted, status): Verdicts<'a, '_, '_, '_>,
    ) -> Self {
        DraftArgs {
            draft: ptrs.read_opt(draft_probs),
            draft_tokens: ptrs.read(draft_tokens),
            layout: LayoutArgs::new(ptrs, layout, draft_tokens.len()),
            drafts: drafts as u32,
            rng: SeedArgs::new(ptrs, Some(seeds)),
            tokens: ptrs.write(tokens),
            accepted: ptrs.write(accepted),
            status: ptrs.write_opt(status),
        }
    }

    /// The draft's rows, tokens and layout.
    fn push_draft<'a>(&'a self, b: &mut Args<'a>) {
        b.arg(&self.draft).arg(&self.draft_tokens);
        self.layout.push(b);
    }

    /// The draft length, the seeds, `split`'s arguments and the outputs.
    fn push_rest<'a>(&'a self, b: &mut Args<'a>, split: &'a SplitRows) {
        b.arg(&self.drafts);
        self.rng.push(b);
        split.push(b);
        b.arg(&self.tokens).arg(&self.accepted).arg(&self.status);
    }
}

impl Sampler {
    /// The split of `batch` rows of `vocab` tokens, with its scratch.
    fn split_rows(&mut self, batch: usize, vocab: usize) -> Result<SplitRows> {
        self.split_rows_with(batch, vocab, 1)
    }

    /// [`Sampler::split_rows`] with `per_part` partials per (row, part).
    fn split_rows_with(
        &mut self,
        batch: usize,
        vocab: usize,
        per_part: usize,
    ) -> Result<SplitRows> {
        let parts = launch::blocks_per_row(batch, vocab, self.sm_count);
        let cfg = launch::row_grid(batch, parts, BLOCK_THREADS)?;
        let (partials, tickets) = if parts > 1 {
            let s = self.scratch(batch * parts as usize * per_part * PARTIAL_BYTES, batch)?;
            (s.base, s.tickets)
        } else {
            (0, 0)
        };
        Ok(SplitRows {
            parts,
            cfg,
            partials,
            tickets,
        })
    }

    /// The draws from probabilities: `batch` dense rows of `vocab` on this device, seeds for
    /// `batch` rows.
    fn check_probs(
        &self,
        probs: &CudaView<'_, f32>,
        batch: usize,
        vocab: usize,
        seeds: &DeviceSeeds<'_>,
    ) -> Result<()> {
        check_shape("probs", probs.len(), batch, vocab, vocab)?;
        self.check_device("probs", probs)?;
        seeds.check(batch, self)
    }

    /// Sets when [`Sampler::softmax`] stages rows in shared memory ([`Staging`]).
    #[doc(hidden)]
    pub fn set_softmax_staging(&mut self, staging: Staging) {
        self.softmax_staging = staging;
    }

    /// The blocks per row of the staged probabilities kernel for a `softmax` call of this
    /// shape on `T` logits (16-byte vector loads), or `None` for the two-read paths.
    ///
    /// # Errors
    /// [`Error::Driver`] when a driver query fails.
    #[doc(hidden)]
    pub fn softmax_staged_blocks<T: Logit>(
        &mut self,
        batch: usize,
        vocab: usize,
    ) -> Result<Option<u32>> {
        let vec = launch::vector_width::<T>(0, vocab.next_multiple_of(16));
        Ok(self
            .staged_path::<T>(batch, vocab, vec)?
            .map(|(_, blocks, _)| blocks))
    }

    /// (function, blocks per row, dynamic shared memory per block) of the staged probabilities
    /// kernel, or `None`: the staging setting allows it, a cluster size holds the row in at most
    /// `STAGED_MAX_TILES` tiles per block, and such clusters can run here (sm_90, a kernel
    /// built for it, the shared memory: `cluster_fits`, which also raises the function's
    /// dynamic shared memory maximum).
    fn staged_path<T: Logit>(
        &mut self,
        batch: usize,
        vocab: usize,
        vec: u32,
    ) -> Result<Option<(CudaFunction, u32, usize)>> {
        // The bytes read between a token's first and second read on the two-read paths: the
        // whole batch when the statistics are a launch of their own (parts > 1), else the rows
        // in flight at once (about 8 blocks of 256 threads per SM).
        let parts = launch::blocks_per_row(batch, vocab, self.sm_count);
        let rows_between = if parts > 1 {
            batch
        } else {
            batch.min(8 * self.sm_count as usize)
        };
        let misses_l2 = rows_between.saturating_mul(vocab * T::DTYPE.size()) > self.l2_bytes / 2;
        let wanted = match self.softmax_staging {
            Staging::Never => false,
            Staging::Always => true,
            Staging::Auto => misses_l2,
        };
        let tiles = vocab.div_ceil(launch::DRAW_TILE);
        let Some(blocks) = STAGED_CLUSTERS
            .into_iter()
            .find(|&c| tiles.div_ceil(c as usize) <= STAGED_MAX_TILES)
            .filter(|_| wanted)
        else {
            return Ok(None);
        };
        let shared = STAGED_HEAD_BYTES + tiles.div_ceil(blocks as usize) * launch::DRAW_TILE * 4;
        let func = self.function(launch::entry("softmax", "probs_staged", T::DTYPE, vec))?;
        let fits = self.cluster_fits(&func, blocks, BLOCK_THREADS, shared)?;
        Ok(fits.then_some((func, blocks, shared)))
    }

    /// probs = softmax(z/τ) per row (dense `batch × vocab`), and log-probabilities when asked.
    /// τ is `temperature`, or `rows.temperature[r]` when given; a τ = 0 row is one-hot at its
    /// argmax (its log-probabilities are 0 there and −∞ elsewhere).
    ///
    /// Edge cases: NaN logits count as −∞ and +∞ as the largest finite f32 (flagged in
    /// `status`); a row with no finite logit gets probabilities 0, log-probabilities −∞ and
    /// [`crate::status::NO_FINITE_LOGIT`]. A per-row τ that is negative, NaN or +∞ is clamped
    /// (to 0, 1 and f32::MAX) and flagged with [`crate::status::PARAM_CLAMPED`]. Small batches
    /// split each row over several blocks (two launches: statistics, then probabilities). On
    /// sm_90, a batch whose second read of the logits would miss L2 holds each row of up to
    /// 163840 tokens in a thread-block cluster's shared memory instead, and reads it once.
    ///
    /// # Errors
    /// [`Error::BadParam`] for τ < 0, NaN or ∞; [`Error::BadLength`] when `probs` or
    /// `log_probs` is not `batch × vocab`, or `status` / `rows.temperature` not `batch`;
    /// [`Error::WrongDevice`]; [`Error::Unsupported`] for per-row top-k/top-p/min-p in `rows`;
    /// [`Error::Driver`] when a launch fails.
    pub fn softmax<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        rows: &RowParams<'_>,
        probs: &mut CudaViewMut<'_, f32>,
        log_probs: Option<&mut CudaViewMut<'_, f32>>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // 1. Validate.
        let (batch, vocab) = (logits.batch, logits.vocab);
        check_temperature(temperature)?;
        rows.refuse_filters("softmax", NO_FILTERS)?;
        self.check_device("logits", &logits.data)?;
        self.check_buffer("probs", &*probs, batch * vocab)?;
        self.check_opt_buffer("log_probs", log_probs.as_deref(), batch * vocab)?;
        self.check_opt_buffer("status", status.as_deref(), batch)?;
        rows.check(batch, self)?;

        // 2. Config: rows staged in a cluster, or split rows of small batches (scratch for their
        //    partials), or one block per row.
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let lead = RowArgs::new(&mut ptrs, logits, temperature, rows);
        let vec = launch::vector_width::<T>(lead.logits, logits.stride);
        let probs_addr = ptrs.write(probs);
        let log_probs_addr = ptrs.write_opt(log_probs);
        let status_addr = ptrs.write_opt(status);
        if let Some((func, blocks, shared)) = self.staged_path::<T>(batch, vocab, vec)? {
            launch::row_grid(batch, blocks, BLOCK_THREADS)?; // batch × blocks < 2^31, as for a split row
            let mut b = Args::new();
            lead.push(&mut b);
            b.arg(&probs_addr).arg(&log_probs_addr).arg(&status_addr);
            let mut launch = LaunchEx::cluster(
                blocks,
                batch as u32,
                BLOCK_THREADS,
                shared as u32,
                stream.cu_stream(),
            );
            // SAFETY: the arguments match samplex_softmax_probs_staged_<T>'s C signature in
            // order and type; `logits` was checked to hold `batch` rows of `stride` (≥ vocab)
            // elements, the per-row τ buffer and `status` `batch` entries, `probs` and
            // `log_probs` batch × vocab values; the launch is one cluster of `blocks` blocks of
            // 256 threads per row, each with `shared` bytes of dynamic shared memory: the head
            // and ceil(tiles / blocks) staged tiles, as staged_path checked with cluster_fits
            // (which raised the function's maximum to it); the vector width fits the address and
            // stride.
            unsafe { launch.queue(self.context(), &func, &mut b) }?;
            return Ok(());
        }
        let split = self.split_rows(batch, vocab)?;
        let stats = if split.parts > 1 {
            Some(self.function(launch::entry("softmax", "stats", T::DTYPE, vec))?)
        } else {
            None
        };
        let func = self.function(launch::entry("softmax", "probs", T::DTYPE, vec))?;

        // 3. Arguments in C-signature order: `lead` and the buffers' addresses (above).

        // 4. Launch.
        if let Some(stats) = stats {
            let mut b = Args::new();
            lead.push(&mut b);
            b.arg(&split.parts).arg(&split.partials);
            // SAFETY: the arguments match samplex_softmax_stats_<T>'s C signature in order and
            // type; `logits` was checked to hold `batch` rows of `stride` (≥ vocab) elements, the
            // per-row τ buffer to have `batch` entries, and the scratch holds batch × parts
            // partials (split_rows); the grid is batch × parts blocks of 256 threads, as the
            // kernel's row/part mapping assumes, and the vector width was chosen from the
            // address and stride (launch::vector_width).
            unsafe { b.launch(&stats, &stream, split.cfg) }?;
        }
        let mut b = Args::new();
        lead.push(&mut b);
        b.arg(&split.parts)
            .arg(&split.partials)
            .arg(&probs_addr)
            .arg(&log_probs_addr)
            .arg(&status_addr);
        // SAFETY: as for the statistics launch; in addition `probs` and `log_probs` were checked
        // to hold batch × vocab values and `status` batch, and with parts > 1 the statistics
        // kernel queued just before on this stream has written the partials this one reads.
        unsafe { b.launch(&func, &stream, split.cfg) }?;
        Ok(())
    }

    /// The argmax of every row, ties to the lowest index.
    ///
    /// Edge cases: NaN counts as −∞ and +∞ as the largest finite f32 (flagged in `status`); a
    /// row with no finite logit gets [`crate::status::NO_TOKEN`] and
    /// [`crate::status::NO_FINITE_LOGIT`].
    ///
    /// # Errors
    /// [`Error::BadLength`] when `tokens` or `status` does not have `batch` entries;
    /// [`Error::WrongDevice`]; [`Error::Driver`] when the launch fails.
    pub fn greedy<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        tokens: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // 1. Validate.
        let (batch, vocab) = (logits.batch, logits.vocab);
        self.check_device("logits", &logits.data)?;
        self.check_buffer("tokens", &*tokens, batch)?;
        self.check_opt_buffer("status", status.as_deref(), batch)?;

        // 2. Config.
        let split = self.split_rows(batch, vocab)?;
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let logits_addr = ptrs.read(&logits.data);
        let vec = launch::vector_width::<T>(logits_addr, logits.stride);
        let func = self.function(launch::entry("softmax", "greedy", T::DTYPE, vec))?;

        // 3. Arguments in C-signature order.
        let tokens_addr = ptrs.write(tokens);
        let status_addr = ptrs.write_opt(status);
        let (stride, vocab) = (logits.stride as u64, vocab as u32);
        let mut b = Args::new();
        b.arg(&logits_addr).arg(&stride).arg(&vocab);
        split.push(&mut b);
        b.arg(&tokens_addr).arg(&status_addr);
        // SAFETY: the arguments match samplex_softmax_greedy_<T>'s C signature in order and
        // type; `logits` holds `batch` rows of `stride` (≥ vocab) elements, `tokens` and
        // `status` were checked to have `batch` entries; with parts > 1 the scratch holds
        // batch × parts partials and `batch` tickets, which are zero and left at zero; the grid
        // is batch × parts blocks of 256 threads and the vector width fits the address and stride.
        unsafe { b.launch(&func, &stream, split.cfg) }?;
        Ok(())
    }

    /// One token per row from softmax(z/τ), reading the logits once (the tiled draw of
    /// ARCHITECTURE.md "Drawing a token"). τ = 0 rows are greedy in the same launch.
    ///
    /// With [`DeviceSeeds::Shared`] row r draws from stream r of the shared (seed, offset);
    /// with [`DeviceSeeds::Each`] every row has its own (seed, offset) and stream 0, so its
    /// token does not depend on its position in the batch. The tokens match
    /// [`crate::cpu::sample`] with the same seeds except within 1e-5 of a CDF boundary.
    ///
    /// Edge cases: as [`Sampler::softmax`]; a row with no finite logit gets
    /// [`crate::status::NO_TOKEN`] and [`crate::status::NO_FINITE_LOGIT`].
    ///
    /// # Errors
    /// [`Error::BadParam`] for τ < 0, NaN or ∞; [`Error::BadLength`] when `tokens`, `status`,
    /// `rows.temperature` or the per-row seeds/offsets do not have `batch` entries;
    /// [`Error::WrongDevice`]; [`Error::Unsupported`] for per-row filters in `rows`;
    /// [`Error::Driver`] when the launch fails.
    pub fn sample_softmax<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        rows: &RowParams<'_>,
        seeds: &DeviceSeeds<'_>,
        tokens: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // 1. Validate.
        let (batch, vocab) = (logits.batch, logits.vocab);
        check_temperature(temperature)?;
        rows.refuse_filters("sample_softmax", NO_FILTERS)?;
        self.check_device("logits", &logits.data)?;
        rows.check(batch, self)?;
        seeds.check(batch, self)?;
        self.check_buffer("tokens", &*tokens, batch)?;
        self.check_opt_buffer("status", status.as_deref(), batch)?;

        // 2. Config.
        let split = self.split_rows(batch, vocab)?;
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let lead = RowArgs::new(&mut ptrs, logits, temperature, rows);
        let vec = launch::vector_width::<T>(lead.logits, logits.stride);
        let func = self.function(launch::entry("softmax", "sample", T::DTYPE, vec))?;

        // 3. Arguments in C-signature order.
        let rng = SeedArgs::new(&mut ptrs, Some(seeds));
        let tokens_addr = ptrs.write(tokens);
        let status_addr = ptrs.write_opt(status);
        let mut b = Args::new();
        lead.push(&mut b);
        rng.push(&mut b);
        split.push(&mut b);
        b.arg(&tokens_addr).arg(&status_addr);
        // SAFETY: the arguments match samplex_softmax_sample_<T>'s C signature in order and
        // type; `logits` holds `batch` rows of `stride` (≥ vocab) elements; `tokens`, `status`,
        // the per-row τ and the per-row seeds and offsets were checked to have `batch` entries
        // on this device; with parts > 1 the scratch holds batch × parts partials and `batch`
        // zeroed tickets (the kernel leaves them at zero); the grid is batch × parts blocks of
        // 256 threads and the vector width fits the address and stride.
        unsafe { b.launch(&func, &stream, split.cfg) }?;
        Ok(())
    }

    /// log softmax(z/τ) at `n` given tokens per row, without writing the `batch × vocab`
    /// distribution: what a server returns as the sampled token's log-probability, or, fed the
    /// indices of [`Sampler::top_k_select`], the top-n log-probabilities. `tokens` and
    /// `log_probs` are `batch × n` (row-major, n ≥ 1). The logits are read once and the n
    /// tokens once more; the values are bit for bit those [`Sampler::softmax`] writes to its
    /// `log_probs` on the two-read paths.
    ///
    /// τ is `temperature`, or `rows.temperature[r]` when given. A τ = 0 row is greedy: 0 at
    /// its argmax, −∞ elsewhere. A token ≥ vocab (such as [`crate::status::NO_TOKEN`]) gets −∞
    /// and [`crate::status::PARAM_CLAMPED`]. Other edge cases as [`Sampler::softmax`]: a row
    /// with no finite logit gets −∞ and [`crate::status::NO_FINITE_LOGIT`].
    ///
    /// # Errors
    /// [`Error::BadParam`] for τ < 0, NaN or ∞; [`Error::BadLength`] when `tokens` is not a
    /// non-empty multiple of `batch` long, `log_probs` not as long as `tokens`, or `status` /
    /// `rows.temperature` not `batch`; [`Error::WrongDevice`]; [`Error::Unsupported`] for
    /// per-row top-k/top-p/min-p in `rows`; [`Error::Driver`] when the launch fails.
    pub fn token_log_probs<T: Logit>(
        &mut self,
        logits: &DeviceLogits<'_, T>,
        temperature: f32,
        rows: &RowParams<'_>,
        tokens: &CudaView<'_, u32>,
        log_probs: &mut CudaViewMut<'_, f32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // 1. Validate.
        let (batch, vocab) = (logits.batch, logits.vocab);
        check_temperature(temperature)?;
        rows.refuse_filters("token_log_probs", NO_FILTERS)?;
        self.check_device("logits", &logits.data)?;
        let per_row = tokens_per_row(tokens.len(), batch)?;
        self.check_device("tokens", tokens)?;
        self.check_buffer("log_probs", &*log_probs, tokens.len())?;
        self.check_opt_buffer("status", status.as_deref(), batch)?;
        rows.check(batch, self)?;

        // 2. Config.
        let split = self.split_rows(batch, vocab)?;
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let lead = RowArgs::new(&mut ptrs, logits, temperature, rows);
        let vec = launch::vector_width::<T>(lead.logits, logits.stride);
        let func = self.function(launch::entry("softmax", "token_log_probs", T::DTYPE, vec))?;

        // 3. Arguments in C-signature order.
        let tokens_addr = ptrs.read(tokens);
        let out_addr = ptrs.write(log_probs);
        let status_addr = ptrs.write_opt(status);
        let mut b = Args::new();
        lead.push(&mut b);
        b.arg(&tokens_addr).arg(&per_row);
        split.push(&mut b);
        b.arg(&out_addr).arg(&status_addr);
        // SAFETY: the arguments match samplex_softmax_token_log_probs_<T>'s C signature in
        // order and type; `logits` holds `batch` rows of `stride` (≥ vocab) elements; `tokens`
        // and `log_probs` were checked to hold batch × per_row entries, `status` and the per-row
        // τ `batch`, all on this device; with parts > 1 the scratch holds batch × parts partials
        // and `batch` zeroed tickets (the kernel leaves them at zero); the grid is batch × parts
        // blocks of 256 threads and the vector width fits the address and stride.
        unsafe { b.launch(&func, &stream, split.cfg) }?;
        Ok(())
    }

    /// One token per row from given probabilities (dense `batch × vocab`, ≥ 0, need not sum
    /// to 1), with the same tiled draw and random stream as [`Sampler::sample_softmax`]
    /// (log-scale 0, the values as weights).
    ///
    /// Edge cases: NaN and negative entries weigh 0 (NaN is flagged with
    /// [`crate::status::NAN_LOGIT`]), +∞ weighs f32::MAX (flagged with
    /// [`crate::status::POS_INF_LOGIT`]); a row with no positive entry gets
    /// [`crate::status::NO_TOKEN`] and [`crate::status::NO_FINITE_LOGIT`].
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::BadVocab`], [`Error::BadLength`] for the shape, `tokens`,
    /// `status` or per-row seeds; [`Error::WrongDevice`]; [`Error::Driver`] when the launch fails.
    pub fn sample_from_probs(
        &mut self,
        probs: &CudaView<'_, f32>,
        batch: usize,
        vocab: usize,
        seeds: &DeviceSeeds<'_>,
        tokens: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // 1. Validate.
        self.check_probs(probs, batch, vocab, seeds)?;
        self.check_buffer("tokens", &*tokens, batch)?;
        self.check_opt_buffer("status", status.as_deref(), batch)?;

        // 2. Config.
        let split = self.split_rows(batch, vocab)?;
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let probs_addr = ptrs.read(probs);
        let vec = launch::vector_width::<f32>(probs_addr, vocab);
        let func = self.function(launch::entry("softmax", "sample_probs", DType::F32, vec))?;

        // 3. Arguments in C-signature order.
        let rng = SeedArgs::new(&mut ptrs, Some(seeds));
        let tokens_addr = ptrs.write(tokens);
        let status_addr = ptrs.write_opt(status);
        let (stride, vocab) = (vocab as u64, vocab as u32);
        let mut b = Args::new();
        b.arg(&probs_addr).arg(&stride).arg(&vocab);
        rng.push(&mut b);
        split.push(&mut b);
        b.arg(&tokens_addr).arg(&status_addr);
        // SAFETY: the arguments match samplex_softmax_sample_probs_f32's C signature in order
        // and type; `probs` was checked to hold `batch` dense rows of `vocab` values; `tokens`,
        // `status` and the per-row seeds and offsets have `batch` entries on this device; with
        // parts > 1 the scratch holds batch × parts partials and `batch` zeroed tickets (left at
        // zero); the grid is batch × parts blocks of 256 threads and the vector width fits the
        // address and the row length.
        unsafe { b.launch(&func, &stream, split.cfg) }?;
        Ok(())
    }

    /// n tokens per row from given probabilities, the row read once: `tokens` is `batch × n`
    /// (row-major, n ≥ 1, n = `tokens.len() / batch`). Token j of row r is the one
    /// [`Sampler::sample_from_probs`] draws for that row at offset + j (wrapping), so the draws
    /// are independent, and a serving loop that draws n per step advances its offsets by n.
    /// What BoK's pipelines want: q from [`Sampler::bok`] (or any distribution), then K draws
    /// for the price of one read. Edge cases and `status` as [`Sampler::sample_from_probs`].
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::BadVocab`], [`Error::BadLength`] for the shape, for
    /// `tokens` when it is not a non-empty multiple of `batch` long, for `status` or the per-row
    /// seeds; [`Error::WrongDevice`]; [`Error::Driver`] when a launch fails.
    pub fn sample_from_probs_n(
        &mut self,
        probs: &CudaView<'_, f32>,
        batch: usize,
        vocab: usize,
        seeds: &DeviceSeeds<'_>,
        tokens: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // 1. Validate.
        self.check_probs(probs, batch, vocab, seeds)?;
        let per_row = tokens_per_row(tokens.len(), batch)?;
        self.check_device("tokens", &*tokens)?;
        self.check_opt_buffer("status", status.as_deref(), batch)?;

        // 2. Config: the draws go in launches of at most MAX_DRAWS (one per thread of a block),
        // each with (row, part, draw) partials when rows are split.
        let chunk = per_row.min(MAX_DRAWS);
        let split = self.split_rows_with(batch, vocab, chunk as usize)?;
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let probs_addr = ptrs.read(probs);
        let vec = launch::vector_width::<f32>(probs_addr, vocab);
        let func = self.function(launch::entry("softmax", "sample_probs_n", DType::F32, vec))?;

        // 3. Arguments in C-signature order, one launch per chunk of draws.
        let rng = SeedArgs::new(&mut ptrs, Some(seeds));
        let tokens_addr = ptrs.write(tokens);
        let status_addr = ptrs.write_opt(status);
        let (stride, vocab) = (vocab as u64, vocab as u32);
        for first in (0..per_row).step_by(MAX_DRAWS as usize) {
            let draws = chunk.min(per_row - first);
            let mut b = Args::new();
            b.arg(&probs_addr).arg(&stride).arg(&vocab);
            rng.push(&mut b);
            b.arg(&first).arg(&draws).arg(&per_row);
            split.push(&mut b);
            b.arg(&tokens_addr).arg(&status_addr);
            // SAFETY: the arguments match samplex_softmax_sample_probs_n_f32's C signature in
            // order and type; `probs` was checked to hold `batch` dense rows of `vocab` values;
            // `tokens` holds batch × per_row entries and first + draws ≤ per_row; `status` and
            // the per-row seeds and offsets have `batch` entries on this device; with parts > 1
            // the scratch holds batch × parts × chunk ≥ draws partials and `batch` zeroed
            // tickets (each launch leaves them at zero, and the launches are ordered on the
            // stream); the grid is batch × parts blocks of 256 threads, draws ≤ 256, and the
            // vector width fits the address and the row length.
            unsafe { b.launch(&func, &stream, split.cfg) }?;
        }
        Ok(())
    }

    /// Speculative decoding's verification step: keeps the longest prefix of each row's draft
    /// that the target model accepts and draws one more token, so that every emitted token is
    /// distributed as the target model's own draw (Leviathan et al., 2023; Chen et al., 2023).
    ///
    /// Request r has n_r draft tokens (`draft_tokens`), the draft model's distributions they
    /// were drawn from (`draft_probs`, a row of `vocab` per draft token) and the target
    /// model's n_r + 1 (`target_probs`: at each draft position and after the last), all
    /// dense, row-major, where `layout` puts them ([`DraftLayout`]):
    /// - [`DraftLayout::Padded`]: n slots per request (batch × n tokens, n =
    ///   `draft_tokens.len() / batch`), batch × n × vocab and batch × (n + 1) × vocab, and
    ///   n_r = n;
    /// - [`DraftLayout::Lengths`]`(lens)`: padded, and n_r = `lens[r]` (batch values), so that
    ///   requests with fewer drafts (or none) share a padded batch; slots past n_r are not read;
    /// - [`DraftLayout::Packed`]` { starts, max_drafts }`: as a flattened batch holds them, T
    ///   draft tokens, T × vocab and (T + batch) × vocab; request r's drafts are entries
    ///   `starts[r] .. starts[r + 1]` (batch + 1 values) and its target rows start at row
    ///   `starts[r] + r`; n = `max_drafts`.
    ///
    /// 0 ≤ n ≤ [`MAX_DRAFTS`]; a length above n is taken as n, and packed offsets out of order
    /// or past T are clamped into 0 ..= T, both flagged [`crate::status::PARAM_CLAMPED`].
    /// Drafts proposed without a distribution (n-gram or prompt lookup, a greedy draft model)
    /// pass `draft_probs: None`: q_i is one-hot at x_i, so draft i is accepted with chance
    /// p_i(x_i) and a rejected token is replaced from p_e without x_e, and no q is read.
    /// Draft i is accepted with chance min(1, p_i(x)/q_i(x)) (never when p_i(x) = 0); at the
    /// first rejection e the token is drawn from max(p_e − q_e, 0) (from p_e when that has no
    /// mass), and when all n_r are accepted from p_{n_r}, with [`Sampler::sample_from_probs`]'s
    /// draw at the row's offset + e. `tokens` (batch × (n + 1)) gets the accepted draft tokens,
    /// the drawn token, then [`crate::status::NO_TOKEN`]; `accepted` (batch) gets e, so a row
    /// emits e + 1 tokens. The acceptance tests read Philox words no draw reads, at offsets
    /// o .. o + n_r: a serving loop advances its offsets by n + 1 per step.
    /// [`crate::cpu::verify_draft`] is the reference, and says the method step by step.
    ///
    /// Probabilities are sanitised as in [`Sampler::sample_from_probs`]; a draft token ≥ vocab
    /// is rejected and flagged [`crate::status::PARAM_CLAMPED`]. The status bits cover what the
    /// row's verdict read (the tested draft entries up to e and the rows drawn from).
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::BadVocab`], [`Error::BadLength`] when a buffer does not
    /// fit the shape (n from `draft_tokens` or the packed `max_drafts`), or for the layout's
    /// `draft_lens` or `draft starts`, `tokens`, `accepted`, `status` or the per-row seeds;
    /// [`Error::BadParam`] for n > [`MAX_DRAFTS`] or a draft of 2^32 − batch tokens or more;
    /// [`Error::WrongDevice`];
    /// [`Error::Driver`] when the launch fails.
    #[allow(clippy::too_many_arguments)]
    pub fn verify_draft(
        &mut self,
        draft_probs: Option<&CudaView<'_, f32>>,
        draft_tokens: &CudaView<'_, u32>,
        layout: DraftLayout<&CudaView<'_, u32>>,
        target_probs: &CudaView<'_, f32>,
        batch: usize,
        vocab: usize,
        seeds: &DeviceSeeds<'_>,
        tokens: &mut CudaViewMut<'_, u32>,
        accepted: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // 1. Validate.
        let drafts = self.check_draft(
            draft_probs,
            draft_tokens,
            layout,
            Target::Probs(target_probs.len()),
            (batch, vocab),
            seeds,
            (&*tokens, &*accepted, status.as_deref()),
        )?;
        self.check_device("target_probs", target_probs)?;

        // 2. Config: both distributions' rows must allow 16-byte loads for the aligned kernel
        // (one-hot drafts: the target's alone; their address is 0).
        let split = self.split_rows(batch, vocab)?;
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let draft = (draft_probs, draft_tokens, layout);
        let args = DraftArgs::new(&mut ptrs, draft, drafts, seeds, (tokens, accepted, status));
        let target_addr = ptrs.read(target_probs);
        let vec = launch::vector_width::<f32>(args.draft | target_addr, vocab);
        let func = self.function(launch::entry("softmax", "verify_draft", DType::F32, vec))?;

        // 3. Arguments in C-signature order.
        let vocab = vocab as u32;
        let mut b = Args::new();
        args.push_draft(&mut b);
        b.arg(&target_addr).arg(&vocab);
        args.push_rest(&mut b, &split);
        // SAFETY: the arguments match samplex_softmax_verify_draft_f32's C signature in order
        // and type; `draft_probs` (or null: one-hot drafts, never read), `draft_tokens` and
        // `target_probs` were checked to hold E × vocab, E and (E + batch) × vocab values on
        // this device, E the draft's entries (batch × drafts padded; T packed, E + batch <
        // 2^32), and the layout's buffer (or 0) `batch` lengths or batch + 1 starts, which the
        // kernel's draft_span clamps so that a request's entries and target rows lie within
        // those (an empty draft is never read); `tokens`
        // holds batch × (drafts + 1) entries, `accepted`, `status` and the per-row seeds and
        // offsets `batch`; drafts ≤ 256 (one per thread); with parts > 1 the scratch holds batch
        // × parts partials and `batch` zeroed tickets (left at zero); the grid is batch × parts
        // blocks of 256 threads and the vector width fits both distributions' addresses (or the
        // target's alone) and the row length.
        unsafe { b.launch(&func, &stream, split.cfg) }?;
        Ok(())
    }

    /// [`Sampler::verify_draft`] on the target model's logits, with the temperature softmax
    /// fused: the target's p is never written, and the logits are read once (plus the row each
    /// token is drawn from, and the draft tokens' entries). For a serving step that would
    /// otherwise run [`Sampler::softmax`] on batch × (n + 1) rows and then verify, that saves
    /// writing and reading back batch × (n + 1) × vocab f32 values.
    ///
    /// `target_logits` holds the target rows where `layout` puts them (any stride and dtype):
    /// padded, batch × (n + 1) rows, row r's n + 1 in order; packed, T + batch rows, request
    /// r's n_r + 1 from row `starts[r] + r`. Row r's target distributions are
    /// softmax(z / τ_r) with τ_r = `rows.temperature[r]` when given (one per request), else
    /// `temperature`; τ = 0 makes them one-hot at the argmax (greedy verification). They are
    /// the values [`Sampler::softmax`] writes on its two-read paths, bit for bit, so the
    /// verdicts are those of `softmax` followed by [`Sampler::verify_draft`] on them (the
    /// same draws; [`crate::cpu::verify_draft_logits`] is the reference). Everything else is
    /// as [`Sampler::verify_draft`]; the status also has the softmax status bits (NaN or +∞
    /// logits, a clamped τ, no finite logit) of the target rows the verdict read (0 ..= e).
    ///
    /// Two launches on the sampler's stream: every target row's statistics (max and sum of
    /// exponentials, 16 bytes each, into the workspace), then the verification. With
    /// draft lengths, a row's target rows past its own draft (and the one after it) are not
    /// read.
    ///
    /// # Errors
    /// As [`Sampler::verify_draft`], with [`Error::BadLength`] named `target_logits rows`
    /// when the logits do not have the layout's rows; [`Error::BadParam`] for τ < 0, NaN
    /// or ∞; [`Error::BadLength`] for `rows.temperature` not `batch`; [`Error::Unsupported`]
    /// for per-row top-k/top-p/min-p in `rows`.
    #[allow(clippy::too_many_arguments)]
    pub fn verify_draft_logits<T: Logit>(
        &mut self,
        draft_probs: Option<&CudaView<'_, f32>>,
        draft_tokens: &CudaView<'_, u32>,
        layout: DraftLayout<&CudaView<'_, u32>>,
        target_logits: &DeviceLogits<'_, T>,
        temperature: f32,
        rows: &RowParams<'_>,
        batch: usize,
        seeds: &DeviceSeeds<'_>,
        tokens: &mut CudaViewMut<'_, u32>,
        accepted: &mut CudaViewMut<'_, u32>,
        status: Option<&mut CudaViewMut<'_, u32>>,
    ) -> Result<()> {
        // 1. Validate.
        let vocab = target_logits.vocab;
        let drafts = self.check_draft(
            draft_probs,
            draft_tokens,
            layout,
            Target::LogitRows(target_logits.batch),
            (batch, vocab),
            seeds,
            (&*tokens, &*accepted, status.as_deref()),
        )?;
        check_temperature(temperature)?;
        rows.refuse_filters("verify_draft_logits", NO_FILTERS)?;
        self.check_device("target_logits", &target_logits.data)?;
        rows.check(batch, self)?;

        // 2. Config: the statistics of batch × (n + 1) target slots (padded: the target rows;
        // packed: a request's slots past its n_r + 1 rows do nothing), then the verification of
        // batch rows, each split as its own row count asks. The workspace holds the
        // statistics, then the partials of whichever launch needs more (the two run one after
        // the other), and one ticket per row of the larger launch. The aligned verification
        // needs 16-byte loads on the logits and on the draft's rows (when given) alike.
        let targets = batch * (drafts + 1);
        let stats_parts = launch::blocks_per_row(targets, vocab, self.sm_count);
        let verify_parts = launch::blocks_per_row(batch, vocab, self.sm_count);
        let split_bytes = |rows: usize, parts: u32| match parts {
            1 => 0,
            _ => rows * parts as usize * PARTIAL_BYTES,
        };
        let stats_bytes = targets * ROW_STATS_BYTES;
        let scratch = self.scratch(
            stats_bytes + split_bytes(targets, stats_parts).max(split_bytes(batch, verify_parts)),
            targets,
        )?;
        let split = |rows: usize, parts: u32| -> Result<SplitRows> {
            let (partials, tickets) = match parts {
                1 => (0, 0),
                _ => (scratch.base + stats_bytes as u64, scratch.tickets),
            };
            Ok(SplitRows {
                parts,
                cfg: launch::row_grid(rows, parts, BLOCK_THREADS)?,
                partials,
                tickets,
            })
        };
        let (stats_split, verify_split) =
            (split(targets, stats_parts)?, split(batch, verify_parts)?);
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let lead = RowArgs::new(&mut ptrs, target_logits, temperature, rows);
        let draft = (draft_probs, draft_tokens, layout);
        let args = DraftArgs::new(&mut ptrs, draft, drafts, seeds, (tokens, accepted, status));
        let logits_vec = launch::vector_width::<T>(lead.logits, target_logits.stride);
        let vec = match draft_probs {
            Some(_) => logits_vec.min(launch::vector_width::<f32>(args.draft, vocab)),
            None => logits_vec,
        };
        let stats_func =
            self.function(launch::entry("softmax", "row_stats", T::DTYPE, logits_vec))?;
        let verify_func = self.function(launch::entry(
            "softmax",
            "verify_draft_logits",
            T::DTYPE,
            vec,
        ))?;

        // 3. Arguments in C-signature order: the statistics.
        let group = drafts as u32 + 1;
        let stats_addr = scratch.base;
        let mut b = Args::new();
        lead.push(&mut b);
        b.arg(&group);
        args.layout.push(&mut b);
        stats_split.push(&mut b);
        b.arg(&stats_addr);
        // SAFETY: the arguments match samplex_softmax_row_stats_<T>'s C signature in order and
        // type; block row t is target slot i = t % group of request t / group < batch, which
        // reads the request's τ (the per-row τ, or 0, has `batch` entries) and its layout
        // values (draft_span, as the verification reads them: the lengths or starts were
        // checked to have batch or batch + 1 entries), and only when i ≤ n_r its target row,
        // which draft_span's clamps keep below the E + batch rows of `stride` (≥ vocab)
        // elements `target_logits` was checked to hold; the
        // scratch holds `targets` statistics of 16 bytes at its base and, with parts > 1,
        // targets × parts partials after them and `targets` zeroed tickets (left at zero);
        // the grid is targets × parts blocks of 256 threads and the vector width fits the
        // logits' address and stride.
        unsafe { b.launch(&stats_func, &stream, stats_split.cfg) }?;

        // 4. The verification.
        let mut b = Args::new();
        args.push_draft(&mut b);
        lead.push(&mut b);
        b.arg(&stats_addr);
        args.push_rest(&mut b, &verify_split);
        // SAFETY: the arguments match samplex_softmax_verify_draft_logits_<T>'s C signature in
        // order and type (lead pushes logits, stride, vocab, τ, τ[]); `draft_probs` (or null:
        // one-hot drafts, never read) holds E × vocab values and `draft_tokens` E (E the
        // draft's entries, E + batch < 2^32), `target_logits` E + batch rows of `stride`, the
        // scratch's base the statistics of slot (r, i) at r × group + i for every request's
        // i ≤ n_r (written by the launch before, on this stream, with the same draft_span);
        // the layout's lengths or starts (or 0) have batch or batch + 1 entries, clamped by
        // draft_span into the buffers; the per-row τ (or 0), `accepted`, `status` and the
        // per-row seeds and offsets have `batch` entries, `tokens` batch × (drafts + 1), all
        // on this device; drafts ≤
        // 256 (one per thread); with parts > 1 the partials (batch × parts) follow the
        // statistics and the `batch` tickets are zero (left at zero); the grid is batch ×
        // parts blocks of 256 threads and the vector width fits the logits' address and stride
        // and the draft rows' address and length.
        unsafe { b.launch(&verify_func, &stream, verify_split.cfg) }?;
        Ok(())
    }

    /// The checks both verifications share: the draft's shape against the target's (n from
    /// `draft_tokens` or the packed layout, at most [`MAX_DRAFTS`]), the layout's buffer, the
    /// buffers' devices and the outputs' lengths.
    #[allow(clippy::too_many_arguments)]
    fn check_draft(
        &self,
        draft_probs: Option<&CudaView<'_, f32>>,
        draft_tokens: &CudaView<'_, u32>,
        layout: DraftLayout<&CudaView<'_, u32>>,
        target: Target,
        (batch, vocab): (usize, usize),
        seeds: &DeviceSeeds<'_>,
        (tokens, accepted, status): (
            &CudaViewMut<'_, u32>,
            &CudaViewMut<'_, u32>,
            Option<&CudaViewMut<'_, u32>>,
        ),
    ) -> Result<usize> {
        let drafts = check_draft_shape(
            draft_probs.map(|q| q.len()),
            draft_tokens.len(),
            &layout,
            target,
            batch,
            vocab,
        )?;
        if drafts > MAX_DRAFTS {
            return Err(Error::BadParam {
                name: "draft length",
                value: drafts as f64,
                range: "at most 256 tokens per row",
            });
        }
        if let Some(q) = draft_probs {
            self.check_device("draft_probs", q)?;
        }
        self.check_device("draft_tokens", draft_tokens)?;
        if let Some((values, name, len)) = layout.buffer(batch) {
            self.check_buffer(name, *values, len)?;
        }
        // The kernels index draft entries and target rows (entries + batch) in u32.
        if u32::try_from(draft_tokens.len() + batch).is_err() {
            return Err(Error::BadParam {
                name: "draft_tokens length",
                value: draft_tokens.len() as f64,
                range: "below 2^32 - batch tokens",
            });
        }
        seeds.check(batch, self)?;
        self.check_buffer("tokens", tokens, batch * (drafts + 1))?;
        self.check_buffer("accepted", accepted, batch)?;
        self.check_opt_buffer("status", status, batch)?;
        Ok(drafts)
    }

    /// Test hook: `out[4i..4i + 4]` = the device's `row_random(seeds[i], offsets[i],
    /// streams[i], tiles[i])` (kernels/common.cuh), so tests can compare it with
    /// [`crate::philox::row_random`] bit for bit.
    ///
    /// # Errors
    /// [`Error::BadLength`] when the inputs differ in length or `out` is not 4× as long;
    /// [`Error::WrongDevice`]; [`Error::Driver`] when the launch fails.
    #[doc(hidden)]
    pub fn philox_words(
        &mut self,
        seeds: &CudaView<'_, u64>,
        offsets: &CudaView<'_, u64>,
        streams: &CudaView<'_, u32>,
        tiles: &CudaView<'_, u32>,
        out: &mut CudaViewMut<'_, u32>,
    ) -> Result<()> {
        let n = seeds.len();
        self.check_buffer("seeds", seeds, n)?;
        self.check_buffer("offsets", offsets, n)?;
        self.check_buffer("streams", streams, n)?;
        self.check_buffer("tiles", tiles, n)?;
        self.check_buffer("out", &*out, 4 * n)?;
        if n == 0 {
            return Ok(());
        }
        let count = u32::try_from(n).map_err(|_| Error::BadLength {
            name: "seeds",
            got: n,
            expected: u32::MAX as usize,
        })?;
        let cfg = LaunchConfig {
            grid_dim: (count.div_ceil(BLOCK_THREADS), 1, 1),
            block_dim: (BLOCK_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let func = self.function(Kernel::untyped("softmax", "philox_words"))?;
        let stream = self.stream.clone();
        let mut ptrs = Pointers::new(&stream);
        let args = [
            ptrs.read(seeds),
            ptrs.read(offsets),
            ptrs.read(streams),
            ptrs.read(tiles),
        ];
        let out_addr = ptrs.write(out);
        let mut b = Args::new();
        b.arg(&args[0])
            .arg(&args[1])
            .arg(&args[2])
            .arg(&args[3])
            .arg(&count)
            .arg(&out_addr);
        // SAFETY: the arguments match samplex_softmax_philox_words's C signature; the four
        // inputs hold `count` entries and `out` 4 × count, all on this device; threads past
        // `count` return before touching memory.
        unsafe { b.launch(&func, &stream, cfg) }?;
        Ok(())
    }
}
