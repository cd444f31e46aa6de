// Kernels that exercise the emulator itself (scripts/test_emu.py runs them through the driver
// API): built into the emulator's kernel library only, never into the fatbin.
#include "common.cuh"

// Every thread doubles its element; each block's sum goes to sums[block] (warp shuffles and
// barriers through the block collective).
extern "C" __global__ void samplex_emu_selftest_double(const float *in, float *out, float *sums, u32 n) {
  __shared__ BlockScratch<256> s;
  const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
  const float v = i < n ? in[i] : 0.0f;
  if (i < n) out[i] = 2.0f * v;
  const float total = block_sum<256>(v, s);
  if (threadIdx.x == 0) sums[blockIdx.x] = total;
}

// Writes one element past the end of `out`.
extern "C" __global__ void samplex_emu_selftest_overrun(float *out, u32 n) {
  if (threadIdx.x == 0) out[n] = 1.0f;
}

// Half of each warp waits at the barrier, the other half in a full-mask shuffle that needs
// them: neither can complete (a hang on the hardware).
extern "C" __global__ void samplex_emu_selftest_divergent_collective(u32 *out) {
  u32 v = threadIdx.x;
  if ((threadIdx.x & 31) < 16)
    __syncthreads();
  else
    v = __shfl_xor_sync(SAMPLEX_FULL_MASK, v, 1);
  out[threadIdx.x] = v;
}

// Half a warp returns, the other half shuffles with the full mask: undefined on the hardware.
extern "C" __global__ void samplex_emu_selftest_shuffle_after_return(u32 *out) {
  if ((threadIdx.x & 31) < 16) return;
  out[threadIdx.x] = __shfl_xor_sync(SAMPLEX_FULL_MASK, threadIdx.x, 1);
}

// Records the order in which blocks ran.
extern "C" __global__ void samplex_emu_selftest_block_order(u32 *counter, u32 *order) {
  if (threadIdx.x == 0) order[atomicAdd(counter, 1u)] = blockIdx.x;
}

// Rows of `per_row` consecutive blocks meet at row barriers (common.cuh §9) `rounds` times;
// each round every block writes its slot, waits, checks its row's other slots, waits again.
// errors[block] counts the slots that did not hold what their block wrote before the barrier.
// Blocks of 64 threads.
extern "C" __global__ void samplex_emu_selftest_row_barrier(u32 *slots, RowBarrier *bars, u32 *errors,
                                                           u32 per_row, u32 rounds) {
  __shared__ BlockScratch<64> s;
  const u32 row = blockIdx.x / per_row, first = row * per_row;
  u32 bad = 0;
  for (u32 r = 0; r < rounds; ++r) {
    if (threadIdx.x == 0) slots[blockIdx.x] = r * 1000u + blockIdx.x;
    row_barrier(bars + row, per_row);
    for (u32 b = threadIdx.x; b < per_row; b += blockDim.x)
      if (slots[first + b] != r * 1000u + first + b) ++bad;
    row_barrier(bars + row, per_row);
  }
  bad = block_sum_u32<64>(bad, s);
  if (threadIdx.x == 0) errors[blockIdx.x] = bad;
}

// A deliberate race: after a barrier, thread 0 publishes a value that every thread reads with no
// barrier between. seen[t] is what thread t read; order[i] the i-th thread to run after the
// barrier. One block of up to 256 threads.
extern "C" __global__ void samplex_emu_selftest_racy_broadcast(u32 *counter, u32 *order, u32 *seen) {
  __shared__ u32 value;
  if (threadIdx.x == 0) value = 0;
  __syncthreads();
  order[atomicAdd(counter, 1u)] = threadIdx.x;
  if (threadIdx.x == 0) value = 7;
  seen[threadIdx.x] = value;  // the missing __syncthreads: only a thread after thread 0 sees 7
}

// Lane 0 of each warp publishes a value in shared memory that its other lanes then read, ordered
// by __syncwarp (ordered = 1) or only by a shuffle (ordered = 0), which exchanges a register but
// orders no memory in CUDA: the emulator gives the same values either way, and its TSan build
// (SAMPLEX_EMU_TSAN=1) reports the second as a race. Up to 1024 threads, one block.
extern "C" __global__ void samplex_emu_selftest_warp_publish(u32 *out, u32 ordered) {
  __shared__ u32 value[32];
  const u32 warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  if (lane == 0) value[warp] = 100 + warp;
  if (ordered)
    __syncwarp();
  else
    (void)__shfl_sync(SAMPLEX_FULL_MASK, lane, 0);
  out[threadIdx.x] = value[warp];
}

// The last-block merge of a row split over blocks (kernels/softmax.cu finish_row's pattern):
// thread 0 of each block writes its part, then takes a ticket; the block with the last ticket
// adds every part into *out. fences: bit 0 is the writers' __threadfence before the ticket, bit
// 1 the last block's after it. Without either, the parts' stores and loads are unordered: on a
// GPU the blocks may run at once, and the emulator's TSan build reports it, though it runs them
// one after another and the sum comes out right. Launch with *ticket = *out = 0.
extern "C" __global__ void samplex_emu_selftest_ticket(u32 *parts, u32 *ticket, u32 *out, u32 fences) {
  __shared__ u32 last;
  if (threadIdx.x == 0) {
    parts[blockIdx.x] = 10 + blockIdx.x;
    if (fences & 1u) __threadfence();
    last = atomicAdd(ticket, 1u) == gridDim.x - 1 ? 1u : 0u;
    if (last && (fences & 2u)) __threadfence();
  }
  __syncthreads();  // thread 0's acquire, for every thread of the block
  if (!last) return;
  u32 sum = 0;
  for (u32 b = threadIdx.x; b < gridDim.x; b += blockDim.x) sum += parts[b];
  atomicAdd(out, sum);
}

// One 128-bit load (common.cuh's VecLoad) of four floats from in + offset, summed into *out.
// With offset not a multiple of 4 the address is not 16-byte aligned: a GPU faults (misaligned
// address), and the emulator's alignment check (build.sh) stops the process.
extern "C" __global__ void samplex_emu_selftest_vector_load(const float *in, float *out, u32 offset) {
  if (threadIdx.x != 0) return;
  float v[4];
  VecLoad<float, 4>::load(in + offset, v);
  *out = v[0] + v[1] + v[2] + v[3];
}
