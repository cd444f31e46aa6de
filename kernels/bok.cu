// samplex — kernels/bok.cu: Best-of-K by entropic mirror ascent.
//
// SPEC.md "Best-of-K": with p = softmax(u) over the kept support (u = z/τ), weights w ≥ 0 and
// budget K,
//   J(q) = ⟨q, z⟩ − β·KL(q‖p) + λ·Σ w_i·(1 − (1 − q_i)^K)
//   g_i  = z_i − β·(ln q_i − ln p_i) + λ·w_i·K·(1 − q_i)^(K−1)
//   a_i  = ln q_i + η·g_i,   ln q_i' = a_i − max a − ln Σ_j e^{a_j − max a}     (q⁰ = p)
// then a token is drawn from q^T with the tiled draw (common.cuh §7, log-weights ln q: the
// same as cpu::draw_log_weights). Tokens outside the support stay at q = 0.
// Also SPEC "Drawing a token", "Bad input"; docs/ARCHITECTURE.md "Kernel conventions".
//
// Kernels (<T> = f32 | f16 | bf16):
//   samplex_bok_row_<T>         one block per row, the whole ascent in one launch (vocab ≤ 32768);
//                               the three entries share one compiled body (only the load differs:
//                               dtype and 16-byte alignment are checked at run time, no _v1)
//   samplex_bok_cluster_<T>     sm_90: one thread-block cluster of 2, 4 or 8 blocks per row, the
//                               whole ascent in one launch (vocab ≤ 8 × 32768); the same body as
//                               samplex_bok_row over more blocks, the same arguments
//   samplex_bok_grid_<T>        every GPU: the same split as samplex_bok_cluster over C consecutive
//                               blocks of a cooperative launch (batch × C ≤ the SMs), merging
//                               through global memory; the cluster's arguments, then blocks,
//                               barriers, exchange
//   samplex_bok_pass_<T>[_v1]   the multi-block fallback, one launch per pass (any vocab, any GPU)
//   samplex_bok_topm_<T>[_v1]   the fallback's top-M threshold (weights = top_m), one block per row
//
// Support: an optional per-row f32 threshold (src/gpu/topp.rs support_thresholds) keeps the
// tokens with sanitised z ≥ thr; without it every finite token is kept. Weights: 0 = prob
// (w = p), 1 = top_m (w = 1 on the M most likely kept tokens, ties to the lower index, as
// cpu::top_k_select_row), 2 = the caller's buffer (batch × vocab; NaN/negative → 0, +inf →
// FLT_MAX, flagged). Per-row K, β, λ, η, T, τ are clamped on the device and flagged: K ≥ 1;
// β, η, τ in [FLT_MIN, FLT_MAX]; λ in [0, FLT_MAX]; NaN → the batch-wide value (τ: 1, as in
// softmax.cu); a per-row T is capped at the batch-wide T (the host sizes the objective and, in
// the fallback, the number of launches from it).
//
// Per-token arithmetic (token_state, ascent_step, objective_term), all f32: q = e^{ln q};
// (1 − q)^(K−1) by repeated squaring of b = 1 − q (b's rounding error, 2^-25 absolute, only
// matters where b^(K−1) is negligible); the objective's coverage is 1 − b^(K−1)·b. a is clamped
// to ±FLT_MAX (so no inf − inf can arise in the shift).
//
// samplex_bok_row (grid = batch, 512 threads, dynamic shared memory = tiles × 2048 × 4 bytes):
//   The row is cut into draw tiles of 2048 tokens; in tile t thread j holds the 4 consecutive
//   tokens t·2048 + 4j .. + 3 ("tile layout": thread order = token order, as
//   block_tile_candidate wants). ≤ 16 tiles: every thread keeps its ≤ 64 tokens' state a (=
//   ln q before the pending shift) in registers, indexed only by unrolled constants.
//   1. Load once: sanitise, mask by the support (−inf outside), store z in shared memory (the
//      logits are never read again), block max of u, kept count, status.
//   2. ln S = ln Σ e^{u − M} over the shared z; ln p = (u − M) − ln S.
//   3. top_m: radix select of the M-th largest key of u (select_top_m, on the shared z).
//   4. a = ln p; shift = 0. Round it = 0 .. T−1 (and T, J only, when the objective is asked):
//      ln q = a − shift; J(q^it) terms; a ← ln q + η·g (or a ← ln q once the row's own T is
//      reached); one block collective gives (max a, Σ e^{a − max}, Σ J) → objective[it],
//      and the shift (max, ln Σ).
//   5. ln q^T = a − shift replaces z in shared memory; a loop over the tiles writes q (dense)
//      and draws (per tile one (max, sum) collective; the candidate search only when the
//      tile's key beats the best so far — strict >, so the lower tile keeps a tie).
//
// samplex_bok_cluster (sm_90; grid = batch × C blocks of 512 threads, cluster dimension (C, 1, 1)
// set at launch, C = 2, 4 or 8 — the host's smallest with vocab ≤ C × 32768; dynamic shared
// memory = ClusterShared (2080 bytes) + ceil(tiles / C) × 2048 × 4 bytes):
//   Cluster k is row k; the block of rank r holds the contiguous tiles [r·ceil(tiles/C), ...) in
//   tile layout, with its tokens' state in registers, and runs steps 1-5 on them: the same code
//   as samplex_bok_row (`ascent`, over a ClusterGroup instead of a SoloGroup), where every value
//   of the row is
//   C1. the block collective of samplex_bok_row over the block's tiles (its partial), then
//   C2. thread 0 writes the partial to slot[merge parity] of its ClusterShared (the head of the
//       dynamic shared memory); one cluster barrier (release/acquire);
//   C3. every thread of every block reads the C partials through DSMEM (mapa +
//       ld.shared::cluster) and merges them in rank order, so every block holds the same bits:
//       the same M, ln Z, shift, top_m threshold and J, and takes the same branches.
//   The slots are double-buffered: a block writes a slot again two merges later, after the
//   barrier of the merge between, by which every block has read its previous value; so each
//   merge costs one cluster barrier (an iteration: one __syncthreads and one cluster barrier).
//   top_m sums the blocks' histograms bin by bin in rank order (one barrier a pass, histograms
//   by pass parity); when the M-th key ties, the blocks count their equal keys, each learns
//   how many the lower ranks hold (rank_offset), and only the block holding the need-th walks.
//   The weights' token ids are made block-local once (local_weights), so the loop indexes its
//   tokens as samplex_bok_row does. The draw: each block over its tiles (Philox by the global
//   tile index), then (key, token, status) merged in rank order with strict > on the key — the
//   lower rank holds the lower tiles, so the lower tile keeps a tie, as in one block. Rank 0
//   writes the token, J and the status; each block writes q for its tiles; a last cluster
//   barrier keeps every block's shared memory alive until the others have read it.
//   Cluster barriers per row: T + 4 (+1 for J(q^T); +4 with top_m, +2 more if its M-th key
//   ties). samplex_bok_grid runs the same steps over a GridGroup: C consecutive blocks of a
//   cooperative launch per row, each publishing into its ClusterShared entry in global memory
//   (histograms copied there from shared memory) and meeting at the row's barrier in global
//   memory (common.cuh §9) where the cluster has its cluster barrier; its z starts the dynamic
//   shared memory. Below sm_90 (the sm_80/86/89 SASS, the compute_80 PTX) the body is a trap: the host
//   launches the kernel only when its PTX version is ≥ 90 (common.cuh §8).
//
// samplex_bok_pass (grid = batch × P, 256 threads, 8 consecutive tokens per thread per tile;
// part p of a row owns the contiguous tiles [p·ceil(tiles/P), ...)): state a lives in a global
// scratch buffer (batch × state_row(vocab) f32: a thread's 8 slots are two aligned 16-byte
// vectors), and each launch is one pass — the launch boundary is the grid-wide barrier, so no
// block ever waits for another. The host launches, in order:
//   pass 0:        per part (max u, Σ e^{u − max}, status) → part_u
//   [topm]:        samplex_bok_topm writes (key, tie index) per row
//   pass 1 .. T:   every block merges part_u (and the previous pass's partials, in part order)
//                  to ln Z and the shift, forms ln q^{pass−1}, writes a to the state and
//                  (max a, Σ e^{a−max}, Σ J, status) → part_next; part 0 writes J(q^{pass−2})
//   pass T + 1:    ln q^T, q (dense), the draw over the part's tiles, Σ J → part_f; a ticket on
//                  tickets[row]; the last block's warp 0 merges the parts as merge_parts does
//                  ((key, part) as an argmax keeps the lower part = the lower tiles on a tie),
//                  writes the token, J(q^T) and the status; its ticket (atomicInc, wrapping)
//                  left the count at 0.
//   That is T + 2 launches (T + 3 with top_m), each reading the row from L2/HBM: the path for
//   vocab > 8 × 32768, and for GPUs without clusters.
//
// samplex_bok_topm (grid = batch, 512 threads): kept count, then select_top_m over the logits.
//
// Shared memory (static, besides the on-chip kernels' dynamic z and samplex_bok_cluster's
// ClusterShared): BlockScratch, a (max, sum, J) reduction scratch, and the select histogram
// (256 u32 + a few words).
//
// Determinism: every reduction is a fixed tree (warp butterflies, warp 0 over the warps, and
// partial merges in part order or rank order); histogram counts are integer atomics; the tie
// walk of top_m uses scans. Tokens, q and J do not depend on scheduling.
#include "common.cuh"

