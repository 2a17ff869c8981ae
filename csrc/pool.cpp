// Pooling over NCHW float32 planes: max pooling (with PyTorch's flat in-plane argmax indices),
// average pooling and adaptive average pooling, forward and backward.
// Every kernel runs one OpenMP iteration per (n, c) plane: planes are independent, so the
// backward scatters need no atomics, and a plane's gradient stays in cache while it accumulates.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"
#include "twin_checks.h"

namespace {

using pe::Shape;
using Pair = pe::twin::Pair;
using Geom = pe::twin::PoolGeom;  // shapes and parameters checked once for both devices
using pe::twin::adaptive_geom;
using pe::twin::pool_geom;

// Below this many input elements a kernel stays on one thread: waking the team costs more.
constexpr int64_t kParallelGrain = 1 << 14;

// Window [lo, hi) of output o along one axis, lo moved onto the first in-range tap (closed
// form: a huge padding with dilation 1 would otherwise step through every padded position).
inline void max_window(int64_t o, int64_t s, int64_t p, int64_t k, int64_t d, int64_t n,
                       int64_t& lo, int64_t& hi) {
  lo = o * s - p;
  hi = std::min(lo + (k - 1) * d + 1, n);
  if (lo < 0) {
    const int64_t r = (-lo) % d;
    lo = r == 0 ? 0 : d - r;
  }
}

// Number of taps ih = lo, lo + d, ... below hi; stepping ih past hi could overflow for a
// dilation near 2**63, so the tap loops count taps instead.
inline int64_t tap_count(int64_t lo, int64_t hi, int64_t d) {
  return lo < hi ? (hi - lo - 1) / d + 1 : 0;
}

// Output columns [lo, hi) whose whole window lies inside [0, n): for them the taps need no
// bounds checks, so the tap loops below run branch-free over a contiguous range of outputs.
inline void interior(int64_t out, int64_t s, int64_t p, int64_t k, int64_t d, int64_t n,
                     int64_t& lo, int64_t& hi) {
  lo = std::min(p / s + (p % s != 0), out);
  const int64_t num = n - 1 + p - (k - 1) * d;
  hi = num < 0 ? 0 : std::min(num / s + 1, out);
  hi = std::max(hi, lo);
}

// Ties keep the first maximum in row-major window order; a NaN replaces anything, as in
// PyTorch's CPU kernel (so the last NaN of a window wins). A window that holds no input element
// (possible only with large dilation) yields -inf and index -1, which backward skips.
inline void max_one(const float* __restrict x, const Geom& g, int64_t h0, int64_t h1, int64_t ow,
                    float& m, int64_t& mi) {
  int64_t w0, w1;
  max_window(ow, g.sw, g.pw, g.kw, g.dw, g.W, w0, w1);
  m = -std::numeric_limits<float>::infinity();
  mi = (h0 < h1 && w0 < w1) ? h0 * g.W + w0 : -1;
  const int64_t nh = tap_count(h0, h1, g.dh), nw = tap_count(w0, w1, g.dw);
  for (int64_t th = 0; th < nh; ++th) {
    const int64_t ih = h0 + th * g.dh;
    for (int64_t tw = 0; tw < nw; ++tw) {
      const int64_t iw = w0 + tw * g.dw;
      const float v = x[ih * g.W + iw];
      const bool u = v > m || v != v;
      m = u ? v : m;
      mi = u ? ih * g.W + iw : mi;
    }
  }
}

// Interior columns tap by tap: each tap is one pass over the output row (kept in L1), updating
// the running max and index with selects, which vectorises. Strided taps are first copied into
// `lane` (OW floats of scratch) because GCC will not vectorise the select loop over a strided
// load; SW > 0 fixes the stride at compile time for the common strides.
template <int64_t SW>
PE_MULTIVERSION void max_taps(const float* __restrict x, float* __restrict yr,
                              int64_t* __restrict ir, float* __restrict lane, const Geom& g,
                              int64_t h0, int64_t h1, int64_t lo, int64_t hi) {
  // Without interior columns the tap loop would still spin kw times (2**40 on the raw binding).
  if (lo >= hi) return;
  const int64_t sw = SW > 0 ? SW : g.sw, W = g.W;
  for (int64_t ow = lo; ow < hi; ++ow) {
    yr[ow] = -std::numeric_limits<float>::infinity();
    ir[ow] = h0 < h1 ? h0 * W + ow * sw - g.pw : -1;
  }
  const int64_t nh = tap_count(h0, h1, g.dh);
  for (int64_t th = 0; th < nh; ++th) {
    const int64_t ih = h0 + th * g.dh;
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t base = ih * W + j * g.dw - g.pw;
      const float* src = x + base;
      if (SW != 1) {
        for (int64_t ow = lo; ow < hi; ++ow) lane[ow] = src[ow * sw];
        src = lane;
      }
      for (int64_t ow = lo; ow < hi; ++ow) {
        const float v = src[ow];
        const bool u = v > yr[ow] || v != v;
        yr[ow] = u ? v : yr[ow];
        ir[ow] = u ? base + ow * sw : ir[ow];
      }
    }
  }
}

