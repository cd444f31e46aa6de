// samplex — kernels/sparsemax.cu: sparsemax by sort-and-threshold.
//
// SPEC.md "Sparsemax": q_i = max(u_i − θ, 0), u = z/τ, θ the unique value with Σ q = 1. With u
// sorted descending, k* = max{k : 1 + k·u_(k) > Σ_{j≤k} u_(j)} and θ = (Σ_{j≤k*} u_(j) − 1)/k*.
// θ ≥ max u − 1, so only the candidates u_i > max u − 1 can be in the support. τ = 0 is greedy.
// Also SPEC "Drawing a token", "Bad input"; docs/ARCHITECTURE.md "Kernel conventions".
//
// Kernel (<T> = f32 | f16 | bf16, each also <T>_v1 with scalar loads for unaligned rows):
//   samplex_sparsemax_project_<T>   per row: q (dense, optional), k* (optional), one token drawn
//                                   from q (optional), status (optional)
//
// Grid/block mapping: one block of 1024 threads per row (grid = batch). Passes over the row are
// strided: thread t reads vectors t, t + 1024, ... (VEC elements each, U vectors in flight), then
// the ragged tail one element per thread. Rows are not split across blocks: the candidates of a
// row must meet in one shared memory (a split version, with candidates merged through scratch by
// the last block of a row, is future work).
//
// Passes (all threads of the block run every step; every branch below is block-uniform):
//   1. Max: u = z·(1/τ) (sanitised, clamped to ±FLT_MAX), M = block max, status bits.
//      τ = 0 → greedy (step G); M = −inf → no finite logit (step E).
//   2. Gather: candidates are u ≥ cut with cut = fl(M − 1) (a superset of u > M − 1: no f32
//      lies strictly between M − 1 and its rounding). Each stores v = u − M ∈ [−1, 0] (shifted,
//      so sums stay small and exact cancellation of M is never needed). Each thread counts its
//      candidates and keeps the first REG_CAND in registers; a block exclusive scan of the
//      counts gives every thread its deterministic position (thread order, then its own order).
//      If C ≤ CAP they go to shared memory (from registers, or by a second gather pass when a
//      thread had more than REG_CAND); else step 4.
//   3. Sort-and-threshold (C ≤ CAP): bitonic sort of (v, index) pairs, descending, padded with
//      −inf to a power of two; a block scan of the sorted v gives S_k; the largest k with
//      1 + k·v_(k) > S_k is k* (every thread tests its own k's, a block argmax picks the
//      largest), θ' = (S_k* − 1)/k* (θ' = θ − M). Tiles holding a v > θ' are marked for step 6.
//   4. Radix search (C > CAP, e.g. a flat row of 128256 candidates): θ is the root of
//      f(θ) = Σ max(v_i − θ, 0) − 1 (decreasing, piecewise linear). The support is the upper set
//      {i : f(v_i) < 0}. Four passes over 8-bit digits of the order-preserving key of v (MSB
//      first) keep a prefix and (count, sum) of the candidates above it ("above", all in the
//      support). Each pass builds a 256-bin histogram of (count, fixed-point sum) of the
//      candidates under the prefix, then walks the bins from the top: the first non-empty bin d
//      whose lower edge L has f(L) ≥ 0 holds the boundary (bins above it are all in the
//      support: f(v) ≤ f(L') < 0); if no bin qualifies, everything under the prefix is in the
//      support. After the last pass the remaining bin is one value x with f(x) ≥ 0: out.
//      k* = count above, θ' = (sum above − 1)/k*. Sums are fixed point (v·2^30 as i64), added
//      with integer atomics, so the histogram does not depend on scheduling; f(L) ≥ 0 is
//      tested exactly as sum_ge − L·count_ge ≥ 2^30. Every tile is visited in step 6.
//   5. Probabilities: q_i = max((u_i − M) − θ', 0) for candidates, 0 elsewhere; k* and status.
//   6. Draw (common.cuh §7, linear weights w = q, log-scale 0 — cpu::draw_weights): only marked
//      tiles; per tile W_t = block sum, key_t = tile_key(0, W_t, ua); the candidate is searched
//      (block_tile_candidate, 2 consecutive tokens per thread) only when key_t beats the best so
//      far (strict >, so the lower tile keeps a tie).
//   G. Greedy (τ = 0): argmax of z, ties to the lower index; q one-hot, k* = 1.
//   E. No finite logit: q = 0, k* = 0, token u32::MAX, SAMPLEX_STATUS_NO_FINITE_LOGIT.
//
// Shared memory (static, ~36 KB): a union of the candidate arrays (4096 × (f32 v, u32 index))
// and the radix histogram (256 × (u32 count, i64 sum)), one BlockScratch<1024>, the tile
// bitmask (1024 tiles = 2M tokens; longer rows visit every tile) and a few scalars.
//
// Determinism: block reductions are fixed trees; positions come from scans, not atomics; the
// sort result depends only on the multiset of values; histogram sums are integers; the tile
// bitmask uses atomicOr (order-free). Nothing depends on scheduling.
#include "common.cuh"

