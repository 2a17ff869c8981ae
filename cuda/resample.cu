// Resampling over NCHW float32 planes with the names, signatures and coordinate rules of
// csrc/resample.cpp: nearest and bilinear upsampling, 2-D padding (constant, reflect,
// replicate) and pixel shuffle, forward and backward. Source indices are per-axis tables built on the host from
// idx::nearest_index / linear_index / pad_source (tested on the host) and uploaded once per call;
// forwards gather one output element per thread, backwards scatter with atomicAdd into the zeroed
// input gradient (several outputs share a source).
#include <array>

#include "common.cuh"
#include "../csrc/twin_checks.h"

namespace {

using pe::Array;
using pe::Shape;
namespace idx = pe::idx;

using pe::twin::Planes;  // shapes checked once for both devices
using pe::twin::check_resample;
using pe::twin::plane_geom;

// Per-axis tables on the device: rows then columns; for linear, the second taps and weights.
struct Tables {
  Array ind, wts;  // int64 (2*OH + 2*OW or OH + OW), float32 (OH + OW) or empty
  const int64_t* th() const { return ind.ptr<int64_t>(); }
};

Array upload(const std::vector<int64_t>& v) {
  Array a = Array::empty({int64_t(v.size())}, pe::DType::I64);
  pe::copy_to_device(a.data(), v.data(), v.size() * sizeof(int64_t));
  return a;
}
Array upload(const std::vector<float>& v) {
  Array a = Array::empty({int64_t(v.size())}, pe::DType::F32);
  pe::copy_to_device(a.data(), v.data(), v.size() * sizeof(float));
  return a;
}

Array nearest_tables(const Planes& g, double scale_h, double scale_w) {
  std::vector<int64_t> t(g.OH + g.OW);
  const float sh = idx::resample_scale(scale_h, g.H, g.OH), sw = idx::resample_scale(scale_w, g.W, g.OW);
  for (int64_t o = 0; o < g.OH; ++o) t[o] = idx::nearest_index(o, g.H, g.OH, sh);
  for (int64_t o = 0; o < g.OW; ++o) t[g.OH + o] = idx::nearest_index(o, g.W, g.OW, sw);
  return upload(t);
}

// ind: i0 rows, i0 cols, i1 rows, i1 cols; wts: lambda rows, lambda cols.
Tables linear_tables(const Planes& g, bool align_corners, double scale_h, double scale_w) {
  const int64_t L = g.OH + g.OW;
  std::vector<int64_t> t(2 * L);
  std::vector<float> l(L);
  const float sh = idx::resample_scale(scale_h, g.H, g.OH), sw = idx::resample_scale(scale_w, g.W, g.OW);
  for (int64_t o = 0; o < g.OH; ++o)
    idx::linear_index(o, g.H, g.OH, align_corners, sh, t[o], t[L + o], l[o]);
  for (int64_t o = 0; o < g.OW; ++o)
    idx::linear_index(o, g.W, g.OW, align_corners, sw, t[g.OH + o], t[L + g.OH + o], l[g.OH + o]);
  return {upload(t), upload(l)};
}

__global__ void nearest_kernel(const float* __restrict__ x, float* __restrict__ y,
                               const int64_t* __restrict__ t, Planes g, bool backward) {
  const int64_t n = g.planes * g.OH * g.OW;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, c = i / (g.OH * g.OW);
    const int64_t src = c * g.H * g.W + t[oh] * g.W + t[g.OH + ow];
    if (backward) atomicAdd(y + src, x[i]);  // x: grad_output, y: grad_input
    else y[i] = x[src];
  }
}

