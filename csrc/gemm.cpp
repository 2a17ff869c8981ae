// Single-precision GEMM in the BLIS/GotoBLAS style: op(B) is packed per (KC x NC) block into
// NR-wide column panels meant for L2, op(A) is packed into MR-row micro-panels (one at a time,
// or all at once when this thread's rows are few) that stay in L1 while sweeping the B block,
// and a register-blocked micro-kernel computes one MR x NR tile of C. Micro-kernels and packing
// routines carry target attributes so the file builds with plain -O3; the best set the CPU
// supports is picked once at run time.
#include "gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

#include "isa.h"

namespace pe {
namespace {

// Micro-kernel: C[mr x nr] (row stride ldc) = alpha * a @ b + beta * C, where a is a packed
// MR x kc panel (a[k*MR + r]), b a packed kc x NR panel (b[k*NR + j]), mr <= MR, nr <= NR.
// beta == 0: C not read.
using KernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                          float alpha, float beta, int mr, int nr);
// Packs rows [i0, i0+mr) x columns [k0, k0+kc) of op(A) into one MR x kc panel, zero-filling
// rows mr..MR-1 so the kernel never needs a row count.
using PackAFn = void (*)(bool trans, const float* A, int64_t lda, int64_t i0, int64_t mr,
                         int64_t k0, int64_t kc, float* dst);
// Packs rows [k0, k0+kc) x columns [j0, j0+nc) of op(B) into ceil(nc/NR) panels of kc x NR,
// panel p at dst + p*kc*NR, zero-filling the columns past nc.
using PackBFn = void (*)(bool trans, const float* B, int64_t ldb, int64_t k0, int64_t kc,
                         int64_t j0, int64_t nc, float* dst);

// Kernel that always writes a whole MR x NR tile; wrapped by with_edges into a KernelFn.
using FullKernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                              float alpha, float beta);

// KernelFn for kernels without edge support: partial tiles go through a scratch tile.
template <int MR, int NR, FullKernelFn kernel>
void with_edges(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                float beta, int mr, int nr) {
  if (mr == MR && nr == NR) return kernel(kc, a, b, c, ldc, alpha, beta);
  float tile[MR * NR];
  kernel(kc, a, b, tile, NR, 1.f, 0.f);
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nr; ++j) {
      float& d = c[r * ldc + j];
      d = beta == 0.f ? alpha * tile[r * NR + j] : alpha * tile[r * NR + j] + beta * d;
    }
}

struct Impl {
  int mr, nr;
  KernelFn kernel;
  PackAFn pack_a;
  PackBFn pack_b;
  const char* name;
};

// ---------------------------------------------------------------------------------------------
// Portable pieces: generic packing (any MR/NR) and a scalar kernel the compiler may vectorize.

template <int MR>
void pack_a_generic(bool trans, const float* A, int64_t lda, int64_t i0, int64_t mr, int64_t k0,
                    int64_t kc, float* dst) {
  for (int64_t k = 0; k < kc; ++k, dst += MR) {
    for (int64_t r = 0; r < mr; ++r)
      dst[r] = trans ? A[(k0 + k) * lda + i0 + r] : A[(i0 + r) * lda + k0 + k];
    for (int64_t r = mr; r < MR; ++r) dst[r] = 0.f;
  }
}

template <int NR>
void pack_b_generic(bool trans, const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0,
                    int64_t nc, float* dst) {
  for (int64_t p = 0; p < nc; p += NR) {
    const int64_t nr = std::min<int64_t>(NR, nc - p);
    for (int64_t k = 0; k < kc; ++k, dst += NR) {
      for (int64_t j = 0; j < nr; ++j)
        dst[j] = trans ? B[(j0 + p + j) * ldb + k0 + k] : B[(k0 + k) * ldb + j0 + p + j];
      for (int64_t j = nr; j < NR; ++j) dst[j] = 0.f;
    }
  }
}

// Scalar MR x NR kernel; see FullKernelFn.
template <int MR, int NR>
void kernel_scalar(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                   float beta) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR)
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) acc[r][j] += a[r] * b[j];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j)
      c[r * ldc + j] = beta == 0.f ? alpha * acc[r][j] : alpha * acc[r][j] + beta * c[r * ldc + j];
}

// ---------------------------------------------------------------------------------------------
// AVX2 + FMA: 6 x 16 tile; 12 ymm accumulators + 2 B vectors + 1 broadcast fill the 16 registers.

