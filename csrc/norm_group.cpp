// Per-sample normalisations: group norm over (N, C, *) inputs, instance norm (group norm with one
// channel per group) and layer norm over the trailing K values of each of M rows.
//
// Group norm: the G groups of Cg = C / G channels of sample n are contiguous blocks of L = Cg * HW
// floats, so block (n, g) is normalised as one run (OpenMP over the N * G blocks) and the affine
// weight/bias (C,) apply per channel within it. Layer norm: x (M, K) rows, weight/bias (K,) per
// element. Statistics are the biased variance with two passes, as in csrc/norm.cpp; the rows of one
// block stay in L2 between passes. save_mean/save_invstd hold one value per block for the backward.
#include <omp.h>

#include <cmath>
#include <optional>
#include <vector>

#include "common.h"
#include "norm_rows.h"

namespace {

using OptArray = std::optional<py::array>;

constexpr int64_t kParallelGrain = 1 << 14;

// Mean and invstd of `rows` runs of `len` floats starting at x, x + len, ... (one block).
void block_stats(const float* x, int64_t rows, int64_t len, double eps, float* mean,
                 float* invstd) {
  const int64_t L = rows * len;
  if (L == 0) {
    *mean = 0.f;
    *invstd = static_cast<float>(1.0 / std::sqrt(eps));
    return;
  }
  // Shifting by one sample keeps the float partial sums small when |mean| >> std.
  const float shift = x[0];
  double s = 0.0;
  for (int64_t r = 0; r < rows; ++r) s += row_sum_shifted(x + r * len, len, shift);
  const float m = static_cast<float>(shift + s / L);
  double s1 = 0.0, s2 = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    float d1, d2;
    row_dev_sums(x + r * len, len, m, &d1, &d2);
    s1 += d1;
    s2 += d2;
  }
  const double var = std::max((s2 - s1 * s1 / L) / L, 0.0);
  *mean = m;
  *invstd = static_cast<float>(1.0 / std::sqrt(var + eps));
}

const float* opt_in(const OptArray& a, int64_t n, const char* name) {
  if (!a) return nullptr;
  pe::check_shape(*a, {n}, name);
  return pe::in_ptr(*a, name);
}

float* opt_out(OptArray& a, const pe::Shape& shape, const char* name) {
  if (!a) return nullptr;
  pe::check_shape(*a, shape, name);
  return pe::out_ptr(*a, name);
}

struct GroupDims {
  int64_t N, C, HW, G, Cg;
  int64_t L() const { return Cg * HW; }
};

GroupDims group_dims(const py::array& x, int64_t groups, const char* who) {
  PE_CHECK(x.ndim() >= 2, who, ": input must have at least 2 dims (N, C, ...), got shape ",
           pe::shape_str(pe::shape_of(x)));
  GroupDims d{x.shape(0), x.shape(1), 1, groups, 0};
  for (py::ssize_t i = 2; i < x.ndim(); ++i) d.HW *= x.shape(i);
  PE_CHECK(groups >= 1 && d.C % groups == 0, who, ": num_groups must divide the ", d.C,
           " channels, got ", groups);
  d.Cg = d.C / groups;
  return d;
}

// x (N, C, *) -> y = (x - mean_ng) * invstd_ng * w_c + b_c; save_mean/save_invstd (N, G).
void groupnorm_forward(const py::array& x, const OptArray& weight, const OptArray& bias,
                       py::array& y, py::array& save_mean, py::array& save_invstd, int64_t groups,
                       double eps) {
  const GroupDims d = group_dims(x, groups, "groupnorm_forward");
  const float* px = pe::in_ptr(x, "input");
  pe::check_shape(y, pe::shape_of(x), "out");
  float* py_ = pe::out_ptr(y, "out");
  const float* pw = opt_in(weight, d.C, "weight");
  const float* pb = opt_in(bias, d.C, "bias");
  pe::check_shape(save_mean, {d.N, d.G}, "save_mean");
  pe::check_shape(save_invstd, {d.N, d.G}, "save_invstd");
  float* pm = pe::out_ptr(save_mean, "save_mean");
  float* pi = pe::out_ptr(save_invstd, "save_invstd");
  PE_CHECK(eps >= 0.0, "eps must be non-negative, got ", eps);
  py::gil_scoped_release nogil;
  const int64_t blocks = d.N * d.G, L = d.L();
#pragma omp parallel for schedule(static) if (x.size() >= kParallelGrain && blocks > 1)
  for (int64_t ng = 0; ng < blocks; ++ng) {
    const float* xb = px + ng * L;
    block_stats(xb, d.Cg, d.HW, eps, pm + ng, pi + ng);
    const int64_t c0 = (ng % d.G) * d.Cg;
    for (int64_t j = 0; j < d.Cg; ++j) {
      const float scale = pw ? pw[c0 + j] * pi[ng] : pi[ng];
      const float offset = pb ? pb[c0 + j] : 0.f;
      row_normalize(xb + j * d.HW, py_ + ng * L + j * d.HW, d.HW, pm[ng], scale, offset);
    }
  }
}

