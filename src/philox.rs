//! Philox4x32-10 (Salmon et al., SC'11) and the random stream every draw uses.
//!
//! `kernels/common.cuh` implements the same functions (`philox4x32_10`, `row_random`,
//! `uniform_open`); `tests/philox.rs` checks the SPEC's known answers, and the GPU tests
//! check that both sides agree bit for bit.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds: `counter` (4 × u32) under `key` (2 × u32) → 4 × u32.
///
/// # Examples
/// ```
/// assert_eq!(
///     samplex::philox::philox4x32_10([0; 4], [0; 2]),
///     [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
/// );
/// ```
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = counter;
    let [mut k0, mut k1] = key;
    for _ in 0..10 {
        let p0 = u64::from(M0) * u64::from(c0);
        let p1 = u64::from(M1) * u64::from(c2);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    [c0, c1, c2, c3]
}

/// The four random words of draw-tile `tile` of a row: counter = (tile, stream, offset low,
/// offset high), key = (seed low, seed high). `stream` is the row index when the batch shares
/// one seed, and 0 when each row has its own (so a request's tokens do not depend on where it
/// sits in the batch).
pub fn row_random(seed: u64, offset: u64, stream: u32, tile: u32) -> [u32; 4] {
    philox4x32_10(
        [tile, stream, offset as u32, (offset >> 32) as u32],
        [seed as u32, (seed >> 32) as u32],
    )
}

/// u32 → the open interval (0, 1): (top 23 bits + ½) / 2^23. Exact in f32 (24 significant
/// bits) and f64, never 0 or 1, so `ln(u)` and `ln(−ln u)` are finite.
///
/// # Examples
/// ```
/// assert_eq!(samplex::philox::uniform_open(0), 0.5 / 8388608.0);
/// assert!(samplex::philox::uniform_open(u32::MAX) < 1.0);
/// ```
pub fn uniform_open(x: u32) -> f64 {
    (f64::from(x >> 9) + 0.5) / 8_388_608.0
}

/// Gumbel(0, 1) noise from an open uniform: −ln(−ln u).
pub fn gumbel(u: f64) -> f64 {
    -(-u.ln()).ln()
}

/// A row's random stream: the Philox key and the position in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rng {
    /// The Philox key.
    pub seed: u64,
    /// Where in the stream this draw reads; advance it every step of a decoding loop.
    pub offset: u64,
}

impl Rng {
    /// A stream at `offset` 0.
    pub fn new(seed: u64) -> Self {
        Rng { seed, offset: 0 }
    }

    /// The same seed at another offset.
    pub fn at(self, offset: u64) -> Self {
        Rng { offset, ..self }
    }
}
