// _cuda_index: the CUDA kernels' index arithmetic (cuda/index.cuh) compiled with the host
// compiler, run over every thread of small launches so that tests/test_cuda_index.py can compare
// the results with NumPy and PyTorch on machines without a GPU. Built always, even without nvcc.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "index.cuh"

namespace py = pybind11;
namespace idx = pe::idx;

namespace {

using Vec = std::vector<int64_t>;
using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;

// Calls body(i) for every global index a grid-stride 1-D launch of n items visits, thread by
// thread, with the grid size the CUDA launcher would pick.
template <typename F>
void launch_1d(int64_t n, F&& body) {
  const int64_t grid = idx::blocks_for(n), threads = idx::kThreads;
  for (int64_t b = 0; b < grid; ++b)
    for (int64_t t = 0; t < threads; ++t)
      for (int64_t i = b * threads + t; i < n; i += grid * threads) body(i);
}

idx::Layout2 layout(const Vec& shape, const Vec& sa, const Vec& sb) {
  if (shape.size() > size_t(idx::kMaxDims) || sa.size() != shape.size() || sb.size() != shape.size())
    throw std::invalid_argument("layout: bad shape/strides");
  idx::Layout2 L;
  L.nd = int(shape.size());
  for (int d = 0; d < L.nd; ++d) {
    L.shape[d] = shape[d];
    L.sa[d] = sa[d];
    L.sb[d] = sb[d];
  }
  idx::coalesce(L);
  return L;
}

py::tuple offsets_of(const idx::Layout2& L, int64_t n) {
  py::array_t<int64_t> oa(n), ob(n);
  auto a = oa.mutable_unchecked<1>();
  auto b = ob.mutable_unchecked<1>();
  launch_1d(n, [&](int64_t i) { idx::layout_offsets(L, i, a(i), b(i)); });
  return py::make_tuple(oa, ob, L.nd);
}

// Offsets into a and b of each output element of a broadcast binary op (elementwise.cu).
py::tuple broadcast_offsets(const Vec& as, const Vec& bs, const Vec& out) {
  const int nd = int(out.size());
  Vec sa(nd), sb(nd);
  if (!idx::broadcast_strides(int(as.size()), as.data(), nd, out.data(), sa.data()) ||
      !idx::broadcast_strides(int(bs.size()), bs.data(), nd, out.data(), sb.data()))
    throw std::invalid_argument("shapes do not broadcast");
  int64_t n = 1;
  for (auto d : out) n *= d;
  return offsets_of(layout(out, sa, sb), n);
}

// Source and destination offsets of a strided copy (array.cu: permute, slicing, cat, setitem).
py::tuple strided_offsets(const Vec& shape, const Vec& sa, const Vec& sb) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return offsets_of(layout(shape, sa, sb), n);
}

py::tuple extent(const Vec& shape, const Vec& st, int64_t offset) {
  int64_t lo, hi;
  idx::extent(int(shape.size()), shape.data(), st.data(), offset, lo, hi);
  return py::make_tuple(lo, hi);
}

py::list split_ranges(int64_t n, int64_t parts) {
  py::list out;
  for (int64_t p = 0; p < parts; ++p) {
    int64_t b, e;
    idx::split_range(p, parts, n, b, e);
    out.append(py::make_tuple(b, e));
  }
  return out;
}

// sum_reduce as reduce.cu computes it: partial sums per (output, split) over the split's range
// of reduced indices (double per thread, float per block), then the splits added in order.
// splits <= 0 takes the launcher's choice (reduce_splits); `rows` picks the block-per-output
// mapping (threads stride over r, then a block sum), else the thread-per-output one.
py::array_t<float> sum_reduce(const F32& x, const Vec& out_shape, int64_t splits, bool rows) {
  Vec xs(x.shape(), x.shape() + x.ndim());
  idx::ReduceLayout R;
  if (!idx::make_reduce_layout(int(xs.size()), xs.data(), out_shape.data(), R))
    throw std::invalid_argument("too many groups");
  int64_t m = 1;
  for (auto d : out_shape) m *= d;
  const int64_t r_total = m ? x.size() / m : 0;
  if (splits <= 0) splits = idx::reduce_splits(m, r_total, rows);
  const float* px = x.data();
  std::vector<float> part(size_t(splits * m), 0.f);
  const int64_t threads = idx::kThreads;
  for (int64_t s = 0; s < splits; ++s) {
    int64_t b, e;
    idx::split_range(s, splits, r_total, b, e);
    for (int64_t o = 0; o < m; ++o) {
      const float* base = px + idx::decode(o, R.nk, R.kshape, R.kstride);
      float total = 0.f;
      if (rows) {
        for (int64_t t = 0; t < threads; ++t) {
          double acc = 0.0;
          for (int64_t r = b + t; r < e; r += threads)
            acc += base[idx::decode(r, R.nr, R.rshape, R.rstride)];
          total += static_cast<float>(acc);
        }
      } else {
        double acc = 0.0;
        for (int64_t r = b; r < e; ++r) acc += base[idx::decode(r, R.nr, R.rshape, R.rstride)];
        total = static_cast<float>(acc);
      }
      part[size_t(s * m + o)] = total;
    }
  }
  py::array_t<float> out(out_shape);
  float* po = out.mutable_data();
  for (int64_t o = 0; o < m; ++o) {
    double acc = 0.0;
    for (int64_t s = 0; s < splits; ++s) acc += part[size_t(s * m + o)];
    po[o] = static_cast<float>(acc);
  }
  return out;
}

