// Optimiser updates as one fused pass per parameter: Adam, AdamW, SGD (momentum, Nesterov) and
// RMSprop, with PyTorch's formulas (L2 weight decay added to the gradient except in AdamW, which
// decays the parameter by (1 - lr * weight_decay) first; bias-corrected Adam).
#include <cmath>

#include "common.h"
#include "twin_checks.h"

namespace {

// param, grad, exp_avg, exp_avg_sq: same size, float32; step counts from 1.
PE_MULTIVERSION void adam_loop(float* __restrict p, const float* __restrict g, float* __restrict m,
                               float* __restrict v, int64_t n, float lr, float b1, float b2,
                               float eps, float wd, float decay, float step_size,
                               float inv_sqrt_bc2) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + wd * p[i];
    m[i] = b1 * m[i] + (1.f - b1) * gi;
    v[i] = b2 * v[i] + (1.f - b2) * gi * gi;
    p[i] = p[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
  }
}

// decoupled: AdamW's decay (p *= 1 - lr * wd) instead of Adam's L2 term in the gradient.
void adam_impl(py::array& param, const py::array& grad, py::array& exp_avg,
               py::array& exp_avg_sq, float lr, float beta1, float beta2, float eps,
               float weight_decay, int64_t step, bool decoupled) {
  const pe::twin::AdamArgs a =
      pe::twin::adam_args(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, step);
  float *p = a.p, *m = a.m, *v = a.v;
  const float* g = a.g;
  const float step_size = a.step_size, inv_sqrt_bc2 = a.inv_sqrt_bc2;
  const float wd = decoupled ? 0.f : weight_decay;
  const float decay = decoupled ? 1.f - lr * weight_decay : 1.f;
  const int64_t n = a.n;
  py::gil_scoped_release nogil;
  constexpr int64_t chunk = 1 << 14;
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (int64_t s = 0; s < n; s += chunk)
    adam_loop(p + s, g + s, m + s, v + s, std::min(chunk, n - s), lr, beta1, beta2, eps, wd,
              decay, step_size, inv_sqrt_bc2);
}

void adam_step(py::array& param, const py::array& grad, py::array& exp_avg, py::array& exp_avg_sq,
               float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  adam_impl(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step, false);
}

void adamw_step(py::array& param, const py::array& grad, py::array& exp_avg,
                py::array& exp_avg_sq, float lr, float beta1, float beta2, float eps,
                float weight_decay, int64_t step) {
  adam_impl(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step, true);
}

// buf is the momentum buffer (ignored when momentum == 0); `first` initialises it with the
// gradient, as torch.optim.SGD does on its first step.
void sgd_step(py::array& param, const py::array& grad, py::array& buf, float lr, float momentum,
              float dampening, float weight_decay, bool nesterov, bool first) {
  const pe::twin::SgdArgs a = pe::twin::sgd_args(param, grad, buf, momentum);
  float *p = a.p, *b = a.buf;
  const float* g = a.g;
  const int64_t n = param.size();
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    float d = g[i] + weight_decay * p[i];
    if (b) {
      b[i] = first ? d : momentum * b[i] + (1.f - dampening) * d;
      d = nesterov ? d + momentum * b[i] : b[i];
    }
    p[i] -= lr * d;
  }
}

// square_avg always; grad_avg only when centered, momentum_buffer only when momentum > 0 (the
// caller may pass any array in their place otherwise). As torch.optim.RMSprop:
//   g += wd p; sq = alpha sq + (1 - alpha) g^2; [ga += (1 - alpha)(g - ga); sq' = sq - ga^2]
//   avg = sqrt(sq') + eps; buf = momentum buf + g / avg, p -= lr buf   (or p -= lr g / avg)
void rmsprop_step(py::array& param, const py::array& grad, py::array& square_avg,
                  py::array& grad_avg, py::array& momentum_buffer, float lr, float alpha, float eps,
                  float weight_decay, float momentum, bool centered) {
  float* p = pe::out_ptr(param, "param");
  const float* g = pe::in_ptr(grad, "grad");
  float* sq = pe::out_ptr(square_avg, "square_avg");
  float* ga = centered ? pe::out_ptr(grad_avg, "grad_avg") : nullptr;
  float* b = momentum > 0.f ? pe::out_ptr(momentum_buffer, "momentum_buffer") : nullptr;
  pe::check_same_size(param, grad, "param", "grad");
  pe::check_same_size(param, square_avg, "param", "square_avg");
  if (ga) pe::check_same_size(param, grad_avg, "param", "grad_avg");
  if (b) pe::check_same_size(param, momentum_buffer, "param", "momentum_buffer");
  const int64_t n = param.size();
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + weight_decay * p[i];
    sq[i] = alpha * sq[i] + (1.f - alpha) * gi * gi;
    float var = sq[i];
    if (ga) {
      ga[i] += (1.f - alpha) * (gi - ga[i]);
      var -= ga[i] * ga[i];
    }
    const float avg = std::sqrt(var) + eps;
    if (b) {
      b[i] = momentum * b[i] + gi / avg;
      p[i] -= lr * b[i];
    } else {
      p[i] -= lr * gi / avg;
    }
  }
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def("adam_step", &adam_step, py::arg("param"), py::arg("grad"), py::arg("exp_avg"),
        py::arg("exp_avg_sq"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("step"));
  m.def("adamw_step", &adamw_step, py::arg("param"), py::arg("grad"), py::arg("exp_avg"),
        py::arg("exp_avg_sq"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("step"));
  m.def("rmsprop_step", &rmsprop_step, py::arg("param"), py::arg("grad"), py::arg("square_avg"),
        py::arg("grad_avg"), py::arg("momentum_buffer"), py::arg("lr"), py::arg("alpha"),
        py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"));
  m.def("sgd_step", &sgd_step, py::arg("param"), py::arg("grad"), py::arg("buf"), py::arg("lr"),
        py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
        py::arg("first"));
}
