// What the model benchmarks share: the "bench" config (dim 512, 4 layers, 8
// heads) or the user's (--model), seeded tokens, and one training step (forward + loss + backward).
#pragma once
#include <vector>

#include "autograd/tape.h"
#include "bench/bench.h"
#include "models/model.h"
#include "tensor/random.h"

namespace bench {

inline mmrec::ModelConfig bench_config(const std::string& recurrence = "parallel") {
  return mmrec::ModelConfig::from_json({{"dim", 512}, {"layers", 4}, {"heads", 8}, {"ffn_dim", 2048},
                                        {"mdi_dim", 128}, {"memory_slots", 64}, {"chunk_size", 128},
                                        {"recurrence", recurrence}});
}

// The user's model section (mmrec-bench --model) when given, else the bench
// config, in the given recurrence mode.
inline mmrec::ModelConfig bench_config(const Context& ctx, const std::string& recurrence = "parallel") {
  if (ctx.model().is_null()) return bench_config(recurrence);
  nlohmann::json m = ctx.model();
  m["recurrence"] = recurrence;
  return mmrec::ModelConfig::from_json(m);
}

inline mmrec::Tensor random_tokens(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  mmrec::Generator g(seed);
  std::vector<int32_t> ids(static_cast<size_t>(B * T));
  for (auto& id : ids) id = static_cast<int32_t>(g.next_u64() % static_cast<uint64_t>(V));
  return mmrec::Tensor::from_vector(ids, {B, T});
}

inline void train_step(const mmrec::Model& m, const mmrec::Tensor& tokens) {
  mmrec::Tensor loss = m.loss(tokens);
  mmrec::autograd::backward(loss);
  for (const auto& [name, p] : m.parameters()) mmrec::Tensor(p).zero_grad();
}

}  // namespace bench
