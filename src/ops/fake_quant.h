// Fake quantization (quantize then dequantize, in f32) with PyTorch's exact
// semantics, for quantization-aware training; the gradient is the
// straight-through estimator (passes where the value was inside the range).
//   Tensor xq = ops::fake_quantize_per_tensor_affine(x, 0.05f, 128, 0, 255);        // u8 activations
//   Tensor wq = ops::fake_quantize_per_channel_affine(w, scales, zps, 0, -128, 127); // s8 weight rows
// With inv = 1.0f / scale and nearbyint rounding half to even:
//   q = nearbyint(x * inv) + zero_point
//   y = (clamp(q, quant_min, quant_max) - zero_point) * scale
//   dL/dx = dL/dy if quant_min <= q <= quant_max, else 0
// scale and zero_point take no gradient (they come from observers).
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec::ops {

// x f32 (any shape); scale > 0 and finite; quant_min <= zero_point <= quant_max.
Tensor fake_quantize_per_tensor_affine(const Tensor& x, float scale, int32_t zero_point, int32_t quant_min,
                                       int32_t quant_max);

// x f32; scale f32 [C] and zero_point i32 [C] with C = x.size(axis); channel
// c of axis `axis` uses scale[c], zero_point[c].
Tensor fake_quantize_per_channel_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                        int64_t axis, int32_t quant_min, int32_t quant_max);

}  // namespace mmrec::ops

MMREC_API_END
