// Resampling over NCHW float32 planes: nearest and bilinear upsampling (PyTorch's interpolate
// coordinate rules), 2-D padding (constant, reflect, replicate) and pixel shuffle, forward and
// backward.
// Each kernel maps output rows and columns to source indices once, in per-axis tables, then runs
// one OpenMP iteration per (n, c) plane; backward scatters into its own plane, so no atomics.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "twin_checks.h"

namespace {

using pe::Shape;

constexpr int64_t kParallelGrain = 1 << 14;

using pe::twin::Planes;  // shapes checked once for both devices
using pe::twin::check_resample;
using pe::twin::plane_geom;

// PyTorch's compute_scales_value: 1/scale_factor when one was given, else in/out, in float.
float scale_value(double scale_factor, int64_t in, int64_t out) {
  PE_CHECK(std::isfinite(scale_factor), "scale_factor must be finite, got ", scale_factor);
  PE_CHECK(!(scale_factor > 0.) || 1.0 / scale_factor <= 1e30,
           "scale_factor is too small: ", scale_factor);
  return scale_factor > 0. ? static_cast<float>(1.0 / scale_factor)
                           : static_cast<float>(in) / static_cast<float>(out);
}

// floor(src) as an index clamped to [0, last]: the source coordinate can exceed int64 (a tiny
// scale factor on the raw binding), where a plain cast is undefined and writes anywhere.
inline int64_t floor_index(float src, int64_t last) {
  const float f = std::floor(src);
  if (!(f < static_cast<float>(last))) return last;
  return f > 0.f ? static_cast<int64_t>(f) : 0;
}

// PyTorch's nearest_idx: exact integer paths for 1x and 2x, else floor(dst * scale) clamped.
std::vector<int64_t> nearest_table(int64_t in, int64_t out, double scale_factor) {
  std::vector<int64_t> t(out);
  const float scale = scale_value(scale_factor, in, out);
  for (int64_t o = 0; o < out; ++o) {
    if (out == in) {
      t[o] = o;
    } else if (out == 2 * in) {
      t[o] = o >> 1;
    } else {
      t[o] = floor_index(static_cast<float>(o) * scale, in - 1);
    }
  }
  return t;
}

struct Linear {
  std::vector<int64_t> i0, i1;
  std::vector<float> l0, l1;
};

// PyTorch's area_pixel_compute_source_index (half-pixel centres clamped at 0, or corner
// alignment) and guard_index_and_lambda; the right neighbour is clamped to the last pixel.
Linear linear_table(int64_t in, int64_t out, bool align_corners, double scale_factor) {
  Linear t{std::vector<int64_t>(out), std::vector<int64_t>(out), std::vector<float>(out),
           std::vector<float>(out)};
  float scale;
  if (align_corners) {
    scale = out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.f;
  } else {
    scale = scale_value(scale_factor, in, out);
  }
  for (int64_t o = 0; o < out; ++o) {
    float src = align_corners ? scale * static_cast<float>(o)
                              : scale * (static_cast<float>(o) + 0.5f) - 0.5f;
    if (src < 0.f) src = 0.f;
    const int64_t i = floor_index(src, in - 1);
    const float l = std::min(std::max(src - static_cast<float>(i), 0.f), 1.f);
    t.i0[o] = i;
    t.i1[o] = i + (i < in - 1 ? 1 : 0);
    t.l0[o] = 1.f - l;
    t.l1[o] = l;
  }
  return t;
}

PE_MULTIVERSION void gather_plane(const float* __restrict x, float* __restrict y, const Planes& g,
                                  const int64_t* __restrict th, const int64_t* __restrict tw) {
  for (int64_t oh = 0; oh < g.OH; ++oh) {
    const float* row = x + th[oh] * g.W;
    float* yr = y + oh * g.OW;
    for (int64_t ow = 0; ow < g.OW; ++ow) yr[ow] = row[tw[ow]];
  }
}

// x (N,C,H,W) -> y (N,C,OH,OW); scale_h/scale_w: the user's scale factors, or 0 for none.
void upsample_nearest2d_forward(const py::array& x, py::array& y, double scale_h,
                                double scale_w) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  const Planes g = plane_geom(x, y, "x", "y");
  check_resample(g);
  if (g.planes == 0) return;  // empty planes may still be huge: no tables for them
  const auto th = nearest_table(g.H, g.OH, scale_h), tw = nearest_table(g.W, g.OW, scale_w);
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (g.planes * out_plane >= kParallelGrain)
  for (int64_t c = 0; c < g.planes; ++c) {
    gather_plane(px + c * in_plane, py_ + c * out_plane, g, th.data(), tw.data());
  }
}