namespace samplex_sparsemax {

constexpr int THREADS = 1024;
constexpr int WARPS = THREADS / 32;
constexpr u32 CAP = 4096;                                   // candidates sorted on chip (step 3)
constexpr int REG_CAND = 4;                                 // candidates kept in registers (step 2)
constexpr int DRAW_PER = SAMPLEX_DRAW_TILE / THREADS;       // tokens per thread per tile (step 6)
constexpr u32 MASK_WORDS = 32;                              // tile bitmask: 1024 tiles
constexpr int BINS = 256;                                   // radix digit of 8 bits (step 4)
constexpr long long FX_ONE = 1LL << 30;                     // fixed point: v · 2^30
constexpr float FX_SCALE = 1073741824.0f;                   // 2^30
static_assert(THREADS * DRAW_PER == SAMPLEX_DRAW_TILE, "a block holds one draw tile");
static_assert(THREADS >= BINS, "one thread per histogram bin");
typedef BlockScratch<THREADS> Scratch;

struct Shared {
  union {
    struct {
      float v[CAP];
      u32 i[CAP];
    } cand;  // step 3
    struct {
      u32 cnt[BINS];
      long long sum[BINS];
    } hist;  // step 4
  };
  Scratch sc;
  u32 warp_cnt[WARPS];
  long long warp_sum[WARPS];
  u32 tile_mask[MASK_WORDS];
  float s_star;        // S_k* (step 3)
  u32 sel;             // selected bin (step 4)
  u32 res_cnt;         // count added to "above" (step 4)
  long long res_sum;   // sum added to "above" (step 4)
};

// ---------------------------------------------------------------------------------------------
// Step 1: parameters, sanitising and scaling (the same conventions as softmax.cu).
// ---------------------------------------------------------------------------------------------

// The row's τ: the per-row value clamped to [0, FLT_MAX] (NaN → 1) and flagged, or the scalar.
__device__ __forceinline__ float row_temperature(float scalar, u64 temps, u32 row, u32 &status) {
  if (temps == 0) return scalar;
  const float t = reinterpret_cast<const float *>(temps)[row];
  return clamp_param(t, 0.0f, SAMPLEX_FLT_MAX, 1.0f, status);
}

// 1/τ, capped so that a subnormal τ cannot give inf.
__device__ __forceinline__ float inverse_temperature(float t) {
  return t > 0.0f ? fminf(1.0f / t, SAMPLEX_FLT_MAX) : 0.0f;
}

// sanitize() without the status bits (passes after the first).
__device__ __forceinline__ float sanitize_quiet(float x) {
  if (x != x) return SAMPLEX_NEG_INF;
  return x == SAMPLEX_INF ? SAMPLEX_FLT_MAX : x;
}

// u = z·(1/τ), clamped to ±FLT_MAX; −inf stays −inf.
__device__ __forceinline__ float scale_logit(float z, float inv_t) {
  if (z == SAMPLEX_NEG_INF) return SAMPLEX_NEG_INF;
  return fminf(fmaxf(z * inv_t, -SAMPLEX_FLT_MAX), SAMPLEX_FLT_MAX);
}

// Strided pass over a row: f(index, raw value widened to f32) for every token, each exactly
// once. Thread t takes vectors t, t + THREADS, ... with U vectors in flight, then the ragged
// tail (< VEC tokens) one per thread. Indices rise along a thread's calls.
template <typename T, int VEC, typename F>
__device__ __forceinline__ void for_each_token(const T *row, u32 vocab, F &f) {
  constexpr int U = VEC >= 8 ? 2 : (VEC >= 4 ? 4 : 8);
  const u32 nvec = vocab / VEC;
  u32 v = threadIdx.x;
  for (; v + (U - 1) * THREADS < nvec; v += U * THREADS) {
    float x[U][VEC];
#pragma unroll
    for (int k = 0; k < U; ++k) VecLoad<T, VEC>::load(row + (u64)(v + k * THREADS) * VEC, x[k]);
#pragma unroll
    for (int k = 0; k < U; ++k)
#pragma unroll
      for (int e = 0; e < VEC; ++e) f((v + k * THREADS) * VEC + e, x[k][e]);
  }
  for (; v < nvec; v += THREADS) {
    float x[VEC];
    VecLoad<T, VEC>::load(row + (u64)v * VEC, x);
#pragma unroll
    for (int e = 0; e < VEC; ++e) f(v * VEC + e, x[e]);
  }
  if (VEC > 1) {
    const u32 tail = nvec * VEC + threadIdx.x;
    if (tail < vocab) f(tail, to_f32(row[tail]));
  }
}

// ---------------------------------------------------------------------------------------------
// Collectives this file needs beyond common.cuh (CUB shape: every thread calls, ends synced).
// ---------------------------------------------------------------------------------------------

// Exclusive block scan of u32 in thread order; every thread gets its prefix and the total.
__device__ __forceinline__ u32 block_exclusive_sum_u32(u32 v, u32 &total, Scratch &s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  u32 inc = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const u32 n = __shfl_up_sync(SAMPLEX_FULL_MASK, inc, o);
    if (lane >= o) inc += n;
  }
  if (lane == 31) s.u[warp] = inc;
  __syncthreads();
  if (warp == 0) {
    const u32 w = lane < WARPS ? s.u[lane] : 0u;
    u32 wi = w;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const u32 n = __shfl_up_sync(SAMPLEX_FULL_MASK, wi, o);
      if (lane >= o) wi += n;
    }
    if (lane < WARPS) s.u[lane] = wi - w;
    if (lane == 31) s.result_u = wi;
  }
  __syncthreads();
  const u32 r = s.u[warp] + inc - v;
  total = s.result_u;
  __syncthreads();
  return r;
}

