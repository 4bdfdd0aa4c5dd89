// Gradient checkpointing: the tape primitive on any function, and the
// model's "block" and "chunk" modes against the plain run (bit for bit where
// no sum is reassociated), also with bf16 amp weights, their memory,
// inference over long inputs, and a captured training step that records the
// recomputation.
#include <doctest/doctest.h>

#include "test_util.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "autograd/checkpoint.h"
#include "autograd/compile.h"
#include "autograd/tape.h"
#include "models/model.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "tensor/allocator.h"
#include "train/optimizer.h"

using namespace mmrec;
using nlohmann::json;
using test_util::max_abs_diff;
using test_util::param;
using test_util::random_tokens;

namespace {

bool same_bits(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.shape() != b.shape()) return false;
  const auto x = a.to_vector(), y = b.to_vector();
  return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

// y = gelu(x W) ⊙ x, z = sum(x): two outputs, W read as a parameter.
std::vector<Tensor> two_outputs(const std::vector<Tensor>& in, const Tensor& w) {
  return {ops::mul(ops::gelu(ops::matmul(in[0], w)), in[0]), ops::sum(in[0])};
}

// Memory fills up and drops slots within 40 tokens (chunk 4, 3 slots).
ModelConfig tiny(const std::string& recurrence) {
  return ModelConfig::from_json(json{{"vocab_size", 19}, {"dim", 8}, {"layers", 2}, {"heads", 2},
                                     {"ffn_dim", 12}, {"mdi_dim", 4}, {"memory_slots", 3}, {"hds_levels", 2},
                                     {"chunk_size", 4}, {"recurrence", recurrence}});
}

struct Run {
  float loss = 0;
  std::vector<Tensor> grads;
  State state;
};

// Loss and every parameter's gradient of one call from `start`.
Run run(Model& m, const Checkpointing& c, const Tensor& tokens, const State& start) {
  m.set_checkpointing(c);
  Run r;
  r.state = start;
  Tensor loss = m.loss(tokens, &r.state);
  autograd::backward(loss);
  r.loss = loss.item();
  for (const auto& [name, p] : m.parameters()) {
    r.grads.push_back(p.grad());
    Tensor(p).zero_grad();
  }
  return r;
}

}  // namespace

TEST_CASE("checkpoint: the same gradients, bit for bit, and only the inputs kept") {
  const Tensor a = param({5, 7}, 1), w = param({7, 7}, 2);
  auto grads = [&](bool checkpointed) {
    const Tensor x = ops::scale(a, 1.5f);  // an input with history
    const auto fn = [w](const std::vector<Tensor>& in) { return two_outputs(in, w); };
    std::vector<Tensor> y = checkpointed ? autograd::checkpoint(fn, {x}, {w}) : fn({x});
    autograd::backward(ops::add(ops::sum(ops::mul(y[0], y[0])), ops::scale(y[1], 3.0f)));
    std::pair<Tensor, Tensor> g{a.grad(), w.grad()};
    Tensor(a).zero_grad();
    Tensor(w).zero_grad();
    return g;
  };
  const auto plain = grads(false), ck = grads(true);
  CHECK(same_bits(plain.first, ck.first));
  CHECK(same_bits(plain.second, ck.second));
  CHECK(autograd::tape_size() == 0);

  SUBCASE("one node; an unused output gets zeros; a passed-through input") {
    const Tensor x = ops::scale(a, 1.0f);
    const size_t before = autograd::tape_size();
    std::vector<Tensor> y = autograd::checkpoint(
        [w](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0], ops::matmul(in[0], w)}; }, {x}, {w});
    CHECK(autograd::tape_size() == before + 1);
    CHECK(!y[0].same(x));
    autograd::backward(ops::sum(y[0]));  // only the passthrough is used
    CHECK(a.grad().to_vector() == std::vector<float>(35, 1.0f));
    CHECK(w.grad().to_vector() == std::vector<float>(49, 0.0f));  // the unused output's zero gradient
    Tensor(a).zero_grad();
  }
  SUBCASE("grad mode off: a plain call") {
    autograd::NoGradGuard ng;
    const auto y = autograd::checkpoint([w](const std::vector<Tensor>& in) { return two_outputs(in, w); }, {a}, {w});
    CHECK(!y[0].requires_grad());
    CHECK(autograd::tape_size() == 0);
  }
  SUBCASE("a tensor with history read from outside the inputs is an error") {
    const Tensor hidden = ops::scale(a, 2.0f);
    const Tensor x = ops::scale(a, 1.0f);
    const auto y = autograd::checkpoint(
        [hidden](const std::vector<Tensor>& in) { return std::vector<Tensor>{ops::mul(in[0], hidden)}; }, {x});
    CHECK_THROWS_WITH(autograd::backward(ops::sum(y[0])),
                      doctest::Contains("not one of its inputs"));
    autograd::clear_tape();
    Tensor(a).zero_grad();
  }
}

