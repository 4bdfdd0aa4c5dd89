// Linear layers: oneDNN forward against a double-precision reference (f32 and
// bf16), every activation, gradients, the fused QKVZ views, the primitive
// cache, threads and errors.
#include <doctest/doctest.h>

#include "test_util.h"

#include <cmath>
#include <thread>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "ops/elementwise.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/linear.h"
#include "ops/kernels/matmul.h"
#include "ops/linear.h"
#include "ops/reduce.h"
#include "ops/view.h"
#include "tensor/random.h"
#include "tensor/threads.h"

using namespace mmrec;
using test_util::param;
using test_util::max_abs_diff;
using autograd::gradcheck;
using ops::Activation;

namespace {
constexpr Activation kActs[] = {Activation::none, Activation::gelu, Activation::sigmoid};

// The double-precision reference of linear on x viewed as rows.
Tensor reference(const Tensor& x, const Tensor& w, const Tensor& b, Activation act) {
  const int64_t K = w.shape()[1], N = w.shape()[0];
  const int64_t M = numel_of(Shape(x.shape().begin(), x.shape().end() - 1));
  Tensor x2 = x.contiguous().reshape({M, K});
  Tensor y = Tensor::empty({x2.shape()[0], N});
  kernels::ref::linear_fwd(x2, w, b, act, y);
  Shape s = x.shape();
  s.back() = N;
  return y.reshape(s);
}
struct Case {
  Shape lead;
  int64_t in, out;
};
const Case kCases[] = {{{1}, 1, 1}, {{3}, 17, 5}, {{2, 3}, 17, 33}, {{17}, 100, 3}, {{0}, 5, 4}, {{4, 5}, 37, 19}, {{}, 7, 3}};
}  // namespace

TEST_CASE("linear f32 matches the double reference on odd shapes, every activation") {
  Generator g(1);
  for (const Case& c : kCases) {
    Shape xs = c.lead;
    xs.push_back(c.in);
    Tensor x = rand_uniform(xs, g, -1, 1), w = rand_uniform({c.out, c.in}, g, -1, 1), b = rand_uniform({c.out}, g);
    for (Activation act : kActs) {
      for (bool bias : {true, false}) {
        Tensor bb = bias ? b : Tensor();
        Tensor y = ops::linear(x, w, bb, act);
        Shape ys = c.lead;
        ys.push_back(c.out);
        CHECK(y.shape() == ys);
        CHECK(y.dtype() == DType::f32);
        CHECK(max_abs_diff(y, reference(x, w, bb, act)) < 1e-5 * (1 + c.in));
      }
    }
  }
}

TEST_CASE("linear bf16: exact against the reference on the rounded inputs, 8-bit mantissa against f32") {
  Generator g(2);
  for (const Case& c : kCases) {
    Shape xs = c.lead;
    xs.push_back(c.in);
    Tensor x = rand_uniform(xs, g, -1, 1), w = rand_uniform({c.out, c.in}, g, -1, 1), b = rand_uniform({c.out}, g);
    Tensor x16 = x.to(DType::bf16), w16 = w.to(DType::bf16);
    for (Activation act : kActs) {
      Tensor y = ops::linear(x16, w16, b, act);
      CHECK(y.dtype() == DType::f32);
      CHECK(max_abs_diff(y, reference(x16, w16, b, act)) < 1e-5 * (1 + c.in));
      // Each product carries two roundings of 2^-9: |err| <= 2^-8 Σ|x||w| <= 2^-8 K.
      CHECK(max_abs_diff(y, reference(x, w, b, act)) < 4e-3 * (1 + c.in));
    }
  }
}

TEST_CASE("linear takes views in place: transposed weight, column slices, transposed x") {
  Generator g(3);
  Tensor x = rand_uniform({2, 5, 24}, g), wt = rand_uniform({7, 4}, g), b = rand_uniform({4}, g);
  Tensor w = wt.transpose(0, 1);  // [4, 7] with unit stride on axis 0
  Tensor xs = x.slice(2, 3, 10);   // [2, 5, 7] rows of stride 24
  CHECK(max_abs_diff(ops::linear(xs, w, b), reference(xs, w.contiguous(), b, Activation::none)) < 1e-5);
  Tensor xt = rand_uniform({7, 6}, g).transpose(0, 1);  // [6, 7], column-major
  CHECK(max_abs_diff(ops::linear(xt, w, b, Activation::gelu), reference(xt, w.contiguous(), b, Activation::gelu)) < 1e-5);
  Tensor xp = x.permute({1, 0, 2}).slice(2, 0, 7);  // leading axes do not collapse: copied
  CHECK(max_abs_diff(ops::linear(xp, w, b), reference(xp, w.contiguous(), b, Activation::none)) < 1e-5);
}

