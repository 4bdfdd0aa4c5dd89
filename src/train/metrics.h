// Training metrics: JSON lines in <run_dir>/metrics.jsonl, the loss curve as
// a hand-written SVG, and the text of progress lines (the tool prints them).
//
//   MetricsLog log(run_dir + "/metrics.jsonl", /*keep_until_step=*/resumed_step);
//   log.write({{"step", 10}, {"loss", 2.31}});
//   write_loss_svg(run_dir + "/loss.svg", log.train_curve(), log.val_curve(), 1000);
#pragma once
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

using Curve = std::vector<std::pair<int64_t, double>>;  // (step, value)

class MetricsLog {
 public:
  MetricsLog() = default;
  // Opens the file for appending. Lines with a step after keep_until_step
  // (from a run that went on past its last checkpoint) are dropped;
  // keep_until_step < 0 starts an empty file.
  MetricsLog(const std::string& path, int64_t keep_until_step);
  ~MetricsLog();
  MetricsLog(MetricsLog&&) noexcept;
  MetricsLog& operator=(MetricsLog&&) noexcept;
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Appends one line (flushed); "loss" and "val_loss" also feed the curves.
  void write(const nlohmann::json& line);
  const Curve& train_curve() const { return train_; }
  const Curve& val_curve() const { return val_; }
  const std::string& path() const { return path_; }

 private:
  void track(const nlohmann::json& line);
  std::string path_;
  std::FILE* f_ = nullptr;
  Curve train_, val_;
};

// An SVG line chart of train loss (polyline) and validation loss (points and
// polyline) against steps, with axes, ticks and a legend.
std::string loss_curve_svg(const Curve& train, const Curve& val, int64_t total_steps, const std::string& title);
void write_loss_svg(const std::string& path, const Curve& train, const Curve& val, int64_t total_steps,
                    const std::string& title);

// This process's resident set now (/proc/self/statm), in bytes (0 if unknown).
size_t resident_bytes();

// "1:02:03" / "2:03" / "5s"
std::string format_duration(double seconds);
// "12.3k", "4.56M"
std::string format_count(double v);

struct ProgressInfo {
  int64_t step = 0, total = 0;
  double loss = 0, lr = 0, tokens_per_s = 0, grad_norm = 0, elapsed_s = 0, eta_s = 0;
};
// "step  120/500 | loss 2.3451 | lr 1.20e-03 | gnorm 0.83 | 12.3k tok/s | 0:12 < 0:38"
std::string format_progress(const ProgressInfo& p);

}  // namespace mmrec

MMREC_API_END