TEST_CASE("checkpoint: chained segments keep only their inputs between them") {
  // Eight segments of a 64-wide MLP over 256 rows: the plain graph keeps every
  // segment's activations; checkpointed, the peak holds one segment's.
  const Tensor w = param({64, 64}, 3, -0.2f, 0.2f);
  auto peak = [&](bool checkpointed) {
    Tensor x = param({256, 64}, 4);
    alloc::reset_peak();
    const size_t base = alloc::stats().current_bytes;
    const auto seg = [w](const std::vector<Tensor>& in) {
      Tensor h = in[0];
      for (int i = 0; i < 4; ++i) h = ops::gelu(ops::matmul(h, w));
      return std::vector<Tensor>{h};
    };
    Tensor h = x;
    for (int s = 0; s < 8; ++s) h = checkpointed ? autograd::checkpoint(seg, {h}, {w})[0] : seg({h})[0];
    autograd::backward(ops::sum(h));
    const Tensor g = w.grad();
    Tensor(w).zero_grad();
    return std::make_pair(alloc::stats().peak_bytes - base, g);
  };
  const auto plain = peak(false), ck = peak(true);
  MESSAGE("peak bytes: plain ", plain.first, ", checkpointed ", ck.first);
  CHECK(same_bits(plain.second, ck.second));
  CHECK(ck.first < plain.first / 2);
}

TEST_CASE("model checkpointing \"block\": loss and gradients bit for bit, in both recurrence modes") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    Model m(tiny(mode), 3);
    State start = m.initial_state(2);
    {
      autograd::NoGradGuard ng;
      m.forward(random_tokens(2, 6, 19, 4), start);  // a carried state, mid-chunk
    }
    const Tensor tokens = random_tokens(2, 30, 19, 5);
    const Run plain = run(m, {}, tokens, start);
    const Run block = run(m, {Checkpointing::Mode::block, 0}, tokens, start);
    CHECK(plain.loss == block.loss);
    for (size_t i = 0; i < plain.grads.size(); ++i) {
      CAPTURE(m.parameters()[i].first);
      CHECK(same_bits(plain.grads[i], block.grads[i]));
    }
    for (size_t l = 0; l < plain.state.layers.size(); ++l) {
      CHECK(same_bits(plain.state.layers[l].h, block.state.layers[l].h));
      CHECK(same_bits(plain.state.layers[l].mem_keys, block.state.layers[l].mem_keys));
    }
    CHECK(autograd::tape_size() == 0);
  }
}

