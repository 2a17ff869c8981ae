// The device array type (_cuda.Array) and the layout kernels CUDABackend builds its copies from:
// strided copy (permute, slicing, setitem, cat, broadcast), strided fill, gather/scatter by flat
// indices (advanced indexing, index_add), dtype casts and Philox random numbers.
#include <cstring>

#include "common.cuh"

namespace pe {

size_t itemsize(DType dt) {
  switch (dt) {
    case DType::F32: case DType::I32: return 4;
    case DType::F64: case DType::I64: return 8;
    default: return 1;
  }
}

const char* dtype_name(DType dt) {
  static const char* names[] = {"float32", "float64", "int64", "int32", "uint8", "bool"};
  return names[static_cast<int>(dt)];
}

int64_t Array::size() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

Array Array::empty(const Shape& shape, DType dt) {
  Array a;
  a.shape = shape;
  a.dtype = dt;
  for (auto d : shape) PE_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  a.storage = std::make_shared<Storage>(a.nbytes());
  return a;
}

namespace {

DType dtype_from(const py::dtype& d) {
  const std::string s = py::str(d);
  if (s == "float32") return DType::F32;
  if (s == "float64") return DType::F64;
  if (s == "int64") return DType::I64;
  if (s == "int32") return DType::I32;
  if (s == "uint8") return DType::U8;
  if (s == "bool") return DType::Bool;
  throw std::invalid_argument("unsupported dtype " + s + " for a CUDA array");
}

py::dtype to_py(DType dt) { return py::dtype(dtype_name(dt)); }

bool is_float(DType dt) { return dt == DType::F32 || dt == DType::F64; }

// ---------------------------------------------------------------- kernels
// Element-size templates: copies and fills move bits, so float32 and int32 share one kernel.
template <typename T>
__global__ void strided_copy_kernel(const T* __restrict__ src, T* __restrict__ dst,
                                    idx::Layout2 L, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t os, od;
    idx::layout_offsets(L, i, os, od);
    dst[od] = src[os];
  }
}

template <typename T>
__global__ void strided_add_kernel(const T* __restrict__ src, T* __restrict__ dst,
                                   idx::Layout2 L, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t os, od;
    idx::layout_offsets(L, i, os, od);
    dst[od] += src[os];
  }
}

template <typename T>
__global__ void strided_fill_kernel(T* __restrict__ dst, T value, idx::Layout2 L, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t unused, od;
    idx::layout_offsets(L, i, unused, od);
    dst[od] = value;
  }
}

template <typename T>
__global__ void gather_kernel(const T* __restrict__ src, const int64_t* __restrict__ index,
                              T* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = src[index[i]];
}

// Duplicate indices: copy keeps an arbitrary one (NumPy keeps the last), add sums them all.
template <typename T>
__global__ void scatter_kernel(const T* __restrict__ src, const int64_t* __restrict__ index,
                               T* __restrict__ dst, int64_t n, bool accumulate) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      if (accumulate) {
        atomicAdd(dst + index[i], src[i]);
        continue;
      }
    }
    dst[index[i]] = src[i];
  }
}

__global__ void index_bounds_kernel(const int64_t* __restrict__ index, int64_t n, int64_t limit,
                                    int* __restrict__ bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    if (index[i] < 0 || index[i] >= limit) *bad = 1;
}

__device__ __forceinline__ double load_real(const void* p, int64_t i, int dt) {
  switch (static_cast<DType>(dt)) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F64: return static_cast<const double*>(p)[i];
    default: return 0.0;
  }
}
__device__ __forceinline__ int64_t load_int(const void* p, int64_t i, int dt) {
  switch (static_cast<DType>(dt)) {
    case DType::I64: return static_cast<const int64_t*>(p)[i];
    case DType::I32: return static_cast<const int32_t*>(p)[i];
    case DType::U8: return static_cast<const uint8_t*>(p)[i];
    case DType::Bool: return static_cast<const bool*>(p)[i] ? 1 : 0;
    default: return 0;
  }
}
template <typename V>
__device__ __forceinline__ void store(void* p, int64_t i, int dt, V v) {
  switch (static_cast<DType>(dt)) {
    case DType::F32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DType::F64: static_cast<double*>(p)[i] = static_cast<double>(v); break;
    case DType::I64: static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v); break;
    case DType::I32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
    case DType::U8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(static_cast<int64_t>(v)); break;
    case DType::Bool: static_cast<bool*>(p)[i] = v != V(0); break;
  }
}