void maxpool_plane(const float* __restrict x, float* __restrict y, int64_t* __restrict idx,
                   float* __restrict lane, const Geom& g) {
  int64_t lo, hi;
  interior(g.OW, g.sw, g.pw, g.kw, g.dw, g.W, lo, hi);
  for (int64_t oh = 0; oh < g.OH; ++oh) {
    int64_t h0, h1;
    max_window(oh, g.sh, g.ph, g.kh, g.dh, g.H, h0, h1);
    float* yr = y + oh * g.OW;
    int64_t* ir = idx + oh * g.OW;
    for (int64_t ow = 0; ow < lo; ++ow) max_one(x, g, h0, h1, ow, yr[ow], ir[ow]);
    if (g.sw == 1) {
      max_taps<1>(x, yr, ir, lane, g, h0, h1, lo, hi);
    } else if (g.sw == 2) {
      max_taps<2>(x, yr, ir, lane, g, h0, h1, lo, hi);
    } else {
      max_taps<0>(x, yr, ir, lane, g, h0, h1, lo, hi);
    }
    for (int64_t ow = hi; ow < g.OW; ++ow) max_one(x, g, h0, h1, ow, yr[ow], ir[ow]);
  }
}

// The common 2x2 stride-2 case with every window inside the input: branch-free so it vectorises.
PE_MULTIVERSION void maxpool_plane_k2s2(const float* __restrict x, float* __restrict y,
                                        int64_t* __restrict idx, const Geom& g) {
  for (int64_t oh = 0; oh < g.OH; ++oh) {
    const float* r0 = x + 2 * oh * g.W;
    const float* r1 = r0 + g.W;
    float* yr = y + oh * g.OW;
    int64_t* ir = idx + oh * g.OW;
    const int64_t base = 2 * oh * g.W;
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      const float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
      float m = a;
      int64_t o = 0;
      const bool tb = b > m || b != b;
      m = tb ? b : m;
      o = tb ? 1 : o;
      const bool tc = c > m || c != c;
      m = tc ? c : m;
      o = tc ? g.W : o;
      const bool td = d > m || d != d;
      m = td ? d : m;
      o = td ? g.W + 1 : o;
      yr[ow] = m;
      ir[ow] = base + 2 * ow + o;
    }
  }
}

void maxpool2d_forward(const py::array& x, py::array& y, py::array& indices, Pair kernel_size,
                       Pair stride, Pair padding, Pair dilation, bool ceil_mode) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  int64_t* pi = pe::idx_ptr(indices, "indices");
  const Geom g = pool_geom(x, y, kernel_size, stride, padding, dilation, ceil_mode, "x", "y");
  pe::check_shape(indices, pe::shape_of(y), "indices");
  const bool k2s2 = g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 &&
                    g.dh == 1 && g.dw == 1 && 2 * g.OH <= g.H && 2 * g.OW <= g.W;
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  if (g.planes == 0) return;  // empty planes may still be huge: no scratch for them
  const bool par = g.planes * in_plane >= kParallelGrain;
  // Per-thread lanes allocated here: a bad_alloc inside the parallel region would terminate
  // the process instead of raising MemoryError.
  const int64_t nt = par ? omp_get_max_threads() : 1, lsize = k2s2 ? 0 : g.OW;
  std::vector<float> lanes(pe::mul(nt, lsize));
  py::gil_scoped_release nogil;
#pragma omp parallel num_threads(nt) if (par)
  {
    float* lane = lanes.data() + omp_get_thread_num() * lsize;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < g.planes; ++c) {
      if (k2s2) {
        maxpool_plane_k2s2(px + c * in_plane, py_ + c * out_plane, pi + c * out_plane, g);
      } else {
        maxpool_plane(px + c * in_plane, py_ + c * out_plane, pi + c * out_plane, lane, g);
      }
    }
  }
}

