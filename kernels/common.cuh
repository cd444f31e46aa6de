// samplex — the shared device header.
//
// Everything the kernel families share, and nothing else:
//   1. integer types and the status bits (mirrors src/status.rs)
//   2. f16/bf16 widening (and narrowing) by hand (NVRTC has no cuda_fp16.h/cuda_bf16.h) and
//      logit sanitising
//   3. 128-bit vector loads that widen to f32
//   4. Philox4x32-10 and the u32 -> (0,1) conversion (mirrors src/philox.rs bit for bit)
//   5. warp and block collectives in CUB's shape: the caller owns the shared memory, each
//      function states which threads get the result
//   6. order-preserving integer keys for f32 (radix select)
//   7. the tiled draw (docs/ARCHITECTURE.md "Drawing a token"), shared by every sampler
//   8. thread-block clusters (sm_90): rank, cluster barrier, distributed shared memory reads
//   9. row barriers in global memory, for the blocks of a cooperative launch (every GPU)
//  10. the scalar merges of a row split over several blocks (a cluster's or a grid's)
//
// Compiled with nvcc and with NVRTC alike: include no system or CUDA header here.
#pragma once

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;
typedef int i32;
typedef long long i64;

#define SAMPLEX_FLT_MAX 3.402823466e+38f
#define SAMPLEX_INF __int_as_float(0x7f800000)
#define SAMPLEX_NEG_INF __int_as_float(0xff800000)
#define SAMPLEX_NO_TOKEN 0xffffffffu
// log2(e) and ln(2) as f32: exp_weight (below) and top-p's base-2 weights (topp.cu TauScale).
#define SAMPLEX_LOG2E 1.44269504088896341f
#define SAMPLEX_LN2 0.693147180559945309f

// ---------------------------------------------------------------------------------------------
// 1. Status bits, one u32 per row (src/status.rs has the same values).
// ---------------------------------------------------------------------------------------------
#define SAMPLEX_STATUS_NAN_LOGIT 1u        // a NaN logit was read (counted as -inf)
#define SAMPLEX_STATUS_POS_INF_LOGIT 2u    // a +inf logit was read (counted as FLT_MAX)
#define SAMPLEX_STATUS_PARAM_CLAMPED 4u    // a per-row parameter was out of range and clamped
#define SAMPLEX_STATUS_NO_FINITE_LOGIT 8u  // nothing to draw from: token = u32::MAX

// ---------------------------------------------------------------------------------------------
// 2. Logit dtypes. f16 and bf16 travel as raw 16-bit patterns and are widened here.
// ---------------------------------------------------------------------------------------------
struct f16_t { u16 bits; };
struct bf16_t { u16 bits; };

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16_t x) {
  // bf16 is the top half of an f32.
  return __uint_as_float(((u32)x.bits) << 16);
}
__device__ __forceinline__ float to_f32(f16_t x) {
#ifdef SAMPLEX_EMULATED
  return samplex_emu::f16_to_f32(x.bits);  // the CPU emulator (scripts/emu) has no PTX
#else
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
  return f;
#endif
}
__device__ __forceinline__ float f16_bits_to_f32(u16 b) { f16_t h; h.bits = b; return to_f32(h); }
__device__ __forceinline__ float bf16_bits_to_f32(u16 b) { bf16_t h; h.bits = b; return to_f32(h); }

