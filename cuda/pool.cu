// Pooling over NCHW float32 planes with the names, signatures and conventions of csrc/pool.cpp:
// max pooling with flat in-plane argmax indices (ties keep the first maximum, a NaN replaces
// anything, an empty window gives -inf and index -1), average pooling (PyTorch's divisor rules)
// and adaptive average pooling. Forwards: one thread per output element. Backwards: scatter with
// atomicAdd into the zeroed input gradient (windows overlap when stride < kernel).
// Window arithmetic: idx::pool_tap / avg_window / adaptive_window (tested on the host).
#include <array>

#include "common.cuh"
#include "../csrc/twin_checks.h"

namespace {

using pe::Array;
using pe::Shape;
using Pair = pe::twin::Pair;
using Geom = pe::twin::PoolGeom;  // shapes and parameters checked once for both devices
using pe::twin::adaptive_geom;
using pe::twin::pool_geom;
namespace idx = pe::idx;

__global__ void maxpool_kernel(const float* __restrict__ x, float* __restrict__ y,
                               int64_t* __restrict__ ind, Geom g) {
  const int64_t n = g.planes * g.OH * g.OW;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, c = i / (g.OH * g.OW);
    const float* xp = x + c * g.H * g.W;
    float m = -INFINITY;
    int64_t mi = -1;
    for (int64_t r = 0; r < g.kh; ++r) {
      const int64_t h = idx::pool_tap(oh, r, g.sh, g.ph, g.dh, g.H);
      if (h < 0) continue;
      for (int64_t s = 0; s < g.kw; ++s) {
        const int64_t w = idx::pool_tap(ow, s, g.sw, g.pw, g.dw, g.W);
        if (w < 0) continue;
        const float v = xp[h * g.W + w];
        if (mi < 0 || v > m || v != v) {
          m = v;
          mi = h * g.W + w;
        }
      }
    }
    y[i] = m;
    ind[i] = mi;
  }
}

__global__ void maxpool_backward_kernel(const float* __restrict__ gy, const int64_t* __restrict__ ind,
                                        float* __restrict__ gx, int64_t planes, int64_t in_plane,
                                        int64_t out_plane, int* __restrict__ bad) {
  const int64_t n = planes * out_plane;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = ind[i];
    if (j >= 0 && j < in_plane) atomicAdd(gx + (i / out_plane) * in_plane + j, gy[i]);
    else if (j != -1) *bad = 1;
  }
}

struct AvgParams {
  bool count_include_pad;
  int64_t divisor;  // 0: none
};

// The window of output (oh, ow); false when it holds no input element (output 0).
__device__ __forceinline__ bool avg_window(const Geom& g, const AvgParams& a, int64_t oh,
                                           int64_t ow, int64_t& h0, int64_t& h1, int64_t& w0,
                                           int64_t& w1, float& div) {
  int64_t ch, cw;
  idx::avg_window(oh, g.kh, g.sh, g.ph, g.H, a.count_include_pad, h0, h1, ch);
  idx::avg_window(ow, g.kw, g.sw, g.pw, g.W, a.count_include_pad, w0, w1, cw);
  if (h0 >= h1 || w0 >= w1) return false;
  div = static_cast<float>(a.divisor ? a.divisor : ch * cw);
  return true;
}

__global__ void avgpool_kernel(const float* __restrict__ x, float* __restrict__ y, Geom g,
                               AvgParams a) {
  const int64_t n = g.planes * g.OH * g.OW;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, c = i / (g.OH * g.OW);
    int64_t h0, h1, w0, w1;
    float div;
    if (!avg_window(g, a, oh, ow, h0, h1, w0, w1, div)) {
      y[i] = 0.f;
      continue;
    }
    const float* xp = x + c * g.H * g.W;
    float acc = 0.f;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) acc += xp[h * g.W + w];
    y[i] = acc / div;
  }
}

