// samplex — kernels/softmax.cu: temperature softmax, greedy, and drawing a token from logits
// or from probabilities.
//
// SPEC.md "Definitions" (Temperature softmax, Greedy), "Drawing a token", "Bad input";
// docs/ARCHITECTURE.md "Kernel conventions", "Random numbers", "Drawing a token".
//
// Kernels (<T> = f32 | f16 | bf16; each also as <T>_any, the instantiation the host picks when
// the base address or the row stride is not 16-byte aligned: the same 16-byte loads, from the
// boundary below each row's start, shifted in registers; load_tile):
//   samplex_softmax_stats_<T>         split rows, step 3a only: one block's partial (max, sum)
//   samplex_softmax_probs_<T>         p = softmax(z/τ) and, optionally, log p
//   samplex_softmax_probs_staged_<T>  the same with each row held in a cluster's shared memory
//                                     (sm_90; a cluster of C blocks per row, one read)
//   samplex_softmax_token_log_probs_<T>  log p of given tokens per row, the row not written
//   samplex_softmax_greedy_<T>        argmax per row
//   samplex_softmax_sample_<T>        one token per row from softmax(z/τ): one read of the row
//   samplex_softmax_sample_probs_f32  one token per row from given probabilities
//   samplex_softmax_sample_probs_n_f32  n tokens per row from given probabilities, one read
//   samplex_softmax_verify_draft_f32  speculative decoding's verification: the accepted prefix of
//                                     a draft and one token drawn from the residual or the target
//   samplex_softmax_philox_words      test hook: row_random words for given inputs
//
// Grid/block mapping (every row kernel): 256 threads per block, a 1-D grid of batch × P blocks,
// blockIdx.x = row · P + part. A row is cut into draw tiles of 2048 tokens; part p of P handles
// tiles p, p + P, p + 2P, ... (P = launch::blocks_per_row: 1 for large batches, up to the tile
// count for small ones, so every part has at least one tile). In a tile, thread t holds the 8
// consecutive tokens 8t .. 8t+7 (thread order = token order): two float4 loads for f32, one
// 16-byte load for f16/bf16; in _any one more, and a shift. Past the row's end a thread reads
// -inf.
//
// Steps
//   1. Load and sanitise (load_tile, sanitize): NaN -> -inf, +inf -> FLT_MAX, status bits.
//      Probabilities instead (sanitize_weight): NaN and negatives -> 0, +inf -> FLT_MAX.
//   2. Scale (scale_logit): u = z · (1/τ), clamped to ±FLT_MAX, -inf stays -inf. τ is the
//      per-row value when that pointer is non-null (clamped on the device, flagged), else the
//      scalar. τ = 0 rows are greedy in the same launch (step 3c).
//   3a. Softmax statistics: each thread merges the (max, Σ e^{u - max}) of its tiles, then one
//       block reduction (block_max_sum). Every e^x in this file is exp_weight (common.cuh),
//       an exp2f, and exactly 1 at x = 0.
//   3b. Draw (common.cuh §7): per tile, m_t = the tile's max u (block_max), then W_t = Σ w,
//       w = e^{u - m_t} (block_sum; for probabilities w is the value, m_t = 0, one sum):
//       no exponential in the reduction tree, where block_max_sum's merges had two a level.
//       key_t = tile_key(m_t, W_t, ua).
//       Only when key_t beats the block's best so far is the candidate searched
//       (block_tile_candidate over the weights already in registers), so most tiles cost two
//       reductions. Strict > keeps the lower tile on a tie.
//   3c. Greedy: each thread keeps its first largest (z, index), then block_argmax.
//   4. Finish (finish_row). P = 1: thread 0 writes the token and status. P > 1: each block
//      writes its partial to scratch, __threadfence(), takes a ticket on tickets[row] (an
//      atomicInc that wraps, so the last ticket leaves it at 0); the last block fences again,
//      reads every partial (volatile loads), merges them and writes the token and status.
//   5. Probabilities: with P = 1 the block runs 3a (or 3c) and then reads its tiles a second
//      time to write p = e^{u - m} / s and log p = u - m - ln s. With P > 1 the host first
//      launches samplex_softmax_stats (3a per part, partials to scratch), then
//      samplex_softmax_probs, whose blocks each merge all partials of their row
//      (merge_row_stats) before writing their tiles: no block ever waits for another. The
//      second read hits L2 only while less than about half of it is read in between; beyond
//      that (large batches of long rows) the host takes samplex_softmax_probs_staged on sm_90:
//      a cluster per row holds it in shared memory and reads it once (see there).
//
// Shared memory: one BlockScratch<256> per block (8 + 8 words and two result words), reused by
// every collective (each ends with __syncthreads); finish_row and merge_row_stats use it after
// the last collective. Device scratch: one 16-byte Partial per (row, part). The staged kernel
// adds dynamic shared memory: the block's 16-byte RowStats, then 8 KiB per staged tile.
//
// Determinism: every reduction is a fixed tree (warp butterflies, then warp 0 over the warps),
// and every merge of partials either runs in a fixed order (max-sum, lane-strided in part
// order, then a fixed butterfly) or is a total order (key or value first, then the lower
// token). Nothing that decides a token or a probability depends on scheduling or ticket order.
#include "common.cuh"

namespace samplex_softmax {

constexpr int THREADS = 256;
constexpr int PER = 8;  // tokens per thread per tile
static_assert(THREADS * PER == SAMPLEX_DRAW_TILE, "one block holds exactly one draw tile");
typedef BlockScratch<THREADS> Scratch;

// ---------------------------------------------------------------------------------------------
// Index arithmetic, named once.
// ---------------------------------------------------------------------------------------------

// Which row a block works on, and which of the row's `parts` it is.
struct RowPart {
  u32 row, part, parts;
};
__device__ __forceinline__ RowPart row_part(u32 parts) {
  RowPart p;
  p.row = blockIdx.x / parts;
  p.part = blockIdx.x - p.row * parts;
  p.parts = parts;
  return p;
}

__device__ __forceinline__ u32 row_tiles(u32 vocab) { return ceil_div(vocab, SAMPLEX_DRAW_TILE); }

// The first of the PER consecutive tokens this thread holds in tile `tile`.
__device__ __forceinline__ u32 thread_first(u32 tile) {
  return tile * (u32)SAMPLEX_DRAW_TILE + threadIdx.x * (u32)PER;
}

// One (row, part)'s result in device scratch (step 4 and step 5).
//   draw / greedy: v = key or value, i = token, status
//   statistics:    v = max u (max z for greedy rows), s = Σ e^{u - v}, i = argmax, status
struct Partial {
  float v;
  u32 i;
  u32 status;
  float s;
};
__device__ __forceinline__ Partial *partial_at(u64 partials, RowPart rp, u32 part) {
  return reinterpret_cast<Partial *>(partials) + ((u64)rp.row * rp.parts + part);
}

// ---------------------------------------------------------------------------------------------
// Steps 1-2: loading, sanitising, scaling.
// ---------------------------------------------------------------------------------------------

// The PER values this thread holds in a tile (step 1), widened to f32; -inf past the row's end.
// VEC = 0 (the _any twin): the row at any alignment, still with 16-byte loads (common.cuh
// load_span).
template <typename T, int VEC>
__device__ __forceinline__ void load_tile(const T *row, u32 vocab, u32 first, float (&x)[PER]) {
  load_span<T, VEC, PER>(row, vocab, first, x);
}

// A thread's next tile, requested before the current one is used (common.cuh SpanPrefetch).
// ScanPrefetch: the statistics' and argmax's loops, which hold no barrier per tile and run 5-8
// blocks per SM, prefetch in the aligned kernels only: in the _any twins the shifted prefetch
// took them past 32 registers (on sm_80 ptxas spilled 8 bytes to stay at 32).
template <typename T, int VEC> using TilePrefetch = SpanPrefetch<T, VEC, PER>;
template <typename T, int VEC> using ScanPrefetch = SpanPrefetch<T, VEC, PER, false>;

// A probability as a draw weight (step 1): NaN and negatives -> 0, +inf -> FLT_MAX.
__device__ __forceinline__ float sanitize_weight(float p, u32 &status) {
  if (p != p) {
    status |= SAMPLEX_STATUS_NAN_LOGIT;
    return 0.0f;
  }
  if (p == SAMPLEX_INF) {
    status |= SAMPLEX_STATUS_POS_INF_LOGIT;
    return SAMPLEX_FLT_MAX;
  }
  return p > 0.0f ? p : 0.0f;
}

// The row's τ as the probabilities need it: greedy (τ = 0), 1/τ, and the clamp's status bits.
struct RowTemperature {
  float inv_t;
  bool greedy;
  u32 status;
};
__device__ __forceinline__ RowTemperature row_temperature_of(float scalar, u64 temps, u32 row) {
  RowTemperature r;
  r.status = 0;
  const float t = row_temperature(scalar, temps, row, r.status);
  r.greedy = t == 0.0f;
  r.inv_t = inverse_temperature(t);
  return r;
}

// u = z · (1/τ) clamped to ±FLT_MAX (step 2); -inf stays -inf. z is sanitised (never NaN).
__device__ __forceinline__ float scale_logit(float z, float inv_t) {
  if (z == SAMPLEX_NEG_INF) return SAMPLEX_NEG_INF;
  return fminf(fmaxf(z * inv_t, -SAMPLEX_FLT_MAX), SAMPLEX_FLT_MAX);
}

// A bound on |z| under which z · inv_t is finite, so that scale_logit(sanitize(z)) is z · inv_t:
// FLT_MAX for inv_t ≤ 1 (the product rounds to at most |z|), else half of FLT_MAX / inv_t (the
// half covers the rounding of the quotient and of the product). A row's constant.
__device__ __forceinline__ float unclamped_limit(float inv_t) {
  return inv_t <= 1.0f ? SAMPLEX_FLT_MAX : 0.5f * (SAMPLEX_FLT_MAX / inv_t);
}

// x[j] = scale_logit(sanitize(x[j], status), inv_t) over a thread's span, the same values and
// bits (sanitize_span's reasoning): when every |z| ≤ limit (unclamped_limit(inv_t); false for
// NaN and ±inf), neither the sanitising nor the clamps change anything and u = z · inv_t, one
// compare and one multiply a value; else value by value. The multiply is __fmul_rn: u is
// rounded to f32 as scale_logit's clamps round it, so it cannot be fused into the u − m that
// follows (an FFMA would skip that rounding and change the bits).
template <int N>
__device__ __forceinline__ void sanitize_scale_span(float (&x)[N], float inv_t, float limit, u32 &status) {
  bool in_range = true;
#pragma unroll
  for (int j = 0; j < N; ++j) in_range &= fabsf(x[j]) <= limit;
  if (__builtin_expect(in_range, 1)) {
#pragma unroll
    for (int j = 0; j < N; ++j) x[j] = __fmul_rn(x[j], inv_t);
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) x[j] = scale_logit(sanitize(x[j], status), inv_t);
  }
}

