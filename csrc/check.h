// Argument checking shared by the CPU (csrc/) and CUDA (cuda/) kernels: messages built from any
// streamable values, thrown as std::invalid_argument, which pybind11 raises as ValueError; and the
// checked int64 arithmetic that every size and index computed from caller-supplied sizes goes
// through (host code only), so a huge padding, dilation or dimension raises instead of wrapping
// around into a wild read or write.
#pragma once

#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace pe {

using Shape = std::vector<int64_t>;

template <typename... Args>
std::string cat_str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

#define PE_CHECK(cond, ...)                                             \
  do {                                                                  \
    if (!(cond)) throw std::invalid_argument(pe::cat_str(__VA_ARGS__)); \
  } while (0)

// Python's tuple spelling: (3,), (2, 3), ().
inline std::string shape_str(const Shape& s) {
  if (s.size() == 1) return "(" + std::to_string(s[0]) + ",)";
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << s[i] << (i + 1 < s.size() ? ", " : "");
  os << ")";
  return os.str();
}

// a + b, a - b, a * b that raise ValueError instead of overflowing int64 (signed overflow is
// undefined behaviour; in practice it wraps to a small or negative size that passes later checks).
// Plain comparisons rather than compiler builtins, so nvcc's front end takes them too.
inline int64_t add(int64_t a, int64_t b) {
  constexpr int64_t hi = std::numeric_limits<int64_t>::max();
  constexpr int64_t lo = std::numeric_limits<int64_t>::min();
  PE_CHECK(b > 0 ? a <= hi - b : a >= lo - b, "size arithmetic overflows int64: ", a, " + ", b);
  return a + b;
}

inline int64_t sub(int64_t a, int64_t b) {
  constexpr int64_t hi = std::numeric_limits<int64_t>::max();
  constexpr int64_t lo = std::numeric_limits<int64_t>::min();
  PE_CHECK(b < 0 ? a <= hi + b : a >= lo + b, "size arithmetic overflows int64: ", a, " - ", b);
  return a - b;
}

inline int64_t mul(int64_t a, int64_t b) {
  constexpr int64_t hi = std::numeric_limits<int64_t>::max();
  constexpr int64_t lo = std::numeric_limits<int64_t>::min();
  bool ok = true;
  if (a > 0) {
    ok = b > 0 ? a <= hi / b : b >= lo / a;
  } else if (a < 0) {
    ok = b > 0 ? a >= lo / b : b == 0 || b >= hi / a;
  }
  PE_CHECK(ok, "size arithmetic overflows int64: ", a, " * ", b);
  return a * b;
}

template <typename... Rest>
int64_t mul(int64_t a, int64_t b, int64_t c, Rest... rest) {
  return mul(mul(a, b), c, rest...);
}

// Element count of a shape. The product of its non-zero dimensions must fit in int64 too, so
// that after this check any product of some of its dimensions (a plane size, a row count) fits,
// even for an empty tensor such as (0, 1, 2**40, 2**40).
inline int64_t numel(const Shape& s) {
  int64_t n = 1;
  bool empty = false;
  for (int64_t d : s) {
    PE_CHECK(d >= 0, "negative dimension ", d, " in shape ", shape_str(s));
    if (d == 0) empty = true;
    else n = mul(n, d);
  }
  return empty ? 0 : n;
}

// Output length of a convolution or pooling window sweep along one axis, PyTorch's formula
// floor((in + pad_total - dilation*(k-1) - 1) / stride) + 1, in checked arithmetic; may be <= 0,
// which callers reject with their own message.
inline int64_t window_out_size(int64_t in, int64_t pad_total, int64_t k, int64_t stride,
                               int64_t dilation) {
  PE_CHECK(stride > 0 && dilation > 0 && k > 0,
           "stride, dilation and kernel size must be positive");
  const int64_t span = add(mul(dilation, sub(k, 1)), 1);
  const int64_t num = sub(add(in, pad_total), span);
  const int64_t q = num / stride;
  return (num % stride != 0 && num < 0 ? q - 1 : q) + 1;
}

}  // namespace pe
