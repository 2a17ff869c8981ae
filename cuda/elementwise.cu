// Elementwise kernels: binary arithmetic with NumPy broadcasting, unary maps and their backward,
// and the fused axpby of gradient accumulation. Same names, signatures and formulas as
// csrc/elementwise.cpp. Contiguous passes read and write float4 when the pointers allow it.
#include "common.cuh"
#include "../csrc/elementwise_ops.h"

namespace {

using pe::Array;
using pe::BinOp;
using pe::Shape;
using pe::UnOp;
using pe::parse_binop;
using pe::parse_unop;

template <BinOp OP>
__device__ __forceinline__ float apply(float a, float b) {
  if constexpr (OP == BinOp::Add) return a + b;
  if constexpr (OP == BinOp::Sub) return a - b;
  if constexpr (OP == BinOp::Mul) return a * b;
  if constexpr (OP == BinOp::Div) return a / b;
  if constexpr (OP == BinOp::Pow) return powf(a, b);
  // NaN propagates as in torch.maximum / torch.minimum.
  if constexpr (OP == BinOp::Max) return (a != a || a > b) ? a : b;
  if constexpr (OP == BinOp::Min) return (a != a || a < b) ? a : b;
  return 0.f;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Grid-stride over n elements, four at a time through float4 when `vec`, then the tail.
// f4(i4) handles elements [4*i4, 4*i4+4), f(i) one element.
template <typename F4, typename F>
__device__ __forceinline__ void grid_loop(int64_t n, bool vec, F4&& f4, F&& f) {
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t n4 = vec ? n / 4 : 0;
  for (int64_t i = tid; i < n4; i += stride) f4(i);
  for (int64_t i = 4 * n4 + tid; i < n; i += stride) f(i);
}

template <BinOp OP>
__global__ void binary_flat_kernel(const float* a, const float* b,
                                   float* y, int64_t n, bool vec) {
  grid_loop(
      n, vec,
      [&](int64_t i) {
        const float4 u = reinterpret_cast<const float4*>(a)[i];
        const float4 v = reinterpret_cast<const float4*>(b)[i];
        reinterpret_cast<float4*>(y)[i] = make_float4(apply<OP>(u.x, v.x), apply<OP>(u.y, v.y),
                                                      apply<OP>(u.z, v.z), apply<OP>(u.w, v.w));
      },
      [&](int64_t i) { y[i] = apply<OP>(a[i], b[i]); });
}

// Any broadcast: offsets of a and b from the output's linear index (coalesced layout).
template <BinOp OP>
__global__ void binary_bcast_kernel(const float* a, const float* b,
                                    float* y, pe::idx::Layout2 L, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t oa, ob;
    pe::idx::layout_offsets(L, i, oa, ob);
    y[i] = apply<OP>(a[oa], b[ob]);
  }
}

template <BinOp OP>
void binary_dispatch(const Array& a, const Array& b, Array& y) {
  const float* pa = pe::in_ptr(a, "a");
  const float* pb = pe::in_ptr(b, "b");
  float* py_ = pe::out_ptr(y, "out");
  const int nd = static_cast<int>(y.ndim());
  PE_CHECK(nd <= 64, "binary_forward: too many dims");
  pe::idx::Layout2 L;
  Shape sa(nd), sb(nd);
  PE_CHECK(pe::idx::broadcast_strides(int(a.ndim()), a.shape.data(), nd, y.shape.data(), sa.data()),
           "a ", pe::shape_str(a.shape), " cannot be broadcast to ", pe::shape_str(y.shape));
  PE_CHECK(pe::idx::broadcast_strides(int(b.ndim()), b.shape.data(), nd, y.shape.data(), sb.data()),
           "b ", pe::shape_str(b.shape), " cannot be broadcast to ", pe::shape_str(y.shape));
  const int64_t n = y.size();
  if (n == 0) return;
  const unsigned threads = pe::idx::kThreads;
  if (a.size() == n && b.size() == n) {
    const bool vec = aligned16(pa) && aligned16(pb) && aligned16(py_);
    PE_LAUNCH(pe::grid1d(vec ? (n + 3) / 4 : n), threads, 0, binary_flat_kernel<OP>)(
        pa, pb, py_, n, vec);
    PE_LAUNCHED("binary_flat_kernel");
    return;
  }
  // Merge dims right to left on the fly so that up to kMaxDims groups suffice for any rank.
  Shape shape(y.shape), ra(sa), rb(sb);
  std::vector<int64_t> ms, ma, mb;
  for (int d = 0; d < nd; ++d) {
    if (shape[d] == 1) continue;
    if (!ms.empty() && ma.back() == ra[d] * shape[d] && mb.back() == rb[d] * shape[d]) {
      ms.back() *= shape[d];
      ma.back() = ra[d];
      mb.back() = rb[d];
    } else {
      ms.push_back(shape[d]);
      ma.push_back(ra[d]);
      mb.push_back(rb[d]);
    }
  }
  PE_CHECK(ms.size() <= size_t(pe::idx::kMaxDims), "binary_forward: broadcast of ",
           pe::shape_str(a.shape), " and ", pe::shape_str(b.shape), " needs more than ",
           pe::idx::kMaxDims, " dims");
  L.nd = static_cast<int>(ms.size());
  for (int d = 0; d < L.nd; ++d) {
    L.shape[d] = ms[d];
    L.sa[d] = ma[d];
    L.sb[d] = mb[d];
  }
  pe::idx::coalesce(L);
  PE_LAUNCH(pe::grid1d(n), threads, 0, binary_bcast_kernel<OP>)(pa, pb, py_, L, n);
  PE_LAUNCHED("binary_bcast_kernel");
}

void binary_forward(const std::string& op, const Array& a, const Array& b, Array& y) {
  switch (parse_binop(op)) {
    case BinOp::Add: return binary_dispatch<BinOp::Add>(a, b, y);
    case BinOp::Sub: return binary_dispatch<BinOp::Sub>(a, b, y);
    case BinOp::Mul: return binary_dispatch<BinOp::Mul>(a, b, y);
    case BinOp::Div: return binary_dispatch<BinOp::Div>(a, b, y);
    case BinOp::Pow: return binary_dispatch<BinOp::Pow>(a, b, y);
    case BinOp::Max: return binary_dispatch<BinOp::Max>(a, b, y);
    case BinOp::Min: return binary_dispatch<BinOp::Min>(a, b, y);
  }
}

template <UnOp OP>
__device__ __forceinline__ float unary(float v, float alpha) {
  if constexpr (OP == UnOp::Relu) return v <= 0.f ? 0.f : v;  // NaN propagates, as in torch
  if constexpr (OP == UnOp::LeakyRelu) return v > 0.f ? v : alpha * v;
  if constexpr (OP == UnOp::Sigmoid) return 1.f / (1.f + expf(-v));
  if constexpr (OP == UnOp::Tanh) return tanhf(v);
  if constexpr (OP == UnOp::Exp) return expf(v);
  if constexpr (OP == UnOp::Log) return logf(v);
  if constexpr (OP == UnOp::Sqrt) return sqrtf(v);
  if constexpr (OP == UnOp::Neg) return -v;
  if constexpr (OP == UnOp::Abs) return fabsf(v);
  if constexpr (OP == UnOp::PowScalar) return powf(v, alpha);
  return 0.f;
}

// s is what the backward formula needs (see csrc/elementwise.cpp): y for relu/sigmoid/tanh/exp/
// sqrt, x for the others. ReLU's gradient at 0 is 0, as in PyTorch.
template <UnOp OP>
__device__ __forceinline__ float unary_grad(float v, float g, float alpha) {
  if constexpr (OP == UnOp::Relu) return v <= 0.f ? 0.f : g;
  if constexpr (OP == UnOp::LeakyRelu) return v > 0.f ? g : alpha * g;
  if constexpr (OP == UnOp::Sigmoid) return g * v * (1.f - v);
  if constexpr (OP == UnOp::Tanh) return g * (1.f - v * v);
  if constexpr (OP == UnOp::Exp) return g * v;
  if constexpr (OP == UnOp::Log) return g / v;
  if constexpr (OP == UnOp::Sqrt) return g * 0.5f / v;
  if constexpr (OP == UnOp::Neg) return -g;
  if constexpr (OP == UnOp::Abs) return v > 0.f ? g : (v < 0.f ? -g : 0.f);
  if constexpr (OP == UnOp::PowScalar) return g * alpha * powf(v, alpha - 1.f);
  return 0.f;
}

template <UnOp OP>
__global__ void unary_kernel(const float* x, float* y, int64_t n,
                             float alpha, bool vec) {
  grid_loop(
      n, vec,
      [&](int64_t i) {
        const float4 u = reinterpret_cast<const float4*>(x)[i];
        reinterpret_cast<float4*>(y)[i] = make_float4(unary<OP>(u.x, alpha), unary<OP>(u.y, alpha),
                                                      unary<OP>(u.z, alpha), unary<OP>(u.w, alpha));
      },
      [&](int64_t i) { y[i] = unary<OP>(x[i], alpha); });
}

template <UnOp OP>
__global__ void unary_grad_kernel(const float* s, const float* gy,
                                  float* gx, int64_t n, float alpha, bool vec) {
  grid_loop(
      n, vec,
      [&](int64_t i) {
        const float4 v = reinterpret_cast<const float4*>(s)[i];
        const float4 g = reinterpret_cast<const float4*>(gy)[i];
        reinterpret_cast<float4*>(gx)[i] =
            make_float4(unary_grad<OP>(v.x, g.x, alpha), unary_grad<OP>(v.y, g.y, alpha),
                        unary_grad<OP>(v.z, g.z, alpha), unary_grad<OP>(v.w, g.w, alpha));
      },
      [&](int64_t i) { gx[i] = unary_grad<OP>(s[i], gy[i], alpha); });
}

#define PE_UNARY_CASES(MACRO) \
  MACRO(Relu)                 \
  MACRO(LeakyRelu)            \
  MACRO(Sigmoid)              \
  MACRO(Tanh)                 \
  MACRO(Exp)                  \
  MACRO(Log)                  \
  MACRO(Sqrt)                 \
  MACRO(Neg)                  \
  MACRO(Abs)                  \
  MACRO(PowScalar)

void unary_forward(const std::string& op, const Array& x, Array& y, float alpha) {
  const UnOp u = parse_unop(op);
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  pe::check_same_size(x, y, "x", "y");
  const int64_t n = x.size();
  if (n == 0) return;
  const bool vec = aligned16(px) && aligned16(py_);
  const unsigned grid = pe::grid1d(vec ? (n + 3) / 4 : n);
  switch (u) {
#define PE_CASE(NAME)                                                                      \
  case UnOp::NAME:                                                                         \
    PE_LAUNCH(grid, pe::idx::kThreads, 0, unary_kernel<UnOp::NAME>)(px, py_, n, alpha, vec); \
    break;
    PE_UNARY_CASES(PE_CASE)
#undef PE_CASE
  }
  PE_LAUNCHED("unary_kernel");
}

void unary_backward(const std::string& op, const Array& saved, const Array& gy, Array& gx,
                    float alpha) {
  const UnOp u = parse_unop(op);
  const float* ps = pe::in_ptr(saved, "saved");
  const float* pg = pe::in_ptr(gy, "grad_output");
  float* pgx = pe::out_ptr(gx, "grad_input");
  pe::check_same_size(saved, gy, "saved", "grad_output");
  pe::check_same_size(gy, gx, "grad_output", "grad_input");
  const int64_t n = gy.size();
  if (n == 0) return;
  const bool vec = aligned16(ps) && aligned16(pg) && aligned16(pgx);
  const unsigned grid = pe::grid1d(vec ? (n + 3) / 4 : n);
  switch (u) {
#define PE_CASE(NAME)                                                                            \
  case UnOp::NAME:                                                                               \
    PE_LAUNCH(grid, pe::idx::kThreads, 0, unary_grad_kernel<UnOp::NAME>)(                       \
        ps, pg, pgx, n, alpha, vec);                                                             \
    break;
    PE_UNARY_CASES(PE_CASE)
#undef PE_CASE
  }
  PE_LAUNCHED("unary_grad_kernel");
}

__global__ void axpby_kernel(const float* x, float* y, int64_t n,
                             float a, float b, bool vec) {
  grid_loop(
      n, vec,
      [&](int64_t i) {
        const float4 u = reinterpret_cast<const float4*>(x)[i];
        float4 v = reinterpret_cast<float4*>(y)[i];
        v = make_float4(a * u.x + b * v.x, a * u.y + b * v.y, a * u.z + b * v.z, a * u.w + b * v.w);
        reinterpret_cast<float4*>(y)[i] = v;
      },
      [&](int64_t i) { y[i] = a * x[i] + b * y[i]; });
}

// y = a*x + b*y in place: gradient accumulation and scaled updates without a temporary.
void axpby(const Array& x, Array& y, float a, float b) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  pe::check_same_size(x, y, "x", "y");
  const int64_t n = x.size();
  if (n == 0) return;
  const bool vec = aligned16(px) && aligned16(py_);
  PE_LAUNCH(pe::grid1d(vec ? (n + 3) / 4 : n), pe::idx::kThreads, 0, axpby_kernel)(
      px, py_, n, a, b, vec);
  PE_LAUNCHED("axpby_kernel");
}

}  // namespace

void bind_elementwise(py::module_& m) {
  m.def("binary_forward", &binary_forward, py::arg("op"), py::arg("a"), py::arg("b"),
        py::arg("out"), "out = a <op> b with NumPy broadcasting of a and b to out's shape");
  m.def("unary_forward", &unary_forward, py::arg("op"), py::arg("x"), py::arg("y"),
        py::arg("alpha") = 0.f);
  m.def("unary_backward", &unary_backward, py::arg("op"), py::arg("saved"), py::arg("grad_output"),
        py::arg("grad_input"), py::arg("alpha") = 0.f);
  m.def("axpby", &axpby, py::arg("x"), py::arg("y"), py::arg("a"), py::arg("b"));
}