// Narrowing for the ops that write logits back (kernels/edits.cu): round to nearest even, as
// half::f16/bf16::from_f32 on the host. bf16 keeps the top half after rounding the bottom
// (NaN stays a quiet NaN); f16 is one `cvt.rn.f16.f32`.
__device__ __forceinline__ void store_logit(float *p, float x) { *p = x; }
__device__ __forceinline__ void store_logit(bf16_t *p, float x) {
  const u32 b = __float_as_uint(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) { p->bits = (u16)((b >> 16) | 0x40u); return; }
  p->bits = (u16)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ void store_logit(f16_t *p, float x) {
#ifdef SAMPLEX_EMULATED
  p->bits = samplex_emu::f32_to_f16(x);
#else
  u16 h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
  p->bits = h;
#endif
}

// SPEC "Bad input": NaN counts as -inf, +inf as the largest finite f32. Sets status bits.
__device__ __forceinline__ float sanitize(float x, u32 &status) {
  if (x != x) { status |= SAMPLEX_STATUS_NAN_LOGIT; return SAMPLEX_NEG_INF; }
  if (x == SAMPLEX_INF) { status |= SAMPLEX_STATUS_POS_INF_LOGIT; return SAMPLEX_FLT_MAX; }
  return x;
}

// sanitize() over a thread's span, the same values and bits. Logits are next to never NaN or
// +inf, so the span is tested with one compare per value (!(x < +inf) holds for NaN and +inf
// only; -inf, which masks write in numbers, passes) and one branch, and sanitised value by value
// only where the test fails. Value by value, the two tests and their branches cost six
// instructions a value: in the hot loops, more than a 16-bit logit's share of the SM's issue
// slots at the memory roof (docs/ARCHITECTURE.md, "Instructions per byte").
// span_is_clean: the test alone, for loops that sanitise in place value by value (a sanitised
// copy of the span can cost registers a kernel at its cap does not have).
template <int N> __device__ __forceinline__ bool span_is_clean(const float *x) {
  bool bad = false;
#pragma unroll
  for (int j = 0; j < N; ++j) bad |= !(x[j] < SAMPLEX_INF);
  return !bad;
}

template <int N> __device__ __forceinline__ void sanitize_span(float (&x)[N], u32 &status) {
  if (__builtin_expect(!span_is_clean<N>(x), 0)) {
#pragma unroll
    for (int j = 0; j < N; ++j) x[j] = sanitize(x[j], status);
  }
}

// Clamp a per-row parameter that only the device sees; flags the row when it had to.
__device__ __forceinline__ float clamp_param(float x, float lo, float hi, float if_nan, u32 &status) {
  if (x != x) { status |= SAMPLEX_STATUS_PARAM_CLAMPED; return if_nan; }
  if (x < lo) { status |= SAMPLEX_STATUS_PARAM_CLAMPED; return lo; }
  if (x > hi) { status |= SAMPLEX_STATUS_PARAM_CLAMPED; return hi; }
  return x;
}

// A per-row f32 parameter: entry `row` of the device array at `rows` clamped as clamp_param, or,
// where there is no array (rows = 0), the batch's scalar, which the host has validated.
__device__ __forceinline__ float row_param(u64 rows, u32 row, float scalar, float lo, float hi, float if_nan,
                                           u32 &status) {
  if (rows == 0) return scalar;
  return clamp_param(reinterpret_cast<const float *>(rows)[row], lo, hi, if_nan, status);
}

// The row's τ (SPEC step 2) for softmax, the filters and sparsemax: clamped to [0, FLT_MAX],
// NaN → 1. (BoK's τ is > 0: kernels/bok.cu clamps it from FLT_MIN_NORMAL.)
__device__ __forceinline__ float row_temperature(float scalar, u64 temps, u32 row, u32 &status) {
  return row_param(temps, row, scalar, 0.0f, SAMPLEX_FLT_MAX, 1.0f, status);
}

// 1/τ, capped at FLT_MAX so that a subnormal τ cannot give inf (and 0 · inf = NaN); 0 for τ = 0.
__device__ __forceinline__ float inverse_temperature(float t) {
  return t > 0.0f ? fminf(1.0f / t, SAMPLEX_FLT_MAX) : 0.0f;
}

// e^x for a weight (x <= 0: a logit less the max): exp2f(x * log2 e) is 4 instructions on sm_90
// and a multiply (MUFU.EX2 and a fixup for subnormal results), expf 9 (its own range reduction,
// for an accuracy at large |x| no weight needs). The product's rounding moves e^x by at most
// |x| * 2^-24, relative, less than the rounding of u itself does; e^-inf = 0.
__device__ __forceinline__ float exp_weight(float x) { return exp2f(x * SAMPLEX_LOG2E); }

// ---------------------------------------------------------------------------------------------
// 3. Vector loads: VEC elements of T per load, widened to f32. The host picks VEC so that
//    VEC * sizeof(T) is 16 bytes when the row base and stride allow it, else VEC = 1
//    (src/gpu/launch.rs: vector_width); 16-bit rows also load 4 at a time (8 bytes) for runs
//    of 4.
// ---------------------------------------------------------------------------------------------
template <typename T, int VEC> struct VecLoad;

template <typename T> struct VecLoad<T, 1> {
  __device__ __forceinline__ static void load(const T *p, float *out) { out[0] = to_f32(p[0]); }
};
template <> struct VecLoad<float, 4> {
  __device__ __forceinline__ static void load(const float *p, float *out) {
    float4 v = *reinterpret_cast<const float4 *>(p);
    out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
  }
};
// The 16-bit values packed in W 32-bit words (low half first), widened to 2W floats.
template <typename T16, int W>
__device__ __forceinline__ void widen_pairs(const u32 (&w)[W], float *out) {
#pragma unroll
  for (int i = 0; i < W; ++i) {
    T16 lo, hi;
    lo.bits = (u16)(w[i] & 0xffffu);
    hi.bits = (u16)(w[i] >> 16);
    out[2 * i] = to_f32(lo);
    out[2 * i + 1] = to_f32(hi);
  }
}
template <typename T16> struct VecLoad16x8 {
  __device__ __forceinline__ static void load(const T16 *p, float *out) {
    const uint4 v = *reinterpret_cast<const uint4 *>(p);
    const u32 w[4] = {v.x, v.y, v.z, v.w};
    widen_pairs<T16>(w, out);
  }
};
// Half a vector (8 bytes): runs of 4 16-bit values (BoK's row and top-M tiles).
template <typename T16> struct VecLoad16x4 {
  __device__ __forceinline__ static void load(const T16 *p, float *out) {
    const uint2 v = *reinterpret_cast<const uint2 *>(p);
    const u32 w[2] = {v.x, v.y};
    widen_pairs<T16>(w, out);
  }
};
template <> struct VecLoad<f16_t, 8> : VecLoad16x8<f16_t> {};
template <> struct VecLoad<bf16_t, 8> : VecLoad16x8<bf16_t> {};
template <> struct VecLoad<f16_t, 4> : VecLoad16x4<f16_t> {};
template <> struct VecLoad<bf16_t, 4> : VecLoad16x4<bf16_t> {};

// How many elements p sits past the 16-byte boundary below it (0 .. 16 / sizeof(T) - 1). A row
// of a contiguous batch whose vocab is not a multiple of 16 bytes starts at a different one of
// these offsets each row.
template <typename T> __device__ __forceinline__ u32 elements_past_16_bytes(const T *p) {
  return (u32)(reinterpret_cast<u64>(p) & 15u) / (u32)sizeof(T);
}

// One stage of load_shifted's barrel shifter: a[j] = a[j + B] for every j when `take`. Each
// stage is an instantiation of its own: written as the iterations of a loop over B, nvcc
// unrolled the inner loop first, indexed the array at run time and put it in local memory
// (a stack frame of 48-64 bytes in every kernel that shifts).
template <int B, typename E, int M>
__device__ __forceinline__ void shift_down_if(bool take, E (&a)[M]) {
#pragma unroll
  for (int j = 0; j + B < M; ++j) a[j] = take ? a[j + B] : a[j];
}

// The N elements that start h elements into the raw 16-byte vectors raw[0 .. N / W + 1)
// (W = one vector's worth), widened: a barrel shifter over the bits of h moves them down; every
// index is a constant, so nothing leaves the registers. 16-bit elements are shifted while still
// packed in pairs: whole words by h / 2, then an odd h takes each word's high half and its
// neighbour's low half (half the registers and selects of shifting widened floats). h = 0
// reads only raw[0 .. N / W).
template <typename T, int N>
__device__ __forceinline__ void shift_widen(const uint4 (&raw)[N * sizeof(T) / 16 + 1], u32 h, float (&out)[N]) {
  constexpr int W = 16 / (int)sizeof(T);
  static_assert(N % W == 0, "whole vectors");
  constexpr int WORDS = (N + W) * (int)sizeof(T) / 4;
  u32 w[WORDS];
#pragma unroll
  for (int v = 0; v < WORDS / 4; ++v) {
    w[4 * v] = raw[v].x; w[4 * v + 1] = raw[v].y; w[4 * v + 2] = raw[v].z; w[4 * v + 3] = raw[v].w;
  }
  if constexpr (W == 4) {
    shift_down_if<1>((h & 1u) != 0u, w);
    shift_down_if<2>((h & 2u) != 0u, w);
#pragma unroll
    for (int j = 0; j < N; ++j) out[j] = __uint_as_float(w[j]);
  } else {
    shift_down_if<1>((h & 2u) != 0u, w);
    shift_down_if<2>((h & 4u) != 0u, w);
    const u32 s = (h & 1u) * 16u;  // 0 or 16: the pair (w[j + 1]:w[j]) shifted right by s
    u32 o[N / 2];
#pragma unroll
    for (int j = 0; j < N / 2; ++j) o[j] = (u32)(((((u64)w[j + 1]) << 32) | w[j]) >> s);
    widen_pairs<T>(o, out);
  }
}

// Loads the N elements p[0 .. N) with 16-byte loads although p may not be aligned: the N + W
// elements from the boundary h elements below p (h = elements_past_16_bytes(p), passed in
// because it is uniform over a row), then shift_widen. The caller guarantees that
// p - h .. p - h + N + W may be read. One more load than an aligned run, and no more DRAM
// traffic: neighbouring threads read the same sectors.
template <typename T, int N>
__device__ __forceinline__ void load_shifted(const T *p, u32 h, float (&out)[N]) {
  constexpr int R = N * (int)sizeof(T) / 16 + 1;
  const uint4 *aligned = reinterpret_cast<const uint4 *>(p - h);
  uint4 raw[R];
#pragma unroll
  for (int v = 0; v < R; ++v) raw[v] = aligned[v];
  shift_widen<T, N>(raw, h, out);
}

// Loads n <= VEC elements starting at p (the ragged end of a row) one by one; the rest get fill.
template <typename T, int VEC>
__device__ __forceinline__ void load_partial(const T *p, int n, float fill, float *out) {
#pragma unroll
  for (int i = 0; i < VEC; ++i) out[i] = i < n ? to_f32(p[i]) : fill;
}

// The elements per vector of an instantiation: VEC, or for an _any twin (VEC = 0, rows at any
// alignment; load_span) one 16-byte vector's worth.
template <typename T, int VEC> struct Lanes {
  static constexpr int N = VEC != 0 ? VEC : 16 / (int)sizeof(T);
};

// The N elements row[first .. first + N) widened to f32, -inf from index `len` on.
// VEC = 4 (f32) / 8 (f16, bf16; 4 for runs of 4): the row is 16-byte aligned (and first a
// multiple of VEC).
// VEC = 1 (a _v1 twin): scalar loads. VEC = 0 (an _any twin): the row may start h elements
// past a 16-byte boundary (odd vocab sizes, offset views) and is still read with 16-byte loads
// (load_shifted), except at its two ends, where the aligned span would leave [0, len): those
// load one by one, so nothing outside the row is read. A twin of its own, because the shift
// costs registers (up to 16 per thread) that the aligned kernels need not give up.
template <typename T, int VEC, int N>
__device__ __forceinline__ void load_span(const T *row, u32 len, u32 first, float (&x)[N]) {
  if constexpr (VEC == 0) {
    constexpr int W = 16 / (int)sizeof(T);
    const u32 h = elements_past_16_bytes(row);  // uniform over the row
    if (h == 0u) return load_span<T, W, N>(row, len, first, x);
    if (first >= h && first + N + W - h <= len) return load_shifted<T, N>(row + first, h, x);
  } else if (first + N <= len) {
#pragma unroll
    for (int j = 0; j < N; j += VEC) VecLoad<T, VEC>::load(row + first + j, x + j);
    return;
  }
  const int n = first < len ? (int)(len - first) : 0;
  load_partial<T, N>(row + first, n, SAMPLEX_NEG_INF, x);
}

// A span's loads issued ahead of its use. The tile loops reduce each tile across the block, or
// store it, before they load the next (a load is not moved above a store that might alias it),
// so a thread had one 16-byte load in flight and a block waited out a memory latency per tile.
// A loop that issue()s tile t + 1 as soon as it has take()n tile t keeps two in flight, and the
// latency overlaps the reductions. The aligned instantiations (VEC = one 16-byte vector's
// worth) and the _any twins (VEC = 0: the vectors from the boundary h elements below the span,
// one more, shifted where taken, as load_span's load_shifted) prefetch, as raw words, so that
// the widening waits for the data where the span is used. SHIFTED_TOO says whether an _any
// twin does: by default the 16-bit ones only (an f32 span of 8 holds a third vector, and sm_90's
// f32 draw spilled at its 64-register cap); false leaves them all out. Elsewhere (the _v1
// twins, a span that the vectors would leave the row from: at its end, or an _any row's first)
// take() loads then (load_span), as before.
template <typename T, int VEC, int N, bool SHIFTED_TOO = sizeof(T) == 2> struct SpanPrefetch {
  static constexpr bool ALIGNED = VEC * (int)sizeof(T) == 16;
  static constexpr bool SHIFTED = VEC == 0 && SHIFTED_TOO;
  static constexpr int V = ALIGNED || SHIFTED ? N * (int)sizeof(T) / 16 : 1;  // the span's vectors
  static constexpr int R = SHIFTED ? V + 1 : V;                               // held
  static_assert(!(ALIGNED || SHIFTED) || N * (int)sizeof(T) % 16 == 0, "whole vectors");
  uint4 raw[R];
  u32 h;  // SHIFTED: the row's elements past a 16-byte boundary
  bool ready;
  __device__ __forceinline__ void issue(const T *row, u32 len, u32 first) {
    ready = false;
    if constexpr (ALIGNED) {
      if (first + N <= len) {
        const uint4 *p = reinterpret_cast<const uint4 *>(row + first);
#pragma unroll
        for (int v = 0; v < V; ++v) raw[v] = p[v];
        ready = true;
      }
    } else if constexpr (SHIFTED) {
      constexpr u32 W = 16 / (u32)sizeof(T);
      h = elements_past_16_bytes(row);  // uniform over the row
      if (h == 0u ? first + N <= len : first >= h && first + N + W - h <= len) {
        const uint4 *p = reinterpret_cast<const uint4 *>(row + first - h);
#pragma unroll
        for (int v = 0; v < V; ++v) raw[v] = p[v];
        // The extra vector only when shifted (at h = 0 it may lie past the row; unused).
        raw[V] = h != 0u ? p[V] : make_uint4(0u, 0u, 0u, 0u);
        ready = true;
      }
    }
  }
  __device__ __forceinline__ void take(const T *row, u32 len, u32 first, float (&x)[N]) {
    if constexpr (SHIFTED) {
      if (ready) {
        shift_widen<T, N>(raw, h, x);
        return;
      }
    } else if constexpr (ALIGNED) {
      if (ready) {
#pragma unroll
        for (int v = 0; v < V; ++v) {
          const u32 w[4] = {raw[v].x, raw[v].y, raw[v].z, raw[v].w};
          if constexpr (sizeof(T) == 4) {
#pragma unroll
            for (int k = 0; k < 4; ++k) x[4 * v + k] = __uint_as_float(w[k]);
          } else {
            widen_pairs<T>(w, x + 8 * v);
          }
        }
        return;
      }
    }
    load_span<T, VEC, N>(row, len, first, x);
  }
};

// ---------------------------------------------------------------------------------------------
// 4. Philox4x32-10 (Salmon et al., SC'11). counter = 4 x u32, key = 2 x u32.
// ---------------------------------------------------------------------------------------------
struct Philox4 { u32 x, y, z, w; };

__device__ __forceinline__ Philox4 philox4x32_10(Philox4 c, u32 k0, u32 k1) {
  const u32 M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  const u32 W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    u32 hi0 = __umulhi(M0, c.x), lo0 = M0 * c.x;
    u32 hi1 = __umulhi(M1, c.z), lo1 = M1 * c.z;
    Philox4 n;
    n.x = hi1 ^ c.y ^ k0;
    n.y = lo1;
    n.z = hi0 ^ c.w ^ k1;
    n.w = lo0;
    c = n;
    k0 += W0;
    k1 += W1;
  }
  return c;
}

