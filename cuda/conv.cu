// 2-D convolution and transposed convolution, float32 NCHW, forward and backward, with the names
// and signatures of csrc/conv.cpp. Shapes: x (N,C,H,W), w (K,C/G,R,S), b (K,) or None,
// y (N,K,P,Q); G = groups. One algorithm serves both CPU names ("direct" and "im2col"): per group
// and chunk of nb samples, im2col builds col (nb, Cg*R*S, P*Q) in a workspace and a batched GEMM
// multiplies it by the group's weights. The input gradient is a batched GEMM into col followed by
// col2im as a gather (one thread per input element sums its taps: no atomics, deterministic);
// the weight gradient is a batched GEMM into per-sample partials summed in a fixed order.
// Index arithmetic: idx::im2col_source / idx::col2im_tap (tested on the host).
#include <optional>

#include "common.cuh"
#include "gemm.cuh"

namespace {

using pe::Array;
using OptArray = std::optional<Array>;
namespace idx = pe::idx;

constexpr int64_t kColFloats = int64_t(1) << 25;  // 128 MiB of column buffer per chunk

struct Geom {
  int64_t N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, G;
  int64_t Cg() const { return C / G; }
  int64_t Kg() const { return K / G; }
  int64_t CRS() const { return C / G * R * S; }
  int64_t PQ() const { return P * Q; }
  idx::ConvGeom index_geom() const { return {C / G, H, W, R, S, P, Q, sh, sw, ph, pw, dh, dw}; }
  int64_t chunk() const {
    const int64_t per = std::max<int64_t>(1, CRS() * PQ());
    return std::max<int64_t>(1, std::min<int64_t>(N, std::min<int64_t>(kColFloats / per, 65535)));
  }
};

Geom make_geom(const Array& x, const Array& w, const Array& y, int64_t sh, int64_t sw, int64_t ph,
               int64_t pw, int64_t dh, int64_t dw, int64_t groups, const char* xn,
               const char* yn) {
  pe::check_ndim(x, 4, xn);
  pe::check_ndim(w, 4, "weight");
  pe::check_ndim(y, 4, yn);
  PE_CHECK(sh >= 1 && sw >= 1, "conv: stride must be positive, got (", sh, ", ", sw, ")");
  PE_CHECK(dh >= 1 && dw >= 1, "conv: dilation must be positive, got (", dh, ", ", dw, ")");
  PE_CHECK(ph >= 0 && pw >= 0, "conv: padding must be non-negative, got (", ph, ", ", pw, ")");
  PE_CHECK(groups >= 1, "conv: groups must be positive, got ", groups);
  Geom g{x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0], w.shape[2], w.shape[3],
         y.shape[2], y.shape[3], sh, sw, ph, pw, dh, dw, groups};
  PE_CHECK(g.C % groups == 0 && g.K % groups == 0, "conv: groups=", groups,
           " must divide the channels ", g.C, " and ", g.K);
  PE_CHECK(g.R >= 1 && g.S >= 1, "conv: empty kernel ", pe::shape_str(w.shape));
  pe::check_shape(w, {g.K, g.C / groups, g.R, g.S}, "weight");
  PE_CHECK(y.shape[0] == g.N && y.shape[1] == g.K, yn, " has shape ", pe::shape_str(y.shape),
           ", expected batch ", g.N, " and ", g.K, " channels");
  return g;
}

// col[n][row][pq] for samples [n0, n0+nb) of group grp.
__global__ void im2col_kernel(const float* __restrict__ x, float* __restrict__ col,
                              idx::ConvGeom cg, int64_t C, int64_t grp, int64_t n0, int64_t nb) {
  const int64_t rows = cg.C * cg.R * cg.S, cols = cg.P * cg.Q, per = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < nb * per;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / per, rc = i % per;
    const int64_t src = idx::im2col_source(cg, rc / cols, rc % cols);
    col[i] = src < 0 ? 0.f : x[((n0 + n) * C + grp * cg.C) * cg.H * cg.W + src];
  }
}

