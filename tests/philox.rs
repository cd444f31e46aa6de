//! SPEC "Drawing a token": Philox4x32-10 known answers and the u32 → (0,1) map.

use samplex::philox::{philox4x32_10, row_random, uniform_open};

#[test]
fn philox_matches_known_answers() {
    assert_eq!(
        philox4x32_10([0; 4], [0; 2]),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    assert_eq!(
        philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    );
    assert_eq!(
        philox4x32_10(
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0]
        ),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

#[test]
fn row_random_lays_out_counter_and_key_as_documented() {
    let (seed, offset) = (0x0123_4567_89ab_cdef_u64, 0xfedc_ba98_7654_3210_u64);
    assert_eq!(
        row_random(seed, offset, 17, 5),
        philox4x32_10(
            [5, 17, 0x7654_3210, 0xfedc_ba98],
            [0x89ab_cdef, 0x0123_4567]
        )
    );
}

#[test]
fn uniform_open_never_reaches_zero_or_one_and_is_exact_in_f32() {
    for x in [0u32, 1, 255, 256, 0x8000_0000, u32::MAX - 1, u32::MAX] {
        let u = uniform_open(x);
        assert!(u > 0.0 && u < 1.0, "{x:#x} -> {u}");
        assert_eq!(f64::from(u as f32), u, "not exact in f32: {x:#x}");
    }
}
