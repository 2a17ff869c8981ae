// 2-D convolution and transposed convolution, float32 NCHW, forward and backward, two algorithms:
//   direct: shift-and-add over the kernel taps, one output (or input-grad) plane per task; the
//           inner loop runs along a row, contiguous when the stride is 1. Best when Cg*R*S is
//           small (1-channel first layer, depthwise).
//   im2col: a column buffer (Cg*R*S, rows*Q) built per image and group over a tile of output
//           rows, multiplied by pe::sgemm; the input gradient is a GEMM followed by col2im (a
//           scatter-add, no zero-stuffing). 1x1/stride-1/unpadded convs skip the buffer.
// Shapes: x (N,C,H,W), w (K,C/G,R,S), b (K,) or None, y (N,K,P,Q); G = groups.
// A transposed conv is the adjoint of a conv: its forward is a conv's input gradient, its input
// gradient a conv's forward, with w (C_in, C_out/G, R, S) read as the conv weight (K=C_in).
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "common.h"
#include "gemm.h"

namespace {

struct Geom {
  int64_t N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, G;
  int64_t Cg() const { return C / G; }
  int64_t Kg() const { return K / G; }
  int64_t CRS() const { return C / G * R * S; }
  // 1x1, stride 1, no padding: the input planes already are the column matrix.
  bool pointwise() const {
    return R == 1 && S == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && P == H && Q == W;
  }
};

int64_t out_size(int64_t in, int64_t pad_total, int64_t k, int64_t s, int64_t d) {
  const int64_t span = in + pad_total - d * (k - 1) - 1;
  return span < 0 ? 0 : span / s + 1;
}

// x_shape is the conv's input, y_shape its output (for a transposed conv: the other way round).
// The output may have one row/column more than the symmetric-padding formula gives (padding
// "same" with an even kernel pads one extra zero at the end) or fewer (a transposed conv whose
// output_padding adds rows that no input reaches); out-of-range taps read zeros either way.
Geom make_geom(const py::array& x, const py::array& w, const py::array& y, int64_t sh, int64_t sw,
               int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups, const char* xn,
               const char* yn) {
  pe::check_ndim(x, 4, xn);
  pe::check_ndim(w, 4, "weight");
  pe::check_ndim(y, 4, yn);
  PE_CHECK(sh >= 1 && sw >= 1, "conv: stride must be positive, got (", sh, ", ", sw, ")");
  PE_CHECK(dh >= 1 && dw >= 1, "conv: dilation must be positive, got (", dh, ", ", dw, ")");
  PE_CHECK(ph >= 0 && pw >= 0, "conv: padding must be non-negative, got (", ph, ", ", pw, ")");
  PE_CHECK(groups >= 1, "conv: groups must be positive, got ", groups);
  Geom g{x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(0), w.shape(2), w.shape(3),
         y.shape(2), y.shape(3), sh, sw, ph, pw, dh, dw, groups};
  PE_CHECK(g.C % groups == 0 && g.K % groups == 0, "conv: groups=", groups,
           " must divide the channels ", g.C, " and ", g.K);
  PE_CHECK(g.R >= 1 && g.S >= 1, "conv: empty kernel ", pe::shape_str(pe::shape_of(w)));
  pe::check_shape(w, {g.K, g.C / groups, g.R, g.S}, "weight");
  PE_CHECK(y.shape(0) == g.N && y.shape(1) == g.K, yn, " has shape ",
           pe::shape_str(pe::shape_of(y)), ", expected batch ", g.N, " and ", g.K, " channels");
  const int64_t pmax = out_size(g.H, 2 * ph + 1, g.R, sh, dh);
  const int64_t qmax = out_size(g.W, 2 * pw + 1, g.S, sw, dw);
  PE_CHECK(g.P >= 1 && g.Q >= 1 && g.P <= pmax && g.Q <= qmax, "conv: ", yn, " spatial size (",
           g.P, ", ", g.Q, ") does not fit ", xn, " ", pe::shape_str(pe::shape_of(x)),
           " with kernel (", g.R, ", ", g.S, "), stride (", sh, ", ", sw, "), padding (", ph,
           ", ", pw, "), dilation (", dh, ", ", dw, ")");
  return g;
}

// Outputs o in [lo, hi) whose tap lands inside the input: 0 <= o*stride + off < in.
inline void valid_range(int64_t n_out, int64_t in, int64_t stride, int64_t off, int64_t& lo,
                        int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  hi = in - off <= 0 ? 0 : std::min(n_out, (in - off + stride - 1) / stride);
  if (hi < lo) hi = lo;
}

// Grow-only, 64-byte aligned scratch per thread and slot, so no call mallocs big buffers.
float* workspace(int slot, size_t n) {
  struct Buf {
    std::unique_ptr<float, decltype(&std::free)> p{nullptr, &std::free};
    size_t cap = 0;
  };
  thread_local Buf bufs[2];
  Buf& b = bufs[slot];
  if (n > b.cap) {
    b.p.reset(static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64)));
    if (!b.p) throw std::bad_alloc();
    b.cap = n;
  }
  return b.p.get();
}

