// Winograd minimal-filtering convolution F(mxm, 3x3), float32 NCHW, 3x3 kernel, stride 1,
// dilation 1, groups 1, any padding (Lavin & Gray 2016). Each m x m output tile is
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A
// over an a x a input tile d (a = m + 2), so one tile costs a*a multiplications per channel pair
// instead of 9*m*m: 2.25x fewer at m = 2, 4x fewer at m = 4. Per call, U[e] = (G g G^T)[e] is
// computed once, straight into the GEMM's packed A panels; then per block of TB tiles (a thread
// each):
//   V[e] (C, TB)  = B^T d B of every tile and channel (e = one of the a*a positions), written
//                   directly in the micro-kernel's B panel layout (no packing per GEMM),
//   Mb[e] (K, TB) = U[e] (K, C) @ V[e]       (a*a pe::sgemm_packed calls),
//   y             = A^T Mb A + bias (ReLU), stored a tile row at a time into (N,K,P,Q).
// The input gradient is the same conv of gy with the flipped, transposed filter; the weight
// gradient is its adjoint, dU[e] (K, C) = sum over tiles of (A gy A^T)[e] @ V[e]^T, then
// gw = G^T dU G. A training step's backward runs both in one pass over the tiles (bwd_winograd):
// gy is padded once, as the input gradient's conv reads it; each block of tiles gives its gx
// tiles and its share of dU while its part of the copy is in cache; the bias gradient is summed
// from the same gy tiles. Against two passes and a separate bias sum, forward+backward of the
// DnCNN layer (16x64x40x40) went from 17.25 to 15.98 ms and the U-Net layer's (4x64x64x64) from
// 9.03 to 8.80 ms (medians of 8 and 6 alternating processes of `OMP_NUM_THREADS=2 python -m
// benchmarks.harness benchmarks.bench_conv:work pyengine '["conv", 0, false, "winograd", true]'
// 20`, case 1 for the U-Net). Every transform handles 16 tiles per vector (one AVX-512 register,
// two AVX2) with the explicit F(2x2)/F(4x4) formulas; the input is first copied into
// zero-bordered, column-phase-split rows so that 16 tiles' tap is one vector load per run of
// tiles (a large input a cache-sized band at a time, each band copied and convolved by one
// thread).
//
// Tile size, from `OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE python -m benchmarks.winograd_tiles`
// (2026-12-04 04:16 UTC, the 2-core AVX-512 VM shared with other jobs: load average 4.5-6, so
// times are rough; compare within a row). Float32 error, max |err| / max |ref| against a float64
// im2col conv, DnCNN layer 16x64x40x40, pad 1, x ~ N(0,1), w ~ N(0,1/576), forward / input
// grad / weight grad:
//   im2col      8.6e-7 / 7.9e-7 / 4.9e-7
//   F(2x2,3x3)  2.4e-7 / 3.2e-7 / 5.6e-7
//   F(4x4,3x3)  5.5e-6 / 6.1e-6 / 3.5e-6   (transform coefficients up to 8 and 1/24)
// Time in ms, forward / input grad / weight grad (64->64, pad 1):
//   16x64x40x40:    im2col 19.4/19.5/22.0,    F2 13.1/13.4/17.4,    F4 9.6/9.2/11.8
//   4x64x128x128:   im2col 49.4/49.2/55.4,    F2 33.8/34.8/44.3,    F4 22.1/21.9/28.4
//   1x64x512x512:   im2col 302/371/580,       F2 316/326/404,       F4 205/201/271
// F(4x4) is the fastest on every 64-channel shape and its error, ~10x im2col's, stays orders of
// magnitude below float32 training noise, so "winograd" uses it (wino_default_tile); "winograd_f2"
// keeps the accurate tile available. The bound in tests/test_conv_winograd.py scales with it.
// The filter transform is not cached across calls: a training step's forward and input gradient
// need different ones (G g G^T of g and of its rotated transpose; for F(4x4) neither is a
// permutation of the other), and the weights change every step. Vectorized (transform_panel), it
// is a small part of a pass on the DnCNN layer; on the U-Net's 8x8 bottleneck (512->512, batch
// 4, 16 tiles) it still costs about what the GEMMs do, so im2col stays level there.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv.h"
#include "conv_winograd_xf.h"
#include "gemm.h"

