// Scalar references for the RMSNorm kernels (double precision).
#include <cmath>
#include <vector>

#include "ops/kernels/norm.h"

namespace mmrec::kernels::ref {

void rmsnorm_f32(const float* x, const float* w, float eps, float* y, float* rstd, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const double rs = 1.0 / std::sqrt((d ? ss / static_cast<double>(d) : 0.0) + eps);
    if (rstd) rstd[r] = static_cast<float>(rs);
    for (int64_t i = 0; i < d; ++i) y[r * d + i] = static_cast<float>(xr[i] * rs * w[i]);
  }
}

void rmsnorm_bwd_f32(const float* x, const float* w, const float* rstd, const float* g, float* dx, float* dw,
                     int64_t rows, int64_t d) {
  std::vector<double> acc(static_cast<size_t>(d), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    const float* gr = g + r * d;
    const double rs = rstd[r];
    double dot = 0;
    for (int64_t i = 0; i < d; ++i) dot += static_cast<double>(w[i]) * gr[i] * xr[i];
    for (int64_t i = 0; i < d; ++i) {
      if (dx) dx[r * d + i] = static_cast<float>(rs * w[i] * gr[i] - rs * rs * rs * dot / static_cast<double>(d) * xr[i]);
      acc[static_cast<size_t>(i)] += static_cast<double>(gr[i]) * xr[i] * rs;
    }
  }
  if (dw)
    for (int64_t i = 0; i < d; ++i) dw[i] = static_cast<float>(acc[static_cast<size_t>(i)]);
}

}  // namespace mmrec::kernels::ref
