// First ops: forward against scalar references, gradient checks, errors.
#include <doctest/doctest.h>

#include "test_util.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "ops/elementwise.h"
#include "ops/kernels/convert.h"
#include "ops/kernels/elementwise.h"
#include "ops/kernels/matmul.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "ops/view.h"
#include "tensor/random.h"
#include "tensor/threads.h"

using namespace mmrec;
using test_util::param;
using test_util::max_abs_diff;
using autograd::gradcheck;

TEST_CASE("f32 <-> bf16 kernels equal the scalar conversions bit for bit, special values included") {
  // Ties (both ways), NaNs (quiet and signalling, both signs), infinities,
  // zeros, subnormals, the largest finite values, then random bits; sizes
  // that leave vector tails and one that runs in tasks.
  std::vector<uint32_t> bits = {0x3f808000u, 0x3f818000u, 0x3f80c000u, 0x7fc00000u, 0x7f800001u, 0xffa00000u,
                                0x7f800000u, 0xff800000u, 0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu,
                                0x7f7fffffu, 0xff7fffffu, 0x7f7f8000u, 0x3f7fffffu};
  uint32_t state = 12345;
  while (bits.size() < 200003) {
    state = state * 1664525u + 1013904223u;
    bits.push_back(state ^ (state >> 7));
  }
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{16}, size_t{17}, size_t{200003}}) {
    std::vector<float> x(n), back(n);
    std::vector<uint16_t> got(n), want(n);
    if (n > 0) std::memcpy(x.data(), bits.data(), n * sizeof(float));
    kernels::f32_to_bf16(x.data(), got.data(), static_cast<int64_t>(n));
    for (size_t i = 0; i < n; ++i) want[i] = f32_to_bf16_bits(x[i]);
    CHECK(got == want);
    kernels::bf16_to_f32(got.data(), back.data(), static_cast<int64_t>(n));
    bool same = true;
    for (size_t i = 0; i < n; ++i) {
      const float w = bf16_bits_to_f32(want[i]);
      same = same && std::memcmp(&back[i], &w, sizeof w) == 0;
    }
    CHECK(same);
  }
}

TEST_CASE("elementwise kernels match the scalar reference on odd sizes") {
  using kernels::BinaryOp;
  using kernels::UnaryOp;
  Generator g(1);
  for (int64_t n : {0, 1, 3, 15, 16, 17, 1000, 100003}) {
    Tensor a = rand_uniform({n}, g, 0.1f, 2.0f), b = rand_uniform({n}, g, 0.1f, 2.0f);
    Tensor o1 = Tensor::empty({n}), o2 = Tensor::empty({n});
    for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
      kernels::binary_f32(op, a.data<float>(), n, b.data<float>(), n, o1.data<float>(), n);
      kernels::ref::binary_f32(op, a.data<float>(), n, b.data<float>(), n, o2.data<float>(), n);
      CHECK(max_abs_diff(o1, o2) <= 1e-6);
    }
    for (UnaryOp op : {UnaryOp::neg, UnaryOp::exp, UnaryOp::log}) {
      kernels::unary_f32(op, a.data<float>(), o1.data<float>(), n);
      kernels::ref::unary_f32(op, a.data<float>(), o2.data<float>(), n);
      CHECK(max_abs_diff(o1, o2) <= 1e-5);
    }
  }
  // Broadcast of a row of 17 over 5 rows.
  Tensor a = rand_uniform({5, 17}, g), b = rand_uniform({17}, g);
  Tensor o1 = Tensor::empty({5, 17}), o2 = Tensor::empty({5, 17});
  kernels::binary_f32(BinaryOp::mul, a.data<float>(), 85, b.data<float>(), 17, o1.data<float>(), 85);
  kernels::ref::binary_f32(BinaryOp::mul, a.data<float>(), 85, b.data<float>(), 17, o2.data<float>(), 85);
  CHECK(max_abs_diff(o1, o2) == 0);
}

