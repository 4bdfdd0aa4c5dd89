// Activations, RMSNorm, softmax, cross-entropy, concat/split, embedding and
// the axis reductions: kernels against their scalar references on odd sizes,
// gradient checks, thread-count determinism and error messages.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/fused.h"
#include "ops/kernels/gather.h"
#include "ops/kernels/norm.h"
#include "ops/kernels/reduce.h"
#include "ops/kernels/softmax.h"
#include "ops/loss.h"
#include "test_util.h"
#include "ops/norm.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/softmax.h"
#include "ops/view.h"
#include "tensor/random.h"
#include "tensor/threads.h"

using namespace mmrec;
using autograd::gradcheck;
using F = autograd::Function;
using test_util::bit_equal;

namespace {
Tensor param(const Shape& s, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Generator g(seed);
  return rand_uniform(s, g, lo, hi).set_requires_grad();
}
Tensor uniform(const Shape& s, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Generator g(seed);
  return rand_uniform(s, g, lo, hi);
}
// max |a - b| / (1 + |b|)
double max_err(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  auto x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::fabs(double(x[i]) - y[i]) / (1.0 + std::fabs(y[i])));
  return m;
}
Tensor ids_tensor(int64_t n, int64_t v, uint64_t seed, DType dt = DType::i64) {
  Generator g(seed);
  Tensor t = Tensor::empty({n}, dt);
  for (int64_t i = 0; i < n; ++i) t.set({i}, static_cast<double>(g.next_u64() % static_cast<uint64_t>(v)));
  return t;
}
void check_grad(const F& f, const std::vector<Tensor>& in, autograd::GradcheckOptions opt = {}) {
  auto r = gradcheck(f, in, opt);
  CHECK_MESSAGE(r.ok, r.message);
}
const int64_t kSizes[] = {0, 1, 3, 15, 16, 17, 33, 1000, 100003};
}  // namespace

TEST_CASE("activation kernels match the reference on odd sizes, forward and backward") {
  using kernels::Activation;
  for (int64_t n : kSizes) {
    CAPTURE(n);
    Tensor x = uniform({n}, 1, -12.0f, 12.0f), y = uniform({n}, 2), g = uniform({n}, 3);
    Tensor a = Tensor::empty({n}), b = Tensor::empty({n}), a2 = Tensor::empty({n}), b2 = Tensor::empty({n});
    for (Activation op : {Activation::sigmoid, Activation::gelu}) {
      kernels::activation_f32(op, x.data<float>(), a.data<float>(), n);
      kernels::ref::activation_f32(op, x.data<float>(), b.data<float>(), n);
      CHECK(max_err(a, b) < 2e-6);
      const Tensor& s = op == Activation::sigmoid ? b : x;  // σ's backward takes the output
      kernels::activation_bwd_f32(op, s.data<float>(), g.data<float>(), a.data<float>(), n);
      kernels::ref::activation_bwd_f32(op, s.data<float>(), g.data<float>(), b.data<float>(), n);
      CHECK(max_err(a, b) < 2e-6);
    }
    kernels::clamp_f32(x.data<float>(), -2.0f, 3.0f, a.data<float>(), n);
    kernels::ref::clamp_f32(x.data<float>(), -2.0f, 3.0f, b.data<float>(), n);
    CHECK(max_err(a, b) == 0);
    kernels::clamp_bwd_f32(x.data<float>(), -2.0f, 3.0f, g.data<float>(), a.data<float>(), n);
    kernels::ref::clamp_bwd_f32(x.data<float>(), -2.0f, 3.0f, g.data<float>(), b.data<float>(), n);
    CHECK(max_err(a, b) == 0);
    kernels::sigmoid_mul_f32(x.data<float>(), y.data<float>(), a.data<float>(), n);
    kernels::ref::sigmoid_mul_f32(x.data<float>(), y.data<float>(), b.data<float>(), n);
    CHECK(max_err(a, b) < 2e-6);
    kernels::sigmoid_mul_bwd_f32(x.data<float>(), y.data<float>(), g.data<float>(), a.data<float>(), a2.data<float>(), n);
    kernels::ref::sigmoid_mul_bwd_f32(x.data<float>(), y.data<float>(), g.data<float>(), b.data<float>(), b2.data<float>(), n);
    CHECK(max_err(a, b) < 2e-6);
    CHECK(max_err(a2, b2) < 2e-6);
  }
  // Saturation: no NaN or inf at the extremes.
  Tensor x = Tensor::from_vector(std::vector<float>{-1e30f, -100.0f, -88.5f, 0.0f, 88.5f, 100.0f, 1e30f}, {7});
  for (const Tensor& y : {ops::sigmoid(x), ops::gelu(x), ops::sigmoid_mul(x, x)})
    for (float v : y.to_vector()) CHECK(std::isfinite(v));
  CHECK(ops::sigmoid(x).at({0}) < 1e-38f);
  CHECK(ops::sigmoid(x).at({6}) == 1.0f);
  CHECK(ops::gelu(x).at({6}) == 1e30f);
  // gelu's backward far below 0: exactly 0 below -8 (|gelu'(-8)| = 4.8e-20;
  // σ(2u) would be subnormal from -10), no subnormal result anywhere.
  const Tensor w = Tensor::from_vector(std::vector<float>{-1e30f, -40.0f, -10.5f, -8.01f, -8.0f, -6.0f, -3.0f}, {7});
  const Tensor gw = Tensor::full({7}, 1e-3);
  Tensor dw = Tensor::empty({7}), rw = Tensor::empty({7});
  kernels::activation_bwd_f32(kernels::Activation::gelu, w.data<float>(), gw.data<float>(), dw.data<float>(), 7);
  kernels::ref::activation_bwd_f32(kernels::Activation::gelu, w.data<float>(), gw.data<float>(), rw.data<float>(), 7);
  const std::vector<float> dv = dw.to_vector();
  for (int i = 0; i < 4; ++i) CHECK(dv[static_cast<size_t>(i)] == 0.0f);
  for (float v : dv) CHECK((v == 0.0f || std::fabs(v) >= 1.17549435e-38f));
  CHECK(dv[4] != 0.0f);
  CHECK(max_err(dw, rw) < 2e-6);
}

