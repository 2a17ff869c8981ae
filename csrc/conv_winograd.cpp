// Winograd minimal-filtering convolution F(mxm, 3x3), float32 NCHW, 3x3 kernel, stride 1,
// dilation 1, groups 1, any padding (Lavin & Gray 2016). Each m x m output tile is
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A
// over an a x a input tile d (a = m + 2), so one tile costs a*a multiplications per channel pair
// instead of 9*m*m: 2.25x fewer at m = 2, 4x fewer at m = 4. Per block of TB tiles:
//   V[e] (C, TB)  = input transform of every tile and channel (e = one of the a*a positions),
//   Mb[e] (K, TB) = U[e] (K, C) @ V[e]       (a*a GEMMs on the pe::sgemm micro-kernels),
//   y             = output transform of Mb, + bias (ReLU), written straight into (N,K,P,Q).
// The input gradient is the same conv of gy with the flipped, transposed filter; the weight
// gradient is its adjoint, dU[e] (K, C) = sum over tiles of (A gy A^T)[e] @ V[e]^T, then
// gw = G^T dU G. The transforms run vectorised over the tiles of a block (contiguous TB-long
// rows), so they compile to AVX-512/AVX2 with PE_MULTIVERSION like the other kernels.
//
// Tile size, from `python -m benchmarks.winograd_tiles` (2026-12-03, the 2-core AVX-512 VM,
// OMP_NUM_THREADS=2, measured under load: ~8 other jobs on the 2 cores, so times are rough).
// Float32 error, max |err| / max |ref| against a float64 direct conv, DnCNN layer 16x64x40x40,
// pad 1, x ~ N(0,1), w ~ N(0,1/576), forward / input grad / weight grad:
//   im2col      9.3e-7 / 1.1e-6 / 4.1e-7
//   F(2x2,3x3)  2.9e-7 / 3.4e-7 / 6.4e-7
//   F(4x4,3x3)  7.5e-6 / 7.1e-6 / 4.2e-6   (transform coefficients up to 8 and 1/24)
// Time in ms, forward / input grad / weight grad (64->64, pad 1):
//   16x64x40x40:    im2col 77/77/103,      F2 80/88/98,     F4 74/83/87
//   4x64x128x128:   im2col 229/233/285,    F2 253/247/245,  F4 157/162/179
//   1x64x512x512:   im2col 1039/1072/1178, F2 795/816/849,  F4 743/702/670
// F(4x4) is the fastest on every 64-channel shape and its error, ~10x im2col's, stays orders of
// magnitude below float32 training noise, so "winograd" uses it (wino_default_tile); "winograd_f2"
// keeps the accurate tile available. The bound in tests/test_conv_winograd.py scales with it.
// Not done: caching the filter transform per weight version (it is O(K*C), under 1 % of a pass).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv.h"
#include "gemm.h"

