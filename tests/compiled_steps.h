// The eager-vs-compiled training check shared by the capture suites: the same
// batches through an eager model and, on an identical model, through two
// compiled graphs (micro-batch: loss and backward; update: clipping, AdamW,
// zeroing), with losses, gradients and clipping norms compared bit for bit.
#pragma once
#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <string>

#include "autograd/compile.h"
#include "autograd/tape.h"
#include "models/model.h"
#include "test_util.h"
#include "train/optimizer.h"

namespace test_util {

// The two graphs of a compiled step: micro-batch (loss and backward into
// the gradient buffers, zeroed here first) and update (clipping at `clip`,
// AdamW, zeroing); stage the learning rate (opt.stage) before each update.
struct StepGraphs {
  mmrec::autograd::CompiledFn micro, update;
};
inline StepGraphs compile_step(const mmrec::Model& m, mmrec::AdamW& opt, double clip) {
  using namespace mmrec;
  opt.zero_grad_in_place();
  return {autograd::compile([&m](const std::vector<Tensor>& in) {
            Tensor loss = m.loss(in[0]);
            autograd::backward(loss);
            return std::vector<Tensor>{loss};
          }),
          autograd::compile([&m, &opt, clip](const std::vector<Tensor>&) {
            Tensor r = clip_grad_norm_tensor(m.parameters(), clip);
            opt.apply();
            opt.zero_grad_in_place();
            return std::vector<Tensor>{r};
          })};
}

struct CompiledRun {
  size_t micro_captures = 0, micro_replays = 0, update_captures = 0, update_replays = 0;
  std::map<mmrec::autograd::OpKind, size_t> micro_calls;  // of the last micro-batch graph, by kind
  size_t micro_fused = 0;                                  // its calls fused away by the passes
  std::string micro_fusions;                               // its Graph::fusions()
};

// `steps` steps on batches [2, 17] of ids below 64 (seeds seed0, seed0 + 1, ...),
// lr 1e-2 decaying linearly, clipping at 0.5; the weights are compared at the end.
inline CompiledRun check_compiled_steps(const mmrec::Model& eager, const mmrec::Model& compiled, int steps,
                                        uint64_t seed0) {
  using namespace mmrec;
  OptimConfig oc;
  AdamW opt_e(eager.parameters(), decay_mask(eager.parameters(), oc), oc);
  AdamW opt_c(compiled.parameters(), decay_mask(compiled.parameters(), oc), oc);
  const double clip = 0.5;  // small enough to clip
  auto [micro, update] = compile_step(compiled, opt_c, clip);
  for (int step = 0; step < steps; ++step) {
    const Tensor batch = random_tokens(2, 17, 64, seed0 + static_cast<uint64_t>(step));
    const double lr = 1e-2 * (1.0 - step / (2.0 * steps));
    Tensor le = eager.loss(batch);
    autograd::backward(le);
    CHECK(bit_equal(le, micro({batch})[0]));
    if (step == 0 || step == steps - 1)
      for (size_t i = 0; i < eager.parameters().size(); ++i) {
        CAPTURE(eager.parameters()[i].first);
        CHECK(bit_equal(eager.parameters()[i].second.grad(), compiled.parameters()[i].second.grad()));
      }
    const double ne = clip_grad_norm(eager.parameters(), clip);
    opt_e.step(lr);
    opt_e.zero_grad();
    opt_c.stage(lr);
    CHECK(ne == clip_norm_value(update({})[0]));
  }
  for (size_t i = 0; i < eager.parameters().size(); ++i) {
    CAPTURE(eager.parameters()[i].first);
    CHECK(bit_equal(eager.parameters()[i].second, compiled.parameters()[i].second));
  }
  CompiledRun r{micro.captures(), micro.replays(), update.captures(), update.replays(), {}, 0, {}};
  if (micro.last_graph()) {
    for (const auto& c : micro.last_graph()->calls()) ++r.micro_calls[c.kind];
    r.micro_fused = micro.last_graph()->fused_calls();
    r.micro_fusions = micro.last_graph()->fusions();
  }
  return r;
}

}  // namespace test_util