TEST_CASE("binary ops broadcast over leading axes, forward and backward") {
  Tensor a = param({2, 3, 5}, 1), b = param({5}, 2), c = param({3, 5}, 3);
  Tensor pos = param({2, 3, 5}, 4, 0.5f, 2.0f), bpos = param({5}, 5, 0.5f, 2.0f);
  Tensor s = ops::add(a, b);
  CHECK(s.shape() == Shape{2, 3, 5});
  CHECK(s.at({1, 2, 4}) == doctest::Approx(a.at({1, 2, 4}) + b.at({4})));
  CHECK(ops::add(b, a).shape() == Shape{2, 3, 5});
  using F = autograd::Function;
  const std::vector<std::pair<const char*, F>> cases = {
      {"add", [](auto& in) { return ops::add(in[0], in[1]); }},
      {"sub", [](auto& in) { return ops::sub(in[0], in[1]); }},
      {"mul", [](auto& in) { return ops::mul(in[0], in[1]); }},
      {"div", [](auto& in) { return ops::div(in[0], in[1]); }},
  };
  for (auto& [name, f] : cases) {
    CAPTURE(name);
    for (auto [x, y] : {std::pair{a, pos}, std::pair{a, bpos}, std::pair{c, pos}, std::pair{bpos, a}}) {
      if (std::string(name) == "div" && !y.same(pos) && !y.same(bpos)) continue;
      auto r = gradcheck(f, {x, y});
      CHECK_MESSAGE(r.ok, r.message);
    }
  }
}

