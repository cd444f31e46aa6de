//! Speculative decoding with prompt-lookup drafts, the way a serving loop on cudarc would run
//! it. Each request proposes up to `MAX_DRAFT` tokens by looking its last token up earlier in
//! its own text and copying what followed (n-gram drafting: no draft model, so no draft
//! distributions), a different number per request, or none. The target model scores every
//! drafted position in one pass, and `Sampler::verify_draft_logits` takes its logits as they
//! are: it applies each request's temperature and the softmax as it reads them (no probability
//! rows are written), keeps the accepted prefix of each draft (one-hot drafts: `draft_probs`
//! `None`) and draws one more token. The drafts and the target's rows come packed, as a
//! flattened batch holds them (`DraftLayout::Packed`): the pass scores each request's n_r + 1
//! positions and no padding, and the verdicts come back padded to `MAX_DRAFT`. A request emits
//! accepted + 1 tokens per target pass instead of 1, and every token is still distributed as
//! the target's own draw. A temperature-0 request gets one-hot target distributions: its
//! verification is greedy decoding (a draft token is kept iff it is the argmax, and the
//! replacement is the argmax), which the example checks too. Every step is checked against the
//! CPU reference (`cpu::verify_draft_logits`: the softmax in f64, then the verification) with
//! the same seeds and offsets.
//!
//!     cargo run --release --example speculative
//!     scripts/emu/run.sh cargo run --example speculative   # without a GPU, on the emulator
//!
//! Without a GPU it says so and exits.

use samplex::gpu::{DeviceLogits, DeviceSeeds, RowParams, Sampler};
use samplex::{cpu, status, DraftLayout, Error, Logits, Rng, Rows};

/// Requests in the batch, the vocabulary, the padded draft length and the steps.
const BATCH: usize = 4;
const VOCAB: usize = 32_000;
const MAX_DRAFT: usize = 4;
const STEPS: usize = 8;
/// Each request's (temperature, seed); temperature 0 is greedy.
const REQUESTS: [(f32, u64); BATCH] = [(0.7, 21), (1.0, 22), (0.0, 23), (0.4, 24)];
/// The tokens the model mostly cycles through (so that text repeats and lookups find drafts).
const LOOP: usize = 16;

/// A toy target model: the next token's logits depend on the previous token alone. Two
/// favourites inside the first LOOP tokens (the first, `favourite`, walks one cycle through all
/// of them), and noise over the whole vocabulary (xorshift).
fn model_row(prev: u32, out: &mut [f32]) {
    let t = prev as usize;
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    for (k, z) in out.iter_mut().enumerate() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state >> 40) as f32 / (1u64 << 24) as f32;
        *z = 3.0 * noise
            + if k == favourite(prev) as usize {
                16.0
            } else if k == (t * 7 + 3) % LOOP {
                15.0
            } else {
                0.0
            };
    }
}

/// The model's most likely next token (t → 5t + 1 mod LOOP: one cycle of LOOP tokens).
fn favourite(prev: u32) -> u32 {
    (prev * 5 + 1) % LOOP as u32
}

/// Prompt lookup: the tokens that followed the latest earlier occurrence of the last token
/// (at most MAX_DRAFT of them), or none.
fn lookup_draft(text: &[u32]) -> Vec<u32> {
    let last = *text.last().expect("a request has a prompt");
    let earlier = &text[..text.len() - 1];
    match earlier.iter().rposition(|&t| t == last) {
        Some(j) => earlier[j + 1..].iter().take(MAX_DRAFT).copied().collect(),
        None => Vec::new(),
    }
}

/// Request r's offset at a step: each target pass uses MAX_DRAFT + 1 of its stream's offsets.
fn offset(r: usize, step: usize) -> u64 {
    1000 * r as u64 + (step * (MAX_DRAFT + 1)) as u64
}

fn fail(what: String) -> Error {
    println!("{what}");
    Error::Unsupported("speculative: the device disagrees with the CPU reference".into())
}

