// samplex CPU emulator — the device side: the CUDA C++ surface that kernels/ uses, in plain C++.
//
// g++ compiles kernels/*.cu with this header force-included (scripts/emu/build.sh) and with
// SAMPLEX_EMULATED defined. Every CUDA thread becomes a fiber (driver.cpp); a block's fibers run
// on one OS thread, cooperatively, switching only at barriers and warp collectives:
//   - __syncthreads() waits for every live thread of the block (threads that returned count as
//     arrived, as on the hardware); a barrier some threads never reach is reported as a deadlock;
//   - warp collectives (__shfl_*_sync, __match_any_sync, __ballot_sync, ...) exchange values
//     through the warp's slots at a warp barrier; only the full mask is supported;
//   - __shared__ is `static thread_local`: a block runs on one OS thread, blocks of a launch one
//     after another (the blocks of one cluster at once, each on its own OS thread), so the
//     block-scoped lifetime of shared memory is the lifetime of the block's run;
//   - dynamic shared memory (SAMPLEX_DYNAMIC_SHARED) is a buffer the driver allocates per block at
//     the launch's size, poisoned (0xff) and ending against an inaccessible page;
//   - thread-block clusters (common.cuh §8): cluster_sync() gathers the block's fibers, then the
//     cluster's OS threads; cluster_map/cluster_read reach another block's dynamic shared memory.
// Floating point is the host's (IEEE f32, no FTZ, like nvcc's defaults); __expf/__logf are the
// accurate functions, so results agree with the GPU to rounding, not bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) alignas(n)
#define __shared__ static thread_local
#define __constant__

// ---------------------------------------------------------------------------------------------
// Vector types and thread coordinates.
// ---------------------------------------------------------------------------------------------
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) int2 { int x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };

