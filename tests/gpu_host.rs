//! The host side of a call, on the GPU: once the sampler has run an operation at a shape (its
//! kernels loaded, its path queries answered, its workspace grown), calling it again at that
//! shape allocates nothing on the host — a serving loop that samples every step adds no
//! allocator traffic. Counted by this binary's global allocator on the calling thread, for every
//! public operation, on every split path the device has. Skips (and says so) where there is no
//! GPU.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use cudarc::driver::CudaSlice;
use half::bf16;
use samplex::gpu::softmax::Staging;
use samplex::gpu::{
    DeviceHistory, DeviceLogits, DeviceLogitsMut, DeviceSeeds, PenaltyRows, RowParams, RowSplit,
    Sampler,
};
use samplex::{Bok, BokWeights, Decoder, DraftLayout, Logit, Penalties, Rng, Support};

/// The system allocator, counting the allocations of each thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator also runs while a thread's locals are being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments; counting touches
// only a const-initialised thread-local (no allocation, no reentry).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How many allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// The device buffers of one shape: logits, per-row parameters and seeds, and every output.
struct Buffers<T: Logit> {
    batch: usize,
    vocab: usize,
    stride: usize,
    logits: CudaSlice<T>,
    temperature: CudaSlice<f32>,
    top_k: CudaSlice<u32>,
    top_p: CudaSlice<f32>,
    min_p: CudaSlice<f32>,
    seeds: CudaSlice<u64>,
    offsets: CudaSlice<u64>,
    weights: CudaSlice<f32>,
    probs: CudaSlice<f32>,
    dense: CudaSlice<f32>,
    /// The target's two distributions per row of a one-token draft (verify_draft).
    target: CudaSlice<f32>,
    values: CudaSlice<f32>,
    indices: CudaSlice<u32>,
    tokens: CudaSlice<u32>,
    support: CudaSlice<u32>,
    status: CudaSlice<u32>,
    /// The logit edits' inputs: an allowed-token bitmask and a padded token history.
    allowed: CudaSlice<u32>,
    history: CudaSlice<u32>,
    bias: CudaSlice<f32>,
}

/// The history's padded length per row.
const HISTORY: usize = 24;

/// The selection's k.
const K: u32 = 40;

impl<T: Logit> Buffers<T> {
    fn new(s: &Sampler, batch: usize, vocab: usize, stride: usize) -> Self {
        let z = common::logits(common::Dist::Normal(1.0), batch, stride, 3);
        let st = s.stream();
        let rows = |v: f32| st.clone_htod(&vec![v; batch]).unwrap();
        Buffers {
            batch,
            vocab,
            stride,
            logits: common::upload(s, &common::convert::<T>(&z)),
            temperature: rows(0.8),
            top_k: st.clone_htod(&vec![50u32; batch]).unwrap(),
            top_p: rows(0.9),
            min_p: rows(0.05),
            seeds: st.clone_htod(&vec![11u64; batch]).unwrap(),
            offsets: st.clone_htod(&vec![4u64; batch]).unwrap(),
            weights: st.clone_htod(&vec![1.0f32; batch * vocab]).unwrap(),
            probs: st.alloc_zeros(batch * vocab).unwrap(),
            dense: st.alloc_zeros(batch * vocab).unwrap(),
            target: st.clone_htod(&vec![0.5f32; 2 * batch * vocab]).unwrap(),
            values: st.alloc_zeros(batch * K as usize).unwrap(),
            indices: st.alloc_zeros(batch * K as usize).unwrap(),
            tokens: st.alloc_zeros(batch).unwrap(),
            support: st.alloc_zeros(batch).unwrap(),
            status: st.alloc_zeros(batch).unwrap(),
            // Every other token allowed (a warm call stores as many as the first did).
            allowed: st
                .clone_htod(&vec![0x5555_5555u32; batch * samplex::mask_words(vocab)])
                .unwrap(),
            history: st
                .clone_htod(
                    &(0..batch * HISTORY)
                        .map(|i| (i * 7 % vocab.min(100)) as u32)
                        .collect::<Vec<_>>(),
                )
                .unwrap(),
            bias: st.clone_htod(&vec![0.5f32; batch * HISTORY]).unwrap(),
        }
    }
}