__global__ void avgpool_backward_kernel(const float* __restrict__ gy, float* __restrict__ gx,
                                        Geom g, AvgParams a) {
  const int64_t n = g.planes * g.OH * g.OW;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, c = i / (g.OH * g.OW);
    int64_t h0, h1, w0, w1;
    float div;
    if (!avg_window(g, a, oh, ow, h0, h1, w0, w1, div)) continue;
    const float v = gy[i] / div;
    float* xp = gx + c * g.H * g.W;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) atomicAdd(xp + h * g.W + w, v);
  }
}

__global__ void adaptive_kernel(const float* __restrict__ x, float* __restrict__ y, Geom g) {
  const int64_t n = g.planes * g.OH * g.OW;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, c = i / (g.OH * g.OW);
    int64_t h0, h1, w0, w1;
    idx::adaptive_window(oh, g.OH, g.H, h0, h1);
    idx::adaptive_window(ow, g.OW, g.W, w0, w1);
    const float* xp = x + c * g.H * g.W;
    float acc = 0.f;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) acc += xp[h * g.W + w];
    y[i] = acc / static_cast<float>((h1 - h0) * (w1 - w0));
  }
}

__global__ void adaptive_backward_kernel(const float* __restrict__ gy, float* __restrict__ gx,
                                         Geom g) {
  const int64_t n = g.planes * g.OH * g.OW;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, c = i / (g.OH * g.OW);
    int64_t h0, h1, w0, w1;
    idx::adaptive_window(oh, g.OH, g.H, h0, h1);
    idx::adaptive_window(ow, g.OW, g.W, w0, w1);
    const float v = gy[i] / static_cast<float>((h1 - h0) * (w1 - w0));
    float* xp = gx + c * g.H * g.W;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) atomicAdd(xp + h * g.W + w, v);
  }
}

void zero(Array& a, const char* what) {
  if (a.nbytes()) PE_CUDA(cudaMemsetAsync(a.data(), 0, a.nbytes(), 0), what);
}

void maxpool2d_forward(const Array& x, Array& y, Array& indices, Pair kernel_size, Pair stride,
                       Pair padding, Pair dilation, bool ceil_mode) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  int64_t* pi = pe::idx_ptr(indices, "indices");
  const Geom g = pool_geom(x, y, kernel_size, stride, padding, dilation, ceil_mode, "x", "y");
  pe::check_shape(indices, y.shape, "indices");
  if (y.size() == 0) return;
  PE_LAUNCH(pe::grid1d(y.size()), idx::kThreads, 0, maxpool_kernel)(px, py_, pi, g);
  PE_LAUNCHED("maxpool_kernel");
}

// grad_output, indices (N,C,OH,OW); grad_input (N,C,H,W) is overwritten. Indices are checked on
// the device; a bad one raises after the kernel (one synchronising read of a flag).
void maxpool2d_backward(const Array& grad_output, const Array& indices, Array& grad_input) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  const int64_t* pi = pe::idx_in_ptr(indices, "indices");
  float* px = pe::out_ptr(grad_input, "grad_input");
  pe::check_ndim(grad_output, 4, "grad_output");
  pe::check_ndim(grad_input, 4, "grad_input");
  pe::check_shape(indices, grad_output.shape, "indices");
  const Shape &gs = grad_output.shape, &xs = grad_input.shape;
  PE_CHECK(gs[0] == xs[0] && gs[1] == xs[1], "grad_output ", pe::shape_str(gs), " and grad_input ",
           pe::shape_str(xs), " differ in batch or channels");
  const int64_t planes = xs[0] * xs[1], in_plane = xs[2] * xs[3], out_plane = gs[2] * gs[3];
  zero(grad_input, "maxpool2d_backward");
  if (planes * out_plane == 0) return;
  int* flag = reinterpret_cast<int*>(pe::workspace(1));
  PE_CUDA(cudaMemsetAsync(flag, 0, sizeof(int), 0), "maxpool2d_backward");
  PE_LAUNCH(pe::grid1d(planes * out_plane), idx::kThreads, 0, maxpool_backward_kernel)(
      pg, pi, px, planes, in_plane, out_plane, flag);
  PE_LAUNCHED("maxpool_backward_kernel");
  int bad = 0;
  PE_CUDA(cudaMemcpy(&bad, flag, sizeof(int), cudaMemcpyDeviceToHost), "maxpool2d_backward");
  PE_CHECK(!bad, "indices hold a value outside [0, ", in_plane, ") for planes of shape (", xs[2],
           ", ", xs[3], ")");
}

