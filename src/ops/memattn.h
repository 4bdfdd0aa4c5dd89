// Memory attention (MODEL.md, "Read"): per head, softmax(q Kᵀ / sqrt(d) + mask) V
// over a memory's levels, in one kernel call that reads q's heads in place
// and writes the [B, T, D] result (kernels/memattn.h).
//   Tensor c = ops::memattn(q, kt, v, heads);      // q [B, T, D] -> [B, T, D]
#pragma once
#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::ops {

// q f32 [B, T, D] (its rows may be a strided view, e.g. a column slice of a
// projection); kt [B·H, d, S] (Kᵀ per head) and v [B·H, S, d] f32, H = heads,
// d = D / H; mask f32 [S] added to the scores (0 or a large negative) or
// undefined. S = 0 gives zeros. Differentiable in q, kt and v.
Tensor memattn(const Tensor& q, const Tensor& kt, const Tensor& v, int64_t heads, const Tensor& mask = Tensor());

}  // namespace mmrec::ops

MMREC_API_END