// The random numbers of draw-tile `tile` of a row (ARCHITECTURE.md "Random numbers"):
// counter = (tile, stream, offset low, offset high), key = (seed low, seed high).
__device__ __forceinline__ Philox4 row_random(u64 seed, u64 offset, u32 stream, u32 tile) {
  Philox4 c;
  c.x = tile;
  c.y = stream;
  c.z = (u32)offset;
  c.w = (u32)(offset >> 32);
  return philox4x32_10(c, (u32)seed, (u32)(seed >> 32));
}

// A row's random stream: per-row (seeds[row], offsets[row]) with stream 0 when `seeds` is
// non-null (a request's tokens then do not depend on its position in the batch), else the
// batch's (seed, offset) with stream = row. `seeds`/`offsets` are device addresses, 0 = none.
struct RowRng {
  u64 seed, offset;
  u32 stream;
};

__device__ __forceinline__ RowRng row_rng(u64 seed, u64 offset, u64 seeds, u64 offsets, u32 row) {
  RowRng r;
  if (seeds != 0) {
    r.seed = reinterpret_cast<const u64 *>(seeds)[row];
    r.offset = offsets != 0 ? reinterpret_cast<const u64 *>(offsets)[row] : offset;
    r.stream = 0;
  } else {
    r.seed = seed;
    r.offset = offset;
    r.stream = row;
  }
  return r;
}