// As in conv_winograd_xf.h: Vec values only pass between always-inlined functions.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace pe::conv {
namespace {

// Filter transform G (a, 3), in double: the filter is transformed once per call, in a double
// sum rounded once, so U carries no extra rounding.
constexpr double kG2[12] = {1, 0, 0, .5, .5, .5, .5, -.5, .5, 0, 0, 1};
constexpr double kG4[18] = {1. / 4,  0,        0,       -1. / 6, -1. / 6, -1. / 6,
                            -1. / 6, 1. / 6,   -1. / 6, 1. / 24, 1. / 12, 1. / 6,
                            1. / 24, -1. / 12, 1. / 6,  0,       0,       1};
template <int m>
constexpr const double* kG = m == 2 ? kG2 : kG4;

// The filter transform runs on one packed panel's output channels at a time, one double per
// lane (up to kO = 16 >= MR), so the 162 multiply-adds of an F(4x4) filter are vector FMAs and
// each U[e] row of the panel is one contiguous store. Scalar, the transform of the U-Net's
// 512->256 layer at 16x16 (131k filters) took longer than that layer's whole Winograd GEMM work.
constexpr int kO = 16;

// Panel rows o0 .. o0+mr of U[e] (the GEMM's packed A layout: column i at dst + (i - i0) * mr,
// U[e] es floats after U[e-1]) for input channels [i0, i1): (G g G^T)[e] of the filter g of
// output channel o0 + r, input channel i, which is w[o][i] for a conv, or (flipped = true, the
// input gradient's conv) w[i][o] rotated by 180 degrees. Rows past Co are zero. Computed in
// double, rounded once.
template <int m, int mr>
PE_MULTIVERSION void transform_panel(const float* w, int64_t Co, int64_t Ci, bool flipped,
                                     int64_t o0, int64_t i0, int64_t i1, float* dst, int64_t es) {
  constexpr int a = m + 2;
  constexpr const double* G = kG<m>;
  alignas(64) double g[9][kO], t[a][3][kO];
  static_assert(mr <= kO);
  const int nr = int(std::min<int64_t>(mr, Co - o0));
  for (int k = 0; k < 9; ++k) std::fill(g[k], g[k] + kO, 0.0);
  for (int64_t i = i0; i < i1; ++i) {
    for (int r = 0; r < nr; ++r) {
      const int64_t o = o0 + r;
      const float* src = flipped ? w + (i * Co + o) * 9 : w + (o * Ci + i) * 9;
      for (int k = 0; k < 9; ++k) g[k][r] = src[flipped ? 8 - k : k];
    }
    for (int u = 0; u < a; ++u)
      for (int c = 0; c < 3; ++c)
        for (int r = 0; r < kO; ++r)
          t[u][c][r] = G[u * 3] * g[c][r] + G[u * 3 + 1] * g[3 + c][r] + G[u * 3 + 2] * g[6 + c][r];
    float* d = dst + (i - i0) * mr;
    for (int u = 0; u < a; ++u)
      for (int v = 0; v < a; ++v) {
        float* y = d + (u * a + v) * es;
        for (int r = 0; r < mr; ++r)
          y[r] = static_cast<float>(t[u][0][r] * G[v * 3] + t[u][1][r] * G[v * 3 + 1] +
                                    t[u][2][r] * G[v * 3 + 2]);
      }
  }
}

template <int m>
void transform_panel_mr(int64_t mr, const float* w, int64_t Co, int64_t Ci, bool flipped,
                        int64_t o0, int64_t i0, int64_t i1, float* dst, int64_t es) {
  switch (mr) {
    case 12: return transform_panel<m, 12>(w, Co, Ci, flipped, o0, i0, i1, dst, es);
    case 6: return transform_panel<m, 6>(w, Co, Ci, flipped, o0, i0, i1, dst, es);
    case 4: return transform_panel<m, 4>(w, Co, Ci, flipped, o0, i0, i1, dst, es);
  }
}

// U[e] (Co, Ci) of every filter, straight into the GEMM's packed A panels (`up` floats apart
// per e). A task is one panel times up to 64 input channels.
void transform_filter(const float* w, int64_t Co, int64_t Ci, bool flipped, int m, float* Up,
                      int64_t up) {
  const int64_t mr = pe::sgemm_mr(), panels = (Co + mr - 1) / mr, chunks = (Ci + 63) / 64;
  PE_CHECK(mr == 12 || mr == 6 || mr == 4, "winograd: no filter transform for GEMM panels of ",
           mr, " rows");
#pragma omp parallel for schedule(static) if (Co * Ci > 256)
  for (int64_t pc = 0; pc < panels * chunks; ++pc) {
    const int64_t p = pc / chunks, i0 = pc % chunks * 64, i1 = std::min(Ci, i0 + 64);
    float* dst = Up + p * mr * Ci + i0 * mr;
    if (m == 2)
      transform_panel_mr<2>(mr, w, Co, Ci, flipped, p * mr, i0, i1, dst, up);
    else
      transform_panel_mr<4>(mr, w, Co, Ci, flipped, p * mr, i0, i1, dst, up);
  }
}

// The weight gradient's back-transform runs along kF (k, c) pairs, one double per lane.
constexpr int kF = 32;

// gw[kc0 + f] (3x3) = G^T dU[.][kc0 + f] G for nf <= kF consecutive (k, c) pairs, dU being the
// sum in double of the threads' partial dU (parts, null where a thread had no tiles; KC = K*C).
template <int m>
PE_MULTIVERSION void untransform_grads(float* const* parts, int nt, int64_t KC, int64_t kc0,
                                       int nf, float* gw) {
  constexpr int a = m + 2;
  constexpr const double* G = kG<m>;
  alignas(64) double du[a * a][kF], t[a][3][kF];
  for (int e = 0; e < a * a; ++e) {
    for (int f = 0; f < kF; ++f) du[e][f] = 0.0;
    for (int p = 0; p < nt; ++p) {
      if (!parts[p]) continue;
      const float* src = parts[p] + e * KC + kc0;
      for (int f = 0; f < nf; ++f) du[e][f] += src[f];
    }
  }
  for (int u = 0; u < a; ++u)
    for (int c = 0; c < 3; ++c)
      for (int f = 0; f < kF; ++f) {
        double v = 0.0;
        for (int q = 0; q < a; ++q) v += du[u * a + q][f] * G[q * 3 + c];
        t[u][c][f] = v;
      }
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c)
      for (int f = 0; f < nf; ++f) {
        double v = 0.0;
        for (int u = 0; u < a; ++u) v += G[u * 3 + r] * t[u][c][f];
        gw[(kc0 + f) * 9 + r * 3 + c] = static_cast<float>(v);
      }
}