// Output rows per column tile: ~4 MiB of columns, so the GEMM stays large and the buffer cached.
int64_t tile_rows(const Geom& g) {
  constexpr int64_t kColFloats = 1 << 20;
  return std::clamp<int64_t>(kColFloats / std::max<int64_t>(1, g.CRS() * g.Q), 1, g.P);
}

// Images in parallel (one thread per image, single-threaded GEMMs) when the batch splits evenly
// enough over the threads; otherwise images one by one with threaded GEMMs and column loops.
bool images_in_parallel(int64_t N) {
  const int64_t nt = omp_get_max_threads();
  return nt > 1 && N >= nt && (N % nt == 0 || N >= 4 * nt);
}

// col (Cg*R*S, (p1-p0)*Q) from one image's group xg (Cg,H,W), output rows [p0, p1).
PE_MULTIVERSION void im2col(const float* xg, float* col, const Geom& g, int64_t p0, int64_t p1,
                            bool par) {
  const int64_t L = (p1 - p0) * g.Q;
#pragma omp parallel for schedule(static) if (par && !omp_in_parallel())
  for (int64_t c = 0; c < g.Cg(); ++c) {
    const float* xc = xg + c * g.H * g.W;
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        float* dst = col + ((c * g.R + r) * g.S + s) * L;
        const int64_t offw = s * g.dw - g.pw;
        int64_t qlo, qhi;
        valid_range(g.Q, g.W, g.sw, offw, qlo, qhi);
        for (int64_t p = p0; p < p1; ++p) {
          float* d = dst + (p - p0) * g.Q;
          const int64_t ih = p * g.sh - g.ph + r * g.dh;
          if (ih < 0 || ih >= g.H) {
            std::memset(d, 0, g.Q * sizeof(float));
            continue;
          }
          const float* src = xc + ih * g.W + offw;
          for (int64_t q = 0; q < qlo; ++q) d[q] = 0.f;
          if (g.sw == 1)
            std::memcpy(d + qlo, src + qlo, (qhi - qlo) * sizeof(float));
          else
            for (int64_t q = qlo; q < qhi; ++q) d[q] = src[q * g.sw];
          for (int64_t q = qhi; q < g.Q; ++q) d[q] = 0.f;
        }
      }
  }
}