PE_AVX2 void kernel_avx2_6x16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                              float alpha, float beta) {
  constexpr int MR = 6;
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += MR, b += 16) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r);
      acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    float* cr = c + r * ldc;
    __m256 c0 = _mm256_mul_ps(acc[r][0], va), c1 = _mm256_mul_ps(acc[r][1], va);
    if (beta != 0.f) {
      c0 = _mm256_fmadd_ps(_mm256_loadu_ps(cr), vb, c0);
      c1 = _mm256_fmadd_ps(_mm256_loadu_ps(cr + 8), vb, c1);
    }
    _mm256_storeu_ps(cr, c0);
    _mm256_storeu_ps(cr + 8, c1);
  }
}

// ---------------------------------------------------------------------------------------------
// AVX-512: MR x 32 tile (two zmm per row), packing with in-register 16 x 16 transposes.

constexpr int kMR512 = 12, kNR512 = 32;

inline __mmask16 lanes(int64_t n) { return (__mmask16)((1u << n) - 1u); }

// GCC 12's _mm512_undefined_ps() self-initializes, which -W(maybe-)uninitialized flags inside
// every inlined unpack; the warnings are spurious.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// In-place transpose of a 16 x 16 block held as 16 rows.
PE_AVX512 inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // Per 128-bit lane, u[4g + q] now holds column q of rows 4g..4g+3.
  for (int g = 0; g < 4; ++g) {
    const __m512d lo = _mm512_castps_pd(t[4 * g]), hi = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d lo2 = _mm512_castps_pd(t[4 * g + 2]), hi2 = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo, lo2));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo, lo2));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi, hi2));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi, hi2));
  }
  // Gather lane L of u[q], u[4+q], u[8+q], u[12+q] into output column 4L + q.
  for (int q = 0; q < 4; ++q) {
    const __m512 x0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88);
    const __m512 x1 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
    const __m512 y0 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
    const __m512 y1 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
    r[q] = _mm512_shuffle_f32x4(x0, y0, 0x88);
    r[4 + q] = _mm512_shuffle_f32x4(x1, y1, 0x88);
    r[8 + q] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
    r[12 + q] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
  }
}


// Packing reads op(A)/op(B) straight from memory, usually DRAM, along short strided runs that
// the hardware prefetchers pick up late; prefetch this many rows / floats ahead by hand.
constexpr int64_t kPfRows = 8, kPfFloats = 64;

PE_AVX512 inline void prefetch_row(const float* p, int64_t n) {
  for (int64_t j = 0; j < n; j += 16) _mm_prefetch((const char*)(p + j), _MM_HINT_T0);
  _mm_prefetch((const char*)(p + n - 1), _MM_HINT_T0);
}

// Loads up to 16 rows (row stride ld, `rows` valid, rest zero) x kw (<= 16) floats, transposes
// them and stores row k of the result's first `width` lanes at dst + k * dst_ld, k < kw.
PE_AVX512 inline void pack_transposed16(const float* src, int64_t ld, int64_t rows, int64_t kw,
                                        float* dst, int64_t dst_ld, int width, bool prefetch) {
  const __mmask16 in = lanes(kw), out = lanes(width);
  __m512 r[16];
  for (int i = 0; i < 16; ++i) {
    r[i] = i < rows ? _mm512_maskz_loadu_ps(in, src + i * ld) : _mm512_setzero_ps();
    if (prefetch && i < rows) _mm_prefetch((const char*)(src + i * ld + kPfFloats), _MM_HINT_T0);
  }
  transpose16(r);
  for (int64_t k = 0; k < kw; ++k) _mm512_mask_storeu_ps(dst + k * dst_ld, out, r[k]);
}

#pragma GCC diagnostic pop

// See PackAFn. Transposed A is already k-major, so each k is one masked row copy; plain A is
// transposed 16 k at a time.
PE_AVX512 void pack_a_avx512(bool trans, const float* A, int64_t lda, int64_t i0, int64_t mr,
                             int64_t k0, int64_t kc, float* dst) {
  constexpr int MR = kMR512;
  if (trans) {
    const __mmask16 in = lanes(mr), out = lanes(MR);
    const float* src = A + k0 * lda + i0;
    for (int64_t k = 0; k < kc; ++k, src += lda, dst += MR) {
      if (k + kPfRows < kc) prefetch_row(src + kPfRows * lda, mr);
      _mm512_mask_storeu_ps(dst, out, _mm512_maskz_loadu_ps(in, src));
    }
    return;
  }
  const float* src = A + i0 * lda + k0;
  for (int64_t kb = 0; kb < kc; kb += 16)
    pack_transposed16(src + kb, lda, mr, std::min<int64_t>(16, kc - kb), dst + kb * MR, MR, MR,
                      kb + kPfFloats < kc);
}

