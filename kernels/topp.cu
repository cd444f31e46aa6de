// samplex — the support top-k -> top-p -> min-p as one logit threshold per row, and sampling,
// renormalised probabilities and masked logits under it.
//
// SPEC "Order of operations", "Top-k filter", "Top-p filter", "Min-p filter"; docs/
// ARCHITECTURE.md "Support rules as logit thresholds". Every filter keeps an upper set of the
// logits, so their intersection is {i : z_i >= thr} for one f32 thr per row (finite z only).
// Uses the radix machinery of kernels/topk.cu (namespace samplex_topk), which build.rs
// amalgamates before this file.
//
// Kernels (the threshold and draw kernels but the grid one also as <dtype>_any, the twin the
// host picks when the base address or the row stride is not 16-byte aligned; it keeps the
// 16-byte loads: the threshold passes' chunks start at the boundary below the row
// (samplex_topk::for_each_chunk), the draw shifts each thread's tokens into place in
// registers (common.cuh load_span); the dense writers read one token per thread per step,
// a tile's eight loads before its stores):
//   samplex_topp_thresholds_<dtype>[_any]  one block of 1024 threads per row: the threshold
//       (and, for the ops below, a RowInfo in scratch).
//   samplex_topp_thresholds_cluster_<dtype>[_any]  sm_90, for small batches: the same passes
//       by one thread-block cluster of C = 2, 4 or 8 such blocks per row
//       (launch::cluster_candidates picks C), block r over the slice [r * per, (r + 1) * per)
//       of the row, per = ceil(vocab / C) rounded up to 16 bytes' worth. With `stage`, pass A
//       keeps the slice (as f32) in dynamic shared memory after the ClusterHead and the later
//       passes read it there. The same body (thresholds_row over samplex_topk::ClusterRow
//       instead of SoloRow): the histograms are the sums of the blocks' bins, read through
//       DSMEM; pass A's (max, argmax, count, status), the min-p key and the kept mass are
//       merged in rank order, one cluster barrier each; every merged value is an integer or
//       an order-free max, so the results are the one-block kernel's bits. Below sm_90 the
//       body is a trap (common.cuh §8).
//   samplex_topp_thresholds_grid_<dtype>[_v1]  every GPU (the host takes it where clusters do
//       not exist or fit; its unaligned twin loads one by one, see the entries): the same
//       body over samplex_topk::GridRow, C consecutive blocks of a cooperative launch per
//       row, the histograms and merge values exchanged through global memory with a barrier
//       per row (common.cuh §9); the slice staged in dynamic shared memory (nothing precedes
//       it there). The same bits.
//   Passes over the row:
//         A. max z (ties: lowest index) and the count of finite logits; status bits.
//            No finite logit: thr = +inf. tau = 0: greedy, thr = max z (see RowInfo).
//            Below, u = z / tau and d_i = (z_i - max z) / tau = u_i - max u, computed
//            from the z difference so that its rounding is relative to d, not to u, and
//            in base 2, so that a weight exp(d_i) is one exp2f (`log2_weight`: a multiply
//            by log2(e) / tau, with a power-of-two prescale so that a subnormal or huge
//            tau works too).
//         B. top-k (0 < k < #finite): `radix_select` on canonical keys of the finite logits
//            (1-3 passes). Its cut gives a key Tk with the top-k set = {key >= Tk}.
//         C. top-p (p < 1): a radix search over the keys of the top-k set whose histograms
//            carry probability mass (exp(d_i)) as well as counts (1-3 passes): the largest
//            key Tp with  mass{key >= Tp} >= p * mass(top-k set)  (ties at Tp kept). Early
//            exit when the chosen bucket holds one element.
//         D. min-p (min_p > 0): Tm = the smallest key with d >= ln(min_p) (compared in base
//            2), folded into the first pass of B or C (a pass of its own when both are off).
//         E. (probabilities only) the kept mass, in C's fixed point (an integer sum).
//       thr = key_to_float(max(Tk, Tp, Tm)).
//   samplex_topp_sample_<dtype>[_any]  the tiled draw (common.cuh §7) with weights
//       exp(u_i - m_t) on kept tokens, 0 elsewhere, and tile keys from m_t - max u;
//       256 threads x 8 contiguous tokens per 2048-token tile; a row's tiles are split over
//       `blocks_per_row` blocks, merged by the last block's warp 0 in block order (tickets).
//   samplex_topp_probs_<dtype>  p_i = exp(d_i) / kept mass on kept tokens, 0 elsewhere.
//   samplex_topp_logits_<dtype> z_i on kept tokens, -inf elsewhere.
//
// Determinism: bucket masses are fixed point, u64 = round(exp(d) * 2^(62 - ceil(log2 n))),
// n = the number of finite logits, added with integer atomics (order-free; the sum over n
// weights <= 1 stays below 2^62; the rounding costs at most n * 2^-(63 - ceil(log2 n)) of
// mass, about 2^-30 for n = 2^17). The kept mass of E is the same fixed-point sum (>= 1: the
// max is kept), converted to f32 once. Counts and key minima are integers; the draw's sums are
// block reductions with a fixed tree; the draw's blocks merge in block order. Nothing that
// decides a token depends on scheduling, or on how a row is split over a cluster.
//
// Per-row parameters are clamped on the device (flagged PARAM_CLAMPED): tau to [0, FLT_MAX]
// (NaN: 1), p to [smallest positive f32, 1] (NaN: 1), min_p to [0, 1] (NaN: 0); any k is
// valid (0 or >= vocab: off).
#include "common.cuh"

