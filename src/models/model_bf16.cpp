// bf16 GEMM weights: the copies of mixed-precision training and the bf16
// weights of inference (Model::use_bf16).
#include <iterator>

#include "autograd/tape.h"
#include "models/model.h"
#include "models/quant.h"
#include "ops/view.h"

namespace mmrec {
namespace {

// The block weights that run as bf16 GEMMs. The MDI's (decay and context)
// stay f32: γ multiplies the state at every token, so its rounding compounds.
constexpr Tensor BlockWeights::*kGemmWeights[] = {&BlockWeights::qkvz_w, &BlockWeights::gate_w,
                                                  &BlockWeights::attn_out_w, &BlockWeights::ffn_fc1_w,
                                                  &BlockWeights::ffn_fc2_w};

// The quantization site of each of kGemmWeights.
constexpr QuantSiteId kGemmSites[] = {QuantSiteId::qkvz, QuantSiteId::gate, QuantSiteId::attn_out,
                                      QuantSiteId::ffn_fc1, QuantSiteId::ffn_fc2};

Tensor bf16_copy(const Tensor& t) {
  Tensor out = Tensor::empty(t.shape(), DType::bf16);
  ops::convert_into(t.contiguous(), out);
  return out;
}

}  // namespace

void Model::use_bf16(bool keep_f32) {
  check(!bf16_, "model.use_bf16: the model already uses bf16 GEMMs");
  autograd::NoGradGuard no_grad;
  if (keep_f32) {
    copies_.assign(blocks_.size(), BlockWeights{});
    for (size_t i = 0; i < blocks_.size(); ++i)
      for (auto m : kGemmWeights) copies_[i].*m = bf16_copy(blocks_[i].*m);
    head_copy_ = bf16_copy(lm_head_);
  } else {
    // The parameters themselves become bf16: every handle to them is replaced.
    std::vector<std::pair<const TensorImpl*, Tensor>> replaced;
    auto convert = [&](Tensor& t) {
      Tensor n = bf16_copy(t);
      replaced.emplace_back(t.impl(), n);
      t = n;
    };
    for (BlockWeights& b : blocks_)
      for (auto m : kGemmWeights) convert(b.*m);
    if (config_.tie_embeddings) head_copy_ = bf16_copy(embed_);  // the embedding keeps reading f32
    else convert(lm_head_);
    for (auto& [name, t] : params_)
      for (const auto& [old, n] : replaced)
        if (t.impl() == old) t = n;
  }
  bf16_ = true;
}

void Model::refresh_bf16_copies() {
  autograd::NoGradGuard no_grad;
  for (size_t i = 0; i < copies_.size(); ++i)
    for (auto m : kGemmWeights) ops::convert_into(blocks_[i].*m, copies_[i].*m);
  if (head_copy_.defined()) ops::convert_into(lm_head_, head_copy_);
}

size_t Model::bf16_copy_bytes() const {
  size_t n = 0;
  for (const BlockWeights& b : copies_)
    for (auto m : kGemmWeights) n += (b.*m).nbytes();
  return copies_.empty() ? 0 : n + head_copy_.nbytes();
}

BlockWeights Model::forward_weights(size_t i) const {
  if (copies_.empty()) return blocks_[i];
  BlockWeights w = blocks_[i];
  // A fake-quantized site reads the f32 master (its GEMM stays f32, as the
  // int8 model it stands for has no bf16 rounding).
  const bool sites = quant_ && quant_->mode != QuantMode::int8;
  for (size_t k = 0; k < std::size(kGemmWeights); ++k)
    if (!(sites && quant_->blocks[i][static_cast<size_t>(kGemmSites[k])].enabled))
      w.*kGemmWeights[k] = ops::stand_in(blocks_[i].*kGemmWeights[k], copies_[i].*kGemmWeights[k]);
  return w;
}

Tensor Model::head_weight() const {
  if (!copies_.empty()) return ops::stand_in(lm_head_, head_copy_);
  return head_copy_.defined() ? head_copy_ : lm_head_;
}

}  // namespace mmrec
