// Batch normalisation over dim 1 of x (N, C, *): per channel c the M = N * HW values
// x[n, c, :] (HW = product of the trailing dims) are N contiguous rows of HW floats.
//
// Every kernel works one channel at a time (OpenMP over channels), so the passes over a channel
// after the first find its N * HW values in the core's L2: the forward costs about one DRAM read
// of x and one write of y, the backward two reads (dy, x) and one write (dx).
#include <algorithm>
#include <cmath>
#include <optional>

#include "common.h"
#include "norm_rows.h"
#include "twin_checks.h"

namespace {

using pe::Shape;
using OptArray = std::optional<py::array>;

constexpr int64_t kParallelGrain = 1 << 14;

PE_MULTIVERSION void row_scale(const float* __restrict dy, float* __restrict dx, int64_t n,
                               float p) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dx[i] = p * dy[i];
}

PE_MULTIVERSION void row_normalize_relu(const float* __restrict x, float* __restrict y, int64_t n,
                                        float m, float a, float b) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = std::max((x[i] - m) * a + b, 0.f);
}

// With g = (y > 0 ? dy : 0): sum(g) and sum(g * (x - m)). One vector of partial sums each (the
// row is read from DRAM; a longer accumulator array makes the masked loop scalar).
PE_MULTIVERSION void row_masked_grad_sums(const float* __restrict dy, const float* __restrict y,
                                          const float* __restrict x, int64_t n, float m, float* sg,
                                          float* sgx) {
  float s1 = 0.f, s2 = 0.f;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t i = 0; i < n; ++i) {
    const float g = y[i] > 0.f ? dy[i] : 0.f;
    s1 += g;
    s2 += g * (x[i] - m);
  }
  *sg = s1;
  *sgx = s2;
}

// dx = p * (y > 0 ? dy : 0) + q * (x - m) + r.
PE_MULTIVERSION void row_masked_grad_input(const float* __restrict dy, const float* __restrict y,
                                           const float* __restrict x, float* __restrict dx,
                                           int64_t n, float m, float p, float q, float r) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dx[i] = (y[i] > 0.f ? p * dy[i] : 0.f) + q * (x[i] - m) + r;
}

// x (N, C, *) -> y (same shape) = (x - mean_c) * invstd_c * w_c + b_c with the batch statistics,
// through a ReLU when Relu (bound as batchnorm_relu_forward_train, else batchnorm_forward_train);
// save_mean/save_invstd (C,) receive the statistics. When given, running_mean/running_var (C,) move
// toward the batch mean and the unbiased batch variance: r = (1 - momentum) * r + momentum * batch.
// Per channel, sum(x - s) and sum((x - s)^2) in one pass with s the mean of the channel's first
// row (x - s is then of the order of the standard deviation, so the variance loses no more than
// the corrected two-pass formula does), then one pass writing y.
template <bool Relu>
void batchnorm_forward_train(const py::array& x, const OptArray& weight, const OptArray& bias,
                             py::array& y, py::array& save_mean, py::array& save_invstd,
                             OptArray running_mean, OptArray running_var, double momentum,
                             double eps) {
  const pe::twin::BnTrainArgs a = pe::twin::bn_train_args(
      x, weight, bias, y, save_mean, save_invstd, running_mean, running_var, eps);
  const pe::twin::NormDims& d = a.d;
  const float *px = a.x, *pw = a.w, *pb = a.b;
  float *py_ = a.y, *pm = a.mean, *pi = a.invstd, *prm = a.running_mean, *prv = a.running_var;
  py::gil_scoped_release nogil;
  const int64_t M = d.M();
#pragma omp parallel for schedule(static) if (d.N * d.C * d.HW >= kParallelGrain)
  for (int64_t c = 0; c < d.C; ++c) {
    const float shift = row_sum_shifted(px + d.at(0, c), d.HW, 0.f) / static_cast<float>(d.HW);
    double s1 = 0.0, s2 = 0.0;
    for (int64_t n = 0; n < d.N; ++n) {
      float d1, d2;
      row_dev_sums(px + d.at(n, c), d.HW, shift, &d1, &d2);
      s1 += d1;
      s2 += d2;
    }
    const double mean = shift + s1 / M;
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
      if constexpr (Relu)
        row_normalize_relu(px + d.at(n, c), py_ + d.at(n, c), d.HW, pm[c], scale, offset);
      else
        row_normalize(px + d.at(n, c), py_ + d.at(n, c), d.HW, pm[c], scale, offset);
  }
}

