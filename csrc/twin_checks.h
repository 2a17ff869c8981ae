// Argument checks shared by a CPU kernel (csrc/, operands py::array) and its CUDA twin (cuda/,
// operands pe::Array), written once over the array type so that a rule changes in one place.
// Include after csrc/common.h or cuda/common.cuh: these templates call the in_ptr / out_ptr /
// check_shape / check_same_size / shape_of overloads declared there.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <optional>

#include "check.h"

namespace pe {
namespace twin {

// ---------------------------------------------------------------- batch norm
// x (N, C, *): per channel c, N rows of HW contiguous values (HW = product of trailing dims).
struct NormDims {
  int64_t N, C, HW;
  int64_t M() const { return N * HW; }
  int64_t at(int64_t n, int64_t c) const { return (n * C + c) * HW; }  // row n of channel c
};

template <typename A>
NormDims norm_dims(const A& x, const char* who) {
  const Shape s = shape_of(x);
  PE_CHECK(s.size() >= 2, who, ": input must have at least 2 dims (N, C, ...), got shape ",
           shape_str(s));
  numel(s);
  NormDims d{s[0], s[1], 1};
  for (size_t i = 2; i < s.size(); ++i) d.HW *= s[i];
  // Empty rows: (2**40, 3, 0) would otherwise loop 2**40 times over nothing; M() stays 0.
  if (d.HW == 0) d.N = 0;
  return d;
}

// Per-channel operand of shape (C,): nullptr when absent.
template <typename A>
const float* chan_in(const std::optional<A>& a, int64_t C, const char* name) {
  if (!a) return nullptr;
  check_shape(*a, {C}, name);
  return in_ptr(*a, name);
}
template <typename A>
float* chan_out(std::optional<A>& a, int64_t C, const char* name) {
  if (!a) return nullptr;
  check_shape(*a, {C}, name);
  return out_ptr(*a, name);
}

struct BnTrainArgs {
  NormDims d;
  const float *x, *w, *b;
  float *y, *mean, *invstd, *running_mean, *running_var;
};
template <typename A>
BnTrainArgs bn_train_args(const A& x, const std::optional<A>& weight,
                          const std::optional<A>& bias, A& y, A& save_mean, A& save_invstd,
                          std::optional<A>& running_mean, std::optional<A>& running_var,
                          double eps) {
  BnTrainArgs a;
  a.d = norm_dims(x, "batchnorm_forward_train");
  const int64_t C = a.d.C;
  a.x = in_ptr(x, "input");
  a.y = out_ptr(y, "out");
  check_shape(y, shape_of(x), "out");
  a.w = chan_in(weight, C, "weight");
  a.b = chan_in(bias, C, "bias");
  check_shape(save_mean, {C}, "save_mean");
  check_shape(save_invstd, {C}, "save_invstd");
  a.mean = out_ptr(save_mean, "save_mean");
  a.invstd = out_ptr(save_invstd, "save_invstd");
  a.running_mean = chan_out(running_mean, C, "running_mean");
  a.running_var = chan_out(running_var, C, "running_var");
  PE_CHECK(!a.running_mean == !a.running_var,
           "running_mean and running_var must be given together");
  PE_CHECK(a.d.M() > 1, "Expected more than 1 value per channel when training, got input size ",
           shape_str(shape_of(x)));
  PE_CHECK(eps >= 0.0, "eps must be non-negative, got ", eps);
  return a;
}

struct BnEvalArgs {
  NormDims d;
  const float *x, *running_mean, *running_var, *w, *b;
  float *y, *mean, *invstd;
};
template <typename A>
BnEvalArgs bn_eval_args(const A& x, const A& running_mean, const A& running_var,
                        const std::optional<A>& weight, const std::optional<A>& bias, A& y,
                        A& save_mean, A& save_invstd) {
  BnEvalArgs a;
  a.d = norm_dims(x, "batchnorm_forward_eval");
  const int64_t C = a.d.C;
  a.x = in_ptr(x, "input");
  a.y = out_ptr(y, "out");
  check_shape(y, shape_of(x), "out");
  check_shape(running_mean, {C}, "running_mean");
  check_shape(running_var, {C}, "running_var");
  a.running_mean = in_ptr(running_mean, "running_mean");
  a.running_var = in_ptr(running_var, "running_var");
  a.w = chan_in(weight, C, "weight");
  a.b = chan_in(bias, C, "bias");
  check_shape(save_mean, {C}, "save_mean");
  check_shape(save_invstd, {C}, "save_invstd");
  a.mean = out_ptr(save_mean, "save_mean");
  a.invstd = out_ptr(save_invstd, "save_invstd");
  return a;
}

struct BnBackwardArgs {
  NormDims d;
  const float *gy, *x, *mean, *invstd, *w;
  float *gx, *gw, *gb;
  bool need_sums;  // grad_weight or grad_bias wanted, or the training-mode grad_input
};
template <typename A>
BnBackwardArgs bn_backward_args(const A& grad_output, const A& x, const A& save_mean,
                                const A& save_invstd, const std::optional<A>& weight,
                                std::optional<A>& grad_input, std::optional<A>& grad_weight,
                                std::optional<A>& grad_bias, bool training) {
  BnBackwardArgs a;
  a.d = norm_dims(x, "batchnorm_backward");
  const int64_t C = a.d.C;
  a.x = in_ptr(x, "input");
  a.gy = in_ptr(grad_output, "grad_output");
  check_shape(grad_output, shape_of(x), "grad_output");
  check_shape(save_mean, {C}, "save_mean");
  check_shape(save_invstd, {C}, "save_invstd");
  a.mean = in_ptr(save_mean, "save_mean");
  a.invstd = in_ptr(save_invstd, "save_invstd");
  a.w = chan_in(weight, C, "weight");
  a.gx = nullptr;
  if (grad_input) {
    check_shape(*grad_input, shape_of(x), "grad_input");
    a.gx = out_ptr(*grad_input, "grad_input");
  }
  a.gw = chan_out(grad_weight, C, "grad_weight");
  a.gb = chan_out(grad_bias, C, "grad_bias");
  a.need_sums = a.gw || a.gb || (a.gx && training);
  return a;
}

// ---------------------------------------------------------------- pooling
using Pair = std::array<int64_t, 2>;

struct PoolGeom {
  int64_t planes, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw;
};

// PyTorch's pooling_output_shape: floor division (ceil in ceil_mode), and in ceil_mode the last
// window must start inside the input or the left padding.
// Every window then lies in [-p, in + p + s), so the window arithmetic of the kernels cannot
// overflow once that bound is checked.
inline int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d,
                             bool ceil_mode) {
  const int64_t span = add(mul(d, k - 1), 1);
  add(add(add(in, mul(2, p)), span), s);
  int64_t out = window_out_size(in, add(mul(2, p), ceil_mode ? s - 1 : 0), k, s, d);
  if (ceil_mode && out > 0 && (out - 1) * s >= in + p) --out;
  return out;
}

// x is the pooled input (N,C,H,W), y the pooled output (N,C,OH,OW); checks both shapes and every
// parameter exactly as PyTorch's pool2d_shape_check does.
template <typename A>
PoolGeom pool_geom(const A& x, const A& y, Pair k, Pair s, Pair p, Pair d, bool ceil_mode,
                   const char* xn, const char* yn) {
  check_ndim(x, 4, xn);
  check_ndim(y, 4, yn);
  for (int i = 0; i < 2; ++i) {
    PE_CHECK(k[i] > 0, "kernel size should be greater than zero, but got kernel_size=", k[i]);
    PE_CHECK(s[i] > 0, "stride should be greater than zero, but got stride=", s[i]);
    PE_CHECK(d[i] > 0, "dilation should be greater than zero, but got dilation=", d[i]);
    PE_CHECK(p[i] >= 0 && p[i] <= k[i] / 2,
             "pad should be at most half of effective kernel size, but got pad=", p[i],
             ", kernel_size=", k[i], " and dilation=", d[i]);
  }
  const Shape xs = shape_of(x);
  PE_CHECK(xs[2] > 0 && xs[3] > 0, xn, " must have non-zero spatial size, got shape ",
           shape_str(xs));
  const int64_t OH = pool_out_size(xs[2], k[0], s[0], p[0], d[0], ceil_mode);
  const int64_t OW = pool_out_size(xs[3], k[1], s[1], p[1], d[1], ceil_mode);
  PE_CHECK(OH > 0 && OW > 0, "Given input size ", shape_str(xs), ", calculated output size (",
           OH, ", ", OW, ") is too small");
  check_shape(y, {xs[0], xs[1], OH, OW}, yn);
  numel(xs);
  numel(shape_of(y));
  return {xs[0] * xs[1], xs[2], xs[3], OH, OW, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1]};
}

