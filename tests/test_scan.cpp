// The associative scan: kernels (both algorithms, every block size, 1 and 2
// threads) against the double-precision reference, gradients, edges, errors.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "ops/elementwise.h"
#include "ops/kernels/scan.h"
#include "ops/reduce.h"
#include "ops/scan.h"
#include "tensor/random.h"
#include "tensor/threads.h"

using namespace mmrec;
using autograd::gradcheck;
using ops::ScanMode;
using ops::ScanOptions;

namespace {
// Decays spanning (1e-6, 1 - 1e-6): the sigmoid of a wide normal.
Tensor decays(const Shape& s, Generator& g) {
  Tensor a = randn(s, g, 0.0f, 6.0f);
  float* p = a.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i)
    p[i] = std::clamp(1.0f / (1.0f + std::exp(-p[i])), 1e-6f, 1.0f - 1e-6f);
  return a;
}

// max |x - y| / (1 + |y|)
double max_err(const Tensor& x, const Tensor& y) {
  REQUIRE(x.shape() == y.shape());
  const auto u = x.to_vector(), v = y.to_vector();
  double m = 0;
  for (size_t i = 0; i < u.size(); ++i) m = std::max(m, std::fabs(double(u[i]) - v[i]) / (1.0 + std::fabs(v[i])));
  return m;
}

// Float sums over T steps drift from the double reference by ~T ulps at worst.
double tol(int64_t T) { return 1e-5 * (1.0 + static_cast<double>(T) / 1000.0); }

struct Case {
  int64_t B, T, D;
};
// Covers every T in {1, 2, 7, 128, 1000, 4097}, D in {1, 3, 16, 17, 512}, B in {1, 3, 8}.
const Case kCases[] = {{1, 1, 1}, {3, 2, 3}, {8, 7, 16}, {1, 128, 17}, {3, 1000, 3},
                       {8, 128, 17}, {1, 4097, 16}, {3, 7, 512}, {1, 1000, 512}};

std::vector<ScanOptions> variants(int64_t T) {
  std::vector<ScanOptions> v{{ScanMode::sequential, 0}, {ScanMode::automatic, 0}, {ScanMode::chunked, 0}};
  for (int64_t blk : {int64_t{1}, int64_t{7}, int64_t{64}, T}) v.push_back({ScanMode::chunked, blk});
  return v;
}

std::string label(const Case& c, const ScanOptions& o, int threads) {
  return "B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " D=" + std::to_string(c.D) +
         " mode=" + std::to_string(int(o.mode)) + " block=" + std::to_string(o.block) +
         " threads=" + std::to_string(threads);
}
}  // namespace

