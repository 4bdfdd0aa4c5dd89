// Graph capture and replay (autograd/graph.h, autograd/compile.h): the
// recorded calls, host reads refused inside a capture, replay equal to eager
// on ops, on the model's logits and on 20 whole training steps (forward,
// loss, backward, clipping, AdamW) in both recurrence modes, recapture on a
// new signature, strict mode, memory planning and dead calls; pointwise
// fusion (fused, bit-identical to eager, left alone where unsafe), and a
// compiled model's fusions. The other passes: test_passes.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>

#include "autograd/compile.h"
#include "autograd/tape.h"
#include "models/model.h"
#include "ops/activation.h"
#include "ops/copy_chains.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/reduce.h"
#include "ops/shape.h"
#include "ops/view.h"
#include "ops/softmax.h"
#include "tensor/allocator.h"
#include "tensor/random.h"
#include "compiled_steps.h"
#include "test_util.h"
#include "train/optimizer.h"

using namespace mmrec;
using autograd::CompiledFn;
using autograd::OpKind;
using test_util::bit_equal;
using test_util::count_kind;

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

TEST_CASE("a KernelClock counts the kernel calls of eager dispatches and of replays, by kind") {
  Generator g(4);
  const Tensor w = rand_uniform({5, 7}, g, -1, 1), x = rand_uniform({3, 7}, g, -1, 1);
  auto fn = [&](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    return std::vector<Tensor>{ops::add(ops::linear(in[0], w), ops::linear(in[0], w))};
  };
  const auto idx = [](OpKind k) { return static_cast<size_t>(k); };
  autograd::KernelClock eager;
  autograd::set_kernel_clock(&eager);
  fn({x});
  autograd::set_kernel_clock(nullptr);
  CHECK(eager.calls[idx(OpKind::linear)] == 2);
  CHECK(eager.calls[idx(OpKind::binary)] == 1);
  CHECK(eager.seconds[idx(OpKind::linear)] > 0);
  CompiledFn f = autograd::compile(fn);
  f({x});  // the capture
  fn({x});  // unclocked: nothing counted
  CHECK(eager.calls[idx(OpKind::linear)] == 2);
  autograd::KernelClock replayed;
  autograd::set_kernel_clock(&replayed);
  f({x});
  autograd::set_kernel_clock(nullptr);
  REQUIRE(f.replays() == 1);
  int64_t total = 0;
  for (int64_t n : replayed.calls) total += n;
  CHECK(total == static_cast<int64_t>(f.last_graph()->size()));
  CHECK(replayed.calls[idx(OpKind::linear)] == static_cast<int64_t>(count_kind(*f.last_graph(), OpKind::linear)));
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
    // Each intermediate read twice by its reader: not a chain to fuse.
    Tensor a = ops::scale(in[0], 2.0f), b = ops::add(a, a), c = ops::add(b, b);
    Tensor d = ops::add(c, c);
    return std::vector<Tensor>{d};
  });
  const Tensor x = Tensor::full({1000}, 1.0);
  CHECK(f({x})[0].at({5}) == 16.0);
  const autograd::Graph& g = *f.last_graph();
  CHECK(g.removed_calls() == 1);
  CHECK(g.size() == 4);
  // a, b, c are temporaries: a and c can share memory (b lives between them).
  CHECK(g.captured_temp_bytes() == 3 * 4000);
  CHECK(g.planned_bytes() < g.captured_temp_bytes());
  CHECK(f({Tensor::full({1000}, 2.0)})[0].at({999}) == 32.0);
  // What MMREC_DEBUG=1 and =3 print.
  const std::string sum = g.summary("s"), list = g.listing();
  CHECK(sum.find("graph s: 4 calls (1 dead removed, 0 fused away)") == 0);
  CHECK(sum.find("3 temporary") != std::string::npos);
  CHECK(std::count(list.begin(), list.end(), '\n') == 4);
  CHECK(list.find("#0 affine ( v0[1000]f32:input ) -> v1[1000]f32:temporary") == 0);
}