template <typename A>
PoolGeom adaptive_geom(const A& x, const A& y, const char* xn, const char* yn) {
  check_ndim(x, 4, xn);
  check_ndim(y, 4, yn);
  const Shape xs = shape_of(x), ys = shape_of(y);
  PE_CHECK(xs[2] > 0 && xs[3] > 0, "adaptive_avg_pool2d: expected ", xn,
           " to have non-zero spatial size, got shape ", shape_str(xs));
  PE_CHECK(ys[0] == xs[0] && ys[1] == xs[1] && ys[2] > 0 && ys[3] > 0, yn, " ", shape_str(ys),
           " does not fit ", xn, " ", shape_str(xs));
  numel(xs);
  numel(ys);
  mul(ys[2], xs[2]);  // the window bounds compute (o + 1) * in
  mul(ys[3], xs[3]);
  return {xs[0] * xs[1], xs[2], xs[3], ys[2], ys[3], 0, 0, 0, 0, 0, 0, 0, 0};
}

// ---------------------------------------------------------------- resampling and padding
struct Planes {
  int64_t planes, H, W, OH, OW;
};

template <typename A>
Planes plane_geom(const A& x, const A& y, const char* xn, const char* yn) {
  check_ndim(x, 4, xn);
  check_ndim(y, 4, yn);
  const Shape xs = shape_of(x), ys = shape_of(y);
  PE_CHECK(xs[0] == ys[0] && xs[1] == ys[1], xn, " ", shape_str(xs), " and ", yn, " ",
           shape_str(ys), " differ in batch or channels");
  numel(xs);
  numel(ys);
  mul(xs[2], ys[3]);  // bilinear's row buffer (H, OW)
  return {xs[0] * xs[1], xs[2], xs[3], ys[2], ys[3]};
}

