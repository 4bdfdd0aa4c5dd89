#include "train/qat.h"

#include "models/quant.h"

namespace mmrec {
namespace {
constexpr const char* kPrefix = "qat.";

void attach(Model& model, const QatConfig& cfg) {
  QuantConfig qc;
  qc.layers = cfg.layers;
  qc.head = cfg.head;
  qc.averaging_constant = static_cast<float>(cfg.averaging_constant);
  auto q = std::make_shared<ModelQuant>(model, qc);
  q->mode = QuantMode::fake;
  model.set_quantization(q);
}
}  // namespace

void qat_before_step(Model& model, const QatConfig& cfg, int64_t step) {
  if (!cfg.enabled || step < cfg.start_step) return;
  if (!model.quantization()) attach(model, cfg);
  model.quantization()->observers_enabled = cfg.freeze_observers_step < 0 || step < cfg.freeze_observers_step;
}

bool qat_active(const Model& model) { return fake_quantizing(model.quantization()); }

int qat_phase(const Model& model) {
  const ModelQuant* q = model.quantization();
  return q == nullptr ? 0 : q->observers_enabled ? 1 : 2;
}

std::vector<NamedTensor> qat_state_tensors(const Model& model) {
  std::vector<NamedTensor> out;
  if (!model.quantization()) return out;
  for (auto& [name, t] : model.quantization()->state_tensors()) out.emplace_back(kPrefix + name, t);
  return out;
}

void qat_resume(Model& model, const QatConfig& cfg, const std::vector<NamedTensor>& tensors) {
  attach(model, cfg);
  std::vector<NamedTensor> mine;
  const std::string prefix = kPrefix;
  for (const auto& [name, t] : tensors)
    if (name.rfind(prefix, 0) == 0) mine.emplace_back(name.substr(prefix.size()), t);
  model.quantization()->load_state(mine);
}

}  // namespace mmrec
