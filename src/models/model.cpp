// Parameter naming and initialisation, forward over the blocks, the loss.
#include "models/model.h"

#include "autograd/checkpoint.h"
#include "autograd/tape.h"
#include "models/block.h"
#include "models/generation.h"
#include "models/profile.h"
#include "models/quant.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/loss.h"
#include "ops/norm.h"
#include "ops/view.h"

namespace mmrec {
namespace {

enum class Init { normal, zero, one, three };

// Inference calls longer than this run in pieces of it (a multiple of chunk_size).
constexpr int64_t kInferenceTokens = 4096;

}  // namespace

Model::Model(const ModelConfig& config, uint64_t seed) : config_(config.resolved()) {
  const ModelConfig& c = config_;
  const int64_t V = c.vocab_size, D = c.dim, I = c.mdi_dim, F = c.ffn_dim;
  Generator g(seed);
  // Parameters are created (and draw from g) in the order of the spec's table.
  auto make = [&](const std::string& name, const Shape& shape, Init init) {
    Tensor t;
    try {
      switch (init) {
        case Init::normal: t = randn(shape, g, 0.0f, 0.02f); break;
        case Init::zero: t = Tensor::zeros(shape); break;
        case Init::one: t = Tensor::ones(shape); break;
        case Init::three: t = Tensor::full(shape, 3.0); break;
      }
    } catch (const OutOfMemory& e) {
      const int64_t n = parameter_count(c);
      throw OutOfMemory("model.dim " + std::to_string(D) + " x vocab " + std::to_string(V) + ", " +
                        std::to_string(c.layers) + " layers (" + std::to_string(n) + " parameters, " +
                        mib_str(4.0 * static_cast<double>(n)) + "): " + name + " " + shape_str(shape) + ": " +
                        e.what());
    }
    t.set_requires_grad();
    params_.emplace_back(name, t);
    return t;
  };
  embed_ = make("embed.weight", {V, D}, Init::normal);
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    BlockWeights b;
    b.norm1 = make(p + "norm1.weight", {D}, Init::one);
    b.norm2 = make(p + "norm2.weight", {D}, Init::one);
    b.qkvz_w = make(p + "qkvz.weight", {4 * D, D}, Init::normal);
    b.qkvz_b = make(p + "qkvz.bias", {4 * D}, Init::zero);
    b.gate_w = make(p + "gate.weight", {D, D}, Init::normal);
    b.gate_b = make(p + "gate.bias", {D}, Init::zero);
    b.decay_fc1_w = make(p + "decay.fc1.weight", {I, D}, Init::normal);
    b.decay_fc1_b = make(p + "decay.fc1.bias", {I}, Init::zero);
    b.decay_fc2_w = make(p + "decay.fc2.weight", {D, I}, Init::normal);
    b.decay_fc2_b = make(p + "decay.fc2.bias", {D}, Init::three);
    b.context_fc1_w = make(p + "context.fc1.weight", {I, D}, Init::normal);
    b.context_fc1_b = make(p + "context.fc1.bias", {I}, Init::zero);
    b.context_fc2_w = make(p + "context.fc2.weight", {D, I}, Init::normal);
    b.context_fc2_b = make(p + "context.fc2.bias", {D}, Init::three);
    b.attn_out_w = make(p + "attn_out.weight", {D, D}, Init::normal);
    b.attn_out_b = make(p + "attn_out.bias", {D}, Init::zero);
    b.ffn_fc1_w = make(p + "ffn.fc1.weight", {F, D}, Init::normal);
    b.ffn_fc1_b = make(p + "ffn.fc1.bias", {F}, Init::zero);
    b.ffn_fc2_w = make(p + "ffn.fc2.weight", {D, F}, Init::normal);
    b.ffn_fc2_b = make(p + "ffn.fc2.bias", {D}, Init::zero);
    blocks_.push_back(b);
  }
  norm_ = make("norm.weight", {D}, Init::one);
  lm_head_ = c.tie_embeddings ? embed_ : make("lm_head.weight", {V, D}, Init::normal);
}