TEST_CASE("linear gradient checks for x, w and b (f32), every activation") {
  for (Activation act : kActs) {
    for (auto [xs, out] : {std::pair<Shape, int64_t>{{2, 3, 5}, 4}, {{1, 17}, 3}, {{3}, 2}}) {
      Tensor x = param(xs, 11), w = param({out, xs.back()}, 12), b = param({out}, 13);
      auto r = gradcheck([act](auto& in) { return ops::linear(in[0], in[1], in[2], act); }, {x, w, b});
      CHECK_MESSAGE(r.ok, r.message);
      auto r2 = gradcheck([act](auto& in) { return ops::linear(in[0], in[1], Tensor(), act); }, {x, w});
      CHECK_MESSAGE(r2.ok, r2.message);
    }
  }
  // Only some inputs requiring grad; an empty batch; In = 0.
  Tensor x = param({4, 6}, 14), w = Tensor::ones({3, 6}), b = param({3}, 15);
  auto r = gradcheck([](auto& in) { return ops::linear(in[0], in[1], in[2], Activation::gelu); }, {x, w, b});
  CHECK_MESSAGE(r.ok, r.message);
  Tensor e = param({0, 6}, 16), we = param({3, 6}, 17), be = param({3}, 18);
  autograd::backward(ops::sum(ops::linear(e, we, be)));
  CHECK(max_abs_diff(we.grad(), Tensor::zeros({3, 6})) == 0);
  CHECK(max_abs_diff(be.grad(), Tensor::zeros({3})) == 0);
  CHECK(e.grad().shape() == Shape{0, 6});
  Tensor z = param({2, 0}, 19), wz = param({3, 0}, 20), bz = param({3}, 21);
  Tensor yz = ops::linear(z, wz, bz, Activation::sigmoid);
  CHECK(max_abs_diff(yz, reference(z, wz, bz, Activation::sigmoid)) < 1e-6);
  autograd::backward(ops::sum(yz));  // dL/db = 2 σ'(b) = 2 y (1 - y); gradcheck rejects empty inputs
  for (int64_t j = 0; j < 3; ++j) {
    const double s = yz.at({0, j});
    CHECK(std::fabs(bz.grad().at({j}) - 2 * s * (1 - s)) < 1e-6);
  }
  CHECK(z.grad().shape() == Shape{2, 0});
  CHECK(wz.grad().shape() == Shape{3, 0});
}

TEST_CASE("linear bf16 gradients are f32 and match the reference to bf16 accuracy") {
  for (Activation act : kActs) {
    Tensor x = param({3, 17, 40}, 31), w = param({24, 40}, 32), b = param({24}, 33);
    Tensor seed = param({3, 17, 24}, 34).detach();
    Tensor y = ops::linear(ops::cast(x, DType::bf16), ops::cast(w, DType::bf16), b, act);
    autograd::backward(y, seed);
    // Reference on the rounded inputs in double: g = seed ⊙ act'(pre); dX = g W, dW = gᵀ X, db = Σ g.
    const int64_t M = 51, K = 40, N = 24;
    Tensor x16 = x.detach().reshape({M, K}).to(DType::bf16), w16 = w.detach().to(DType::bf16);
    Tensor pre = Tensor::empty({M, N});
    kernels::ref::linear_fwd(x16, w16, b.detach(), Activation::none, pre);
    Tensor saved = pre;
    if (act == Activation::sigmoid) {
      saved = Tensor::empty({M, N});
      kernels::ref::linear_fwd(x16, w16, b.detach(), act, saved);
    }
    Tensor gm = Tensor::empty({M, N});
    kernels::ref::act_backward(act, seed.reshape({M, N}), saved, gm);
    Tensor dx = Tensor::empty({M, K}), dw = Tensor::empty({N, K}), db = Tensor::empty({N});
    kernels::ref::gemm(gm, w16.to(DType::f32), dx);
    kernels::ref::gemm(gm.transpose(0, 1), x16.to(DType::f32), dw);
    kernels::ref::col_sum(gm, db);
    CHECK(x.grad().dtype() == DType::f32);
    // dY is rounded to bf16 for the GEMMs: error <= 2^-8 Σ|g||w| (N = 24 terms, |g| <= 1) and
    // Σ|g||x| over M = 51 rows.
    CHECK(max_abs_diff(x.grad(), dx.reshape({3, 17, 40})) < 4e-3 * N);
    CHECK(max_abs_diff(w.grad(), dw) < 4e-3 * M);
    CHECK(max_abs_diff(b.grad(), db) < 1e-4 * M);
  }
}