// With x_hat = (x - mean) * invstd over block (n, g) of L values and dxh = dy * w_c:
//   dx = invstd * (dxh - mean(dxh) - x_hat * mean(dxh * x_hat))
//   grad_weight_c = sum_n sum(dy * x_hat), grad_bias_c = sum_n sum(dy)
// Per-channel sums go to a scratch (N, C) array so the blocks stay independent; the reduction over
// n for the parameter gradients is a short serial pass over it.
void groupnorm_backward(const py::array& grad_output, const py::array& x,
                        const py::array& save_mean, const py::array& save_invstd,
                        const OptArray& weight, OptArray grad_input, OptArray grad_weight,
                        OptArray grad_bias, int64_t groups) {
  const GroupDims d = group_dims(x, groups, "groupnorm_backward");
  const float* px = pe::in_ptr(x, "input");
  pe::check_shape(grad_output, pe::shape_of(x), "grad_output");
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  pe::check_shape(save_mean, {d.N, d.G}, "save_mean");
  pe::check_shape(save_invstd, {d.N, d.G}, "save_invstd");
  const float* pm = pe::in_ptr(save_mean, "save_mean");
  const float* pi = pe::in_ptr(save_invstd, "save_invstd");
  const float* pw = opt_in(weight, d.C, "weight");
  float* pgx = opt_out(grad_input, pe::shape_of(x), "grad_input");
  float* pgw = opt_out(grad_weight, {d.C}, "grad_weight");
  float* pgb = opt_out(grad_bias, {d.C}, "grad_bias");
  py::gil_scoped_release nogil;
  const int64_t blocks = d.N * d.G, L = d.L();
  std::vector<double> sg(pgw || pgb ? d.N * d.C : 0), sgx(sg.size());
#pragma omp parallel for schedule(static) if (x.size() >= kParallelGrain && blocks > 1)
  for (int64_t ng = 0; ng < blocks; ++ng) {
    const int64_t off = ng * L, c0 = (ng % d.G) * d.Cg, n = ng / d.G;
    const float m = pm[ng];
    const double inv = pi[ng];
    double A = 0.0, B = 0.0;
    for (int64_t j = 0; j < d.Cg; ++j) {
      float a, b;
      row_grad_sums(pg + off + j * d.HW, px + off + j * d.HW, d.HW, m, &a, &b);
      const double w = pw ? pw[c0 + j] : 1.0;
      A += w * a;
      B += w * b;
      if (!sg.empty()) {
        sg[n * d.C + c0 + j] = a;
        sgx[n * d.C + c0 + j] = b;
      }
    }
    if (!pgx || L == 0) continue;
    const float q = static_cast<float>(-inv * inv * inv * B / L);
    const float r = static_cast<float>(-inv * A / L);
    for (int64_t j = 0; j < d.Cg; ++j) {
      const float p = static_cast<float>(inv * (pw ? pw[c0 + j] : 1.0));
      row_grad_input(pg + off + j * d.HW, px + off + j * d.HW, pgx + off + j * d.HW, d.HW, m, p, q,
                     r);
    }
  }
  for (int64_t c = 0; c < d.C && !sg.empty(); ++c) {
    double w = 0.0, b = 0.0;
    for (int64_t n = 0; n < d.N; ++n) {
      w += sgx[n * d.C + c] * pi[n * d.G + c / d.Cg];
      b += sg[n * d.C + c];
    }
    if (pgw) pgw[c] = static_cast<float>(w);
    if (pgb) pgb[c] = static_cast<float>(b);
  }
}

