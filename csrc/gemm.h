#pragma once
#include <cstdint>
#include <functional>

namespace pe {
// Row-major single-precision GEMM: C(M,N) = alpha * op(A)(M,K) @ op(B)(K,N) + beta * C.
// op(A) = A (M x K, leading dim lda) or A^T when trans_a (A stored K x M); same for B.
// beta == 0 means C is not read. Threads with OpenMP, single-threaded inside a parallel region.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// The same GEMM with B never stored: pack(k0, kc, j0, nc, dst) writes rows [k0, k0+kc) x
// columns [j0, j0+nc) of B as ceil(nc/NR) panels of kc x NR floats (panel p at dst + p*kc*NR,
// element (k, j) at k*NR + j), zero past column nc; NR = sgemm_nr(). It is called from several
// threads at once (on disjoint blocks), so it must not share mutable state; `line` is scratch of
// at least nc floats owned by the calling thread, allocated before the GEMM's parallel region
// (pack must not allocate: an exception cannot leave an OpenMP region). Lets a convolution
// pack image patches straight into the GEMM's panels (implicit GEMM, no column buffer).
using PackB = std::function<void(int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst,
                                 float* line)>;
void sgemm_pack_b(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const PackB& pack, float beta, float* C, int64_t ldc);
int64_t sgemm_nr();

// Pre-packed operands, for callers that write a GEMM's operands in the micro-kernel's formats
// and reuse them (Winograd's transformed filters and tiles): sgemm_packed computes C(M,N) =
// Ap @ Bp + beta * C on the calling thread, Ap being ceil(M/MR) panels of MR x K (panel i at
// Ap + i*MR*K, element (r, k) at k*MR + r, zero rows past M) and Bp ceil(N/NR) panels of K x NR
// as PackB writes them with kc = K (64-byte aligned).
int64_t sgemm_mr();
void sgemm_packed(int64_t M, int64_t N, int64_t K, const float* Ap, const float* Bp, float beta,
                  float* C, int64_t ldc);

// C(M,N) = A(M,K) @ B with B read in place, row k being the N floats at B + off[k] (rows may
// overlap, e.g. shifted windows of one padded image); A row-major with lda = K, C not read.
// Only with the AVX-512 kernel (the B loads are its 32-wide rows); returns false, doing
// nothing, when another kernel is in use.
bool sgemm_rows_b(int64_t M, int64_t N, int64_t K, const float* A, const float* B,
                  const int64_t* off, float* C, int64_t ldc);
}  // namespace pe
