// Differentiable concat and split.
//   Tensor kv = ops::concat({k0, k1, k2}, 1);        // memory levels along the slot axis
//   auto parts = ops::split(x, {D, D, D, D}, -1);
#pragma once
#include <vector>

#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

// Shapes must agree on every axis but `axis`.
Tensor concat(const std::vector<Tensor>& xs, int64_t axis = -1);
// Views of x whose sizes along `axis` are `sizes` (summing to x.size(axis)).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis = -1);

}  // namespace mmrec::ops

MMREC_API_END
