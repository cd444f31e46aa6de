//! Per-row status bits (SPEC "Bad input"): what the device saw and fixed up in a row.
//! The same values are defined in `kernels/common.cuh`.

/// A NaN logit was read; it counted as −∞.
pub const NAN_LOGIT: u32 = 1;
/// A +∞ logit was read; it counted as the largest finite f32.
pub const POS_INF_LOGIT: u32 = 2;
/// A per-row parameter was out of range (or NaN) and was clamped to its nearest valid value.
pub const PARAM_CLAMPED: u32 = 4;
/// The row had no finite logit: its token is [`NO_TOKEN`].
pub const NO_FINITE_LOGIT: u32 = 8;

/// The token written for a row that has nothing to draw from.
pub const NO_TOKEN: u32 = u32::MAX;