// Floats truncate toward zero into integers, as NumPy's astype does; integers never pass through
// double, so int64 values above 2^53 survive int64 -> int64-sized casts.
__global__ void cast_kernel(const void* __restrict__ src, int sdt, void* __restrict__ dst, int ddt,
                            int64_t n) {
  const bool sfloat = sdt == int(DType::F32) || sdt == int(DType::F64);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (sfloat) store(dst, i, ddt, load_real(src, i, sdt));
    else store(dst, i, ddt, load_int(src, i, sdt));
  }
}

// Element e takes word e%4 of Philox(counter = e/4, key = seed); normals pair words (0,1), (2,3)
// through Box-Muller.
__global__ void random_kernel(float* __restrict__ out, int64_t n, uint32_t k0, uint32_t k1,
                              bool normal) {
  const int64_t groups = (n + 3) / 4;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups;
       g += int64_t(gridDim.x) * blockDim.x) {
    const idx::U4 r = idx::philox4x32(
        idx::U4{static_cast<uint32_t>(g), static_cast<uint32_t>(uint64_t(g) >> 32), 0u, 0u}, k0, k1);
    float v[4];
    if (normal) {
      const uint32_t w[4] = {r.x, r.y, r.z, r.w};
      for (int j = 0; j < 2; ++j) {
        const float u1 = 1.0f - idx::uniform01(w[2 * j]);  // (0, 1]: log stays finite
        const float u2 = idx::uniform01(w[2 * j + 1]);
        const float rad = sqrtf(-2.0f * logf(u1));
        float s, c;
        sincospif(2.0f * u2, &s, &c);
        v[2 * j] = rad * c;
        v[2 * j + 1] = rad * s;
      }
    } else {
      v[0] = idx::uniform01(r.x);
      v[1] = idx::uniform01(r.y);
      v[2] = idx::uniform01(r.z);
      v[3] = idx::uniform01(r.w);
    }
    for (int j = 0; j < 4 && 4 * g + j < n; ++j) out[4 * g + j] = v[j];
  }
}

// ---------------------------------------------------------------- host side
template <typename F>
void by_itemsize(size_t sz, F&& f) {
  switch (sz) {
    case 1: return f(uint8_t{});
    case 4: return f(uint32_t{});
    default: return f(uint64_t{});
  }
}

idx::Layout2 make_layout(const Shape& shape, const Shape& sa, const Shape& sb, const char* what) {
  PE_CHECK(shape.size() == sa.size() && shape.size() == sb.size(), what,
           ": shape and strides differ in length");
  idx::Layout2 L;
  // Fold leading dims only after coalescing; reject first what cannot fit even then.
  std::vector<int64_t> sh, a, b;
  for (size_t d = 0; d < shape.size(); ++d) {
    PE_CHECK(shape[d] >= 0, what, ": negative size in ", shape_str(shape));
    if (shape[d] == 1) continue;
    sh.push_back(shape[d]);
    a.push_back(sa[d]);
    b.push_back(sb[d]);
  }
  // Merge from the inside out before checking the limit.
  std::vector<int64_t> msh, ma, mb;
  for (size_t d = 0; d < sh.size(); ++d) {
    if (!msh.empty() && ma.back() == a[d] * sh[d] && mb.back() == b[d] * sh[d]) {
      msh.back() *= sh[d];
      ma.back() = a[d];
      mb.back() = b[d];
    } else {
      msh.push_back(sh[d]);
      ma.push_back(a[d]);
      mb.push_back(b[d]);
    }
  }
  PE_CHECK(msh.size() <= size_t(idx::kMaxDims), what, ": more than ", idx::kMaxDims,
           " non-mergeable dims in ", shape_str(shape));
  L.nd = static_cast<int>(msh.size());
  for (int d = 0; d < L.nd; ++d) {
    L.shape[d] = msh[d];
    L.sa[d] = ma[d];
    L.sb[d] = mb[d];
  }
  idx::coalesce(L);
  return L;
}

void check_view(const Array& a, int64_t offset, const Shape& shape, const Shape& st,
                const char* what) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  if (n == 0) return;
  int64_t lo, hi;
  idx::extent(static_cast<int>(shape.size()), shape.data(), st.data(), offset, lo, hi);
  PE_CHECK(lo >= 0 && hi < a.size(), what, ": strided view (offset ", offset, ", shape ",
           shape_str(shape), ", strides ", shape_str(st), ") falls outside an array of ",
           a.size(), " elements");
}

