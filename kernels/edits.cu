// samplex — logit edits, the first stage of SPEC "Order of operations" (before temperature):
// an allowed-token mask, a per-token bias and repetition / presence / frequency penalties, in
// place on the caller's logits.
//
// Kernels:
//   samplex_edits_mask_<dtype>  z_i = -inf wherever bit i of the row's allowed-token bitmask
//       is 0 (word i / 32, bit i % 32: the layout of xgrammar's and vLLM's token bitmasks).
//       A 1-D grid of batch x ceil(vocab / 1024) blocks of 256 threads; block b covers tokens
//       [1024 c, 1024 c + 1024) of row b / chunks (c = b % chunks), thread t the tokens
//       1024 c + t + 256 j. A warp's 32 lanes then share one bitmask word (one broadcast load),
//       and only a masked token costs a store: the logits are never read.
//   samplex_edits_bias_<dtype>  one block of 256 threads per row: z_i <- z_i + (the sum of the
//       biases of the row's entries for token i), entries (token, value) in tokens[] and
//       values[] laid out as a history is (below; ids >= vocab ignored). Computed in f64 and
//       rounded once to f32, as the CPU reference does, so the two agree bit for bit.
//   samplex_edits_penalize_<dtype>  one block of 256 threads per row. Every distinct token i
//       of the row's history (tokens[row * max_len ..][0 .. len), ids >= vocab ignored, so a
//       padded history needs no lengths) is edited once, with c_i = its number of occurrences:
//           z_i <- (z_i > 0 ? z_i / r : z_i * r) - (f * c_i + a)
//       (r = repetition, a = presence, f = frequency; the order of vLLM and of HF's
//       repetition penalty). NaN stays NaN and infinities stay infinite (for finite a, f).
//
// Counting without an order: the row's occurrences go into an open-addressing table of
// 2^slot_bits >= 2 max_len slots (so at most half full), key = token + 1 by atomicCAS and
// count by atomicAdd (the bias: its values' sum in 64-bit fixed point, 2^-24 units, by a u64
// atomicAdd; exact for every |b| >= 2^-1 and every multiple of 2^-24). Integer atomics: the table's content is the same whatever order the
// threads arrive in, and each distinct token owns exactly one slot. After the block barrier
// every occupied slot edits its own token and clears itself, so the table is empty again when
// the kernel ends. It lives in the sampler's ticket area, whose invariant is exactly that
// (zero at a kernel's start, zero at its end): nothing is cleared per call, and a captured
// graph replays as it is. Rows own disjoint tables (row r's at r x 2 x 2^slot_bits), so bad
// lengths cannot make two rows share one.
//
// Per-row values only the device sees are clamped (PARAM_CLAMPED): a length > max_len to
// max_len; r to [smallest normal f32, FLT_MAX] (NaN: 1); a and f to [-FLT_MAX, FLT_MAX] (NaN: 0);
// a bias to [-2^20, 2^20] (NaN: 0), so that 2^19 of them sum in the fixed point without overflow.
#include "common.cuh"

