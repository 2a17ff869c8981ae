// The emulator's scheduler (one fiber per thread of a block, switched at barriers and shuffles),
// its device memory (host pages between guard pages, poisoned outside what was requested) and
// the CUDA runtime calls cuda/*.cu make. See cuda_emu.h for the model.
#include "cuda_emu.h"

#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "emu_control.h"

// Bounds of every kernel's __shared__ variables (cuda_emu.h puts them in this section).
extern "C" char __start_pe_emu_shared[] __attribute__((weak));
extern "C" char __stop_pe_emu_shared[] __attribute__((weak));

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace pe_emu {
namespace {

template <typename... A>
std::string cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

// ---------------------------------------------------------------- errors
cudaError_t g_last = cudaSuccess;  // what cudaGetLastError returns (and clears)
cudaError_t g_detail_code = cudaSuccess;
std::string g_detail;  // what the emulator knows about the latest error

cudaError_t fail_with(cudaError_t e, std::string detail) {
  g_last = e;
  g_detail_code = e;
  g_detail = std::move(detail);
  return e;
}

const char* base_string(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unrecognized error code";
}

// ---------------------------------------------------------------- device memory
const size_t kPage = size_t(sysconf(_SC_PAGESIZE));
size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Raw: straight from cudaMalloc; Live: handed out by the caching allocator (`req` bytes at
// `user` are the array); Cached: back on a free list, inaccessible until handed out again.
enum class Use { Raw, Live, Cached };
struct Region {
  char* map;
  size_t map_bytes;
  char* lo;  // readable/writable pages [lo, hi), guard pages either side
  char* hi;
  char* user;  // what cudaMalloc returned, 256-byte aligned, ending as close to hi as it can
  size_t bytes;
  size_t req;
  Use use;
};
std::map<uintptr_t, Region> g_regions;  // by user pointer
size_t g_used = 0, g_limit = size_t(16) << 30;
int g_fail_next = 0;
Stats g_stats;

const Region* region_of(const void* p) {
  auto it = g_regions.upper_bound(reinterpret_cast<uintptr_t>(p));
  if (it == g_regions.begin()) return nullptr;
  --it;
  const Region& r = it->second;
  const char* c = static_cast<const char*>(p);
  return c >= r.map && c < r.map + r.map_bytes ? &r : nullptr;
}
size_t extent(const Region& r) {
  return r.use == Use::Live ? r.req : (r.use == Use::Raw ? r.bytes : 0);
}

void poison(char* p, size_t n) { std::memset(p, 0xFF, n); }

// Offset of the first byte in [p, p + n) that is not poison, or n.
size_t first_unpoisoned(const char* p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w != ~uint64_t(0)) break;
  }
  for (; i < n; ++i)
    if (static_cast<unsigned char>(p[i]) != 0xFF) return i;
  return n;
}

std::string describe(const void* addr) {
  auto it = g_regions.upper_bound(reinterpret_cast<uintptr_t>(addr));
  if (it == g_regions.begin()) return cat("address ", addr, " is below all emulated device memory");
  const Region& r = std::prev(it)->second;  // the nearest allocation at or below addr
  const char* a = static_cast<const char*>(addr);
  const size_t ext = extent(r);
  if (r.use == Use::Cached && a < r.hi)
    return cat("address ", addr, " is inside a freed ", r.bytes, "-byte block (use after free)");
  if (a < r.user)
    return cat("address ", addr, " is ", r.user - a, " bytes before a ", ext, "-byte allocation");
  return cat("address ", addr, " is ", a - (r.user + ext), " bytes past the end of a ", ext,
             "-byte allocation");
}

// A live allocation whose poisoned margins a kernel wrote: the bytes nearest the array, where an
// off-by-a-few lands (bounded, so every launch stays cheap).
std::string check_margins() {
  constexpr size_t kWindow = 4096;
  for (auto& kv : g_regions) {
    const Region& r = kv.second;
    if (r.use != Use::Live) continue;
    const size_t front = std::min<size_t>(kWindow, r.user - r.lo);
    const size_t f = first_unpoisoned(r.user - front, front);
    if (f < front) {
      poison(r.user - front, front);  // report once
      return cat("a kernel wrote ", front - f, " bytes before the start of a ", r.req,
                 "-byte allocation");
    }
    char* end = r.user + r.req;
    const size_t back = std::min<size_t>(kWindow, size_t(r.hi - end));
    const size_t b = first_unpoisoned(end, back);
    if (b < back) {
      poison(end, back);  // report once
      return cat("a kernel wrote ", b, " bytes past the end of a ", r.req, "-byte allocation");
    }
  }
  return {};
}

// [p, p + n) must lie inside one allocation's requested bytes.
bool device_range(const void* p, size_t n, const char* what, std::string& why) {
  const Region* r = region_of(p);
  const char* c = static_cast<const char*>(p);
  const size_t ext = r ? extent(*r) : 0;
  if (r && c >= r->user && c + n <= r->user + ext) return true;
  if (!r || r->use == Use::Cached)
    why = cat(what, " of ", n, " bytes at ", p, ": ", describe(p));
  else if (c < r->user)
    why = cat(what, " of ", n, " bytes starts ", r->user - c, " bytes before a ", ext,
              "-byte allocation");
  else
    why = cat(what, " of ", n, " bytes runs ", (c + n) - (r->user + ext),
              " bytes past the end of a ", ext, "-byte allocation");
  return false;
}

// ---------------------------------------------------------------- fibers
#if defined(__x86_64__)
// Saves the callee-saved registers and the FP control words on the current stack, stores the
// stack pointer in *save, and resumes the stack at `to` (a system call-free swapcontext).
extern "C" void pe_emu_switch(void** save, void* to);
asm(R"(
  .text
  .p2align 4
  .type pe_emu_switch,@function
pe_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size pe_emu_switch, .-pe_emu_switch
)");
#else
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

constexpr size_t kStack = size_t(256) << 10;

enum class St : uint8_t { Ready, Running, WaitBlock, WaitWarp, Idle };
struct Fiber {
  void* sp = nullptr;
  char* map = nullptr;  // guard page, then the stack
  int tid = -1;
  St st = St::Idle;
};

struct Sched {
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  const char* name = "";
  int n = 0, next = 0, live = 0, arrived = 0;
  std::vector<int> warp_live, warp_arrived, warp_phase;
  std::vector<uint64_t> slots;  // [warp][phase][lane]
  std::vector<Fiber*> active;
  Fiber* cur = nullptr;
  void* host_sp = nullptr;
  bool failed = false;
};
Sched S;
std::vector<Fiber*> g_pool;

void set_thread(int tid) {
  threadIdx.x = unsigned(tid) % blockDim.x;
  threadIdx.y = (unsigned(tid) / blockDim.x) % blockDim.y;
  threadIdx.z = unsigned(tid) / (blockDim.x * blockDim.y);
}

std::string where() {
  return cat(S.name, ", block (", blockIdx.x, ", ", blockIdx.y, ", ", blockIdx.z, ")",
             S.cur && S.cur->tid >= 0
                 ? cat(", thread (", threadIdx.x, ", ", threadIdx.y, ", ", threadIdx.z, ")")
                 : std::string());
}

// From a fiber: record the error and leave the launch for good.
[[noreturn]] void abort_launch(cudaError_t e, const std::string& what) {
  fail_with(e, cat(what, " [", where(), "]"));
  S.failed = true;
  pe_emu_switch(&S.cur->sp, S.host_sp);
  std::abort();  // never resumed
}

void suspend(St st) {
  Fiber* f = S.cur;
  f->st = st;
  ++g_stats.switches;
  pe_emu_switch(&f->sp, S.host_sp);
  f->st = St::Running;
  set_thread(f->tid);
}

void release(St waiting, int warp) {
  for (Fiber* f : S.active)
    if (f->st == waiting && (warp < 0 || f->tid >> 5 == warp)) f->st = St::Ready;
}

void thread_exit(int tid) {
  --S.live;
  const int w = tid >> 5;
  --S.warp_live[w];
  if (S.warp_arrived[w] > 0)
    abort_launch(cudaErrorLaunchFailure,
                 "a thread exited while other lanes of its warp wait for it in __shfl_sync");
  if (S.arrived > 0 && S.arrived == S.live) {
    S.arrived = 0;
    release(St::WaitBlock, -1);
  }
}

[[noreturn]] void fiber_main() {
  for (;;) {
    Fiber* f = S.cur;
    while (S.next < S.n) {
      f->tid = S.next++;
      f->st = St::Running;
      set_thread(f->tid);
      S.body(S.ctx);
      thread_exit(f->tid);
    }
    f->st = St::Idle;
    f->tid = -1;
    pe_emu_switch(&f->sp, S.host_sp);
  }
}

// A fresh start for fiber i of the pool: a stack that `ret`s into fiber_main.
Fiber* fresh_fiber(size_t i) {
  while (g_pool.size() <= i) {
    auto* f = new Fiber;
    void* m = mmap(nullptr, kStack + kPage, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    mprotect(m, kPage, PROT_NONE);  // overflow faults instead of corrupting a neighbour
    f->map = static_cast<char*>(m);
    g_pool.push_back(f);
  }
  Fiber* f = g_pool[i];
  auto* top = reinterpret_cast<uint64_t*>(f->map + kPage + kStack);
  uint32_t csr[2] = {0, 0};
  asm volatile("stmxcsr %0" : "=m"(csr[0]));
  asm volatile("fnstcw %0" : "=m"(csr[1]));
  top[-2] = reinterpret_cast<uint64_t>(&fiber_main);  // 16-byte aligned return slot
  for (int k = 3; k <= 8; ++k) top[-k] = 0;           // rbp rbx r12 r13 r14 r15
  std::memcpy(&top[-9], csr, 8);
  f->sp = &top[-9];
  f->tid = -1;
  f->st = St::Ready;
  return f;
}

void run_block() {
  S.next = 0;
  S.live = S.n;
  S.arrived = 0;
  const int warps = (S.n + 31) / 32;
  S.warp_live.assign(warps, 32);
  S.warp_live.back() = S.n - 32 * (warps - 1);
  S.warp_arrived.assign(warps, 0);
  S.warp_phase.assign(warps, 0);
  S.slots.assign(size_t(warps) * 64, 0);
  S.active.clear();
  if (__start_pe_emu_shared)
    poison(__start_pe_emu_shared, size_t(__stop_pe_emu_shared - __start_pe_emu_shared));
  size_t rr = 0;
  for (;;) {
    Fiber* f = nullptr;
    for (size_t k = 0; k < S.active.size() && !f; ++k) {
      const size_t i = (rr + k) % S.active.size();
      if (S.active[i]->st == St::Ready) {
        f = S.active[i];
        rr = i + 1;
      }
    }
    if (!f) {
      if (S.next >= S.n) {
        int waiting = 0;
        for (Fiber* a : S.active) waiting += a->st != St::Idle;
        if (waiting)
          fail_with(cudaErrorLaunchFailure,
                    cat("deadlock: ", S.arrived, " of ", S.live,
                        " live threads wait at __syncthreads while the others wait in a warp "
                        "shuffle [",
                        where(), "]"));
        S.failed = waiting > 0;
        return;
      }
      f = fresh_fiber(S.active.size());
      S.active.push_back(f);
      rr = S.active.size();
    }
    S.cur = f;
    if (f->tid >= 0) set_thread(f->tid);
    ++g_stats.switches;
    pe_emu_switch(&S.host_sp, f->sp);
    if (S.failed) return;
  }
}

// ---------------------------------------------------------------- faults inside kernels
sigjmp_buf g_jmp;
volatile sig_atomic_t g_in_kernel = 0;
void* volatile g_fault_addr = nullptr;
struct sigaction g_old_segv, g_old_bus;

void on_fault(int sig, siginfo_t* si, void*) {
  if (g_in_kernel) {
    g_in_kernel = 0;
    g_fault_addr = si->si_addr;
    siglongjmp(g_jmp, 1);
  }
  // Not an emulated kernel's fault: hand it to whoever handled it before (faulthandler, core).
  sigaction(sig, sig == SIGSEGV ? &g_old_segv : &g_old_bus, nullptr);
}

void install_fault_handler() {
  static bool done = false;
  if (done) return;
  done = true;
  stack_t ss;
  if (sigaltstack(nullptr, &ss) == 0 && (ss.ss_flags & SS_DISABLE)) {
    ss.ss_size = size_t(64) << 10;
    ss.ss_sp = std::malloc(ss.ss_size);
    ss.ss_flags = 0;
    sigaltstack(&ss, nullptr);
  }
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_old_segv);
  sigaction(SIGBUS, &sa, &g_old_bus);
}

std::string fault_text(const void* addr) {
  for (Fiber* f : g_pool)
    if (static_cast<const char*>(addr) >= f->map && static_cast<const char*>(addr) < f->map + kPage)
      return "stack overflow of an emulated thread";
  return describe(addr);
}

std::mutex g_mu;

}  // namespace