// The on-chip kernels' dynamic shared memory (the block's z in tile layout, after
// samplex_bok_cluster's ClusterShared). One name for the unit.
SAMPLEX_DYNAMIC_SHARED(float4, samplex_bok_dyn_smem);

namespace samplex_bok {

constexpr u32 TILE = SAMPLEX_DRAW_TILE;
constexpr u32 WEIGHTS_PROB = 0, WEIGHTS_TOP_M = 1, WEIGHTS_CUSTOM = 2;  // src/gpu/bok.rs

constexpr int ROW_THREADS = 512;
constexpr int ROW_PER = TILE / ROW_THREADS;       // 4 tokens per thread per tile
constexpr int ROW_TILES = 16;                     // ≤ 32768 tokens per row on chip
constexpr int ROW_SLOTS = ROW_PER * ROW_TILES;    // 64 registers of state per thread
constexpr int PASS_THREADS = 256;
constexpr int PASS_PER = TILE / PASS_THREADS;     // 8
constexpr int SELECT_THREADS = 512;
constexpr int SELECT_PER = TILE / SELECT_THREADS; // 4
constexpr int BINS = 256;
constexpr float FLT_MIN_NORMAL = 1.17549435e-38f;
static_assert(ROW_PER == 4 && SELECT_PER == 4 && PASS_PER == 8, "loads are whole quads");

// Floats per row of samplex_bok_pass's state: vocab rounded up to PASS_PER, so that a thread's
// slots are two aligned 16-byte vectors, read and written whole (src/gpu/bok.rs: state_row).
__device__ __forceinline__ u32 state_row(u32 vocab) { return (vocab + (PASS_PER - 1)) / PASS_PER * PASS_PER; }

// ---------------------------------------------------------------------------------------------
// Arguments and per-row parameters.
// ---------------------------------------------------------------------------------------------

// The kernel arguments every BoK kernel shares (built by the entry points, C-signature order).
struct Args {
  u64 stride;
  u32 vocab;
  float temperature;
  u64 temps;
  u32 k;
  u64 ks;
  float beta;
  u64 betas;
  float lambda;
  u64 lambdas;
  float eta;
  u64 etas;
  u32 iterations;  // T of the batch: objective is batch × (T + 1)
  u64 iterss;
  u32 weight_mode;
  u32 top_m;
  u64 weights;
  u64 thresholds;
  u64 seed, offset, seeds, offsets;
  u64 q_out, objective, tokens, status;
  u32 status_or;  // 1: the threshold kernel wrote the status first; OR into it
};

// One row's resolved parameters.
struct Params {
  float inv_t, beta, lambda, eta;
  float lk;  // λ·K (capped at FLT_MAX so that λK·0 stays 0)
  u32 k;     // K ≥ 1
  u32 iters; // this row's T ≤ the batch's T
};

__device__ __forceinline__ Params row_params(const Args &a, u32 row, u32 &st) {
  Params p;
  // τ: NaN → 1 as in softmax.cu and topp.cu (the support's thresholds see the same τ).
  // The other parameters: NaN → the batch's value.
  const float tau = row_param(a.temps, row, a.temperature, FLT_MIN_NORMAL, SAMPLEX_FLT_MAX, 1.0f, st);
  p.inv_t = fminf(1.0f / fmaxf(tau, FLT_MIN_NORMAL), SAMPLEX_FLT_MAX);
  p.beta = row_param(a.betas, row, a.beta, FLT_MIN_NORMAL, SAMPLEX_FLT_MAX, a.beta, st);
  p.lambda = row_param(a.lambdas, row, a.lambda, 0.0f, SAMPLEX_FLT_MAX, a.lambda, st);
  p.eta = row_param(a.etas, row, a.eta, FLT_MIN_NORMAL, SAMPLEX_FLT_MAX, a.eta, st);
  p.k = a.k;
  if (a.ks != 0) {
    p.k = reinterpret_cast<const u32 *>(a.ks)[row];
    if (p.k == 0) {
      p.k = 1;
      st |= SAMPLEX_STATUS_PARAM_CLAMPED;
    }
  }
  p.iters = a.iterations;
  if (a.iterss != 0) {
    p.iters = reinterpret_cast<const u32 *>(a.iterss)[row];
    if (p.iters > a.iterations) {
      p.iters = a.iterations;
      st |= SAMPLEX_STATUS_PARAM_CLAMPED;
    }
  }
  p.lk = fminf(p.lambda * (float)p.k, SAMPLEX_FLT_MAX);
  return p;
}

__device__ __forceinline__ float row_threshold(const Args &a, u32 row) {
  return a.thresholds != 0 ? reinterpret_cast<const float *>(a.thresholds)[row] : SAMPLEX_NEG_INF;
}

// Kept by the support: finite (after sanitising) and ≥ the row's threshold.
__device__ __forceinline__ bool kept(float z, float thr) { return z > SAMPLEX_NEG_INF && z >= thr; }

__device__ __forceinline__ float sanitize_quiet(float x) {
  if (x != x) return SAMPLEX_NEG_INF;
  return x == SAMPLEX_INF ? SAMPLEX_FLT_MAX : x;
}

// u = z·(1/τ) of a kept (finite) z, clamped to ±FLT_MAX.
__device__ __forceinline__ float scale_logit(float z, float inv_t) {
  return fminf(fmaxf(z * inv_t, -SAMPLEX_FLT_MAX), SAMPLEX_FLT_MAX);
}

// The order key of u, with −0 == +0 (cpu compares ln p, where the two are equal).
__device__ __forceinline__ u32 order_key(float u) { return float_to_key(u == 0.0f ? 0.0f : u); }

// The row's random stream (common.cuh §4) from the kernel arguments.
__device__ __forceinline__ RowRng row_rng(const Args &a, u32 row) {
  return ::row_rng(a.seed, a.offset, a.seeds, a.offsets, row);
}

__device__ __forceinline__ void write_status(const Args &a, u32 row, u32 st) {
  if (a.status == 0) return;
  u32 *s = reinterpret_cast<u32 *>(a.status) + row;
  *s = a.status_or != 0 ? (*s | st) : st;
}

// ---------------------------------------------------------------------------------------------
// Loads: N consecutive tokens from `first` (N a multiple of 4), −inf past the row's end
// (common.cuh load_span). VEC > 1: the host has checked 16-byte alignment of the rows; a run
// shorter than the vector (N = 4 of a 16-bit row) loads 8 bytes.
// ---------------------------------------------------------------------------------------------
template <typename T, int VEC, int N>
__device__ __forceinline__ void load_run(const T *row, u32 vocab, u32 first, float (&x)[N]) {
  load_span<T, (VEC < N ? VEC : N), N>(row, vocab, first, x);
}

// ---------------------------------------------------------------------------------------------
// Per-token arithmetic (the SPEC's g, the step, J's terms).
// ---------------------------------------------------------------------------------------------

// b^e by repeated squaring (e is the same in the whole row: the loop is uniform).
__device__ __forceinline__ float powu(float b, u32 e) {
  float r = 1.0f;
  while (e != 0u) {
    if (e & 1u) r *= b;
    b *= b;
    e >>= 1;
  }
  return r;
}

// One kept token at the current iterate: q, and b^(K−1) with b = 1 − q. b is rounded to an
// absolute 2^-25; where that is a large relative error (q → 1), b^(K−1) is negligible (K ≥ 2)
// or exactly 1 (K = 1), so the gradient keeps its f32 accuracy.
// A log-sum-exp normalisation, applied in SPEC's order: ln x' = (x − max) − ln Σ e^{x − max}.
// max + ln Σ first would round ln Σ away for a huge max (+inf logits count as FLT_MAX). The
// identity (0, 0) leaves x as it is.
struct LogShift {
  float max, ln_sum;
  __device__ __forceinline__ float of(float x) const { return (x - max) - ln_sum; }
};

struct TokenState {
  float q, b, pw;
};
__device__ __forceinline__ TokenState token_state(float lq, const Params &P) {
  TokenState s;
  s.q = __expf(lq);
  s.b = fmaxf(1.0f - s.q, 0.0f);
  s.pw = powu(s.b, P.k - 1u);
  return s;
}

// One mirror-ascent step of a kept token: a = ln q + η·g, clamped to ±FLT_MAX (NaN → −FLT_MAX).
__device__ __forceinline__ float ascent_step(float z, float lp, float lq, float w, const TokenState &s,
                                             const Params &P) {
  const float g = z - P.beta * (lq - lp) + P.lk * w * s.pw;
  return fminf(fmaxf(lq + P.eta * g, -SAMPLEX_FLT_MAX), SAMPLEX_FLT_MAX);
}

// A kept token's term of J(q): q·z − β·q·(ln q − ln p) + λ·w·(1 − (1 − q)^K). The coverage
// 1 − b^K loses the absolute 2^-25 of b (≤ K·6e-8 per unit of λw): J is a diagnostic, summed
// in f32 anyway.
__device__ __forceinline__ float objective_term(float z, float lp, float lq, float w, const TokenState &s,
                                                const Params &P) {
  if (!(s.q > 0.0f)) return 0.0f;
  return s.q * z - P.beta * s.q * (lq - lp) + P.lambda * w * (1.0f - s.pw * s.b);
}

// The coverage weights of a row (see the header).
struct Weights {
  u32 mode;
  u32 key;    // top_m: keys above are in, ...
  u32 tie;    // ... and keys equal to `key` at indices ≤ tie
  const float *row;
};

__device__ __forceinline__ float weight_of(const Weights &W, float lp, float u, u32 idx, u32 &st) {
  if (W.mode == WEIGHTS_PROB) return __expf(lp);
  if (W.mode == WEIGHTS_TOP_M) {
    const u32 key = order_key(u);
    return (key > W.key || (key == W.key && idx <= W.tie)) ? 1.0f : 0.0f;
  }
  float x = W.row[idx];
  if (!(x >= 0.0f)) {
    st |= SAMPLEX_STATUS_PARAM_CLAMPED;
    x = 0.0f;
  } else if (x > SAMPLEX_FLT_MAX) {
    st |= SAMPLEX_STATUS_PARAM_CLAMPED;
    x = SAMPLEX_FLT_MAX;
  }
  return x;
}

// The same weights with token ids counted from `base` (a block's first token): the ascent's loop
// then indexes its tokens as samplex_bok_row does, with no offset kept live.
__device__ __forceinline__ Weights local_weights(Weights W, u32 base) {
  if (W.row != nullptr) W.row += base;
  if (W.tie != SAMPLEX_NO_TOKEN) {
    if (W.tie >= base) {
      W.tie -= base;
    } else {  // no token of this block with key == W.key is in: only the keys above it
      W.key += 1u;  // finite u: keys stay below 0xff800000
      W.tie = SAMPLEX_NO_TOKEN;
    }
  }
  return W;
}

__device__ __forceinline__ Weights row_weights(const Args &a, u32 row) {
  Weights W;
  W.mode = a.weight_mode;
  W.key = 0u;  // below every key: with tie = all, every kept token is in
  W.tie = SAMPLEX_NO_TOKEN;
  W.row = a.weight_mode == WEIGHTS_CUSTOM ? reinterpret_cast<const float *>(a.weights) + (u64)row * a.vocab
                                          : nullptr;
  return W;
}

// ---------------------------------------------------------------------------------------------
// Collectives: (max, Σ e^{x − max}, Σ J) in one block reduction (CUB shape: every thread calls,
// every thread gets the result, ends with __syncthreads).
// ---------------------------------------------------------------------------------------------
struct MSJ {
  float m, s, j;
};

__device__ __forceinline__ MSJ msj(float m, float s, float j) {
  MSJ r;
  r.m = m;
  r.s = s;
  r.j = j;
  return r;
}

// Commutative (so every lane of a butterfly gets the same bits).
__device__ __forceinline__ MSJ msj_merge(MSJ a, MSJ b) {
  MSJ r;
  r.m = fmaxf(a.m, b.m);
  r.j = a.j + b.j;
  r.s = r.m == SAMPLEX_NEG_INF ? 0.0f : a.s * __expf(a.m - r.m) + b.s * __expf(b.m - r.m);
  return r;
}

__device__ __forceinline__ MSJ warp_msj(MSJ v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MSJ w;
    w.m = __shfl_xor_sync(SAMPLEX_FULL_MASK, v.m, o);
    w.s = __shfl_xor_sync(SAMPLEX_FULL_MASK, v.s, o);
    w.j = __shfl_xor_sync(SAMPLEX_FULL_MASK, v.j, o);
    v = msj_merge(v, w);
  }
  return v;
}

