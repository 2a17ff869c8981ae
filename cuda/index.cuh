// Index arithmetic of the CUDA kernels, written once as inline functions that compile both under
// nvcc (__host__ __device__) and as plain C++. The kernels call them per thread; the CPU-only
// _cuda_index module (cuda/index_module.cpp) calls the same functions over every thread of small
// launches, so tests/test_cuda_index.py checks the indexing on machines without a GPU.
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__CUDACC__)
#define PE_HD __host__ __device__ __forceinline__
#else
#define PE_HD inline
#endif

namespace pe {
namespace idx {

constexpr int kMaxDims = 8;
constexpr int kThreads = 256;  // threads per block of the 1-D launches

// Blocks of a 1-D launch of n threads; grid-stride loops cover what a capped grid leaves.
inline int64_t blocks_for(int64_t n, int64_t threads = kThreads, int64_t cap = 65535 * 8) {
  const int64_t b = (n + threads - 1) / threads;
  return b < 1 ? 1 : (b > cap ? cap : b);
}

// Element offsets of two operands that share an iteration shape (C order) but have their own
// strides: 0 on broadcast dims, anything (even negative) for views and permutations.
struct Layout2 {
  int nd;
  int64_t shape[kMaxDims];
  int64_t sa[kMaxDims];
  int64_t sb[kMaxDims];
};

PE_HD void layout_offsets(const Layout2& L, int64_t linear, int64_t& oa, int64_t& ob) {
  if (L.nd == 1) {  // the common coalesced case: no division
    oa = linear * L.sa[0];
    ob = linear * L.sb[0];
    return;
  }
  oa = 0;
  ob = 0;
  for (int d = L.nd - 1; d >= 0; --d) {
    const int64_t i = linear % L.shape[d];
    linear /= L.shape[d];
    oa += i * L.sa[d];
    ob += i * L.sb[d];
  }
}

// Strides (elements) of a C-contiguous array of `shape`, right-aligned against an output of `nd`
// dims, 0 on broadcast (size-1 or missing) dims. Returns false when `shape` does not broadcast.
inline bool broadcast_strides(int snd, const int64_t* shape, int nd, const int64_t* out,
                              int64_t* st) {
  if (snd > nd) return false;
  for (int o = 0; o < nd; ++o) st[o] = 0;
  int64_t acc = 1;
  for (int k = 0; k < snd; ++k) {
    const int i = snd - 1 - k, o = nd - 1 - k;
    if (shape[i] != out[o] && shape[i] != 1) return false;
    st[o] = shape[i] == 1 ? 0 : acc;
    acc *= shape[i];
  }
  return true;
}

// Drop size-1 dims and merge neighbours that are contiguous with each other in both operands,
// so most launches decode one or two coordinates per element. Returns the new ndim.
inline int coalesce(Layout2& L) {
  int n = 0;
  for (int d = 0; d < L.nd; ++d) {
    if (L.shape[d] == 1) continue;
    if (n > 0 && L.sa[n - 1] == L.sa[d] * L.shape[d] && L.sb[n - 1] == L.sb[d] * L.shape[d]) {
      L.shape[n - 1] *= L.shape[d];
      L.sa[n - 1] = L.sa[d];
      L.sb[n - 1] = L.sb[d];
      continue;
    }
    L.shape[n] = L.shape[d];
    L.sa[n] = L.sa[d];
    L.sb[n] = L.sb[d];
    ++n;
  }
  if (n == 0) {  // a single element
    L.shape[0] = 1;
    L.sa[0] = L.sb[0] = 0;
    n = 1;
  }
  L.nd = n;
  return n;
}

// Lowest and highest element offsets a strided view touches (for bounds checks on the host).
inline void extent(int nd, const int64_t* shape, const int64_t* st, int64_t offset, int64_t& lo,
                   int64_t& hi) {
  lo = hi = offset;
  for (int d = 0; d < nd; ++d) {
    const int64_t span = (shape[d] - 1) * st[d];
    if (span < 0) lo += span;
    else hi += span;
  }
}

// [begin, end) of part `p` of `parts` near-equal pieces of n: the split of a long reduction over
// blockIdx.y before the partial sums are added in a second pass.
PE_HD void split_range(int64_t p, int64_t parts, int64_t n, int64_t& begin, int64_t& end) {
  const int64_t q = n / parts, r = n % parts;
  begin = p * q + (p < r ? p : r);
  end = begin + q + (p < r ? 1 : 0);
}

// Splits of a sum reduction of m outputs over r_total values each: enough blocks (rows: one per
// output and split) or threads (cols: one per output and split) to fill a large GPU, but at least
// 2048 (rows) or 64 (cols) values per split, and at most 1024 splits.
inline int64_t reduce_splits(int64_t m, int64_t r_total, bool rows) {
  constexpr int64_t kTargetBlocks = 1024;
  int64_t s = rows ? std::min<int64_t>((kTargetBlocks + m - 1) / m, (r_total + 2047) / 2048)
                   : std::min<int64_t>((kTargetBlocks * kThreads + m - 1) / m, (r_total + 63) / 64);
  return std::max<int64_t>(1, std::min<int64_t>(s, 1024));
}

// Kept dims (one output each) and reduced dims of a sum reduction, with their strides in x.
struct ReduceLayout {
  int nk, nr;
  int64_t kshape[kMaxDims], kstride[kMaxDims];
  int64_t rshape[kMaxDims], rstride[kMaxDims];
};

PE_HD int64_t decode(int64_t linear, int nd, const int64_t* shape, const int64_t* st) {
  int64_t off = 0;
  for (int d = nd - 1; d >= 0; --d) {
    off += (linear % shape[d]) * st[d];
    linear /= shape[d];
  }
  return off;
}

// Build the reduce layout of x (xs) to out (os, same ndim, 1 on reduced dims); neighbouring dims
// of the same kind are merged. Returns false when more than kMaxDims groups remain.
inline bool make_reduce_layout(int nd, const int64_t* xs, const int64_t* os, ReduceLayout& R) {
  R.nk = R.nr = 0;
  int64_t stride = 1;
  int last = -1;  // 0 kept, 1 reduced
  // Walk from the innermost dim so strides accumulate; groups are stored outermost-first later.
  int64_t ks[kMaxDims * 2], kt[kMaxDims * 2], rs[kMaxDims * 2], rt[kMaxDims * 2];
  int nk = 0, nr = 0;
  for (int d = nd - 1; d >= 0; --d) {
    if (xs[d] == 1) continue;
    const int red = os[d] == 1 ? 1 : 0;
    if (red == last) {
      if (red) rs[nr - 1] *= xs[d];
      else ks[nk - 1] *= xs[d];
    } else {
      if (nk >= kMaxDims * 2 || nr >= kMaxDims * 2) return false;
      if (red) {
        rs[nr] = xs[d];
        rt[nr++] = stride;
      } else {
        ks[nk] = xs[d];
        kt[nk++] = stride;
      }
      last = red;
    }
    stride *= xs[d];
  }
  if (nk > kMaxDims || nr > kMaxDims) return false;
  for (int i = 0; i < nk; ++i) {
    R.kshape[i] = ks[nk - 1 - i];
    R.kstride[i] = kt[nk - 1 - i];
  }
  for (int i = 0; i < nr; ++i) {
    R.rshape[i] = rs[nr - 1 - i];
    R.rstride[i] = rt[nr - 1 - i];
  }
  R.nk = nk;
  R.nr = nr;
  return true;
}

// ---------------------------------------------------------------- convolution (im2col / col2im)
// Per sample, the column matrix has rows (c, r, s) and columns (p, q): col[(c*R + r)*S + s][p*Q+q]
// = x[c][p*sh - ph + r*dh][q*sw - pw + s*dw], 0 in the padding.
struct ConvGeom {
  int64_t C, H, W, R, S, P, Q;
  int64_t sh, sw, ph, pw, dh, dw;
};

// Offset into one sample of x of column-matrix entry (row, col), or -1 in the padding.
PE_HD int64_t im2col_source(const ConvGeom& g, int64_t row, int64_t col) {
  const int64_t s = row % g.S, r = (row / g.S) % g.R, c = row / (g.S * g.R);
  const int64_t q = col % g.Q, p = col / g.Q;
  const int64_t h = p * g.sh - g.ph + r * g.dh, w = q * g.sw - g.pw + s * g.dw;
  if (h < 0 || h >= g.H || w < 0 || w >= g.W) return -1;
  return (c * g.H + h) * g.W + w;
}

// Output position p whose window puts kernel tap k on input coordinate i (col2im as a gather,
// so each input gradient element is summed by one thread, with no atomics); -1 when none.
PE_HD int64_t col2im_tap(int64_t i, int64_t k, int64_t stride, int64_t pad, int64_t dil,
                         int64_t P) {
  const int64_t t = i + pad - k * dil;
  if (t < 0 || t % stride != 0) return -1;
  const int64_t p = t / stride;
  return p < P ? p : -1;
}

// ---------------------------------------------------------------- pooling windows
// Max pool: taps h = p*stride - pad + k*dil for k in [0, K) that fall inside [0, H).
PE_HD int64_t pool_tap(int64_t p, int64_t k, int64_t stride, int64_t pad, int64_t dil, int64_t H) {
  const int64_t h = p * stride - pad + k * dil;
  return (h >= 0 && h < H) ? h : -1;
}

// Average pool window [begin, end) clipped to the input, and the divisor PyTorch uses:
// the window clipped to the padded input when count_include_pad, else the clipped window.
PE_HD void avg_window(int64_t p, int64_t K, int64_t stride, int64_t pad, int64_t H,
                      bool count_include_pad, int64_t& begin, int64_t& end, int64_t& count) {
  int64_t b = p * stride - pad, e = b + K;
  if (e > H + pad) e = H + pad;
  const int64_t padded = e - b;
  if (b < 0) b = 0;
  if (e > H) e = H;
  begin = b;
  end = e;
  count = count_include_pad ? padded : e - b;
}

// Adaptive pool window of output p of P over H inputs: [floor(p*H/P), ceil((p+1)*H/P)).
PE_HD void adaptive_window(int64_t p, int64_t P, int64_t H, int64_t& begin, int64_t& end) {
  begin = (p * H) / P;
  end = ((p + 1) * H + P - 1) / P;
}

// ---------------------------------------------------------------- interpolation
// PyTorch's compute_scales_value: 1/scale_factor when one was given (> 0), else in/out, in float.
PE_HD float resample_scale(double scale_factor, int64_t in, int64_t out) {
  return scale_factor > 0. ? static_cast<float>(1.0 / scale_factor)
                           : static_cast<float>(in) / static_cast<float>(out);
}

// PyTorch's nearest_idx: exact paths for 1x and 2x, else min(floor(dst * scale), in - 1).
PE_HD int64_t nearest_index(int64_t dst, int64_t in, int64_t out, float scale) {
  if (out == in) return dst;
  if (out == 2 * in) return dst >> 1;
  const int64_t s = static_cast<int64_t>(static_cast<float>(dst) * scale);
  return s < in - 1 ? s : in - 1;
}

PE_HD int64_t nearest_source(int64_t dst, int64_t in, int64_t out) {
  return nearest_index(dst, in, out, resample_scale(0., in, out));
}

// Linear (area_pixel_compute_source_index + guard_index_and_lambda): the two source taps and the
// weight of the second; `scale` is resample_scale(...) unless align_corners.
PE_HD void linear_index(int64_t dst, int64_t in, int64_t out, bool align_corners, float scale,
                        int64_t& i0, int64_t& i1, float& lambda) {
  if (align_corners) scale = out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.f;
  float src = align_corners ? scale * static_cast<float>(dst)
                            : scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  if (src < 0.f) src = 0.f;
  i0 = static_cast<int64_t>(src);
  if (i0 > in - 1) i0 = in - 1;
  i1 = i0 < in - 1 ? i0 + 1 : i0;
  lambda = src - static_cast<float>(i0);
  lambda = lambda < 0.f ? 0.f : (lambda > 1.f ? 1.f : lambda);
}

PE_HD void linear_source(int64_t dst, int64_t in, int64_t out, bool align_corners, int64_t& i0,
                         int64_t& i1, float& lambda) {
  linear_index(dst, in, out, align_corners, resample_scale(0., in, out), i0, i1, lambda);
}

// ---------------------------------------------------------------- padding
enum PadMode { kPadZeros = 0, kPadReflect = 1, kPadReplicate = 2, kPadCircular = 3 };

// Source coordinate of output coordinate o of a dim padded by `before` (input size n), or -1 for
// a zero. Reflect mirrors without repeating the edge (needs before, after < n).
PE_HD int64_t pad_source(int64_t o, int64_t before, int64_t n, int mode) {
  int64_t i = o - before;
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case kPadReflect:
      if (n == 1) return 0;
      while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
      return i;
    case kPadReplicate:
      return i < 0 ? 0 : n - 1;
    case kPadCircular:
      return ((i % n) + n) % n;
    default:
      return -1;
  }
}

// ---------------------------------------------------------------- random numbers
// Philox4x32-10 (Salmon et al., SC'11): four 32-bit words per (counter, key), so element e of
// a random tensor depends only on (seed, e) and not on the launch shape.
struct U4 {
  uint32_t x, y, z, w;
};

PE_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

PE_HD U4 philox4x32(U4 c, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(0xD2511F53u, c.x, hi0, lo0);
    mulhilo(0xCD9E8D57u, c.z, hi1, lo1);
    c = U4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c;
}

// Uniform in [0, 1) with 24 random bits (every value exactly representable in float32).
PE_HD float uniform01(uint32_t u) { return static_cast<float>(u >> 8) * (1.0f / 16777216.0f); }

}  // namespace idx
}  // namespace pe