void strided_copy(const Array& src, int64_t soff, const Shape& sst, Array& dst, int64_t doff,
                  const Shape& dst_st, const Shape& shape, bool accumulate) {
  PE_CHECK(src.dtype == dst.dtype, "strided_copy: dtypes differ (", dtype_name(src.dtype), ", ",
           dtype_name(dst.dtype), ")");
  PE_CHECK(!accumulate || is_float(dst.dtype), "strided_copy: accumulate needs a float dtype");
  check_view(src, soff, shape, sst, "strided_copy source");
  check_view(dst, doff, shape, dst_st, "strided_copy destination");
  idx::Layout2 L = make_layout(shape, sst, dst_st, "strided_copy");
  int64_t n = 1;
  for (auto d : shape) n *= d;
  if (n == 0) return;
  const size_t sz = itemsize(src.dtype);
  if (accumulate) {
    if (dst.dtype == DType::F32)
      PE_LAUNCH(grid1d(n), idx::kThreads, 0, strided_add_kernel)(
          src.ptr<float>() + soff, dst.ptr<float>() + doff, L, n);
    else
      PE_LAUNCH(grid1d(n), idx::kThreads, 0, strided_add_kernel)(
          src.ptr<double>() + soff, dst.ptr<double>() + doff, L, n);
    PE_LAUNCHED("strided_add_kernel");
    return;
  }
  by_itemsize(sz, [&](auto t) {
    using T = decltype(t);
    PE_LAUNCH(grid1d(n), idx::kThreads, 0, strided_copy_kernel)(
        src.ptr<T>() + soff, dst.ptr<T>() + doff, L, n);
  });
  PE_LAUNCHED("strided_copy_kernel");
}

void strided_fill(Array& dst, int64_t off, const Shape& st, const Shape& shape, double value) {
  check_view(dst, off, shape, st, "fill");
  const Shape zeros(shape.size(), 0);
  idx::Layout2 L = make_layout(shape, zeros, st, "fill");
  int64_t n = 1;
  for (auto d : shape) n *= d;
  if (n == 0) return;
  // The value's bits in the destination dtype.
  uint64_t bits = 0;
  switch (dst.dtype) {
    case DType::F32: { float v = float(value); std::memcpy(&bits, &v, 4); break; }
    case DType::F64: std::memcpy(&bits, &value, 8); break;
    case DType::I64: { int64_t v = int64_t(value); std::memcpy(&bits, &v, 8); break; }
    case DType::I32: { int32_t v = int32_t(value); std::memcpy(&bits, &v, 4); break; }
    case DType::U8: bits = uint8_t(int64_t(value)); break;
    case DType::Bool: bits = value != 0.0; break;
  }
  by_itemsize(itemsize(dst.dtype), [&](auto t) {
    using T = decltype(t);
    T v;
    std::memcpy(&v, &bits, sizeof(T));
    PE_LAUNCH(grid1d(n), idx::kThreads, 0, strided_fill_kernel)(dst.ptr<T>() + off, v, L, n);
  });
  PE_LAUNCHED("strided_fill_kernel");
}

void check_indices(const Array& index, int64_t limit, const char* what) {
  const int64_t n = index.size();
  if (n == 0) return;
  int* flag = reinterpret_cast<int*>(workspace(1));
  PE_CUDA(cudaMemsetAsync(flag, 0, sizeof(int), 0), what);
  PE_LAUNCH(grid1d(n), idx::kThreads, 0, index_bounds_kernel)(index.ptr<int64_t>(), n, limit, flag);
  PE_LAUNCHED("index_bounds_kernel");
  int bad = 0;
  PE_CUDA(cudaMemcpy(&bad, flag, sizeof(int), cudaMemcpyDeviceToHost), what);
  PE_CHECK(!bad, what, ": index out of bounds (valid range [0, ", limit, "))");
}

