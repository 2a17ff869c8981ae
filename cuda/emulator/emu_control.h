// Test controls of the CUDA emulator (cuda/emulator/runtime.cpp), bound as _cuda.emulator.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pe_emu {
struct Stats {
  uint64_t launches = 0, blocks = 0, switches = 0, barriers = 0, shuffles = 0;
};
void fail_next_mallocs(int n);  // the next n cudaMalloc calls fail with cudaErrorMemoryAllocation
void set_memory_limit(size_t bytes);
size_t memory_limit();
size_t shared_bytes();  // all kernels' __shared__ variables together
Stats stats();
}  // namespace pe_emu