/// The operations, by name: every public entry point, through `sample` and `distribution` for
/// each decoder and directly for the rest, with per-row parameters, per-row seeds and a status
/// buffer where they take them.
const OPS: [&str; 30] = [
    "greedy",
    "softmax",
    "log_softmax",
    "sample_softmax",
    "sample_softmax_each_seed",
    "sample_from_probs",
    "top_k_select",
    "top_k_select_per_row",
    // After the selection: the log-probabilities of its indices.
    "token_log_probs",
    // After the log-probabilities: K draws per row into the selection's indices.
    "sample_from_probs_n",
    // A one-token draft per row: the softmax's probabilities and the tokens drawn so far.
    "verify_draft",
    // The same draft as one-hot drafts (no draft distributions).
    "verify_draft_tokens",
    // The same draft on the target's logits (the two distributions read as logits), at
    // per-request temperatures.
    "verify_draft_logits",
    "sample_top_k",
    "sample_top_p",
    "sample_min_p",
    "sample_combined_per_row",
    "filtered_probs",
    "filtered_logits",
    "sparsemax",
    "sample_sparsemax",
    "bok",
    "sample_bok",
    "bok_top_m",
    "bok_custom_weights",
    "distribution_top_p",
    "distribution_greedy",
    // Last: they edit the logits the others read.
    "mask_tokens",
    "apply_bias",
    "apply_penalties",
];

