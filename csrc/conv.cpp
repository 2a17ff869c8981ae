// 2-D convolution and transposed convolution, float32 NCHW, forward and backward: the Python
// bindings and the dispatch to the algorithms, one file each (conv.h lists them):
//   direct (conv_direct.cpp): shift-and-add over the kernel taps; best when Cg*R*S is small.
//   im2col (conv_im2col.cpp): implicit or explicit column matrix multiplied by pe::sgemm.
// Shapes: x (N,C,H,W), w (K,C/G,R,S), b (K,) or None, y (N,K,P,Q); G = groups.
// A transposed conv is the adjoint of a conv: its forward is a conv's input gradient, its input
// gradient a conv's forward, with w (C_in, C_out/G, R, S) read as the conv weight (K=C_in).
#include <algorithm>
#include <string>
#include <utility>

#include "conv.h"

namespace pe::conv {
namespace {

// Winograd: "winograd" with the default tile, or F(2x2,3x3) / F(4x4,3x3) explicitly.
enum class Algo { Direct, Im2col, Winograd, Winograd2, Winograd4 };

const std::pair<const char*, Algo> kAlgos[] = {{"direct", Algo::Direct},
                                               {"im2col", Algo::Im2col},
                                               {"winograd", Algo::Winograd},
                                               {"winograd_f2", Algo::Winograd2},
                                               {"winograd_f4", Algo::Winograd4}};

Algo parse_algo(const std::string& a) {
  for (const auto& [name, algo] : kAlgos)
    if (a == name) return algo;
  throw std::invalid_argument("conv: unknown algo '" + a +
                              "', expected 'direct', 'im2col' or 'winograd'");
}

// The Winograd output tile of algo, after checking that it applies to g; 0 for the others.
int wino_tile(Algo algo, const Geom& g) {
  if (algo == Algo::Direct || algo == Algo::Im2col) return 0;
  PE_CHECK(wino_supported(g), "conv: algo 'winograd' needs a 3x3 kernel, stride 1, dilation 1 ",
           "and groups 1, got kernel (", g.R, ", ", g.S, "), stride (", g.sh, ", ", g.sw,
           "), dilation (", g.dh, ", ", g.dw, "), groups ", g.G);
  return algo == Algo::Winograd2 ? 2 : algo == Algo::Winograd4 ? 4 : wino_default_tile();
}

// y = max(y, 0) in place: the ReLU of a fused conv for the algorithms without an epilogue.
// Written as a select on a loaded value: `y[i] = std::max(y[i], 0.f)` compiled to a branch per
// element (GCC: "control flow in loop", not vectorised), mispredicted on half of a conv's outputs:
// 14 ms instead of under 1 ms on the DnCNN first layer (16x64x40x40) in a training step.
PE_MULTIVERSION void relu_inplace(float* __restrict y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const float v = y[i];
    y[i] = v < 0.f ? 0.f : v;  // NaN stays NaN, as torch.relu
  }
}

// A borrowed NumPy array (never a converted temporary, whose buffer would not outlive the call).
py::array as_array(const py::object& b, const char* name) {
  PE_CHECK(py::isinstance<py::array>(b), name, " must be a NumPy array or None");
  return py::reinterpret_borrow<py::array>(b);
}

const float* bias_ptr(const py::object& b, int64_t n, const char* name) {
  if (b.is_none()) return nullptr;
  py::array a = as_array(b, name);
  pe::check_shape(a, {n}, name);
  return pe::in_ptr(a, name);
}

float* grad_bias_ptr(const py::object& b, int64_t n) {
  if (b.is_none()) return nullptr;
  py::array a = as_array(b, "grad_bias");
  pe::check_shape(a, {n}, "grad_bias");
  return pe::out_ptr(a, "grad_bias");
}

void forward(Algo algo, const py::array& x, const py::array& w, const py::object& b, py::array& y,
             int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G,
             bool relu = false) {
  const Geom g = make_geom(x, w, y, sh, sw, ph, pw, dh, dw, G, "input", "output");
  const float *px = pe::in_ptr(x, "input"), *pw_ = pe::in_ptr(w, "weight");
  const float* pb = bias_ptr(b, g.K, "bias");
  float* py_ = pe::out_ptr(y, "output");
  // An empty batch needs no work however large its planes (whose scratch could not be allocated).
  if (y.size() == 0) return;
  const int m = wino_tile(algo, g);
  py::gil_scoped_release nogil;
  if (m) return fwd_winograd(px, pw_, pb, relu, py_, g, m);
  (algo == Algo::Direct ? fwd_direct : fwd_im2col)(px, pw_, pb, py_, g);
  if (relu) relu_inplace(py_, g.N * g.K * g.P * g.Q);
}

void backward_input(Algo algo, const py::array& gy, const py::array& w, py::array& gx, int64_t sh,
                    int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
  const Geom g = make_geom(gx, w, gy, sh, sw, ph, pw, dh, dw, G, "grad_input", "grad_output");
  const float *pgy = pe::in_ptr(gy, "grad_output"), *pw_ = pe::in_ptr(w, "weight");
  float* pgx = pe::out_ptr(gx, "grad_input");
  if (gx.size() == 0) return;
  const int m = wino_tile(algo, g);
  py::gil_scoped_release nogil;
  if (gy.size() == 0) return std::fill(pgx, pgx + gx.size(), 0.f);
  if (m) return bwd_input_winograd(pgy, pw_, pgx, g, m);
  (algo == Algo::Direct ? bwd_input_direct : bwd_input_im2col)(pgy, pw_, pgx, g);
}

void backward_weight(Algo algo, const py::array& x, const py::array& gy, py::array& gw,
                     const py::object& gb, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                     int64_t dh, int64_t dw, int64_t G) {
  const Geom g = make_geom(x, gw, gy, sh, sw, ph, pw, dh, dw, G, "input", "grad_output");
  const float *px = pe::in_ptr(x, "input"), *pgy = pe::in_ptr(gy, "grad_output");
  float* pgw = pe::out_ptr(gw, "grad_weight");
  float* pgb = grad_bias_ptr(gb, g.K);
  const int m = wino_tile(algo, g);
  py::gil_scoped_release nogil;
  if (x.size() == 0 || gy.size() == 0) {
    std::fill(pgw, pgw + g.K * g.CRS(), 0.f);
    if (pgb) std::fill(pgb, pgb + g.K, 0.f);
    return;
  }
  if (m) return bwd_weight_winograd(px, pgy, pgw, pgb, g, m);
  (algo == Algo::Direct ? bwd_weight_direct : bwd_weight_im2col)(px, pgy, pgw, g);
  if (pgb) channel_sum(pgy, pgb, g.N, g.K, g.P * g.Q);
}

// Both gradients of a Winograd conv in one call (bwd_winograd: one padded copy of gy).
void backward(Algo algo, const py::array& x, const py::array& gy, const py::array& w,
              py::array& gx, py::array& gw, const py::object& gb, int64_t sh, int64_t sw,
              int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
  const Geom g = make_geom(x, w, gy, sh, sw, ph, pw, dh, dw, G, "input", "grad_output");
  pe::check_shape(gx, {g.N, g.C, g.H, g.W}, "grad_input");
  pe::check_shape(gw, {g.K, g.C, g.R, g.S}, "grad_weight");
  const float *px = pe::in_ptr(x, "input"), *pgy = pe::in_ptr(gy, "grad_output");
  const float* pw_ = pe::in_ptr(w, "weight");
  float *pgx = pe::out_ptr(gx, "grad_input"), *pgw = pe::out_ptr(gw, "grad_weight");
  float* pgb = grad_bias_ptr(gb, g.K);
  const int m = wino_tile(algo, g);
  if (x.size() == 0 || gy.size() == 0) {
    backward_input(algo, gy, w, gx, sh, sw, ph, pw, dh, dw, G);
    return backward_weight(algo, x, gy, gw, gb, sh, sw, ph, pw, dh, dw, G);
  }
  py::gil_scoped_release nogil;
  bwd_winograd(px, pgy, pw_, pgx, pgw, pgb, g, m);
}

}  // namespace
}  // namespace pe::conv