fn main() -> samplex::Result<()> {
    let mut sampler = match Sampler::on_device(0) {
        Ok(s) => s,
        Err(e @ (Error::NoDriver | Error::NoDevice(_))) => {
            println!("speculative: {e}; this example needs a GPU (or scripts/emu/run.sh)");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let stream = sampler.stream().clone();
    // At most: every request drafts MAX_DRAFT tokens, and has a target row per drafted
    // position and one after.
    let max_rows = BATCH * (MAX_DRAFT + 1);

    // Device buffers, allocated once at their largest: a serving loop reuses them every step.
    let temps = REQUESTS.map(|r| r.0);
    let temps_dev = stream.clone_htod(&temps)?;
    let seeds = stream.clone_htod(&REQUESTS.map(|r| r.1))?;
    let mut offsets = stream.alloc_zeros::<u64>(BATCH)?;
    let mut logits = stream.alloc_zeros::<f32>(max_rows * VOCAB)?;
    let mut drafts_dev = stream.alloc_zeros::<u32>(BATCH * MAX_DRAFT)?;
    let mut starts_dev = stream.alloc_zeros::<u32>(BATCH + 1)?;
    let mut tokens = stream.alloc_zeros::<u32>(BATCH * (MAX_DRAFT + 1))?;
    let mut accepted = stream.alloc_zeros::<u32>(BATCH)?;
    let mut flags = stream.alloc_zeros::<u32>(BATCH)?;

    // Each request's prompt: 20 tokens the model likes (so that, as when a model quotes its
    // prompt, the text it writes is found earlier in it).
    let mut texts: Vec<Vec<u32>> = (0..BATCH)
        .map(|r| {
            std::iter::successors(Some(3 * r as u32), |&t| Some(favourite(t)))
                .take(20)
                .collect()
        })
        .collect();
    let (mut drafted, mut kept, mut emitted, mut near) = (0, 0, 0, 0);
    let mut host_logits = vec![0.0f32; max_rows * VOCAB];
    for step in 0..STEPS {
        // 1. Drafts, packed: request r's are drafts[starts[r] .. starts[r + 1]].
        let mut drafts = Vec::with_capacity(BATCH * MAX_DRAFT);
        let mut starts = vec![0u32];
        for text in &texts {
            drafts.extend(lookup_draft(text));
            starts.push(drafts.len() as u32);
        }
        drafted += drafts.len();
        let lens: Vec<u32> = starts.windows(2).map(|w| w[1] - w[0]).collect();

        // 2. The target pass over the packed positions: request r's rows start at
        // starts[r] + r, and its row i scores the token after the text and i drafts.
        let rows = drafts.len() + BATCH;
        for r in 0..BATCH {
            let first = starts[r] as usize;
            for i in 0..=lens[r] as usize {
                let prev = match i {
                    0 => *texts[r].last().expect("a prompt"),
                    k => drafts[first + k - 1],
                };
                let at = (first + r + i) * VOCAB;
                model_row(prev, &mut host_logits[at..at + VOCAB]);
            }
        }
        let scored = &host_logits[..rows * VOCAB];
        stream.memcpy_htod(scored, &mut logits.slice_mut(..rows * VOCAB))?;
        stream.memcpy_htod(&drafts, &mut drafts_dev.slice_mut(..drafts.len()))?;
        stream.memcpy_htod(&starts, &mut starts_dev)?;
        let at: Vec<u64> = (0..BATCH).map(|r| offset(r, step)).collect();
        stream.memcpy_htod(&at, &mut offsets)?;

        // 3. On the device: the verification on the logits, at each request's temperature.
        let per_request = RowParams {
            temperature: Some(temps_dev.as_view()),
            ..RowParams::default()
        };
        let x = DeviceLogits::new(logits.slice(..rows * VOCAB), rows, VOCAB)?;
        let rng = DeviceSeeds::Each {
            seeds: seeds.as_view(),
            offsets: offsets.as_view(),
        };
        sampler.verify_draft_logits(
            None,
            &drafts_dev.slice(..drafts.len()),
            DraftLayout::Packed {
                starts: &starts_dev.as_view(),
                max_drafts: MAX_DRAFT,
            },
            &x,
            1.0,
            &per_request,
            BATCH,
            &rng,
            &mut tokens.as_view_mut(),
            &mut accepted.as_view_mut(),
            Some(&mut flags.as_view_mut()),
        )?;
        let got_tokens = stream.clone_dtoh(&tokens)?;
        let got_accepted = stream.clone_dtoh(&accepted)?;
        let got_flags = stream.clone_dtoh(&flags)?;

        // 4. The CPU reference, same logits, temperatures, seeds and offsets.
        let rngs: Vec<Rng> = (0..BATCH)
            .map(|r| Rng::new(REQUESTS[r].1).at(offset(r, step)))
            .collect();
        let verdicts = cpu::verify_draft_logits(
            None,
            &drafts,
            DraftLayout::Packed {
                starts: &starts,
                max_drafts: MAX_DRAFT,
            },
            &Logits::new(scored, rows, VOCAB)?,
            Rows::Each(&temps),
            BATCH,
            Rows::Each(&rngs),
        )?;
        for (r, v) in verdicts.iter().enumerate() {
            let g = &got_tokens[r * (MAX_DRAFT + 1)..(r + 1) * (MAX_DRAFT + 1)];
            if g != v.tokens.as_slice() || got_accepted[r] != v.accepted {
                if v.margin < 1e-5 {
                    near += 1; // SPEC: a test or the draw within 1e-5 of its boundary
                } else {
                    return Err(fail(format!(
                        "step {step} request {r}: gpu {g:?}, cpu {:?}",
                        v.tokens
                    )));
                }
            } else if got_flags[r] != v.status {
                return Err(fail(format!(
                    "step {step} request {r}: status {:#x} on the GPU, {:#x} on the CPU",
                    got_flags[r], v.status
                )));
            }
        }

        // 5. Emit accepted + 1 tokens per request. A greedy request's are its argmax chain.
        for r in 0..BATCH {
            let e = got_accepted[r] as usize;
            let out = &got_tokens[r * (MAX_DRAFT + 1)..][..e + 1];
            if out.contains(&status::NO_TOKEN) {
                return Err(fail(format!(
                    "step {step} request {r}: no token in {out:?}"
                )));
            }
            if REQUESTS[r].0 == 0.0 {
                for (i, &t) in out.iter().enumerate() {
                    let at = (starts[r] as usize + r + i) * VOCAB;
                    let row = &scored[at..at + VOCAB];
                    let best = (0..VOCAB).fold(0, |b, k| if row[k] > row[b] { k } else { b });
                    if t as usize != best {
                        return Err(fail(format!(
                            "step {step}: greedy request emitted {t}, the argmax is {best}"
                        )));
                    }
                }
            }
            kept += e;
            emitted += e + 1;
            texts[r].extend_from_slice(out);
        }
        println!("step {step}: drafts {lens:?}, accepted {got_accepted:?}");
    }
    let passes = STEPS * BATCH;
    println!(
        "speculative: {STEPS} steps x {BATCH} requests on {:?} ({:?} kernels): {drafted} drafted \
         tokens, {kept} accepted, {emitted} tokens from {passes} target passes ({:.2} per \
         pass); every verdict equals the CPU reference's ({near} within the margin)",
        sampler.context().name().unwrap_or_default(),
        sampler.kernel_origin(),
        emitted as f64 / passes as f64,
    );
    Ok(())
}
