// samplex — kernels/sparsemax.cu: sparsemax by sort-and-threshold.
//
// SPEC.md "Sparsemax": q_i = max(u_i − θ, 0), u = z/τ, θ the unique value with Σ q = 1. With u
// sorted descending, k* = max{k : 1 + k·u_(k) > Σ_{j≤k} u_(j)} and θ = (Σ_{j≤k*} u_(j) − 1)/k*.
// θ ≥ max u − 1, so only the candidates u_i > max u − 1 can be in the support. τ = 0 is greedy.
// Also SPEC "Drawing a token", "Bad input"; docs/ARCHITECTURE.md "Kernel conventions".
//
// Kernels (<T> = f32 | f16 | bf16, each also <T>_any for rows that are not 16-byte aligned, the
// grid's <T>_v1, scalar; see the entry points):
//   samplex_sparsemax_project_<T>          per row: q (dense, optional), k* (optional), one
//                                          token drawn from q (optional), status (optional)
//   samplex_sparsemax_project_cluster_<T>  the same, a row split over a cluster (sm_90)
//   samplex_sparsemax_project_grid_<T>     the same, a row split over a cooperative grid
//
// Grid/block mapping: one block of 1024 threads per row (grid = batch). Passes over the row are
// strided: thread t reads vectors t, t + 1024, ... (VEC elements each, U vectors in flight), then
// the ragged tail one element per thread. When the batch is too small to fill the GPU
// (launch::cluster_candidates: batch × C ≤ SMs, vocab ≥ C × 4096, C ∈ {8, 4, 2}) a row is split over C
// blocks instead (`SplitRow`), block r over whole draw tiles [lo, lo + len), its slice staged as
// f32 in dynamic shared memory on the first read when it fits: a thread-block cluster per row
// (DSMEM), or C consecutive blocks of a cooperative launch (global exchange + row barriers,
// common.cuh §9). Every step below then runs in each block over its slice; the row's values
// are merged as the group section says, and every branch stays uniform across the row's blocks.
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
//      One block per row after step 3: the row is not read again (zeros over it, then the
//      candidates above θ' from the sorted list, the same values); otherwise one more read.
//   6. Draw (common.cuh §7, linear weights w = q, log-scale 0 — cpu::draw_weights): only marked
//      tiles; per tile W_t = block sum, key_t = tile_key(0, W_t, ua); the candidate is searched
//      (block_tile_candidate, 2 consecutive tokens per thread) only when key_t beats the best so
//      far (strict >, so the lower tile keeps a tie).
//   G. Greedy (τ = 0): argmax of z, ties to the lower index; q one-hot, k* = 1.
//   E. No finite logit: q = 0, k* = 0, token u32::MAX, SAMPLEX_STATUS_NO_FINITE_LOGIT.
//
// Shared memory (static, ~33 KB): a union of the candidate arrays (4096 × (f32 v, u32 index))
// and the radix histogram (256 × (u32 count, i64 sum)), one BlockScratch<1024>, the tile
// bitmask (1024 tiles = 2M tokens; longer rows visit every tile) and a few scalars. A split
// block adds dynamic shared memory: in a cluster its SparseHead (38944 B: merge slots, step 4's
// histograms, its candidates), read by the others over DSMEM, then the staged slice; in a
// cooperative grid the staged slice alone (the SparseHead is its exchange entry in global
// memory). Staged: 4 B per token of the slice (128256 tokens / 8 blocks: 8 tiles, 64 KB).
//
// Determinism: block reductions are fixed trees; positions come from scans, not atomics; the
// sort result depends only on the multiset of values; histogram sums are integers; the tile
// bitmask uses atomicOr (order-free); a split row merges its blocks' values in rank order.
// Nothing depends on scheduling, so the split kernels give the one-block kernel's bits.
#include "common.cuh"

// The split entries' dynamic shared memory (a cluster's SparseHead, then the staged slice).
SAMPLEX_DYNAMIC_SHARED(float4, samplex_sparsemax_dyn_smem);