__global__ void bilinear_kernel(const float* __restrict__ x, float* __restrict__ y,
                                const int64_t* __restrict__ t, const float* __restrict__ l,
                                Planes g, bool backward) {
  const int64_t n = g.planes * g.OH * g.OW, L = g.OH + g.OW;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, c = i / (g.OH * g.OW);
    const int64_t h0 = t[oh], w0 = t[g.OH + ow], h1 = t[L + oh], w1 = t[L + g.OH + ow];
    const float lh = l[oh], lw = l[g.OH + ow];
    const int64_t base = c * g.H * g.W;
    const float a00 = (1.f - lh) * (1.f - lw), a01 = (1.f - lh) * lw, a10 = lh * (1.f - lw),
                a11 = lh * lw;
    if (backward) {
      const float gv = x[i];
      atomicAdd(y + base + h0 * g.W + w0, a00 * gv);
      atomicAdd(y + base + h0 * g.W + w1, a01 * gv);
      atomicAdd(y + base + h1 * g.W + w0, a10 * gv);
      atomicAdd(y + base + h1 * g.W + w1, a11 * gv);
    } else {
      const float* p = x + base;
      y[i] = a00 * p[h0 * g.W + w0] + a01 * p[h0 * g.W + w1] + a10 * p[h1 * g.W + w0] +
             a11 * p[h1 * g.W + w1];
    }
  }
}

void zero(Array& a, const char* what) {
  if (a.nbytes()) PE_CUDA(cudaMemsetAsync(a.data(), 0, a.nbytes(), 0), what);
}

void upsample_nearest2d_forward(const Array& x, Array& y, double scale_h, double scale_w) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  const Planes g = plane_geom(x, y, "x", "y");
  check_resample(g);
  const Array t = nearest_tables(g, scale_h, scale_w);
  PE_LAUNCH(pe::grid1d(y.size()), idx::kThreads, 0, nearest_kernel)(
      px, py_, t.ptr<int64_t>(), g, false);
  PE_LAUNCHED("nearest_kernel");
}

void upsample_nearest2d_backward(const Array& grad_output, Array& grad_input, double scale_h,
                                 double scale_w) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* px = pe::out_ptr(grad_input, "grad_input");
  const Planes g = plane_geom(grad_input, grad_output, "grad_input", "grad_output");
  check_resample(g);
  const Array t = nearest_tables(g, scale_h, scale_w);
  zero(grad_input, "upsample_nearest2d_backward");
  PE_LAUNCH(pe::grid1d(grad_output.size()), idx::kThreads, 0, nearest_kernel)(
      pg, px, t.ptr<int64_t>(), g, true);
  PE_LAUNCHED("nearest_kernel (backward)");
}

void upsample_bilinear2d_forward(const Array& x, Array& y, bool align_corners, double scale_h,
                                 double scale_w) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  const Planes g = plane_geom(x, y, "x", "y");
  check_resample(g);
  const Tables t = linear_tables(g, align_corners, scale_h, scale_w);
  PE_LAUNCH(pe::grid1d(y.size()), idx::kThreads, 0, bilinear_kernel)(
      px, py_, t.th(), t.wts.ptr<float>(), g, false);
  PE_LAUNCHED("bilinear_kernel");
}

void upsample_bilinear2d_backward(const Array& grad_output, Array& grad_input, bool align_corners,
                                  double scale_h, double scale_w) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* px = pe::out_ptr(grad_input, "grad_input");
  const Planes g = plane_geom(grad_input, grad_output, "grad_input", "grad_output");
  check_resample(g);
  const Tables t = linear_tables(g, align_corners, scale_h, scale_w);
  zero(grad_input, "upsample_bilinear2d_backward");
  PE_LAUNCH(pe::grid1d(grad_output.size()), idx::kThreads, 0, bilinear_kernel)(
      pg, px, t.th(), t.wts.ptr<float>(), g, true);
  PE_LAUNCHED("bilinear_kernel (backward)");
}

int parse_pad_mode(const std::string& mode) {
  if (mode == "constant") return idx::kPadZeros;
  if (mode == "reflect") return idx::kPadReflect;
  if (mode == "replicate") return idx::kPadReplicate;
  throw std::invalid_argument("unknown padding mode '" + mode +
                              "' (expected constant, reflect or replicate)");
}

