// Reductions: sum over any set of dims (also the reduce-to-shape of broadcast gradients), max
// over one dim with argmax, softmax / log_softmax over one dim, and the NLL gather of
// cross-entropy. float32 contiguous.
#include <algorithm>
#include <cmath>
#include <limits>

#include "common.h"

namespace {

using pe::Shape;

// Sum of n contiguous floats. Independent float lanes vectorise without -ffast-math; folding each
// block into double keeps million-element sums accurate (one float accumulator drifts by ~1%).
PE_MULTIVERSION double sum_floats(const float* __restrict p, int64_t n) {
  constexpr int64_t W = 16, B = 1024;
  double acc = 0.0;
  int64_t l = 0;
  for (; l + B <= n; l += B) {
    float s[W] = {};
    for (int64_t k = 0; k < B; k += W)
      for (int64_t j = 0; j < W; ++j) s[j] += p[l + k + j];
    float t = 0.f;
    for (int64_t j = 0; j < W; ++j) t += s[j];
    acc += t;
  }
  for (; l < n; ++l) acc += p[l];
  return acc;
}

// x: any shape; out: x's shape with the reduced dims set to 1 (keepdim form, same ndim).
// Dims are merged into alternating kept/reduced groups; the innermost group decides whether the
// contiguous inner loop is a dot-like sum (reduced) or a row accumulation (kept).
void sum_reduce(const py::array& x, py::array& out) {
  const float* px = pe::in_ptr(x, "x");
  float* po = pe::out_ptr(out, "out");
  const Shape xs = pe::shape_of(x), os = pe::shape_of(out);
  PE_CHECK(xs.size() == os.size(), "sum_reduce: out ", pe::shape_str(os), " must have the ndim of x ",
           pe::shape_str(xs));
  for (size_t i = 0; i < xs.size(); ++i)
    PE_CHECK(os[i] == xs[i] || os[i] == 1, "sum_reduce: cannot reduce ", pe::shape_str(xs), " to ",
             pe::shape_str(os));
  // groups[i] = {size, reduced?}
  std::vector<std::pair<int64_t, bool>> g;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (xs[i] == 1) continue;
    const bool red = os[i] == 1;
    if (!g.empty() && g.back().second == red)
      g.back().first *= xs[i];
    else
      g.push_back({xs[i], red});
  }
  const int64_t n = x.size(), m = out.size();
  py::gil_scoped_release nogil;
  if (m == 0) return;
  if (n == 0) {
    for (int64_t i = 0; i < m; ++i) po[i] = 0.f;
    return;
  }
  if (g.empty() || (g.size() == 1 && !g[0].second)) {  // nothing reduced
    for (int64_t i = 0; i < n; ++i) po[i] = px[i];
    return;
  }
  // Offsets (into x) of each kept index and each reduced index, innermost group excluded.
  const int64_t inner = g.back().first;
  const bool inner_red = g.back().second;
  std::vector<int64_t> kept{0}, red{0};
  int64_t stride = inner;
  for (int64_t k = static_cast<int64_t>(g.size()) - 2; k >= 0; --k) {
    auto& tab = g[k].second ? red : kept;
    std::vector<int64_t> nt;
    nt.reserve(tab.size() * g[k].first);
    for (int64_t i = 0; i < g[k].first; ++i)
      for (int64_t t : tab) nt.push_back(i * stride + t);
    tab.swap(nt);
    stride *= g[k].first;
  }
  const int64_t nk = kept.size(), nr = red.size();
  if (inner_red) {
    // out[o] = sum_r sum_l x[kept[o] + red[r] + l], in chunks: across outputs when there are
    // several, across the chunks of one long sum (a full reduction) otherwise.
    constexpr int64_t chunk = 1 << 14;
    const int64_t nch = (inner + chunk - 1) / chunk;
    auto chunk_sum = [&](int64_t o, int64_t t) {
      const int64_t r = t / nch, c = (t % nch) * chunk;
      return sum_floats(px + kept[o] + red[r] + c, std::min(chunk, inner - c));
    };
    if (nk == 1) {
      // The chunks' sums are added in chunk order, not by an OpenMP reduction (which combines
      // the threads' partials in arrival order): the same bits on every run and thread count.
      std::vector<double> part(nr * nch);
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
      for (int64_t t = 0; t < nr * nch; ++t) part[t] = chunk_sum(0, t);
      double acc = 0.0;
      for (double v : part) acc += v;
      po[0] = static_cast<float>(acc);
      return;
    }
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
    for (int64_t o = 0; o < nk; ++o) {
      double acc = 0.0;
      for (int64_t t = 0; t < nr * nch; ++t) acc += chunk_sum(o, t);
      po[o] = static_cast<float>(acc);
    }
  } else {
    // out[o*inner + l] = sum_r x[kept[o] + red[r] + l], over tiles of (o, a span of l) so that a
    // single output row (a bias gradient) still uses every thread. Float rows are summed in
    // blocks of kRows and each block is folded into double, so long reductions stay accurate.
    constexpr int64_t kSpan = 1024, kRows = 256;
    const int64_t nspan = (inner + kSpan - 1) / kSpan;
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
    for (int64_t t = 0; t < nk * nspan; ++t) {
      const int64_t o = t / nspan, l0 = (t % nspan) * kSpan, len = std::min(kSpan, inner - l0);
      float part[kSpan];
      double acc[kSpan];
      for (int64_t l = 0; l < len; ++l) acc[l] = 0.0;
      for (int64_t r0 = 0; r0 < nr; r0 += kRows) {
        for (int64_t l = 0; l < len; ++l) part[l] = 0.f;
        for (int64_t r = r0; r < std::min(nr, r0 + kRows); ++r) {
          const float* p = px + kept[o] + red[r] + l0;
          for (int64_t l = 0; l < len; ++l) part[l] += p[l];
        }
        for (int64_t l = 0; l < len; ++l) acc[l] += part[l];
      }
      float* dst = po + o * inner + l0;
      for (int64_t l = 0; l < len; ++l) dst[l] = static_cast<float>(acc[l]);
    }
  }
}

