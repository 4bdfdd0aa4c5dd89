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
//
// The observers' ops, so that a captured QAT step replays them as kernels:
//   ops::observe_min_max(x, min_val, max_val, 0.01f);            // moving-average min/max, in place
//   auto [s, z] = ops::quant_params(min_val, max_val, ops::QuantScheme::affine_u8);
//   Tensor xq = ops::fake_quantize_per_tensor_affine(x, s, z, 0, 255);
#pragma once
#include <cstdint>
#include <utility>

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

// The same with scale f32 [1] and zero_point i32 [1] held in tensors (as
// computed by quant_params; their values are checked when not capturing).
Tensor fake_quantize_per_tensor_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                       int32_t quant_min, int32_t quant_max);

// A moving-average min/max observer's update, in place (PyTorch
// MovingAverageMinMaxObserver and ...PerChannelMinMaxObserver): x f32 viewed
// as C rows of numel / C values, C = min_val.numel(); min_val and max_val f32
// [C]. A channel never observed (min +inf, max -inf) takes the batch's min
// and max; afterwards m += averaging_constant * (batch - m). No gradient;
// an empty x changes nothing.
void observe_min_max(const Tensor& x, const Tensor& min_val, const Tensor& max_val, float averaging_constant);

enum class QuantScheme {
  affine_u8,     // per-tensor affine u8 [0, 255] (activations)
  symmetric_s8,  // symmetric s8 [-128, 127], zero point 0 (weight rows)
};
// (scale f32 [C], zero_point i32 [C]) of observed ranges min_val, max_val
// f32 [C], with PyTorch's calculate_qparams (kernels/fake_quant.h).
std::pair<Tensor, Tensor> quant_params(const Tensor& min_val, const Tensor& max_val, QuantScheme scheme);

}  // namespace mmrec::ops

MMREC_API_END