namespace pe::conv {
namespace {

// ---------------------------------------------------------------- transform matrices
struct Tile {
  int m, a;         // output tile m x m, input tile a x a
  const float* BT;  // (a, a) input transform
  const float* AT;  // (m, a) output transform
  const double* G;  // (a, 3) filter transform
  const float* A;   // (a, m) = AT^T, the adjoint of the output transform
};

constexpr float kBT2[16] = {1, 0, -1, 0, 0, 1, 1, 0, 0, -1, 1, 0, 0, 1, 0, -1};
constexpr float kAT2[8] = {1, 1, 1, 0, 0, 1, -1, -1};
constexpr float kA2[8] = {1, 0, 1, 1, 1, -1, 0, -1};
constexpr double kG2[12] = {1, 0, 0, .5, .5, .5, .5, -.5, .5, 0, 0, 1};

constexpr float kBT4[36] = {4, 0, -5, 0,  1, 0, 0, -4, -4, 1, 1, 0, 0, 4, -4, -1, 1, 0,
                            0, -2, -1, 2, 1, 0, 0, 2,  -1, -2, 1, 0, 0, 4, 0, -5, 0, 1};
constexpr float kAT4[24] = {1, 1, 1, 1, 1, 0, 0, 1, -1, 2, -2, 0,
                            0, 1, 1, 4, 4, 0, 0, 1, -1, 8, -8, 1};
constexpr float kA4[24] = {1, 0, 0, 0, 1, 1, 1, 1, 1, -1, 1, -1,
                           1, 2, 4, 8, 1, -2, 4, -8, 0, 0, 0, 1};
constexpr double kG4[18] = {1. / 4,  0,        0,       -1. / 6, -1. / 6, -1. / 6,
                            -1. / 6, 1. / 6,   -1. / 6, 1. / 24, 1. / 12, 1. / 6,
                            1. / 24, -1. / 12, 1. / 6,  0,       0,       1};

Tile tile_of(int m) {
  if (m == 2) return {2, 4, kBT2, kAT2, kG2, kA2};
  return {4, 6, kBT4, kAT4, kG4, kA4};
}

// out[i][j] = sum_{a,b} L[i][a] in[a][b] R[j][b] for nb tiles at once: in[a][b] is the nb-long
// row at in + (a*B + b)*in_stride, out[i][j] at out + (i*J + j)*out_stride; L (I,A), R (J,B).
// Two passes through tmp (I*B rows of nb); zero coefficients are skipped.
PE_MULTIVERSION void sandwich(const float* in, int64_t in_stride, int A, int B, const float* L,
                              int I, const float* R, int J, float* tmp, float* out,
                              int64_t out_stride, int64_t nb) {
  for (int i = 0; i < I; ++i)
    for (int b = 0; b < B; ++b) {
      float* __restrict t = tmp + (i * B + b) * nb;
      std::fill(t, t + nb, 0.f);
      for (int a = 0; a < A; ++a) {
        const float c = L[i * A + a];
        if (c == 0.f) continue;
        const float* __restrict s = in + (a * B + b) * in_stride;
#pragma omp simd
        for (int64_t k = 0; k < nb; ++k) t[k] += c * s[k];
      }
    }
  for (int i = 0; i < I; ++i)
    for (int j = 0; j < J; ++j) {
      float* __restrict o = out + (i * J + j) * out_stride;
      std::fill(o, o + nb, 0.f);
      for (int b = 0; b < B; ++b) {
        const float c = R[j * B + b];
        if (c == 0.f) continue;
        const float* __restrict t = tmp + (i * B + b) * nb;
#pragma omp simd
        for (int64_t k = 0; k < nb; ++k) o[k] += c * t[k];
      }
    }
}

// U[e][o][i] = (G w G^T)[e] for the 3x3 filter of output channel o, input channel i: w[o][i]
// for a conv, or (flipped = true, the input gradient's conv) w[i][o] rotated by 180 degrees.
// Computed in double, rounded once.
void transform_filter(const float* w, int64_t Co, int64_t Ci, bool flipped, const Tile& t,
                      float* U) {
  const int64_t a = t.a;
#pragma omp parallel for schedule(static) if (Co * Ci > 256)
  for (int64_t o = 0; o < Co; ++o)
    for (int64_t i = 0; i < Ci; ++i) {
      double g[9], tmp[6 * 3];
      const float* src = flipped ? w + (i * Co + o) * 9 : w + (o * Ci + i) * 9;
      for (int k = 0; k < 9; ++k) g[k] = src[flipped ? 8 - k : k];
      for (int r = 0; r < a; ++r)
        for (int s = 0; s < 3; ++s)
          tmp[r * 3 + s] = t.G[r * 3] * g[s] + t.G[r * 3 + 1] * g[3 + s] + t.G[r * 3 + 2] * g[6 + s];
      for (int r = 0; r < a; ++r)
        for (int s = 0; s < a; ++s) {
          const double v = tmp[r * 3] * t.G[s * 3] + tmp[r * 3 + 1] * t.G[s * 3 + 1] +
                           tmp[r * 3 + 2] * t.G[s * 3 + 2];
          U[((r * a + s) * Co + o) * Ci + i] = static_cast<float>(v);
        }
    }
}

// The conv the kernels compute: out[n,o,p,q] = sum_{i,r,s} filter[o,i,r,s] *
// in[n,i,p+offh+r,q+offw+s], reads outside in (Hi,Wi) being zero; tiles of m x m outputs. The
// input is first copied into zero-bordered planes xp (Hp, Wp) that every tile reads inside of,
// so the tile loads need no bounds checks (and offh/offw may be positive: a crop).
struct Job {
  int64_t N, Ci, Hi, Wi, Co, Po, Qo, offh, offw;
  int64_t tP, tQ, T, TB, Hp, Wp;
};

Job make_job(int64_t N, int64_t Ci, int64_t Hi, int64_t Wi, int64_t Co, int64_t Po, int64_t Qo,
             int64_t offh, int64_t offw, const Tile& t) {
  Job j{N, Ci, Hi, Wi, Co, Po, Qo, offh, offw, 0, 0, 0, 0, 0, 0};
  j.tP = (Po + t.m - 1) / t.m;
  j.tQ = (Qo + t.m - 1) / t.m;
  j.T = N * j.tP * j.tQ;
  j.Hp = j.tP * t.m + 2;
  j.Wp = j.tQ * t.m + 2;
  // A block's V and Mb (a*a*(Ci+Co)*TB floats) stay around 2 MiB, in L2 with the GEMM panels.
  const int64_t per_tile = t.a * t.a * (Ci + Co);
  j.TB = std::clamp<int64_t>((int64_t{1} << 19) / per_tile / 16 * 16, 16, 512);
  return j;
}

// xp[n,i] (Hp, Wp) = in[n,i] shifted by (offh, offw), zero where it reads outside.
float* pad_input(const float* in, const Job& j) {
  float* xp = workspace(2, j.N * j.Ci * j.Hp * j.Wp);
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < j.N * j.Ci; ++pl) {
    const float* src = in + pl * j.Hi * j.Wi;
    float* dst = xp + pl * j.Hp * j.Wp;
    const int64_t c0 = std::max<int64_t>(0, -j.offw), c1 = std::min(j.Wp, j.Wi - j.offw);
    for (int64_t r = 0; r < j.Hp; ++r) {
      float* d = dst + r * j.Wp;
      const int64_t ih = r + j.offh;
      if (ih < 0 || ih >= j.Hi || c1 <= c0) {
        std::fill(d, d + j.Wp, 0.f);
        continue;
      }
      std::fill(d, d + c0, 0.f);
      std::memcpy(d + c0, src + ih * j.Wi + c0 + j.offw, (c1 - c0) * sizeof(float));
      std::fill(d + c1, d + j.Wp, 0.f);
    }
  }
  return xp;
}

// Calls run(k, n, h, w, len) for each run of block [t0, t0+nb): len tiles in one tile row of
// image n from block index k on, output origin (h, w) of the first, m columns apart.
template <typename F>
void for_runs(const Job& j, int m, int64_t t0, int64_t nb, F&& run) {
  for (int64_t k = 0; k < nb;) {
    const int64_t t = t0 + k, col = t % j.tQ, len = std::min(nb - k, j.tQ - col);
    run(k, t / (j.tP * j.tQ), t / j.tQ % j.tP * m, col * m, len);
    k += len;
  }
}

// D[(r*a + s)*TB + k] = xp[n_k, c, h_k + r, w_k + s]: stride-m loads along each tile row.
PE_MULTIVERSION void gather_input(const float* xp, int64_t c, const Job& j, int m, int64_t t0,
                                  int64_t nb, float* D) {
  const int a = m + 2;
  for_runs(j, m, t0, nb, [&](int64_t k, int64_t n, int64_t h, int64_t w, int64_t len) {
    const float* plane = xp + (n * j.Ci + c) * j.Hp * j.Wp + h * j.Wp + w;
    for (int r = 0; r < a; ++r)
      for (int s = 0; s < a; ++s) {
        const float* __restrict src = plane + r * j.Wp + s;
        float* __restrict d = D + (r * a + s) * j.TB + k;
        if (m == 2)
          for (int64_t i = 0; i < len; ++i) d[i] = src[2 * i];
        else
          for (int64_t i = 0; i < len; ++i) d[i] = src[4 * i];
      }
  });
}

// V[e][c][k] for every channel of the block (layout: e-major, rows of TB).
void input_transform(const float* xp, const Job& j, const Tile& t, int64_t t0, int64_t nb,
                     float* D, float* tmp, float* V) {
  for (int64_t c = 0; c < j.Ci; ++c) {
    gather_input(xp, c, j, t.m, t0, nb, D);
    sandwich(D, j.TB, t.a, t.a, t.BT, t.a, t.BT, t.a, tmp, V + c * j.TB, j.Ci * j.TB, nb);
  }
}

// Per-thread scratch of one block: V, Mb (or Z), D, tmp, Y, then `extra` floats. All threads'
// scratch is one allocation made by the calling thread before the parallel region (an
// allocation failure there raises MemoryError instead of terminating inside OpenMP).
struct Scratch {
  float *V, *Mb, *D, *tmp, *Y, *extra;
  static size_t floats(const Job& j, const Tile& t, size_t n_extra) {
    const size_t a2 = t.a * t.a, tb = j.TB;
    return (a2 * (j.Ci + j.Co) * tb + 3 * a2 * tb + n_extra + 15) / 16 * 16;
  }
  static float* allocate(const Job& j, const Tile& t, size_t n_extra) {
    return workspace(5, floats(j, t, n_extra) * omp_get_max_threads());
  }
  Scratch(float* all, const Job& j, const Tile& t, size_t n_extra) {
    const size_t a2 = t.a * t.a, tb = j.TB;
    V = all + floats(j, t, n_extra) * omp_get_thread_num();
    Mb = V + a2 * j.Ci * tb, D = Mb + a2 * j.Co * tb, tmp = D + a2 * tb, Y = tmp + a2 * tb;
    extra = Y + a2 * tb;
  }
};

// out[n,k] tiles from Y[(u*m + v)*TB + k] + bias (ReLU); rows/columns past (Po, Qo) dropped.
PE_MULTIVERSION void store_tiles(const float* Y, const Job& j, int m, int64_t k, int64_t t0,
                                 int64_t nb, float bias, bool relu, float* out) {
  const float lo = relu ? 0.f : -__builtin_inff();
  for_runs(j, m, t0, nb, [&](int64_t i0, int64_t n, int64_t h, int64_t w, int64_t len) {
    float* plane = out + (n * j.Co + k) * j.Po * j.Qo;
    const int64_t rows = std::min<int64_t>(m, j.Po - h);
    const int64_t full = std::min(len, (j.Qo - w) / m);  // tiles whose m columns all fit
    for (int64_t u = 0; u < rows; ++u)
      for (int v = 0; v < m; ++v) {
        const float* __restrict src = Y + (u * m + v) * j.TB + i0;
        float* __restrict d = plane + (h + u) * j.Qo + w + v;
        if (m == 2)
          for (int64_t i = 0; i < full; ++i) d[2 * i] = std::max(src[i] + bias, lo);
        else
          for (int64_t i = 0; i < full; ++i) d[4 * i] = std::max(src[i] + bias, lo);
        for (int64_t i = full; i < len; ++i)
          if (w + i * m + v < j.Qo) d[i * m] = std::max(src[i] + bias, lo);
      }
  });
}

void wino_conv(const float* in, const float* U, const float* b, bool relu, float* out,
               const Job& j, const Tile& t) {
  const int64_t nblocks = (j.T + j.TB - 1) / j.TB, a2 = t.a * t.a;
  const float* xp = pad_input(in, j);
  float* all = Scratch::allocate(j, t, 0);
#pragma omp parallel
  {
    Scratch s(all, j, t, 0);
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t t0 = blk * j.TB, nb = std::min(j.TB, j.T - t0);
      input_transform(xp, j, t, t0, nb, s.D, s.tmp, s.V);
      for (int64_t e = 0; e < a2; ++e)
        pe::sgemm(false, false, j.Co, nb, j.Ci, 1.f, U + e * j.Co * j.Ci, j.Ci,
                  s.V + e * j.Ci * j.TB, j.TB, 0.f, s.Mb + e * j.Co * j.TB, j.TB);
      for (int64_t k = 0; k < j.Co; ++k) {
        sandwich(s.Mb + k * j.TB, j.Co * j.TB, t.a, t.a, t.AT, t.m, t.AT, t.m, s.tmp, s.Y, j.TB,
                 nb);
        store_tiles(s.Y, j, t.m, k, t0, nb, b ? b[k] : 0.f, relu, out);
      }
    }
  }
}

