// Compiled generation (models/generation.h): the one-token step over a
// fixed-shape state, captured once and replayed, gives the eager tokens and
// logits through a memory that fills and drops slots, in both recurrence
// modes, packed or not, f32 or bf16; no filled slot reads zero; the state
// goes back and forth to an eager State; strict mode refuses another
// signature.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "autograd/tape.h"
#include "autograd/compile.h"
#include "models/generation.h"
#include "models/memory.h"
#include "models/model.h"
#include "ops/elementwise.h"
#include "ops/memory_slots.h"
#include "tensor/random.h"
#include "test_util.h"

using namespace mmrec;
using test_util::max_abs_diff;
using test_util::random_tokens;

namespace {

// Small, with weights larger than the init so that logits spread (greedy
// choices are not near ties); 4 slots of 8-token chunks: full after 32
// tokens, dropping one every 8 after that.
Model generation_model(const std::string& recurrence, int64_t slots = 4) {
  Model m(ModelConfig::from_json({{"vocab_size", 64}, {"dim", 32}, {"layers", 2}, {"heads", 2}, {"memory_slots", slots},
                                  {"hds_levels", 3}, {"chunk_size", 8}, {"recurrence", recurrence}}),
          7);
  Generator g(8);
  for (const auto& [name, p] : m.parameters())
    if (name.find("norm") == std::string::npos && name.find(".weight") != std::string::npos) {
      Tensor dst = p;
      dst.copy_from(randn(p.shape(), g, 0.0f, 0.15f));
    }
  return m;
}

int64_t argmax_row(const Tensor& logits) {
  const std::vector<float> v = logits.to_vector();
  return std::max_element(v.begin(), v.end()) - v.begin();
}

// The mean of two tokens' rows as the memory writes it: (0 + a + b) * (1/2).
Tensor mean_pair(const Tensor& a, const Tensor& b) { return ops::scale(ops::add(a, b), 0.5f); }

Tensor token(int64_t id) { return Tensor::from_vector(std::vector<int32_t>{static_cast<int32_t>(id)}, {1, 1}); }

// Greedy generation of n tokens after a prompt, eager and compiled side by
// side: every token equal, logits within `tol` (relative to their scale).
void check_generation(const Model& m, const InferencePack* pack, int64_t n, double tol) {
  autograd::NoGradGuard ng;
  State eager = m.initial_state(1);
  Tensor le = m.forward(random_tokens(1, 13, 64, 3), eager);  // 13: a chunk in progress
  GenerationGraph g(m, eager, pack);
  int64_t next = argmax_row(le.slice(1, 12, 13));
  int64_t same = 0;
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    le = m.forward(token(next), eager, pack);
    const Tensor lc = g.step(token(next));
    double scale = 0;
    for (float x : le.to_vector()) scale = std::max(scale, std::fabs(double(x)));
    worst = std::max(worst, max_abs_diff(le, lc) / scale);
    const int64_t te = argmax_row(le), tc = argmax_row(lc);
    same += te == tc;
    next = te;
  }
  CHECK(same == n);
  CHECK(worst <= tol);
  CHECK(g.compiled().captures() == 1);
  CHECK(g.compiled().replays() == static_cast<size_t>(n - 1));
  // The fixed state stands for the eager one: the same slots, sums, counts.
  const State back = g.state();
  for (size_t l = 0; l < eager.layers.size(); ++l) {
    CHECK(back.layers[l].chunk_tokens == eager.layers[l].chunk_tokens);
    REQUIRE(back.layers[l].mem_keys.shape() == eager.layers[l].mem_keys.shape());
    CHECK(max_abs_diff(back.layers[l].mem_keys, eager.layers[l].mem_keys) <= 1e-4);
    CHECK(max_abs_diff(back.layers[l].chunk_v_sum, eager.layers[l].chunk_v_sum) <= 1e-4);
    CHECK(max_abs_diff(back.layers[l].h, eager.layers[l].h) <= 1e-4);
  }
  CHECK(eager.layers[0].mem_keys.size(1) == m.config().memory_slots);  // the memory filled (and dropped)
}

}  // namespace

TEST_CASE("compiled generation of 300 tokens equals eager through a filling and dropping memory") {
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    const Model m = generation_model(mode);
    const InferencePack pack = m.pack_for_inference(1);
    check_generation(m, &pack, 300, 1e-5);
    check_generation(m, nullptr, 40, 1e-5);
  }
}

TEST_CASE("compiled generation with bf16 weights and with no memory") {
  Model m16 = generation_model("parallel");
  m16.use_bf16(/*keep_f32=*/false);
  const InferencePack pack16 = m16.pack_for_inference(1);
  check_generation(m16, &pack16, 60, 1e-4);
  const Model none = generation_model("parallel", /*slots=*/0);
  const InferencePack pack = none.pack_for_inference(1);
  check_generation(none, &pack, 30, 1e-5);
}

