//! The CPU reference against the SPEC: the worked example, tie rules, sparsemax's KKT
//! conditions, BoK's ascent and first-order condition.

mod common;

use samplex::cpu::{self, bok_gradient};
use samplex::{Bok, BokWeights, Decoder, Logits, Rng, Rows, Support};

const WORKED: [f32; 6] = [6.0, 5.0, 4.5, 3.5, 2.0, 0.0];

fn close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "entry {i}: got {g}, want {w}");
    }
}

fn worked() -> Logits<'static, f32> {
    Logits::new(&WORKED, 1, 6).unwrap()
}

#[test]
fn softmax_matches_the_worked_example_at_three_temperatures() {
    let q = |t| cpu::softmax(&worked(), Rows::All(t)).unwrap().remove(0);
    // SPEC.md prints the last entry as .002; e^-6 / 1.6939 = .00146, so it is .0015 here
    // (reported in the closing note).
    close(
        &q(1.0),
        &[0.5904, 0.2172, 0.1317, 0.0485, 0.0108, 0.0015],
        1e-4,
    );
    close(&q(0.5)[..4], &[0.839, 0.114, 0.042, 0.006], 5e-4);
    // and half a logit apart at τ = 1: worked example's pairs, sparsemax at τ = 2 keeps two
    let half: Vec<f64> = WORKED.iter().map(|&v| f64::from(v) / 2.0).collect();
    assert_eq!(cpu::sparsemax(&half).support, 2);
    close(&q(2.0), &[0.392, 0.238, 0.185, 0.112, 0.053, 0.020], 5e-4);
}

#[test]
fn token_log_probs_are_the_log_softmax_at_the_given_tokens() {
    // Row 0: z = (0, ln 3) at τ = 1 gives p = (1/4, 3/4). Row 1: the same at τ = 2 from
    // z = (0, 2 ln 3). Row 2: τ = 0, greedy. Row 3: no finite logit.
    let l3 = 3.0f32.ln();
    let z = [0.0, l3, 0.0, 2.0 * l3, 1.0, 2.0, f32::NAN, f32::NAN];
    let logits = Logits::new(&z, 4, 2).unwrap();
    let temps = [1.0, 2.0, 0.0, 1.0];
    // Two tokens per row; 7 and u32::MAX are outside the vocabulary.
    let tokens = [1, 0, 0, 7, 1, 0, u32::MAX, 1];
    let lp = cpu::token_log_probs(&logits, Rows::Each(&temps), &tokens).unwrap();
    let ninf = f64::NEG_INFINITY;
    let (q, t) = (0.25f64.ln(), 0.75f64.ln());
    close(&lp[..3], &[t, q, q], 1e-7);
    assert_eq!(&lp[3..], [ninf, 0.0, ninf, ninf, ninf]);
    // Three tokens for a batch of four is not a whole number per row; none at all is refused.
    for bad in [&tokens[..3], &[]] {
        assert!(matches!(
            cpu::token_log_probs(&logits, Rows::All(1.0), bad),
            Err(samplex::Error::BadLength { name: "tokens", .. })
        ));
    }
}

#[test]
fn each_filter_keeps_the_first_three_of_the_worked_example() {
    for d in [
        Decoder::top_k(3, 1.0),
        Decoder::top_p(0.9, 1.0),
        Decoder::min_p(0.1, 1.0),
    ] {
        let keep = cpu::kept(&worked(), Rows::All(d)).unwrap().remove(0);
        assert_eq!(keep, [true, true, true, false, false, false], "{d:?}");
        let q = cpu::distribution(&worked(), Rows::All(d), None)
            .unwrap()
            .remove(0);
        let s = 0.590 + 0.217 + 0.132;
        close(&q, &[0.590 / s, 0.217 / s, 0.132 / s, 0.0, 0.0, 0.0], 1e-3);
    }
}

#[test]
fn greedy_ties_go_to_the_lowest_index() {
    let z = [1.0f32, 3.0, 2.0, 3.0, f32::NAN];
    let l = Logits::new(&z, 1, 5).unwrap();
    assert_eq!(cpu::argmax(&l), vec![1]);
    let d = cpu::sample(
        &l,
        Rows::All(Decoder::softmax(0.0)),
        Rows::All(Rng::new(1)),
        None,
    )
    .unwrap();
    assert_eq!(d[0].token, 1);
}