// Step 4's walk from the top bin: thread t < BINS holds bin d = BINS − 1 − t and gets the
// (count, sum) of all bins ≥ d under the current prefix (an inclusive scan in thread order).
__device__ __forceinline__ void bins_from_top(u32 &cnt_ge, long long &sum_ge, Shared &sh) {
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  u32 c = 0;
  long long s = 0;
  if (t < BINS) {
    c = sh.hist.cnt[BINS - 1 - t];
    s = sh.hist.sum[BINS - 1 - t];
  }
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const u32 cn = __shfl_up_sync(SAMPLEX_FULL_MASK, c, o);
    const long long sn = __shfl_up_sync(SAMPLEX_FULL_MASK, s, o);
    if (lane >= o) {
      c += cn;
      s += sn;
    }
  }
  if (lane == 31) {
    sh.warp_cnt[warp] = c;
    sh.warp_sum[warp] = s;
  }
  __syncthreads();
  if (t < BINS) {
    for (int w = 0; w < warp; ++w) {
      c += sh.warp_cnt[w];
      s += sh.warp_sum[w];
    }
  }
  cnt_ge = c;
  sum_ge = s;
  __syncthreads();
}

// ---------------------------------------------------------------------------------------------
// Step 3: sort-and-threshold on chip.
// ---------------------------------------------------------------------------------------------

// Bitonic sort of n2 (a power of two ≤ CAP) (v, index) pairs, descending by v. Comparator c of
// a stage pairs i = 2c − (c mod j) (bit j clear) with i + j.
__device__ __forceinline__ void bitonic_sort_desc(float *v, u32 *idx, u32 n2) {
  for (u32 k = 2; k <= n2; k <<= 1) {
    for (u32 j = k >> 1; j > 0; j >>= 1) {
      for (u32 c = threadIdx.x; c < n2 / 2; c += THREADS) {
        const u32 i = 2 * c - (c & (j - 1));
        const u32 l = i + j;
        const bool desc = (i & k) == 0;
        const float a = v[i], b = v[l];
        if (desc ? (a < b) : (a > b)) {
          v[i] = b;
          v[l] = a;
          const u32 t = idx[i];
          idx[i] = idx[l];
          idx[l] = t;
        }
      }
      __syncthreads();
    }
  }
}