TEST_CASE("qkvz returns four views of one GEMM and its gradient is correct") {
  Generator g(4);
  const int64_t D = 17;
  Tensor x = rand_uniform({2, 3, D}, g), w = rand_uniform({4 * D, D}, g), b = rand_uniform({4 * D}, g);
  auto [q, k, v, z] = ops::qkvz(x, w, b);
  Tensor full = reference(x, w, b, Activation::none);
  const Tensor parts[] = {q, k, v, z};
  for (int64_t i = 0; i < 4; ++i) {
    CHECK(parts[i].shape() == Shape{2, 3, D});
    CHECK(parts[i].impl()->storage == q.impl()->storage);
    CHECK(max_abs_diff(parts[i], full.slice(2, i * D, (i + 1) * D)) < 1e-5);
  }
  // A view feeds the next linear in place (row stride 4D).
  Tensor w2 = rand_uniform({5, D}, g);
  CHECK(max_abs_diff(ops::linear(k, w2), reference(k.contiguous(), w2, Tensor(), Activation::none)) < 1e-5);

  Tensor xp = param({2, 3, 5}, 41), wp = param({20, 5}, 42), bp = param({20}, 43);
  auto all = gradcheck([](auto& in) {
    auto [q, k, v, z] = ops::qkvz(in[0], in[1], in[2]);
    return ops::add(ops::add(q, ops::mul(k, v)), ops::scale(z, 3.0f));
  }, {xp, wp, bp});
  CHECK_MESSAGE(all.ok, all.message);
  auto some = gradcheck([](auto& in) {  // k and v receive no gradient
    auto [q, k, v, z] = ops::qkvz(in[0], in[1], in[2]);
    return ops::mul(q, z);
  }, {xp, wp, bp});
  CHECK_MESSAGE(some.ok, some.message);
  // bf16 qkvz equals bf16 linear.
  auto [q16, k16, v16, z16] = ops::qkvz(x.to(DType::bf16), w.to(DType::bf16), b);
  Tensor y16 = ops::linear(x.to(DType::bf16), w.to(DType::bf16), b);
  CHECK(max_abs_diff(z16, y16.slice(2, 3 * D, 4 * D)) == 0);
}

TEST_CASE("repeated calls reuse cached primitives") {
  Tensor x = param({5, 33}, 51), w = param({9, 33}, 52), b = param({9}, 53);
  auto step = [&] {
    for (Activation act : kActs) autograd::backward(ops::sum(ops::linear(x, w, b, act)));
    autograd::backward(ops::sum(ops::linear(ops::cast(x, DType::bf16), ops::cast(w, DType::bf16), b)));
  };
  step();
  const size_t n = kernels::matmul_cache_size();
  for (int i = 0; i < 3; ++i) step();
  CHECK(kernels::matmul_cache_size() == n);
}

TEST_CASE("linear gives the same result on 1 and 2 threads") {
  Generator g(6);
  for (int64_t M : {8, 300}) {
    Tensor x = rand_uniform({M, 200}, g), w = rand_uniform({150, 200}, g), b = rand_uniform({150}, g);
    set_num_threads(1);
    Tensor y1 = ops::linear(x, w, b, Activation::gelu);
    set_num_threads(2);
    Tensor y2 = ops::linear(x, w, b, Activation::gelu);
    set_num_threads(0);
    CHECK(max_abs_diff(y1, y2) < 1e-4);
  }
}

