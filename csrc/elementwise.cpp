// Elementwise kernels: binary arithmetic with NumPy broadcasting, unary maps and their
// backward, and a fused axpby used by gradient accumulation. float32, any shape, contiguous.
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#include "common.h"
#include "elementwise_ops.h"
#include "isa.h"

namespace {

using pe::BinMathOp;
using pe::BinOp;
using pe::MathOp;
using pe::Shape;
using pe::UnOp;
using pe::parse_binop;
using pe::parse_unop;

// Parallelise only where a pass is long enough to amortise waking the thread team.
constexpr int64_t kParallelGrain = 1 << 15;

// Python's (and torch's) floor division: the quotient rounded toward -inf, computed from fmod as
// NumPy's npy_divmod does so that it is exact where floor(a / b) would round a / b first.
inline float floor_divide(float a, float b) {
  if (b == 0.f) return a / b;
  const float mod = std::fmod(a, b);
  float div = (a - mod) / b;
  if (mod != 0.f && ((b < 0.f) != (mod < 0.f))) div -= 1.f;
  if (div == 0.f) return std::copysign(0.f, a / b);
  float fl = std::floor(div);
  if (div - fl > 0.5f) fl += 1.f;
  return fl;
}

// torch.remainder: the result takes the divisor's sign (Python's %), unlike fmod.
inline float remainder(float a, float b) {
  float mod = std::fmod(a, b);
  if (mod != 0.f && ((b < 0.f) != (mod < 0.f))) mod += b;
  return mod;
}

// OP is a BinOp (shared with CUDA) or a CPU-only BinMathOp; the broadcast loops below take either.
template <auto OP>
inline float apply(float a, float b) {
  if constexpr (std::is_same_v<decltype(OP), BinMathOp>) {
    if constexpr (OP == BinMathOp::FloorDiv) return floor_divide(a, b);
    if constexpr (OP == BinMathOp::Remainder) return remainder(a, b);
  } else {
    if constexpr (OP == BinOp::Add) return a + b;
    if constexpr (OP == BinOp::Sub) return a - b;
    if constexpr (OP == BinOp::Mul) return a * b;
    if constexpr (OP == BinOp::Div) return a / b;
    if constexpr (OP == BinOp::Pow) return std::pow(a, b);
    // NaN propagates as in torch.maximum / torch.minimum.
    if constexpr (OP == BinOp::Max) return (a != a || a > b) ? a : b;
    if constexpr (OP == BinOp::Min) return (a != a || a < b) ? a : b;
  }
  return 0.f;
}

// Inner row of a broadcast binary op. sa/sb are 0 (broadcast) or 1 (contiguous); specialised so
// the common contiguous/scalar rows vectorise. No __restrict: callers compute in place (y is a,
// as the bias add of Linear and the scaling of mean do), which __restrict would make undefined;
// the compiler's run-time overlap check still takes the vector loop when y == a.
template <auto OP>
PE_MULTIVERSION void binary_row(const float* a, int64_t sa, const float* b, int64_t sb, float* y,
                                int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) y[i] = apply<OP>(a[i], b[i]);
  } else if (sa == 1) {
    const float bv = b[0];
    for (int64_t i = 0; i < n; ++i) y[i] = apply<OP>(a[i], bv);
  } else if (sb == 1) {
    const float av = a[0];
    for (int64_t i = 0; i < n; ++i) y[i] = apply<OP>(av, b[i]);
  } else {
    const float v = apply<OP>(a[0], b[0]);
    for (int64_t i = 0; i < n; ++i) y[i] = v;
  }
}

// Strides (in elements) of `s` right-aligned against `out`, 0 on broadcast dimensions.
Shape broadcast_strides(const Shape& s, const Shape& out, const char* name) {
  const size_t nd = out.size();
  PE_CHECK(s.size() <= nd, name, " ", pe::shape_str(s), " has more dimensions than the output ",
           pe::shape_str(out));
  Shape st(nd, 0);
  int64_t acc = 1;
  for (size_t k = 0; k < s.size(); ++k) {
    const size_t i = s.size() - 1 - k, o = nd - 1 - k;
    PE_CHECK(s[i] == out[o] || s[i] == 1, name, " ", pe::shape_str(s),
             " cannot be broadcast to ", pe::shape_str(out));
    st[o] = s[i] == 1 ? 0 : acc;
    acc *= s[i];
  }
  return st;
}

