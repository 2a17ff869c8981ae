// Optimiser updates as one fused pass per parameter: Adam and SGD (momentum, Nesterov), with the
// formulas of csrc/optim.cpp (PyTorch's: L2 weight decay added to the gradient, bias-corrected
// Adam). Bias corrections are computed on the host in double, as on the CPU.
#include <cmath>

#include "common.cuh"
#include "../csrc/twin_checks.h"

namespace {

using pe::Array;

__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ g,
                            float* __restrict__ m, float* __restrict__ v, int64_t n, float b1,
                            float b2, float eps, float wd, float step_size, float inv_sqrt_bc2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i] + wd * p[i];
    const float mi = b1 * m[i] + (1.f - b1) * gi;
    const float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
  }
}

void adam_step(Array& param, const Array& grad, Array& exp_avg, Array& exp_avg_sq, float lr,
               float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  const pe::twin::AdamArgs a =
      pe::twin::adam_args(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, step);
  float *p = a.p, *m = a.m, *v = a.v;
  const float* g = a.g;
  const int64_t n = param.size();
  if (n == 0) return;
  PE_LAUNCH(pe::grid1d(n), pe::idx::kThreads, 0, adam_kernel)(
      p, g, m, v, n, beta1, beta2, eps, weight_decay, a.step_size, a.inv_sqrt_bc2);
  PE_LAUNCHED("adam_kernel");
}

// buf may alias param when momentum == 0 (it is then never touched), so no __restrict__ here.
__global__ void sgd_kernel(float* p, const float* g, float* b, int64_t n, float lr, float momentum,
                           float dampening, float wd, bool nesterov, bool first) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float d = g[i] + wd * p[i];
    if (b) {
      b[i] = first ? d : momentum * b[i] + (1.f - dampening) * d;
      d = nesterov ? d + momentum * b[i] : b[i];
    }
    p[i] -= lr * d;
  }
}

// buf is the momentum buffer (ignored when momentum == 0); `first` initialises it with the
// gradient, as torch.optim.SGD does on its first step.
void sgd_step(Array& param, const Array& grad, Array& buf, float lr, float momentum,
              float dampening, float weight_decay, bool nesterov, bool first) {
  const pe::twin::SgdArgs a = pe::twin::sgd_args(param, grad, buf, momentum);
  float *p = a.p, *b = a.buf;
  const float* g = a.g;
  const int64_t n = param.size();
  if (n == 0) return;
  PE_LAUNCH(pe::grid1d(n), pe::idx::kThreads, 0, sgd_kernel)(
      p, g, b, n, lr, momentum, dampening, weight_decay, nesterov, first);
  PE_LAUNCHED("sgd_kernel");
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def("adam_step", &adam_step, py::arg("param"), py::arg("grad"), py::arg("exp_avg"),
        py::arg("exp_avg_sq"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("step"));
  m.def("sgd_step", &sgd_step, py::arg("param"), py::arg("grad"), py::arg("buf"), py::arg("lr"),
        py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
        py::arg("first"));
}
