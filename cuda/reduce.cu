// Reductions: sum over any set of dims, max over one dim with argmax, softmax / log_softmax over
// one dim, and the NLL gather of cross-entropy. Same names and signatures as csrc/reduce.cpp.
// Sums are deterministic: a long reduction is split over blockIdx.y into partial sums that a
// second pass adds in a fixed order (no float atomics). Per-thread running sums are double, so a
// long sum of equal values does not drift (tests/test_reduce.py::test_long_sum_is_accurate).
#include "common.cuh"

namespace {

using pe::Array;
using pe::Shape;
namespace idx = pe::idx;

// Innermost group reduced: one block per (output, split), threads stride over the reduced range
// (contiguous innermost, so coalesced), then a shuffle block sum.
__global__ void sum_rows_kernel(const float* __restrict__ x, float* __restrict__ out,
                                idx::ReduceLayout R, int64_t m, int64_t r_total) {
  __shared__ float sh[32];
  int64_t b, e;
  idx::split_range(blockIdx.y, gridDim.y, r_total, b, e);
  for (int64_t o = blockIdx.x; o < m; o += gridDim.x) {
    const float* base = x + idx::decode(o, R.nk, R.kshape, R.kstride);
    double acc = 0.0;
    for (int64_t r = b + threadIdx.x; r < e; r += blockDim.x)
      acc += base[idx::decode(r, R.nr, R.rshape, R.rstride)];
    const float total = pe::block_sum(static_cast<float>(acc), sh);
    if (threadIdx.x == 0) out[blockIdx.y * m + o] = total;
  }
}

// Innermost group kept: one thread per (output, split) loops over its reduced range; neighbouring
// threads read neighbouring addresses.
__global__ void sum_cols_kernel(const float* __restrict__ x, float* __restrict__ out,
                                idx::ReduceLayout R, int64_t m, int64_t r_total) {
  int64_t b, e;
  idx::split_range(blockIdx.y, gridDim.y, r_total, b, e);
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < m;
       o += int64_t(gridDim.x) * blockDim.x) {
    const float* base = x + idx::decode(o, R.nk, R.kshape, R.kstride);
    double acc = 0.0;
    for (int64_t r = b; r < e; ++r) acc += base[idx::decode(r, R.nr, R.rshape, R.rstride)];
    out[blockIdx.y * m + o] = static_cast<float>(acc);
  }
}

__global__ void sum_splits_kernel(const float* __restrict__ part, float* __restrict__ out,
                                  int64_t m, int64_t splits) {
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < m;
       o += int64_t(gridDim.x) * blockDim.x) {
    double acc = 0.0;
    for (int64_t s = 0; s < splits; ++s) acc += part[s * m + o];
    out[o] = static_cast<float>(acc);
  }
}

// x: any shape; out: x's shape with reduced dims set to 1 (same ndim).
void sum_reduce(const Array& x, Array& out) {
  const float* px = pe::in_ptr(x, "x");
  float* po = pe::out_ptr(out, "out");
  const Shape &xs = x.shape, &os = out.shape;
  PE_CHECK(xs.size() == os.size(), "sum_reduce: out ", pe::shape_str(os),
           " must have the ndim of x ", pe::shape_str(xs));
  for (size_t i = 0; i < xs.size(); ++i)
    PE_CHECK(os[i] == xs[i] || os[i] == 1, "sum_reduce: cannot reduce ", pe::shape_str(xs), " to ",
             pe::shape_str(os));
  const int64_t n = x.size(), m = out.size();
  if (m == 0) return;
  if (n == 0) {
    PE_CUDA(cudaMemsetAsync(po, 0, m * sizeof(float), 0), "sum_reduce");
    return;
  }
  idx::ReduceLayout R;
  PE_CHECK(idx::make_reduce_layout(int(xs.size()), xs.data(), os.data(), R),
           "sum_reduce: too many alternating kept/reduced dims in ", pe::shape_str(xs), " -> ",
           pe::shape_str(os));
  if (R.nr == 0) {
    PE_CUDA(cudaMemcpyAsync(po, px, n * sizeof(float), cudaMemcpyDeviceToDevice, 0), "sum_reduce");
    return;
  }
  const int64_t r_total = n / m;
  const bool rows = R.rstride[R.nr - 1] == 1;
  const int64_t splits = idx::reduce_splits(m, r_total, rows);
  float* dst = splits == 1 ? po : pe::workspace(size_t(splits * m));
  if (rows) {
    const dim3 grid(unsigned(std::min<int64_t>(m, 65535)), unsigned(splits));
    PE_LAUNCH(grid, idx::kThreads, 0, sum_rows_kernel)(px, dst, R, m, r_total);
    PE_LAUNCHED("sum_rows_kernel");
  } else {
    const dim3 grid(unsigned(std::min<int64_t>((m + idx::kThreads - 1) / idx::kThreads, 65535)),
                    unsigned(splits));
    PE_LAUNCH(grid, idx::kThreads, 0, sum_cols_kernel)(px, dst, R, m, r_total);
    PE_LAUNCHED("sum_cols_kernel");
  }
  if (splits > 1) {
    PE_LAUNCH(pe::grid1d(m), idx::kThreads, 0, sum_splits_kernel)(dst, po, m, splits);
    PE_LAUNCHED("sum_splits_kernel");
  }
}

