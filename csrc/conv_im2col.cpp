// im2col convolution, float32 NCHW: a column buffer (Cg*R*S, rows*Q) built per image and group
// over a tile of output rows, multiplied by pe::sgemm; the input gradient is a GEMM followed by
// col2im (a scatter-add, no zero-stuffing). 1x1/stride-1/unpadded convs skip the buffer.
// Shapes: x (N,C,H,W), w (K,C/G,R,S), b (K,) or None, y (N,K,P,Q); G = groups.
#include <algorithm>
#include <cstring>
#include <vector>

#include "conv.h"
#include "gemm.h"

namespace pe::conv {
namespace {

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
          for (int64_t q = 0; q < qlo; ++q) d[q] = 0.f;
          if (qlo < qhi) {
            const float* src = xc + ih * g.W + offw;
            if (g.sw == 1)
              std::memcpy(d + qlo, src + qlo, (qhi - qlo) * sizeof(float));
            else
              for (int64_t q = qlo; q < qhi; ++q) d[q] = src[q * g.sw];
          }
          for (int64_t q = qhi; q < g.Q; ++q) d[q] = 0.f;
        }
      }
  }
}

// Implicit im2col: packs rows [k0, k0+kc) x columns [j0, j0+nc) of the column matrix of a batch
// of images' group xg (Cg,H,W), consecutive images img floats apart (row (c,r,s), column
// n*P*Q + p*Q + q, as im2col builds it per image) straight into sgemm_pack_b's NR-wide panels.
// Each row is first gathered contiguously into `line` (a few copies of input-row pieces between
// zero borders; nc floats, L1-resident, the GEMM's per-thread scratch, so that nothing is
// allocated inside its parallel region), then dealt out to the panels.
constexpr int64_t kPfChannels = 2;

template <int64_t NR>
inline void deal_row(const float* line, int64_t nc, int64_t kc, float* dst) {
  int64_t jp = 0;
  for (; jp + NR <= nc; jp += NR, dst += kc * NR)
    for (int64_t t = 0; t < NR; ++t) dst[t] = line[jp + t];
  if (jp < nc) {
    for (int64_t t = 0; t < nc - jp; ++t) dst[t] = line[jp + t];
    for (int64_t t = nc - jp; t < NR; ++t) dst[t] = 0.f;
  }
}

PE_MULTIVERSION void pack_patches(const float* xg, int64_t img, const Geom& g, int64_t NR,
                                  int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst,
                                  float* __restrict line) {
  const int64_t RS = g.R * g.S, PQ = g.P * g.Q, HW = g.H * g.W;
  const int64_t n_first = j0 / PQ, p_first = j0 % PQ / g.Q, q_first = j0 % g.Q;
  // Input rows this block reads, per channel of its first image: the loads are short runs
  // scattered over the channels, which the hardware prefetchers do not foresee; fetch the
  // channel after next ahead.
  const bool one_image = (j0 + nc - 1) / PQ == n_first;
  const int64_t lo = one_image ? std::max<int64_t>(0, p_first * g.sh - g.ph) * g.W : 0;
  const int64_t last_row = (j0 + nc - 1) % PQ / g.Q * g.sh - g.ph + (g.R - 1) * g.dh;
  const int64_t hi = one_image ? std::min(g.H, last_row + 1) * g.W : HW;
  const float* x0 = xg + n_first * img;
  for (int64_t kk = 0; kk < kc; ++kk) {
    const int64_t k = k0 + kk, c = k / RS, r = k % RS / g.S, s = k % g.S;
    if (k % RS == 0 && c + kPfChannels < g.Cg())
      for (const float *pf = x0 + (c + kPfChannels) * HW, *e = pf + hi; pf + lo < e; pf += 16)
        __builtin_prefetch(pf + lo);
    const int64_t offh = r * g.dh - g.ph, offw = s * g.dw - g.pw;
    int64_t qlo, qhi;
    valid_range(g.Q, g.W, g.sw, offw, qlo, qhi);
    const float* xc = x0 + c * HW;
    for (int64_t i = 0, p = p_first, q0 = q_first; i < nc;) {
      const int64_t q1 = std::min(g.Q, q0 + nc - i), ih = p * g.sh + offh;
      float* lr = line + i - q0;  // lr[q] is column q of output row p
      const int64_t a = std::clamp(qlo, q0, q1), b = std::clamp(qhi, a, q1);
      if (ih < 0 || ih >= g.H || a == b) {
        std::fill(lr + q0, lr + q1, 0.f);
      } else {
        const float* src = xc + ih * g.W + offw;
        std::fill(lr + q0, lr + a, 0.f);
        if (g.sw == 1)  // pieces are short: an inlined loop beats a memcpy call
          for (int64_t q = a; q < b; ++q) lr[q] = src[q];
        else
          for (int64_t q = a; q < b; ++q) lr[q] = src[q * g.sw];
        std::fill(lr + b, lr + q1, 0.f);
      }
      i += q1 - q0;
      q0 = 0;
      if (++p == g.P) p = 0, xc += img;  // on to the next image
    }
    if (NR == 32)
      deal_row<32>(line, nc, kc, dst + kk * NR);
    else if (NR == 16)
      deal_row<16>(line, nc, kc, dst + kk * NR);
    else
      deal_row<8>(line, nc, kc, dst + kk * NR);
  }
}

