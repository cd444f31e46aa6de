//! Radix top-k selection on the GPU (kernels/topk.cu) against the CPU reference: SPEC
//! "Top-k filter" (the stand-alone selection: exactly k (value, index) pairs, value
//! descending, ties by lower index) and "Bad input". Selection involves no arithmetic, so
//! every pair must equal the CPU's bit for bit. Every test skips (and says so) without a GPU.

mod common;

use common::{convert, upload};

use common::{Dist, Selection};
use half::{bf16, f16};
use samplex::gpu::{DeviceLogits, RowParams, RowSplit, Sampler};
use samplex::{status, Error, Logit};

fn dense<T: Logit>(s: &mut Sampler, x: &[f32], batch: usize, vocab: usize, k: u32, what: &str) {
    Selection::new(&convert::<T>(x), batch, vocab, k).check(s, what);
}

#[test]
fn topk_select_matches_cpu_for_k_1_50_1024_4096_and_vocab() {
    let mut s = gpu_or_skip!();
    for (batch, vocab) in [(4usize, 32000usize), (2, 128_256), (3, 1000)] {
        for (i, dist) in [Dist::Normal(1.0), Dist::Gumbel(0.1)].iter().enumerate() {
            let x = common::logits(*dist, batch, vocab, 100 + i as u64);
            for k in [1u32, 50, 1024, 4096, vocab as u32] {
                let what = format!("{dist:?} b{batch} v{vocab} k{k}");
                dense::<f32>(&mut s, &x, batch, vocab, k, &format!("f32 {what}"));
                dense::<f16>(&mut s, &x, batch, vocab, k, &format!("f16 {what}"));
                dense::<bf16>(&mut s, &x, batch, vocab, k, &format!("bf16 {what}"));
            }
        }
    }
}

#[test]
fn topk_select_slower_path_handles_ragged_chunks_and_merge_levels() {
    // k > 4096: 2, 3 (odd level count), 5 and 32 chunks of 4096, the last one partial.
    let mut s = gpu_or_skip!();
    let vocab = 150_001;
    let x = common::logits(Dist::Normal(2.0), 2, vocab, 7);
    for k in [4097u32, 8192, 9000, 20_000, 131_000, vocab as u32] {
        dense::<f32>(&mut s, &x, 2, vocab, k, &format!("f32 k{k}"));
        dense::<bf16>(&mut s, &x, 2, vocab, k, &format!("bf16 k{k}"));
    }
}

#[test]
fn topk_select_split_paths_give_the_one_block_bits() {
    use samplex::gpu::topk::SelectPath;
    let mut s = gpu_or_skip!();
    let clusters = common::cluster_launch(&s);
    for (vocab, n, batch, x) in common::split_cases(31) {
        let per_row: Vec<u32> = (0..batch as u32)
            .map(|r| [7, 0, 4096, 300][r as usize % 4])
            .collect();
        for (j, (k, rows_k)) in [
            (1u32, None),
            (50, None),
            (4096, None),
            (4096, Some(&per_row[..])),
        ]
        .into_iter()
        .enumerate()
        {
            let path = s.top_k_select_path::<f32>(batch, vocab, k).unwrap();
            let mut modes = vec![RowSplit::Any];
            if clusters {
                assert!(
                    matches!(path, SelectPath::Cluster { .. }),
                    "b{batch} v{vocab} k{k}: {path:?}"
                );
                modes.push(RowSplit::Grid);
            } else {
                assert!(
                    matches!(path, SelectPath::Grid { .. }),
                    "b{batch} v{vocab} k{k}: {path:?}"
                );
            }
            let what = format!("b{batch} v{vocab} k{k} {rows_k:?} {path:?}");
            let run = |s: &mut Sampler, split: RowSplit| {
                s.set_top_k_split(split);
                if (n + j) % 2 == 0 {
                    Selection::new(&x, batch, vocab, k).per_row(rows_k).run(s)
                } else {
                    Selection::new(&convert::<bf16>(&x), batch, vocab, k)
                        .per_row(rows_k)
                        .run(s)
                }
            };
            let whole = run(&mut s, RowSplit::Off);
            for mode in modes {
                let split = run(&mut s, mode);
                if mode == RowSplit::Grid {
                    let grid = s.top_k_select_path::<f32>(batch, vocab, k).unwrap();
                    assert!(matches!(grid, SelectPath::Grid { .. }), "{what}: {grid:?}");
                }
                let what = format!("{what} {mode:?}");
                assert_eq!(split.status, whole.status, "{what}: status");
                let vb = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert!(vb(&split.values) == vb(&whole.values), "{what}: values");
                assert!(split.indices == whole.indices, "{what}: indices");
            }
            s.set_top_k_split(RowSplit::Any);
            if vocab == 40_000 {
                Selection::new(&x, batch, vocab, k)
                    .per_row(rows_k)
                    .check(&mut s, &format!("cpu {what}"));
            }
        }
    }
    // k above the shared-memory sort keeps one block per row.
    assert_eq!(
        s.top_k_select_path::<f32>(1, 128_256, 4097).unwrap(),
        SelectPath::Block
    );
}