/// Queues operation `op` of [`OPS`] on `b`.
fn run<T: Logit>(s: &mut Sampler, b: &mut Buffers<T>, op: &str) -> samplex::Result<()> {
    let view = b.logits.as_view();
    let logits = DeviceLogits::with_stride(view, b.batch, b.vocab, b.stride)?;
    let none = RowParams::default();
    let per_row = RowParams {
        temperature: Some(b.temperature.as_view()),
        top_k: Some(b.top_k.as_view()),
        top_p: Some(b.top_p.as_view()),
        min_p: Some(b.min_p.as_view()),
        ..RowParams::default()
    };
    let shared = DeviceSeeds::Shared(Rng::new(5).at(9));
    let each = DeviceSeeds::Each {
        seeds: b.seeds.as_view(),
        offsets: b.offsets.as_view(),
    };
    let support = Support {
        top_k: 50,
        top_p: 0.9,
        min_p: 0.02,
    };
    let bok = |weights| {
        Decoder::bok(Bok {
            weights,
            ..Bok::DEFAULT
        })
    };
    let tokens = &mut b.tokens.as_view_mut();
    let status = Some(&mut b.status.as_view_mut());
    match op {
        "greedy" => s.sample(
            &logits,
            &Decoder::greedy(),
            &none,
            &shared,
            None,
            tokens,
            status,
        ),
        "softmax" | "log_softmax" => {
            let mut dense = b.dense.as_view_mut();
            let log_probs = (op == "log_softmax").then_some(&mut dense);
            let probs = &mut b.probs.as_view_mut();
            s.softmax(&logits, 0.7, &none, probs, log_probs, status)
        }
        "sample_softmax" => s.sample_softmax(&logits, 0.7, &none, &shared, tokens, status),
        "sample_softmax_each_seed" => {
            let temps = RowParams {
                temperature: Some(b.temperature.as_view()),
                ..RowParams::default()
            };
            s.sample_softmax(&logits, 0.7, &temps, &each, tokens, status)
        }
        "sample_from_probs" => {
            let probs = b.probs.as_view();
            s.sample_from_probs(&probs, b.batch, b.vocab, &each, tokens, status)
        }
        "sample_from_probs_n" => {
            let (probs, drawn) = (b.probs.as_view(), &mut b.indices.as_view_mut());
            s.sample_from_probs_n(&probs, b.batch, b.vocab, &shared, drawn, status)
        }
        "verify_draft" | "verify_draft_tokens" => {
            let (draft, drafted, target) =
                (b.probs.as_view(), b.tokens.as_view(), b.target.as_view());
            let draft = (op == "verify_draft").then_some(&draft);
            let out = &mut b.indices.slice_mut(..2 * b.batch);
            let accepted = &mut b.support.as_view_mut();
            s.verify_draft(
                draft,
                &drafted,
                DraftLayout::Padded,
                &target,
                b.batch,
                b.vocab,
                &each,
                out,
                accepted,
                status,
            )
        }
        "verify_draft_logits" => {
            let (draft, drafted) = (b.probs.as_view(), b.tokens.as_view());
            let target = DeviceLogits::new(b.target.as_view(), 2 * b.batch, b.vocab)?;
            let temps = RowParams {
                temperature: Some(b.temperature.as_view()),
                ..RowParams::default()
            };
            let out = &mut b.indices.slice_mut(..2 * b.batch);
            let accepted = &mut b.support.as_view_mut();
            s.verify_draft_logits(
                Some(&draft),
                &drafted,
                DraftLayout::Padded,
                &target,
                0.8,
                &temps,
                b.batch,
                &each,
                out,
                accepted,
                status,
            )
        }
        "top_k_select" | "top_k_select_per_row" => {
            let rows = if op == "top_k_select" {
                &none
            } else {
                &per_row
            };
            let (values, indices) = (&mut b.values.as_view_mut(), &mut b.indices.as_view_mut());
            s.top_k_select(&logits, K, rows, values, indices, status)
        }
        "token_log_probs" => {
            let temps = RowParams {
                temperature: Some(b.temperature.as_view()),
                ..RowParams::default()
            };
            let (indices, out) = (b.indices.as_view(), &mut b.values.as_view_mut());
            s.token_log_probs(&logits, 0.7, &temps, &indices, out, status)
        }
        "sample_top_k" => {
            let d = Decoder::top_k(50, 0.7);
            s.sample(&logits, &d, &none, &shared, None, tokens, status)
        }
        "sample_top_p" => {
            let d = Decoder::top_p(0.9, 0.7);
            s.sample(&logits, &d, &none, &shared, None, tokens, status)
        }
        "sample_min_p" => {
            let d = Decoder::min_p(0.05, 0.7);
            s.sample(&logits, &d, &none, &shared, None, tokens, status)
        }
        "sample_combined_per_row" => {
            let d = Decoder::softmax(0.7).with_support(support);
            s.sample(&logits, &d, &per_row, &each, None, tokens, status)
        }
        "filtered_probs" => s.filtered_probs(
            &logits,
            0.7,
            &support,
            &per_row,
            &mut b.probs.as_view_mut(),
            status,
        ),
        "filtered_logits" => {
            let masked = &mut b.dense.as_view_mut();
            s.filtered_logits(&logits, 0.7, &support, &none, masked, status)
        }
        "sparsemax" => {
            let size = Some(&mut b.support.as_view_mut());
            s.sparsemax(
                &logits,
                0.9,
                &none,
                &mut b.probs.as_view_mut(),
                size,
                status,
            )
        }
        "sample_sparsemax" => {
            let d = Decoder::sparsemax(0.9);
            s.sample(&logits, &d, &none, &each, None, tokens, status)
        }
        "bok" => s.distribution(
            &logits,
            &bok(BokWeights::Prob),
            &none,
            None,
            &mut b.probs.as_view_mut(),
            status,
        ),
        "sample_bok" => {
            let d = bok(BokWeights::Prob).with_support(support);
            s.sample(&logits, &d, &per_row, &shared, None, tokens, status)
        }
        "bok_top_m" => {
            let d = bok(BokWeights::TopM(16));
            s.distribution(&logits, &d, &none, None, &mut b.probs.as_view_mut(), status)
        }
        "bok_custom_weights" => {
            let w = b.weights.as_view();
            let d = bok(BokWeights::Custom);
            s.sample(&logits, &d, &none, &each, Some(&w), tokens, status)
        }
        "distribution_top_p" => {
            let d = Decoder::top_p(0.9, 0.7);
            s.distribution(
                &logits,
                &d,
                &per_row,
                None,
                &mut b.probs.as_view_mut(),
                status,
            )
        }
        "distribution_greedy" => s.distribution(
            &logits,
            &Decoder::greedy(),
            &none,
            None,
            &mut b.probs.as_view_mut(),
            status,
        ),
        "mask_tokens" | "apply_bias" | "apply_penalties" => {
            let (batch, vocab, stride) = (b.batch, b.vocab, b.stride);
            let mut edited =
                DeviceLogitsMut::with_stride(b.logits.as_view_mut(), batch, vocab, stride)?;
            let history = DeviceHistory {
                tokens: b.history.as_view(),
                max_len: HISTORY,
                lengths: None,
            };
            if op == "mask_tokens" {
                s.mask_tokens(&mut edited, &b.allowed.as_view())
            } else if op == "apply_bias" {
                // The history's ids as the bias's tokens, each biased by 0.5.
                let values = b.bias.as_view();
                s.apply_bias(&mut edited, &history, &values, status)
            } else {
                let pen = Penalties {
                    repetition: 1.1,
                    presence: 0.1,
                    frequency: 0.1,
                };
                s.apply_penalties(&mut edited, &history, &pen, &PenaltyRows::default(), status)
            }
        }
        _ => unreachable!("no operation {op}"),
    }
}