namespace samplex_sparsemax {

constexpr int THREADS = 1024;
constexpr int WARPS = THREADS / 32;
constexpr u32 CAP = 4096;                                   // candidates sorted on chip (step 3)
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

// Strided pass over a row, a vector at a time: fv(base + index, x, n) with x[0 .. n) the raw
// values of tokens index .. index + n − 1 widened to f32, every token exactly once. Thread t
// takes vectors t, t + THREADS, ... (n = VEC) with U vectors in flight, then the ragged tail
// (< VEC tokens) one per thread (n = 1). Indices rise along a thread's calls.
template <typename T, int VEC, typename FV>
__device__ __forceinline__ void strided_vectors(const T *row, u32 vocab, u32 base, FV &fv) {
  constexpr int U = VEC >= 8 ? 2 : (VEC >= 4 ? 4 : 8);
  const u32 nvec = vocab / VEC;
  u32 v = threadIdx.x;
  for (; v + (U - 1) * THREADS < nvec; v += U * THREADS) {
    float x[U][VEC];
#pragma unroll
    for (int k = 0; k < U; ++k) VecLoad<T, VEC>::load(row + (u64)(v + k * THREADS) * VEC, x[k]);
#pragma unroll
    for (int k = 0; k < U; ++k) fv(base + (v + k * THREADS) * VEC, x[k], (u32)VEC);
  }
  for (; v < nvec; v += THREADS) {
    float x[VEC];
    VecLoad<T, VEC>::load(row + (u64)v * VEC, x);
    fv(base + v * VEC, x, (u32)VEC);
  }
  if (VEC > 1) {
    const u32 tail = nvec * VEC + threadIdx.x;
    if (tail < vocab) {
      float x[VEC] = {};
      x[0] = to_f32(row[tail]);
      fv(base + tail, x, 1u);
    }
  }
}

// Every pass's read of a row (its tokens base, base + 1, ...), by vectors of
// Lanes<T, VEC>::N tokens: strided_vectors at width VEC.
// VEC = 0 (the _any twin, for a row h elements past a 16-byte boundary): the first
// 16 / sizeof(T) − h tokens one per thread, then the rest, which starts at that boundary, at
// the 16-byte width. That only moves tokens between threads, and no result depends on which
// thread holds a token ("Determinism"). The offset travels as `base`, not in a wrapper of fv:
// the split kernels sit at 64 registers and an extra captured value spilled.
template <typename T, int VEC, typename FV>
__device__ __forceinline__ void for_each_vector(const T *row, u32 vocab, u32 base, FV &fv) {
  if constexpr (VEC == 0) {
    constexpr u32 W = Lanes<T, 0>::N;
    const u32 h = elements_past_16_bytes(row);
    const u32 head = min((W - h) & (W - 1u), vocab);
    if (threadIdx.x < head) {
      float x[W] = {};
      x[0] = to_f32(row[threadIdx.x]);
      fv(base + threadIdx.x, x, 1u);
    }
    strided_vectors<T, (int)W>(row + head, vocab - head, base + head, fv);
  } else {
    strided_vectors<T, VEC>(row, vocab, base, fv);
  }
}

// for_each_vector one token at a time: f(base + index, raw value widened to f32).
template <typename T, int VEC, typename F>
__device__ __forceinline__ void for_each_token(const T *row, u32 vocab, u32 base, F &f) {
  auto fv = [&](u32 i, const float (&x)[Lanes<T, VEC>::N], u32 n) {
#pragma unroll
    for (u32 e = 0; e < (u32)Lanes<T, VEC>::N; ++e)
      if (e < n) f(i + e, x[e]);
  };
  for_each_vector<T, VEC>(row, vocab, base, fv);
}

// ---------------------------------------------------------------------------------------------
// Where a row lives (the "row group"): all in one block (SoloRow, blockIdx.x = row), or split
// over C blocks (SplitRow), block r over a contiguous slice [lo, lo + len) of whole draw tiles
// (lo a multiple of SAMPLEX_DRAW_TILE, so that every tile's draw is the one-block kernel's),
// linked as a thread-block cluster (ClusterLink, sm_90) or as C consecutive blocks of a
// cooperative launch (GridLink, every GPU). The body is written once over a group:
//   first_read(zr, f), read(zr, f)  f(i, x) for every token i of the slice (row index, raw
//                                   value widened): the strided pass of for_each_token. A split
//                                   block may keep its slice as f32 in shared memory on the first
//                                   read (`stage`) and read it there on every later pass.
//   value(zr, i)                    token i's raw value (the draw's per-tile reads)
//   merge(v, f)                     the row's value from every block's v: f folded in rank order
//   cand_v(sh), cand_i(sh)          where this block writes its candidates (step 2)
//   gather(n, sh)                   the row's candidate count C from the blocks' n; when
//                                   C <= CAP every block gets all of them in sh.cand, in rank
//                                   order (the sort result depends only on their values, so
//                                   every block, and the one-block kernel, sorts the same v)
//   hist_ready(sh), bin(sh, d, ..), hist_done()   step 4's histogram: after the block's own is
//                                   built; the row's bin d; after the last read of it
//   leader(), finish()              the block that writes the row's outputs; before exiting
// ---------------------------------------------------------------------------------------------
struct SoloRow {
  static constexpr bool SPLIT = false;
  static constexpr int REG_CAND = 4;  // step 2's candidates kept in registers per thread
  static constexpr u32 lo = 0;
  u32 row, len;
  template <typename T, int VEC, typename F> __device__ __forceinline__ void first_read(const T *zr, F &f) {
    for_each_token<T, VEC>(zr, len, 0u, f);
  }
  template <typename T, int VEC, typename F> __device__ __forceinline__ void read(const T *zr, F &f) {
    for_each_token<T, VEC>(zr, len, 0u, f);
  }
  template <typename T, int VEC, typename FV> __device__ __forceinline__ void read_vectors(const T *zr, FV &fv) {
    for_each_vector<T, VEC>(zr, len, 0u, fv);
  }
  template <typename T> __device__ __forceinline__ float value(const T *zr, u32 i) const { return to_f32(zr[i]); }
  template <typename P, typename F> __device__ __forceinline__ P merge(const P &v, F) { return v; }
  __device__ __forceinline__ float *cand_v(Shared &sh) { return sh.cand.v; }
  __device__ __forceinline__ u32 *cand_i(Shared &sh) { return sh.cand.i; }
  __device__ __forceinline__ u32 gather(u32 n, Shared &) { return n; }
  __device__ __forceinline__ void hist_ready(Shared &) { __syncthreads(); }
  __device__ __forceinline__ void bin(const Shared &sh, u32 d, u32 &c, long long &s) const {
    c = sh.hist.cnt[d];
    s = sh.hist.sum[d];
  }
  __device__ __forceinline__ void hist_done() {}
  __device__ __forceinline__ bool leader() const { return true; }
  __device__ __forceinline__ void finish() {}
};

// What the blocks of a split row exchange (one per block): in a cluster, the head of its
// dynamic shared memory (read by the others over DSMEM), then the staged slice; in a
// cooperative grid, an entry of the exchange in global memory. The merge slots and histograms
// are double-buffered by merge parity (as kernels/topk.cu's ClusterHead), so each merge costs
// one barrier; the candidates are written once per launch.
struct SparseHead {
  uint4 slot[2];               // this block's value of a scalar merge
  u32 cnt[2][BINS];            // step 4's histogram: counts,
  long long sum[2][BINS];      //   fixed-point sums
  float v[CAP];                // this block's candidates (step 2), at most CAP
  u32 i[CAP];
};
static_assert(sizeof(SparseHead) <= 49184, "an entry of the grid exchange (CLUSTER_HEAD_BYTES, src/gpu/launch.rs)");
static_assert(sizeof(SparseHead) == 38944, "SPARSE_HEAD_BYTES in src/gpu/sparsemax.rs");
static_assert(sizeof(SparseHead) % 16 == 0, "the staged slice after it is read as float4");

#if SAMPLEX_CLUSTERS
struct ClusterLink {
  __device__ __forceinline__ static SparseHead *mine() {
    return reinterpret_cast<SparseHead *>(static_cast<float4 *>(samplex_sparsemax_dyn_smem));
  }
  __device__ __forceinline__ u32 size() const { return cluster_size(); }
  __device__ __forceinline__ u32 rank() const { return cluster_rank(); }
  // The staged slice: after the head.
  __device__ __forceinline__ static float *stage() { return reinterpret_cast<float *>(mine() + 1); }
  __device__ __forceinline__ void sync() const { cluster_sync(); }
  __device__ __forceinline__ void finish() const { cluster_sync(); }  // the others may still read
  __device__ __forceinline__ u32 peer_u32(const u32 *p, u32 r) const { return cluster_load_u32(cluster_map(p, r)); }
  __device__ __forceinline__ u64 peer_u64(const u64 *p, u32 r) const { return cluster_load_u64(cluster_map(p, r)); }
  __device__ __forceinline__ uint4 peer_v4(const uint4 *p, u32 r) const { return cluster_load_v4(cluster_map(p, r)); }
};
#endif

struct GridLink {
  u32 blocks;
  u64 barriers, exchange;  // the kernel's arguments: a RowBarrier per row, a SparseHead per block
  // This block's exchange entry (the row's are consecutive, by rank: blockIdx.x = row · blocks + rank).
  __device__ __forceinline__ SparseHead *mine() const { return reinterpret_cast<SparseHead *>(exchange) + blockIdx.x; }
  // The staged slice: all of the dynamic shared memory.
  __device__ __forceinline__ static float *stage() {
    return reinterpret_cast<float *>(static_cast<float4 *>(samplex_sparsemax_dyn_smem));
  }
  __device__ __forceinline__ u32 size() const { return blocks; }
  __device__ __forceinline__ u32 rank() const { return blockIdx.x % blocks; }
  __device__ __forceinline__ void sync() const {
    row_barrier(reinterpret_cast<RowBarrier *>(barriers) + blockIdx.x / blocks, blocks);
  }
  __device__ __forceinline__ void finish() const {}
  // p (in this block's entry) in rank r's.
  template <typename U> __device__ __forceinline__ const U *in_rank(const U *p, u32 r) const {
    const long long by = ((long long)r - (long long)rank()) * (long long)sizeof(SparseHead);
    return reinterpret_cast<const U *>(reinterpret_cast<const char *>(p) + by);
  }
  __device__ __forceinline__ u32 peer_u32(const u32 *p, u32 r) const { return load_cg_u32(in_rank(p, r)); }
  __device__ __forceinline__ u64 peer_u64(const u64 *p, u32 r) const { return load_cg_u64(in_rank(p, r)); }
  __device__ __forceinline__ uint4 peer_v4(const uint4 *p, u32 r) const { return load_cg_v4(in_rank(p, r)); }
};

template <typename Link> struct SplitRow : RowMerges<SplitRow<Link>> {
  static constexpr bool SPLIT = true;
  static constexpr int REG_CAND = 4;  // step 2's candidates kept in registers per thread
  u32 row, lo, len;
  bool staged;   // the slice is kept as f32 in shared memory (Link::stage()), else every pass
                 // reads the logits
  u32 phase;     // merges so far: the parity picks the buffers
  Link link;

  __device__ __forceinline__ u32 size() const { return link.size(); }
  __device__ __forceinline__ u32 rank() const { return link.rank(); }

  template <typename T, int VEC, typename F> __device__ __forceinline__ void first_read(const T *zr, F &f) {
    float *st = Link::stage();
    const bool keep = staged;
    const u32 base = lo;
    auto g = [&](u32 i, float x) {
      if (keep) st[i - base] = x;
      f(i, x);
    };
    for_each_token<T, VEC>(zr + lo, len, lo, g);
  }
  template <typename T, int VEC, typename F> __device__ __forceinline__ void read(const T *zr, F &f) {
    if (staged) for_each_token<float, 4>(Link::stage(), len, lo, f);  // 16-byte aligned
    else for_each_token<T, VEC>(zr + lo, len, lo, f);
  }
  template <typename T, int VEC, typename FV> __device__ __forceinline__ void read_vectors(const T *zr, FV &fv) {
    if (staged) for_each_vector<float, 4>(Link::stage(), len, lo, fv);
    else for_each_vector<T, VEC>(zr + lo, len, lo, fv);
  }
  template <typename T> __device__ __forceinline__ float value(const T *zr, u32 i) const {
    return staged ? Link::stage()[i - lo] : to_f32(zr[i]);
  }

  // Thread 0 publishes this block's value in the slot of this merge's parity, then one barrier:
  // the returned slot holds every rank's value (read it with `published`).
  template <typename P> __device__ __forceinline__ const uint4 *publish(const P &v) {
    uint4 *slot = &link.mine()->slot[phase & 1];
    publish_raw16(slot, v);
    ++phase;
    link.sync();
    return slot;
  }
  template <typename P> __device__ __forceinline__ P published(const uint4 *slot, u32 r) const {
    return from_raw16<P>(link.peer_v4(slot, r));
  }

  __device__ __forceinline__ float *cand_v(Shared &) { return link.mine()->v; }
  __device__ __forceinline__ u32 *cand_i(Shared &) { return link.mine()->i; }
  // The barrier of the count's merge also publishes the candidates each block wrote.
  __device__ __forceinline__ u32 gather(u32 n, Shared &sh) {
    const uint4 *slot = publish(n);
    const u32 size = link.size();
    u32 total = 0;
#pragma unroll 1
    for (u32 r = 0; r < size; ++r) total += published<u32>(slot, r);
    if (total > CAP) return total;  // uniform: step 4
    const SparseHead *m = link.mine();
    u32 off = 0;
#pragma unroll 1
    for (u32 r = 0; r < size; ++r) {
      const u32 nr = published<u32>(slot, r);
      for (u32 j = threadIdx.x; j < nr; j += THREADS) {
        sh.cand.v[off + j] = __uint_as_float(link.peer_u32(reinterpret_cast<const u32 *>(&m->v[j]), r));
        sh.cand.i[off + j] = link.peer_u32(&m->i[j], r);
      }
      off += nr;
    }
    return total;
  }

  __device__ __forceinline__ void hist_ready(Shared &sh) {
    __syncthreads();  // the block's histogram is complete
    SparseHead *m = link.mine();
    const u32 p = phase & 1;
    for (u32 b = threadIdx.x; b < (u32)BINS; b += THREADS) {
      m->cnt[p][b] = sh.hist.cnt[b];
      m->sum[p][b] = sh.hist.sum[b];
    }
    link.sync();
  }
  __device__ __forceinline__ void bin(const Shared &, u32 d, u32 &c, long long &s) const {
    const SparseHead *m = link.mine();
    const u32 p = phase & 1, size = link.size();
    u32 cs = 0;
    u64 ss = 0;
#pragma unroll 1
    for (u32 r = 0; r < size; ++r) {
      cs += link.peer_u32(&m->cnt[p][d], r);
      ss += link.peer_u64(reinterpret_cast<const u64 *>(&m->sum[p][d]), r);  // two's complement
    }
    c = cs;
    s = (long long)ss;
  }
  __device__ __forceinline__ void hist_done() { ++phase; }
  __device__ __forceinline__ bool leader() const { return link.rank() == 0; }
  __device__ __forceinline__ void finish() const { link.finish(); }

  // Row blockIdx.x / size of `size`-block rows, as block `rank`: whole tiles,
  // per = ceil(ceil(vocab / size) / TILE) tiles (src/gpu/sparsemax.rs: slice_len).
  __device__ __forceinline__ void place(u32 vocab, u32 size, u32 r, bool stage) {
    const u32 per = ceil_div(ceil_div(vocab, size), (u32)SAMPLEX_DRAW_TILE) * (u32)SAMPLEX_DRAW_TILE;
    row = blockIdx.x / size;
    lo = min(r * per, vocab);
    len = min(lo + per, vocab) - lo;
    staged = stage;
    phase = 0;
  }
};

// Step 4's walk from the top bin: thread t < BINS holds bin d = BINS − 1 − t, (c, s) (the row's
// count and sum there; 0 in the other threads), and gets the (count, sum) of all bins ≥ d under
// the current prefix (an inclusive scan in thread order).
__device__ __forceinline__ void bins_from_top(u32 c, long long s, u32 &cnt_ge, long long &sum_ge, Shared &sh) {
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
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

template <typename T, int VEC, typename G>
__device__ __forceinline__ u32 radix_threshold(G &g, const T *zr, float inv_t, float M, float cut, float &theta,
                                               Shared &sh) {
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
          shared_add_u64(reinterpret_cast<u64 *>(&sh.hist.sum[cur]), (u64)cur_sum);
        }
        cur = d;
        cur_cnt = 0;
        cur_sum = 0;
      }
      ++cur_cnt;
      cur_sum += to_fixed(v);
    };
    g.template read<T, VEC>(zr, add);
    if (cur >= 0) {
      atomicAdd(&sh.hist.cnt[cur], cur_cnt);
      shared_add_u64(reinterpret_cast<u64 *>(&sh.hist.sum[cur]), (u64)cur_sum);
    }
    g.hist_ready(sh);
    const int t = threadIdx.x;
    u32 c_d = 0;  // the row's bin d = BINS − 1 − t
    long long s_d = 0;
    if (t < BINS) g.bin(sh, (u32)(BINS - 1 - t), c_d, s_d);
    u32 cnt_ge;
    long long sum_ge;
    bins_from_top(c_d, s_d, cnt_ge, sum_ge, sh);
    g.hist_done();
    if (t < BINS && c_d > 0) {
      const int d = BINS - 1 - t;
      // f(L) ≥ 0 at the bin's lower edge L: Σ_{v ≥ L} v − L·#{v ≥ L} ≥ 1, in fixed point.
      const long long c = (long long)(above_cnt + cnt_ge);
      const long long s = above_sum + sum_ge;
      const float L = key_to_float(prefix | ((u32)d << shift));
      if (s - to_fixed(L) * c >= FX_ONE) atomicMin(&sh.sel, (u32)t);
    }
    __syncthreads();
    const u32 sel = sh.sel;
    // The owner of the selected bin (or of bin 0, when none qualifies) reports what joins "above".
    if ((sel < (u32)BINS && t == (int)sel) || (sel == (u32)BINS && t == BINS - 1)) {
      sh.res_cnt = sel < (u32)BINS ? cnt_ge - c_d : cnt_ge;
      sh.res_sum = sel < (u32)BINS ? sum_ge - s_d : sum_ge;
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

// Step 5's dense write of q, a read's vector at a time: 16-byte stores where the vector holds
// a multiple of 4 tokens and starts 16-byte aligned in q, else one float at a time. When q's
// row is aligned that is every whole vector of a staged slice or of aligned logits (they start
// at multiples of the width from the slice's start, a multiple of SAMPLEX_DRAW_TILE). One float
// per token, at a 16- or 32-byte stride across the warp, took 4-8 times the store requests.
struct QWriter {
  float *q;
  float inv_t, M, cut, theta;
  template <int N> __device__ __forceinline__ void operator()(u32 i, const float (&x)[N], u32 n) const {
    float y[N];
#pragma unroll
    for (int e = 0; e < N; ++e) y[e] = q_of(x[e], inv_t, M, cut, theta);
    if (N % 4 == 0 && n == (u32)N && (reinterpret_cast<u64>(q + i) & 15u) == 0) {
#pragma unroll
      for (int e = 0; e < N; e += 4)
        *reinterpret_cast<float4 *>(q + i + e) = make_float4(y[e], y[e + 1], y[e + 2], y[e + 3]);
    } else {
#pragma unroll
      for (int e = 0; e < N; ++e)
        if ((u32)e < n) q[i + e] = y[e];
    }
  }
};

// The best tile's key and its drawn token (a split row's blocks fold theirs in rank order, the
// later winning only on a strictly larger key: tile order, as one block's loop).
struct DrawPick {
  float key;
  u32 token;
};
__device__ __forceinline__ DrawPick draw_pick(DrawPick a, DrawPick b) { return b.key > a.key ? b : a; }

// The block's tiles: those of its slice (none when the slice is empty, lo = vocab: the last
// blocks of a row with fewer tiles than C × ceil(tiles / C)).
template <typename T, typename G>
__device__ __forceinline__ DrawPick draw(G &g, const T *zr, u32 vocab, float inv_t, float M, float cut,
                                         float theta, bool all_tiles, const RowRng &rng, Shared &sh) {
  DrawPick best;
  best.key = SAMPLEX_NEG_INF;
  best.token = SAMPLEX_NO_TOKEN;
  const u32 end = ceil_div(g.lo + g.len, SAMPLEX_DRAW_TILE);
  for (u32 tile = ceil_div(g.lo, SAMPLEX_DRAW_TILE); tile < end; ++tile) {
    if (!all_tiles && ((sh.tile_mask[tile >> 5] >> (tile & 31)) & 1u) == 0) continue;  // uniform
    const u32 first = tile * SAMPLEX_DRAW_TILE + threadIdx.x * DRAW_PER;
    float w[DRAW_PER];
    float mine = 0.0f;
#pragma unroll
    for (int e = 0; e < DRAW_PER; ++e) {
      w[e] = first + e < vocab ? q_of(g.value(zr, first + e), inv_t, M, cut, theta) : 0.0f;
      mine += w[e];
    }
    const float W = block_sum<THREADS>(mine, sh.sc);
    if (!(W > 0.0f)) continue;  // uniform
    const Philox4 r = row_random(rng.seed, rng.offset, rng.stream, tile);
    const float key = tile_key(0.0f, W, uniform_open(r.x));
    if (key > best.key) {  // uniform: every thread has the same key
      float total;
      best.token = block_tile_candidate<THREADS, DRAW_PER>(w, first, uniform_open(r.y), total, sh.sc);
      best.key = key;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// The kernel body.
// ---------------------------------------------------------------------------------------------

// The row's outputs, written once (by the leader's thread 0).
__device__ __forceinline__ void write_row(u32 row, u64 support, u32 k, u64 tokens, u32 tok, u64 status, u32 st) {
  if (support != 0) reinterpret_cast<u32 *>(support)[row] = k;
  if (tokens != 0) reinterpret_cast<u32 *>(tokens)[row] = tok;
  if (status != 0) reinterpret_cast<u32 *>(status)[row] = st;
}

// Step 1's merge: the maximum and the status bits.
struct MaxPick {
  float m;
  u32 st;
};
// Step G's merge: the argmax (ties to the lower index) and the status bits.
struct GreedyPick {
  ArgMax a;
  u32 st;
};

// Step G: greedy row (τ = 0).
template <typename T, int VEC, typename G>
__device__ __forceinline__ void greedy_row(G &g, const T *zr, u32 status_in, float *q_row, u64 support,
                                           u64 tokens, u64 status, Shared &sh) {
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
  g.template first_read<T, VEC>(zr, op);
  GreedyPick p;
  p.a = block_argmax<THREADS>(a, sh.sc);
  p.st = block_or<THREADS>(st, sh.sc);
  p = g.merge(p, [](GreedyPick x, GreedyPick y) {
    x.a = argmax_pick(x.a, y.a);
    x.st |= y.st;
    return x;
  });
  const u32 tok = p.a.v > SAMPLEX_NEG_INF ? p.a.i : SAMPLEX_NO_TOKEN;
  if (q_row != nullptr)
    for (u32 i = g.lo + threadIdx.x; i < g.lo + g.len; i += THREADS) q_row[i] = i == tok ? 1.0f : 0.0f;
  if (g.leader() && threadIdx.x == 0)
    write_row(g.row, support, tok == SAMPLEX_NO_TOKEN ? 0u : 1u, tokens, tok, status,
              tok == SAMPLEX_NO_TOKEN ? p.st | SAMPLEX_STATUS_NO_FINITE_LOGIT : p.st);
}

template <typename T, int VEC, typename G>
__device__ __forceinline__ void project(G &g, const T *logits, u64 stride, u32 vocab, float temperature, u64 temps,
                                        u64 seed, u64 offset, u64 seeds, u64 offsets, u64 probs, u64 support,
                                        u64 tokens, u64 status) {
  __shared__ Shared sh;
  const u32 row = g.row;
  const T *zr = row_ptr(logits, row, stride);
  float *q_row = probs != 0 ? reinterpret_cast<float *>(probs) + (u64)row * vocab : nullptr;
  u32 st = 0;
  const float tau = row_temperature(temperature, temps, row, st);
  if (tau == 0.0f) {  // uniform: one τ per row
    greedy_row<T, VEC>(g, zr, st, q_row, support, tokens, status, sh);
    g.finish();
    return;
  }
  const float inv_t = inverse_temperature(tau);

  // Step 1.
  float m = SAMPLEX_NEG_INF;
  auto max_op = [&](u32, float x) { m = fmaxf(m, scale_logit(sanitize(x, st), inv_t)); };
  g.template first_read<T, VEC>(zr, max_op);
  MaxPick mp;
  mp.m = block_max<THREADS>(m, sh.sc);
  mp.st = block_or<THREADS>(st, sh.sc);
  mp = g.merge(mp, [](MaxPick a, MaxPick b) {
    a.m = fmaxf(a.m, b.m);
    a.st |= b.st;
    return a;
  });
  const float M = mp.m;
  st = mp.st;
  if (M == SAMPLEX_NEG_INF) {  // step E (uniform)
    if (q_row != nullptr)
      for (u32 i = g.lo + threadIdx.x; i < g.lo + g.len; i += THREADS) q_row[i] = 0.0f;
    if (g.leader() && threadIdx.x == 0)
      write_row(row, support, 0u, tokens, SAMPLEX_NO_TOKEN, status, st | SAMPLEX_STATUS_NO_FINITE_LOGIT);
    g.finish();
    return;
  }
  const float cut = M - 1.0f;

  // Step 2.
  constexpr int REG_CAND = G::REG_CAND;
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
  g.template read<T, VEC>(zr, count_op);
  u32 nb;  // this block's candidates
  const u32 pos = block_exclusive_sum_u32(n, nb, sh.sc);
  if (nb <= CAP) {  // uniform
    float *dv = g.cand_v(sh);
    u32 *di = g.cand_i(sh);
    const u32 spilled = block_or<THREADS>(n > (u32)REG_CAND ? 1u : 0u, sh.sc);
    if (spilled == 0u) {
#pragma unroll
      for (int r = 0; r < REG_CAND; ++r)
        if ((u32)r < n) {
          dv[pos + r] = cv[r];
          di[pos + r] = ci[r];
        }
    } else {  // a second gather pass writes every candidate at its position
      u32 k = pos;
      auto write_op = [&](u32 i, float x) {
        const float u = scale_logit(sanitize_quiet(x), inv_t);
        if (u >= cut) {
          dv[k] = u - M;
          di[k] = i;
          ++k;
        }
      };
      g.template read<T, VEC>(zr, write_op);
    }
  }
  const u32 C = g.gather(nb, sh);
  for (u32 w = threadIdx.x; w < MASK_WORDS; w += THREADS) sh.tile_mask[w] = 0u;
  const u32 tiles = ceil_div(vocab, SAMPLEX_DRAW_TILE);
  bool all_tiles = tiles > MASK_WORDS * 32;
  float theta;
  u32 k_star;
  if (C <= CAP) {  // uniform
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
    k_star = radix_threshold<T, VEC>(g, zr, inv_t, M, cut, theta, sh);
    all_tiles = true;
  }

  // Step 5.
  if (q_row != nullptr) {
    if (!G::SPLIT && C <= CAP) {
      // One block per row (large batches: by now the row is in HBM, not L2): q is 0 but at the
      // sorted candidates, so the row is not read again. (A split row reads its staged slice.)
      for (u32 i = threadIdx.x; i < vocab; i += THREADS) q_row[i] = 0.0f;
      __syncthreads();  // the block's zeros land before its values
      for (u32 j = threadIdx.x; j < C; j += THREADS) {
        const float v = sh.cand.v[j];
        if (v > theta) q_row[sh.cand.i[j]] = v - theta;  // q_of's value: v is u − M as q_of has it
      }
    } else {
      QWriter write_q{q_row, inv_t, M, cut, theta};
      g.template read_vectors<T, VEC>(zr, write_q);
    }
  }
  // Step 6.
  DrawPick pick;
  pick.key = SAMPLEX_NEG_INF;
  pick.token = SAMPLEX_NO_TOKEN;
  if (tokens != 0) {
    const RowRng rng = row_rng(seed, offset, seeds, offsets, row);
    pick = g.merge(draw<T>(g, zr, vocab, inv_t, M, cut, theta, all_tiles, rng, sh), draw_pick);
  }
  if (g.leader() && threadIdx.x == 0) {
    if (tokens != 0 && pick.token == SAMPLEX_NO_TOKEN) st |= SAMPLEX_STATUS_NO_FINITE_LOGIT;
    write_row(row, support, k_star, tokens, pick.token, status, st);
  }
  g.finish();
}

// The entries' bodies: one row per block; or C blocks per row, a cluster's (sm_90) or C
// consecutive blocks of a cooperative grid, each over whole draw tiles of the row
// (SplitRow::place); stage != 0: each block keeps its slice, as f32, in dynamic shared memory
// (after the SparseHead in a cluster), and the passes after step 1 read it there.
template <typename T, int VEC>
__device__ __forceinline__ void project_block(const T *logits, u64 stride, u32 vocab, float temperature, u64 temps,
                                              u64 seed, u64 offset, u64 seeds, u64 offsets, u64 probs,
                                              u64 support, u64 tokens, u64 status) {
  SoloRow g;
  g.row = blockIdx.x;
  g.len = vocab;
  project<T, VEC>(g, logits, stride, vocab, temperature, temps, seed, offset, seeds, offsets, probs, support,
                  tokens, status);
}

template <typename T, int VEC>
__device__ __forceinline__ void project_cluster(const T *logits, u64 stride, u32 vocab, float temperature,
                                                u64 temps, u64 seed, u64 offset, u64 seeds, u64 offsets, u64 probs,
                                                u64 support, u64 tokens, u64 status, u32 stage) {
#if SAMPLEX_CLUSTERS
  SplitRow<ClusterLink> g;
  g.place(vocab, cluster_size(), cluster_rank(), stage != 0);
  project<T, VEC>(g, logits, stride, vocab, temperature, temps, seed, offset, seeds, offsets, probs, support,
                  tokens, status);
#else
  (void)logits, (void)stride, (void)vocab, (void)temperature, (void)temps, (void)seed, (void)offset;
  (void)seeds, (void)offsets, (void)probs, (void)support, (void)tokens, (void)status, (void)stage;
  asm volatile("trap;");  // never launched: the host checks the function's PTX version first
#endif
}

template <typename T, int VEC>
__device__ __forceinline__ void project_grid(const T *logits, u64 stride, u32 vocab, float temperature, u64 temps,
                                             u64 seed, u64 offset, u64 seeds, u64 offsets, u64 probs, u64 support,
                                             u64 tokens, u64 status, u32 stage, u32 blocks, u64 barriers,
                                             u64 exchange) {
  SplitRow<GridLink> g;
  g.link.blocks = blocks;
  g.link.barriers = barriers;
  g.link.exchange = exchange;
  g.place(vocab, blocks, blockIdx.x % blocks, stage != 0);
  project<T, VEC>(g, logits, stride, vocab, temperature, temps, seed, offset, seeds, offsets, probs, support,
                  tokens, status);
}

}  // namespace samplex_sparsemax

// ---------------------------------------------------------------------------------------------
// Entry points: one line per dtype emits the kernels at its 16-byte vector width and their
// twins for rows that are not 16-byte aligned: _any (16-byte loads after a scalar head,
// for_each_token), except the cooperative grid's, which is _v1 (scalar loads): the head pushed
// the grid kernels, at 64 registers already, into spills on sm_90. Optional outputs travel as
// u64 device addresses (0 = absent).
// _cluster (sm_90; clusters of C blocks, dynamic shared memory = the SparseHead, plus the slice
// × 4 bytes when stage != 0) takes stage; _grid (a cooperative launch of batch × C blocks, C per
// row; dynamic shared memory = stage ? the slice × 4 bytes : 0) takes stage, blocks, barriers (a
// RowBarrier per row) and exchange (a SparseHead per block). Both give the one-block bits.
// ---------------------------------------------------------------------------------------------
#define SAMPLEX_SPARSEMAX_ENTRY(T, NAME, VEC, SUFFIX, GRID_VEC, GRID_SUFFIX)                               \
  extern "C" __global__ void __launch_bounds__(samplex_sparsemax::THREADS)                               \
      samplex_sparsemax_project_##NAME##SUFFIX(const T *logits, u64 stride, u32 vocab, float temperature, \
                                                u64 temps, u64 seed, u64 offset, u64 seeds, u64 offsets,  \
                                                u64 probs, u64 support, u64 tokens, u64 status) {         \
    samplex_sparsemax::project_block<T, VEC>(logits, stride, vocab, temperature, temps, seed, offset,     \
                                             seeds, offsets, probs, support, tokens, status);             \
  }                                                                                                       \
  extern "C" __global__ void __launch_bounds__(samplex_sparsemax::THREADS)                               \
      samplex_sparsemax_project_cluster_##NAME##SUFFIX(                                                   \
          const T *logits, u64 stride, u32 vocab, float temperature, u64 temps, u64 seed, u64 offset,     \
          u64 seeds, u64 offsets, u64 probs, u64 support, u64 tokens, u64 status, u32 stage) {            \
    samplex_sparsemax::project_cluster<T, VEC>(logits, stride, vocab, temperature, temps, seed, offset,   \
                                               seeds, offsets, probs, support, tokens, status, stage);    \
  }                                                                                                       \
  extern "C" __global__ void __launch_bounds__(samplex_sparsemax::THREADS)                               \
      samplex_sparsemax_project_grid_##NAME##GRID_SUFFIX(                                                 \
          const T *logits, u64 stride, u32 vocab, float temperature, u64 temps, u64 seed, u64 offset,     \
          u64 seeds, u64 offsets, u64 probs, u64 support, u64 tokens, u64 status, u32 stage, u32 blocks,  \
          u64 barriers, u64 exchange) {                                                                   \
    samplex_sparsemax::project_grid<T, GRID_VEC>(logits, stride, vocab, temperature, temps, seed, offset, \
                                                 seeds, offsets, probs, support, tokens, status, stage,   \
                                                 blocks, barriers, exchange);                             \
  }

#define SAMPLEX_SPARSEMAX_DTYPE(T, NAME, VEC)  \
  SAMPLEX_SPARSEMAX_ENTRY(T, NAME, VEC, , VEC, ) \
  SAMPLEX_SPARSEMAX_ENTRY(T, NAME, 0, _any, 1, _v1)

SAMPLEX_SPARSEMAX_DTYPE(float, f32, 4)
SAMPLEX_SPARSEMAX_DTYPE(f16_t, f16, 8)
SAMPLEX_SPARSEMAX_DTYPE(bf16_t, bf16, 8)
