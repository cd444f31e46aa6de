// samplex CPU emulator — the host side: a stand-in for libcuda.so that runs the kernels on the CPU.
//
// cudarc loads the CUDA driver with dlopen; scripts/emu/build.sh builds this file, the kernels
// (compiled by g++ against device.hpp) and a table of their entry points into a libcuda.so.1,
// and scripts/emu/run.sh puts it first on LD_LIBRARY_PATH. Everything above the driver — cudarc,
// samplex's wrappers, the GPU tests, the examples — then runs unchanged, on one emulated device.
//
// What it checks that a GPU would only show as corruption or a hang:
//   - every device allocation ends at a page followed by an inaccessible one, so a read or write
//     past its end faults at once and is reported with the kernel, block and thread;
//   - a barrier or warp collective that can never complete is a deadlock, reported (the launch
//     fails with CUDA_ERROR_LAUNCH_FAILED instead of hanging); threads that returned count as
//     arrived at a barrier, as on the hardware;
//   - a warp collective with exited lanes, or in a partial warp, is reported (the full mask is
//     undefined there on the hardware);
//   - a kernel's load or store at an address not aligned to its type (a float4 off a 16-byte
//     boundary) stops the process with UBSan's "misaligned address" and the source line: a GPU
//     faults there, x86 would not (build.sh compiles the kernels with -fsanitize=alignment);
//   - new allocations are filled with 0xff bytes (NaN as f32), so nothing relies on zeroed memory;
//   - blocks run in a shuffled order (SAMPLEX_EMU_BLOCK_ORDER=forward|reverse|shuffle), so a
//     result that depends on block scheduling shows up as a difference between runs;
//   - dynamic shared memory is allocated per block at the launch's size, filled with 0xff and
//     followed by an inaccessible page, so reading it unwritten or past its end shows;
//   - thread-block clusters: a cluster barrier some live thread of a block cannot reach is a
//     deadlock (and aborts the cluster's other blocks); a distributed-shared-memory read before
//     the first cluster barrier, or of a block after its last one (it may have exited), fails;
//   - cooperative launches (CU_LAUNCH_ATTRIBUTE_COOPERATIVE): a grid larger than the device can
//     hold at once is refused, as the driver does; a block that spins on memory (spin_pause,
//     kernels/common.cuh §9) in a launch that is not cooperative fails (its blocks need not run
//     at the same time), and so does one still waiting after a minute, or after another block
//     of its launch failed;
//   - inside a stream capture, a host synchronisation or an allocation fails as it does in CUDA;
//   - the threads of a block resume after each barrier and warp collective in the order of
//     SAMPLEX_EMU_THREAD_ORDER=arrival|reverse|shuffle (SAMPLEX_EMU_THREAD_SEED picks the
//     shuffle), so a shared-memory race inside a block (a read with no barrier after the write
//     it needs, or a write before the barrier that ends the reads it clobbers) changes a result;
//   - with the kernels built under ThreadSanitizer (SAMPLEX_EMU_TSAN=1; see "ThreadSanitizer"
//     below), two threads that touch the same memory with nothing ordering them are reported,
//     even when each runs its barrier interval alone and the values come out right, and even
//     when they belong to two blocks that ran one after the other.
// What it does not model: timing, occupancy, the memory model beyond that happens-before order
// (without TSan, each thread runs a barrier interval alone, so a non-atomic read-modify-write by
// several threads still sees every update), and f32 rounding of the GPU's math functions.
//
// Execution: a launch runs its blocks one after another on the calling OS thread (under TSan,
// on helper threads, still one after another: run_apart). A block's
// threads are fibers with their own stacks (a small hand-written x86-64 context switch: the
// switches at every barrier and shuffle dominate the run time, so ucontext is too slow); they run
// until they must wait at a barrier or warp collective, and are resumed (from a run queue) only
// when it releases. A cluster launch (cuLaunchKernelEx with CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION)
// runs its clusters one after another and the blocks of a cluster at once, each on its own OS
// thread (the launching one and helpers it keeps), so that they can wait for each other at
// cluster barriers. A cooperative launch runs all its blocks at once, each on its own OS thread,
// so that they can wait for each other through global memory (spin_pause sleeps the OS thread).
// Launches from different OS threads (Rust's test threads) run in parallel: shared memory is
// thread_local.
//
// The emulated device is an sm_90 part (clusters, 227 KB of opt-in shared memory per block);
// SAMPLEX_EMU_CC=80|86|89 makes it report that compute capability instead, with that part's
// shared memory and no clusters, so that the paths for older GPUs run too.
#include <dlfcn.h>
#include <pthread.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cctype>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "device.hpp"

#include "table.hpp"

// The kernels live in libsamplex_emu_kernels.so beside this library, loaded at cuInit. (Two
// libraries because the kernels' shared memory is large thread_local data, which must stay out
// of the static TLS block that this library's initial-exec variables use.)
static const samplex_emu::KernelEntry *g_kernels = nullptr;
static int g_kernel_count = 0;

// ---------------------------------------------------------------------------------------------
// Driver API types (ABI-compatible subsets of cuda.h).
// ---------------------------------------------------------------------------------------------
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
enum : CUresult {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_INVALID_VALUE = 1,
  CUDA_ERROR_OUT_OF_MEMORY = 2,
  CUDA_ERROR_INVALID_DEVICE = 101,
  CUDA_ERROR_INVALID_HANDLE = 400,
  CUDA_ERROR_NOT_FOUND = 500,
  CUDA_ERROR_NOT_READY = 600,
  CUDA_ERROR_ILLEGAL_ADDRESS = 700,
  CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
  CUDA_ERROR_LAUNCH_FAILED = 719,
  CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE = 720,
  CUDA_ERROR_NOT_SUPPORTED = 801,
  CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900,
  CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901,
  CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD = 908,
  CUDA_ERROR_INVALID_CLUSTER_SIZE = 912,
};

namespace samplex_emu {

// ---------------------------------------------------------------------------------------------
// Configuration of the emulated device (an H100-like part; the SM count drives row splitting).
// ---------------------------------------------------------------------------------------------
static int env_int(const char *name, int fallback) {
  const char *v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}
static int sm_count() {
  static const int n = std::max(1, env_int("SAMPLEX_EMU_SMS", 132));
  return n;
}
// The compute capability as major * 10 + minor: 90, or SAMPLEX_EMU_CC (80, 86, 89).
static int compute_capability() {
  static const int cc = [] {
    const int v = env_int("SAMPLEX_EMU_CC", 90);
    if (v == 80 || v == 86 || v == 89 || v == 90) return v;
    std::fprintf(stderr, "samplex emulator: SAMPLEX_EMU_CC=%d is not one of 80, 86, 89, 90; using 90\n", v);
    return 90;
  }();
  return cc;
}
static bool has_clusters() { return compute_capability() >= 90; }
// Opt-in dynamic shared memory per block, and shared memory per SM, of that part.
static int shared_optin() {
  const int cc = compute_capability();
  return cc >= 90 ? (int)kMaxDynamicShared : cc == 80 ? 163 * 1024 : 99 * 1024;
}
static int shared_per_sm() {
  const int cc = compute_capability();
  return cc >= 90 ? 228 * 1024 : cc == 80 ? 164 * 1024 : 100 * 1024;
}
static const int kDefaultDynamicShared = 48 * 1024;
// Blocks per cluster: the portable maximum, and with CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED.
static const unsigned kPortableCluster = 8, kMaxCluster = 16;

static void report(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fputs("samplex emulator: ", stderr);
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
}

// ---------------------------------------------------------------------------------------------
// Device memory: mmap'ed so that each allocation ends flush against an inaccessible page.
// ---------------------------------------------------------------------------------------------
struct Allocation {
  char *map;
  size_t map_len;
  char *user;
  size_t size;
};
static std::mutex g_mutex;  // guards every table below (not the kernels' own execution)
static std::map<uintptr_t, Allocation> g_allocs;  // by user address
static const size_t kPage = 4096;

static CUresult device_alloc(CUdeviceptr *out, size_t size) {
  const size_t padded = (size + 15) & ~(size_t)15;  // CUDA buffers are at least 16-byte aligned
  const size_t pages = (padded + kPage - 1) / kPage;
  const size_t map_len = (pages + 2) * kPage;
  void *m = mmap(nullptr, map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  char *map = static_cast<char *>(m);
  if (pages > 0 && mprotect(map + kPage, pages * kPage, PROT_READ | PROT_WRITE) != 0) {
    munmap(m, map_len);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  char *user = map + kPage + pages * kPage - padded;
  std::memset(user, 0xff, padded);
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_allocs[(uintptr_t)user] = Allocation{map, map_len, user, size};
  }
  *out = (CUdeviceptr)(uintptr_t)user;
  return CUDA_SUCCESS;
}

static CUresult device_free(CUdeviceptr p) {
  Allocation a;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end()) return CUDA_ERROR_INVALID_VALUE;
    a = it->second;
    g_allocs.erase(it);
  }
  munmap(a.map, a.map_len);
  return CUDA_SUCCESS;
}

// True when [p, p + n) lies inside one allocation (what cuMemcpy* would accept).
static bool device_range_ok(CUdeviceptr p, size_t n) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_allocs.upper_bound((uintptr_t)p);
  if (it == g_allocs.begin()) return false;
  --it;
  const Allocation &a = it->second;
  const uintptr_t lo = (uintptr_t)a.user, hi = lo + a.size;
  return (uintptr_t)p >= lo && (uintptr_t)p + n <= hi;
}

// ---------------------------------------------------------------------------------------------
// Fibers.
// ---------------------------------------------------------------------------------------------
extern "C" void samplex_emu_switch(void **save_sp, void *load_sp);
extern "C" void samplex_emu_fiber_start();
// x86-64 System V: save the callee-saved registers on the old stack, swap stacks, restore them
// from the new one. (The FP control words are not switched: no kernel changes them.) A new fiber's stack is laid out so that the first
// switch "returns" into samplex_emu_fiber_start with the Fiber* in rbx and its main in r12.
asm(R"(
  .text
  .globl samplex_emu_switch
  .hidden samplex_emu_switch
  .type samplex_emu_switch,@function
samplex_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size samplex_emu_switch, .-samplex_emu_switch

  .globl samplex_emu_fiber_start
  .hidden samplex_emu_fiber_start
  .type samplex_emu_fiber_start,@function
samplex_emu_fiber_start:
  movq %rbx, %rdi
  callq *%r12
  ud2
  .size samplex_emu_fiber_start, .-samplex_emu_fiber_start
)");