// ---------------------------------------------------------------------------------------------
// Step 3a: (max, sum of exponentials) pairs. (m, s) stands for Σ e^{u_i} = e^m · s.
// ---------------------------------------------------------------------------------------------
struct MaxSum {
  float m, s;
};

__device__ __forceinline__ MaxSum max_sum_empty() {
  MaxSum r;
  r.m = SAMPLEX_NEG_INF;
  r.s = 0.0f;
  return r;
}

// Merges two pairs. m is never +inf (u is clamped), so no inf - inf arises.
__device__ __forceinline__ MaxSum max_sum_merge(MaxSum a, MaxSum b) {
  MaxSum r;
  r.m = fmaxf(a.m, b.m);
  if (r.m == SAMPLEX_NEG_INF) {
    r.s = 0.0f;
    return r;
  }
  r.s = a.s * exp_weight(a.m - r.m) + b.s * exp_weight(b.m - r.m);
  return r;
}

// The pair of this thread's PER scaled values.
__device__ __forceinline__ MaxSum thread_max_sum(const float (&u)[PER]) {
  MaxSum r = max_sum_empty();
#pragma unroll
  for (int j = 0; j < PER; ++j) r.m = fmaxf(r.m, u[j]);
  if (r.m != SAMPLEX_NEG_INF) {
#pragma unroll
    for (int j = 0; j < PER; ++j) r.s += exp_weight(u[j] - r.m);  // e^{-inf} = 0
  }
  return r;
}

__device__ __forceinline__ MaxSum warp_max_sum(MaxSum v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum w;
    w.m = __shfl_xor_sync(SAMPLEX_FULL_MASK, v.m, o);
    w.s = __shfl_xor_sync(SAMPLEX_FULL_MASK, v.s, o);
    v = max_sum_merge(v, w);
  }
  return v;
}

// Block-wide (max, sum) in one collective (CUB shape: caller-owned scratch, every thread of the
// block must call it, every thread gets lane 0 of warp 0's result, ends with __syncthreads).
__device__ __forceinline__ MaxSum block_max_sum(MaxSum v, Scratch &s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max_sum(v);
  if (lane == 0) {
    s.f[warp] = v.m;
    s.u[warp] = __float_as_uint(v.s);
  }
  __syncthreads();
  if (warp == 0) {
    MaxSum w = max_sum_empty();
    if (lane < Scratch::WARPS) {
      w.m = s.f[lane];
      w.s = __uint_as_float(s.u[lane]);
    }
    w = warp_max_sum(w);
    if (lane == 0) {
      s.result_f = w.m;
      s.result_u = __float_as_uint(w.s);
    }
  }
  __syncthreads();
  MaxSum r;
  r.m = s.result_f;
  r.s = __uint_as_float(s.result_u);
  __syncthreads();
  return r;
}

// Step 3a over the block's tiles of a row. Every thread of the block must call it.
template <typename T, int VEC>
__device__ __forceinline__ MaxSum block_row_max_sum(const T *row, u32 vocab, RowPart rp, float inv_t,
                                                    u32 &status, Scratch &s) {
  MaxSum ms = max_sum_empty();
  const u32 tiles = row_tiles(vocab);
  const float limit = unclamped_limit(inv_t);
  ScanPrefetch<T, VEC> next;
  next.issue(row, vocab, thread_first(rp.part));
  for (u32 tile = rp.part; tile < tiles; tile += rp.parts) {
    float x[PER];
    next.take(row, vocab, thread_first(tile), x);
    next.issue(row, vocab, thread_first(tile + rp.parts));
    sanitize_scale_span(x, inv_t, limit, status);
    ms = max_sum_merge(ms, thread_max_sum(x));
  }
  return block_max_sum(ms, s);
}

// Step 3c over the block's tiles of a row: the first largest sanitised z and its token
// (SAMPLEX_NO_TOKEN with -inf when nothing is finite). Every thread of the block must call it.
template <typename T, int VEC>
__device__ __forceinline__ ArgMax block_row_argmax(const T *row, u32 vocab, RowPart rp, u32 &status,
                                                   Scratch &s) {
  ArgMax a;
  a.v = SAMPLEX_NEG_INF;
  a.i = SAMPLEX_NO_TOKEN;
  const u32 tiles = row_tiles(vocab);
  ScanPrefetch<T, VEC> next;
  next.issue(row, vocab, thread_first(rp.part));
  for (u32 tile = rp.part; tile < tiles; tile += rp.parts) {
    float x[PER];
    const u32 first = thread_first(tile);
    next.take(row, vocab, first, x);
    next.issue(row, vocab, thread_first(tile + rp.parts));
    sanitize_span(x, status);
#pragma unroll
    for (int j = 0; j < PER; ++j) {
      if (x[j] > a.v) {  // strict: a thread's tokens rise, so the lower index keeps a tie
        a.v = x[j];
        a.i = first + j;
      }
    }
  }
  return block_argmax<THREADS>(a, s);
}

// ---------------------------------------------------------------------------------------------
// Steps 3b-4: the draw's random stream and finishing a row.
// ---------------------------------------------------------------------------------------------
// RowRng and row_rng (the row's random stream) are in common.cuh §4.

__device__ __forceinline__ ArgMax no_pick() {
  ArgMax a;
  a.v = SAMPLEX_NEG_INF;
  a.i = SAMPLEX_NO_TOKEN;
  return a;
}

// Step 4, split rows: thread 0 writes the block's (key, token) and status as its partial and
// takes the row's ticket; true in the row's last block, whose partials are then all visible.
__device__ __forceinline__ bool offer_part(ArgMax best, u32 status, RowPart rp, u64 partials, u64 tickets,
                                           Scratch &s) {
  if (threadIdx.x == 0) {
    Partial *p = partial_at(partials, rp, rp.part);
    p->v = best.v;
    p->i = best.i;
    p->status = status;
  }
  return last_block_of_row(tickets, rp.row, rp.parts, s.result_u);
}

// The row's draw merged from its partials, in warp 0 of the last block (every lane gets it):
// lane l reads parts l, l + 32, ...; the merge is a total order (key, then the lower token), so
// its order does not matter.
__device__ __forceinline__ void merge_parts(RowPart rp, u64 partials, ArgMax &best, u32 &status) {
  ArgMax m = no_pick();
  u32 st = 0;
  for (u32 b = threadIdx.x; b < rp.parts; b += 32) {
    const volatile Partial *p = partial_at(partials, rp, b);
    ArgMax q;
    q.v = p->v;
    q.i = p->i;
    st |= p->status;
    m = argmax_pick(m, q);
  }
  best = warp_argmax(m);
  status = warp_or(st);
}

// Step 4. `best` is the block's (key or value, token), `status` its status bits; both must be
// the same in every thread. Call after the last collective: threads return early here.
__device__ __forceinline__ void finish_row(ArgMax best, u32 status, RowPart rp, u64 partials, u64 tickets,
                                           u32 *tokens, u64 status_out, Scratch &s) {
  if (rp.parts > 1) {
    const bool last = offer_part(best, status, rp, partials, tickets, s);
    if (!last || threadIdx.x >= 32) return;  // block-uniform, then warp-uniform
    merge_parts(rp, partials, best, status);
    if (threadIdx.x != 0) return;
  } else if (threadIdx.x != 0) {
    return;
  }
  if (best.i == SAMPLEX_NO_TOKEN) status |= SAMPLEX_STATUS_NO_FINITE_LOGIT;
  tokens[rp.row] = best.i;
  if (status_out != 0) reinterpret_cast<u32 *>(status_out)[rp.row] = status;
}

// ---------------------------------------------------------------------------------------------
// Kernel bodies.
// ---------------------------------------------------------------------------------------------

// samplex_softmax_greedy: steps 1, 3c, 4.
template <typename T, int VEC>
__device__ __forceinline__ void greedy(const T *logits, u64 stride, u32 vocab, u32 parts, u64 partials,
                                       u64 tickets, u32 *tokens, u64 status_out) {
  __shared__ Scratch s;
  const RowPart rp = row_part(parts);
  u32 status = 0;
  const ArgMax best = block_row_argmax<T, VEC>(row_ptr(logits, rp.row, stride), vocab, rp, status, s);
  status = block_or<THREADS>(status, s);
  finish_row(best, status, rp, partials, tickets, tokens, status_out, s);
}