TEST_CASE("linear_scan kernels match the reference for both algorithms, all blocks, 1 and 2 threads") {
  Generator g(1);
  for (const Case& c : kCases) {
    const kernels::ScanShape s{c.B, c.T, c.D};
    const Shape sh{c.B, c.T, c.D}, st{c.B, c.D};
    Tensor a = decays(sh, g), b = randn(sh, g), h0 = randn(st, g), dh = randn(sh, g), dhl = randn(st, g);
    Tensor h_ref = Tensor::empty(sh), hl_ref = Tensor::empty(st);
    Tensor da_ref = Tensor::empty(sh), db_ref = Tensor::empty(sh), dh0_ref = Tensor::empty(st);
    kernels::ref::linear_scan_f32(a.data<float>(), b.data<float>(), h0.data<float>(), h_ref.data<float>(),
                                  hl_ref.data<float>(), s);
    kernels::ref::linear_scan_bwd_f32(a.data<float>(), h_ref.data<float>(), h0.data<float>(), dh.data<float>(),
                                      dhl.data<float>(), da_ref.data<float>(), db_ref.data<float>(),
                                      dh0_ref.data<float>(), s);
    for (const ScanOptions& o : variants(c.T)) {
      Tensor first_h;
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        CAPTURE(label(c, o, threads));
        auto plan = kernels::plan_scan(o, s);
        plan.stream = threads == 2;  // non-temporal stores (where D % 16 == 0) must not change a bit
        Tensor h = Tensor::empty(sh), hl = Tensor::empty(st);
        kernels::linear_scan_f32(a.data<float>(), b.data<float>(), h0.data<float>(), h.data<float>(),
                                 hl.data<float>(), s, plan);
        CHECK(max_err(h, h_ref) < tol(c.T));
        CHECK(max_err(hl, hl_ref) < tol(c.T));
        CHECK(max_err(hl, h.slice(1, c.T - 1, c.T).reshape(st)) == 0);
        // Bit-identical across thread counts unless automatic mode switched algorithms.
        if (first_h.defined()) CHECK(max_err(h, first_h) <= (o.mode == ScanMode::automatic ? tol(c.T) : 0.0));
        first_h = h;
        Tensor da = Tensor::empty(sh), db = Tensor::empty(sh), dh0 = Tensor::empty(st);
        kernels::linear_scan_bwd_f32(a.data<float>(), h_ref.data<float>(), h0.data<float>(), dh.data<float>(),
                                     dhl.data<float>(), da.data<float>(), db.data<float>(), dh0.data<float>(), s,
                                     plan);
        CHECK(max_err(da, da_ref) < tol(c.T));
        CHECK(max_err(db, db_ref) < tol(c.T));
        CHECK(max_err(dh0, dh0_ref) < tol(c.T));
        // Each gradient alone (the kernel skips what is not wanted).
        Tensor da1 = Tensor::empty(sh), db1 = Tensor::empty(sh), dh01 = Tensor::empty(st);
        kernels::linear_scan_bwd_f32(a.data<float>(), h_ref.data<float>(), nullptr, dh.data<float>(),
                                     dhl.data<float>(), nullptr, db1.data<float>(), nullptr, s, plan);
        kernels::linear_scan_bwd_f32(a.data<float>(), h_ref.data<float>(), h0.data<float>(), dh.data<float>(),
                                     dhl.data<float>(), da1.data<float>(), nullptr, dh01.data<float>(), s, plan);
        CHECK(max_err(db1, db) == 0);
        CHECK(max_err(da1, da) == 0);
        CHECK(max_err(dh01, dh0) == 0);
      }
    }
  }
  set_num_threads(0);
}

TEST_CASE("cumprod_scan kernels match the reference for both algorithms, all blocks, 1 and 2 threads") {
  Generator g(2);
  for (const Case& c : kCases) {
    const kernels::ScanShape s{c.B, c.T, c.D};
    const Shape sh{c.B, c.T, c.D};
    Tensor a = decays(sh, g), dP = randn(sh, g);
    // Decays near 1 keep P away from 0 over long stretches, so the sums are tested too.
    float* pa = a.data<float>();
    for (int64_t i = 0; i < a.numel(); i += 2) pa[i] = 1.0f - 1e-3f * (pa[i] + 1e-3f);
    Tensor P_ref = Tensor::empty(sh), da_ref = Tensor::empty(sh);
    kernels::ref::cumprod_scan_f32(a.data<float>(), P_ref.data<float>(), s);
    kernels::ref::cumprod_scan_bwd_f32(a.data<float>(), P_ref.data<float>(), dP.data<float>(), da_ref.data<float>(),
                                       s);
    for (const ScanOptions& o : variants(c.T)) {
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        CAPTURE(label(c, o, threads));
        auto plan = kernels::plan_scan(o, s);
        plan.stream = threads == 2;
        Tensor P = Tensor::empty(sh), da = Tensor::empty(sh);
        kernels::cumprod_scan_f32(a.data<float>(), P.data<float>(), s, plan);
        CHECK(max_err(P, P_ref) < tol(c.T));
        kernels::cumprod_scan_bwd_f32(a.data<float>(), P_ref.data<float>(), dP.data<float>(), da.data<float>(), s,
                                      plan);
        // da = dL / a amplifies the error of dL by up to 1e6 where a is tiny: compare a * da.
        Tensor x = Tensor::empty(sh), y = Tensor::empty(sh);
        for (int64_t i = 0; i < a.numel(); ++i) {
          x.data<float>()[i] = da.data<float>()[i] * pa[i];
          y.data<float>()[i] = da_ref.data<float>()[i] * pa[i];
        }
        CHECK(max_err(x, y) < tol(c.T));
      }
    }
  }
  set_num_threads(0);
}