// Stride 1: over a zero-padded copy xp (Cg,Hp,Wp) of the image group and an output computed at
// the padded width Wp ("wide", as the direct kernel does), column j = p*Wp + q of column-matrix
// row (c,r,s) is xp[c][r*dh][s*dw + j]: every row is one contiguous run starting at off[row],
// so packing is a plain copy, as for a stored matrix.
template <int64_t NR>
inline void copy_panels(const float* src, int64_t nc, int64_t kc, float* dst) {
  int64_t jp = 0;
  for (; jp + NR <= nc; jp += NR, dst += kc * NR)
    for (int64_t t = 0; t < NR; ++t) dst[t] = src[jp + t];
  if (jp < nc) {
    for (int64_t t = 0; t < nc - jp; ++t) dst[t] = src[jp + t];
    for (int64_t t = nc - jp; t < NR; ++t) dst[t] = 0.f;
  }
}

PE_MULTIVERSION void pack_wide(const float* xp, const int64_t* off, int64_t NR, int64_t k0,
                               int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t kk = 0; kk < kc; ++kk) {
    const float* src = xp + off[k0 + kk] + j0;
    if (kk + 4 < kc) __builtin_prefetch(xp + off[k0 + kk + 4] + j0);
    if (NR == 32)
      copy_panels<32>(src, nc, kc, dst + kk * NR);
    else if (NR == 16)
      copy_panels<16>(src, nc, kc, dst + kk * NR);
    else
      copy_panels<8>(src, nc, kc, dst + kk * NR);
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
        if (qlo == qhi) continue;
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

// ---------------------------------------------------------------- im2col + GEMM
// Patches gathered from the images: one GEMM per group over the whole batch's columns, so the
// weights are packed once and small planes still make wide GEMMs; sgemm threads it.
void fwd_gathered(const float* x, const float* w, const float* b, float* y, const Geom& g) {
  const int64_t CRS = g.CRS(), PQ = g.P * g.Q, HW = g.H * g.W, NR = pe::sgemm_nr();
  const int64_t cols = g.N * PQ;
  float* out = workspace(3, pe::mul(g.Kg(), cols));
  for (int64_t gi = 0; gi < g.G; ++gi) {
    const float* xg = x + gi * g.Cg() * HW;
    const pe::PackB pack = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst,
                               float* line) {
      pack_patches(xg, g.C * HW, g, NR, k0, kc, j0, nc, dst, line);
    };
    pe::sgemm_pack_b(false, g.Kg(), cols, CRS, 1.f, w + gi * g.Kg() * CRS, CRS, pack, 0.f, out,
                     cols);
#pragma omp parallel for collapse(2) schedule(static) if (g.Kg() * cols > (1 << 15))
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t k = 0; k < g.Kg(); ++k) {
        const float bias = b ? b[gi * g.Kg() + k] : 0.f;
        const float* src = out + k * cols + n * PQ;
        float* dst = y + (n * g.K + gi * g.Kg() + k) * PQ;
        for (int64_t i = 0; i < PQ; ++i) dst[i] = src[i] + bias;
      }
  }
}

}  // namespace