TEST_CASE("planned temporaries that a call touches together start apart within a 4 KiB page") {
  // Eight large intermediates, each read twice (no chain to fuse), and a
  // last call reading four of them: page-multiple sizes would put every
  // one at the same offset in a page without the colours.
  CompiledFn f = autograd::compile([](const std::vector<Tensor>& in) {
    std::vector<Tensor> t{ops::scale(in[0], 2.0f)};
    for (int i = 1; i < 8; ++i) t.push_back(ops::add(t.back(), ops::scale(t.back(), 0.5f)));
    return std::vector<Tensor>{ops::add(ops::add(t[4], t[5]), ops::add(t[6], t[7]))};
  });
  const Tensor x = Tensor::full({64, 1024}, 1.0);  // 256 KiB
  CHECK(f({x})[0].at({3, 7}) == doctest::Approx(2.0 * std::pow(1.5, 4) * (1 + 1.5 + 2.25 + 3.375)));
  const autograd::Graph& g = *f.last_graph();
  const auto& bufs = g.buffers();
  int pairs = 0;
  for (const autograd::Call& c : g.calls()) {
    std::vector<int64_t> offs;
    for (const std::vector<int32_t>* ids : {&c.in_ids, &c.out_ids})
      for (int32_t id : *ids) {
        if (id < 0) continue;
        const autograd::Buffer& b = bufs[static_cast<size_t>(g.values()[static_cast<size_t>(id)].buffer)];
        if (b.role == autograd::Role::temporary && b.bytes >= (64 << 10)) offs.push_back(b.offset);
      }
    for (size_t i = 0; i < offs.size(); ++i)
      for (size_t j = i + 1; j < offs.size(); ++j) {
        const int64_t d = ((offs[i] - offs[j]) % 4096 + 4096) % 4096;
        CHECK(std::min(d, 4096 - d) >= 256);
        ++pairs;
      }
  }
  CHECK(pairs > 8);
  // Buffers live at the same time never overlap.
  for (const autograd::Buffer& a : bufs)
    for (const autograd::Buffer& b : bufs)
      if (&a != &b && a.role == autograd::Role::temporary && b.role == autograd::Role::temporary &&
          a.first <= b.last && b.first <= a.last)
        CHECK((a.offset + static_cast<int64_t>(a.bytes) <= b.offset || b.offset + static_cast<int64_t>(b.bytes) <= a.offset));
  CHECK(g.planned_bytes() < g.captured_temp_bytes());
}

