// Learning-rate schedules: linear warmup then constant / cosine / linear decay
// to min_lr, and ReduceLROnPlateau with PyTorch's exact semantics. They
// compose: the rate used at a step is schedule.lr(step) * plateau.scale().
//
//   LrSchedule s(cfg.schedule, cfg.train.lr, cfg.train.steps);
//   ReduceLROnPlateau p(cfg.schedule.plateau, cfg.train.lr);
//   double lr = s.lr(step) * p.scale();
//   if (evaluated) p.step(val_loss);
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>

#include "tensor/export.h"
#include "train/train_config.h"

MMREC_API_BEGIN

namespace mmrec {

class LrSchedule {
 public:
  LrSchedule(const ScheduleConfig& c, double base_lr, int64_t total_steps);
  // The rate of optimizer update `step` (0-based): (step+1)/warmup * base_lr
  // during warmup, then the decay from base_lr to min_lr over the remaining
  // steps (constant: base_lr).
  double lr(int64_t step) const;
  double base_lr() const { return base_; }

 private:
  int kind_;  // 0 constant, 1 cosine, 2 linear
  double base_, min_;
  int64_t warmup_, total_;
};

// torch.optim.lr_scheduler.ReduceLROnPlateau for one parameter group whose
// rate starts at base_lr: step(metric) once per evaluation.
class ReduceLROnPlateau {
 public:
  ReduceLROnPlateau(const PlateauConfig& c, double base_lr);

  // Returns true when the rate was reduced at this call.
  bool step(double metric);
  // The rate PyTorch would hold now (base_lr until reduced).
  double lr() const { return lr_; }
  // lr() / base_lr: multiplies the scheduled rate.
  double scale() const { return lr_ / base_; }

  double best() const { return best_; }
  int64_t num_bad_epochs() const { return num_bad_; }
  int64_t cooldown_counter() const { return cooldown_counter_; }
  int64_t last_epoch() const { return last_epoch_; }
  bool in_cooldown() const { return cooldown_counter_ > 0; }
  bool is_better(double a, double best) const;

  // Exact state (doubles as bit patterns) for checkpoints.
  nlohmann::json state() const;
  void load_state(const nlohmann::json& s);

 private:
  PlateauConfig c_;
  double base_, lr_, best_;
  int64_t num_bad_ = 0, cooldown_counter_ = 0, last_epoch_ = 0;
};

// Doubles stored bit-exactly in JSON ("0x3ff0000000000000"): JSON has no inf
// or nan and decimal text need not round-trip in every reader.
nlohmann::json double_bits(double v);
double from_double_bits(const nlohmann::json& j, const char* what);

}  // namespace mmrec

MMREC_API_END