#[test]
fn topk_select_split_path_unaligned_rows_match_the_cpu() {
    let mut s = gpu_or_skip!();
    let vocab = 40_001;
    let rows = common::split_rows(vocab, 31);
    let batch = 4;
    for first in [0, 4] {
        let mut x = vec![0.0f32];
        x.extend(rows[first..first + batch].concat());
        // bf16 rows start 1, 2, 3, 4 elements past a 16-byte boundary; f32 rows 1, 2, 3, 0.
        let h: Vec<bf16> = convert(&x);
        for k in [1u32, 64, 4096] {
            let what = format!("unaligned rows {first}.. k{k}");
            Selection::new(&x, batch, vocab, k)
                .lead(1)
                .check(&mut s, &what);
            Selection::new(&h, batch, vocab, k)
                .lead(1)
                .check(&mut s, &format!("bf16 {what}"));
        }
    }
}

/// NaN and +inf in every lane of a span and at the rows' edges (common::edge_rows), in aligned
/// rows and in rows at three misalignments with NaN between them: every pair and status as the
/// CPU's, through the radix passes (k 1, 7) and the collection alone (k = vocab).
#[test]
fn topk_select_nan_and_inf_in_every_lane_and_at_the_row_edges() {
    let mut s = gpu_or_skip!();
    let vocab = 1001;
    let rows = common::edge_rows(vocab, 41);
    let batch = rows.len();
    let dense = rows.concat();
    for (lead, stride) in common::EDGE_LAYOUTS {
        let hf = common::Batch::<f32>::laid_out(&dense, batch, vocab, stride, lead).host;
        let hh = common::Batch::<f16>::laid_out(&dense, batch, vocab, stride, lead).host;
        let hb = common::Batch::<bf16>::laid_out(&dense, batch, vocab, stride, lead).host;
        for k in [1u32, 7, vocab as u32] {
            let what = format!("lead {lead} stride {stride} k{k}");
            Selection::new(&hf, batch, vocab, k)
                .lead(lead)
                .stride(stride)
                .check(&mut s, &format!("f32 {what}"));
            Selection::new(&hh, batch, vocab, k)
                .lead(lead)
                .stride(stride)
                .check(&mut s, &format!("f16 {what}"));
            Selection::new(&hb, batch, vocab, k)
                .lead(lead)
                .stride(stride)
                .check(&mut s, &format!("bf16 {what}"));
        }
    }
}