// See PackBFn with NR = 32.
PE_AVX512 void pack_b_avx512(bool trans, const float* B, int64_t ldb, int64_t k0, int64_t kc,
                             int64_t j0, int64_t nc, float* dst) {
  constexpr int NR = kNR512;
  if (!trans) {
    // Row by row so each row of B is one sequential read.
    const float* src = B + k0 * ldb + j0;
    for (int64_t k = 0; k < kc; ++k, src += ldb) {
      if (k + kPfRows < kc) prefetch_row(src + kPfRows * ldb, nc);
      for (int64_t p = 0; p < nc; p += NR) {
        const int64_t nr = std::min<int64_t>(NR, nc - p);
        const __mmask16 m0 = lanes(std::min<int64_t>(16, nr));
        const __mmask16 m1 = lanes(std::max<int64_t>(0, nr - 16));
        float* d = dst + p * kc + k * NR;
        _mm512_store_ps(d, _mm512_maskz_loadu_ps(m0, src + p));
        _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps(m1, src + p + 16));
      }
    }
    return;
  }
  // op(B)[k][j] = B[j*ldb + k]: transpose 16 columns x 16 k at a time.
  for (int64_t j = 0; j < nc; j += 16) {
    const float* src = B + (j0 + j) * ldb + k0;
    float* d = dst + (j / NR) * kc * NR + j % NR;
    const int64_t rows = std::min<int64_t>(16, nc - j);
    for (int64_t kb = 0; kb < kc; kb += 16)
      pack_transposed16(src + kb, ldb, rows, std::min<int64_t>(16, kc - kb), d + kb * NR, NR, 16,
                        kb + kPfFloats < kc);
  }
  // A trailing half panel still needs its zero columns.
  if (nc % NR && nc % NR <= 16)
    for (int64_t k = 0; k < kc; ++k)
      _mm512_store_ps(dst + (nc / NR) * kc * NR + k * NR + 16, _mm512_setzero_ps());
}

// ROWS x 32 tile of C from a panel packed with kMR512 rows per k; nr (1..32) columns are
// written through masks, so every edge tile runs at the cost of its own size.
template <int ROWS>
PE_AVX512 void kernel_avx512_rows(int64_t kc, const float* a, const float* b, float* c,
                                  int64_t ldc, float alpha, float beta, int nr) {
  __m512 acc[ROWS][2];
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r) {
    acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    // The C tile is only touched after the k loop; start pulling it in now.
    _mm_prefetch((const char*)(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch((const char*)(c + r * ldc + 16), _MM_HINT_T0);
  }
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k, a += kMR512, b += kNR512) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __mmask16 m0 = lanes(std::min(16, nr)), m1 = lanes(std::max(0, nr - 16));
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r) {
    float* cr = c + r * ldc;
    __m512 c0 = _mm512_mul_ps(acc[r][0], va), c1 = _mm512_mul_ps(acc[r][1], va);
    if (beta != 0.f) {
      c0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, cr), vb, c0);
      c1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, cr + 16), vb, c1);
    }
    _mm512_mask_storeu_ps(cr, m0, c0);
    _mm512_mask_storeu_ps(cr + 16, m1, c1);
  }
}

// As kernel_avx512_rows with alpha = 1, but B read in place: its row k is the nr (1..32) floats
// at b + off[k] (see sgemm_rows_b).
template <int ROWS>
PE_AVX512 void kernel_avx512_rows_b(int64_t kc, const float* a, const float* b,
                                    const int64_t* off, float* c, int64_t ldc, float beta,
                                    int nr) {
  __m512 acc[ROWS][2];
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const __mmask16 m0 = lanes(std::min(16, nr)), m1 = lanes(std::max(0, nr - 16));
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k, a += kMR512) {
    const float* bk = b + off[k];
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, bk), b1 = _mm512_maskz_loadu_ps(m1, bk + 16);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
  const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; ++r) {
    float* cr = c + r * ldc;
    __m512 c0 = acc[r][0], c1 = acc[r][1];
    if (beta != 0.f) {
      c0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, cr), vb, c0);
      c1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, cr + 16), vb, c1);
    }
    _mm512_mask_storeu_ps(cr, m0, c0);
    _mm512_mask_storeu_ps(cr + 16, m1, c1);
  }
}

using RowsBFn = void (*)(int64_t, const float*, const float*, const int64_t*, float*, int64_t,
                         float, int);
