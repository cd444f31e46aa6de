//! SPEC "Bad input": every host-side check gives its typed error, naming the value.

use samplex::{cpu, Bok, BokWeights, Decoder, Error, Logits, Rng, Rows, Support};

fn one_row() -> Vec<f32> {
    vec![1.0, 2.0, 3.0]
}

fn bad_param(r: samplex::Result<impl std::fmt::Debug>, want: &str) {
    match r {
        Err(Error::BadParam { name, .. }) => assert_eq!(name, want),
        other => panic!("expected BadParam({want}), got {other:?}"),
    }
}

fn sample_with(d: Decoder) -> samplex::Result<Vec<cpu::Draw>> {
    let z = one_row();
    let l = Logits::new(&z, 1, 3).unwrap();
    cpu::sample(&l, Rows::All(d), Rows::All(Rng::new(0)), None)
}

#[test]
fn empty_batch_and_vocab_are_refused() {
    assert!(matches!(
        Logits::<f32>::new(&[], 0, 3),
        Err(Error::EmptyBatch)
    ));
    assert!(matches!(
        Logits::<f32>::new(&[], 1, 0),
        Err(Error::BadVocab(0))
    ));
}

#[test]
fn short_buffers_and_small_strides_are_refused() {
    let z = one_row();
    assert!(matches!(
        Logits::new(&z, 2, 3),
        Err(Error::BadLength {
            name: "logits",
            got: 3,
            expected: 6
        })
    ));
    assert!(matches!(
        Logits::with_stride(&z, 1, 3, 2),
        Err(Error::BadStride {
            stride: 2,
            vocab: 3
        })
    ));
}

#[test]
fn temperature_must_be_non_negative_and_not_nan() {
    bad_param(sample_with(Decoder::softmax(-0.5)), "temperature");
    bad_param(sample_with(Decoder::softmax(f32::NAN)), "temperature");
    bad_param(sample_with(Decoder::sparsemax(-1.0)), "temperature");
    let msg = sample_with(Decoder::softmax(-0.5)).unwrap_err().to_string();
    assert!(msg.contains("temperature") && msg.contains("-0.5"), "{msg}");
}

#[test]
fn top_p_must_be_in_zero_one() {
    for p in [0.0, -0.1, 1.5, f32::NAN] {
        bad_param(sample_with(Decoder::top_p(p, 1.0)), "top_p");
    }
    let msg = sample_with(Decoder::top_p(1.5, 1.0))
        .unwrap_err()
        .to_string();
    assert_eq!(msg, "top_p must be in (0, 1], got 1.5");
}

#[test]
fn min_p_must_be_in_the_unit_interval() {
    for m in [-0.1, 1.01, f32::NAN] {
        bad_param(sample_with(Decoder::min_p(m, 1.0)), "min_p");
    }
}

#[test]
fn bok_parameters_are_checked() {
    let with = |f: fn(&mut Bok)| {
        let mut b = Bok::DEFAULT;
        f(&mut b);
        sample_with(Decoder::bok(b))
    };
    bad_param(with(|b| b.k = 0), "k");
    bad_param(with(|b| b.beta = 0.0), "beta");
    bad_param(with(|b| b.beta = -1.0), "beta");
    bad_param(with(|b| b.lambda = -0.1), "lambda");
    bad_param(with(|b| b.eta = 0.0), "eta");
    bad_param(with(|b| b.temperature = 0.0), "temperature");
    bad_param(with(|b| b.weights = BokWeights::TopM(0)), "top_m");
}

#[test]
fn bok_weights_must_have_batch_times_vocab_entries() {
    let z = one_row();
    let l = Logits::new(&z, 1, 3).unwrap();
    let d = Decoder::bok(Bok {
        weights: BokWeights::Custom,
        ..Bok::DEFAULT
    });
    let r = cpu::sample(&l, Rows::All(d), Rows::All(Rng::new(0)), Some(&[1.0, 2.0]));
    assert!(matches!(
        r,
        Err(Error::BadLength {
            name: "weights",
            got: 2,
            expected: 3
        })
    ));
    let r = cpu::sample(&l, Rows::All(d), Rows::All(Rng::new(0)), None);
    assert!(matches!(
        r,
        Err(Error::BadLength {
            name: "weights",
            ..
        })
    ));
    let r = cpu::sample(
        &l,
        Rows::All(d),
        Rows::All(Rng::new(0)),
        Some(&[1.0, -2.0, 0.0]),
    );
    bad_param(r, "weights");
}

#[test]
fn per_row_parameters_must_have_one_entry_per_row() {
    let z = [one_row(), one_row()].concat();
    let l = Logits::new(&z, 2, 3).unwrap();
    let ds = [Decoder::softmax(1.0)];
    let r = cpu::sample(&l, Rows::Each(&ds), Rows::All(Rng::new(0)), None);
    assert!(matches!(
        r,
        Err(Error::BadLength {
            name: "decoders",
            got: 1,
            expected: 2
        })
    ));
    let seeds = [Rng::new(1); 3];
    let r = cpu::sample(
        &l,
        Rows::All(Decoder::softmax(1.0)),
        Rows::Each(&seeds),
        None,
    );
    assert!(matches!(
        r,
        Err(Error::BadLength {
            name: "seeds",
            got: 3,
            expected: 2
        })
    ));
    let r = cpu::softmax(&l, Rows::Each(&[1.0]));
    assert!(matches!(
        r,
        Err(Error::BadLength {
            name: "temperature",
            ..
        })
    ));
}

#[test]
fn a_support_rule_on_sparsemax_is_unsupported() {
    let d = Decoder::sparsemax(1.0).with_support(Support {
        top_k: 2,
        ..Support::ALL
    });
    assert!(matches!(sample_with(d), Err(Error::Unsupported(_))));
}

#[test]
fn top_k_select_needs_k_of_at_least_one() {
    let z = one_row();
    let l = Logits::new(&z, 1, 3).unwrap();
    bad_param(cpu::top_k_select(&l, Rows::All(0)), "k");
}

#[test]
fn the_gpu_path_says_no_driver_instead_of_panicking() {
    if samplex::gpu::driver_present() {
        eprintln!("SKIPPED the_gpu_path_says_no_driver_instead_of_panicking: a driver is present");
        return;
    }
    assert!(matches!(
        samplex::gpu::Sampler::on_device(0),
        Err(Error::NoDriver)
    ));
    assert!(matches!(samplex::gpu::context(0), Err(Error::NoDriver)));
}