template <int THREADS> struct Reduce {
  static constexpr int WARPS = THREADS / 32;
  float m[WARPS], s[WARPS], j[WARPS];
  float rm, rs, rj;
};

// The block's value in warp 0 only (other warps get garbage), after one __syncthreads: for a
// caller that publishes it itself. `r` may be reused only after the caller's next barrier.
template <int THREADS>
__device__ __forceinline__ MSJ block_msj_warp0(MSJ v, Reduce<THREADS> &r) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_msj(v);
  if (lane == 0) {
    r.m[warp] = v.m;
    r.s[warp] = v.s;
    r.j[warp] = v.j;
  }
  __syncthreads();
  MSJ w = msj(SAMPLEX_NEG_INF, 0.0f, 0.0f);
  if (warp == 0) {
    if (lane < Reduce<THREADS>::WARPS) w = msj(r.m[lane], r.s[lane], r.j[lane]);
    w = warp_msj(w);
  }
  return w;
}

template <int THREADS>
__device__ __forceinline__ MSJ block_msj(MSJ v, Reduce<THREADS> &r) {
  const MSJ w = block_msj_warp0<THREADS>(v, r);
  if (threadIdx.x == 0) {
    r.rm = w.m;
    r.rs = w.s;
    r.rj = w.j;
  }
  __syncthreads();
  const MSJ out = msj(r.rm, r.rs, r.rj);
  __syncthreads();
  return out;
}

// A thread's (max, Σ e^{x − max}) over its values (−inf = excluded).
template <int N>
__device__ __forceinline__ MSJ thread_max_sum(const float (&x)[N]) {
  float m = SAMPLEX_NEG_INF;
#pragma unroll
  for (int e = 0; e < N; ++e) m = fmaxf(m, x[e]);
  float s = 0.0f;
  if (m > SAMPLEX_NEG_INF) {
#pragma unroll
    for (int e = 0; e < N; ++e) s += __expf(x[e] - m);  // e^{-inf} = 0
  }
  return msj(m, s, 0.0f);
}

// ---------------------------------------------------------------------------------------------
// Where a row's tiles live (the "group"): all in one block (samplex_bok_row, samplex_bok_topm),
// or spread over the blocks of a cluster (samplex_bok_cluster). top_m's select, the ascent and
// the draw are written once over a group: a row-wide value is a block collective followed by
// the group's merge, which is nothing for one block and, for a cluster, the merge of every
// block's value in rank order (steps C1-C3 of the header). A group has:
//   tile0, tiles          this block's draw tiles, [tile0, tile0 + tiles), tiles ≤ ROW_TILES
//   leader()              the block that writes the row's token, J and status
//   merge(v, f)           the row's value from every block's v (each thread passes its block's)
//   msj(v, red)           block_msj and merge in one
//   select_hist(ss, pass) top_m's histogram of a pass; hist_ready(h, pass) once it is built,
//                         then hist_count(h, bin, pass) is the row's count in that bin
//   rank_offset(n)        Σ n over the lower ranks (0 for one block)
//   finish()              before the block exits (its shared memory must outlive the readers)
// ---------------------------------------------------------------------------------------------
template <int THREADS> struct SelectShared {
  u32 hist[BINS];
  u32 warp_c[THREADS / 32];
  u32 bin, need, eq, tie;
};

struct SoloGroup {
  static constexpr bool SPLIT = false;  // the row is split over several blocks
  u32 tile0, tiles;
  __device__ __forceinline__ bool leader() const { return true; }
  template <typename P, typename F> __device__ __forceinline__ P merge(const P &v, F) { return v; }
  template <int THREADS> __device__ __forceinline__ MSJ msj(MSJ v, Reduce<THREADS> &red) {
    return block_msj<THREADS>(v, red);
  }
  template <int THREADS> __device__ __forceinline__ u32 *select_hist(SelectShared<THREADS> &ss, int) {
    return ss.hist;
  }
  __device__ __forceinline__ void hist_ready(const u32 *, int) { __syncthreads(); }
  __device__ __forceinline__ u32 hist_count(const u32 *h, u32 bin, int) { return h[bin]; }
  __device__ __forceinline__ u32 rank_offset(u32) { return 0u; }
  __device__ __forceinline__ void finish() {}
};

// What a block of a split row publishes (step C2 of the header): the head of
// samplex_bok_cluster's dynamic shared memory, or samplex_bok_grid's exchange entry in global
// memory.
struct ClusterShared {
  uint4 slot[2];      // this block's value of the merge in progress, by merge parity
  u32 hist[2][BINS];  // top_m's histogram, by pass parity
};
static_assert(sizeof(ClusterShared) == 2080, "CLUSTER_HEAD_BYTES in src/gpu/bok.rs");
static_assert(sizeof(ClusterShared) % 16 == 0, "the tiles after it are float4");

#if SAMPLEX_CLUSTERS

