// Compile targets of the hand-written intrinsic kernels (those the compiler does not vectorise
// well from plain loops: GEMM micro-kernels, bit packing). Each is compiled for one ISA and
// chosen at run time with __builtin_cpu_supports on the same features.
#pragma once

#define PE_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,fma")))
#define PE_AVX2 __attribute__((target("avx2,fma")))
