// SGEMM: shared-memory tiled, register-blocked (each thread owns a TM x TN block of C), with
// float4 global loads when a tile is fully inside an aligned matrix, and an opt-in TF32
// tensor-core variant (WMMA m16n16k8, FP32 accumulation). All four transpose cases share one
// kernel: a tile is always stored k-major in shared memory, so only the loads differ.
#include <mma.h>

#include "common.cuh"
#include "gemm.cuh"

namespace pe {

namespace {

bool g_allow_tf32 = false;

struct GemmArgs {
  const float* A;
  const float* B;
  float* C;
  int64_t M, N, K, lda, ldb, ldc, sA, sB, sC;
  float alpha, beta;
  bool ta, tb;
};

// Stores the BK x BX tile T[k][x] of a matrix whose element (x, k) is at src[x*ld + k] when
// `kcontig`, else at src[k*ld + x]; zeros outside [0, X) x [0, K). float4 loads along the
// contiguous dim when the whole tile is inside and 16-byte aligned.
template <int BX, int BK, int NT, int LDT, typename Conv>
__device__ __forceinline__ void load_tile(float (*T)[LDT], const float* __restrict__ src,
                                          int64_t ld, bool kcontig, int64_t x0, int64_t X,
                                          int64_t k0, int64_t K, bool vec_ok, Conv conv) {
  const int tid = threadIdx.x;
  if (vec_ok && x0 + BX <= X && k0 + BK <= K) {
    if (kcontig) {
      for (int e = tid; e < BX * BK / 4; e += NT) {
        const int x = e / (BK / 4), k = (e % (BK / 4)) * 4;
        const float4 v = *reinterpret_cast<const float4*>(src + (x0 + x) * ld + k0 + k);
        T[k][x] = conv(v.x);
        T[k + 1][x] = conv(v.y);
        T[k + 2][x] = conv(v.z);
        T[k + 3][x] = conv(v.w);
      }
    } else {
      for (int e = tid; e < BX * BK / 4; e += NT) {
        const int k = e / (BX / 4), x = (e % (BX / 4)) * 4;
        const float4 v = *reinterpret_cast<const float4*>(src + (k0 + k) * ld + x0 + x);
        *reinterpret_cast<float4*>(&T[k][x]) = make_float4(conv(v.x), conv(v.y), conv(v.z), conv(v.w));
      }
    }
    return;
  }
  for (int e = tid; e < BX * BK; e += NT) {
    int x, k;
    if (kcontig) {
      x = e / BK;
      k = e % BK;
    } else {
      k = e / BX;
      x = e % BX;
    }
    const int64_t gx = x0 + x, gk = k0 + k;
    T[k][x] = (gx < X && gk < K) ? conv(src[kcontig ? gx * ld + gk : gk * ld + gx]) : 0.f;
  }
}

struct Identity {
  __device__ float operator()(float v) const { return v; }
};

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    sgemm_kernel(GemmArgs g, bool vec_a, bool vec_b) {
  constexpr int NT = (BM / TM) * (BN / TN);
  __shared__ __align__(16) float As[BK][BM + 4];
  __shared__ __align__(16) float Bs[BK][BN + 4];
  const float* A = g.A + blockIdx.z * g.sA;
  const float* B = g.B + blockIdx.z * g.sB;
  float* C = g.C + blockIdx.z * g.sC;
  const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;
  const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  for (int64_t k0 = 0; k0 < g.K; k0 += BK) {
    load_tile<BM, BK, NT>(As, A, g.lda, !g.ta, m0, g.M, k0, g.K, vec_a, Identity{});
    load_tile<BN, BK, NT>(Bs, B, g.ldb, g.tb, n0, g.N, k0, g.K, vec_b, Identity{});
    __syncthreads();
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; i += 4) {
        const float4 v = *reinterpret_cast<const float4*>(&As[k][ty * TM + i]);
        a[i] = v.x;
        a[i + 1] = v.y;
        a[i + 2] = v.z;
        a[i + 3] = v.w;
      }
#pragma unroll
      for (int j = 0; j < TN; j += 4) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[k][tx * TN + j]);
        b[j] = v.x;
        b[j + 1] = v.y;
        b[j + 2] = v.z;
        b[j + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t m = m0 + ty * TM + i;
    if (m >= g.M) break;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t n = n0 + tx * TN + j;
      if (n < g.N) {
        float* c = C + m * g.ldc + n;
        *c = g.beta == 0.f ? g.alpha * acc[i][j] : g.alpha * acc[i][j] + g.beta * *c;
      }
    }
  }
}

struct ToTF32 {
  __device__ float operator()(float v) const {
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800) || defined(PE_CUDA_EMULATOR)
    return nvcuda::wmma::__float_to_tf32(v);
#else
    return v;
#endif
  }
};