// gxg (Cg,H,W) += scatter of col (Cg*R*S, (p1-p0)*Q); channels are independent.
PE_MULTIVERSION void col2im(const float* col, float* gxg, const Geom& g, int64_t p0, int64_t p1,
                            bool par) {
  const int64_t L = (p1 - p0) * g.Q;
#pragma omp parallel for schedule(static) if (par && !omp_in_parallel())
  for (int64_t c = 0; c < g.Cg(); ++c) {
    float* gc = gxg + c * g.H * g.W;
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        const float* src = col + ((c * g.R + r) * g.S + s) * L;
        const int64_t offw = s * g.dw - g.pw;
        int64_t qlo, qhi;
        valid_range(g.Q, g.W, g.sw, offw, qlo, qhi);
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t ih = p * g.sh - g.ph + r * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          float* d = gc + ih * g.W + offw;
          const float* c_row = src + (p - p0) * g.Q;
          if (g.sw == 1)
            for (int64_t q = qlo; q < qhi; ++q) d[q] += c_row[q];
          else
            for (int64_t q = qlo; q < qhi; ++q) d[q * g.sw] += c_row[q];
        }
      }
  }
}

template <typename F>
void for_images(int64_t N, F&& image) {
  if (images_in_parallel(N)) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t n = 0; n < N; ++n) image(n, false);
  } else {
    for (int64_t n = 0; n < N; ++n) image(n, true);
  }
}

void fill_bias(float* yn, const float* b, int64_t K, int64_t PQ) {
  for (int64_t k = 0; k < K; ++k) std::fill(yn + k * PQ, yn + (k + 1) * PQ, b[k]);
}

// gb[k] = sum over n and the plane of gy (N,K,PQ); float rows summed in double.
PE_MULTIVERSION void channel_sum(const float* gy, float* gb, int64_t N, int64_t K, int64_t PQ) {
#pragma omp parallel for schedule(static) if (N * K * PQ > (1 << 15))
  for (int64_t k = 0; k < K; ++k) {
    double acc = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      const float* row = gy + (n * K + k) * PQ;
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < PQ; ++i) s += row[i];
      acc += s;
    }
    gb[k] = static_cast<float>(acc);
  }
}

// ---------------------------------------------------------------- im2col + GEMM
void fwd_im2col(const float* x, const float* w, const float* b, float* y, const Geom& g) {
  const int64_t CRS = g.CRS(), PQ = g.P * g.Q, HW = g.H * g.W, rows = tile_rows(g);
  const bool pw1 = g.pointwise();
  for_images(g.N, [&](int64_t n, bool par) {
    float* col = pw1 ? nullptr : workspace(0, CRS * rows * g.Q);
    if (b) fill_bias(y + n * g.K * PQ, b, g.K, PQ);
    const float beta = b ? 1.f : 0.f;
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const float* xg = x + (n * g.C + gi * g.Cg()) * HW;
      const float* wg = w + gi * g.Kg() * CRS;
      float* yg = y + (n * g.K + gi * g.Kg()) * PQ;
      if (pw1) {
        pe::sgemm(false, false, g.Kg(), PQ, CRS, 1.f, wg, CRS, xg, HW, beta, yg, PQ);
        continue;
      }
      for (int64_t p0 = 0; p0 < g.P; p0 += rows) {
        const int64_t p1 = std::min(g.P, p0 + rows), L = (p1 - p0) * g.Q;
        im2col(xg, col, g, p0, p1, par);
        pe::sgemm(false, false, g.Kg(), L, CRS, 1.f, wg, CRS, col, L, beta, yg + p0 * g.Q, PQ);
      }
    }
  });
}

void bwd_input_im2col(const float* gy, const float* w, float* gx, const Geom& g) {
  const int64_t CRS = g.CRS(), PQ = g.P * g.Q, HW = g.H * g.W, rows = tile_rows(g);
  const bool pw1 = g.pointwise();
  for_images(g.N, [&](int64_t n, bool par) {
    float* col = pw1 ? nullptr : workspace(0, CRS * rows * g.Q);
    if (!pw1) std::memset(gx + n * g.C * HW, 0, g.C * HW * sizeof(float));
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const float* gyg = gy + (n * g.K + gi * g.Kg()) * PQ;
      const float* wg = w + gi * g.Kg() * CRS;
      float* gxg = gx + (n * g.C + gi * g.Cg()) * HW;
      if (pw1) {
        pe::sgemm(true, false, CRS, PQ, g.Kg(), 1.f, wg, CRS, gyg, PQ, 0.f, gxg, HW);
        continue;
      }
      for (int64_t p0 = 0; p0 < g.P; p0 += rows) {
        const int64_t p1 = std::min(g.P, p0 + rows), L = (p1 - p0) * g.Q;
        pe::sgemm(true, false, CRS, L, g.Kg(), 1.f, wg, CRS, gyg + p0 * g.Q, PQ, 0.f, col, L);
        col2im(col, gxg, g, p0, p1, par);
      }
    }
  });
}