// gx[n0+n, grp*Cg + c, h, w] = sum of the column entries whose tap lands on (c, h, w).
__global__ void col2im_kernel(const float* __restrict__ col, float* __restrict__ gx,
                              idx::ConvGeom cg, int64_t C, int64_t grp, int64_t n0, int64_t nb) {
  const int64_t plane = cg.H * cg.W, per = cg.C * plane, cols = cg.P * cg.Q;
  const int64_t rows = cg.C * cg.R * cg.S;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < nb * per;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / per, c = (i % per) / plane, h = (i % plane) / cg.W, w = i % cg.W;
    const float* cn = col + n * rows * cols;
    float acc = 0.f;
    for (int64_t r = 0; r < cg.R; ++r) {
      const int64_t p = idx::col2im_tap(h, r, cg.sh, cg.ph, cg.dh, cg.P);
      if (p < 0) continue;
      for (int64_t s = 0; s < cg.S; ++s) {
        const int64_t q = idx::col2im_tap(w, s, cg.sw, cg.pw, cg.dw, cg.Q);
        if (q >= 0) acc += cn[((c * cg.R + r) * cg.S + s) * cols + p * cg.Q + q];
      }
    }
    gx[((n0 + n) * C + grp * cg.C + c) * plane + (i % plane)] = acc;
  }
}

// out[j] (+)= sum_b part[b * len + j], in order b = 0, 1, ...
__global__ void sum_batch_kernel(const float* __restrict__ part, int64_t nb, int64_t len,
                                 float* __restrict__ out, bool accumulate) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < len;
       j += int64_t(gridDim.x) * blockDim.x) {
    float acc = accumulate ? out[j] : 0.f;
    for (int64_t b = 0; b < nb; ++b) acc += part[b * len + j];
    out[j] = acc;
  }
}

// y (N, C, HW) += b[c]
__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ b, int64_t C,
                                int64_t HW, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += b[(i / HW) % C];
}

// gb[c] = sum over n, hw of gy (N, C, HW): one block per channel.
__global__ void channel_sum_kernel(const float* __restrict__ gy, float* __restrict__ gb, int64_t N,
                                   int64_t C, int64_t HW) {
  __shared__ float sh[32];
  const int64_t c = blockIdx.x, M = N * HW;
  double acc = 0.0;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) acc += gy[((j / HW) * C + c) * HW + j % HW];
  const float total = pe::block_sum(static_cast<float>(acc), sh);
  if (threadIdx.x == 0) gb[c] = total;
}

const float* opt_in(const OptArray& a, int64_t n, const char* name) {
  if (!a) return nullptr;
  pe::check_shape(*a, {n}, name);
  return pe::in_ptr(*a, name);
}

void add_bias(float* y, const float* b, int64_t N, int64_t C, int64_t HW) {
  if (!b || N * C * HW == 0) return;
  PE_LAUNCH(pe::grid1d(N * C * HW), idx::kThreads, 0, add_bias_kernel)(y, b, C, HW, N * C * HW);
  PE_LAUNCHED("add_bias_kernel");
}

void channel_sum(const float* gy, float* gb, int64_t N, int64_t C, int64_t HW) {
  if (!gb || C == 0) return;
  PE_LAUNCH(unsigned(C), 256, 0, channel_sum_kernel)(gy, gb, N, C, HW);
  PE_LAUNCHED("channel_sum_kernel");
}

void fwd(const float* x, const float* w, const float* b, float* y, const Geom& g) {
  const int64_t nbmax = g.chunk(), CRS = g.CRS(), PQ = g.PQ(), Kg = g.Kg();
  if (g.N * g.K * PQ == 0) return;
  float* col = pe::workspace(size_t(nbmax * CRS * PQ));
  for (int64_t n0 = 0; n0 < g.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, g.N - n0);
    for (int64_t grp = 0; grp < g.G; ++grp) {
      PE_LAUNCH(pe::grid1d(nb * CRS * PQ), idx::kThreads, 0, im2col_kernel)(
          x, col, g.index_geom(), g.C, grp, n0, nb);
      PE_LAUNCHED("im2col_kernel");
      // y_n[grp] (Kg, PQ) = w_grp (Kg, CRS) @ col_n (CRS, PQ)
      pe::sgemm_batched(false, false, Kg, PQ, CRS, 1.f, w + grp * Kg * CRS, CRS, 0,
                        col, PQ, CRS * PQ, 0.f, y + (n0 * g.K + grp * Kg) * PQ, PQ, g.K * PQ, nb);
    }
  }
  add_bias(y, b, g.N, g.K, PQ);
}

