#include "train/schedule.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "tensor/error.h"

namespace mmrec {

LrSchedule::LrSchedule(const ScheduleConfig& c, double base_lr, int64_t total_steps)
    : kind_(c.kind == "constant" ? 0 : c.kind == "cosine" ? 1 : 2),
      base_(base_lr),
      min_(c.min_lr),
      warmup_(c.warmup_steps),
      total_(total_steps) {
  check(c.kind == "constant" || c.kind == "cosine" || c.kind == "linear", "schedule.kind: unknown value \"",
        c.kind, "\"");
}

double LrSchedule::lr(int64_t step) const {
  if (step < warmup_) return base_ * static_cast<double>(step + 1) / static_cast<double>(warmup_);
  if (kind_ == 0) return base_;
  const int64_t span = total_ - warmup_;
  if (span <= 1) return base_;
  // progress 0 at the first step after warmup, 1 at the last step
  double p = static_cast<double>(step - warmup_) / static_cast<double>(span - 1);
  if (p > 1.0) p = 1.0;
  const double f = kind_ == 1 ? 0.5 * (1.0 + std::cos(M_PI * p)) : 1.0 - p;
  return min_ + (base_ - min_) * f;
}

ReduceLROnPlateau::ReduceLROnPlateau(const PlateauConfig& c, double base_lr)
    : c_(c),
      base_(base_lr),
      lr_(base_lr),
      best_(c.mode == "min" ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity()) {
  check(c.factor < 1.0, "schedule.plateau.factor: should be < 1.0, got ", c.factor);
}

bool ReduceLROnPlateau::is_better(double a, double best) const {
  const bool rel = c_.threshold_mode == "rel";
  if (c_.mode == "min") return rel ? a < best * (1.0 - c_.threshold) : a < best - c_.threshold;
  return rel ? a > best * (c_.threshold + 1.0) : a > best + c_.threshold;
}

bool ReduceLROnPlateau::step(double metric) {
  ++last_epoch_;
  if (is_better(metric, best_)) {
    best_ = metric;
    num_bad_ = 0;
  } else {
    ++num_bad_;
  }
  if (in_cooldown()) {
    --cooldown_counter_;
    num_bad_ = 0;  // bad epochs in cooldown are ignored
  }
  if (num_bad_ > c_.patience) {
    bool reduced = false;
    const double old_lr = lr_;
    const double new_lr = std::max(old_lr * c_.factor, c_.min_lr);
    if (old_lr - new_lr > c_.eps) {
      lr_ = new_lr;
      reduced = true;
    }
    cooldown_counter_ = c_.cooldown;
    num_bad_ = 0;
    return reduced;
  }
  return false;
}

nlohmann::json ReduceLROnPlateau::state() const {
  return {{"lr", double_bits(lr_)},
          {"best", double_bits(best_)},
          {"num_bad_epochs", num_bad_},
          {"cooldown_counter", cooldown_counter_},
          {"last_epoch", last_epoch_}};
}

void ReduceLROnPlateau::load_state(const nlohmann::json& s) {
  try {
    lr_ = from_double_bits(s.at("lr"), "plateau.lr");
    best_ = from_double_bits(s.at("best"), "plateau.best");
    num_bad_ = s.at("num_bad_epochs").get<int64_t>();
    cooldown_counter_ = s.at("cooldown_counter").get<int64_t>();
    last_epoch_ = s.at("last_epoch").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail("plateau state: ", e.what());
  }
}

nlohmann::json double_bits(double v) {
  uint64_t u;
  std::memcpy(&u, &v, 8);
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%016" PRIx64, u);
  return std::string(buf);
}

double from_double_bits(const nlohmann::json& j, const char* what) {
  check(j.is_string(), what, ": expected a hex bit pattern, got ", j.dump());
  const std::string s = j.get<std::string>();
  check(s.size() == 18 && s[0] == '0' && s[1] == 'x', what, ": malformed bit pattern \"", s, "\"");
  char* end = nullptr;
  const uint64_t u = std::strtoull(s.c_str() + 2, &end, 16);
  check(end && *end == '\0', what, ": malformed bit pattern \"", s, "\"");
  double v;
  std::memcpy(&v, &u, 8);
  return v;
}

}  // namespace mmrec