// 64 x 64 tile per block of four warps, each warp 32 x 32 as 2 x 2 WMMA fragments of 16 x 16.
__global__ void __launch_bounds__(128) sgemm_tf32_kernel(GemmArgs g, bool vec_a, bool vec_b) {
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800) || defined(PE_CUDA_EMULATOR)
  using namespace nvcuda;
  constexpr int BM = 64, BN = 64, BK = 16, LD = 68;
  __shared__ __align__(32) float As[BK][LD];
  __shared__ __align__(32) float Bs[BK][LD];
  __shared__ __align__(32) float Cs[BM][LD];
  const float* A = g.A + blockIdx.z * g.sA;
  const float* B = g.B + blockIdx.z * g.sB;
  float* C = g.C + blockIdx.z * g.sC;
  const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;
  const int warp = threadIdx.x / 32, wm = warp / 2, wn = warp % 2;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
  for (int64_t k0 = 0; k0 < g.K; k0 += BK) {
    load_tile<BM, BK, 128>(As, A, g.lda, !g.ta, m0, g.M, k0, g.K, vec_a, ToTF32{});
    load_tile<BN, BK, 128>(Bs, B, g.ldb, g.tb, n0, g.N, k0, g.K, vec_b, ToTF32{});
    __syncthreads();
    for (int kk = 0; kk < BK; kk += 8) {
      // As is k-major, i.e. A's tile in column-major order; Bs is B's tile in row-major order.
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b[2];
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &As[kk][wm * 32 + i * 16], LD);
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &Bs[kk][wn * 32 + j * 16], LD);
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&Cs[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], LD,
                              wmma::mem_row_major);
  __syncthreads();
  for (int e = threadIdx.x; e < BM * BN; e += 128) {
    const int64_t m = m0 + e / BN, n = n0 + e % BN;
    if (m < g.M && n < g.N) {
      float* c = C + m * g.ldc + n;
      const float v = Cs[e / BN][e % BN];
      *c = g.beta == 0.f ? g.alpha * v : g.alpha * v + g.beta * *c;
    }
  }
#endif
}

}  // namespace

bool allow_tf32() { return g_allow_tf32; }

void sgemm_batched(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, int64_t sA, const float* B, int64_t ldb, int64_t sB, float beta,
                   float* C, int64_t ldc, int64_t sC, int64_t batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  PE_CHECK(batch <= 65535, "sgemm: batch of ", batch, " exceeds 65535");
  GemmArgs g{A, B, C, M, N, K, lda, ldb, ldc, sA, sB, sC, alpha, beta, ta, tb};
  // float4 loads need every row start of every batch 16-byte aligned.
  const bool vec_a = aligned16(A) && lda % 4 == 0 && (batch == 1 || sA % 4 == 0);
  const bool vec_b = aligned16(B) && ldb % 4 == 0 && (batch == 1 || sB % 4 == 0);
  auto blocks = [&](int64_t bm, int64_t bn) {
    return dim3(unsigned((N + bn - 1) / bn), unsigned((M + bm - 1) / bm), unsigned(batch));
  };
  PE_CHECK((M + 63) / 64 <= 65535, "sgemm: M = ", M, " is too large");
  if (g_allow_tf32) {
    PE_LAUNCH(blocks(64, 64), 128, 0, sgemm_tf32_kernel)(g, vec_a, vec_b);
    PE_LAUNCHED("sgemm_tf32_kernel");
  } else if (M >= 128 && N >= 128) {
    PE_LAUNCH(blocks(128, 128), 256, 0, sgemm_kernel<128, 128, 8, 8, 8>)(g, vec_a, vec_b);
    PE_LAUNCHED("sgemm_kernel<128x128>");
  } else {
    PE_LAUNCH(blocks(64, 64), 256, 0, sgemm_kernel<64, 64, 8, 4, 4>)(g, vec_a, vec_b);
    PE_LAUNCHED("sgemm_kernel<64x64>");
  }
}

}  // namespace pe

void bind_gemm(py::module_& m) {
  m.def(
      "gemm",
      [](const pe::Array& a, const pe::Array& b, pe::Array& c, bool ta, bool tb, float alpha,
         float beta) {
        const float* pa = pe::in_ptr(a, "a");
        const float* pb = pe::in_ptr(b, "b");
        float* pc = pe::out_ptr(c, "c");
        pe::check_ndim(a, 2, "a");
        pe::check_ndim(b, 2, "b");
        pe::check_ndim(c, 2, "c");
        const int64_t M = ta ? a.shape[1] : a.shape[0], K = ta ? a.shape[0] : a.shape[1];
        const int64_t Kb = tb ? b.shape[1] : b.shape[0], N = tb ? b.shape[0] : b.shape[1];
        PE_CHECK(K == Kb, "gemm: inner dimensions differ: a ", pe::shape_str(a.shape), ", b ",
                 pe::shape_str(b.shape));
        pe::check_shape(c, {M, N}, "c");
        pe::sgemm_batched(ta, tb, M, N, K, alpha, pa, a.shape[1], 0, pb, b.shape[1], 0, beta, pc,
                          N, 0, 1);
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
      py::arg("trans_b") = false, py::arg("alpha") = 1.f, py::arg("beta") = 0.f);
  m.def("set_allow_tf32", [](bool on) { pe::g_allow_tf32 = on; }, py::arg("enabled"),
        "use TF32 tensor cores in gemm (10-bit mantissa inputs, FP32 accumulation)");
  m.def("get_allow_tf32", []() { return pe::g_allow_tf32; });
}