TEST_CASE("sigmoid_mul over rows of a wider y equals the contiguous kernels on a copy, bit for bit, 1 or 2 threads") {
  // Rows of odd widths (vector tails in every row), a slice in the middle of
  // a buffer 3 columns wider; enough rows for several tasks; empty.
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{700, 37}, {3000, 512}, {5, 1}, {0, 9}}) {
    CAPTURE(rows);
    CAPTURE(cols);
    const int64_t ld = cols + 3;
    const Tensor wide = uniform({rows, ld}, 4, -2.0f, 2.0f), x = uniform({rows, cols}, 5, -9.0f, 9.0f);
    const Tensor g = uniform({rows, cols}, 6);
    const Tensor y = ops::slice(wide, 1, 1, 1 + cols).contiguous();
    const float* ys = wide.data<float>() + 1;
    Tensor want = Tensor::empty({rows, cols}), wdx = Tensor::empty({rows, cols}), wdy = Tensor::empty({rows, cols});
    kernels::sigmoid_mul_f32(x.data<float>(), y.data<float>(), want.data<float>(), rows * cols);
    kernels::sigmoid_mul_bwd_f32(x.data<float>(), y.data<float>(), g.data<float>(), wdx.data<float>(),
                                 wdy.data<float>(), rows * cols);
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      Tensor out = Tensor::full({rows, cols}, 7.0), dx = Tensor::full({rows, cols}, 7.0);
      Tensor dy = Tensor::full({rows, cols}, 7.0), dx2 = Tensor::full({rows, cols}, 7.0);
      kernels::sigmoid_mul_rows_f32(x.data<float>(), ys, ld, out.data<float>(), rows, cols);
      kernels::sigmoid_mul_bwd_rows_f32(x.data<float>(), ys, ld, g.data<float>(), dx.data<float>(), dy.data<float>(),
                                        rows, cols);
      kernels::sigmoid_mul_bwd_rows_f32(x.data<float>(), ys, ld, g.data<float>(), dx2.data<float>(), nullptr, rows,
                                        cols);
      CHECK(test_util::bit_equal(out, want));
      CHECK(test_util::bit_equal(dx, wdx));
      CHECK(test_util::bit_equal(dy, wdy));
      CHECK(test_util::bit_equal(dx2, wdx));
    }
    set_num_threads(0);
    Tensor r = Tensor::empty({rows, cols});
    kernels::ref::sigmoid_mul_rows_f32(x.data<float>(), ys, ld, r.data<float>(), rows, cols);
    CHECK(max_err(want, r) < 2e-6);
  }
}

TEST_CASE("outputs above 24 MiB (non-temporal stores) match the reference, rows not vector-aligned") {
  const int64_t rows = 6300, d = 1001;  // 24.06 MiB per tensor
  Tensor x = uniform({rows, d}, 8, -6.0f, 6.0f), y = uniform({rows, d}, 9), w = uniform({d}, 10);
  Tensor a = Tensor::empty({rows, d}), b = Tensor::empty({rows, d});
  const int64_t n = rows * d;
  kernels::activation_f32(kernels::Activation::gelu, x.data<float>(), a.data<float>(), n);
  kernels::ref::activation_f32(kernels::Activation::gelu, x.data<float>(), b.data<float>(), n);
  CHECK(max_err(a, b) < 2e-6);
  kernels::sigmoid_mul_f32(x.data<float>(), y.data<float>(), a.data<float>(), n);
  kernels::ref::sigmoid_mul_f32(x.data<float>(), y.data<float>(), b.data<float>(), n);
  CHECK(max_err(a, b) < 2e-6);
  kernels::rmsnorm_f32(x.data<float>(), w.data<float>(), 1e-6f, a.data<float>(), nullptr, rows, d);
  kernels::ref::rmsnorm_f32(x.data<float>(), w.data<float>(), 1e-6f, b.data<float>(), nullptr, rows, d);
  CHECK(max_err(a, b) < 2e-6);
  kernels::softmax_f32(x.data<float>(), nullptr, 0, a.data<float>(), rows, d);
  kernels::ref::softmax_f32(x.data<float>(), nullptr, 0, b.data<float>(), rows, d);
  CHECK(max_err(a, b) < 1e-6);
}