// samplex_softmax_sample: steps 1, 2, 3b (3c for τ = 0 rows), 4.
template <typename T, int VEC>
__device__ __forceinline__ void sample(const T *logits, u64 stride, u32 vocab, float temperature, u64 temps,
                                       u64 seed, u64 offset, u64 seeds, u64 offsets, u32 parts,
                                       u64 partials, u64 tickets, u32 *tokens, u64 status_out) {
  __shared__ Scratch s;
  const RowPart rp = row_part(parts);
  const T *row = row_ptr(logits, rp.row, stride);
  u32 status = 0;
  const float t = row_temperature(temperature, temps, rp.row, status);
  ArgMax best;
  if (t == 0.0f) {
    best = block_row_argmax<T, VEC>(row, vocab, rp, status, s);
  } else {
    const float inv_t = inverse_temperature(t);
    const float limit = unclamped_limit(inv_t);
    const RowRng rng = row_rng(seed, offset, seeds, offsets, rp.row);
    best = no_pick();
    const u32 tiles = row_tiles(vocab);
    TilePrefetch<T, VEC> next;
    next.issue(row, vocab, thread_first(rp.part));
    for (u32 tile = rp.part; tile < tiles; tile += rp.parts) {
      float x[PER];
      const u32 first = thread_first(tile);
      next.take(row, vocab, first, x);
      next.issue(row, vocab, thread_first(tile + rp.parts));
      sanitize_scale_span(x, inv_t, limit, status);
      float top = SAMPLEX_NEG_INF;
#pragma unroll
      for (int j = 0; j < PER; ++j) top = fmaxf(top, x[j]);
      top = block_max<THREADS>(top, s);
      if (top == SAMPLEX_NEG_INF) continue;  // nothing finite in the tile (block-uniform)
      float mine = 0.0f;
#pragma unroll
      for (int j = 0; j < PER; ++j) {
        x[j] = exp_weight(x[j] - top);  // e^{-inf} = 0
        mine += x[j];
      }
      const float total = block_sum<THREADS>(mine, s);
      // The uniforms after the reductions: drawn before them (with the weights live across
      // both) they made ptxas spill the f32 kernel at its 64-register cap.
      const Philox4 r = row_random(rng.seed, rng.offset, rng.stream, tile);
      const float ua = uniform_open(r.x), ub = uniform_open(r.y);
      const float key = tile_key(top, total, ua);
      // key, best.v and top are the same in every thread: the branch is block-uniform.
      if (key > best.v) {
        float scanned;
        best.i = block_tile_candidate<THREADS, PER>(x, first, ub, scanned, s);
        best.v = key;
      }
    }
  }
  status = block_or<THREADS>(status, s);
  finish_row(best, status, rp, partials, tickets, tokens, status_out, s);
}

// Step 1 for probabilities: this thread's weights of the tile at `first` (sanitised), the load
// of tile `next_tile` issued, and their sum in token order (what block_tile_candidate sums).
template <int VEC>
__device__ __forceinline__ float take_weights(TilePrefetch<float, VEC> &next, const float *row, u32 vocab,
                                              u32 first, u32 next_tile, float (&w)[PER], u32 &status) {
  next.take(row, vocab, first, w);
  next.issue(row, vocab, thread_first(next_tile));
  float mine = 0.0f;
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    w[j] = sanitize_weight(w[j], status);
    mine += w[j];
  }
  return mine;
}

// A row of given probabilities, a tile at a time, sanitised as weights (step 1): issue()
// requests the thread's span of a tile, take() returns it.
template <int VEC> struct ProbTile {
  const float *row;
  TilePrefetch<float, VEC> next;
  __device__ __forceinline__ void issue(u32 vocab, u32 first) { next.issue(row, vocab, first); }
  __device__ __forceinline__ void take(u32 vocab, u32 first, float (&w)[PER], u32 &status) {
    next.take(row, vocab, first, w);
#pragma unroll
    for (int j = 0; j < PER; ++j) w[j] = sanitize_weight(w[j], status);
  }
};

// The draw weights of a row (step 1), as draw_tiles takes them: start() issues the first tile's
// load, take() returns a tile's weights and their sum in token order (what block_tile_candidate
// sums) and issues the next. `Tile` is a row of probabilities (ProbTile) or of logits turned
// into probabilities as they arrive (LogitProbTile).
template <class Tile> struct RowWeights {
  Tile row;
  __device__ __forceinline__ void start(u32 vocab, u32 tile) { row.issue(vocab, thread_first(tile)); }
  __device__ __forceinline__ float take(u32 vocab, u32 first, u32 next_tile, float (&w)[PER], u32 &status) {
    row.take(vocab, first, w, status);
    row.issue(vocab, thread_first(next_tile));
    float mine = 0.0f;
#pragma unroll
    for (int j = 0; j < PER; ++j) mine += w[j];
    return mine;
  }
};
template <int VEC> using ProbWeights = RowWeights<ProbTile<VEC>>;

// The residual max(p - q, 0) of a target row p (a Tile, as RowWeights has it) and a draft row q
// sanitised as a weight (verify_draft's draw after a rejection). p - q is exact where
// q/2 ≤ p ≤ 2q (Sterbenz), so the cancellation near p = q loses nothing. With no draft row
// (draft == nullptr: one-hot drafts), q is one-hot at `excluded`, read from nowhere: the residual
// is p with that token's weight cut by 1.
template <class Tile, int VEC> struct ResidualWeights {
  Tile target;
  const float *draft;
  u32 excluded;
  TilePrefetch<float, VEC> next_q;
  __device__ __forceinline__ void start(u32 vocab, u32 tile) {
    target.issue(vocab, thread_first(tile));
    if (draft != nullptr) next_q.issue(draft, vocab, thread_first(tile));
  }
  __device__ __forceinline__ float take(u32 vocab, u32 first, u32 next_tile, float (&w)[PER], u32 &status) {
    float q[PER];
    target.take(vocab, first, w, status);
    target.issue(vocab, thread_first(next_tile));
    if (draft != nullptr) {  // uniform: a kernel argument
      next_q.take(draft, vocab, first, q);
      next_q.issue(draft, vocab, thread_first(next_tile));
    } else {
#pragma unroll
      for (int j = 0; j < PER; ++j) q[j] = first + j == excluded ? 1.0f : 0.0f;
    }
    float mine = 0.0f;
#pragma unroll
    for (int j = 0; j < PER; ++j) {
      w[j] = fmaxf(w[j] - sanitize_weight(q[j], status), 0.0f);
      mine += w[j];
    }
    return mine;
  }
};

// Step 3b with m_t = 0 over tiles part, part + parts, ... of a row of `weights`: the block's
// (key, token), the same in every thread.
template <class Weights>
__device__ __forceinline__ ArgMax draw_tiles(Weights &weights, u32 vocab, const RowRng &rng, u32 part, u32 parts,
                                             u32 &status, Scratch &s) {
  ArgMax best = no_pick();
  const u32 tiles = row_tiles(vocab);
  weights.start(vocab, part);
  for (u32 tile = part; tile < tiles; tile += parts) {
    const Philox4 r = row_random(rng.seed, rng.offset, rng.stream, tile);
    const float ua = uniform_open(r.x), ub = uniform_open(r.y);
    float w[PER];
    const u32 first = thread_first(tile);
    const float total = block_sum<THREADS>(weights.take(vocab, first, tile + parts, w, status), s);
    const float key = tile_key(0.0f, total, ua);
    if (key > best.v) {  // block-uniform, as in sample()
      float scanned;
      best.i = block_tile_candidate<THREADS, PER>(w, first, ub, scanned, s);
      best.v = key;
    }
  }
  return best;
}

// samplex_softmax_sample_probs: steps 1 (weights), 3b with m_t = 0, 4.
template <int VEC>
__device__ __forceinline__ void sample_probs(const float *probs, u64 stride, u32 vocab, u64 seed, u64 offset,
                                             u64 seeds, u64 offsets, u32 parts, u64 partials, u64 tickets,
                                             u32 *tokens, u64 status_out) {
  __shared__ Scratch s;
  const RowPart rp = row_part(parts);
  const RowRng rng = row_rng(seed, offset, seeds, offsets, rp.row);
  u32 status = 0;
  ProbWeights<VEC> weights;
  weights.row.row = row_ptr(probs, rp.row, stride);
  ArgMax best = draw_tiles(weights, vocab, rng, rp.part, rp.parts, status, s);
  status = block_or<THREADS>(status, s);
  finish_row(best, status, rp, partials, tickets, tokens, status_out, s);
}

// samplex_softmax_sample_probs_n: `draws` (<= MAX_DRAWS) tokens per row from one read of it.
// Draw j is sample_probs at offset + first_draw + j (the same tiles, totals, keys and
// candidates), written to tokens[row * per_row + first_draw + j]. Thread j owns draw j: it
// computes the draw's key per tile and keeps its best (key, token) in registers. The draws whose
// key a tile beats are marked in a bit mask (one ballot word per warp), and one scan of the
// tile serves all of them (tile_candidates: block_tile_candidate's result for each), so a tile
// costs one reduction plus a Philox call per draw spread over the threads, and a tile that
// improves some draw one scan and one argmax more, however many it improves.
constexpr u32 MAX_DRAWS = THREADS;

// block_tile_candidate for every draw a tile improves, with one scan: the thread whose
// [before, before + mine) holds a draw's target walks its weights and offers the token by an
// atomicMin on found[d] (tokens grow with thread order, so the lowest holder wins, as the block
// argmax of block_tile_candidate picks it; the minimum does not depend on the order of the
// offers). Returns the tile's last kept token, which a draw that no thread holds (rounding)
// takes. `mine` is the thread's sum of w in token order (the same bits block_tile_candidate
// sums). After the final barrier, found[] is complete for every improved draw.
__device__ __forceinline__ u32 tile_candidates(const float (&w)[PER], float mine, u32 first,
                                               const u32 *improved, const float *draw_ub, u32 *found,
                                               Scratch &s) {
  u32 last_kept = SAMPLEX_NO_TOKEN;
#pragma unroll
  for (int k = 0; k < PER; ++k)
    if (w[k] > 0.0f) last_kept = first + k;
  float total;
  const float before = block_exclusive_sum<THREADS>(mine, total, s);
  if (mine > 0.0f) {
    for (u32 word = 0; word < MAX_DRAWS / 32; ++word) {
      for (u32 bits = improved[word]; bits != 0u; bits &= bits - 1u) {
        const u32 d = word * 32u + (u32)(__ffs(bits) - 1);
        const float target = draw_ub[d] * total;
        if (!(target >= before && target < before + mine)) continue;
        u32 token = SAMPLEX_NO_TOKEN;
        float acc = before;
#pragma unroll
        for (int k = 0; k < PER; ++k) {
          acc += w[k];
          if (token == SAMPLEX_NO_TOKEN && w[k] > 0.0f && acc > target) token = first + k;
        }
        atomicMin(&found[d], token != SAMPLEX_NO_TOKEN ? token : last_kept);
      }
    }
  }
  // The highest last kept token of the block: the lowest ~token, as block_tile_candidate does.
  ArgMax pick;
  pick.v = last_kept != SAMPLEX_NO_TOKEN ? 0.0f : SAMPLEX_NEG_INF;
  pick.i = ~last_kept;
  return ~block_argmax<THREADS>(pick, s).i;  // its barriers also publish found[]
}

