// Differentiable views and copies. Views share storage with their input;
// their backward maps the gradient back onto the input's shape.
//   Tensor h = ops::reshape(x, {B, T, H, d});
//   Tensor k = ops::transpose(h, 1, 2);      // [B, H, T, d] view
#pragma once
#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

Tensor reshape(const Tensor& x, const Shape& shape);  // one -1 allowed; copies if x is not contiguous
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end);  // [start, end) on axis
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor permute(const Tensor& x, const Shape& order);
Tensor squeeze(const Tensor& x, int64_t axis);
Tensor unsqueeze(const Tensor& x, int64_t axis);
Tensor contiguous(const Tensor& x);
Tensor cast(const Tensor& x, DType dtype);  // gradient flows back as f32

}  // namespace mmrec::ops

MMREC_API_END