void upsample_nearest2d_backward(const py::array& grad_output, py::array& grad_input,
                                 double scale_h, double scale_w) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* px = pe::out_ptr(grad_input, "grad_input");
  const Planes g = plane_geom(grad_input, grad_output, "grad_input", "grad_output");
  check_resample(g);
  if (g.planes == 0) return;  // empty planes may still be huge: no tables for them
  const auto th = nearest_table(g.H, g.OH, scale_h), tw = nearest_table(g.W, g.OW, scale_w);
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (g.planes * out_plane >= kParallelGrain)
  for (int64_t c = 0; c < g.planes; ++c) {
    float* gx = px + c * in_plane;
    const float* gy = pg + c * out_plane;
    std::memset(gx, 0, sizeof(float) * in_plane);
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      float* row = gx + th[oh] * g.W;
      for (int64_t ow = 0; ow < g.OW; ++ow) row[tw[ow]] += gy[oh * g.OW + ow];
    }
  }
}

// Separable: each input row is interpolated horizontally once into tmp (H, OW), then every
// output row blends two tmp rows, so the gathers run H*OW times instead of 4*OH*OW times.
PE_MULTIVERSION void bilinear_plane(const float* __restrict x, float* __restrict y,
                                    float* __restrict tmp, const Planes& g, const Linear& th,
                                    const Linear& tw) {
  const int64_t* w0 = tw.i0.data();
  const int64_t* w1 = tw.i1.data();
  const float* a0 = tw.l0.data();
  const float* a1 = tw.l1.data();
  for (int64_t h = 0; h < g.H; ++h) {
    const float* row = x + h * g.W;
    float* t = tmp + h * g.OW;
    for (int64_t ow = 0; ow < g.OW; ++ow) t[ow] = a0[ow] * row[w0[ow]] + a1[ow] * row[w1[ow]];
  }
  for (int64_t oh = 0; oh < g.OH; ++oh) {
    const float* t0 = tmp + th.i0[oh] * g.OW;
    const float* t1 = tmp + th.i1[oh] * g.OW;
    const float b0 = th.l0[oh], b1 = th.l1[oh];
    float* yr = y + oh * g.OW;
    for (int64_t ow = 0; ow < g.OW; ++ow) yr[ow] = b0 * t0[ow] + b1 * t1[ow];
  }
}

// The transpose of bilinear_plane: rows of grad_output are spread vertically into tmp, then
// each tmp row is scattered horizontally into its grad_input row.
PE_MULTIVERSION void bilinear_plane_backward(const float* __restrict gy, float* __restrict gx,
                                             float* __restrict tmp, const Planes& g,
                                             const Linear& th, const Linear& tw) {
  std::memset(tmp, 0, sizeof(float) * g.H * g.OW);
  for (int64_t oh = 0; oh < g.OH; ++oh) {
    float* t0 = tmp + th.i0[oh] * g.OW;
    float* t1 = tmp + th.i1[oh] * g.OW;
    const float b0 = th.l0[oh], b1 = th.l1[oh];
    const float* gr = gy + oh * g.OW;
    for (int64_t ow = 0; ow < g.OW; ++ow) t0[ow] += b0 * gr[ow];
    for (int64_t ow = 0; ow < g.OW; ++ow) t1[ow] += b1 * gr[ow];
  }
  std::memset(gx, 0, sizeof(float) * g.H * g.W);
  for (int64_t h = 0; h < g.H; ++h) {
    const float* t = tmp + h * g.OW;
    float* row = gx + h * g.W;
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      row[tw.i0[ow]] += tw.l0[ow] * t[ow];
      row[tw.i1[ow]] += tw.l1[ow] * t[ow];
    }
  }
}

void upsample_bilinear2d_forward(const py::array& x, py::array& y, bool align_corners,
                                 double scale_h, double scale_w) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  const Planes g = plane_geom(x, y, "x", "y");
  check_resample(g);
  if (g.planes == 0) return;  // empty planes may still be huge: no tables for them
  const Linear th = linear_table(g.H, g.OH, align_corners, scale_h);
  const Linear tw = linear_table(g.W, g.OW, align_corners, scale_w);
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  const bool par = g.planes * out_plane >= kParallelGrain;
  // Per-thread row buffers allocated here: a bad_alloc inside the parallel region would
  // terminate the process instead of raising MemoryError.
  const int64_t nt = par ? omp_get_max_threads() : 1, tsize = g.H * g.OW;
  std::vector<float> tmps(pe::mul(nt, tsize));
  py::gil_scoped_release nogil;
