// Shared helpers of the CPU kernels: argument checks that raise Python exceptions and
// float32 array views. Every kernel takes its operands as NumPy arrays allocated by the caller
// (inputs first, then outputs, then parameters) and checks them here instead of trusting Python.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include "check.h"

#include <atomic>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace pe {

inline Shape shape_of(const py::array& a) {
  return Shape(a.shape(), a.shape() + a.ndim());
}

inline void check_f32(const py::array& a, const char* name) {
  PE_CHECK(a.dtype().is(py::dtype::of<float>()), name, " must be float32, got dtype ",
           std::string(py::str(a.dtype())));
  PE_CHECK(a.flags() & py::array::c_style, name, " must be C-contiguous (shape ",
           shape_str(shape_of(a)), ")");
}

// pyengine.set_num_threads is process-wide, as in PyTorch, but OpenMP keeps the setting per
// calling thread: out_ptr and idx_ptr (every kernel calls one before its parallel regions) apply
// the process-wide value (0: never set) to the calling thread when it differs.
inline std::atomic<int>& num_threads_setting() {
  static std::atomic<int> n{0};
  return n;
}

inline void apply_num_threads() {
  thread_local int applied = 0;
  const int n = num_threads_setting().load(std::memory_order_relaxed);
  if (n != 0 && n != applied) {
    omp_set_num_threads(n);
    applied = n;
  }
}

// An output must not share memory with an input: the kernels read inputs after writing outputs
// (tiles, accumulations), so aliasing gives wrong results rather than an in-place update.
inline void check_no_overlap(const py::array& out, const py::array& in, const char* on,
                             const char* in_name) {
  const char* o = static_cast<const char*>(out.data());
  const char* i = static_cast<const char*>(in.data());
  const bool overlap = out.nbytes() > 0 && in.nbytes() > 0 && o < i + in.nbytes() &&
                       i < o + out.nbytes();
  PE_CHECK(!overlap, on, " must not share memory with ", in_name);
}

// Read-only float32 operand.
inline const float* in_ptr(const py::array& a, const char* name) {
  check_f32(a, name);
  return static_cast<const float*>(a.data());
}

// Writeable float32 operand.
inline float* out_ptr(py::array& a, const char* name) {
  check_f32(a, name);
  PE_CHECK(a.writeable(), name, " must be writeable");
  apply_num_threads();
  return static_cast<float*>(a.mutable_data());
}

inline int64_t* idx_ptr(py::array& a, const char* name) {
  PE_CHECK(a.dtype().is(py::dtype::of<int64_t>()), name, " must be int64");
  PE_CHECK(a.flags() & py::array::c_style, name, " must be C-contiguous");
  PE_CHECK(a.writeable(), name, " must be writeable");
  apply_num_threads();
  return static_cast<int64_t*>(a.mutable_data());
}

inline const int64_t* idx_in_ptr(const py::array& a, const char* name) {
  PE_CHECK(a.dtype().is(py::dtype::of<int64_t>()), name, " must be int64");
  PE_CHECK(a.flags() & py::array::c_style, name, " must be C-contiguous");
  return static_cast<const int64_t*>(a.data());
}

inline void check_shape(const py::array& a, const Shape& want, const char* name) {
  Shape got = shape_of(a);
  PE_CHECK(got == want, name, " has shape ", shape_str(got), ", expected ", shape_str(want));
}

inline void check_ndim(const py::array& a, int64_t nd, const char* name) {
  PE_CHECK(a.ndim() == nd, name, " must be ", nd, "-D, got shape ", shape_str(shape_of(a)));
}

inline void check_same_size(const py::array& a, const py::array& b, const char* na, const char* nb) {
  PE_CHECK(a.size() == b.size(), na, " ", shape_str(shape_of(a)), " and ", nb, " ",
           shape_str(shape_of(b)), " must have the same number of elements");
}

// Compile the hot loops of a function for AVX-512, AVX2 and baseline x86-64; the loader picks
// the best clone for the running CPU, so the wheel stays portable without -march=native.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PE_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PE_MULTIVERSION
#endif

}  // namespace pe

void bind_elementwise(py::module_& m);
void bind_reduce(py::module_& m);
void bind_gemm(py::module_& m);
void bind_conv(py::module_& m);
void bind_pool(py::module_& m);
void bind_norm(py::module_& m);
void bind_resample(py::module_& m);
void bind_optim(py::module_& m);
void bind_norm_group(py::module_& m);
void bind_activation(py::module_& m);