namespace samplex_edits {

constexpr int THREADS = 256;
constexpr u32 MASK_CHUNK = 1024;  // tokens per mask block: 4 per thread
constexpr float FLT_MIN_NORMAL = 1.17549435e-38f;
constexpr float MAX_BIAS = 1048576.0f;   // 2^20
constexpr float BIAS_UNIT = 16777216.0f;  // 2^24 fixed-point units per 1.0
typedef BlockScratch<THREADS> Scratch;

template <typename T>
__device__ __forceinline__ void mask(T *logits, u64 stride, u32 vocab, const u32 *allowed, u32 chunks) {
  const u32 row = blockIdx.x / chunks;
  const u32 first = (blockIdx.x % chunks) * MASK_CHUNK;
  const u32 *bits = allowed + (u64)row * ceil_div(vocab, 32);
  T *z = logits + (u64)row * stride;
  // The four words are loaded before the first store: the compiler may not move a load of
  // `allowed` above a store to the logits (they could alias), so one loop would wait out four
  // load latencies in a row.
  constexpr u32 PER = MASK_CHUNK / THREADS;
  u32 word[PER];
#pragma unroll
  for (u32 j = 0; j < PER; ++j) {
    const u32 i = first + j * THREADS + threadIdx.x;
    word[j] = i < vocab ? bits[i >> 5] : ~0u;
  }
#pragma unroll
  for (u32 j = 0; j < PER; ++j) {
    const u32 i = first + j * THREADS + threadIdx.x;
    if (!((word[j] >> (i & 31)) & 1u)) store_logit(&z[i], SAMPLEX_NEG_INF);
  }
}

// The slot of `token` in a table of 2^bits slots (Fibonacci hashing; bits >= 1).
__device__ __forceinline__ u32 slot_of(u32 token, u32 bits) { return (token * 2654435769u) >> (32 - bits); }

// The slot that holds `token` (claimed if it had none): linear probing from its hash slot; the
// table is at most half full, so the probe ends.
__device__ __forceinline__ u32 claim_slot(u32 *keys, u32 bits, u32 token) {
  for (u32 s = slot_of(token, bits);; s = (s + 1) & ((1u << bits) - 1)) {
    const u32 k = atomicCAS(&keys[s], 0u, token + 1);
    if (k == 0u || k == token + 1) return s;
  }
}

// The row's list length: `lengths[row]` clamped to max_len (flagged), or max_len.
__device__ __forceinline__ u32 row_length(u64 lengths, u32 row, u32 max_len, u32 &status) {
  if (!lengths) return max_len;
  const u32 len = ((const u32 *)lengths)[row];
  if (len <= max_len) return len;
  status |= SAMPLEX_STATUS_PARAM_CLAMPED;
  return max_len;
}

template <typename T>
__device__ __forceinline__ void bias(T *logits, u64 stride, u32 vocab, const u32 *tokens, const float *values,
                                     u32 max_len, u64 lengths, u32 slot_bits, u32 *tables, u64 status_out) {
  __shared__ Scratch scratch;
  const u32 row = blockIdx.x;
  u32 status = 0;
  const u32 len = row_length(lengths, row, max_len, status);
  const u32 slots = 1u << slot_bits;
  u32 *keys = tables + (u64)row * 3 * slots;
  u64 *sums = (u64 *)(keys + slots);  // 8-byte aligned: slots is even
  const u64 first = (u64)row * max_len;

  for (u32 i = threadIdx.x; i < len; i += THREADS) {
    const u32 token = tokens[first + i];
    if (token >= vocab) continue;
    const float b = clamp_param(values[first + i], -MAX_BIAS, MAX_BIAS, 0.0f, status);
    atomicAdd(&sums[claim_slot(keys, slot_bits, token)], (u64)__float2ll_rn(b * BIAS_UNIT));
  }
  status = block_or<THREADS>(status, scratch);  // its barriers also end the counting

  T *z = logits + (u64)row * stride;
  for (u32 s = threadIdx.x; s < slots; s += THREADS) {
    const u32 k = load_cg_u32(&keys[s]);
    if (k == 0u) continue;
    const i64 sum = (i64)load_cg_u64(&sums[s]);
    keys[s] = 0u;
    sums[s] = 0ull;
    store_logit(&z[k - 1], (float)((double)to_f32(z[k - 1]) + (double)sum * (1.0 / BIAS_UNIT)));
  }
  if (threadIdx.x == 0 && status_out) ((u32 *)status_out)[row] = status;
}

template <typename T>
__device__ __forceinline__ void penalize(T *logits, u64 stride, u32 vocab, const u32 *tokens, u32 max_len,
                                         u64 lengths, float repetition, float presence, float frequency,
                                         u64 repetitions, u64 presences, u64 frequencies, u32 slot_bits,
                                         u32 *tables, u64 status_out) {
  const u32 row = blockIdx.x;
  u32 status = 0;
  const u32 len = row_length(lengths, row, max_len, status);
  const float r = row_param(repetitions, row, repetition, FLT_MIN_NORMAL, SAMPLEX_FLT_MAX, 1.0f, status);
  const float a = row_param(presences, row, presence, -SAMPLEX_FLT_MAX, SAMPLEX_FLT_MAX, 0.0f, status);
  const float f = row_param(frequencies, row, frequency, -SAMPLEX_FLT_MAX, SAMPLEX_FLT_MAX, 0.0f, status);

  const u32 slots = 1u << slot_bits;
  u32 *keys = tables + (u64)row * 2 * slots;
  u32 *counts = keys + slots;
  const u32 *history = tokens + (u64)row * max_len;

  for (u32 i = threadIdx.x; i < len; i += THREADS) {
    const u32 token = history[i];
    if (token < vocab) atomicAdd(&counts[claim_slot(keys, slot_bits, token)], 1u);
  }
  __syncthreads();

  // Edit each distinct token once, from its own slot, and leave the slot empty.
  T *z = logits + (u64)row * stride;
  for (u32 s = threadIdx.x; s < slots; s += THREADS) {
    const u32 k = load_cg_u32(&keys[s]);
    if (k == 0u) continue;
    const u32 c = load_cg_u32(&counts[s]);
    keys[s] = 0u;
    counts[s] = 0u;
    float x = to_f32(z[k - 1]);
    if (r != 1.0f) x = x > 0.0f ? x / r : x * r;
    store_logit(&z[k - 1], x - __fmaf_rn(f, (float)c, a));
  }
  if (threadIdx.x == 0 && status_out) ((u32 *)status_out)[row] = status;
}

}  // namespace samplex_edits

#define SAMPLEX_EDITS_ENTRIES(T, NAME)                                                                  \
  extern "C" __global__ void __launch_bounds__(samplex_edits::THREADS)                                  \
      samplex_edits_mask_##NAME(T *logits, u64 stride, u32 vocab, const u32 *allowed, u32 chunks) {     \
    samplex_edits::mask<T>(logits, stride, vocab, allowed, chunks);                                      \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(samplex_edits::THREADS)                                  \
      samplex_edits_bias_##NAME(T *logits, u64 stride, u32 vocab, const u32 *tokens, const float *values, \
                                u32 max_len, u64 lengths, u32 slot_bits, u32 *tables, u64 status) {     \
    samplex_edits::bias<T>(logits, stride, vocab, tokens, values, max_len, lengths, slot_bits, tables,   \
                           status);                                                                     \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(samplex_edits::THREADS)                                  \
      samplex_edits_penalize_##NAME(T *logits, u64 stride, u32 vocab, const u32 *tokens, u32 max_len,   \
                                    u64 lengths, float repetition, float presence, float frequency,     \
                                    u64 repetitions, u64 presences, u64 frequencies, u32 slot_bits,     \
                                    u32 *tables, u64 status) {                                          \
    samplex_edits::penalize<T>(logits, stride, vocab, tokens, max_len, lengths, repetition, presence,   \
                               frequency, repetitions, presences, frequencies, slot_bits, tables,       \
                               status);                                                                 \
  }

SAMPLEX_EDITS_ENTRIES(float, f32)
SAMPLEX_EDITS_ENTRIES(f16_t, f16)
SAMPLEX_EDITS_ENTRIES(bf16_t, bf16)
