// Quantization-aware training in the trainer: the `qat` section drives a
// ModelQuant (models/quant.h) on the model: attached at qat.start_step,
// observers frozen at qat.freeze_observers_step, its observer state saved in
// train_state.bin (tensors "qat.<site>.{input,weight}.{min,max}") so that a
// resume stays bit-identical, and the int8 export at the end of a run.
//
//   qat_before_step(model, cfg.qat, step);     // before each training step
//   auto t = qat_state_tensors(model);          // into the checkpoint
#pragma once
#include <string>
#include <vector>

#include "models/model.h"
#include "train/train_config.h"

namespace mmrec {

// Attaches fake quantization when the step (0-based, the one about to run)
// has reached start_step, and sets whether observers move.
void qat_before_step(Model& model, const QatConfig& cfg, int64_t step);
// True when the model runs with fake quantization.
bool qat_active(const Model& model);
// 0 without quantization, 1 fake quantization with moving observers, 2 with
// frozen observers: a captured step is valid for one phase only.
int qat_phase(const Model& model);
// The observer state, names prefixed "qat.".
std::vector<NamedTensor> qat_state_tensors(const Model& model);
// Attaches fake quantization with the observer state found in `tensors`
// (names prefixed "qat."; other tensors are ignored).
void qat_resume(Model& model, const QatConfig& cfg, const std::vector<NamedTensor>& tensors);

}  // namespace mmrec
