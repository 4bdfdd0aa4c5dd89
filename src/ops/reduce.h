// Differentiable reductions on f32 tensors.
//   Tensor s = ops::sum(x);             // shape []
//   Tensor m = ops::mean(x, -1, true);  // [B, T, 1]
#pragma once
#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

Tensor sum(const Tensor& x);                                     // all elements -> []
Tensor sum(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor mean(const Tensor& x);                                    // all elements -> []
Tensor mean(const Tensor& x, int64_t axis, bool keepdim = false);

}  // namespace mmrec::ops

MMREC_API_END