idx::ConvGeom geom(int64_t C, int64_t H, int64_t W, int64_t R, int64_t S, int64_t sh, int64_t sw,
                   int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  idx::ConvGeom g{C, H, W, R, S, 0, 0, sh, sw, ph, pw, dh, dw};
  g.P = (g.H + 2 * ph - dh * (R - 1) - 1) / sh + 1;
  g.Q = (g.W + 2 * pw - dw * (S - 1) - 1) / sw + 1;
  return g;
}

// col (C*R*S, P*Q) of one sample, one thread per column-matrix entry.
py::array_t<float> im2col(const F32& x, int64_t R, int64_t S, int64_t sh, int64_t sw, int64_t ph,
                          int64_t pw, int64_t dh, int64_t dw) {
  if (x.ndim() != 3) throw std::invalid_argument("x must be (C, H, W)");
  const idx::ConvGeom g = geom(x.shape(0), x.shape(1), x.shape(2), R, S, sh, sw, ph, pw, dh, dw);
  const int64_t rows = g.C * R * S, cols = g.P * g.Q;
  py::array_t<float> col({rows, cols});
  float* pc = col.mutable_data();
  const float* px = x.data();
  launch_1d(rows * cols, [&](int64_t i) {
    const int64_t src = idx::im2col_source(g, i / cols, i % cols);
    pc[i] = src < 0 ? 0.f : px[src];
  });
  return col;
}

// The adjoint of im2col as a gather: one thread per input element sums its taps.
py::array_t<float> col2im(const F32& col, int64_t C, int64_t H, int64_t W, int64_t R, int64_t S,
                          int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  const idx::ConvGeom g = geom(C, H, W, R, S, sh, sw, ph, pw, dh, dw);
  const int64_t cols = g.P * g.Q;
  if (col.ndim() != 2 || col.shape(0) != C * R * S || col.shape(1) != cols)
    throw std::invalid_argument("col has the wrong shape");
  py::array_t<float> x({C, H, W});
  float* px = x.mutable_data();
  const float* pc = col.data();
  launch_1d(C * H * W, [&](int64_t i) {
    const int64_t w = i % W, h = (i / W) % H, c = i / (H * W);
    float acc = 0.f;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t p = idx::col2im_tap(h, r, sh, ph, dh, g.P);
      if (p < 0) continue;
      for (int64_t s = 0; s < S; ++s) {
        const int64_t q = idx::col2im_tap(w, s, sw, pw, dw, g.Q);
        if (q >= 0) acc += pc[((c * R + r) * S + s) * cols + p * g.Q + q];
      }
    }
    px[i] = acc;
  });
  return x;
}

// Max pool over (C, H, W) to (C, P, Q): values and flat argmax h*W+w (first maximum wins).
py::tuple maxpool(const F32& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                  int64_t pw, int64_t dh, int64_t dw, int64_t P, int64_t Q) {
  const int64_t C = x.shape(0), H = x.shape(1), W = x.shape(2);
  py::array_t<float> y({C, P, Q});
  py::array_t<int64_t> am({C, P, Q});
  float* py_ = y.mutable_data();
  int64_t* pa = am.mutable_data();
  const float* px = x.data();
  launch_1d(C * P * Q, [&](int64_t i) {
    const int64_t q = i % Q, p = (i / Q) % P, c = i / (P * Q);
    float best = -INFINITY;
    int64_t arg = -1;
    for (int64_t r = 0; r < kh; ++r) {
      const int64_t h = idx::pool_tap(p, r, sh, ph, dh, H);
      if (h < 0) continue;
      for (int64_t s = 0; s < kw; ++s) {
        const int64_t w = idx::pool_tap(q, s, sw, pw, dw, W);
        if (w < 0) continue;
        const float v = px[(c * H + h) * W + w];
        if (arg < 0 || v > best || v != v) {  // as pool.cu: a NaN replaces anything
          best = v;
          arg = h * W + w;
        }
      }
    }
    py_[i] = best;
    pa[i] = arg;
  });
  return py::make_tuple(y, am);
}