// k* and S_k* of the C sorted candidates (step 3). Thread t scans entries [t·per, t·per + per).
__device__ __forceinline__ u32 sorted_threshold(u32 C, float &theta, Shared &sh) {
  const u32 per = (C + THREADS - 1) / THREADS;  // ≤ CAP / THREADS = 4
  const u32 lo = min(threadIdx.x * per, C), hi = min(lo + per, C);
  float mine = 0.0f;
  for (u32 j = lo; j < hi; ++j) mine += sh.cand.v[j];
  float total;
  float run = block_exclusive_sum<THREADS>(mine, total, sh.sc);
  u32 best_k = 0;
  float best_s = 0.0f;
  for (u32 j = lo; j < hi; ++j) {
    const float v = sh.cand.v[j];
    run += v;
    const u32 k = j + 1;
    if (1.0f + (float)k * v > run) {
      best_k = k;
      best_s = run;
    }
  }
  ArgMax a;
  a.v = (float)best_k;  // exact: k ≤ CAP
  a.i = best_k;
  const u32 k_star = block_argmax<THREADS>(a, sh.sc).i;  // ≥ 1: k = 1 always qualifies
  if (best_k == k_star) sh.s_star = best_s;              // one owner
  __syncthreads();
  theta = (sh.s_star - 1.0f) / (float)k_star;
  return k_star;
}

// ---------------------------------------------------------------------------------------------
// Step 4: radix search for θ when the candidates do not fit on chip.
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ long long to_fixed(float v) { return __float2ll_rn(v * FX_SCALE); }

template <typename T, int VEC>
__device__ __forceinline__ u32 radix_threshold(const T *zr, u32 vocab, float inv_t, float M, float cut,
                                               float &theta, Shared &sh) {
  u32 prefix = 0, fixed = 0;
  u32 above_cnt = 0;
  long long above_sum = 0;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    for (int b = threadIdx.x; b < BINS; b += THREADS) {
      sh.hist.cnt[b] = 0;
      sh.hist.sum[b] = 0;
    }
    if (threadIdx.x == 0) sh.sel = BINS;
    __syncthreads();
    // Histogram; a thread adds runs of equal bins once (flat rows hit few bins in early passes).
    int cur = -1;
    u32 cur_cnt = 0;
    long long cur_sum = 0;
    auto add = [&](u32, float x) {
      const float u = scale_logit(sanitize_quiet(x), inv_t);
      if (!(u >= cut)) return;
      const float v = u - M;
      const u32 key = float_to_key(v);
      if ((key & fixed) != prefix) return;
      const int d = (int)((key >> shift) & 0xffu);
      if (d != cur) {
        if (cur >= 0) {
          atomicAdd(&sh.hist.cnt[cur], cur_cnt);
          atomicAdd(reinterpret_cast<unsigned long long *>(&sh.hist.sum[cur]), (unsigned long long)cur_sum);
        }
        cur = d;
        cur_cnt = 0;
        cur_sum = 0;
      }
      ++cur_cnt;
      cur_sum += to_fixed(v);
    };
    for_each_token<T, VEC>(zr, vocab, add);
    if (cur >= 0) {
      atomicAdd(&sh.hist.cnt[cur], cur_cnt);
      atomicAdd(reinterpret_cast<unsigned long long *>(&sh.hist.sum[cur]), (unsigned long long)cur_sum);
    }
    __syncthreads();
    u32 cnt_ge;
    long long sum_ge;
    bins_from_top(cnt_ge, sum_ge, sh);
    const int t = threadIdx.x;
    if (t < BINS) {
      const int d = BINS - 1 - t;
      if (sh.hist.cnt[d] > 0) {
        // f(L) ≥ 0 at the bin's lower edge L: Σ_{v ≥ L} v − L·#{v ≥ L} ≥ 1, in fixed point.
        const long long c = (long long)(above_cnt + cnt_ge);
        const long long s = above_sum + sum_ge;
        const float L = key_to_float(prefix | ((u32)d << shift));
        if (s - to_fixed(L) * c >= FX_ONE) atomicMin(&sh.sel, (u32)t);
      }
    }
    __syncthreads();
    const u32 sel = sh.sel;
    // The owner of the selected bin (or of bin 0, when none qualifies) reports what joins "above".
    if ((sel < (u32)BINS && t == (int)sel) || (sel == (u32)BINS && t == BINS - 1)) {
      const int d = BINS - 1 - t;
      sh.res_cnt = sel < (u32)BINS ? cnt_ge - sh.hist.cnt[d] : cnt_ge;
      sh.res_sum = sel < (u32)BINS ? sum_ge - sh.hist.sum[d] : sum_ge;
    }
    __syncthreads();
    above_cnt += sh.res_cnt;
    above_sum += sh.res_sum;
    __syncthreads();
    if (sel == (u32)BINS) break;  // block-uniform
    prefix |= (u32)(BINS - 1 - (int)sel) << shift;
    fixed |= 0xffu << shift;
  }
  // above_cnt ≥ 1: the maximum (v = 0) has f(0) = −1 < 0.
  theta = ((float)(above_sum - FX_ONE) / FX_SCALE) / (float)above_cnt;
  return above_cnt;
}