TEST_CASE("cumprod_scan clamps log a to [-50, 0] and passes the gradient at the clamp boundary") {
  // a = 1 (log a = 0, the boundary): gradient passes; a > 1 or a < exp(-50): clamped, zero gradient.
  Tensor a = Tensor::from_vector(std::vector<float>{0.5f, 1.0f, 2.0f, 1e-30f, 0.5f}, {1, 5, 1}).set_requires_grad();
  Tensor P = ops::cumprod_scan(a);
  CHECK(P.at({0, 0, 0}) == doctest::Approx(0.5));
  CHECK(P.at({0, 1, 0}) == doctest::Approx(0.5));
  CHECK(P.at({0, 2, 0}) == doctest::Approx(0.5));  // log 2 clamped to 0
  CHECK(P.at({0, 3, 0}) == doctest::Approx(0.5 * std::exp(-50.0)).epsilon(1e-4));
  autograd::backward(ops::sum(P));
  const Tensor ga = a.grad();
  CHECK(ga.at({0, 1, 0}) != 0.0);
  CHECK(ga.at({0, 1, 0}) == doctest::Approx(P.at({0, 1, 0}) + P.at({0, 2, 0}) + P.at({0, 3, 0}) + P.at({0, 4, 0})));
  CHECK(ga.at({0, 2, 0}) == 0.0);
  CHECK(ga.at({0, 3, 0}) == 0.0);
}

TEST_CASE("linear_scan gradients of a, b and h0 through h and h_last") {
  Generator g(3);
  for (auto [B, T, D] : {Case{2, 7, 3}, Case{1, 5, 17}, Case{3, 1, 2}}) {
    for (const ScanOptions& o : {ScanOptions{ScanMode::sequential, 0}, ScanOptions{ScanMode::chunked, 2},
                                 ScanOptions{ScanMode::chunked, 0}}) {
      INFO("B=", B, " T=", T, " D=", D, " mode=", int(o.mode), " block=", o.block);
      Tensor a = rand_uniform({B, T, D}, g, 0.2f, 0.95f).set_requires_grad();
      Tensor b = rand_uniform({B, T, D}, g, -1.0f, 1.0f).set_requires_grad();
      Tensor h0 = rand_uniform({B, D}, g, -1.0f, 1.0f).set_requires_grad();
      auto both = [o](const std::vector<Tensor>& in) {
        auto [h, hl] = ops::linear_scan(in[0], in[1], in[2], o);
        return ops::add(ops::mean(h, 1), ops::scale(hl, 2.0f));
      };
      auto r = gradcheck(both, {a, b, h0});
      CHECK_MESSAGE(r.ok, r.message);
      auto only_last = [o](const std::vector<Tensor>& in) { return ops::linear_scan(in[0], in[1], in[2], o).second; };
      r = gradcheck(only_last, {a, b, h0});
      CHECK_MESSAGE(r.ok, r.message);
      auto no_h0 = [o](const std::vector<Tensor>& in) { return ops::linear_scan(in[0], in[1], Tensor(), o).first; };
      r = gradcheck(no_h0, {a, b});
      CHECK_MESSAGE(r.ok, r.message);
    }
  }
}

TEST_CASE("cumprod_scan gradient") {
  Generator g(4);
  for (auto [B, T, D] : {Case{2, 7, 3}, Case{1, 9, 17}}) {
    for (const ScanOptions& o : {ScanOptions{ScanMode::sequential, 0}, ScanOptions{ScanMode::chunked, 3}}) {
      Tensor a = rand_uniform({B, T, D}, g, 0.3f, 0.95f).set_requires_grad();
      auto r = gradcheck([o](const std::vector<Tensor>& in) { return ops::cumprod_scan(in[0], o); }, {a});
      CHECK_MESSAGE(r.ok, r.message);
    }
  }
}

TEST_CASE("linear_scan on views, with h0 undefined, and only some inputs requiring grad") {
  Generator g(5);
  Tensor a = rand_uniform({4, 3, 2}, g, 0.2f, 0.9f), b = rand_uniform({4, 3, 2}, g);
  // A transposed view [2, 3, 4] is made contiguous by the builder.
  Tensor at = a.transpose(0, 2), bt = b.transpose(0, 2);
  auto [h, hl] = ops::linear_scan(at, bt);
  auto [h2, hl2] = ops::linear_scan(at.contiguous(), bt.contiguous(), Tensor::zeros({2, 4}));
  CHECK(max_err(h, h2) == 0);
  CHECK(max_err(hl, hl2) == 0);
  Tensor bb = b.clone().set_requires_grad();
  autograd::backward(ops::sum(ops::linear_scan(a, bb).first));
  CHECK(bb.grad().defined());
  CHECK(bb.grad().shape() == Shape{4, 3, 2});
  CHECK(autograd::tape_size() == 0);
}