// The conv the kernels compute: out[n,o,p,q] = sum_{i,r,s} filter[o,i,r,s] *
// in[n,i,p+offh+r,q+offw+s], reads outside in (Hi,Wi) being zero; tiles of m x m outputs. The
// input is first copied into zero-bordered planes xp (Hp, Wp) that every tile reads inside of,
// so the tile loads need no bounds checks (and offh/offw may be positive: a crop). Each row of
// xp is stored split by column phase: column x at (x % m) * L + x / m (L = tQ + 1, a row Wr =
// m * L floats and some slack), so tap (r, q) of consecutive tiles in a tile row is a
// contiguous run of floats and 16 tiles load as one vector. An output channel's plane is ys
// floats (Po * Qo, or the whole image's when the job is a band of its rows).
struct Job {
  int64_t N, Ci, Hi, Wi, Co, Po, Qo, offh, offw;
  int m, a;
  int64_t tP, tQ, T, TB, Hp, Wp, L, Wr, ys;
};

Job make_job(int64_t N, int64_t Ci, int64_t Hi, int64_t Wi, int64_t Co, int64_t Po, int64_t Qo,
             int64_t offh, int64_t offw, int m) {
  Job j{N, Ci, Hi, Wi, Co, Po, Qo, offh, offw, m, m + 2, 0, 0, 0, 0, 0, 0, 0, 0, Po * Qo};
  j.tP = (Po + m - 1) / m;
  j.tQ = (Qo + m - 1) / m;
  j.T = N * j.tP * j.tQ;
  j.Hp = j.tP * m + 2;
  j.Wp = j.tQ * m + 2;
  j.L = j.tQ + 1;
  j.Wr = m * j.L + (kL - j.L % kL) % kL;  // slack for split_row's last whole vector
  // A block's V and Mb (a*a*(Ci+Co)*TB floats) about fill a core's L2, so the GEMMs read the
  // tiles the transform has just written; a multiple of 32 (the widest GEMM panel) tiles.
  const int64_t per_tile = j.a * j.a * (Ci + Co);
  j.TB = std::clamp<int64_t>((int64_t{1} << 18) / per_tile / 32 * 32, 32, 512);
  return j;
}

// xp[n,i] (Hp, Wp, phase-split rows of Wr) = in[n,i] shifted by (offh, offw), zero where it
// reads outside; kPad zero floats either side, read by the vector lanes that fall outside a
// run of tiles (their values are discarded).
constexpr int64_t kPad = 2 * kL;

// Planes [p0, p1) of xp (N * Ci planes of Hp x Wr).
PE_MULTIVERSION void pad_planes(const float* in, const Job& j, int64_t p0, int64_t p1, float* xp) {
  // Columns x of xp inside the input: 0 <= x + offw < Wi, and x < Wp.
  const int64_t x0 = std::max<int64_t>(0, -j.offw), x1 = std::min(j.Wp, j.Wi - j.offw);
  for (int64_t pl = p0; pl < p1; ++pl) {
    const float* src = in + pl * j.Hi * j.Wi;
    float* dst = xp + pl * j.Hp * j.Wr;
    for (int64_t r = 0; r < j.Hp; ++r) {
      float* d = dst + r * j.Wr;
      const int64_t ih = r + j.offh;
      if (ih < 0 || ih >= j.Hi || x1 <= x0)
        std::fill(d, d + j.Wr, 0.f);
      else if (j.m == 2)
        split_row<2>(src + ih * j.Wi + j.offw, x0, x1, j.L, d);
      else
        split_row<4>(src + ih * j.Wi + j.offw, x0, x1, j.L, d);
      // Finite slack: the padding tiles' lanes read it, and the weight gradient multiplies them
      // by zero.
      std::fill(d + j.m * j.L, d + j.Wr, 0.f);
    }
  }
}

int64_t padded_size(const Job& j) { return j.N * j.Ci * j.Hp * j.Wr; }

// The kPad zero floats either side of an xp of `size` floats at xp.
void zero_borders(float* xp, int64_t size) {
  std::fill(xp - kPad, xp, 0.f);
  std::fill(xp + size, xp + size + kPad, 0.f);
}

float* pad_input(const float* in, const Job& j, int slot) {
  const int64_t planes = j.N * j.Ci;
  float* xp = workspace(slot, padded_size(j) + 2 * kPad) + kPad;
  zero_borders(xp, padded_size(j));
#pragma omp parallel for schedule(static)
  for (int64_t pl = 0; pl < planes; ++pl) pad_planes(in, j, pl, pl + 1, xp);
  return xp;
}