template <int VEC>
__device__ __forceinline__ void sample_probs_n(const float *probs, u64 stride, u32 vocab, u64 seed, u64 offset,
                                               u64 seeds, u64 offsets, u32 first_draw, u32 draws, u32 per_row,
                                               u32 parts, u64 partials, u64 tickets, u32 *tokens,
                                               u64 status_out) {
  __shared__ Scratch s;
  __shared__ float draw_ub[MAX_DRAWS];           // u_b of each draw the tile improves
  __shared__ u32 improved[MAX_DRAWS / 32];       // which draws the tile improves
  __shared__ u32 found[MAX_DRAWS];               // their tokens, as tile_candidates finds them
  const RowPart rp = row_part(parts);
  const float *row = row_ptr(probs, rp.row, stride);
  const RowRng rng = row_rng(seed, offset, seeds, offsets, rp.row);
  const u32 j = threadIdx.x;
  const bool drawer = j < draws;
  const u64 draw_offset = rng.offset + first_draw + j;  // wraps like the caller's offset + j
  u32 status = 0;
  ArgMax best = no_pick();  // draw j's, in thread j
  const u32 tiles = row_tiles(vocab);
  TilePrefetch<float, VEC> next;
  next.issue(row, vocab, thread_first(rp.part));
  for (u32 tile = rp.part; tile < tiles; tile += rp.parts) {
    float w[PER];
    const u32 first = thread_first(tile);
    const float mine = take_weights(next, row, vocab, first, tile + rp.parts, w, status);
    const float total = block_sum<THREADS>(mine, s);
    bool better = false;
    if (drawer) {
      const Philox4 r = row_random(rng.seed, draw_offset, rng.stream, tile);
      const float key = tile_key(0.0f, total, uniform_open(r.x));
      better = key > best.v;  // strict: the lower tile keeps a tie, as in sample_probs
      if (better) {
        best.v = key;
        draw_ub[j] = uniform_open(r.y);
      }
    }
    const u32 ballot = __ballot_sync(SAMPLEX_FULL_MASK, better);
    if ((threadIdx.x & 31u) == 0) improved[threadIdx.x >> 5] = ballot;
    if (better) found[j] = SAMPLEX_NO_TOKEN;
    if (__syncthreads_or(better)) {  // block-uniform
      const u32 token_after = tile_candidates(w, mine, first, improved, draw_ub, found, s);
      if (better) best.i = found[j] != SAMPLEX_NO_TOKEN ? found[j] : token_after;
    }
  }
  status = block_or<THREADS>(status, s);
  if (rp.parts > 1) {
    // Partials: (row, part, draw), `draws` per (row, part).
    Partial *part = reinterpret_cast<Partial *>(partials) + ((u64)rp.row * rp.parts + rp.part) * draws;
    if (drawer) {
      part[j].v = best.v;
      part[j].i = best.i;
      part[j].status = status;
    }
    __syncthreads();  // every draw's partial is written before thread 0's fence and ticket
    const bool last = last_block_of_row(tickets, rp.row, rp.parts, s.result_u);
    if (!last) return;  // block-uniform
    if (drawer) {
      // A total order (key, then the lower token): the order of the parts does not matter.
      const volatile Partial *all = reinterpret_cast<const volatile Partial *>(partials) +
                                    (u64)rp.row * rp.parts * draws + j;
      best = no_pick();
      status = 0;
      for (u32 b = 0; b < rp.parts; ++b) {
        ArgMax q;
        q.v = all[(u64)b * draws].v;
        q.i = all[(u64)b * draws].i;
        status |= all[(u64)b * draws].status;
        best = argmax_pick(best, q);
      }
    }
  }
  if (!drawer) return;
  tokens[(u64)rp.row * per_row + first_draw + j] = best.i;
  // A row's draws all find no token or all find one (the same weights): draw 0 says which.
  if (j == 0 && status_out != 0) {
    if (best.i == SAMPLEX_NO_TOKEN) status |= SAMPLEX_STATUS_NO_FINITE_LOGIT;
    reinterpret_cast<u32 *>(status_out)[rp.row] = status;
  }
}

// samplex_softmax_verify_draft: speculative decoding's verification (src/cpu/speculative.rs is
// the method). Request r has up to `drafts` draft tokens, their distributions q (rows of
// `vocab`; null for one-hot drafts: q_i is one-hot at draft token i, and nothing is read for it)
// and the target's p (rows of a Target, given as probabilities, TargetProbs, or as logits with
// their rows' statistics, TargetLogits); where its n_r drafts and n_r + 1 target rows lie is its
// DraftSpan (padded, with or without lengths, or packed). Every block of a row
// first finds the row's first rejected draft e (first_rejected: the same in all of them, from
// the same reads and random words), then draws over its tiles of the residual
// max(p_e - q_e, 0), or of p_{n_r} when nothing was rejected: the draw sample_probs makes at
// offset + e. The row's last block merges
// the parts; when a residual has no mass it draws from p_e alone (all tiles; rare: p_e = q_e up
// to rounding). It writes the row's drafts + 1 tokens (the accepted prefix, token e, then
// SAMPLEX_NO_TOKEN), e to accepted[row], and the status.

// The target given as probabilities: dense rows of `vocab`. Its rows are named twice: t, the
// row in the buffer, and i, the request's own target row (0 ..= n_r); this one needs t alone.
template <int VEC> struct TargetProbs {
  using Tile = ProbTile<VEC>;
  const float *probs;
  u32 vocab;
  // p of token x < vocab in target row t (the request's i), sanitised as a weight.
  __device__ __forceinline__ float p_at(u64 t, u32, u32 x, u32 &status) const {
    return sanitize_weight(probs[t * vocab + x], status);
  }
  // What the request's target row i says beyond its weights: nothing here.
  __device__ __forceinline__ u32 row_status(u32) const { return 0u; }
  __device__ __forceinline__ Tile tile(u64 t, u32) const {
    Tile w;
    w.row = probs + t * vocab;
    return w;
  }
};

// Where a request's draft lies (src/batch.rs DraftLayout): draft i is entry draft0 + i of the
// draft tokens (and row draft0 + i of their distributions), its target row i is row target0 + i
// (i = 0 ..= n), and n <= drafts.
struct DraftSpan {
  u32 draft0, target0, n;
  u32 status;  // PARAM_CLAMPED when the layout's values were clamped
};

// Request r's span (src/cpu/speculative.rs `span` is the same rule). Padded (starts null): slots
// r·drafts + i, target rows r·(drafts + 1) + i, n = lens[r] when `lens` is given, else
// `drafts`. Packed (`starts`, batch + 1 u32 offsets into the `total` draft tokens): draft0 =
// starts[r], n = starts[r + 1] − starts[r], target0 = starts[r] + r; offsets past `total` or out
// of order are clamped into 0 ..= total, so no read leaves the buffers. A length above `drafts`
// is taken as `drafts`. Either clamp sets the span's PARAM_CLAMPED.
__device__ __forceinline__ DraftSpan draft_span(u64 lens, u64 starts, u32 total, u32 drafts, u32 r) {
  DraftSpan d;
  u32 status = 0;
  u32 n = drafts;
  if (starts != 0) {
    const u32 *at = reinterpret_cast<const u32 *>(starts);
    const u32 a = at[r], b = at[r + 1];
    const u32 first = min(a, total);
    const u32 last = min(max(b, first), total);
    if (first != a || last != b) status |= SAMPLEX_STATUS_PARAM_CLAMPED;
    d.draft0 = first;
    d.target0 = first + r;
    n = last - first;
  } else {
    d.draft0 = r * drafts;
    d.target0 = r * (drafts + 1);
    if (lens != 0) n = reinterpret_cast<const u32 *>(lens)[r];
  }
  if (n > drafts) {
    status |= SAMPLEX_STATUS_PARAM_CLAMPED;
    n = drafts;
  }
  d.n = n;
  d.status = status;
  return d;
}

// The row's first rejected draft, or n = d.n (<= drafts <= THREADS, MAX_DRAFTS in
// src/gpu/softmax.rs) when its n drafts are all accepted; `d` is in shared memory, written by
// thread 0 before the call (the barrier here publishes it):
// thread i < n tests draft i, x = draft token d.draft0 + i: accepted when p(x) > 0 and q(x) <= p(x) or
// u q(x) < p(x), u = uniform_open(word z of Philox (tile 0, offset + i)), a word no draw
// reads; q(x) = 1 for one-hot drafts (null draft_probs). An x >= vocab is rejected
// (PARAM_CLAMPED). The minimum of the rejected i is found by atomicMin in `slot`, which does not
// depend on the order. The status bits of the tests up to e are added to `status`.
template <class Target>
__device__ __forceinline__ u32 first_rejected(const float *draft_probs, const u32 *draft_tokens,
                                              const Target &target, u32 vocab, const DraftSpan &d,
                                              const RowRng &rng, u32 &status, u32 &slot) {
  const u32 i = threadIdx.x;
  if (i == 0) slot = d.n;
  __syncthreads();
  u32 st = 0;
  if (i < d.n) {
    const u64 at = d.draft0 + i;  // < 2^32 (the host checks)
    const u32 x = draft_tokens[at];
    bool accepted = false;
    if (x < vocab) {
      const float q = draft_probs != nullptr ? sanitize_weight(draft_probs[at * vocab + x], st) : 1.0f;
      const float p = target.p_at(d.target0 + i, i, x, st);
      const float u = uniform_open(row_random(rng.seed, rng.offset + i, rng.stream, 0).z);
      accepted = p > 0.0f && (q <= p || u * q < p);
    } else {
      st = SAMPLEX_STATUS_PARAM_CLAMPED;
    }
    if (!accepted) atomicMin(&slot, i);
  }
  __syncthreads();
  const u32 e = slot;
  if (i <= e) status |= st;
  return e;
}