// D[(u*m + v)*TB + k] = gy[n_k, o, h_k + u, w_k + v], zero past (Po, Qo).
PE_MULTIVERSION void gather_grad(const float* gy, int64_t o, const Job& j, int m, int64_t t0,
                                 int64_t nb, float* D) {
  for_runs(j, m, t0, nb, [&](int64_t k, int64_t n, int64_t h, int64_t w, int64_t len) {
    const float* plane = gy + (n * j.Co + o) * j.Po * j.Qo;
    const int64_t full = std::min(len, (j.Qo - w) / m);
    for (int u = 0; u < m; ++u)
      for (int v = 0; v < m; ++v) {
        float* __restrict d = D + (u * m + v) * j.TB + k;
        if (h + u >= j.Po) {
          std::fill(d, d + len, 0.f);
          continue;
        }
        const float* __restrict src = plane + (h + u) * j.Qo + w + v;
        if (m == 2)
          for (int64_t i = 0; i < full; ++i) d[i] = src[2 * i];
        else
          for (int64_t i = 0; i < full; ++i) d[i] = src[4 * i];
        for (int64_t i = full; i < len; ++i) d[i] = w + i * m + v < j.Qo ? src[i * m] : 0.f;
      }
  });
}

}  // namespace

int wino_default_tile() { return 4; }

