// The int8 linear of quantized inference as an op: y = act(x Wᵀ + b) through
// a kernels::Int8Linear (u8 x s8 oneDNN matmul), as two recorded kernel calls
// (quantize x to u8, then the matmul with the scales, bias and activation in
// its epilogue), so that a captured int8 forward replays them.
//   Tensor y = ops::linear_int8(x, layer);   // x f32 [..., In] -> y f32 [..., Out]
#pragma once
#include "ops/kernels/linear_int8.h"
#include "tensor/tensor.h"

namespace mmrec::ops {

// No backward: x must not require grad. The layer must outlive any graph
// that records the call.
Tensor linear_int8(const Tensor& x, const kernels::Int8Linear& layer);

}  // namespace mmrec::ops