#pragma omp parallel num_threads(nt) if (par)
  {
    float* tmp = tmps.data() + omp_get_thread_num() * tsize;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < g.planes; ++c) {
      bilinear_plane(px + c * in_plane, py_ + c * out_plane, tmp, g, th, tw);
    }
  }
}

void upsample_bilinear2d_backward(const py::array& grad_output, py::array& grad_input,
                                  bool align_corners, double scale_h, double scale_w) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* px = pe::out_ptr(grad_input, "grad_input");
  const Planes g = plane_geom(grad_input, grad_output, "grad_input", "grad_output");
  check_resample(g);
  if (g.planes == 0) return;  // empty planes may still be huge: no tables for them
  const Linear th = linear_table(g.H, g.OH, align_corners, scale_h);
  const Linear tw = linear_table(g.W, g.OW, align_corners, scale_w);
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  const bool par = g.planes * out_plane >= kParallelGrain;
  // Per-thread row buffers allocated here: a bad_alloc inside the parallel region would
  // terminate the process instead of raising MemoryError.
  const int64_t nt = par ? omp_get_max_threads() : 1, tsize = g.H * g.OW;
  std::vector<float> tmps(pe::mul(nt, tsize));
  py::gil_scoped_release nogil;
#pragma omp parallel num_threads(nt) if (par)
  {
    float* tmp = tmps.data() + omp_get_thread_num() * tsize;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < g.planes; ++c) {
      bilinear_plane_backward(pg + c * out_plane, px + c * in_plane, tmp, g, th, tw);
    }
  }
}

enum class PadMode { Constant, Reflect, Replicate };

PadMode parse_pad_mode(const std::string& mode) {
  if (mode == "constant") return PadMode::Constant;
  if (mode == "reflect") return PadMode::Reflect;
  if (mode == "replicate") return PadMode::Replicate;
  throw std::invalid_argument("unknown padding mode '" + mode +
                              "' (expected constant, reflect or replicate)");
}

// Source index of each output position along one axis padded by (lo, hi); -1 marks a constant
// fill. Negative pads crop, which the same formula covers.
std::vector<int64_t> pad_table(int64_t in, int64_t lo, int64_t hi, PadMode mode) {
  const int64_t out = pe::add(pe::add(in, lo), hi);
  std::vector<int64_t> t(std::max<int64_t>(out, 0));
  for (int64_t o = 0; o < out; ++o) {
    int64_t s = o - lo;
    if (mode == PadMode::Constant) {
      s = (s >= 0 && s < in) ? s : -1;
    } else if (mode == PadMode::Reflect) {
      s = s < 0 ? -s : s;
      s = s >= in ? 2 * (in - 1) - s : s;
    } else {
      s = std::min(std::max<int64_t>(s, 0), in - 1);
    }
    t[o] = s;
  }
  return t;
}

struct PadPlan {
  Planes g;
  std::vector<int64_t> th, tw;
};

// x is the unpadded tensor (N,C,H,W), y the padded one (N,C,H+top+bottom,W+left+right).
PadPlan pad_plan(const py::array& x, const py::array& y, const std::array<int64_t, 4>& pad,
                 PadMode mode, const char* xn, const char* yn) {
  const Planes g = pe::twin::pad_geom(x, y, pad, mode == PadMode::Reflect,
                                      mode == PadMode::Replicate, xn, yn);
  // An empty padded tensor needs no tables, and its other dims may be huge: (1, 1, 2**31, 0).
  if (pe::mul(g.planes, pe::mul(g.OH, g.OW)) == 0) return {g, {}, {}};
  return {g, pad_table(g.H, pad[2], pad[3], mode), pad_table(g.W, pad[0], pad[1], mode)};
}

void pad2d_forward(const py::array& x, py::array& y, std::array<int64_t, 4> pad,
                   const std::string& mode, double value) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  const PadPlan p = pad_plan(x, y, pad, parse_pad_mode(mode), "x", "y");
  if (y.size() == 0) return;
  const Planes& g = p.g;
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  const float v = static_cast<float>(value);
  const int64_t* th = p.th.data();
  const int64_t* tw = p.tw.data();
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (g.planes * out_plane >= kParallelGrain)
  for (int64_t c = 0; c < g.planes; ++c) {
    const float* xp = px + c * in_plane;
    float* yp = py_ + c * out_plane;
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      float* yr = yp + oh * g.OW;
      if (th[oh] < 0) {
        std::fill(yr, yr + g.OW, v);
        continue;
      }
      const float* row = xp + th[oh] * g.W;
      for (int64_t ow = 0; ow < g.OW; ++ow) yr[ow] = tw[ow] < 0 ? v : row[tw[ow]];
    }
  }
}