// Per-thread scratch of one block, one allocation for all threads made by the calling thread
// before the parallel region (an allocation failure raises MemoryError instead of terminating
// inside OpenMP): V (a*a, Ci, TB), Mb (a*a, Co, TB), the tiles' offsets and extents, `extra`.
// The block's tiles are padded to a multiple of kL with copies of its last tile (rows = 0).
struct Scratch {
  float *V, *Mb, *extra;
  // Tile origins, channel 0: in xp, in the (N, Co, Po, Qo) output, in the padded output
  // gradient gp (the weight gradient's, same tiles and row layout as xp with Co channels).
  int64_t *in_off, *out_off, *g_off;
  int32_t *rows, *cols;       // output rows / columns of the tile inside (Po, Qo)
  static size_t floats(const Job& j, size_t n_extra) {
    const size_t a2 = j.a * j.a, tb = j.TB;
    return a2 * (j.Ci + j.Co) * tb + 8 * tb + (n_extra + 15) / 16 * 16;
  }
  static float* allocate(const Job& j, size_t n_extra) {
    return workspace(5, floats(j, n_extra) * omp_get_max_threads());
  }
  Scratch(float* all, const Job& j, size_t n_extra) {
    const size_t a2 = j.a * j.a, tb = j.TB;
    V = all + floats(j, n_extra) * omp_get_thread_num();
    Mb = V + a2 * j.Ci * tb;
    in_off = reinterpret_cast<int64_t*>(Mb + a2 * j.Co * tb);
    out_off = in_off + tb;
    g_off = out_off + tb;
    rows = reinterpret_cast<int32_t*>(g_off + tb);
    cols = rows + tb;
    extra = reinterpret_cast<float*>(cols + tb);
  }
  // Fills the offsets of tiles [t0, t0+nb); returns nb rounded up to kL.
  int64_t locate(const Job& j, int64_t t0, int64_t nb) {
    const int64_t nbp = (nb + kL - 1) / kL * kL;
    for (int64_t k = 0; k < nbp; ++k) {
      const int64_t t = t0 + std::min(k, nb - 1), n = t / (j.tP * j.tQ);
      const int64_t h = t / j.tQ % j.tP * j.m, w = t % j.tQ * j.m;
      // Padding tiles continue the last tile's run (one more vector load, not a new run).
      const int64_t run = t % j.tQ + std::max<int64_t>(0, k - nb + 1);
      in_off[k] = (n * j.Ci * j.Hp + h) * j.Wr + run;
      g_off[k] = (n * j.Co * j.Hp + h) * j.Wr + run;
      out_off[k] = n * j.Co * j.ys + h * j.Qo + w;
      rows[k] = k < nb ? int32_t(std::min<int64_t>(j.m, j.Po - h)) : 0;
      cols[k] = int32_t(std::min<int64_t>(j.m, j.Qo - w));
    }
    return nbp;
  }
};

// V[e] = B^T d B of every tile and input channel, as GEMM B panels nr tiles wide: tile k of
// channel c at V + e*Ci*TB + (k/nr)*Ci*nr + c*nr + k%nr (nr = TB: plain (Ci, TB) rows).
// A group of kL tiles is a few runs of consecutive tiles (a tile row, or its rest); tap (r, q)
// of a run is one unaligned vector load, merged into the group's vector by a lane mask.

template <int m>
PE_INLINE void input_tiles(const float* xp, const Job& j, const Scratch& s, int64_t nbp,
                           int64_t nr) {
  constexpr int a = m + 2;
  alignas(64) float d[a * a][kL], tmp[a * a][kL], v[a * a][kL];
  int64_t tap[a * a];
  for (int r = 0; r < a; ++r)
    for (int q = 0; q < a; ++q) tap[r * a + q] = r * j.Wr + q % m * j.L + q / m;
  const int64_t plane = j.Hp * j.Wr, w = std::min<int64_t>(kL, nr);
  for (int64_t k0 = 0; k0 < nbp; k0 += kL) {
    const Runs runs(s.in_off + k0);
    for (int64_t c = 0; c < j.Ci; ++c) {
      const float* src = xp + c * plane;
      for (int e = 0; e < a * a; ++e) st(d[e], runs.load(src, tap[e]));
      // Straight into V when a panel holds the kL lanes, else through v (the scalar kernel's
      // 8-wide panels).
      if (w == kL) {
        float* dst = s.V + k0 / nr * j.Ci * nr + c * nr + k0 % nr;
        xf2d(Xf<m>::bt, a, a, d[0], kL, tmp[0], dst, j.Ci * j.TB);
        continue;
      }
      xf2d(Xf<m>::bt, a, a, d[0], kL, tmp[0], v[0], kL);
      for (int64_t l = 0; l < kL; l += w) {
        float* dst = s.V + (k0 + l) / nr * j.Ci * nr + c * nr + (k0 + l) % nr;
        for (int e = 0; e < a * a; ++e)
          std::memcpy(dst + e * j.Ci * j.TB, v[e] + l, w * sizeof(float));
      }
    }
  }
}

PE_MULTIVERSION void input_transform(const float* xp, const Job& j, const Scratch& s, int64_t nbp,
                                     int64_t nr) {
  if (j.m == 2) return input_tiles<2>(xp, j, s, nbp, nr);
  input_tiles<4>(xp, j, s, nbp, nr);
}