// ---------------------------------------------------------------- device-side entry points
void block_barrier() {
  ++g_stats.barriers;
  if (++S.arrived == S.live) {
    S.arrived = 0;
    release(St::WaitBlock, -1);
    return;
  }
  suspend(St::WaitBlock);
}

int lane_id() { return S.cur->tid & 31; }

void warp_exchange(unsigned mask, const void* in, void* out, int bytes, int src) {
  const int tid = S.cur->tid, w = tid >> 5, lane = tid & 31;
  const int lanes = std::min(32, S.n - 32 * w);
  const unsigned full = lanes == 32 ? ~0u : (1u << lanes) - 1;
  if ((mask & full) != full)
    abort_launch(cudaErrorLaunchFailure, cat("__shfl_sync with mask 0x", std::hex, mask,
                                              " (the emulator models whole-warp masks only)"));
  if (S.warp_live[w] != lanes)
    abort_launch(cudaErrorLaunchFailure,
                 "__shfl_sync names all lanes but some lanes of the warp have exited");
  const int ph = S.warp_phase[w];
  uint64_t* slot = &S.slots[size_t(w * 2 + ph) * 32];
  std::memcpy(&slot[lane], in, size_t(bytes));
  ++g_stats.shuffles;
  if (++S.warp_arrived[w] == S.warp_live[w]) {
    S.warp_arrived[w] = 0;
    S.warp_phase[w] ^= 1;
    release(St::WaitWarp, w);
  } else {
    suspend(St::WaitWarp);
  }
  std::memcpy(out, &slot[src >= 0 && src < lanes ? src : lane], size_t(bytes));
}

