// Tape autograd: recording, accumulation, no_grad, freed graphs, a trained MLP.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "ops/view.h"
#include "tensor/random.h"

using namespace mmrec;

TEST_CASE("backward of a small expression accumulates into leaves") {
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}).set_requires_grad();
  Tensor y = Tensor::from_vector(std::vector<float>{4, 5, 6}, {3}).set_requires_grad();
  Tensor loss = ops::sum(ops::add(ops::mul(x, y), ops::mul(x, x)));  // sum(xy + x^2)
  CHECK(loss.item() == doctest::Approx(32 + 14));
  autograd::backward(loss);
  CHECK(x.grad().to_vector() == std::vector<float>{4 + 2, 5 + 4, 6 + 6});  // y + 2x
  CHECK(y.grad().to_vector() == std::vector<float>{1, 2, 3});
  // A second graph accumulates into the same .grad.
  autograd::backward(ops::sum(x));
  CHECK(x.grad().to_vector() == std::vector<float>{7, 10, 13});
  x.zero_grad();
  CHECK(!x.grad().defined());
}

TEST_CASE("nodes are recorded only when needed") {
  autograd::clear_tape();
  Tensor a = Tensor::ones({4});
  Tensor b = ops::exp(a);
  CHECK(!b.requires_grad());
  CHECK(autograd::tape_size() == 0);
  Tensor w = Tensor::ones({4}).set_requires_grad();
  {
    autograd::NoGradGuard ng;
    Tensor c = ops::mul(w, a);
    CHECK(!c.requires_grad());
    CHECK(autograd::tape_size() == 0);
  }
  Tensor d = ops::mul(w, a);
  CHECK(d.requires_grad());
  CHECK(!d.is_leaf());
  CHECK(autograd::tape_size() == 1);
}

TEST_CASE("a graph lives as long as its outputs") {
  autograd::clear_tape();
  Tensor w = Tensor::ones({4}).set_requires_grad();
  {
    Tensor t = ops::exp(ops::mul(w, w));
    CHECK(autograd::tape_size() == 2);
  }
  CHECK(autograd::tape_size() == 0);
}

TEST_CASE("backward frees saved buffers; a second backward is a clear error unless retained") {
  Tensor w = Tensor::from_vector(std::vector<float>{0.5f, -1.0f}, {2}).set_requires_grad();
  Tensor loss = ops::sum(ops::exp(w));
  autograd::backward(loss, Tensor(), /*retain_graph=*/true);
  autograd::backward(loss);  // the retained graph can be walked again
  CHECK(w.grad().at({0}) == doctest::Approx(2 * std::exp(0.5)));
  CHECK_THROWS_WITH_AS(autograd::backward(loss),
                       "backward: the graph of this tensor (produced by 'sum') was freed by an earlier backward; "
                       "pass retain_graph=true to backward twice",
                       Error);
}

TEST_CASE("backward errors") {
  Tensor x = Tensor::ones({2});
  CHECK_THROWS_WITH_AS(autograd::backward(x),
                       "backward: tensor of shape [2] does not require grad (no input of its graph requires grad, "
                       "or grad mode was off)",
                       Error);
  Tensor w = Tensor::ones({2}).set_requires_grad();
  Tensor y = ops::exp(w);
  CHECK_THROWS_WITH_AS(autograd::backward(y),
                       "backward: implicit seed needs a one-element tensor, got shape [2] (pass a seed gradient)",
                       Error);
  CHECK_THROWS_AS(autograd::backward(y, Tensor::ones({3})), Error);
  autograd::backward(y, Tensor::from_vector(std::vector<float>{1, 2}, {2}));
  CHECK(w.grad().at({1}) == doctest::Approx(2 * std::exp(1.0)));
}

TEST_CASE("retain_grad keeps an intermediate's gradient") {
  Tensor w = Tensor::from_vector(std::vector<float>{1, 2}, {2}).set_requires_grad();
  Tensor h = ops::scale(w, 3.0f);
  h.retain_grad();
  autograd::backward(ops::sum(ops::mul(h, h)));
  CHECK(h.grad().to_vector() == std::vector<float>{6, 12});
  CHECK(w.grad().to_vector() == std::vector<float>{18, 36});
}

