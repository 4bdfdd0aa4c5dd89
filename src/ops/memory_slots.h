// Generation's fixed-shape memory (MODEL.md, "Hierarchical long-term memory
// and memory attention"): the FIFO of slots, the running sums of the chunk in
// progress and the HDS levels in attention layout, held in buffers of the
// largest size with counts and a mask, so that a one-token step has the same
// shapes whatever the memory holds: it is captured once and replayed for
// every token (models/generator.h).
//
//   ops::SlotMemory m = ops::make_slot_memory(B, D, heads, slots, levels, chunk);
//   // read: softmax(q Kᵀ/sqrt(d) + m.mask) V over m.kt, m.v; then
//   ops::memory_slots_update(m, k, v);   // k, v [B, 1, D]: this token's (or whole chunks')
#pragma once
#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

struct SlotMemory {
  Tensor slots_k, slots_v;  // [B, M, D], oldest first; rows from `filled` on are zero
  Tensor sum_k, sum_v;      // [B, D]
  Tensor kt, v;             // [B*H, d, St], [B*H, St, d] (St = every level's columns for M slots,
                            // rounded up to 16): the levels of the filled slots in the eager column
                            // order, zeros after
  Tensor mask;              // [St]: 0 for the filled columns, -1e30 after (added to the scores, so
                            // those columns get weight 0; with no filled slot the read is 0)
  Tensor counts;            // i64 [2]: tokens in the chunk in progress, filled slots
  int64_t heads = 1, levels = 1, chunk = 1;
};

// Empty memory (no slot, zero sums) for `batch` streams.
SlotMemory make_slot_memory(int64_t batch, int64_t dim, int64_t heads, int64_t slots, int64_t levels,
                            int64_t chunk);

// Adds the k, v [B, T, D] of T tokens to the chunk sums; at each chunk end,
// appends the chunk's mean as a slot (dropping the oldest when all are
// filled), then recomputes the levels and mask, as the eager memory does.
// T > 1 must begin at a chunk boundary (an error at run time). With k and v
// undefined, only recomputes the levels and mask from the slots and counts
// (after the buffers were written by hand, e.g. from a State). A kernel: it
// is recorded by capture and replayed.
void memory_slots_update(const SlotMemory& m, const Tensor& k, const Tensor& v);

}  // namespace mmrec::ops

MMREC_API_END