// ThreadSanitizer: when its runtime is loaded (scripts/emu/run.sh with SAMPLEX_EMU_TSAN=1, which
// builds the kernels with -fsanitize=thread and preloads libtsan): each warp, or each CUDA
// thread (SAMPLEX_EMU_TSAN_GRAIN below), is a TSan fiber, the switches between fibers carry no
// ordering, and only what orders threads on a GPU is told to TSan, as a release (arriving) and
// an acquire (leaving): __syncthreads, __syncwarp (warp shuffles and votes exchange values but
// order no memory, as in CUDA), the cluster barrier, a block's start after its launcher's work,
// and __threadfence with the atomics that follow and precede it (device.hpp's atomics are
// relaxed then; FenceLedger). TSan then reports two threads that touch the same shared or global
// memory with nothing of that ordering them, one of them writing, not both atomically:
// compute-sanitizer's racecheck, on the CPU. The blocks of an ordinary or cluster launch run on
// four helper threads in turn (run_apart), so that blocks are not all ordered by running one
// after another, while a helper's reuse of its shared memory (thread_local) is ordered. This
// file is not instrumented itself; without the runtime the hooks below are null and do nothing.
extern "C" {
void *__tsan_get_current_fiber(void) __attribute__((weak));
void *__tsan_create_fiber(unsigned flags) __attribute__((weak));
void __tsan_destroy_fiber(void *fiber) __attribute__((weak));
void __tsan_switch_to_fiber(void *fiber, unsigned flags) __attribute__((weak));
void __tsan_set_fiber_name(void *fiber, const char *name) __attribute__((weak));
void __tsan_acquire(void *addr) __attribute__((weak));
void __tsan_release(void *addr) __attribute__((weak));
}
namespace tsan {
static inline bool on() { return __tsan_switch_to_fiber != nullptr; }
static inline void acquire(const void *sync) {
  if (on()) __tsan_acquire(const_cast<void *>(sync));
}
static inline void release(const void *sync) {
  if (on()) __tsan_release(const_cast<void *>(sync));
}
// The TSan fiber running on this OS thread.
static __thread void *t_now __attribute__((tls_model("initial-exec"))) = nullptr;
// Before a context switch to `fiber`: no synchronisation (__tsan_switch_to_fiber_no_sync).
static inline void switch_to(void *fiber) {
  if (on() && fiber && fiber != t_now) {
    __tsan_switch_to_fiber(fiber, 1);
    t_now = fiber;
  }
}
// One TSan fiber per warp (SAMPLEX_EMU_TSAN_GRAIN=warp, the default) or per thread (`thread`).
// Each acquire or release costs in proportion to the fibers TSan knows, so a barrier of n fibers
// costs n^2: per thread is about 4x slower on a block of 1024, and TSan keeps at most 8128 alive.
// Per warp, races between warps and between blocks show, races between the lanes of one warp do
// not; per thread, they do, except in a launch whose blocks that run at once hold more than
// kThreadGrainMax threads (a cluster, a cooperative grid), which goes per warp.
static const uint64_t kThreadGrainMax = 2048;
static bool thread_grain() {
  static const bool thread = [] {
    const char *g = std::getenv("SAMPLEX_EMU_TSAN_GRAIN");
    if (!g || !*g || !std::strcmp(g, "warp")) return false;
    if (!std::strcmp(g, "thread")) return true;
    std::fprintf(stderr, "samplex emulator: SAMPLEX_EMU_TSAN_GRAIN=%s is not warp or thread\n", g);
    std::abort();
  }();
  return thread;
}
}  // namespace tsan

struct Block;
struct ClusterRun;

struct Fiber {
  void *sp = nullptr;
  char *stack_lo = nullptr;  // lowest usable byte (a guard page lies below, or a canary on it)
  size_t stack_len = 0;
  bool guarded = false;
  ThreadCoords coords{};
  unsigned linear = 0;
  unsigned warp = 0;
  bool done = false;
  Block *block = nullptr;
  void *tsan = nullptr;  // its ThreadSanitizer fiber, its own or its warp's (TSan runs only)
  // TSan runs (FenceLedger): this thread's last __threadfence, and its atomic reads since then
  // (address, how many of the fences before its writes the read could have seen).
  const char *fence = nullptr;
  std::unordered_map<uintptr_t, size_t> seen;
};

// TSan runs: the CUDA memory model of atomics and fences across the threads of one launch
// (device.hpp's atomics are relaxed then). A __threadfence acquires the fences that came before
// the atomic writes its thread has read since its previous fence, then releases into a new sync
// object, which its thread's later atomic writes carry: a fence, an atomic write, an atomic read
// of it and a fence order what came before the first fence before what comes after the last,
// and nothing less does. An ld.acquire (load_acquire) acquires at once.
struct FenceLedger {
  std::atomic_flag busy = ATOMIC_FLAG_INIT;  // spins: a lock TSan does not see
  std::unordered_map<uintptr_t, std::vector<const char *>> before;  // address: fences before its writes
  std::vector<std::unique_ptr<char[]>> chunks;  // the fences' sync objects (freed with the launch)
  size_t used = 0;                              // of the last chunk
  static const size_t kChunk = 4096;

  void lock() {
    while (busy.test_and_set(std::memory_order_acquire)) std::this_thread::yield();
  }
  void unlock() { busy.clear(std::memory_order_release); }
  // A new sync object (under the lock).
  const char *new_fence() {
    if (chunks.empty() || used == kChunk) {
      chunks.emplace_back(new char[kChunk]);
      used = 0;
    }
    return &chunks.back()[used++];
  }
};

// Fibers blocked at one barrier, in arrival order.
struct Waiters {
  std::vector<unsigned> ids;
};

struct Warp {
  unsigned size = 0;  // lanes the warp was launched with (< 32 only for a partial last warp)
  unsigned live = 0;
  unsigned gen = 0;
  Waiters waiting;
  uint64_t slots[2][32];  // double-buffered by generation parity: one barrier per exchange
  char syncwarp[2];       // TSan sync objects of __syncwarp, by generation parity
};

// One block's run. Scheduling: a FIFO of runnable fibers; a fiber that must wait joins its
// barrier's waiters and the next runnable one runs; a release moves every waiter to the FIFO.
// So a fiber is resumed only when it can go on, and an empty FIFO with live fibers left is a
// deadlock, exactly.
struct Block {
  const KernelEntry *kernel = nullptr;
  void **params = nullptr;
  std::vector<Fiber> *fibers = nullptr;
  unsigned n = 0;
  unsigned live = 0;
  // The run queue: a ring of n slots (no fiber is in it twice).
  std::vector<unsigned> ring;
  unsigned head = 0, count = 0;
  // __syncthreads
  Waiters at_barrier;
  int bar_accum = 0;
  int bar_result = 0;
  unsigned bar_gen = 0;  // __syncthreads completed
  std::vector<Warp> warps;
  // The cluster (of one block, for a launch without cluster dimensions), this block's rank in it,
  // the cluster barriers it has passed, and its fibers waiting at the next one.
  ClusterRun *cluster = nullptr;
  struct GridRun *grid = nullptr;  // the cooperative launch this block belongs to, or null
  FenceLedger *fences = nullptr;   // its launch's (TSan runs only)
  unsigned rank = 0;
  unsigned passed = 0;
  Waiters at_cluster;
  char *smem = nullptr;  // dynamic shared memory: `smem_bytes` (rounded up to 16), then a guard page
  size_t smem_bytes = 0;
  void *launcher_sp = nullptr;
  void *launcher_tsan = nullptr;  // the launcher's TSan fiber (TSan runs only)
  // TSan sync objects: the block's start (after the launcher's work), its end, and, by
  // generation parity (a fast thread may reach the next barrier before a slow one has left this
  // one), __syncthreads and the cluster barrier.
  char start_sync, end_sync, bar_sync[2], cluster_sync[2];
  bool failed = false;
  std::string error;

  void push(unsigned id) {
    unsigned at = head + count;
    if (at >= n) at -= n;
    ring[at] = id;
    ++count;
  }
  unsigned pop() {
    const unsigned id = ring[head];
    if (++head == n) head = 0;
    --count;
    return id;
  }
};

// One cluster's run. Its blocks run at once, one per OS thread; a block arrives at a cluster
// barrier when its last live fiber does, and the barrier opens when every block has arrived or
// returned (barrier.cluster counts exited threads as arrived). The first block to fail aborts the
// others, at the barrier they wait at or the next one they reach.
struct ClusterRun {
  unsigned size = 1;
  std::mutex m;
  std::condition_variable cv;
  unsigned ready = 0;    // blocks whose shared memory is in `smem` (they start together)
  unsigned arrived = 0;  // blocks waiting at the open barrier
  unsigned exited = 0;   // blocks that returned
  unsigned gen = 0;      // barriers opened so far
  bool aborted = false;
  std::string error;     // the first failure
  size_t smem_bytes = 0;
  char *smem[kMaxCluster] = {};
  uint3 block_idx[kMaxCluster] = {};
  unsigned exit_gen[kMaxCluster] = {};  // barriers a block had passed when it returned
  // 1 + the most barriers a reader had passed when it read block r's shared memory (0: never).
  std::atomic<unsigned> last_read[kMaxCluster];
  char sync[2];  // TSan: the cluster barrier across the blocks, by parity

  void reset(unsigned n, size_t bytes) {
    size = n;
    ready = arrived = exited = gen = 0;
    aborted = false;
    error.clear();
    smem_bytes = bytes;
    for (unsigned r = 0; r < kMaxCluster; ++r) {
      smem[r] = nullptr;
      exit_gen[r] = 0;
      last_read[r].store(0, std::memory_order_relaxed);
    }
  }
  // Publishes block `rank`'s shared memory, then waits until every block's is known.
  void start(unsigned rank, char *buffer) {
    std::unique_lock<std::mutex> lock(m);
    smem[rank] = buffer;
    if (++ready == size) cv.notify_all();
    cv.wait(lock, [&] { return ready == size; });
  }
  void open_locked() {
    arrived = 0;
    ++gen;
    cv.notify_all();
  }
  // False when the cluster was aborted instead.
  bool arrive() {
    std::unique_lock<std::mutex> lock(m);
    if (aborted) return false;
    const unsigned g = gen;
    if (++arrived + exited == size) {
      open_locked();
      return true;
    }
    cv.wait(lock, [&] { return gen != g || aborted; });
    return gen != g;
  }
  void exit(unsigned rank, unsigned passed) {
    std::lock_guard<std::mutex> lock(m);
    exit_gen[rank] = passed;
    if (++exited < size && arrived > 0 && arrived + exited == size) open_locked();
  }
  void abort(const std::string &why) {
    {
      std::lock_guard<std::mutex> lock(m);
      if (!aborted) error = why;
      aborted = true;
    }
    cv.notify_all();
  }
  // The rank whose shared memory holds [p, p + n), or -1.
  int owner(const void *p, size_t n) const {
    const uintptr_t a = (uintptr_t)p;
    for (unsigned r = 0; r < size; ++r) {
      const uintptr_t lo = (uintptr_t)smem[r];
      if (a >= lo && a + n <= lo + smem_bytes) return (int)r;
    }
    return -1;
  }
};

// A cooperative launch's shared state: the first block to fail stops the others' spin waits.
struct GridRun {
  std::atomic<bool> aborted{false};
};

static size_t stack_bytes() {
  static const size_t n = (size_t)std::max(16, env_int("SAMPLEX_EMU_STACK_KB", 256)) * 1024;
  return n;
}