TEST_CASE("gradcheck catches a wrong gradient") {
  Generator g(5);
  Tensor x = randn({5}, g).set_requires_grad();
  // A function whose recorded backward is deliberately wrong.
  auto wrong = [](const std::vector<Tensor>& in) {
    Tensor out = in[0].detach().clone();
    autograd::record("wrong", {in[0]}, {out}, [](const std::vector<Tensor>& gr) {
      return std::vector<Tensor>{ops::scale(gr[0], 2.0f)};
    });
    return out;
  };
  CHECK(!autograd::gradcheck(wrong, {x}).ok);
  auto right = [](const std::vector<Tensor>& in) { return ops::scale(in[0], 1.0f); };
  CHECK(autograd::gradcheck(right, {x}).ok);
}

TEST_CASE("a 2-layer MLP trained by SGD cuts its loss by 10x") {
  // Regress y = sin(x0) + 0.5 x1 x2 on 256 seeded points.
  Generator g(7);
  const int64_t N = 256, Din = 3, H = 32;
  Tensor X = rand_uniform({N, Din}, g, -1.0f, 1.0f);
  Tensor Y = Tensor::empty({N, 1});
  for (int64_t i = 0; i < N; ++i)
    Y.set({i, 0}, std::sin(2 * X.at({i, 0})) + 0.5 * X.at({i, 1}) * X.at({i, 2}));
  Tensor W1 = randn({Din, H}, g, 0.0f, 0.5f).set_requires_grad();
  Tensor b1 = Tensor::zeros({H}).set_requires_grad();
  Tensor W2 = randn({H, 1}, g, 0.0f, 0.5f).set_requires_grad();
  Tensor b2 = Tensor::zeros({1}).set_requires_grad();
  auto loss_fn = [&]() {
    Tensor z = ops::add(ops::matmul(X, W1), b1);
    // tanh(z) = 1 - 2 / (exp(2z) + 1), from the ops we have
    Tensor h = ops::add_scalar(ops::neg(ops::div(Tensor::full({1}, 2.0), ops::add_scalar(ops::exp(ops::scale(z, 2)), 1))), 1);
    Tensor pred = ops::add(ops::matmul(h, W2), b2);
    Tensor d = ops::sub(pred, Y);
    return ops::mean(ops::mul(d, d));
  };
  float first = 0, last = 0;
  for (int step = 0; step < 1500; ++step) {
    Tensor loss = loss_fn();
    if (step == 0) first = loss.item();
    last = loss.item();
    autograd::backward(loss);
    autograd::NoGradGuard ng;
    for (Tensor* p : {&W1, &b1, &W2, &b2}) {
      Tensor upd = ops::sub(*p, ops::scale(p->grad(), 0.2f));
      p->copy_from(upd);
      p->zero_grad();
    }
  }
  MESSAGE("MLP loss " << first << " -> " << last);
  CHECK(last < first / 10);
}

TEST_CASE("the grad-ready hook reports each leaf once, when its gradient is final") {
  autograd::clear_tape();
  // w is used first and last (like tied embeddings); b only in the middle;
  // u feeds nothing.
  Tensor w = Tensor::from_vector(std::vector<float>{1, 2}, {2}).set_requires_grad();
  Tensor b = Tensor::from_vector(std::vector<float>{3, 4}, {2}).set_requires_grad();
  Tensor u = Tensor::from_vector(std::vector<float>{5, 6}, {2}).set_requires_grad();
  Tensor h = ops::mul(w, w);                           // first use of w
  Tensor loss = ops::sum(ops::mul(ops::add(h, b), w));  // sum((w^2 + b) w)
  std::vector<std::pair<const TensorImpl*, std::vector<float>>> seen;
  autograd::set_grad_ready_hook([&](const Tensor& leaf) { seen.push_back({leaf.impl(), leaf.grad().to_vector()}); });
  autograd::backward(loss);
  autograd::set_grad_ready_hook({});
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].first == b.impl());  // b's only consumer runs before w's first one
  CHECK(seen[0].second == std::vector<float>{1, 2});
  CHECK(seen[1].first == w.impl());
  CHECK(seen[1].second == w.grad().to_vector());  // final: 3w^2 + b
  CHECK(w.grad().to_vector() == std::vector<float>{3 + 3, 12 + 4});
  // Without a hook nothing is called.
  autograd::backward(ops::sum(ops::mul(u, u)));
  CHECK(seen.size() == 2);
}