// gw (K, CRS) = sum_n gy_n (K, PQ) @ col_n^T; with images in parallel each thread sums into its
// own copy of gw, added up at the end.
void bwd_weight_im2col(const float* x, const float* gy, float* gw, const Geom& g) {
  const int64_t CRS = g.CRS(), PQ = g.P * g.Q, HW = g.H * g.W, rows = tile_rows(g);
  const int64_t wsize = g.K * CRS;
  const bool pw1 = g.pointwise();
  auto image = [&](int64_t n, bool par, float* acc) {
    float* col = pw1 ? nullptr : workspace(0, CRS * rows * g.Q);
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const float* gyg = gy + (n * g.K + gi * g.Kg()) * PQ;
      const float* xg = x + (n * g.C + gi * g.Cg()) * HW;
      float* ag = acc + gi * g.Kg() * CRS;
      if (pw1) {
        pe::sgemm(false, true, g.Kg(), CRS, PQ, 1.f, gyg, PQ, xg, HW, 1.f, ag, CRS);
        continue;
      }
      for (int64_t p0 = 0; p0 < g.P; p0 += rows) {
        const int64_t p1 = std::min(g.P, p0 + rows), L = (p1 - p0) * g.Q;
        im2col(xg, col, g, p0, p1, par);
        pe::sgemm(false, true, g.Kg(), CRS, L, 1.f, gyg + p0 * g.Q, PQ, col, L, 1.f, ag, CRS);
      }
    }
  };
  if (!images_in_parallel(g.N)) {
    std::memset(gw, 0, wsize * sizeof(float));
    for (int64_t n = 0; n < g.N; ++n) image(n, true, gw);
    return;
  }
  const int nt = omp_get_max_threads();
  float* parts = workspace(1, static_cast<size_t>(nt) * wsize);
#pragma omp parallel num_threads(nt)
  {
    float* acc = parts + omp_get_thread_num() * wsize;
    std::memset(acc, 0, wsize * sizeof(float));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.N; ++n) image(n, false, acc);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < wsize; ++i) {
      float s = 0.f;
      for (int t = 0; t < nt; ++t) s += parts[t * wsize + i];
      gw[i] = s;
    }
  }
}

// ---------------------------------------------------------------- direct
// One output plane y[n,k] (P,Q): bias, then every tap of every input channel of k's group.
PE_MULTIVERSION void direct_fwd_plane(const float* xg, const float* wk, float bias, float* yp,
                                      const Geom& g) {
  std::fill(yp, yp + g.P * g.Q, bias);
  for (int64_t c = 0; c < g.Cg(); ++c)
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t offh = r * g.dh - g.ph;
      int64_t plo, phi;
      valid_range(g.P, g.H, g.sh, offh, plo, phi);
      for (int64_t s = 0; s < g.S; ++s) {
        const float wv = wk[(c * g.R + r) * g.S + s];
        const int64_t offw = s * g.dw - g.pw;
        int64_t qlo, qhi;
        valid_range(g.Q, g.W, g.sw, offw, qlo, qhi);
        for (int64_t p = plo; p < phi; ++p) {
          const float* xr = xg + (c * g.H + p * g.sh + offh) * g.W + offw;
          float* __restrict yr = yp + p * g.Q;
          if (g.sw == 1)
            for (int64_t q = qlo; q < qhi; ++q) yr[q] += wv * xr[q];
          else
            for (int64_t q = qlo; q < qhi; ++q) yr[q] += wv * xr[q * g.sw];
        }
      }
    }
}