TEST_CASE("activations: values and gradient checks") {
  Tensor x = param({4, 7}, 5, -3.0f, 3.0f), y = param({4, 7}, 6);
  CHECK(ops::sigmoid(x).at({1, 2}) == doctest::Approx(1.0 / (1.0 + std::exp(-x.at({1, 2})))));
  const double v = x.at({2, 3});
  CHECK(ops::gelu(x).at({2, 3}) ==
        doctest::Approx(0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))).epsilon(1e-5));
  // σ over its whole normal range: relative error of the bounded exp it uses
  // (exp(-x) up to exp(87)) stays within a few ulp.
  {
    std::vector<float> sweep;
    for (int i = 0; i <= 100000; ++i) sweep.push_back(-87.0f + 174.0f * static_cast<float>(i) / 100000.0f);
    const std::vector<float> s = ops::sigmoid(Tensor::from_vector(sweep, {100001})).to_vector();
    double worst = 0;
    for (size_t i = 0; i < sweep.size(); ++i) {
      const double want = 1.0 / (1.0 + std::exp(-static_cast<double>(sweep[i])));
      worst = std::max(worst, std::fabs(s[i] - want) / want);
    }
    CHECK(worst < 4e-7);
  }
  check_grad([](auto& in) { return ops::sigmoid(in[0]); }, {x});
  check_grad([](auto& in) { return ops::gelu(in[0]); }, {x});
  check_grad([](auto& in) { return ops::sigmoid_mul(in[0], in[1]); }, {x, y});
  // Only one input requiring grad.
  Tensor yc = y.detach();
  check_grad([yc](auto& in) { return ops::sigmoid_mul(in[0], yc); }, {x});
  // clamp: values kept away from the bounds (finite differences straddle them otherwise).
  std::vector<float> cv;
  for (float f : x.to_vector()) cv.push_back(std::fabs(f - 1.0f) < 0.05f || std::fabs(f + 0.5f) < 0.05f ? f + 0.2f : f);
  Tensor c = Tensor::from_vector(cv, {4, 7}).set_requires_grad();
  check_grad([](auto& in) { return ops::clamp(in[0], -0.5f, 1.0f); }, {c});
  c.zero_grad();
  autograd::backward(ops::sum(ops::clamp(c, -0.5f, 1.0f)));
  for (int64_t i = 0; i < 28; ++i) {
    const float xi = cv[static_cast<size_t>(i)];
    CHECK(c.grad().flat_at(i) == ((-0.5f < xi && xi < 1.0f) ? 1.0f : 0.0f));
  }
  // The backward keeps clamp's output: the gradient passes strictly inside
  // the bounds only, as from the input, at the bounds, beyond them, at ±inf
  // and at NaN alike.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> edge{-0.5f, 1.0f, -0.49999997f, 0.99999994f, -0.50000006f, 1.0000001f, inf, -inf, nan, 0.25f};
  Tensor e = Tensor::from_vector(edge, {10}).set_requires_grad();
  autograd::backward(ops::sum(ops::clamp(e, -0.5f, 1.0f)));
  const std::vector<float> want_edge{0, 0, 1, 1, 0, 0, 0, 0, 0, 1};
  CHECK(e.grad().to_vector() == want_edge);
  // Non-contiguous input goes through a contiguous copy.
  Tensor t = uniform({5, 3}, 7).transpose(0, 1);
  CHECK(max_err(ops::gelu(t), ops::gelu(t.contiguous())) == 0);
  check_grad([](auto& in) { return ops::sigmoid(ops::transpose(in[0], 0, 1)); }, {x});
}

TEST_CASE("rmsnorm kernel matches the reference, forward and backward") {
  for (auto [rows, d] : {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {5, 1000}, {2, 33}, {0, 4}, {4, 0}, {300, 16}}) {
    CAPTURE(rows);
    CAPTURE(d);
    Tensor x = uniform({rows, d}, 11, -2.0f, 2.0f), w = uniform({d}, 12), g = uniform({rows, d}, 13);
    Tensor y1 = Tensor::empty({rows, d}), y2 = Tensor::empty({rows, d}), r1 = Tensor::empty({rows}),
           r2 = Tensor::empty({rows});
    kernels::rmsnorm_f32(x.data<float>(), w.data<float>(), 1e-5f, y1.data<float>(), r1.data<float>(), rows, d);
    kernels::ref::rmsnorm_f32(x.data<float>(), w.data<float>(), 1e-5f, y2.data<float>(), r2.data<float>(), rows, d);
    CHECK(max_err(y1, y2) < 2e-6);
    CHECK(max_err(r1, r2) < 2e-6);
    Tensor dx1 = Tensor::empty({rows, d}), dx2 = Tensor::empty({rows, d}), dw1 = Tensor::empty({d}),
           dw2 = Tensor::empty({d});
    kernels::rmsnorm_bwd_f32(x.data<float>(), w.data<float>(), r2.data<float>(), g.data<float>(), dx1.data<float>(),
                             dw1.data<float>(), rows, d);
    kernels::ref::rmsnorm_bwd_f32(x.data<float>(), w.data<float>(), r2.data<float>(), g.data<float>(),
                                  dx2.data<float>(), dw2.data<float>(), rows, d);
    CHECK(max_err(dx1, dx2) < 1e-5);
    CHECK(max_err(dw1, dw2) < 1e-5);
  }
}

