//! A serving loop's sampling step, the way a decode loop on cudarc would run it: each request's
//! temperature, top-k, top-p, seed and offset live in device buffers, and so does the history
//! of the tokens it generated, which the step's first stage penalises (SPEC's logit edits:
//! repetition, presence, frequency); one call outside any capture warms the sampler (kernels
//! loaded, path chosen, workspace grown); then the step is captured once into a CUDA graph and
//! replayed every decode step on the logits the "model" wrote, with each request's offset
//! advanced and its history appended in place. The step ends with each sampled token's
//! log-probability (what an OpenAI-style `logprobs` answer returns), computed on the device
//! without writing the distribution. Every replayed step is checked against the CPU reference:
//! the penalised logits, the tokens (same seeds, same method) and their log-probabilities.
//!
//!     cargo run --release --example serving_loop
//!     scripts/emu/run.sh cargo run --example serving_loop   # without a GPU, on the emulator
//!
//! Without a GPU it says so and exits.

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use half::bf16;
use samplex::gpu::{
    DeviceHistory, DeviceLogits, DeviceLogitsMut, DeviceSeeds, PenaltyRows, RowParams, Sampler,
};
use samplex::{cpu, Decoder, Error, History, Logits, Penalties, Rng, Rows, Support};

/// Requests in the batch, and the model's vocabulary (Llama 3's).
const BATCH: usize = 6;
const VOCAB: usize = 128_256;
const STEPS: u64 = 6;

/// Each request's sampling parameters: (temperature, top_k, top_p, seed). Temperature 0 is
/// greedy, top_k 0 and top_p 1 are off.
const REQUESTS: [(f32, u32, f32, u64); BATCH] = [
    (0.7, 50, 0.9, 11),
    (1.0, 0, 0.95, 12),
    (0.0, 0, 1.0, 13),
    (1.2, 20, 1.0, 14),
    (0.5, 0, 0.8, 15),
    (1.0, 100, 0.9, 16),
];

/// The penalties on each request's own generated tokens.
const PENALTIES: Penalties = Penalties {
    repetition: 1.2,
    presence: 0.5,
    frequency: 0.25,
};

/// The "model": step `step`'s logits, a few favourites per row over a flat tail (xorshift).
fn model_logits(step: u64) -> Vec<bf16> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (step + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    (0..BATCH * VOCAB)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32;
            let favourite = (i % VOCAB) % 997 == (step as usize * 31 + i / VOCAB) % 997;
            bf16::from_f32(if favourite {
                6.0 + 4.0 * noise
            } else {
                4.0 * noise
            })
        })
        .collect()
}

/// Request r's offset at a step: each request started at its own position in its stream.
fn offset(r: usize, step: u64) -> u64 {
    100 * r as u64 + step
}