// Rank, size and the shared head are read where used (special registers, a constant address),
// not kept: the ascent's state already fills the registers.
struct ClusterGroup : RowMerges<ClusterGroup> {
  static constexpr bool SPLIT = true;
  u32 tile0, tiles;
  u32 phase;  // merges so far: the parity picks the slot

  __device__ __forceinline__ static ClusterShared *xs() {
    return reinterpret_cast<ClusterShared *>(static_cast<float4 *>(samplex_bok_dyn_smem));
  }
  __device__ __forceinline__ bool leader() const { return cluster_rank() == 0; }
  __device__ __forceinline__ u32 size() const { return cluster_size(); }
  __device__ __forceinline__ u32 rank() const { return cluster_rank(); }

  // Thread 0 publishes this block's value (common.cuh §10), then one cluster barrier.
  template <typename P> __device__ __forceinline__ const uint4 *publish(const P &v) {
    return cluster_publish(xs()->slot, phase, v);
  }
  template <typename P> __device__ __forceinline__ P published(const uint4 *slot, u32 r) {
    return from_raw16<P>(cluster_load_v4(cluster_map(slot, r)));
  }
  // Warp 0 has the block's value after one __syncthreads; the cluster barrier is the block's
  // second (block_msj's broadcast is not needed).
  template <int THREADS> __device__ __forceinline__ MSJ msj(MSJ v, Reduce<THREADS> &red) {
    return merge(block_msj_warp0<THREADS>(v, red), [](MSJ x, MSJ y) { return msj_merge(x, y); });
  }
  template <int THREADS> __device__ __forceinline__ u32 *select_hist(SelectShared<THREADS> &, int pass) {
    return xs()->hist[pass & 1];
  }
  __device__ __forceinline__ void hist_ready(const u32 *, int) { cluster_sync(); }
  __device__ __forceinline__ u32 hist_count(const u32 *h, u32 bin, int) {
    u32 c = 0;
    const u32 size = cluster_size();
    for (u32 r = 0; r < size; ++r) c += cluster_load_u32(cluster_map(h + bin, r));
    return c;
  }
  __device__ __forceinline__ u32 rank_offset(u32 n) {
    return before(n, 0u, [](u32 x, u32 y) { return x + y; });
  }
  __device__ __forceinline__ void finish() { cluster_sync(); }
};
#endif

// samplex_bok_grid's group (every GPU): the row's `blocks` consecutive blocks of a cooperative
// launch, which publish into their exchange entries (ClusterShared, in global memory) and meet
// at the row's barrier (common.cuh §9). The same merges, in the same rank order, as a
// ClusterGroup's: the same bits. Row, rank and addresses are recomputed where used, from
// blockIdx and the kernel's arguments, rather than kept in registers.
struct GridGroup : RowMerges<GridGroup> {
  static constexpr bool SPLIT = true;
  u32 tile0, tiles;
  u32 phase;  // merges so far: the parity picks the slot
  u32 blocks;
  u64 barriers, exchange;  // a RowBarrier per row; a ClusterShared per block

  __device__ __forceinline__ u32 size() const { return blocks; }
  __device__ __forceinline__ u32 rank() const { return blockIdx.x % blocks; }
  __device__ __forceinline__ ClusterShared *entry(u32 r) const {
    return reinterpret_cast<ClusterShared *>(exchange) + (u64)(blockIdx.x - rank() + r);
  }
  __device__ __forceinline__ void barrier() const {
    row_barrier(reinterpret_cast<RowBarrier *>(barriers) + blockIdx.x / blocks, blocks);
  }
  __device__ __forceinline__ bool leader() const { return rank() == 0; }

  // Thread 0 publishes this block's value (common.cuh §10), then the row's barrier.
  template <typename P> __device__ __forceinline__ const uint4 *publish(const P &v) {
    const u32 p = phase & 1;
    publish_raw16(&entry(rank())->slot[p], v);
    ++phase;
    barrier();
    return &entry(0)->slot[p];
  }
  template <typename P> __device__ __forceinline__ P published(const uint4 *slot, u32 r) {
    return from_raw16<P>(load_cg_v4(reinterpret_cast<const uint4 *>(reinterpret_cast<const char *>(slot) + (u64)r * sizeof(ClusterShared))));
  }
  template <int THREADS> __device__ __forceinline__ MSJ msj(MSJ v, Reduce<THREADS> &red) {
    return merge(block_msj_warp0<THREADS>(v, red), [](MSJ x, MSJ y) { return msj_merge(x, y); });
  }
  template <int THREADS> __device__ __forceinline__ u32 *select_hist(SelectShared<THREADS> &ss, int) {
    return ss.hist;
  }
  // The block's histogram (shared memory) to its entry, then the row's barrier.
  __device__ __forceinline__ void hist_ready(const u32 *h, int pass) {
    __syncthreads();
    u32 *mine = entry(rank())->hist[pass & 1];
    for (u32 b = threadIdx.x; b < (u32)BINS; b += blockDim.x) mine[b] = h[b];
    barrier();
  }
  __device__ __forceinline__ u32 hist_count(const u32 *, u32 bin, int pass) {
    u32 c = 0;
#pragma unroll 1
    for (u32 r = 0; r < blocks; ++r) c += load_cg_u32(&entry(r)->hist[pass & 1][bin]);
    return c;
  }
  __device__ __forceinline__ u32 rank_offset(u32 n) {
    return before(n, 0u, [](u32 x, u32 y) { return x + y; });
  }
  __device__ __forceinline__ void finish() {}
};

// ---------------------------------------------------------------------------------------------
// top_m: the M-th largest key of u among kept tokens, ties to the lower index (step 3).
//   Four passes over 8-bit digits, MSB first: a 256-bin histogram of the keys under the prefix
//   (warp-aggregated atomics: counts are integers, order-free; a cluster adds its blocks' bins
//   in rank order), a scan from the top bin finds the bin holding the M-th key. Then `need`
//   tokens with key == that key are taken: all of them if that is how many there are, else a
//   walk in token order (a block scan per tile; in a cluster, only the block holding the
//   need-th such token walks, after rank_offset counted those of the lower ranks) finds the
//   need-th one, whose index is `tie`.
// `get(tile, u)` gives this thread's PER values of u in the block's tile `tile` (−inf = not
// kept); token ids count from the group's tile0.
// ---------------------------------------------------------------------------------------------
template <int THREADS, int PER, typename G, typename Get>
__device__ __forceinline__ void select_top_m(G &g, u32 m, Get &get, SelectShared<THREADS> &ss,
                                             BlockScratch<THREADS> &sc, u32 &out_key, u32 &out_tie) {
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const u32 tiles = g.tiles;
  u32 prefix = 0, fixed = 0, need = m, eq = 0;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    u32 *hist = g.select_hist(ss, pass);
    // Constant trip counts here and in the bin scan below: the loops' trip arithmetic would
    // otherwise stay live across the four passes (it spilled in samplex_bok_topm).
#pragma unroll
    for (int b0 = 0; b0 < BINS; b0 += THREADS)
      if (b0 + t < BINS) hist[b0 + t] = 0u;
    __syncthreads();
    for (u32 tile = 0; tile < tiles; ++tile) {
      float u[PER];
      get(tile, u);
#pragma unroll
      for (int e = 0; e < PER; ++e) {
        const u32 key = order_key(u[e]);
        const bool in = u[e] > SAMPLEX_NEG_INF && (key & fixed) == prefix;
        const u32 bin = in ? (key >> shift) & 0xffu : (u32)BINS;
        const u32 peers = __match_any_sync(SAMPLEX_FULL_MASK, bin);
        if (in && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (u32)__popc(peers));
      }
    }
    g.hist_ready(hist, pass);
    // Inclusive scan from the top bin: thread t < BINS holds bin BINS − 1 − t.
    const u32 own = t < BINS ? g.hist_count(hist, (u32)(BINS - 1 - t), pass) : 0u;
    u32 c = own;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const u32 n = __shfl_up_sync(SAMPLEX_FULL_MASK, c, o);
      if (lane >= o) c += n;
    }
    if (lane == 31) ss.warp_c[warp] = c;
    __syncthreads();
    if (t < BINS) {
#pragma unroll
      for (int w = 0; w < BINS / 32; ++w)
        if (w < warp) c += ss.warp_c[w];
      if (own > 0u && c >= need && c - own < need) {  // exactly one bin
        ss.bin = (u32)(BINS - 1 - t);
        ss.need = need - (c - own);
        ss.eq = own;
      }
    }
    __syncthreads();
    prefix |= ss.bin << shift;
    fixed |= 0xffu << shift;
    need = ss.need;
    eq = ss.eq;
    __syncthreads();
  }
  out_key = prefix;
  if (need == eq) {  // uniform in the group: the merged histograms agree
    out_tie = SAMPLEX_NO_TOKEN;
    return;
  }
  auto equal = [&](float u) { return u > SAMPLEX_NEG_INF && order_key(u) == prefix; };
  if (t == 0) ss.tie = SAMPLEX_NO_TOKEN;
  u32 remaining = need;
  bool walk = true;
  if constexpr (G::SPLIT) {  // the lower ranks' equal keys come first in token order
    u32 mine = 0;
    for (u32 tile = 0; tile < tiles; ++tile) {
      float u[PER];
      get(tile, u);
#pragma unroll
      for (int e = 0; e < PER; ++e) mine += equal(u[e]) ? 1u : 0u;
    }
    const u32 here = block_sum_u32<THREADS>(mine, sc);
    const u32 before = g.rank_offset(here);
    walk = before < need && need - before <= here;  // uniform in the block
    remaining = need - before;
  }
  if (walk) {
    for (u32 tile = 0; tile < tiles; ++tile) {
      float u[PER];
      get(tile, u);
      u32 mine = 0;
#pragma unroll
      for (int e = 0; e < PER; ++e) mine += equal(u[e]) ? 1u : 0u;
      u32 total;
      const u32 before = block_exclusive_sum_u32<THREADS>(mine, total, sc);
      if (before < remaining && remaining <= before + mine) {
        u32 c = before;
#pragma unroll
        for (int e = 0; e < PER; ++e) {
          if (equal(u[e])) {
            ++c;
            if (c == remaining) ss.tie = (g.tile0 + tile) * TILE + (u32)t * PER + e;
          }
        }
      }
      if (remaining <= total) break;  // uniform
      remaining -= total;
    }
  }
  __syncthreads();
  const u32 tie = ss.tie;
  __syncthreads();
  out_tie = g.merge(tie, [](u32 x, u32 y) { return min(x, y); });  // the one block that found it
}

