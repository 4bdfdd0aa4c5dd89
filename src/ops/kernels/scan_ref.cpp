// Sequential double-precision references for the scan kernels: one loop over
// time per (batch, channel), no blocking, no SIMD.
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "ops/kernels/scan.h"

namespace mmrec::kernels::ref {
namespace {
// The clamp range of log a; a below exp(-50) (or ≤ 0) counts as exp(-50).
constexpr double kLogMin = -50.0;

double clamped_log(float a) { return std::clamp(std::log(std::max<double>(a, FLT_MIN)), kLogMin, 0.0); }
bool log_in_range(float a) { return a >= static_cast<float>(std::exp(kLogMin)) && a <= 1.0f; }
}  // namespace

void linear_scan_f32(const float* a, const float* b, const float* h0, float* h, float* h_last, const ScanShape& s) {
  const int64_t T = s.T, D = s.D;
  for (int64_t bi = 0; bi < s.B; ++bi)
    for (int64_t d = 0; d < D; ++d) {
      double x = h0 ? h0[bi * D + d] : 0.0;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t i = (bi * T + t) * D + d;
        x = static_cast<double>(a[i]) * x + b[i];
        h[i] = static_cast<float>(x);
      }
      if (h_last) h_last[bi * D + d] = static_cast<float>(x);
    }
}

void linear_scan_bwd_f32(const float* a, const float* h, const float* h0, const float* dh, const float* dh_last,
                         float* da, float* db, float* dh0, const ScanShape& s) {
  const int64_t T = s.T, D = s.D;
  for (int64_t bi = 0; bi < s.B; ++bi)
    for (int64_t d = 0; d < D; ++d) {
      double carry = dh_last ? dh_last[bi * D + d] : 0.0;  // a_{t+1} g_{t+1}
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t i = (bi * T + t) * D + d;
        const double g = dh[i] + carry;
        const double hp = t > 0 ? h[i - D] : (h0 ? h0[bi * D + d] : 0.0);
        if (db) db[i] = static_cast<float>(g);
        if (da) da[i] = static_cast<float>(g * hp);
        carry = a[i] * g;
      }
      if (dh0) dh0[bi * D + d] = static_cast<float>(carry);
    }
}

void cumprod_scan_f32(const float* a, float* P, const ScanShape& s) {
  const int64_t T = s.T, D = s.D;
  for (int64_t bi = 0; bi < s.B; ++bi)
    for (int64_t d = 0; d < D; ++d) {
      double sum = 0;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t i = (bi * T + t) * D + d;
        sum += clamped_log(a[i]);
        const double p = std::exp(sum);
        P[i] = p < FLT_MIN ? 0.0f : static_cast<float>(p);
      }
    }
}

void cumprod_scan_bwd_f32(const float* a, const float* P, const float* dP, float* da, const ScanShape& s) {
  const int64_t T = s.T, D = s.D;
  for (int64_t bi = 0; bi < s.B; ++bi)
    for (int64_t d = 0; d < D; ++d) {
      double acc = 0;  // dL_t = Σ_{u≥t} dP_u P_u
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t i = (bi * T + t) * D + d;
        acc += static_cast<double>(dP[i]) * P[i];
        da[i] = log_in_range(a[i]) ? static_cast<float>(acc / a[i]) : 0.0f;
      }
    }
}

}  // namespace mmrec::kernels::ref