// out[n,k] tiles = A^T Mb[k] A + bias (ReLU); rows/columns past (Po, Qo) dropped.
template <int m>
PE_INLINE void output_tiles(const Job& j, const Scratch& s, int64_t nbp, const float* b, bool relu,
                         float* out) {
  constexpr int a = m + 2;
  alignas(64) float tmp[a * m][kL], y[m * m][kL], z[m][kL];
  const float lo = relu ? 0.f : -__builtin_inff();
  for (int64_t k = 0; k < j.Co; ++k) {
    const float bias = b ? b[k] : 0.f;
    float* plane = out + k * j.ys;
    for (int64_t k0 = 0; k0 < nbp; k0 += kL) {
      xf2d(Xf<m>::at, a, m, s.Mb + k * j.TB + k0, j.Co * j.TB, tmp[0], y[0], kL);
      for (int e = 0; e < m * m; ++e) {
        const Vec v = ld(y[e]) + bias;
        st(y[e], v < lo ? lo : v);
      }
      const int64_t* off = s.out_off + k0;
      for (int l0 = 0, l1; l0 < kL; l0 = l1) {
        // Tiles [l0, l1): a run along one tile row, its columns m*(l - l0) + v contiguous; the
        // last tile may have fewer than m columns inside (Po, Qo). Runs are told by in_off (in
        // the output, the next tile row can start m floats on when Qo is 1); the padding tiles
        // (rows 0) form their own run, which writes nothing.
        const int64_t* in = s.in_off + k0;
        for (l1 = l0 + 1; l1 < kL && in[l1] == in[l1 - 1] + 1 && s.rows[k0 + l1] == s.rows[k0 + l0];
             ++l1) {
        }
        const int rows = s.rows[k0 + l0];
        const int64_t c0 = m * l0, c1 = m * (l1 - 1) + s.cols[k0 + l1 - 1];
        float* base = plane + off[l0] - c0;
        for (int u = 0; u < rows; ++u) {
          interleave<m>(y + u * m, z);
          float* o = base + u * j.Qo;
          for (int t = 0; t < m; ++t) {
            const int64_t x0 = std::max<int64_t>(c0, t * kL), x1 = std::min<int64_t>(c1, (t + 1) * kL);
            if (x0 == t * kL && x1 == (t + 1) * kL)
              st(o + t * kL, ld(z[t]));
            else
              for (int64_t x = x0; x < x1; ++x) o[x] = z[t][x - t * kL];
          }
        }
      }
    }
  }
}

PE_MULTIVERSION void output_transform(const Job& j, const Scratch& s, int64_t nbp, const float* b,
                                      bool relu, float* out) {
  if (j.m == 2) return output_tiles<2>(j, s, nbp, b, relu, out);
  output_tiles<4>(j, s, nbp, b, relu, out);
}

// Mb[e][k] (rows of TB) = A gy A^T of every tile of output channel k, zero past (Po, Qo) and
// for the padding tiles, so that they add nothing to the weight gradient; gsum[k] (unless null)
// += the sum of those tiles, which cover gy once: the bias gradient, read with them. gp holds gy
// at row and column offset (sh, sw) in the tiles' grid: (0, 0) in the weight gradient's own
// copy, (2 - ph, 2 - pw) in the input gradient's (see backward_pass).
template <int m>
PE_INLINE void grad_tiles(const float* gp, int sh, int sw, const Job& j, const Scratch& s,
                          int64_t nbp, double* gsum) {
  constexpr int a = m + 2;
  alignas(64) float g[m * m][kL], tmp[m * a][kL];
  int64_t tap[m * m];
  for (int u = 0; u < m; ++u)
    for (int v = 0; v < m; ++v)
      tap[u * m + v] = (u + sh) * j.Wr + (v + sw) % m * j.L + (v + sw) / m;
  IVec lane;
  for (int l = 0; l < kL; ++l) lane[l] = l;
  const int64_t plane = j.Hp * j.Wr;
  for (int64_t k0 = 0; k0 < nbp; k0 += kL) {
    const Runs runs(s.g_off + k0);
    int valid = 0;  // the padding tiles (rows 0, at the end) must add nothing
    while (valid < kL && s.rows[k0 + valid] > 0) ++valid;
    const IVec keep = lane < valid;
    for (int64_t k = 0; k < j.Co; ++k) {
      const float* src = gp + k * plane;
      Vec sum{};
      for (int e = 0; e < m * m; ++e) {
        const Vec x = runs.load(src, tap[e]);
        const Vec kept = keep ? x : Vec{};
        st(g[e], kept);
        sum += kept;
      }
      xf2d(Xf<m>::adj, m, a, g[0], kL, tmp[0], s.Mb + k * j.TB + k0, j.Co * j.TB);
      if (gsum) {
        float total = 0.f;
        for (int l = 0; l < kL; ++l) total += sum[l];
        gsum[k] += total;
      }
    }
  }
}

PE_MULTIVERSION void grad_transform(const float* gp, int sh, int sw, const Job& j,
                                    const Scratch& s, int64_t nbp, double* gsum) {
  if (j.m == 2) return grad_tiles<2>(gp, sh, sw, j, s, nbp, gsum);
  grad_tiles<4>(gp, sh, sw, j, s, nbp, gsum);
}

