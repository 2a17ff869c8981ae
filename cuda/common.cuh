// Shared pieces of the CUDA kernels: the device array type, the caching allocator's interface,
// error checks that raise Python exceptions, and argument checks mirroring csrc/common.h.
// Every kernel runs on the legacy default stream, so freed blocks can be reused by the next
// launch without events (stream order), as in PyTorch's caching allocator on one stream.
#pragma once

#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../csrc/check.h"
#include "index.cuh"

namespace py = pybind11;

namespace pe {

// A failed CUDA call becomes RuntimeError naming what was running.
#define PE_CUDA(call, what)                                                                   \
  do {                                                                                        \
    cudaError_t err_ = (call);                                                                \
    if (err_ != cudaSuccess)                                                                  \
      throw std::runtime_error(pe::cat_str("CUDA error in ", what, ": ", cudaGetErrorString(err_))); \
  } while (0)

// Every launch is written PE_LAUNCH(grid, block, shared_bytes, kernel)(args...), which is
// kernel<<<grid, block, shared_bytes>>>(args...) under nvcc; the CPU emulator of CI
// (cuda/emulator/cuda_emu.h) defines it as a call into its scheduler instead.
#ifndef PE_CUDA_EMULATOR
#define PE_LAUNCH(grid, block, smem, ...) __VA_ARGS__<<<grid, block, smem>>>
#endif

// After every launch: a bad configuration or an earlier asynchronous fault surfaces here.
#define PE_LAUNCHED(name) PE_CUDA(cudaGetLastError(), name)

// ---------------------------------------------------------------- caching allocator
struct OutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void* device_alloc(size_t bytes);        // from a size-class free list, or cudaMalloc
void device_free(void* p, size_t bytes);  // back to its free list (never cudaFree)
void empty_cache();
int64_t memory_allocated();
int64_t max_memory_allocated();
int64_t memory_reserved();
void reset_peak_memory_stats();

// Host <-> device copies through pinned staging chunks (the host side may be pageable).
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);

// Scratch for kernels that need a workspace (split reductions, im2col): one growing block.
float* workspace(size_t floats);

// ---------------------------------------------------------------- device arrays
enum class DType : int { F32 = 0, F64, I64, I32, U8, Bool };

size_t itemsize(DType dt);
const char* dtype_name(DType dt);

struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  Storage(size_t n);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

// A C-contiguous n-d array in device memory; views (reshape, first-dim index) share storage.
struct Array {
  std::shared_ptr<Storage> storage;
  size_t offset = 0;  // bytes into storage
  Shape shape;
  DType dtype = DType::F32;

  static Array empty(const Shape& shape, DType dt);
  int64_t size() const;
  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
  size_t nbytes() const { return static_cast<size_t>(size()) * itemsize(dtype); }
  void* data() const { return storage ? static_cast<char*>(storage->ptr) + offset : nullptr; }
  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data());
  }
};

inline const Shape& shape_of(const Array& a) { return a.shape; }

inline const float* in_ptr(const Array& a, const char* name) {
  PE_CHECK(a.dtype == DType::F32, name, " must be float32, got dtype ", dtype_name(a.dtype));
  return a.ptr<float>();
}
inline float* out_ptr(Array& a, const char* name) {
  PE_CHECK(a.dtype == DType::F32, name, " must be float32, got dtype ", dtype_name(a.dtype));
  return a.ptr<float>();
}
inline const int64_t* idx_in_ptr(const Array& a, const char* name) {
  PE_CHECK(a.dtype == DType::I64, name, " must be int64, got dtype ", dtype_name(a.dtype));
  return a.ptr<int64_t>();
}
inline int64_t* idx_ptr(Array& a, const char* name) {
  PE_CHECK(a.dtype == DType::I64, name, " must be int64, got dtype ", dtype_name(a.dtype));
  return a.ptr<int64_t>();
}
inline void check_shape(const Array& a, const Shape& want, const char* name) {
  PE_CHECK(a.shape == want, name, " has shape ", shape_str(a.shape), ", expected ",
           shape_str(want));
}
inline void check_ndim(const Array& a, int64_t nd, const char* name) {
  PE_CHECK(a.ndim() == nd, name, " must be ", nd, "-D, got shape ", shape_str(a.shape));
}
inline void check_same_size(const Array& a, const Array& b, const char* na, const char* nb) {
  PE_CHECK(a.size() == b.size(), na, " ", shape_str(a.shape), " and ", nb, " ",
           shape_str(b.shape), " must have the same number of elements");
}

// Raises ValueError unless every element of the int64 array is in [0, limit) (synchronises).
void check_index_range(const Array& index, int64_t limit, const char* what);

inline unsigned grid1d(int64_t n) { return static_cast<unsigned>(idx::blocks_for(n)); }

// Warp and block sums/maxima with shuffles (blockDim.x a multiple of 32, at most 1024).
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Result valid in every thread (each warp reduces the warp totals again); `sh` holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float* sh) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  v = lane < int(blockDim.x >> 5) ? sh[lane] : 0.f;
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* sh) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  v = lane < int(blockDim.x >> 5) ? sh[lane] : -INFINITY;
  return warp_max(v);
}

}  // namespace pe

void bind_array(py::module_& m);
void bind_elementwise(py::module_& m);
void bind_reduce(py::module_& m);
void bind_gemm(py::module_& m);
void bind_optim(py::module_& m);
void bind_norm(py::module_& m);
void bind_conv(py::module_& m);
void bind_pool(py::module_& m);
void bind_resample(py::module_& m);