#[test]
fn topk_select_ties_go_to_lower_index() {
    let mut s = gpu_or_skip!();
    let vocab = 10_000;
    // All equal: the k lowest indices, in order.
    let equal = vec![0.25f32; vocab];
    for k in [1u32, 7, 4096, 5000, vocab as u32] {
        dense::<f32>(&mut s, &equal, 1, vocab, k, &format!("all equal k{k}"));
    }
    // Many ties at the k-th value: values from a set of five.
    let few: Vec<f32> = (0..vocab).map(|i| ((i * 7919) % 5) as f32).collect();
    for k in [1u32, 1999, 2000, 2001, 4095, 6001] {
        dense::<f32>(&mut s, &few, 1, vocab, k, &format!("five values k{k}"));
        dense::<f16>(&mut s, &few, 1, vocab, k, &format!("five values f16 k{k}"));
    }
    // bf16 rounding makes ties out of distinct normals.
    let x = common::logits(Dist::Normal(1.0), 3, vocab, 3);
    for k in [10u32, 333, 4096] {
        dense::<bf16>(&mut s, &x, 3, vocab, k, &format!("bf16 ties k{k}"));
    }
}

#[test]
fn topk_select_adversarial_rows() {
    let mut s = gpu_or_skip!();
    let vocab = 5000;
    let mut rows: Vec<Vec<f32>> = Vec::new();
    // One huge logit, and +inf (counted as f32::MAX, flagged).
    let mut r = common::logits(Dist::Normal(1.0), 1, vocab, 1);
    r[4321] = f32::MAX;
    rows.push(r.clone());
    r[17] = f32::INFINITY;
    rows.push(r);
    // All −∞ but one; NaN counts as −∞ (flagged) and ties with it by index.
    let mut r = vec![f32::NEG_INFINITY; vocab];
    r[2500] = -3.0;
    rows.push(r.clone());
    r[10] = f32::NAN;
    r[4999] = f32::NAN;
    rows.push(r);
    // Denormals, both zeros (−0 ranks below +0), and the extremes.
    let mut r: Vec<f32> = (0..vocab)
        .map(|i| {
            f32::from_bits((i as u32).wrapping_mul(2_654_435_761) % 0x0080_0000)
                * if i % 2 == 0 { 1.0 } else { -1.0 }
        })
        .collect();
    r[1] = -0.0;
    r[2] = 0.0;
    r[3] = f32::MIN_POSITIVE;
    r[4] = -f32::MAX;
    rows.push(r);
    // Rows mostly −∞ (a min-tokens mask) with a few finite logits.
    let mut r = vec![f32::NEG_INFINITY; vocab];
    for i in (0..vocab).step_by(97) {
        r[i] = (i % 13) as f32 * 0.5;
    }
    rows.push(r);
    let batch = rows.len();
    let x: Vec<f32> = rows.concat();
    for k in [1u32, 2, 52, 60, 4096, 4500, vocab as u32] {
        dense::<f32>(
            &mut s,
            &x,
            batch,
            vocab,
            k,
            &format!("adversarial f32 k{k}"),
        );
        dense::<f16>(
            &mut s,
            &x,
            batch,
            vocab,
            k,
            &format!("adversarial f16 k{k}"),
        );
    }
}

#[test]
fn topk_select_per_row_k_is_really_per_row_and_clamped() {
    let mut s = gpu_or_skip!();
    let (batch, vocab) = (8, 6000);
    // The same row eight times, so that only k differs.
    let one = common::logits(Dist::Gumbel(1.0), 1, vocab, 9);
    let x: Vec<f32> = (0..batch).flat_map(|_| one.iter().copied()).collect();
    // 0 and > min(k, vocab) are clamped (and flagged); 4097.. take the slower path.
    let ks = [1u32, 0, 50, 4096, 4097, 5000, 5001, 9999];
    Selection::new(&x, batch, vocab, 5000)
        .per_row(Some(&ks))
        .check(&mut s, "per-row k");
    let got = Selection::new(&x, batch, vocab, 5000)
        .per_row(Some(&ks))
        .run(&mut s);
    assert_eq!(
        got.status[1],
        status::PARAM_CLAMPED,
        "k_r = 0 is clamped to 1"
    );
    assert_eq!(
        got.status[7],
        status::PARAM_CLAMPED,
        "k_r > k is clamped to k"
    );
    assert_eq!(got.status[2], 0);
    assert_eq!(
        got.indices[2 * 5000 + 50],
        status::NO_TOKEN,
        "row with k_r = 50 is padded"
    );
}