// ---------------------------------------------------------------------------------------------
// The draw of one tile from ln q (common.cuh §7 with log-scale m_t = the tile's max ln q).
// Every thread of the block calls it with its PER consecutive tokens from `first`.
// ---------------------------------------------------------------------------------------------
// `rng_of()` gives the row's RowRng, asked for only by a tile that has kept tokens.
template <int THREADS, int PER, typename RngOf>
__device__ __forceinline__ void draw_tile_with(const float (&lq)[PER], u32 first, u32 tile, const RngOf &rng_of,
                                               float &best_key, u32 &best, BlockScratch<THREADS> &sc,
                                               Reduce<THREADS> &red) {
  const MSJ r = block_msj<THREADS>(thread_max_sum(lq), red);
  if (r.m == SAMPLEX_NEG_INF) return;  // uniform: nothing kept in the tile
  const RowRng rng = rng_of();
  const Philox4 rr = row_random(rng.seed, rng.offset, rng.stream, tile);
  const float key = tile_key(r.m, r.s, uniform_open(rr.x));
  if (key > best_key) {  // uniform: every thread has the same key
    float w[PER];
#pragma unroll
    for (int e = 0; e < PER; ++e) w[e] = expf(lq[e] - r.m);
    float total;
    best = block_tile_candidate<THREADS, PER>(w, first, uniform_open(rr.y), total, sc);
    best_key = key;
  }
}

template <int THREADS, int PER>
__device__ __forceinline__ void draw_tile(const float (&lq)[PER], u32 first, u32 tile, const RowRng &rng,
                                          float &best_key, u32 &best, BlockScratch<THREADS> &sc,
                                          Reduce<THREADS> &red) {
  draw_tile_with<THREADS, PER>(lq, first, tile, [&] { return rng; }, best_key, best, sc, red);
}

// ---------------------------------------------------------------------------------------------
// The whole ascent of a row on chip (steps 1-5 of the header): samplex_bok_row (one block) and
// samplex_bok_cluster (a cluster) run this, over their group.
// ---------------------------------------------------------------------------------------------
struct RowShared {
  BlockScratch<ROW_THREADS> sc;
  Reduce<ROW_THREADS> red;
  SelectShared<ROW_THREADS> sel;
};

// The logits' dtype as a value: the on-chip kernels compile their body once for all three.
constexpr u32 DTYPE_F32 = 0, DTYPE_F16 = 1, DTYPE_BF16 = 2;

// Step 1's load of ROW_PER tokens from a row of any dtype; quads when the row is 16-byte
// aligned (the row start and the stride, as launch::vector_width checks), scalars otherwise.
__device__ __forceinline__ void load_any(const unsigned char *row, u32 dtype, bool aligned, u32 vocab, u32 first,
                                         float (&x)[ROW_PER]) {
  if (dtype == DTYPE_F32) {
    const float *r = reinterpret_cast<const float *>(row);
    if (aligned) load_run<float, 4, ROW_PER>(r, vocab, first, x);
    else load_run<float, 1, ROW_PER>(r, vocab, first, x);
  } else if (dtype == DTYPE_F16) {
    const f16_t *r = reinterpret_cast<const f16_t *>(row);
    if (aligned) load_run<f16_t, 8, ROW_PER>(r, vocab, first, x);
    else load_run<f16_t, 1, ROW_PER>(r, vocab, first, x);
  } else {
    const bf16_t *r = reinterpret_cast<const bf16_t *>(row);
    if (aligned) load_run<bf16_t, 8, ROW_PER>(r, vocab, first, x);
    else load_run<bf16_t, 1, ROW_PER>(r, vocab, first, x);
  }
}

// Step 5's q = e^{ln q} (0 outside the support) of a thread's N consecutive tokens from
// `first`: 16-byte stores when they lie whole in the row at a 16-byte aligned address (every
// row of q is when vocab is a multiple of 4), else one by one (each warp-wide store then
// touches 4 bytes in every 4N).
template <int N>
__device__ __forceinline__ void write_q(float *qr, u32 vocab, u32 first, const float (&lq)[N]) {
  float q[N];
#pragma unroll
  for (int e = 0; e < N; ++e) q[e] = lq[e] > SAMPLEX_NEG_INF ? expf(lq[e]) : 0.0f;
  if (first + N <= vocab && (reinterpret_cast<u64>(qr + first) & 15u) == 0u) {
#pragma unroll
    for (int v = 0; v < N; v += 4)
      reinterpret_cast<float4 *>(qr + first)[v / 4] = make_float4(q[v], q[v + 1], q[v + 2], q[v + 3]);
  } else {
#pragma unroll
    for (int e = 0; e < N; ++e)
      if (first + e < vocab) qr[first + e] = q[e];
  }
}

// The row values merged at the end of steps 1 and 5.
struct MaxCount {
  float m;
  u32 n;
};
struct RowEnd {
  float key;
  u32 token, status;
};