TEST_CASE("model checkpointing \"chunk\": full BPTT through h, memory slots and chunk sums") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    Model m(tiny(mode), 6);
    State start = m.initial_state(2);
    {
      autograd::NoGradGuard ng;
      m.forward(random_tokens(2, 6, 19, 7), start);  // segments do not start on chunk boundaries
    }
    const Tensor tokens = random_tokens(2, 30, 19, 8);
    const Run plain = run(m, {}, tokens, start);
    // One segment holding the whole call: no sum is split, the same bits.
    const Run one = run(m, {Checkpointing::Mode::chunk, 32}, tokens, start);
    CHECK(plain.loss == one.loss);
    for (size_t i = 0; i < plain.grads.size(); ++i) {
      CAPTURE(m.parameters()[i].first);
      CHECK(same_bits(plain.grads[i], one.grads[i]));
    }
    // Segments of one chunk and of two: the weight gradients are summed over
    // segments (reassociated), so they agree to float rounding. Truncating
    // the gradient at segment borders would change them by far more.
    for (int64_t tokens_per_segment : {0, 8}) {
      CAPTURE(tokens_per_segment);
      const Run ck = run(m, {Checkpointing::Mode::chunk, tokens_per_segment}, tokens, start);
      CHECK(ck.loss == doctest::Approx(plain.loss).epsilon(1e-6));
      for (size_t i = 0; i < plain.grads.size(); ++i) {
        CAPTURE(m.parameters()[i].first);
        double scale = 0;
        for (float g : plain.grads[i].to_vector()) scale = std::max(scale, double(std::fabs(g)));
        CHECK(max_abs_diff(plain.grads[i], ck.grads[i]) <= 1e-5 * scale + 1e-7);
      }
      for (size_t l = 0; l < plain.state.layers.size(); ++l) {
        const LayerState &p = plain.state.layers[l], &c = ck.state.layers[l];
        CHECK(c.chunk_tokens == p.chunk_tokens);
        CHECK(max_abs_diff(p.h, c.h) < 1e-5);
        CHECK(max_abs_diff(p.mem_keys, c.mem_keys) < 1e-5);
        CHECK(max_abs_diff(p.chunk_v_sum, c.chunk_v_sum) < 1e-5);
        CHECK(!c.h.requires_grad());
      }
    }
    CHECK(autograd::tape_size() == 0);
  }
}

TEST_CASE("model checkpointing with bf16 amp weights: block and one-segment chunk bit for bit, chunk to rounding") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    Model m(tiny(mode), 4);
    m.use_bf16(/*keep_f32=*/true);  // bf16 GEMM copies, gradients into the f32 masters
    const State start = m.initial_state(2);
    const Tensor tokens = random_tokens(2, 30, 19, 9);
    const Run plain = run(m, {}, tokens, start);
    const Run block = run(m, {Checkpointing::Mode::block, 0}, tokens, start);
    const Run one = run(m, {Checkpointing::Mode::chunk, 32}, tokens, start);
    const Run ck = run(m, {Checkpointing::Mode::chunk, 8}, tokens, start);
    CHECK(plain.loss == block.loss);
    CHECK(plain.loss == one.loss);
    CHECK(ck.loss == doctest::Approx(plain.loss).epsilon(1e-6));
    for (size_t i = 0; i < plain.grads.size(); ++i) {
      CAPTURE(m.parameters()[i].first);
      CHECK(same_bits(plain.grads[i], block.grads[i]));
      CHECK(same_bits(plain.grads[i], one.grads[i]));
      double scale = 0;
      for (float g : plain.grads[i].to_vector()) scale = std::max(scale, double(std::fabs(g)));
      CHECK(max_abs_diff(plain.grads[i], ck.grads[i]) <= 1e-5 * scale + 1e-7);
    }
    CHECK(autograd::tape_size() == 0);
  }
}

TEST_CASE("model checkpointing: training peak memory; a bad checkpoint_tokens") {
  Model m(ModelConfig::from_json(json{{"vocab_size", 32}, {"dim", 32}, {"layers", 2}, {"heads", 2},
                                      {"memory_slots", 8}, {"chunk_size", 32}}),
          1);
  auto peak = [&](Checkpointing::Mode mode, int64_t T) {
    m.set_checkpointing({mode, 0});
    const Tensor tokens = random_tokens(1, T, 32, 9);
    alloc::reset_peak();
    const size_t base = alloc::stats().current_bytes;
    autograd::backward(m.loss(tokens));
    for (const auto& [name, p] : m.parameters()) Tensor(p).zero_grad();
    return static_cast<double>(alloc::stats().peak_bytes - base);
  };
  const double none = peak(Checkpointing::Mode::none, 2048), block = peak(Checkpointing::Mode::block, 2048);
  const double chunk = peak(Checkpointing::Mode::chunk, 2048), chunk_short = peak(Checkpointing::Mode::chunk, 256);
  MESSAGE("peak MiB at T 2048: none ", none / 1048576, ", block ", block / 1048576, ", chunk ", chunk / 1048576,
          "; chunk at T 256: ", chunk_short / 1048576);
  CHECK(block < 0.6 * none);
  CHECK(chunk < 0.2 * none);
  CHECK(chunk < 1.5 * chunk_short);
  CHECK_THROWS_WITH(m.set_checkpointing({Checkpointing::Mode::chunk, 48}),
                    doctest::Contains("not a multiple of the model's chunk_size 32"));
  CHECK(Checkpointing::parse("block") == Checkpointing::Mode::block);
  CHECK_THROWS_WITH(Checkpointing::parse("layer"), doctest::Contains("\"layer\""));
}

