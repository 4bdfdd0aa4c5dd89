#include "train/compiled_step.h"

#include <cmath>

#include "autograd/tape.h"
#include "ops/elementwise.h"

namespace mmrec {

using autograd::CompiledFn;
using autograd::CompileOptions;

CompiledStep::CompiledStep(Model& model, AdamW& opt, LossScaler* scaler, double grad_clip, int64_t grad_accum,
                           const std::string& config_key)
    : model_(model), opt_(opt), scaler_(scaler), clip_(grad_clip), accum_(grad_accum) {
  check(grad_accum >= 1, "CompiledStep: grad_accum must be >= 1");
  const bool amp = scaler_ != nullptr;
  const int64_t A = accum_;
  // in[0]: the batch; with amp in[1]: the f32 [1] loss multiplier, scale / A.
  // (x * m equals the eager step's scale(x, m) = m x + 0 bit for bit, and so
  // does its gradient.)
  micro_ = std::make_unique<CompiledFn>(
      [this, A, amp](const std::vector<Tensor>& in) {
        Tensor loss = model_.loss(in[0]);
        Tensor seed = amp ? ops::mul(loss, in[1]) : A > 1 ? ops::scale(loss, 1.0f / static_cast<float>(A)) : loss;
        autograd::backward(seed);
        return std::vector<Tensor>{loss};
      },
      CompileOptions{"train.micro_batch", 2, false, config_key});
  if (!amp) {
    update_ = std::make_unique<CompiledFn>(
        [this](const std::vector<Tensor>&) {
          Tensor r = clip_grad_norm_tensor(opt_.params(), clip_);
          opt_.apply();
          opt_.zero_grad_in_place();
          return std::vector<Tensor>{r};
        },
        CompileOptions{"train.update", 2, false, config_key});
  } else {
    // in[0]: 1 / scale (f64_value).
    update_ = std::make_unique<CompiledFn>(
        [this](const std::vector<Tensor>& in) {
          return std::vector<Tensor>{clip_grad_norm_tensor(opt_.params(), clip_, in[0])};
        },
        CompileOptions{"train.clip", 2, false, config_key});
    apply_ = std::make_unique<CompiledFn>(
        [this](const std::vector<Tensor>&) {
          opt_.apply();
          opt_.zero_grad_in_place();
          model_.refresh_bf16_copies();
          return std::vector<Tensor>{};
        },
        CompileOptions{"train.apply", 2, false, config_key});
    skip_ = std::make_unique<CompiledFn>(
        [this](const std::vector<Tensor>&) {
          opt_.zero_grad_in_place();
          return std::vector<Tensor>{};
        },
        CompileOptions{"train.skip", 2, false, config_key});
  }
  opt_.zero_grad_in_place();  // the graphs accumulate into these buffers
}

double CompiledStep::micro_batch(const Tensor& batch) {
  if (!scaler_) return (*micro_)({batch})[0].item();
  const float mult = static_cast<float>(scaler_->scale() / static_cast<double>(accum_));
  return (*micro_)({batch, Tensor::from_vector(std::vector<float>{mult}, {})})[0].item();
}

CompiledStep::Update CompiledStep::update(double lr) {
  Update u;
  if (!scaler_) {
    opt_.stage(lr);
    u.norm = clip_norm_value((*update_)({})[0]);
    return u;
  }
  u.norm = clip_norm_value((*update_)({f64_value(1.0 / scaler_->scale())})[0]);
  u.stepped = scaler_->update(std::isfinite(u.norm));
  if (u.stepped) {
    opt_.stage(lr);
    (*apply_)({});
  } else {
    (*skip_)({});
  }
  return u;
}

}  // namespace mmrec
