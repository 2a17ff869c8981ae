// The _cuda extension: the device array type, allocator statistics and one bind_<family> call per
// kernel file, with the same kernel names and signatures as csrc/module.cpp (device arrays in
// place of NumPy arrays). Private to pyengine; reached only through pyengine/backend.
#include "common.cuh"

#ifdef PE_CUDA_EMULATOR
void bind_emulator(py::module_& m);  // cuda/emulator/emu_module.cpp
#endif

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "pyengine CUDA kernels (hand-written, float32, NCHW)";
  bind_array(m);
  bind_elementwise(m);
  bind_reduce(m);
  bind_gemm(m);
  bind_optim(m);
  bind_norm(m);
  bind_conv(m);
  bind_pool(m);
  bind_resample(m);
#ifdef PE_CUDA_EMULATOR
  bind_emulator(m);
#endif
}