// u32 -> the open interval (0, 1): (top 23 bits + 1/2) / 2^23. Exact in f32 (24 significant bits)
// and f64, never 0 or 1, so log(u) and log(-log(u)) are always finite.
__device__ __forceinline__ float uniform_open(u32 x) {
  return ((float)(x >> 9) + 0.5f) * 1.1920928955078125e-7f;
}

// Gumbel(0,1) noise from an open uniform.
__device__ __forceinline__ float gumbel(float u) { return -logf(-logf(u)); }

// ---------------------------------------------------------------------------------------------
// 5. Warp and block collectives. Block functions take caller-owned shared memory of
//    BlockScratch<THREADS> and end with a __syncthreads(), so the scratch can be reused at once.
//    Every thread of the block must call them.
// ---------------------------------------------------------------------------------------------
#define SAMPLEX_WARP 32
#define SAMPLEX_FULL_MASK 0xffffffffu

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(SAMPLEX_FULL_MASK, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(SAMPLEX_FULL_MASK, v, o);
  return v;
}
__device__ __forceinline__ u32 warp_sum_u32(u32 v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(SAMPLEX_FULL_MASK, v, o);
  return v;
}
__device__ __forceinline__ u32 warp_or(u32 v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v |= __shfl_xor_sync(SAMPLEX_FULL_MASK, v, o);
  return v;
}

// (value, index) pair ordered by value descending, then index ascending: the SPEC's tie rule
// ("ties go to the lowest index") as one comparison every argmax shares.
struct ArgMax { float v; u32 i; };
__device__ __forceinline__ bool argmax_better(ArgMax a, ArgMax b) {
  return a.v > b.v || (a.v == b.v && a.i < b.i);
}
__device__ __forceinline__ ArgMax argmax_pick(ArgMax a, ArgMax b) { return argmax_better(b, a) ? b : a; }
__device__ __forceinline__ ArgMax warp_argmax(ArgMax a) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    ArgMax b;
    b.v = __shfl_xor_sync(SAMPLEX_FULL_MASK, a.v, o);
    b.i = __shfl_xor_sync(SAMPLEX_FULL_MASK, a.i, o);
    a = argmax_pick(a, b);
  }
  return a;
}

