// The bookkeeping kernel of generation's fixed-shape memory (ops/memory_slots.h).
// Scalar data movement and small sums, run once per token: it is its own
// reference (tests compare it against the eager memory of models/memory.cpp).
#pragma once
#include <cstdint>

namespace mmrec::kernels {

struct SlotMemoryDims {
  int64_t B, D, H, M, L, C, St;  // batch, dim, heads, slots, HDS levels, chunk size, level columns
};

// Where the rows of T tokens of B streams are: token t of stream b at
// data + b * stride_b + t * stride_t.
struct TokenRows {
  const float* data;
  int64_t stride_b, stride_t;
};

// Adds T tokens' k, v to the chunk sums, appending a slot (and recomputing
// the levels and mask) at every chunk end; T = 0 only recomputes them.
// slots_k/v [B, M, D], sum_k/v [B, D], kt [B*H, d, St], vl [B*H, St, d],
// mask [St], counts {chunk tokens, filled slots}.
void memory_slots_step(const SlotMemoryDims& dims, int64_t T, TokenRows k, TokenRows v, float* slots_k,
                       float* slots_v, float* sum_k, float* sum_v, float* kt, float* vl, float* mask,
                       int64_t* counts);

}  // namespace mmrec::kernels