void gather(const Array& src, const Array& index, Array& dst) {
  idx_in_ptr(index, "index");
  PE_CHECK(src.dtype == dst.dtype, "gather: dtypes differ");
  check_same_size(index, dst, "index", "out");
  check_indices(index, src.size(), "gather");
  const int64_t n = dst.size();
  if (n == 0) return;
  by_itemsize(itemsize(src.dtype), [&](auto t) {
    using T = decltype(t);
    PE_LAUNCH(grid1d(n), idx::kThreads, 0, gather_kernel)(
        src.ptr<T>(), index.ptr<int64_t>(), dst.ptr<T>(), n);
  });
  PE_LAUNCHED("gather_kernel");
}

void scatter(const Array& src, const Array& index, Array& dst, bool accumulate) {
  idx_in_ptr(index, "index");
  PE_CHECK(src.dtype == dst.dtype, "scatter: dtypes differ");
  PE_CHECK(!accumulate || is_float(dst.dtype), "scatter: accumulate needs a float dtype");
  check_same_size(index, src, "index", "values");
  check_indices(index, dst.size(), "scatter");
  const int64_t n = src.size();
  if (n == 0) return;
  const unsigned g = grid1d(n);
  if (dst.dtype == DType::F32)
    PE_LAUNCH(g, idx::kThreads, 0, scatter_kernel)(
        src.ptr<float>(), index.ptr<int64_t>(), dst.ptr<float>(), n, accumulate);
  else if (dst.dtype == DType::F64)
    PE_LAUNCH(g, idx::kThreads, 0, scatter_kernel)(
        src.ptr<double>(), index.ptr<int64_t>(), dst.ptr<double>(), n, accumulate);
  else
    by_itemsize(itemsize(src.dtype), [&](auto t) {
      using T = decltype(t);
      PE_LAUNCH(g, idx::kThreads, 0, scatter_kernel)(
          src.ptr<T>(), index.ptr<int64_t>(), dst.ptr<T>(), n, false);
    });
  PE_LAUNCHED("scatter_kernel");
}

void cast(const Array& src, Array& dst) {
  check_same_size(src, dst, "x", "out");
  const int64_t n = src.size();
  if (n == 0) return;
  PE_LAUNCH(grid1d(n), idx::kThreads, 0, cast_kernel)(
      src.data(), int(src.dtype), dst.data(), int(dst.dtype), n);
  PE_LAUNCHED("cast_kernel");
}

void copy_(Array& dst, const Array& src) {
  PE_CHECK(src.dtype == dst.dtype, "copy_: dtypes differ (", dtype_name(src.dtype), ", ",
           dtype_name(dst.dtype), ")");
  check_same_size(src, dst, "src", "dst");
  if (src.nbytes())
    PE_CUDA(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(), cudaMemcpyDeviceToDevice, 0),
            "copy_");
}

void random(Array& out, uint64_t seed, bool normal) {
  float* p = out_ptr(out, "out");
  const int64_t n = out.size();
  if (n == 0) return;
  PE_LAUNCH(grid1d((n + 3) / 4), idx::kThreads, 0, random_kernel)(
      p, n, uint32_t(seed), uint32_t(seed >> 32), normal);
  PE_LAUNCHED("random_kernel");
}

Array from_numpy(const py::array& host) {
  PE_CHECK(host.flags() & py::array::c_style, "from_numpy needs a C-contiguous array");
  Array a = Array::empty(Shape(host.shape(), host.shape() + host.ndim()), dtype_from(host.dtype()));
  const void* src = host.data();
  py::gil_scoped_release nogil;
  copy_to_device(a.data(), src, a.nbytes());
  return a;
}

py::array to_numpy(const Array& a) {
  py::array out(to_py(a.dtype), a.shape);
  void* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    copy_to_host(dst, a.data(), a.nbytes());
  }
  return out;
}

Array view(const Array& a, const Shape& shape, size_t offset_bytes) {
  Array v = a;
  v.shape = shape;
  v.offset = offset_bytes;
  return v;
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no GPU: report none instead of raising
    return 0;
  }
  return n;
}

}  // namespace

void check_index_range(const Array& index, int64_t limit, const char* what) {
  idx_in_ptr(index, what);
  check_indices(index, limit, what);
}

}  // namespace pe