TEST_CASE("rmsnorm: gradient checks and thread-count-independent dw") {
  Tensor x = param({2, 3, 8}, 14), w = param({8}, 15, 0.5f, 1.5f);
  check_grad([](auto& in) { return ops::rmsnorm(in[0], in[1], 1e-6f); }, {x, w});
  Tensor xc = x.detach();
  check_grad([xc](auto& in) { return ops::rmsnorm(xc, in[0]); }, {w});
  CHECK(ops::rmsnorm(Tensor::zeros({0, 5}), Tensor::ones({5})).shape() == Shape{0, 5});

  Tensor big = param({4099, 67}, 16), wb = param({67}, 17), g = uniform({4099, 67}, 18);
  Tensor dw[2], dx[2];
  for (int t : {1, 2}) {
    set_num_threads(t);
    big.zero_grad(), wb.zero_grad();
    autograd::backward(ops::rmsnorm(big, wb), g);
    dw[t - 1] = wb.grad(), dx[t - 1] = big.grad();
  }
  set_num_threads(0);
  CHECK(bit_equal(dw[0], dw[1]));
  CHECK(bit_equal(dx[0], dx[1]));
}

TEST_CASE("softmax kernel matches the reference, with and without masks") {
  for (auto [rows, n] : {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {5, 1000}, {7, 33}, {0, 4}, {64, 16}}) {
    CAPTURE(rows);
    CAPTURE(n);
    Tensor x = uniform({rows, n}, 21, -20.0f, 20.0f), g = uniform({rows, n}, 22);
    Tensor a = Tensor::empty({rows, n}), b = Tensor::empty({rows, n});
    kernels::softmax_f32(x.data<float>(), nullptr, 0, a.data<float>(), rows, n);
    kernels::ref::softmax_f32(x.data<float>(), nullptr, 0, b.data<float>(), rows, n);
    CHECK(max_err(a, b) < 1e-6);
    Tensor da = Tensor::empty({rows, n}), db = Tensor::empty({rows, n});
    kernels::softmax_bwd_f32(b.data<float>(), g.data<float>(), da.data<float>(), rows, n);
    kernels::ref::softmax_bwd_f32(b.data<float>(), g.data<float>(), db.data<float>(), rows, n);
    CHECK(max_err(da, db) < 1e-6);
    // A [3, n] mask repeating over the rows; its row 1 excludes everything.
    Tensor m = Tensor::empty({3, n}, DType::u8);
    Generator gm(23);
    for (int64_t k = 0; k < 3 * n; ++k) m.data<uint8_t>()[k] = (k / n == 1) ? 0 : (gm.next_u64() % 3 != 0) * 7;
    kernels::softmax_f32(x.data<float>(), m.data<uint8_t>(), 3, a.data<float>(), rows, n);
    kernels::ref::softmax_f32(x.data<float>(), m.data<uint8_t>(), 3, b.data<float>(), rows, n);
    CHECK(max_err(a, b) < 1e-6);
  }
  // Rows of -inf only (0 out) first, inside and last of the rows one task
  // pipelines, and a NaN row (NaN out) that does not spill into its neighbours.
  const int64_t rows = 6, n = 37;
  std::vector<float> v(rows * n);
  Generator gv(24);
  for (float& f : v) f = static_cast<float>(gv.next_u64() % 1000) / 50.0f - 10.0f;
  for (int64_t r : {0, 3, 5})
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(r * n + i)] = -std::numeric_limits<float>::infinity();
  v[static_cast<size_t>(1 * n + 5)] = std::nanf("");
  Tensor x = Tensor::from_vector(v, {rows, n}), a = Tensor::empty({rows, n}), b = Tensor::empty({rows, n});
  kernels::softmax_f32(x.data<float>(), nullptr, 0, a.data<float>(), rows, n);
  kernels::ref::softmax_f32(x.data<float>(), nullptr, 0, b.data<float>(), rows, n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const float got = a.at({r, i}), want = b.at({r, i});
      if (r == 1) CHECK(std::isnan(got));
      else if (r == 0 || r == 3 || r == 5) CHECK(got == 0.0f);
      else CHECK(std::fabs(got - want) < 1e-6);
    }
}