namespace samplex_emu {
// sm_90's opt-in maximum of dynamic shared memory per block (the most any emulated device allows).
constexpr unsigned kMaxDynamicShared = 232448;

// The running fiber's coordinates (driver.cpp keeps them current across switches).
struct ThreadCoords {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
// Points at the running fiber's coordinates; driver.cpp moves it at every switch. Initial-exec
// TLS: a plain load, not a __tls_get_addr call, for every threadIdx.
#define SAMPLEX_EMU_API __attribute__((visibility("default")))
extern __thread ThreadCoords *current_coords SAMPLEX_EMU_API __attribute__((tls_model("initial-exec")));
inline ThreadCoords &coords() { return *current_coords; }

// Collectives, implemented in driver.cpp. `mask` must be the full warp.
SAMPLEX_EMU_API void syncthreads();
SAMPLEX_EMU_API int syncthreads_count(int predicate);
SAMPLEX_EMU_API void syncwarp(unsigned mask);
// Writes `value` into this lane's slot and waits for the whole warp; returns the slots.
SAMPLEX_EMU_API const uint64_t *warp_exchange(unsigned mask, uint64_t value);
SAMPLEX_EMU_API void threadfence();
// One turn of a spin wait on global memory (kernels/common.cuh §9); `spins` so far.
SAMPLEX_EMU_API void spin_pause(unsigned spins);
SAMPLEX_EMU_API float f16_to_f32(unsigned short bits);
// Round to nearest even, as cvt.rn.f16.f32.
SAMPLEX_EMU_API unsigned short f32_to_f16(float x);

// The running block's dynamic shared memory (the launch's bytes, 16-byte aligned).
SAMPLEX_EMU_API void *dynamic_shared();
template <typename T> struct DynamicShared {
  operator T *() const { return static_cast<T *>(dynamic_shared()); }
};

// Clusters (a launch without cluster dimensions is a cluster of one block).
SAMPLEX_EMU_API unsigned cluster_rank();
SAMPLEX_EMU_API unsigned cluster_size();
SAMPLEX_EMU_API void cluster_sync();
// `p` must lie in this block's dynamic shared memory; returns the same offset in block `rank`'s.
SAMPLEX_EMU_API const void *cluster_map(const void *p, unsigned rank);
// Copies `n` bytes from a cluster_map address (checked: inside that block's buffer, after the
// first cluster_sync, and, at the cluster's end, before that block's last cluster_sync).
SAMPLEX_EMU_API void cluster_read(void *dst, const void *src, size_t n);
}  // namespace samplex_emu

#define threadIdx (samplex_emu::coords().thread_idx)
#define blockIdx (samplex_emu::coords().block_idx)
#define blockDim (samplex_emu::coords().block_dim)
#define gridDim (samplex_emu::coords().grid_dim)
#define warpSize 32

inline void __syncthreads() { samplex_emu::syncthreads(); }
inline int __syncthreads_count(int p) { return samplex_emu::syncthreads_count(p); }
inline int __syncthreads_or(int p) { return samplex_emu::syncthreads_count(p) != 0; }
inline int __syncthreads_and(int p) {
  return samplex_emu::syncthreads_count(p) == (int)(blockDim.x * blockDim.y * blockDim.z);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { samplex_emu::syncwarp(mask); }
inline void __threadfence() { samplex_emu::threadfence(); }
inline void __threadfence_block() { samplex_emu::threadfence(); }

// ---------------------------------------------------------------------------------------------
// Warp collectives over 4- and 8-byte values.
// ---------------------------------------------------------------------------------------------
namespace samplex_emu {
template <typename T> inline uint64_t to_slot(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a small value");
  uint64_t s = 0;
  std::memcpy(&s, &v, sizeof(T));
  return s;
}
template <typename T> inline T from_slot(uint64_t s) {
  T v;
  std::memcpy(&v, &s, sizeof(T));
  return v;
}
inline unsigned lane_id() { return threadIdx.x & 31u; }
}  // namespace samplex_emu

template <typename T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const uint64_t *s = samplex_emu::warp_exchange(mask, samplex_emu::to_slot(v));
  const unsigned lane = samplex_emu::lane_id();
  const unsigned base = lane & ~(unsigned)(width - 1);
  return samplex_emu::from_slot<T>(s[base + ((unsigned)src & (unsigned)(width - 1))]);
}
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const uint64_t *s = samplex_emu::warp_exchange(mask, samplex_emu::to_slot(v));
  const unsigned lane = samplex_emu::lane_id();
  const unsigned src = lane ^ (unsigned)lane_mask;
  // A source outside the lane's segment reads the lane's own value (PTX shfl.bfly).
  if ((src & ~(unsigned)(width - 1)) != (lane & ~(unsigned)(width - 1))) return v;
  return samplex_emu::from_slot<T>(s[src]);
}
template <typename T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const uint64_t *s = samplex_emu::warp_exchange(mask, samplex_emu::to_slot(v));
  const unsigned lane = samplex_emu::lane_id();
  const unsigned in_seg = lane & (unsigned)(width - 1);
  if (in_seg < delta) return v;
  return samplex_emu::from_slot<T>(s[lane - delta]);
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const uint64_t *s = samplex_emu::warp_exchange(mask, samplex_emu::to_slot(v));
  const unsigned lane = samplex_emu::lane_id();
  const unsigned in_seg = lane & (unsigned)(width - 1);
  if (in_seg + delta >= (unsigned)width) return v;
  return samplex_emu::from_slot<T>(s[lane + delta]);
}
template <typename T> inline unsigned __match_any_sync(unsigned mask, T v) {
  const uint64_t *s = samplex_emu::warp_exchange(mask, samplex_emu::to_slot(v));
  const uint64_t mine = samplex_emu::to_slot(v);
  unsigned m = 0;
  for (unsigned l = 0; l < 32; ++l)
    if (s[l] == mine) m |= 1u << l;
  return m;
}
inline unsigned __ballot_sync(unsigned mask, int p) {
  const uint64_t *s = samplex_emu::warp_exchange(mask, p != 0);
  unsigned m = 0;
  for (unsigned l = 0; l < 32; ++l)
    if (s[l]) m |= 1u << l;
  return m;
}
inline int __any_sync(unsigned mask, int p) { return __ballot_sync(mask, p) != 0; }
inline int __all_sync(unsigned mask, int p) { return __ballot_sync(mask, p) == 0xffffffffu; }
inline unsigned __activemask() { return 0xffffffffu; }

