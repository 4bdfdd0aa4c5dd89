// Scalar references for the softmax and cross-entropy kernels (double precision).
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/kernels/softmax.h"

namespace mmrec::kernels::ref {

void softmax_f32(const float* x, const uint8_t* mask, int64_t mask_rows, float* y, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    const uint8_t* mr = mask ? mask + (r % mask_rows) * n : nullptr;
    float* yr = y + r * n;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < n; ++i)
      if (!mr || mr[i]) mx = std::max(mx, static_cast<double>(xr[i]));
    if (mx == -std::numeric_limits<double>::infinity()) {
      std::fill_n(yr, n, 0.0f);
      continue;
    }
    double s = 0;
    for (int64_t i = 0; i < n; ++i)
      if (!mr || mr[i]) s += std::exp(xr[i] - mx);
    for (int64_t i = 0; i < n; ++i) yr[i] = (!mr || mr[i]) ? static_cast<float>(std::exp(xr[i] - mx) / s) : 0.0f;
  }
}

void softmax_bwd_f32(const float* y, const float* g, float* dx, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    double dot = 0;
    for (int64_t i = 0; i < n; ++i) dot += static_cast<double>(y[r * n + i]) * g[r * n + i];
    for (int64_t i = 0; i < n; ++i) dx[r * n + i] = static_cast<float>(y[r * n + i] * (g[r * n + i] - dot));
  }
}

void cross_entropy_f32(const float* logits, const int64_t* targets, int64_t ignore_index, float* loss, float* lse,
                       int64_t rows, int64_t v) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = logits + r * v;
    if (targets[r] == ignore_index) {
      loss[r] = lse[r] = 0.0f;
      continue;
    }
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < v; ++i) mx = std::max(mx, static_cast<double>(xr[i]));
    double s = 0;
    for (int64_t i = 0; i < v; ++i) s += std::exp(xr[i] - mx);
    const double l = mx + std::log(s);
    lse[r] = static_cast<float>(l);
    loss[r] = static_cast<float>(l - xr[targets[r]]);
  }
}

void cross_entropy_bwd_f32(const float* logits, const int64_t* targets, int64_t ignore_index, const float* lse,
                           float scale, float* dlogits, int64_t rows, int64_t v) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = targets[r];
    for (int64_t i = 0; i < v; ++i) {
      const double p = t == ignore_index ? 0.0 : std::exp(static_cast<double>(logits[r * v + i]) - lse[r]);
      const double onehot = (t != ignore_index && i == t) ? 1.0 : 0.0;
      dlogits[r * v + i] = static_cast<float>(scale * (p - onehot));
    }
  }
}

}  // namespace mmrec::kernels::ref