// Stride 1: over a zero-padded input (Hp, Wp) and an output computed at the padded width Wp
// ("wide", the extra columns discarded), each tap is one contiguous axpy over the flattened
// plane, with T taps fused per pass so the output is loaded and stored once per T taps.
template <int T>
inline void taps_pass(float* __restrict y, const float* const* xs, const float* ws, int64_t L) {
  const float* __restrict x[T];
  float wv[T];
  for (int t = 0; t < T; ++t) x[t] = xs[t], wv[t] = ws[t];
#pragma omp simd
  for (int64_t i = 0; i < L; ++i) {
    float acc = y[i];
    for (int t = 0; t < T; ++t) acc += wv[t] * x[t][i];
    y[i] = acc;
  }
}

PE_MULTIVERSION void direct_fwd_plane_s1(const float* xpg, const float* wk, float bias, float* yp,
                                         float* wide, int64_t Hp, int64_t Wp, const Geom& g) {
  const int64_t L = (g.P - 1) * Wp + g.Q;
  std::fill(wide, wide + L, 0.f);
  constexpr int kMax = 4;
  const float* xs[kMax];
  float ws[kMax];
  int nt = 0;
  auto flush = [&] {
    switch (nt) {
      case 1: taps_pass<1>(wide, xs, ws, L); break;
      case 2: taps_pass<2>(wide, xs, ws, L); break;
      case 3: taps_pass<3>(wide, xs, ws, L); break;
      case 4: taps_pass<4>(wide, xs, ws, L); break;
      default: break;
    }
    nt = 0;
  };
  for (int64_t c = 0; c < g.Cg(); ++c)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        xs[nt] = xpg + (c * Hp + r * g.dh) * Wp + s * g.dw;
        ws[nt] = wk[(c * g.R + r) * g.S + s];
        if (++nt == kMax) flush();
      }
  flush();
  for (int64_t p = 0; p < g.P; ++p)
    for (int64_t q = 0; q < g.Q; ++q) yp[p * g.Q + q] = wide[p * Wp + q] + bias;
}

void fwd_direct(const float* x, const float* w, const float* b, float* y, const Geom& g) {
  const int64_t CRS = g.CRS();
  if (g.sh == 1 && g.sw == 1) {
    const int64_t Hp = g.P + (g.R - 1) * g.dh, Wp = g.Q + (g.S - 1) * g.dw;
    float* xp = workspace(1, g.N * g.C * Hp * Wp);
#pragma omp parallel
    {
#pragma omp for collapse(2) schedule(static)
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t c = 0; c < g.C; ++c) {
          float* d = xp + (n * g.C + c) * Hp * Wp;
          const float* src = x + (n * g.C + c) * g.H * g.W;
          std::fill(d, d + Hp * Wp, 0.f);
          const int64_t rows = std::min(g.H, Hp - g.ph), cols = std::min(g.W, Wp - g.pw);
          for (int64_t h = 0; h < rows; ++h)
            std::memcpy(d + (h + g.ph) * Wp + g.pw, src + h * g.W, cols * sizeof(float));
        }
      float* wide = workspace(0, g.P * Wp);
#pragma omp for collapse(2) schedule(static)
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t k = 0; k < g.K; ++k) {
          const float* xpg = xp + (n * g.C + k / g.Kg() * g.Cg()) * Hp * Wp;
          direct_fwd_plane_s1(xpg, w + k * CRS, b ? b[k] : 0.f, y + (n * g.K + k) * g.P * g.Q,
                              wide, Hp, Wp, g);
        }
    }
    return;
  }
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t k = 0; k < g.K; ++k) {
      const float* xg = x + (n * g.C + k / g.Kg() * g.Cg()) * g.H * g.W;
      direct_fwd_plane(xg, w + k * CRS, b ? b[k] : 0.f, y + (n * g.K + k) * g.P * g.Q, g);
    }
}

