// Scalar references for the quantization kernels: the formulas of
// fake_quant.h written out in f32, as PyTorch's CPU kernels compute them.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/kernels/fake_quant.h"

namespace mmrec::kernels::ref {
namespace {
// q before clamping, as a float (exact: |q| < 2^24 wherever it matters).
float level(float x, float inv, int32_t zp) { return std::nearbyint(x * inv) + static_cast<float>(zp); }
}  // namespace

void fake_quant_f32(const float* x, float* y, int64_t outer, int64_t C, int64_t inner, const float* scale,
                    const int32_t* zero_point, int32_t qmin, int32_t qmax) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < C; ++c) {
      const float s = scale[c], inv = 1.0f / s, zp = static_cast<float>(zero_point[c]);
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t k = (o * C + c) * inner + i;
        const float q = std::min(std::max(level(x[k], inv, zero_point[c]), static_cast<float>(qmin)),
                                 static_cast<float>(qmax));
        y[k] = (q - zp) * s;
      }
    }
}

void fake_quant_bwd_f32(const float* x, const float* dy, float* dx, int64_t outer, int64_t C, int64_t inner,
                        const float* scale, const int32_t* zero_point, int32_t qmin, int32_t qmax) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < C; ++c) {
      const float inv = 1.0f / scale[c];
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t k = (o * C + c) * inner + i;
        const float q = level(x[k], inv, zero_point[c]);
        dx[k] = q >= static_cast<float>(qmin) && q <= static_cast<float>(qmax) ? dy[k] : 0.0f;
      }
    }
}

void quantize_u8(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero_point) {
  const float inv = 1.0f / scale;
  for (int64_t i = 0; i < n; ++i)
    q[i] = static_cast<uint8_t>(std::min(std::max(level(x[i], inv, zero_point), 0.0f), 255.0f));
}

void min_max_f32(const float* x, int64_t C, int64_t n, float* lo, float* hi) {
  for (int64_t c = 0; c < C; ++c) {
    float a = std::numeric_limits<float>::infinity(), b = -a;
    for (int64_t i = 0; i < n; ++i) a = std::min(a, x[c * n + i]), b = std::max(b, x[c * n + i]);
    lo[c] = a, hi[c] = b;
  }
}

}  // namespace mmrec::kernels::ref
