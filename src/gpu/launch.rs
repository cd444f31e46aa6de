//! Launch plumbing every wrapper shares: device pointers, vector width, row splitting and
//! kernel names. Each wrapper in `src/gpu/<family>.rs` has one shape:
//! validate → choose the config here → push args in C-signature order → launch on the stream.

use cudarc::driver::{CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, SyncOnDrop};

use crate::dtype::{DType, Logit};

/// Threads per block of the row kernels (one draw tile = 256 threads × 8 elements).
pub(crate) const BLOCK_THREADS: u32 = 256;

/// Tokens per draw tile (`SAMPLEX_DRAW_TILE` in kernels/common.cuh).
pub(crate) const DRAW_TILE: usize = 2048;

/// `samplex_<family>_<op>_<dtype>`: the kernel's name, built from the Rust type.
pub(crate) fn kernel_name(family: &str, op: &str, dtype: DType) -> String {
    format!("samplex_{family}_{op}_{}", dtype.name())
}

/// Elements per vector load: 16 bytes' worth when the buffer's base address and the row
/// stride (in bytes) are multiples of 16, else 1. The kernels are instantiated for both.
pub(crate) fn vector_width<T: Logit>(base_addr: u64, stride: usize) -> u32 {
    let size = T::DTYPE.size();
    if base_addr % 16 == 0 && (stride * size) % 16 == 0 {
        (16 / size) as u32
    } else {
        1
    }
}

/// How many blocks share one row: enough that `batch × blocks_per_row` covers every SM about
/// twice, but never more than there are draw tiles in the row (a block works on whole tiles).
pub(crate) fn blocks_per_row(batch: usize, vocab: usize, sm_count: u32) -> u32 {
    let tiles = vocab.div_ceil(DRAW_TILE).max(1);
    let want = (2 * sm_count as usize).div_ceil(batch).max(1);
    want.min(tiles) as u32
}

/// Raw device pointers for kernel arguments. The guards cudarc hands out with each pointer
/// (which record the read/write for multi-stream safety) are kept until the launch is queued,
/// then dropped with this value.
pub(crate) struct Pointers<'a> {
    stream: &'a CudaStream,
    guards: Vec<SyncOnDrop<'a>>,
}

impl<'a> Pointers<'a> {
    pub(crate) fn new(stream: &'a CudaStream) -> Self {
        Pointers {
            stream,
            guards: Vec::new(),
        }
    }

    /// The address of a read-only view.
    pub(crate) fn read<T>(&mut self, view: &'a CudaView<'_, T>) -> u64 {
        let (ptr, guard) = view.device_ptr(self.stream);
        self.guards.push(guard);
        ptr
    }

    /// The address of a written view.
    pub(crate) fn write<T>(&mut self, view: &'a mut CudaViewMut<'_, T>) -> u64 {
        let (ptr, guard) = view.device_ptr_mut(self.stream);
        self.guards.push(guard);
        ptr
    }

    /// The address of an optional read-only view, or 0 (the kernels test for null).
    pub(crate) fn read_opt<T>(&mut self, view: Option<&'a CudaView<'_, T>>) -> u64 {
        view.map_or(0, |v| self.read(v))
    }

    /// The address of an optional written view, or 0.
    pub(crate) fn write_opt<T>(&mut self, view: Option<&'a mut CudaViewMut<'_, T>>) -> u64 {
        match view {
            Some(v) => self.write(v),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_width_needs_aligned_base_and_stride() {
        assert_eq!(vector_width::<f32>(0x1000, 1024), 4);
        assert_eq!(vector_width::<half::bf16>(0x1000, 1024), 8);
        assert_eq!(vector_width::<f32>(0x1004, 1024), 1);
        assert_eq!(vector_width::<f32>(0x1000, 1023), 1);
        assert_eq!(vector_width::<half::f16>(0x1000, 1004), 1);
    }

    #[test]
    fn small_batches_split_rows_but_never_past_the_tiles() {
        assert_eq!(blocks_per_row(1, 128_256, 132), 63);
        assert_eq!(blocks_per_row(1, 1000, 132), 1);
        assert_eq!(blocks_per_row(512, 128_256, 132), 1);
        assert_eq!(blocks_per_row(8, 262_144, 132), 33);
    }
}