#[test]
fn top_k_select_is_exactly_k_sorted_with_ties_to_the_lower_index() {
    let z = [0.5f32, 2.0, 1.0, 2.0, 1.0, -1.0];
    let l = Logits::new(&z, 1, 6).unwrap();
    let sel = cpu::top_k_select(&l, Rows::All(3)).unwrap().remove(0);
    assert_eq!(sel, vec![(2.0, 1), (2.0, 3), (1.0, 2)]);
    let all = cpu::top_k_select(&l, Rows::All(100)).unwrap().remove(0);
    assert_eq!(all.len(), 6);
}

#[test]
fn top_k_filter_keeps_ties_at_the_boundary() {
    // probabilities 0.4, 0.3, 0.3 with k = 2: all three kept.
    let z: Vec<f32> = [0.4f32, 0.3, 0.3].iter().map(|p| p.ln()).collect();
    let l = Logits::new(&z, 1, 3).unwrap();
    let keep = cpu::kept(&l, Rows::All(Decoder::top_k(2, 1.0)))
        .unwrap()
        .remove(0);
    assert_eq!(keep, [true, true, true]);
}

#[test]
fn top_p_is_measured_inside_the_top_k_set() {
    // p = softmax over 4 tokens; top-k 2 renormalises to the top two, then top-p 0.5 keeps
    // only the first if its renormalised mass is ≥ 0.5.
    let z = [2.0f32, 1.9, 1.8, 1.7];
    let l = Logits::new(&z, 1, 4).unwrap();
    let d = Decoder::softmax(1.0).with_support(Support {
        top_k: 2,
        top_p: 0.5,
        min_p: 0.0,
    });
    assert_eq!(
        cpu::kept(&l, Rows::All(d)).unwrap()[0],
        [true, false, false, false]
    );
}

#[test]
fn masked_logits_are_minus_infinity_outside_the_support() {
    let m = cpu::masked_logits(&worked(), Rows::All(Decoder::top_k(2, 1.0)))
        .unwrap()
        .remove(0);
    assert_eq!(&m[..2], &[6.0, 5.0]);
    assert!(m[2..].iter().all(|v| *v == f64::NEG_INFINITY));
}

#[test]
fn per_row_decoders_apply_to_their_own_row() {
    let z: Vec<f32> = WORKED.iter().chain(WORKED.iter()).copied().collect();
    let l = Logits::new(&z, 2, 6).unwrap();
    let ds = [Decoder::top_k(1, 1.0), Decoder::top_k(4, 1.0)];
    let keep = cpu::kept(&l, Rows::Each(&ds)).unwrap();
    assert_eq!(keep[0].iter().filter(|k| **k).count(), 1);
    assert_eq!(keep[1].iter().filter(|k| **k).count(), 4);
}

fn sparsemax_kkt(u: &[f64]) {
    let s = cpu::sparsemax(u);
    let sum: f64 = s.q.iter().sum();
    assert!((sum - 1.0).abs() < 1e-12, "sum {sum}");
    let mut support = 0;
    for (i, (&ui, &qi)) in u.iter().zip(&s.q).enumerate() {
        assert!(qi >= 0.0);
        if qi > 0.0 {
            support += 1;
            // stationarity on the support: u_i − q_i = θ
            assert!((ui - qi - s.theta).abs() < 1e-12, "token {i}");
        } else {
            // complementary slackness: u_i ≤ θ off the support
            assert!(ui <= s.theta + 1e-12, "token {i}: u {ui} > θ {}", s.theta);
        }
    }
    assert_eq!(support, s.support);
    let m = u.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(s.theta >= m - 1.0 - 1e-12);
}

#[test]
fn sparsemax_satisfies_its_kkt_conditions() {
    sparsemax_kkt(&[6.0, 5.0, 4.5, 3.5, 2.0, 0.0]);
    sparsemax_kkt(&[0.0; 10]);
    sparsemax_kkt(&[1.0, 0.999, 0.5, -3.0, f64::NEG_INFINITY]);
    for (i, dist) in common::Dist::ALL.iter().enumerate() {
        let z = common::logits(*dist, 1, 3000, i as u64);
        let u: Vec<f64> = z.iter().map(|&v| f64::from(v) / 0.7).collect();
        sparsemax_kkt(&u);
    }
}