// Does (v2, i2) beat (v1, i1)? NaN is the maximum; ties go to the first index, as torch.max.
__device__ __forceinline__ bool beats(float v1, int64_t i1, float v2, int64_t i2) {
  const bool n1 = v1 != v1, n2 = v2 != v2;
  if (n1 || n2) return n2 && (!n1 || i2 < i1);
  return v2 > v1 || (v2 == v1 && i2 < i1);
}

// x viewed as (outer, D, inner); one warp per row when inner == 1, else one thread per column.
__global__ void max_rows_kernel(const float* __restrict__ x, float* __restrict__ values,
                                int64_t* __restrict__ indices, int64_t outer, int64_t D) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  for (int64_t o = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5; o < outer; o += warps) {
    const float* p = x + o * D;
    float best = -INFINITY;
    int64_t arg = D;  // sentinel: loses every comparison against a real element
    for (int64_t d = lane; d < D; d += 32)
      if (arg == D || beats(best, arg, p[d], d)) {
        best = p[d];
        arg = d;
      }
    for (int off = 16; off > 0; off >>= 1) {
      const float v = __shfl_xor_sync(0xffffffffu, best, off);
      const int64_t i = __shfl_xor_sync(0xffffffffu, arg, off);
      if (i != D && (arg == D || beats(best, arg, v, i))) {
        best = v;
        arg = i;
      }
    }
    if (lane == 0) {
      values[o] = best;
      indices[o] = arg;
    }
  }
}

__global__ void max_cols_kernel(const float* __restrict__ x, float* __restrict__ values,
                                int64_t* __restrict__ indices, int64_t outer, int64_t D,
                                int64_t inner) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < outer * inner;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = t / inner, i = t % inner;
    const float* p = x + o * D * inner + i;
    float best = p[0];
    int64_t arg = 0;
    for (int64_t d = 1; d < D && best == best; ++d) {
      const float v = p[d * inner];
      if (v > best || v != v) {
        best = v;
        arg = d;
      }
    }
    values[t] = best;
    indices[t] = arg;
  }
}

void max_reduce(const Array& x, Array& values, Array& indices, int64_t outer, int64_t D,
                int64_t inner) {
  const float* px = pe::in_ptr(x, "x");
  float* pv = pe::out_ptr(values, "values");
  int64_t* pi = pe::idx_ptr(indices, "indices");
  PE_CHECK(D >= 1, "max of an empty dimension");
  PE_CHECK(outer >= 0 && inner >= 0 && x.size() == outer * D * inner &&
               values.size() == outer * inner && indices.size() == outer * inner,
           "max_reduce: sizes do not match (outer ", outer, ", D ", D, ", inner ", inner, ")");
  if (outer * inner == 0) return;
  if (inner == 1) {
    PE_LAUNCH(pe::grid1d(outer * 32), idx::kThreads, 0, max_rows_kernel)(px, pv, pi, outer, D);
    PE_LAUNCHED("max_rows_kernel");
  } else {
    PE_LAUNCH(pe::grid1d(outer * inner), idx::kThreads, 0, max_cols_kernel)(
        px, pv, pi, outer, D, inner);
    PE_LAUNCHED("max_cols_kernel");
  }
}

__global__ void max_backward_kernel(const float* __restrict__ gy, const int64_t* __restrict__ ind,
                                    float* __restrict__ gx, int64_t outer, int64_t D,
                                    int64_t inner) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < outer * inner;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = t / inner, i = t % inner, d = ind[t];
    if (d >= 0 && d < D) gx[(o * D + d) * inner + i] = gy[t];
  }
}

void max_reduce_backward(const Array& gy, const Array& indices, Array& gx, int64_t outer,
                         int64_t D, int64_t inner) {
  const float* pg = pe::in_ptr(gy, "grad_output");
  const int64_t* pi = pe::idx_in_ptr(indices, "indices");
  float* px = pe::out_ptr(gx, "grad_input");
  PE_CHECK(outer >= 0 && D >= 0 && inner >= 0 && gx.size() == outer * D * inner &&
               gy.size() == outer * inner && indices.size() == outer * inner,
           "max_reduce_backward: sizes do not match");
  if (gx.size() == 0) return;
  PE_CUDA(cudaMemsetAsync(px, 0, gx.nbytes(), 0), "max_reduce_backward");
  PE_LAUNCH(pe::grid1d(outer * inner), idx::kThreads, 0, max_backward_kernel)(
      pg, pi, px, outer, D, inner);
  PE_LAUNCHED("max_backward_kernel");
}