// Tiles [t0, t0 + nb) of the conv of the padded input xp with the packed filter Up.
void conv_block(const float* xp, const float* Up, int64_t up, const float* b, bool relu,
                float* out, const Job& j, Scratch& s, int64_t t0, int64_t nb) {
  const int64_t nbp = s.locate(j, t0, nb);
  input_transform(xp, j, s, nbp, pe::sgemm_nr());
  for (int64_t e = 0; e < j.a * j.a; ++e)
    pe::sgemm_packed(j.Co, nbp, j.Ci, Up + e * up, s.V + e * j.Ci * j.TB, 0.f,
                     s.Mb + e * j.Co * j.TB, j.TB);
  output_transform(j, s, nbp, b, relu, out);
}

// Floats of padded input per band: a core's L2 (2 MB on the Zen4 VM; at most that, so that
// tests/test_conv_winograd.py's BAND_SHAPES band everywhere). The padded copy is written and then
// read back by the tile transforms; for a large input (a 512x512 image's 64 channels: 67 MB)
// that is a round trip through DRAM, so a conv whose copy exceeds two bands runs in bands of
// whole images or of tile rows, each padded and convolved by one thread while its copy is still
// in that core's cache. `OMP_NUM_THREADS=2 python -m benchmarks.winograd_tiles` (2026-12-04,
// Zen4 VM), F(4x4) fwd / bwd_in / bwd_w ms, whole-input copy -> bands of 2 MB:
//   4x64x128x128  11.6/11.3/14.1 -> 10.1/10.2/12.8
//   1x64x512x512  49.1/48.7/62.7 -> 44.8/43.9/61.5
//   16x64x40x40    5.0/4.9/6.0   ->  5.0/5.1/5.9   (its 8 MB copy stays in L3 either way)
// 512x512 DnCNN-17 denoising, `python -m benchmarks.bench_inference --repeats 5 --rounds 4`:
// 781 -> 706 ms (PyTorch 3112 / 3218 ms). With the band size made a variable for the
// experiment, bands of 1 MB and 4 MB were slower than 2 MB (748 and 809 against 687 ms).
int64_t band_floats() {
  static const int64_t floats = [] {
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return std::clamp<int64_t>(l2 > 0 ? l2 / 4 : int64_t{1} << 18, int64_t{1} << 16,
                               int64_t{1} << 19);
  }();
  return floats;
}

// The bands of a job: whole images [n0, n0 + nn) where an image's copy fits a band, else output
// rows [p0, p0 + po) of image n0, bands of even height. band(jj, i) is band i of the job jj on
// the same tile grid (a job for x, or for gy in the weight gradient, padded the same way).
struct Bands {
  int64_t count, per, rows, row_bands;
  explicit Bands(const Job& j) {
    const int64_t band = band_floats(), image = j.Ci * j.Hp * j.Wr;
    const int64_t most = std::max<int64_t>(1, band / (j.Ci * j.m * j.Wr));
    per = image <= band ? band / image : 1;
    row_bands = image <= band ? 1 : (j.tP + most - 1) / most;
    rows = (j.tP + row_bands - 1) / row_bands;
    count = image <= band ? (j.N + per - 1) / per : j.N * row_bands;
  }
  // Band i of jj: its job, and the offsets of its first input and output floats.
  Job band(const Job& jj, int64_t i, int64_t& in_at, int64_t& out_at) const {
    const int64_t n0 = row_bands == 1 ? i * per : i / row_bands;
    const int64_t p0 = row_bands == 1 ? 0 : i % row_bands * rows * jj.m;
    Job b = make_job(row_bands == 1 ? std::min(per, jj.N - n0) : 1, jj.Ci, jj.Hi, jj.Wi, jj.Co,
                     row_bands == 1 ? jj.Po : std::min(rows * jj.m, jj.Po - p0), jj.Qo,
                     jj.offh + p0, jj.offw, jj.m);
    b.ys = jj.ys;
    in_at = n0 * jj.Ci * jj.Hi * jj.Wi;
    out_at = n0 * jj.Co * jj.ys + p0 * jj.Qo;
    return b;
  }
  // Floats of the largest band's copy (the first: the others are no taller, no more images).
  int64_t floats(const Job& jj) const {
    int64_t in_at, out_at;
    return padded_size(band(jj, 0, in_at, out_at)) + 2 * kPad;
  }
};

// Band i of `in` padded into this thread's buffer xp (kPad floats into it).
Job pad_band(const Bands& bands, const Job& j, int64_t i, const float* in, float* xp,
             int64_t& out_at) {
  int64_t in_at;
  const Job b = bands.band(j, i, in_at, out_at);
  zero_borders(xp, padded_size(b));
  pad_planes(in + in_at, b, 0, b.N * b.Ci, xp);
  return b;
}