// A block's dynamic shared memory: the largest any launch may ask for, then an inaccessible page.
// A launch of n bytes uses the n (rounded up to 16) bytes just below that page.
struct SharedBuffer {
  char *map = nullptr;
  size_t len = 0;
  char *guard = nullptr;
  char *at(size_t bytes) {
    if (!map) {
      const size_t usable = ((size_t)kMaxDynamicShared + kPage - 1) / kPage * kPage;
      len = usable + kPage;
      void *m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (m == MAP_FAILED) {
        report("cannot map dynamic shared memory");
        std::abort();
      }
      map = static_cast<char *>(m);
      guard = map + usable;
      mprotect(guard, kPage, PROT_NONE);
    }
    return guard - ((bytes + 15) & ~(size_t)15);
  }
  bool holds(uintptr_t a) const { return map && a >= (uintptr_t)map && a < (uintptr_t)map + len; }
  ~SharedBuffer() {
    if (map) munmap(map, len);
  }
};

// A helper OS thread for cluster launches: runs one job (a block) at a time.
class Worker {
 public:
  Worker() : thread_([this] { loop(); }) {}
  ~Worker() {
    {
      std::lock_guard<std::mutex> lock(m_);
      quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void start(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = std::move(job);
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [&] { return !job_; });
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(m_);
    for (;;) {
      cv_.wait(lock, [&] { return job_ || quit_; });
      if (!job_) return;
      lock.unlock();
      job_();
      lock.lock();
      job_ = nullptr;
      cv_.notify_all();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool quit_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

// Waits while `word` holds `value`, or wakes its waiters: the QuietWorker handover.
static void futex_wait(std::atomic<int> &word, int value) {
  syscall(SYS_futex, reinterpret_cast<int *>(&word), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
}
static void futex_wake(std::atomic<int> &word) {
  syscall(SYS_futex, reinterpret_cast<int *>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

// TSan runs: a helper OS thread like Worker, but handed its jobs through a futex, which TSan does
// not see, so that its jobs (blocks) are ordered only by what run_apart tells TSan: Worker's
// mutex would order every job after everything the launcher had acquired before.
class QuietWorker {
 public:
  QuietWorker() : thread_([this] { loop(); }) {}
  ~QuietWorker() {
    wait();
    state_.store(kQuit);
    futex_wake(state_);
    thread_.join();
  }
  void start(std::function<void()> job) {
    job_ = std::move(job);
    state_.store(kBusy);
    futex_wake(state_);
  }
  void wait() {
    for (int s; (s = state_.load()) == kBusy;) futex_wait(state_, s);
  }

 private:
  static const int kIdle = 0, kBusy = 1, kQuit = 2;
  void loop() {
    for (;;) {
      int s;
      while ((s = state_.load()) == kIdle) futex_wait(state_, s);
      if (s == kQuit) return;
      job_();
      job_ = nullptr;
      state_.store(kIdle);
      futex_wake(state_);
    }
  }
  std::function<void()> job_;
  std::atomic<int> state_{kIdle};
  std::thread thread_;  // last: starts once the members above exist
};
// Helpers of run_apart (ordinary launches: a launch whose blocks all run on one helper orders
// them, as before; a cluster takes as many as it has blocks).
static const unsigned kApartHelpers = 4;

// One xorshift64 step, then a multiplier that spreads its bits: the emulator's shuffles of
// blocks and of threads draw from it.
static inline uint64_t xorshift_next(uint64_t &s) {
  s ^= s >> 12;
  s ^= s << 25;
  s ^= s >> 27;
  return s * 0x2545f4914f6cdd1dull;
}

// The first state of each OS thread's thread-order shuffle: SAMPLEX_EMU_THREAD_SEED (an
// unsigned integer, default 0) mixed into a fixed nonzero constant, so that several seeds run
// several orders and one seed the same order, run after run.
static uint64_t thread_seed() {
  static const uint64_t seed = [] {
    const char *text = std::getenv("SAMPLEX_EMU_THREAD_SEED");
    char *end = nullptr;
    const unsigned long long v = text && *text ? std::strtoull(text, &end, 10) : 0;
    if (text && *text && (*end || !std::isdigit((unsigned char)*text))) {  // strtoull takes '-3'
      std::fprintf(stderr, "samplex emulator: SAMPLEX_EMU_THREAD_SEED=%s is not an unsigned integer\n", text);
      std::abort();
    }
    const uint64_t s = 0x2545f4914f6cdd1dull ^ (v * 0x9e3779b97f4a7c15ull);
    return s ? s : 0x2545f4914f6cdd1dull;  // xorshift never leaves 0
  }();
  return seed;
}

// Each OS thread keeps its fibers (and their stacks), its block's dynamic shared memory and, for
// cluster launches, its helper threads, for the next launch.
struct ThreadState {
  std::vector<Fiber> fibers;
  Block *block = nullptr;
  Fiber *fiber = nullptr;
  ThreadCoords host_coords{};  // what threadIdx reads outside a kernel
  const char *kernel_name = nullptr;
  Block run;                  // the block this thread runs (reused)
  SharedBuffer smem;          // that block's dynamic shared memory
  std::vector<unsigned> start_order;         // the block's first run order of its threads
  uint64_t shuffle = thread_seed();  // xorshift state of SAMPLEX_EMU_THREAD_ORDER=shuffle
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::unique_ptr<QuietWorker>> quiet;  // run_apart's (TSan runs)
  std::vector<void *> tsan_fibers;  // TSan runs: one per thread or per warp of the running block
  unsigned tsan_grain = 0;          // threads per TSan fiber in tsan_fibers (1 or 32)
  // Unguarded fiber stacks, carved from slabs of kSlabStacks (one mapping each).
  std::vector<std::pair<char *, size_t>> slabs;
  char *slab_next = nullptr;
  unsigned slab_left = 0;
  ~ThreadState() {
    workers.clear();  // joins them
    quiet.clear();
    for (Fiber &f : fibers)
      if (f.guarded) munmap(f.stack_lo - kPage, f.stack_len + kPage);
    for (auto &slab : slabs) munmap(slab.first, slab.second);
  }
};
// Plain pointers with initial-exec TLS (no __tls_get_addr, no init guard on every access); the
// state itself is freed by a pthread key destructor when the thread ends.
__thread ThreadCoords *current_coords __attribute__((tls_model("initial-exec"))) = nullptr;
static __thread ThreadState *t_ptr __attribute__((tls_model("initial-exec"))) = nullptr;
static pthread_key_t g_state_key;
__attribute__((noinline)) static ThreadState &new_state() {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_key_create(&g_state_key, [](void *p) { delete static_cast<ThreadState *>(p); });
  });
  t_ptr = new ThreadState();
  pthread_setspecific(g_state_key, t_ptr);
  current_coords = &t_ptr->host_coords;
  return *t_ptr;
}
static inline ThreadState &state() { return __builtin_expect(t_ptr != nullptr, 1) ? *t_ptr : new_state(); }
#define t_state (state())

// Makes `f` (or, for nullptr, the host) the running thread of this OS thread.
static inline void set_running(ThreadState &ts, Fiber *f) {
  ts.fiber = f;
  current_coords = f ? &f->coords : &ts.host_coords;
}

[[noreturn]] static void fiber_main(Fiber *f);

// Fiber stacks with a guard page below cost two memory mappings each, and the kernel allows
// about 65530 per process (vm.max_map_count): a cooperative launch of 68 blocks of 1024 threads
// would exceed it. So only the first kGuardedStacks stacks get a guard page; the others come
// from slabs of kSlabStacks stacks, one mapping each, with a canary at the bottom of each stack,
// checked when their block ends.
static const size_t kGuardedStacks = 12 * 1024;
static std::atomic<size_t> g_guarded_stacks{0};
static const uint64_t kStackCanary = 0x5a3c96e1f00dfaceull;

static char *map_stack(size_t bytes) {
  void *m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                 -1, 0);
  if (m == MAP_FAILED) {
    report("cannot map a fiber stack");
    std::abort();
  }
  return static_cast<char *>(m);
}

// Unguarded stacks per slab (TSan gives every mapping shadow mappings of its own: one mapping a
// stack would exceed vm.max_map_count with a cluster of large blocks).
static const unsigned kSlabStacks = 64;

static void prepare_fiber(Fiber &f, unsigned index) {
  if (!f.stack_lo) {
    const size_t len = stack_bytes();
    // Under TSan each fiber also maps a trace: no guard pages then (the canary still checks).
    f.guarded = !tsan::on() && g_guarded_stacks.fetch_add(1) < kGuardedStacks;
    if (f.guarded) {
      char *m = map_stack(len + kPage);
      mprotect(m, kPage, PROT_NONE);  // overflow faults instead of corrupting a neighbour
      f.stack_lo = m + kPage;
    } else {
      ThreadState &ts = t_state;
      if (ts.slab_left == 0) {
        ts.slab_next = map_stack(len * kSlabStacks);
        ts.slabs.emplace_back(ts.slab_next, len * kSlabStacks);
        ts.slab_left = kSlabStacks;
      }
      f.stack_lo = ts.slab_next;
      ts.slab_next += len;
      ts.slab_left--;
    }
    f.stack_len = len;
  }
  if (!f.guarded) std::memcpy(f.stack_lo, &kStackCanary, sizeof kStackCanary);
  // Stagger the stack tops by cache lines: at one page offset they would all fall into the
  // same cache sets, and every switch would miss.
  uintptr_t top = ((uintptr_t)(f.stack_lo + f.stack_len) - (index % 61) * 64 - (index / 61 % 7) * 4096) &
                  ~(uintptr_t)15;
  uint64_t *s = reinterpret_cast<uint64_t *>(top);
  s[-1] = (uint64_t)(uintptr_t)&samplex_emu_fiber_start;  // return address of the first switch
  s[-2] = 0;                                               // rbp
  s[-3] = (uint64_t)(uintptr_t)&f;                         // rbx: the fiber
  s[-4] = (uint64_t)(uintptr_t)&fiber_main;                // r12: its main
  s[-5] = 0;                                               // r13
  s[-6] = 0;                                               // r14
  s[-7] = 0;                                               // r15
  f.sp = &s[-7];
  f.done = false;
}

[[noreturn]] static void fail(const std::string &why);

// Runs the next runnable fiber; `save` receives the current stack (nullptr: never resumed).
static void run_next(Block &b, Fiber *me, const char *what) {
  if (b.count == 0) {
    char msg[280];
    std::snprintf(msg, sizeof msg,
                  "deadlock: every live thread waits (this one at %s; of %u live threads, %zu at "
                  "__syncthreads and %zu at the cluster barrier)",
                  what, b.live, b.at_barrier.ids.size(), b.at_cluster.ids.size());
    fail(msg);
  }
  std::vector<Fiber> &fs = *b.fibers;
  Fiber &next = fs[b.pop()];
  if (&next == me) return;  // a releasing thread that queued itself came up first
  if (b.count > 0) __builtin_prefetch(fs[b.ring[b.head]].sp);  // the one after: warm its stack
  ThreadState &ts = t_state;
  set_running(ts, &next);
  tsan::switch_to(next.tsan);
  void *dummy;
  samplex_emu_switch(me ? &me->sp : &dummy, next.sp);
  set_running(ts, me);  // resumed (only reached when `me` is non-null)
}

// Blocks the running fiber at `w` until a release moves it back to the run queue.
static void wait_at(Waiters &w, const char *what) {
  Block &b = *t_state.block;
  Fiber *me = t_state.fiber;
  w.ids.push_back(me->linear);
  run_next(b, me, what);
}

// The order in which released threads resume (SAMPLEX_EMU_THREAD_ORDER). Fibers switch only
// at barriers and warp collectives, so between two of them each thread runs alone, in this
// order: a write by one thread read by another with no barrier between (or a read overwritten
// before the barrier) gives a result that depends on it. `arrival` (the default) resumes them
// as they arrived and lets the releasing thread run on; `reverse` resumes them by descending
// thread index and `shuffle` in a random order per release, the releasing thread among them,
// so running the tests under each order stands in for a race check inside a block.
enum class ThreadOrder { arrival, reverse, shuffle };

static ThreadOrder thread_order() {
  static const ThreadOrder order = [] {
    const char *mode = std::getenv("SAMPLEX_EMU_THREAD_ORDER");
    if (!mode || !*mode || !std::strcmp(mode, "arrival")) return ThreadOrder::arrival;
    if (!std::strcmp(mode, "reverse")) return ThreadOrder::reverse;
    if (!std::strcmp(mode, "shuffle")) return ThreadOrder::shuffle;
    std::fprintf(stderr, "samplex emulator: SAMPLEX_EMU_THREAD_ORDER=%s is not arrival, reverse or shuffle\n", mode);
    std::abort();
  }();
  return order;
}

static void order_threads(std::vector<unsigned> &ids) {
  switch (thread_order()) {
    case ThreadOrder::arrival:
      return;
    case ThreadOrder::reverse:
      std::sort(ids.begin(), ids.end(), std::greater<unsigned>());
      return;
    case ThreadOrder::shuffle:
      // t_state.shuffle is per OS thread: reproducible for its order of launches.
      for (size_t i = ids.size(); i > 1; --i) std::swap(ids[i - 1], ids[xorshift_next(t_state.shuffle) % i]);
      return;
  }
}

static void release(Block &b, Waiters &w) {
  order_threads(w.ids);
  for (unsigned id : w.ids) b.push(id);
  w.ids.clear();
}

// Leaves the block for good: back to the launcher, which reports the failure.
[[noreturn]] static void abandon_block() {
  Block &b = *t_state.block;
  void *dummy;
  set_running(t_state, nullptr);
  tsan::release(&b.end_sync);
  tsan::switch_to(b.launcher_tsan);
  samplex_emu_switch(&dummy, b.launcher_sp);
  __builtin_unreachable();
}

[[noreturn]] static void fail(const std::string &why) {
  Block &b = *t_state.block;
  const Fiber *f = t_state.fiber;
  char where[160];
  std::snprintf(where, sizeof where, " (kernel %s, block (%u,%u,%u), thread (%u,%u,%u))",
                b.kernel->name, f->coords.block_idx.x, f->coords.block_idx.y, f->coords.block_idx.z,
                f->coords.thread_idx.x, f->coords.thread_idx.y, f->coords.thread_idx.z);
  b.failed = true;
  b.error = why + where;
  abandon_block();
}

static void release_block_barrier(Block &b) {
  b.bar_gen++;
  b.bar_result = b.bar_accum;
  b.bar_accum = 0;
  release(b, b.at_barrier);
}

// Every live fiber of the block is at the cluster barrier: the block arrives (this OS thread
// waits for the cluster's others), then its fibers go on.
static void pass_cluster_barrier(Block &b) {
  // For TSan: the block's threads released into cluster_sync, the cluster's blocks meet at
  // ClusterRun::sync, then the threads acquire cluster_sync again (cluster_sync()).
  const unsigned p = b.passed & 1;
  tsan::acquire(&b.cluster_sync[p]);
  tsan::release(&b.cluster->sync[p]);
  if (!b.cluster->arrive()) fail("the cluster was aborted (another of its blocks failed) at a cluster barrier");
  tsan::acquire(&b.cluster->sync[p]);
  tsan::release(&b.cluster_sync[p]);
  b.passed++;
  release(b, b.at_cluster);
}

[[noreturn]] static void fiber_main(Fiber *f) {
  set_running(t_state, f);
  Block &b = *f->block;
  tsan::acquire(&b.start_sync);
  b.kernel->call(b.kernel->fn, b.params);
  // The thread returned: it no longer takes part in barriers (as on the hardware), so it counts
  // as arrived at the pending ones.
  tsan::release(&b.end_sync);
  tsan::release(&b.bar_sync[b.bar_gen & 1]);
  tsan::release(&b.cluster_sync[b.passed & 1]);
  f->done = true;
  b.live--;
  Warp &w = b.warps[f->warp];
  w.live--;
  if (!w.waiting.ids.empty()) fail("a thread returned while its warp waits in a collective");
  if (!b.at_barrier.ids.empty() && b.at_barrier.ids.size() == b.live) release_block_barrier(b);
  if (!b.at_cluster.ids.empty() && b.at_cluster.ids.size() == b.live) pass_cluster_barrier(b);
  if (b.live == 0) abandon_block();  // all done: back to the launcher (not a failure)
  run_next(b, nullptr, "its return");
  __builtin_unreachable();
}

// The running thread completes `w` (a barrier or collective); `release_all` moves its waiters
// to the run queue. In `arrival` order the completing thread runs on; otherwise it is queued
// with them and resumes in the order they do.
template <typename Release>
static void complete(Block &b, Waiters &w, Release release_all, const char *what) {
  const bool queued = thread_order() != ThreadOrder::arrival;
  if (queued) w.ids.push_back(t_state.fiber->linear);
  release_all();
  if (queued) run_next(b, t_state.fiber, what);
}

void syncthreads() {
  Block &b = *t_state.block;
  const unsigned g = b.bar_gen & 1;
  tsan::release(&b.bar_sync[g]);
  if (b.at_barrier.ids.size() + 1 == b.live)
    complete(b, b.at_barrier, [&] { release_block_barrier(b); }, "__syncthreads");
  else
    wait_at(b.at_barrier, "__syncthreads");
  tsan::acquire(&b.bar_sync[g]);
}

int syncthreads_count(int predicate) {
  Block &b = *t_state.block;
  b.bar_accum += predicate != 0;
  syncthreads();
  return b.bar_result;
}

const uint64_t *warp_exchange(unsigned mask, uint64_t value) {
  Block &b = *t_state.block;
  Fiber &f = *t_state.fiber;
  Warp &w = b.warps[f.warp];
  if (mask != 0xffffffffu) fail("warp collective with a partial mask (not emulated)");
  if (w.size != 32) fail("full-mask warp collective in a partial warp");
  if (w.live != 32) fail("full-mask warp collective after some lanes returned");
  const unsigned g = w.gen;
  w.slots[g & 1][f.coords.thread_idx.x & 31] = value;
  if (w.waiting.ids.size() == 31) {
    w.gen++;
    complete(b, w.waiting, [&] { release(b, w.waiting); }, "a warp collective");
  } else {
    wait_at(w.waiting, "a warp collective");
  }
  return w.slots[g & 1];
}

// The one warp collective that orders memory (TSan runs): shuffles and votes do not, in CUDA.
void syncwarp(unsigned mask) {
  Warp &w = t_state.block->warps[t_state.fiber->warp];
  const unsigned g = w.gen & 1;
  tsan::release(&w.syncwarp[g]);
  (void)warp_exchange(mask, 0);
  tsan::acquire(&w.syncwarp[g]);
}

void *dynamic_shared() { return t_state.block->smem; }

unsigned cluster_rank() { return t_state.block->rank; }
unsigned cluster_size() { return t_state.block->cluster->size; }

void cluster_sync() {
  Block &b = *t_state.block;
  const unsigned p = b.passed & 1;
  tsan::release(&b.cluster_sync[p]);
  if (b.at_cluster.ids.size() + 1 == b.live)
    complete(b, b.at_cluster, [&] { pass_cluster_barrier(b); }, "the cluster barrier");
  else
    wait_at(b.at_cluster, "the cluster barrier");
  tsan::acquire(&b.cluster_sync[p]);
}

const void *cluster_map(const void *p, unsigned rank) {
  Block &b = *t_state.block;
  const ClusterRun &c = *b.cluster;
  if (rank >= c.size) {
    char msg[120];
    std::snprintf(msg, sizeof msg, "mapa to rank %u of a cluster of %u blocks", rank, c.size);
    fail(msg);
  }
  const uintptr_t a = (uintptr_t)p, lo = (uintptr_t)b.smem;
  if (a < lo || a > lo + b.smem_bytes)
    fail("mapa of an address outside the block's dynamic shared memory (the emulator maps only that)");
  return c.smem[rank] + (a - lo);
}

void cluster_read(void *dst, const void *src, size_t n) {
  Block &b = *t_state.block;
  ClusterRun &c = *b.cluster;
  const int r = c.owner(src, n);
  if (r < 0) fail("distributed shared memory read outside every block's dynamic shared memory");
  if ((unsigned)r != b.rank) {
    if (b.passed == 0)
      fail("distributed shared memory read before the first cluster barrier (the other block may not have started)");
    // Checked when the cluster ends: a read at or after the owner's last barrier may find it gone.
    unsigned seen = c.last_read[r].load(std::memory_order_relaxed);
    while (b.passed + 1 > seen && !c.last_read[r].compare_exchange_weak(seen, b.passed + 1)) {
    }
  }
  std::memcpy(dst, src, n);
}

// The running thread's launch's FenceLedger, or null (not a TSan run, or not in a kernel).
static FenceLedger *ledger(const ThreadState &ts) { return ts.fiber ? ts.block->fences : nullptr; }

void threadfence() {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  ThreadState &ts = t_state;
  FenceLedger *l = ledger(ts);
  if (!l) return;
  Fiber &f = *ts.fiber;
  l->lock();
  for (const auto &read : f.seen) {
    const std::vector<const char *> &fences = l->before[read.first];
    for (size_t i = 0; i < read.second; ++i) tsan::acquire(fences[i]);
  }
  f.seen.clear();
  f.fence = l->new_fence();
  l->unlock();
  tsan::release(f.fence);
}

// The TSan runs' account of atomics (FenceLedger; device.hpp's kernels call these only then).
void atomic_will_write(const void *p) {
  ThreadState &ts = t_state;
  FenceLedger *l = ledger(ts);
  if (!l || !ts.fiber->fence) return;
  l->lock();
  std::vector<const char *> &fences = l->before[(uintptr_t)p];
  if (std::find(fences.begin(), fences.end(), ts.fiber->fence) == fences.end()) fences.push_back(ts.fiber->fence);
  l->unlock();
}

void atomic_did_read(const void *p) {
  ThreadState &ts = t_state;
  FenceLedger *l = ledger(ts);
  if (!l) return;
  l->lock();
  const auto it = l->before.find((uintptr_t)p);
  const size_t n = it == l->before.end() ? 0 : it->second.size();
  l->unlock();
  if (n == 0) return;
  size_t &seen = ts.fiber->seen[(uintptr_t)p];
  seen = std::max(seen, n);
}

void acquire_fences_of(const void *p) {
  FenceLedger *l = ledger(t_state);
  if (!l) return;
  l->lock();
  const auto it = l->before.find((uintptr_t)p);
  if (it != l->before.end())
    for (const char *fence : it->second) tsan::acquire(fence);
  l->unlock();
}

// One turn of a spin wait on global memory (common.cuh §9): sleeps this OS thread, so that the
// block being waited for (another OS thread of a cooperative launch) runs.
void spin_pause(unsigned spins) {
  Block &b = *t_state.block;
  if (!b.grid)
    fail("a block waits for memory another block writes, in a launch that is not cooperative (its blocks "
         "need not run at the same time: launch with CU_LAUNCH_ATTRIBUTE_COOPERATIVE)");
  if (b.grid->aborted.load()) fail("the cooperative launch was aborted (another of its blocks failed) at a spin wait");
  if (spins > 3000000u) fail("a spin wait on global memory did not end in a minute (a block never arrived?)");
  std::this_thread::sleep_for(std::chrono::microseconds(20));
}

float f16_to_f32(unsigned short h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // inf / NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal half: normalise
    int e = -1;
    do {
      man <<= 1;
      ++e;
    } while (!(man & 0x400u));
    bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

unsigned short f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return (unsigned short)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // NaN
  if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // rounds past 65504: inf
  if (ax < 0x38800000u) {  // below 2^-14: a subnormal half (or the smallest normal, by rounding)
    float a;
    std::memcpy(&a, &ax, 4);
    return (unsigned short)(sign | (uint32_t)std::nearbyint(a * 16777216.0f));  // a * 2^24, exact
  }
  uint32_t r = ax - 0x38000000u;  // rebias the exponent (127 - 15 = 112)
  r += 0xfffu + ((r >> 13) & 1u);
  return (unsigned short)(sign | (r >> 13));
}

// ---------------------------------------------------------------------------------------------
// Launching.
// ---------------------------------------------------------------------------------------------
struct Function {
  const KernelEntry *entry;
  int max_dynamic_shared = kDefaultDynamicShared;
  bool non_portable_cluster = false;  // CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED
};

static unsigned g_launch_counter = 0;

static void block_order(std::vector<uint64_t> &order, uint64_t n) {
  order.resize(n);
  for (uint64_t i = 0; i < n; ++i) order[i] = i;
  static const char *mode = std::getenv("SAMPLEX_EMU_BLOCK_ORDER");
  if (mode && !std::strcmp(mode, "forward")) return;
  if (mode && !std::strcmp(mode, "reverse")) {
    std::reverse(order.begin(), order.end());
    return;
  }
  // A different shuffle per launch, reproducible run to run (the launches' order is).
  uint64_t s = 0x9e3779b97f4a7c15ull * (1 + __atomic_fetch_add(&g_launch_counter, 1, __ATOMIC_RELAXED));
  for (uint64_t i = n; i > 1; --i) std::swap(order[i - 1], order[xorshift_next(s) % i]);
}

// What one launch runs: the kernel, its arguments and its shape.
struct Launch {
  const KernelEntry *kernel;
  void **params;
  dim3 grid, block, cluster;
  unsigned shared;
  uint64_t concurrent = 1;  // blocks that run at once: the cluster's, or a cooperative grid's
  FenceLedger *fences = nullptr;  // TSan runs only
};

// Runs block `bidx` (rank `rank` of cluster `c`) on this OS thread. On failure, aborts the
// cluster with the block's error.
static void run_block(const Launch &l, uint3 bidx, ClusterRun &c, unsigned rank, GridRun *grid = nullptr) {
  ThreadState &ts = t_state;
  const unsigned threads = l.block.x * l.block.y * l.block.z;
  if (ts.fibers.size() < threads) ts.fibers.resize(threads);
  ts.kernel_name = l.kernel->name;
  Block &b = ts.run;
  b.kernel = l.kernel;
  b.params = l.params;
  b.fibers = &ts.fibers;
  b.n = threads;
  b.live = threads;
  b.ring.assign(threads, 0);
  b.head = b.count = 0;
  // The first fiber to run is not queued (the launcher switches to it).
  std::vector<unsigned> &start = ts.start_order;
  start.resize(threads);
  for (unsigned t = 0; t < threads; ++t) start[t] = t;
  order_threads(start);
  for (unsigned t = 1; t < threads; ++t) b.push(start[t]);
  b.at_barrier.ids.clear();
  b.at_barrier.ids.reserve(threads);
  b.bar_accum = b.bar_result = 0;
  b.warps.resize((threads + 31) / 32);
  for (size_t w = 0; w < b.warps.size(); ++w) {
    Warp &wp = b.warps[w];
    wp.size = std::min<unsigned>(32, threads - 32 * (unsigned)w);
    wp.live = wp.size;
    wp.waiting.ids.clear();
    wp.waiting.ids.reserve(32);
  }
  b.cluster = &c;
  b.grid = grid;
  b.fences = l.fences;
  b.rank = rank;
  b.passed = 0;
  b.at_cluster.ids.clear();
  b.at_cluster.ids.reserve(threads);
  b.smem_bytes = l.shared;
  b.smem = ts.smem.at(l.shared);
  std::memset(b.smem, 0xff, (l.shared + 15) & ~15u);
  b.failed = false;
  b.error.clear();
  for (unsigned t = 0; t < threads; ++t) {
    Fiber &f = ts.fibers[t];
    prepare_fiber(f, t);
    f.linear = t;
    f.warp = t / 32;
    f.block = &b;
    f.coords.thread_idx = uint3{t % l.block.x, (t / l.block.x) % l.block.y, t / (l.block.x * l.block.y)};
    f.coords.block_idx = bidx;
    f.coords.block_dim = l.block;
    f.coords.grid_dim = l.grid;
    f.fence = nullptr;
    f.seen.clear();
  }
  if (tsan::on()) {
    b.launcher_tsan = tsan::t_now = __tsan_get_current_fiber();
    const unsigned grain =
        tsan::thread_grain() && threads * l.concurrent <= tsan::kThreadGrainMax ? 1 : 32;
    const size_t need = (threads + grain - 1) / grain;
    std::vector<void *> &pool = ts.tsan_fibers;
    if (grain != ts.tsan_grain) {  // the names say what a fiber stands for: new ones
      for (void *f : pool) __tsan_destroy_fiber(f);
      pool.clear();
      ts.tsan_grain = grain;
    }
    while (pool.size() > need) {  // only what runs now stays alive (TSan's thread limit)
      __tsan_destroy_fiber(pool.back());
      pool.pop_back();
    }
    while (pool.size() < need) {
      pool.push_back(__tsan_create_fiber(0));
      const std::string name = (grain == 1 ? "CUDA thread " : "CUDA warp ") + std::to_string(pool.size() - 1) +
                               (grain == 1 ? " (linear index)" : " (all its lanes)");
      __tsan_set_fiber_name(pool.back(), name.c_str());
    }
    for (unsigned t = 0; t < threads; ++t) ts.fibers[t].tsan = pool[t / grain];
    tsan::release(&b.start_sync);  // everything this OS thread did before: the block comes after
  }
  c.block_idx[rank] = bidx;
  c.start(rank, b.smem);
  ts.block = &b;
  set_running(ts, &ts.fibers[start[0]]);
  tsan::switch_to(ts.fibers[start[0]].tsan);
  samplex_emu_switch(&b.launcher_sp, ts.fibers[start[0]].sp);
  tsan::acquire(&b.end_sync);  // the next block on this OS thread comes after this one
  for (unsigned t = 0; t < threads && !b.failed; ++t) {
    const Fiber &f = ts.fibers[t];
    if (!f.guarded && std::memcmp(f.stack_lo, &kStackCanary, sizeof kStackCanary) != 0) {
      b.failed = true;
      b.error = "thread " + std::to_string(t) + " of kernel " + l.kernel->name + " overflowed its fiber stack "
                "(SAMPLEX_EMU_STACK_KB)";
    }
  }
  ts.block = nullptr;
  set_running(ts, nullptr);
  ts.kernel_name = nullptr;
  if (b.failed && grid) grid->aborted.store(true);
  if (b.failed)
    c.abort(b.error);
  else
    c.exit(rank, b.passed);
}

// After a cluster: a block's shared memory read (DSMEM) by another at or after that block's last
// cluster barrier, when it may already have exited. Returns the complaint, or "".
static std::string late_reads(const ClusterRun &c) {
  for (unsigned r = 0; r < c.size; ++r) {
    const unsigned seen = c.last_read[r].load();
    if (seen != 0 && seen - 1 >= c.exit_gen[r]) {
      char msg[240];
      std::snprintf(msg, sizeof msg,
                    "block (%u,%u,%u) returned after %u cluster barriers, but another block of its "
                    "cluster read its shared memory after barrier %u: end with a cluster barrier",
                    c.block_idx[r].x, c.block_idx[r].y, c.block_idx[r].z, c.exit_gen[r], seen - 1);
      return msg;
    }
  }
  return "";
}

// Blocks of `threads` threads with `shared` bytes of dynamic shared memory one SM holds at once
// (threads and shared memory only: the emulator knows no register counts).
static int blocks_per_sm(uint64_t threads, size_t shared) {
  int n = (int)std::min<uint64_t>(32, 2048 / std::max<uint64_t>(1, threads));
  if (shared > 0) n = std::min(n, (int)((size_t)shared_per_sm() / shared));
  return n;
}

// A cooperative launch: every block at once, each on its own OS thread (and its own cluster of
// one), so that they can wait for each other through global memory.
static CUresult run_cooperative(const Launch &l) {
  const dim3 g = l.grid;
  const uint64_t blocks = (uint64_t)g.x * g.y * g.z;
  const uint64_t threads = (uint64_t)l.block.x * l.block.y * l.block.z;
  const uint64_t fit = (uint64_t)sm_count() * (uint64_t)blocks_per_sm(threads, l.shared);
  if (blocks > fit) {
    report("%s: a cooperative launch of %llu blocks, but the device holds %llu at once", l.kernel->name,
           (unsigned long long)blocks, (unsigned long long)fit);
    return CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE;
  }
  ThreadState &ts = t_state;
  while (ts.workers.size() + 1 < blocks) ts.workers.emplace_back(new Worker());
  std::vector<std::unique_ptr<ClusterRun>> runs(blocks);
  GridRun grid;
  auto block_of = [&](uint64_t i) {
    return uint3{(unsigned)(i % g.x), (unsigned)((i / g.x) % g.y), (unsigned)(i / ((uint64_t)g.x * g.y))};
  };
  for (uint64_t i = 0; i < blocks; ++i) {
    runs[i].reset(new ClusterRun());
    runs[i]->reset(1, l.shared);
  }
  for (uint64_t i = 1; i < blocks; ++i)
    ts.workers[i - 1]->start([&, i] { run_block(l, block_of(i), *runs[i], 0, &grid); });
  run_block(l, block_of(0), *runs[0], 0, &grid);
  for (uint64_t i = 1; i < blocks; ++i) ts.workers[i - 1]->wait();
  // The first failure, rather than the blocks it stopped.
  const std::string *error = nullptr;
  for (auto &r : runs) {
    if (!r->aborted) continue;
    if (!error || error->find("was aborted") != std::string::npos) error = &r->error;
  }
  if (error) {
    report("%s", error->c_str());
    return CUDA_ERROR_LAUNCH_FAILED;
  }
  return CUDA_SUCCESS;
}

// Runs a launch's clusters (of one block, without cluster dimensions) one after another, in
// `order`: run_cluster(c, block_of) runs the blocks of ClusterRun c (rank r is block block_of(r))
// and returns when they have ended. Stops at the first that fails.
template <typename RunCluster>
static CUresult run_clusters(const Launch &l, const std::vector<uint64_t> &order, RunCluster run_cluster) {
  const dim3 g = l.grid, cd = l.cluster;
  const unsigned csize = cd.x * cd.y * cd.z, nx = g.x / cd.x, ny = g.y / cd.y;
  for (uint64_t cl : order) {
    const uint3 base{(unsigned)(cl % nx) * cd.x, (unsigned)((cl / nx) % ny) * cd.y,
                     (unsigned)(cl / ((uint64_t)nx * ny)) * cd.z};
    auto block_of = [&](unsigned r) {
      return uint3{base.x + r % cd.x, base.y + (r / cd.x) % cd.y, base.z + r / (cd.x * cd.y)};
    };
    // A new one per cluster: under TSan, its lock would order the clusters.
    std::unique_ptr<ClusterRun> c(new ClusterRun());
    c->reset(csize, l.shared);
    run_cluster(*c, block_of);
    if (c->aborted) {
      report("%s", c->error.c_str());
      return CUDA_ERROR_LAUNCH_FAILED;
    }
    const std::string late = late_reads(*c);
    if (!late.empty()) {
      report("%s (kernel %s)", late.c_str(), l.kernel->name);
      return CUDA_ERROR_LAUNCH_FAILED;
    }
  }
  return CUDA_SUCCESS;
}

// TSan runs: run_clusters, but on kApartHelpers helper threads (QuietWorker): a block is ordered
// after the launcher's work before the launch and before the launcher's work after it, and after
// the blocks that ran before it on its helper, not after the others (on a GPU they may run at the
// same time: a block that reads what another wrote needs the fences and atomics that say so).
// Block i runs on helper i mod kApartHelpers, so a row split over consecutive blocks spreads over
// all of them; a cluster's blocks each on a helper of their own, at once. The __shared__ memory
// (thread_local) of blocks on different helpers is different memory.
static CUresult run_apart(const Launch &l, const std::vector<uint64_t> &order) {
  ThreadState &ts = t_state;
  const dim3 g = l.grid, cd = l.cluster;
  const unsigned csize = cd.x * cd.y * cd.z;
  const unsigned helpers = std::max(kApartHelpers, csize);
  while (ts.quiet.size() < helpers) ts.quiet.emplace_back(new QuietWorker());
  // The launcher's work before the launch, for every block; every block's end, for the launcher
  // after it (new sync objects: nothing else has been released into them).
  std::unique_ptr<char> start(new char), ends(new char);
  tsan::release(start.get());
  const CUresult result = run_clusters(l, order, [&](ClusterRun &c, const auto &block_of) {
    std::vector<QuietWorker *> busy;
    for (unsigned r = 0; r < csize; ++r) {
      const uint3 b = block_of(r);
      // A cluster's ranks go to helpers 0.., at once; single blocks by their index, so that the
      // consecutive blocks that split a row run on different helpers.
      const uint64_t linear = b.x + (uint64_t)g.x * (b.y + (uint64_t)g.y * b.z);
      QuietWorker *w = ts.quiet[csize > 1 ? r : linear % helpers].get();
      w->start([&l, b, r, &c, &start, &ends] {
        tsan::acquire(start.get());
        run_block(l, b, c, r);
        tsan::release(ends.get());
      });
      busy.push_back(w);
    }
    for (QuietWorker *w : busy) w->wait();
  });
  tsan::acquire(ends.get());
  return result;
}

static CUresult run_kernel(Function *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                           unsigned bz, unsigned shared, void **params, const unsigned *cluster_dim = nullptr,
                           bool cooperative = false) {
  const KernelEntry *k = fn->entry;
  const uint64_t threads = (uint64_t)bx * by * bz;
  if (threads == 0 || threads > 1024 || bx > 1024 || by > 1024 || bz > 64 || gx == 0 || gy == 0 || gz == 0 ||
      gx > 0x7fffffffu || gy > 65535 || gz > 65535) {
    report("%s: invalid launch grid (%u,%u,%u) block (%u,%u,%u)", k->name, gx, gy, gz, bx, by, bz);
    return CUDA_ERROR_INVALID_VALUE;
  }
  if ((int)shared > fn->max_dynamic_shared) {
    report("%s: %u bytes of dynamic shared memory, above the function's limit of %d (set "
           "CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)",
           k->name, shared, fn->max_dynamic_shared);
    return CUDA_ERROR_INVALID_VALUE;
  }
  const dim3 cd = cluster_dim ? dim3{cluster_dim[0], cluster_dim[1], cluster_dim[2]} : dim3{1, 1, 1};
  const unsigned csize = cd.x * cd.y * cd.z;
  if (csize > 1 && !has_clusters()) {
    report("%s: a cluster launch on an emulated sm_%d device (clusters need sm_90)", k->name, compute_capability());
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  const unsigned climit = fn->non_portable_cluster ? kMaxCluster : kPortableCluster;
  if (csize == 0 || csize > climit || gx % cd.x || gy % cd.y || gz % cd.z) {
    report("%s: cluster (%u,%u,%u) does not divide grid (%u,%u,%u) or exceeds %u blocks", k->name, cd.x, cd.y, cd.z,
           gx, gy, gz, climit);
    return CUDA_ERROR_INVALID_CLUSTER_SIZE;
  }
  ThreadState &ts = t_state;
  if (ts.block) {
    report("%s: launched from inside a kernel", k->name);
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  std::unique_ptr<FenceLedger> fences(tsan::on() ? new FenceLedger() : nullptr);
  const Launch l{k,
                 params,
                 dim3{gx, gy, gz},
                 dim3{bx, by, bz},
                 cd,
                 shared,
                 cooperative ? (uint64_t)gx * gy * gz : (uint64_t)cd.x * cd.y * cd.z,
                 fences.get()};
  if (cooperative) {
    if (csize > 1) {
      report("%s: a cooperative launch with a cluster dimension is not emulated", k->name);
      return CUDA_ERROR_NOT_SUPPORTED;
    }
    return run_cooperative(l);
  }
  const unsigned nx = gx / cd.x, ny = gy / cd.y;
  std::vector<uint64_t> order;
  block_order(order, (uint64_t)nx * ny * (gz / cd.z));
  if (tsan::on()) return run_apart(l, order);
  while (ts.workers.size() + 1 < csize) ts.workers.emplace_back(new Worker());
  return run_clusters(l, order, [&](ClusterRun &c, const auto &block_of) {
    for (unsigned r = 1; r < csize; ++r) ts.workers[r - 1]->start([&, r] { run_block(l, block_of(r), c, r); });
    run_block(l, block_of(0), c, 0);
    for (unsigned r = 1; r < csize; ++r) ts.workers[r - 1]->wait();
  });
}

// A fault inside a guard page of a device buffer or a fiber stack: say where, then stop.
static struct sigaction g_prev_segv;
static void on_segv(int sig, siginfo_t *info, void *ctx) {
  const uintptr_t a = (uintptr_t)info->si_addr;
  const char *kernel = t_ptr ? t_ptr->kernel_name : nullptr;
  char msg[512];
  int len = 0;
  if (kernel) {
    const Fiber *f = t_ptr->fiber;
    len = std::snprintf(msg, sizeof msg, "samplex emulator: invalid access at %#lx in kernel %s", (unsigned long)a,
                        kernel);
    if (f)
      len += std::snprintf(msg + len, sizeof msg - len, ", block (%u,%u,%u), thread (%u,%u,%u)",
                           f->coords.block_idx.x, f->coords.block_idx.y, f->coords.block_idx.z,
                           f->coords.thread_idx.x, f->coords.thread_idx.y, f->coords.thread_idx.z);
    if (t_ptr->smem.holds(a))
      len += std::snprintf(msg + len, sizeof msg - len, ": past the end of the block's %zu bytes of dynamic shared memory",
                           t_ptr->run.smem_bytes);
    // Which buffer it ran past (the lock may be held by this very thread: try only).
    if (g_mutex.try_lock()) {
      for (auto &kv : g_allocs) {
        const Allocation &al = kv.second;
        if (a >= (uintptr_t)al.map && a < (uintptr_t)al.map + al.map_len) {
          long off = (long)(a - (uintptr_t)al.user);
          len += std::snprintf(msg + len, sizeof msg - len, ": byte %ld of a %zu-byte device buffer", off, al.size);
        }
      }
      g_mutex.unlock();
    }
    len += std::snprintf(msg + len, sizeof msg - len, "\n");
    (void)!write(2, msg, (size_t)std::min<int>(len, (int)sizeof msg - 1));
    std::abort();
  }
  // Not ours: let the previous handler (Rust's stack-overflow reporter) have it.
  sigaction(SIGSEGV, &g_prev_segv, nullptr);
  (void)sig;
  (void)ctx;
}

static void install_segv_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    static char alt[64 * 1024];
    stack_t ss{};
    ss.ss_sp = alt;
    ss.ss_size = sizeof alt;
    sigaltstack(&ss, nullptr);
    struct sigaction sa {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_prev_segv);
  });
}

// ---------------------------------------------------------------------------------------------
// Streams, graphs, events.
// ---------------------------------------------------------------------------------------------
struct Node {
  enum Kind { Kernel, Copy, Set } kind;
  Function *fn = nullptr;
  unsigned grid[3]{}, block[3]{}, cluster[3]{1, 1, 1}, shared = 0;
  bool cooperative = false;
  std::vector<std::vector<char>> args;  // the parameter values, copied at capture
  CUdeviceptr dst = 0;
  const void *src = nullptr;
  std::vector<char> src_copy;
  size_t bytes = 0;
  unsigned char value = 0;
};
struct Graph {
  std::vector<Node> nodes;
};
struct Stream {
  bool capturing = false;
  Graph *graph = nullptr;
};
static Stream g_null_stream;
static Stream *stream_of(void *h) { return h ? static_cast<Stream *>(h) : &g_null_stream; }

static CUresult run_node(const Node &n) {
  switch (n.kind) {
    case Node::Kernel: {
      std::vector<void *> ptrs;
      for (auto &a : n.args) ptrs.push_back(const_cast<char *>(a.data()));
      return run_kernel(n.fn, n.grid[0], n.grid[1], n.grid[2], n.block[0], n.block[1], n.block[2], n.shared,
                        ptrs.data(), n.cluster, n.cooperative);
    }
    case Node::Copy:
      std::memcpy((void *)(uintptr_t)n.dst, n.src_copy.empty() ? n.src : n.src_copy.data(), n.bytes);
      return CUDA_SUCCESS;
    case Node::Set:
      std::memset((void *)(uintptr_t)n.dst, n.value, n.bytes);
      return CUDA_SUCCESS;
  }
  return CUDA_ERROR_INVALID_VALUE;
}

struct Event {
  double ms = 0.0;
};
static double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

static int g_context_token;  // the one context's handle points here
static int g_module_token;

}  // namespace samplex_emu

using namespace samplex_emu;

// ---------------------------------------------------------------------------------------------
// The driver API (the subset cudarc calls). Everything completes before it returns.
// ---------------------------------------------------------------------------------------------
#define API extern "C" __attribute__((visibility("default")))

static bool load_kernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info me;
    if (!dladdr(reinterpret_cast<void *>(&load_kernels), &me) || !me.dli_fname) return;
    std::string path(me.dli_fname);
    path = path.substr(0, path.rfind('/') + 1) + "libsamplex_emu_kernels.so";
    void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      report("cannot load %s: %s", path.c_str(), dlerror());
      return;
    }
    auto table = static_cast<const KernelEntry *>(dlsym(h, "samplex_emu_kernels"));
    auto count = static_cast<const int *>(dlsym(h, "samplex_emu_kernel_count"));
    if (table && count) {
      g_kernels = table;
      g_kernel_count = *count;
    }
  });
  return g_kernels != nullptr;
}

