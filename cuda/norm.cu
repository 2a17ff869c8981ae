// Batch normalisation over dim 1 of x (N, C, *): same names, signatures and formulas as
// csrc/norm.cpp. One block per channel walks its N rows of HW contiguous floats (coalesced along
// HW); sums are per-thread partials combined by shuffle block reductions.
#include <optional>

#include "common.cuh"
#include "../csrc/twin_checks.h"

namespace {

using pe::Array;
using OptArray = std::optional<Array>;
namespace idx = pe::idx;

constexpr int kBlock = 512;

// Element j of channel c (j over the channel's N * HW values).
__device__ __forceinline__ int64_t at(int64_t j, int64_t c, int64_t C, int64_t HW) {
  return ((j / HW) * C + c) * HW + j % HW;
}

// Training forward of batchnorm_forward_train (Relu = false) and batchnorm_relu_forward_train,
// with csrc/norm.cpp's statistics: sum(x - s) and sum((x - s)^2) in one pass with s the mean of the
// channel's first row (x - s is then of the order of the standard deviation, so the variance loses
// no more than the corrected two-pass formula does), then one pass writing y.
template <bool Relu>
__global__ void __launch_bounds__(kBlock)
    bn_train_kernel(const float* __restrict__ x, const float* __restrict__ w,
                    const float* __restrict__ b, float* __restrict__ y, float* __restrict__ mean_out,
                    float* __restrict__ invstd_out, float* __restrict__ rm, float* __restrict__ rv,
                    int64_t C, int64_t HW, int64_t M, double momentum, double eps) {
  __shared__ float sh[32];
  const int64_t c = blockIdx.x;
  float s0 = 0.f;
  for (int64_t j = threadIdx.x; j < HW; j += blockDim.x) s0 += x[at(j, c, C, HW)];
  const float shift = pe::block_sum(s0, sh) / float(HW);
  float s1 = 0.f, s2 = 0.f;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
    const float dv = x[at(j, c, C, HW)] - shift;
    s1 += dv;
    s2 += dv * dv;
  }
  s1 = pe::block_sum(s1, sh);
  s2 = pe::block_sum(s2, sh);
  const double mean = shift + double(s1) / M;
  const double var = fmax((double(s2) - double(s1) * s1 / M) / M, 0.0);
  const double invstd = 1.0 / sqrt(var + eps);
  const float mf = float(mean);
  if (threadIdx.x == 0) {
    mean_out[c] = mf;
    invstd_out[c] = float(invstd);
    if (rm) {
      rm[c] = float((1.0 - momentum) * rm[c] + momentum * mean);
      rv[c] = float((1.0 - momentum) * rv[c] + momentum * var * M / (M - 1));
    }
  }
  const float scale = float((w ? w[c] : 1.0) * invstd), offset = b ? b[c] : 0.f;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
    const int64_t k = at(j, c, C, HW);
    const float v = (x[k] - mf) * scale + offset;
    if constexpr (Relu)
      y[k] = fmaxf(v, 0.f);
    else
      y[k] = v;
  }
}

__global__ void bn_eval_kernel(const float* __restrict__ x, const float* __restrict__ rm,
                               const float* __restrict__ rv, const float* __restrict__ w,
                               const float* __restrict__ b, float* __restrict__ y,
                               float* __restrict__ mean_out, float* __restrict__ invstd_out,
                               int64_t C, int64_t HW, int64_t M, double eps) {
  const int64_t c = blockIdx.x;
  const double invstd = 1.0 / sqrt(double(rv[c]) + eps);
  if (threadIdx.x == 0) {
    mean_out[c] = rm[c];
    invstd_out[c] = float(invstd);
  }
  const float m = rm[c], scale = float((w ? w[c] : 1.0) * invstd), offset = b ? b[c] : 0.f;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
    const int64_t k = at(j, c, C, HW);
    y[k] = (x[k] - m) * scale + offset;
  }
}

// v where the ReLU's output y[k] > 0, else 0; v itself for the plain batch-norm backward.
template <bool Masked>
__device__ __forceinline__ float relu_mask(const float* __restrict__ y, int64_t k, float v) {
  if constexpr (Masked) return y[k] > 0.f ? v : 0.f;
  return v;
}