// y = (x - m) * inv * w + b with per-element w, b (either may be null).
PE_MULTIVERSION void row_normalize_affine(const float* __restrict x, float* __restrict y,
                                          int64_t n, float m, float inv, const float* __restrict w,
                                          const float* __restrict b) {
  if (w && b) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * inv * w[i] + b[i];
  } else if (w) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * inv * w[i];
  } else {
    row_normalize(x, y, n, m, inv, 0.f);
    if (b)
      for (int64_t i = 0; i < n; ++i) y[i] += b[i];
  }
}

// x (M, K): each row normalised over its K values; weight/bias (K,); save_mean/save_invstd (M,).
void layernorm_forward(const py::array& x, const OptArray& weight, const OptArray& bias,
                       py::array& y, py::array& save_mean, py::array& save_invstd, double eps) {
  pe::check_ndim(x, 2, "layernorm_forward: input");
  const int64_t M = x.shape(0), K = x.shape(1);
  const float* px = pe::in_ptr(x, "input");
  pe::check_shape(y, {M, K}, "out");
  float* py_ = pe::out_ptr(y, "out");
  const float* pw = opt_in(weight, K, "weight");
  const float* pb = opt_in(bias, K, "bias");
  pe::check_shape(save_mean, {M}, "save_mean");
  pe::check_shape(save_invstd, {M}, "save_invstd");
  float* pm = pe::out_ptr(save_mean, "save_mean");
  float* pi = pe::out_ptr(save_invstd, "save_invstd");
  PE_CHECK(eps >= 0.0, "eps must be non-negative, got ", eps);
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (x.size() >= kParallelGrain && M > 1)
  for (int64_t r = 0; r < M; ++r) {
    block_stats(px + r * K, 1, K, eps, pm + r, pi + r);
    row_normalize_affine(px + r * K, py_ + r * K, K, pm[r], pi[r], pw, pb);
  }
}

// A = sum(dy * w), B = sum(dy * w * (x - m)) over one row.
PE_MULTIVERSION void row_affine_grad_sums(const float* __restrict dy, const float* __restrict x,
                                          const float* __restrict w, int64_t n, float m, float* A,
                                          float* B) {
  float a1[kLanes] = {}, a2[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) {
      const float g = w ? dy[i + j] * w[i + j] : dy[i + j];
      a1[j] += g;
      a2[j] += g * (x[i + j] - m);
    }
  float s1 = 0.f, s2 = 0.f;
  for (; i < n; ++i) {
    const float g = w ? dy[i] * w[i] : dy[i];
    s1 += g;
    s2 += g * (x[i] - m);
  }
  for (int64_t j = 0; j < kLanes; ++j) {
    s1 += a1[j];
    s2 += a2[j];
  }
  *A = s1;
  *B = s2;
}

// dx = inv * w * dy + q * (x - m) + r.
PE_MULTIVERSION void row_affine_grad_input(const float* __restrict dy, const float* __restrict x,
                                           const float* __restrict w, float* __restrict dx,
                                           int64_t n, float m, float inv, float q, float r) {
  if (w) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dx[i] = inv * w[i] * dy[i] + q * (x[i] - m) + r;
  } else {
    row_grad_input(dy, x, dx, n, m, inv, q, r);
  }
}

// gw += dy * (x - m) * inv, gb += dy into one thread's float partials (vectorised); every
// kFlushRows rows they are added into its double totals, so long columns keep their accuracy.
constexpr int64_t kFlushRows = 64;

PE_MULTIVERSION void row_param_grads(const float* __restrict dy, const float* __restrict x,
                                     int64_t n, float m, float inv, float* __restrict gw,
                                     float* __restrict gb) {
  for (int64_t i = 0; i < n; ++i) {
    gw[i] += dy[i] * (x[i] - m) * inv;
    gb[i] += dy[i];
  }
}

