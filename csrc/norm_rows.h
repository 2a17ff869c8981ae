// Row passes shared by the normalisation kernels (csrc/norm.cpp: batch norm over (N, HW) rows of a
// channel; csrc/norm_group.cpp: layer, group and instance norm over the rows of one sample): the
// statistics of a run of contiguous floats and the two elementwise passes that use them.
// Internal linkage: each kernel file gets its own multiversioned copy.
#pragma once

#include <cstdint>

#include "common.h"

namespace {

// Row partial sums are float, in kLanes independent accumulators: the compiler vectorises the
// inner loop into several vector registers, so the reduction is not bound by the latency of one
// add chain, and the short per-lane sums stay accurate. Rows are combined in double.
constexpr int64_t kLanes = 32;

PE_MULTIVERSION float row_sum_shifted(const float* __restrict x, int64_t n, float shift) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) acc[j] += x[i + j] - shift;
  float s = 0.f;
  for (; i < n; ++i) s += x[i] - shift;
  for (int64_t j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

// sum(x - m) and sum((x - m)^2): the second pass of the corrected two-pass variance.
PE_MULTIVERSION void row_dev_sums(const float* __restrict x, int64_t n, float m, float* d1,
                                  float* d2) {
  float a1[kLanes] = {}, a2[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) {
      const float d = x[i + j] - m;
      a1[j] += d;
      a2[j] += d * d;
    }
  float s1 = 0.f, s2 = 0.f;
  for (; i < n; ++i) {
    const float d = x[i] - m;
    s1 += d;
    s2 += d * d;
  }
  for (int64_t j = 0; j < kLanes; ++j) {
    s1 += a1[j];
    s2 += a2[j];
  }
  *d1 = s1;
  *d2 = s2;
}

// Subtracting the mean before scaling keeps y accurate when |mean| >> std.
PE_MULTIVERSION void row_normalize(const float* __restrict x, float* __restrict y, int64_t n,
                                   float m, float a, float b) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * a + b;
}

// sum(dy) and sum(dy * (x - m)).
PE_MULTIVERSION void row_grad_sums(const float* __restrict dy, const float* __restrict x, int64_t n,
                                   float m, float* sg, float* sgx) {
  float a1[kLanes] = {}, a2[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) {
      a1[j] += dy[i + j];
      a2[j] += dy[i + j] * (x[i + j] - m);
    }
  float s1 = 0.f, s2 = 0.f;
  for (; i < n; ++i) {
    s1 += dy[i];
    s2 += dy[i] * (x[i] - m);
  }
  for (int64_t j = 0; j < kLanes; ++j) {
    s1 += a1[j];
    s2 += a2[j];
  }
  *sg = s1;
  *sgx = s2;
}

// dx = p * dy + q * (x - m) + r.
PE_MULTIVERSION void row_grad_input(const float* __restrict dy, const float* __restrict x,
                                    float* __restrict dx, int64_t n, float m, float p, float q,
                                    float r) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dx[i] = p * dy[i] + q * (x[i] - m) + r;
}

}  // namespace