template <auto OP>
void binary_impl(const float* a, const Shape& as, const float* b, const Shape& bs, float* y,
                 const Shape& ys) {
  int64_t n = 1;
  for (auto d : ys) n *= d;
  if (n == 0) return;
  const Shape sa = broadcast_strides(as, ys, "a"), sb = broadcast_strides(bs, ys, "b");
  // Merge trailing dims where both operands stay contiguous or both broadcast, to make rows long.
  const int64_t nd = static_cast<int64_t>(ys.size());
  int64_t row = 1;
  int64_t k = nd - 1;
  int64_t ra = -1, rb = -1;
  for (; k >= 0; --k) {
    const int64_t ka = sa[k] == 0 ? 0 : 1, kb = sb[k] == 0 ? 0 : 1;
    if (ra < 0) {
      ra = ka;
      rb = kb;
    } else if (ka != ra || kb != rb || (ka && sa[k] != row) || (kb && sb[k] != row)) {
      break;
    }
    row *= ys[k];
  }
  if (ra < 0) ra = rb = 1;
  const int64_t outer_nd = k + 1;  // dims [0, outer_nd) are iterated row by row
  const int64_t rows = n / row;
#pragma omp parallel for schedule(static) if (n >= kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rem = r, oa = 0, ob = 0;
    for (int64_t d = outer_nd - 1; d >= 0; --d) {
      const int64_t i = rem % ys[d];
      rem /= ys[d];
      oa += i * sa[d];
      ob += i * sb[d];
    }
    binary_row<OP>(a + oa, ra, b + ob, rb, y + r * row, row);
  }
}

// A single long row still deserves both cores.
template <auto OP>
void binary_flat(const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n) {
  constexpr int64_t chunk = 1 << 14;
  const int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t s = c * chunk, len = std::min(chunk, n - s);
    binary_row<OP>(a + s * sa, sa, b + s * sb, sb, y + s, len);
  }
}

template <auto OP>
void binary_dispatch(const py::array& a, const py::array& b, py::array& y) {
  const float* pa = pe::in_ptr(a, "a");
  const float* pb = pe::in_ptr(b, "b");
  float* py_ = pe::out_ptr(y, "out");
  const Shape as = pe::shape_of(a), bs = pe::shape_of(b), ys = pe::shape_of(y);
  const int64_t n = y.size();
  // Validate broadcasting even on the fast paths.
  broadcast_strides(as, ys, "a");
  broadcast_strides(bs, ys, "b");
  py::gil_scoped_release nogil;
  if (a.size() == n && b.size() == n) return binary_flat<OP>(pa, 1, pb, 1, py_, n);
  if (a.size() == n && b.size() == 1) return binary_flat<OP>(pa, 1, pb, 0, py_, n);
  if (a.size() == 1 && b.size() == n) return binary_flat<OP>(pa, 0, pb, 1, py_, n);
  binary_impl<OP>(pa, as, pb, bs, py_, ys);
}

void binary_forward(const std::string& op, const py::array& a, const py::array& b, py::array& y) {
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

void binary_math_forward(const std::string& op, const py::array& a, const py::array& b,
                         py::array& y) {
  switch (pe::parse_binmathop(op)) {
    case BinMathOp::FloorDiv: return binary_dispatch<BinMathOp::FloorDiv>(a, b, y);
    case BinMathOp::Remainder: return binary_dispatch<BinMathOp::Remainder>(a, b, y);
  }
}

// No __restrict: relu and neg run in place (y is x), which __restrict would make undefined; the
// compiler's run-time overlap check still takes the vector loop when y == x.
template <UnOp OP>
PE_MULTIVERSION void unary_loop(const float* x, float* y, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    // Written as v <= 0 so that NaN propagates, as torch.relu does.
    if constexpr (OP == UnOp::Relu) y[i] = v <= 0.f ? 0.f : v;
    if constexpr (OP == UnOp::LeakyRelu) y[i] = v > 0.f ? v : alpha * v;
    if constexpr (OP == UnOp::Sigmoid) y[i] = 1.f / (1.f + std::exp(-v));
    if constexpr (OP == UnOp::Tanh) y[i] = std::tanh(v);
    if constexpr (OP == UnOp::Exp) y[i] = std::exp(v);
    if constexpr (OP == UnOp::Log) y[i] = std::log(v);
    if constexpr (OP == UnOp::Sqrt) y[i] = std::sqrt(v);
    if constexpr (OP == UnOp::Neg) y[i] = -v;
    if constexpr (OP == UnOp::Abs) y[i] = std::fabs(v);
    if constexpr (OP == UnOp::PowScalar) y[i] = std::pow(v, alpha);
  }
}

