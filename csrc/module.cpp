// The _cpu extension: one bind_<family> call per kernel file. Private to pyengine; reached only
// through pyengine/backend.
#include <malloc.h>

#include <algorithm>
#include <omp.h>

#include "common.h"

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "pyengine CPU kernels (hand-written C++, float32, NCHW)";
#ifdef __GLIBC__
  // Activations of a training step are MBs each and freed every step. glibc would serve them with
  // fresh mmaps whose page faults cost more than the kernels that fill them; keeping them on the
  // heap (no mmap, no trimming) makes step N+1 reuse step N's pages, like a caching allocator.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  // Bounded: libgomp aborts the process when it cannot create a thread (a few thousand under a
  // memory limit), and more threads than 4x the cores only add overhead.
  m.def("set_num_threads", [](int n) {
    const int most = std::max(64, 4 * omp_get_num_procs());
    PE_CHECK(n >= 1 && n <= most, "number of threads must be in [1, ", most, "], got ", n);
    pe::num_threads_setting().store(n);
    pe::apply_num_threads();
  });
  m.def("get_num_threads", []() {
    pe::apply_num_threads();
    return omp_get_max_threads();
  });
  bind_elementwise(m);
  bind_reduce(m);
  bind_gemm(m);
  bind_conv(m);
  bind_pool(m);
  bind_norm(m);
  bind_resample(m);
  bind_optim(m);
  bind_norm_group(m);
  bind_activation(m);
}