// With g = dy (Masked: g = (y > 0 ? dy : 0), the ReLU mask read from the forward's output y):
// grad_bias = sum(g), grad_weight = sum(g * x_hat);
// training: dx = w * invstd * (g - mean(g) - x_hat * mean(g * x_hat)); eval: dx = w*invstd*g.
// Masked is a template parameter so the plain kernel compiles without the mask.
template <bool Masked>
__global__ void __launch_bounds__(kBlock)
    bn_backward_kernel(const float* __restrict__ gy, const float* __restrict__ y,
                       const float* __restrict__ x, const float* __restrict__ mean,
                       const float* __restrict__ invstd, const float* __restrict__ w,
                       float* __restrict__ gx, float* __restrict__ gw, float* __restrict__ gb,
                       int64_t C, int64_t HW, int64_t M, bool training, bool need_sums) {
  __shared__ float sh[32];
  const int64_t c = blockIdx.x;
  const float m = mean[c];
  const double is = invstd[c];
  float sg = 0.f, sgx = 0.f;
  if (need_sums) {
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
      const int64_t k = at(j, c, C, HW);
      const float g = relu_mask<Masked>(y, k, gy[k]);
      sg += g;
      sgx += g * (x[k] - m);
    }
    sg = pe::block_sum(sg, sh);
    sgx = pe::block_sum(sgx, sh);
  }
  if (threadIdx.x == 0) {
    if (gb) gb[c] = sg;
    if (gw) gw[c] = float(sgx * is);
  }
  if (!gx) return;
  const double k = (w ? w[c] : 1.0) * is;
  if (training && M > 0) {
    const float p = float(k), q = float(-k * is * is * sgx / M), r = float(-k * sg / M);
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
      const int64_t e = at(j, c, C, HW);
      gx[e] = relu_mask<Masked>(y, e, p * gy[e]) + q * (x[e] - m) + r;
    }
  } else {
    const float p = float(k);
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
      const int64_t e = at(j, c, C, HW);
      gx[e] = relu_mask<Masked>(y, e, p * gy[e]);
    }
  }
}

// Bound as batchnorm_forward_train (Relu = false) and batchnorm_relu_forward_train.
template <bool Relu>
void batchnorm_forward_train(const Array& x, const OptArray& weight, const OptArray& bias, Array& y,
                             Array& save_mean, Array& save_invstd, OptArray running_mean,
                             OptArray running_var, double momentum, double eps) {
  const pe::twin::BnTrainArgs a = pe::twin::bn_train_args(
      x, weight, bias, y, save_mean, save_invstd, running_mean, running_var, eps);
  const pe::twin::NormDims& d = a.d;
  PE_CHECK(d.C <= 2147483647, "too many channels");
  if (d.C == 0) return;
  PE_LAUNCH(unsigned(d.C), kBlock, 0, bn_train_kernel<Relu>)(
      a.x, a.w, a.b, a.y, a.mean, a.invstd, a.running_mean, a.running_var, d.C, d.HW, d.M(),
      momentum, eps);
  PE_LAUNCHED(Relu ? "bn_train_kernel<true>" : "bn_train_kernel<false>");
}

void batchnorm_forward_eval(const Array& x, const Array& running_mean, const Array& running_var,
                            const OptArray& weight, const OptArray& bias, Array& y,
                            Array& save_mean, Array& save_invstd, double eps) {
  const pe::twin::BnEvalArgs a = pe::twin::bn_eval_args(x, running_mean, running_var, weight,
                                                          bias, y, save_mean, save_invstd);
  const pe::twin::NormDims& d = a.d;
  const float *px = a.x, *prm = a.running_mean, *prv = a.running_var, *pw = a.w, *pb = a.b;
  float *py_ = a.y, *pm = a.mean, *pi = a.invstd;
  if (d.C == 0) return;
  PE_LAUNCH(unsigned(d.C), kBlock, 0, bn_eval_kernel)(
      px, prm, prv, pw, pb, py_, pm, pi, d.C, d.HW, d.M(), eps);
  PE_LAUNCHED("bn_eval_kernel");
}

void batchnorm_backward(const Array& grad_output, const Array& x, const Array& save_mean,
                        const Array& save_invstd, const OptArray& weight, OptArray grad_input,
                        OptArray grad_weight, OptArray grad_bias, bool training) {
  const pe::twin::BnBackwardArgs a = pe::twin::bn_backward_args(
      grad_output, x, save_mean, save_invstd, weight, grad_input, grad_weight, grad_bias, training);
  const pe::twin::NormDims& d = a.d;
  const float *pg = a.gy, *px = a.x, *pm = a.mean, *pi = a.invstd, *pw = a.w;
  float *pgx = a.gx, *pgw = a.gw, *pgb = a.gb;
  const bool need_sums = a.need_sums;
  if (d.C == 0) return;
  PE_LAUNCH(unsigned(d.C), kBlock, 0, bn_backward_kernel<false>)(
      pg, nullptr, px, pm, pi, pw, pgx, pgw, pgb, d.C, d.HW, d.M(), training, need_sums);
  PE_LAUNCHED("bn_backward_kernel<false>");
}

void batchnorm_relu_backward(const Array& grad_output, const Array& output, const Array& x,
                             const Array& save_mean, const Array& save_invstd,
                             const OptArray& weight, OptArray grad_input, OptArray grad_weight,
                             OptArray grad_bias) {
  const pe::twin::BnBackwardArgs a = pe::twin::bn_backward_args(
      grad_output, x, save_mean, save_invstd, weight, grad_input, grad_weight, grad_bias, true);
  pe::check_shape(output, pe::shape_of(x), "output");
  const float* py_ = pe::in_ptr(output, "output");
  const pe::twin::NormDims& d = a.d;
  if (d.C == 0 || !a.need_sums) return;
  PE_CHECK(d.C <= 2147483647, "too many channels");
  PE_LAUNCH(unsigned(d.C), kBlock, 0, bn_backward_kernel<true>)(
      a.gy, py_, a.x, a.mean, a.invstd, a.w, a.gx, a.gw, a.gb, d.C, d.HW, d.M(), true, true);
  PE_LAUNCHED("bn_backward_kernel<true>");
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