/// Every operation on `b`, twice to warm it, then once counted: that call must allocate nothing.
fn check_warm_calls<T: Logit>(s: &mut Sampler, b: &mut Buffers<T>, what: &str) {
    for op in OPS {
        for _ in 0..2 {
            run(s, b, op).unwrap_or_else(|e| panic!("{what} {op}: {e}"));
        }
        let mut result = Ok(());
        let n = allocations(|| result = run(s, b, op));
        result.unwrap_or_else(|e| panic!("{what} {op}: {e}"));
        assert_eq!(
            n, 0,
            "{what}: a warm {op} call allocated {n} times on the host"
        );
    }
    s.stream().synchronize().unwrap();
}

/// (batch, vocab, stride): a small batch whose rows split over several blocks (clusters on
/// sm_90, else a cooperative grid; BoK's rows above 32768 tokens too), a batch of one block per
/// row, and rows that are not 16-byte aligned (the `_any` kernels; BoK's `_v1`).
const SHAPES: [(usize, usize, usize); 3] = [(2, 40_000, 40_000), (40, 5000, 5000), (3, 9001, 9003)];

#[test]
fn a_warm_call_allocates_nothing_on_the_host() {
    let mut s = gpu_or_skip!();
    for (batch, vocab, stride) in SHAPES {
        let mut b = Buffers::<f32>::new(&s, batch, vocab, stride);
        check_warm_calls(
            &mut s,
            &mut b,
            &format!("f32 {batch} x {vocab} (stride {stride})"),
        );
        let mut b = Buffers::<bf16>::new(&s, batch, vocab, stride);
        check_warm_calls(
            &mut s,
            &mut b,
            &format!("bf16 {batch} x {vocab} (stride {stride})"),
        );
    }
}

#[test]
fn a_warm_call_allocates_nothing_on_the_host_on_each_split_path() {
    let mut s = gpu_or_skip!();
    let mut b = Buffers::<f32>::new(&s, 2, 40_000, 40_000);
    for split in [RowSplit::Grid, RowSplit::Off] {
        s.set_filter_split(split);
        s.set_top_k_split(split);
        s.set_sparsemax_split(split);
        s.set_bok_split(split);
        check_warm_calls(&mut s, &mut b, &format!("split {split:?}"));
    }
    // The staged softmax (a cluster per row on sm_90; elsewhere the two-read paths again).
    s.set_softmax_staging(Staging::Always);
    check_warm_calls(&mut s, &mut b, "staged softmax");
}

/// Samplers on one context share the module's functions, and so each function's dynamic shared
/// memory maximum: one sampler's smaller shape must not lower the maximum under another's
/// larger one (the sizes differ with the row length on every staged and split path).
#[test]
fn samplers_sharing_a_context_keep_each_others_launches_valid() {
    let mut first = gpu_or_skip!();
    let mut second = Sampler::new(first.stream().clone()).unwrap();
    let mut large = Buffers::<f32>::new(&first, 2, 40_000, 40_000);
    let mut small = Buffers::<f32>::new(&first, 2, 9001, 9001);
    for s in [&mut first, &mut second] {
        s.set_softmax_staging(Staging::Always);
    }
    for op in OPS {
        run(&mut first, &mut large, op).unwrap_or_else(|e| panic!("first, large {op}: {e}"));
        run(&mut second, &mut small, op).unwrap_or_else(|e| panic!("second, small {op}: {e}"));
        run(&mut first, &mut large, op).unwrap_or_else(|e| panic!("first again {op}: {e}"));
    }
    first.stream().synchronize().unwrap();
}
