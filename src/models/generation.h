// Compiled generation: one token per stream over a fixed-shape state, the
// step captured once and replayed for every token (autograd::compile).
// The memory lives in buffers of its largest size with counts and a mask
// (ops::SlotMemory), so the step's shapes do not depend on how many slots
// are filled, and a memory that fills and drops slots replays the same graph.
//
//   State s = model.initial_state(1);
//   Tensor logits = model.forward(prompt, s);                  // eager, any length
//   GenerationGraph g(model, s, &pack);                        // pack: model.pack_for_inference(1)
//   logits = g.step(next_token);                               // [1, 1] -> [1, 1, V], replayed
//   State after = g.state();                                   // back to an eager State
#pragma once
#include <vector>

#include "autograd/compile.h"
#include "models/model.h"
#include "ops/memory_slots.h"
#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

struct FixedLayerState {
  Tensor h;  // [B, D]
  ops::SlotMemory mem;
};

// A State in fixed-shape buffers (see ops::SlotMemory).
struct FixedState {
  int64_t batch = 0;
  std::vector<FixedLayerState> layers;
  // The fixed-shape copy of s, for model (its config's slots, levels, chunk).
  static FixedState from(const Model& model, const State& s);
  // Writes s into these buffers in place (the same batch and model).
  void load(const State& s);
  // The eager State this one stands for.
  State to_state() const;
};

class GenerationGraph {
 public:
  // Starts from `from` (e.g. after the prompt); pack, if given, is this
  // model's (pack_for_inference(batch)) and is kept. Captures on the first
  // step; options name it and bound it (strict: a batch other than the
  // first throws). The model must outlive this object, unchanged.
  GenerationGraph(const Model& model, const State& from, const InferencePack* pack = nullptr,
                  autograd::CompileOptions options = {});
  // tokens [B, 1] i32 -> logits [B, 1, V]: the graph's buffer, overwritten
  // by the next step. Under NoGradGuard.
  Tensor step(const Tensor& tokens);
  // The state after the steps so far, and a new state to continue from.
  State state() const { return fixed_.to_state(); }
  void set_state(const State& s) { fixed_.load(s); }
  const autograd::CompiledFn& compiled() const { return fn_; }

 private:
  const Model& model_;
  InferencePack pack_;
  bool packed_;
  FixedState fixed_;
  autograd::CompiledFn fn_;
};

}  // namespace mmrec

MMREC_API_END