// s is the tensor the backward formula needs: the output y for relu/sigmoid/tanh/exp/sqrt (cheaper
// to keep than recomputing), the input x for leaky_relu/log/abs/pow.
template <UnOp OP>
PE_MULTIVERSION void unary_grad_loop(const float* __restrict s, const float* __restrict gy,
                                     float* __restrict gx, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = s[i], g = gy[i];
    // ReLU's gradient at 0 is 0, as in PyTorch's threshold_backward (y <= 0 ? 0 : g).
    if constexpr (OP == UnOp::Relu) gx[i] = v <= 0.f ? 0.f : g;
    if constexpr (OP == UnOp::LeakyRelu) gx[i] = v > 0.f ? g : alpha * g;
    if constexpr (OP == UnOp::Sigmoid) gx[i] = g * v * (1.f - v);
    if constexpr (OP == UnOp::Tanh) gx[i] = g * (1.f - v * v);
    if constexpr (OP == UnOp::Exp) gx[i] = g * v;
    if constexpr (OP == UnOp::Log) gx[i] = g / v;
    if constexpr (OP == UnOp::Sqrt) gx[i] = g * 0.5f / v;
    if constexpr (OP == UnOp::Neg) gx[i] = -g;
    if constexpr (OP == UnOp::Abs) gx[i] = v > 0.f ? g : (v < 0.f ? -g : 0.f);
    if constexpr (OP == UnOp::PowScalar) gx[i] = g * alpha * std::pow(v, alpha - 1.f);
  }
}

template <typename F>
void chunked(int64_t n, F&& f) {
  constexpr int64_t chunk = 1 << 14;
  const int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t c = 0; c < nchunks; ++c) f(c * chunk, std::min(chunk, n - c * chunk));
}

#define PE_UNARY_CASES(MACRO)      \
  MACRO(Relu)                      \
  MACRO(LeakyRelu)                 \
  MACRO(Sigmoid)                   \
  MACRO(Tanh)                      \
  MACRO(Exp)                       \
  MACRO(Log)                       \
  MACRO(Sqrt)                      \
  MACRO(Neg)                       \
  MACRO(Abs)                       \
  MACRO(PowScalar)

void unary_forward(const std::string& op, const py::array& x, py::array& y, float alpha) {
  const UnOp u = parse_unop(op);
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  pe::check_same_size(x, y, "x", "y");
  py::gil_scoped_release nogil;
  chunked(x.size(), [&](int64_t s, int64_t len) {
    switch (u) {
#define PE_CASE(NAME) \
  case UnOp::NAME: return unary_loop<UnOp::NAME>(px + s, py_ + s, len, alpha);
      PE_UNARY_CASES(PE_CASE)
#undef PE_CASE
    }
  });
}

void unary_backward(const std::string& op, const py::array& saved, const py::array& gy,
                    py::array& gx, float alpha) {
  const UnOp u = parse_unop(op);
  const float* ps = pe::in_ptr(saved, "saved");
  const float* pg = pe::in_ptr(gy, "grad_output");
  float* pgx = pe::out_ptr(gx, "grad_input");
  pe::check_same_size(saved, gy, "saved", "grad_output");
  pe::check_same_size(gy, gx, "grad_output", "grad_input");
  py::gil_scoped_release nogil;
  chunked(gy.size(), [&](int64_t s, int64_t len) {
    switch (u) {
#define PE_CASE(NAME) \
  case UnOp::NAME: return unary_grad_loop<UnOp::NAME>(ps + s, pg + s, pgx + s, len, alpha);
      PE_UNARY_CASES(PE_CASE)
#undef PE_CASE
    }
  });
}

