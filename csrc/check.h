// Argument checking shared by the CPU (csrc/) and CUDA (cuda/) kernels: messages built from any
// streamable values, thrown as std::invalid_argument, which pybind11 raises as ValueError.
#pragma once

#include <cstdint>
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

}  // namespace pe