// Eval mode: y = (x - running_mean) * invstd * w + b with invstd = 1/sqrt(running_var + eps);
// save_mean/save_invstd (C,) receive running_mean and invstd for the backward.
void batchnorm_forward_eval(const py::array& x, const py::array& running_mean,
                            const py::array& running_var, const OptArray& weight,
                            const OptArray& bias, py::array& y, py::array& save_mean,
                            py::array& save_invstd, double eps) {
  const pe::twin::BnEvalArgs a = pe::twin::bn_eval_args(x, running_mean, running_var, weight,
                                                          bias, y, save_mean, save_invstd);
  const pe::twin::NormDims& d = a.d;
  const float *px = a.x, *prm = a.running_mean, *prv = a.running_var, *pw = a.w, *pb = a.b;
  float *py_ = a.y, *pm = a.mean, *pi = a.invstd;
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

// With g the incoming gradient (Masked: dy where y > 0, 0 elsewhere, ReLU's mask read from the
// forward's output y; otherwise dy itself), the backward of batch norm per channel: grad_bias and
// grad_weight from sum(g) and sum(g * (x - mean)), then dx. Masked is a template parameter so the
// plain path compiles without the mask. The row sums stay two functions: the masked one
// vectorises only with scalar accumulators (see row_masked_grad_sums).
template <bool Masked>
void bn_backward_channels(const pe::twin::BnBackwardArgs& a, const float* y, bool training) {
  const pe::twin::NormDims& d = a.d;
  const float *pg = a.gy, *px = a.x, *pm = a.mean, *pi = a.invstd, *pw = a.w;
  float *pgx = a.gx, *pgw = a.gw, *pgb = a.gb;
  const bool need_sums = a.need_sums;
  py::gil_scoped_release nogil;
  const int64_t M = d.M();
#pragma omp parallel for schedule(static) if (d.C * M >= kParallelGrain)
  for (int64_t c = 0; c < d.C; ++c) {
    const float mean = pm[c];
    const double invstd = pi[c];
    double sg = 0.0, sgx = 0.0;
    if (need_sums)
      for (int64_t n = 0; n < d.N; ++n) {
        const int64_t o = d.at(n, c);
        float s1, s2;
        if constexpr (Masked)
          row_masked_grad_sums(pg + o, y + o, px + o, d.HW, mean, &s1, &s2);
        else
          row_grad_sums(pg + o, px + o, d.HW, mean, &s1, &s2);
        sg += s1;
        sgx += s2;
      }
    if (pgb) pgb[c] = static_cast<float>(sg);
    if (pgw) pgw[c] = static_cast<float>(sgx * invstd);
    if (!pgx) continue;
    const double k = (pw ? pw[c] : 1.0) * invstd;
    if (training && M > 0) {
      // dx = k * (g - sg/M - (x - mean) * invstd^2 * sgx/M).
      const float p = static_cast<float>(k), q = static_cast<float>(-k * invstd * invstd * sgx / M),
                  r = static_cast<float>(-k * sg / M);
      for (int64_t n = 0; n < d.N; ++n) {
        const int64_t o = d.at(n, c);
        if constexpr (Masked)
          row_masked_grad_input(pg + o, y + o, px + o, pgx + o, d.HW, mean, p, q, r);
        else
          row_grad_input(pg + o, px + o, pgx + o, d.HW, mean, p, q, r);
      }
    } else if constexpr (!Masked) {
      // The fused batch norm + ReLU node exists only in training mode.
      for (int64_t n = 0; n < d.N; ++n)
        row_scale(pg + d.at(n, c), pgx + d.at(n, c), d.HW, static_cast<float>(k));
    }
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
  const pe::twin::BnBackwardArgs a = pe::twin::bn_backward_args(
      grad_output, x, save_mean, save_invstd, weight, grad_input, grad_weight, grad_bias, training);
  bn_backward_channels<false>(a, nullptr, training);
}

// ---------------------------------------------------------------- batch norm + ReLU, training
// The pair behind one relu(batch_norm(x)) autograd node: batchnorm_forward_train<true> and the
// backward below. Per channel the forward makes two passes over x (statistics, then normalise +
// affine + ReLU) where the separate kernels make three; the backward two passes over (dy, y, x)
// where the ReLU backward and batchnorm_backward make three and write a masked gradient in between.

// dy, output (y of the forward), x (N, C, *); save_mean/save_invstd (C,) from the forward. With
// g = dy where output > 0 and 0 elsewhere (ReLU's mask), the training-mode batchnorm_backward of
// g: grad_bias = sum(g), grad_weight = sum(g * x_hat),
// dx = w * invstd * (g - mean(g) - x_hat * mean(g * x_hat)). Any gradient may be None.
void batchnorm_relu_backward(const py::array& grad_output, const py::array& output,
                             const py::array& x, const py::array& save_mean,
                             const py::array& save_invstd, const OptArray& weight,
                             OptArray grad_input, OptArray grad_weight, OptArray grad_bias) {
  const pe::twin::BnBackwardArgs a = pe::twin::bn_backward_args(
      grad_output, x, save_mean, save_invstd, weight, grad_input, grad_weight, grad_bias, true);
  pe::check_shape(output, pe::shape_of(x), "output");
  bn_backward_channels<true>(a, pe::in_ptr(output, "output"), true);
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("batchnorm_forward_train", &batchnorm_forward_train<false>, py::arg("x"),
        py::arg("weight"), py::arg("bias"), py::arg("y"), py::arg("save_mean"),
        py::arg("save_invstd"), py::arg("running_mean"), py::arg("running_var"),
        py::arg("momentum"), py::arg("eps"));
  m.def("batchnorm_forward_eval", &batchnorm_forward_eval, py::arg("x"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("weight"), py::arg("bias"), py::arg("y"),
        py::arg("save_mean"), py::arg("save_invstd"), py::arg("eps"));
  m.def("batchnorm_backward", &batchnorm_backward, py::arg("grad_output"), py::arg("x"),
        py::arg("save_mean"), py::arg("save_invstd"), py::arg("weight"), py::arg("grad_input"),
        py::arg("grad_weight"), py::arg("grad_bias"), py::arg("training"));
  m.def("batchnorm_relu_forward_train", &batchnorm_forward_train<true>, py::arg("x"),
        py::arg("weight"), py::arg("bias"), py::arg("y"), py::arg("save_mean"),
        py::arg("save_invstd"), py::arg("running_mean"), py::arg("running_var"),
        py::arg("momentum"), py::arg("eps"));
  m.def("batchnorm_relu_backward", &batchnorm_relu_backward, py::arg("grad_output"),
        py::arg("output"), py::arg("x"), py::arg("save_mean"), py::arg("save_invstd"),
        py::arg("weight"), py::arg("grad_input"), py::arg("grad_weight"), py::arg("grad_bias"));
}