API CUresult cuInit(unsigned) {
  install_segv_handler();
  return load_kernels() ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}
// NVRTC (built without nvcc, the crate compiles its kernels with it) opens libcuda.so.1 too and
// asks it for internal export tables; with none to give it, it must hear "not supported" rather
// than find no symbol, which makes it crash.
API CUresult cuGetExportTable(const void **table, const void *) {
  *table = nullptr;
  return CUDA_ERROR_NOT_SUPPORTED;
}
API CUresult cuDriverGetVersion(int *v) {
  *v = 13000;
  return CUDA_SUCCESS;
}
API CUresult cuGetErrorString(CUresult e, const char **s) {
  switch (e) {
    case CUDA_SUCCESS: *s = "no error"; break;
    case CUDA_ERROR_INVALID_VALUE: *s = "invalid argument"; break;
    case CUDA_ERROR_OUT_OF_MEMORY: *s = "out of memory"; break;
    case CUDA_ERROR_NOT_FOUND: *s = "named symbol not found"; break;
    case CUDA_ERROR_LAUNCH_FAILED: *s = "unspecified launch failure (see the emulator's message on stderr)"; break;
    case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: *s = "operation not permitted when stream is capturing"; break;
    default: *s = "emulated driver error"; break;
  }
  return CUDA_SUCCESS;
}
API CUresult cuGetErrorName(CUresult e, const char **s) {
  switch (e) {
    case CUDA_SUCCESS: *s = "CUDA_SUCCESS"; break;
    case CUDA_ERROR_INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; break;
    case CUDA_ERROR_OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; break;
    case CUDA_ERROR_NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; break;
    case CUDA_ERROR_LAUNCH_FAILED: *s = "CUDA_ERROR_LAUNCH_FAILED"; break;
    case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: *s = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"; break;
    default: *s = "CUDA_ERROR_UNKNOWN"; break;
  }
  return CUDA_SUCCESS;
}