TEST_CASE("empty scans: T = 0 gives h_last = h0; B = 0 and D = 0") {
  Tensor a = Tensor::empty({2, 0, 3}).set_requires_grad(), b = Tensor::empty({2, 0, 3}).set_requires_grad();
  Tensor h0 = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}).set_requires_grad();
  for (ScanMode m : {ScanMode::sequential, ScanMode::chunked, ScanMode::automatic}) {
    auto [h, hl] = ops::linear_scan(a, b, h0, {m, 0});
    CHECK(h.shape() == Shape{2, 0, 3});
    CHECK(max_err(hl, h0) == 0);
    h0.zero_grad();
    autograd::backward(ops::sum(hl));
    CHECK(max_err(h0.grad(), Tensor::ones({2, 3})) == 0);
    auto [h1, hl1] = ops::linear_scan(Tensor::empty({2, 0, 3}), Tensor::empty({2, 0, 3}), Tensor(), {m, 0});
    CHECK(max_err(hl1, Tensor::zeros({2, 3})) == 0);
    CHECK(ops::cumprod_scan(Tensor::empty({2, 0, 3}), {m, 0}).shape() == Shape{2, 0, 3});
    CHECK(ops::linear_scan(Tensor::empty({0, 5, 3}), Tensor::empty({0, 5, 3}), Tensor(), {m, 0}).second.shape() ==
          Shape{0, 3});
    CHECK(ops::linear_scan(Tensor::empty({2, 5, 0}), Tensor::empty({2, 5, 0}), Tensor(), {m, 0}).first.shape() ==
          Shape{2, 5, 0});
    CHECK(ops::cumprod_scan(Tensor::empty({2, 5, 0}), {m, 0}).shape() == Shape{2, 5, 0});
  }
}

TEST_CASE("automatic mode: sequential on one thread or when B*D fills the cores, chunked for long thin scans") {
  set_num_threads(1);
  CHECK_FALSE(kernels::plan_scan({}, {1, 65536, 64}).chunked);
  set_num_threads(2);
  CHECK(kernels::plan_scan({}, {1, 65536, 64}).chunked);
  CHECK_FALSE(kernels::plan_scan({}, {8, 1024, 512}).chunked);
  CHECK_FALSE(kernels::plan_scan({}, {1, 16, 64}).chunked);
  CHECK(kernels::plan_scan({ScanMode::chunked, 7}, {8, 1024, 512}).block == 7);
  set_num_threads(0);
}

TEST_CASE("scan errors name the op and the shapes") {
  Tensor a = Tensor::zeros({2, 3, 4}), b = Tensor::zeros({2, 3, 5});
  CHECK_THROWS_WITH_AS(ops::linear_scan(a, b), "linear_scan: b shape [2, 3, 5] does not match a [2, 3, 4]", Error);
  CHECK_THROWS_WITH_AS(ops::linear_scan(Tensor::zeros({3, 4}), Tensor::zeros({3, 4})),
                       "linear_scan: a must be 3-D [B, T, D], got shape [3, 4]", Error);
  CHECK_THROWS_WITH_AS(ops::linear_scan(a, a, Tensor::zeros({2, 5})),
                       "linear_scan: h0 shape [2, 5] does not match [B, D] = [2, 4] of a [2, 3, 4]", Error);
  CHECK_THROWS_WITH_AS(ops::linear_scan(a.to(DType::bf16), a),
                       "linear_scan: a must be f32, got bf16 of shape [2, 3, 4]", Error);
  CHECK_THROWS_WITH_AS(ops::linear_scan(a, a, Tensor::zeros({2, 4}, DType::i32)),
                       "linear_scan: h0 must be f32, got i32 of shape [2, 4]", Error);
  CHECK_THROWS_WITH_AS(ops::linear_scan(a, Tensor()), "linear_scan: b is undefined", Error);
  CHECK_THROWS_WITH_AS(ops::linear_scan(a, a, Tensor(), {ScanMode::chunked, -1}),
                       "linear_scan: block must be >= 0, got -1", Error);
  CHECK_THROWS_WITH_AS(ops::cumprod_scan(Tensor::zeros({5})), "cumprod_scan: a must be 3-D [B, T, D], got shape [5]",
                       Error);
  CHECK_THROWS_WITH_AS(ops::cumprod_scan(Tensor::zeros({1, 2, 3}, DType::i64)),
                       "cumprod_scan: a must be f32, got i64 of shape [1, 2, 3]", Error);
}