template <int THREADS> struct BlockScratch {
  static_assert(THREADS % 32 == 0 && THREADS <= 1024, "block must be whole warps");
  static constexpr int WARPS = THREADS / 32;
  float f[WARPS];
  u32 u[WARPS];
  float result_f;
  u32 result_u;
};

// Block reduction of one value per thread with a warp reduction `warp_op` (its identity
// `empty`), on caller-owned slots (THREADS / 32 warp slots and a result slot): every thread
// gets the result. Ends with a __syncthreads(), so the scratch can be reused at once. The
// tree (warp butterflies, then warp 0 over the warps) is fixed by THREADS, so a float sum is
// the same run after run.
template <int THREADS, typename U, typename WarpOp>
__device__ __forceinline__ U block_reduce(U v, U empty, U (&warp_slots)[THREADS / 32], U &result, WarpOp warp_op) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_op(v);
  if (lane == 0) warp_slots[warp] = v;
  __syncthreads();
  if (warp == 0) {
    U w = lane < THREADS / 32 ? warp_slots[lane] : empty;
    w = warp_op(w);
    if (lane == 0) result = w;
  }
  __syncthreads();
  const U r = result;
  __syncthreads();
  return r;
}

template <int THREADS> __device__ __forceinline__ float block_max(float v, BlockScratch<THREADS> &s) {
  return block_reduce<THREADS, float>(v, SAMPLEX_NEG_INF, s.f, s.result_f, warp_max);
}
template <int THREADS> __device__ __forceinline__ float block_sum(float v, BlockScratch<THREADS> &s) {
  return block_reduce<THREADS, float>(v, 0.0f, s.f, s.result_f, warp_sum);
}
template <int THREADS> __device__ __forceinline__ u32 block_sum_u32(u32 v, BlockScratch<THREADS> &s) {
  return block_reduce<THREADS, u32>(v, 0u, s.u, s.result_u, warp_sum_u32);
}
template <int THREADS> __device__ __forceinline__ u32 block_or(u32 v, BlockScratch<THREADS> &s) {
  return block_reduce<THREADS, u32>(v, 0u, s.u, s.result_u, warp_or);
}

template <int THREADS>
__device__ __forceinline__ ArgMax block_argmax(ArgMax a, BlockScratch<THREADS> &s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  a = warp_argmax(a);
  if (lane == 0) { s.f[warp] = a.v; s.u[warp] = a.i; }
  __syncthreads();
  if (warp == 0) {
    ArgMax w;
    w.v = lane < BlockScratch<THREADS>::WARPS ? s.f[lane] : SAMPLEX_NEG_INF;
    w.i = lane < BlockScratch<THREADS>::WARPS ? s.u[lane] : SAMPLEX_NO_TOKEN;
    w = warp_argmax(w);
    if (lane == 0) { s.result_f = w.v; s.result_u = w.i; }
  }
  __syncthreads();
  ArgMax r;
  r.v = s.result_f;
  r.i = s.result_u;
  __syncthreads();
  return r;
}

// Exclusive block scan of one value per thread (u32, u64 or float), in thread order, CUB's
// shape: every thread gets its prefix and the total. Integers: exact, order-free; floats: the
// summation tree is fixed by THREADS, so the result is the same run after run. The scratch is
// the caller's: THREADS / 32 warp slots and a total slot, in a ScanSmem or a BlockScratch.
template <int THREADS, typename U> struct ScanSmem {
  static constexpr int WARPS = THREADS / 32;
  U warp[WARPS];
  U total;
};

template <int THREADS, typename U>
__device__ __forceinline__ U block_exclusive_scan(U v, U &total, U (&warp_slots)[THREADS / 32], U &total_slot) {
  constexpr int WARPS = THREADS / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  U inc = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const U n = __shfl_up_sync(SAMPLEX_FULL_MASK, inc, o);
    if (lane >= o) inc += n;
  }
  if (lane == 31) warp_slots[warp] = inc;
  __syncthreads();
  if (warp == 0) {
    const U w = lane < WARPS ? warp_slots[lane] : (U)0;
    U wi = w;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const U n = __shfl_up_sync(SAMPLEX_FULL_MASK, wi, o);
      if (lane >= o) wi += n;
    }
    if (lane < WARPS) warp_slots[lane] = wi - w;  // exclusive warp offsets
    if (lane == 31) total_slot = wi;
  }
  __syncthreads();
  const U r = warp_slots[warp] + inc - v;
  total = total_slot;
  __syncthreads();  // the scratch may be reused at once
  return r;
}
template <int THREADS, typename U>
__device__ __forceinline__ U block_exclusive_scan(U v, U &total, ScanSmem<THREADS, U> &s) {
  return block_exclusive_scan<THREADS, U>(v, total, s.warp, s.total);
}
template <int THREADS>
__device__ __forceinline__ u32 block_exclusive_sum_u32(u32 v, u32 &total, BlockScratch<THREADS> &s) {
  return block_exclusive_scan<THREADS, u32>(v, total, s.u, s.result_u);
}
template <int THREADS>
__device__ __forceinline__ float block_exclusive_sum(float v, float &total, BlockScratch<THREADS> &s) {
  return block_exclusive_scan<THREADS, float>(v, total, s.f, s.result_f);
}

// atomicAdd of a u64 in shared memory as two 32-bit adds. The 64-bit one compiles to a
// compare-and-swap loop (sm_90 SASS: seven instructions, and the loop again whenever another
// warp wrote the word in between); these are six, with no retry. The low word's add returns
// its old value, whose overflow carries into the high word: the u64 read after the next
// barrier is the same sum (mod 2^64, so signed sums too). Until then the two words may
// disagree, so nothing may read them before it.
__device__ __forceinline__ void shared_add_u64(u64 *a, u64 v) {
  u32 *w = reinterpret_cast<u32 *>(a);  // little-endian: w[0] the low word
  const u32 lo = (u32)v;
  const u32 old = atomicAdd(w, lo);
  atomicAdd(w + 1, (u32)(v >> 32) + (old + lo < old ? 1u : 0u));
}

