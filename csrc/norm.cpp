// Batch normalisation over dim 1 of x (N, C, *): per channel c the M = N * HW values
// x[n, c, :] (HW = product of the trailing dims) are N contiguous rows of HW floats.
//
// Every kernel works one channel at a time (OpenMP over channels), so the passes over a channel
// after the first find its N * HW values in the core's L2: the forward costs about one DRAM read
// of x and one write of y, the backward two reads (dy, x) and one write (dx).
#include <cmath>
#include <optional>

#include "common.h"
#include "norm_rows.h"

namespace {

using pe::Shape;
using OptArray = std::optional<py::array>;

constexpr int64_t kParallelGrain = 1 << 14;

PE_MULTIVERSION void row_scale(const float* __restrict dy, float* __restrict dx, int64_t n,
                               float p) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dx[i] = p * dy[i];
}

struct Dims {
  int64_t N, C, HW;
  int64_t M() const { return N * HW; }
  // First element of channel c in row n.
  int64_t at(int64_t n, int64_t c) const { return (n * C + c) * HW; }
};

Dims dims_of(const py::array& x, const char* who) {
  PE_CHECK(x.ndim() >= 2, who, ": input must have at least 2 dims (N, C, ...), got shape ",
           pe::shape_str(pe::shape_of(x)));
  pe::numel(pe::shape_of(x));
  Dims d{x.shape(0), x.shape(1), 1};
  for (py::ssize_t i = 2; i < x.ndim(); ++i) d.HW *= x.shape(i);
  // Empty rows: (2**40, 3, 0) would otherwise loop 2**40 times over nothing; M() stays 0.
  if (d.HW == 0) d.N = 0;
  return d;
}

// Per-channel operand of shape (C,): nullptr when absent.
const float* chan_in(const OptArray& a, int64_t C, const char* name) {
  if (!a) return nullptr;
  pe::check_shape(*a, {C}, name);
  return pe::in_ptr(*a, name);
}

float* chan_out(OptArray& a, int64_t C, const char* name) {
  if (!a) return nullptr;
  pe::check_shape(*a, {C}, name);
  return pe::out_ptr(*a, name);
}

// x (N, C, *) -> y (same shape) = (x - mean_c) * invstd_c * w_c + b_c with the batch statistics;
// save_mean/save_invstd (C,) receive them. When given, running_mean/running_var (C,) move toward
// the batch mean and the unbiased batch variance: r = (1 - momentum) * r + momentum * batch.
void batchnorm_forward_train(const py::array& x, const OptArray& weight, const OptArray& bias,
                             py::array& y, py::array& save_mean, py::array& save_invstd,
                             OptArray running_mean, OptArray running_var, double momentum,
                             double eps) {
  const Dims d = dims_of(x, "batchnorm_forward_train");
  const float* px = pe::in_ptr(x, "input");
  float* py_ = pe::out_ptr(y, "out");
  pe::check_shape(y, pe::shape_of(x), "out");
  const float* pw = chan_in(weight, d.C, "weight");
  const float* pb = chan_in(bias, d.C, "bias");
  pe::check_shape(save_mean, {d.C}, "save_mean");
  pe::check_shape(save_invstd, {d.C}, "save_invstd");
  float* pm = pe::out_ptr(save_mean, "save_mean");
  float* pi = pe::out_ptr(save_invstd, "save_invstd");
  float* prm = chan_out(running_mean, d.C, "running_mean");
  float* prv = chan_out(running_var, d.C, "running_var");
  PE_CHECK(!prm == !prv, "running_mean and running_var must be given together");
  PE_CHECK(d.M() > 1, "Expected more than 1 value per channel when training, got input size ",
           pe::shape_str(pe::shape_of(x)));
  PE_CHECK(eps >= 0.0, "eps must be non-negative, got ", eps);
  py::gil_scoped_release nogil;
  const int64_t M = d.M();
#pragma omp parallel for schedule(static) if (x.size() >= kParallelGrain)
  for (int64_t c = 0; c < d.C; ++c) {
    // Shifting by one sample of the channel keeps the float partial sums small when |mean| >> std.
    const float shift = px[d.at(0, c)];
    double s = 0.0;
    for (int64_t n = 0; n < d.N; ++n) s += row_sum_shifted(px + d.at(n, c), d.HW, shift);
    const double mean = shift + s / M;
    double s1 = 0.0, s2 = 0.0;
    for (int64_t n = 0; n < d.N; ++n) {
      float d1, d2;
      row_dev_sums(px + d.at(n, c), d.HW, static_cast<float>(mean), &d1, &d2);
      s1 += d1;
      s2 += d2;
    }
    const double var = std::max((s2 - s1 * s1 / M) / M, 0.0);
    const double invstd = 1.0 / std::sqrt(var + eps);
    pm[c] = static_cast<float>(mean);
    pi[c] = static_cast<float>(invstd);
    if (prm) {
      prm[c] = static_cast<float>((1.0 - momentum) * prm[c] + momentum * mean);
      prv[c] = static_cast<float>((1.0 - momentum) * prv[c] + momentum * var * M / (M - 1));
    }
    const float scale = static_cast<float>((pw ? pw[c] : 1.0) * invstd);
    const float offset = pb ? pb[c] : 0.f;
    for (int64_t n = 0; n < d.N; ++n)
      row_normalize(px + d.at(n, c), py_ + d.at(n, c), d.HW, pm[c], scale, offset);
  }
}