void launch(dim3 grid, dim3 block, size_t smem, const char* name, void (*body)(void*), void* ctx) {
  std::lock_guard<std::mutex> lock(g_mu);
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
    fail_with(cudaErrorInvalidConfiguration,
              cat(name, ": block (", block.x, ", ", block.y, ", ", block.z,
                  ") must have 1 to 1024 threads, at most (1024, 1024, 64)"));
    return;
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 ||
      grid.z > 65535) {
    fail_with(cudaErrorInvalidConfiguration,
              cat(name, ": grid (", grid.x, ", ", grid.y, ", ", grid.z,
                  ") must be within (2^31 - 1, 65535, 65535) and nonzero"));
    return;
  }
  if (smem > 48 * 1024) {
    fail_with(cudaErrorInvalidValue, cat(name, ": ", smem,
                                         " bytes of dynamic shared memory exceed the 48 KiB "
                                         "default (no cudaFuncSetAttribute opt-in)"));
    return;
  }
  install_fault_handler();
  ++g_stats.launches;
  S.body = body;
  S.ctx = ctx;
  S.name = name;
  S.n = int(threads);
  S.failed = false;
  S.cur = nullptr;
  blockDim = block;
  gridDim = grid;
  if (sigsetjmp(g_jmp, 1) != 0) {
    fail_with(cudaErrorIllegalAddress, cat(fault_text(g_fault_addr), " [", where(), "]"));
    return;
  }
  g_in_kernel = 1;
  for (unsigned z = 0; z < grid.z && !S.failed; ++z)
    for (unsigned y = 0; y < grid.y && !S.failed; ++y)
      for (unsigned x = 0; x < grid.x && !S.failed; ++x) {
        blockIdx = {x, y, z};
        ++g_stats.blocks;
        run_block();
      }
  g_in_kernel = 0;
  if (S.failed) return;
  const std::string bad = check_margins();
  if (!bad.empty()) fail_with(cudaErrorIllegalAddress, cat(bad, " [", name, "]"));
}