TEST_CASE("TrainingActivations: a no-grad gelu linear gives a training forward's bits, the post-op's after it") {
  Generator g(12);
  Tensor x = rand_uniform({300, 64}, g, -2, 2), w = param({96, 64}, 13), b = param({96}, 14);
  const Tensor trained = ops::linear(x, w, b, Activation::gelu).detach();  // w requires grad: the split path
  autograd::NoGradGuard no_grad;
  Tensor as_training;
  {
    const ops::TrainingActivations scope;
    as_training = ops::linear(x, w, b, Activation::gelu);
  }
  const Tensor fused = ops::linear(x, w, b, Activation::gelu);  // the GEMM's gelu post-op again
  CHECK(test_util::bit_equal(as_training, trained));
  CHECK(max_abs_diff(fused, trained) < 1e-5);
  CHECK(max_abs_diff(fused, reference(x, w, b, Activation::gelu)) < 1e-4);
}

TEST_CASE("two threads share the primitive cache") {
  Generator g(9);
  Tensor x = rand_uniform({70, 48}, g), w = rand_uniform({40, 48}, g), b = rand_uniform({40}, g);
  const Tensor want = reference(x, w, b, Activation::gelu);
  double err[2] = {1, 1};
  auto run = [&](int i) {
    double e = 0;
    for (int r = 0; r < 20; ++r) e = std::max(e, max_abs_diff(ops::linear(x, w, b, Activation::gelu), want));
    err[i] = e;
  };
  std::thread t0(run, 0), t1(run, 1);
  t0.join();
  t1.join();
  CHECK(err[0] < 1e-4);
  CHECK(err[1] < 1e-4);
}

TEST_CASE("kernels: column sums and activation backward match the reference") {
  Generator g(7);
  for (auto [M, N] : {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {1000, 3}, {0, 5}, {17, 1000}}) {
    Tensor dy = rand_uniform({M, N}, g, -1, 1), want = Tensor::empty({N});
    kernels::ref::col_sum(dy, want);
    for (auto method : {kernels::ColSum::sum_axis, kernels::ColSum::matmul, kernels::ColSum::reduction}) {
      Tensor got = Tensor::full({N}, 7.0);
      kernels::col_sum(dy, got, nullptr, method);
      CHECK(max_abs_diff(got, want) < 1e-5 * (1 + M));
    }
    Tensor s = rand_uniform({M, N}, g, 0.01f, 0.99f);
    for (Activation act : {Activation::gelu, Activation::sigmoid}) {
      Tensor a = Tensor::empty({M, N}), r = Tensor::empty({M, N});
      kernels::act_backward(act, dy, s, a);
      kernels::ref::act_backward(act, dy, s, r);
      CHECK(max_abs_diff(a, r) < 1e-5);
    }
  }
}

TEST_CASE("kernels: the fused activation backward and column sums equal the two calls bit for bit, 1 or 2 threads") {
  Generator g(8);
  // Chunked sums (few column blocks) with partial 64-row groups, many column
  // blocks (one chunk: blocks made in place), rows of 3 columns, empty.
  for (auto [M, N] : {std::pair<int64_t, int64_t>{700, 72}, {1000, 1030}, {300, 4100}, {1000, 3}, {0, 80}, {5, 0}}) {
    CAPTURE(M);
    CAPTURE(N);
    // Gradients of magnitudes from 2^-43 to 2^43.
    const Tensor dy = ops::mul(rand_uniform({M, N}, g, -1, 1), ops::exp(rand_uniform({M, N}, g, -30, 30)));
    const Tensor s = rand_uniform({M, N}, g, 0.01f, 0.99f);
    for (Activation act : {Activation::gelu, Activation::sigmoid}) {
      Tensor cx = Tensor::empty({M, N}), cb = Tensor::empty({N});
      kernels::act_backward(act, dy, s, cx);
      kernels::col_sum(cx, cb);
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        Tensor dx = Tensor::full({M, N}, 7.0), db = Tensor::full({N}, 7.0);
        kernels::act_backward_col_sum(act, dy, s, dx, db);
        CHECK(test_util::bit_equal(dx, cx));
        CHECK(test_util::bit_equal(db, cb));
      }
      set_num_threads(0);
    }
  }
}