// Eval mode: y = (x - running_mean) * invstd * w + b with invstd = 1/sqrt(running_var + eps);
// save_mean/save_invstd (C,) receive running_mean and invstd for the backward.
void batchnorm_forward_eval(const py::array& x, const py::array& running_mean,
                            const py::array& running_var, const OptArray& weight,
                            const OptArray& bias, py::array& y, py::array& save_mean,
                            py::array& save_invstd, double eps) {
  const Dims d = dims_of(x, "batchnorm_forward_eval");
  const float* px = pe::in_ptr(x, "input");
  float* py_ = pe::out_ptr(y, "out");
  pe::check_shape(y, pe::shape_of(x), "out");
  pe::check_shape(running_mean, {d.C}, "running_mean");
  pe::check_shape(running_var, {d.C}, "running_var");
  const float* prm = pe::in_ptr(running_mean, "running_mean");
  const float* prv = pe::in_ptr(running_var, "running_var");
  const float* pw = chan_in(weight, d.C, "weight");
  const float* pb = chan_in(bias, d.C, "bias");
  pe::check_shape(save_mean, {d.C}, "save_mean");
  pe::check_shape(save_invstd, {d.C}, "save_invstd");
  float* pm = pe::out_ptr(save_mean, "save_mean");
  float* pi = pe::out_ptr(save_invstd, "save_invstd");
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (x.size() >= kParallelGrain)
  for (int64_t c = 0; c < d.C; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(prv[c]) + eps);
    pm[c] = prm[c];
    pi[c] = static_cast<float>(invstd);
    const float scale = static_cast<float>((pw ? pw[c] : 1.0) * invstd);
    const float offset = pb ? pb[c] : 0.f;
    for (int64_t n = 0; n < d.N; ++n)
      row_normalize(px + d.at(n, c), py_ + d.at(n, c), d.HW, pm[c], scale, offset);
  }
}

// dy, x (N, C, *); save_mean/save_invstd (C,) from the forward. Any of grad_input (like x),
// grad_weight, grad_bias (C,) may be None and is then skipped. With x_hat = (x - mean) * invstd:
//   grad_bias = sum(dy), grad_weight = sum(dy * x_hat)
//   training: dx = w * invstd * (dy - mean(dy) - x_hat * mean(dy * x_hat))
//   eval (statistics are constants): dx = w * invstd * dy
void batchnorm_backward(const py::array& grad_output, const py::array& x,
                        const py::array& save_mean, const py::array& save_invstd,
                        const OptArray& weight, OptArray grad_input, OptArray grad_weight,
                        OptArray grad_bias, bool training) {
  const Dims d = dims_of(x, "batchnorm_backward");
  const float* px = pe::in_ptr(x, "input");
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  pe::check_shape(grad_output, pe::shape_of(x), "grad_output");
  pe::check_shape(save_mean, {d.C}, "save_mean");
  pe::check_shape(save_invstd, {d.C}, "save_invstd");
  const float* pm = pe::in_ptr(save_mean, "save_mean");
  const float* pi = pe::in_ptr(save_invstd, "save_invstd");
  const float* pw = chan_in(weight, d.C, "weight");
  float* pgx = nullptr;
  if (grad_input) {
    pe::check_shape(*grad_input, pe::shape_of(x), "grad_input");
    pgx = pe::out_ptr(*grad_input, "grad_input");
  }
  float* pgw = chan_out(grad_weight, d.C, "grad_weight");
  float* pgb = chan_out(grad_bias, d.C, "grad_bias");
  const bool need_sums = pgw || pgb || (pgx && training);
  py::gil_scoped_release nogil;
  const int64_t M = d.M();
#pragma omp parallel for schedule(static) if (x.size() >= kParallelGrain)
  for (int64_t c = 0; c < d.C; ++c) {
    const float mean = pm[c];
    const double invstd = pi[c];
    double sg = 0.0, sgx = 0.0;
    if (need_sums)
      for (int64_t n = 0; n < d.N; ++n) {
        float a, b;
        row_grad_sums(pg + d.at(n, c), px + d.at(n, c), d.HW, mean, &a, &b);
        sg += a;
        sgx += b;
      }
    if (pgb) pgb[c] = static_cast<float>(sg);
    if (pgw) pgw[c] = static_cast<float>(sgx * invstd);
    if (!pgx) continue;
    const double k = (pw ? pw[c] : 1.0) * invstd;
    if (training && M > 0) {
      // dx = k * (dy - sg/M - (x - mean) * invstd^2 * sgx/M).
      const float p = static_cast<float>(k), q = static_cast<float>(-k * invstd * invstd * sgx / M),
                  r = static_cast<float>(-k * sg / M);
      for (int64_t n = 0; n < d.N; ++n)
        row_grad_input(pg + d.at(n, c), px + d.at(n, c), pgx + d.at(n, c), d.HW, mean, p, q, r);
    } else {
      for (int64_t n = 0; n < d.N; ++n)
        row_scale(pg + d.at(n, c), pgx + d.at(n, c), d.HW, static_cast<float>(k));
    }
  }
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("batchnorm_forward_train", &batchnorm_forward_train, py::arg("x"), py::arg("weight"),
        py::arg("bias"), py::arg("y"), py::arg("save_mean"), py::arg("save_invstd"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("momentum"), py::arg("eps"));
  m.def("batchnorm_forward_eval", &batchnorm_forward_eval, py::arg("x"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("weight"), py::arg("bias"), py::arg("y"),
        py::arg("save_mean"), py::arg("save_invstd"), py::arg("eps"));
  m.def("batchnorm_backward", &batchnorm_backward, py::arg("grad_output"), py::arg("x"),
        py::arg("save_mean"), py::arg("save_invstd"), py::arg("weight"), py::arg("grad_input"),
        py::arg("grad_weight"), py::arg("grad_bias"), py::arg("training"));
}