TEST_CASE("a capture holds what the eager run holds, not every temporary it made") {
  // 33 intermediates of 1 MiB, at most three alive at once in the eager run.
  auto fn = [](const std::vector<Tensor>& in) {
    Tensor t = ops::scale(in[0], 1.0f);
    for (int i = 0; i < 16; ++i) t = ops::add(t, ops::scale(t, 0.5f));
    return std::vector<Tensor>{t};
  };
  const Tensor x = Tensor::full({256, 1024}, 1.0);
  alloc::empty_cache();
  const size_t base = alloc::stats().current_bytes;
  alloc::reset_peak();
  const Tensor want = fn({x})[0];
  const size_t eager = alloc::stats().peak_bytes - base;
  alloc::reset_peak();
  CompiledFn f = autograd::compile(fn);
  CHECK(bit_equal(f({x})[0], want));
  const size_t capture = alloc::stats().peak_bytes - base;
  MESSAGE("allocator peak: eager ", eager >> 10, " KiB, capture ", capture >> 10, " KiB, arena ",
          f.last_graph()->planned_bytes() >> 10, " KiB");
  // At most the eager run's, then the arena beside the input's and output's
  // buffers (all 33 held at once would be 33 MiB).
  CHECK(capture <= eager + f.last_graph()->planned_bytes() + 2 * x.nbytes());
  CHECK(bit_equal(f({x})[0], want));
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

TEST_CASE("pointwise fusion: a chain of elementwise calls becomes one call, bit-identical to the chain") {
  Generator gen(21);
  // Sizes off the vector width, one below and one above the kernels' task grain (parallel chunks).
  for (int64_t n : {1, 17, 1000, 40000, 100003}) {
    CAPTURE(n);
    const Tensor a = rand_uniform({n}, gen, -4, 4), b = rand_uniform({n}, gen, -4, 4);
    const Tensor c = rand_uniform({n}, gen, -4, 4), d = rand_uniform({n}, gen, 0.5f, 4);
    struct Case {
      const char* name;
      std::function<Tensor(const std::vector<Tensor>&)> f;
      size_t calls;  // in the chain
    };
    const std::vector<Case> cases = {
        {"binary.mul -> clamp", [](const auto& in) { return ops::clamp(ops::mul(in[0], in[1]), 1e-6f, 1 - 1e-6f); }, 2},
        {"binary.add -> binary.add", [](const auto& in) { return ops::add(ops::add(in[0], in[1]), in[2]); }, 2},
        {"sigmoid_mul -> binary.mul -> binary.add",
         [](const auto& in) { return ops::add(ops::sigmoid_mul(in[0], in[1]), ops::mul(in[2], in[3])); }, 3},
        {"affine -> activation.gelu -> binary.div -> unary.exp -> activation.sigmoid -> binary.sub",
         [](const auto& in) {
           return ops::sub(ops::sigmoid(ops::exp(ops::div(ops::gelu(ops::scale(in[0], 1.5f)), in[3]))), in[1]);
         },
         6},
        {"unary.log -> unary.neg -> affine",
         [](const auto& in) { return ops::add_scalar(ops::neg(ops::log(in[3])), 0.25f); }, 3},
    };
    for (const Case& k : cases) {
      CAPTURE(k.name);
      auto fn = [&](const std::vector<Tensor>& in) {
        autograd::NoGradGuard ng;
        return std::vector<Tensor>{k.f(in)};
      };
      CompiledFn f = autograd::compile(fn);
      const std::vector<Tensor> in = {a, b, c, d};
      const Tensor got = f(in)[0].clone();
      const autograd::Graph& g = *f.last_graph();
      CHECK(g.size() == 1);
      CHECK(count_kind(g, OpKind::fused_pointwise) == 1);
      CHECK(g.fused_calls() == k.calls - 1);
      CHECK(g.fusions().find(std::string("fused #0: ") + k.name + " (" + std::to_string(k.calls) + " calls") == 0);
      CHECK(g.planned_bytes() == 0);  // the intermediates are gone
      const Tensor want = fn(in)[0];
      CHECK(bit_equal(got, want));                      // the capture ran the chain eagerly
      CHECK(bit_equal(f(in)[0], want));                 // the replay runs the fused kernel
      CHECK(bit_equal(f({c, d, a, b})[0], fn({c, d, a, b})[0]));
    }
  }
}

TEST_CASE("with the passes off (autograd::PassesOff) a capture replays the calls eager made, bit for bit") {
  Generator gen(27);
  const Tensor a = rand_uniform({1000}, gen, -4, 4), b = rand_uniform({1000}, gen, -4, 4);
  const Tensor c = rand_uniform({1000}, gen, -4, 4);
  auto fn = [](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    return std::vector<Tensor>{ops::clamp(ops::add(ops::mul(in[0], in[1]), in[2]), -2, 2)};
  };
  CompiledFn on = autograd::compile(fn), off = autograd::compile(fn);
  CHECK(autograd::passes_enabled());
  on({a, b, c});
  {
    autograd::PassesOff guard;
    CHECK_FALSE(autograd::passes_enabled());
    off({a, b, c});  // the capture
  }
  CHECK(autograd::passes_enabled());
  CHECK(on.last_graph()->size() == 1);
  CHECK(on.last_graph()->fused_calls() == 2);
  const autograd::Graph& g = *off.last_graph();
  CHECK(g.size() == 3);
  CHECK(g.fused_calls() == 0);
  CHECK(count_kind(g, OpKind::binary) == 2);
  CHECK(count_kind(g, OpKind::clamp) == 1);
  CHECK(g.fusions().empty());
  CHECK(g.planned_bytes() > 0);  // the intermediates, planned as eager's were allocated
  // A replay after the guard is gone runs the graph as captured.
  CHECK(bit_equal(off({c, a, b})[0], fn({c, a, b})[0]));
  CHECK(bit_equal(on({c, a, b})[0], fn({c, a, b})[0]));
}

TEST_CASE("pointwise fusion: a repeating operand, and the tape's accumulation") {
  Generator gen(22);
  const Tensor x = rand_uniform({3, 5, 37}, gen, -2, 2), bias = rand_uniform({37}, gen, -1, 1);
  auto fn = [&](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    return std::vector<Tensor>{ops::gelu(ops::add(in[0], in[1]))};  // bias over leading axes
  };
  CompiledFn f = autograd::compile(fn);
  f({x, bias});
  CHECK(f.last_graph()->size() == 1);
  CHECK(bit_equal(f({x, bias})[0], fn({x, bias})[0]));
  // A repeating operand made by a chain of its own: that chain stays apart (fewer elements).
  auto fn2 = [&](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    return std::vector<Tensor>{ops::mul(in[0], ops::exp(ops::neg(in[1])))};
  };
  CompiledFn f2 = autograd::compile(fn2);
  f2({x, bias});
  CHECK(f2.last_graph()->fusions() == "fused #0: unary.neg -> unary.exp (2 calls, 1 pass over 0.3 KiB)\n");
  CHECK(count_kind(*f2.last_graph(), OpKind::binary) == 1);
  const Tensor x2 = rand_uniform({3, 5, 37}, gen, -2, 2), bias2 = rand_uniform({37}, gen, -1, 1);
  CHECK(bit_equal(f2({x2, bias2})[0], fn2({x2, bias2})[0]));

  // A gradient summed from two uses: copy + grad_accumulate into one call.
  const Tensor w = rand_uniform({3, 5, 37}, gen, -1, 1);
  auto step = [&](const std::vector<Tensor>& in) {
    Tensor p = in[0].detach().set_requires_grad(true);
    Tensor y = ops::sum(ops::add(ops::mul(p, w), ops::sigmoid(p)));
    autograd::backward(y);
    return std::vector<Tensor>{p.grad()};
  };
  CompiledFn s = autograd::compile(step);
  const Tensor g1 = s({x})[0].clone();
  CHECK(bit_equal(g1, step({x})[0]));
  CHECK(bit_equal(s({w})[0], step({w})[0]));
  CHECK(count_kind(*s.last_graph(), OpKind::fused_pointwise) >= 1);
}

TEST_CASE("pointwise fusion stops where an intermediate has another reader or outlives the step") {
  Generator gen(23);
  const Tensor a = rand_uniform({100}, gen, -2, 2), b = rand_uniform({100}, gen, -2, 2);
  // t is read twice: mul stays its own call; clamp and add fuse, reading t.
  CompiledFn f = autograd::compile([](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    Tensor t = ops::mul(in[0], in[1]);
    return std::vector<Tensor>{ops::add(ops::clamp(t, -1, 1), t)};
  });
  f({a, b});
  CHECK(f.last_graph()->size() == 2);
  CHECK(count_kind(*f.last_graph(), OpKind::binary) == 1);
  CHECK(f.last_graph()->fusions() == "fused #1: clamp -> binary.add (2 calls, 1 pass over 0.8 KiB)\n");
  // t is an output too: it must be written, so it is no intermediate.
  CompiledFn o = autograd::compile([](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    Tensor t = ops::mul(in[0], in[1]);
    return std::vector<Tensor>{t, ops::clamp(t, -1, 1)};
  });
  const std::vector<Tensor> r = o({a, b});
  CHECK(o.last_graph()->size() == 2);
  CHECK(o.last_graph()->fused_calls() == 0);
  CHECK(bit_equal(r[0], ops::mul(a, b)));
  // A strided operand is made contiguous by a copy first; the chain after it still fuses.
  CompiledFn v = autograd::compile([](const std::vector<Tensor>& in) {
    autograd::NoGradGuard ng;
    return std::vector<Tensor>{ops::exp(ops::neg(in[0].transpose(0, 1)))};
  });
  const Tensor m = rand_uniform({7, 9}, gen, -1, 1);
  CHECK(bit_equal(v({m})[0], ops::exp(ops::neg(m.transpose(0, 1)))));
  CHECK(count_kind(*v.last_graph(), OpKind::copy) == 1);
  CHECK(count_kind(*v.last_graph(), OpKind::fused_pointwise) == 1);
}

TEST_CASE("a compiled model fuses its pointwise chains; logits, gradients and weights equal eager bit for bit") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    const ModelConfig cfg = small_config(mode);
    // Inference: the decay gate clamp(mul(σ, σ)) and x + h + c fuse.
    const Model m(cfg, 5);
    auto fwd = [&](const std::vector<Tensor>& in) {
      autograd::NoGradGuard ng;
      State s = m.initial_state(in[0].size(0));
      return std::vector<Tensor>{m.forward(in[0], s)};
    };
    CompiledFn f = autograd::compile(fwd);
    const Tensor tokens = random_tokens(2, 21, 64, 4);
    f({tokens});
    CHECK(bit_equal(f({tokens})[0], fwd({tokens})[0]));
    const std::string fused = f.last_graph()->fusions();
    CHECK(fused.find("binary.mul -> clamp (2 calls") != std::string::npos);
    CHECK(fused.find("binary.add -> binary.add (2 calls") != std::string::npos);
    CHECK(fused.find("linear -> binary.add (2 calls") != std::string::npos);  // the FFN's residual
    CHECK(count_kind(*f.last_graph(), OpKind::fused_pointwise) >= 2 * static_cast<size_t>(cfg.layers));
    // One sequence: the memory's chunk means of k and v read the projection's
    // output in place (with a batch the rows of a partial chunk break the stride).
    const Tensor one = random_tokens(1, 21, 64, 6);
    f({one});
    CHECK(bit_equal(f({one})[0], fwd({one})[0]));
    CHECK(f.last_graph()->fusions().find("copy -> sum_axis") != std::string::npos);
    // Training: forward, loss and backward in one graph, then clipping and AdamW.
    const Model eager(cfg, 9), compiled(cfg, 9);
    const test_util::CompiledRun r = test_util::check_compiled_steps(eager, compiled, 3, 300);
    CHECK(r.micro_fused > 0);
    CHECK(r.micro_calls.count(OpKind::fused_pointwise) == 1);
    CHECK(r.micro_fusions.find("binary.add -> binary.add") != std::string::npos);
    // The decay gate: clamp's backward keeps its output, so the product dies in the clamp.
    CHECK(r.micro_fusions.find("binary.mul -> clamp (2 calls") != std::string::npos);
    if (std::string(mode) == "parallel") {
      // σ(gate) ⊙ z and its backward read z, a column slice of qkvz, in place.
      CHECK(r.micro_fusions.find("copy -> sigmoid_mul (2 calls, y read in place") != std::string::npos);
      CHECK(r.micro_fusions.find("copy -> sigmoid_mul_bwd (2 calls, y read in place") != std::string::npos);
    } else {
      // The recurrence's step σ(gate) ⊙ z_t + γ_t ⊙ h stays one pointwise pass.
      CHECK(r.micro_fusions.find("sigmoid_mul -> binary.mul -> binary.add (3 calls") != std::string::npos);
    }
    CHECK(r.micro_fusions.find("copy -> grad_accumulate") != std::string::npos);
    CHECK(r.micro_calls.count(OpKind::memattn) == 1);  // memory attention reads q's heads in place
    CHECK(r.micro_calls.count(OpKind::memattn_bwd) == 1);
    CHECK(r.micro_fusions.find("memattn -> copy_rows (2 calls, written in place") != std::string::npos);  // chunk rows
    CHECK(r.micro_fusions.find("copy_rows -> copy") != std::string::npos);  // copied rows copied again: one copy (copy_chains)
    CHECK(r.micro_fusions.find("act_backward -> col_sum") != std::string::npos);  // the FFN's and MDI's bias gradients
    // gelu(u) made again for fc2's dW, with its backward
    CHECK(r.micro_fusions.find("the rematerialized activation made with its backward") != std::string::npos);
    CHECK(r.micro_fusions.find("written in place") != std::string::npos);  // dq, dk, dv, dz into the qkvz gradient
    CHECK(r.micro_fusions.find("rmsnorm_bwd -> copy -> grad_accumulate") != std::string::npos);  // the residual's
    // A dX GEMM adding the gradient it is added to, or that add written in
    // its place in the qkvz gradient (one pass less either way; which one
    // takes it depends on the layout: test_passes.cpp has both alone).
    bool add_in_place = false;
    for (size_t a = 0, b; a < r.micro_fusions.size(); a = b + 1) {
      b = std::min(r.micro_fusions.find('\n', a), r.micro_fusions.size());
      const std::string line = r.micro_fusions.substr(a, b - a);
      add_in_place |= line.find("copy -> grad_accumulate (2 calls") != std::string::npos &&
                      line.find("written in place") != std::string::npos;
    }
    CHECK((r.micro_fusions.find("gemm -> copy -> grad_accumulate (3 calls") != std::string::npos || add_in_place));
  }
}
