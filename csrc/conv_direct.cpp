// Direct convolution, float32 NCHW: shift-and-add over the kernel taps, one output (or
// input-grad) plane per task; the inner loop runs along a row, contiguous when the stride is 1.
// Best when Cg*R*S is small (1-channel first layer, depthwise).
// Shapes: x (N,C,H,W), w (K,C/G,R,S), b (K,) or None, y (N,K,P,Q); G = groups.
#include <algorithm>

#include "conv.h"

namespace pe::conv {
namespace {

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

}  // namespace

void fwd_direct(const float* x, const float* w, const float* b, float* y, const Geom& g) {
  const int64_t CRS = g.CRS();
  if (g.sh == 1 && g.sw == 1) {
    const int64_t Hp = g.P + (g.R - 1) * g.dh, Wp = g.Q + (g.S - 1) * g.dw;
    float* xp = workspace(1, g.N * g.C * Hp * Wp);
#pragma omp parallel
    {
#pragma omp for collapse(2) schedule(static)
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t c = 0; c < g.C; ++c)
          pad_planes(x + (n * g.C + c) * g.H * g.W, xp + (n * g.C + c) * Hp * Wp, 1, g.H, g.W,
                     Hp, Wp, g.ph, g.pw);
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

}  // namespace pe::conv