// Forward (or input-gradient) conv of `in` with the packed transformed filter Up.
void wino_conv(const float* in, const float* Up, int64_t up, const float* b, bool relu,
               float* out, const Job& j) {
  float* all = Scratch::allocate(j, 0);
  if (padded_size(j) <= 2 * band_floats()) {
    const float* xp = pad_input(in, j, 2);
    const int64_t nblocks = (j.T + j.TB - 1) / j.TB;
#pragma omp parallel
    {
      Scratch s(all, j, 0);
#pragma omp for schedule(dynamic, 1)
      for (int64_t blk = 0; blk < nblocks; ++blk)
        conv_block(xp, Up, up, b, relu, out, j, s, blk * j.TB, std::min(j.TB, j.T - blk * j.TB));
    }
    return;
  }
  const Bands bands(j);
  const int64_t per_thread = bands.floats(j);
  float* bufs = workspace(2, omp_get_max_threads() * per_thread);
#pragma omp parallel
  {
    Scratch s(all, j, 0);
    float* xp = bufs + omp_get_thread_num() * per_thread + kPad;
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < bands.count; ++i) {
      int64_t out_at;
      const Job jb = pad_band(bands, j, i, in, xp, out_at);
      for (int64_t t0 = 0; t0 < jb.T; t0 += jb.TB)
        conv_block(xp, Up, up, b, relu, out + out_at, jb, s, t0, std::min(jb.TB, jb.T - t0));
    }
  }
}

// Floats of one packed U[e]: the GEMM's A panels round Co up to its MR rows.
int64_t packed_size(int64_t Co, int64_t Ci) {
  const int64_t mr = pe::sgemm_mr();
  return (Co + mr - 1) / mr * mr * Ci;
}

// The packed U[e] panels in one workspace slot of the calling thread.
struct Filter {
  float* Up;
  int64_t up;
  Filter(const float* w, int64_t Co, int64_t Ci, bool flipped, int m) {
    up = packed_size(Co, Ci);
    Up = workspace(4, (m + 2) * (m + 2) * up);
    transform_filter(w, Co, Ci, flipped, m, Up, up);
  }
};

// Tiles [t0, t0 + nb) of the weight gradient, added to this thread's dU (acc; beta 0 overwrites
// it) and, unless null, bias sums (gsum): V of x from xp, A gy A^T from gp (gy at offset
// (sh, sw), see grad_tiles).
void weight_block(const float* xp, const float* gp, int sh, int sw, const Job& j, Scratch& s,
                  int64_t t0, int64_t nb, float* acc, float beta, double* gsum) {
  const int64_t nbp = s.locate(j, t0, nb);
  input_transform(xp, j, s, nbp, j.TB);
  grad_transform(gp, sh, sw, j, s, nbp, gsum);
  for (int64_t e = 0; e < j.a * j.a; ++e)
    pe::sgemm(false, true, j.Co, j.Ci, nbp, 1.f, s.Mb + e * j.Co * j.TB, j.TB,
              s.V + e * j.Ci * j.TB, j.TB, beta, acc + e * j.Co * j.Ci, j.Ci);
}

// The conv of x (tiles over P x Q), and the input gradient's conv: gx[c][h][w] =
// sum_{k,r,s} gy[k][h+ph-r][w+pw-s] w[k][c][r][s], a conv of gy (K channels, P x Q) with the
// 180-degree rotated filter, offset (ph-2, pw-2), output H x W. The one-pass backward relies on
// the separate passes using these same jobs.
Job conv_job(const Geom& g, int m) {
  return make_job(g.N, g.C, g.H, g.W, g.K, g.P, g.Q, -g.ph, -g.pw, m);
}
Job input_grad_job(const Geom& g, int m) {
  return make_job(g.N, g.K, g.P, g.Q, g.C, g.H, g.W, g.ph - 2, g.pw - 2, m);
}

// Whether the input gradient's conv (of gy at offset (ph-2, pw-2), tiles over H x W) has the
// weight gradient's tiles (over P x Q), so that one padded copy of gy serves both: the
// grids have as many tiles, and the copy's rows and columns start at most 2 before gy's.
bool one_copy(const Geom& g, int m) {
  const auto tiles = [m](int64_t n) { return (n + m - 1) / m; };
  return g.ph <= 2 && g.pw <= 2 && tiles(g.H) == tiles(g.P) && tiles(g.W) == tiles(g.Q);
}

