// samplex — radix top-k selection, and the radix machinery the top-k filter shares.
//
// SPEC "Top-k filter": the stand-alone *selection* returns exactly k (value, index) pairs per
// row, sorted by value descending, ties by lower index. The *filter* keeps every i with
// z_i >= z_(k) (ties kept); its threshold is found by the same radix passes (`radix_select`,
// used by kernels/topp.cu, which build.rs amalgamates after this file).
//
// <T>_any: the twin the host picks when the base address or the row stride is not 16-byte
// aligned; its chunks start at the 16-byte boundary below each row, so it keeps the 16-byte
// loads (for_each_chunk).
// Grid and block (samplex_topk_select_<T>[_any]): one block of SELECT_THREADS (1024) threads per
// row, blockIdx.x = row. Every pass stays inside that block, so there is no host round trip and
// no cross-block merge.
// samplex_topk_select_cluster_<T>[_any] (sm_90, min(k, vocab) <= SORT_MAX; src/gpu/topk.rs
// picks it for small batches): one thread-block cluster of C = 2, 4 or 8 such blocks per row,
// block r over a contiguous slice (`cluster_row`). The same code over a row group (SoloRow /
// ClusterRow below): step 1's histograms are the sums of the blocks' bins, read through
// distributed shared memory (so every block picks the same buckets); in step 4 each block
// counts its slice's selected elements, learns how many the lower ranks hold (`before`, in
// rank order) and writes its pairs, unsorted, into the output row at those slots; after a
// cluster barrier the leader (rank 0) sorts them in its shared memory (step 5). The output is
// sorted by a strict total order, so it is the one-block kernel's, bit for bit. Below sm_90
// the body is a trap (common.cuh §8).
// samplex_topk_select_grid_<T>[_any] (every GPU; src/gpu/topk.rs picks it for small batches
// where there are no clusters): the same split over C consecutive blocks of a cooperative
// launch (`grid_row`), which exchange histograms and merge values through global memory and
// wait at a barrier per row (common.cuh §9). The same bits.
//
// Keys: the sanitised logit x (NaN -> -inf, +inf -> FLT_MAX) becomes the order-preserving u32
// float_to_key(x) (common.cuh §6). The selection keeps -0 below +0, as the CPU's total order
// does; the filter uses `canonical_key`, which maps -0 to +0 so that key order is float order.
//
// The selection, per row (one block):
//   1. Radix passes (`radix_select`): digits of 11, 11 and 10 bits, most significant first.
//      Pass j reads the row, keeps the elements whose already-resolved high bits equal the
//      current prefix (the filter of pass j-1, fused into this pass's read) and counts their
//      digit j in a 2048-bucket shared histogram (warp-aggregated atomics, `hist_add`).
//   2. Bucket pick (`bucket_scan` + `bucket_pick`): a block scan over the buckets from the
//      top finds the bucket b with  above < need <= above + count(b); need -= above and b
//      joins the prefix. Early exit when count(b) == need: the whole bucket is selected.
//      After the last pass the prefix is the k-th largest key itself.
//   3. The result of 1-2 is a `RadixCut`: every element with (key & mask) > prefix is
//      selected, plus the `need` lowest-index elements with (key & mask) == prefix.
//   4. Collect (`collect`): one more read of the row in index order; each element's output
//      slot is the number of selected elements before it, from a block prefix sum, so the
//      slots never depend on scheduling. Stops once all k are found.
//   5. Sort: (key, index) packed as u64 (key << 32 | ~index), so that descending u64 order is
//      (value desc, index asc), a strict total order. k <= SORT_MAX (4096): a bitonic sort
//      in shared memory. k > SORT_MAX (the slower path): the collected pairs go to global
//      scratch, chunks of 4096 are bitonic-sorted in shared memory, then sorted runs are
//      merged pairwise in global memory (each element's destination = its rank in its run +
//      the number of partner-run elements ahead of it, by binary search), ping-ponging
//      between the scratch and the output so that the last merge lands in the output.
//   6. Slots k_r..k of the row are padded with (-inf, u32::MAX).
//
// Shared memory (`SelectSmem`, ~33 KB): the histogram (8 KB) and the sort buffer (32 KB) are
// never live together and share a union; plus the scan scratch.
//
// Determinism: histogram counts are integers (atomics add in any order to the same sum);
// output slots come from prefix sums in index order; the sort is by a strict total order.
//
// Slower path cost: each merge level does a binary search (global memory) per element:
// O(k log k) per level, ceil(log2(k / 4096)) levels. Fine for k up to the vocabulary, but
// use k <= 4096 where speed matters.
#include "common.cuh"

// The cluster entries' dynamic shared memory (ClusterHead, then the staged slice).
SAMPLEX_DYNAMIC_SHARED(float4, samplex_radix_dyn_smem);