TEST_CASE("the fixed-shape memory: no filled slot reads zero; levels as the eager memory") {
  autograd::NoGradGuard ng;
  const int64_t B = 2, D = 8, H = 2, M = 5, L = 3, C = 2;
  ops::SlotMemory mem = ops::make_slot_memory(B, D, H, M, L, C);
  const Tensor q = test_util::param({B, 1, D}, 1), k = test_util::param({B, 1, D}, 2), v = test_util::param({B, 1, D}, 3);
  const Tensor empty = slot_memory_pass(q, k, v, mem);
  CHECK(empty.to_vector() == std::vector<float>(static_cast<size_t>(B * D), 0.0f));
  CHECK(mem.counts.flat_at(0) == 1);
  CHECK(mem.counts.flat_at(1) == 0);
  // Seven more tokens: four chunks, four slots, each the mean of its two tokens.
  std::vector<Tensor> ks = {k}, vs = {v};
  for (int i = 0; i < 7; ++i) {
    ks.push_back(test_util::param({B, 1, D}, 10 + i));
    vs.push_back(test_util::param({B, 1, D}, 20 + i));
    slot_memory_pass(q, ks.back(), vs.back(), mem);
  }
  CHECK(mem.counts.flat_at(0) == 0);
  REQUIRE(mem.counts.flat_at(1) == 4);
  Tensor mk = Tensor::empty({B, 4, D}), mv = Tensor::empty({B, 4, D});
  for (int64_t s = 0; s < 4; ++s) {
    mk.slice(1, s, s + 1).copy_from(mean_pair(ks[2 * s], ks[2 * s + 1]));
    mv.slice(1, s, s + 1).copy_from(mean_pair(vs[2 * s], vs[2 * s + 1]));
  }
  CHECK(max_abs_diff(mem.slots_k.slice(1, 0, 4), mk) <= 1e-6);
  // The read over the fixed buffers equals the eager attention over 4 slots.
  const Tensor eager = memory_attention(q, mk, mv, H, L);
  const Tensor fixed = memory_read(q, {mem.kt, mem.v}, H, mem.mask);
  CHECK(max_abs_diff(eager, fixed) <= 1e-6);
  // Two more chunks: 5 slots filled, then the oldest dropped.
  for (int i = 0; i < 4; ++i) slot_memory_pass(q, ks[i], vs[i], mem);
  CHECK(mem.counts.flat_at(1) == 5);
  CHECK(max_abs_diff(mem.slots_k.slice(1, 0, 3), mk.slice(1, 1, 4)) <= 1e-6);
}

TEST_CASE("compiled generation: strict refuses another signature; bad tokens are errors") {
  autograd::NoGradGuard ng;
  const Model m = generation_model("parallel");
  GenerationGraph g(m, m.initial_state(1));
  g.step(token(1));
  g.step(token(2));
  CHECK(g.compiled().captures() == 1);
  autograd::CompileOptions strict;
  strict.strict = true;
  GenerationGraph s(m, m.initial_state(1), nullptr, strict);
  s.step(token(1));
  CHECK_THROWS_WITH_AS(s.step(Tensor::from_vector(std::vector<int32_t>{1, 2}, {2, 1})),
                       doctest::Contains("strict"), Error);
  // A token outside the vocabulary is refused inside the replayed kernels.
  CHECK_THROWS_AS(g.step(token(64)), Error);
}

TEST_CASE("calls of whole chunks over the fixed-shape state replay the eager logits (mmrec-eval --compile)") {
  autograd::NoGradGuard ng;
  for (const char* mode : {"parallel", "sequential"}) {
    CAPTURE(mode);
    const Model m = generation_model(mode);
    State eager = m.initial_state(1);
    FixedState fixed = FixedState::from(m, eager);
    autograd::CompiledFn call = autograd::compile(
        [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{m.forward_fixed(in[0], fixed)}; });
    for (int i = 0; i < 8; ++i) {  // 8 calls of two chunks: 16 slots written into 4
      const Tensor tokens = random_tokens(1, 16, 64, 50 + i);
      const Tensor le = m.forward(tokens, eager), lc = call({tokens})[0];
      CHECK(max_abs_diff(le, lc) <= 1e-5);
    }
    CHECK(call.captures() == 1);
    CHECK(fixed.to_state().layers[1].mem_keys.size(1) == 4);
    // Not at a chunk boundary: an error when the call runs, not a wrong answer.
    call({random_tokens(1, 16, 64, 1)});
    m.forward_fixed(token(3), fixed);
    CHECK_THROWS_WITH_AS(call({random_tokens(1, 16, 64, 2)}), doctest::Contains("chunk boundary"), Error);
  }
}
