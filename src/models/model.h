// The MM-Rec language model (../shared/spec/MODEL.md): embedding, `layers`
// blocks (fused QKVZ, MDI decay, recurrence by associative scan or per token,
// hierarchical memory attention, FFN), final RMSNorm and tied head.
//
//   Model m(ModelConfig::from_json(cfg["model"]), /*seed=*/1);
//   State s = m.initial_state(/*batch=*/1);
//   Tensor logits = m.forward(tokens, s);       // tokens [B, T] i32 -> [B, T, V]
//   Tensor loss = m.loss(tokens);               // mean next-token cross-entropy
//   InferencePack pk = m.pack_for_inference(1); // generation: one token per call
//   logits = m.forward(next_token, s, &pk);     // under NoGradGuard
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/config.h"
#include "tensor/export.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec {

// One layer's streaming state (all detached between calls).
struct LayerState {
  Tensor h;                 // [B, D] recurrent state
  Tensor mem_keys;          // [B, S, D] FIFO of memory slots, oldest first (S <= memory_slots)
  Tensor mem_values;        // [B, S, D]
  Tensor chunk_k_sum;       // [B, D] running sums of k over the chunk in progress
  Tensor chunk_v_sum;       // [B, D]
  int64_t chunk_tokens = 0; // tokens in the chunk in progress
  // Cache: the HDS levels of mem_keys/mem_values in attention layout
  // ([B*H, d, St] and [B*H, St, d]); recomputed when undefined or mismatched,
  // so reset both if you edit the memory by hand.
  Tensor levels_kt, levels_v;
};

struct State {
  int64_t batch = 0;
  std::vector<LayerState> layers;
};

using NamedTensor = std::pair<std::string, Tensor>;

class Model;
struct ModelQuant;  // models/quant.h
struct FixedState;  // models/generation.h
namespace kernels {
class PackedLinear;
}

// Gradient checkpointing of training (train.checkpointing): trades compute for
// activation memory.
// - none: every activation of the call is kept for backward.
// - block: each block but the last keeps only its input and runs again
//   during backward.
// - chunk: Model::loss runs the sequence in segments of `tokens` tokens, each
//   but the last keeping only the state at its start (h, the memory slots, the
//   chunk sums) and running again during backward; gradients flow through
//   that state from segment to segment (full backpropagation through time).
//   Model::forward keeps every activation in this mode.
// The last block or segment is backpropagated first, right after its forward:
// recomputing it would save no memory.
struct Checkpointing {
  enum class Mode { none, block, chunk };
  Mode mode = Mode::none;
  int64_t tokens = 0;  // chunk: tokens per segment, a multiple of chunk_size (0: chunk_size)
  // "none" | "block" | "chunk", or an Error naming the value.
  static Mode parse(const std::string& name);
};

// A model's linear weights (every block's and the head's) pre-packed by
// oneDNN for calls of `rows` = B x T rows: for token-by-token generation
// (rows = batch), where a 1-row product through the plain layout reaches a
// fraction of the memory bandwidth (bench model_generate_token_by_token).
// Calls of other row counts up to 64 (several streams batched into one call)
// read the same packed data where oneDNN keeps its layout (it does for 1-64
// rows of these shapes); larger calls take the plain path. A snapshot: after
// the weights change, pack again. Copies share the packed data; it stays
// valid while its model lives.
class InferencePack {
 public:
  InferencePack() = default;
  int64_t rows() const;

 private:
  friend class Model;
struct ModelQuant;  // models/quant.h
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// One block's parameters (views of the tensors in Model::parameters()).
struct BlockWeights {
  Tensor norm1, norm2;                             // [D]
  Tensor qkvz_w, qkvz_b;                           // [4D, D], [4D]
  Tensor gate_w, gate_b;                           // [D, D], [D]
  Tensor decay_fc1_w, decay_fc1_b;                 // [I, D], [I]
  Tensor decay_fc2_w, decay_fc2_b;                 // [D, I], [D]
  Tensor context_fc1_w, context_fc1_b;             // [I, D], [I]
  Tensor context_fc2_w, context_fc2_b;             // [D, I], [D]
  Tensor attn_out_w, attn_out_b;                   // [D, D], [D]
  Tensor ffn_fc1_w, ffn_fc1_b;                     // [F, D], [F]
  Tensor ffn_fc2_w, ffn_fc2_b;                     // [D, F], [D]
};

class Model {
 public:
  // Initialises parameters as the spec says, from a seeded generator.
  explicit Model(const ModelConfig& config, uint64_t seed = 0);