// Checks the caller's (outer, D, inner) view: every size non-negative and the products, which
// index the arrays, within int64 and equal to the arrays' sizes.
// `reduced` (null for softmax) holds the (outer, inner) result.
void check_view(const char* op, int64_t outer, int64_t D, int64_t inner, const py::array& full,
                const py::array* reduced) {
  PE_CHECK(outer >= 0 && D >= 0 && inner >= 0, op, ": sizes must be non-negative, got (outer ",
           outer, ", D ", D, ", inner ", inner, ")");
  PE_CHECK(full.size() == pe::mul(outer, D, inner) &&
               (!reduced || reduced->size() == pe::mul(outer, inner)),
           op, ": sizes do not match (outer ", outer, ", D ", D, ", inner ", inner, ")");
}

// x viewed as (outer, D, inner); values/indices (outer, inner). The first maximum wins ties and
// NaN is the maximum, as in torch.max(dim).
void max_reduce(const py::array& x, py::array& values, py::array& indices, int64_t outer,
                int64_t D, int64_t inner) {
  const float* px = pe::in_ptr(x, "x");
  float* pv = pe::out_ptr(values, "values");
  int64_t* pi = pe::idx_ptr(indices, "indices");
  PE_CHECK(D >= 1, "max of an empty dimension");
  check_view("max_reduce", outer, D, inner, x, &values);
  PE_CHECK(indices.size() == values.size(), "max_reduce: sizes do not match");
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (x.size() >= (1 << 15))
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const float* p = px + o * D * inner + i;
      float best = p[0];
      int64_t arg = 0;
      for (int64_t d = 1; d < D && best == best; ++d) {
        const float v = p[d * inner];
        if (v > best || v != v) {
          best = v;
          arg = d;
        }
      }
      pv[o * inner + i] = best;
      pi[o * inner + i] = arg;
    }
}

void max_reduce_backward(const py::array& gy, const py::array& indices, py::array& gx,
                         int64_t outer, int64_t D, int64_t inner) {
  const float* pg = pe::in_ptr(gy, "grad_output");
  const int64_t* pi = pe::idx_in_ptr(indices, "indices");
  float* px = pe::out_ptr(gx, "grad_input");
  check_view("max_reduce_backward", outer, D, inner, gx, &gy);
  PE_CHECK(indices.size() == gy.size(), "max_reduce_backward: sizes do not match");
  py::gil_scoped_release nogil;
  for (int64_t k = 0; k < gx.size(); ++k) px[k] = 0.f;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t d = pi[o * inner + i];
      if (d >= 0 && d < D) px[(o * D + d) * inner + i] = pg[o * inner + i];
    }
}

// x, y: (outer, D, inner); softmax (or log_softmax) along D, max-subtracted for stability.
void softmax_forward(const py::array& x, py::array& y, int64_t outer, int64_t D, int64_t inner,
                     bool log) {
  const float* px = pe::in_ptr(x, "x");
  float* py_ = pe::out_ptr(y, "y");
  check_view("softmax", outer, D, inner, x, nullptr);
  PE_CHECK(y.size() == x.size(), "softmax: sizes do not match");
  PE_CHECK(D > 0 || x.size() == 0, "softmax over an empty dimension");
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (x.size() >= (1 << 14))
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const float* p = px + o * D * inner + i;
      float* q = py_ + o * D * inner + i;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t d = 0; d < D; ++d) mx = std::max(mx, p[d * inner]);
      double s = 0.0;
      for (int64_t d = 0; d < D; ++d) s += std::exp(p[d * inner] - mx);
      if (log) {
        const float lse = mx + static_cast<float>(std::log(s));
        for (int64_t d = 0; d < D; ++d) q[d * inner] = p[d * inner] - lse;
      } else {
        const float inv = static_cast<float>(1.0 / s);
        for (int64_t d = 0; d < D; ++d) q[d * inner] = std::exp(p[d * inner] - mx) * inv;
      }
    }
}

