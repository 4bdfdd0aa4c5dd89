// AdamW (decoupled weight decay, PyTorch's torch.optim.AdamW semantics) and
// global-norm gradient clipping over named leaf parameters.
//
//   AdamW opt(model.parameters(), decay_mask(model.parameters(), cfg.train), cfg.train);
//   autograd::backward(loss);
//   double norm = clip_grad_norm(model.parameters(), 1.0);
//   opt.step(lr);            // one fused pass per parameter, under NoGradGuard
//   opt.zero_grad();
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tensor/export.h"
#include "tensor/tensor.h"
#include "train/train_config.h"

MMREC_API_BEGIN

namespace mmrec {

using NamedTensor = std::pair<std::string, Tensor>;

// Which parameters get weight decay: matrices do; norms, biases (1-D tensors
// and names ending in ".bias") and embeddings ("embed" in the name) do not,
// unless decay_norms_and_biases / decay_embeddings.
bool wants_weight_decay(const std::string& name, const Tensor& t, const OptimConfig& c);
std::vector<bool> decay_mask(const std::vector<NamedTensor>& params, const OptimConfig& c);

class AdamW {
 public:
  AdamW(std::vector<NamedTensor> params, std::vector<bool> decay, double beta1, double beta2, double eps,
        double weight_decay);
  AdamW(std::vector<NamedTensor> params, std::vector<bool> decay, const OptimConfig& c)
      : AdamW(std::move(params), std::move(decay), c.beta1, c.beta2, c.eps, c.weight_decay) {}

  // Applies one update at rate lr with the parameters' current .grad
  // (parameters without a gradient are left alone): stage(lr) then apply().
  void step(double lr);
  // The host half: counts the step and writes its scalars (lr, bias
  // corrections) into a small tensor that apply()'s kernels read, so a
  // captured apply() replays with each step's values (stage before replay).
  void stage(double lr);
  void apply();
  void zero_grad();
  // Sets every gradient to zeros (allocating the missing ones): a captured
  // step then accumulates into fixed buffers.
  void zero_grad_in_place();
  int64_t steps() const { return t_; }

  // Checkpoint state: "exp_avg.<name>" and "exp_avg_sq.<name>" for every
  // parameter, plus the step count.
  std::vector<NamedTensor> state_tensors() const;
  // Restores it; a missing tensor or a shape mismatch is an Error naming it.
  void load_state(const std::vector<NamedTensor>& tensors, int64_t steps);

  const std::vector<NamedTensor>& params() const { return params_; }

 private:
  std::vector<NamedTensor> params_;
  std::vector<bool> decay_;
  std::vector<Tensor> m_, v_;
  Tensor scalars_;  // u8: two kernels::AdamWScalars (decayed, not decayed), written by stage()
  double beta1_, beta2_, eps_, wd_;
  int64_t t_ = 0;
};

// The global L2 norm of all gradients (undefined gradients are skipped).
double grad_norm(const std::vector<NamedTensor>& params);
// Scales every gradient by max_norm / (norm + 1e-6) when the global norm
// exceeds max_norm (torch.nn.utils.clip_grad_norm_); returns the norm before
// clipping. max_norm <= 0 only measures. With inv_scale != 1 (a loss
// scaler's 1 / scale) the gradients are unscaled in the same pass and the
// norm is that of the unscaled gradients; a non-finite norm (an inf or a nan
// in some gradient) is returned with the gradients left as they were.
double clip_grad_norm(const std::vector<NamedTensor>& params, double max_norm, double inv_scale = 1.0);
// The same through kernels only (no host read): returns an i64 [3] tensor
// holding the norm's and the coefficient's double bits and whether it
// scaled; clip_norm_value() reads the norm from it.
Tensor clip_grad_norm_tensor(const std::vector<NamedTensor>& params, double max_norm, double inv_scale = 1.0);
// The same with inv_scale read at run time from an i64 [1] tensor holding a
// double's bits (f64_value): a captured clip replays with each step's scale.
Tensor clip_grad_norm_tensor(const std::vector<NamedTensor>& params, double max_norm, const Tensor& inv_scale);
double clip_norm_value(const Tensor& result);
Tensor f64_value(double d);  // an i64 [1] tensor holding d's bits

}  // namespace mmrec

MMREC_API_END