// grad_output, indices (N,C,OH,OW); grad_input (N,C,H,W) is overwritten.
void maxpool2d_backward(const py::array& grad_output, const py::array& indices,
                        py::array& grad_input) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  const int64_t* pi = pe::idx_in_ptr(indices, "indices");
  float* px = pe::out_ptr(grad_input, "grad_input");
  pe::check_ndim(grad_output, 4, "grad_output");
  pe::check_ndim(grad_input, 4, "grad_input");
  pe::check_shape(indices, pe::shape_of(grad_output), "indices");
  const Shape gs = pe::shape_of(grad_output), xs = pe::shape_of(grad_input);
  PE_CHECK(gs[0] == xs[0] && gs[1] == xs[1], "grad_output ", pe::shape_str(gs), " and grad_input ",
           pe::shape_str(xs), " differ in batch or channels");
  const int64_t planes = pe::mul(xs[0], xs[1]), in_plane = pe::mul(xs[2], xs[3]);
  const int64_t out_plane = pe::mul(gs[2], gs[3]);
  bool bad = false;
  {
    py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) reduction(|| : bad) if (planes * in_plane >= kParallelGrain)
    for (int64_t c = 0; c < planes; ++c) {
      float* gx = px + c * in_plane;
      const float* gy = pg + c * out_plane;
      const int64_t* ix = pi + c * out_plane;
      std::memset(gx, 0, sizeof(float) * in_plane);
      for (int64_t o = 0; o < out_plane; ++o) {
        const int64_t i = ix[o];
        if (i >= 0 && i < in_plane) {
          gx[i] += gy[o];
        } else if (i != -1) {
          bad = true;
        }
      }
    }
  }
  PE_CHECK(!bad, "indices hold a value outside [0, ", in_plane, ") for planes of shape (", xs[2],
           ", ", xs[3], ")");
}

struct AvgParams {
  bool count_include_pad;
  int64_t divisor;  // 0: none
};

// PyTorch's avg_pool2d window: the divisor counts the padded window clipped to the padded
// input (ceil_mode windows may hang further), unless count_include_pad is false or a divisor is
// forced. Returns false for a window that holds no input element (its output is 0).
inline bool avg_window(const Geom& g, const AvgParams& a, int64_t oh, int64_t ow, int64_t& h0,
                       int64_t& h1, int64_t& w0, int64_t& w1, float& div) {
  h0 = oh * g.sh - g.ph;
  w0 = ow * g.sw - g.pw;
  h1 = std::min(h0 + g.kh, g.H + g.ph);
  w1 = std::min(w0 + g.kw, g.W + g.pw);
  const double pool = static_cast<double>(h1 - h0) * static_cast<double>(w1 - w0);
  h0 = std::max<int64_t>(h0, 0);
  w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, g.H);
  w1 = std::min(w1, g.W);
  if (h0 >= h1 || w0 >= w1) return false;
  div = static_cast<float>(a.divisor ? a.divisor
                                     : (a.count_include_pad ? pool : (h1 - h0) * (w1 - w0)));
  return true;
}

// Divisor shared by the interior columns of output row oh (their windows are never clipped
// horizontally); 0 when the row's windows hold no input row.
inline float avg_row_div(const Geom& g, const AvgParams& a, int64_t oh, int64_t& h0,
                         int64_t& h1) {
  h0 = oh * g.sh - g.ph;
  h1 = std::min(h0 + g.kh, g.H + g.ph);
  const double pool = static_cast<double>(h1 - h0) * static_cast<double>(g.kw);
  h0 = std::max<int64_t>(h0, 0);
  h1 = std::min(h1, g.H);
  if (h0 >= h1) return 0.f;
  const double valid = static_cast<double>(h1 - h0) * static_cast<double>(g.kw);
  return static_cast<float>(a.divisor ? a.divisor : (a.count_include_pad ? pool : valid));
}

// Interior columns tap by tap, accumulating into the output row, as in max_taps.
template <int64_t SW>
PE_MULTIVERSION void avg_taps(const float* __restrict x, float* __restrict yr, const Geom& g,
                              int64_t h0, int64_t h1, float div, int64_t lo, int64_t hi) {
  if (lo >= hi) return;  // as in max_taps
  const int64_t sw = SW > 0 ? SW : g.sw;
  for (int64_t ow = lo; ow < hi; ++ow) yr[ow] = 0.f;
  for (int64_t ih = h0; ih < h1; ++ih) {
    for (int64_t j = 0; j < g.kw; ++j) {
      const float* row = x + ih * g.W;
      const int64_t off = j - g.pw;
      for (int64_t ow = lo; ow < hi; ++ow) yr[ow] += row[ow * sw + off];
    }
  }
  for (int64_t ow = lo; ow < hi; ++ow) yr[ow] /= div;
}