// One input-gradient plane gx[n,c] (H,W): scatter of every tap of the outputs that read it.
PE_MULTIVERSION void direct_bwd_input_plane(const float* gy, const float* w, float* gxp,
                                            int64_t n, int64_t c, const Geom& g) {
  std::fill(gxp, gxp + g.H * g.W, 0.f);
  const int64_t gi = c / g.Cg(), cl = c % g.Cg();
  for (int64_t k = gi * g.Kg(); k < (gi + 1) * g.Kg(); ++k) {
    const float* gyp = gy + (n * g.K + k) * g.P * g.Q;
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t offh = r * g.dh - g.ph;
      int64_t plo, phi;
      valid_range(g.P, g.H, g.sh, offh, plo, phi);
      for (int64_t s = 0; s < g.S; ++s) {
        const float wv = w[((k * g.Cg() + cl) * g.R + r) * g.S + s];
        const int64_t offw = s * g.dw - g.pw;
        int64_t qlo, qhi;
        valid_range(g.Q, g.W, g.sw, offw, qlo, qhi);
        for (int64_t p = plo; p < phi; ++p) {
          float* __restrict d = gxp + (p * g.sh + offh) * g.W + offw;
          const float* gr = gyp + p * g.Q;
          if (g.sw == 1)
            for (int64_t q = qlo; q < qhi; ++q) d[q] += wv * gr[q];
          else
            for (int64_t q = qlo; q < qhi; ++q) d[q * g.sw] += wv * gr[q];
        }
      }
    }
  }
}

void bwd_input_direct(const float* gy, const float* w, float* gx, const Geom& g) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t c = 0; c < g.C; ++c)
      direct_bwd_input_plane(gy, w, gx + (n * g.C + c) * g.H * g.W, n, c, g);
}

// gw[k, cl, :, :] for one (k, cl). Products accumulate down the rows into one Q-wide vector per
// tap (a vectorised axpy, no horizontal sum per row); each image's vectors are summed in double.
PE_MULTIVERSION void direct_bwd_weight_one(const float* x, const float* gy, float* gwk, int64_t k,
                                           int64_t cl, float* rows, double* acc, const Geom& g) {
  const int64_t c = k / g.Kg() * g.Cg() + cl, RS = g.R * g.S;
  std::fill(acc, acc + RS, 0.0);
  for (int64_t n = 0; n < g.N; ++n) {
    std::fill(rows, rows + RS * g.Q, 0.f);
    const float* gyp = gy + (n * g.K + k) * g.P * g.Q;
    const float* xc = x + (n * g.C + c) * g.H * g.W;
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t offh = r * g.dh - g.ph;
      int64_t plo, phi;
      valid_range(g.P, g.H, g.sh, offh, plo, phi);
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t offw = s * g.dw - g.pw;
        int64_t qlo, qhi;
        valid_range(g.Q, g.W, g.sw, offw, qlo, qhi);
        float* __restrict t = rows + (r * g.S + s) * g.Q;
        for (int64_t p = plo; p < phi; ++p) {
          const float* xr = xc + (p * g.sh + offh) * g.W + offw;
          const float* gr = gyp + p * g.Q;
          if (g.sw == 1)
            for (int64_t q = qlo; q < qhi; ++q) t[q] += gr[q] * xr[q];
          else
            for (int64_t q = qlo; q < qhi; ++q) t[q] += gr[q] * xr[q * g.sw];
        }
      }
    }
    for (int64_t i = 0; i < RS; ++i) {
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int64_t q = 0; q < g.Q; ++q) sum += rows[i * g.Q + q];
      acc[i] += sum;
    }
  }
  for (int64_t i = 0; i < RS; ++i) gwk[cl * RS + i] = static_cast<float>(acc[i]);
}