fn main() -> samplex::Result<()> {
    let mut sampler = match Sampler::on_device(0) {
        Ok(s) => s,
        Err(e @ (Error::NoDriver | Error::NoDevice(_))) => {
            println!("serving_loop: {e}; this example needs a GPU (or scripts/emu/run.sh)");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let stream = sampler.stream().clone();
    // Every buffer below lives on this one stream, so cudarc's cross-stream events are not
    // needed (and would be recorded inside the capture otherwise).
    // SAFETY: all work is on `stream`, and nothing is freed while the stream uses it.
    unsafe { stream.context().disable_event_tracking() };

    // Per-request parameters and random streams, on the device.
    let temps = stream.clone_htod(&REQUESTS.map(|r| r.0))?;
    let top_k = stream.clone_htod(&REQUESTS.map(|r| r.1))?;
    let top_p = stream.clone_htod(&REQUESTS.map(|r| r.2))?;
    let seeds = stream.clone_htod(&REQUESTS.map(|r| r.3))?;
    let mut offsets = stream.clone_htod(&[0u64; BATCH])?;
    let mut logits = stream.clone_htod(&model_logits(0))?;
    let mut tokens = stream.alloc_zeros::<u32>(BATCH)?;
    // Each request's generated tokens, padded with VOCAB (an id the penalties ignore).
    let mut generated = vec![VOCAB as u32; BATCH * STEPS as usize];
    let mut history = stream.clone_htod(&generated)?;
    let mut status = stream.alloc_zeros::<u32>(BATCH)?;
    let mut log_probs = stream.alloc_zeros::<f32>(BATCH)?;

    // The batch-wide decoder is overridden row by row: softmax over top-k ∩ top-p.
    let decoder = Decoder::softmax(1.0);
    let mut step = |s: &mut Sampler,
                    logits: &mut cudarc::driver::CudaSlice<bf16>,
                    history: &cudarc::driver::CudaSlice<u32>,
                    offsets: &cudarc::driver::CudaSlice<u64>|
     -> samplex::Result<()> {
        // SPEC's first stage, in place: the penalties on what each request generated so far.
        let hist = DeviceHistory {
            tokens: history.as_view(),
            max_len: STEPS as usize,
            lengths: None,
        };
        let mut edited = DeviceLogitsMut::new(logits.as_view_mut(), BATCH, VOCAB)?;
        s.apply_penalties(
            &mut edited,
            &hist,
            &PENALTIES,
            &PenaltyRows::default(),
            None,
        )?;
        let rows = RowParams {
            temperature: Some(temps.as_view()),
            top_k: Some(top_k.as_view()),
            top_p: Some(top_p.as_view()),
            ..RowParams::default()
        };
        let rng = DeviceSeeds::Each {
            seeds: seeds.as_view(),
            offsets: offsets.as_view(),
        };
        let logits = DeviceLogits::new(logits.as_view(), BATCH, VOCAB)?;
        let status = &mut status.as_view_mut();
        s.sample(
            &logits,
            &decoder,
            &rows,
            &rng,
            None,
            &mut tokens.as_view_mut(),
            Some(status),
        )?;
        // The sampled tokens' log-probabilities under the penalised model distribution (τ = 1).
        let (tokens, out) = (tokens.as_view(), &mut log_probs.as_view_mut());
        s.token_log_probs(&logits, 1.0, &RowParams::default(), &tokens, out, None)
    };

    // 1. Warm up outside the capture: nothing inside the graph may load or allocate.
    step(&mut sampler, &mut logits, &history, &offsets)?;
    stream.synchronize()?;

    // 2. Capture the step once.
    stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
    let captured = step(&mut sampler, &mut logits, &history, &offsets);
    let graph = stream.end_capture(CUgraphInstantiate_flags(0))?;
    captured?;
    let graph = graph.expect("the capture recorded the sampling kernels");

    // 3. Decode: the model writes new logits, the loop advances each request's offset and
    //    appends its last token to its history in place, and the graph replays the step.
    let (mut same, mut near, mut edited, mut scored) = (0, 0, 0, 0);
    for t in 0..STEPS {
        let host = model_logits(t);
        stream.memcpy_htod(&host, &mut logits)?;
        let at: Vec<u64> = (0..BATCH).map(|r| offset(r, t)).collect();
        stream.memcpy_htod(&at, &mut offsets)?;
        stream.memcpy_htod(&generated, &mut history)?;
        graph.launch()?;
        let got = stream.clone_dtoh(&tokens)?;
        let got_log_probs = stream.clone_dtoh(&log_probs)?;
        let penalised = stream.clone_dtoh(&logits)?;

        // The CPU reference: the same penalties on the same history (the device rounds in f32,
        // the CPU in f64: a value may differ by a unit in bf16's last place) ...
        let mut want_logits = host.clone();
        let hist = History {
            tokens: &generated,
            max_len: STEPS as usize,
            lengths: None,
        };
        cpu::apply_penalties(
            &mut want_logits,
            BATCH,
            VOCAB,
            VOCAB,
            &hist,
            Rows::All(PENALTIES),
        )?;
        for (i, (g, w)) in penalised.iter().zip(&want_logits).enumerate() {
            let (g, w, before) = (g.to_f32(), w.to_f32(), host[i].to_f32());
            edited += usize::from(w != before);
            if (g - w).abs() > w.abs().max(before.abs()) / 128.0 {
                println!("step {t}: penalised logit {i} is {g} on the GPU, {w} on the CPU");
                return Err(Error::Unsupported(
                    "a penalised logit differs from the CPU reference".into(),
                ));
            }
        }
        // ... and then the same draw on the device's penalised logits, parameters and
        // (seed, offset).
        let batch = Logits::new(&penalised, BATCH, VOCAB)?;
        let decoders: Vec<Decoder> = REQUESTS
            .iter()
            .map(|&(t, k, p, _)| {
                Decoder::softmax(t).with_support(Support {
                    top_k: k,
                    top_p: p,
                    min_p: 0.0,
                })
            })
            .collect();
        let rngs: Vec<Rng> = (0..BATCH)
            .map(|r| Rng::new(REQUESTS[r].3).at(offset(r, t)))
            .collect();
        let want = cpu::sample(&batch, Rows::Each(&decoders), Rows::Each(&rngs), None)?;
        for (r, (g, w)) in got.iter().zip(&want).enumerate() {
            if *g == w.token {
                same += 1;
            } else if w.margin < 1e-5 {
                near += 1; // SPEC: the draw fell within 1e-5 of a CDF boundary
            } else {
                println!("step {t} request {r}: gpu token {g}, cpu token {}", w.token);
                return Err(Error::Unsupported(
                    "a replayed token differs from the CPU reference".into(),
                ));
            }
        }
        // ... and the sampled tokens' log-probabilities (f32 on the device, f64 on the CPU).
        let want_log_probs = cpu::token_log_probs(&batch, Rows::All(1.0), &got)?;
        for (r, (&g, &w)) in got_log_probs.iter().zip(&want_log_probs).enumerate() {
            if (f64::from(g) - w).abs() > 1e-5 * w.abs().max(1.0) {
                println!("step {t} request {r}: log p {g} on the GPU, {w} on the CPU");
                return Err(Error::Unsupported(
                    "a token's log-probability differs from the CPU reference".into(),
                ));
            }
            scored += 1;
        }
        println!("step {t}: tokens {got:?}, log p {got_log_probs:.3?}");
        for (r, &g) in got.iter().enumerate() {
            generated[r * STEPS as usize + t as usize] = g;
        }
    }
    println!(
        "serving_loop: {STEPS} graph replays x {BATCH} requests on {:?} ({:?} kernels): \
         {same} tokens equal the CPU reference's, {near} differ within the CDF margin; \
         {edited} logits penalised as on the CPU; {scored} log-probabilities as on the CPU",
        sampler.context().name().unwrap_or_default(),
        sampler.kernel_origin(),
    );
    Ok(())
}
