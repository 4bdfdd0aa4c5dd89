// Softmax over the last axis, with an optional mask.
//   Tensor p = ops::softmax(scores);            // [B*H, T, S]
#pragma once
#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

// mask (optional): u8 or f32, shape a suffix of x's shape (broadcast over
// leading axes); entries equal to 0 are excluded. A row with every entry
// excluded gives zeros (and zero gradient).
Tensor softmax(const Tensor& x, const Tensor& mask = Tensor());

}  // namespace mmrec::ops

MMREC_API_END