TEST_CASE("softmax: values, masks, fully masked rows and gradient checks") {
  Tensor x = param({2, 3, 5}, 24, -3.0f, 3.0f);
  Tensor p = ops::softmax(x);
  for (int64_t r = 0; r < 6; ++r) {
    double s = 0;
    for (int64_t i = 0; i < 5; ++i) s += p.flat_at(r * 5 + i);
    CHECK(s == doctest::Approx(1.0));
  }
  check_grad([](auto& in) { return ops::softmax(in[0]); }, {x});
  // f32 mask [3, 5] with its last row fully excluded.
  Tensor m = Tensor::from_vector(std::vector<float>{1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0}, {3, 5});
  Tensor pm = ops::softmax(x, m);
  CHECK(pm.at({0, 0, 1}) == 0.0f);
  CHECK(pm.at({1, 1, 3}) > 0.0f);
  for (int64_t i = 0; i < 5; ++i) CHECK(pm.at({1, 2, i}) == 0.0f);
  CHECK(max_err(pm, ops::softmax(x, m.to(DType::u8))) == 0);
  check_grad([m](auto& in) { return ops::softmax(in[0], m); }, {x});
  x.zero_grad();
  autograd::backward(ops::sum(ops::mul(ops::softmax(x, m), uniform({2, 3, 5}, 25))));
  for (int64_t i = 0; i < 5; ++i) CHECK(x.grad().at({0, 2, i}) == 0.0f);
  // Extremes, in full vectors and in the tail: -inf and gaps below
  // ln(FLT_MIN) give exactly 0, the rest matches exp in double.
  std::vector<float> ev(37);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < ev.size(); ++i) ev[i] = i % 5 == 0 ? ninf : i % 5 == 1 ? -90.0f : -0.5f * static_cast<float>(i % 7);
  ev[3] = 0.0f;
  const Tensor pe = ops::softmax(Tensor::from_vector(ev, {37}));
  double z = 0;
  for (float v : ev) z += std::exp(static_cast<double>(v));
  for (size_t i = 0; i < ev.size(); ++i) {
    if (i % 5 < 2) CHECK(pe.flat_at(static_cast<int64_t>(i)) == 0.0f);
    CHECK(pe.flat_at(static_cast<int64_t>(i)) == doctest::Approx(std::exp(static_cast<double>(ev[i])) / z).epsilon(1e-6));
  }
  // Empty tensors give empty results.
  CHECK(ops::softmax(Tensor::zeros({0, 7})).shape() == Shape{0, 7});
  CHECK(ops::softmax(Tensor::zeros({3, 0})).shape() == Shape{3, 0});
}

TEST_CASE("cross_entropy: kernel, values, ignore_index and gradient checks") {
  for (auto [rows, v] : {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {5, 1000}, {33, 7}, {0, 5}}) {
    CAPTURE(rows);
    CAPTURE(v);
    Tensor x = uniform({rows, v}, 31, -10.0f, 10.0f);
    std::vector<int64_t> t(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) t[static_cast<size_t>(r)] = r % 4 == 3 ? -100 : (r * 7) % v;
    Tensor l1 = Tensor::empty({rows}), l2 = Tensor::empty({rows}), s1 = Tensor::empty({rows}), s2 = Tensor::empty({rows});
    kernels::cross_entropy_f32(x.data<float>(), t.data(), -100, l1.data<float>(), s1.data<float>(), rows, v);
    kernels::ref::cross_entropy_f32(x.data<float>(), t.data(), -100, l2.data<float>(), s2.data<float>(), rows, v);
    CHECK(max_err(l1, l2) < 1e-6);
    Tensor d1 = Tensor::empty({rows, v}), d2 = Tensor::empty({rows, v});
    kernels::cross_entropy_bwd_f32(x.data<float>(), t.data(), -100, s2.data<float>(), 0.25f, d1.data<float>(), rows, v);
    kernels::ref::cross_entropy_bwd_f32(x.data<float>(), t.data(), -100, s2.data<float>(), 0.25f, d2.data<float>(), rows, v);
    CHECK(max_err(d1, d2) < 1e-6);
  }
  Tensor x = param({4, 6}, 32, -2.0f, 2.0f);
  Tensor t32 = Tensor::from_vector(std::vector<int32_t>{2, -1, 5, 0}, {4});
  // By hand: mean over the three kept rows of lse - x[t].
  double want = 0;
  for (int64_t r : {0, 2, 3}) {
    double s = 0;
    for (int64_t i = 0; i < 6; ++i) s += std::exp(x.at({r, i}));
    want += std::log(s) - x.at({r, static_cast<int64_t>(t32.at({r}))});
  }
  Tensor loss = ops::cross_entropy(x, t32);
  CHECK(loss.shape() == Shape{});
  CHECK(loss.item() == doctest::Approx(want / 3).epsilon(1e-5));
  CHECK(ops::cross_entropy(x, t32.to(DType::i64)).item() == loss.item());
  check_grad([t32](auto& in) { return ops::cross_entropy(in[0], t32); }, {x});
  Tensor t64 = Tensor::from_vector(std::vector<int64_t>{-100, 3, -100, 1}, {4});
  check_grad([t64](auto& in) { return ops::cross_entropy(in[0], t64, -100); }, {x});
  // Every target ignored: loss 0, gradient 0. Huge logits stay finite.
  Tensor all = Tensor::full({4}, -1.0, DType::i32);
  CHECK(ops::cross_entropy(x, all).item() == 0.0f);
  x.zero_grad();
  autograd::backward(ops::cross_entropy(x, all));
  for (float g : x.grad().to_vector()) CHECK(g == 0.0f);
  Tensor hx = Tensor::from_vector(std::vector<float>{1e4f, -1e4f, 0.0f}, {1, 3});
  CHECK(ops::cross_entropy(hx, Tensor::from_vector(std::vector<int32_t>{1}, {1})).item() == doctest::Approx(2e4));
  CHECK(ops::cross_entropy(Tensor::zeros({0, 5}), Tensor::zeros({0}, DType::i64)).item() == 0.0f);
}

