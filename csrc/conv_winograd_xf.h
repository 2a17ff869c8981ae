// The vector transforms of csrc/conv_winograd.cpp: kL tiles per vector (one float per lane),
// the explicit F(2x2,3x3) / F(4x4,3x3) input, output and adjoint-output transforms, the column
// phase split of a padded input row, the run-wise loads of a group of tiles and the interleave
// that stores a row of output tiles. Included only by conv_winograd.cpp; everything here is
// internal to it (anonymous namespace).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

// Vec values are passed between always-inlined functions only, so the note that a 64-byte
// vector argument's ABI differs between the target clones concerns no real call.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace pe::conv {
namespace {

// Tiles per transform vector: every transform below works on kL tiles at once, one float per
// lane, in loops the compiler turns into one AVX-512 (or two AVX2) operation per line.
constexpr int kL = 16;

// The transforms are templates inlined into PE_MULTIVERSION functions, so each target clone
// compiles them for its own vector width (a call would reach the baseline SSE2 copy).
#define PE_INLINE inline __attribute__((always_inline))

// kL floats as one GCC vector: one zmm in the AVX-512 clone, two ymm in the AVX2 one; loads and
// stores through it need only float alignment.
typedef float Vec __attribute__((vector_size(kL * sizeof(float)), aligned(4)));

PE_INLINE Vec ld(const float* p) { return *reinterpret_cast<const Vec*>(p); }
PE_INLINE void st(float* p, Vec v) { *reinterpret_cast<Vec*>(p) = v; }
typedef int32_t IVec __attribute__((vector_size(kL * sizeof(int32_t))));

// One-dimensional transforms of kL-lane rows: row i of the input at d + i*ds, of the output at
// o + i*os. bt: B^T (input tile), at: A^T (output tile), adj: A = (A^T)^T (the output
// transform's adjoint, for the weight gradient), with F(4x4,3x3)'s matrices
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// and F(2x2,3x3)'s B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], A^T = [1 1 1 0; 0 1 -1 -1],
// written out so that the zero and unit coefficients cost nothing.
template <int m>
struct Xf;

template <>
struct Xf<4> {
  static constexpr int a = 6;
  static PE_INLINE void bt(const float* d, int64_t ds, float* o, int64_t os) {
    const Vec d0 = ld(d), d1 = ld(d + ds), d2 = ld(d + 2 * ds), d3 = ld(d + 3 * ds);
    const Vec d4 = ld(d + 4 * ds), d5 = ld(d + 5 * ds);
    const Vec p = d4 - 4.f * d2, q = d3 - 4.f * d1, r = d4 - d2, s = 2.f * (d3 - d1);
    st(o, 4.f * d0 - 5.f * d2 + d4);
    st(o + os, p + q);
    st(o + 2 * os, p - q);
    st(o + 3 * os, r + s);
    st(o + 4 * os, r - s);
    st(o + 5 * os, 4.f * d1 - 5.f * d3 + d5);
  }
  static PE_INLINE void at(const float* d, int64_t ds, float* o, int64_t os) {
    const Vec d1 = ld(d + ds), d2 = ld(d + 2 * ds), d3 = ld(d + 3 * ds), d4 = ld(d + 4 * ds);
    const Vec sp = d1 + d2, sm = d1 - d2, tp = d3 + d4, tm = d3 - d4;
    st(o, ld(d) + sp + tp);
    st(o + os, sm + 2.f * tm);
    st(o + 2 * os, sp + 4.f * tp);
    st(o + 3 * os, sm + 8.f * tm + ld(d + 5 * ds));
  }
  static PE_INLINE void adj(const float* d, int64_t ds, float* o, int64_t os) {
    const Vec d0 = ld(d), d1 = ld(d + ds), d2 = ld(d + 2 * ds), d3 = ld(d + 3 * ds);
    const Vec ep = d0 + d2, em = d1 + d3, fp = d0 + 4.f * d2, fm = 2.f * d1 + 8.f * d3;
    st(o, d0);
    st(o + os, ep + em);
    st(o + 2 * os, ep - em);
    st(o + 3 * os, fp + fm);
    st(o + 4 * os, fp - fm);
    st(o + 5 * os, d3);
  }
};

template <>
struct Xf<2> {
  static constexpr int a = 4;
  static PE_INLINE void bt(const float* d, int64_t ds, float* o, int64_t os) {
    const Vec d0 = ld(d), d1 = ld(d + ds), d2 = ld(d + 2 * ds), d3 = ld(d + 3 * ds);
    st(o, d0 - d2);
    st(o + os, d1 + d2);
    st(o + 2 * os, d2 - d1);
    st(o + 3 * os, d1 - d3);
  }
  static PE_INLINE void at(const float* d, int64_t ds, float* o, int64_t os) {
    const Vec d1 = ld(d + ds), d2 = ld(d + 2 * ds);
    st(o, ld(d) + d1 + d2);
    st(o + os, d1 - d2 - ld(d + 3 * ds));
  }
  static PE_INLINE void adj(const float* d, int64_t ds, float* o, int64_t os) {
    const Vec d0 = ld(d), d1 = ld(d + ds);
    st(o, d0);
    st(o + os, d0 + d1);
    st(o + 2 * os, d0 - d1);
    st(o + 3 * os, -d1);
  }
};

// Two-dimensional transform of kL tiles: out = L in L^T with L = Xf::f (rows x n), in and out
// being (n x n) and (rows x rows) grids of kL-lane rows, row-major, is and os floats apart;
// tmp holds n x rows.
template <typename F>
PE_INLINE void xf2d(F f, int n, int rows, const float* in, int64_t is, float* tmp, float* out,
                    int64_t os) {
  for (int r = 0; r < n; ++r) f(in + r * n * is, is, tmp + r * rows * kL, kL);
  for (int c = 0; c < rows; ++c) f(tmp + c * kL, rows * kL, out + c * os, rows * os);
}

// d[ph*L + i] = row[m*i + ph] for i < L, the columns outside [x0, x1) zero: kL*m columns at a
// time, split into their m phases by vector shuffles. The columns are first staged, kWin chunks
// at a time, in a zero-bordered buffer: a vector load right after the copy of its own chunk
// waited for the copy's stores to drain (a failed store-to-load forward), which made this split
// ~8 % of a U-Net layer's Winograd forward and backward.
template <int m>
PE_INLINE void split_row(const float* row, int64_t x0, int64_t x1, int64_t L, float* d) {
  constexpr int64_t kWin = 8, kChunk = m * kL;
  alignas(64) float t[kWin * kChunk], o[m][kL];
  for (int64_t w0 = 0; w0 < L; w0 += kWin * kL) {
    const int64_t xs = w0 * m, used = (std::min(L - w0, kWin * kL) + kL - 1) / kL * kChunk;
    const int64_t c0 = std::clamp(x0, xs, xs + used), c1 = std::clamp(x1, c0, xs + used);
    std::fill(t, t + (c0 - xs), 0.f);
    std::memcpy(t + (c0 - xs), row + c0, (c1 - c0) * sizeof(float));
    std::fill(t + (c1 - xs), t + used, 0.f);
    for (int64_t i0 = w0; i0 < std::min(L, w0 + kWin * kL); i0 += kL) {
      const float* c = t + (i0 - w0) * m;
      if constexpr (m == 2) {
        const Vec v0 = ld(c), v1 = ld(c + kL);
        st(o[0], __builtin_shuffle(v0, v1, IVec{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24,
                                                26, 28, 30}));
        st(o[1], __builtin_shuffle(v0, v1, IVec{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25,
                                                27, 29, 31}));
      } else {
        // Phases (0, 1) and (2, 3) of each 32 columns, then their halves joined.
        constexpr IVec lo{0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29};
        constexpr IVec hi{2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31};
        constexpr IVec first{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
        constexpr IVec second{8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
        const Vec v0 = ld(c), v1 = ld(c + kL), v2 = ld(c + 2 * kL), v3 = ld(c + 3 * kL);
        const Vec p0 = __builtin_shuffle(v0, v1, lo), p1 = __builtin_shuffle(v0, v1, hi);
        const Vec p2 = __builtin_shuffle(v2, v3, lo), p3 = __builtin_shuffle(v2, v3, hi);
        st(o[0], __builtin_shuffle(p0, p2, first));
        st(o[1], __builtin_shuffle(p0, p2, second));
        st(o[2], __builtin_shuffle(p1, p3, first));
        st(o[3], __builtin_shuffle(p1, p3, second));
      }
      // Whole vectors where a row is one chunk: past a phase's L floats they spill into the next
      // phase, written after, or into the row's slack. A later chunk would spill into the next
      // phase's first chunk, already written.
      const int64_t n = std::min<int64_t>(kL, L - i0);
      for (int ph = 0; ph < m; ++ph)
        if (n == kL || i0 == 0)
          st(d + ph * L + i0, ld(o[ph]));
        else
          std::memcpy(d + ph * L + i0, o[ph], n * sizeof(float));
    }
  }
}

// Runs of consecutive tiles in a group of kL tiles at offsets off (ascending): run u covers
// lanes [start_u, start_{u+1}), lane l reading base[u] + l; mask[u] selects lanes >= start_u.
struct Runs {
  int n = 0;
  int64_t base[kL];
  IVec mask[kL];
  PE_INLINE explicit Runs(const int64_t* off) {
    IVec lane;
    for (int l = 0; l < kL; ++l) lane[l] = l;
    for (int l = 0; l < kL; ++l)
      if (l == 0 || off[l] != off[l - 1] + 1) {
        base[n] = off[l] - l;
        mask[n++] = lane >= l;
      }
  }
  // kL lanes of tap t: one unaligned load per run, merged by lane.
  PE_INLINE Vec load(const float* src, int64_t t) const {
    Vec x = ld(src + base[0] + t);
    for (int u = 1; u < n; ++u) x = mask[u] ? ld(src + base[u] + t) : x;
    return x;
  }
};

// z (m vectors, kL*m floats) = the columns m*l + v of y[v] (lane l), v < m: a row of m x m
// tiles in memory order.
template <int m>
PE_INLINE void interleave(const float (*y)[kL], float (*z)[kL]) {
  constexpr IVec lo{0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
  constexpr IVec hi{8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const Vec y0 = ld(y[0]), y1 = ld(y[1]);
  if constexpr (m == 2) {
    st(z[0], __builtin_shuffle(y0, y1, lo));
    st(z[1], __builtin_shuffle(y0, y1, hi));
  } else {
    // Pairs (y0, y1) and (y2, y3) per tile, then the pairs of four tiles joined.
    constexpr IVec plo{0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23};
    constexpr IVec phi{8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31};
    const Vec y2 = ld(y[2]), y3 = ld(y[3]);
    const Vec q0 = __builtin_shuffle(y0, y1, lo), q1 = __builtin_shuffle(y0, y1, hi);
    const Vec r0 = __builtin_shuffle(y2, y3, lo), r1 = __builtin_shuffle(y2, y3, hi);
    st(z[0], __builtin_shuffle(q0, r0, plo));
    st(z[1], __builtin_shuffle(q0, r0, phi));
    st(z[2], __builtin_shuffle(q1, r1, plo));
    st(z[3], __builtin_shuffle(q1, r1, phi));
  }
}

}  // namespace
}  // namespace pe::conv

#pragma GCC diagnostic pop