void bind_conv(py::module_& m) {
  using namespace pe::conv;
  using py::arg;
  for (const auto& entry : kAlgos) {
    const std::string pre = std::string("conv2d_") + entry.first;
    const Algo algo = entry.second;
    // x (N,C,H,W), w (K,C/G,R,S), b (K,) or None -> y (N,K,P,Q); relu: y = max(conv + b, 0)
    m.def((pre + "_forward").c_str(),
          [algo](const py::array& x, const py::array& w, const py::object& b, py::array& y,
                 int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                 int64_t G, bool relu) { forward(algo, x, w, b, y, sh, sw, ph, pw, dh, dw, G, relu); },
          arg("x"), arg("w"), arg("b"), arg("y"), arg("stride_h"), arg("stride_w"),
          arg("pad_h"), arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"),
          arg("relu") = false);
    // gy (N,K,P,Q), w -> gx (N,C,H,W)
    m.def((pre + "_backward_input").c_str(),
          [algo](const py::array& gy, const py::array& w, py::array& gx, int64_t sh, int64_t sw,
                 int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G) {
            backward_input(algo, gy, w, gx, sh, sw, ph, pw, dh, dw, G);
          },
          arg("gy"), arg("w"), arg("gx"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
          arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"));
    // x, gy -> gw (K,C/G,R,S), gb (K,) or None
    m.def((pre + "_backward_weight").c_str(),
          [algo](const py::array& x, const py::array& gy, py::array& gw, const py::object& gb,
                 int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                 int64_t G) { backward_weight(algo, x, gy, gw, gb, sh, sw, ph, pw, dh, dw, G); },
          arg("x"), arg("gy"), arg("gw"), arg("gb"), arg("stride_h"), arg("stride_w"),
          arg("pad_h"), arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"));
    if (algo != Algo::Winograd && algo != Algo::Winograd2 && algo != Algo::Winograd4) continue;
    // x, gy, w -> gx, gw, gb (or None): _backward_input and _backward_weight in one pass
    m.def((pre + "_backward").c_str(),
          [algo](const py::array& x, const py::array& gy, const py::array& w, py::array& gx,
                 py::array& gw, const py::object& gb, int64_t sh, int64_t sw, int64_t ph,
                 int64_t pw, int64_t dh, int64_t dw, int64_t G) {
            backward(algo, x, gy, w, gx, gw, gb, sh, sw, ph, pw, dh, dw, G);
          },
          arg("x"), arg("gy"), arg("w"), arg("gx"), arg("gw"), arg("gb"), arg("stride_h"),
          arg("stride_w"), arg("pad_h"), arg("pad_w"), arg("dilation_h"), arg("dilation_w"),
          arg("groups"));
  }
  // Transposed conv, w (C_in, C_out/G, R, S): x (N,C_in,H,W) -> y (N,C_out,H_out,W_out).
  m.def(
      "conv_transpose2d_forward",
      [](const py::array& x, const py::array& w, const py::object& b, py::array& y, int64_t sh,
         int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G,
         const std::string& algo) {
        pe::check_ndim(y, 4, "output");
        const float* pb = bias_ptr(b, y.shape(1), "bias");
        backward_input(parse_algo(algo), x, w, y, sh, sw, ph, pw, dh, dw, G);
        if (pb) {
          float* py_ = pe::out_ptr(y, "output");
          const int64_t N = y.shape(0), C = y.shape(1), HW = y.shape(2) * y.shape(3);
          py::gil_scoped_release nogil;
#pragma omp parallel for collapse(2) schedule(static) if (N * C * HW > (1 << 15))
          for (int64_t n = 0; n < N; ++n)
            for (int64_t c = 0; c < C; ++c) {
              float* p = py_ + (n * C + c) * HW;
              for (int64_t i = 0; i < HW; ++i) p[i] += pb[c];
            }
        }
      },
      arg("x"), arg("w"), arg("b"), arg("y"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("algo") = "im2col");
  // gy (N,C_out,H_out,W_out) -> gx (N,C_in,H,W)
  m.def(
      "conv_transpose2d_backward_input",
      [](const py::array& gy, const py::array& w, py::array& gx, int64_t sh, int64_t sw,
         int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G, const std::string& algo) {
        forward(parse_algo(algo), gy, w, py::none(), gx, sh, sw, ph, pw, dh, dw, G);
      },
      arg("gy"), arg("w"), arg("gx"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("algo") = "im2col");
  // x, gy -> gw (C_in,C_out/G,R,S), gb (C_out,) or None
  m.def(
      "conv_transpose2d_backward_weight",
      [](const py::array& x, const py::array& gy, py::array& gw, const py::object& gb, int64_t sh,
         int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t G,
         const std::string& algo) {
        backward_weight(parse_algo(algo), gy, x, gw, py::none(), sh, sw, ph, pw, dh, dw, G);
        if (!gb.is_none()) {
          const float* pgy = pe::in_ptr(gy, "grad_output");
          float* pgb = grad_bias_ptr(gb, gy.shape(1));
          py::gil_scoped_release nogil;
          channel_sum(pgy, pgb, gy.shape(0), gy.shape(1), gy.shape(2) * gy.shape(3));
        }
      },
      arg("x"), arg("gy"), arg("gw"), arg("gb"), arg("stride_h"), arg("stride_w"), arg("pad_h"),
      arg("pad_w"), arg("dilation_h"), arg("dilation_w"), arg("groups"), arg("algo") = "im2col");
}