constexpr RowsBFn kRowsB[kMR512] = {
    kernel_avx512_rows_b<1>, kernel_avx512_rows_b<2>,  kernel_avx512_rows_b<3>,
    kernel_avx512_rows_b<4>, kernel_avx512_rows_b<5>,  kernel_avx512_rows_b<6>,
    kernel_avx512_rows_b<7>, kernel_avx512_rows_b<8>,  kernel_avx512_rows_b<9>,
    kernel_avx512_rows_b<10>, kernel_avx512_rows_b<11>, kernel_avx512_rows_b<12>};

// See KernelFn: picks the instantiation for mr rows.
void kernel_avx512(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                   float beta, int mr, int nr) {
  using Fn = void (*)(int64_t, const float*, const float*, float*, int64_t, float, float, int);
  static constexpr Fn table[kMR512] = {
      kernel_avx512_rows<1>, kernel_avx512_rows<2>,  kernel_avx512_rows<3>,
      kernel_avx512_rows<4>, kernel_avx512_rows<5>,  kernel_avx512_rows<6>,
      kernel_avx512_rows<7>, kernel_avx512_rows<8>,  kernel_avx512_rows<9>,
      kernel_avx512_rows<10>, kernel_avx512_rows<11>, kernel_avx512_rows<12>};
  table[mr - 1](kc, a, b, c, ldc, alpha, beta, nr);
}

// ---------------------------------------------------------------------------------------------
// Dispatch and blocking.