// `s_z` holds the block's tiles in tile layout: s_z[tile · ROW_THREADS + thread] = 4 tokens.
template <typename G>
__device__ __forceinline__ void ascent(const void *logits, u32 dtype, const Args &a, u32 row, G &g, float4 *s_z,
                                       RowShared &sh) {
  const u32 t = threadIdx.x;
  const u32 vocab = a.vocab;
  const u32 tiles = g.tiles, tile0 = g.tile0;
  const u64 elem = dtype == DTYPE_F32 ? 4u : 2u;
  const unsigned char *zr = reinterpret_cast<const unsigned char *>(logits) + (u64)row * a.stride * elem;
  const bool aligned = ((reinterpret_cast<u64>(logits) | (a.stride * elem)) & 15u) == 0u;
  u32 st = 0;
  const Params P = row_params(a, row, st);
  const float thr = row_threshold(a, row);
  float *obj = a.objective != 0 ? reinterpret_cast<float *>(a.objective) + (u64)row * (a.iterations + 1u) : nullptr;

  // Step 1: one read of the logits.
  float mu = SAMPLEX_NEG_INF;
  u32 nk = 0;
  for (u32 tile = 0; tile < tiles; ++tile) {
    float x[ROW_PER];
    load_any(zr, dtype, aligned, vocab, (tile0 + tile) * TILE + t * ROW_PER, x);
#pragma unroll
    for (int e = 0; e < ROW_PER; ++e) {
      const float z = sanitize(x[e], st);
      if (kept(z, thr)) {
        ++nk;
        mu = fmaxf(mu, scale_logit(z, P.inv_t));
        x[e] = z;
      } else {
        x[e] = SAMPLEX_NEG_INF;
      }
    }
    s_z[tile * ROW_THREADS + t] = make_float4(x[0], x[1], x[2], x[3]);
  }
  MaxCount mc;
  mc.m = block_max<ROW_THREADS>(mu, sh.sc);  // its barrier publishes s_z
  mc.n = block_sum_u32<ROW_THREADS>(nk, sh.sc);
  mc = g.merge(mc, [](MaxCount x, MaxCount y) {
    MaxCount r;
    r.m = fmaxf(x.m, y.m);
    r.n = x.n + y.n;
    return r;
  });
  const float M = mc.m;
  const u32 nkept = mc.n;
  if (M == SAMPLEX_NEG_INF) {  // uniform in the group: no finite (kept) logit
    st = g.merge(block_or<ROW_THREADS>(st, sh.sc), [](u32 x, u32 y) { return x | y; });
    if (a.q_out != 0) {
      float *qr = reinterpret_cast<float *>(a.q_out) + (u64)row * vocab;
      const u32 end = min(vocab, (tile0 + tiles) * TILE);
      for (u32 i = tile0 * TILE + t; i < end; i += ROW_THREADS) qr[i] = 0.0f;
    }
    if (g.leader() && t == 0) {
      if (obj != nullptr)
        for (u32 i = 0; i <= a.iterations; ++i) obj[i] = 0.0f;
      if (a.tokens != 0) reinterpret_cast<u32 *>(a.tokens)[row] = SAMPLEX_NO_TOKEN;
      write_status(a, row, st | SAMPLEX_STATUS_NO_FINITE_LOGIT);
    }
    g.finish();
    return;
  }

  // Step 2: ln p = (u − M) − ln S, S = Σ e^{u − M}.
  float s = 0.0f;
  for (u32 tile = 0; tile < tiles; ++tile) {
    const float4 q4 = s_z[tile * ROW_THREADS + t];
    const float zs[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (zs[e] > SAMPLEX_NEG_INF) s += expf(scale_logit(zs[e], P.inv_t) - M);
  }
  const LogShift log_p{M, logf(g.merge(block_sum<ROW_THREADS>(s, sh.sc), [](float x, float y) { return x + y; }))};

  // Step 3: the weights.
  Weights W = row_weights(a, row);
  if (W.mode == WEIGHTS_TOP_M && a.top_m < nkept) {
    auto get = [&](u32 tile, float (&u)[ROW_PER]) {
      const float4 q4 = s_z[tile * ROW_THREADS + t];
      const float zs[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) u[e] = zs[e] > SAMPLEX_NEG_INF ? scale_logit(zs[e], P.inv_t) : SAMPLEX_NEG_INF;
    };
    select_top_m<ROW_THREADS, ROW_PER>(g, a.top_m, get, sh.sel, sh.sc, W.key, W.tie);
  }
  W = local_weights(W, tile0 * TILE);

  // Step 4: a = ln p, then T steps.
  float av[ROW_SLOTS];
#pragma unroll
  for (int tl = 0; tl < ROW_TILES; ++tl) {
    float4 q4 = make_float4(SAMPLEX_NEG_INF, SAMPLEX_NEG_INF, SAMPLEX_NEG_INF, SAMPLEX_NEG_INF);
    if ((u32)tl < tiles) q4 = s_z[tl * ROW_THREADS + t];
    const float zs[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
    for (int e = 0; e < 4; ++e)
      av[tl * 4 + e] = zs[e] > SAMPLEX_NEG_INF ? log_p.of(scale_logit(zs[e], P.inv_t)) : SAMPLEX_NEG_INF;
  }
  // Round it forms ln q^it = a − shift, adds J(q^it) and steps (it < the row's T). With an
  // objective, one more round (it = T, never a step: the row's T ≤ the batch's) gives J(q^T).
  LogShift shift{0.0f, 0.0f};
  const u32 rounds = a.iterations + (obj != nullptr ? 1u : 0u);
  for (u32 it = 0; it < rounds; ++it) {
    const bool update = it < P.iters;
    const bool work = update || obj != nullptr;  // uniform
    float js = 0.0f;
#pragma unroll
    for (int tl = 0; tl < ROW_TILES; ++tl) {
      if ((u32)tl < tiles) {
        const float4 q4 = s_z[tl * ROW_THREADS + t];
        const float zs[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float &x = av[tl * 4 + e];
          if (x > SAMPLEX_NEG_INF) {
            const float lq = fmaxf(shift.of(x), -SAMPLEX_FLT_MAX);
            x = lq;
            if (work) {
              const float z = zs[e], u = scale_logit(z, P.inv_t), lp = log_p.of(u);
              const float w = weight_of(W, lp, u, tl * TILE + t * ROW_PER + e, st);
              const TokenState ts = token_state(lq, P);
              if (obj != nullptr) js += objective_term(z, lp, lq, w, ts, P);
              if (update) x = ascent_step(z, lp, lq, w, ts, P);
            }
          }
        }
      }
    }
    MSJ mine = thread_max_sum(av);
    mine.j = js;
    const MSJ r = g.msj(mine, sh.red);
    if (obj != nullptr && g.leader() && t == 0) obj[it] = r.j;
    shift = LogShift{r.m, logf(r.s)};
  }

  // Step 5: ln q^T replaces z in shared memory; q and the draw walk it tile by tile.
#pragma unroll
  for (int i = 0; i < ROW_SLOTS; ++i)
    if (av[i] > SAMPLEX_NEG_INF) av[i] = fmaxf(shift.of(av[i]), -SAMPLEX_FLT_MAX);
  __syncthreads();  // every read of z is done
#pragma unroll
  for (int tl = 0; tl < ROW_TILES; ++tl)
    if ((u32)tl < tiles) s_z[tl * ROW_THREADS + t] = make_float4(av[tl * 4], av[tl * 4 + 1], av[tl * 4 + 2], av[tl * 4 + 3]);
  __syncthreads();
  float *qr = a.q_out != 0 ? reinterpret_cast<float *>(a.q_out) + (u64)row * vocab : nullptr;
  const RowRng rng = row_rng(a, row);
  RowEnd end;
  end.key = SAMPLEX_NEG_INF;
  end.token = SAMPLEX_NO_TOKEN;
  for (u32 tile = 0; tile < tiles; ++tile) {
    const float4 q4 = s_z[tile * ROW_THREADS + t];
    const float lq[ROW_PER] = {q4.x, q4.y, q4.z, q4.w};
    const u32 first = (tile0 + tile) * TILE + t * ROW_PER;
    if (qr != nullptr) write_q(qr, vocab, first, lq);
    if (a.tokens != 0)
      draw_tile<ROW_THREADS, ROW_PER>(lq, first, tile0 + tile, rng, end.key, end.token, sh.sc, sh.red);
  }
  end.status = block_or<ROW_THREADS>(st, sh.sc);
  // Rank order is tile order: strict > keeps the lower tile on a tie.
  end = g.merge(end, [](RowEnd x, RowEnd y) {
    RowEnd r = y.key > x.key ? y : x;
    r.status = x.status | y.status;
    return r;
  });
  if (g.leader() && t == 0) {
    if (a.tokens != 0) reinterpret_cast<u32 *>(a.tokens)[row] = end.token;
    write_status(a, row, end.status);
  }
  g.finish();
}

// samplex_bok_row's body. Not inlined: the three entries share one compiled body (it is large,
// and only step 1 depends on the dtype).
__device__ __noinline__ void row_body(const void *logits, u32 dtype, const Args &a) {
  __shared__ RowShared sh;
  SoloGroup g;
  g.tile0 = 0;
  g.tiles = ceil_div(a.vocab, TILE);  // ≤ ROW_TILES (checked by the host)
  ascent(logits, dtype, a, blockIdx.x, g, samplex_bok_dyn_smem, sh);
}

// samplex_bok_cluster's body (steps C1-C3 of the header), shared by its three entries likewise.
__device__ __noinline__ void cluster_body(const void *logits, u32 dtype, const Args &a) {
#if SAMPLEX_CLUSTERS
  __shared__ RowShared sh;
  ClusterGroup g;
  g.phase = 0;
  const u32 size = cluster_size();
  const u32 tiles = ceil_div(a.vocab, TILE), per = ceil_div(tiles, size);  // per ≤ ROW_TILES (the host)
  g.tile0 = min(cluster_rank() * per, tiles);
  g.tiles = min(g.tile0 + per, tiles) - g.tile0;
  ascent(logits, dtype, a, blockIdx.x / size, g, reinterpret_cast<float4 *>(ClusterGroup::xs() + 1), sh);
#else
  (void)logits;
  (void)dtype;
  (void)a;
  asm volatile("trap;");  // never launched: the host checks the function's PTX version first
#endif
}

// samplex_bok_grid's body: `blocks` consecutive blocks per row of a cooperative launch, block r
// over the contiguous tiles [r·ceil(tiles/blocks), ...), its z in the dynamic shared memory.
__device__ __noinline__ void grid_body(const void *logits, u32 dtype, const Args &a, u32 blocks, u64 barriers,
                                       u64 exchange) {
  __shared__ RowShared sh;
  GridGroup g;
  g.phase = 0;
  g.blocks = blocks;
  g.barriers = barriers;
  g.exchange = exchange;
  const u32 tiles = ceil_div(a.vocab, TILE), per = ceil_div(tiles, blocks);  // per ≤ ROW_TILES (the host)
  g.tile0 = min(g.rank() * per, tiles);
  g.tiles = min(g.tile0 + per, tiles) - g.tile0;
  ascent(logits, dtype, a, blockIdx.x / blocks, g, samplex_bok_dyn_smem, sh);
}

// ---------------------------------------------------------------------------------------------
// samplex_bok_topm: the fallback's top-M threshold, one block per row.
// ---------------------------------------------------------------------------------------------
template <typename T, int VEC>
__device__ __forceinline__ void topm_body(const T *logits, const Args &a, u64 topm) {
  __shared__ BlockScratch<SELECT_THREADS> sc;
  __shared__ SelectShared<SELECT_THREADS> ss;
  const u32 row = blockIdx.x, t = threadIdx.x;
  const u32 vocab = a.vocab, tiles = ceil_div(vocab, TILE);
  const T *zr = row_ptr(logits, row, a.stride);
  u32 st = 0;
  const Params P = row_params(a, row, st);
  const float thr = row_threshold(a, row);
  auto get = [&](u32 tile, float (&u)[SELECT_PER]) {
    load_run<T, VEC, SELECT_PER>(zr, vocab, tile * TILE + t * SELECT_PER, u);
#pragma unroll
    for (int e = 0; e < SELECT_PER; ++e) {
      const float z = sanitize_quiet(u[e]);
      u[e] = kept(z, thr) ? scale_logit(z, P.inv_t) : SAMPLEX_NEG_INF;
    }
  };
  u32 nk = 0;
  for (u32 tile = 0; tile < tiles; ++tile) {
    float u[SELECT_PER];
    get(tile, u);
#pragma unroll
    for (int e = 0; e < SELECT_PER; ++e) nk += u[e] > SAMPLEX_NEG_INF ? 1u : 0u;
  }
  const u32 nkept = block_sum_u32<SELECT_THREADS>(nk, sc);
  u32 key = 0u, tie = SAMPLEX_NO_TOKEN;
  SoloGroup g;
  g.tile0 = 0;
  g.tiles = tiles;
  if (a.top_m < nkept) select_top_m<SELECT_THREADS, SELECT_PER>(g, a.top_m, get, ss, sc, key, tie);
  if (t == 0) reinterpret_cast<uint2 *>(topm)[row] = make_uint2(key, tie);
}

// ---------------------------------------------------------------------------------------------
// samplex_bok_pass: the multi-block fallback (see the header for the passes).
// ---------------------------------------------------------------------------------------------

// A part's partial of pass ≥ 0: (max, Σ e^{x − max}) of u (pass 0) or a, Σ J, status.
struct Part {
  float m, s, j;
  u32 status;
};
// A part's partial of the last pass.
struct FinalPart {
  float key;
  u32 token;
  float j;
  u32 status;
};

struct PassShared {
  BlockScratch<PASS_THREADS> sc;
  Reduce<PASS_THREADS> red;
  Part merged;
  u32 last;
};

// Merges the `parts` partials of a row in part order (warp 0: lane l takes parts l, l + 32, ...
// in order, then a butterfly — commutative merges, so every lane gets the same bits). Every
// thread calls it and gets the result.
__device__ __forceinline__ Part merge_parts(const Part *p, u32 parts, PassShared &sh) {
  if (threadIdx.x < 32) {
    MSJ acc = msj(SAMPLEX_NEG_INF, 0.0f, 0.0f);
    u32 st = 0;
    for (u32 i = threadIdx.x; i < parts; i += 32) {
      const Part q = p[i];
      acc = msj_merge(acc, msj(q.m, q.s, q.j));
      st |= q.status;
    }
    acc = warp_msj(acc);
    st = warp_or(st);
    if (threadIdx.x == 0) {
      sh.merged.m = acc.m;
      sh.merged.s = acc.s;
      sh.merged.j = acc.j;
      sh.merged.status = st;
    }
  }
  __syncthreads();
  const Part r = sh.merged;
  __syncthreads();
  return r;
}

template <typename T, int VEC>
__device__ __forceinline__ void pass_body(const T *logits, const Args &a, u32 parts, u32 pass, u64 state,
                                          u64 part_u, u64 part_prev, u64 part_next, u64 topm, u64 tickets) {
  __shared__ PassShared sh;
  const u32 row = blockIdx.x / parts, part = blockIdx.x - row * parts, t = threadIdx.x;
  const u32 vocab = a.vocab, tiles = ceil_div(vocab, TILE), per_part = ceil_div(tiles, parts);
  const u32 t0 = min(part * per_part, tiles), t1 = min(t0 + per_part, tiles);
  const T *zr = row_ptr(logits, row, a.stride);
  u32 st = 0;
  const Params P = row_params(a, row, st);
  const float thr = row_threshold(a, row);
  // Live state is kept lean for ptxas (it spilled here): the partials are indexed by blockIdx.x
  // (so `part` is not live to the end), J's row and the draw's seed are formed where used.
  Part *pu = reinterpret_cast<Part *>(part_u) + (u64)row * parts;

  if (pass == 0) {  // (max u, Σ e^{u − max}) of the part, and the sanitising status
    MSJ acc = msj(SAMPLEX_NEG_INF, 0.0f, 0.0f);
    for (u32 tile = t0; tile < t1; ++tile) {
      float x[PASS_PER];
      load_run<T, VEC, PASS_PER>(zr, vocab, tile * TILE + t * PASS_PER, x);
#pragma unroll
      for (int e = 0; e < PASS_PER; ++e) {
        const float z = sanitize(x[e], st);
        x[e] = kept(z, thr) ? scale_logit(z, P.inv_t) : SAMPLEX_NEG_INF;
      }
      acc = msj_merge(acc, thread_max_sum(x));
    }
    const MSJ r = block_msj<PASS_THREADS>(acc, sh.red);
    st = block_or<PASS_THREADS>(st, sh.sc);
    if (t == 0) {
      Part out;
      out.m = r.m;
      out.s = r.s;
      out.j = 0.0f;
      out.status = st;
      reinterpret_cast<Part *>(part_u)[blockIdx.x] = out;  // pu[part]: blockIdx.x = row · parts + part
    }
    return;
  }

  const Part U = merge_parts(pu, parts, sh);
  const LogShift log_p{U.m, logf(U.s)};  // −inf when nothing is kept (then no token is touched)
  st |= U.status;
  if (U.m == SAMPLEX_NEG_INF) st |= SAMPLEX_STATUS_NO_FINITE_LOGIT;
  // J's row (batch × (T + 1)): the loop tests want_j, the pointer is formed at the two writes.
  const bool want_j = a.objective != 0;
  auto obj_row = [&] { return reinterpret_cast<float *>(a.objective) + (u64)row * (a.iterations + 1u); };
  LogShift shift{0.0f, 0.0f};
  if (pass >= 2) {
    const Part A = merge_parts(reinterpret_cast<const Part *>(part_prev) + (u64)row * parts, parts, sh);
    if (A.m != SAMPLEX_NEG_INF) shift = LogShift{A.m, logf(A.s)};
    st |= A.status;
    if (want_j && part == 0 && t == 0) obj_row()[pass - 2] = A.j;
  }
  Weights W = row_weights(a, row);
  if (W.mode == WEIGHTS_TOP_M) {
    const uint2 km = reinterpret_cast<const uint2 *>(topm)[row];
    W.key = km.x;
    W.tie = km.y;
  }
  const bool last_pass = pass == a.iterations + 1u;
  const bool update = pass - 1u < P.iters;
  float *sa = reinterpret_cast<float *>(state) + (u64)row * state_row(vocab);
  float *qr = a.q_out != 0 ? reinterpret_cast<float *>(a.q_out) + (u64)row * vocab : nullptr;
  MSJ acc = msj(SAMPLEX_NEG_INF, 0.0f, 0.0f);
  float best_key = SAMPLEX_NEG_INF;
  u32 best = SAMPLEX_NO_TOKEN;
  for (u32 tile = t0; tile < t1; ++tile) {
    const u32 first = tile * TILE + t * PASS_PER;
    float x[PASS_PER];
    load_run<T, VEC, PASS_PER>(zr, vocab, first, x);
    // The thread's state: two aligned 16-byte vectors (state_row), read and written whole;
    // slots of tokens outside the support are never used.
    const bool in_row = first < vocab;
    float sv[PASS_PER];
    if (pass >= 2u && in_row) {
      VecLoad<float, 4>::load(sa + first, sv);
      VecLoad<float, 4>::load(sa + first + 4, sv + 4);
    }
#pragma unroll
    for (int e = 0; e < PASS_PER; ++e) {
      const u32 i = first + e;
      const float z = sanitize_quiet(x[e]);
      if (!kept(z, thr)) {
        x[e] = SAMPLEX_NEG_INF;
        continue;
      }
      const float u = scale_logit(z, P.inv_t), lp = log_p.of(u);
      const float lq = pass == 1u ? lp : fmaxf(shift.of(sv[e]), -SAMPLEX_FLT_MAX);
      if (last_pass) {
        if (want_j)
          acc.j += objective_term(z, lp, lq, weight_of(W, lp, u, i, st), token_state(lq, P), P);
        x[e] = lq;
      } else {
        float next = lq;
        if (update || want_j) {  // uniform
          const float w = weight_of(W, lp, u, i, st);
          const TokenState ts = token_state(lq, P);
          if (want_j) acc.j += objective_term(z, lp, lq, w, ts, P);
          if (update) next = ascent_step(z, lp, lq, w, ts, P);
        }
        x[e] = next;
      }
    }
    if (!last_pass) {
      if (in_row) {
        reinterpret_cast<float4 *>(sa + first)[0] = make_float4(x[0], x[1], x[2], x[3]);
        reinterpret_cast<float4 *>(sa + first)[1] = make_float4(x[4], x[5], x[6], x[7]);
      }
      acc = msj_merge(acc, thread_max_sum(x));  // keeps acc.j (the merged j is 0)
    } else {
      if (qr != nullptr) write_q(qr, vocab, first, x);
      if (a.tokens != 0)  // the row's seed and offset are read per drawn tile
        draw_tile_with<PASS_THREADS, PASS_PER>(x, first, tile, [&] { return row_rng(a, row); }, best_key, best,
                                               sh.sc, sh.red);
    }
  }
  const MSJ r = block_msj<PASS_THREADS>(acc, sh.red);
  st = block_or<PASS_THREADS>(st, sh.sc);
  if (!last_pass) {
    if (t == 0) {
      Part out;
      out.m = r.m;
      out.s = r.s;
      out.j = r.j;
      out.status = st;
      reinterpret_cast<Part *>(part_next)[blockIdx.x] = out;  // row · parts + part, as above
    }
    return;
  }
  // The last pass: one ticket per row; the last block merges the parts.
  FinalPart *pf = reinterpret_cast<FinalPart *>(part_next) + (u64)row * parts;  // the host's part_f
  if (t == 0) {
    FinalPart out;
    out.key = best_key;
    out.token = best;
    out.j = r.j;
    out.status = st;
    reinterpret_cast<FinalPart *>(part_next)[blockIdx.x] = out;  // pf[part]
  }
  if (!last_block_of_row(tickets, row, parts, sh.last) || t >= 32) return;
  // Warp 0 merges (a loop in thread 0 waited out an L2 latency per few parts, and a row past
  // 262144 tokens at batch 1 has 2 × SMs): the draw as common.cuh's BlocksDraw (a part that drew
  // nothing has key −inf and no token); J: each lane's parts in order, then the warp's sum (the
  // order merge_parts gives J's earlier terms).
  const volatile FinalPart *fp = pf;
  BlocksDraw d;
  u32 status = 0;
  float j = 0.0f;
  for (u32 p = t; p < parts; p += 32) {
    d.offer(fp[p].key, p, fp[p].token);
    j += fp[p].j;
    status |= fp[p].status;
  }
  d.finish();
  const u32 token = d.token;
  j = warp_sum(j);
  status = warp_or(status);
  if (t != 0) return;
  if (want_j) obj_row()[a.iterations] = j;
  if (a.tokens != 0) {
    reinterpret_cast<u32 *>(a.tokens)[row] = token;
    if (token == SAMPLEX_NO_TOKEN) status |= SAMPLEX_STATUS_NO_FINITE_LOGIT;
  }
  write_status(a, row, status);
}

}  // namespace samplex_bok

// ---------------------------------------------------------------------------------------------
// Entry points: one line per dtype emits the row, cluster and grid kernels (no _v1: they check
// the alignment themselves) and the pass and topm kernels at the 16-byte vector width and at
// width 1 (_v1). Optional pointers travel as u64 device addresses (0 = absent). The argument
// lists are mirrored by src/gpu/bok.rs (BokArgs::push_common / push_outputs).
// ---------------------------------------------------------------------------------------------
#define SAMPLEX_BOK_COMMON_PARAMS(T)                                                                  \
  const T *logits, u64 stride, u32 vocab, float temperature, u64 temps, u32 k, u64 ks, float beta,    \
      u64 betas, float lambda, u64 lambdas, float eta, u64 etas, u32 iterations, u64 iterss,          \
      u32 weight_mode, u32 top_m, u64 weights, u64 thresholds

#define SAMPLEX_BOK_OUTPUT_PARAMS \
  u64 seed, u64 offset, u64 seeds, u64 offsets, u64 q_out, u64 objective, u64 tokens, u64 status, u32 status_or

#define SAMPLEX_BOK_ARGS(a)                                                                            \
  samplex_bok::Args a;                                                                                 \
  a.stride = stride;                                                                                   \
  a.vocab = vocab;                                                                                     \
  a.temperature = temperature;                                                                         \
  a.temps = temps;                                                                                     \
  a.k = k;                                                                                             \
  a.ks = ks;                                                                                           \
  a.beta = beta;                                                                                       \
  a.betas = betas;                                                                                     \
  a.lambda = lambda;                                                                                   \
  a.lambdas = lambdas;                                                                                 \
  a.eta = eta;                                                                                         \
  a.etas = etas;                                                                                       \
  a.iterations = iterations;                                                                           \
  a.iterss = iterss;                                                                                   \
  a.weight_mode = weight_mode;                                                                         \
  a.top_m = top_m;                                                                                     \
  a.weights = weights;                                                                                 \
  a.thresholds = thresholds

#define SAMPLEX_BOK_OUTPUTS(a) \
  a.seed = seed;               \
  a.offset = offset;           \
  a.seeds = seeds;             \
  a.offsets = offsets;         \
  a.q_out = q_out;             \
  a.objective = objective;     \
  a.tokens = tokens;           \
  a.status = status;           \
  a.status_or = status_or

#define SAMPLEX_BOK_ENTRIES(T, NAME, VEC, SUFFIX)                                                        \
  extern "C" __global__ void __launch_bounds__(samplex_bok::PASS_THREADS)                               \
      samplex_bok_pass_##NAME##SUFFIX(SAMPLEX_BOK_COMMON_PARAMS(T), SAMPLEX_BOK_OUTPUT_PARAMS, u32 parts, \
                                      u32 pass, u64 state, u64 part_u, u64 part_prev, u64 part_next,    \
                                      u64 topm, u64 tickets) {                                          \
    SAMPLEX_BOK_ARGS(a);                                                                                \
    SAMPLEX_BOK_OUTPUTS(a);                                                                             \
    samplex_bok::pass_body<T, VEC>(logits, a, parts, pass, state, part_u, part_prev, part_next, topm,   \
                                   tickets);                                                            \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(samplex_bok::SELECT_THREADS)                             \
      samplex_bok_topm_##NAME##SUFFIX(SAMPLEX_BOK_COMMON_PARAMS(T), u64 topm) {                         \
    SAMPLEX_BOK_ARGS(a);                                                                                \
    a.seed = a.offset = a.seeds = a.offsets = 0;                                                        \
    a.q_out = a.objective = a.tokens = a.status = 0;                                                    \
    a.status_or = 0;                                                                                    \
    samplex_bok::topm_body<T, VEC>(logits, a, topm);                                                    \
  }