// The forward never stores columns: the GEMM packs its B panels straight from the image.
void fwd_im2col(const float* x, const float* w, const float* b, float* y, const Geom& g) {
  const int64_t CRS = g.CRS(), PQ = g.P * g.Q, HW = g.H * g.W, NR = pe::sgemm_nr();
  const int64_t Hp = g.P + (g.R - 1) * g.dh, Wp = g.Q + (g.S - 1) * g.dw;
  const bool pad_ok = padded_copy_ok(g);
  const int64_t Lw = pad_ok ? (g.P - 1) * Wp + g.Q : 0;  // wide columns up to the last needed one
  // The wide layout computes (Wp - Q) discarded columns per row: worth it for large planes,
  // but on small ones (8x8: 78 columns, 3 panels instead of 2) the waste outweighs the
  // cheaper packing, and patches are gathered from the images instead. Wide and pointwise
  // convs run image by image (images in parallel when the batch splits over the threads).
  const bool pw1 = g.pointwise(), wide = g.sh == 1 && g.sw == 1 && !pw1 && pad_ok &&
                                         10 * ((Lw + NR - 1) / NR) <= 11 * ((PQ + NR - 1) / NR);
  std::vector<int64_t> off(wide ? CRS : 0);
  for (int64_t k = 0; k < (wide ? CRS : 0); ++k)
    off[k] = (k / (g.R * g.S) * Hp + k / g.S % g.R * g.dh) * Wp + k % g.S * g.dw;
  if (!wide && !pw1) return fwd_gathered(x, w, b, y, g);
  for_images(g.N, [&](int64_t n, bool) {
    if (b && pw1) fill_bias(y + n * g.K * PQ, b, g.K, PQ);
    const float beta = b && pw1 ? 1.f : 0.f;
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const float* xg = x + (n * g.C + gi * g.Cg()) * HW;
      const float* wg = w + gi * g.Kg() * CRS;
      float* yg = y + (n * g.K + gi * g.Kg()) * PQ;
      if (pw1) {
        pe::sgemm(false, false, g.Kg(), PQ, CRS, 1.f, wg, CRS, xg, HW, beta, yg, PQ);
        continue;
      }
      float* xp = workspace(2, pe::mul(g.Cg(), Hp, Wp));
      float* out = workspace(3, pe::mul(g.Kg(), Lw));
      pad_planes(xg, xp, g.Cg(), g.H, g.W, Hp, Wp, g.ph, g.pw);
      // The AVX-512 kernel reads the rows in place; other kernels get them packed.
      if (!pe::sgemm_rows_b(g.Kg(), Lw, CRS, wg, xp, off.data(), out, Lw)) {
        const pe::PackB pack = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst,
                                   float*) { pack_wide(xp, off.data(), NR, k0, kc, j0, nc, dst); };
        pe::sgemm_pack_b(false, g.Kg(), Lw, CRS, 1.f, wg, CRS, pack, 0.f, out, Lw);
      }
      for (int64_t k = 0; k < g.Kg(); ++k) {
        const float bias = b ? b[gi * g.Kg() + k] : 0.f;
        for (int64_t p = 0; p < g.P; ++p) {
          const float* src = out + k * Lw + p * Wp;
          float* dst = yg + (k * g.P + p) * g.Q;
          for (int64_t q = 0; q < g.Q; ++q) dst[q] = src[q] + bias;
        }
      }
    }
  });
}

// Stride 1 with the output exactly the "full" correlation size: the input gradient is the
// forward conv of gy with the weight transposed per group and flipped, w'[c, k, R-1-r, S-1-s] =
// w[k, c, r, s], padded by d*(k-1) - pad, so it takes the forward's implicit GEMM (K-deep
// contraction over Kg*R*S) instead of a GEMM into a column buffer plus a col2im scatter.
bool bwd_input_as_forward(const float* gy, const float* w, float* gx, const Geom& g) {
  const int64_t eh = g.dh * (g.R - 1), ew = g.dw * (g.S - 1);
  if (g.sh != 1 || g.sw != 1 || g.pointwise() || g.ph > eh || g.pw > ew ||
      g.P != g.H + 2 * g.ph - eh || g.Q != g.W + 2 * g.pw - ew)
    return false;
  const Geom f{g.N, g.K, g.P, g.Q, g.C, g.R, g.S, g.H, g.W, 1, 1, eh - g.ph, ew - g.pw,
               g.dh, g.dw, g.G};
  const int64_t Cg = g.Cg(), Kg = g.Kg(), RS = g.R * g.S;
  float* wt = workspace(1, g.C * Kg * RS);
  for (int64_t gi = 0; gi < g.G; ++gi)
    for (int64_t k = 0; k < Kg; ++k)
      for (int64_t c = 0; c < Cg; ++c) {
        const float* src = w + ((gi * Kg + k) * Cg + c) * RS;
        float* dst = wt + ((gi * Cg + c) * Kg + k) * RS;
        for (int64_t i = 0; i < RS; ++i) dst[i] = src[RS - 1 - i];
      }
  fwd_im2col(gy, wt, nullptr, gx, f);
  return true;
}

void bwd_input_im2col(const float* gy, const float* w, float* gx, const Geom& g) {
  if (bwd_input_as_forward(gy, w, gx, g)) return;
  const int64_t CRS = g.CRS(), PQ = g.P * g.Q, HW = g.H * g.W, rows = tile_rows(g);
  const bool pw1 = g.pointwise();
  for_images(g.N, [&](int64_t n, bool par) {
    float* col = pw1 ? nullptr : workspace(0, pe::mul(CRS, rows, g.Q));
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
    float* col = pw1 ? nullptr : workspace(0, pe::mul(CRS, rows, g.Q));
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
  // Parts for as many threads as asked for; only the team the runtime actually grants (fewer
  // under OMP_DYNAMIC, OMP_THREAD_LIMIT or in a nested region) writes and sums them: the parts
  // of threads that never ran hold whatever the scratch held before.
  const int nt = omp_get_max_threads();
  float* parts = workspace(1, pe::mul(nt, wsize));
  Errors errors;
#pragma omp parallel num_threads(nt)
  {
    const int team = omp_get_num_threads();
    float* acc = parts + omp_get_thread_num() * wsize;
    std::memset(acc, 0, wsize * sizeof(float));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.N; ++n) errors.run([&] { image(n, false, acc); });
#pragma omp for schedule(static)
    for (int64_t i = 0; i < wsize; ++i) {
      float s = 0.f;
      for (int t = 0; t < team; ++t) s += parts[t * wsize + i];
      gw[i] = s;
    }
  }
  errors.rethrow();
}

}  // namespace pe::conv