void bwd_weight_direct(const float* x, const float* gy, float* gw, const Geom& g) {
  const int64_t RS = g.R * g.S;
#pragma omp parallel
  {
    float* rows = workspace(0, RS * g.Q);
    double* acc = reinterpret_cast<double*>(workspace(1, 2 * RS));
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t k = 0; k < g.K; ++k)
      for (int64_t cl = 0; cl < g.Cg(); ++cl)
        direct_bwd_weight_one(x, gy, gw + k * g.CRS(), k, cl, rows, acc, g);
  }
}

// ---------------------------------------------------------------- bindings
enum class Algo { Direct, Im2col };

Algo parse_algo(const std::string& a) {
  if (a == "direct") return Algo::Direct;
  if (a == "im2col") return Algo::Im2col;
  throw std::invalid_argument("conv: unknown algo '" + a + "', expected 'direct' or 'im2col'");
}

// A borrowed NumPy array (never a converted temporary, whose buffer would not outlive the call).
py::array as_array(const py::object& b, const char* name) {
  PE_CHECK(py::isinstance<py::array>(b), name, " must be a NumPy array or None");
  return py::reinterpret_borrow<py::array>(b);
}

const float* bias_ptr(const py::object& b, int64_t n, const char* name) {
  if (b.is_none()) return nullptr;
  py::array a = as_array(b, name);
  pe::check_shape(a, {n}, name);
  return pe::in_ptr(a, name);
}

float* grad_bias_ptr(const py::object& b, int64_t n) {
  if (b.is_none()) return nullptr;
  py::array a = as_array(b, "grad_bias");
  pe::check_shape(a, {n}, "grad_bias");
  return pe::out_ptr(a, "grad_bias");
}

void forward(Algo algo, const py::array& x, const py::array& w, const py::object& b, py::array& y,
             int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
  const Geom g = make_geom(x, w, y, sh, sw, ph, pw, dh, dw, G, "input", "output");
  const float *px = pe::in_ptr(x, "input"), *pw_ = pe::in_ptr(w, "weight");
  const float* pb = bias_ptr(b, g.K, "bias");
  float* py_ = pe::out_ptr(y, "output");
  py::gil_scoped_release nogil;
  (algo == Algo::Direct ? fwd_direct : fwd_im2col)(px, pw_, pb, py_, g);
}

void backward_input(Algo algo, const py::array& gy, const py::array& w, py::array& gx, int64_t sh,
                    int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
  const Geom g = make_geom(gx, w, gy, sh, sw, ph, pw, dh, dw, G, "grad_input", "grad_output");
  const float *pgy = pe::in_ptr(gy, "grad_output"), *pw_ = pe::in_ptr(w, "weight");
  float* pgx = pe::out_ptr(gx, "grad_input");
  py::gil_scoped_release nogil;
  (algo == Algo::Direct ? bwd_input_direct : bwd_input_im2col)(pgy, pw_, pgx, g);
}

void backward_weight(Algo algo, const py::array& x, const py::array& gy, py::array& gw,
                     const py::object& gb, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                     int64_t dh, int64_t dw, int64_t G) {
  const Geom g = make_geom(x, gw, gy, sh, sw, ph, pw, dh, dw, G, "input", "grad_output");
  const float *px = pe::in_ptr(x, "input"), *pgy = pe::in_ptr(gy, "grad_output");
  float* pgw = pe::out_ptr(gw, "grad_weight");
  float* pgb = grad_bias_ptr(gb, g.K);
  py::gil_scoped_release nogil;
  (algo == Algo::Direct ? bwd_weight_direct : bwd_weight_im2col)(px, pgy, pgw, g);
  if (pgb) channel_sum(pgy, pgb, g.N, g.K, g.P * g.Q);
}

}  // namespace

