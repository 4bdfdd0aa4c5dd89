#include "train/memory_estimate.h"

#include <unistd.h>

#include "models/model.h"
#include "tensor/error.h"

namespace mmrec {

MemoryEstimate estimate_training_memory(const ModelConfig& model, const OptimConfig& train) {
  const ModelConfig c = model.resolved();
  MemoryEstimate m;
  m.parameters = static_cast<double>(Model::parameter_count(c));
  m.parameter_bytes = 16.0 * m.parameters;
  // Per token, every layer keeps at least its QKVZ projection (4D), its
  // normed inputs and recurrence output (3D) and the FFN hidden layer (F);
  // the head keeps the logits and their gradient (2V). f32 throughout.
  const double tokens = static_cast<double>(train.batch_size) * static_cast<double>(train.seq_len + 1);
  const double per_token = static_cast<double>(c.layers) * (7.0 * static_cast<double>(c.dim) +
                                                             static_cast<double>(c.ffn_dim)) +
                           2.0 * static_cast<double>(c.vocab_size);
  m.activation_bytes = 4.0 * tokens * per_token;
  return m;
}

double physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0.0;
}

void check_training_memory(const MemoryEstimate& m, double available, const ModelConfig& model,
                           const OptimConfig& train) {
  if (available <= 0 || m.total() <= available) return;
  const ModelConfig c = model.resolved();
  fail("model.dim ", c.dim, " x ", c.layers, " layers x vocab ", c.vocab_size, ", train.batch_size ",
       train.batch_size, " x seq_len ", train.seq_len, ": training needs at least ", mib_str(m.total()), " (",
       static_cast<int64_t>(m.parameters), " parameters: ", mib_str(m.parameter_bytes),
       " for weights, gradients and AdamW moments; ", mib_str(m.activation_bytes),
       " of activations per micro-batch), but this machine has ", mib_str(available),
       ": use a smaller model, or a smaller train.batch_size with train.grad_accum");
}

}  // namespace mmrec