// Softmax rows (inner == 1): one warp per row, max and sum by shuffles.
__global__ void softmax_rows_kernel(const float* __restrict__ x, float* __restrict__ y,
                                    int64_t outer, int64_t D, bool log) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  for (int64_t o = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5; o < outer; o += warps) {
    const float* p = x + o * D;
    float* q = y + o * D;
    float mx = -INFINITY;
    for (int64_t d = lane; d < D; d += 32) mx = fmaxf(mx, p[d]);
    mx = pe::warp_max(mx);
    float s = 0.f;
    for (int64_t d = lane; d < D; d += 32) s += expf(p[d] - mx);
    s = pe::warp_sum(s);
    if (log) {
      const float lse = mx + logf(s);
      for (int64_t d = lane; d < D; d += 32) q[d] = p[d] - lse;
    } else {
      const float inv = 1.f / s;
      for (int64_t d = lane; d < D; d += 32) q[d] = expf(p[d] - mx) * inv;
    }
  }
}

__global__ void softmax_cols_kernel(const float* __restrict__ x, float* __restrict__ y,
                                    int64_t outer, int64_t D, int64_t inner, bool log) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < outer * inner;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = t / inner, i = t % inner;
    const float* p = x + o * D * inner + i;
    float* q = y + o * D * inner + i;
    float mx = -INFINITY;
    for (int64_t d = 0; d < D; ++d) mx = fmaxf(mx, p[d * inner]);
    float s = 0.f;
    for (int64_t d = 0; d < D; ++d) s += expf(p[d * inner] - mx);
    if (log) {
      const float lse = mx + logf(s);
      for (int64_t d = 0; d < D; ++d) q[d * inner] = p[d * inner] - lse;
    } else {
      const float inv = 1.f / s;
      for (int64_t d = 0; d < D; ++d) q[d * inner] = expf(p[d * inner] - mx) * inv;
    }
  }
}

void softmax_forward(const Array& x, Array& y, int64_t outer, int64_t D, int64_t inner, bool log) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  PE_CHECK(outer >= 0 && D >= 0 && inner >= 0 && x.size() == outer * D * inner &&
               y.size() == x.size(),
           "softmax: sizes do not match");
  if (x.size() == 0) return;
  if (inner == 1) {
    PE_LAUNCH(pe::grid1d(outer * 32), idx::kThreads, 0, softmax_rows_kernel)(
        px, py_, outer, D, log);
    PE_LAUNCHED("softmax_rows_kernel");
  } else {
    PE_LAUNCH(pe::grid1d(outer * inner), idx::kThreads, 0, softmax_cols_kernel)(
        px, py_, outer, D, inner, log);
    PE_LAUNCHED("softmax_cols_kernel");
  }
}

// softmax: gx = y * (gy - sum(gy*y));  log_softmax: gx = gy - exp(y) * sum(gy).
__global__ void softmax_grad_rows_kernel(const float* __restrict__ y, const float* __restrict__ gy,
                                         float* __restrict__ gx, int64_t outer, int64_t D,
                                         bool log) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  for (int64_t o = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5; o < outer; o += warps) {
    const int64_t base = o * D;
    float s = 0.f;
    for (int64_t d = lane; d < D; d += 32) s += log ? gy[base + d] : gy[base + d] * y[base + d];
    s = pe::warp_sum(s);
    for (int64_t d = lane; d < D; d += 32) {
      const int64_t k = base + d;
      gx[k] = log ? gy[k] - expf(y[k]) * s : y[k] * (gy[k] - s);
    }
  }
}

__global__ void softmax_grad_cols_kernel(const float* __restrict__ y, const float* __restrict__ gy,
                                         float* __restrict__ gx, int64_t outer, int64_t D,
                                         int64_t inner, bool log) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < outer * inner;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = (t / inner) * D * inner + t % inner;
    float s = 0.f;
    for (int64_t d = 0; d < D; ++d) {
      const int64_t k = base + d * inner;
      s += log ? gy[k] : gy[k] * y[k];
    }
    for (int64_t d = 0; d < D; ++d) {
      const int64_t k = base + d * inner;
      gx[k] = log ? gy[k] - expf(y[k]) * s : y[k] * (gy[k] - s);
    }
  }
}