// ReLU that keeps one bit per element for its backward instead of the output: the backward of a
// relu whose arrays exceed the caches reads n/8 bytes instead of 4n (PyTorch's
// threshold_backward reads the saved output), 5 streams of n floats become 4 plus an eighth of
// one. Bit i % 8 of mask byte i / 8 is !(x[i] <= 0): the element passes its gradient (NaN does,
// as threshold_backward's y <= 0 ? 0 : g lets it). x, y (n,) float32, mask (ceil(n/8),) uint8.
PE_AVX2 void relu_mask_avx2(const float* x, float* y, uint8_t* mask, int64_t n8) {
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t b = 0; b < n8; ++b) {
    const __m256 v = _mm256_loadu_ps(x + 8 * b);
    const __m256 off = _mm256_cmp_ps(v, zero, _CMP_LE_OQ);
    _mm256_storeu_ps(y + 8 * b, _mm256_andnot_ps(off, v));
    mask[b] = static_cast<uint8_t>(~_mm256_movemask_ps(off));
  }
}

PE_AVX2 void relu_mask_grad_avx2(const uint8_t* mask, const float* g, float* gx, int64_t n8) {
  const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  for (int64_t b = 0; b < n8; ++b) {
    const __m256i m = _mm256_and_si256(_mm256_set1_epi32(mask[b]), bits);
    const __m256 on = _mm256_castsi256_ps(_mm256_cmpeq_epi32(m, bits));
    _mm256_storeu_ps(gx + 8 * b, _mm256_and_ps(on, _mm256_loadu_ps(g + 8 * b)));
  }
}

// The features PE_AVX2 compiles for, on the running CPU.
bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

// Elements [8 * b0, 8 * b0 + len) with len a multiple of 8 or the array's tail.
void relu_mask_part(const float* x, float* y, uint8_t* mask, int64_t b0, int64_t len) {
  int64_t done = 0;
  if (has_avx2()) {
    relu_mask_avx2(x + 8 * b0, y + 8 * b0, mask + b0, len / 8);
    done = len / 8 * 8;
  }
  for (int64_t i = done; i < len; i += 8) {
    uint8_t m = 0;
    for (int64_t k = 0; k < 8 && i + k < len; ++k) {
      const float v = x[8 * b0 + i + k];
      const bool pass = !(v <= 0.f);
      y[8 * b0 + i + k] = pass ? v : 0.f;
      m = static_cast<uint8_t>(m | (pass << k));
    }
    mask[b0 + i / 8] = m;
  }
}

void relu_mask_grad_part(const uint8_t* mask, const float* g, float* gx, int64_t b0,
                         int64_t len) {
  int64_t done = 0;
  if (has_avx2()) {
    relu_mask_grad_avx2(mask + b0, g + 8 * b0, gx + 8 * b0, len / 8);
    done = len / 8 * 8;
  }
  for (int64_t i = done; i < len; ++i)
    gx[8 * b0 + i] = (mask[b0 + i / 8] >> (i % 8)) & 1 ? g[8 * b0 + i] : 0.f;
}

uint8_t* mask_ptr(const py::array& mask, int64_t n, bool writeable) {
  PE_CHECK(mask.dtype().is(py::dtype::of<uint8_t>()), "mask must be uint8, got dtype ",
           std::string(py::str(mask.dtype())));
  PE_CHECK(mask.flags() & py::array::c_style, "mask must be C-contiguous");
  PE_CHECK(mask.size() == (n + 7) / 8, "mask must hold ", (n + 7) / 8, " bytes for ", n,
           " elements, got ", mask.size());
  PE_CHECK(!writeable || mask.writeable(), "mask must be writeable");
  return static_cast<uint8_t*>(const_cast<void*>(mask.data()));
}

void relu_mask_forward(const py::array& x, py::array& y, py::array& mask) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  pe::check_same_size(x, y, "x", "y");
  uint8_t* pm = mask_ptr(mask, x.size(), true);
  py::gil_scoped_release nogil;
  // chunked's pieces (1 << 14 floats) start on whole mask bytes
  chunked(x.size(), [&](int64_t s, int64_t len) { relu_mask_part(px, py_, pm, s / 8, len); });
}

void relu_mask_backward(const py::array& mask, const py::array& gy, py::array& gx) {
  const float* pg = pe::in_ptr(gy, "grad_output");
  float* pgx = pe::out_ptr(gx, "grad_input");
  pe::check_same_size(gy, gx, "grad_output", "grad_input");
  const uint8_t* pm = mask_ptr(mask, gy.size(), false);
  py::gil_scoped_release nogil;
  chunked(gy.size(), [&](int64_t s, int64_t len) { relu_mask_grad_part(pm, pg, pgx, s / 8, len); });
}

