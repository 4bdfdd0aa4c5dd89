// Differentiable matrix product on oneDNN.
//   Tensor y = ops::matmul(x, w);   // [B, M, K] x [K, N] -> [B, M, N]
#pragma once
#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

// a: [M, K] or [B, M, K]; b: [K, N] or [B, K, N] (a rank-2 b is shared by
// every batch). Transposed views are used in place, without a copy.
Tensor matmul(const Tensor& a, const Tensor& b);

}  // namespace mmrec::ops

MMREC_API_END