namespace samplex_topk {

// Threads per block of the one-block-per-row radix kernels (here and in kernels/topp.cu).
#define SAMPLEX_RADIX_THREADS 1024
constexpr int SELECT_THREADS = SAMPLEX_RADIX_THREADS;
constexpr u32 RADIX_BUCKETS = 2048;  // 11-bit digits
constexpr int RADIX_PASSES = 3;      // 11 + 11 + 10 bits
constexpr u32 SORT_MAX = 4096;       // the shared-memory sort's size (fast path)
constexpr u32 NO_BUCKET = 0xffffffffu;

__device__ __forceinline__ u32 umin32(u32 a, u32 b) { return a < b ? a : b; }
__device__ __forceinline__ u32 umax32(u32 a, u32 b) { return a > b ? a : b; }

// Digit j of a key: bits [shift, shift + width), widths 11, 11, 10 from the top.
__device__ __forceinline__ int digit_shift(int pass) { return pass == 0 ? 21 : (pass == 1 ? 10 : 0); }
__device__ __forceinline__ u32 digit_mask(int pass) { return pass == 2 ? 0x3ffu : 0x7ffu; }

// The filter's key: -0 counts as +0, so that key order is exactly float order (ties included).
// float_to_key's bits, spelled for the hot loops: x + 0 turns -0 into +0 (one add for a compare
// and a select), and the sign's arithmetic shift picks the flip (two instructions for three).
// float_to_key keeps its form: spelled this way it made ptxas spill topk_select's 16-bit _any.
__device__ __forceinline__ u32 canonical_key(float x) {
  const u32 b = __float_as_uint(x + 0.0f);
  return b ^ ((u32)((int)b >> 31) | 0x80000000u);
}

// The selection's sort element: descending u64 order = value descending, index ascending.
__device__ __forceinline__ u64 pack_pair(u32 key, u32 index) { return ((u64)key << 32) | (u64)(~index); }
__device__ __forceinline__ u32 pair_key(u64 v) { return (u32)(v >> 32); }
__device__ __forceinline__ u32 pair_index(u64 v) { return ~(u32)v; }

// Block minimum of a u32: every thread gets it. Order-free.
template <int THREADS>
__device__ __forceinline__ u32 block_min_u32(u32 v, ScanSmem<THREADS, u32> &s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = umin32(v, __shfl_xor_sync(SAMPLEX_FULL_MASK, v, o));
  if (lane == 0) s.warp[warp] = v;
  __syncthreads();
  if (warp == 0) {
    u32 w = lane < ScanSmem<THREADS, u32>::WARPS ? s.warp[lane] : 0xffffffffu;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) w = umin32(w, __shfl_xor_sync(SAMPLEX_FULL_MASK, w, o));
    if (lane == 0) s.total = w;
  }
  __syncthreads();
  u32 r = s.total;
  __syncthreads();
  return r;
}

// ---------------------------------------------------------------------------------------------
// Reading a row (every pass): calls f(c, z) once per chunk of THREADS * L elements, L =
// Lanes<T, VEC>::N (VEC, or 16 bytes' worth for the _any twins, VEC = 0): this thread's L
// consecutive values z[0 .. L), of which z[i] for c.has(i) is the row's element c.first + i
// (the rest read as -inf and are not the row's). Thread order is index order. Every thread
// runs every iteration (block collectives inside f are allowed); f returns false to stop,
// and must return the same value in every thread.
// ---------------------------------------------------------------------------------------------
struct Chunk {
  u32 first;  // the row index of z[0] (an _any row's first chunk: below 0, wrapped)
  u32 valid;  // bit i: z[i] is the row's
  __device__ __forceinline__ bool has(int i) const { return (valid >> i) & 1u; }
};

// A chunk's values sanitised, the span at once (sanitize_span): the values that are not the
// row's read as -inf, which sanitize() neither changes nor flags, so they need no mask here.
template <int L> __device__ __forceinline__ void sanitized_chunk(const float *z, float (&x)[L], u32 &status) {
#pragma unroll
  for (int i = 0; i < L; ++i) x[i] = z[i];
  sanitize_span(x, status);
}

