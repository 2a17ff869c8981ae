// _cuda.emulator (emulator build only): controls for tests (allocation failures, a memory limit,
// counters) and small kernels that show the emulator reports what a GPU would get wrong.
#include "../common.cuh"
#include "emu_control.h"

namespace {

__global__ void write_at_kernel(float* p, int64_t i, float v) { p[i] = v; }

__global__ void empty_kernel() {}

// Each thread publishes t + 1 in shared memory and reads its right neighbour's value; without
// the barrier the neighbour has not written yet.
__global__ void neighbour_kernel(float* out, bool sync) {
  __shared__ float sh[1024];
  const unsigned t = threadIdx.x;
  sh[t] = float(t + 1);
  if (sync) __syncthreads();
  out[t] = sh[(t + 1) % blockDim.x];
}

__global__ void warp_sum_kernel(const float* x, float* out) {
  out[threadIdx.x] = pe::warp_sum(x[threadIdx.x]);
}

// Half of warp 1 waits at a block barrier, the other half in a shuffle that needs the first half.
__global__ void divergent_kernel(float* out) {
  if (threadIdx.x < 48) __syncthreads();
  else out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}

pe::Array floats(int64_t n) { return pe::Array::empty({n}, pe::DType::F32); }

}  // namespace

void bind_emulator(py::module_& m) {
  py::module_ e = m.def_submodule("emulator", "the CPU emulation of the CUDA device (CI builds)");
  e.def("fail_next_mallocs", &pe_emu::fail_next_mallocs, py::arg("n"),
        "make the next n cudaMalloc calls fail with cudaErrorMemoryAllocation");
  e.def("set_memory_limit", &pe_emu::set_memory_limit, py::arg("bytes"));
  e.def("memory_limit", &pe_emu::memory_limit);
  e.def("shared_bytes", &pe_emu::shared_bytes);
  e.def("stats", []() {
    const pe_emu::Stats s = pe_emu::stats();
    py::dict d;
    d["launches"] = s.launches;
    d["blocks"] = s.blocks;
    d["switches"] = s.switches;
    d["barriers"] = s.barriers;
    d["shuffles"] = s.shuffles;
    return d;
  });
  e.def("write_at", [](pe::Array& a, int64_t i, float v) {
    PE_LAUNCH(1, 1, 0, write_at_kernel)(pe::out_ptr(a, "a"), i, v);
    PE_LAUNCHED("write_at_kernel");
  }, py::arg("a"), py::arg("index"), py::arg("value"), "a[index] = value from one device thread");
  e.def("launch_empty", [](const std::array<unsigned, 3>& g, const std::array<unsigned, 3>& b,
                           size_t smem) {
    PE_LAUNCH(dim3(g[0], g[1], g[2]), dim3(b[0], b[1], b[2]), smem, empty_kernel)();
    PE_LAUNCHED("empty_kernel");
  }, py::arg("grid"), py::arg("block"), py::arg("shared_bytes"));
  e.def("neighbour_exchange", [](int threads, bool sync) {
    PE_CHECK(threads >= 1 && threads <= 1024, "threads must be in [1, 1024]");
    pe::Array out = floats(threads);
    PE_LAUNCH(1, threads, 0, neighbour_kernel)(out.ptr<float>(), sync);
    PE_LAUNCHED("neighbour_kernel");
    return out;
  }, py::arg("threads"), py::arg("sync"));
  e.def("warp_sum", [](const pe::Array& x) {
    pe::check_shape(x, {32}, "x");
    pe::Array out = floats(32);
    PE_LAUNCH(1, 32, 0, warp_sum_kernel)(pe::in_ptr(x, "x"), out.ptr<float>());
    PE_LAUNCHED("warp_sum_kernel");
    return out;
  }, py::arg("x"));
  e.def("divergent_barrier", []() {
    pe::Array out = floats(64);
    PE_LAUNCH(1, 64, 0, divergent_kernel)(out.ptr<float>());
    PE_LAUNCHED("divergent_kernel");
  });
}
