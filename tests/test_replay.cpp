// Replays allocate nothing: kernels declare the scratch they need (the
// builder passes it as the call's last output, and a capture plans it in the
// arena), so a replayed training step, quantization-aware step and
// generation step make no tensor allocation; the scratch is planned.
#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <string>

#include "autograd/compile.h"
#include "autograd/tape.h"
#include "models/generation.h"
#include "models/model.h"
#include "models/quant.h"
#include "tensor/allocator.h"
#include "compiled_steps.h"
#include "test_util.h"
#include "train/optimizer.h"

using namespace mmrec;
using test_util::random_tokens;

namespace {

Model small_model(const std::string& recurrence) {
  return Model(ModelConfig::from_json({{"vocab_size", 64}, {"dim", 32}, {"layers", 2}, {"heads", 2},
                                       {"memory_slots", 4}, {"chunk_size", 8}, {"recurrence", recurrence}}),
               5);
}

// Tensor allocations made by `n` calls of f (after one to warm up).
size_t allocations_of(const std::function<void()>& f, int n = 3) {
  f();
  const size_t before = alloc::stats().allocations;
  for (int i = 0; i < n; ++i) f();
  return alloc::stats().allocations - before;
}

}  // namespace

TEST_CASE("a replayed training step allocates nothing (both recurrence modes, with QAT)") {
  for (const char* mode : {"parallel", "sequential"}) {
    for (bool qat : {false, true}) {
      CAPTURE(mode);
      CAPTURE(qat);
      Model m = small_model(mode);
      if (qat) m.set_quantization(std::make_shared<ModelQuant>(m, QuantConfig{}));
      OptimConfig oc;
      AdamW opt(m.parameters(), decay_mask(m.parameters(), oc), oc);
      auto [micro, update] = test_util::compile_step(m, opt, 1.0);
      const Tensor batch = random_tokens(2, 33, 64, 3);
      micro({batch});
      opt.stage(1e-3);
      update({});
      // Replays: the inputs are copied into the graph's buffers, nothing else.
      CHECK(allocations_of([&] {
              micro({batch});
              update({});
            }) == 0);
      // The scratch the kernels declared (the norm's partial sums, the
      // embedding's sorted positions, the scan's carries) is planned.
      bool scratch = false;
      for (const autograd::Call& c : micro.last_graph()->calls())
        scratch |= (c.kind == autograd::OpKind::embedding_bwd || c.kind == autograd::OpKind::rmsnorm_bwd) &&
                   c.out.size() >= 2 && c.out.back().defined();
      CHECK(scratch);
    }
  }
}

TEST_CASE("a replayed generation step allocates nothing") {
  autograd::NoGradGuard ng;
  const Model m = small_model("parallel");
  const InferencePack pack = m.pack_for_inference(1);
  GenerationGraph g(m, m.initial_state(1), &pack);
  const Tensor tok = random_tokens(1, 1, 64, 1);
  g.step(tok);
  CHECK(allocations_of([&] { g.step(tok); }, 20) == 0);  // 20 tokens: slots written
}
