//! Logit element types: f32, f16 and bf16. All arithmetic widens to f32 on the device and
//! to f64 on the CPU.

use cudarc::driver::DeviceRepr;

/// The logit dtypes samplex reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    Bf16,
}

impl DType {
    /// The suffix of kernel names (`samplex_softmax_probs_bf16`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::Bf16 => 2,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A logit element type. Sealed: implemented for `f32`, `half::f16` and `half::bf16`.
pub trait Logit: Copy + Send + Sync + DeviceRepr + Default + 'static + sealed::Sealed {
    /// The runtime tag of this type.
    const DTYPE: DType;
    /// Widens exactly (every f16/bf16 value is an f32 value).
    fn to_f32(self) -> f32;
    /// Rounds to nearest (used to build test inputs).
    fn from_f32(x: f32) -> Self;
}

impl Logit for f32 {
    const DTYPE: DType = DType::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl Logit for half::f16 {
    const DTYPE: DType = DType::F16;
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x)
    }
}

impl Logit for half::bf16 {
    const DTYPE: DType = DType::Bf16;
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
}