  const ModelConfig& config() const { return config_; }
  // Every parameter, named as the spec's table, in a fixed order. The tensors
  // are f32 leaves with requires_grad set.
  const std::vector<NamedTensor>& parameters() const { return params_; }
  // The parameter of that name, or an Error naming it.
  Tensor parameter(const std::string& name) const;
  int64_t num_parameters() const;
  // What num_parameters() of a model of this config will be, computed
  // without building it (loaders check a file against it first).
  static int64_t parameter_count(const ModelConfig& config);

  State initial_state(int64_t batch) const;
  // tokens [B, T] i32/i64 in [0, vocab_size) -> logits [B, T, V]; updates state.
  // With a pack from this model and grad mode off, calls of up to 64 rows
  // (B x T) use its packed weights (the same logits up to float rounding);
  // larger calls, and any call in grad mode, take the plain path.
  Tensor forward(const Tensor& tokens, State& state, const InferencePack* pack = nullptr) const;
  // Over a fixed-shape state (models/generation.h): tokens [B, 1], or [B, T]
  // of whole chunks (T a multiple of chunk_size) from a chunk boundary (else
  // an error when it runs) -> logits [B, T, V], updating s in place; the same
  // logits as forward() up to float rounding. Every shape is fixed: the step a
  // GenerationGraph captures once and replays (and mmrec-eval --compile).
  Tensor forward_fixed(const Tensor& tokens, FixedState& s, const InferencePack* pack = nullptr) const;
  // Packs the current weights for calls of `rows` rows (>= 1); see InferencePack.
  InferencePack pack_for_inference(int64_t rows) const;
  // Quantized linears (models/quant.h): QAT fake quantization, calibration or
  // int8 inference, by the ModelQuant's mode; nullptr turns it off.
  void set_quantization(std::shared_ptr<ModelQuant> q) { quant_ = std::move(q); }
  ModelQuant* quantization() const { return quant_.get(); }
  // Mean next-token cross-entropy of tokens [B, T] (T >= 2), from a fresh state
  // unless one is given (then it is updated); targets equal to ignore_index
  // (default: the config's) are skipped.
  Tensor loss(const Tensor& tokens, State* state = nullptr, std::optional<int64_t> ignore_index = {}) const;

  // How forward and loss keep activations for backward (default none).
  // Throws if tokens is not a multiple of chunk_size.
  void set_checkpointing(const Checkpointing& c);
  const Checkpointing& checkpointing() const { return ckpt_; }

  // bf16 GEMMs (f32 accumulation) for the GEMM weights: qkvz, gate, attn_out,
  // ffn.fc1/fc2 and the head; the MDI decay, norms, biases and the embedding
  // stay f32. With keep_f32 (training, "amp": "bf16") the parameters stay f32
  // masters that receive the gradients, and bf16 copies of those weights are
  // made: call refresh_bf16_copies() after every update. Without it
  // (inference) those parameters themselves become bf16 (and stop requiring
  // grad), which halves their memory. A pack is made from the bf16 weights.
  void use_bf16(bool keep_f32);
  void refresh_bf16_copies();
  bool uses_bf16() const { return bf16_; }
  // Bytes of the bf16 copies (0 unless use_bf16(true)).
  size_t bf16_copy_bytes() const;

 private:
  // One pass over the blocks; replaces state.layers when it succeeds. With
  // state_graph the new state keeps its history (chunk checkpointing).
  Tensor forward_call(const Tensor& tokens, State& state, const InferencePack* pack, bool state_graph) const;
  // loss() under "chunk" checkpointing (model_chunked.cpp); targets [B, T].
  Tensor chunked_loss(const Tensor& tokens, const Tensor& targets, State& state, int64_t ignore_index) const;
  std::vector<Tensor> block_parameters(size_t i) const;
  // Block i's weights as the forward reads them: the parameters, or with bf16
  // copies the copies standing in for their masters (ops::stand_in).
  BlockWeights forward_weights(size_t i) const;
  Tensor head_weight() const;
  // The final norm and head over x [B, T, D], through `head` when packed.
  Tensor head_logits(const Tensor& x, const kernels::PackedLinear* head) const;

  ModelConfig config_;  // resolved (ffn_dim, mdi_dim filled in)
  std::vector<NamedTensor> params_;
  std::vector<BlockWeights> blocks_;
  Tensor embed_, norm_, lm_head_;  // lm_head_ is embed_ when tied
  Checkpointing ckpt_;
  bool bf16_ = false;
  std::vector<BlockWeights> copies_;  // bf16 copies of the GEMM weights (other fields undefined)
  Tensor head_copy_;                  // bf16 head (tied: a copy of embed_, which the embedding reads in f32)
  std::shared_ptr<ModelQuant> quant_;
};

}  // namespace mmrec

MMREC_API_END
