#include "models/generation.h"

#include <string>

#include "autograd/tape.h"
#include "ops/memory_slots.h"

namespace mmrec {

FixedState FixedState::from(const Model& model, const State& s) {
  const ModelConfig& c = model.config();
  FixedState f;
  f.batch = s.batch;
  for (int64_t i = 0; i < c.layers; ++i)
    f.layers.push_back({Tensor::zeros({s.batch, c.dim}),
                        ops::make_slot_memory(s.batch, c.dim, c.heads, c.memory_slots, c.hds_levels, c.chunk_size)});
  f.load(s);
  return f;
}

void FixedState::load(const State& s) {
  check(s.batch == batch && s.layers.size() == layers.size(), "FixedState.load: the state is for batch ", s.batch,
        " and ", s.layers.size(), " layers, the buffers for batch ", batch, " and ", layers.size());
  autograd::NoGradGuard no_grad;
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerState& l = s.layers[i];
    FixedLayerState& f = layers[i];
    const int64_t n = l.mem_keys.size(1), M = f.mem.slots_k.size(1);
    check(n <= M && l.chunk_tokens >= 0 && l.chunk_tokens < f.mem.chunk && l.h.shape() == f.h.shape(),
          "FixedState.load: layer ", i, " holds ", n, " slots and ", l.chunk_tokens,
          " chunk tokens, more than the model's ", M, " and ", f.mem.chunk);
    f.h.copy_from(l.h);
    f.mem.slots_k.fill(0.0);
    f.mem.slots_v.fill(0.0);
    if (n > 0) {
      f.mem.slots_k.slice(1, 0, n).copy_from(l.mem_keys);
      f.mem.slots_v.slice(1, 0, n).copy_from(l.mem_values);
    }
    f.mem.sum_k.copy_from(l.chunk_k_sum);
    f.mem.sum_v.copy_from(l.chunk_v_sum);
    f.mem.counts.copy_from(Tensor::from_vector(std::vector<int64_t>{l.chunk_tokens, n}, {2}));
    ops::memory_slots_update(f.mem, Tensor(), Tensor());  // the levels and mask of those slots
  }
}

State FixedState::to_state() const {
  State s;
  s.batch = batch;
  for (const FixedLayerState& f : layers) {
    const int64_t counts[2] = {static_cast<int64_t>(f.mem.counts.flat_at(0)),
                               static_cast<int64_t>(f.mem.counts.flat_at(1))};
    LayerState l;
    l.h = f.h.clone();
    l.mem_keys = f.mem.slots_k.slice(1, 0, counts[1]).contiguous().clone();
    l.mem_values = f.mem.slots_v.slice(1, 0, counts[1]).contiguous().clone();
    l.chunk_k_sum = f.mem.sum_k.clone();
    l.chunk_v_sum = f.mem.sum_v.clone();
    l.chunk_tokens = counts[0];
    s.layers.push_back(l);
  }
  return s;
}

GenerationGraph::GenerationGraph(const Model& model, const State& from, const InferencePack* pack,
                                 autograd::CompileOptions options)
    : model_(model),
      pack_(pack ? *pack : InferencePack()),
      packed_(pack != nullptr),
      fixed_(FixedState::from(model, from)),
      fn_([this](const std::vector<Tensor>& in) {
            return std::vector<Tensor>{model_.forward_fixed(in[0], fixed_, packed_ ? &pack_ : nullptr)};
          },
          [&] {
            if (options.name == "step") options.name = "generate";
            options.config += model.config().to_json().dump();
            return options;
          }()) {}

Tensor GenerationGraph::step(const Tensor& tokens) {
  check(!autograd::grad_enabled(), "GenerationGraph.step: inference only (use NoGradGuard)");
  return fn_({tokens})[0];
}

}  // namespace mmrec
