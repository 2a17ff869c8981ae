// Activation kernels with parameters: GELU (erf and tanh forms), ELU, SiLU, Softplus, Mish,
// Hardtanh (and ReLU6), PReLU, and
// the elementwise maps the losses compose from (smooth L1 and Huber of a difference, the log
// clamped at -100 that binary cross-entropy uses). x, y, gy, gx: float32, contiguous, any shape.
// The backward takes the input x: every gradient here is a cheap function of x, and x is alive in
// the graph anyway (the layer before produced it).
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "common.h"

namespace {

enum class Act { Gelu, GeluTanh, Elu, Silu, Softplus, Mish, Hardtanh, SmoothL1, Huber, LogClamped };

Act parse_act(const std::string& op) {
  if (op == "gelu") return Act::Gelu;
  if (op == "gelu_tanh") return Act::GeluTanh;
  if (op == "elu") return Act::Elu;
  if (op == "silu") return Act::Silu;
  if (op == "softplus") return Act::Softplus;
  if (op == "mish") return Act::Mish;
  if (op == "hardtanh") return Act::Hardtanh;
  if (op == "smooth_l1") return Act::SmoothL1;
  if (op == "huber") return Act::Huber;
  if (op == "log_clamped") return Act::LogClamped;
  throw std::invalid_argument("unknown activation '" + op + "'");
}

constexpr int64_t kParallelGrain = 1 << 15;
constexpr float kSqrt1_2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kSqrt2_Pi = 0.79788456080286536f;
constexpr float kGeluC = 0.044715f;
// BCE clamps log(p) at -100 (as torch does) and divides by max(p, kTiny) in the backward.
constexpr float kLogMin = -100.f;
constexpr float kTiny = 1e-12f;

// Always inlined: a call left in a loop keeps it scalar.
#define PE_INLINE inline __attribute__((always_inline))

// exp(x) to about 2 ulp, written so that the loops below vectorise (libm's expf is a scalar call,
// which made these kernels 2-4x slower than NumPy's SIMD exp): x = n ln2 + r, |r| <= ln2/2,
// exp(r) by its degree-6 Taylor polynomial (Cephes' expf coefficients), times 2^n built in the
// exponent bits. Inputs are clamped to the finite range; NaN passes through the clamps and the
// polynomial, so it propagates.
PE_INLINE float fast_exp(float x) {
  x = x > 88.f ? 88.f : x;  // 2^127 at most: the exponent bits stay finite
  x = x < -87.3365447504019f ? -87.3365447504019f : x;
  // Round to nearest by the 1.5 * 2^23 trick: branch-free on every target (floor is a libm call
  // without SSE4.1, which keeps the baseline clone's loop scalar).
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// erfc(z) with fractional error < 1.2e-7 everywhere (Numerical Recipes' erfcc, a Chebyshev fit):
// relative accuracy where erfc is tiny, which gelu needs for large negative x.
PE_INLINE float fast_erfc(float z) {
  const float a = std::fabs(z);
  const float t = 1.f / (1.f + 0.5f * a);
  const float q =
      -1.26551223f +
      t * (1.00002368f +
           t * (0.37409196f +
                t * (0.09678418f +
                     t * (-0.18628806f +
                          t * (0.27886807f +
                               t * (-1.13520398f +
                                    t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
  const float r = t * fast_exp(-a * a + q);
  return z >= 0.f ? r : 2.f - r;
}

// log(1 + w) for w in [0, 1] (softplus), vectorisable: Cephes' logf polynomial on m in
// [sqrt(1/2), sqrt(2)] with u = 1 + w = m or 2m, plus the rounding lost in forming 1 + w, so
// tiny w give log1p(w) = w.
PE_INLINE float fast_log1p(float w) {
  const float u = 1.f + w;
  const float c = (w - (u - 1.f)) / u;
  const bool big = u > 1.41421356f;
  const float z = (big ? 0.5f * u : u) - 1.f;
  float p = 7.0376836292e-2f;
  p = p * z - 1.1514610310e-1f;
  p = p * z + 1.1676998740e-1f;
  p = p * z - 1.2420140846e-1f;
  p = p * z + 1.4249322787e-1f;
  p = p * z - 1.6668057665e-1f;
  p = p * z + 2.0000714765e-1f;
  p = p * z - 2.4999993993e-1f;
  p = p * z + 3.3333331174e-1f;
  const float r = z + (p * z * z * z - 0.5f * z * z);
  return (big ? 0.693147180559945f : 0.f) + r + c;
}

PE_INLINE float fast_tanh(float u) {
  // 1 - 2 / (exp(2u) + 1): exact limits +-1, absolute error ~1e-7 near 0.
  return 1.f - 2.f / (fast_exp(2.f * u) + 1.f);
}

// alpha/beta: elu alpha; softplus beta (alpha) and threshold (beta); hardtanh min (alpha) and max
// (beta); smooth_l1 beta and huber delta (alpha).
template <Act OP>
PE_MULTIVERSION void act_loop(const float* __restrict x, float* __restrict y, int64_t n,
                              float alpha, float beta) {
  // omp simd: GCC leaves these loops scalar on its own (the selects become branches).
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    // 0.5 x (1 + erf(x / sqrt2)) = 0.5 x erfc(-x / sqrt2), accurate for large negative x.
    if constexpr (OP == Act::Gelu) y[i] = 0.5f * v * fast_erfc(-v * kSqrt1_2);
    if constexpr (OP == Act::GeluTanh)
      y[i] = 0.5f * v * (1.f + fast_tanh(kSqrt2_Pi * (v + kGeluC * v * v * v)));
    if constexpr (OP == Act::Elu) {
      // exp(v) - 1 cancels for small |v|: the cubic Taylor expansion there.
      const float e = std::fabs(v) < 1e-2f ? v * (1.f + v * (0.5f + v * (1.f / 6.f)))
                                           : fast_exp(v) - 1.f;
      y[i] = v > 0.f ? v : alpha * e;
    }
    if constexpr (OP == Act::Silu) y[i] = v / (1.f + fast_exp(-v));
    if constexpr (OP == Act::Softplus) {
      // log1p(exp(bv)) written to neither overflow nor lose small terms.
      const float bv = alpha * v;
      y[i] = bv > beta ? v : ((bv > 0.f ? bv : 0.f) + fast_log1p(fast_exp(-std::fabs(bv)))) / alpha;
    }
    // x tanh(softplus(x)); softplus written stably as in Softplus.
    if constexpr (OP == Act::Mish)
      y[i] = v * fast_tanh((v > 0.f ? v : 0.f) + fast_log1p(fast_exp(-std::fabs(v))));
    // Selects that keep NaN (torch's hardtanh propagates it).
    if constexpr (OP == Act::Hardtanh) y[i] = v < alpha ? alpha : (v > beta ? beta : v);
    if constexpr (OP == Act::SmoothL1) {
      const float a = std::fabs(v);
      y[i] = a < alpha ? 0.5f * v * v / alpha : a - 0.5f * alpha;
    }
    if constexpr (OP == Act::Huber) {
      const float a = std::fabs(v);
      y[i] = a < alpha ? 0.5f * v * v : alpha * (a - 0.5f * alpha);
    }
    if constexpr (OP == Act::LogClamped) {
      const float l = std::log(v);
      y[i] = l < kLogMin ? kLogMin : l;  // a select, not fmaxf: NaN propagates, no libm call
    }
  }
}

template <Act OP>
PE_MULTIVERSION void act_grad_loop(const float* __restrict x, const float* __restrict gy,
                                   float* __restrict gx, int64_t n, float alpha, float beta) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i], g = gy[i];
    if constexpr (OP == Act::Gelu)
      gx[i] = g * (0.5f * fast_erfc(-v * kSqrt1_2) + v * kInvSqrt2Pi * fast_exp(-0.5f * v * v));
    if constexpr (OP == Act::GeluTanh) {
      const float t = fast_tanh(kSqrt2_Pi * (v + kGeluC * v * v * v));
      gx[i] = g * (0.5f * (1.f + t) +
                   0.5f * v * (1.f - t * t) * kSqrt2_Pi * (1.f + 3.f * kGeluC * v * v));
    }
    // At 0 the negative branch, as torch's elu_backward (x <= 0).
    if constexpr (OP == Act::Elu) gx[i] = v > 0.f ? g : g * alpha * fast_exp(v);
    if constexpr (OP == Act::Silu) {
      const float s = 1.f / (1.f + fast_exp(-v));
      gx[i] = g * s * (1.f + v * (1.f - s));
    }
    if constexpr (OP == Act::Softplus)
      gx[i] = alpha * v > beta ? g : g / (1.f + fast_exp(-alpha * v));
    if constexpr (OP == Act::Mish) {
      const float sp = (v > 0.f ? v : 0.f) + fast_log1p(fast_exp(-std::fabs(v)));
      const float t = fast_tanh(sp), s = 1.f / (1.f + fast_exp(-v));
      gx[i] = g * (t + v * (1.f - t * t) * s);
    }
    // Zero at and beyond the bounds, as torch's hardtanh_backward.
    if constexpr (OP == Act::Hardtanh) gx[i] = (v <= alpha || v >= beta) ? 0.f : g;
    // beta == 0 is L1: sign(v), 0 at 0.
    if constexpr (OP == Act::SmoothL1)
      gx[i] = std::fabs(v) < alpha ? g * v / alpha : (v > 0.f ? g : (v < 0.f ? -g : 0.f));
    if constexpr (OP == Act::Huber)
      gx[i] = v < -alpha ? -alpha * g : (v > alpha ? alpha * g : g * v);
    if constexpr (OP == Act::LogClamped) gx[i] = g / (v > kTiny ? v : kTiny);
  }
}

template <typename F>
void chunked(int64_t n, F&& f) {
  constexpr int64_t chunk = 1 << 14;
  const int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t c = 0; c < nchunks; ++c) f(c * chunk, std::min(chunk, n - c * chunk));
}

#define PE_ACT_CASES(MACRO) \
  MACRO(Gelu)               \
  MACRO(GeluTanh)           \
  MACRO(Elu)                \
  MACRO(Silu)               \
  MACRO(Softplus)           \
  MACRO(Mish)               \
  MACRO(Hardtanh)           \
  MACRO(SmoothL1)           \
  MACRO(Huber)              \
  MACRO(LogClamped)

void check_params(Act a, float alpha) {
  if (a == Act::Softplus) PE_CHECK(alpha != 0.f, "softplus: beta must be non-zero");
  if (a == Act::SmoothL1) PE_CHECK(alpha >= 0.f, "smooth_l1: beta must be >= 0, got ", alpha);
  if (a == Act::Huber) PE_CHECK(alpha > 0.f, "huber: delta must be > 0, got ", alpha);
}

void activation_forward(const std::string& op, const py::array& x, py::array& y, float alpha,
                        float beta) {
  const Act a = parse_act(op);
  check_params(a, alpha);
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  pe::check_same_size(x, y, "x", "y");
  py::gil_scoped_release nogil;
  chunked(x.size(), [&](int64_t s, int64_t len) {
    switch (a) {
#define PE_CASE(NAME) \
  case Act::NAME: return act_loop<Act::NAME>(px + s, py_ + s, len, alpha, beta);
      PE_ACT_CASES(PE_CASE)
#undef PE_CASE
    }
  });
}

void activation_backward(const std::string& op, const py::array& x, const py::array& gy,
                         py::array& gx, float alpha, float beta) {
  const Act a = parse_act(op);
  check_params(a, alpha);
  const float* px = pe::in_ptr(x, "x");
  const float* pg = pe::in_ptr(gy, "grad_output");
  float* pgx = pe::out_ptr(gx, "grad_input");
  pe::check_same_size(x, gy, "x", "grad_output");
  pe::check_same_size(gy, gx, "grad_output", "grad_input");
  py::gil_scoped_release nogil;
  chunked(x.size(), [&](int64_t s, int64_t len) {
    switch (a) {
#define PE_CASE(NAME) \
  case Act::NAME: return act_grad_loop<Act::NAME>(px + s, pg + s, pgx + s, len, alpha, beta);
      PE_ACT_CASES(PE_CASE)
#undef PE_CASE
    }
  });
}

// PReLU: x (N, C, *) (or any shape with one weight), weight (1,) or (C,). Row r = (n, c) of HW
// floats uses weight[c] (weight[0] when there is one).
struct PreluDims {
  int64_t rows, C, HW, nw;
};

PreluDims prelu_dims(const py::array& x, const py::array& w) {
  pe::check_ndim(w, 1, "prelu: weight");
  const int64_t nw = w.shape(0);
  const int64_t C = x.ndim() >= 2 ? x.shape(1) : 1;
  PE_CHECK(nw == 1 || nw == C, "prelu: weight has ", nw, " elements, expected 1 or the ", C,
           " channels of the input");
  const int64_t N = x.ndim() >= 1 ? x.shape(0) : 1;
  int64_t HW = 1;
  for (py::ssize_t i = 2; i < x.ndim(); ++i) HW *= x.shape(i);
  if (x.ndim() == 1) return {1, 1, N, nw};
  return {N * C, C, HW, nw};
}

PE_MULTIVERSION void prelu_row(const float* __restrict x, float* __restrict y, int64_t n, float w) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : w * x[i];
}

// gx = x > 0 ? g : w g (may be null); returns sum(x <= 0 ? g x : 0) for the weight gradient.
PE_MULTIVERSION float prelu_grad_row(const float* __restrict x, const float* __restrict g,
                                     float* __restrict gx, int64_t n, float w) {
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    const bool pos = x[i] > 0.f;
    if (gx) gx[i] = pos ? g[i] : w * g[i];
    s += pos ? 0.f : g[i] * x[i];
  }
  return s;
}

void prelu_forward(const py::array& x, const py::array& weight, py::array& y) {
  const PreluDims d = prelu_dims(x, weight);
  const float* px = pe::in_ptr(x, "x");
  const float* pw = pe::in_ptr(weight, "weight");
  pe::check_shape(y, pe::shape_of(x), "y");
  float* py_ = pe::out_ptr(y, "y");
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (x.size() >= kParallelGrain && d.rows > 1)
  for (int64_t r = 0; r < d.rows; ++r)
    prelu_row(px + r * d.HW, py_ + r * d.HW, d.HW, pw[d.nw == 1 ? 0 : r % d.C]);
}

// Row sums of the weight gradient go to a scratch array and are added per channel after the
// parallel loop, in double.
void prelu_backward(const py::array& x, const py::array& weight, const py::array& grad_output,
                    std::optional<py::array> grad_input, std::optional<py::array> grad_weight) {
  const PreluDims d = prelu_dims(x, weight);
  const float* px = pe::in_ptr(x, "x");
  const float* pw = pe::in_ptr(weight, "weight");
  pe::check_shape(grad_output, pe::shape_of(x), "grad_output");
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  float* pgx = nullptr;
  if (grad_input) {
    pe::check_shape(*grad_input, pe::shape_of(x), "grad_input");
    pgx = pe::out_ptr(*grad_input, "grad_input");
  }
  float* pgw = nullptr;
  if (grad_weight) {
    pe::check_shape(*grad_weight, {d.nw}, "grad_weight");
    pgw = pe::out_ptr(*grad_weight, "grad_weight");
  }
  py::gil_scoped_release nogil;
  std::vector<float> rs(d.rows);
#pragma omp parallel for schedule(static) if (x.size() >= kParallelGrain && d.rows > 1)
  for (int64_t r = 0; r < d.rows; ++r)
    rs[r] = prelu_grad_row(px + r * d.HW, pg + r * d.HW, pgx ? pgx + r * d.HW : nullptr, d.HW,
                           pw[d.nw == 1 ? 0 : r % d.C]);
  if (!pgw) return;
  std::vector<double> acc(d.nw, 0.0);
  for (int64_t r = 0; r < d.rows; ++r) acc[d.nw == 1 ? 0 : r % d.C] += rs[r];
  for (int64_t c = 0; c < d.nw; ++c) pgw[c] = static_cast<float>(acc[c]);
}

}  // namespace

void bind_activation(py::module_& m) {
  m.def("activation_forward", &activation_forward, py::arg("op"), py::arg("x"), py::arg("y"),
        py::arg("alpha") = 0.f, py::arg("beta") = 0.f);
  m.def("activation_backward", &activation_backward, py::arg("op"), py::arg("x"),
        py::arg("grad_output"), py::arg("grad_input"), py::arg("alpha") = 0.f,
        py::arg("beta") = 0.f);
  m.def("prelu_forward", &prelu_forward, py::arg("x"), py::arg("weight"), py::arg("y"));
  m.def("prelu_backward", &prelu_backward, py::arg("x"), py::arg("weight"),
        py::arg("grad_output"), py::arg("grad_input"), py::arg("grad_weight"));
}