template <class Target, int VEC>
__device__ __forceinline__ void verify_draft(const float *draft_probs, const u32 *draft_tokens, u64 lens,
                                             u64 starts, u32 total, const Target &target, u32 vocab,
                                             u32 drafts, u64 seed, u64 offset,
                                             u64 seeds, u64 offsets, u32 parts, u64 partials, u64 tickets,
                                             u32 *tokens, u32 *accepted, u64 status_out) {
  __shared__ Scratch s;
  __shared__ u32 rejected;
  const RowPart rp = row_part(parts);
  RowRng rng = row_rng(seed, offset, seeds, offsets, rp.row);
  u32 status = 0;
  // Thread 0 finds the span and first_rejected's barrier publishes it; the span and e are read
  // from shared memory again after the draw rather than held through it: held, the packed
  // layout's offsets and the drawn row's addresses took the verifications past 64 registers
  // into spills (verify_draft_f32 on sm_90; the logits _any twins there, 8 bytes).
  __shared__ DraftSpan d;
  if (threadIdx.x == 0) d = draft_span(lens, starts, total, drafts, rp.row);
  const u32 e = first_rejected(draft_probs, draft_tokens, target, vocab, d, rng, status, rejected);
  const u32 n = d.n;
  if (threadIdx.x == 0) status |= d.status;  // the block ORs it
  rng.offset += e;  // token e is the draw at offset + e (wrapping, as the caller's offset + e)
  const u64 drawn = d.target0 + e;  // the target row token e is drawn from
  status |= target.row_status(e);
  ArgMax best;
  if (e < n) {  // block-uniform
    ResidualWeights<typename Target::Tile, VEC> residual;
    residual.target = target.tile(drawn, e);
    residual.draft = draft_probs != nullptr ? draft_probs + (u64)(d.draft0 + e) * vocab : nullptr;
    residual.excluded = draft_tokens[d.draft0 + e];
    best = draw_tiles(residual, vocab, rng, rp.part, rp.parts, status, s);
  } else {
    RowWeights<typename Target::Tile> bonus;
    bonus.row = target.tile(drawn, e);
    best = draw_tiles(bonus, vocab, rng, rp.part, rp.parts, status, s);
  }
  status = block_or<THREADS>(status, s);
  if (rp.parts > 1) {
    if (!offer_part(best, status, rp, partials, tickets, s)) return;  // block-uniform
    if (threadIdx.x < 32) {
      merge_parts(rp, partials, best, status);
      if (threadIdx.x == 0) {
        s.result_f = best.v;
        s.u[0] = best.i;
        s.u[1] = status;
      }
    }
    __syncthreads();
    best.v = s.result_f;
    best.i = s.u[0];
    status = s.u[1];
    __syncthreads();  // the scratch is free for the fallback's collectives
  }
  const DraftSpan after = d;
  const u32 e_after = rejected;
  if (best.i == SAMPLEX_NO_TOKEN && e_after < after.n) {  // block-uniform
    RowWeights<typename Target::Tile> fallback;
    fallback.row = target.tile(after.target0 + e_after, e_after);
    best = draw_tiles(fallback, vocab, rng, 0, 1, status, s);
    status = block_or<THREADS>(status, s);
  }
  if (best.i == SAMPLEX_NO_TOKEN) status |= SAMPLEX_STATUS_NO_FINITE_LOGIT;
  const u64 out = (u64)rp.row * (drafts + 1);
  for (u32 k = threadIdx.x; k <= drafts; k += THREADS)
    tokens[out + k] = k < e_after ? draft_tokens[after.draft0 + k] : k == e_after ? best.i : SAMPLEX_NO_TOKEN;
  if (threadIdx.x == 0) {
    accepted[rp.row] = e_after;
    if (status_out != 0) reinterpret_cast<u32 *>(status_out)[rp.row] = status;
  }
}

// The statistics of a row as its probabilities need them (step 5).
struct RowStats {
  float m, s;  // max u and Σ e^{u - m} (greedy rows: max z, 0)
  u32 arg;     // greedy rows: the argmax (SAMPLEX_NO_TOKEN when nothing is finite)
  u32 status;
};

// Step 3a (or 3c) for the block's own tiles. Every thread of the block must call it.
template <typename T, int VEC>
__device__ __forceinline__ RowStats block_row_stats(const T *row, u32 vocab, RowPart rp, bool greedy,
                                                    float inv_t, Scratch &s) {
  u32 status = 0;
  RowStats r;
  if (greedy) {
    const ArgMax a = block_row_argmax<T, VEC>(row, vocab, rp, status, s);
    r.m = a.v;
    r.s = 0.0f;
    r.arg = a.i;
  } else {
    const MaxSum ms = block_row_max_sum<T, VEC>(row, vocab, rp, inv_t, status, s);
    r.m = ms.m;
    r.s = ms.s;
    r.arg = SAMPLEX_NO_TOKEN;
  }
  r.status = block_or<THREADS>(status, s);
  return r;
}

// The last step of merging a row's parts: warp 0's lanes hold what each gathered (empties past
// the parts), one fixed butterfly merges them, and every thread of the block gets the result.
// Every thread of the block must call it. Greedy parts carry (max z, 0, argmax), the others
// (max u, sum, no token): one merge serves both.
__device__ __forceinline__ RowStats share_merged_stats(MaxSum ms, ArgMax a, u32 st, Scratch &s) {
  if (threadIdx.x < 32) {
    ms = warp_max_sum(ms);
    a = warp_argmax(a);
    st = warp_or(st);
    if (threadIdx.x == 0) {
      s.f[0] = ms.m;
      s.f[1] = ms.s;
      s.u[0] = a.i;
      s.u[1] = st;
    }
  }
  __syncthreads();
  RowStats r;
  r.m = s.f[0];
  r.s = s.f[1];
  r.arg = s.u[0];
  r.status = s.u[1];
  __syncthreads();
  return r;
}

// Step 5 with P > 1: all partials of the row (written by samplex_softmax_stats, the launch
// before this one, or by the row's other parts in samplex_softmax_token_log_probs), gathered
// lane-strided by warp 0 in part order. Every thread gets the result.
__device__ __forceinline__ RowStats merge_row_stats(u64 partials, RowPart rp, Scratch &s) {
  MaxSum ms = max_sum_empty();
  ArgMax a = no_pick();
  u32 st = 0;
  if (threadIdx.x < 32) {
    for (u32 b = threadIdx.x; b < rp.parts; b += 32) {
      // Past L1: the parts may have been written by other blocks of this very launch
      // (samplex_softmax_token_log_probs) as well as by the launch before.
      const Partial p = from_raw16<Partial>(load_cg_v4(reinterpret_cast<const uint4 *>(partial_at(partials, rp, b))));
      MaxSum q;
      q.m = p.v;
      q.s = p.s;
      ms = max_sum_merge(ms, q);
      ArgMax qa;
      qa.v = p.v;
      qa.i = p.i;
      a = argmax_pick(a, qa);
      st |= p.status;
    }
  }
  return share_merged_stats(ms, a, st, s);
}

// Thread 0 writes the part's statistics (with `status`) as its partial in scratch.
__device__ __forceinline__ void write_stats_partial(u64 partials, RowPart rp, const RowStats &r, u32 status) {
  if (threadIdx.x == 0) {
    Partial *p = partial_at(partials, rp, rp.part);
    p->v = r.m;
    p->s = r.s;
    p->i = r.arg;
    p->status = status;
  }
}

// samplex_softmax_stats: steps 1, 2, 3a (3c for τ = 0 rows) for one part; the partial to scratch.
template <typename T, int VEC>
__device__ __forceinline__ void stats(const T *logits, u64 stride, u32 vocab, float temperature, u64 temps,
                                      u32 parts, u64 partials) {
  __shared__ Scratch s;
  const RowPart rp = row_part(parts);
  u32 param_status = 0;
  const float t = row_temperature(temperature, temps, rp.row, param_status);
  const RowStats r =
      block_row_stats<T, VEC>(row_ptr(logits, rp.row, stride), vocab, rp, t == 0.0f, inverse_temperature(t), s);
  write_stats_partial(partials, rp, r, r.status | param_status);
}

// What step 5 needs to turn a token's sanitised z into (p, log p): the row's statistics and τ.
struct ProbRow {
  float m, s, log_sum, inv_t, limit;  // limit: unclamped_limit(inv_t)
  u32 arg;  // greedy rows: the argmax
  bool greedy, none;  // none: the row has no finite logit
};

__device__ __forceinline__ ProbRow prob_row(const RowStats &st, bool greedy, float inv_t) {
  ProbRow r;
  r.m = st.m;
  r.s = st.s;
  r.arg = st.arg;
  r.inv_t = inv_t;
  r.limit = unclamped_limit(inv_t);
  r.greedy = greedy;
  r.none = greedy ? st.arg == SAMPLEX_NO_TOKEN : st.m == SAMPLEX_NEG_INF;
  r.log_sum = (greedy || r.none) ? 0.0f : logf(st.s);  // st.s >= 1: e^0 of the max
  return r;
}

// log p of token i from its u = scale_logit(z) (step 5): (u - m) - ln s, in that order (m + ln s
// would round ln s away for a huge m); greedy rows 0 at the argmax, -inf elsewhere.
__device__ __forceinline__ float log_prob_at(float u, u32 i, const ProbRow &r) {
  if (r.greedy) return i == r.arg ? 0.0f : SAMPLEX_NEG_INF;
  if (r.none) return SAMPLEX_NEG_INF;
  return (u - r.m) - r.log_sum;  // -inf for excluded tokens
}

// p of token i from its u = scale_logit(z) (step 5); greedy rows 1 at the argmax, 0 elsewhere.
__device__ __forceinline__ float prob_at(float u, u32 i, const ProbRow &r) {
  if (r.greedy) return i == r.arg ? 1.0f : 0.0f;
  if (r.none) return 0.0f;
  return exp_weight(u - r.m) / r.s;  // <= 1; 0 for excluded tokens
}

// log p and p of token i from its sanitised z.
__device__ __forceinline__ float log_prob_of(float z, u32 i, const ProbRow &r) {
  return log_prob_at(scale_logit(z, r.inv_t), i, r);
}
__device__ __forceinline__ float prob_of(float z, u32 i, const ProbRow &r) {
  return prob_at(scale_logit(z, r.inv_t), i, r);
}

// u = scale_logit(z[j]) over a thread's span of sanitised z (sanitize_scale_span's shortcut,
// __fmul_rn as there).
__device__ __forceinline__ void scale_span(float (&x)[PER], const ProbRow &r) {
  bool in_range = true;
#pragma unroll
  for (int j = 0; j < PER; ++j) in_range &= fabsf(x[j]) <= r.limit;
  if (__builtin_expect(in_range, 1)) {
#pragma unroll
    for (int j = 0; j < PER; ++j) x[j] = __fmul_rn(x[j], r.inv_t);
  } else {
#pragma unroll
    for (int j = 0; j < PER; ++j) x[j] = scale_logit(x[j], r.inv_t);
  }
}