#[test]
fn sparsemax_beyond_f64_resolution_keeps_the_maxima() {
    // max u − 1 rounds to max u at |max u| ≥ 2^53: the maxima share the mass, nothing panics.
    let s = cpu::sparsemax(&[1e20, 3.0, 1e20, f64::NEG_INFINITY]);
    assert_eq!(s.support, 2);
    close(&s.q, &[0.5, 0.0, 0.5, 0.0], 0.0);
    // A +∞ logit is f32::MAX; at τ < 1 its u is beyond f32 but not f64.
    let z = [1.0f32, f32::INFINITY, f32::NAN, 2.0];
    let l = Logits::new(&z, 1, 4).unwrap();
    let q = cpu::distribution(&l, Rows::All(Decoder::sparsemax(0.6)), None).unwrap();
    close(&q[0], &[0.0, 1.0, 0.0, 0.0], 0.0);
    let draw = cpu::sample(
        &l,
        Rows::All(Decoder::sparsemax(0.6)),
        Rows::All(Rng::new(3)),
        None,
    );
    assert_eq!(draw.unwrap()[0].token, 1);
}

#[test]
fn bok_of_tied_maxima_beyond_f64_resolution_splits_them() {
    // Two +∞ logits (f32::MAX): a = ln q + η·g is ~1e37 for both, where max a + ln 2 rounds
    // to max a; SPEC's order (a − max a) − ln Σ keeps q at 1/2 each.
    let z = [0.0f32, f32::INFINITY, f32::INFINITY];
    let l = Logits::new(&z, 1, 3).unwrap();
    let q = cpu::distribution(&l, Rows::All(Decoder::bok(Bok::DEFAULT)), None).unwrap();
    close(&q[0], &[0.0, 0.5, 0.5], 1e-12);
}

#[test]
fn sparsemax_of_the_worked_example_is_one_hot() {
    let s = cpu::sparsemax(&[6.0, 5.0, 4.5, 3.5, 2.0, 0.0]);
    // k = 2 fails the test strictly (1 + 2·5 = 11 is not > 6 + 5), so k* = 1 and θ = 5.
    assert_eq!(s.support, 1);
    assert_eq!(s.theta, 5.0);
    close(&s.q, &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], 0.0);
}

fn bok_rows() -> Vec<(String, Vec<f64>)> {
    let mut rows = vec![(
        "worked".to_string(),
        WORKED.iter().map(|&v| f64::from(v)).collect(),
    )];
    for (i, dist) in common::Dist::ALL.iter().enumerate() {
        let z = common::logits(*dist, 1, 500, 100 + i as u64);
        rows.push((
            format!("{dist:?}"),
            z.iter().map(|&v| f64::from(v)).collect(),
        ));
    }
    rows
}

#[test]
fn bok_objective_rises_every_step_with_the_defaults() {
    let weightings = [BokWeights::Prob, BokWeights::TopM(5)];
    for (name, z) in bok_rows() {
        for w in weightings {
            let b = Bok {
                iterations: 30,
                weights: w,
                ..Bok::DEFAULT
            };
            let trace = cpu::bok(&z, &b, None);
            for (t, pair) in trace.objective.windows(2).enumerate() {
                assert!(
                    pair[1] >= pair[0] - 1e-12 * pair[0].abs().max(1.0),
                    "{name} {w:?}: J fell at step {t}: {} -> {}",
                    pair[0],
                    pair[1]
                );
            }
            let sum: f64 = trace.q.iter().sum();
            assert!((sum - 1.0).abs() < 1e-9);
        }
    }
}

#[test]
fn bok_objective_rises_with_a_support_and_custom_weights() {
    for (name, z) in bok_rows() {
        let l: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        let logits = Logits::new(&l, 1, l.len()).unwrap();
        let d = Decoder::bok(Bok::DEFAULT).with_support(Support {
            top_k: 50,
            top_p: 0.95,
            min_p: 0.0,
        });
        let keep = cpu::kept(&logits, Rows::All(d)).unwrap().remove(0);
        let masked: Vec<f64> = z
            .iter()
            .zip(&keep)
            .map(|(&v, &k)| if k { v } else { f64::NEG_INFINITY })
            .collect();
        let w: Vec<f64> = (0..z.len()).map(|i| (i % 3) as f64).collect();
        let b = Bok {
            iterations: 20,
            weights: BokWeights::Custom,
            ..Bok::DEFAULT
        };
        let trace = cpu::bok(&masked, &b, Some(&w));
        assert!(
            trace.objective.windows(2).all(|p| p[1] >= p[0] - 1e-9),
            "{name}"
        );
        for (q, k) in trace.q.iter().zip(&keep) {
            if !k {
                assert_eq!(*q, 0.0, "{name}: mass outside the support");
            }
        }
    }
}