void softmax_backward(const Array& y, const Array& gy, Array& gx, int64_t outer, int64_t D,
                      int64_t inner, bool log) {
  const float* py_ = pe::in_ptr(y, "y");
  const float* pg = pe::in_ptr(gy, "grad_output");
  float* px = pe::out_ptr(gx, "grad_input");
  PE_CHECK(outer >= 0 && D >= 0 && inner >= 0 && y.size() == outer * D * inner &&
               gy.size() == y.size() && gx.size() == y.size(),
           "softmax_backward: sizes do not match");
  if (y.size() == 0) return;
  if (inner == 1) {
    PE_LAUNCH(pe::grid1d(outer * 32), idx::kThreads, 0, softmax_grad_rows_kernel)(
        py_, pg, px, outer, D, log);
    PE_LAUNCHED("softmax_grad_rows_kernel");
  } else {
    PE_LAUNCH(pe::grid1d(outer * inner), idx::kThreads, 0, softmax_grad_cols_kernel)(
        py_, pg, px, outer, D, inner, log);
    PE_LAUNCHED("softmax_grad_cols_kernel");
  }
}

__global__ void nll_kernel(const float* __restrict__ logp, const int64_t* __restrict__ target,
                           float* __restrict__ out, int64_t N, int64_t C) {
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < N;
       n += int64_t(gridDim.x) * blockDim.x)
    out[n] = -logp[n * C + target[n]];
}

__global__ void nll_grad_kernel(const float* __restrict__ gy, const int64_t* __restrict__ target,
                                float* __restrict__ gx, int64_t N, int64_t C) {
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < N;
       n += int64_t(gridDim.x) * blockDim.x)
    gx[n * C + target[n]] = -gy[n];
}

// logp (N, C), target (N,) int64 -> out (N,) = -logp[n, target[n]]. Targets are range-checked on
// the device first (one small synchronising copy), so a bad label raises instead of faulting.
void nll_forward(const Array& logp, const Array& target, Array& out) {
  const float* pl = pe::in_ptr(logp, "input");
  const int64_t* pt = pe::idx_in_ptr(target, "target");
  float* po = pe::out_ptr(out, "out");
  pe::check_ndim(logp, 2, "input");
  const int64_t N = logp.shape[0], C = logp.shape[1];
  pe::check_shape(target, {N}, "target");
  pe::check_shape(out, {N}, "out");
  pe::check_index_range(target, C, "nll: target (class index)");
  if (N == 0) return;
  PE_LAUNCH(pe::grid1d(N), idx::kThreads, 0, nll_kernel)(pl, pt, po, N, C);
  PE_LAUNCHED("nll_kernel");
}

void nll_backward(const Array& gy, const Array& target, Array& gx) {
  const float* pg = pe::in_ptr(gy, "grad_output");
  const int64_t* pt = pe::idx_in_ptr(target, "target");
  float* px = pe::out_ptr(gx, "grad_input");
  pe::check_ndim(gx, 2, "grad_input");
  const int64_t N = gx.shape[0], C = gx.shape[1];
  pe::check_shape(target, {N}, "target");
  pe::check_shape(gy, {N}, "grad_output");
  pe::check_index_range(target, C, "nll: target (class index)");
  if (gx.size() == 0) return;
  PE_CUDA(cudaMemsetAsync(px, 0, gx.nbytes(), 0), "nll_backward");
  PE_LAUNCH(pe::grid1d(N), idx::kThreads, 0, nll_grad_kernel)(pg, pt, px, N, C);
  PE_LAUNCHED("nll_grad_kernel");
}

}  // namespace

void bind_reduce(py::module_& m) {
  m.def("sum_reduce", &sum_reduce, py::arg("x"), py::arg("out"));
  m.def("max_reduce", &max_reduce, py::arg("x"), py::arg("values"), py::arg("indices"),
        py::arg("outer"), py::arg("D"), py::arg("inner"));
  m.def("max_reduce_backward", &max_reduce_backward, py::arg("grad_output"), py::arg("indices"),
        py::arg("grad_input"), py::arg("outer"), py::arg("D"), py::arg("inner"));
  m.def("softmax_forward", &softmax_forward, py::arg("x"), py::arg("y"), py::arg("outer"),
        py::arg("D"), py::arg("inner"), py::arg("log"));
  m.def("softmax_backward", &softmax_backward, py::arg("y"), py::arg("grad_output"),
        py::arg("grad_input"), py::arg("outer"), py::arg("D"), py::arg("inner"), py::arg("log"));
  m.def("nll_forward", &nll_forward, py::arg("input"), py::arg("target"), py::arg("out"));
  m.def("nll_backward", &nll_backward, py::arg("grad_output"), py::arg("target"),
        py::arg("grad_input"));
}
