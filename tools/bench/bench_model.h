// The "bench" model config and token helpers shared by the model benchmarks
// (bench_model.cpp, bench_quant.cpp).
#pragma once
#include <string>
#include <vector>

#include "models/config.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace bench {

// dim 512, 4 layers, 8 heads, ffn 2048, mdi 128, 64 memory slots, chunk 128.
inline mmrec::ModelConfig bench_config(const std::string& recurrence = "parallel") {
  return mmrec::ModelConfig::from_json({{"dim", 512}, {"layers", 4}, {"heads", 8}, {"ffn_dim", 2048},
                                        {"mdi_dim", 128}, {"memory_slots", 64}, {"chunk_size", 128},
                                        {"recurrence", recurrence}});
}

// Seeded uniform token ids [B, T] in [0, V).
inline mmrec::Tensor random_tokens(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  mmrec::Generator g(seed);
  std::vector<int32_t> ids(static_cast<size_t>(B * T));
  for (auto& id : ids) id = static_cast<int32_t>(g.next_u64() % static_cast<uint64_t>(V));
  return mmrec::Tensor::from_vector(ids, {B, T});
}

}  // namespace bench