TEST_CASE("kernels: gelu made with its backward (and the bias sums) equals the separate calls bit for bit") {
  Generator g(18);
  for (auto [M, N] : {std::pair<int64_t, int64_t>{700, 72}, {300, 4100}, {1000, 3}, {0, 80}, {5, 0}}) {
    CAPTURE(M);
    CAPTURE(N);
    // Pre-activations over [-30, 30]: lanes below -8 and above 20, where the
    // backward clamps and the forward does not; infinities in a few places.
    Tensor u = rand_uniform({M, N}, g, -30, 30);
    float* up = u.data<float>();
    for (int64_t i = 0; i < u.numel(); i += 37) up[i] = i % 2 ? INFINITY : -INFINITY;
    const Tensor dy = rand_uniform({M, N}, g, -1, 1);
    Tensor ca = Tensor::empty({M, N}), cx = Tensor::empty({M, N}), cb = Tensor::empty({N});
    kernels::act_forward(Activation::gelu, u, ca);
    kernels::act_backward_col_sum(Activation::gelu, dy, u, cx, cb);
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      Tensor a = Tensor::full({M, N}, 7.0), dx = Tensor::full({M, N}, 7.0), db = Tensor::full({N}, 7.0);
      kernels::gelu_remat_backward_col_sum(dy, u, a, dx, db);
      CHECK(test_util::bit_equal(a, ca));
      CHECK(test_util::bit_equal(dx, cx));
      CHECK(test_util::bit_equal(db, cb));
      Tensor a2 = Tensor::full({M, N}, 7.0), dx2 = Tensor::full({M, N}, 7.0);
      kernels::gelu_fwd_bwd_f32(u.data<float>(), dy.data<float>(), a2.data<float>(), dx2.data<float>(), u.numel());
      CHECK(test_util::bit_equal(a2, ca));
      CHECK(test_util::bit_equal(dx2, cx));
    }
    set_num_threads(0);
  }
}

TEST_CASE("kernels: gemm's addend (binary post-op) equals the product then the add bit for bit, 1 or 2 threads") {
  Generator g(9);
  // Small, long K (oneDNN blocks K), wide N, an empty K (bias only), rank 3.
  for (auto [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{7, 40, 24}, {520, 2048, 512}, {300, 512, 2048},
                         {5, 0, 9}}) {
    CAPTURE(M);
    CAPTURE(K);
    CAPTURE(N);
    const Tensor x = rand_uniform({M, K}, g, -1, 1), w = rand_uniform({N, K}, g, -1, 1);
    const Tensor b = rand_uniform({N}, g, -1, 1), r = rand_uniform({M, N}, g, -4, 4);
    Tensor y = Tensor::empty({M, N});
    kernels::linear_fwd(x, w, b, Activation::none, y);
    const Tensor want = ops::add(r, y);
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      Tensor got = Tensor::full({M, N}, 7.0);
      kernels::gemm(x, w.transpose(0, 1), got, b, Activation::none, false, r);
      CHECK(test_util::bit_equal(got, want));
    }
    set_num_threads(0);
    Tensor ref = Tensor::empty({M, N});
    kernels::ref::gemm(x, w.transpose(0, 1), ref, b, Activation::none, false, r);
    CHECK(max_abs_diff(ref, want) < 1e-3);
  }
  // A batched product; an addend in another layout (a transposed view) or
  // with an activation is refused.
  const Tensor a = rand_uniform({3, 6, 5}, g, -1, 1), bm = rand_uniform({3, 5, 6}, g, -1, 1);
  const Tensor r3 = rand_uniform({3, 6, 6}, g, -1, 1);
  Tensor c = Tensor::empty({3, 6, 6}), got = Tensor::empty({3, 6, 6});
  kernels::gemm(a, bm, c);
  kernels::gemm(a, bm, got, Tensor(), Activation::none, false, r3);
  CHECK(test_util::bit_equal(got, ops::add(c, r3)));
  for (Activation act : {Activation::none, Activation::gelu})
    CHECK_THROWS_WITH_AS(
        kernels::gemm(a, bm, got, Tensor(), act, false, act == Activation::none ? r3.transpose(1, 2) : r3),
        doctest::Contains("an addend must be f32 of the output's shape [3, 6, 6] and strides"), Error);
}