// softmax: gx = y * (gy - sum(gy*y));  log_softmax: gx = gy - exp(y) * sum(gy).
void softmax_backward(const py::array& y, const py::array& gy, py::array& gx, int64_t outer,
                      int64_t D, int64_t inner, bool log) {
  const float* py_ = pe::in_ptr(y, "y");
  const float* pg = pe::in_ptr(gy, "grad_output");
  float* px = pe::out_ptr(gx, "grad_input");
  check_view("softmax_backward", outer, D, inner, y, nullptr);
  PE_CHECK(gy.size() == y.size() && gx.size() == y.size(), "softmax_backward: sizes do not match");
  py::gil_scoped_release nogil;
#pragma omp parallel for schedule(static) if (y.size() >= (1 << 14))
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t base = o * D * inner + i;
      double s = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        const int64_t k = base + d * inner;
        s += log ? pg[k] : pg[k] * py_[k];
      }
      const float sf = static_cast<float>(s);
      for (int64_t d = 0; d < D; ++d) {
        const int64_t k = base + d * inner;
        px[k] = log ? pg[k] - std::exp(py_[k]) * sf : py_[k] * (pg[k] - sf);
      }
    }
}

// logp (N, C), target (N,) int64 -> out (N,) = -logp[n, target[n]].
void nll_forward(const py::array& logp, const py::array& target, py::array& out) {
  const float* pl = pe::in_ptr(logp, "input");
  const int64_t* pt = pe::idx_in_ptr(target, "target");
  float* po = pe::out_ptr(out, "out");
  pe::check_ndim(logp, 2, "input");
  const int64_t N = logp.shape(0), C = logp.shape(1);
  pe::check_shape(target, {N}, "target");
  pe::check_shape(out, {N}, "out");
  for (int64_t n = 0; n < N; ++n)
    PE_CHECK(pt[n] >= 0 && pt[n] < C, "target ", pt[n], " is out of bounds for ", C, " classes");
  for (int64_t n = 0; n < N; ++n) po[n] = -pl[n * C + pt[n]];
}

void nll_backward(const py::array& gy, const py::array& target, py::array& gx) {
  const float* pg = pe::in_ptr(gy, "grad_output");
  const int64_t* pt = pe::idx_in_ptr(target, "target");
  float* px = pe::out_ptr(gx, "grad_input");
  pe::check_ndim(gx, 2, "grad_input");
  const int64_t N = gx.shape(0), C = gx.shape(1);
  pe::check_shape(target, {N}, "target");
  pe::check_shape(gy, {N}, "grad_output");
  for (int64_t k = 0; k < N * C; ++k) px[k] = 0.f;
  for (int64_t n = 0; n < N; ++n) {
    PE_CHECK(pt[n] >= 0 && pt[n] < C, "target ", pt[n], " is out of bounds for ", C, " classes");
    px[n * C + pt[n]] = -pg[n];
  }
}

}  // namespace

void bind_reduce(py::module_& m) {
  m.def("sum_reduce", &sum_reduce, py::arg("x"), py::arg("out"));
  m.def("max_reduce", &max_reduce, py::arg("x"), py::arg("values"), py::arg("indices"),
        py::arg("outer"), py::arg("D"), py::arg("inner"));
  m.def("max_reduce_backward", &max_reduce_backward, py::arg("grad_output"), py::arg("indices"),
        py::arg("grad_input"), py::arg("outer"), py::arg("D"), py::arg("inner"));
  m.def("softmax_forward", &softmax_forward, py::arg("x"), py::arg("y"), py::arg("outer"),
        py::arg("D"), py::arg("inner"), py::arg("log"));
  m.def("softmax_backward", &softmax_backward, py::arg("y"), py::arg("grad_output"),
        py::arg("grad_input"), py::arg("outer"), py::arg("D"), py::arg("inner"), py::arg("log"));
  m.def("nll_forward", &nll_forward, py::arg("input"), py::arg("target"), py::arg("out"));
  m.def("nll_backward", &nll_backward, py::arg("grad_output"), py::arg("target"),
        py::arg("grad_input"));
}