// Devices and contexts: one device, one (primary) context.
API CUresult cuDeviceGetCount(int *n) {
  *n = 1;
  return CUDA_SUCCESS;
}
API CUresult cuDeviceGet(CUdevice *d, int ordinal) {
  if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
  *d = 0;
  return CUDA_SUCCESS;
}
API CUresult cuDeviceGetName(char *name, int len, CUdevice) {
  std::snprintf(name, (size_t)len, "samplex CPU emulator");
  return CUDA_SUCCESS;
}
API CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice) {
  *bytes = (size_t)80 << 30;
  return CUDA_SUCCESS;
}
API CUresult cuDeviceGetUuid(unsigned char *uuid, CUdevice) {
  std::memset(uuid, 0x5a, 16);
  return CUDA_SUCCESS;
}
API CUresult cuDeviceGetUuid_v2(unsigned char *uuid, CUdevice d) { return cuDeviceGetUuid(uuid, d); }
API CUresult cuDeviceGetAttribute(int *v, int attr, CUdevice) {
  switch (attr) {
    case 1: *v = 1024; break;                // MAX_THREADS_PER_BLOCK
    case 2: case 3: *v = 1024; break;        // MAX_BLOCK_DIM_X, _Y
    case 4: *v = 64; break;                  // MAX_BLOCK_DIM_Z
    case 5: *v = 0x7fffffff; break;          // MAX_GRID_DIM_X
    case 6: case 7: *v = 65535; break;       // MAX_GRID_DIM_Y, _Z
    case 8: *v = 48 * 1024; break;           // MAX_SHARED_MEMORY_PER_BLOCK
    case 10: *v = 32; break;                 // WARP_SIZE
    case 12: *v = 65536; break;              // MAX_REGISTERS_PER_BLOCK
    case 13: *v = 1980000; break;            // CLOCK_RATE (kHz)
    case 16: *v = sm_count(); break;         // MULTIPROCESSOR_COUNT
    case 36: *v = 2619000; break;            // MEMORY_CLOCK_RATE
    case 37: *v = 5120; break;               // GLOBAL_MEMORY_BUS_WIDTH
    case 38: *v = 50 * 1024 * 1024; break;   // L2_CACHE_SIZE
    case 39: *v = 2048; break;               // MAX_THREADS_PER_MULTIPROCESSOR
    case 75: *v = compute_capability() / 10; break;  // COMPUTE_CAPABILITY_MAJOR
    case 76: *v = compute_capability() % 10; break;  // COMPUTE_CAPABILITY_MINOR
    case 81: *v = shared_per_sm(); break;    // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
    case 82: *v = 65536; break;              // MAX_REGISTERS_PER_MULTIPROCESSOR
    case 97: *v = shared_optin(); break;     // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    case 106: *v = 32; break;                // MAX_BLOCKS_PER_MULTIPROCESSOR
    case 115: *v = 1; break;                 // MEMORY_POOLS_SUPPORTED
    case 95: *v = 1; break;                  // COOPERATIVE_LAUNCH
    case 120: *v = has_clusters(); break;    // CLUSTER_LAUNCH
    default: *v = 0; break;
  }
  return CUDA_SUCCESS;
}
API CUresult cuDevicePrimaryCtxRetain(void **ctx, CUdevice d) {
  if (d != 0) return CUDA_ERROR_INVALID_DEVICE;
  *ctx = &g_context_token;
  return CUDA_SUCCESS;
}
API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return CUDA_SUCCESS; }
API CUresult cuCtxSetCurrent(void *) { return CUDA_SUCCESS; }
API CUresult cuCtxGetCurrent(void **ctx) {
  *ctx = &g_context_token;
  return CUDA_SUCCESS;
}
API CUresult cuCtxPushCurrent_v2(void *) { return CUDA_SUCCESS; }
API CUresult cuCtxPopCurrent_v2(void **ctx) {
  if (ctx) *ctx = &g_context_token;
  return CUDA_SUCCESS;
}
API CUresult cuCtxGetDevice(CUdevice *d) {
  *d = 0;
  return CUDA_SUCCESS;
}
API CUresult cuCtxSynchronize() { return CUDA_SUCCESS; }
API CUresult cuCtxGetApiVersion(void *, unsigned *v) {
  *v = 13000;
  return CUDA_SUCCESS;
}
API CUresult cuCtxGetStreamPriorityRange(int *least, int *greatest) {
  if (least) *least = 0;
  if (greatest) *greatest = 0;
  return CUDA_SUCCESS;
}
API CUresult cuCtxSetLimit(int, size_t) { return CUDA_SUCCESS; }
API CUresult cuCtxSetCacheConfig(int) { return CUDA_SUCCESS; }
API CUresult cuCtxSetFlags(unsigned) { return CUDA_SUCCESS; }