namespace samplex_topp {

using samplex_topk::BucketPick;
using samplex_topk::BucketScan;
using samplex_topk::canonical_key;
using samplex_topk::Chunk;
using samplex_topk::digit_mask;
using samplex_topk::digit_shift;
using samplex_topk::PickSmem;
using samplex_topk::RADIX_BUCKETS;
using samplex_topk::RADIX_PASSES;
using samplex_topk::RadixCut;
using samplex_topk::RadixSmem;
using samplex_topk::SoloRow;
using samplex_topk::umax32;
using samplex_topk::umin32;

constexpr int THRESH_THREADS = SAMPLEX_RADIX_THREADS;
constexpr int DRAW_THREADS = SAMPLEX_DRAW_TILE / 8;  // 256 threads x 8 tokens = one tile
constexpr int DRAW_PER = 8;

// RowInfo.flags
#define SAMPLEX_TOPP_GREEDY 1u  // tau = 0: the token is `argmax`
#define SAMPLEX_TOPP_EMPTY 2u   // no finite logit: nothing is kept

// log2(e)/tau as a power-of-two prescale and a normal factor: (x - top) * pre * inv stands for
// (x - top) / tau in base 2, one multiply a value where the division took ~10 instructions (a
// reciprocal, Newton steps and a range check), and the weight is an exp2f (4 instructions)
// where expf is 9. pre = 1 for a normal tau. For a subnormal tau, the factor would overflow:
// pre = 2^64 and inv = log2(e)/(tau * 2^64); (x - top) * 2^64 is exact, or overflows to -inf
// where the quotient does too. For tau > 2^126 the factor would be subnormal and lose bits:
// pre = 2^-64, exact down to differences whose quotient is below f32 anyway.
struct TauScale {
  float pre;
  float inv;
};
__device__ __forceinline__ TauScale tau_scale(float tau) {
  TauScale s;
  s.pre = tau < 0x1p-126f ? 0x1p64f : (tau > 0x1p126f ? 0x1p-64f : 1.0f);
  s.inv = SAMPLEX_LOG2E / (tau * s.pre);  // tau * pre is exact (a power of two)
  return s;
}

// What the threshold kernel leaves in scratch for the kernel after it (32 bytes per row).
struct RowInfo {
  float thr;      // keep finite z >= thr
  float zmax;     // the row's largest z
  TauScale ts;    // the row's (clamped) temperature as tau_scale; (0, 0) for greedy rows
  float mass;     // sum of exp(d_i) over the kept tokens (when asked for; 1 for greedy rows)
  u32 argmax;     // lowest index of zmax (u32::MAX when no finite logit)
  u32 status;     // the row's status bits
  u32 flags;      // SAMPLEX_TOPP_*
};

// The one membership test every kernel here shares.
__device__ __forceinline__ bool kept_at(float x, float thr) { return x > SAMPLEX_NEG_INF && x >= thr; }

// (u - m) * log2(e) for u = x / tau and m = top / tau (top >= x), from the z difference so that
// the rounding is relative to the difference, not to u. For a fixed tau it is monotone in x, so
// it keeps the logits' order and ties, and every kernel here computes it the same way.
__device__ __forceinline__ float log2_weight(float x, float top, TauScale s) { return (x - top) * s.pre * s.inv; }
// The weight exp(u - m) = 2^log2_weight, as every pass and the draw take it.
__device__ __forceinline__ float weight_of(float x, float top, TauScale s) { return exp2f(log2_weight(x, top, s)); }

// 2^e as f32, for 0 <= e <= 127.
__device__ __forceinline__ float exp2_int(int e) { return __int_as_float((127 + e) << 23); }

// The fixed-point scale of the masses (header, "Determinism"): 2^(62 - ceil(log2 n)).
__device__ __forceinline__ float fixed_scale(u32 n) { return exp2_int(62 - (32 - __clz((int)(n - 1)))); }

// OWN_HIST: the histograms live here (one block per row, or a cooperative grid's blocks, which
// copy them to global memory); a cluster keeps them in its dynamic shared memory (ClusterHead),
// where the other blocks can read them.
template <bool OWN_HIST> struct ThreshSmem {
  u32 count[OWN_HIST ? RADIX_BUCKETS : 1];
  u64 mass[OWN_HIST ? RADIX_BUCKETS : 1];
  RadixSmem<THRESH_THREADS> radix;
  ScanSmem<THRESH_THREADS, u64> scan64;
  PickSmem<u64> pick64;
  BlockScratch<THRESH_THREADS> bs;
};

// ---------------------------------------------------------------------------------------------
// The threshold kernel (passes A-E above) over a row group (samplex_topk::SoloRow: one row per
// block; ClusterRow: a row per cluster). Every value that decides a branch is the row's (merged),
// so all blocks of a cluster take the same branches and barriers.
// ---------------------------------------------------------------------------------------------

// Pass A's block values, merged as one 16-byte value.
struct RowScan {
  ArgMax best;
  u32 finite, status;
};
__device__ __forceinline__ RowScan row_scan_merge(RowScan a, RowScan b) {
  RowScan r;
  r.best = argmax_pick(a.best, b.best);
  r.finite = a.finite + b.finite;
  r.status = a.status | b.status;
  return r;
}

template <typename T, int VEC, typename G>
__device__ __forceinline__ void thresholds_row(G &g, const T *logits, u64 stride, float tau_all,
                                               u64 tau_rows, u32 k_all, u64 k_rows, float p_all, u64 p_rows,
                                               float min_p_all, u64 min_p_rows, u32 want_mass,
                                               u64 thresholds_out, u64 row_info_out, u64 status_out) {
  constexpr int THREADS = THRESH_THREADS;
  constexpr int L = Lanes<T, VEC>::N;  // elements per thread per chunk (samplex_topk::for_each_chunk)
  __shared__ ThreshSmem<G::OWN_HIST> sm;
  const u32 row = g.row;
  const T *z = row_ptr(logits, row, stride);
  u32 status = 0;
  u32 ignored = 0;  // status of re-reads (pass A saw every value already)

  const float tau = row_temperature(tau_all, tau_rows, row, status);
  const u32 k = k_rows ? reinterpret_cast<const u32 *>(k_rows)[row] : k_all;
  const float p = row_param(p_rows, row, p_all, __int_as_float(1), 1.0f, 1.0f, status);
  const float min_p = row_param(min_p_rows, row, min_p_all, 0.0f, 1.0f, 0.0f, status);

  // No pass masks by Chunk::has: the readers give the values that are not the row's as -inf,
  // and every test below (finite, kept, in the top-k set, above min-p) rejects -inf.

  // A. max, argmax, finite count, status.
  ArgMax best;
  best.v = SAMPLEX_NEG_INF;
  best.i = SAMPLEX_NO_TOKEN;
  u32 finite = 0;
  auto pass_a = [&](const Chunk &c, const float *v) -> bool {
    float x[L];
    samplex_topk::sanitized_chunk<L>(v, x, status);
#pragma unroll
    for (int i = 0; i < L; ++i) {
      if (x[i] > SAMPLEX_NEG_INF) {
        ++finite;
        if (x[i] > best.v) {  // this thread's indices increase: the first max is kept
          best.v = x[i];
          best.i = c.first + i;
        }
      }
    }
    return true;
  };
  g.template first_read<T, VEC, THREADS>(z, pass_a);
  best = block_argmax<THREADS>(best, sm.bs);
  finite = block_sum_u32<THREADS>(finite, sm.bs);
  status = block_or<THREADS>(status, sm.bs);
  if constexpr (G::SPLIT) {
    RowScan mine;
    mine.best = best;
    mine.finite = finite;
    mine.status = status;
    const RowScan all = g.merge(mine, [](RowScan a, RowScan b) { return row_scan_merge(a, b); });
    best = all.best;
    finite = all.finite;
    status = all.status;
  }

  RowInfo info;
  info.zmax = best.v;
  info.argmax = best.i;
  info.ts.pre = 0.0f;
  info.ts.inv = 0.0f;
  info.mass = 0.0f;
  info.flags = 0;
  float thr;
  if (finite == 0) {
    thr = SAMPLEX_INF;
    status |= SAMPLEX_STATUS_NO_FINITE_LOGIT;
    info.flags = SAMPLEX_TOPP_EMPTY;
    info.argmax = SAMPLEX_NO_TOKEN;
  } else if (tau == 0.0f) {
    thr = best.v;  // keeps every tie of the max; the ops below keep `argmax` alone
    info.flags = SAMPLEX_TOPP_GREEDY;
    info.mass = 1.0f;
  } else {
    const float zmax = best.v;
    const TauScale ts = tau_scale(tau);
    info.ts = ts;

    // D, folded into the first pass that follows (B, C, or its own).
    const float log2_min_p = min_p > 0.0f ? log2f(min_p) : SAMPLEX_NEG_INF;
    bool min_p_pending = min_p > 0.0f;
    u32 min_p_key = 0xffffffffu;
    auto track_min_p = [&](float x) {  // x sanitised
      if (!min_p_pending) return;
      if (x > SAMPLEX_NEG_INF && log2_weight(x, zmax, ts) >= log2_min_p)
        min_p_key = umin32(min_p_key, canonical_key(x));
    };

    // B. top-k.
    u32 tk = 0;
    if (k > 0 && k < finite) {
      auto key_of = [](float x, u32 &key) -> bool {
        key = canonical_key(x);
        return x > SAMPLEX_NEG_INF;
      };
      const RadixCut cut =
          samplex_topk::radix_select<T, VEC, THREADS>(g, z, k, sm.count, sm.radix, ignored, key_of, track_min_p);
      tk = cut.prefix;
      min_p_pending = false;
    }

    // C. top-p over the top-k set {key >= tk}.
    u32 tp = 0;
    if (p < 1.0f) {
      const float scale = fixed_scale(finite);
      u32 prefix = 0, mask = 0;
      u64 need = 0;
      for (int pass = 0; pass < RADIX_PASSES; ++pass) {
        const int shift = digit_shift(pass);
        const u32 dmask = digit_mask(pass);
        u32 *count_h = g.count(sm.count);
        u64 *mass_h = g.mass(sm.mass);
        for (u32 i = threadIdx.x; i < RADIX_BUCKETS; i += THREADS) {
          count_h[i] = 0;
          mass_h[i] = 0;
        }
        __syncthreads();
        auto sweep = [&](const Chunk &, const float *v) -> bool {
          float xs[L];
          samplex_topk::sanitized_chunk<L>(v, xs, ignored);
#pragma unroll
          for (int i = 0; i < L; ++i) {
            const float x = xs[i];
            if (pass == 0) track_min_p(x);
            const u32 key = canonical_key(x);
            const bool in = x > SAMPLEX_NEG_INF && key >= tk && (key & mask) == prefix;
            u64 fixed = 0;
            if (in) fixed = __float2ull_rn(weight_of(x, zmax, ts) * scale);
            // Aggregate equal keys (equal weights) of the warp: one atomic per distinct key.
            // Canonical keys of finite values are >= 0x00800000, so 0 marks "not in".
            const u32 peers = __match_any_sync(SAMPLEX_FULL_MASK, in ? key : 0u);
            if (in && (int)(threadIdx.x & 31) == __ffs(peers) - 1) {
              const u32 d = (key >> shift) & dmask;
              const u32 c = (u32)__popc(peers);
              atomicAdd(&count_h[d], c);
              shared_add_u64(&mass_h[d], (u64)c * fixed);
            }
          }
          return true;
        };
        g.template read<T, VEC, THREADS>(z, sweep);
        g.hist_ready(count_h, mass_h);
        BucketScan<THREADS, u64> b;
        samplex_topk::bucket_scan<THREADS, u64>(g, mass_h, b, sm.scan64);
        if (pass == 0) {
          // The target p * (mass of the top-k set), rounded up: "running mass >= target".
          need = (u64)ceil((double)p * (double)b.total);
          if (need < 1) need = 1;
          if (need > b.total) need = b.total;
        }
        const BucketPick<u64> pk = samplex_topk::bucket_pick<THREADS, u64>(b, need, sm.pick64);
        const u32 count = g.at(count_h, pk.bucket);
        __syncthreads();  // everyone has read count before the next pass clears it
        g.hist_done();
        need -= pk.above;
        prefix |= pk.bucket << shift;
        mask |= dmask << shift;
        if (count <= 1) break;  // early exit: {key >= prefix} already ends at that element
      }
      tp = prefix;
      min_p_pending = false;
    }

    // D on its own when neither B nor C read the row.
    if (min_p_pending) {
      auto sweep = [&](const Chunk &, const float *v) -> bool {
        float x[L];
        samplex_topk::sanitized_chunk<L>(v, x, ignored);
#pragma unroll
        for (int i = 0; i < L; ++i) track_min_p(x[i]);
        return true;
      };
      g.template read<T, VEC, THREADS>(z, sweep);
      min_p_pending = false;
    }
    u32 tm = 0;
    if (min_p > 0.0f) {
      tm = samplex_topk::block_min_u32<THREADS>(min_p_key, sm.radix.scan);
      tm = g.merge(tm, [](u32 a, u32 b) { return umin32(a, b); });
    }

    const u32 t = umax32(tk, umax32(tp, tm));
    thr = t == 0 ? SAMPLEX_NEG_INF : key_to_float(t);

    // E. the kept mass, in C's fixed point (an integer sum: the same whatever the split).
    if (want_mass) {
      const float scale = fixed_scale(finite);
      u64 acc = 0;
      auto sweep = [&](const Chunk &, const float *v) -> bool {
        float xs[L];
        samplex_topk::sanitized_chunk<L>(v, xs, ignored);
#pragma unroll
        for (int i = 0; i < L; ++i) {
          const float x = xs[i];
          if (kept_at(x, thr)) acc += __float2ull_rn(weight_of(x, zmax, ts) * scale);
        }
        return true;
      };
      g.template read<T, VEC, THREADS>(z, sweep);
      u64 total = 0;
      block_exclusive_scan<THREADS, u64>(acc, total, sm.scan64);
      total = g.merge(total, [](u64 a, u64 b) { return a + b; });
      info.mass = (float)total / scale;  // scale is a power of two: exact
    }
  }
  info.thr = thr;
  info.status = status;
  if (g.leader() && threadIdx.x == 0) {
    if (thresholds_out) reinterpret_cast<float *>(thresholds_out)[row] = thr;
    if (row_info_out) reinterpret_cast<RowInfo *>(row_info_out)[row] = info;
    if (status_out) reinterpret_cast<u32 *>(status_out)[row] = status;
  }
  g.finish();
}

// The entries' bodies: one row per block, or (sm_90) one per cluster of `cluster_size()`
// blocks, each over a slice of ceil(vocab / C) elements rounded up to the elements per 16
// bytes (so that every slice starts at the row's alignment); stage != 0: each block keeps its
// slice, as f32, in dynamic shared memory after the ClusterHead, and the passes after A read
// it there.
template <typename T, int VEC>
__device__ __forceinline__ void thresholds_block(const T *logits, u64 stride, u32 vocab, float tau, u64 tau_rows,
                                                 u32 k, u64 k_rows, float p, u64 p_rows, float min_p,
                                                 u64 min_p_rows, u32 want_mass, u64 thresholds, u64 row_info,
                                                 u64 status) {
  SoloRow g;
  g.row = blockIdx.x;
  g.len = vocab;
  thresholds_row<T, VEC>(g, logits, stride, tau, tau_rows, k, k_rows, p, p_rows, min_p, min_p_rows,
                         want_mass, thresholds, row_info, status);
}

template <typename T, int VEC>
__device__ __forceinline__ void thresholds_cluster(const T *logits, u64 stride, u32 vocab, float tau,
                                                   u64 tau_rows, u32 k, u64 k_rows, float p, u64 p_rows,
                                                   float min_p, u64 min_p_rows, u32 want_mass, u64 thresholds,
                                                   u64 row_info, u64 status, u32 stage) {
#if SAMPLEX_CLUSTERS
  samplex_topk::ClusterRow g = samplex_topk::cluster_row<Lanes<T, VEC>::N>(
      vocab, stage ? reinterpret_cast<float *>(samplex_topk::ClusterRow::head() + 1) : nullptr);
  thresholds_row<T, VEC>(g, logits, stride, tau, tau_rows, k, k_rows, p, p_rows, min_p, min_p_rows,
                         want_mass, thresholds, row_info, status);
#else
  (void)logits, (void)stride, (void)vocab, (void)tau, (void)tau_rows, (void)k, (void)k_rows, (void)p;
  (void)p_rows, (void)min_p, (void)min_p_rows, (void)want_mass, (void)thresholds, (void)row_info;
  (void)status, (void)stage;
  asm volatile("trap;");  // never launched: the host checks the function's PTX version first
#endif
}

template <typename T, int VEC>
__device__ __forceinline__ void thresholds_grid(const T *logits, u64 stride, u32 vocab, float tau, u64 tau_rows,
                                                u32 k, u64 k_rows, float p, u64 p_rows, float min_p,
                                                u64 min_p_rows, u32 want_mass, u64 thresholds, u64 row_info,
                                                u64 status, u32 stage, u32 blocks, u64 barriers, u64 exchange) {
  samplex_topk::GridRow g = samplex_topk::grid_row<Lanes<T, VEC>::N>(
      vocab, blocks, barriers, exchange,
      stage ? reinterpret_cast<float *>(static_cast<float4 *>(samplex_radix_dyn_smem)) : nullptr);
  thresholds_row<T, VEC>(g, logits, stride, tau, tau_rows, k, k_rows, p, p_rows, min_p, min_p_rows,
                         want_mass, thresholds, row_info, status);
}

// ---------------------------------------------------------------------------------------------
// The kernels after the thresholds: a 1-D grid of blocks_per_row blocks per row; block b of a
// row takes the draw tiles [b * tiles / nb, (b + 1) * tiles / nb), so block order is tile order.
// ---------------------------------------------------------------------------------------------
struct TileRange {
  u32 row, block, first, last;  // tiles [first, last)
};
__device__ __forceinline__ TileRange tile_range(u32 vocab, u32 blocks_per_row) {
  TileRange r;
  r.row = blockIdx.x / blocks_per_row;
  r.block = blockIdx.x % blocks_per_row;
  const u32 tiles = ceil_div(vocab, SAMPLEX_DRAW_TILE);
  r.first = (u32)((u64)r.block * tiles / blocks_per_row);
  r.last = (u32)((u64)(r.block + 1) * tiles / blocks_per_row);
  return r;
}

// The filtered draw. seeds/offsets: 0 (one stream for the batch: seed, offset, stream = row)
// or device u64[batch] each (stream 0). partials: batch * blocks_per_row TileDraw; tickets:
// u32[batch], zero on entry and on exit.
template <typename T, int VEC>
__device__ __forceinline__ void sample_row(const T *logits, u64 stride, u32 vocab, u64 row_info, u64 seed,
                                           u64 offset, u64 seeds, u64 offsets, u32 *tokens, u64 status_out,
                                           u32 blocks_per_row, u64 partials, u64 tickets) {
  constexpr int THREADS = DRAW_THREADS;
  __shared__ BlockScratch<THREADS> bs;
  __shared__ u32 is_last;
  const TileRange tr = tile_range(vocab, blocks_per_row);
  const RowInfo info = reinterpret_cast<const RowInfo *>(row_info)[tr.row];
  if (info.flags & (SAMPLEX_TOPP_GREEDY | SAMPLEX_TOPP_EMPTY)) {
    // Same for every block of the row, so no block takes a ticket.
    if (tr.block == 0 && threadIdx.x == 0) {
      tokens[tr.row] = info.argmax;
      if (status_out) reinterpret_cast<u32 *>(status_out)[tr.row] = info.status;
    }
    return;
  }
  const T *z = row_ptr(logits, tr.row, stride);
  const RowRng rng = row_rng(seed, offset, seeds, offsets, tr.row);
  u32 ignored = 0;

  TileDraw best;
  best.key = SAMPLEX_NEG_INF;
  best.token = SAMPLEX_NO_TOKEN;
  // The next tile is requested before this one is reduced (common.cuh SpanPrefetch).
  SpanPrefetch<T, VEC, DRAW_PER> next;
  next.issue(z, vocab, tr.first * SAMPLEX_DRAW_TILE + threadIdx.x * DRAW_PER);
  for (u32 t = tr.first; t < tr.last; ++t) {
    const u32 first = t * SAMPLEX_DRAW_TILE + threadIdx.x * DRAW_PER;
    float x[DRAW_PER];
    next.take(z, vocab, first, x);
    if (t + 1 < tr.last) next.issue(z, vocab, first + SAMPLEX_DRAW_TILE);
    float top = SAMPLEX_NEG_INF;
    // span_is_clean, not sanitize_span: a sanitised copy of the span made ptxas spill the f16
    // kernel.
    const bool bad = !span_is_clean<DRAW_PER>(x);
#pragma unroll
    for (int j = 0; j < DRAW_PER; ++j) {
      if (__builtin_expect(bad, 0)) x[j] = sanitize(x[j], ignored);
      if (kept_at(x[j], info.thr)) top = fmaxf(top, x[j]);
    }
    top = block_max<THREADS>(top, bs);
    if (top == SAMPLEX_NEG_INF) continue;  // nothing kept in this tile (same in every thread)
    float w[DRAW_PER];
#pragma unroll
    for (int j = 0; j < DRAW_PER; ++j) w[j] = kept_at(x[j], info.thr) ? weight_of(x[j], top, info.ts) : 0.0f;
    const Philox4 r = row_random(rng.seed, rng.offset, rng.stream, t);
    float total;
    TileDraw cur;
    cur.token = block_tile_candidate<THREADS, DRAW_PER>(w, first, uniform_open(r.y), total, bs);
    // The tile's log-scale m_t = top / tau, less the row's max u (the same for every tile,
    // so the winner is unchanged): small numbers, so that the key keeps its precision and
    // a huge u (a tiny tau) cannot saturate every tile's key alike.
    cur.key = tile_key(log2_weight(top, info.zmax, info.ts) * SAMPLEX_LN2, total, uniform_open(r.x));
    best = tile_draw_pick(best, cur);
  }

  TileDraw result = best;
  if (blocks_per_row > 1) {
    if (threadIdx.x == 0) {
      TileDraw *part = reinterpret_cast<TileDraw *>(partials) + (u64)tr.row * blocks_per_row;
      part[tr.block] = best;
    }
    if (!last_block_of_row(tickets, tr.row, blocks_per_row, is_last) || threadIdx.x >= 32) return;
    // Warp 0 merges (common.cuh BlocksDraw): a loop over the parts in thread 0 waited out an L2
    // latency per few parts, and a row of 128K tokens has 63.
    const volatile TileDraw *part =
        reinterpret_cast<const volatile TileDraw *>(partials) + (u64)tr.row * blocks_per_row;
    BlocksDraw d;
    for (u32 b = threadIdx.x; b < blocks_per_row; b += 32) d.offer(part[b].key, b, part[b].token);
    d.finish();
    result.key = d.m.v;
    result.token = d.token;
  }
  if (threadIdx.x == 0) {
    tokens[tr.row] = result.token;
    if (status_out) {
      u32 st = info.status;
      if (result.token == SAMPLEX_NO_TOKEN) st |= SAMPLEX_STATUS_NO_FINITE_LOGIT;
      reinterpret_cast<u32 *>(status_out)[tr.row] = st;
    }
  }
}

// Dense outputs (probabilities or masked logits): thread t of a block writes tokens
// t, t + 256, ... of each tile, so that loads and stores coalesce (any alignment, no twin).
// MODE 0: probabilities, 1: logits. A tile's eight loads are all issued before its first
// store: as far as the compiler knows `out` may alias the logits, so it hoists no load above a
// store, and the loop written load-store-load kept one load in flight per thread (SASS: LDG,
// STG, LDG, ...), a fraction of what it takes to keep HBM busy.
template <typename T, int MODE>
__device__ __forceinline__ void write_row(const T *logits, u64 stride, u32 vocab, u64 row_info, float *out,
                                          u64 status_out, u32 blocks_per_row) {
  const TileRange tr = tile_range(vocab, blocks_per_row);
  const RowInfo info = reinterpret_cast<const RowInfo *>(row_info)[tr.row];
  const T *z = row_ptr(logits, tr.row, stride);
  float *o = out + (u64)tr.row * vocab;
  const bool greedy = (info.flags & SAMPLEX_TOPP_GREEDY) != 0;
  const bool read = MODE != 0 || !greedy;  // a greedy row's probabilities are one-hot (uniform)
  u32 ignored = 0;
  for (u32 t = tr.first; t < tr.last; ++t) {
    const u32 base = t * SAMPLEX_DRAW_TILE + threadIdx.x;
    float raw[DRAW_PER];
#pragma unroll
    for (int j = 0; j < DRAW_PER; ++j) {
      const u32 i = base + j * DRAW_THREADS;
      raw[j] = read && i < vocab ? to_f32(z[i]) : 0.0f;
    }
    sanitize_span(raw, ignored);
#pragma unroll
    for (int j = 0; j < DRAW_PER; ++j) {
      const u32 i = base + j * DRAW_THREADS;
      if (i >= vocab) break;
      const float x = raw[j];
      const bool keep = greedy ? i == info.argmax : kept_at(x, info.thr);
      float v;
      if (MODE == 0) v = !keep ? 0.0f : (greedy ? 1.0f : weight_of(x, info.zmax, info.ts) / info.mass);
      else v = keep ? x : SAMPLEX_NEG_INF;
      o[i] = v;
    }
  }
  if (status_out && tr.block == 0 && threadIdx.x == 0) reinterpret_cast<u32 *>(status_out)[tr.row] = info.status;
}

}  // namespace samplex_topp

