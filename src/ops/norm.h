// RMSNorm over the last axis: w ⊙ x / sqrt(mean(x²) + eps).
//   Tensor y = ops::rmsnorm(x, norm_weight, 1e-6f);   // x [B, T, D], w [D]
#pragma once
#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

Tensor rmsnorm(const Tensor& x, const Tensor& weight, float eps = 1e-6f);

}  // namespace mmrec::ops

MMREC_API_END