TEST_CASE("packed weights give the plain result; other row counts fall back") {
  Generator g(8);
  for (DType t : {DType::f32, DType::bf16}) {
    Tensor w = rand_uniform({33, 40}, g, -1, 1).to(t), b = rand_uniform({33}, g);
    for (Activation act : kActs) {
      kernels::PackedLinear p(w, b, act, 8);
      CHECK(p.rows() == 8);
      for (int64_t M : {8, 3, 0}) {
        Tensor x = rand_uniform({M, 40}, g, -1, 1).to(t), y = Tensor::empty({M, 33});
        p.forward(x, y);
        CHECK(max_abs_diff(y, reference(x, w, b, act)) < 1e-4);
      }
    }
    kernels::PackedLinear nb(w.transpose(0, 1).contiguous().transpose(0, 1), Tensor(), Activation::none, 5);
    Tensor x = rand_uniform({5, 40}, g, -1, 1).to(t), y = Tensor::empty({5, 33});
    nb.forward(x, y);
    CHECK(max_abs_diff(y, reference(x, w, Tensor(), Activation::none)) < 1e-4);
  }
}

TEST_CASE("packed weights: calls on new buffers and from two threads at once give each caller its own result") {
  // A part's arguments are made once and re-pointed per call; a second
  // thread meanwhile makes its own.
  Generator g(10);
  const Tensor w = rand_uniform({512, 256}, g, -1, 1), b = rand_uniform({512}, g);
  // (The packed and plain products are the same dot products, but oneDNN
  // may sum them in another order: on AVX-512 they agree bit for bit, on
  // AVX2 to rounding. Each call is checked against a fresh PackedLinear's.)
  kernels::PackedLinear p(w, b, Activation::none, 1);
  set_num_threads(2);
  auto fresh = [&](const Tensor& x) {
    Tensor y = Tensor::empty({1, 512});
    kernels::PackedLinear(w, b, Activation::none, 1).forward(x, y);
    return y;
  };
  for (int i = 0; i < 3; ++i) {
    const Tensor x = rand_uniform({1, 256}, g, -1, 1);
    Tensor y = Tensor::empty({1, 512}), plain = Tensor::empty({1, 512});
    p.forward(x, y);
    kernels::linear_fwd(x, w, b, Activation::none, plain);
    CHECK(test_util::bit_equal(y, fresh(x)));
    CHECK(max_abs_diff(y, plain) < 1e-5);
  }
  std::vector<Tensor> xs, ys, want;
  for (int t = 0; t < 2; ++t) {
    xs.push_back(rand_uniform({1, 256}, g, -1, 1));
    ys.push_back(Tensor::empty({1, 512}));
    want.push_back(fresh(xs[t]));
  }
  bool ok[2] = {true, true};
  std::vector<std::thread> th;
  for (int t = 0; t < 2; ++t)
    th.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        p.forward(xs[t], ys[t]);
        ok[t] = ok[t] && test_util::bit_equal(ys[t], want[t]);
      }
    });
  for (auto& t : th) t.join();
  set_num_threads(0);
  CHECK(ok[0]);
  CHECK(ok[1]);
}

TEST_CASE("a large packed weight runs as two column halves with the plain result, one thread or two") {
  Generator g(10);
  const int threads = num_threads();
  for (DType t : {DType::f32, DType::bf16})
    for (int64_t N : {1024, 128}) {  // 128 x 512: the smallest weight that splits
      Tensor w = rand_uniform({N, 512}, g, -1, 1).to(t), b = rand_uniform({N}, g);
      for (Activation act : kActs) {
        set_num_threads(2);  // packed under 2 threads: two halves
        kernels::PackedLinear p(w, b, act, 1);
        CHECK(p.parts() == 2);
        for (int run_threads : {2, 1})
          for (int64_t M : {1, 3}) {  // the packed row count, and batched streams on the same halves
            set_num_threads(run_threads);
            Tensor x = rand_uniform({M, 512}, g, -1, 1).to(t), y = Tensor::empty({M, N});
            p.forward(x, y);
            CHECK(max_abs_diff(y, reference(x, w, b, act)) < 1e-3);
          }
      }
    }
  set_num_threads(2);  // below 64K elements: one part; one thread: one part
  CHECK(kernels::PackedLinear(rand_uniform({64, 512}, g, -1, 1), Tensor(), Activation::none, 1).parts() == 1);
  set_num_threads(1);
  CHECK(kernels::PackedLinear(rand_uniform({1024, 512}, g, -1, 1), Tensor(), Activation::none, 1).parts() == 1);
  set_num_threads(threads);
}

