// Embedding lookup; its backward is a deterministic scatter-add.
//   Tensor e = ops::embedding(embed_weight, tokens);   // [V, D], [B, T] -> [B, T, D]
#pragma once
#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

// weight [V, D] f32; ids i32 or i64 of any shape, each in [0, V) (else an
// Error naming the id, its position and V). Returns ids.shape() + [D].
Tensor embedding(const Tensor& weight, const Tensor& ids);

}  // namespace mmrec::ops

MMREC_API_END