// Step 5 for one thread's PER tokens first .. first + PER - 1 of a tile, from their sanitised z.
__device__ __forceinline__ void tile_probs(const float (&z)[PER], u32 first, const ProbRow &r, float (&p)[PER],
                                           float (&lp)[PER]) {
  float u[PER];
#pragma unroll
  for (int j = 0; j < PER; ++j) u[j] = z[j];
  scale_span(u, r);
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    lp[j] = log_prob_at(u[j], first + j, r);
    p[j] = prob_at(u[j], first + j, r);
  }
}

// Writes one thread's PER values of a tile to the row's p (and log p when log_out is set):
// 16-byte stores when the row starts are aligned (`vector_store`) and the tile is whole.
__device__ __forceinline__ void store_tile(float *out, float *log_out, u32 first, u32 vocab, bool vector_store,
                                           const float (&p)[PER], const float (&lp)[PER]) {
  if (vector_store && first + PER <= vocab) {
#pragma unroll
    for (int j = 0; j < PER; j += 4) {
      *reinterpret_cast<float4 *>(out + first + j) = make_float4(p[j], p[j + 1], p[j + 2], p[j + 3]);
      if (log_out != nullptr) {
        *reinterpret_cast<float4 *>(log_out + first + j) = make_float4(lp[j], lp[j + 1], lp[j + 2], lp[j + 3]);
      }
    }
  } else {
#pragma unroll
    for (int j = 0; j < PER; ++j) {
      if (first + j < vocab) {
        out[first + j] = p[j];
        if (log_out != nullptr) log_out[first + j] = lp[j];
      }
    }
  }
}

// The row's p and log p outputs, and whether 16-byte stores may be used. Each thread's first
// token is a multiple of 8, so 16-byte stores need only aligned row starts.
struct ProbOut {
  float *p, *lp;
  bool vector_store;
};
__device__ __forceinline__ ProbOut prob_out(float *probs_out, u64 log_probs, u32 row, u32 vocab) {
  ProbOut o;
  o.p = probs_out + (u64)row * vocab;
  o.lp = log_probs != 0 ? reinterpret_cast<float *>(log_probs) + (u64)row * vocab : nullptr;
  o.vector_store = ((reinterpret_cast<u64>(o.p) | reinterpret_cast<u64>(o.lp)) & 15u) == 0;
  return o;
}

// The row's status word (step 5): what the statistics saw, a clamped τ, no finite logit.
__device__ __forceinline__ void write_prob_status(u64 status_out, u32 row, const RowStats &st, u32 param_status,
                                                  const ProbRow &r) {
  if (status_out != 0) {
    reinterpret_cast<u32 *>(status_out)[row] =
        st.status | param_status | (r.none ? SAMPLEX_STATUS_NO_FINITE_LOGIT : 0u);
  }
}

// samplex_softmax_probs: the row's statistics (own pass, or merged partials), then step 5.
template <typename T, int VEC>
__device__ __forceinline__ void probs(const T *logits, u64 stride, u32 vocab, float temperature, u64 temps,
                                      u32 parts, u64 partials, float *probs_out, u64 log_probs,
                                      u64 status_out) {
  __shared__ Scratch s;
  const RowPart rp = row_part(parts);
  const T *row = row_ptr(logits, rp.row, stride);
  const RowTemperature rt = row_temperature_of(temperature, temps, rp.row);
  const RowStats st = parts == 1 ? block_row_stats<T, VEC>(row, vocab, rp, rt.greedy, rt.inv_t, s)
                                 : merge_row_stats(partials, rp, s);
  const ProbRow r = prob_row(st, rt.greedy, rt.inv_t);
  if (rp.part == 0 && threadIdx.x == 0) write_prob_status(status_out, rp.row, st, rt.status, r);

  const ProbOut o = prob_out(probs_out, log_probs, rp.row, vocab);
  const u32 tiles = row_tiles(vocab);
  TilePrefetch<T, VEC> next;
  next.issue(row, vocab, thread_first(rp.part));
  for (u32 tile = rp.part; tile < tiles; tile += rp.parts) {
    float x[PER], p[PER], lp[PER];
    const u32 first = thread_first(tile);
    next.take(row, vocab, first, x);
    next.issue(row, vocab, thread_first(tile + rp.parts));
    u32 seen = 0;  // already counted by the statistics
    sanitize_span(x, seen);
    tile_probs(x, first, r, p, lp);
    store_tile(o.p, o.lp, first, vocab, o.vector_store, p, lp);
  }
}

// Steps 1, 2, 3a (3c for τ = 0 rows) for the block's part of the row; with P > 1 each part
// writes its partial and takes a ticket on tickets[row] (as finish_row does), and the row's last
// part merges all of them (merge_row_stats, the same fixed order as samplex_softmax_probs, so
// what follows matches Sampler::softmax's two-read paths bit for bit); its ticket left the count
// at 0. False in the blocks that are not the row's last (every thread of the block gets the same
// answer); true with the row's statistics in `st` in the last.
template <typename T, int VEC>
__device__ __forceinline__ bool whole_row_stats(const T *row, u32 vocab, RowPart rp, const RowTemperature &rt,
                                                u64 partials, u64 tickets, RowStats &st, Scratch &s) {
  st = block_row_stats<T, VEC>(row, vocab, rp, rt.greedy, rt.inv_t, s);
  if (rp.parts == 1) return true;
  write_stats_partial(partials, rp, st, st.status);
  if (!last_block_of_row(tickets, rp.row, rp.parts, s.result_u)) return false;
  st = merge_row_stats(partials, rp, s);
  return true;
}

// samplex_softmax_token_log_probs: log p of n given tokens per row, without writing the row.
// The row's statistics (whole_row_stats: the values are those of Sampler::softmax's log_probs
// bit for bit), then the row's last block gathers the n tokens: one scalar load each. A token
// >= vocab gets -inf and PARAM_CLAMPED.
template <typename T, int VEC>
__device__ __forceinline__ void token_log_probs(const T *logits, u64 stride, u32 vocab, float temperature, u64 temps,
                                                const u32 *tokens, u32 n, u32 parts, u64 partials, u64 tickets,
                                                float *out, u64 status_out) {
  __shared__ Scratch s;
  const RowPart rp = row_part(parts);
  const T *row = row_ptr(logits, rp.row, stride);
  const RowTemperature rt = row_temperature_of(temperature, temps, rp.row);
  RowStats st;
  if (!whole_row_stats<T, VEC>(row, vocab, rp, rt, partials, tickets, st, s)) return;  // block-uniform
  const ProbRow r = prob_row(st, rt.greedy, rt.inv_t);
  const u32 *mine = tokens + (u64)rp.row * n;
  float *dst = out + (u64)rp.row * n;
  u32 bad = 0;
  for (u32 k = threadIdx.x; k < n; k += THREADS) {
    const u32 i = mine[k];
    float lp = SAMPLEX_NEG_INF;
    if (i < vocab) {
      u32 seen = 0;  // already counted by the statistics
      lp = log_prob_of(sanitize(to_f32(row[i]), seen), i, r);
    } else {
      bad = SAMPLEX_STATUS_PARAM_CLAMPED;
    }
    dst[k] = lp;
  }
  if (status_out != 0) {  // block-uniform
    bad = block_or<THREADS>(bad, s);
    if (threadIdx.x == 0) write_prob_status(status_out, rp.row, st, rt.status | bad, r);
  }
}

// samplex_softmax_row_stats: the statistics of every row (whole_row_stats) to out[row], with the
// row's status as Sampler::softmax writes it (what the statistics saw, a clamped τ, no finite
// logit): verify_draft_logits' first launch. Its rows are target slots, `group` (drafts + 1) per
// request: slot i of request r is the request's target row i, found by its DraftSpan (lens,
// starts, total as verify_draft takes them), at the request's τ (temps[r] when temps is given);
// out[slot]. A request's slots past its n_r + 1 rows are neither read nor written: no verdict
// reads them.
template <typename T, int VEC>
__device__ __forceinline__ void row_stats(const T *logits, u64 stride, u32 vocab, float temperature, u64 temps,
                                          u32 group, u64 lens, u64 starts, u32 total, u32 parts, u64 partials,
                                          u64 tickets, RowStats *out) {
  __shared__ Scratch s;
  const RowPart rp = row_part(parts);
  const u32 request = rp.row / group;
  const u32 i = rp.row - request * group;
  const DraftSpan d = draft_span(lens, starts, total, group - 1, request);  // its clamps: the verification's
  if (i > d.n) return;  // block-uniform
  const RowTemperature rt = row_temperature_of(temperature, temps, request);
  RowStats st;
  const T *row = row_ptr(logits, d.target0 + i, stride);
  if (!whole_row_stats<T, VEC>(row, vocab, rp, rt, partials, tickets, st, s)) return;
  if (threadIdx.x == 0) {
    const ProbRow r = prob_row(st, rt.greedy, rt.inv_t);
    st.status |= rt.status | (r.none ? SAMPLEX_STATUS_NO_FINITE_LOGIT : 0u);
    out[rp.row] = st;
  }
}

// A row of logits turned into its probabilities as they arrive, a tile at a time (the values
// samplex_softmax_probs writes, bit for bit): ProbTile's interface. ScanPrefetch: the 16-bit
// _any twins load the span when they take it, since the shifted prefetch beside the draft's row
// spilled them (64 registers on sm_90) or took them to 80.
template <typename T, int VEC> struct LogitProbTile {
  const T *row;
  ProbRow r;
  ScanPrefetch<T, VEC> next;
  __device__ __forceinline__ void issue(u32 vocab, u32 first) { next.issue(row, vocab, first); }
  __device__ __forceinline__ void take(u32 vocab, u32 first, float (&w)[PER], u32 &) {
    next.take(row, vocab, first, w);
#pragma unroll
    for (int j = 0; j < PER; ++j) {
      u32 seen = 0;  // counted by the statistics, in row_status
      w[j] = prob_of(sanitize(w[j], seen), first + j, r);
    }
  }
};

