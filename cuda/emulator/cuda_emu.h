// CPU emulation of the CUDA execution model, so the unmodified kernel bodies of cuda/*.cu compile
// as C++ and run in CI (CMake option PYENGINE_CUDA_EMULATOR; never part of a user's install).
//
// Model, and why it catches the bugs a GPU would show:
// - A grid runs block after block on the calling thread; the threads of one block run as fibers
//   (one stack each) that switch only at __syncthreads and warp shuffles. At a barrier every live
//   thread of the block must arrive before any continues, so a missing __syncthreads lets a
//   thread read shared memory another thread has not written yet, and the result is wrong.
// - __shfl_*_sync exchanges values among the 32 lanes of a warp through the same barrier
//   machinery; a lane that exited, or threads waiting at different barriers, is reported as an
//   error instead of hanging or returning garbage.
// - __shared__ variables are function statics in one linker section: blocks never run at the
//   same time, so one copy serves each block in turn, and the section is poisoned before each
//   block, so a thread reading what no thread of its block wrote yet gets NaN (or -1).
// - Device memory is host memory between guard pages; the caching allocator's request sizes are
//   tracked, bytes outside them are poisoned (0xFF: a NaN as float, -1 as an index) and checked
//   after every launch. A touch of a guard page or a poisoned byte written fails the launch with
//   cudaErrorIllegalAddress, which the launchers raise as RuntimeError, as compute-sanitizer would
//   report on a GPU. New allocations are poisoned too, so a read of memory never written shows.
// - Atomics are plain read-modify-writes: only one emulated thread runs at a time.
// Not emulated (unused by the kernels): dynamic `extern __shared__`, partial-warp shuffle masks,
// cooperative groups, streams other than the legacy default stream (every call is synchronous).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#ifndef PE_CUDA_EMULATOR
#define PE_CUDA_EMULATOR 1
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ __attribute__((section("pe_emu_shared"))) static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

// ---------------------------------------------------------------- built-in types and variables
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __attribute__((aligned(16))) float4 {
  float x, y, z, w;
};
struct __attribute__((aligned(8))) float2 {
  float x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }

// Set by the scheduler before each fiber runs; one emulated thread runs at a time.
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
constexpr int warpSize = 32;

// ---------------------------------------------------------------- intrinsics
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
inline void sincospif(float x, float* s, float* c) {
  // double precision then rounded: CUDA's sincospif is exact at multiples of 1/2, as this is.
  const double r = M_PI * double(x);
  *s = float(std::sin(r));
  *c = float(std::cos(r));
}
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }

template <typename T>
inline T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
template <typename T>
inline T atomicMax(T* p, T v) {
  const T old = *p;
  if (v > old) *p = v;
  return old;
}
template <typename T>
inline T atomicMin(T* p, T v) {
  const T old = *p;
  if (v < old) *p = v;
  return old;
}
template <typename T>
inline T atomicExch(T* p, T v) {
  const T old = *p;
  *p = v;
  return old;
}
template <typename T>
inline T atomicCAS(T* p, T cmp, T v) {
  const T old = *p;
  if (old == cmp) *p = v;
  return old;
}

namespace pe_emu {
void block_barrier();
// Every live lane of the calling thread's warp deposits `bytes` of `in`; after all have, `out`
// receives lane `src`'s deposit (its own when src is outside [0, width) of its segment).
void warp_exchange(unsigned mask, const void* in, void* out, int bytes, int src);
int lane_id();
}  // namespace pe_emu

inline void __syncthreads() { pe_emu::block_barrier(); }

template <typename T>
inline T pe_emu_shfl(unsigned mask, T v, int src) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a big type");
  T out;
  pe_emu::warp_exchange(mask, &v, &out, int(sizeof(T)), src);
  return out;
}
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const int lane = pe_emu::lane_id();
  return pe_emu_shfl(mask, v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = pe_emu::lane_id(), src = lane ^ lane_mask;
  return pe_emu_shfl(mask, v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : lane);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = pe_emu::lane_id(), src = lane + int(delta);
  return pe_emu_shfl(mask, v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : lane);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = pe_emu::lane_id(), src = lane - int(delta);
  return pe_emu_shfl(mask, v, src >= (lane & ~(width - 1)) ? src : lane);
}

// ---------------------------------------------------------------- runtime API (host memory)
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorNoDevice = 100,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
using cudaStream_t = struct CUstream_st*;
using cudaEvent_t = struct CUevent_st*;
constexpr unsigned cudaEventDefault = 0, cudaEventDisableTiming = 2;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem, sharedMemPerBlock;
  int maxThreadsPerBlock, maxThreadsDim[3], maxGridSize[3], warpSize, multiProcessorCount;
  int major, minor;
};

cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t err);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);

// ---------------------------------------------------------------- launches
namespace pe_emu {

// Runs body(ctx) once per thread of the grid; a bad configuration or a fault inside the kernel
// becomes the error that cudaGetLastError() returns next, as after a real launch.
void launch(dim3 grid, dim3 block, size_t smem, const char* name, void (*body)(void*), void* ctx);

// The caching allocator (cuda/memory.cu) reports the bytes it hands out of each cudaMalloc block,
// so the rest of the block can be poisoned and checked.
void note_alloc(void* p, size_t requested);
void note_free(void* p);

template <typename K>
struct Launch {
  dim3 grid, block;
  size_t smem;
  const char* name;
  K kernel;
  template <typename... A>
  void operator()(const A&... a) const {
    // Arguments are copied once here, as a launch copies them into the parameter buffer.
    struct Ctx {
      const K* k;
      std::tuple<A...> args;
    } ctx{&kernel, std::tuple<A...>(a...)};
    launch(grid, block, smem, name,
           [](void* c) {
             auto* x = static_cast<Ctx*>(c);
             std::apply(*x->k, x->args);
           },
           &ctx);
  }
};
template <typename K>
Launch<K> make_launch(dim3 grid, dim3 block, size_t smem, const char* name, K kernel) {
  return {grid, block, smem, name, kernel};
}

}  // namespace pe_emu

// PE_LAUNCH(grid, block, smem, kernel)(args...): `kernel<<<grid, block, smem>>>(args...)` under
// nvcc (cuda/common.cuh); here a call through the emulator. Template arguments are deduced from
// the arguments, as with <<<>>>.
#define PE_LAUNCH(grid, block, smem, ...)                                             \
  ::pe_emu::make_launch(dim3(grid), dim3(block), size_t(smem), #__VA_ARGS__,         \
                        [](auto... pe_emu_args_) { __VA_ARGS__(pe_emu_args_...); })