// The CPU-only maps (MathOp); alpha is unused by the current ones. Rounding ops use
// nearbyint (round half to even, as torch.round); sign(NaN) is 0 as torch.sign gives.
template <MathOp OP>
PE_MULTIVERSION void math_loop(const float* __restrict x, float* __restrict y, int64_t n,
                               float alpha) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if constexpr (OP == MathOp::Sign) y[i] = static_cast<float>((0.f < v) - (v < 0.f));
    if constexpr (OP == MathOp::Round) y[i] = std::nearbyint(v);
    if constexpr (OP == MathOp::Floor) y[i] = std::floor(v);
    if constexpr (OP == MathOp::Ceil) y[i] = std::ceil(v);
    if constexpr (OP == MathOp::Trunc) y[i] = std::trunc(v);
    if constexpr (OP == MathOp::Sin) y[i] = std::sin(v);
    if constexpr (OP == MathOp::Cos) y[i] = std::cos(v);
    if constexpr (OP == MathOp::Log1p) y[i] = std::log1p(v);
    if constexpr (OP == MathOp::Expm1) y[i] = std::expm1(v);
  }
}

// s is the input x, except for expm1 whose backward uses the output (dy/dx = y + 1).
template <MathOp OP>
PE_MULTIVERSION void math_grad_loop(const float* __restrict s, const float* __restrict gy,
                                    float* __restrict gx, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = s[i], g = gy[i];
    if constexpr (OP == MathOp::Sign || OP == MathOp::Round || OP == MathOp::Floor ||
                  OP == MathOp::Ceil || OP == MathOp::Trunc)
      gx[i] = 0.f;
    if constexpr (OP == MathOp::Sin) gx[i] = g * std::cos(v);
    if constexpr (OP == MathOp::Cos) gx[i] = -g * std::sin(v);
    if constexpr (OP == MathOp::Log1p) gx[i] = g / (1.f + v);
    if constexpr (OP == MathOp::Expm1) gx[i] = g * (v + 1.f);
  }
}

#define PE_MATH_CASES(MACRO) \
  MACRO(Sign)                \
  MACRO(Round)               \
  MACRO(Floor)               \
  MACRO(Ceil)                \
  MACRO(Trunc)               \
  MACRO(Sin)                 \
  MACRO(Cos)                 \
  MACRO(Log1p)               \
  MACRO(Expm1)

void math_forward(const std::string& op, const py::array& x, py::array& y, float alpha) {
  const MathOp u = pe::parse_mathop(op);
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  pe::check_same_size(x, y, "x", "y");
  py::gil_scoped_release nogil;
  chunked(x.size(), [&](int64_t s, int64_t len) {
    switch (u) {
#define PE_CASE(NAME) \
  case MathOp::NAME: return math_loop<MathOp::NAME>(px + s, py_ + s, len, alpha);
      PE_MATH_CASES(PE_CASE)
#undef PE_CASE
    }
  });
}

void math_backward(const std::string& op, const py::array& saved, const py::array& gy,
                   py::array& gx, float alpha) {
  const MathOp u = pe::parse_mathop(op);
  const float* ps = pe::in_ptr(saved, "saved");
  const float* pg = pe::in_ptr(gy, "grad_output");
  float* pgx = pe::out_ptr(gx, "grad_input");
  pe::check_same_size(saved, gy, "saved", "grad_output");
  pe::check_same_size(gy, gx, "grad_output", "grad_input");
  py::gil_scoped_release nogil;
  chunked(gy.size(), [&](int64_t s, int64_t len) {
    switch (u) {
#define PE_CASE(NAME) \
  case MathOp::NAME: return math_grad_loop<MathOp::NAME>(ps + s, pg + s, pgx + s, len, alpha);
      PE_MATH_CASES(PE_CASE)
#undef PE_CASE
    }
  });
}

