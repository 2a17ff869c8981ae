// Batch normalisation over dim 1 of x (N, C, *): same names, signatures and formulas as
// csrc/norm.cpp. One block per channel walks its N rows of HW contiguous floats (coalesced along
// HW); sums are per-thread partials combined by shuffle block reductions.
#include <optional>

#include "common.cuh"

namespace {

using pe::Array;
using OptArray = std::optional<Array>;
namespace idx = pe::idx;

constexpr int kBlock = 512;

struct Dims {
  int64_t N, C, HW;
  int64_t M() const { return N * HW; }
};

Dims dims_of(const Array& x, const char* who) {
  PE_CHECK(x.ndim() >= 2, who, ": input must have at least 2 dims (N, C, ...), got shape ",
           pe::shape_str(x.shape));
  Dims d{x.shape[0], x.shape[1], 1};
  for (int64_t i = 2; i < x.ndim(); ++i) d.HW *= x.shape[i];
  return d;
}

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

// Element j of channel c (j over the channel's N * HW values).
__device__ __forceinline__ int64_t at(int64_t j, int64_t c, int64_t C, int64_t HW) {
  return ((j / HW) * C + c) * HW + j % HW;
}

// Training forward: shifted mean, corrected two-pass variance, normalisation, running stats.
__global__ void __launch_bounds__(kBlock)
    bn_train_kernel(const float* __restrict__ x, const float* __restrict__ w,
                    const float* __restrict__ b, float* __restrict__ y, float* __restrict__ mean_out,
                    float* __restrict__ invstd_out, float* __restrict__ rm, float* __restrict__ rv,
                    int64_t C, int64_t HW, int64_t M, double momentum, double eps) {
  __shared__ float sh[32];
  const int64_t c = blockIdx.x;
  // Shifting by one sample of the channel keeps the float partial sums small when |mean| >> std.
  const float shift = x[at(0, c, C, HW)];
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) s += x[at(j, c, C, HW)] - shift;
  s = pe::block_sum(s, sh);
  const double mean = shift + double(s) / M;
  const float mf = float(mean);
  float s1 = 0.f, s2 = 0.f;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
    const float dv = x[at(j, c, C, HW)] - mf;
    s1 += dv;
    s2 += dv * dv;
  }
  s1 = pe::block_sum(s1, sh);
  s2 = pe::block_sum(s2, sh);
  const double var = fmax((double(s2) - double(s1) * s1 / M) / M, 0.0);
  const double invstd = 1.0 / sqrt(var + eps);
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
    y[k] = (x[k] - mf) * scale + offset;
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

// grad_bias = sum(dy), grad_weight = sum(dy * x_hat);
// training: dx = w * invstd * (dy - mean(dy) - x_hat * mean(dy * x_hat)); eval: dx = w*invstd*dy.
__global__ void __launch_bounds__(kBlock)
    bn_backward_kernel(const float* __restrict__ gy, const float* __restrict__ x,
                       const float* __restrict__ mean, const float* __restrict__ invstd,
                       const float* __restrict__ w, float* __restrict__ gx,
                       float* __restrict__ gw, float* __restrict__ gb, int64_t C, int64_t HW,
                       int64_t M, bool training, bool need_sums) {
  __shared__ float sh[32];
  const int64_t c = blockIdx.x;
  const float m = mean[c];
  const double is = invstd[c];
  float sg = 0.f, sgx = 0.f;
  if (need_sums) {
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
      const int64_t k = at(j, c, C, HW);
      sg += gy[k];
      sgx += gy[k] * (x[k] - m);
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
      gx[e] = p * gy[e] + q * (x[e] - m) + r;
    }
  } else {
    const float p = float(k);
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
      const int64_t e = at(j, c, C, HW);
      gx[e] = p * gy[e];
    }
  }
}

void batchnorm_forward_train(const Array& x, const OptArray& weight, const OptArray& bias, Array& y,
                             Array& save_mean, Array& save_invstd, OptArray running_mean,
                             OptArray running_var, double momentum, double eps) {
  const Dims d = dims_of(x, "batchnorm_forward_train");
  const float* px = pe::in_ptr(x, "input");
  float* py_ = pe::out_ptr(y, "out");
  pe::check_shape(y, x.shape, "out");
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
           pe::shape_str(x.shape));
  PE_CHECK(eps >= 0.0, "eps must be non-negative, got ", eps);
  PE_CHECK(d.C <= 2147483647, "too many channels");
  if (d.C == 0) return;
  PE_LAUNCH(unsigned(d.C), kBlock, 0, bn_train_kernel)(px, pw, pb, py_, pm, pi, prm, prv, d.C, d.HW, d.M(),
                                             momentum, eps);
  PE_LAUNCHED("bn_train_kernel");
}

void batchnorm_forward_eval(const Array& x, const Array& running_mean, const Array& running_var,
                            const OptArray& weight, const OptArray& bias, Array& y,
                            Array& save_mean, Array& save_invstd, double eps) {
  const Dims d = dims_of(x, "batchnorm_forward_eval");
  const float* px = pe::in_ptr(x, "input");
  float* py_ = pe::out_ptr(y, "out");
  pe::check_shape(y, x.shape, "out");
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
  if (d.C == 0) return;
  PE_LAUNCH(unsigned(d.C), kBlock, 0, bn_eval_kernel)(px, prm, prv, pw, pb, py_, pm, pi, d.C, d.HW, d.M(),
                                            eps);
  PE_LAUNCHED("bn_eval_kernel");
}

void batchnorm_backward(const Array& grad_output, const Array& x, const Array& save_mean,
                        const Array& save_invstd, const OptArray& weight, OptArray grad_input,
                        OptArray grad_weight, OptArray grad_bias, bool training) {
  const Dims d = dims_of(x, "batchnorm_backward");
  const float* px = pe::in_ptr(x, "input");
  const float* pg = pe::in_ptr(grad_output, "grad_output");
  pe::check_shape(grad_output, x.shape, "grad_output");
  pe::check_shape(save_mean, {d.C}, "save_mean");
  pe::check_shape(save_invstd, {d.C}, "save_invstd");
  const float* pm = pe::in_ptr(save_mean, "save_mean");
  const float* pi = pe::in_ptr(save_invstd, "save_invstd");
  const float* pw = chan_in(weight, d.C, "weight");
  float* pgx = nullptr;
  if (grad_input) {
    pe::check_shape(*grad_input, x.shape, "grad_input");
    pgx = pe::out_ptr(*grad_input, "grad_input");
  }
  float* pgw = chan_out(grad_weight, d.C, "grad_weight");
  float* pgb = chan_out(grad_bias, d.C, "grad_bias");
  const bool need_sums = pgw || pgb || (pgx && training);
  if (d.C == 0) return;
  PE_LAUNCH(unsigned(d.C), kBlock, 0, bn_backward_kernel)(pg, px, pm, pi, pw, pgx, pgw, pgb, d.C, d.HW,
                                                d.M(), training, need_sums);
  PE_LAUNCHED("bn_backward_kernel");
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
