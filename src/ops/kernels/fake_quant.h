// Quantization kernels (Highway, runtime dispatch) and their scalar
// references: fake quantization with PyTorch's semantics, its straight-through
// backward, and real quantization of f32 activations to u8 for the int8 linear.
//
// A tensor is viewed as [outer, C, inner]; channel c has scale[c] and
// zero_point[c] (C = 1: per tensor). With inv = 1.0f / scale (f32) and
// nearbyint rounding half to even:
//   q  = nearbyint(x * inv) + zero_point
//   y  = (min(max(q, qmin), qmax) - zero_point) * scale
//   dx = dy where qmin <= q <= qmax, else 0
//   kernels::fake_quant_f32(x, y, 1, N, K, scale, zp, -128, 127);   // per row of w [N, K]
//
// The observers' kernels: min and max of each row (moving-average min/max
// observers), and the quantization parameters of an observed range
// (PyTorch calculate_qparams, written once here for kernels and host alike).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

namespace mmrec::kernels {

void fake_quant_f32(const float* x, float* y, int64_t outer, int64_t C, int64_t inner, const float* scale,
                    const int32_t* zero_point, int32_t qmin, int32_t qmax);
void fake_quant_bwd_f32(const float* x, const float* dy, float* dx, int64_t outer, int64_t C, int64_t inner,
                        const float* scale, const int32_t* zero_point, int32_t qmin, int32_t qmax);
// q[i] = min(max(nearbyint(x[i] * (1.0f / scale)) + zero_point, 0), 255)
void quantize_u8(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero_point);
// lo[c], hi[c] = min and max of row c of x viewed as [C, n] (NaNs skipped, as
// std::min / std::max with the running value first; +inf / -inf when n = 0).
// One long row is cut in pieces whose partial results go in `scratch`
// (min_max_scratch_bytes; null: the kernel allocates them).
void min_max_f32(const float* x, int64_t C, int64_t n, float* lo, float* hi, void* scratch = nullptr);
size_t min_max_scratch_bytes(int64_t C, int64_t n);

// float32 epsilon: the smallest scale (torch.finfo(torch.float32).eps).
inline constexpr float kQuantEps = std::numeric_limits<float>::epsilon();
// (scale, zero_point) of per-tensor affine u8 [0, 255] for an observed range:
//   lo = min(min, 0), hi = max(max, 0), scale = max((hi - lo) / 255, eps),
//   zero_point = clamp(0 - nearbyint(lo / scale), 0, 255)
inline std::pair<float, int32_t> qparams_affine_u8(float min_val, float max_val) {
  const float lo = std::min(min_val, 0.0f), hi = std::max(max_val, 0.0f);
  const float scale = std::max((hi - lo) / 255.0f, kQuantEps);
  const float zp = 0.0f - std::nearbyint(lo / scale);
  return {scale, static_cast<int32_t>(std::min(std::max(zp, 0.0f), 255.0f))};
}
// The scale of symmetric s8 [-128, 127] (zero point 0): max(max(-min, max) / 127.5, eps).
inline float qparams_symmetric_s8(float min_val, float max_val) {
  const float a = std::max(-std::min(min_val, 0.0f), std::max(max_val, 0.0f));
  return std::max(a / 127.5f, kQuantEps);
}

namespace ref {
void fake_quant_f32(const float* x, float* y, int64_t outer, int64_t C, int64_t inner, const float* scale,
                    const int32_t* zero_point, int32_t qmin, int32_t qmax);
void fake_quant_bwd_f32(const float* x, const float* dy, float* dx, int64_t outer, int64_t C, int64_t inner,
                        const float* scale, const int32_t* zero_point, int32_t qmin, int32_t qmax);
void quantize_u8(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero_point);
void min_max_f32(const float* x, int64_t C, int64_t n, float* lo, float* hi);
}  // namespace ref

}  // namespace mmrec::kernels