AvgParams avg_params(bool count_include_pad, int64_t divisor_override) {
  PE_CHECK(divisor_override >= 0, "divisor_override must be positive (0 for none), got ",
           divisor_override);
  return {count_include_pad, divisor_override};
}

void avgpool2d_forward(const Array& x, Array& y, Pair kernel_size, Pair stride, Pair padding,
                       bool ceil_mode, bool count_include_pad, int64_t divisor_override) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  const Geom g = pool_geom(x, y, kernel_size, stride, padding, {1, 1}, ceil_mode, "x", "y");
  const AvgParams a = avg_params(count_include_pad, divisor_override);
  if (y.size() == 0) return;
  PE_LAUNCH(pe::grid1d(y.size()), idx::kThreads, 0, avgpool_kernel)(px, py_, g, a);
  PE_LAUNCHED("avgpool_kernel");
}

void avgpool2d_backward(const Array& grad_output, Array& grad_input, Pair kernel_size, Pair stride,
                        Pair padding, bool ceil_mode, bool count_include_pad,
                        int64_t divisor_override) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* px = pe::out_ptr(grad_input, "grad_input");
  const Geom g = pool_geom(grad_input, grad_output, kernel_size, stride, padding, {1, 1},
                           ceil_mode, "grad_input", "grad_output");
  const AvgParams a = avg_params(count_include_pad, divisor_override);
  zero(grad_input, "avgpool2d_backward");
  if (grad_output.size() == 0) return;
  PE_LAUNCH(pe::grid1d(grad_output.size()), idx::kThreads, 0, avgpool_backward_kernel)(
      pg, px, g, a);
  PE_LAUNCHED("avgpool_backward_kernel");
}

void adaptive_avgpool2d_forward(const Array& x, Array& y) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  const Geom g = adaptive_geom(x, y, "x", "y");
  if (y.size() == 0) return;
  PE_LAUNCH(pe::grid1d(y.size()), idx::kThreads, 0, adaptive_kernel)(px, py_, g);
  PE_LAUNCHED("adaptive_kernel");
}

void adaptive_avgpool2d_backward(const Array& grad_output, Array& grad_input) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* px = pe::out_ptr(grad_input, "grad_input");
  const Geom g = adaptive_geom(grad_input, grad_output, "grad_input", "grad_output");
  zero(grad_input, "adaptive_avgpool2d_backward");
  if (grad_output.size() == 0) return;
  PE_LAUNCH(pe::grid1d(grad_output.size()), idx::kThreads, 0, adaptive_backward_kernel)(pg, px, g);
  PE_LAUNCHED("adaptive_backward_kernel");
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("maxpool2d_forward", &maxpool2d_forward, py::arg("x"), py::arg("y"), py::arg("indices"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("ceil_mode"));
  m.def("maxpool2d_backward", &maxpool2d_backward, py::arg("grad_output"), py::arg("indices"),
        py::arg("grad_input"));
  m.def("avgpool2d_forward", &avgpool2d_forward, py::arg("x"), py::arg("y"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"),
        py::arg("count_include_pad"), py::arg("divisor_override"));
  m.def("avgpool2d_backward", &avgpool2d_backward, py::arg("grad_output"), py::arg("grad_input"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"),
        py::arg("count_include_pad"), py::arg("divisor_override"));
  m.def("adaptive_avgpool2d_forward", &adaptive_avgpool2d_forward, py::arg("x"), py::arg("y"));
  m.def("adaptive_avgpool2d_backward", &adaptive_avgpool2d_backward, py::arg("grad_output"),
        py::arg("grad_input"));
}