TEST_CASE("concat and split: values, views, every axis, gradient checks") {
  Tensor a = param({2, 3, 4}, 41), b = param({2, 1, 4}, 42), c = param({2, 5, 4}, 43);
  Tensor cat = ops::concat({a, b, c}, 1);
  CHECK(cat.shape() == Shape{2, 9, 4});
  CHECK(cat.at({1, 3, 2}) == b.at({1, 0, 2}));
  CHECK(cat.at({1, 8, 3}) == c.at({1, 4, 3}));
  for (int64_t axis : {0, 1, 2, -1}) {
    CAPTURE(axis);
    Tensor x = param({3, 4, 5}, 44);
    const int64_t n = x.size(axis);
    auto parts = ops::split(x, {1, n - 3, 0, 2}, axis);
    REQUIRE(parts.size() == 4);
    CHECK(parts[1].impl()->storage == x.impl()->storage);  // views
    CHECK(max_err(ops::concat(parts, axis), x) == 0);
    Tensor y = param(parts[1].shape(), 45);
    check_grad([axis](auto& in) { return ops::concat({in[0], in[1], in[0]}, axis); }, {x, y});
    check_grad(
        [axis, n](auto& in) {
          auto p = ops::split(in[0], {1, n - 3, 2}, axis);
          return ops::concat({ops::mul(p[2], p[2]), p[0]}, axis);  // p[1] unused: zero gradient
        },
        {x});
    // One part spanning the axis, the others empty (memory's chunk split):
    // its gradient passes through.
    check_grad([axis, n](auto& in) { return ops::mul(ops::split(in[0], {0, n, 0}, axis)[1], in[0]); }, {x});
  }
  // Non-contiguous and non-f32 inputs, empty parts.
  Tensor t = uniform({4, 3}, 46).transpose(0, 1);
  CHECK(max_err(ops::concat({t, t}, 0), ops::concat({t.contiguous(), t.contiguous()}, 0)) == 0);
  Tensor i1 = Tensor::from_vector(std::vector<int32_t>{1, 2}, {2}), i2 = Tensor::from_vector(std::vector<int32_t>{3}, {1});
  CHECK(ops::concat({i1, i2}, 0).to_vector() == std::vector<float>{1, 2, 3});
  CHECK(ops::concat({Tensor::zeros({0, 3}), Tensor::ones({2, 3})}, 0).shape() == Shape{2, 3});
  CHECK(ops::split(Tensor::zeros({0, 4}), {1, 3}, 1)[1].shape() == Shape{0, 3});
}

TEST_CASE("embedding: kernel, values, gradient checks and deterministic scatter-add") {
  for (auto [n, v, d] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {17, 3, 5}, {1000, 50, 33}, {0, 4, 8}}) {
    Tensor w = uniform({v, d}, 51), g = uniform({n, d}, 52);
    Tensor ids = ids_tensor(n, v, 53);
    const int64_t* id = ids.data<int64_t>();
    Tensor o1 = Tensor::empty({n, d}), o2 = Tensor::empty({n, d});
    kernels::embedding_f32(w.data<float>(), d, id, n, o1.data<float>());
    kernels::ref::embedding_f32(w.data<float>(), d, id, n, o2.data<float>());
    CHECK(max_err(o1, o2) == 0);
    Tensor d1 = Tensor::empty({v, d}), d2 = Tensor::empty({v, d});
    kernels::embedding_bwd_f32(g.data<float>(), id, n, d, v, d1.data<float>());
    kernels::ref::embedding_bwd_f32(g.data<float>(), id, n, d, v, d2.data<float>());
    CHECK(max_err(d1, d2) < 1e-5);
  }
  Tensor w = param({7, 5}, 54);
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{3, 0, 3, 6, 3, 1}, {2, 3});
  Tensor e = ops::embedding(w, ids);
  CHECK(e.shape() == Shape{2, 3, 5});
  CHECK(e.at({1, 0, 4}) == w.at({6, 4}));
  check_grad([ids](auto& in) { return ops::embedding(in[0], ids); }, {w});
  check_grad([ids](auto& in) { return ops::embedding(in[0], ids.to(DType::i64)); }, {w});
  CHECK(ops::embedding(w, Tensor::zeros({0}, DType::i32)).shape() == Shape{0, 5});

  // Many repeats of few ids: 1 and 2 threads give the same bits.
  Tensor wb = param({256, 64}, 55), g = uniform({20000, 64}, 56);
  Tensor big_ids = ids_tensor(20000, 256, 57, DType::i32);
  Tensor dw[2];
  for (int t : {1, 2}) {
    set_num_threads(t);
    wb.zero_grad();
    autograd::backward(ops::embedding(wb, big_ids), g);
    dw[t - 1] = wb.grad();
  }
  set_num_threads(0);
  CHECK(bit_equal(dw[0], dw[1]));
}