TEST_CASE("unary ops and scalars: gradient checks") {
  Tensor x = param({4, 7}, 9), p = param({4, 7}, 10, 0.2f, 3.0f);
  using F = autograd::Function;
  for (auto& f : std::vector<F>{
           [](auto& in) { return ops::neg(in[0]); },
           [](auto& in) { return ops::exp(in[0]); },
           [](auto& in) { return ops::scale(in[0], -1.5f); },
           [](auto& in) { return ops::add_scalar(in[0], 2.0f); },
       }) {
    auto r = gradcheck(f, {x});
    CHECK_MESSAGE(r.ok, r.message);
  }
  auto r = gradcheck([](auto& in) { return ops::log(in[0]); }, {p});
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("sum and mean: values and gradient checks") {
  Tensor x = param({3, 4, 5}, 11);
  double total = 0;
  for (float v : x.to_vector()) total += v;
  CHECK(ops::sum(x).item() == doctest::Approx(total).epsilon(1e-5));
  CHECK(ops::mean(x).item() == doctest::Approx(total / 60).epsilon(1e-5));
  CHECK(ops::sum(x).shape() == Shape{});
  CHECK(ops::sum(x, 1).shape() == Shape{3, 5});
  CHECK(ops::mean(x, -1, true).shape() == Shape{3, 4, 1});
  CHECK(ops::sum(x, 1).at({2, 3}) ==
        doctest::Approx(x.at({2, 0, 3}) + x.at({2, 1, 3}) + x.at({2, 2, 3}) + x.at({2, 3, 3})));
  for (int64_t axis : {0, 1, 2, -1}) {
    CAPTURE(axis);
    auto r1 = gradcheck([axis](auto& in) { return ops::sum(in[0], axis); }, {x});
    auto r2 = gradcheck([axis](auto& in) { return ops::mean(in[0], axis, true); }, {x});
    CHECK_MESSAGE(r1.ok, r1.message);
    CHECK_MESSAGE(r2.ok, r2.message);
  }
  CHECK(gradcheck([](auto& in) { return ops::sum(in[0]); }, {x}).ok);
  CHECK(gradcheck([](auto& in) { return ops::mean(in[0]); }, {x}).ok);
  CHECK(ops::sum(Tensor::zeros({0, 3}), 0).to_vector() == std::vector<float>{0, 0, 0});
}

TEST_CASE("matmul matches the reference for plain, transposed and batched inputs") {
  Generator g(3);
  for (auto [M, K, N] : {std::tuple{1, 1, 1}, {3, 17, 5}, {64, 33, 70}, {2, 0, 3}}) {
    Tensor a = rand_uniform({M, K}, g), b = rand_uniform({K, N}, g);
    Tensor c = ops::matmul(a, b), r = Tensor::empty({M, N});
    kernels::ref::matmul_f32(a, b, r);
    CHECK(max_abs_diff(c, r) < 1e-4);
    // Transposed views are used without a copy.
    Tensor bt = rand_uniform({N, K}, g).transpose(0, 1);
    kernels::ref::matmul_f32(a, bt, r);
    CHECK(max_abs_diff(ops::matmul(a, bt), r) < 1e-4);
  }
  Tensor a = rand_uniform({4, 6, 7}, g), b = rand_uniform({4, 7, 3}, g), w = rand_uniform({7, 3}, g);
  Tensor r = Tensor::empty({4, 6, 3});
  kernels::ref::matmul_f32(a, b, r);
  CHECK(max_abs_diff(ops::matmul(a, b), r) < 1e-4);
  kernels::ref::matmul_f32(a, w, r);
  CHECK(max_abs_diff(ops::matmul(a, w), r) < 1e-4);
  // The same shape reuses its cached primitive.
  const size_t n = kernels::matmul_cache_size();
  ops::matmul(a, w);
  CHECK(kernels::matmul_cache_size() == n);
}

TEST_CASE("matmul gradient checks") {
  Tensor a = param({5, 4}, 21), b = param({4, 3}, 22);
  Tensor ab = param({2, 5, 4}, 23), bb = param({2, 4, 3}, 24);
  using F = autograd::Function;
  F mm = [](auto& in) { return ops::matmul(in[0], in[1]); };
  for (auto [x, y] : {std::pair{a, b}, std::pair{ab, bb}, std::pair{ab, b}}) {
    auto r = gradcheck(mm, {x, y});
    CHECK_MESSAGE(r.ok, r.message);
  }
  auto rt = gradcheck([](auto& in) { return ops::matmul(in[0], ops::transpose(in[1], 0, 1)); },
                      {a, param({3, 4}, 25)});
  CHECK_MESSAGE(rt.ok, rt.message);
}

TEST_CASE("matmul gives the same result on 1 and 2 threads") {
  Generator g(8);
  Tensor a = rand_uniform({256, 300}, g), b = rand_uniform({300, 200}, g);
  set_num_threads(1);
  Tensor c1 = ops::matmul(a, b);
  CHECK(num_threads() == 1);
  set_num_threads(2);
  Tensor c2 = ops::matmul(a, b);
  set_num_threads(0);
  CHECK(max_abs_diff(c1, c2) < 1e-4);
}

TEST_CASE("view ops: gradient checks") {
  Tensor x = param({2, 3, 4}, 31);
  using F = autograd::Function;
  for (auto& f : std::vector<F>{
           [](auto& in) { return ops::reshape(in[0], {4, -1}); },
           [](auto& in) { return ops::slice(in[0], 2, 1, 3); },
           [](auto& in) { return ops::transpose(in[0], 0, 2); },
           [](auto& in) { return ops::permute(in[0], {1, 2, 0}); },
           [](auto& in) { return ops::unsqueeze(in[0], 1); },
           [](auto& in) { return ops::squeeze(ops::unsqueeze(in[0], 0), 0); },
           [](auto& in) { return ops::contiguous(ops::transpose(in[0], 1, 2)); },
           [](auto& in) { return ops::mul(ops::reshape(ops::transpose(in[0], 0, 1), {-1}), ops::reshape(in[0], {-1})); },
       }) {
    auto r = gradcheck(f, {x}, {.eps = 1e-2, .atol = 5e-2, .rtol = 5e-2});
    CHECK_MESSAGE(r.ok, r.message);
  }
  // cast: bf16 rounding defeats finite differences; its gradient is the identity.
  Tensor w = param({5}, 32);
  Tensor y = ops::cast(w, DType::bf16);
  CHECK(y.dtype() == DType::bf16);
  autograd::backward(ops::sum(ops::mul(ops::cast(y, DType::f32), Tensor::full({5}, 3.0))));
  CHECK(w.grad().to_vector() == std::vector<float>(5, 3.0f));
  // Views of a leaf share its storage.
  Tensor v = ops::transpose(x, 0, 1);
  CHECK(v.impl()->storage == x.impl()->storage);
}

TEST_CASE("op errors name the op and the shapes") {
  Tensor a = Tensor::zeros({4, 3}), b = Tensor::zeros({5, 2});
  CHECK_THROWS_WITH_AS(ops::matmul(a, b), "matmul: inner dimensions differ: [4, 3] x [5, 2]", Error);
  CHECK_THROWS_WITH_AS(ops::add(a, b), "add: shapes [4, 3] and [5, 2] do not broadcast (one must be a suffix of the other)",
                       Error);
  CHECK_THROWS_WITH_AS(ops::exp(Tensor::zeros({2}, DType::i32)), "exp: input must be f32, got i32 of shape [2]", Error);
  CHECK_THROWS_WITH_AS(ops::sum(a, 2), "sum: axis 2 out of range for a tensor of rank 2", Error);
  CHECK_THROWS_WITH_AS(ops::matmul(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 4, 5})),
                       "matmul: batch sizes differ: [2, 3, 4] x [3, 4, 5]", Error);
  CHECK_THROWS_AS(ops::reshape(a, {5, -1}), Error);
  CHECK_THROWS_AS(ops::mul(Tensor(), a), Error);
}
