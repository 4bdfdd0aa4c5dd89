// A lower bound on the memory a training run needs, checked before anything
// large is allocated, so that a config that cannot fit is refused with the
// figure instead of ending in an allocation failure or the OOM killer.
//
//   MemoryEstimate m = estimate_training_memory(model_config, cfg.train);
//   check_training_memory(m, physical_memory_bytes(), "model.dim 4096 ...");
#pragma once
#include <cstdint>
#include <string>

#include "models/config.h"
#include "train/train_config.h"

namespace mmrec {

struct MemoryEstimate {
  double parameters = 0;        // count
  double parameter_bytes = 0;   // weights, gradients and two AdamW moments: 16 bytes each
  double activation_bytes = 0;  // what one micro-batch's backward keeps, at the least
  double total() const { return parameter_bytes + activation_bytes; }
};

// In doubles: no config can overflow it.
MemoryEstimate estimate_training_memory(const ModelConfig& model, const OptimConfig& train);
// The machine's physical memory (sysconf), 0 if unknown.
double physical_memory_bytes();
// An Error naming the config's figures when the estimate exceeds `available`
// (no check when it is 0).
void check_training_memory(const MemoryEstimate& m, double available, const ModelConfig& model,
                           const OptimConfig& train);

}  // namespace mmrec
