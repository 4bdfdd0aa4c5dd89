// Cross-entropy fused with log-softmax.
//   Tensor loss = ops::cross_entropy(logits.reshape({-1, V}), targets.reshape({-1}));
#pragma once
#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

// logits [N, V] f32, targets [N] i32 or i64. Returns the mean over the targets
// not equal to ignore_index (shape []; 0 when every target is ignored).
// A target outside [0, V) that is not ignore_index is an error.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -1);

// Next-token targets of tokens [B, T] (i32 or i64): [B, T] i64 where
// position t holds token t+1 and the last position holds ignore_index.
Tensor next_token_targets(const Tensor& tokens, int64_t ignore_index);

}  // namespace mmrec::ops

MMREC_API_END