void bwd_input(const float* gy, const float* w, float* gx, const Geom& g) {
  const int64_t nbmax = g.chunk(), CRS = g.CRS(), PQ = g.PQ(), Kg = g.Kg();
  const int64_t per = g.Cg() * g.H * g.W;
  if (g.N * g.C * g.H * g.W == 0) return;
  float* col = pe::workspace(size_t(nbmax * CRS * PQ));
  for (int64_t n0 = 0; n0 < g.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, g.N - n0);
    for (int64_t grp = 0; grp < g.G; ++grp) {
      // col_n (CRS, PQ) = w_grp^T (CRS, Kg) @ gy_n[grp] (Kg, PQ)
      pe::sgemm_batched(true, false, CRS, PQ, Kg, 1.f, w + grp * Kg * CRS, CRS, 0,
                        gy + (n0 * g.K + grp * Kg) * PQ, PQ, g.K * PQ, 0.f, col, PQ, CRS * PQ, nb);
      PE_LAUNCH(pe::grid1d(nb * per), idx::kThreads, 0, col2im_kernel)(
          col, gx, g.index_geom(), g.C, grp, n0, nb);
      PE_LAUNCHED("col2im_kernel");
    }
  }
}

void bwd_weight(const float* x, const float* gy, float* gw, const Geom& g) {
  const int64_t CRS = g.CRS(), PQ = g.PQ(), Kg = g.Kg();
  if (g.K * CRS == 0) return;
  if (g.N == 0 || PQ == 0) {
    PE_CUDA(cudaMemsetAsync(gw, 0, g.K * CRS * sizeof(float), 0), "conv2d_backward_weight");
    return;
  }
  const int64_t nbmax = g.chunk();
  // Workspace: the column buffer, then per-sample partial weight gradients.
  float* col = pe::workspace(size_t(nbmax * (CRS * PQ + Kg * CRS)));
  float* part = col + nbmax * CRS * PQ;
  for (int64_t n0 = 0; n0 < g.N; n0 += nbmax) {
    const int64_t nb = std::min(nbmax, g.N - n0);
    for (int64_t grp = 0; grp < g.G; ++grp) {
      PE_LAUNCH(pe::grid1d(nb * CRS * PQ), idx::kThreads, 0, im2col_kernel)(
          x, col, g.index_geom(), g.C, grp, n0, nb);
      PE_LAUNCHED("im2col_kernel");
      // part_n (Kg, CRS) = gy_n[grp] (Kg, PQ) @ col_n^T (PQ, CRS)
      pe::sgemm_batched(false, true, Kg, CRS, PQ, 1.f, gy + (n0 * g.K + grp * Kg) * PQ, PQ,
                        g.K * PQ, col, PQ, CRS * PQ, 0.f, part, CRS, Kg * CRS, nb);
      PE_LAUNCH(pe::grid1d(Kg * CRS), idx::kThreads, 0, sum_batch_kernel)(
          part, nb, Kg * CRS, gw + grp * Kg * CRS, n0 > 0);
      PE_LAUNCHED("sum_batch_kernel");
    }
  }
}

void forward(const Array& x, const Array& w, const OptArray& b, Array& y, int64_t sh, int64_t sw,
             int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
  const Geom g = make_geom(x, w, y, sh, sw, ph, pw, dh, dw, G, "input", "output");
  const float *px = pe::in_ptr(x, "input"), *pw_ = pe::in_ptr(w, "weight");
  const float* pb = opt_in(b, g.K, "bias");
  fwd(px, pw_, pb, pe::out_ptr(y, "output"), g);
}

void backward_input(const Array& gy, const Array& w, Array& gx, int64_t sh, int64_t sw, int64_t ph,
                    int64_t pw, int64_t dh, int64_t dw, int64_t G) {
  const Geom g = make_geom(gx, w, gy, sh, sw, ph, pw, dh, dw, G, "grad_input", "grad_output");
  bwd_input(pe::in_ptr(gy, "grad_output"), pe::in_ptr(w, "weight"), pe::out_ptr(gx, "grad_input"),
            g);
}

