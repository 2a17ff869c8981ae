#pragma once
#include <cstdint>

namespace pe {
// Row-major single-precision GEMM: C(M,N) = alpha * op(A)(M,K) @ op(B)(K,N) + beta * C.
// op(A) = A (M x K, leading dim lda) or A^T when trans_a (A stored K x M); same for B.
// beta == 0 means C is not read. Threads with OpenMP, single-threaded inside a parallel region.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);
}  // namespace pe
