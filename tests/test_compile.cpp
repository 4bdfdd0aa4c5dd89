// Graph capture and replay (autograd/graph.h, autograd/compile.h): the
// recorded calls, host reads refused inside a capture, replay equal to eager
// on ops, on the model's logits and on 20 whole training steps (forward,
// loss, backward, clipping, AdamW) in both recurrence modes, recapture on a
// new signature, strict mode, memory planning and dead calls.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "autograd/compile.h"
#include "autograd/tape.h"
#include "models/model.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/reduce.h"
#include "tensor/random.h"
#include "compiled_steps.h"
#include "test_util.h"
#include "train/optimizer.h"

using namespace mmrec;
using autograd::CompiledFn;
using autograd::OpKind;
using test_util::bit_equal;

namespace {

Tensor random_tokens(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  Generator g(seed);
  std::vector<int32_t> ids(static_cast<size_t>(B * T));
  for (auto& id : ids) id = static_cast<int32_t>(g.next_u64() % static_cast<uint64_t>(V));
  return Tensor::from_vector(ids, {B, T});
}

ModelConfig small_config(const std::string& recurrence) {
  return ModelConfig::from_json({{"vocab_size", 64}, {"dim", 32}, {"layers", 2}, {"heads", 2}, {"memory_slots", 4},
                                 {"chunk_size", 8}, {"recurrence", recurrence}});
}

}  // namespace

TEST_CASE("capture records every kernel call and replays it on new inputs") {
  Generator g(3);
  const Tensor w = rand_uniform({5, 7}, g, -1, 1), b = rand_uniform({5}, g, -1, 1);
  auto fn = [&](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    Tensor y = ops::linear(in[0], w, b, ops::Activation::gelu);
    return std::vector<Tensor>{ops::sum(ops::mul(ops::sigmoid(y), y))};
  };
  CompiledFn f = autograd::compile(fn);
  const Tensor x1 = rand_uniform({3, 7}, g, -1, 1), x2 = rand_uniform({3, 7}, g, -1, 1);
  const Tensor r1 = f({x1})[0].clone();
  CHECK(f.captures() == 1);
  REQUIRE(f.last_graph() != nullptr);
  bool has_linear = false;
  for (const autograd::Call& c : f.last_graph()->calls()) has_linear |= c.kind == OpKind::linear;
  CHECK(has_linear);
  const Tensor r2 = f({x2})[0].clone();
  CHECK(f.replays() == 1);
  CHECK(bit_equal(r1, fn({x1})[0]));
  CHECK(bit_equal(r2, fn({x2})[0]));  // the replay read the new input
  CHECK_FALSE(bit_equal(r1, r2));
}

TEST_CASE("reading tensor data inside a capture is an error naming the op") {
  CompiledFn f = autograd::compile([](const std::vector<Tensor>& in) {
    Tensor y = ops::exp(in[0]);
    (void)y.item();
    return std::vector<Tensor>{y};
  });
  try {
    f({Tensor::ones({1})});
    FAIL("no error");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(m.find("Tensor::item") != std::string::npos);
    CHECK(m.find("'unary'") != std::string::npos);
  }
  CHECK_FALSE(autograd::capturing());
  CHECK(Tensor::ones({1}).item() == 1.0f);  // the observer is gone after the error
}

TEST_CASE("a new signature captures again; strict mode refuses it; the cache is bounded") {
  auto fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{ops::scale(in[0], 2.0f)}; };
  autograd::CompileOptions o;
  o.max_graphs = 2;
  CompiledFn f(fn, o);
  CHECK(f({Tensor::ones({2})})[0].at({1}) == 2.0);
  CHECK(f({Tensor::full({3}, 2.0)})[0].at({2}) == 4.0);
  CHECK(f.captures() == 2);
  CHECK(f({Tensor::full({2}, 3.0)})[0].at({0}) == 6.0);
  CHECK(f.captures() == 2);
  CHECK(f.replays() == 1);
  f({Tensor::ones({4})});
  CHECK(f.cached() == 2);
  CHECK(f({Tensor::ones({2}, DType::f32)})[0].at({0}) == 2.0);  // [2] was kept (recently used)

  o.strict = true;
  CompiledFn s(fn, o);
  s({Tensor::ones({2})});
  CHECK_THROWS_WITH_AS(s({Tensor::ones({3})}), doctest::Contains("strict mode"), Error);
}

TEST_CASE("dead calls are removed and temporaries share one planned arena") {
  CompiledFn f = autograd::compile([](const std::vector<Tensor>& in) {
    Tensor unused = ops::exp(in[0]);  // never reaches an output
    Tensor a = ops::scale(in[0], 2.0f), b = ops::add_scalar(a, 1.0f), c = ops::scale(b, 3.0f);
    Tensor d = ops::add_scalar(c, -1.0f);
    return std::vector<Tensor>{d};
  });
  const Tensor x = Tensor::full({1000}, 1.0);
  CHECK(f({x})[0].at({5}) == 8.0);
  const autograd::Graph& g = *f.last_graph();
  CHECK(g.removed_calls() == 1);
  CHECK(g.size() == 4);
  // a, b, c are temporaries: a and c can share memory (b lives between them).
  CHECK(g.captured_temp_bytes() == 3 * 4000);
  CHECK(g.planned_bytes() < g.captured_temp_bytes());
  CHECK(f({Tensor::full({1000}, 2.0)})[0].at({999}) == 14.0);
  // What MMREC_DEBUG=1 and =3 print.
  const std::string sum = g.summary("s"), list = g.listing();
  CHECK(sum.find("graph s: 4 calls (1 dead removed, 0 fused away)") == 0);
  CHECK(sum.find("3 temporary") != std::string::npos);
  CHECK(std::count(list.begin(), list.end(), '\n') == 4);
  CHECK(list.find("#0 affine ( v0[1000]f32:input ) -> v1[1000]f32:temporary") == 0);
}

TEST_CASE("compiled logits equal eager logits (both recurrence modes)") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    const Model m(small_config(mode), 5);
    auto fn = [&](const std::vector<Tensor>& in) {
      autograd::NoGradGuard ng;
      State s = m.initial_state(in[0].size(0));
      return std::vector<Tensor>{m.forward(in[0], s)};
    };
    CompiledFn f = autograd::compile(fn);
    for (uint64_t seed : {1, 2, 3}) {
      const Tensor tokens = random_tokens(2, 21, 64, seed);
      CHECK(bit_equal(f({tokens})[0], fn({tokens})[0]));
    }
    CHECK(f.captures() == 1);
  }
}

TEST_CASE("20 compiled training steps equal 20 eager steps bit for bit (both recurrence modes)") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    const ModelConfig cfg = small_config(mode);
    const Model eager(cfg, 9), compiled(cfg, 9);
    const test_util::CompiledRun r = test_util::check_compiled_steps(eager, compiled, 20, 100);
    CHECK(r.micro_captures == 1);
    CHECK(r.update_captures == 1);
    CHECK(r.update_replays == 19);
  }
}