// PE_GEMM_KERNEL=avx2|scalar forces a lesser kernel so the fallbacks can be tested on any CPU.
const Impl& pick_impl() {
  static const Impl impl = [] {
    __builtin_cpu_init();
    const char* env = std::getenv("PE_GEMM_KERNEL");
    const std::string force = env ? env : "";
    if (force.empty() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
      return Impl{kMR512, kNR512, kernel_avx512, pack_a_avx512, pack_b_avx512, "avx512 12x32"};
    if (force != "scalar" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return Impl{6, 16, with_edges<6, 16, kernel_avx2_6x16>, pack_a_generic<6>,
                  pack_b_generic<16>, "avx2 6x16"};
    return Impl{4, 8, with_edges<4, 8, kernel_scalar<4, 8>>, pack_a_generic<4>, pack_b_generic<8>,
                "scalar 4x8"};
  }();
  return impl;
}

// Block sizes from this machine's caches, read once at run time (sysconf; the fallbacks are the
// smallest caches of the x86 cores we build for). b_block: the packed kc x nc block of op(B),
// reused for every A micro-panel, takes 5/8 of the per-core L2, leaving room for the A panels
// and C tiles passing through. kc: as long as the B block still holds 8 NR-wide panels (so that
// each packed A micro-panel is reused over 256+ columns), because every further K block means
// one more load and store of the C tiles; and at most what lets the MR x kc A micro-panel fit
// in L1d. On a 1 MiB L2 this gives kc = 640: one K block for a 3x3x64 conv's K = 576, as with
// the 576 measured best on a Zen5 core. Sizing the A micro-panel to 9/16 of a 32 KiB L1d instead
// (kc 384, so K = 576 in two blocks of 288) measured 5-10% slower on that conv's 64 x 576 x
// 25600 GEMM on this session's Zen4 cores (single thread, best of 15, shared machine).
struct Blocking {
  int64_t kc, b_block;
};

const Blocking& blocking() {
  static const Blocking b = [] {
    const long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    const int64_t l1b = l1 > 0 ? l1 : 32 * 1024, l2b = l2 > 0 ? l2 : 256 * 1024;
    const int64_t mr = pick_impl().mr, nr = pick_impl().nr, b_block = l2b * 5 / 8 / 4;
    const int64_t kc = std::min(b_block / (8 * nr), l1b / (4 * mr)) / 8 * 8;
    return Blocking{std::clamp<int64_t>(kc, 64, 1024), b_block};
  }();
  return b;
}

// PE_GEMM_SCRATCH_LIMIT=<floats> makes a larger request fail as an allocation failure would,
// so that tests can check it reaches Python as MemoryError on any machine (as PE_GEMM_KERNEL
// lets them test the fallback kernels).
float* workspace(size_t floats) {
  struct Buf {
    float* p = nullptr;
    size_t cap = 0;
    ~Buf() { std::free(p); }
  };
  static const size_t limit = [] {
    const char* env = std::getenv("PE_GEMM_SCRATCH_LIMIT");
    return env ? size_t(std::strtoull(env, nullptr, 10)) : SIZE_MAX;
  }();
  thread_local Buf buf;
  if (floats > buf.cap) {
    std::free(buf.p);
    buf.p = nullptr;
    buf.cap = 0;
    if (floats > limit) throw std::bad_alloc();
    const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    buf.p = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!buf.p) throw std::bad_alloc();
    buf.cap = bytes / sizeof(float);
  }
  return buf.p;
}

constexpr int64_t kPackAOnce = 64 * 1024;  // floats (256 KB)

// Equal-sized blocks of at most `most`, multiples of `step`: a short tail block would pay the C
// load/store and packing overheads for little work.
int64_t even(int64_t n, int64_t most, int64_t step) {
  const int64_t parts = (n + most - 1) / most;
  return ((n + parts - 1) / parts + step - 1) / step * step;
}

int64_t round_up(int64_t n, int64_t step) { return (n + step - 1) / step * step; }

// Blocking of one thread's rows x cols rectangle of C (gemm_block) and the scratch it needs:
// the packed B block, op(A) (all rows at once when they are few, e.g. conv weights, instead of
// once per N block; else one MR-row panel) and the pack line PackB may use.
struct Plan {
  int64_t kc_max, nc_max, rows;
  bool a_once;
  size_t b_size, a_size;
  size_t floats() const { return round_up(int64_t(b_size + a_size + nc_max), 16); }
};

Plan plan(const Impl& im, int64_t m, int64_t n, int64_t K) {
  const Blocking& bl = blocking();
  Plan p;
  p.kc_max = even(K, bl.kc, 8);
  p.nc_max = even(n, std::max<int64_t>(im.nr, bl.b_block / p.kc_max / im.nr * im.nr), im.nr);
  p.rows = round_up(m, im.mr);
  p.a_once = p.rows * K <= kPackAOnce;
  p.b_size = size_t(p.kc_max * p.nc_max);
  p.a_size = size_t(p.a_once ? p.rows * K : im.mr * p.kc_max);
  return p;
}

// C rows [m0, m1) x columns [n0, n1) on the calling thread, blocked by pl (planned for at least
// this rectangle), with its scratch at buf (pl.floats()); arguments as in sgemm_pack_b.
void gemm_block(const Impl& im, const Plan& pl, float* buf, bool ta, int64_t m0, int64_t m1,
                int64_t n0, int64_t n1, int64_t K, float alpha, const float* A, int64_t lda,
                const PackB& pack_b, float beta, float* C, int64_t ldc) {
  const int64_t MR = im.mr, NR = im.nr, kc_max = pl.kc_max, nc_max = pl.nc_max;
  const int64_t rows = round_up(m1 - m0, MR);
  float* bbuf = buf;
  float* abuf = bbuf + pl.b_size;
  float* line = abuf + pl.a_size;
  const bool a_once = pl.a_once;
  if (a_once)
    for (int64_t pc = 0; pc < K; pc += kc_max)
      for (int64_t ic = m0, kc = std::min(kc_max, K - pc); ic < m1; ic += MR)
        im.pack_a(ta, A, lda, ic, std::min(MR, m1 - ic), pc, kc, abuf + pc * rows + (ic - m0) * kc);
  for (int64_t jc = n0; jc < n1; jc += nc_max) {
    const int64_t nc = std::min(nc_max, n1 - jc);
    for (int64_t pc = 0; pc < K; pc += kc_max) {
      const int64_t kc = std::min(kc_max, K - pc);
      const float beta_p = pc == 0 ? beta : 1.f;  // later K blocks accumulate onto C
      pack_b(pc, kc, jc, nc, bbuf, line);
      for (int64_t ic = m0; ic < m1; ic += MR) {
        const int64_t mr = std::min(MR, m1 - ic);
        const float* ap = a_once ? abuf + pc * rows + (ic - m0) * kc : abuf;
        if (!a_once) im.pack_a(ta, A, lda, ic, mr, pc, kc, abuf);
        for (int64_t jr = 0; jr < nc; jr += NR)
          im.kernel(kc, ap, bbuf + jr * kc, C + ic * ldc + jc + jr, ldc, alpha, beta_p, int(mr),
                    int(std::min(NR, nc - jr)));
      }
    }
  }
}

// Plain loops for problems too small to amortize packing; same contract as sgemm.
void gemm_small(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      float s = 0.f;
      for (int64_t k = 0; k < K; ++k)
        s += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
      float& d = C[i * ldc + j];
      d = beta == 0.f ? alpha * s : alpha * s + beta * d;
    }
}