// ---------------------------------------------------------------------------------------------
// Atomics (a block runs on one OS thread, but other launches run on other threads: use real
// atomics so nothing in the emulator is itself a race).
//
// Under ThreadSanitizer (SAMPLEX_EMU_TSAN=1) they are relaxed, as CUDA's are: an atomic orders
// no other memory by itself. What orders memory across blocks is a fence: a thread's
// __threadfence before its atomic write, and the reading thread's __threadfence after its
// atomic read of that write (or an ld.acquire, load_acquire). The driver keeps that account
// (atomic_will_write, atomic_did_read and acquire_fences_of below), so a ticket or barrier that
// lacks either fence leaves its plain loads and stores unordered: a reported race.
// ---------------------------------------------------------------------------------------------
namespace samplex_emu {
#if defined(__SANITIZE_THREAD__)
constexpr bool kTsan = true;
constexpr int kAtomicOrder = __ATOMIC_RELAXED, kAcquireOrder = __ATOMIC_RELAXED;
#else
constexpr bool kTsan = false;
constexpr int kAtomicOrder = __ATOMIC_SEQ_CST, kAcquireOrder = __ATOMIC_ACQUIRE;
#endif
// Called under TSan only.
SAMPLEX_EMU_API void atomic_will_write(const void *p);  // before the write: the thread's last fence
SAMPLEX_EMU_API void atomic_did_read(const void *p);    // after the read: for the thread's next fence
SAMPLEX_EMU_API void acquire_fences_of(const void *p);  // an acquire load: the fences before its writes
// A read-modify-write: `op()` does it and returns the old value.
template <typename T, typename Op> inline T rmw(T *p, Op op) {
  if (kTsan) atomic_will_write(p);
  const T old = op();
  if (kTsan) atomic_did_read(p);
  return old;
}
template <typename T> inline T min_max(T *p, T v, bool min) {
  T old = __atomic_load_n(p, kAtomicOrder);
  while ((min ? v < old : v > old) && !__atomic_compare_exchange_n(p, &old, v, false, kAtomicOrder, kAtomicOrder)) {
  }
  return old;
}
// ld.acquire.gpu (kernels/common.cuh load_acquire_u32).
inline uint32_t load_acquire(const uint32_t *p) {
  const uint32_t v = __atomic_load_n(p, kAcquireOrder);
  if (kTsan) acquire_fences_of(p);
  return v;
}
}  // namespace samplex_emu