TEST_CASE("ops::linear through packed weights: any leading axes, strided x, no autograd, errors") {
  Generator g(9);
  Tensor w = rand_uniform({33, 40}, g, -1, 1), b = rand_uniform({33}, g);
  kernels::PackedLinear p(w, b, Activation::gelu, 6);
  CHECK(p.in_features() == 40);
  CHECK(p.out_features() == 33);
  CHECK(p.dtype() == DType::f32);
  // [2, 3, 40]: 6 rows, the packed path; [4, 40] the plain one; a column slice strided rows.
  for (const Shape& s : {Shape{2, 3, 40}, Shape{4, 40}, Shape{1, 40}}) {
    Tensor x = rand_uniform(s, g, -1, 1);
    CHECK(max_abs_diff(ops::linear(x, p), ops::linear(x, w, b, Activation::gelu)) < 1e-5);
  }
  Tensor wide = rand_uniform({6, 50}, g, -1, 1), x = wide.slice(1, 5, 45);
  CHECK(max_abs_diff(ops::linear(x, p), ops::linear(x, w, b, Activation::gelu)) < 1e-5);
  CHECK(ops::linear(Tensor::zeros({0, 40}), p).shape() == Shape{0, 33});
  // No backward: a grad-requiring x is refused in grad mode, fine without it.
  Tensor xg = rand_uniform({6, 40}, g, -1, 1).set_requires_grad();
  CHECK_THROWS_WITH_AS(ops::linear(xg, p), doctest::Contains("linear(packed): has no backward"), Error);
  {
    autograd::NoGradGuard ng;
    CHECK_FALSE(ops::linear(xg, p).requires_grad());
  }
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({6, 39}), p),
                       "linear(packed): x [6, 39] does not match the packed weight's 40 input features", Error);
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({6, 40}, DType::bf16), p),
                       "linear(packed): x is bf16, the packed weight f32", Error);
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({6, 40}), kernels::PackedLinear()),
                       "linear(packed): the PackedLinear is empty", Error);
}

TEST_CASE("linear errors name the op and the shapes") {
  Tensor x = Tensor::zeros({2, 3, 5}), w = Tensor::zeros({4, 6});
  CHECK_THROWS_WITH_AS(ops::linear(x, w), "linear: x [2, 3, 5] last axis does not match weight [4, 6]", Error);
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({2, 5}, DType::bf16), Tensor::zeros({4, 5})),
                       "linear: x [2, 5] is bf16 but weight [4, 5] is f32 (both f32 or both bf16)", Error);
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({2, 5}), Tensor::zeros({4, 5}), Tensor::zeros({3})),
                       "linear: bias [3] does not match weight [4, 5] (expected [4])", Error);
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({2, 5}), Tensor::zeros({4, 5}), Tensor::zeros({4}, DType::bf16)),
                       "linear: bias must be f32, got bf16 of shape [4]", Error);
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({2, 5}, DType::i32), Tensor::zeros({4, 5}, DType::i32)),
                       "linear: x must be f32 or bf16, got i32 of shape [2, 5]", Error);
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({2, 5}), Tensor::zeros({5})),
                       "linear: weight must be rank 2 [Out, In], got [5]", Error);
  CHECK_THROWS_WITH_AS(ops::qkvz(Tensor::zeros({2, 5}), Tensor::zeros({8, 5}), Tensor::zeros({8})),
                       "qkvz: weight [8, 5] is not [4D, D] = [20, 5] for x [2, 5]", Error);
  CHECK_THROWS_WITH_AS(ops::qkvz(Tensor::zeros({2, 5}), Tensor::zeros({20, 5}), Tensor::zeros({19})),
                       "qkvz: bias [19] does not match weight [20, 5] (expected [20])", Error);
  CHECK_THROWS_AS(ops::linear(Tensor(), w), Error);
}