template <typename T, int VEC, int THREADS, typename F>
__device__ __forceinline__ void for_each_chunk(const T *row, u32 vocab, F &f) {
  constexpr int L = Lanes<T, VEC>::N;
  constexpr u32 ALL = (1u << L) - 1u;
  if constexpr (VEC == 0) {
    // The row starts h elements past a 16-byte boundary: its chunks start at that boundary
    // (b = -h), so each thread's L elements are one aligned 16-byte vector (no shift, no extra
    // load) and the first thread's first h are not the row's. The vectors that hold the row's
    // first or last element load one by one, so nothing outside the row is read.
    for (int b = -(int)elements_past_16_bytes(row); b < (int)vocab; b += THREADS * L) {
      const int first = b + (int)threadIdx.x * L;
      Chunk c;
      c.first = (u32)first;
      float z[L];
      const T *p = row + first;
      const int lo = first < 0 ? -first : 0;
      const int hi = first + L <= (int)vocab ? L : (int)vocab - first;  // <= 0 past the end
      if (lo == 0 && hi == L) {
        c.valid = ALL;
        VecLoad<T, L>::load(p, z);
      } else {
        c.valid = hi <= lo ? 0u : (ALL >> (L - hi)) & ~((1u << lo) - 1u);
#pragma unroll
        for (int i = 0; i < L; ++i) z[i] = c.has(i) ? to_f32(p[i]) : SAMPLEX_NEG_INF;
      }
      if (!f(c, z)) break;
    }
  } else {
    for (u32 base = 0; base < vocab; base += THREADS * L) {
      Chunk c;
      c.first = base + threadIdx.x * L;
      const u32 n = c.first < vocab ? umin32(vocab - c.first, (u32)L) : 0u;
      c.valid = (1u << n) - 1u;  // ALL when n = L (L ≤ 8)
      float z[L];
      if (n == (u32)L) VecLoad<T, VEC>::load(row + c.first, z);
      else load_partial<T, L>(row + c.first, (int)n, SAMPLEX_NEG_INF, z);
      if (!f(c, z)) break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Step 1: one count into a shared histogram, aggregated over the lanes of a warp that hit the
// same bucket (rows of equal logits would otherwise serialise on one address). Every lane of
// the warp must call it; `in` = false lanes add nothing.
__device__ __forceinline__ void hist_add(u32 *hist, u32 bucket, bool in) {
  const u32 peers = __match_any_sync(SAMPLEX_FULL_MASK, in ? bucket : NO_BUCKET);
  if (in && (int)(threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&hist[bucket], (u32)__popc(peers));
}

// ---------------------------------------------------------------------------------------------
// Step 2: the bucket pick. Buckets are read from the top (largest keys first): thread t owns
// buckets RADIX_BUCKETS-1-t*PER ... downwards, so a scan in thread order sums from the top.
// ---------------------------------------------------------------------------------------------
template <int THREADS, typename U> struct BucketScan {
  static constexpr int PER = RADIX_BUCKETS / THREADS;
  U h[PER];   // this thread's buckets, highest first
  U before;   // the sum of every bucket above them
  U total;    // the sum of all buckets
};

template <typename U> struct PickSmem {
  u32 bucket;
  U above;
  U count;
};

template <typename U> struct BucketPick {
  u32 bucket;  // the bucket holding the need-th unit from the top
  U above;     // the sum of the buckets above it
  U count;     // its own content
};

// `hist` is this block's histogram; g.at(hist, bin) is the row's count in a bin (RowGroup below).
template <int THREADS, typename U, typename G>
__device__ __forceinline__ void bucket_scan(G &g, const U *hist, BucketScan<THREADS, U> &b,
                                            ScanSmem<THREADS, U> &s) {
  static_assert(RADIX_BUCKETS % THREADS == 0, "whole buckets per thread");
  U mine = 0;
#pragma unroll
  for (int j = 0; j < BucketScan<THREADS, U>::PER; ++j) {
    b.h[j] = g.at(hist, RADIX_BUCKETS - 1 - (threadIdx.x * BucketScan<THREADS, U>::PER + j));
    mine += b.h[j];
  }
  b.before = block_exclusive_scan<THREADS, U>(mine, b.total, s);
}

// The bucket b with  above(b) < need <= above(b) + count(b), 1 <= need <= total; every thread
// gets it. (Should need be out of range, bucket 0 with above = count = 0 comes back.)
template <int THREADS, typename U>
__device__ __forceinline__ BucketPick<U> bucket_pick(const BucketScan<THREADS, U> &b, U need, PickSmem<U> &s) {
  if (threadIdx.x == 0) {
    s.bucket = 0;
    s.above = 0;
    s.count = 0;
  }
  __syncthreads();
  U c = b.before;
#pragma unroll
  for (int j = 0; j < BucketScan<THREADS, U>::PER; ++j) {
    const U h = b.h[j];
    if (c < need && need <= c + h) {  // exactly one (thread, j) passes
      s.bucket = RADIX_BUCKETS - 1 - (threadIdx.x * BucketScan<THREADS, U>::PER + j);
      s.above = c;
      s.count = h;
    }
    c += h;
  }
  __syncthreads();
  BucketPick<U> r;
  r.bucket = s.bucket;
  r.above = s.above;
  r.count = s.count;
  __syncthreads();
  return r;
}

// ---------------------------------------------------------------------------------------------
// Where a row lives (the "row group"): all in one block (SoloRow, blockIdx.x = row), or split
// over C blocks, each a contiguous slice (SliceRow): a thread-block cluster's (ClusterRow,
// sm_90) or C consecutive blocks of a cooperative launch (GridRow, every GPU). The radix passes
// are written once over a group:
//   row, lo, len            the row; this block's slice [lo, lo + len) of it
//   first_read(row, f)      for_each_chunk over the slice, f given row indices (a cluster may
//                           stage the slice in shared memory on the way)
//   read(row, f)            the same for every later pass (from the staged slice, if any)
//   count(own), mass(own)   the histogram buffers this pass fills (one block: `own`)
//   hist_ready(count, mass) after the block's histograms are built (mass may be null); then
//                           at(h, bin) is the row's value in that bin (a cluster sums its
//                           blocks' bins over DSMEM, a grid from its exchange in global memory)
//   hist_done()             after the last read of this pass's histograms
//   merge(v, f)             the row's value from every block's v (each thread passes its
//                           block's); a split row folds the blocks' values with f in rank
//                           order, so every block gets the same bits
//   before(v, zero, f)      the same over the lower ranks only (zero for one block)
//   leader(), finish()      the block that writes the row's outputs; before the block exits
// ---------------------------------------------------------------------------------------------
struct SoloRow {
  static constexpr bool SPLIT = false;    // the row is split over several blocks
  static constexpr bool OWN_HIST = true;  // the histograms live in the block's static shared memory
  static constexpr u32 lo = 0;
  u32 row, len;
  template <typename T, int VEC, int THREADS, typename F>
  __device__ __forceinline__ void first_read(const T *z, F &f) {
    for_each_chunk<T, VEC, THREADS>(z, len, f);
  }
  template <typename T, int VEC, int THREADS, typename F> __device__ __forceinline__ void read(const T *z, F &f) {
    for_each_chunk<T, VEC, THREADS>(z, len, f);
  }
  __device__ __forceinline__ u32 *count(u32 *own) { return own; }
  __device__ __forceinline__ u64 *mass(u64 *own) { return own; }
  __device__ __forceinline__ void hist_ready(const u32 *, const u64 *) { __syncthreads(); }
  template <typename U> __device__ __forceinline__ U at(const U *h, u32 bin) { return h[bin]; }
  __device__ __forceinline__ void hist_done() {}
  template <typename P, typename F> __device__ __forceinline__ P merge(const P &v, F) { return v; }
  template <typename P, typename F> __device__ __forceinline__ P before(const P &, P zero, F) { return zero; }
  __device__ __forceinline__ void sync() { __syncthreads(); }
  __device__ __forceinline__ bool leader() const { return true; }
  __device__ __forceinline__ void finish() {}
};

// What the blocks of a split row exchange (one per block): in a cluster, the head of its
// dynamic shared memory (read by the others over DSMEM); in a cooperative grid, an entry in
// global memory. Double-buffered by merge parity: a block refills a buffer two merges later,
// after the barrier of the merge between, by which every block has read its previous content;
// so each merge costs one barrier. (In a cluster the staged slice, f32, follows the head.)
struct ClusterHead {
  uint4 slot[2];                   // this block's value of a scalar merge
  u32 count[2][RADIX_BUCKETS];     // histogram counts
  u64 mass[2][RADIX_BUCKETS];      // top-p's fixed-point masses
};
static_assert(sizeof(ClusterHead) == 49184, "CLUSTER_HEAD_BYTES in src/gpu/launch.rs");
static_assert(sizeof(ClusterHead) % 16 == 0, "the staged slice after it is read as float4");

// A block's contiguous slice [lo, lo + len) of a split row. With `stage`, the first read keeps
// the slice as f32 in shared memory and the later passes read it there, not L2/HBM.
struct SliceRow {
  u32 row, lo, len;
  float *stage;  // the slice as f32 in shared memory, or null (later passes re-read the logits)

  template <typename T, int VEC, int THREADS, typename F>
  __device__ __forceinline__ void first_read(const T *z, F &f) {
    constexpr int L = Lanes<T, VEC>::N;
    float *st = stage;
    const u32 base = lo;
    auto g = [&](const Chunk &c, const float *v) -> bool {
      if (st) {
#pragma unroll
        for (int i = 0; i < L; ++i)
          if (c.has(i)) st[c.first + i] = v[i];
      }
      Chunk r = c;
      r.first += base;
      return f(r, v);
    };
    for_each_chunk<T, VEC, THREADS>(z + lo, len, g);
  }
  template <typename T, int VEC, int THREADS, typename F> __device__ __forceinline__ void read(const T *z, F &f) {
    constexpr int L = Lanes<T, VEC>::N;
    const u32 base = lo;
    if (stage == nullptr) {
      auto g = [&](const Chunk &c, const float *v) -> bool {
        Chunk r = c;
        r.first += base;
        return f(r, v);
      };
      for_each_chunk<T, VEC, THREADS>(z + lo, len, g);
      return;
    }
    for (u32 b = 0; b < len; b += THREADS * L) {
      const u32 first = b + threadIdx.x * L;
      const u32 n = first < len ? umin32(len - first, (u32)L) : 0u;
      float v[L];
      bool whole = false;
      if constexpr (L % 4 == 0) {
        whole = n == (u32)L;  // `first` is a multiple of L, so 16-byte aligned
        if (whole) {
#pragma unroll
          for (int j = 0; j < L; j += 4) {
            const float4 q = *reinterpret_cast<const float4 *>(stage + first + j);
            v[j] = q.x;
            v[j + 1] = q.y;
            v[j + 2] = q.z;
            v[j + 3] = q.w;
          }
        }
      }
      if (!whole) {
#pragma unroll
        for (int i = 0; i < L; ++i) v[i] = (u32)i < n ? stage[first + i] : SAMPLEX_NEG_INF;
      }
      Chunk c;
      c.first = base + first;
      c.valid = (1u << n) - 1u;
      if (!f(c, v)) break;
    }
  }
  // Row `row` of `size`-block rows, as block `rank`: the slice [rank * per, (rank + 1) * per),
  // per = ceil(vocab / size) rounded up to L, the elements per 16 bytes (every slice starts at
  // the row's alignment; src/gpu/launch.rs: slice_len).
  template <int L> __device__ __forceinline__ void place(u32 vocab, u32 size, u32 rank, float *staged) {
    const u32 per = ceil_div(ceil_div(vocab, size), (u32)L) * (u32)L;
    row = blockIdx.x / size;
    lo = umin32(rank * per, vocab);
    len = umin32(lo + per, vocab) - lo;
    stage = staged;
  }
};

#if SAMPLEX_CLUSTERS
struct ClusterRow : SliceRow, RowMerges<ClusterRow> {
  static constexpr bool SPLIT = true;
  static constexpr bool OWN_HIST = false;  // the head's buffers, read by the other blocks
  u32 phase;  // merges so far: the parity picks the buffers

  __device__ __forceinline__ static ClusterHead *head() {
    return reinterpret_cast<ClusterHead *>(static_cast<float4 *>(samplex_radix_dyn_smem));
  }
  __device__ __forceinline__ u32 size() const { return cluster_size(); }
  __device__ __forceinline__ u32 rank() const { return cluster_rank(); }
  __device__ __forceinline__ u32 *count(u32 *) { return head()->count[phase & 1]; }
  __device__ __forceinline__ u64 *mass(u64 *) { return head()->mass[phase & 1]; }
  __device__ __forceinline__ void hist_ready(const u32 *, const u64 *) { cluster_sync(); }
  template <typename U> __device__ __forceinline__ U at(const U *h, u32 bin) {
    U c = 0;
    const u32 size = cluster_size();
    for (u32 r = 0; r < size; ++r) {
      const ClusterPtr p = cluster_map(h + bin, r);
      if constexpr (sizeof(U) == 8) c += cluster_load_u64(p);
      else c += cluster_load_u32(p);
    }
    return c;
  }
  __device__ __forceinline__ void hist_done() { ++phase; }
  // Thread 0 publishes this block's value in the buffer of this merge's parity, then one
  // cluster barrier: the returned slot holds every rank's value (read it with `published`).
  template <typename P> __device__ __forceinline__ const uint4 *publish(const P &v) {
    return cluster_publish(head()->slot, phase, v);
  }
  template <typename P> __device__ __forceinline__ P published(const uint4 *slot, u32 rank) {
    return from_raw16<P>(cluster_load_v4(cluster_map(slot, rank)));
  }
  __device__ __forceinline__ void sync() { cluster_sync(); }
  __device__ __forceinline__ bool leader() const { return cluster_rank() == 0; }
  __device__ __forceinline__ void finish() { cluster_sync(); }
};

// This block's row and slice in a cluster of cluster_size() blocks per row.
template <int L> __device__ __forceinline__ ClusterRow cluster_row(u32 vocab, float *stage) {
  ClusterRow g;
  g.template place<L>(vocab, cluster_size(), cluster_rank(), stage);
  g.phase = 0;
  return g;
}
#endif

// A row split over `blocks` consecutive blocks of a cooperative launch (every GPU; the host
// takes it below sm_90, where there are no clusters): the histograms are built in each block's
// shared memory, copied to its exchange entry in global memory and summed from there; the
// barriers are the row's RowBarrier (common.cuh §9). The same merges, in the same rank order,
// as a cluster's: the same bits.
struct GridRow : SliceRow, RowMerges<GridRow> {
  static constexpr bool SPLIT = true;
  static constexpr bool OWN_HIST = true;
  u32 blocks, phase;
  u64 barriers, exchange;  // the kernel's arguments: a RowBarrier per row, a ClusterHead per block

  __device__ __forceinline__ u32 size() const { return blocks; }
  __device__ __forceinline__ u32 rank() const { return blockIdx.x % blocks; }
  // The row's blocks' exchange entries, by rank.
  __device__ __forceinline__ ClusterHead *ex() const {
    return reinterpret_cast<ClusterHead *>(exchange) + (u64)row * blocks;
  }
  __device__ __forceinline__ void barrier() const {
    row_barrier(reinterpret_cast<RowBarrier *>(barriers) + row, blocks);
  }
  __device__ __forceinline__ u32 *count(u32 *own) { return own; }
  __device__ __forceinline__ u64 *mass(u64 *own) { return own; }
  // count / mass: this pass's histograms in the block's shared memory (mass may be null).
  __device__ __forceinline__ void hist_ready(const u32 *count, const u64 *mass) {
    __syncthreads();  // the block's histograms are complete
    ClusterHead &mine = ex()[rank()];
    const u32 p = phase & 1;
    for (u32 i = threadIdx.x; i < RADIX_BUCKETS; i += blockDim.x) {
      mine.count[p][i] = count[i];
      if (mass) mine.mass[p][i] = mass[i];
    }
    barrier();
  }
  template <typename U> __device__ __forceinline__ U at(const U *, u32 bin) {
    U c = 0;
    const u32 p = phase & 1;
    const ClusterHead *e = ex();
#pragma unroll 1
    for (u32 r = 0; r < blocks; ++r) {
      if constexpr (sizeof(U) == 8) c += load_cg_u64(&e[r].mass[p][bin]);
      else c += load_cg_u32(&e[r].count[p][bin]);
    }
    return c;
  }
  __device__ __forceinline__ void hist_done() { ++phase; }
  template <typename P> __device__ __forceinline__ const uint4 *publish(const P &v) {
    const u32 p = phase & 1;
    publish_raw16(&ex()[rank()].slot[p], v);
    ++phase;
    barrier();
    return &ex()[0].slot[p];
  }
  template <typename P> __device__ __forceinline__ P published(const uint4 *slot, u32 r) {
    return from_raw16<P>(load_cg_v4(reinterpret_cast<const uint4 *>(reinterpret_cast<const char *>(slot) + (u64)r * sizeof(ClusterHead))));
  }
  __device__ __forceinline__ void sync() { barrier(); }
  __device__ __forceinline__ bool leader() const { return rank() == 0; }
  __device__ __forceinline__ void finish() {}
};

// This block's row and slice when `blocks` consecutive blocks share a row: `barriers` holds a
// RowBarrier per row, `exchange` a ClusterHead per block (src/gpu/launch.rs: GridExchange).
template <int L>
__device__ __forceinline__ GridRow grid_row(u32 vocab, u32 blocks, u64 barriers, u64 exchange, float *stage) {
  GridRow g;
  g.template place<L>(vocab, blocks, blockIdx.x % blocks, stage);
  g.blocks = blocks;
  g.phase = 0;
  g.barriers = barriers;
  g.exchange = exchange;
  return g;
}

// ---------------------------------------------------------------------------------------------
// Steps 1-3: radix select. The outcome: every participating element with
// (key & mask) > prefix is among the k largest, and `need` more are taken from those with
// (key & mask) == prefix (which number `count`, or more: see radix_select). When count == need
// (early exit) or after the last pass, {key >= prefix} is exactly "the k largest, plus every
// tie of the k-th".
// ---------------------------------------------------------------------------------------------
struct RadixCut {
  u32 prefix;
  u32 mask;
  u32 need;
  u32 count;
};

template <int THREADS> struct RadixSmem {
  ScanSmem<THREADS, u32> scan;
  PickSmem<u32> pick;
};

// The values are sanitised as they are read, flagging `status`. key_of(x, key) -> bool: sets a
// sanitised value's key, says whether it takes part. first_pass(x) is called once for every
// element of the row (during pass 0), sanitised, for work the caller wants fused into that
// read. `hist` is RADIX_BUCKETS u32 of shared memory. 1 <= k <= the number of participating
// elements. Over a row group g (its read and histogram merge); `row` is the row's start.
// Nothing is masked by Chunk::has: the values that are not the row's come as -inf, and key_of
// and first_pass see them too. A caller's key_of may reject -inf (top-p's does). If it takes
// -inf (top-k's), they count in the bucket of the smallest key only, and the pick counts from
// the top: the bucket picked and `need` are the same. Only `count` may be larger, where the
// picked bucket holds -inf's key, which puts off the early exit to a later pass that cuts the
// same elements of the row. first_pass must ignore -inf.
template <typename T, int VEC, int THREADS, typename G, typename KeyOf, typename FirstPass>
__device__ RadixCut radix_select(G &g, const T *row, u32 k, u32 *own_hist, RadixSmem<THREADS> &s, u32 &status,
                                 KeyOf &key_of, FirstPass &first_pass) {
  constexpr int L = Lanes<T, VEC>::N;
  RadixCut cut;
  cut.prefix = 0;
  cut.mask = 0;
  cut.need = k;
  cut.count = 0;
  for (int pass = 0; pass < RADIX_PASSES; ++pass) {
    const int shift = digit_shift(pass);
    const u32 dmask = digit_mask(pass);
    u32 *hist = g.count(own_hist);
    for (u32 i = threadIdx.x; i < RADIX_BUCKETS; i += THREADS) hist[i] = 0;
    __syncthreads();
    auto sweep = [&](const Chunk &, const float *z) -> bool {
      float x[L];
      sanitized_chunk<L>(z, x, status);
#pragma unroll
      for (int i = 0; i < L; ++i) {
        if (pass == 0) first_pass(x[i]);
        u32 key;
        const bool in = key_of(x[i], key) && (key & cut.mask) == cut.prefix;
        hist_add(hist, (key >> shift) & dmask, in);
      }
      return true;
    };
    g.template read<T, VEC, THREADS>(row, sweep);
    g.hist_ready(hist, static_cast<const u64 *>(nullptr));
    BucketScan<THREADS, u32> b;
    bucket_scan<THREADS, u32>(g, hist, b, s.scan);
    const BucketPick<u32> pk = bucket_pick<THREADS, u32>(b, cut.need, s.pick);
    g.hist_done();
    cut.need -= pk.above;
    cut.prefix |= pk.bucket << shift;
    cut.mask |= dmask << shift;
    cut.count = pk.count;
    if (pk.count == cut.need) break;  // early exit: the whole bucket is needed
  }
  return cut;
}

// ---------------------------------------------------------------------------------------------
// Step 4: collect. store(slot, key, index) for each of the k selected elements, slot in
// [0, k) = the number of selected elements before it in index order (block prefix sums).
// ---------------------------------------------------------------------------------------------
// Over a row group: gt_before / eq_before are the selected-above and tie-class elements before
// this block's slice (0 for one block).
template <typename T, int VEC, int THREADS, typename G, typename Store>
__device__ __forceinline__ void collect(G &g, const T *row, RadixCut cut, u32 k, u32 gt_before, u32 eq_before,
                                        u32 &status, ScanSmem<THREADS, u32> &s, Store &store) {
  constexpr int L = Lanes<T, VEC>::N;
  static_assert(THREADS * L < 65536, "per-chunk counts are packed in 16 bits");
  const u32 above_total = k - cut.need;  // elements with (key & mask) > prefix
  u32 gt_run = gt_before, eq_run = eq_before;  // counts over the elements before this chunk
  auto f = [&](const Chunk &c, const float *z) -> bool {
    u32 key[L];
    u32 gt = 0, eq = 0, cls = 0;  // cls: bit i = above, bit L + i = tie class
    // span_is_clean, not sanitize_span: a sanitised copy of the span made ptxas spill the 16-bit
    // kernels at their 64-register cap (1024 threads).
    const bool bad = !span_is_clean<L>(z);
#pragma unroll
    for (int i = 0; i < L; ++i) {
      key[i] = float_to_key(__builtin_expect(bad, 0) ? sanitize(z[i], status) : z[i]);
      const u32 m = key[i] & cut.mask;
      if (c.has(i) && m > cut.prefix) {
        ++gt;
        cls |= 1u << i;
      } else if (c.has(i) && m == cut.prefix) {
        ++eq;
        cls |= 1u << (L + i);
      }
    }
    u32 total;
    const u32 before = block_exclusive_scan<THREADS, u32>((gt << 16) | eq, total, s);
    u32 g = gt_run + (before >> 16), e = eq_run + (before & 0xffffu);
#pragma unroll
    for (int i = 0; i < L; ++i) {
      if (cls & (1u << i)) {
        store(g + umin32(e, cut.need), key[i], c.first + i);
        ++g;
      } else if (cls & (1u << (L + i))) {
        if (e < cut.need) store(g + e, key[i], c.first + i);
        ++e;
      }
    }
    gt_run += total >> 16;
    eq_run += total & 0xffffu;
    return !(gt_run >= above_total && eq_run >= cut.need);
  };
  g.template read<T, VEC, THREADS>(row, f);
}

// ---------------------------------------------------------------------------------------------
// Step 5: bitonic sort of n (a power of two) u64 in shared memory, descending. Every thread
// must call; a __syncthreads() must precede the call (the data written), and one ends it.
// ---------------------------------------------------------------------------------------------
template <int THREADS>
__device__ __forceinline__ void bitonic_sort_desc(u64 *a, u32 n) {
  for (u32 size = 2; size <= n; size <<= 1) {
    for (u32 stride = size >> 1; stride > 0; stride >>= 1) {
      for (u32 i = threadIdx.x; i < n / 2; i += THREADS) {
        const u32 lo = 2 * i - (i & (stride - 1));  // i with a 0 bit inserted at `stride`
        const u32 hi = lo + stride;
        const bool desc = (lo & size) == 0;
        const u64 x = a[lo], y = a[hi];
        if ((x < y) == desc) {
          a[lo] = y;
          a[hi] = x;
        }
      }
      __syncthreads();
    }
  }
}

// The smallest power of two >= n (n >= 1).
__device__ __forceinline__ u32 pow2_at_least(u32 n) {
  u32 p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Sorts the n pairs in `buf` (shared memory, written before the call) and writes the first
// k as (value, index) to the output row.
template <int THREADS>
__device__ __forceinline__ void sort_pairs_out(u64 *buf, u32 n, u32 k, float *vals, u32 *idxs) {
  __syncthreads();
  bitonic_sort_desc<THREADS>(buf, n);
  for (u32 j = threadIdx.x; j < k; j += THREADS) {
    const u64 v = buf[j];
    vals[j] = key_to_float(pair_key(v));
    idxs[j] = pair_index(v);
  }
}

// The slower path's two buffers: the row's u64 scratch, and the output row itself (value,
// index), whose pairs are a lossless form of (key, index): key_to_float is a bijection on keys.
struct PairBuffers {
  u64 *scratch;
  float *values;
  u32 *indices;
  __device__ __forceinline__ u64 load(bool out, u32 j) const {
    return out ? pack_pair(float_to_key(values[j]), indices[j]) : scratch[j];
  }
  __device__ __forceinline__ void store(bool out, u32 j, u64 v) const {
    if (out) {
      values[j] = key_to_float(pair_key(v));
      indices[j] = pair_index(v);
    } else {
      scratch[j] = v;
    }
  }
};

// One merge level of the slower path: sorted runs of length `run` (the last may be shorter)
// in buffer `from_out` are merged pairwise into the other buffer. Element j of run r lands at
// (start of the merged pair) + (its rank in run r) + (how many elements of run r^1 are
// greater). All pairs are distinct, so the destinations are a permutation.
template <int THREADS>
__device__ __forceinline__ void merge_level(const PairBuffers &buf, bool from_out, u32 n, u32 run) {
  for (u32 j = threadIdx.x; j < n; j += THREADS) {
    const u64 v = buf.load(from_out, j);
    const u32 r = j / run;
    const u32 start = r * run;
    const u32 pstart = (r ^ 1u) * run;
    u32 dest = j;
    if (pstart < n) {
      const u32 plen = umin32(run, n - pstart);
      u32 lo = 0, hi = plen;  // partner elements greater than v form a prefix of its run
      while (lo < hi) {
        const u32 mid = (lo + hi) >> 1;
        if (buf.load(from_out, pstart + mid) > v) lo = mid + 1;
        else hi = mid;
      }
      dest = umin32(start, pstart) + (j - start) + lo;
    }
    buf.store(!from_out, dest, v);
  }
  __syncthreads();
}

struct SelectSmem {
  union {
    u32 hist[RADIX_BUCKETS];
    u64 sort[SORT_MAX];
  } buf;
  RadixSmem<SELECT_THREADS> radix;
  BlockScratch<SELECT_THREADS> bs;
};

// The selection of one row (steps 1-6) over a row group. k = the output's row width,
// `scratch` = u64 per (row, slot) for rows with k_r > SORT_MAX (row r's at r * min(k, vocab);
// one block per row only: the host takes the cluster path for min(k, vocab) <= SORT_MAX).
// A cluster's blocks count their slices' selected elements (one more read), learn how many
// the lower ranks hold, and collect theirs into the output row at those slots, unsorted; after
// a cluster barrier the leader sorts the row's k_r pairs in its shared memory (a strict total
// order: the one block's result).
template <typename T, int VEC, typename G>
__device__ __forceinline__ void select_row(G &g, const T *logits, u64 stride, u32 vocab, u32 k, u64 k_rows,
                                           float *values, u32 *indices, u64 status_out, u64 scratch) {
  constexpr int THREADS = SELECT_THREADS;
  constexpr int L = Lanes<T, VEC>::N;
  __shared__ SelectSmem sm;
  const u32 row = g.row;
  const T *z = row_ptr(logits, row, stride);
  u32 status = 0;

  // k_r: the row's own k, clamped to [1, min(k, vocab)] (flagged); else min(k, vocab).
  const u32 kmax = umin32(k, vocab);
  u32 kr = kmax;
  if (k_rows) {
    const u32 want = reinterpret_cast<const u32 *>(k_rows)[row];
    kr = want < 1u ? 1u : (want > kmax ? kmax : want);
    if (kr != want) status |= SAMPLEX_STATUS_PARAM_CLAMPED;
  }

  // Steps 1-3 (skipped when the whole row is selected: everything is then in the tie class).
  RadixCut cut;
  cut.prefix = 0;
  cut.mask = 0;
  cut.need = kr;
  cut.count = vocab;
  if (kr < vocab) {
    auto key_of = [](float x, u32 &key) -> bool {
      key = float_to_key(x);
      return true;
    };
    auto nothing = [](float) {};
    cut = radix_select<T, VEC, THREADS>(g, z, kr, sm.buf.hist, sm.radix, status, key_of, nothing);
  }

  const u64 out_row = (u64)row * k;
  float *vals = values + out_row;
  u32 *idxs = indices + out_row;

  if constexpr (G::SPLIT) {
    // Step 4 into the output row at this block's slots, then step 5 by the leader.
    u32 ignored = 0;
    u32 gt = 0, eq = 0;
    auto count = [&](const Chunk &c, const float *v) -> bool {
      float x[L];
      sanitized_chunk<L>(v, x, status);
#pragma unroll
      for (int i = 0; i < L; ++i) {
        const u32 m = float_to_key(x[i]) & cut.mask;
        if (c.has(i) && m > cut.prefix) ++gt;
        else if (c.has(i) && m == cut.prefix) ++eq;
      }
      return true;
    };
    g.template read<T, VEC, THREADS>(z, count);
    uint2 mine;
    mine.x = block_sum_u32<THREADS>(gt, sm.bs);
    mine.y = block_sum_u32<THREADS>(eq, sm.bs);
    const uint2 lower = g.before(mine, make_uint2(0, 0), [](uint2 a, uint2 b) { return make_uint2(a.x + b.x, a.y + b.y); });
    auto store = [&](u32 slot, u32 key, u32 index) {
      vals[slot] = key_to_float(key);
      idxs[slot] = index;
    };
    collect<T, VEC, THREADS>(g, z, cut, kr, lower.x, lower.y, ignored, sm.radix.scan, store);
    g.sync();  // every block's slots are written (release/acquire at cluster scope)
    if (g.leader()) {
      u64 *buf = sm.buf.sort;
      const u32 n = pow2_at_least(kr);
      for (u32 j = threadIdx.x; j < n; j += THREADS) buf[j] = j < kr ? pack_pair(float_to_key(vals[j]), idxs[j]) : 0;
      sort_pairs_out<THREADS>(buf, n, kr, vals, idxs);
    }
  } else if (kr <= SORT_MAX) {
    // Step 4 into shared memory, step 5 there.
    __syncthreads();  // the histogram (same memory) is no longer read
    u64 *buf = sm.buf.sort;
    auto store = [&](u32 slot, u32 key, u32 index) { buf[slot] = pack_pair(key, index); };
    collect<T, VEC, THREADS>(g, z, cut, kr, 0u, 0u, status, sm.radix.scan, store);
    const u32 n = pow2_at_least(kr);
    for (u32 j = kr + threadIdx.x; j < n; j += THREADS) buf[j] = 0;  // sorts last
    sort_pairs_out<THREADS>(buf, n, kr, vals, idxs);
  } else {
    // The slower path: collect into global scratch, sort chunks, merge runs.
    PairBuffers pb;
    pb.scratch = reinterpret_cast<u64 *>(scratch) + (u64)row * kmax;
    pb.values = vals;
    pb.indices = idxs;
    u64 *gbuf = pb.scratch;
    auto store = [&](u32 slot, u32 key, u32 index) { gbuf[slot] = pack_pair(key, index); };
    collect<T, VEC, THREADS>(g, z, cut, kr, 0u, 0u, status, sm.radix.scan, store);
    __syncthreads();  // global writes visible to the block
    const u32 chunks = ceil_div(kr, SORT_MAX);
    u32 levels = 0;
    while ((1u << levels) < chunks) ++levels;
    // Sorted chunks go where `levels` merges will end in the output.
    bool in_out = (levels & 1u) == 0;
    u64 *sbuf = sm.buf.sort;
    for (u32 c = 0; c < chunks; ++c) {
      const u32 base = c * SORT_MAX;
      const u32 len = umin32(SORT_MAX, kr - base);
      for (u32 j = threadIdx.x; j < SORT_MAX; j += THREADS) sbuf[j] = j < len ? gbuf[base + j] : 0;
      __syncthreads();
      bitonic_sort_desc<THREADS>(sbuf, SORT_MAX);
      for (u32 j = threadIdx.x; j < len; j += THREADS) pb.store(in_out, base + j, sbuf[j]);
      __syncthreads();
    }
    for (u32 run = SORT_MAX; run < kr; run <<= 1) {
      merge_level<THREADS>(pb, in_out, kr, run);
      in_out = !in_out;
    }
  }
  // Step 6: padding.
  if (g.leader()) {
    for (u32 j = kr + threadIdx.x; j < k; j += THREADS) {
      vals[j] = SAMPLEX_NEG_INF;
      idxs[j] = SAMPLEX_NO_TOKEN;
    }
  }
  status = block_or<THREADS>(status, sm.bs);
  status = g.merge(status, [](u32 a, u32 b) { return a | b; });
  if (status_out && g.leader() && threadIdx.x == 0) reinterpret_cast<u32 *>(status_out)[row] = status;
  g.finish();
}

template <typename T, int VEC>
__device__ __forceinline__ void select_block(const T *logits, u64 stride, u32 vocab, u32 k, u64 k_rows,
                                             float *values, u32 *indices, u64 status_out, u64 scratch) {
  SoloRow g;
  g.row = blockIdx.x;
  g.len = vocab;
  select_row<T, VEC>(g, logits, stride, vocab, k, k_rows, values, indices, status_out, scratch);
}

template <typename T, int VEC>
__device__ __forceinline__ void select_cluster(const T *logits, u64 stride, u32 vocab, u32 k, u64 k_rows,
                                               float *values, u32 *indices, u64 status_out, u64 scratch) {
#if SAMPLEX_CLUSTERS
  ClusterRow g = cluster_row<Lanes<T, VEC>::N>(vocab, nullptr);
  select_row<T, VEC>(g, logits, stride, vocab, k, k_rows, values, indices, status_out, scratch);
#else
  (void)logits, (void)stride, (void)vocab, (void)k, (void)k_rows, (void)values, (void)indices;
  (void)status_out, (void)scratch;
  asm volatile("trap;");  // never launched: the host checks the function's PTX version first
#endif
}

template <typename T, int VEC>
__device__ __forceinline__ void select_grid(const T *logits, u64 stride, u32 vocab, u32 k, u64 k_rows,
                                            float *values, u32 *indices, u64 status_out, u32 blocks,
                                            u64 barriers, u64 exchange) {
  GridRow g = grid_row<Lanes<T, VEC>::N>(vocab, blocks, barriers, exchange, nullptr);
  select_row<T, VEC>(g, logits, stride, vocab, k, k_rows, values, indices, status_out, 0);
}

}  // namespace samplex_topk

// logits: batch rows, `stride` elements apart. k: the output's row width (>= 1); k_rows: 0 or
// a device u32[batch] of per-row k. values/indices: batch x k. status: 0 or u32[batch].
// scratch: 0, or batch * min(k, vocab) u64 when min(k, vocab) > 4096.
// The _cluster twin (sm_90; grid = batch x C blocks, cluster dimension (C, 1, 1) set at launch,
// dynamic shared memory = the ClusterHead; min(k, vocab) <= 4096, so scratch is unused) takes
// the same arguments and gives the same bits.
// The _grid twin (every GPU; a cooperative launch of batch x blocks blocks, `blocks` per row;
// min(k, vocab) <= 4096) replaces scratch by blocks, barriers (a RowBarrier per row) and
// exchange (a ClusterHead per block), and gives the same bits.
#define SAMPLEX_TOPK_SELECT(T, VEC, NAME, CLUSTER_NAME, GRID_NAME)                                 \
  extern "C" __global__ void __launch_bounds__(SAMPLEX_RADIX_THREADS)                             \
      NAME(const T *logits, u64 stride, u32 vocab, u32 k, u64 k_rows, float *values, u32 *indices, \
           u64 status, u64 scratch) {                                                              \
    samplex_topk::select_block<T, VEC>(logits, stride, vocab, k, k_rows, values, indices, status,  \
                                       scratch);                                                   \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(SAMPLEX_RADIX_THREADS, 1)                          \
      CLUSTER_NAME(const T *logits, u64 stride, u32 vocab, u32 k, u64 k_rows, float *values,       \
                   u32 *indices, u64 status, u64 scratch) {                                        \
    samplex_topk::select_cluster<T, VEC>(logits, stride, vocab, k, k_rows, values, indices, status, \
                                         scratch);                                                 \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(SAMPLEX_RADIX_THREADS, 1)                          \
      GRID_NAME(const T *logits, u64 stride, u32 vocab, u32 k, u64 k_rows, float *values,          \
                u32 *indices, u64 status, u32 blocks, u64 barriers, u64 exchange) {                \
    samplex_topk::select_grid<T, VEC>(logits, stride, vocab, k, k_rows, values, indices, status,   \
                                      blocks, barriers, exchange);                                 \
  }

SAMPLEX_TOPK_SELECT(float, 4, samplex_topk_select_f32, samplex_topk_select_cluster_f32,
                    samplex_topk_select_grid_f32)
SAMPLEX_TOPK_SELECT(float, 0, samplex_topk_select_f32_any, samplex_topk_select_cluster_f32_any,
                    samplex_topk_select_grid_f32_any)
SAMPLEX_TOPK_SELECT(f16_t, 8, samplex_topk_select_f16, samplex_topk_select_cluster_f16,
                    samplex_topk_select_grid_f16)
SAMPLEX_TOPK_SELECT(f16_t, 0, samplex_topk_select_f16_any, samplex_topk_select_cluster_f16_any,
                    samplex_topk_select_grid_f16_any)
SAMPLEX_TOPK_SELECT(bf16_t, 8, samplex_topk_select_bf16, samplex_topk_select_cluster_bf16,
                    samplex_topk_select_grid_bf16)
SAMPLEX_TOPK_SELECT(bf16_t, 0, samplex_topk_select_bf16_any, samplex_topk_select_cluster_bf16_any,
                    samplex_topk_select_grid_bf16_any)