// Splits an M x N problem into tm x tn rectangles (tm * tn = nt), cut on MR/NR boundaries,
// minimizing the slowest thread's tile area plus its packing traffic.
void split(int64_t M, int64_t N, int64_t K, int nt, int64_t MR, int64_t NR, int& tm, int& tn) {
  double best = -1;
  for (int t = 1; t <= nt; ++t) {
    if (nt % t) continue;
    const int64_t pm = (M + MR - 1) / MR, pn = (N + NR - 1) / NR;
    const double rows = double((pm + t - 1) / t * MR);
    const double cols = double((pn + nt / t - 1) / (nt / t) * NR);
    const double cost = rows * cols * K + 8.0 * K * (rows + cols);
    if (best < 0 || cost < best) best = cost, tm = t, tn = nt / t;
  }
}

void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
}

// Waits for a counter that a running thread is advancing; yields now and then so that a
// descheduled producer on an oversubscribed machine gets the core back.
void wait_for(const std::atomic<int64_t>& counter, int64_t target) {
  for (int spins = 0; counter.load(std::memory_order_acquire) < target; ++spins) {
    if (spins % 256 == 255)
      std::this_thread::yield();
    else
      _mm_pause();
  }
}

// Short products (a few hundred microseconds) on several threads. A static split costs them
// what a fixed schedule cannot hide: a worker that has gone to sleep (pyengine's default wait
// policy lets it spin only ~0.1 ms, pyengine/__init__.py) is woken by the OS tens of
// microseconds after the region opens, on a busy machine far later, and the calling thread then
// waits at the join for the worker's whole share; and each thread of a row split packs all of
// op(B) again. Here op(B) is packed once per (KC x NC) block into a buffer all threads share,
// and the work is a list of tasks taken in order from one counter: per block, the packing of
// its NR panels (in groups), then its MR-row micro-panels of C (each thread packs the A panel it
// takes). A thread that has not woken up yet holds no task, so nobody waits for it; the one
// that runs first does the work until the other joins.
// Dependencies (all on lower-numbered tasks, so taking tasks in order cannot deadlock): a
// block's row tasks wait for its packing; a block's packing waits for the row tasks of the
// block two back, whose buffer it reuses (two buffers: packing overlaps the previous block's
// compute); the row tasks of a later K block of the same columns wait for the earlier K block's
// (they accumulate onto the same C).
void gemm_shared_b(const Impl& im, int nt, bool ta, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const PackB& pack_b, float beta, float* C,
                   int64_t ldc) {
  const int64_t MR = im.mr, NR = im.nr;
  const Blocking& bl = blocking();
  const int64_t kc_max = even(K, bl.kc, 8);
  const int64_t nc_max = even(N, std::max<int64_t>(NR, bl.b_block / kc_max / NR * NR), NR);
  const int64_t kb = (K + kc_max - 1) / kc_max, nblocks = kb * ((N + nc_max - 1) / nc_max);
  const int64_t panels = nc_max / NR, group = std::max<int64_t>(1, panels / (2 * nt));
  const int64_t n_pack = (panels + group - 1) / group, n_rows = (M + MR - 1) / MR;
  const int64_t per_block = n_pack + n_rows, total = nblocks * per_block;
  const size_t b_size = size_t(kc_max * nc_max);
  const size_t own = size_t(round_up(MR * kc_max + nc_max, 16));  // A panel + pack line
  float* bufs = workspace(2 * b_size + size_t(nt) * own);
  std::unique_ptr<std::atomic<int64_t>[]> packed(new std::atomic<int64_t>[nblocks]);
  std::unique_ptr<std::atomic<int64_t>[]> done(new std::atomic<int64_t>[nblocks]);
  for (int64_t b = 0; b < nblocks; ++b) packed[b].store(0), done[b].store(0);
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(nt)
  {
    float* abuf = bufs + 2 * b_size + size_t(omp_get_thread_num()) * own;
    float* line = abuf + MR * kc_max;
    for (int64_t t = next.fetch_add(1); t < total; t = next.fetch_add(1)) {
      const int64_t b = t / per_block, task = t % per_block;
      const int64_t jc = b / kb * nc_max, pc = b % kb * kc_max;
      const int64_t nc = std::min(nc_max, N - jc), kc = std::min(kc_max, K - pc);
      float* bbuf = bufs + (b % 2) * b_size;
      if (task < n_pack) {
        if (b >= 2) wait_for(done[b - 2], n_rows);
        const int64_t j0 = task * group * NR, j1 = std::min(nc, j0 + group * NR);
        if (j0 < j1) pack_b(pc, kc, jc + j0, j1 - j0, bbuf + j0 * kc, line);
        packed[b].fetch_add(1, std::memory_order_release);
        continue;
      }
      wait_for(packed[b], n_pack);
      if (pc > 0) wait_for(done[b - 1], n_rows);
      const int64_t ic = (task - n_pack) * MR, mr = std::min(MR, M - ic);
      im.pack_a(ta, A, lda, ic, mr, pc, kc, abuf);
      for (int64_t jr = 0; jr < nc; jr += NR)
        im.kernel(kc, abuf, bbuf + jr * kc, C + ic * ldc + jc + jr, ldc, alpha,
                  pc == 0 ? beta : 1.f, int(mr), int(std::min(NR, nc - jr)));
      done[b].fetch_add(1, std::memory_order_release);
    }
  }
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) return scale_c(M, N, beta, C, ldc);
  if (M * N * K < 32 * 32 * 32) {
    gemm_small(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const Impl& im = pick_impl();
  const PackB pack_b = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst, float*) {
    im.pack_b(trans_b, B, ldb, k0, kc, j0, nc, dst);
  };
  sgemm_pack_b(trans_a, M, N, K, alpha, A, lda, pack_b, beta, C, ldc);
}