template <int64_t SW>
PE_MULTIVERSION void avg_taps_backward(const float* __restrict gyr, float* __restrict gx,
                                       const Geom& g, int64_t h0, int64_t h1, float div,
                                       int64_t lo, int64_t hi) {
  if (lo >= hi) return;  // as in max_taps
  const int64_t sw = SW > 0 ? SW : g.sw;
  for (int64_t ih = h0; ih < h1; ++ih) {
    for (int64_t j = 0; j < g.kw; ++j) {
      float* row = gx + ih * g.W;
      const int64_t off = j - g.pw;
      for (int64_t ow = lo; ow < hi; ++ow) row[ow * sw + off] += gyr[ow] / div;
    }
  }
}

float avg_one(const float* __restrict x, const Geom& g, const AvgParams& a, int64_t oh,
              int64_t ow) {
  int64_t h0, h1, w0, w1;
  float div;
  if (!avg_window(g, a, oh, ow, h0, h1, w0, w1, div)) return 0.f;
  float s = 0.f;
  for (int64_t ih = h0; ih < h1; ++ih) {
    for (int64_t iw = w0; iw < w1; ++iw) s += x[ih * g.W + iw];
  }
  return s / div;
}

void avg_one_backward(float gv, float* __restrict gx, const Geom& g, const AvgParams& a,
                      int64_t oh, int64_t ow) {
  int64_t h0, h1, w0, w1;
  float div;
  if (!avg_window(g, a, oh, ow, h0, h1, w0, w1, div)) return;
  const float v = gv / div;
  for (int64_t ih = h0; ih < h1; ++ih) {
    for (int64_t iw = w0; iw < w1; ++iw) gx[ih * g.W + iw] += v;
  }
}

void avgpool_plane(const float* __restrict x, float* __restrict y, const Geom& g,
                   const AvgParams& a) {
  int64_t lo, hi;
  interior(g.OW, g.sw, g.pw, g.kw, 1, g.W, lo, hi);
  for (int64_t oh = 0; oh < g.OH; ++oh) {
    float* yr = y + oh * g.OW;
    int64_t h0, h1;
    const float div = avg_row_div(g, a, oh, h0, h1);
    for (int64_t ow = 0; ow < lo; ++ow) yr[ow] = avg_one(x, g, a, oh, ow);
    if (div == 0.f) {
      std::fill(yr + lo, yr + hi, 0.f);
    } else if (g.sw == 1) {
      avg_taps<1>(x, yr, g, h0, h1, div, lo, hi);
    } else if (g.sw == 2) {
      avg_taps<2>(x, yr, g, h0, h1, div, lo, hi);
    } else {
      avg_taps<0>(x, yr, g, h0, h1, div, lo, hi);
    }
    for (int64_t ow = hi; ow < g.OW; ++ow) yr[ow] = avg_one(x, g, a, oh, ow);
  }
}

void avgpool_plane_backward(const float* __restrict gy, float* __restrict gx, const Geom& g,
                            const AvgParams& a) {
  std::memset(gx, 0, sizeof(float) * g.H * g.W);
  int64_t lo, hi;
  interior(g.OW, g.sw, g.pw, g.kw, 1, g.W, lo, hi);
  for (int64_t oh = 0; oh < g.OH; ++oh) {
    const float* gyr = gy + oh * g.OW;
    int64_t h0, h1;
    const float div = avg_row_div(g, a, oh, h0, h1);
    for (int64_t ow = 0; ow < lo; ++ow) avg_one_backward(gyr[ow], gx, g, a, oh, ow);
    if (div > 0.f) {
      if (g.sw == 1) {
        avg_taps_backward<1>(gyr, gx, g, h0, h1, div, lo, hi);
      } else if (g.sw == 2) {
        avg_taps_backward<2>(gyr, gx, g, h0, h1, div, lo, hi);
      } else {
        avg_taps_backward<0>(gyr, gx, g, h0, h1, div, lo, hi);
      }
    }
    for (int64_t ow = hi; ow < g.OW; ++ow) avg_one_backward(gyr[ow], gx, g, a, oh, ow);
  }
}

AvgParams avg_params(bool count_include_pad, int64_t divisor_override) {
  PE_CHECK(divisor_override >= 0, "divisor_override must be positive (0 for none), got ",
           divisor_override);
  return {count_include_pad, divisor_override};
}

