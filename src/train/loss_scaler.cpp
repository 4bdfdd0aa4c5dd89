#include "train/loss_scaler.h"

#include "tensor/error.h"
#include "train/schedule.h"

namespace mmrec {

LossScaler::LossScaler(const LossScalerConfig& c) : cfg_(c), scale_(c.init_scale) {
  check(c.init_scale > 0 && c.growth_factor > 1 && c.backoff_factor > 0 && c.backoff_factor < 1 &&
            c.growth_interval >= 1,
        "LossScaler: needs init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1, growth_interval >= 1");
}

bool LossScaler::update(bool finite) {
  if (!finite) {
    scale_ *= cfg_.backoff_factor;
    growth_tracker_ = 0;
    ++skipped_;
    check(scale_ >= cfg_.min_scale, "mixed precision: the loss scale fell to ", scale_, " (below ", cfg_.min_scale,
          ") after ", skipped_, " skipped steps: the gradients are inf or nan at every scale, the run diverged "
          "(try a lower train.lr, or \"amp\": \"none\")");
    return false;
  }
  if (++growth_tracker_ == cfg_.growth_interval) {
    scale_ *= cfg_.growth_factor;
    growth_tracker_ = 0;
  }
  return true;
}

nlohmann::json LossScaler::state() const {
  return {{"scale", double_bits(scale_)}, {"growth_tracker", growth_tracker_}, {"skipped", skipped_}};
}

void LossScaler::load_state(const nlohmann::json& j) {
  try {
    scale_ = from_double_bits(j.at("scale"), "loss scale");
    growth_tracker_ = j.at("growth_tracker").get<int64_t>();
    skipped_ = j.at("skipped").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail("loss scaler state: ", e.what());
  }
  check(scale_ > 0 && growth_tracker_ >= 0 && growth_tracker_ < cfg_.growth_interval && skipped_ >= 0,
        "loss scaler state: out of range (scale ", scale_, ", growth_tracker ", growth_tracker_, ")");
}

}  // namespace mmrec