py::array_t<float> avgpool(const F32& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw, bool count_include_pad, int64_t P, int64_t Q) {
  const int64_t C = x.shape(0), H = x.shape(1), W = x.shape(2);
  py::array_t<float> y({C, P, Q});
  float* py_ = y.mutable_data();
  const float* px = x.data();
  launch_1d(C * P * Q, [&](int64_t i) {
    const int64_t q = i % Q, p = (i / Q) % P, c = i / (P * Q);
    int64_t h0, h1, ch, w0, w1, cw;
    idx::avg_window(p, kh, sh, ph, H, count_include_pad, h0, h1, ch);
    idx::avg_window(q, kw, sw, pw, W, count_include_pad, w0, w1, cw);
    float acc = 0.f;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) acc += px[(c * H + h) * W + w];
    py_[i] = acc / float(ch * cw);
  });
  return y;
}

py::array_t<float> adaptive_avgpool(const F32& x, int64_t P, int64_t Q) {
  const int64_t C = x.shape(0), H = x.shape(1), W = x.shape(2);
  py::array_t<float> y({C, P, Q});
  float* py_ = y.mutable_data();
  const float* px = x.data();
  launch_1d(C * P * Q, [&](int64_t i) {
    const int64_t q = i % Q, p = (i / Q) % P, c = i / (P * Q);
    int64_t h0, h1, w0, w1;
    idx::adaptive_window(p, P, H, h0, h1);
    idx::adaptive_window(q, Q, W, w0, w1);
    float acc = 0.f;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) acc += px[(c * H + h) * W + w];
    py_[i] = acc / float((h1 - h0) * (w1 - w0));
  });
  return y;
}

// mode "nearest" or "bilinear" over (C, H, W) -> (C, OH, OW).
py::array_t<float> interpolate(const F32& x, int64_t OH, int64_t OW, const std::string& mode,
                               bool align_corners) {
  const int64_t C = x.shape(0), H = x.shape(1), W = x.shape(2);
  py::array_t<float> y({C, OH, OW});
  float* py_ = y.mutable_data();
  const float* px = x.data();
  const bool nearest = mode == "nearest";
  if (!nearest && mode != "bilinear") throw std::invalid_argument("mode");
  launch_1d(C * OH * OW, [&](int64_t i) {
    const int64_t ow = i % OW, oh = (i / OW) % OH, c = i / (OH * OW);
    const float* base = px + c * H * W;
    if (nearest) {
      py_[i] = base[idx::nearest_source(oh, H, OH) * W + idx::nearest_source(ow, W, OW)];
      return;
    }
    int64_t h0, h1, w0, w1;
    float lh, lw;
    idx::linear_source(oh, H, OH, align_corners, h0, h1, lh);
    idx::linear_source(ow, W, OW, align_corners, w0, w1, lw);
    py_[i] = (1.f - lh) * ((1.f - lw) * base[h0 * W + w0] + lw * base[h0 * W + w1]) +
             lh * ((1.f - lw) * base[h1 * W + w0] + lw * base[h1 * W + w1]);
  });
  return y;
}

// Pad (C, H, W) by (left, right, top, bottom), mode 0 zeros, 1 reflect, 2 replicate, 3 circular.
py::array_t<float> pad(const F32& x, int64_t left, int64_t right, int64_t top, int64_t bottom,
                       int mode, float value) {
  const int64_t C = x.shape(0), H = x.shape(1), W = x.shape(2);
  const int64_t OH = H + top + bottom, OW = W + left + right;
  py::array_t<float> y({C, OH, OW});
  float* py_ = y.mutable_data();
  const float* px = x.data();
  launch_1d(C * OH * OW, [&](int64_t i) {
    const int64_t ow = i % OW, oh = (i / OW) % OH, c = i / (OH * OW);
    const int64_t h = idx::pad_source(oh, top, H, mode), w = idx::pad_source(ow, left, W, mode);
    py_[i] = (h < 0 || w < 0) ? value : px[(c * H + h) * W + w];
  });
  return y;
}

py::tuple philox(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  const idx::U4 r = idx::philox4x32(idx::U4{c0, c1, c2, c3}, k0, k1);
  return py::make_tuple(r.x, r.y, r.z, r.w);
}

}  // namespace

PYBIND11_MODULE(_cuda_index, m) {
  m.doc() = "host build of the CUDA kernels' index functions (cuda/index.cuh), for tests";
  m.attr("THREADS") = idx::kThreads;
  m.def("blocks_for", [](int64_t n) { return idx::blocks_for(n); });
  m.def("broadcast_offsets", &broadcast_offsets);
  m.def("strided_offsets", &strided_offsets);
  m.def("extent", &extent);
  m.def("split_ranges", &split_ranges);
  m.def("reduce_splits", &idx::reduce_splits);
  m.def("sum_reduce", &sum_reduce, py::arg("x"), py::arg("out_shape"), py::arg("splits"),
        py::arg("rows"));
  m.def("im2col", &im2col);
  m.def("col2im", &col2im);
  m.def("maxpool", &maxpool);
  m.def("avgpool", &avgpool);
  m.def("adaptive_avgpool", &adaptive_avgpool);
  m.def("interpolate", &interpolate);
  m.def("pad", &pad);
  m.def("philox", &philox);
  m.def("uniform01", [](uint32_t u) { return idx::uniform01(u); });
}