// Memory.
static CUresult refuse_in_capture(void *stream, const char *what) {
  if (stream_of(stream)->capturing) {
    report("%s inside a stream capture", what);
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  }
  return CUDA_SUCCESS;
}
API CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) { return device_alloc(p, n); }
API CUresult cuMemAllocAsync(CUdeviceptr *p, size_t n, void *stream) {
  if (CUresult e = refuse_in_capture(stream, "an allocation")) return e;
  return device_alloc(p, n);
}
API CUresult cuMemFree_v2(CUdeviceptr p) { return device_free(p); }
API CUresult cuMemFreeAsync(CUdeviceptr p, void *stream) {
  if (CUresult e = refuse_in_capture(stream, "a free")) return e;
  return device_free(p);
}
API CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
  *free_bytes = (size_t)64 << 30;
  *total = (size_t)80 << 30;
  return CUDA_SUCCESS;
}
API CUresult cuMemHostAlloc(void **p, size_t n, unsigned) {
  *p = std::malloc(n ? n : 1);
  return *p ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}
API CUresult cuMemFreeHost(void *p) {
  std::free(p);
  return CUDA_SUCCESS;
}

static CUresult copy_async(CUdeviceptr dst, const void *src, size_t n, void *stream, bool src_is_host) {
  Stream *s = stream_of(stream);
  if (s->capturing) {
    Node node{Node::Copy};
    node.dst = dst;
    node.bytes = n;
    if (src_is_host)
      node.src_copy.assign(static_cast<const char *>(src), static_cast<const char *>(src) + n);
    else
      node.src = src;
    s->graph->nodes.push_back(std::move(node));
    return CUDA_SUCCESS;
  }
  std::memcpy((void *)(uintptr_t)dst, src, n);
  return CUDA_SUCCESS;
}
API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
  if (!device_range_ok(dst, n)) return CUDA_ERROR_INVALID_VALUE;
  std::memcpy((void *)(uintptr_t)dst, src, n);
  return CUDA_SUCCESS;
}
API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, void *stream) {
  if (!device_range_ok(dst, n)) return CUDA_ERROR_INVALID_VALUE;
  return copy_async(dst, src, n, stream, true);
}
API CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) {
  if (!device_range_ok(src, n)) return CUDA_ERROR_INVALID_VALUE;
  std::memcpy(dst, (const void *)(uintptr_t)src, n);
  return CUDA_SUCCESS;
}
API CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, void *stream) {
  if (!device_range_ok(src, n)) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult e = refuse_in_capture(stream, "a copy to the host")) return e;
  std::memcpy(dst, (const void *)(uintptr_t)src, n);
  return CUDA_SUCCESS;
}
API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
  if (!device_range_ok(dst, n) || !device_range_ok(src, n)) return CUDA_ERROR_INVALID_VALUE;
  std::memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
  return CUDA_SUCCESS;
}
API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void *stream) {
  if (!device_range_ok(dst, n) || !device_range_ok(src, n)) return CUDA_ERROR_INVALID_VALUE;
  return copy_async(dst, (const void *)(uintptr_t)src, n, stream, false);
}
API CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
  if (!device_range_ok(dst, n)) return CUDA_ERROR_INVALID_VALUE;
  std::memset((void *)(uintptr_t)dst, v, n);
  return CUDA_SUCCESS;
}
API CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, void *stream) {
  if (!device_range_ok(dst, n)) return CUDA_ERROR_INVALID_VALUE;
  Stream *s = stream_of(stream);
  if (s->capturing) {
    Node node{Node::Set};
    node.dst = dst;
    node.bytes = n;
    node.value = v;
    s->graph->nodes.push_back(std::move(node));
    return CUDA_SUCCESS;
  }
  std::memset((void *)(uintptr_t)dst, v, n);
  return CUDA_SUCCESS;
}