void note_alloc(void* p, size_t requested) {
  auto it = g_regions.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_regions.end()) return;
  Region& r = it->second;
  if (r.use == Use::Cached) mprotect(r.lo, size_t(r.hi - r.lo), PROT_READ | PROT_WRITE);
  poison(r.lo, size_t(r.hi - r.lo));  // never-written memory reads as NaN / -1
  r.req = requested;
  r.use = Use::Live;
}

void note_free(void* p) {
  auto it = g_regions.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_regions.end()) return;
  Region& r = it->second;
  r.use = Use::Cached;
  r.req = 0;
  mprotect(r.lo, size_t(r.hi - r.lo), PROT_NONE);  // a kernel touching it now faults
}

void fail_next_mallocs(int n) { g_fail_next = n; }
void set_memory_limit(size_t bytes) { g_limit = bytes; }
size_t shared_bytes() { return size_t(__stop_pe_emu_shared - __start_pe_emu_shared); }
size_t memory_limit() { return g_limit; }
Stats stats() { return g_stats; }

}  // namespace pe_emu

// ---------------------------------------------------------------- runtime API
using namespace pe_emu;

cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  if (g_fail_next > 0) {
    --g_fail_next;
    return fail_with(cudaErrorMemoryAllocation, "emulator: injected allocation failure");
  }
  if (g_used + bytes > g_limit)
    return fail_with(cudaErrorMemoryAllocation,
                     cat("emulator: ", g_used, " of ", g_limit, " bytes in use"));
  const size_t rw = round_up(bytes, kPage), map_bytes = rw + 2 * kPage;
  void* m = mmap(nullptr, map_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return fail_with(cudaErrorMemoryAllocation, "emulator: mmap failed");
  Region r;
  r.map = static_cast<char*>(m);
  r.map_bytes = map_bytes;
  r.lo = r.map + kPage;
  r.hi = r.lo + rw;
  mprotect(r.lo, rw, PROT_READ | PROT_WRITE);
  r.user = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(r.hi - bytes) & ~uintptr_t(255));
  r.bytes = bytes;
  r.req = bytes;
  r.use = Use::Raw;
  poison(r.lo, rw);
  g_regions[reinterpret_cast<uintptr_t>(r.user)] = r;
  g_used += bytes;
  *p = r.user;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  auto it = g_regions.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_regions.end())
    return fail_with(cudaErrorInvalidDevicePointer,
                     "cudaFree of a pointer cudaMalloc did not return");
  munmap(it->second.map, it->second.map_bytes);
  g_used -= it->second.bytes;
  g_regions.erase(it);
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::aligned_alloc(4096, round_up(std::max<size_t>(bytes, 1), 4096));
  return *p ? cudaSuccess : fail_with(cudaErrorMemoryAllocation, "emulator: pinned host memory");
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (!bytes) return cudaSuccess;
  std::string why;
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if ((dst_dev && !device_range(dst, bytes, "cudaMemcpy destination", why)) ||
      (src_dev && !device_range(src, bytes, "cudaMemcpy source", why)))
    return fail_with(cudaErrorInvalidValue, why);
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (!bytes) return cudaSuccess;
  std::string why;
  if (!device_range(p, bytes, "cudaMemset", why)) return fail_with(cudaErrorInvalidValue, why);
  std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  return cudaMemset(p, value, bytes);
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return g_last; }
const char* cudaGetErrorString(cudaError_t err) {
  static thread_local std::string s;
  s = base_string(err);
  if (err == g_detail_code && !g_detail.empty()) s += " (emulator: " + g_detail + ")";
  return s.c_str();
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
  return d == 0 ? cudaSuccess : fail_with(cudaErrorInvalidValue, "one emulated device");
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device != 0) return fail_with(cudaErrorInvalidValue, "one emulated device");
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "pyengine CUDA emulator (CPU)");
  p->totalGlobalMem = g_limit;
  p->sharedMemPerBlock = 48 * 1024;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->warpSize = 32;
  p->multiProcessorCount = 1;
  p->major = 8;
  p->minor = 0;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *total_bytes = g_limit;
  *free_bytes = g_limit > g_used ? g_limit - g_used : 0;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  static char token;
  *e = reinterpret_cast<cudaEvent_t>(&token);  // every call is synchronous: events are no-ops
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