#[test]
fn bok_meets_the_first_order_condition_at_large_t() {
    for (name, z) in bok_rows() {
        let b = Bok {
            iterations: 3000,
            ..Bok::DEFAULT
        };
        let trace = cpu::bok(&z, &b, None);
        let log_p = cpu::log_softmax_row(&z, 1.0);
        let log_q: Vec<f64> = trace.q.iter().map(|q| q.ln()).collect();
        let g = bok_gradient(
            &z,
            &log_p,
            &log_p.iter().map(|l| l.exp()).collect::<Vec<_>>(),
            &log_q,
            &b,
        );
        // On the support, g_i is the same for every i (the multiplier of Σ q = 1). Tokens
        // whose q underflowed carry no weight in the condition.
        let on: Vec<f64> = g
            .iter()
            .zip(&trace.q)
            .filter(|(_, q)| **q > 1e-200)
            .map(|(g, _)| *g)
            .collect();
        let (lo, hi) = on
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        assert!(
            hi - lo < 1e-6 * hi.abs().max(1.0),
            "{name}: gradient spread {}",
            hi - lo
        );
    }
}

#[test]
fn bok_with_zero_iterations_is_the_reference_distribution() {
    let z: Vec<f64> = WORKED.iter().map(|&v| f64::from(v)).collect();
    let b = Bok {
        iterations: 0,
        temperature: 0.5,
        ..Bok::DEFAULT
    };
    close(&cpu::bok(&z, &b, None).q, &cpu::softmax_row(&z, 0.5), 1e-15);
}

#[test]
fn bok_without_coverage_converges_to_the_tempered_softmax() {
    // λ = 0: q* ∝ p·e^{z/β} = softmax(z·(1/τ + 1/β)).
    let z: Vec<f64> = WORKED.iter().map(|&v| f64::from(v)).collect();
    let b = Bok {
        lambda: 0.0,
        temperature: 2.0,
        beta: 1.0,
        iterations: 400,
        ..Bok::DEFAULT
    };
    let want = cpu::softmax_row(&z, 1.0 / (1.0 / 2.0 + 1.0));
    close(&cpu::bok(&z, &b, None).q, &want, 1e-9);
}

#[test]
fn rows_without_a_finite_logit_get_no_token_and_the_status_bit() {
    let z = [f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY];
    let l = Logits::new(&z, 1, 3).unwrap();
    for d in [
        Decoder::greedy(),
        Decoder::softmax(1.0),
        Decoder::top_p(0.5, 1.0),
        Decoder::sparsemax(1.0),
        Decoder::bok(Bok::DEFAULT),
    ] {
        let draw = cpu::sample(&l, Rows::All(d), Rows::All(Rng::new(3)), None).unwrap()[0];
        assert_eq!(draw.token, samplex::status::NO_TOKEN, "{d:?}");
        assert_ne!(draw.status & samplex::status::NO_FINITE_LOGIT, 0, "{d:?}");
        assert_ne!(draw.status & samplex::status::NAN_LOGIT, 0, "{d:?}");
    }
}

#[test]
fn nan_logits_count_as_neg_inf_and_pos_inf_as_the_largest_finite() {
    let z = [1.0f32, f32::NAN, f32::INFINITY, 2.0];
    let l = Logits::new(&z, 1, 4).unwrap();
    let (w, st) = cpu::widen_row(l.row(0));
    assert_eq!(w[1], f64::NEG_INFINITY);
    assert_eq!(w[2], f64::from(f32::MAX));
    assert_eq!(
        st,
        samplex::status::NAN_LOGIT | samplex::status::POS_INF_LOGIT
    );
    let d = cpu::sample(
        &l,
        Rows::All(Decoder::softmax(1.0)),
        Rows::All(Rng::new(0)),
        None,
    )
    .unwrap()[0];
    assert_eq!(d.token, 2);
}

#[test]
fn strided_rows_read_only_their_vocab() {
    let z = [1.0f32, 5.0, 99.0, 7.0, 2.0, 99.0];
    let l = Logits::with_stride(&z, 2, 2, 3).unwrap();
    assert_eq!(cpu::argmax(&l), vec![1, 0]);
}

// ---------------------------------------------------------------------------------------------
// Logit edits (SPEC "Order of operations", first stage).
// ---------------------------------------------------------------------------------------------