// The weight gradient dU[e] (K, C) = sum over tiles of Z[e] (K, tiles) @ V[e]^T, Z = A gy A^T,
// V in plain rows, then gw = G^T dU G, and gb (unless null) from the same tiles of gy. With f
// (the flipped filter, packed; one_copy holds) also the input gradient gx, block by block of the
// same tiles: gy is padded once, as the input gradient's conv reads it, and the weight
// gradient reads its tiles from that copy shifted by (2 - ph, 2 - pw), while they are in cache.
void backward_pass(const float* x, const float* gy, const Filter* f, float* gx, float* gw,
                   float* gb, const Geom& g, int m) {
  const Job j = conv_job(g, m);
  // gy's copy: the input gradient's conv input, or gy alone (zero outside (P, Q)), on x's tiles.
  const Job jg = f ? input_grad_job(g, m) : make_job(g.N, g.K, g.P, g.Q, g.K, g.P, g.Q, 0, 0, m);
  const int sh = f ? int(2 - g.ph) : 0, sw = f ? int(2 - g.pw) : 0;
  PE_CHECK(j.T == jg.T && j.Hp == jg.Hp && j.Wr == jg.Wr && (!f || j.TB == jg.TB),
           "winograd: the input gradient's tiles are not the weight gradient's");
  const int64_t nblocks = (j.T + j.TB - 1) / j.TB, dsize = j.a * j.a * g.K * g.C;
  // dU, then K double bias sums (dsize is even: they stay 8-byte aligned).
  const int64_t extra = dsize + 2 * g.K;
  const int nt = omp_get_max_threads();
  // Each thread sums its tiles into its own dU (a*a*K*C floats: the reason the autotuner skips
  // Winograd's weight gradient where these pass both the input's size and 32 MB,
  // pyengine/ops/conv.py).
  std::vector<float*> parts(nt, nullptr);
  const bool banded = padded_size(j) + padded_size(jg) > 2 * band_floats();
  const Bands bands(j);
  const int64_t xb = banded ? bands.floats(j) : 0, gb_floats = banded ? bands.floats(jg) : 0;
  const float* xp = banded ? nullptr : pad_input(x, j, 2);
  const float* gp = banded ? nullptr : pad_input(gy, jg, 3);
  float* bufs = banded ? workspace(2, nt * (xb + gb_floats)) : nullptr;
  float* all = Scratch::allocate(j, extra);
#pragma omp parallel num_threads(nt)
  {
    // One scratch, laid out for each job: the input gradient's conv (C and K swapped) and the
    // weight gradient's, used one after the other on a block.
    Scratch s(all, j, extra), si(all, f ? jg : j, extra);
    float* acc = s.extra;
    double* gsum = gb ? reinterpret_cast<double*>(acc + dsize) : nullptr;
    if (gsum) std::fill(gsum, gsum + g.K, 0.0);
    bool first = true;  // the thread's first block writes its dU: no zeroing pass over it
    const auto block = [&](const float* xq, const float* gq, const Job& jx, const Job& jy,
                           float* out, int64_t t0) {
      const int64_t nb = std::min(jx.TB, jx.T - t0);
      if (f) conv_block(gq, f->Up, f->up, nullptr, false, out, jy, si, t0, nb);
      weight_block(xq, gq, sh, sw, jx, s, t0, nb, acc, first ? 0.f : 1.f, gsum);
      first = false;
    };
    // Static: a thread's sum covers the same tiles in every run, so the gradient is bitwise
    // reproducible for a thread count (use_deterministic_algorithms lets the heuristic pick it).
    if (!banded) {
#pragma omp for schedule(static) nowait
      for (int64_t blk = 0; blk < nblocks; ++blk) block(xp, gp, j, jg, gx, blk * j.TB);
    } else {
      float* xt = bufs + omp_get_thread_num() * (xb + gb_floats) + kPad;
      float* gt = xt + xb;
#pragma omp for schedule(static) nowait
      for (int64_t i = 0; i < bands.count; ++i) {
        int64_t x_at, gx_at;
        const Job jb = pad_band(bands, j, i, x, xt, x_at);
        const Job jgb = pad_band(bands, jg, i, gy, gt, gx_at);
        for (int64_t t0 = 0; t0 < jb.T; t0 += jb.TB) block(xt, gt, jb, jgb, gx + gx_at, t0);
      }
    }
    parts[omp_get_thread_num()] = first ? nullptr : acc;  // null: no tiles, nothing to add
#pragma omp barrier
    // gw[k][c] = G^T dU[.][k][c] G (a x a -> 3 x 3), the threads' dU summed in double
    const int64_t KC = g.K * g.C;
#pragma omp for schedule(static)
    for (int64_t kc0 = 0; kc0 < KC; kc0 += kF) {
      const int nf = int(std::min<int64_t>(kF, KC - kc0));
      if (m == 2)
        untransform_grads<2>(parts.data(), nt, KC, kc0, nf, gw);
      else
        untransform_grads<4>(parts.data(), nt, KC, kc0, nf, gw);
    }
    if (gb) {
#pragma omp for schedule(static)
      for (int64_t k = 0; k < g.K; ++k) {
        double total = 0.0;
        for (int p = 0; p < nt; ++p)
          if (parts[p]) total += reinterpret_cast<const double*>(parts[p] + dsize)[k];
        gb[k] = static_cast<float>(total);
      }
    }
  }
}

}  // namespace

int wino_default_tile() { return 4; }

bool wino_supported(const Geom& g) {
  return g.R == 3 && g.S == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.G == 1;
}

void fwd_winograd(const float* x, const float* w, const float* b, bool relu, float* y,
                  const Geom& g, int m) {
  const Filter f(w, g.K, g.C, false, m);
  wino_conv(x, f.Up, f.up, b, relu, y, conv_job(g, m));
}

void bwd_input_winograd(const float* gy, const float* w, float* gx, const Geom& g, int m) {
  const Filter f(w, g.C, g.K, true, m);
  wino_conv(gy, f.Up, f.up, nullptr, false, gx, input_grad_job(g, m));
}

void bwd_weight_winograd(const float* x, const float* gy, float* gw, float* gb, const Geom& g,
                         int m) {
  backward_pass(x, gy, nullptr, nullptr, gw, gb, g, m);
}

void bwd_winograd(const float* x, const float* gy, const float* w, float* gx, float* gw,
                  float* gb, const Geom& g, int m) {
  if (!one_copy(g, m)) {
    bwd_input_winograd(gy, w, gx, g, m);
    return bwd_weight_winograd(x, gy, gw, gb, g, m);
  }
  const Filter f(w, g.C, g.K, true, m);
  backward_pass(x, gy, &f, gx, gw, gb, g, m);
}

}  // namespace pe::conv