void bind_array(py::module_& m) {
  using pe::Array;
  using pe::Shape;
  py::register_exception<pe::OutOfMemory>(m, "OutOfMemoryError", PyExc_MemoryError);
  py::class_<Array>(m, "Array", "A C-contiguous n-d array in CUDA device memory")
      .def_property_readonly("shape", [](const Array& a) { return py::tuple(py::cast(a.shape)); })
      .def_property_readonly("dtype", [](const Array& a) { return pe::to_py(a.dtype); })
      .def_property_readonly("ndim", &Array::ndim)
      .def_property_readonly("size", &Array::size)
      .def_property_readonly("nbytes", &Array::nbytes)
      .def_property_readonly("itemsize", [](const Array& a) { return pe::itemsize(a.dtype); })
      .def_property_readonly("data_ptr", [](const Array& a) { return uintptr_t(a.data()); })
      .def("numpy", &pe::to_numpy, "copy to a new host NumPy array")
      .def(
          "reshape",
          [](const Array& a, const Shape& shape) {
            int64_t n = 1;
            for (auto d : shape) n *= d;
            PE_CHECK(n == a.size(), "cannot reshape an array of shape ", pe::shape_str(a.shape),
                     " to ", pe::shape_str(shape));
            return pe::view(a, shape, a.offset);
          },
          py::arg("shape"), "a view with another shape, sharing storage")
      .def("__len__",
           [](const Array& a) {
             PE_CHECK(a.ndim() > 0, "len() of a 0-d array");
             return a.shape[0];
           })
      .def(
          "__getitem__",
          [](const Array& a, int64_t i) {
            PE_CHECK(a.ndim() > 0, "cannot index a 0-d array");
            if (i < 0) i += a.shape[0];
            if (i < 0 || i >= a.shape[0])
              throw py::index_error(pe::cat_str("index ", i, " is out of bounds for dimension 0 with size ", a.shape[0]));
            const Shape rest(a.shape.begin() + 1, a.shape.end());
            int64_t inner = 1;
            for (auto d : rest) inner *= d;
            return pe::view(a, rest, a.offset + size_t(i * inner) * pe::itemsize(a.dtype));
          },
          "a view of row i of the first dimension (batched GEMM operands)")
      .def("__repr__", [](const Array& a) {
        return pe::cat_str("<_cuda.Array shape=", pe::shape_str(a.shape), " dtype=",
                           pe::dtype_name(a.dtype), ">");
      });

  m.def("empty", [](const Shape& shape, const py::object& dtype) {
    return Array::empty(shape, pe::dtype_from(py::dtype::from_args(dtype)));
  }, py::arg("shape"), py::arg("dtype"));
  m.def("from_numpy", &pe::from_numpy, py::arg("array"), "copy a C-contiguous host array to the GPU");
  m.def("copy_", &pe::copy_, py::arg("dst"), py::arg("src"));
  m.def("cast", &pe::cast, py::arg("x"), py::arg("out"));
  m.def("strided_copy", &pe::strided_copy, py::arg("src"), py::arg("src_offset"),
        py::arg("src_strides"), py::arg("dst"), py::arg("dst_offset"), py::arg("dst_strides"),
        py::arg("shape"), py::arg("accumulate") = false,
        "dst[view] (+)= src[view]; offsets and strides in elements, strides may be 0 or negative");
  m.def("strided_fill", &pe::strided_fill, py::arg("dst"), py::arg("offset"), py::arg("strides"),
        py::arg("shape"), py::arg("value"));
  m.def("fill", [](Array& dst, double value) {
    pe::strided_fill(dst, 0, Shape{1}, Shape{dst.size()}, value);
  }, py::arg("dst"), py::arg("value"));
  m.def("gather", &pe::gather, py::arg("src"), py::arg("index"), py::arg("out"),
        "out[i] = src.flat[index[i]]");
  m.def("scatter", &pe::scatter, py::arg("src"), py::arg("index"), py::arg("dst"),
        py::arg("accumulate") = false, "dst.flat[index[i]] (+)= src[i]");
  m.def("random", &pe::random, py::arg("out"), py::arg("seed"), py::arg("normal"),
        "fill float32 out with Philox uniform [0, 1) or standard normal numbers");
  m.def("device_count", &pe::device_count);
  m.def("synchronize", []() {
    py::gil_scoped_release nogil;
    PE_CUDA(cudaDeviceSynchronize(), "synchronize");
  });
  m.def("memory_allocated", &pe::memory_allocated);
  m.def("max_memory_allocated", &pe::max_memory_allocated);
  m.def("memory_reserved", &pe::memory_reserved);
  m.def("reset_peak_memory_stats", &pe::reset_peak_memory_stats);
  m.def("empty_cache", &pe::empty_cache);
}