// torch.clamp in one pass: y = min(max(x, lo), hi), NaN passing through; a one-sided clamp passes
// -inf or +inf for the missing bound. The gradient flows where lo <= x <= hi (bounds included),
// as in torch's clamp_backward.
PE_MULTIVERSION void clamp_loop(const float* __restrict x, float* __restrict y, int64_t n, float lo,
                                float hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i] < lo ? lo : x[i];
    y[i] = v > hi ? hi : v;
  }
}

PE_MULTIVERSION void clamp_grad_loop(const float* __restrict x, const float* __restrict gy,
                                     float* __restrict gx, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) gx[i] = (x[i] >= lo && x[i] <= hi) ? gy[i] : 0.f;
}

void clamp_forward(const py::array& x, py::array& y, float lo, float hi) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  pe::check_same_size(x, y, "x", "y");
  py::gil_scoped_release nogil;
  chunked(x.size(), [&](int64_t s, int64_t len) { clamp_loop(px + s, py_ + s, len, lo, hi); });
}

void clamp_backward(const py::array& x, const py::array& gy, py::array& gx, float lo, float hi) {
  const float* px = pe::in_ptr(x, "x");
  const float* pg = pe::in_ptr(gy, "grad_output");
  float* pgx = pe::out_ptr(gx, "grad_input");
  pe::check_same_size(x, gy, "x", "grad_output");
  pe::check_same_size(gy, gx, "grad_output", "grad_input");
  py::gil_scoped_release nogil;
  chunked(gy.size(), [&](int64_t s, int64_t len) {
    clamp_grad_loop(px + s, pg + s, pgx + s, len, lo, hi);
  });
}

// One row of where: each operand's stride is 0 (broadcast) or 1. The select is written as a
// blend (no branch: a random mask would mispredict half the time) so the contiguous case
// vectorises.
PE_MULTIVERSION void where_row(const uint8_t* __restrict c, int64_t lc, const float* __restrict a,
                               int64_t la, const float* __restrict b, int64_t lb,
                               float* __restrict y, int64_t n) {
  if (lc == 1 && la == 1 && lb == 1) {
    for (int64_t i = 0; i < n; ++i) y[i] = c[i] ? a[i] : b[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = c[i * lc] ? a[i * la] : b[i * lb];
  }
}

// out = cond ? a : b (torch.where). cond is bool, a/b float32; each broadcasts to out's shape by
// NumPy's rules. Rows along the last dim (a single long row is split in chunks for the threads).
void where_forward(const py::array& cond, const py::array& a, const py::array& b, py::array& y) {
  PE_CHECK(cond.dtype().is(py::dtype::of<bool>()), "cond must be bool, got dtype ",
           std::string(py::str(cond.dtype())));
  PE_CHECK(cond.flags() & py::array::c_style, "cond must be C-contiguous");
  const auto* pc = static_cast<const uint8_t*>(cond.data());
  const float* pa = pe::in_ptr(a, "a");
  const float* pb = pe::in_ptr(b, "b");
  float* py_ = pe::out_ptr(y, "out");
  const Shape ys = pe::shape_of(y);
  const Shape sc = broadcast_strides(pe::shape_of(cond), ys, "cond");
  const Shape sa = broadcast_strides(pe::shape_of(a), ys, "a");
  const Shape sb = broadcast_strides(pe::shape_of(b), ys, "b");
  const int64_t n = y.size();
  if (n == 0) return;
  const int64_t nd = static_cast<int64_t>(ys.size());
  const int64_t row = nd ? ys[nd - 1] : 1, rows = n / row;
  const int64_t lc = nd ? (sc[nd - 1] ? 1 : 0) : 0, la = nd ? (sa[nd - 1] ? 1 : 0) : 0,
                lb = nd ? (sb[nd - 1] ? 1 : 0) : 0;
  py::gil_scoped_release nogil;
  if (rows == 1) {
    chunked(n, [&](int64_t s, int64_t len) {
      where_row(pc + s * lc, lc, pa + s * la, la, pb + s * lb, lb, py_ + s, len);
    });
    return;
  }
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rem = r, oc = 0, oa = 0, ob = 0;
    for (int64_t d = nd - 2; d >= 0; --d) {
      const int64_t i = rem % ys[d];
      rem /= ys[d];
      oc += i * sc[d];
      oa += i * sa[d];
      ob += i * sb[d];
    }
    where_row(pc + oc, lc, pa + oa, la, pb + ob, lb, py_ + r * row, row);
  }
}

