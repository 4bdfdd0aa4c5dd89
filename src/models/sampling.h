// Next-token sampling from one row of logits: greedy, temperature, top-k.
//
//   Generator g(seed);
//   int64_t next = sample_token(logits, V, /*temperature=*/0.8, /*top_k=*/40, g);
#pragma once
#include <cstdint>

#include "tensor/export.h"
#include "tensor/random.h"

MMREC_API_BEGIN

namespace mmrec {

// temperature 0 picks the most likely token (the first of ties) and draws
// nothing; else softmax(logits / temperature) over the top_k most likely
// (top_k 0 or >= vocab: all), one uniform from g.
int64_t sample_token(const float* logits, int64_t vocab, double temperature, int64_t top_k, Generator& g);

}  // namespace mmrec

MMREC_API_END