// thresholds: 0 or f32[batch]; row_info: 0 or RowInfo[batch] (32 bytes each); status: 0 or
// u32[batch]. tau/k/p/min_p: the batch-wide values (host-checked); *_rows: 0 or device
// arrays of per-row values that override them. want_mass: also compute RowInfo.mass.
// (min blocks 1: without it ptxas aims at two blocks per SM and spills the unaligned twins.)
// The _cluster twin (sm_90; grid = batch x C blocks, cluster dimension (C, 1, 1) set at launch,
// dynamic shared memory = ClusterHead + (stage ? slice x 4 bytes : 0)) takes one more
// argument, stage, and gives the same bits.
// The _grid twin (every GPU; a cooperative launch of batch x blocks blocks, `blocks` per row,
// dynamic shared memory = stage ? the slice x 4 bytes : 0) takes stage, blocks, barriers (a
// RowBarrier per row) and exchange (a ClusterHead per block), and gives the same bits. Its
// unaligned twin is _v1 (GRID_VEC = 1, scalar loads), not _any: the chunk loop's head mask
// pushes the f16/bf16 grid kernel, already at 63 of its 64 registers, into spills. (Its
// slice is staged in shared memory whenever it fits, so only pass A reads the logits.)
#define SAMPLEX_TOPP_THRESHOLDS(T, VEC, GRID_VEC, NAME, CLUSTER_NAME, GRID_NAME)                           \
  extern "C" __global__ void __launch_bounds__(SAMPLEX_RADIX_THREADS, 1)                                   \
      NAME(const T *logits, u64 stride, u32 vocab, float tau, u64 tau_rows, u32 k, u64 k_rows, float p,    \
           u64 p_rows, float min_p, u64 min_p_rows, u32 want_mass, u64 thresholds, u64 row_info,           \
           u64 status) {                                                                                   \
    samplex_topp::thresholds_block<T, VEC>(logits, stride, vocab, tau, tau_rows, k, k_rows, p, p_rows,     \
                                           min_p, min_p_rows, want_mass, thresholds, row_info, status);    \
  }                                                                                                        \
  extern "C" __global__ void __launch_bounds__(SAMPLEX_RADIX_THREADS, 1)                                   \
      CLUSTER_NAME(const T *logits, u64 stride, u32 vocab, float tau, u64 tau_rows, u32 k, u64 k_rows,     \
                   float p, u64 p_rows, float min_p, u64 min_p_rows, u32 want_mass, u64 thresholds,        \
                   u64 row_info, u64 status, u32 stage) {                                                  \
    samplex_topp::thresholds_cluster<T, VEC>(logits, stride, vocab, tau, tau_rows, k, k_rows, p, p_rows,   \
                                             min_p, min_p_rows, want_mass, thresholds, row_info, status,   \
                                             stage);                                                       \
  }                                                                                                        \
  extern "C" __global__ void __launch_bounds__(SAMPLEX_RADIX_THREADS, 1)                                   \
      GRID_NAME(const T *logits, u64 stride, u32 vocab, float tau, u64 tau_rows, u32 k, u64 k_rows,        \
                float p, u64 p_rows, float min_p, u64 min_p_rows, u32 want_mass, u64 thresholds,           \
                u64 row_info, u64 status, u32 stage, u32 blocks, u64 barriers, u64 exchange) {             \
    samplex_topp::thresholds_grid<T, GRID_VEC>(logits, stride, vocab, tau, tau_rows, k, k_rows, p, p_rows, \
                                               min_p, min_p_rows, want_mass, thresholds, row_info, status, \
                                               stage, blocks, barriers, exchange);                         \
  }