bool wino_supported(const Geom& g) {
  return g.R == 3 && g.S == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.G == 1;
}

void fwd_winograd(const float* x, const float* w, const float* b, bool relu, float* y,
                  const Geom& g, int m) {
  const Tile t = tile_of(m);
  const Job j = make_job(g.N, g.C, g.H, g.W, g.K, g.P, g.Q, -g.ph, -g.pw, t);
  float* U = workspace(4, t.a * t.a * g.K * g.C);
  transform_filter(w, g.K, g.C, false, t, U);
  wino_conv(x, U, b, relu, y, j, t);
}

// gx[c][h][w] = sum_{k,r,s} gy[k][h+ph-r][w+pw-s] w[k][c][r][s]: a conv of gy (K channels, P x Q)
// with the 180-degree rotated filter, offset (ph-2, pw-2), output H x W.
void bwd_input_winograd(const float* gy, const float* w, float* gx, const Geom& g, int m) {
  const Tile t = tile_of(m);
  const Job j = make_job(g.N, g.K, g.P, g.Q, g.C, g.H, g.W, g.ph - 2, g.pw - 2, t);
  float* U = workspace(4, t.a * t.a * g.K * g.C);
  transform_filter(w, g.C, g.K, true, t, U);
  wino_conv(gy, U, nullptr, false, gx, j, t);
}

