// A training step captured and replayed (train.compile): the micro-batch
// graph (forward, loss, backward, accumulating into fixed gradient buffers)
// and the update (clipping, AdamW, zeroing the gradients), with the same
// losses and weights as the eager step, bit for bit.
//
// With a loss scaler (train.amp "bf16") the scale is a value written before
// each replay, not a constant of the graph: the micro-batch graph multiplies
// the loss by an input, and the clip graph unscales by one. Whether a step is
// applied is the scaler's host decision on the clipped norm, taken between
// two graphs: "apply" (AdamW, zero the gradients, refresh the bf16 weight
// copies) or "skip" (zero the gradients).
//
//   CompiledStep step(model, opt, scaler, grad_clip, grad_accum, config_key);
//   for (a = 0; a < A; ++a) loss += step.micro_batch(batch_a);
//   CompiledStep::Update u = step.update(lr);   // u.norm, u.stepped
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "autograd/compile.h"
#include "models/model.h"
#include "tensor/export.h"
#include "train/loss_scaler.h"
#include "train/optimizer.h"

MMREC_API_BEGIN

namespace mmrec {

class CompiledStep {
 public:
  // scaler: nullptr without amp. The model, optimizer and scaler must outlive this.
  CompiledStep(Model& model, AdamW& opt, LossScaler* scaler, double grad_clip, int64_t grad_accum,
               const std::string& config_key);
  // Forward and backward of one micro-batch [B, T+1]; returns its mean loss.
  double micro_batch(const Tensor& batch);
  struct Update {
    double norm = 0;      // the gradients' global norm (unscaled), before clipping
    bool stepped = true;  // false: the loss scaler skipped the step
  };
  // After grad_accum micro-batches: clip, then (unless the scaler skips) one
  // AdamW step at lr; the gradients are zero afterwards.
  Update update(double lr);
  const autograd::CompiledFn& micro_fn() const { return *micro_; }

 private:
  Model& model_;
  AdamW& opt_;
  LossScaler* scaler_;
  double clip_;
  int64_t accum_;
  std::unique_ptr<autograd::CompiledFn> micro_, update_, apply_, skip_;
};

}  // namespace mmrec

MMREC_API_END