inline void check_resample(const Planes& g) {
  PE_CHECK(g.H > 0 && g.W > 0 && g.OH > 0 && g.OW > 0,
           "upsampling needs non-empty input and output planes, got input (", g.H, ", ", g.W,
           ") and output (", g.OH, ", ", g.OW, ")");
}

// x is the unpadded tensor (N,C,H,W), y the padded one (N,C,H+top+bottom,W+left+right);
// pad = (left, right, top, bottom), negative pads crop.
template <typename A>
Planes pad_geom(const A& x, const A& y, const std::array<int64_t, 4>& pad, bool reflect,
                bool replicate, const char* xn, const char* yn) {
  const Planes g = plane_geom(x, y, xn, yn);
  const int64_t OH = add(add(g.H, pad[2]), pad[3]);
  const int64_t OW = add(add(g.W, pad[0]), pad[1]);
  PE_CHECK(OH >= 0 && OW >= 0, "padding ", shape_str({pad[0], pad[1], pad[2], pad[3]}),
           " of planes (", g.H, ", ", g.W, ") gives a negative output size");
  PE_CHECK(g.OH == OH && g.OW == OW, yn, " has planes (", g.OH, ", ", g.OW, "), expected (", OH,
           ", ", OW, ") for padding ", shape_str({pad[0], pad[1], pad[2], pad[3]}));
  const int64_t in[2] = {g.H, g.W}, lo[2] = {pad[2], pad[0]}, hi[2] = {pad[3], pad[1]};
  const char* axis[2] = {"height", "width"};
  for (int a = 0; a < 2; ++a) {
    if (reflect)
      PE_CHECK(lo[a] < in[a] && hi[a] < in[a], "reflect padding (", lo[a], ", ", hi[a],
               ") must be smaller than the ", axis[a], " size ", in[a]);
    if (replicate) PE_CHECK(in[a] > 0, "replicate padding needs a non-empty ", axis[a]);
  }
  return g;
}

// ---------------------------------------------------------------- optimisers
struct AdamArgs {
  float* p;
  const float* g;
  float *m, *v;
  int64_t n;
  float step_size;     // lr / (1 - beta1^step)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - beta2^step)
};
// Bias corrections in double on the host, as PyTorch does.
template <typename A>
AdamArgs adam_args(A& param, const A& grad, A& exp_avg, A& exp_avg_sq, float lr, float beta1,
                   float beta2, int64_t step) {
  AdamArgs a;
  a.p = out_ptr(param, "param");
  a.g = in_ptr(grad, "grad");
  a.m = out_ptr(exp_avg, "exp_avg");
  a.v = out_ptr(exp_avg_sq, "exp_avg_sq");
  check_same_size(param, grad, "param", "grad");
  check_same_size(param, exp_avg, "param", "exp_avg");
  check_same_size(param, exp_avg_sq, "param", "exp_avg_sq");
  PE_CHECK(step >= 1, "adam_step: step must be >= 1, got ", step);
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  a.n = static_cast<int64_t>(param.size());
  a.step_size = static_cast<float>(lr / bc1);
  a.inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  return a;
}

struct SgdArgs {
  float* p;
  const float* g;
  float* buf;  // nullptr without momentum
  int64_t n;
};
template <typename A>
SgdArgs sgd_args(A& param, const A& grad, A& buf, float momentum) {
  SgdArgs a;
  a.p = out_ptr(param, "param");
  a.g = in_ptr(grad, "grad");
  a.buf = momentum != 0.f ? out_ptr(buf, "momentum_buffer") : nullptr;
  check_same_size(param, grad, "param", "grad");
  if (a.buf) check_same_size(param, buf, "param", "momentum_buffer");
  a.n = static_cast<int64_t>(param.size());
  return a;
}

}  // namespace twin
}  // namespace pe