int64_t Model::parameter_count(const ModelConfig& config) {
  const ModelConfig c = config.resolved();  // bounded: no product below can overflow
  const int64_t V = c.vocab_size, D = c.dim, I = c.mdi_dim, F = c.ffn_dim;
  // As the constructor: norms, qkvz, gate, decay and context MLPs, attn_out, FFN.
  const int64_t block = 2 * D + (4 * D * D + 4 * D) + (D * D + D) + 2 * (I * D + I + D * I + D) + (D * D + D) +
                        (F * D + F + D * F + D);
  return V * D + c.layers * block + D + (c.tie_embeddings ? 0 : V * D);
}

Tensor Model::parameter(const std::string& name) const {
  for (const auto& [n, t] : params_)
    if (n == name) return t;
  fail("model: no parameter named '", name, "'");
}

int64_t Model::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : params_) n += t.numel();
  return n;
}

State Model::initial_state(int64_t batch) const {
  check(batch >= 1, "initial_state: batch must be >= 1, got ", batch);
  const int64_t D = config_.dim;
  State s;
  s.batch = batch;
  for (int64_t i = 0; i < config_.layers; ++i) {
    LayerState l;
    l.h = Tensor::zeros({batch, D});
    l.mem_keys = Tensor::zeros({batch, 0, D});
    l.mem_values = Tensor::zeros({batch, 0, D});
    l.chunk_k_sum = Tensor::zeros({batch, D});
    l.chunk_v_sum = Tensor::zeros({batch, D});
    s.layers.push_back(l);
  }
  return s;
}

struct InferencePack::Impl {
  const Model* model = nullptr;
  int64_t rows = 0;
  std::vector<BlockPack> blocks;
  kernels::PackedLinear head;
};

int64_t InferencePack::rows() const { return impl_ ? impl_->rows : 0; }

InferencePack Model::pack_for_inference(int64_t rows) const {
  check(rows >= 1, "model.pack_for_inference: rows must be >= 1, got ", rows);
  autograd::NoGradGuard no_grad;
  auto p = std::make_shared<InferencePack::Impl>();
  p->model = this;
  p->rows = rows;
  for (size_t i = 0; i < blocks_.size(); ++i) p->blocks.push_back(pack_block(forward_weights(i), rows));
  p->head = kernels::PackedLinear(head_weight(), Tensor(), ops::Activation::none, rows);
  InferencePack pack;
  pack.impl_ = std::move(p);
  return pack;
}

Tensor Model::forward(const Tensor& tokens, State& state, const InferencePack* pack) const {
  check(tokens.defined() && tokens.dim() == 2, "model.forward: tokens must be [B, T], got ",
        tokens.defined() ? shape_str(tokens.shape()) : std::string("undefined"));
  check(tokens.dtype() == DType::i32 || tokens.dtype() == DType::i64, "model.forward: tokens must be i32 or i64, got ",
        dtype_name(tokens.dtype()));
  const int64_t B = tokens.size(0), T = tokens.size(1);
  check(state.batch == B && static_cast<int64_t>(state.layers.size()) == config_.layers,
        "model.forward: state is for batch ", state.batch, " and ", state.layers.size(),
        " layers, tokens are [", B, ", ", T, "] for a model of ", config_.layers, " layers");
  check(!pack || !pack->impl_ || pack->impl_->model == this,
        "model.forward: the inference pack was made by another model");
  if (T == 0) return Tensor::zeros({B, 0, config_.vocab_size});
  for (const LayerState& l : state.layers)
    check(l.chunk_tokens >= 0 && l.chunk_tokens < config_.chunk_size && l.h.defined() &&
              l.h.shape() == Shape{B, config_.dim} && l.mem_keys.defined() && l.mem_keys.dim() == 3 &&
              l.mem_keys.size(1) <= config_.memory_slots,
          "model.forward: state does not match the model (chunk_tokens ", l.chunk_tokens, ", h ",
          l.h.defined() ? shape_str(l.h.shape()) : std::string("undefined"), ")");
  // Inference over a long input runs in pieces with the state carried (the
  // same logits up to float rounding), so that its memory is that of one
  // piece plus the returned logits, however long the input.
  const int64_t piece = std::max<int64_t>(config_.chunk_size, kInferenceTokens / config_.chunk_size * config_.chunk_size);
  if (autograd::grad_enabled() || T <= piece) return forward_call(tokens, state, pack, false);
  Tensor logits = Tensor::empty({B, T, config_.vocab_size});
  for (int64_t s = 0; s < T; s += piece) {
    const int64_t e = std::min(T, s + piece);
    logits.slice(1, s, e).copy_from(forward_call(tokens.slice(1, s, e).contiguous(), state, pack, false));
  }
  return logits;
}