// x is the unpadded tensor (N,C,H,W), y the padded one; pad = (left, right, top, bottom), negative
// pads crop. Tables: source row of each output row, then source column of each output column.
Array pad_tables(const Array& x, const Array& y, const std::array<int64_t, 4>& pad, int mode,
                 const char* xn, const char* yn, Planes& g) {
  g = pe::twin::pad_geom(x, y, pad, mode == idx::kPadReflect, mode == idx::kPadReplicate, xn, yn);
  const int64_t OH = g.OH, OW = g.OW;
  std::vector<int64_t> t(OH + OW);
  for (int64_t o = 0; o < OH; ++o) t[o] = idx::pad_source(o, pad[2], g.H, mode);
  for (int64_t o = 0; o < OW; ++o) t[OH + o] = idx::pad_source(o, pad[0], g.W, mode);
  return upload(t);
}

__global__ void pad_kernel(const float* __restrict__ x, float* __restrict__ y,
                           const int64_t* __restrict__ t, Planes g, float value, bool backward) {
  const int64_t n = g.planes * g.OH * g.OW;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, c = i / (g.OH * g.OW);
    const int64_t h = t[oh], w = t[g.OH + ow];
    const bool fill = h < 0 || w < 0;
    const int64_t src = c * g.H * g.W + h * g.W + w;
    if (backward) {
      if (!fill) atomicAdd(y + src, x[i]);  // x: grad_output, y: grad_input
    } else {
      y[i] = fill ? value : x[src];
    }
  }
}

void pad2d_forward(const Array& x, Array& y, std::array<int64_t, 4> pad, const std::string& mode,
                   double value) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  Planes g;
  const Array t = pad_tables(x, y, pad, parse_pad_mode(mode), "x", "y", g);
  if (y.size() == 0) return;
  PE_LAUNCH(pe::grid1d(y.size()), idx::kThreads, 0, pad_kernel)(
      px, py_, t.ptr<int64_t>(), g, static_cast<float>(value), false);
  PE_LAUNCHED("pad_kernel");
}

void pad2d_backward(const Array& grad_output, Array& grad_input, std::array<int64_t, 4> pad,
                    const std::string& mode) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* px = pe::out_ptr(grad_input, "grad_input");
  Planes g;
  const Array t = pad_tables(grad_input, grad_output, pad, parse_pad_mode(mode), "grad_input",
                             "grad_output", g);
  zero(grad_input, "pad2d_backward");
  if (grad_output.size() == 0) return;
  PE_LAUNCH(pe::grid1d(grad_output.size()), idx::kThreads, 0, pad_kernel)(
      pg, px, t.ptr<int64_t>(), g, 0.f, true);
  PE_LAUNCHED("pad_kernel (backward)");
}

// Pixel shuffle: lo (N, C*r*r, H, W) <-> hi (N, C, H*r, W*r) with
// hi[n, c, h*r + i, w*r + j] = lo[n, c*r*r + i*r + j, h, w]; a permutation, so each direction
// is a plain gather (one thread per element of the side written) and needs no atomics.
struct Shuffle {
  int64_t planes, r, H, W;  // planes = N * C of the hi side
};

Shuffle shuffle_geom(const Array& lo, const Array& hi, int64_t r, const char* lon,
                     const char* hin) {
  pe::check_ndim(lo, 4, lon);
  pe::check_ndim(hi, 4, hin);
  PE_CHECK(r >= 1, "pixel shuffle factor must be >= 1, got ", r);
  const Shape &ls = lo.shape, &hs = hi.shape;
  int64_t rr, oh, ow;
  PE_CHECK(!__builtin_mul_overflow(r, r, &rr) && !__builtin_mul_overflow(ls[2], r, &oh) &&
               !__builtin_mul_overflow(ls[3], r, &ow),
           "pixel shuffle size ", pe::shape_str(ls), " * ", r, " overflows int64");
  const Shape want = {ls[0], ls[1] / rr, oh, ow};
  PE_CHECK(ls[1] % rr == 0 && hs == want, lon, " ", pe::shape_str(ls), " and ", hin, " ",
           pe::shape_str(hs), " do not match a pixel shuffle by ", r);
  return {ls[0] * want[1], r, ls[2], ls[3]};
}