// Grid: blocks_per_row * batch blocks of 256 threads (row-major: block / blocks_per_row = row).
// The 16-bit _any twins prefetch a shifted span (common.cuh SpanPrefetch): ptxas for sm_90 then
// took 73 registers (3 blocks per SM), so there they are held to 64 (4 blocks, as before).
#define SAMPLEX_TOPP_DRAW_BOUNDS __launch_bounds__(SAMPLEX_DRAW_TILE / 8)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define SAMPLEX_TOPP_SHIFTED_DRAW_BOUNDS __launch_bounds__(SAMPLEX_DRAW_TILE / 8, 4)
#else
#define SAMPLEX_TOPP_SHIFTED_DRAW_BOUNDS SAMPLEX_TOPP_DRAW_BOUNDS
#endif
// The f32 _any twin (scalar loads): left unbounded, ptxas for sm_80 held it to 40 registers and
// gave the divergent-warp fallback of its block scan's shuffles (BRA.DIV, never taken: the loop
// is block-uniform) an 8-byte stack frame to save one. Bounded to 2 blocks per SM (it then takes
// ~60 registers, 4 blocks still fit) the fallback has a register of its own.
#define SAMPLEX_TOPP_SCALAR_DRAW_BOUNDS __launch_bounds__(SAMPLEX_DRAW_TILE / 8, 2)
#define SAMPLEX_TOPP_SAMPLE(T, VEC, NAME, BOUNDS)                                                          \
  extern "C" __global__ void BOUNDS                                                                        \
      NAME(const T *logits, u64 stride, u32 vocab, u64 row_info, u64 seed, u64 offset, u64 seeds,          \
           u64 offsets, u32 *tokens, u64 status, u32 blocks_per_row, u64 partials, u64 tickets) {          \
    samplex_topp::sample_row<T, VEC>(logits, stride, vocab, row_info, seed, offset, seeds, offsets, tokens, \
                                     status, blocks_per_row, partials, tickets);                           \
  }

