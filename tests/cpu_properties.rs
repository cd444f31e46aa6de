//! Property tests on random shapes: q sums to 1, each support rule holds, selection is exactly k.

use proptest::prelude::*;
use samplex::{cpu, Decoder, Logits, Rows, Support};

fn rows() -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    (1usize..4, 1usize..200).prop_flat_map(|(b, v)| {
        // Sanitised values too: +∞ counts as f32::MAX (beyond f64's resolution of u − 1 at
        // any τ ≤ 1), NaN as −∞.
        let val = prop_oneof![
            16 => -20.0f32..20.0,
            2 => Just(f32::NEG_INFINITY),
            2 => Just(0.5f32),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NAN),
            1 => Just(f32::MAX),
            1 => Just(-f32::MAX),
            1 => Just(1e-40f32),
            1 => Just(3e37f32),
        ];
        (Just(b), Just(v), prop::collection::vec(val, b * v))
    })
}

fn support() -> impl Strategy<Value = Support> {
    (0u32..60, 0.01f32..=1.0, 0.0f32..0.5).prop_map(|(top_k, top_p, min_p)| Support {
        top_k,
        top_p,
        min_p,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn q_sums_to_one_for_every_decoder((b, v, z) in rows(), s in support(), t in prop_oneof![4 => 0.05f32..4.0, 1 => Just(1e-30f32), 1 => Just(1e-3f32), 1 => Just(1e3f32)]) {
        let l = Logits::new(&z, b, v).unwrap();
        for d in [Decoder::greedy(), Decoder::softmax(t), Decoder::softmax(t).with_support(s), Decoder::sparsemax(t),
                  Decoder::bok(samplex::Bok { temperature: t, ..samplex::Bok::DEFAULT }).with_support(s)] {
            let q = cpu::distribution(&l, Rows::All(d), None).unwrap();
            prop_assert_eq!(q.len(), b);
            for (r, qr) in q.iter().enumerate() {
                // +∞ counts as f32::MAX; NaN and −∞ weigh nothing.
                let any_finite = l.row(r).iter().any(|x| !x.is_nan() && *x != f32::NEG_INFINITY);
                let sum: f64 = qr.iter().sum();
                if any_finite {
                    prop_assert!((sum - 1.0).abs() < 1e-9, "{:?}: sum {}", d, sum);
                } else {
                    prop_assert_eq!(sum, 0.0);
                }
                prop_assert!(qr.iter().all(|x| *x >= 0.0));
            }
        }
    }

    #[test]
    fn each_support_rule_holds((b, v, z) in rows(), s in support(), t in 0.05f32..4.0) {
        let l = Logits::new(&z, b, v).unwrap();
        let keep = cpu::kept(&l, Rows::All(Decoder::softmax(t).with_support(s))).unwrap();
        for r in 0..b {
            let (zr, _) = cpu::widen_row(l.row(r));
            let finite: Vec<usize> = (0..v).filter(|&i| zr[i].is_finite()).collect();
            let kept: Vec<usize> = (0..v).filter(|&i| keep[r][i]).collect();
            if finite.is_empty() {
                prop_assert!(kept.is_empty());
                continue;
            }
            prop_assert!(!kept.is_empty(), "the argmax is always kept");
            // every kept logit ≥ every dropped finite logit: the set is a threshold
            let min_kept = kept.iter().map(|&i| zr[i]).fold(f64::INFINITY, f64::min);
            for &i in &finite {
                if !keep[r][i] {
                    prop_assert!(zr[i] < min_kept);
                }
            }
            if s.top_k > 0 && (s.top_k as usize) < v {
                let greater = finite.iter().filter(|&&i| zr[i] > min_kept).count();
                prop_assert!(greater < s.top_k as usize, "top-k kept a token below the k-th value");
            }
            let m = zr.iter().copied().fold(f64::NEG_INFINITY, f64::max) / f64::from(t);
            let w = |i: usize| (zr[i] / f64::from(t) - m).exp();
            if s.min_p > 0.0 {
                prop_assert!(kept.iter().all(|&i| w(i) >= f64::from(s.min_p)));
            }
            if s.top_p < 1.0 && s.min_p == 0.0 {
                // minimal: without the lowest tie group the kept mass would fall short of p
                let k_set = cpu::kept(&l, Rows::All(Decoder::softmax(t).with_support(Support { top_k: s.top_k, ..Support::ALL }))).unwrap();
                let base: f64 = (0..v).filter(|&i| k_set[r][i]).map(w).sum();
                let mass: f64 = kept.iter().map(|&i| w(i)).sum();
                let above: f64 = kept.iter().filter(|&&i| zr[i] > min_kept).map(|&i| w(i)).sum();
                prop_assert!(mass >= f64::from(s.top_p) * base * (1.0 - 1e-12));
                prop_assert!(above < f64::from(s.top_p) * base * (1.0 + 1e-12));
            }
        }
    }

    #[test]
    fn selection_is_exactly_k_sorted((b, v, z) in rows(), k in 1u32..300) {
        let l = Logits::new(&z, b, v).unwrap();
        let sel = cpu::top_k_select(&l, Rows::All(k)).unwrap();
        prop_assert_eq!(sel.len(), b);
        for row in &sel {
            prop_assert_eq!(row.len(), (k as usize).min(v));
            for pair in row.windows(2) {
                prop_assert!(pair[0].0 > pair[1].0 || (pair[0].0 == pair[1].0 && pair[0].1 < pair[1].1));
            }
        }
    }
}
