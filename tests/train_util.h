// Running a Trainer in the test suites.
#pragma once
#include <vector>

#include "train/trainer.h"

namespace test_util {

// Runs t (to its configured steps, or until step `stop_after`) and returns each step's loss.
inline std::vector<double> run_losses(mmrec::Trainer& t, int64_t stop_after = -1) {
  std::vector<double> out;
  mmrec::RunHooks h;
  h.on_step = [&](const mmrec::StepResult& r) { out.push_back(r.loss); };
  h.should_stop = [&] { return stop_after >= 0 && t.step() >= stop_after; };
  t.run(h);
  return out;
}

}  // namespace test_util