#define SAMPLEX_TOPP_WRITE(T, MODE, NAME)                                                                  \
  extern "C" __global__ void __launch_bounds__(SAMPLEX_DRAW_TILE / 8)                                     \
      NAME(const T *logits, u64 stride, u32 vocab, u64 row_info, float *out, u64 status,                   \
           u32 blocks_per_row) {                                                                           \
    samplex_topp::write_row<T, MODE>(logits, stride, vocab, row_info, out, status, blocks_per_row);        \
  }

SAMPLEX_TOPP_THRESHOLDS(float, 4, 4, samplex_topp_thresholds_f32, samplex_topp_thresholds_cluster_f32,
                        samplex_topp_thresholds_grid_f32)
SAMPLEX_TOPP_THRESHOLDS(float, 0, 1, samplex_topp_thresholds_f32_any, samplex_topp_thresholds_cluster_f32_any,
                        samplex_topp_thresholds_grid_f32_v1)
SAMPLEX_TOPP_THRESHOLDS(f16_t, 8, 8, samplex_topp_thresholds_f16, samplex_topp_thresholds_cluster_f16,
                        samplex_topp_thresholds_grid_f16)
SAMPLEX_TOPP_THRESHOLDS(f16_t, 0, 1, samplex_topp_thresholds_f16_any, samplex_topp_thresholds_cluster_f16_any,
                        samplex_topp_thresholds_grid_f16_v1)