void bwd_weight_winograd(const float* x, const float* gy, float* gw, const Geom& g, int m) {
  const Tile t = tile_of(m);
  const Job j = make_job(g.N, g.C, g.H, g.W, g.K, g.P, g.Q, -g.ph, -g.pw, t);
  const int64_t a2 = t.a * t.a, nblocks = (j.T + j.TB - 1) / j.TB, dsize = a2 * g.K * g.C;
  const int nt = omp_get_max_threads();
  // Each thread sums its tiles into its own dU (a*a*K*C floats: the reason the autotuner skips
  // Winograd's weight gradient when that outweighs the input, pyengine/ops/conv.py).
  std::vector<float*> parts(nt, nullptr);
  const float* xp = pad_input(x, j);
  float* all = Scratch::allocate(j, t, dsize);
#pragma omp parallel num_threads(nt)
  {
    Scratch s(all, j, t, dsize);
    float* acc = s.extra;
    parts[omp_get_thread_num()] = acc;
    std::fill(acc, acc + dsize, 0.f);
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t t0 = blk * j.TB, nb = std::min(j.TB, j.T - t0);
      input_transform(xp, j, t, t0, nb, s.D, s.tmp, s.V);
      for (int64_t k = 0; k < g.K; ++k) {
        gather_grad(gy, k, j, t.m, t0, nb, s.D);
        sandwich(s.D, j.TB, t.m, t.m, t.A, t.a, t.A, t.a, s.tmp, s.Mb + k * j.TB, g.K * j.TB,
                 nb);
      }
      for (int64_t e = 0; e < a2; ++e)
        pe::sgemm(false, true, g.K, g.C, nb, 1.f, s.Mb + e * g.K * j.TB, j.TB,
                  s.V + e * g.C * j.TB, j.TB, 1.f, acc + e * g.K * g.C, g.C);
    }
    // gw[k][c][r][s] = sum_{e=(u,v)} G[u][r] dU[e][k][c] G[v][s], the threads' dU summed in double
    const int64_t a = t.a, KC = g.K * g.C;
#pragma omp for schedule(static)
    for (int64_t kc = 0; kc < KC; ++kc) {
      double du[36];
      for (int64_t e = 0; e < a2; ++e) {
        double v = 0.0;
        for (int p = 0; p < nt; ++p) v += parts[p] ? parts[p][e * KC + kc] : 0.f;
        du[e] = v;
      }
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) {
          double v = 0.0;
          for (int64_t u = 0; u < a; ++u)
            for (int64_t q = 0; q < a; ++q) v += t.G[u * 3 + r] * du[u * a + q] * t.G[q * 3 + c];
          gw[kc * 9 + r * 3 + c] = static_cast<float>(v);
        }
    }
  }
}

}  // namespace pe::conv