TEST_CASE("inference over 100,000 tokens in one call: memory of one piece plus the logits") {
  Model m(ModelConfig::from_json(json{{"vocab_size", 16}, {"dim", 16}, {"layers", 1}, {"heads", 2},
                                      {"memory_slots", 8}, {"chunk_size", 64}}),
          2);
  autograd::NoGradGuard ng;
  auto beyond_logits = [&](int64_t T, Tensor* out) {
    const Tensor tokens = random_tokens(1, T, 16, 10);
    State s = m.initial_state(1);
    alloc::reset_peak();
    const size_t base = alloc::stats().current_bytes;
    Tensor logits = m.forward(tokens, s);
    if (out) *out = logits;
    return static_cast<double>(alloc::stats().peak_bytes - base) - static_cast<double>(T * 16 * sizeof(float));
  };
  Tensor whole;
  const double small = beyond_logits(8192, nullptr), large = beyond_logits(100000, &whole);
  MESSAGE("peak beyond the logits: ", small / 1048576, " MiB at 8192 tokens, ", large / 1048576, " at 100000");
  CHECK(large < 1.1 * small);
  // The pieces carry the state: the same logits as feeding the tail alone after the head.
  const Tensor tokens = random_tokens(1, 100000, 16, 10);
  State s = m.initial_state(1);
  m.forward(tokens.slice(1, 0, 99000).contiguous(), s);
  const Tensor tail = m.forward(tokens.slice(1, 99000, 100000).contiguous(), s);
  CHECK(max_abs_diff(tail, whole.slice(1, 99000, 100000).contiguous()) < 1e-4);
}

TEST_CASE("a captured training step records the recomputation: replay equals eager, bit for bit") {
  for (const auto mode : {Checkpointing::Mode::block, Checkpointing::Mode::chunk}) {
    CAPTURE(static_cast<int>(mode));
    Model eager(tiny("parallel"), 11), compiled(tiny("parallel"), 11);
    eager.set_checkpointing({mode, 8});
    compiled.set_checkpointing({mode, 8});
    OptimConfig oc;
    AdamW opt(compiled.parameters(), decay_mask(compiled.parameters(), oc), oc);
    opt.zero_grad_in_place();  // a captured step accumulates into gradients that exist
    autograd::CompiledFn micro = autograd::compile([&](const std::vector<Tensor>& in) {
      Tensor loss = compiled.loss(in[0]);
      autograd::backward(loss);
      return std::vector<Tensor>{loss};
    });
    for (uint64_t seed : {21, 22, 23}) {
      const Tensor batch = random_tokens(2, 22, 19, seed);
      Tensor le = eager.loss(batch);
      autograd::backward(le);
      CHECK(same_bits(le, micro({batch})[0]));
      for (size_t i = 0; i < eager.parameters().size(); ++i) {
        CAPTURE(eager.parameters()[i].first);
        CHECK(same_bits(eager.parameters()[i].second.grad(), compiled.parameters()[i].second.grad()));
        Tensor(eager.parameters()[i].second).zero_grad();
      }
      opt.zero_grad_in_place();
    }
    CHECK(micro.captures() == 1);
    CHECK(micro.replays() == 2);
  }
}
