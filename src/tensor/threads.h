// The one threading knob: set_num_threads(n) drives oneTBB (our kernels) and
// OpenMP (which the Debian oneDNN uses). parallel_for is the helper every
// project kernel uses for its parallel loops.
#pragma once
#include <cstdint>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec {

// n <= 0 means all cores. Affects the whole process.
void set_num_threads(int n);
int num_threads();

// Runs f(begin, end) over [0, n) in chunks of at least `grain` iterations.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (n <= grain || num_threads() == 1) {
    f(int64_t{0}, n);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, grain),
                    [&](const tbb::blocked_range<int64_t>& r) { f(r.begin(), r.end()); });
}

}  // namespace mmrec

MMREC_API_END
