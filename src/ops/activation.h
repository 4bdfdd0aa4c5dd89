// Differentiable activations on f32 tensors (Highway kernels, vector exp/tanh).
//   Tensor g = ops::sigmoid_mul(gate_pre, z);   // σ(gate_pre) ⊙ z, one pass
#pragma once
#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

Tensor sigmoid(const Tensor& x);
// 0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))
Tensor gelu(const Tensor& x);
// min(max(x, lo), hi); the gradient passes where lo < x < hi.
Tensor clamp(const Tensor& x, float lo, float hi);
// σ(x) ⊙ y, fused; x and y have the same shape.
Tensor sigmoid_mul(const Tensor& x, const Tensor& y);

}  // namespace mmrec::ops

MMREC_API_END
