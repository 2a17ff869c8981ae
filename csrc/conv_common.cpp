// Geometry checks, per-thread scratch and small helpers shared by the convolution algorithms.
#include <cstdlib>
#include <cstring>
#include <memory>

#include "conv.h"

namespace pe::conv {

int64_t out_size(int64_t in, int64_t pad_total, int64_t k, int64_t s, int64_t d) {
  const int64_t span = in + pad_total - d * (k - 1) - 1;
  return span < 0 ? 0 : span / s + 1;
}

// x_shape is the conv's input, y_shape its output (for a transposed conv: the other way round).
// The output may have one row/column more than the symmetric-padding formula gives (padding
// "same" with an even kernel pads one extra zero at the end) or fewer (a transposed conv whose
// output_padding adds rows that no input reaches); out-of-range taps read zeros either way.
Geom make_geom(const py::array& x, const py::array& w, const py::array& y, int64_t sh, int64_t sw,
               int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups, const char* xn,
               const char* yn) {
  pe::check_ndim(x, 4, xn);
  pe::check_ndim(w, 4, "weight");
  pe::check_ndim(y, 4, yn);
  PE_CHECK(sh >= 1 && sw >= 1, "conv: stride must be positive, got (", sh, ", ", sw, ")");
  PE_CHECK(dh >= 1 && dw >= 1, "conv: dilation must be positive, got (", dh, ", ", dw, ")");
  PE_CHECK(ph >= 0 && pw >= 0, "conv: padding must be non-negative, got (", ph, ", ", pw, ")");
  PE_CHECK(groups >= 1, "conv: groups must be positive, got ", groups);
  Geom g{x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(0), w.shape(2), w.shape(3),
         y.shape(2), y.shape(3), sh, sw, ph, pw, dh, dw, groups};
  PE_CHECK(g.C % groups == 0 && g.K % groups == 0, "conv: groups=", groups,
           " must divide the channels ", g.C, " and ", g.K);
  PE_CHECK(g.R >= 1 && g.S >= 1, "conv: empty kernel ", pe::shape_str(pe::shape_of(w)));
  pe::check_shape(w, {g.K, g.C / groups, g.R, g.S}, "weight");
  PE_CHECK(y.shape(0) == g.N && y.shape(1) == g.K, yn, " has shape ",
           pe::shape_str(pe::shape_of(y)), ", expected batch ", g.N, " and ", g.K, " channels");
  const int64_t pmax = out_size(g.H, 2 * ph + 1, g.R, sh, dh);
  const int64_t qmax = out_size(g.W, 2 * pw + 1, g.S, sw, dw);
  PE_CHECK(g.P >= 1 && g.Q >= 1 && g.P <= pmax && g.Q <= qmax, "conv: ", yn, " spatial size (",
           g.P, ", ", g.Q, ") does not fit ", xn, " ", pe::shape_str(pe::shape_of(x)),
           " with kernel (", g.R, ", ", g.S, "), stride (", sh, ", ", sw, "), padding (", ph,
           ", ", pw, "), dilation (", dh, ", ", dw, ")");
  return g;
}

// Grow-only, 64-byte aligned scratch per thread and slot, so no call mallocs big buffers.
// Slots: 0 column tiles / pack line, 1 per-call buffers of the calling thread, 2-3 the wide
// forward's padded input and output.
float* workspace(int slot, size_t n) {
  struct Buf {
    std::unique_ptr<float, decltype(&std::free)> p{nullptr, &std::free};
    size_t cap = 0;
  };
  thread_local Buf bufs[4];
  Buf& b = bufs[slot];
  if (n > b.cap) {
    b.p.reset(static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64)));
    if (!b.p) throw std::bad_alloc();
    b.cap = n;
  }
  return b.p.get();
}

// Output rows per column tile: ~4 MiB of columns, so the GEMM stays large and the buffer cached.
int64_t tile_rows(const Geom& g) {
  constexpr int64_t kColFloats = 1 << 20;
  return std::clamp<int64_t>(kColFloats / std::max<int64_t>(1, g.CRS() * g.Q), 1, g.P);
}

// Images in parallel (one thread per image, single-threaded GEMMs) when the batch splits evenly
// enough over the threads; otherwise images one by one with threaded GEMMs and column loops.
bool images_in_parallel(int64_t N) {
  const int64_t nt = omp_get_max_threads();
  return nt > 1 && N >= nt && (N % nt == 0 || N >= 4 * nt);
}

// xp (C,Hp,Wp) = x (C,H,W) placed at (ph, pw) in zeros; rows/columns past Hp/Wp are dropped.
void pad_planes(const float* x, float* xp, int64_t C, int64_t H, int64_t W, int64_t Hp,
                int64_t Wp, int64_t ph, int64_t pw) {
  const int64_t rows = std::min(H, Hp - ph), cols = std::min(W, Wp - pw);
  for (int64_t c = 0; c < C; ++c) {
    float* d = xp + c * Hp * Wp;
    const float* src = x + c * H * W;
    std::fill(d, d + Hp * Wp, 0.f);
    for (int64_t h = 0; h < rows; ++h)
      std::memcpy(d + (h + ph) * Wp + pw, src + h * W, cols * sizeof(float));
  }
}

void fill_bias(float* yn, const float* b, int64_t K, int64_t PQ) {
  for (int64_t k = 0; k < K; ++k) std::fill(yn + k * PQ, yn + (k + 1) * PQ, b[k]);
}

// gb[k] = sum over n and the plane of gy (N,K,PQ); float rows summed in double.
PE_MULTIVERSION void channel_sum(const float* gy, float* gb, int64_t N, int64_t K, int64_t PQ) {
#pragma omp parallel for schedule(static) if (N * K * PQ > (1 << 15))
  for (int64_t k = 0; k < K; ++k) {
    double acc = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      const float* row = gy + (n * K + k) * PQ;
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < PQ; ++i) s += row[i];
      acc += s;
    }
    gb[k] = static_cast<float>(acc);
  }
}

}  // namespace pe::conv
