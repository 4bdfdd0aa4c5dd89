// One MM-Rec block (MODEL.md, "Block"): RMSNorm, fused QKVZ, MDI decay, the
// recurrence (associative scan or per token), memory attention, FFN.
//
//   Tensor y = block_forward(w, cfg, x, state_in, state_out);   // x [B, T, D]
#pragma once
#include "models/config.h"
#include "models/model.h"
#include "models/quant.h"
#include "ops/kernels/linear.h"
#include "ops/memory_slots.h"
#include "tensor/tensor.h"

namespace mmrec {

// One block's linear weights packed for `rows`-row calls (Model::pack_for_inference).
struct BlockPack {
  kernels::PackedLinear qkvz, gate, decay_fc1, decay_fc2, context_fc1, context_fc2, attn_out, ffn_fc1, ffn_fc2;
};
BlockPack pack_block(const BlockWeights& w, int64_t rows);

// x [B, T, D] (T >= 1) -> [B, T, D]. Reads `in`; writes the detached state
// after the call into `out` (which may not alias `in`). With `pack`, the
// linear layers use its packed weights while grad mode is off. With
// `state_graph`, `out` keeps its history and gradients flow into a state `in`
// that requires grad ("chunk" checkpointing: BPTT across calls). With `quant`,
// its enabled sites run through quant_linear (QAT, calibration or int8).
// With `slots` (one token per stream, generation's fixed-shape memory), the
// memory is read and updated there, and only out.h is written.
Tensor block_forward(const BlockWeights& w, const ModelConfig& cfg, const Tensor& x, const LayerState& in,
                     LayerState& out, const BlockPack* pack = nullptr, bool state_graph = false,
                     BlockQuant* quant = nullptr, const ops::SlotMemory* slots = nullptr);

// γ [B, T, D] from z and k by the MDI with context modulation.
Tensor mdi_decay(const BlockWeights& w, const Tensor& z, const Tensor& k, const BlockPack* pack = nullptr,
                 BlockQuant* quant = nullptr);

// The sequential core: h_t = z_t ⊙ σ(linear(h_{t-1}; gate)) + γ_t ⊙ h_{t-1},
// one step per token. z, gamma [B, T, D], h0 [B, D] -> (h [B, T, D], h_last [B, D]).
std::pair<Tensor, Tensor> sequential_recurrence(const BlockWeights& w, const Tensor& z, const Tensor& gamma,
                                                const Tensor& h0, const BlockPack* pack = nullptr,
                                                BlockQuant* quant = nullptr);

}  // namespace mmrec