// to_space: i runs over hi (dst = hi); else over lo (dst = lo).
__global__ void shuffle_kernel(const float* __restrict__ src, float* __restrict__ dst, Shuffle g,
                               bool to_space) {
  const int64_t r = g.r, OW = g.W * r, OH = g.H * r, n = g.planes * OH * OW;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t hi, lo;
    if (to_space) {
      const int64_t x = i % OW, y = (i / OW) % OH, p = i / (OH * OW);
      hi = i;
      lo = ((p * r + y % r) * r + x % r) * g.H * g.W + (y / r) * g.W + x / r;
    } else {
      const int64_t w = i % g.W, h = (i / g.W) % g.H, q = i / (g.H * g.W);
      const int64_t p = q / (r * r), ij = q % (r * r);
      lo = i;
      hi = (p * OH + h * r + ij / r) * OW + w * r + ij % r;
    }
    if (to_space) {
      dst[hi] = src[lo];
    } else {
      dst[lo] = src[hi];
    }
  }
}

void pixel_shuffle_forward(const Array& x, Array& y, int64_t upscale_factor) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  const Shuffle g = shuffle_geom(x, y, upscale_factor, "x", "y");
  if (y.size() == 0) return;
  PE_LAUNCH(pe::grid1d(y.size()), idx::kThreads, 0, shuffle_kernel)(px, py_, g, true);
  PE_LAUNCHED("shuffle_kernel");
}

void pixel_shuffle_backward(const Array& grad_output, Array& grad_input, int64_t upscale_factor) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* px = pe::out_ptr(grad_input, "grad_input");
  const Shuffle g =
      shuffle_geom(grad_input, grad_output, upscale_factor, "grad_input", "grad_output");
  if (grad_input.size() == 0) return;
  PE_LAUNCH(pe::grid1d(grad_input.size()), idx::kThreads, 0, shuffle_kernel)(pg, px, g, false);
  PE_LAUNCHED("shuffle_kernel (backward)");
}

}  // namespace

void bind_resample(py::module_& m) {
  m.def("upsample_nearest2d_forward", &upsample_nearest2d_forward, py::arg("x"), py::arg("y"),
        py::arg("scale_h"), py::arg("scale_w"));
  m.def("upsample_nearest2d_backward", &upsample_nearest2d_backward, py::arg("grad_output"),
        py::arg("grad_input"), py::arg("scale_h"), py::arg("scale_w"));
  m.def("upsample_bilinear2d_forward", &upsample_bilinear2d_forward, py::arg("x"), py::arg("y"),
        py::arg("align_corners"), py::arg("scale_h"), py::arg("scale_w"));
  m.def("upsample_bilinear2d_backward", &upsample_bilinear2d_backward, py::arg("grad_output"),
        py::arg("grad_input"), py::arg("align_corners"), py::arg("scale_h"), py::arg("scale_w"));
  m.def("pad2d_forward", &pad2d_forward, py::arg("x"), py::arg("y"), py::arg("pad"),
        py::arg("mode"), py::arg("value"));
  m.def("pad2d_backward", &pad2d_backward, py::arg("grad_output"), py::arg("grad_input"),
        py::arg("pad"), py::arg("mode"));
  m.def("pixel_shuffle_forward", &pixel_shuffle_forward, py::arg("x"), py::arg("y"),
        py::arg("upscale_factor"));
  m.def("pixel_shuffle_backward", &pixel_shuffle_backward, py::arg("grad_output"),
        py::arg("grad_input"), py::arg("upscale_factor"));
}