std::vector<Tensor> Model::block_parameters(size_t i) const {
  const BlockWeights& b = blocks_[i];
  return {b.norm1,         b.norm2,         b.qkvz_w,        b.qkvz_b,        b.gate_w,      b.gate_b,
          b.decay_fc1_w,   b.decay_fc1_b,   b.decay_fc2_w,   b.decay_fc2_b,   b.context_fc1_w, b.context_fc1_b,
          b.context_fc2_w, b.context_fc2_b, b.attn_out_w,    b.attn_out_b,    b.ffn_fc1_w,   b.ffn_fc1_b,
          b.ffn_fc2_w,     b.ffn_fc2_b};
}

Tensor Model::forward_call(const Tensor& tokens, State& state, const InferencePack* pack, bool state_graph) const {
  const InferencePack::Impl* pk =
      pack && pack->impl_ && !autograd::grad_enabled() ? pack->impl_.get() : nullptr;  // rows: see InferencePack
  Tensor x;
  {
    prof::Scope s("fwd.embedding");
    x = ops::embedding(embed_, tokens);  // [B, T, D]
  }
  // The state is replaced only when the whole call succeeded.
  std::vector<LayerState> next(state.layers.size());
  for (size_t i = 0; i < blocks_.size(); ++i) {
    BlockQuant* bq = quant_ ? &quant_->blocks[i] : nullptr;
    // The last block is backpropagated first, right after its forward:
    // recomputing it would only cost time.
    if (ckpt_.mode == Checkpointing::Mode::block && i + 1 < blocks_.size() && !state_graph &&
        autograd::grad_enabled()) {
      // The block runs again in backward; its state comes from the first run.
      // forward_weights reads the bf16 copies (amp) through ops::stand_in, so
      // the recomputation routes gradients to the f32 masters as well. QAT
      // observers are restored before the recomputation, which then observes
      // and quantizes exactly as the first run.
      auto sink = std::make_shared<LayerState*>(&next[i]);
      auto snap = fake_quantizing(quant_.get()) ? std::make_shared<ObserverSnapshot>(snapshot_observers(*bq)) : nullptr;
      x = autograd::checkpoint(
          [this, i, cfg = config_, in = state.layers[i], sink, bq, snap](const std::vector<Tensor>& a) {
            LayerState out;
            if (snap && !*sink) restore_observers(*bq, *snap);
            Tensor y = block_forward(forward_weights(i), cfg, a[0], in, out, nullptr, false, bq);
            if (*sink) **sink = out, *sink = nullptr;
            return std::vector<Tensor>{y};
          },
          {x}, block_parameters(i), "checkpoint.block")[0];
      continue;
    }
    x = block_forward(forward_weights(i), config_, x, state.layers[i], next[i], pk ? &pk->blocks[i] : nullptr,
                      state_graph, bq);
  }
  Tensor logits = head_logits(x, pk ? &pk->head : nullptr);
  state.layers = std::move(next);
  return logits;
}