int64_t sgemm_nr() { return pick_impl().nr; }

int64_t sgemm_mr() { return pick_impl().mr; }

// B panel outer, so each K x NR panel is read once while all of A (a few KB) stays in L1.
void sgemm_packed(int64_t M, int64_t N, int64_t K, const float* Ap, const float* Bp, float beta,
                  float* C, int64_t ldc) {
  const Impl& im = pick_impl();
  for (int64_t j = 0; j < N; j += im.nr)
    for (int64_t i = 0; i < M; i += im.mr)
      im.kernel(K, Ap + i * K, Bp + j * K, C + i * ldc + j, ldc, 1.f, beta,
                int(std::min<int64_t>(im.mr, M - i)), int(std::min<int64_t>(im.nr, N - j)));
}

void sgemm_pack_b(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const PackB& pack_b, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) return scale_c(M, N, beta, C, ldc);
  const Impl& im = pick_impl();
  // Below ~64^3 the fork/join costs more than the second core gains.
  const int nt = (omp_in_parallel() || M * N * K < 64 * 64 * 64) ? 1 : omp_get_max_threads();
  if (nt == 1) {
    const Plan pl = plan(im, M, N, K);
    gemm_block(im, pl, workspace(pl.floats()), trans_a, 0, M, 0, N, K, alpha, A, lda, pack_b,
               beta, C, ldc);
    return;
  }
  // Up to 512^3 a call lasts well under a millisecond on two cores, where waking the team and
  // the duplicated packing of a static split weigh most (gemm_shared_b), provided there are
  // enough row panels to share; wider problems (conv weights times patches: few rows, many
  // columns) and long ones keep the static rectangles, which need no synchronisation at all.
  if (M * N * K <= int64_t(512) * 512 * 512 && (M + im.mr - 1) / im.mr >= 4 * nt)
    return gemm_shared_b(im, nt, trans_a, M, N, K, alpha, A, lda, pack_b, beta, C, ldc);
  int tm = 1, tn = 1;
  split(M, N, K, nt, im.mr, im.nr, tm, tn);
  const int64_t pm = (M + im.mr - 1) / im.mr, pn = (N + im.nr - 1) / im.nr;
  const int64_t rows = (pm + tm - 1) / tm * im.mr, cols = (pn + tn - 1) / tn * im.nr;
  const Plan pl = plan(im, rows, cols, K);
  float* bufs = workspace(size_t(nt) * pl.floats());
  // Striding by the team size keeps every rectangle covered if the runtime grants fewer threads.
#pragma omp parallel num_threads(nt)
  for (int t = omp_get_thread_num(); t < nt; t += omp_get_num_threads()) {
    const int64_t m0 = (t / tn) * rows, n0 = (t % tn) * cols;
    const int64_t m1 = std::min(M, m0 + rows), n1 = std::min(N, n0 + cols);
    if (m0 < m1 && n0 < n1)
      gemm_block(im, pl, bufs + size_t(omp_get_thread_num()) * pl.floats(), trans_a, m0, m1, n0,
                 n1, K, alpha, A, lda, pack_b, beta, C, ldc);
  }
}

