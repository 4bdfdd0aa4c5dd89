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
#pragma once
#include <cstdint>

namespace mmrec::kernels {

void fake_quant_f32(const float* x, float* y, int64_t outer, int64_t C, int64_t inner, const float* scale,
                    const int32_t* zero_point, int32_t qmin, int32_t qmax);
void fake_quant_bwd_f32(const float* x, const float* dy, float* dx, int64_t outer, int64_t C, int64_t inner,
                        const float* scale, const int32_t* zero_point, int32_t qmin, int32_t qmax);
// q[i] = min(max(nearbyint(x[i] * (1.0f / scale)) + zero_point, 0), 255)
void quantize_u8(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero_point);

namespace ref {
void fake_quant_f32(const float* x, float* y, int64_t outer, int64_t C, int64_t inner, const float* scale,
                    const int32_t* zero_point, int32_t qmin, int32_t qmax);
void fake_quant_bwd_f32(const float* x, const float* dy, float* dx, int64_t outer, int64_t C, int64_t inner,
                        const float* scale, const int32_t* zero_point, int32_t qmin, int32_t qmax);
void quantize_u8(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero_point);
}  // namespace ref

}  // namespace mmrec::kernels
