// Differentiable elementwise ops on f32 tensors.
//   y = ops::add(x, bias);   // bias [D] broadcast over x [B, T, D]
// Binary ops broadcast over leading axes: one shape is a suffix of the other
// (or has a single element).
#pragma once
#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

Tensor add(const Tensor& a, const Tensor& b);  // a + b
Tensor sub(const Tensor& a, const Tensor& b);  // a - b
Tensor mul(const Tensor& a, const Tensor& b);  // a * b
Tensor div(const Tensor& a, const Tensor& b);  // a / b
Tensor neg(const Tensor& x);                   // -x
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor scale(const Tensor& x, float s);        // s * x
Tensor add_scalar(const Tensor& x, float s);   // x + s

}  // namespace mmrec::ops

MMREC_API_END