// Streams.
API CUresult cuStreamCreate(void **s, unsigned) {
  *s = new Stream();
  return CUDA_SUCCESS;
}
API CUresult cuStreamCreateWithPriority(void **s, unsigned flags, int) { return cuStreamCreate(s, flags); }
API CUresult cuStreamDestroy_v2(void *s) {
  if (s) delete static_cast<Stream *>(s);
  return CUDA_SUCCESS;
}
API CUresult cuStreamSynchronize(void *stream) { return refuse_in_capture(stream, "a stream synchronisation"); }
API CUresult cuStreamQuery(void *) { return CUDA_SUCCESS; }
API CUresult cuStreamWaitEvent(void *, void *, unsigned) { return CUDA_SUCCESS; }
API CUresult cuStreamBeginCapture_v2(void *stream, int) {
  Stream *s = stream_of(stream);
  if (s->capturing) return CUDA_ERROR_INVALID_VALUE;
  s->capturing = true;
  s->graph = new Graph();
  return CUDA_SUCCESS;
}
API CUresult cuStreamEndCapture(void *stream, void **graph) {
  Stream *s = stream_of(stream);
  if (!s->capturing) return CUDA_ERROR_INVALID_VALUE;
  s->capturing = false;
  *graph = s->graph;
  s->graph = nullptr;
  return CUDA_SUCCESS;
}
API CUresult cuStreamIsCapturing(void *stream, int *status) {
  *status = stream_of(stream)->capturing ? 1 : 0;
  return CUDA_SUCCESS;
}
API CUresult cuGraphInstantiateWithFlags(void **exec, void *graph, unsigned long long) {
  *exec = new Graph(*static_cast<Graph *>(graph));
  return CUDA_SUCCESS;
}
API CUresult cuGraphUpload(void *, void *) { return CUDA_SUCCESS; }
API CUresult cuGraphLaunch(void *exec, void *stream) {
  if (stream_of(stream)->capturing) return CUDA_ERROR_NOT_SUPPORTED;
  for (const Node &n : static_cast<Graph *>(exec)->nodes)
    if (CUresult e = run_node(n)) return e;
  return CUDA_SUCCESS;
}
API CUresult cuGraphExecDestroy(void *exec) {
  delete static_cast<Graph *>(exec);
  return CUDA_SUCCESS;
}
API CUresult cuGraphDestroy(void *graph) {
  delete static_cast<Graph *>(graph);
  return CUDA_SUCCESS;
}

