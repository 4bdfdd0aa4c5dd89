// The hierarchical long-term memory of one layer (MODEL.md, "Hierarchical
// long-term memory and memory attention"): slot writes at chunk ends, the HDS
// levels, and the multi-memory attention of each chunk over the memory as it
// stood when the chunk began.
//
//   Tensor m = memory_pass(q, k, v, state_in, state_out, cfg);   // [B, T, D]
#pragma once
#include "models/config.h"
#include "models/model.h"
#include "ops/memory_slots.h"
#include "tensor/tensor.h"

namespace mmrec {

// PT [S, S_tot]: column j of level 0 picks slot j; a column of level l
// averages a group of up to 4^l consecutive slots counted from the oldest.
// memory_levels = memᵀ·PT in the transposed layout [B, D, S_tot].
Tensor hds_pooling(int64_t slots, int64_t levels);
int64_t hds_total_slots(int64_t slots, int64_t levels);

// The HDS levels of slots mem_k, mem_v [B, S, D] (S >= 1) in the per-head
// attention layout: kt [B*H, d, St] (Kᵀ) and v [B*H, St, d].
struct MemoryLevels {
  Tensor kt, v;
};
MemoryLevels memory_levels(const Tensor& mem_k, const Tensor& mem_v, int64_t heads, int64_t levels);
// softmax(q_h K_hᵀ / sqrt(d) + mask) V_h per head (ops::memattn): q [B, Tc, D] -> [B, Tc, D];
// mask [St] (optional) is added to the scores.
Tensor memory_read(const Tensor& q, const MemoryLevels& mem, int64_t heads, const Tensor& mask = Tensor());

// memattn(q) over filled slots mem_k, mem_v [B, S, D] (S >= 1), all HDS levels,
// per head softmax(q_h K_hᵀ / sqrt(d)) V_h. q [B, Tc, D] -> [B, Tc, D].
Tensor memory_attention(const Tensor& q, const Tensor& mem_k, const Tensor& mem_v, int64_t heads,
                        int64_t levels);

// The memory part of a block for one call: q, k, v [B, T, D] (T >= 1) of every token.
// Reads, for each chunk piece, the memory as it stood when the chunk began
// (zeros when empty); writes a slot at every chunk end. `out` receives the
// detached memory and chunk sums after the call (h is left untouched); with
// `state_graph` they keep their history instead (no levels cache), and a
// memory in `in` that requires grad gets gradients ("chunk" checkpointing).
Tensor memory_pass(const Tensor& q, const Tensor& k, const Tensor& v, const LayerState& in, LayerState& out,
                   const ModelConfig& cfg, bool state_graph = false);

// memory_pass over generation's fixed-shape memory, for one token per stream
// or T whole chunks from a chunk boundary: each reads the levels as they
// stand (masked; zero with no filled slot), then adds its k, v [B, T, D] to
// the memory (a slot at each chunk end). Shape-static.
Tensor slot_memory_pass(const Tensor& q, const Tensor& k, const Tensor& v, const ops::SlotMemory& mem);

}  // namespace mmrec