// verify_draft's target given as logits (rows of `stride`) at the request's temperature, with the
// statistics of its target rows from samplex_softmax_row_stats (slot request · group + i for its
// target row i): p is what samplex_softmax_probs would have written, computed where it is read.
template <typename T, int VEC> struct TargetLogits {
  using Tile = LogitProbTile<T, VEC>;
  const T *logits;
  u64 stride;
  const RowStats *stats;
  u32 request, group;
  RowTemperature rt;
  __device__ __forceinline__ const RowStats &stats_of(u32 i) const { return stats[(u64)request * group + i]; }
  __device__ __forceinline__ float p_at(u64 t, u32 i, u32 x, u32 &status) const {
    const RowStats st = stats_of(i);
    status |= st.status;
    u32 seen = 0;
    return prob_of(sanitize(to_f32(logits[t * stride + x]), seen), x, prob_row(st, rt.greedy, rt.inv_t));
  }
  // Target row i's softmax status (NaN or +inf logits, a clamped τ, no finite logit).
  __device__ __forceinline__ u32 row_status(u32 i) const { return stats_of(i).status; }
  __device__ __forceinline__ Tile tile(u64 t, u32 i) const {
    Tile w;
    w.row = logits + t * stride;
    w.r = prob_row(stats_of(i), rt.greedy, rt.inv_t);
    return w;
  }
};

// samplex_softmax_verify_draft_logits: verify_draft on target logits. The draft's rows load 16
// bytes at a time with the logits' (4 floats) or, in the _any twin, at any alignment too.
template <typename T, int VEC>
__device__ __forceinline__ void verify_draft_logits(const float *draft_probs, const u32 *draft_tokens, u64 lens,
                                                    u64 starts, u32 total, const T *logits, u64 stride,
                                                    u32 vocab, float temperature,
                                                    u64 temps, const RowStats *stats, u32 drafts, u64 seed,
                                                    u64 offset, u64 seeds, u64 offsets, u32 parts, u64 partials,
                                                    u64 tickets, u32 *tokens, u32 *accepted, u64 status_out) {
  TargetLogits<T, VEC> target;
  target.logits = logits;
  target.stride = stride;
  target.stats = stats;
  target.request = row_part(parts).row;
  target.group = drafts + 1;
  target.rt = row_temperature_of(temperature, temps, target.request);
  verify_draft<TargetLogits<T, VEC>, VEC == 0 ? 0 : 4>(draft_probs, draft_tokens, lens, starts, total, target,
                                                        vocab, drafts, seed, offset, seeds, offsets, parts,
                                                        partials, tickets, tokens, accepted, status_out);
}

// ---------------------------------------------------------------------------------------------
// Step 5 staged (sm_90): a thread-block cluster of C blocks per row holds the row in shared
// memory, so the row is read once. Block `part` (its cluster rank) stages tiles part, part + C,
// ... as sanitised z in its dynamic shared memory (after its RowStats), with their statistics;
// the C heads are merged through distributed shared memory; each block then writes its tiles'
// p and log p from shared memory. One read and one write of each token, against two reads on
// the paths above (whose second read misses L2 once the batch is large).
// ---------------------------------------------------------------------------------------------
SAMPLEX_DYNAMIC_SHARED(float4, samplex_softmax_dyn_smem);

// A block's RowStats (its tiles' (max u, Σ e^{u - max}) or, for greedy rows, (max z, 0, its
// token), and their status bits) is the head of its dynamic shared memory: the CPU emulator maps
// only dynamic shared memory across a cluster.
static_assert(sizeof(RowStats) == 16, "STAGED_HEAD_BYTES in src/gpu/softmax.rs");

// Tiles a thread loads before it uses any (phase 1): four, so that four 16-byte loads (eight
// for f32) are in flight per thread. The _any twin of a 16-bit row loads two vectors a tile
// (to shift its 8 tokens into place) and groups two tiles: the same four loads; with four tiles,
// the raw words held before the shifts pushed it past 64 registers into spills.
template <typename T, int VEC> struct StageGroup {
  static constexpr u32 TILES = VEC == 0 && sizeof(T) == 2 ? 2u : 4u;
};

#if SAMPLEX_CLUSTERS
// Merges the cluster's heads: lane r of warp 0 reads rank r's, so every block of the cluster
// gets the same statistics. Every thread of the block must call it, after a cluster_sync that
// follows the writes of the heads.
__device__ __forceinline__ RowStats merge_staged_heads(const RowStats *head, u32 parts, Scratch &s) {
  MaxSum q = max_sum_empty();
  ArgMax a = no_pick();
  u32 st = 0;
  if (threadIdx.x < parts) {
    const uint4 h = cluster_load_v4(cluster_map(head, threadIdx.x));
    q.m = __uint_as_float(h.x);
    q.s = __uint_as_float(h.y);
    a.v = q.m;
    a.i = h.z;
    st = h.w;
  }
  return share_merged_stats(q, a, st, s);
}
#endif

template <typename T, int VEC>
__device__ __forceinline__ void probs_staged(const T *logits, u64 stride, u32 vocab, float temperature, u64 temps,
                                             float *probs_out, u64 log_probs, u64 status_out) {
#if SAMPLEX_CLUSTERS
  __shared__ Scratch s;
  RowStats *head = reinterpret_cast<RowStats *>(static_cast<float4 *>(samplex_softmax_dyn_smem));
  float4 *stage = static_cast<float4 *>(samplex_softmax_dyn_smem) + 1;  // tile k: 2 x 256 float4 at 512 k
  const u32 parts = cluster_size();
  RowPart rp;
  rp.row = blockIdx.x / parts;
  rp.part = cluster_rank();
  rp.parts = parts;
  const T *row = row_ptr(logits, rp.row, stride);
  u32 param_status = 0;
  const float t = row_temperature(temperature, temps, rp.row, param_status);
  const bool greedy = t == 0.0f;  // cluster-uniform, as every branch on it below
  const float inv_t = inverse_temperature(t);
  const u32 tiles = row_tiles(vocab);

  // Phase 1: load the block's tiles, GROUP at a time; stage their sanitised z (thread t's
  // two float4 of tile k at 512 k + t and 512 k + 256 + t: consecutive threads, consecutive
  // 16 bytes) and gather the thread's statistics.
  constexpr u32 GROUP = StageGroup<T, VEC>::TILES;
  u32 status = 0;
  MaxSum ms = max_sum_empty();
  ArgMax a = no_pick();
  for (u32 tile0 = rp.part, k0 = 0; tile0 < tiles; tile0 += GROUP * parts, k0 += GROUP) {
    float x[GROUP][PER];
#pragma unroll
    for (u32 g = 0; g < GROUP; ++g) {
      const u32 tile = tile0 + g * parts;
      if (tile < tiles) load_tile<T, VEC>(row, vocab, thread_first(tile), x[g]);
    }
#pragma unroll
    for (u32 g = 0; g < GROUP; ++g) {
      const u32 tile = tile0 + g * parts;
      if (tile < tiles) {
        const u32 first = thread_first(tile);
        float u[PER];
#pragma unroll
        for (int j = 0; j < PER; ++j) {
          const float z = sanitize(x[g][j], status);
          x[g][j] = z;
          if (greedy && z > a.v) {  // strict: a thread's tokens rise, so the lower index keeps a tie
            a.v = z;
            a.i = first + j;
          }
          u[j] = scale_logit(z, inv_t);
        }
        if (!greedy) ms = max_sum_merge(ms, thread_max_sum(u));
        float4 *dst = stage + (u64)(k0 + g) * (2 * THREADS);
        dst[threadIdx.x] = make_float4(x[g][0], x[g][1], x[g][2], x[g][3]);
        dst[THREADS + threadIdx.x] = make_float4(x[g][4], x[g][5], x[g][6], x[g][7]);
      }
    }
  }
  RowStats mine;
  if (greedy) {
    const ArgMax b = block_argmax<THREADS>(a, s);
    mine.m = b.v;
    mine.s = 0.0f;
    mine.arg = b.i;
  } else {
    const MaxSum b = block_max_sum(ms, s);
    mine.m = b.m;
    mine.s = b.s;
    mine.arg = SAMPLEX_NO_TOKEN;
  }
  mine.status = block_or<THREADS>(status, s);
  if (threadIdx.x == 0) *head = mine;
  cluster_sync();  // every head written
  const RowStats st = merge_staged_heads(head, parts, s);
  cluster_sync();  // every head read: from here no block reads another's shared memory

  // Phase 2: p and log p of the staged tiles.
  const ProbRow r = prob_row(st, greedy, inv_t);
  if (rp.part == 0 && threadIdx.x == 0) write_prob_status(status_out, rp.row, st, param_status, r);
  const ProbOut o = prob_out(probs_out, log_probs, rp.row, vocab);
  for (u32 tile = rp.part, k = 0; tile < tiles; tile += parts, ++k) {
    const float4 *src = stage + (u64)k * (2 * THREADS);
    const float4 lo = src[threadIdx.x], hi = src[THREADS + threadIdx.x];
    const float z[PER] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    float p[PER], lp[PER];
    const u32 first = thread_first(tile);
    tile_probs(z, first, r, p, lp);
    store_tile(o.p, o.lp, first, vocab, o.vector_store, p, lp);
  }
#else
  (void)logits, (void)stride, (void)vocab, (void)temperature, (void)temps, (void)probs_out, (void)log_probs;
  (void)status_out;
  asm volatile("trap;");  // never launched: the host checks the function's PTX version first
#endif
}

}  // namespace samplex_softmax