// Events: recorded when the stream reaches them, which is at once.
API CUresult cuEventCreate(void **e, unsigned) {
  *e = new Event();
  return CUDA_SUCCESS;
}
API CUresult cuEventDestroy_v2(void *e) {
  delete static_cast<Event *>(e);
  return CUDA_SUCCESS;
}
API CUresult cuEventRecord(void *e, void *) {
  static_cast<Event *>(e)->ms = now_ms();
  return CUDA_SUCCESS;
}
API CUresult cuEventSynchronize(void *) { return CUDA_SUCCESS; }
API CUresult cuEventQuery(void *) { return CUDA_SUCCESS; }
API CUresult cuEventElapsedTime(float *ms, void *start, void *end) {
  *ms = (float)(static_cast<Event *>(end)->ms - static_cast<Event *>(start)->ms);
  return CUDA_SUCCESS;
}
API CUresult cuEventElapsedTime_v2(float *ms, void *start, void *end) { return cuEventElapsedTime(ms, start, end); }

// Modules: any image loads as "the kernels" (the emulator runs its own build of the same source).
API CUresult cuModuleLoadData(void **m, const void *) {
  *m = &g_module_token;
  return CUDA_SUCCESS;
}
API CUresult cuModuleLoadDataEx(void **m, const void *image, unsigned, void *, void *) {
  return cuModuleLoadData(m, image);
}
API CUresult cuModuleUnload(void *) { return CUDA_SUCCESS; }
API CUresult cuModuleGetFunction(void **f, void *, const char *name) {
  for (int i = 0; i < g_kernel_count; ++i) {
    if (!std::strcmp(g_kernels[i].name, name)) {
      Function *fn = new Function();
      fn->entry = &g_kernels[i];
      *f = fn;
      return CUDA_SUCCESS;
    }
  }
  report("no kernel named %s", name);
  return CUDA_ERROR_NOT_FOUND;
}
API CUresult cuFuncSetAttribute(void *f, int attr, int value) {
  Function *fn = static_cast<Function *>(f);
  if (attr == 8) {  // MAX_DYNAMIC_SHARED_SIZE_BYTES
    if (value < 0 || value > shared_optin()) return CUDA_ERROR_INVALID_VALUE;
    fn->max_dynamic_shared = value;
  } else if (attr == 14) {  // NON_PORTABLE_CLUSTER_SIZE_ALLOWED
    if (!has_clusters()) return CUDA_ERROR_NOT_SUPPORTED;
    fn->non_portable_cluster = value != 0;
  }
  return CUDA_SUCCESS;
}
API CUresult cuFuncGetAttribute(int *v, int attr, void *f) {
  Function *fn = static_cast<Function *>(f);
  switch (attr) {
    case 0: *v = 1024; break;  // MAX_THREADS_PER_BLOCK
    case 5: case 6: *v = compute_capability(); break;  // PTX_VERSION, BINARY_VERSION: built for the device
    case 8: *v = fn->max_dynamic_shared; break;
    case 14: *v = fn->non_portable_cluster; break;
    default: *v = 0; break;
  }
  return CUDA_SUCCESS;
}
API CUresult cuFuncSetCacheConfig(void *, int) { return CUDA_SUCCESS; }

API CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                            unsigned shared, void *stream, void **params, void **extra) {
  Function *fn = static_cast<Function *>(f);
  if (extra) {
    report("%s: cuLaunchKernel's `extra` is not emulated", fn->entry->name);
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  Stream *s = stream_of(stream);
  if (s->capturing) {
    Node node{Node::Kernel};
    node.fn = fn;
    node.grid[0] = gx, node.grid[1] = gy, node.grid[2] = gz;
    node.block[0] = bx, node.block[1] = by, node.block[2] = bz;
    node.shared = shared;
    for (int i = 0; i < fn->entry->num_params; ++i) {
      const char *p = static_cast<const char *>(params[i]);
      node.args.emplace_back(p, p + fn->entry->param_sizes[i]);
    }
    s->graph->nodes.push_back(std::move(node));
    return CUDA_SUCCESS;
  }
  return run_kernel(fn, gx, gy, gz, bx, by, bz, shared, params);
}

// cuLaunchKernelEx's configuration (ABI-compatible with cuda.h's CUlaunchConfig/CUlaunchAttribute).
struct LaunchAttribute {
  int id;
  char pad[4];
  union {
    char bytes[64];
    struct {
      unsigned x, y, z;
    } cluster_dim;
    int cooperative;
  } value;
};
struct LaunchConfig {
  unsigned grid[3], block[3], shared;
  void *stream;
  LaunchAttribute *attrs;
  unsigned num_attrs;
};
enum : int { kLaunchAttributeIgnore = 0, kLaunchAttributeCooperative = 2, kLaunchAttributeClusterDimension = 4 };

// The cluster dimension and cooperative launch are the attributes emulated (the others change
// scheduling, not results, but are refused so that a new one is noticed).
API CUresult cuLaunchKernelEx(const LaunchConfig *cfg, void *f, void **params, void **extra) {
  Function *fn = static_cast<Function *>(f);
  if (extra) {
    report("%s: cuLaunchKernelEx's `extra` is not emulated", fn->entry->name);
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  unsigned cluster[3] = {1, 1, 1};
  bool cooperative = false;
  for (unsigned i = 0; i < cfg->num_attrs; ++i) {
    const LaunchAttribute &a = cfg->attrs[i];
    if (a.id == kLaunchAttributeIgnore) continue;
    if (a.id == kLaunchAttributeCooperative) {
      cooperative = a.value.cooperative != 0;
      continue;
    }
    if (a.id != kLaunchAttributeClusterDimension) {
      report("%s: launch attribute %d is not emulated", fn->entry->name, a.id);
      return CUDA_ERROR_NOT_SUPPORTED;
    }
    cluster[0] = a.value.cluster_dim.x;
    cluster[1] = a.value.cluster_dim.y;
    cluster[2] = a.value.cluster_dim.z;
  }
  Stream *s = stream_of(cfg->stream);
  if (s->capturing) {
    Node node{Node::Kernel};
    node.fn = fn;
    for (int d = 0; d < 3; ++d) {
      node.grid[d] = cfg->grid[d];
      node.block[d] = cfg->block[d];
      node.cluster[d] = cluster[d];
    }
    node.cooperative = cooperative;
    node.shared = cfg->shared;
    for (int i = 0; i < fn->entry->num_params; ++i) {
      const char *p = static_cast<const char *>(params[i]);
      node.args.emplace_back(p, p + fn->entry->param_sizes[i]);
    }
    s->graph->nodes.push_back(std::move(node));
    return CUDA_SUCCESS;
  }
  return run_kernel(fn, cfg->grid[0], cfg->grid[1], cfg->grid[2], cfg->block[0], cfg->block[1], cfg->block[2],
                    cfg->shared, params, cluster, cooperative);
}

// Blocks of this shape one SM holds at once (threads and dynamic shared memory only).
API CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *blocks, void *f, int threads, size_t shared,
                                                                   unsigned) {
  Function *fn = static_cast<Function *>(f);
  *blocks = threads < 1 || threads > 1024 || (int)shared > fn->max_dynamic_shared ? 0 : blocks_per_sm(threads, shared);
  return CUDA_SUCCESS;
}
API CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *blocks, void *f, int threads, size_t shared) {
  return cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(blocks, f, threads, shared, 0);
}

// How many clusters of this shape fit on the device at once: the emulator has no GPCs, so every
// SM can hold one block of each (the shape's shared memory must fit one SM).
API CUresult cuOccupancyMaxActiveClusters(int *clusters, void *f, const LaunchConfig *cfg) {
  Function *fn = static_cast<Function *>(f);
  unsigned size = 1;
  for (unsigned i = 0; i < cfg->num_attrs; ++i)
    if (cfg->attrs[i].id == kLaunchAttributeClusterDimension)
      size = cfg->attrs[i].value.cluster_dim.x * cfg->attrs[i].value.cluster_dim.y * cfg->attrs[i].value.cluster_dim.z;
  const unsigned limit = fn->non_portable_cluster ? kMaxCluster : kPortableCluster;
  const bool fits = has_clusters() && size >= 1 && size <= limit && (int)cfg->shared <= fn->max_dynamic_shared;
  *clusters = fits ? sm_count() / (int)size : 0;
  return CUDA_SUCCESS;
}