Tensor Model::head_logits(const Tensor& x, const kernels::PackedLinear* packed) const {
  prof::Scope s("fwd.head");
  const Tensor head = head_weight();
  const Tensor xn = ops::rmsnorm(x, norm_, config_.norm_eps);
  return quant_ && quant_->head.enabled ? quant_linear(quant_->head, xn, lm_head_, Tensor(), ops::Activation::none)
         : packed                       ? ops::linear(ops::cast(xn, head.dtype()), *packed)
                                        : ops::linear(ops::cast(xn, head.dtype()), head);  // [B, T, V]
}

Tensor Model::forward_fixed(const Tensor& tokens, FixedState& s, const InferencePack* pack) const {
  check(tokens.defined() && tokens.dim() == 2 && tokens.size(0) == s.batch &&
            (tokens.size(1) == 1 || (tokens.size(1) > 0 && tokens.size(1) % config_.chunk_size == 0)) &&
            static_cast<int64_t>(s.layers.size()) == config_.layers,
        "model.forward_fixed: tokens must be [", s.batch, ", 1] or [", s.batch, ", T] with T a multiple of chunk_size ",
        config_.chunk_size, " for a fixed state of batch ", s.batch, " and ",
        s.layers.size(), " layers (model: ", config_.layers, "), got ",
        tokens.defined() ? shape_str(tokens.shape()) : std::string("undefined"));
  check(!autograd::grad_enabled(), "model.forward_fixed: inference only (use NoGradGuard)");
  check(!pack || !pack->impl_ || pack->impl_->model == this,
        "model.forward_fixed: the inference pack was made by another model");
  const InferencePack::Impl* pk = pack && pack->impl_ ? pack->impl_.get() : nullptr;
  Tensor x = ops::embedding(embed_, tokens);  // [B, 1, D]
  for (size_t i = 0; i < blocks_.size(); ++i) {
    FixedLayerState& l = s.layers[i];
    LayerState in, out;
    in.h = l.h;
    x = block_forward(forward_weights(i), config_, x, in, out, pk ? &pk->blocks[i] : nullptr, false,
                      quant_ ? &quant_->blocks[i] : nullptr, &l.mem);
    l.h.copy_from(out.h);
  }
  return head_logits(x, pk ? &pk->head : nullptr);
}

Tensor Model::loss(const Tensor& tokens, State* state, std::optional<int64_t> ignore) const {
  const int64_t ignore_index = ignore.value_or(config_.ignore_index);
  check(tokens.defined() && tokens.dim() == 2 && tokens.size(1) >= 2,
        "model.loss: tokens must be [B, T] with T >= 2, got ",
        tokens.defined() ? shape_str(tokens.shape()) : std::string("undefined"));
  const int64_t B = tokens.size(0), T = tokens.size(1), V = config_.vocab_size;
  State fresh;
  State& s = state ? *state : (fresh = initial_state(B));
  // Position t predicts token t+1; the last position has no target.
  const Tensor targets = ops::next_token_targets(tokens, ignore_index);
  if (ckpt_.mode == Checkpointing::Mode::chunk && autograd::grad_enabled())
    return chunked_loss(tokens, targets, s, ignore_index);
  Tensor logits = forward(tokens, s);  // [B, T, V]
  prof::Scope scope("fwd.loss");
  return ops::cross_entropy(ops::reshape(logits, {B * T, V}), targets.reshape({B * T}), ignore_index);
}

Checkpointing::Mode Checkpointing::parse(const std::string& name) {
  if (name == "none") return Mode::none;
  if (name == "block") return Mode::block;
  if (name == "chunk") return Mode::chunk;
  fail("checkpointing: expected \"none\", \"block\" or \"chunk\", got \"", name, "\"");
}

void Model::set_checkpointing(const Checkpointing& c) {
  check(c.tokens >= 0 && c.tokens % config_.chunk_size == 0, "checkpoint_tokens: ", c.tokens,
        " is not a multiple of the model's chunk_size ", config_.chunk_size);
  ckpt_ = c;
}

}  // namespace mmrec