// ---------------------------------------------------------------------------------------------
// Entry points: one line per dtype below emits every kernel of the family for that dtype, at
// its 16-byte vector width and as the _any twin (VEC = 0). Optional pointers travel as u64
// (0 = absent).
// ---------------------------------------------------------------------------------------------
// The draws (sample, sample_probs) that prefetch (SpanPrefetch: the aligned kernels and the
// 16-bit _any twins) hold the next tile's vectors through the tile's reductions: ptxas for sm_90
// then took 72-78 registers (3 blocks of 256 per SM), so there they are held to 64 (4 blocks,
// no spill). Elsewhere, and in the f32 _any twin (no prefetch), they stay under 64 by
// themselves, and the hint would only make ptxas use all 64. One name per instantiation.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define SAMPLEX_SOFTMAX_PREFETCH_BOUNDS __launch_bounds__(samplex_softmax::THREADS, 4)
#else
#define SAMPLEX_SOFTMAX_PREFETCH_BOUNDS __launch_bounds__(samplex_softmax::THREADS)
#endif
#define SAMPLEX_SOFTMAX_DRAW_BOUNDS_f32 SAMPLEX_SOFTMAX_PREFETCH_BOUNDS
#define SAMPLEX_SOFTMAX_DRAW_BOUNDS_f16 SAMPLEX_SOFTMAX_PREFETCH_BOUNDS
#define SAMPLEX_SOFTMAX_DRAW_BOUNDS_bf16 SAMPLEX_SOFTMAX_PREFETCH_BOUNDS
#define SAMPLEX_SOFTMAX_DRAW_BOUNDS_f32_any __launch_bounds__(samplex_softmax::THREADS)
#define SAMPLEX_SOFTMAX_DRAW_BOUNDS_f16_any SAMPLEX_SOFTMAX_PREFETCH_BOUNDS
#define SAMPLEX_SOFTMAX_DRAW_BOUNDS_bf16_any SAMPLEX_SOFTMAX_PREFETCH_BOUNDS

#define SAMPLEX_SOFTMAX_ENTRIES(T, NAME, VEC, SUFFIX)                                                    \
  extern "C" __global__ void __launch_bounds__(samplex_softmax::THREADS)                                \
      samplex_softmax_stats_##NAME##SUFFIX(const T *logits, u64 stride, u32 vocab, float temperature,  \
                                            u64 temps, u32 parts, u64 partials) {                      \
    samplex_softmax::stats<T, VEC>(logits, stride, vocab, temperature, temps, parts, partials);         \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(samplex_softmax::THREADS)                                \
      samplex_softmax_probs_##NAME##SUFFIX(const T *logits, u64 stride, u32 vocab, float temperature,  \
                                            u64 temps, u32 parts, u64 partials, float *probs,          \
                                            u64 log_probs, u64 status) {                               \
    samplex_softmax::probs<T, VEC>(logits, stride, vocab, temperature, temps, parts, partials, probs,   \
                                   log_probs, status);                                                  \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(samplex_softmax::THREADS)                                \
      samplex_softmax_probs_staged_##NAME##SUFFIX(const T *logits, u64 stride, u32 vocab,              \
                                                   float temperature, u64 temps, float *probs,         \
                                                   u64 log_probs, u64 status) {                        \
    samplex_softmax::probs_staged<T, VEC>(logits, stride, vocab, temperature, temps, probs, log_probs,  \
                                          status);                                                      \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(samplex_softmax::THREADS)                                \
      samplex_softmax_token_log_probs_##NAME##SUFFIX(const T *logits, u64 stride, u32 vocab,           \
                                                      float temperature, u64 temps, const u32 *tokens, \
                                                      u32 n, u32 parts, u64 partials, u64 tickets,     \
                                                      float *out, u64 status) {                        \
    samplex_softmax::token_log_probs<T, VEC>(logits, stride, vocab, temperature, temps, tokens, n, parts, \
                                             partials, tickets, out, status);                           \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(samplex_softmax::THREADS)                                \
      samplex_softmax_greedy_##NAME##SUFFIX(const T *logits, u64 stride, u32 vocab, u32 parts,         \
                                             u64 partials, u64 tickets, u32 *tokens, u64 status) {     \
    samplex_softmax::greedy<T, VEC>(logits, stride, vocab, parts, partials, tickets, tokens, status);   \
  }                                                                                                     \
  extern "C" __global__ void SAMPLEX_SOFTMAX_DRAW_BOUNDS_##NAME##SUFFIX                                \
      samplex_softmax_sample_##NAME##SUFFIX(const T *logits, u64 stride, u32 vocab, float temperature, \
                                             u64 temps, u64 seed, u64 offset, u64 seeds, u64 offsets,  \
                                             u32 parts, u64 partials, u64 tickets, u32 *tokens,        \
                                             u64 status) {                                             \
    samplex_softmax::sample<T, VEC>(logits, stride, vocab, temperature, temps, seed, offset, seeds,     \
                                    offsets, parts, partials, tickets, tokens, status);                 \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(samplex_softmax::THREADS)                                \
      samplex_softmax_row_stats_##NAME##SUFFIX(const T *logits, u64 stride, u32 vocab, float temperature, \
                                                u64 temps, u32 group, u64 lens, u64 starts, u32 total,   \
                                                u32 parts, u64 partials, u64 tickets,                    \
                                                samplex_softmax::RowStats *out) {                        \
    samplex_softmax::row_stats<T, VEC>(logits, stride, vocab, temperature, temps, group, lens, starts,  \
                                       total, parts, partials, tickets, out);                           \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(samplex_softmax::THREADS)                                \
      samplex_softmax_verify_draft_logits_##NAME##SUFFIX(                                              \
          const float *draft_probs, const u32 *draft_tokens, u64 lens, u64 starts, u32 total,           \
          const T *logits, u64 stride, u32 vocab, float temperature, u64 temps,                         \
          const samplex_softmax::RowStats *stats, u32 drafts, u64 seed, u64 offset, u64 seeds,          \
          u64 offsets, u32 parts, u64 partials, u64 tickets, u32 *tokens, u32 *accepted, u64 status) {  \
    samplex_softmax::verify_draft_logits<T, VEC>(draft_probs, draft_tokens, lens, starts, total, logits,  \
                                                 stride, vocab, temperature, temps, stats, drafts, seed,  \
                                                 offset, seeds, offsets, parts, partials, tickets, tokens, \
                                                 accepted, status);                                       \
  }

#define SAMPLEX_SOFTMAX_DTYPE(T, NAME, VEC)       \
  SAMPLEX_SOFTMAX_ENTRIES(T, NAME, VEC, )         \
  SAMPLEX_SOFTMAX_ENTRIES(T, NAME, 0, _any)

SAMPLEX_SOFTMAX_DTYPE(float, f32, 4)
SAMPLEX_SOFTMAX_DTYPE(f16_t, f16, 8)
SAMPLEX_SOFTMAX_DTYPE(bf16_t, bf16, 8)

// Drawing from given probabilities (f32 only).
#define SAMPLEX_SOFTMAX_SAMPLE_PROBS(VEC, SUFFIX)                                                          \
  extern "C" __global__ void SAMPLEX_SOFTMAX_DRAW_BOUNDS_f32##SUFFIX                                      \
      samplex_softmax_sample_probs_f32##SUFFIX(const float *probs, u64 stride, u32 vocab, u64 seed,       \
                                                u64 offset, u64 seeds, u64 offsets, u32 parts,            \
                                                u64 partials, u64 tickets, u32 *tokens, u64 status) {     \
    samplex_softmax::sample_probs<VEC>(probs, stride, vocab, seed, offset, seeds, offsets, parts, partials, \
                                       tickets, tokens, status);                                          \
  }

SAMPLEX_SOFTMAX_SAMPLE_PROBS(4, )
SAMPLEX_SOFTMAX_SAMPLE_PROBS(0, _any)

// Several tokens per row from given probabilities (f32 only).
#define SAMPLEX_SOFTMAX_SAMPLE_PROBS_N(VEC, SUFFIX)                                                        \
  extern "C" __global__ void SAMPLEX_SOFTMAX_DRAW_BOUNDS_f32##SUFFIX                                      \
      samplex_softmax_sample_probs_n_f32##SUFFIX(const float *probs, u64 stride, u32 vocab, u64 seed,     \
                                                  u64 offset, u64 seeds, u64 offsets, u32 first_draw,     \
                                                  u32 draws, u32 per_row, u32 parts, u64 partials,        \
                                                  u64 tickets, u32 *tokens, u64 status) {                 \
    samplex_softmax::sample_probs_n<VEC>(probs, stride, vocab, seed, offset, seeds, offsets, first_draw,  \
                                         draws, per_row, parts, partials, tickets, tokens, status);       \
  }

SAMPLEX_SOFTMAX_SAMPLE_PROBS_N(4, )
SAMPLEX_SOFTMAX_SAMPLE_PROBS_N(0, _any)

// Speculative decoding's verification (f32 only).
#define SAMPLEX_SOFTMAX_VERIFY_DRAFT(VEC, SUFFIX)                                                          \
  extern "C" __global__ void SAMPLEX_SOFTMAX_DRAW_BOUNDS_f32##SUFFIX                                      \
      samplex_softmax_verify_draft_f32##SUFFIX(const float *draft_probs, const u32 *draft_tokens,         \
                                                u64 lens, u64 starts, u32 total,                          \
                                                const float *target_probs, u32 vocab, u32 drafts,         \
                                                u64 seed, u64 offset, u64 seeds, u64 offsets, u32 parts,  \
                                                u64 partials, u64 tickets, u32 *tokens, u32 *accepted,    \
                                                u64 status) {                                             \
    const samplex_softmax::TargetProbs<VEC> target{target_probs, vocab};                                  \
    samplex_softmax::verify_draft<samplex_softmax::TargetProbs<VEC>, VEC>(                                \
        draft_probs, draft_tokens, lens, starts, total, target, vocab, drafts, seed, offset, seeds,       \
        offsets, parts, partials, tickets, tokens, accepted, status);                                     \
  }

SAMPLEX_SOFTMAX_VERIFY_DRAFT(4, )
SAMPLEX_SOFTMAX_VERIFY_DRAFT(0, _any)

// Test hook: out[4i .. 4i+4) = row_random(seeds[i], offsets[i], streams[i], tiles[i]), so a test
// can check the device's Philox stream against src/philox.rs bit for bit.
extern "C" __global__ void samplex_softmax_philox_words(const u64 *seeds, const u64 *offsets, const u32 *streams,
                                                        const u32 *tiles, u32 n, u32 *out) {
  const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const Philox4 r = row_random(seeds[i], offsets[i], streams[i], tiles[i]);
  u32 *o = out + 4 * (u64)i;
  o[0] = r.x;
  o[1] = r.y;
  o[2] = r.z;
  o[3] = r.w;
}
