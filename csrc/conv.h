// Shared by the convolution algorithms (conv_direct.cpp, conv_im2col.cpp) and the bindings with
// the algorithm dispatch (conv.cpp): the geometry, per-thread scratch and small helpers.
// Shapes: x (N,C,H,W), w (K,C/G,R,S), b (K,) or None, y (N,K,P,Q); G = groups.
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>

#include "common.h"

namespace pe::conv {

struct Geom {
  int64_t N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, G;
  int64_t Cg() const { return C / G; }
  int64_t Kg() const { return K / G; }
  int64_t CRS() const { return C / G * R * S; }
  // 1x1, stride 1, no padding: the input planes already are the column matrix.
  bool pointwise() const {
    return R == 1 && S == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && P == H && Q == W;
  }
};

int64_t out_size(int64_t in, int64_t pad_total, int64_t k, int64_t s, int64_t d);

// x_shape is the conv's input, y_shape its output (for a transposed conv: the other way round).
// The output may have one row/column more than the symmetric-padding formula gives (padding
// "same" with an even kernel pads one extra zero at the end) or fewer (a transposed conv whose
// output_padding adds rows that no input reaches); out-of-range taps read zeros either way.
Geom make_geom(const py::array& x, const py::array& w, const py::array& y, int64_t sh, int64_t sw,
               int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups, const char* xn,
               const char* yn);

// Outputs o in [lo, hi) whose tap lands inside the input: 0 <= o*stride + off < in. Both are
// clamped to [0, n_out]: with a large padding and dilation the first in-range output can lie
// past the row, and callers zero [0, lo) and [hi, n_out). make_geom bounds |off|, so the
// divisions' operands cannot overflow.
inline void valid_range(int64_t n_out, int64_t in, int64_t stride, int64_t off, int64_t& lo,
                        int64_t& hi) {
  lo = off >= 0 ? 0 : std::min(n_out, -off / stride + (-off % stride != 0));
  hi = in - off <= 0 ? 0 : std::min(n_out, (in - off) / stride + ((in - off) % stride != 0));
  if (hi < lo) hi = lo;
}

// Whether a zero-padded copy (P + (R-1)*dh, Q + (S-1)*dw) of an input plane is small enough
// to build: a huge padding or dilation would make it far larger than the input and output
// (or overflow), and the paths that do not pad serve such convs instead.
bool padded_copy_ok(const Geom& g);

// Exceptions must not leave an OpenMP region (std::terminate). Per-iteration bodies run
// through run(), which keeps the first exception and skips the remaining iterations (no
// barrier is missed, so no thread waits forever); rethrow() raises it after the region.
class Errors {
 public:
  template <typename F>
  void run(F&& body) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      body();
    } catch (...) {
#pragma omp critical(pe_conv_errors)
      if (!error_) error_ = std::current_exception();
      failed_.store(true);
    }
  }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

// Grow-only, 64-byte aligned scratch per thread and slot, so no call mallocs big buffers.
// Slots: 0 column tiles / pack line, 1 per-call buffers of the calling thread, 2-3 the wide
// forward's padded input and output, 4 Winograd's transformed filter (calling thread), 5 its
// per-thread tile buffers.
float* workspace(int slot, size_t n);

// Output rows per column tile: ~4 MiB of columns, so the GEMM stays large and the buffer cached.
int64_t tile_rows(const Geom& g);

// Images in parallel (one thread per image, single-threaded GEMMs) when the batch splits evenly
// enough over the threads; otherwise images one by one with threaded GEMMs and column loops.
bool images_in_parallel(int64_t N);

// xp (C,Hp,Wp) = x (C,H,W) placed at (ph, pw) in zeros; rows/columns past Hp/Wp are dropped.
void pad_planes(const float* x, float* xp, int64_t C, int64_t H, int64_t W, int64_t Hp,
                int64_t Wp, int64_t ph, int64_t pw);

template <typename F>
void for_images(int64_t N, F&& image) {
  if (images_in_parallel(N)) {
    Errors errors;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t n = 0; n < N; ++n) errors.run([&] { image(n, false); });
    errors.rethrow();
  } else {
    for (int64_t n = 0; n < N; ++n) image(n, true);
  }
}

void fill_bias(float* yn, const float* b, int64_t K, int64_t PQ);

// gb[k] = sum over n and the plane of gy (N,K,PQ); float rows summed in double.
void channel_sum(const float* gy, float* gb, int64_t N, int64_t K, int64_t PQ);

// The algorithms (conv_direct.cpp, conv_im2col.cpp, conv_winograd.cpp); the caller has checked the geometry.
void fwd_direct(const float* x, const float* w, const float* b, float* y, const Geom& g);
void bwd_input_direct(const float* gy, const float* w, float* gx, const Geom& g);
void bwd_weight_direct(const float* x, const float* gy, float* gw, const Geom& g);
void fwd_im2col(const float* x, const float* w, const float* b, float* y, const Geom& g);
void bwd_input_im2col(const float* gy, const float* w, float* gx, const Geom& g);
void bwd_weight_im2col(const float* x, const float* gy, float* gw, const Geom& g);
// conv_winograd.cpp: 3x3, stride 1, dilation 1, groups 1 only (wino_supported); m = 2 or 4 is
// the output tile F(mxm, 3x3); relu applies max(., 0) after the bias.
bool wino_supported(const Geom& g);
int wino_default_tile();
void fwd_winograd(const float* x, const float* w, const float* b, bool relu, float* y,
                  const Geom& g, int m);
void bwd_input_winograd(const float* gy, const float* w, float* gx, const Geom& g, int m);
// gb (K,), unless null, is the bias gradient, summed from the weight gradient's tiles of gy.
void bwd_weight_winograd(const float* x, const float* gy, float* gw, float* gb, const Geom& g,
                         int m);
// Both gradients at once (gb may be null): gy padded once for the two where their tiles agree.
void bwd_winograd(const float* x, const float* gy, const float* w, float* gx, float* gw,
                  float* gb, const Geom& g, int m);

}  // namespace pe::conv
