// The _cpu extension: one bind_<family> call per kernel file. Private to pyengine; reached only
// through pyengine/backend.
#include <omp.h>

#include "common.h"

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "pyengine CPU kernels (hand-written C++, float32, NCHW)";
  m.def("set_num_threads", [](int n) {
    PE_CHECK(n >= 1, "number of threads must be >= 1, got ", n);
    omp_set_num_threads(n);
  });
  m.def("get_num_threads", []() { return omp_get_max_threads(); });
  bind_elementwise(m);
  bind_reduce(m);
  bind_gemm(m);
  bind_conv(m);
  bind_pool(m);
  bind_norm(m);
  bind_resample(m);
  bind_optim(m);
}
