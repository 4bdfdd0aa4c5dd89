#include "tensor/threads.h"

#include <omp.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include <tbb/global_control.h>
#include <tbb/info.h>

namespace mmrec {
namespace {
std::mutex g_mu;
std::unique_ptr<tbb::global_control> g_control;
std::atomic<int> g_threads{0};
}  // namespace

void set_num_threads(int n) {
  const int cores = static_cast<int>(tbb::info::default_concurrency());
  if (n <= 0) n = cores;
  std::lock_guard<std::mutex> lock(g_mu);
  g_control = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                                    static_cast<size_t>(n));
  omp_set_num_threads(n);
  g_threads = n;
}

int num_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  return static_cast<int>(tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
}

}  // namespace mmrec