// grad_output (N,C,OH,OW); grad_input (N,C,H,W) is overwritten.
void pad2d_backward(const py::array& grad_output, py::array& grad_input,
                    std::array<int64_t, 4> pad, const std::string& mode) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* px = pe::out_ptr(grad_input, "grad_input");
  const PadPlan p = pad_plan(grad_input, grad_output, pad, parse_pad_mode(mode), "grad_input",
                             "grad_output");
  if (grad_output.size() == 0) return std::fill(px, px + grad_input.size(), 0.f);
  const Planes& g = p.g;
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  const int64_t* th = p.th.data();
  const int64_t* tw = p.tw.data();
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (g.planes * out_plane >= kParallelGrain)
  for (int64_t c = 0; c < g.planes; ++c) {
    float* gx = px + c * in_plane;
    const float* gy = pg + c * out_plane;
    std::memset(gx, 0, sizeof(float) * in_plane);
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      if (th[oh] < 0) continue;
      float* row = gx + th[oh] * g.W;
      const float* gr = gy + oh * g.OW;
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        if (tw[ow] >= 0) row[tw[ow]] += gr[ow];
      }
    }
  }
}

// Pixel shuffle (Shi et al. 2016): x (N, C*r*r, H, W) -> y (N, C, H*r, W*r) with
// y[n, c, h*r + i, w*r + j] = x[n, c*r*r + i*r + j, h, w]. The map is a permutation, so its
// backward is the inverse permutation (pixel unshuffle), which is also F.pixel_unshuffle's
// forward: `to_space` picks the direction. One OpenMP iteration per (n, c) output plane.
struct Shuffle {
  int64_t planes, r, H, W;  // planes = N * C of the (N, C, H*r, W*r) side
};

// Python checks the factor first; this guards a direct call with a huge one.
int64_t shuffle_mul(int64_t a, int64_t b) {
  int64_t out;
  PE_CHECK(!__builtin_mul_overflow(a, b, &out), "pixel shuffle size ", a, " * ", b,
           " overflows int64");
  return out;
}

Shuffle shuffle_geom(const py::array& lo, const py::array& hi, int64_t r, const char* lon,
                     const char* hin) {
  pe::check_ndim(lo, 4, lon);
  pe::check_ndim(hi, 4, hin);
  PE_CHECK(r >= 1, "pixel shuffle factor must be >= 1, got ", r);
  const Shape ls = pe::shape_of(lo), hs = pe::shape_of(hi);
  const int64_t rr = shuffle_mul(r, r);
  const Shape want = {ls[0], ls[1] / rr, shuffle_mul(ls[2], r), shuffle_mul(ls[3], r)};
  PE_CHECK(ls[1] % rr == 0 && hs == want, lon, " ", pe::shape_str(ls), " and ", hin, " ",
           pe::shape_str(hs), " do not match a pixel shuffle by ", r);
  return {ls[0] * want[1], r, ls[2], ls[3]};
}

void shuffle_run(const float* src, float* dst, const Shuffle& g, bool to_space) {
  const int64_t r = g.r, OW = g.W * r, plane = g.H * g.W * r * r;
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (g.planes * plane >= kParallelGrain)
  for (int64_t p = 0; p < g.planes; ++p) {
    const int64_t base = p * plane;
    for (int64_t i = 0; i < r; ++i) {
      for (int64_t j = 0; j < r; ++j) {
        const int64_t chan = base + (i * r + j) * g.H * g.W;
        for (int64_t h = 0; h < g.H; ++h) {
          const int64_t lo_row = chan + h * g.W;
          const int64_t hi_row = base + (h * r + i) * OW + j;
          if (to_space) {
            for (int64_t w = 0; w < g.W; ++w) dst[hi_row + w * r] = src[lo_row + w];
          } else {
            for (int64_t w = 0; w < g.W; ++w) dst[lo_row + w] = src[hi_row + w * r];
          }
        }
      }
    }
  }
}

// x (N, C*r*r, H, W) -> y (N, C, H*r, W*r)
void pixel_shuffle_forward(const py::array& x, py::array& y, int64_t upscale_factor) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  shuffle_run(px, py_, shuffle_geom(x, y, upscale_factor, "x", "y"), true);
}

// grad_output (N, C, H*r, W*r) -> grad_input (N, C*r*r, H, W), overwritten.
void pixel_shuffle_backward(const py::array& grad_output, py::array& grad_input,
                            int64_t upscale_factor) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* px = pe::out_ptr(grad_input, "grad_input");
  const Shuffle g =
      shuffle_geom(grad_input, grad_output, upscale_factor, "grad_input", "grad_output");
  shuffle_run(pg, px, g, false);
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