TEST_CASE("sum/mean over an axis: chunked and blocked kernel paths against the reference") {
  for (Shape s : {Shape{1, 100003, 1}, Shape{3, 70001, 1}, Shape{1, 3000, 600}, Shape{2, 5000, 3}, Shape{9, 17, 1025},
                  Shape{4099, 3, 5}, Shape{1, 1, 1}, Shape{3, 0, 2}}) {
    CAPTURE(s);
    Tensor x = uniform(s, 61, 0.0f, 1.0f);
    Tensor a = Tensor::empty({s[0], s[2]}), b = Tensor::empty({s[0], s[2]});
    kernels::sum_axis_f32(x.data<float>(), s[0], s[1], s[2], 0.5f, a.data<float>());
    kernels::ref::sum_axis_f32(x.data<float>(), s[0], s[1], s[2], 0.5f, b.data<float>());
    CHECK(max_err(a, b) < 1e-6);
    Tensor m[2];
    for (int t : {1, 2}) {
      set_num_threads(t);
      m[t - 1] = ops::mean(x, 1);
    }
    set_num_threads(0);
    CHECK(bit_equal(m[0], m[1]));
  }
  Tensor x = param({5, 7, 3}, 62);
  check_grad([](auto& in) { return ops::mean(in[0], 0); }, {x});
}

TEST_CASE("sum over an axis with a row stride: the columns of a wider buffer, bit for bit the contiguous sum") {
  // The paths: chunks of n (outer 1), many blocks, narrow rows, an odd stride.
  for (const Shape& s : {Shape{1, 3000, 600, 2048}, Shape{9, 17, 1025, 1030}, Shape{64, 128, 2, 5}, Shape{2, 5000, 3, 7}}) {
    CAPTURE(s);
    const int64_t outer = s[0], n = s[1], inner = s[2], ld = s[3];
    const Tensor wide = uniform({outer * n, ld}, 63, -1.0f, 1.0f);
    const Tensor cols = wide.slice(1, 0, inner).contiguous();
    Tensor a = Tensor::empty({outer, inner}), b = Tensor::empty({outer, inner});
    for (int t : {1, 2}) {
      set_num_threads(t);
      kernels::sum_axis_f32(wide.data<float>(), outer, n, inner, 0.25f, a.data<float>(), nullptr,
                            kernels::SumBlockFn(), ld);
      kernels::sum_axis_f32(cols.data<float>(), outer, n, inner, 0.25f, b.data<float>());
      CHECK(bit_equal(a, b));
    }
    set_num_threads(0);
  }
  // Slabs in groups (the rows of each batch but its last, a column slice:
  // the memory's chunk means of k): few tasks (chunks of n) and many.
  for (const Shape& s : {Shape{2, 1, 3000, 600, 2048}, Shape{8, 8, 128, 512, 2048}, Shape{3, 5, 17, 7, 9}}) {
    CAPTURE(s);
    const int64_t groups = s[0], group = s[1], n = s[2], inner = s[3], ld = s[4], rows = group * n;
    const Tensor wide = uniform({groups, rows + 1, ld}, 64, -1.0f, 1.0f);
    const Tensor cols = wide.slice(1, 0, rows).slice(2, 0, inner).contiguous();
    Tensor a = Tensor::empty({groups * group, inner}), b = Tensor::empty({groups * group, inner});
    for (int t : {1, 2}) {
      set_num_threads(t);
      kernels::sum_axis_f32(wide.data<float>(), groups * group, n, inner, 0.25f, a.data<float>(), nullptr,
                            kernels::SumBlockFn(), ld, group, (rows + 1) * ld);
      kernels::sum_axis_f32(cols.data<float>(), groups * group, n, inner, 0.25f, b.data<float>());
      CHECK(bit_equal(a, b));
    }
    set_num_threads(0);
  }
  float x[8] = {};
  CHECK_THROWS_WITH_AS(kernels::sum_axis_f32(x, 1, 2, 1, 1.0f, x, nullptr, kernels::SumBlockFn(), 4),
                       doctest::Contains("row stride 4 for rows of 1"), Error);
  CHECK_THROWS_WITH_AS(kernels::sum_axis_f32(x, 4, 1, 2, 1.0f, x, nullptr, kernels::SumBlockFn(), 2, 2, 3),
                       doctest::Contains("groups of 2 slabs 3 apart do not fit 4 slabs of 1 rows 2 apart"), Error);
  // The same for expand_axis and the fused kernel's output rows.
  CHECK_THROWS_WITH_AS(kernels::expand_axis_f32(x, 1, 2, 4, 1.0f, x, 3), doctest::Contains("row stride 3 for rows of 4"),
                       Error);
  kernels::PointwiseProgram p;
  p.n = 6, p.n_in = 1, p.n_ops = 1, p.out_row = 4, p.out_ld = 8;
  p.ops[0] = {kernels::PointwiseOp::neg, 0, 0, 0, 0};
  const float* in[] = {x};
  CHECK_THROWS_WITH_AS(kernels::fused_f32(p, in, x), doctest::Contains("output rows of 4 elements 8 apart for 6"),
                       Error);
}