PE_MULTIVERSION void axpby_loop(const float* __restrict x, float* __restrict y, int64_t n, float a,
                                float b) {
  for (int64_t i = 0; i < n; ++i) y[i] = a * x[i] + b * y[i];
}

// y = a*x + b*y in place: gradient accumulation and scaled updates without a temporary.
void axpby(const py::array& x, py::array& y, float a, float b) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  pe::check_same_size(x, y, "x", "y");
  py::gil_scoped_release nogil;
  chunked(x.size(), [&](int64_t s, int64_t len) { axpby_loop(px + s, py_ + s, len, a, b); });
}

// dst[0, n) = src[0, n) with non-temporal stores where dst is 16-byte aligned: the copies this
// serves (gradients of 1<<16+ floats) are read back much later (by the optimizer), so writing
// around the caches saves the read-for-ownership of every destination line, a third of a
// cached copy's memory traffic.
void stream_copy(float* __restrict dst, const float* __restrict src, int64_t n) {
#if defined(__SSE2__)
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15); ++i) dst[i] = src[i];
  for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
  _mm_sfence();
#else
  std::memcpy(dst, src, n * sizeof(float));
#endif
}

// y = x over the threads: the CPU backend's copy of large arrays, e.g. a leaf's first gradient
// when it cannot be taken as is (the caller's gradient; the one array Add hands to both of its
// inputs). NumPy copies on one thread with cached stores: this one measured 3.5-4.1 ms against
// NumPy's 8.6 for 16M floats (2 threads, shared machine). Writing both of Add's copies in one
// pass over x measured no faster than two copies once the stores bypass the caches.
void copy(const py::array& x, py::array& y) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  pe::check_same_size(x, y, "x", "y");
  pe::check_no_overlap(y, x, "copy: y", "x");
  py::gil_scoped_release nogil;
  chunked(x.size(), [&](int64_t s, int64_t len) { stream_copy(py_ + s, px + s, len); });
}

}  // namespace

void bind_elementwise(py::module_& m) {
  m.def("binary_forward", &binary_forward, py::arg("op"), py::arg("a"), py::arg("b"),
        py::arg("out"), "out = a <op> b with NumPy broadcasting of a and b to out's shape");
  m.def("unary_forward", &unary_forward, py::arg("op"), py::arg("x"), py::arg("y"),
        py::arg("alpha") = 0.f);
  m.def("unary_backward", &unary_backward, py::arg("op"), py::arg("saved"), py::arg("grad_output"),
        py::arg("grad_input"), py::arg("alpha") = 0.f);
  m.def("relu_mask_forward", &relu_mask_forward, py::arg("x"), py::arg("y"), py::arg("mask"),
        "y = relu(x); mask (uint8, ceil(n/8) bytes): bit i%8 of byte i/8 set where x[i] passes "
        "its gradient");
  m.def("relu_mask_backward", &relu_mask_backward, py::arg("mask"), py::arg("grad_output"),
        py::arg("grad_input"), "grad_input = grad_output where the mask bit is set, else 0");
  m.def("binary_math_forward", &binary_math_forward, py::arg("op"), py::arg("a"), py::arg("b"),
        py::arg("out"), "out = floor_divide/remainder(a, b) with broadcasting (CPU only)");
  m.def("clamp_forward", &clamp_forward, py::arg("x"), py::arg("y"), py::arg("lo"), py::arg("hi"));
  m.def("clamp_backward", &clamp_backward, py::arg("x"), py::arg("grad_output"),
        py::arg("grad_input"), py::arg("lo"), py::arg("hi"));
  m.def("where_forward", &where_forward, py::arg("cond"), py::arg("a"), py::arg("b"),
        py::arg("out"), "out = cond ? a : b with broadcasting (CPU only)");
  m.def("math_forward", &math_forward, py::arg("op"), py::arg("x"), py::arg("y"),
        py::arg("alpha") = 0.f);
  m.def("math_backward", &math_backward, py::arg("op"), py::arg("saved"), py::arg("grad_output"),
        py::arg("grad_input"), py::arg("alpha") = 0.f);
  m.def("axpby", &axpby, py::arg("x"), py::arg("y"), py::arg("a"), py::arg("b"));
  m.def("copy", &copy, py::arg("x"), py::arg("y"), "y = x (float32, same size, no overlap)");
}