void bind_conv(py::module_& m) {
  using py::arg;
  for (const auto& entry : {std::pair{"direct", Algo::Direct}, std::pair{"im2col", Algo::Im2col}}) {
    const std::string pre = std::string("conv2d_") + entry.first;
    const Algo algo = entry.second;
    // x (N,C,H,W), w (K,C/G,R,S), b (K,) or None -> y (N,K,P,Q)
    m.def((pre + "_forward").c_str(),
          [algo](const py::array& x, const py::array& w, const py::object& b, py::array& y,
                 int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                 int64_t G) { forward(algo, x, w, b, y, sh, sw, ph, pw, dh, dw, G); },
          arg("x"), arg("w"), arg("b"), arg("y"), arg("stride_h"), arg("stride_w"),
          arg("pad_h"), arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"));
    // gy (N,K,P,Q), w -> gx (N,C,H,W)
    m.def((pre + "_backward_input").c_str(),
          [algo](const py::array& gy, const py::array& w, py::array& gx, int64_t sh, int64_t sw,
                 int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
            backward_input(algo, gy, w, gx, sh, sw, ph, pw, dh, dw, G);
          },
          arg("gy"), arg("w"), arg("gx"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
          arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"));
    // x, gy -> gw (K,C/G,R,S), gb (K,) or None
    m.def((pre + "_backward_weight").c_str(),
          [algo](const py::array& x, const py::array& gy, py::array& gw, const py::object& gb,
                 int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                 int64_t G) { backward_weight(algo, x, gy, gw, gb, sh, sw, ph, pw, dh, dw, G); },
          arg("x"), arg("gy"), arg("gw"), arg("gb"), arg("stride_h"), arg("stride_w"),
          arg("pad_h"), arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"));
  }
  // Transposed conv, w (C_in, C_out/G, R, S): x (N,C_in,H,W) -> y (N,C_out,H_out,W_out).
  m.def(
      "conv_transpose2d_forward",
      [](const py::array& x, const py::array& w, const py::object& b, py::array& y, int64_t sh,
         int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G,
         const std::string& algo) {
        pe::check_ndim(y, 4, "output");
        const float* pb = bias_ptr(b, y.shape(1), "bias");
        backward_input(parse_algo(algo), x, w, y, sh, sw, ph, pw, dh, dw, G);
        if (pb) {
          float* py_ = pe::out_ptr(y, "output");
          const int64_t N = y.shape(0), C = y.shape(1), HW = y.shape(2) * y.shape(3);
          py::gil_scoped_release nogil;
#pragma omp parallel for collapse(2) schedule(static) if (N * C * HW > (1 << 15))
          for (int64_t n = 0; n < N; ++n)
            for (int64_t c = 0; c < C; ++c) {
              float* p = py_ + (n * C + c) * HW;
              for (int64_t i = 0; i < HW; ++i) p[i] += pb[c];
            }
        }
      },
      arg("x"), arg("w"), arg("b"), arg("y"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("algo") = "im2col");
  // gy (N,C_out,H_out,W_out) -> gx (N,C_in,H,W)
  m.def(
      "conv_transpose2d_backward_input",
      [](const py::array& gy, const py::array& w, py::array& gx, int64_t sh, int64_t sw,
         int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G, const std::string& algo) {
        forward(parse_algo(algo), gy, w, py::none(), gx, sh, sw, ph, pw, dh, dw, G);
      },
      arg("gy"), arg("w"), arg("gx"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("algo") = "im2col");
  // x, gy -> gw (C_in,C_out/G,R,S), gb (C_out,) or None
  m.def(
      "conv_transpose2d_backward_weight",
      [](const py::array& x, const py::array& gy, py::array& gw, const py::object& gb, int64_t sh,
         int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G,
         const std::string& algo) {
        backward_weight(parse_algo(algo), gy, x, gw, py::none(), sh, sw, ph, pw, dh, dw, G);
        if (!gb.is_none()) {
          const float* pgy = pe::in_ptr(gy, "grad_output");
          float* pgb = grad_bias_ptr(gb, gy.shape(1));
          py::gil_scoped_release nogil;
          channel_sum(pgy, pgb, gy.shape(0), gy.shape(1), gy.shape(2) * gy.shape(3));
        }
      },
      arg("x"), arg("gy"), arg("gw"), arg("gb"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("algo") = "im2col");
}
