// Reductions: blocked row sums (vectorised by the compiler: they are
// bandwidth-bound) over oneTBB, with a double-precision reference.
#include "ops/kernels/reduce.h"

#include <algorithm>
#include <vector>

#include "tensor/threads.h"

namespace mmrec::kernels {

void sum_axis_f32(const float* x, int64_t outer, int64_t n, int64_t inner, float scale, float* out) {
  if (inner == 1) {
    // Sum contiguous rows; 8 partial sums keep rounding error and latency low.
    parallel_for(outer, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(n, 1)), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const float* p = x + o * n;
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t k = 0;
        for (; k + 8 <= n; k += 8)
          for (int j = 0; j < 8; ++j) acc[j] += p[k + j];
        for (; k < n; ++k) acc[0] += p[k];
        double s = 0;
        for (double a : acc) s += a;
        out[o] = static_cast<float>(s * scale);
      }
    });
    return;
  }
  // Sum over the middle axis: accumulate whole rows of `inner` floats.
  parallel_for(outer, 1, [&](int64_t b, int64_t e) {
    std::vector<double> acc(static_cast<size_t>(inner));
    for (int64_t o = b; o < e; ++o) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t k = 0; k < n; ++k) {
        const float* p = x + (o * n + k) * inner;
        for (int64_t i = 0; i < inner; ++i) acc[static_cast<size_t>(i)] += p[i];
      }
      for (int64_t i = 0; i < inner; ++i) out[o * inner + i] = static_cast<float>(acc[static_cast<size_t>(i)] * scale);
    }
  });
}

void expand_axis_f32(const float* g, int64_t outer, int64_t n, int64_t inner, float scale, float* out) {
  parallel_for(outer * n, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* src = g + (r / n) * inner;
      float* dst = out + r * inner;
      for (int64_t i = 0; i < inner; ++i) dst[i] = src[i] * scale;
    }
  });
}

namespace ref {
void sum_axis_f32(const float* x, int64_t outer, int64_t n, int64_t inner, float scale, float* out) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) s += x[(o * n + k) * inner + i];
      out[o * inner + i] = static_cast<float>(s * scale);
    }
}
}  // namespace ref

}  // namespace mmrec::kernels