bool sgemm_rows_b(int64_t M, int64_t N, int64_t K, const float* A, const float* B,
                  const int64_t* off, float* C, int64_t ldc) {
  const Impl& im = pick_impl();
  if (im.kernel != kernel_avx512) return false;
  if (M <= 0 || N <= 0) return true;
  if (K <= 0) {
    scale_c(M, N, 0.f, C, ldc);
    return true;
  }
  constexpr int64_t MR = kMR512, NR = kNR512;
  const int64_t kc_max = std::min<int64_t>(K, blocking().kc), rows = (M + MR - 1) / MR * MR;
  const int64_t panels = (N + NR - 1) / NR;
  const int nt = (omp_in_parallel() || M * N * K < 64 * 64 * 64) ? 1 : omp_get_max_threads();
  const size_t a_floats = size_t(round_up(rows * kc_max, 16));
  float* abufs = workspace(size_t(nt) * a_floats);
  // Column panels split over the threads; each packs all of A per K block (A is the small
  // operand here: conv weights) and sweeps its panels with every A micro-panel.
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t p0 = panels * t / n, p1 = panels * (t + 1) / n;
    float* abuf = abufs + size_t(t) * a_floats;
    for (int64_t pc = 0; pc < K && p0 < p1; pc += kc_max) {
      const int64_t kc = std::min(kc_max, K - pc);
      for (int64_t ic = 0; ic < M; ic += MR)
        im.pack_a(false, A, K, ic, std::min(MR, M - ic), pc, kc, abuf + ic * kc);
      for (int64_t jp = p0; jp < p1; ++jp) {
        const int nr = int(std::min(NR, N - jp * NR));
        for (int64_t ic = 0; ic < M; ic += MR)
          kRowsB[std::min(MR, M - ic) - 1](kc, abuf + ic * kc, B + jp * NR, off + pc,
                                           C + ic * ldc + jp * NR, ldc, pc == 0 ? 0.f : 1.f, nr);
      }
    }
  }
  return true;
}

const char* sgemm_kernel_name() { return pick_impl().name; }

}  // namespace pe

#include "common.h"

// Python entry points: gemm(a, b, c, trans_a=False, trans_b=False, alpha=1, beta=0) writes
// c = alpha * op(a) @ op(b) + beta * c in place; gemm_kernel_name() names the micro-kernel.
void bind_gemm(py::module_& m) {
  m.def(
      "gemm",
      [](py::array a, py::array b, py::array c, bool trans_a, bool trans_b, float alpha,
         float beta) {
        // The message is built only on failure: formatting it on every call cost as much as
        // the rest of the binding's checks together on a 1x1 product.
        auto fail = [&](const char* what) {
          auto shape = [](const py::array& x) {
            std::string s = "(";
            for (py::ssize_t i = 0; i < x.ndim(); ++i)
              s += std::to_string(x.shape(i)) + (i + 1 < x.ndim() || x.ndim() == 1 ? ", " : "");
            return s + ")";
          };
          throw std::invalid_argument(std::string("gemm: ") + what + "; got a" + shape(a) +
                                      ", b" + shape(b) + ", c" + shape(c) + ", trans_a=" +
                                      (trans_a ? "True" : "False") +
                                      ", trans_b=" + (trans_b ? "True" : "False"));
        };
        for (const py::array* x : {&a, &b, &c}) {
          if (!x->dtype().is(py::dtype::of<float>())) fail("operands must be float32");
          if (x->ndim() != 2) fail("operands must be 2-D");
          if (!(x->flags() & py::array::c_style)) fail("operands must be C-contiguous");
        }
        if (!c.writeable()) fail("c must be writeable");
        pe::check_no_overlap(c, a, "gemm: c", "a");
        pe::check_no_overlap(c, b, "gemm: c", "b");
        pe::apply_num_threads();
        const int64_t M = trans_a ? a.shape(1) : a.shape(0), Ka = trans_a ? a.shape(0) : a.shape(1);
        const int64_t Kb = trans_b ? b.shape(1) : b.shape(0), N = trans_b ? b.shape(0) : b.shape(1);
        if (Ka != Kb || c.shape(0) != M || c.shape(1) != N) fail("shape mismatch");
        const float* pa = static_cast<const float*>(a.data());
        const float* pb = static_cast<const float*>(b.data());
        float* pc = static_cast<float*>(c.mutable_data());
        py::gil_scoped_release nogil;
        pe::sgemm(trans_a, trans_b, M, N, Ka, alpha, pa, a.shape(1), pb, b.shape(1), beta, pc,
                  c.shape(1));
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
      py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f);
  m.def("gemm_kernel_name", [] { return std::string(pe::sgemm_kernel_name()); });
}
