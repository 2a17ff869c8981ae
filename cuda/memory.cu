// Caching device allocator and pinned host staging.
//
// Blocks are rounded up to size classes (four per power of two, at least 512 bytes, so at most
// 25% is wasted) and kept on per-class free lists when freed: a training step after the first
// allocates without cudaMalloc, whose implicit device synchronisation would stall the stream.
// When cudaMalloc fails the cache is released once and the allocation retried before raising.
#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>

#include "common.cuh"

namespace pe {

namespace {

struct Allocator {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_lists;
  int64_t allocated = 0, peak = 0, reserved = 0;

  static size_t size_class(size_t bytes) {
    if (bytes <= 512) return 512;
    size_t pow2 = 512;
    while (pow2 * 2 < bytes) pow2 *= 2;
    const size_t quarter = pow2 / 4;
    return (bytes + quarter - 1) / quarter * quarter;
  }

  void release_cache_locked() {
    for (auto& kv : free_lists)
      for (void* p : kv.second) {
        cudaFree(p);
        reserved -= static_cast<int64_t>(kv.first);
      }
    free_lists.clear();
  }

  void* alloc(size_t bytes) {
    const size_t cls = size_class(bytes);
    std::lock_guard<std::mutex> lock(mu);
    void* p = nullptr;
    auto it = free_lists.find(cls);
    if (it != free_lists.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
    } else {
      cudaError_t err = cudaMalloc(&p, cls);
      if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();  // clear the sticky-free error before retrying
        release_cache_locked();
        err = cudaMalloc(&p, cls);
      }
      if (err != cudaSuccess) {
        cudaGetLastError();
        if (err != cudaErrorMemoryAllocation)
          throw std::runtime_error(cat_str("CUDA error in cudaMalloc: ", cudaGetErrorString(err)));
        throw OutOfMemory(cat_str("CUDA out of memory: tried to allocate ", cls, " bytes (",
                                  allocated, " bytes allocated, ", reserved,
                                  " reserved by pyengine): ", cudaGetErrorString(err)));
      }
      reserved += static_cast<int64_t>(cls);
    }
    allocated += static_cast<int64_t>(cls);
    if (allocated > peak) peak = allocated;
    return p;
  }

  void free(void* p, size_t bytes) {
    const size_t cls = size_class(bytes);
    std::lock_guard<std::mutex> lock(mu);
    free_lists[cls].push_back(p);
    allocated -= static_cast<int64_t>(cls);
  }
};

// Never destroyed: arrays still alive at interpreter exit must not touch a dead allocator, and
// the driver reclaims device memory when the process ends.
Allocator& allocator() {
  static Allocator* a = new Allocator();
  return *a;
}

}  // namespace

void* device_alloc(size_t bytes) {
  void* p = allocator().alloc(bytes);
#ifdef PE_CUDA_EMULATOR
  pe_emu::note_alloc(p, bytes);  // the emulator guards the rest of the size-class block
#endif
  return p;
}
void device_free(void* p, size_t bytes) {
#ifdef PE_CUDA_EMULATOR
  pe_emu::note_free(p);  // and makes a cached block fault until it is handed out again
#endif
  allocator().free(p, bytes);
}

void empty_cache() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  a.release_cache_locked();
}

int64_t memory_allocated() { return allocator().allocated; }
int64_t max_memory_allocated() { return allocator().peak; }
int64_t memory_reserved() { return allocator().reserved; }
void reset_peak_memory_stats() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  a.peak = a.allocated;
}

float* workspace(size_t floats) {
  static std::shared_ptr<Storage> ws;
  const size_t bytes = floats * sizeof(float);
  if (!ws || ws->bytes < bytes) {
    ws.reset();  // return the old block first so a retry can reuse it
    ws = std::make_shared<Storage>(bytes);
  }
  return static_cast<float*>(ws->ptr);
}

Storage::Storage(size_t n) : bytes(n) {
  if (n) ptr = device_alloc(n);
}
Storage::~Storage() {
  if (ptr) device_free(ptr, bytes);
}

// ---------------------------------------------------------------- pinned staging
// Two pinned chunks used alternately: the CPU fills (or drains) one while the copy engine moves
// the other, so pageable NumPy memory never goes through the driver's slower bounce path.
namespace {

constexpr size_t kChunk = size_t(4) << 20;

struct Staging {
  void* buf[2] = {nullptr, nullptr};
  cudaEvent_t done[2];
  std::mutex mu;
  void init() {
    if (buf[0]) return;
    for (int i = 0; i < 2; ++i) {
      PE_CUDA(cudaMallocHost(&buf[i], kChunk), "cudaMallocHost (pinned staging)");
      PE_CUDA(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming), "cudaEventCreate");
    }
  }
};

Staging& staging() {
  static Staging* s = new Staging();
  return *s;
}

}  // namespace

void copy_to_device(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mu);
  s.init();
  int b = 0;
  for (size_t off = 0; off < bytes; off += kChunk, b ^= 1) {
    const size_t n = std::min(kChunk, bytes - off);
    PE_CUDA(cudaEventSynchronize(s.done[b]), "host-to-device copy");
    std::memcpy(s.buf[b], static_cast<const char*>(src) + off, n);
    PE_CUDA(cudaMemcpyAsync(static_cast<char*>(dst) + off, s.buf[b], n, cudaMemcpyHostToDevice, 0),
            "host-to-device copy");
    PE_CUDA(cudaEventRecord(s.done[b], 0), "host-to-device copy");
  }
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mu);
  s.init();
  const size_t nchunks = (bytes + kChunk - 1) / kChunk;
  auto issue = [&](size_t c) {
    const size_t off = c * kChunk, n = std::min(kChunk, bytes - off);
    PE_CUDA(cudaMemcpyAsync(s.buf[c & 1], static_cast<const char*>(src) + off, n,
                            cudaMemcpyDeviceToHost, 0),
            "device-to-host copy");
    PE_CUDA(cudaEventRecord(s.done[c & 1], 0), "device-to-host copy");
  };
  issue(0);
  for (size_t c = 0; c < nchunks; ++c) {
    if (c + 1 < nchunks) issue(c + 1);
    const size_t off = c * kChunk, n = std::min(kChunk, bytes - off);
    PE_CUDA(cudaEventSynchronize(s.done[c & 1]), "device-to-host copy");
    std::memcpy(static_cast<char*>(dst) + off, s.buf[c & 1], n);
  }
}

}  // namespace pe
