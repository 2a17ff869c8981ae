// Batched strided SGEMM shared by gemm.cu and the convolution kernels.
#pragma once
#include <cstdint>

namespace pe {
// For b in [0, batch): C_b(M,N) = alpha * op(A_b)(M,K) @ op(B_b)(K,N) + beta * C_b, row-major,
// X_b = X + b * strideX. op(A) = A (M x K, leading dim lda) or A^T when trans_a (A stored K x M);
// same for B. beta == 0 means C is not read. Uses TF32 tensor cores when set_allow_tf32(True).
void sgemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, int64_t strideA, const float* B, int64_t ldb,
                   int64_t strideB, float beta, float* C, int64_t ldc, int64_t strideC,
                   int64_t batch);
bool allow_tf32();
}  // namespace pe
