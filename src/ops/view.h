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
// x in another dtype (f32 <-> bf16 rounds to nearest even); x itself when it
// already has it. The gradient flows back as f32.
Tensor cast(const Tensor& x, DType dtype);
// For mixed precision: the values of `copy` (e.g. the bf16 copy of an f32
// weight, refreshed after each update; no copy is made here) standing in for
// `master` (f32, same shape), which receives the gradient unchanged.
//   Tensor y = ops::linear(ops::cast(x, DType::bf16), ops::stand_in(w, w16), b);  // dW -> w.grad
Tensor stand_in(const Tensor& master, const Tensor& copy);
// dst = src converted between f32 and bf16 (both contiguous, as many
// elements), no autograd, through the dispatched kernel (a capture records
// it): the refresh of bf16 weight copies.
void convert_into(const Tensor& src, const Tensor& dst);

}  // namespace mmrec::ops

MMREC_API_END