TEST_CASE("errors name the op, the shapes and the bad value") {
  Tensor x = Tensor::zeros({2, 3, 4});
  CHECK_THROWS_WITH_AS(ops::rmsnorm(x, Tensor::ones({5})),
                       "rmsnorm: weight shape [5] does not match last axis of x [2, 3, 4]", Error);
  CHECK_THROWS_WITH_AS(ops::rmsnorm(Tensor::zeros({2}, DType::i32), Tensor::ones({2})),
                       "rmsnorm: x must be f32, got i32 of shape [2]", Error);
  CHECK_THROWS_WITH_AS(ops::gelu(Tensor::zeros({2}, DType::i32)), "gelu: input must be f32, got i32 of shape [2]",
                       Error);
  CHECK_THROWS_WITH_AS(ops::sigmoid_mul(Tensor::zeros({2, 3}), Tensor::zeros({3, 2})),
                       "sigmoid_mul: shapes differ: x [2, 3] and y [3, 2]", Error);
  CHECK_THROWS_WITH_AS(ops::clamp(x, 1.0f, -1.0f), "clamp: lower bound 1 is above upper bound -1 (input shape [2, 3, 4])",
                       Error);
  CHECK_THROWS_WITH_AS(ops::softmax(x, Tensor::ones({3})), "softmax: mask shape [3] is not a suffix of x's shape [2, 3, 4]",
                       Error);
  CHECK_THROWS_WITH_AS(ops::softmax(x, Tensor::ones({4}, DType::i32)), "softmax: mask must be u8 or f32, got i32 of shape [4]",
                       Error);
  CHECK_THROWS_WITH_AS(ops::softmax(Tensor::zeros({})), "softmax: input must have at least one axis, got shape []", Error);
  Tensor logits = Tensor::zeros({3, 5});
  CHECK_THROWS_WITH_AS(ops::cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{0, 7, 1}, {3})),
                       "cross_entropy: target 7 at position 1 out of range for vocab 5", Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(logits, Tensor::from_vector(std::vector<int32_t>{0, 1, -2}, {3})),
                       "cross_entropy: target -2 at position 2 out of range for vocab 5", Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(logits, Tensor::zeros({3})),
                       "cross_entropy: targets must be i32 or i64, got f32 of shape [3]", Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(logits, Tensor::zeros({4}, DType::i64)),
                       "cross_entropy: targets shape [4] does not match logits [3, 5] (want [N])", Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(x, Tensor::zeros({2}, DType::i64)),
                       "cross_entropy: logits must be [N, V], got shape [2, 3, 4]", Error);
  Tensor w = Tensor::zeros({256, 8});
  std::vector<int32_t> ids{1, 2, 3, 4, 5, 300};
  CHECK_THROWS_WITH_AS(ops::embedding(w, Tensor::from_vector(ids, {6})),
                       "embedding: id 300 at position 5 out of range for vocab 256", Error);
  CHECK_THROWS_WITH_AS(ops::embedding(w, Tensor::from_vector(std::vector<int64_t>{-1}, {1})),
                       "embedding: id -1 at position 0 out of range for vocab 256", Error);
  CHECK_THROWS_WITH_AS(ops::embedding(w, Tensor::zeros({2})), "embedding: ids must be i32 or i64, got f32 of shape [2]",
                       Error);
  CHECK_THROWS_WITH_AS(ops::embedding(Tensor::zeros({8}), Tensor::zeros({2}, DType::i32)),
                       "embedding: weight must be [V, D], got shape [8]", Error);
  CHECK_THROWS_WITH_AS(ops::concat({}, 0), "concat: no inputs", Error);
  CHECK_THROWS_WITH_AS(ops::concat({Tensor::zeros({2, 3}), Tensor::zeros({3, 3})}, 1),
                       "concat: input 1 of shape [3, 3] does not match input 0 of shape [2, 3] outside axis 1", Error);
  CHECK_THROWS_WITH_AS(ops::concat({Tensor::zeros({2}), Tensor::zeros({2}, DType::i32)}, 0),
                       "concat: input 1 is i32 but input 0 is f32", Error);
  CHECK_THROWS_WITH_AS(ops::concat({Tensor::zeros({2})}, 1), "concat: axis 1 out of range for a tensor of rank 1", Error);
  CHECK_THROWS_WITH_AS(ops::split(x, {1, 2}, -1), "split: sizes [1, 2] sum to 3 but axis 2 of x [2, 3, 4] has 4", Error);
  CHECK_THROWS_WITH_AS(ops::split(x, {5, -1}, 2), "split: negative size -1 in [5, -1] for x of shape [2, 3, 4]", Error);
}