template <typename T> inline T atomicAdd(T *p, T v) {
  return samplex_emu::rmw(p, [&] { return __atomic_fetch_add(p, v, samplex_emu::kAtomicOrder); });
}
inline float atomicAdd(float *p, float v) {
  uint32_t *bits = reinterpret_cast<uint32_t *>(p);
  const uint32_t old = samplex_emu::rmw(bits, [&] {
    constexpr int order = samplex_emu::kAtomicOrder;
    uint32_t seen = __atomic_load_n(bits, order);
    for (;;) {
      float sum;
      std::memcpy(&sum, &seen, 4);
      sum += v;
      uint32_t want;
      std::memcpy(&want, &sum, 4);
      if (__atomic_compare_exchange_n(bits, &seen, want, false, order, order)) return seen;
    }
  });
  float f;
  std::memcpy(&f, &old, 4);
  return f;
}
template <typename T> inline T atomicSub(T *p, T v) {
  return samplex_emu::rmw(p, [&] { return __atomic_fetch_sub(p, v, samplex_emu::kAtomicOrder); });
}
template <typename T> inline T atomicOr(T *p, T v) {
  return samplex_emu::rmw(p, [&] { return __atomic_fetch_or(p, v, samplex_emu::kAtomicOrder); });
}
template <typename T> inline T atomicAnd(T *p, T v) {
  return samplex_emu::rmw(p, [&] { return __atomic_fetch_and(p, v, samplex_emu::kAtomicOrder); });
}
template <typename T> inline T atomicXor(T *p, T v) {
  return samplex_emu::rmw(p, [&] { return __atomic_fetch_xor(p, v, samplex_emu::kAtomicOrder); });
}
template <typename T> inline T atomicExch(T *p, T v) {
  return samplex_emu::rmw(p, [&] { return __atomic_exchange_n(p, v, samplex_emu::kAtomicOrder); });
}
template <typename T> inline T atomicMin(T *p, T v) {
  return samplex_emu::rmw(p, [&] { return samplex_emu::min_max(p, v, true); });
}
template <typename T> inline T atomicMax(T *p, T v) {
  return samplex_emu::rmw(p, [&] { return samplex_emu::min_max(p, v, false); });
}
// ((old >= limit) ? 0 : old + 1), as CUDA's.
inline unsigned atomicInc(unsigned *p, unsigned limit) {
  return samplex_emu::rmw(p, [&] {
    unsigned old = __atomic_load_n(p, samplex_emu::kAtomicOrder);
    while (!__atomic_compare_exchange_n(p, &old, old >= limit ? 0u : old + 1u, false, samplex_emu::kAtomicOrder,
                                        samplex_emu::kAtomicOrder)) {
    }
    return old;
  });
}
template <typename T> inline T atomicCAS(T *p, T expected, T desired) {
  return samplex_emu::rmw(p, [&] {
    __atomic_compare_exchange_n(p, &expected, desired, false, samplex_emu::kAtomicOrder, samplex_emu::kAtomicOrder);
    return expected;
  });
}

// ---------------------------------------------------------------------------------------------
// Intrinsics and math.
// ---------------------------------------------------------------------------------------------
inline float __int_as_float(int x) { float f; std::memcpy(&f, &x, 4); return f; }
inline int __float_as_int(float f) { int x; std::memcpy(&x, &f, 4); return x; }
inline float __uint_as_float(unsigned x) { float f; std::memcpy(&f, &x, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned x; std::memcpy(&x, &f, 4); return x; }
inline double __longlong_as_double(long long x) { double d; std::memcpy(&d, &x, 8); return d; }
inline long long __double_as_longlong(double d) { long long x; std::memcpy(&x, &d, 8); return x; }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
  return (x >> 16) | (x << 16);
}
template <typename T> inline T __ldg(const T *p) { return *p; }

// Round-to-nearest-even conversions (the _rn intrinsics); out-of-range follows the PTX rule of
// saturating, NaN to 0 (cvt.rni.s64.f32 / .u64.f32).
inline long long __float2ll_rn(float f) {
  if (f != f) return 0;
  if (f >= 9.2233720368547758e18f) return INT64_MAX;
  if (f <= -9.2233720368547758e18f) return INT64_MIN;
  return (long long)std::nearbyint(f);
}
inline unsigned long long __float2ull_rn(float f) {
  if (!(f > 0.0f)) return 0;
  if (f >= 1.8446744073709552e19f) return UINT64_MAX;
  return (unsigned long long)std::nearbyint(f);
}
inline int __float2int_rn(float f) {
  if (f != f) return 0;
  if (f >= 2147483648.0f) return INT32_MAX;
  if (f <= -2147483648.0f) return INT32_MIN;
  return (int)std::nearbyint(f);
}
inline unsigned __float2uint_rn(float f) {
  if (!(f > 0.0f)) return 0;
  if (f >= 4294967296.0f) return UINT32_MAX;
  return (unsigned)std::nearbyint(f);
}

inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
using std::isfinite;
using std::isinf;
using std::isnan;

// CUDA's overloaded min/max (mixed signed/unsigned give unsigned, like the device headers).
template <typename A, typename B> inline typename std::common_type<A, B>::type min(A a, B b) {
  typedef typename std::common_type<A, B>::type C;
  return (C)a < (C)b ? (C)a : (C)b;
}
template <typename A, typename B> inline typename std::common_type<A, B>::type max(A a, B b) {
  typedef typename std::common_type<A, B>::type C;
  return (C)a > (C)b ? (C)a : (C)b;
}
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
