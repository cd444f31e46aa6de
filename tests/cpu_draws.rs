//! Drawing on the CPU: chi-square against q, determinism, per-row streams.

mod common;

use common::{chi_square_p, Dist};
use samplex::{cpu, Bok, Decoder, Logits, Rng, Rows};

/// `n` draws from one row at successive offsets; returns counts per token.
fn counts(z: &[f32], d: Decoder, n: u64, seed: u64) -> Vec<u64> {
    let l = Logits::new(z, 1, z.len()).unwrap();
    let mut c = vec![0u64; z.len()];
    for off in 0..n {
        let draw =
            cpu::sample(&l, Rows::All(d), Rows::All(Rng::new(seed).at(off)), None).unwrap()[0];
        c[draw.token as usize] += 1;
    }
    c
}

fn q_of(z: &[f32], d: Decoder) -> Vec<f64> {
    let l = Logits::new(z, 1, z.len()).unwrap();
    cpu::distribution(&l, Rows::All(d), None).unwrap().remove(0)
}

#[test]
fn cpu_draws_pass_chi_square_against_q() {
    let decoders = [
        Decoder::softmax(1.0),
        Decoder::softmax(0.7),
        Decoder::top_k(10, 1.0),
        Decoder::top_p(0.8, 1.0),
        Decoder::min_p(0.05, 1.5),
        Decoder::sparsemax(2.0),
        Decoder::bok(Bok::DEFAULT),
    ];
    for (i, dist) in Dist::ALL.iter().enumerate() {
        let z = common::logits(*dist, 1, 64, 7 + i as u64);
        for d in decoders {
            let c = counts(&z, d, 20_000, 11);
            let p = chi_square_p(&c, &q_of(&z, d));
            assert!(p > 1e-4, "{dist:?} {d:?}: chi-square p = {p}");
        }
    }
}

#[test]
fn draws_across_several_tiles_pass_chi_square() {
    // 3 tiles of 2048; put the mass in every tile so that the tile race matters.
    let mut z = vec![-30.0f32; 5000];
    for (j, i) in [5usize, 2047, 2048, 3000, 4095, 4096, 4999]
        .iter()
        .enumerate()
    {
        z[*i] = (j as f32) * 0.3;
    }
    for d in [
        Decoder::softmax(1.0),
        Decoder::top_k(4, 1.0),
        Decoder::sparsemax(1.0),
    ] {
        let c = counts(&z, d, 8_000, 5);
        let p = chi_square_p(&c, &q_of(&z, d));
        assert!(p > 1e-4, "{d:?}: chi-square p = {p}");
    }
}

#[test]
fn sampling_from_probabilities_passes_chi_square() {
    let q = [0.5f32, 0.0, 0.25, 0.125, 0.125, 0.0];
    let mut c = vec![0u64; 6];
    for off in 0..20_000 {
        let d = cpu::sample_from_probs(&q, 1, 6, Rows::All(Rng::new(9).at(off))).unwrap()[0];
        c[d.token as usize] += 1;
    }
    assert_eq!(c[1] + c[5], 0, "a zero-probability token was drawn");
    let qf: Vec<f64> = q.iter().map(|&x| f64::from(x)).collect();
    assert!(chi_square_p(&c, &qf) > 1e-4);
}

#[test]
fn n_draws_from_probabilities_are_single_draws_at_successive_offsets() {
    let (batch, vocab, n) = (3, 5000, 6);
    let probs: Vec<f32> = (0..batch * vocab)
        .map(|i| ((i * 7919) % 13) as f32 * 0.1)
        .collect();
    let each = [Rng::new(1).at(4), Rng::new(2).at(u64::MAX - 2), Rng::new(3)];
    for seeds in [Rows::All(Rng::new(8).at(10)), Rows::Each(&each)] {
        let many = cpu::sample_from_probs_n(&probs, batch, vocab, n, seeds).unwrap();
        assert_eq!(many.len(), batch * n);
        for j in 0..n as u64 {
            let shifted: Vec<Rng> = (0..batch)
                .map(|r| {
                    let rng = seeds.get(r);
                    rng.at(rng.offset.wrapping_add(j))
                })
                .collect();
            let one = match seeds {
                Rows::All(_) => Rows::All(shifted[0]),
                Rows::Each(_) => Rows::Each(&shifted),
            };
            let single = cpu::sample_from_probs(&probs, batch, vocab, one).unwrap();
            for r in 0..batch {
                assert_eq!(many[r * n + j as usize], single[r], "row {r} draw {j}");
            }
        }
        // The draws of a row are not all one token (13 weights per cycle, most of them > 0).
        assert!(many[..n].iter().any(|d| d.token != many[0].token));
    }
}

#[test]
fn same_seed_and_offset_give_the_same_tokens_and_others_differ() {
    let z = common::logits(Dist::Normal(1.0), 16, 3000, 1);
    let l = Logits::new(&z, 16, 3000).unwrap();
    let d = Rows::All(Decoder::softmax(1.0));
    let tokens = |rng: Rng| -> Vec<u32> {
        cpu::sample(&l, d, Rows::All(rng), None)
            .unwrap()
            .iter()
            .map(|d| d.token)
            .collect()
    };
    assert_eq!(tokens(Rng::new(42)), tokens(Rng::new(42)));
    assert_ne!(tokens(Rng::new(42)), tokens(Rng::new(43)));
    assert_ne!(tokens(Rng::new(42)), tokens(Rng::new(42).at(1)));
}

#[test]
fn shared_seed_rows_differ_and_per_row_seeds_do_not_depend_on_position() {
    let row = common::logits(Dist::Normal(1.0), 1, 1000, 3);
    let z: Vec<f32> = row.iter().cycle().take(8 * 1000).copied().collect();
    let l = Logits::new(&z, 8, 1000).unwrap();
    let d = Rows::All(Decoder::softmax(1.0));
    let shared: Vec<u32> = cpu::sample(&l, d, Rows::All(Rng::new(5)), None)
        .unwrap()
        .iter()
        .map(|d| d.token)
        .collect();
    let distinct: std::collections::HashSet<_> = shared.iter().collect();
    assert!(
        distinct.len() > 1,
        "equal rows with a shared seed drew {shared:?}"
    );

    let seeds: Vec<Rng> = (0..8).map(|s| Rng::new(100 + s)).collect();
    let mut reversed = seeds.clone();
    reversed.reverse();
    let a = cpu::sample(&l, d, Rows::Each(&seeds), None).unwrap();
    let b = cpu::sample(&l, d, Rows::Each(&reversed), None).unwrap();
    for r in 0..8 {
        assert_eq!(
            a[r].token,
            b[7 - r].token,
            "row {r}: a request's token moved with its position"
        );
    }
}

#[test]
fn tokens_outside_the_support_are_never_drawn() {
    let z = common::logits(Dist::Gumbel(1.0), 1, 300, 9);
    let l = Logits::new(&z, 1, 300).unwrap();
    let d = Decoder::top_k(5, 2.0);
    let keep = cpu::kept(&l, Rows::All(d)).unwrap().remove(0);
    for off in 0..5_000 {
        let t =
            cpu::sample(&l, Rows::All(d), Rows::All(Rng::new(1).at(off)), None).unwrap()[0].token;
        assert!(keep[t as usize], "drew {t}, outside the top 5");
    }
}
