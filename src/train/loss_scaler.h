// Dynamic loss scaling for mixed-precision training, with PyTorch's
// torch.cuda.amp.GradScaler semantics: the loss is multiplied by the scale
// before backward, the gradients divided by it before clipping and AdamW; a
// step whose gradients hold an inf or a nan is skipped and the scale backs
// off; after `growth_interval` clean steps in a row it grows.
//
//   LossScaler s;                                  // scale 2^16
//   autograd::backward(ops::scale(loss, s.scale()));
//   double norm = clip_grad_norm(params, clip, 1.0 / s.scale());  // non-finite: skip
//   bool stepped = s.update(std::isfinite(norm));  // then opt.step(lr) when stepped
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

struct LossScalerConfig {
  double init_scale = 65536.0;   // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;  // clean steps in a row before the scale grows
  double min_scale = 1.0;          // below this the run stops (update throws)
};

class LossScaler {
 public:
  explicit LossScaler(const LossScalerConfig& c = {});

  double scale() const { return scale_; }
  // After a step's backward: `finite` is whether every gradient was finite.
  // Returns true when the optimizer should step. A non-finite step backs the
  // scale off; a scale that falls below min_scale throws an Error (the
  // gradients are not finite at any scale: the run has diverged).
  bool update(bool finite);

  int64_t skipped() const { return skipped_; }          // steps skipped so far
  int64_t clean_steps() const { return growth_tracker_; }  // since the last change

  // Checkpoint state (the scale as exact bits); load_state throws on a malformed object.
  nlohmann::json state() const;
  void load_state(const nlohmann::json& j);

 private:
  LossScalerConfig cfg_;
  double scale_;
  int64_t growth_tracker_ = 0, skipped_ = 0;
};

}  // namespace mmrec

MMREC_API_END