#[test]
fn topk_select_k_above_vocab_pads_and_vocab_one_works() {
    let mut s = gpu_or_skip!();
    let x = common::logits(Dist::Normal(1.0), 3, 10, 4);
    dense::<f32>(&mut s, &x, 3, 10, 16, "k 16 > vocab 10");
    let got = Selection::new(&x, 3, 10, 16).run(&mut s);
    assert_eq!(
        got.status,
        vec![0; 3],
        "a batch-wide k above vocab is not flagged"
    );
    assert!(got.values[10..16].iter().all(|v| *v == f32::NEG_INFINITY));
    let one = [1.5f32, f32::NAN, -2.0];
    dense::<f32>(&mut s, &one, 3, 1, 1, "vocab 1");
    dense::<f32>(&mut s, &one, 3, 1, 5, "vocab 1, k 5");
}

#[test]
fn topk_select_strided_and_unaligned_rows_use_the_unaligned_twins() {
    let mut s = gpu_or_skip!();
    let (batch, vocab, stride) = (5, 3001, 3011);
    let lead = 3;
    let x = common::logits(
        Dist::Normal(1.0),
        1,
        lead + (batch - 1) * stride + vocab,
        12,
    );
    for k in [1u32, 64, 3001] {
        Selection::new(&x, batch, vocab, k)
            .lead(lead)
            .stride(stride)
            .check(&mut s, &format!("f32 strided k{k}"));
        let h: Vec<f16> = convert(&x);
        Selection::new(&h, batch, vocab, k)
            .lead(lead)
            .stride(stride)
            .check(&mut s, &format!("f16 strided k{k}"));
        // Aligned base, stride a multiple of 16 bytes: the vector kernels with a stride.
        Selection::new(&x, batch, vocab, k)
            .stride(3008)
            .check(&mut s, &format!("f32 stride 3008 k{k}"));
    }
}

#[test]
fn topk_select_is_deterministic_across_runs_and_batch_sizes() {
    let mut s = gpu_or_skip!();
    let vocab = 32000;
    let x = common::logits(Dist::Gumbel(0.1), 64, vocab, 21);
    let a = Selection::new(&x, 64, vocab, 100).run(&mut s);
    let b = Selection::new(&x, 64, vocab, 100).run(&mut s);
    assert_eq!(a.indices, b.indices);
    let one = Selection::new(&x[5 * vocab..6 * vocab], 1, vocab, 100).run(&mut s);
    assert_eq!(
        one.indices[..],
        a.indices[500..600],
        "a row's answer does not depend on the batch"
    );
}

#[test]
fn topk_select_rejects_bad_arguments() {
    let mut s = gpu_or_skip!();
    let dev = upload(&s, &[0.0f32; 20]);
    let logits = DeviceLogits::new(dev.as_view(), 2, 10).unwrap();
    let mut values = s.stream().alloc_zeros::<f32>(6).unwrap();
    let mut indices = s.stream().alloc_zeros::<u32>(6).unwrap();
    let rows = RowParams::default();
    let e = s
        .top_k_select(
            &logits,
            0,
            &rows,
            &mut values.as_view_mut(),
            &mut indices.as_view_mut(),
            None,
        )
        .unwrap_err();
    assert!(matches!(e, Error::BadParam { name: "k", .. }), "{e}");
    let e = s
        .top_k_select(
            &logits,
            4,
            &rows,
            &mut values.as_view_mut(),
            &mut indices.as_view_mut(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadLength {
                name: "values",
                got: 6,
                expected: 8
            }
        ),
        "{e}"
    );
    let bad_k = upload(&s, &[1u32; 3]);
    let rows = RowParams {
        top_k: Some(bad_k.as_view()),
        ..Default::default()
    };
    let e = s
        .top_k_select(
            &logits,
            3,
            &rows,
            &mut values.as_view_mut(),
            &mut indices.as_view_mut(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadLength {
                name: "top_k",
                got: 3,
                expected: 2
            }
        ),
        "{e}"
    );
}