SAMPLEX_TOPP_THRESHOLDS(bf16_t, 8, 8, samplex_topp_thresholds_bf16, samplex_topp_thresholds_cluster_bf16,
                        samplex_topp_thresholds_grid_bf16)
SAMPLEX_TOPP_THRESHOLDS(bf16_t, 0, 1, samplex_topp_thresholds_bf16_any, samplex_topp_thresholds_cluster_bf16_any,
                        samplex_topp_thresholds_grid_bf16_v1)

SAMPLEX_TOPP_SAMPLE(float, 4, samplex_topp_sample_f32, SAMPLEX_TOPP_DRAW_BOUNDS)
SAMPLEX_TOPP_SAMPLE(float, 0, samplex_topp_sample_f32_any, SAMPLEX_TOPP_SCALAR_DRAW_BOUNDS)
SAMPLEX_TOPP_SAMPLE(f16_t, 8, samplex_topp_sample_f16, SAMPLEX_TOPP_DRAW_BOUNDS)
SAMPLEX_TOPP_SAMPLE(f16_t, 0, samplex_topp_sample_f16_any, SAMPLEX_TOPP_SHIFTED_DRAW_BOUNDS)
SAMPLEX_TOPP_SAMPLE(bf16_t, 8, samplex_topp_sample_bf16, SAMPLEX_TOPP_DRAW_BOUNDS)
SAMPLEX_TOPP_SAMPLE(bf16_t, 0, samplex_topp_sample_bf16_any, SAMPLEX_TOPP_SHIFTED_DRAW_BOUNDS)

SAMPLEX_TOPP_WRITE(float, 0, samplex_topp_probs_f32)
SAMPLEX_TOPP_WRITE(f16_t, 0, samplex_topp_probs_f16)
SAMPLEX_TOPP_WRITE(bf16_t, 0, samplex_topp_probs_bf16)
SAMPLEX_TOPP_WRITE(float, 1, samplex_topp_logits_f32)
SAMPLEX_TOPP_WRITE(f16_t, 1, samplex_topp_logits_f16)
SAMPLEX_TOPP_WRITE(bf16_t, 1, samplex_topp_logits_bf16)