PE_MULTIVERSION void flush_partials(float* __restrict f, double* __restrict d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    d[i] += f[i];
    f[i] = 0.f;
  }
}

// Same formulas as groupnorm_backward with per-element w. The parameter gradients sum over rows:
// each thread accumulates its rows into its own (K,) partials, added up after the parallel loop.
void layernorm_backward(const py::array& grad_output, const py::array& x,
                        const py::array& save_mean, const py::array& save_invstd,
                        const OptArray& weight, OptArray grad_input, OptArray grad_weight,
                        OptArray grad_bias) {
  pe::check_ndim(x, 2, "layernorm_backward: input");
  const int64_t M = x.shape(0), K = x.shape(1);
  const float* px = pe::in_ptr(x, "input");
  pe::check_shape(grad_output, {M, K}, "grad_output");
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  pe::check_shape(save_mean, {M}, "save_mean");
  pe::check_shape(save_invstd, {M}, "save_invstd");
  const float* pm = pe::in_ptr(save_mean, "save_mean");
  const float* pi = pe::in_ptr(save_invstd, "save_invstd");
  const float* pw = opt_in(weight, K, "weight");
  float* pgx = opt_out(grad_input, {M, K}, "grad_input");
  float* pgw = opt_out(grad_weight, {K}, "grad_weight");
  float* pgb = opt_out(grad_bias, {K}, "grad_bias");
  py::gil_scoped_release nogil;
  const bool params = pgw || pgb;
  const bool parallel = x.size() >= kParallelGrain && M > 1;
  const int64_t nt = parallel ? omp_get_max_threads() : 1;
  std::vector<double> part(params ? nt * 2 * K : 0, 0.0);
#pragma omp parallel if (parallel)
  {
    double* mine = params ? part.data() + omp_get_thread_num() * 2 * K : nullptr;
    std::vector<float> acc(params ? 2 * K : 0, 0.f);
    int64_t pending = 0;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < M; ++r) {
      const float* g = pg + r * K;
      const float* xr = px + r * K;
      if (pgx && K > 0) {
        float A, B;
        row_affine_grad_sums(g, xr, pw, K, pm[r], &A, &B);
        const double inv = pi[r];
        row_affine_grad_input(g, xr, pw, pgx + r * K, K, pm[r], pi[r],
                              static_cast<float>(-inv * inv * inv * B / K),
                              static_cast<float>(-inv * A / K));
      }
      if (!params) continue;
      row_param_grads(g, xr, K, pm[r], pi[r], acc.data(), acc.data() + K);
      if (++pending == kFlushRows) {
        flush_partials(acc.data(), mine, 2 * K);
        pending = 0;
      }
    }
    if (params) flush_partials(acc.data(), mine, 2 * K);
  }
  for (int64_t k = 0; k < K && params; ++k) {
    double w = 0.0, b = 0.0;
    for (int64_t t = 0; t < nt; ++t) {
      w += part[t * 2 * K + k];
      b += part[t * 2 * K + K + k];
    }
    if (pgw) pgw[k] = static_cast<float>(w);
    if (pgb) pgb[k] = static_cast<float>(b);
  }
}

}  // namespace

void bind_norm_group(py::module_& m) {
  m.def("groupnorm_forward", &groupnorm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("y"), py::arg("save_mean"), py::arg("save_invstd"), py::arg("groups"),
        py::arg("eps"));
  m.def("groupnorm_backward", &groupnorm_backward, py::arg("grad_output"), py::arg("x"),
        py::arg("save_mean"), py::arg("save_invstd"), py::arg("weight"), py::arg("grad_input"),
        py::arg("grad_weight"), py::arg("grad_bias"), py::arg("groups"));
  m.def("layernorm_forward", &layernorm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("y"), py::arg("save_mean"), py::arg("save_invstd"), py::arg("eps"));
  m.def("layernorm_backward", &layernorm_backward, py::arg("grad_output"), py::arg("x"),
        py::arg("save_mean"), py::arg("save_invstd"), py::arg("weight"), py::arg("grad_input"),
        py::arg("grad_weight"), py::arg("grad_bias"));
}
