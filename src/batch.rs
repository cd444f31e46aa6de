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

/// The Philox stream id of row `r` (ARCHITECTURE.md "Random numbers"): the row index when
/// the batch shares one seed, 0 when every row has its own.
pub fn stream_of<T: Copy>(seeds: &Rows<'_, T>, r: usize) -> u32 {
    if seeds.is_per_row() {
        0
    } else {
        r as u32
    }
}
