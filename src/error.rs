//! The one error type. Every variant names the bad parameter and its value.

use thiserror::Error;

/// Everything samplex can refuse or fail at. Host-side checks (SPEC "Bad input") run before
/// any launch; values only the device sees never produce an error (they are clamped and
/// flagged in the status buffer instead).
#[derive(Debug, Error)]
pub enum Error {
    /// `batch` was 0.
    #[error("batch must be at least 1, got 0")]
    EmptyBatch,
    /// `vocab` was 0 or not below 2^31.
    #[error("vocab must be in [1, 2^31), got {0}")]
    BadVocab(u64),
    /// The row stride is smaller than the vocabulary.
    #[error("row stride must be >= vocab ({vocab}), got {stride}")]
    BadStride { stride: usize, vocab: usize },
    /// A buffer's length does not fit the shape it was described with.
    #[error("{name} has length {got}, expected {expected}")]
    BadLength {
        name: &'static str,
        got: usize,
        expected: usize,
    },
    /// A scalar parameter outside its SPEC range: the name, the value, and the range.
    #[error("{name} must be {range}, got {value}")]
    BadParam {
        name: &'static str,
        value: f64,
        range: &'static str,
    },
    /// A request that combines things the SPEC does not define (for example a support rule
    /// with sparsemax).
    #[error("unsupported request: {0}")]
    Unsupported(String),
    /// A device buffer that lives on another device than the sampler's stream.
    #[error("{name} lives on device {got}, the sampler's stream on device {expected}")]
    WrongDevice {
        name: &'static str,
        got: usize,
        expected: usize,
    },
    /// The CUDA driver library (libcuda) could not be loaded: no GPU driver on this machine.
    #[error("no CUDA driver: libcuda could not be loaded on this machine")]
    NoDriver,
    /// The driver loaded but reports no device with this ordinal.
    #[error("no CUDA device with ordinal {0}")]
    NoDevice(usize),
    /// No fatbin was built and libnvrtc could not be loaded to compile the kernels.
    #[error("no prebuilt kernels and no NVRTC: libnvrtc could not be loaded")]
    NoNvrtc,
    /// NVRTC rejected the embedded kernel sources.
    #[error("NVRTC failed to compile the kernels: {0}")]
    Compile(String),
    /// The operation has no GPU kernel yet.
    #[error("{0} has no GPU kernel yet")]
    NotImplemented(&'static str),
    /// A call into the CUDA driver failed.
    #[error("CUDA driver error: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
}

/// `Result` with samplex's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
