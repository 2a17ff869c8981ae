// Placeholder blocked GEMM (replaced by the packed AVX-512 kernel).
#include "gemm.h"

#include <omp.h>

#include "common.h"

namespace pe {
void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && M * N * K > (1 << 18))
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) c[j] = beta == 0.f ? 0.f : beta * c[j];
    for (int64_t k = 0; k < K; ++k) {
      const float a = alpha * (ta ? A[k * lda + i] : A[i * lda + k]);
      if (!tb) {
        const float* b = B + k * ldb;
        for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
      } else {
        for (int64_t j = 0; j < N; ++j) c[j] += a * B[j * ldb + k];
      }
    }
  }
}
}  // namespace pe

void bind_gemm(py::module_& m) {
  m.def(
      "gemm",
      [](const py::array& a, const py::array& b, py::array& c, bool ta, bool tb, float alpha,
         float beta) {
        const float* pa = pe::in_ptr(a, "a");
        const float* pb = pe::in_ptr(b, "b");
        float* pc = pe::out_ptr(c, "c");
        pe::check_ndim(a, 2, "a");
        pe::check_ndim(b, 2, "b");
        pe::check_ndim(c, 2, "c");
        const int64_t M = ta ? a.shape(1) : a.shape(0), K = ta ? a.shape(0) : a.shape(1);
        const int64_t Kb = tb ? b.shape(1) : b.shape(0), N = tb ? b.shape(0) : b.shape(1);
        PE_CHECK(K == Kb, "gemm: inner dimensions differ: a ", pe::shape_str(pe::shape_of(a)),
                 ", b ", pe::shape_str(pe::shape_of(b)));
        pe::check_shape(c, {M, N}, "c");
        py::gil_scoped_release nogil;
        pe::sgemm(ta, tb, M, N, K, alpha, pa, a.shape(1), pb, b.shape(1), beta, pc, N);
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
      py::arg("trans_b") = false, py::arg("alpha") = 1.f, py::arg("beta") = 0.f);
}