#[test]
fn the_mask_sets_minus_infinity_where_a_bit_is_zero_and_ignores_bits_past_vocab() {
    // Two rows of 35 tokens (two words each), stride 36; the padding must stay.
    let mut z: Vec<f32> = (0..72).map(|i| i as f32).collect();
    let allowed = [
        0b1011,
        0xffff_fff8, // row 0: tokens 0, 1, 3 and none of 32-34 (bits 0-2 of word 1)
        u32::MAX,
        0b010, // row 1: every token of word 0, then token 33 only
    ];
    cpu::mask_tokens(&mut z, 2, 35, 36, &allowed).unwrap();
    let inf = f32::NEG_INFINITY;
    let kept = |r: usize, i: usize| z[r * 36 + i] != inf;
    assert!(kept(0, 0) && kept(0, 1) && !kept(0, 2) && kept(0, 3) && !kept(0, 4));
    assert!((32..35).all(|i| !kept(0, i)));
    assert_eq!(z[35], 35.0, "padding untouched");
    assert!((0..32).all(|i| kept(1, i)) && !kept(1, 32) && kept(1, 33) && !kept(1, 34));
    assert_eq!(z[36 + 33], 69.0);
    assert!(matches!(
        cpu::mask_tokens(&mut z, 2, 35, 36, &allowed[..3]),
        Err(samplex::Error::BadLength {
            name: "allowed",
            got: 3,
            expected: 4
        })
    ));
}

#[test]
fn penalties_edit_each_distinct_history_token_once_with_its_count() {
    use samplex::{History, Penalties};
    let mut z = vec![2.0f32, -2.0, 4.0, 1.0, 0.0];
    // Token 0 three times, 1 once, 2 twice, 9 (≥ vocab: padding) ignored; 3 and 4 absent.
    let tokens = [0u32, 2, 0, 1, 9, 0, 2];
    let hist = History {
        tokens: &tokens,
        max_len: 7,
        lengths: None,
    };
    let pen = Penalties {
        repetition: 2.0,
        presence: 0.5,
        frequency: 0.25,
    };
    cpu::apply_penalties(&mut z, 1, 5, 5, &hist, Rows::All(pen)).unwrap();
    // 2/2 − (0.75 + 0.5); −2·2 − (0.25 + 0.5); 4/2 − (0.5 + 0.5); untouched.
    assert_eq!(z, vec![-0.25, -4.75, 1.0, 1.0, 0.0]);

    // Lengths cut the history: only the first two tokens (0 and 2) count.
    let mut z = vec![2.0f32, -2.0, 4.0, 1.0, 0.0];
    let lens = [2u32];
    let hist = History {
        tokens: &tokens,
        max_len: 7,
        lengths: Some(&lens),
    };
    cpu::apply_penalties(&mut z, 1, 5, 5, &hist, Rows::All(pen)).unwrap();
    assert_eq!(z, vec![0.25, -2.0, 1.25, 1.0, 0.0]);

    let bad = [Penalties {
        repetition: -1.0,
        ..Penalties::NONE
    }];
    assert!(matches!(
        cpu::apply_penalties(&mut z, 1, 5, 5, &hist, Rows::Each(&bad)),
        Err(samplex::Error::BadParam {
            name: "repetition",
            ..
        })
    ));
    let long = [8u32];
    let hist = History {
        tokens: &tokens,
        max_len: 7,
        lengths: Some(&long),
    };
    assert!(matches!(
        cpu::apply_penalties(&mut z, 1, 5, 5, &hist, Rows::All(pen)),
        Err(samplex::Error::BadParam {
            name: "history length",
            ..
        })
    ));
}

#[test]
fn the_bias_adds_every_value_listed_for_a_token() {
    use samplex::History;
    let mut z = vec![1.0f32, 2.0, 3.0, 4.0];
    // Token 1 twice (+0.5 − 2), token 3 once, a padding id (≥ vocab) ignored; token 0, 2 untouched.
    let tokens = [1u32, 3, 7, 1];
    let values = [0.5f32, -100.0, 9.0, -2.0];
    let hist = History {
        tokens: &tokens,
        max_len: 4,
        lengths: None,
    };
    cpu::apply_bias(&mut z, 1, 4, 4, &hist, &values).unwrap();
    assert_eq!(z, vec![1.0, 0.5, 3.0, -96.0]);
    // Values count in units of 2^-24: 2^-26 rounds to 0, 3·2^-25 (1.5 units, a tie) to 2 units.
    let mut z = vec![1.0f32, 1.0];
    let tokens = [0u32, 1];
    let values = [2f32.powi(-26), 3.0 * 2f32.powi(-25)];
    let hist = History {
        tokens: &tokens,
        max_len: 2,
        lengths: None,
    };
    cpu::apply_bias(&mut z, 1, 2, 2, &hist, &values).unwrap();
    assert_eq!(z, vec![1.0, 1.0 + 2f32.powi(-23)]);
    for bad in [f32::NAN, 2e6] {
        assert!(matches!(
            cpu::apply_bias(&mut z, 1, 2, 2, &hist, &[bad, 0.0]),
            Err(samplex::Error::BadParam { name: "bias", .. })
        ));
    }
}