// samplex_bok_row, samplex_bok_cluster and samplex_bok_grid have no _v1 twin: they check the
// alignment themselves (they load the row once). The first two take the same arguments; the
// grid adds blocks (per row), barriers (a RowBarrier per row) and exchange (a ClusterShared per
// block).
#define SAMPLEX_BOK_ROW(T, NAME, CODE)                                                                  \
  extern "C" __global__ void __launch_bounds__(samplex_bok::ROW_THREADS, 1)                             \
      samplex_bok_row_##NAME(SAMPLEX_BOK_COMMON_PARAMS(T), SAMPLEX_BOK_OUTPUT_PARAMS) {                 \
    SAMPLEX_BOK_ARGS(a);                                                                                \
    SAMPLEX_BOK_OUTPUTS(a);                                                                             \
    samplex_bok::row_body(logits, CODE, a);                                                             \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(samplex_bok::ROW_THREADS, 1)                             \
      samplex_bok_cluster_##NAME(SAMPLEX_BOK_COMMON_PARAMS(T), SAMPLEX_BOK_OUTPUT_PARAMS) {             \
    SAMPLEX_BOK_ARGS(a);                                                                                \
    SAMPLEX_BOK_OUTPUTS(a);                                                                             \
    samplex_bok::cluster_body(logits, CODE, a);                                                         \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(samplex_bok::ROW_THREADS, 1)                             \
      samplex_bok_grid_##NAME(SAMPLEX_BOK_COMMON_PARAMS(T), SAMPLEX_BOK_OUTPUT_PARAMS, u32 blocks,       \
                              u64 barriers, u64 exchange) {                                             \
    SAMPLEX_BOK_ARGS(a);                                                                                \
    SAMPLEX_BOK_OUTPUTS(a);                                                                             \
    samplex_bok::grid_body(logits, CODE, a, blocks, barriers, exchange);                                \
  }

#define SAMPLEX_BOK_DTYPE(T, NAME, VEC, CODE) \
  SAMPLEX_BOK_ROW(T, NAME, CODE)              \
  SAMPLEX_BOK_ENTRIES(T, NAME, VEC, )         \
  SAMPLEX_BOK_ENTRIES(T, NAME, 1, _v1)

SAMPLEX_BOK_DTYPE(float, f32, 4, samplex_bok::DTYPE_F32)
SAMPLEX_BOK_DTYPE(f16_t, f16, 8, samplex_bok::DTYPE_F16)
SAMPLEX_BOK_DTYPE(bf16_t, bf16, 8, samplex_bok::DTYPE_BF16)