// ---------------------------------------------------------------------------------------------
// Step 6: the draw over marked tiles.
// ---------------------------------------------------------------------------------------------
// The row's random stream: RowRng, row_rng (common.cuh §4).

// q of one token from its raw value (steps 5 and 6).
__device__ __forceinline__ float q_of(float x, float inv_t, float M, float cut, float theta) {
  const float u = scale_logit(sanitize_quiet(x), inv_t);
  return u >= cut ? fmaxf((u - M) - theta, 0.0f) : 0.0f;
}

template <typename T>
__device__ __forceinline__ u32 draw(const T *zr, u32 vocab, float inv_t, float M, float cut, float theta,
                                    bool all_tiles, const RowRng &rng, Shared &sh) {
  float best_key = SAMPLEX_NEG_INF;
  u32 best = SAMPLEX_NO_TOKEN;
  const u32 tiles = ceil_div(vocab, SAMPLEX_DRAW_TILE);
  for (u32 tile = 0; tile < tiles; ++tile) {
    if (!all_tiles && ((sh.tile_mask[tile >> 5] >> (tile & 31)) & 1u) == 0) continue;  // uniform
    const u32 first = tile * SAMPLEX_DRAW_TILE + threadIdx.x * DRAW_PER;
    float w[DRAW_PER];
    float mine = 0.0f;
#pragma unroll
    for (int e = 0; e < DRAW_PER; ++e) {
      w[e] = first + e < vocab ? q_of(to_f32(zr[first + e]), inv_t, M, cut, theta) : 0.0f;
      mine += w[e];
    }
    const float W = block_sum<THREADS>(mine, sh.sc);
    if (!(W > 0.0f)) continue;  // uniform
    const Philox4 r = row_random(rng.seed, rng.offset, rng.stream, tile);
    const float key = tile_key(0.0f, W, uniform_open(r.x));
    if (key > best_key) {  // uniform: every thread has the same key
      float total;
      best = block_tile_candidate<THREADS, DRAW_PER>(w, first, uniform_open(r.y), total, sh.sc);
      best_key = key;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// The kernel body.
// ---------------------------------------------------------------------------------------------

// Step G: greedy row (τ = 0).
template <typename T, int VEC>
__device__ __forceinline__ void greedy_row(const T *zr, u32 vocab, u32 row, u32 status_in, float *q_row,
                                           u64 support, u64 tokens, u64 status, Shared &sh) {
  u32 st = status_in;
  ArgMax a;
  a.v = SAMPLEX_NEG_INF;
  a.i = SAMPLEX_NO_TOKEN;
  auto op = [&](u32 i, float x) {
    ArgMax b;
    b.v = sanitize(x, st);
    b.i = i;
    if (b.v > SAMPLEX_NEG_INF && argmax_better(b, a)) a = b;
  };
  for_each_token<T, VEC>(zr, vocab, op);
  const ArgMax best = block_argmax<THREADS>(a, sh.sc);
  st = block_or<THREADS>(st, sh.sc);
  const u32 tok = best.v > SAMPLEX_NEG_INF ? best.i : SAMPLEX_NO_TOKEN;
  if (q_row != nullptr)
    for (u32 i = threadIdx.x; i < vocab; i += THREADS) q_row[i] = i == tok ? 1.0f : 0.0f;
  if (threadIdx.x == 0) {
    if (tok == SAMPLEX_NO_TOKEN) st |= SAMPLEX_STATUS_NO_FINITE_LOGIT;
    if (support != 0) reinterpret_cast<u32 *>(support)[row] = tok == SAMPLEX_NO_TOKEN ? 0u : 1u;
    if (tokens != 0) reinterpret_cast<u32 *>(tokens)[row] = tok;
    if (status != 0) reinterpret_cast<u32 *>(status)[row] = st;
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void project(const T *logits, u64 stride, u32 vocab, float temperature, u64 temps,
                                        u64 seed, u64 offset, u64 seeds, u64 offsets, u64 probs, u64 support,
                                        u64 tokens, u64 status) {
  __shared__ Shared sh;
  const u32 row = blockIdx.x;
  const T *zr = row_ptr(logits, row, stride);
  float *q_row = probs != 0 ? reinterpret_cast<float *>(probs) + (u64)row * vocab : nullptr;
  u32 st = 0;
  const float tau = row_temperature(temperature, temps, row, st);
  if (tau == 0.0f) {  // uniform: one τ per row
    greedy_row<T, VEC>(zr, vocab, row, st, q_row, support, tokens, status, sh);
    return;
  }
  const float inv_t = inverse_temperature(tau);

  // Step 1.
  float m = SAMPLEX_NEG_INF;
  auto max_op = [&](u32, float x) { m = fmaxf(m, scale_logit(sanitize(x, st), inv_t)); };
  for_each_token<T, VEC>(zr, vocab, max_op);
  const float M = block_max<THREADS>(m, sh.sc);
  st = block_or<THREADS>(st, sh.sc);
  if (M == SAMPLEX_NEG_INF) {  // step E (uniform)
    if (q_row != nullptr)
      for (u32 i = threadIdx.x; i < vocab; i += THREADS) q_row[i] = 0.0f;
    if (threadIdx.x == 0) {
      if (support != 0) reinterpret_cast<u32 *>(support)[row] = 0u;
      if (tokens != 0) reinterpret_cast<u32 *>(tokens)[row] = SAMPLEX_NO_TOKEN;
      if (status != 0) reinterpret_cast<u32 *>(status)[row] = st | SAMPLEX_STATUS_NO_FINITE_LOGIT;
    }
    return;
  }
  const float cut = M - 1.0f;

  // Step 2.
  u32 n = 0;
  float cv[REG_CAND];
  u32 ci[REG_CAND];
#pragma unroll
  for (int r = 0; r < REG_CAND; ++r) {
    cv[r] = 0.0f;
    ci[r] = 0u;
  }
  auto count_op = [&](u32 i, float x) {
    const float u = scale_logit(sanitize_quiet(x), inv_t);
    if (u >= cut) {
#pragma unroll
      for (int r = 0; r < REG_CAND; ++r)
        if (n == (u32)r) {
          cv[r] = u - M;
          ci[r] = i;
        }
      ++n;
    }
  };
  for_each_token<T, VEC>(zr, vocab, count_op);
  u32 C;
  const u32 pos = block_exclusive_sum_u32(n, C, sh.sc);
  for (u32 w = threadIdx.x; w < MASK_WORDS; w += THREADS) sh.tile_mask[w] = 0u;
  const u32 tiles = ceil_div(vocab, SAMPLEX_DRAW_TILE);
  bool all_tiles = tiles > MASK_WORDS * 32;
  float theta;
  u32 k_star;
  if (C <= CAP) {  // uniform
    const u32 spilled = block_or<THREADS>(n > (u32)REG_CAND ? 1u : 0u, sh.sc);
    if (spilled == 0u) {
#pragma unroll
      for (int r = 0; r < REG_CAND; ++r)
        if ((u32)r < n) {
          sh.cand.v[pos + r] = cv[r];
          sh.cand.i[pos + r] = ci[r];
        }
    } else {  // a second gather pass writes every candidate at its position
      u32 k = pos;
      auto write_op = [&](u32 i, float x) {
        const float u = scale_logit(sanitize_quiet(x), inv_t);
        if (u >= cut) {
          sh.cand.v[k] = u - M;
          sh.cand.i[k] = i;
          ++k;
        }
      };
      for_each_token<T, VEC>(zr, vocab, write_op);
    }
    u32 n2 = 1;
    while (n2 < C) n2 <<= 1;
    for (u32 j = C + threadIdx.x; j < n2; j += THREADS) {
      sh.cand.v[j] = SAMPLEX_NEG_INF;
      sh.cand.i[j] = SAMPLEX_NO_TOKEN;
    }
    __syncthreads();
    // Step 3.
    bitonic_sort_desc(sh.cand.v, sh.cand.i, n2);
    k_star = sorted_threshold(C, theta, sh);
    if (tokens != 0 && !all_tiles) {
      for (u32 j = threadIdx.x; j < C; j += THREADS) {
        if (sh.cand.v[j] > theta) {
          const u32 tile = sh.cand.i[j] / SAMPLEX_DRAW_TILE;
          atomicOr(&sh.tile_mask[tile >> 5], 1u << (tile & 31));
        }
      }
    }
    __syncthreads();
  } else {
    // Step 4.
    k_star = radix_threshold<T, VEC>(zr, vocab, inv_t, M, cut, theta, sh);
    all_tiles = true;
  }

  // Step 5.
  if (q_row != nullptr) {
    auto write_q = [&](u32 i, float x) { q_row[i] = q_of(x, inv_t, M, cut, theta); };
    for_each_token<T, VEC>(zr, vocab, write_q);
  }
  // Step 6.
  u32 tok = SAMPLEX_NO_TOKEN;
  if (tokens != 0) {
    const RowRng rng = row_rng(seed, offset, seeds, offsets, row);
    tok = draw<T>(zr, vocab, inv_t, M, cut, theta, all_tiles, rng, sh);
  }
  if (threadIdx.x == 0) {
    if (support != 0) reinterpret_cast<u32 *>(support)[row] = k_star;
    if (tokens != 0) {
      reinterpret_cast<u32 *>(tokens)[row] = tok;
      if (tok == SAMPLEX_NO_TOKEN) st |= SAMPLEX_STATUS_NO_FINITE_LOGIT;
    }
    if (status != 0) reinterpret_cast<u32 *>(status)[row] = st;
  }
}

}  // namespace samplex_sparsemax

// ---------------------------------------------------------------------------------------------
// Entry points: one line per dtype emits the kernel at its 16-byte vector width and at width 1
// (_v1). Optional outputs travel as u64 device addresses (0 = absent).
// ---------------------------------------------------------------------------------------------
#define SAMPLEX_SPARSEMAX_ENTRY(T, NAME, VEC, SUFFIX)                                                     \
  extern "C" __global__ void __launch_bounds__(samplex_sparsemax::THREADS)                               \
      samplex_sparsemax_project_##NAME##SUFFIX(const T *logits, u64 stride, u32 vocab, float temperature, \
                                                u64 temps, u64 seed, u64 offset, u64 seeds, u64 offsets,  \
                                                u64 probs, u64 support, u64 tokens, u64 status) {         \
    samplex_sparsemax::project<T, VEC>(logits, stride, vocab, temperature, temps, seed, offset, seeds,   \
                                       offsets, probs, support, tokens, status);                          \
  }

#define SAMPLEX_SPARSEMAX_DTYPE(T, NAME, VEC) \
  SAMPLEX_SPARSEMAX_ENTRY(T, NAME, VEC, )     \
  SAMPLEX_SPARSEMAX_ENTRY(T, NAME, 1, _v1)

SAMPLEX_SPARSEMAX_DTYPE(float, f32, 4)
SAMPLEX_SPARSEMAX_DTYPE(f16_t, f16, 8)
SAMPLEX_SPARSEMAX_DTYPE(bf16_t, bf16, 8)
