//! Runs every decoder on a small batch: on the GPU when there is one, on the CPU reference
//! otherwise, and prints what it did.
//!
//!     cargo run --release --example quickstart

use samplex::gpu::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use samplex::{cpu, Bok, Decoder, Logits, Rng, Rows, Support};

const BATCH: usize = 4;
const VOCAB: usize = 32_000;

fn decoders() -> Vec<(&'static str, Decoder)> {
    vec![
        ("greedy", Decoder::greedy()),
        ("softmax τ=0.8", Decoder::softmax(0.8)),
        ("top-k 50", Decoder::top_k(50, 1.0)),
        ("top-p 0.9", Decoder::top_p(0.9, 1.0)),
        ("min-p 0.1", Decoder::min_p(0.1, 1.0)),
        (
            "top-k 50 + top-p 0.9",
            Decoder::softmax(1.0).with_support(Support {
                top_k: 50,
                top_p: 0.9,
                min_p: 0.0,
            }),
        ),
        ("sparsemax τ=1", Decoder::sparsemax(1.0)),
        ("BoK K=8 T=5", Decoder::bok(Bok::DEFAULT)),
    ]
}

/// Logits with a few clear favourites over a flat tail, different per row.
fn make_logits() -> Vec<f32> {
    let mut z = vec![0.0f32; BATCH * VOCAB];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for (i, x) in z.iter_mut().enumerate() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state >> 40) as f32 / (1u64 << 24) as f32;
        let token = i % VOCAB;
        let row = i / VOCAB;
        *x = 2.0 * noise
            + if token % 997 == row {
                9.0 - (token / 997) as f32 * 0.05
            } else {
                0.0
            };
    }
    z
}

fn main() {
    let z = make_logits();
    let rng = Rng::new(2026);
    match Sampler::on_device(0) {
        Ok(sampler) => {
            println!(
                "samplex quickstart: GPU (kernels from {:?}), batch {BATCH} × vocab {VOCAB}",
                sampler.kernel_origin()
            );
            if let Err(e) = run_gpu(sampler, &z, rng) {
                println!("GPU run failed: {e}");
                run_cpu(&z, rng);
            }
        }
        Err(e) => {
            println!("samplex quickstart: no GPU ({e}); using the CPU reference, batch {BATCH} × vocab {VOCAB}");
            run_cpu(&z, rng);
        }
    }
}

fn run_cpu(z: &[f32], rng: Rng) {
    let logits = Logits::new(z, BATCH, VOCAB).expect("shape");
    for (name, d) in decoders() {
        let draws =
            cpu::sample(&logits, Rows::All(d), Rows::All(rng), None).expect("valid request");
        let q = cpu::distribution(&logits, Rows::All(d), None).expect("valid request");
        let support: Vec<usize> = q
            .iter()
            .map(|row| row.iter().filter(|p| **p > 0.0).count())
            .collect();
        let tokens: Vec<u32> = draws.iter().map(|d| d.token).collect();
        println!("  {name:<22} tokens {tokens:?}  support sizes {support:?}");
    }
    // A Best-of-K pipeline draws K samples per prompt from BoK's q.
    let q = cpu::distribution(&logits, Rows::All(Decoder::bok(Bok::DEFAULT)), None)
        .expect("valid request");
    let q: Vec<f32> = q.iter().flatten().map(|&p| p as f32).collect();
    let k = Bok::DEFAULT.k as usize;
    let draws = cpu::sample_from_probs_n(&q, BATCH, VOCAB, k, Rows::All(rng)).expect("shape");
    let tokens: Vec<u32> = draws.iter().map(|d| d.token).collect();
    println!("  {:<22} tokens {tokens:?}", k_draws_name());
}

/// The name of the K-draws line.
fn k_draws_name() -> String {
    format!("BoK q, {} draws/row", Bok::DEFAULT.k)
}

fn run_gpu(mut s: Sampler, z: &[f32], rng: Rng) -> samplex::Result<()> {
    let stream = s.stream().clone();
    let dev = stream.clone_htod(z)?;
    let mut tokens = stream.alloc_zeros::<u32>(BATCH)?;
    let mut status = stream.alloc_zeros::<u32>(BATCH)?;
    for (name, d) in decoders() {
        let logits = DeviceLogits::new(dev.as_view(), BATCH, VOCAB)?;
        let result = s.sample(
            &logits,
            &d,
            &RowParams::default(),
            &DeviceSeeds::Shared(rng),
            None,
            &mut tokens.as_view_mut(),
            Some(&mut status.as_view_mut()),
        );
        match result {
            Ok(()) => {
                let t = stream.clone_dtoh(&tokens)?;
                let st = stream.clone_dtoh(&status)?;
                let host = Logits::new(z, BATCH, VOCAB)?;
                let cpu_tokens: Vec<u32> = cpu::sample(&host, Rows::All(d), Rows::All(rng), None)?
                    .iter()
                    .map(|d| d.token)
                    .collect();
                println!(
                    "  {name:<22} gpu tokens {t:?} (cpu reference {cpu_tokens:?}) status {st:?}"
                );
            }
            Err(e) => println!("  {name:<22} {e}"),
        }
    }
    // A Best-of-K pipeline draws K samples per prompt from BoK's q: one read of q for all K.
    let logits = DeviceLogits::new(dev.as_view(), BATCH, VOCAB)?;
    let mut q = stream.alloc_zeros::<f32>(BATCH * VOCAB)?;
    let bok = Decoder::bok(Bok::DEFAULT);
    let none = RowParams::default();
    s.distribution(&logits, &bok, &none, None, &mut q.as_view_mut(), None)?;
    let k = Bok::DEFAULT.k as usize;
    let mut drawn = stream.alloc_zeros::<u32>(BATCH * k)?;
    let seeds = DeviceSeeds::Shared(rng);
    s.sample_from_probs_n(
        &q.as_view(),
        BATCH,
        VOCAB,
        &seeds,
        &mut drawn.as_view_mut(),
        None,
    )?;
    let t = stream.clone_dtoh(&drawn)?;
    // The reference draws from the GPU's own q, so the two see the same weights.
    let q_host = stream.clone_dtoh(&q)?;
    let cpu_tokens: Vec<u32> = cpu::sample_from_probs_n(&q_host, BATCH, VOCAB, k, Rows::All(rng))?
        .iter()
        .map(|d| d.token)
        .collect();
    println!(
        "  {:<22} gpu tokens {t:?} (cpu reference {cpu_tokens:?})",
        k_draws_name()
    );
    Ok(())
}