void backward_weight(const Array& x, const Array& gy, Array& gw, OptArray gb, int64_t sh,
                     int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
  const Geom g = make_geom(x, gw, gy, sh, sw, ph, pw, dh, dw, G, "input", "grad_output");
  const float *px = pe::in_ptr(x, "input"), *pgy = pe::in_ptr(gy, "grad_output");
  float* pgw = pe::out_ptr(gw, "grad_weight");
  float* pgb = nullptr;
  if (gb) {
    pe::check_shape(*gb, {g.K}, "grad_bias");
    pgb = pe::out_ptr(*gb, "grad_bias");
  }
  bwd_weight(px, pgy, pgw, g);
  channel_sum(pgy, pgb, g.N, g.K, g.PQ());
}

void check_algo(const std::string& a) {
  PE_CHECK(a == "direct" || a == "im2col", "conv: unknown algo '", a,
           "', expected 'direct' or 'im2col'");
}

}  // namespace

void bind_conv(py::module_& m) {
  using py::arg;
  // Both CPU algorithm names map to the one CUDA algorithm, so ops pick either unchanged.
  for (const char* algo : {"direct", "im2col"}) {
    const std::string pre = std::string("conv2d_") + algo;
    m.def((pre + "_forward").c_str(), &forward, arg("x"), arg("w"), arg("b"), arg("y"),
          arg("stride_h"), arg("stride_w"), arg("pad_h"), arg("pad_w"), arg("dilation_h"),
          arg("dilation_w"), arg("groups"));
    m.def((pre + "_backward_input").c_str(), &backward_input, arg("gy"), arg("w"), arg("gx"),
          arg("stride_h"), arg("stride_w"), arg("pad_h"), arg("pad_w"), arg("dilation_h"),
          arg("dilation_w"), arg("groups"));
    m.def((pre + "_backward_weight").c_str(), &backward_weight, arg("x"), arg("gy"), arg("gw"),
          arg("gb"), arg("stride_h"), arg("stride_w"), arg("pad_h"), arg("pad_w"),
          arg("dilation_h"), arg("dilation_w"), arg("groups"));
  }
  // Transposed conv, w (C_in, C_out/G, R, S): the adjoint of a conv (see csrc/conv.cpp).
  m.def(
      "conv_transpose2d_forward",
      [](const Array& x, const Array& w, const OptArray& b, Array& y, int64_t sh, int64_t sw,
         int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G, const std::string& algo) {
        check_algo(algo);
        pe::check_ndim(y, 4, "output");
        const float* pb = opt_in(b, y.shape[1], "bias");
        backward_input(x, w, y, sh, sw, ph, pw, dh, dw, G);
        add_bias(pe::out_ptr(y, "output"), pb, y.shape[0], y.shape[1], y.shape[2] * y.shape[3]);
      },
      arg("x"), arg("w"), arg("b"), arg("y"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("algo") = "im2col");
  m.def(
      "conv_transpose2d_backward_input",
      [](const Array& gy, const Array& w, Array& gx, int64_t sh, int64_t sw, int64_t ph,
         int64_t pw, int64_t dh, int64_t dw, int64_t G, const std::string& algo) {
        check_algo(algo);
        forward(gy, w, std::nullopt, gx, sh, sw, ph, pw, dh, dw, G);
      },
      arg("gy"), arg("w"), arg("gx"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("algo") = "im2col");
  m.def(
      "conv_transpose2d_backward_weight",
      [](const Array& x, const Array& gy, Array& gw, OptArray gb, int64_t sh, int64_t sw,
         int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G, const std::string& algo) {
        check_algo(algo);
        backward_weight(gy, x, gw, std::nullopt, sh, sw, ph, pw, dh, dw, G);
        if (gb) {
          pe::check_ndim(gy, 4, "grad_output");
          pe::check_shape(*gb, {gy.shape[1]}, "grad_bias");
          channel_sum(pe::in_ptr(gy, "grad_output"), pe::out_ptr(*gb, "grad_bias"), gy.shape[0],
                      gy.shape[1], gy.shape[2] * gy.shape[3]);
        }
      },
      arg("x"), arg("gy"), arg("gw"), arg("gb"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("algo") = "im2col");
}