// ---------------------------------------------------------------------------------------------
// 6. Order-preserving keys: a < b (as floats, -0 == +0 aside) <=> key(a) < key(b) as u32.
//    -inf maps to the smallest key of any non-NaN value; NaN never reaches here (sanitize).
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ u32 float_to_key(float x) {
  u32 b = __float_as_uint(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_to_float(u32 k) {
  u32 b = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  return __uint_as_float(b);
}

// ---------------------------------------------------------------------------------------------
// 7. The tiled draw (docs/ARCHITECTURE.md "Drawing a token"; src/cpu/draw.rs is the same
//    method in f64). A row is cut into tiles of SAMPLEX_DRAW_TILE consecutive tokens. For a
//    tile t with log-scale m_t and weights w_i >= 0 (w = 0: not kept), W_t = sum w_i:
//      (a) r = row_random(seed, offset, stream, t); ua = uniform_open(r.x), ub = uniform_open(r.y)
//      (b) key_t = m_t + log(W_t) + gumbel(ua)        (-inf when W_t = 0)
//      (c) candidate_t = the first i of the tile whose inclusive prefix sum of w exceeds
//          ub * W_t (the tile's last kept token if rounding leaves none)
//    The row's token is the candidate of the tile with the largest key (ties: lowest tile).
//    P(i) = P(tile t wins) * w_i / W_t = (e^{m_t} W_t / sum) * (w_i / W_t): exact, one
//    read of the row, two random numbers per tile, and the result does not depend on how
//    tiles are spread over blocks.
// ---------------------------------------------------------------------------------------------
#define SAMPLEX_DRAW_TILE 2048

// One tile's result: its Gumbel key and candidate token (SAMPLEX_NO_TOKEN if nothing is kept).
struct TileDraw { float key; u32 token; };

// Merge two tile results; `a` must come from the lower tile index (ties keep it).
__device__ __forceinline__ TileDraw tile_draw_pick(TileDraw a, TileDraw b) {
  return b.key > a.key ? b : a;
}

// Step (c) for one block that holds a tile: THREADS threads, each with `n` (<= PER) weights
// of consecutive tokens starting at token `first`, thread order = token order.
// Returns the candidate and W_t to every thread.
template <int THREADS, int PER>
__device__ __forceinline__ u32 block_tile_candidate(const float *w, u32 first, float u_b,
                                                    float &tile_total, BlockScratch<THREADS> &s) {
  float mine = 0.0f;
  u32 last_kept = SAMPLEX_NO_TOKEN;
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    mine += w[i];
    if (w[i] > 0.0f) last_kept = first + i;
  }
  float total;
  float before = block_exclusive_sum<THREADS>(mine, total, s);
  tile_total = total;
  const float target = u_b * total;
  // The thread whose [before, before + mine) holds the target walks its own weights.
  u32 found = SAMPLEX_NO_TOKEN;
  if (mine > 0.0f && target >= before && target < before + mine) {
    float acc = before;
#pragma unroll
    for (int i = 0; i < PER; ++i) {
      acc += w[i];
      if (found == SAMPLEX_NO_TOKEN && w[i] > 0.0f && acc > target) found = first + i;
    }
    if (found == SAMPLEX_NO_TOKEN) found = last_kept;
  }
  // Rounding can leave the target past every prefix: fall back to the tile's last kept token.
  // Token ids are increasing in thread order, so a max over threads finds both.
  ArgMax pick;
  pick.v = found != SAMPLEX_NO_TOKEN ? 1.0f : (last_kept != SAMPLEX_NO_TOKEN ? 0.0f : SAMPLEX_NEG_INF);
  pick.i = found != SAMPLEX_NO_TOKEN ? found : last_kept;
  // Among threads with found (v = 1) take the lowest id (only one can hold the target anyway);
  // among fallbacks (v = 0) we want the highest id: encode it as the lowest of ~id.
  if (pick.v == 0.0f) pick.i = ~pick.i;
  ArgMax best = block_argmax<THREADS>(pick, s);
  if (best.v == SAMPLEX_NEG_INF) return SAMPLEX_NO_TOKEN;
  return best.v == 1.0f ? best.i : ~best.i;
}

// Steps (a)-(b): a tile's Gumbel key from its log-scale and total weight.
__device__ __forceinline__ float tile_key(float log_scale, float total, float u_a) {
  if (!(total > 0.0f)) return SAMPLEX_NEG_INF;
  return log_scale + logf(total) + gumbel(u_a);
}

// ---------------------------------------------------------------------------------------------
// 8. Thread-block clusters (sm_90). The blocks of a cluster run at the same time (on one GPC)
//    and can read each other's shared memory (distributed shared memory, DSMEM). Inline PTX:
//    NVRTC has no cooperative_groups. SAMPLEX_CLUSTERS is 1 where these exist; elsewhere (the
//    sm_80/86/89 SASS and the compute_80 PTX) a kernel that needs them compiles to a trap, and
//    the host never launches it there (Sampler::cluster_fits in src/gpu/launch.rs checks the
//    function's PTX version).
//      cluster_rank(), cluster_size(): this block's rank in its cluster, and the cluster's blocks
//      cluster_sync(): every thread of the cluster arrives, then waits for all (release/acquire
//        at cluster scope: shared-memory writes before it are visible to every block after it).
//        Every thread of every block calls it the same number of times, warp-uniformly, like
//        __syncthreads (which it also is, for the block). A block must not read another's shared
//        memory before the first cluster_sync (it may not have started) nor exit while another
//        may still read its own (end with one).
//      cluster_map(p, rank): the address of `p` (in this block's shared memory) in block
//        `rank`'s; cluster_load_u32 / cluster_load_u64 / cluster_load_v4 read there.
//    The CPU emulator (scripts/emu) has twins that run each block of a cluster on its own OS
//    thread and check the rules above; there only dynamic shared memory can be mapped.
// ---------------------------------------------------------------------------------------------
#if defined(SAMPLEX_EMULATED) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900)
#define SAMPLEX_CLUSTERS 1
#else
#define SAMPLEX_CLUSTERS 0
#endif

#if defined(SAMPLEX_EMULATED)
struct ClusterPtr { const void *p; };
__device__ __forceinline__ u32 cluster_rank() { return samplex_emu::cluster_rank(); }
__device__ __forceinline__ u32 cluster_size() { return samplex_emu::cluster_size(); }
__device__ __forceinline__ void cluster_sync() { samplex_emu::cluster_sync(); }
__device__ __forceinline__ ClusterPtr cluster_map(const void *p, u32 rank) {
  ClusterPtr c;
  c.p = samplex_emu::cluster_map(p, rank);
  return c;
}
__device__ __forceinline__ u32 cluster_load_u32(ClusterPtr c) {
  u32 v;
  samplex_emu::cluster_read(&v, c.p, sizeof v);
  return v;
}
__device__ __forceinline__ uint4 cluster_load_v4(ClusterPtr c) {
  uint4 v;
  samplex_emu::cluster_read(&v, c.p, sizeof v);
  return v;
}
__device__ __forceinline__ u64 cluster_load_u64(ClusterPtr c) {
  u64 v;
  samplex_emu::cluster_read(&v, c.p, sizeof v);
  return v;
}
#elif SAMPLEX_CLUSTERS
struct ClusterPtr { u32 a; };  // an address in the shared::cluster window
__device__ __forceinline__ u32 cluster_rank() {
  u32 r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
__device__ __forceinline__ u32 cluster_size() {
  u32 r;
  asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(r));
  return r;
}
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
__device__ __forceinline__ ClusterPtr cluster_map(const void *p, u32 rank) {
  u32 local;
  asm("{\n\t.reg .u64 g;\n\tcvta.to.shared.u64 g, %1;\n\tcvt.u32.u64 %0, g;\n\t}" : "=r"(local) : "l"(p));
  ClusterPtr c;
  asm("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(c.a) : "r"(local), "r"(rank));
  return c;
}
__device__ __forceinline__ u32 cluster_load_u32(ClusterPtr c) {
  u32 v;
  asm volatile("ld.shared::cluster.u32 %0, [%1];" : "=r"(v) : "r"(c.a) : "memory");
  return v;
}
__device__ __forceinline__ u64 cluster_load_u64(ClusterPtr c) {
  u64 v;
  asm volatile("ld.shared::cluster.u64 %0, [%1];" : "=l"(v) : "r"(c.a) : "memory");
  return v;
}
__device__ __forceinline__ uint4 cluster_load_v4(ClusterPtr c) {
  uint4 v;
  asm volatile("ld.shared::cluster.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(c.a)
               : "memory");
  return v;
}
#endif

// ---------------------------------------------------------------------------------------------
// 9. Row barriers in global memory (every GPU). The blocks of a cooperative launch
//    (CU_LAUNCH_ATTRIBUTE_COOPERATIVE: the driver guarantees that they all run at once) can wait
//    for each other through a counter in global memory; kernels/topk.cu's GridRow and
//    kernels/bok.cu's GridGroup do so for the C blocks that share a row where clusters do not
//    exist (below sm_90).
//      RowBarrier: zeroed once when allocated; every barrier leaves `arrived` at 0 again, so
//        nothing is reset per call (and a CUDA graph can replay the kernel).
//      row_barrier(bar, blocks): every thread of each of the `blocks` blocks calls it, the same
//        number of times; writes to global memory before it are visible to the other blocks
//        after it (thread 0's fences around the counter, __syncthreads for the block: the
//        pattern of cooperative groups' grid sync).
//      load_cg_u32 / load_cg_u64 / load_cg_v4: loads that skip L1 (another SM wrote the data).
//    The CPU emulator (scripts/emu) runs a cooperative launch's blocks at once, each on its own
//    OS thread; its spin_pause sleeps, and fails a wait that never ends (or that waits for a
//    block a non-cooperative launch would not run at the same time).
// ---------------------------------------------------------------------------------------------
struct RowBarrier {
  u32 arrived;  // blocks at the open barrier
  u32 gen;      // barriers completed (wraps)
};

#if defined(SAMPLEX_EMULATED)
__device__ __forceinline__ u32 load_acquire_u32(const u32 *p) { return samplex_emu::load_acquire(p); }
__device__ __forceinline__ void spin_pause(u32 spins) { samplex_emu::spin_pause(spins); }
__device__ __forceinline__ u32 load_cg_u32(const u32 *p) { return *p; }
__device__ __forceinline__ u64 load_cg_u64(const u64 *p) { return *p; }
__device__ __forceinline__ uint4 load_cg_v4(const uint4 *p) { return *p; }
#else
__device__ __forceinline__ u32 load_acquire_u32(const u32 *p) {
  u32 v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void spin_pause(u32) { __nanosleep(64); }
__device__ __forceinline__ u32 load_cg_u32(const u32 *p) {
  u32 v;
  asm volatile("ld.global.cg.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ u64 load_cg_u64(const u64 *p) {
  u64 v;
  asm volatile("ld.global.cg.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ uint4 load_cg_v4(const uint4 *p) {
  uint4 v;
  asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
}
#endif

__device__ __forceinline__ void row_barrier(RowBarrier *bar, u32 blocks) {
  __syncthreads();  // the block's writes are done
  if (threadIdx.x == 0) {
    // Read the generation before arriving: it cannot move until this block has arrived.
    const u32 gen = load_acquire_u32(&bar->gen);
    __threadfence();
    if (atomicAdd(&bar->arrived, 1u) == blocks - 1) {
      atomicExch(&bar->arrived, 0u);  // the last to arrive re-arms the barrier, then opens it
      __threadfence();
      atomicAdd(&bar->gen, 1u);
    } else {
      for (u32 spins = 0; load_acquire_u32(&bar->gen) == gen; ++spins) spin_pause(spins);
    }
    __threadfence();
  }
  __syncthreads();
}

// ---------------------------------------------------------------------------------------------
// 9b. A row's last block (every GPU): the blocks of a row split over several (no cluster, no
//     cooperative launch) each write a partial, then take a ticket; the last one merges.
// ---------------------------------------------------------------------------------------------
// Once thread 0 has written the block's partial: thread 0 makes it visible device-wide and takes
// a ticket on tickets[row] (atomicInc wraps the count to 0 at the last ticket, ready for the next
// launch: a plain store resetting it would follow the other blocks' atomics with nothing
// ordering it after them); the taker of the last ticket fences again (the acquire that goes with
// the other blocks' fences), and the barrier passes it on. True in every thread of the row's last
// block, which may then read every partial. `flag`: a shared word of the caller's. Every thread
// of the block must call it.
__device__ __forceinline__ bool last_block_of_row(u64 tickets, u32 row, u32 blocks, u32 &flag) {
  if (threadIdx.x == 0) {
    __threadfence();
    const u32 ticket = atomicInc(reinterpret_cast<u32 *>(tickets) + row, blocks - 1u);
    const bool last = ticket == blocks - 1u;
    if (last) __threadfence();
    flag = last ? 1u : 0u;
  }
  __syncthreads();
  return flag != 0u;
}

// A split row's draw merged in the last block's warp 0: each lane offers the blocks' (key,
// token) it reads, blocks l, l + 32, ...; (key, block) ordered as an argmax, ties to the lower
// block, whose tiles are the lower ones: a total order, so the order of the offers does not
// matter. finish() gives every lane the row's key, and its token from the lane that read the
// winning block (block mod 32: its own best is the row's). A block with no draw has key −inf and
// no token: if no block drew, block 0 wins and the token is SAMPLEX_NO_TOKEN.
struct BlocksDraw {
  ArgMax m;  // m.i: a block
  u32 token;
  __device__ __forceinline__ BlocksDraw() : token(SAMPLEX_NO_TOKEN) {
    m.v = SAMPLEX_NEG_INF;
    m.i = SAMPLEX_NO_TOKEN;
  }
  __device__ __forceinline__ void offer(float key, u32 block, u32 tok) {
    ArgMax q;
    q.v = key;
    q.i = block;
    if (argmax_better(q, m)) {
      m = q;
      token = tok;
    }
  }
  __device__ __forceinline__ void finish() {
    m = warp_argmax(m);
    token = __shfl_sync(SAMPLEX_FULL_MASK, token, m.i & 31u);
  }
};

// ---------------------------------------------------------------------------------------------
// 10. The scalar merges of a row split over several blocks, written once for every kind of
//     group (CRTP): D provides publish(v) (thread 0 puts this block's value in the slot of this
//     merge's parity, then one barrier of the group; returns a handle to every rank's),
//     published<P>(handle, rank), size() and rank(). Only thread 0's v is published, so a value
//     valid in thread 0 alone (a warp-0 reduction) is enough. The folds run in rank order, so
//     every block gets the same bits.
// ---------------------------------------------------------------------------------------------
// A merge value as the 16 bytes a block publishes.
template <typename P> union Raw16 {
  P p;
  uint4 w;
};

// Thread 0 stores v (zero-padded) in a publish slot; a merged value read back from one.
template <typename P> __device__ __forceinline__ void publish_raw16(uint4 *slot, const P &v) {
  static_assert(sizeof(P) <= sizeof(uint4), "a merge value is at most 16 bytes");
  if (threadIdx.x == 0) {
    Raw16<P> x;
    x.w = make_uint4(0, 0, 0, 0);
    x.p = v;
    *slot = x.w;
  }
}
template <typename P> __device__ __forceinline__ P from_raw16(uint4 w) {
  Raw16<P> x;
  x.w = w;
  return x.p;
}

#if SAMPLEX_CLUSTERS
// A cluster group's publish: `slots` (2, by merge parity) at the head of each block's dynamic
// shared memory, then one cluster barrier; the slot, for `published` to map to each rank.
template <typename P> __device__ __forceinline__ const uint4 *cluster_publish(uint4 *slots, u32 &phase, const P &v) {
  uint4 *slot = &slots[phase & 1];
  publish_raw16(slot, v);
  ++phase;
  cluster_sync();
  return slot;
}
#endif

template <typename D> struct RowMerges {
  // f folded over every block's value in rank order.
  template <typename P, typename F> __device__ __forceinline__ P merge(const P &v, F f) {
    D &d = *static_cast<D *>(this);
    const auto slot = d.publish(v);
    P acc = d.template published<P>(slot, 0);
    const u32 size = d.size();
#pragma unroll 1  // a few merges per kernel: registers matter more than latency here
    for (u32 r = 1; r < size; ++r) acc = f(acc, d.template published<P>(slot, r));
    return acc;
  }
  // f folded over the values of the lower ranks, from `zero`.
  template <typename P, typename F> __device__ __forceinline__ P before(const P &v, P zero, F f) {
    D &d = *static_cast<D *>(this);
    const auto slot = d.publish(v);
    P acc = zero;
    const u32 rank = d.rank();
#pragma unroll 1
    for (u32 r = 0; r < rank; ++r) acc = f(acc, d.template published<P>(slot, r));
    return acc;
  }
};

// ---------------------------------------------------------------------------------------------
// Dynamic shared memory: `SAMPLEX_DYNAMIC_SHARED(float4, name);` declares the unit's array, sized
// at launch. (In the CPU emulator, scripts/emu, `name` converts to the running block's own
// buffer, which the emulator allocates at the launch's size, poisons and bounds-checks.)
// ---------------------------------------------------------------------------------------------
#ifdef SAMPLEX_EMULATED
#define SAMPLEX_DYNAMIC_SHARED(T, name) static const samplex_emu::DynamicShared<T> name
#else
#define SAMPLEX_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) T name[]
#endif

// ---------------------------------------------------------------------------------------------
// Helpers for index arithmetic, named once.
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ u32 ceil_div(u32 a, u32 b) { return (a + b - 1) / b; }

// The start of row `row` in a strided batch.
template <typename T>
__device__ __forceinline__ const T *row_ptr(const T *base, u32 row, u64 stride) {
  return base + (u64)row * stride;
}