void avgpool2d_forward(const py::array& x, py::array& y, Pair kernel_size, Pair stride,
                       Pair padding, bool ceil_mode, bool count_include_pad,
                       int64_t divisor_override) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  const Geom g = pool_geom(x, y, kernel_size, stride, padding, {1, 1}, ceil_mode, "x", "y");
  const AvgParams a = avg_params(count_include_pad, divisor_override);
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (g.planes * in_plane >= kParallelGrain)
  for (int64_t c = 0; c < g.planes; ++c) avgpool_plane(px + c * in_plane, py_ + c * out_plane, g, a);
}

// grad_output (N,C,OH,OW); grad_input (N,C,H,W) is overwritten.
void avgpool2d_backward(const py::array& grad_output, py::array& grad_input, Pair kernel_size,
                        Pair stride, Pair padding, bool ceil_mode, bool count_include_pad,
                        int64_t divisor_override) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* px = pe::out_ptr(grad_input, "grad_input");
  const Geom g = pool_geom(grad_input, grad_output, kernel_size, stride, padding, {1, 1},
                           ceil_mode, "grad_input", "grad_output");
  const AvgParams a = avg_params(count_include_pad, divisor_override);
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (g.planes * in_plane >= kParallelGrain)
  for (int64_t c = 0; c < g.planes; ++c) {
    avgpool_plane_backward(pg + c * out_plane, px + c * in_plane, g, a);
  }
}

// PyTorch's adaptive windows: [floor(o*in/out), ceil((o+1)*in/out)).
inline int64_t ad_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
inline int64_t ad_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

// Sum of a contiguous run with 16 independent partial sums, so it vectorises without
// -ffast-math (a single accumulator chains every add).
PE_MULTIVERSION float sum_run(const float* __restrict x, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) acc[j] += x[i + j];
  }
  float s = 0.f;
  for (; i < n; ++i) s += x[i];
  for (int j = 0; j < 16; ++j) s += acc[j];
  return s;
}

PE_MULTIVERSION void fill_run(float* __restrict x, int64_t n, float v) {
  for (int64_t i = 0; i < n; ++i) x[i] = v;
}

void adaptive_avgpool2d_forward(const py::array& x, py::array& y) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  const Geom g = adaptive_geom(x, y, "x", "y");
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (g.planes * in_plane >= kParallelGrain)
  for (int64_t c = 0; c < g.planes; ++c) {
    const float* xp = px + c * in_plane;
    float* yp = py_ + c * out_plane;
    if (out_plane == 1) {
      yp[0] = sum_run(xp, in_plane) / static_cast<float>(in_plane);
      continue;
    }
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const int64_t h0 = ad_start(oh, g.H, g.OH), h1 = ad_end(oh, g.H, g.OH);
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const int64_t w0 = ad_start(ow, g.W, g.OW), w1 = ad_end(ow, g.W, g.OW);
        float s = 0.f;
        for (int64_t ih = h0; ih < h1; ++ih) s += sum_run(xp + ih * g.W + w0, w1 - w0);
        yp[oh * g.OW + ow] = s / static_cast<float>((h1 - h0) * (w1 - w0));
      }
    }
  }
}

void adaptive_avgpool2d_backward(const py::array& grad_output, py::array& grad_input) {
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* px = pe::out_ptr(grad_input, "grad_input");
  const Geom g = adaptive_geom(grad_input, grad_output, "grad_input", "grad_output");
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (g.planes * in_plane >= kParallelGrain)
  for (int64_t c = 0; c < g.planes; ++c) {
    float* gx = px + c * in_plane;
    const float* gy = pg + c * out_plane;
    if (out_plane == 1) {
      fill_run(gx, in_plane, gy[0] / static_cast<float>(in_plane));
      continue;
    }
    std::memset(gx, 0, sizeof(float) * in_plane);
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const int64_t h0 = ad_start(oh, g.H, g.OH), h1 = ad_end(oh, g.H, g.OH);
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const int64_t w0 = ad_start(ow, g.W, g.OW), w1 = ad_end(ow, g.W, g.OW);
        const float v = gy[oh * g.OW + ow] / static_cast<float>((h1 - h0) * (w1 - w0));
        for (int64_t ih = h0; ih < h1; ++ih) {
          for (int64_t iw = w0; iw < w1; ++iw) gx[ih * g.W + iw] += v;
        }
      }
    }
  }
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
