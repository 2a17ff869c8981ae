// Emulator build only: the WMMA fragments used by the TF32 GEMM (cuda/gemm.cu). A fragment is
// opaque and spread over a warp's lanes on a GPU; here every lane holds the whole tile and
// computes the whole product, which gives each lane the values its share would hold. Inputs are
// rounded to TF32 as the tensor cores do; products accumulate in float.
#pragma once
#include <cstdint>
#include <cstring>

#include "../cuda_emu.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

// Round to nearest (ties away from zero) keeping 10 mantissa bits: cvt.rna.tf32.f32.
inline float __float_to_tf32(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  if ((b & 0x7f800000u) != 0x7f800000u) b = (b + 0x1000u) & 0xffffe000u;
  std::memcpy(&v, &b, 4);
  return v;
}

template <typename Use, int M, int N, int K>
struct frag_shape;
template <int M, int N, int K>
struct frag_shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct frag_shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct frag_shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  using S = frag_shape<Use, M, N, K>;
  static constexpr int rows = S::rows, cols = S::cols, num_elements = rows * cols;
  static constexpr bool col = std::is_same<Layout, col_major>::value;
  float x[num_elements];  // row-major (r, c)
};

template <typename F>
inline void fill_fragment(F& f, float v) {
  for (float& e : f.x) e = v;
}

template <typename Use, int M, int N, int K, typename T, typename L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const float* p, unsigned ld) {
  using F = fragment<Use, M, N, K, T, L>;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = F::col ? p[size_t(c) * ld + r] : p[size_t(r) * ld + c];
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f,
                              unsigned ld, layout_t layout) {
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      (layout == mem_row_major ? p[size_t(r) * ld + c] : p[size_t(c) * ld + r]) = f.x[r * N + c];
}

template <int M, int N, int K, typename T, typename LA, typename LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d,
                     const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b,
                     const fragment<accumulator, M, N, K, float>& c) {
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float acc = c.x[i * N + j];
      for (int k = 0; k < K; ++k)
        acc = std::fma(__float_to_tf32(a.x[i * K + k]), __float_to_tf32(b.x[k * N + j]), acc);
      out[i * N + j] = acc;
    }
  std::memcpy(d.x, out, sizeof out);
}

}  // namespace wmma
}  // namespace nvcuda
