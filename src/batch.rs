//! Host-side batch shapes: a batch of logits and per-row or batch-wide parameters.

use crate::dtype::Logit;
use crate::error::{Error, Result};

/// The largest vocabulary (SPEC: vocab < 2^31).
pub const MAX_VOCAB: usize = (1 << 31) - 1;

/// Checks a `batch × vocab` shape with a row stride against a buffer of `len` elements:
/// batch ≥ 1, 1 ≤ vocab < 2^31, stride ≥ vocab, and the last row inside the buffer.
pub fn check_shape(
    name: &'static str,
    len: usize,
    batch: usize,
    vocab: usize,
    stride: usize,
) -> Result<()> {
    if batch == 0 {
        return Err(Error::EmptyBatch);
    }
    if vocab == 0 || vocab > MAX_VOCAB {
        return Err(Error::BadVocab(vocab as u64));
    }
    if stride < vocab {
        return Err(Error::BadStride { stride, vocab });
    }
    let needed = (batch - 1)
        .checked_mul(stride)
        .and_then(|n| n.checked_add(vocab))
        .ok_or(Error::BadLength {
            name,
            got: len,
            expected: usize::MAX,
        })?;
    if len < needed {
        return Err(Error::BadLength {
            name,
            got: len,
            expected: needed,
        });
    }
    Ok(())
}

/// The tokens per row of a `batch × n` token buffer of `len` entries: n ≥ 1, and n < 2^32.
pub(crate) fn tokens_per_row(len: usize, batch: usize) -> Result<u32> {
    let n = len / batch.max(1);
    if n == 0 || n * batch != len {
        return Err(Error::BadLength {
            name: "tokens",
            got: len,
            expected: batch * n.max(1),
        });
    }
    u32::try_from(n).map_err(|_| Error::BadLength {
        name: "tokens",
        got: len,
        expected: batch * u32::MAX as usize,
    })
}

/// A batch of logits in host memory: `batch` rows of `vocab` values, row `r` starting at
/// `r * stride`.
#[derive(Clone, Copy, Debug)]
pub struct Logits<'a, T: Logit> {
    data: &'a [T],
    batch: usize,
    vocab: usize,
    stride: usize,
}

impl<'a, T: Logit> Logits<'a, T> {
    /// Dense rows (stride = vocab).
    ///
    /// # Errors
    /// [`Error::EmptyBatch`], [`Error::BadVocab`], [`Error::BadLength`] when
    /// `data.len() != batch * vocab` is too short.
    pub fn new(data: &'a [T], batch: usize, vocab: usize) -> Result<Self> {
        Self::with_stride(data, batch, vocab, vocab)
    }

    /// Rows `stride` elements apart (stride ≥ vocab).
    pub fn with_stride(data: &'a [T], batch: usize, vocab: usize, stride: usize) -> Result<Self> {
        check_shape("logits", data.len(), batch, vocab, stride)?;
        Ok(Logits {
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

    /// Row `r`, `vocab` elements.
    pub fn row(&self, r: usize) -> &'a [T] {
        &self.data[r * self.stride..r * self.stride + self.vocab]
    }
}

/// One value for the whole batch, or one per row.
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a, T> {
    All(T),
    Each(&'a [T]),
}

impl<T: Copy> Rows<'_, T> {
    /// The value of row `r`.
    pub fn get(&self, r: usize) -> T {
        match self {
            Rows::All(v) => *v,
            Rows::Each(v) => v[r],
        }
    }

    /// True when each row has its own value.
    pub fn is_per_row(&self) -> bool {
        matches!(self, Rows::Each(_))
    }

    /// A per-row slice must have exactly `batch` entries.
    pub fn check_len(&self, name: &'static str, batch: usize) -> Result<()> {
        match self {
            Rows::Each(v) if v.len() != batch => Err(Error::BadLength {
                name,
                got: v.len(),
                expected: batch,
            }),
            _ => Ok(()),
        }
    }
}

impl<T> From<T> for Rows<'_, T> {
    fn from(v: T) -> Self {
        Rows::All(v)
    }
}

/// Where a speculative verification's requests lie in its draft and target buffers
/// ([`crate::cpu::verify_draft`], [`crate::gpu::Sampler::verify_draft`] and their `_logits`
/// twins); `B` holds u32 values: a host slice or a device view. The verdicts are padded either
/// way: n + 1 tokens per request.
#[derive(Clone, Copy, Debug)]
pub enum DraftLayout<B> {
    /// n slots per request, all drafts: draft i of request r is entry r·n + i of the draft
    /// (n = `draft_tokens.len() / batch`), its target rows r·(n + 1) + i, i = 0 ..= n.
    Padded,
    /// Padded, and request r's draft is its first `lens[r]` slots (`batch` values): requests
    /// with fewer drafts, or none, share a padded batch. A length above n is taken as n
    /// ([`crate::status::PARAM_CLAMPED`]); the slots and target rows past a draft are not read.
    Lengths(B),
    /// Packed, as a flattened batch leaves them: request r's drafts are entries
    /// `starts[r] .. starts[r + 1]` of the draft tokens (and rows of the draft's
    /// distributions), and its n_r + 1 target rows follow one another from `starts[r] + r` (so
    /// `starts[r] + r` are the verification pass's cumulative query lengths). `starts` has
    /// batch + 1 values; `max_drafts` is the n of the padded verdicts. Offsets out of order or
    /// past the draft are clamped into it and a length above `max_drafts` is taken as
    /// `max_drafts`, both [`crate::status::PARAM_CLAMPED`]: nothing outside the buffers is read.
    Packed { starts: B, max_drafts: usize },
}

/// `None`: [`DraftLayout::Padded`]; `Some(lens)`: [`DraftLayout::Lengths`].
impl<B> From<Option<B>> for DraftLayout<B> {
    fn from(lens: Option<B>) -> Self {
        lens.map_or(DraftLayout::Padded, DraftLayout::Lengths)
    }
}

impl<B> DraftLayout<B> {
    /// The padded n of a packed layout.
    pub(crate) fn packed_max(&self) -> Option<usize> {
        match self {
            DraftLayout::Packed { max_drafts, .. } => Some(*max_drafts),
            _ => None,
        }
    }

    /// The layout's buffer, its name and the length it must have for `batch` requests.
    pub(crate) fn buffer(&self, batch: usize) -> Option<(&B, &'static str, usize)> {
        match self {
            DraftLayout::Padded => None,
            DraftLayout::Lengths(lens) => Some((lens, "draft_lens", batch)),
            DraftLayout::Packed { starts, .. } => Some((starts, "draft starts", batch + 1)),
        }
    }
}

/// The Philox stream id of row `r` (ARCHITECTURE.md "Random numbers"): the row index when
/// the batch shares one seed, 0 when every row has its own.
pub fn stream_of<T: Copy>(seeds: &Rows<'_, T>, r: usize) -> u32 {
    if seeds.is_per_row() {
        0
    } else {
        r as u32
    }
}
