// Reduction kernels on contiguous f32 buffers viewed as [outer, n, inner]
// (Highway with runtime dispatch, double accumulators, parallel over oneTBB)
// and the double-precision reference.
//   kernels::sum_axis_f32(x, 1, rows, d, 1.0f / rows, out);   // column means
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

namespace mmrec::kernels {

// out[o, i] = scale * sum_k x[o, k, i]   (out is [outer, inner])
// The work is split over outer, blocks of inner and (when those are few)
// fixed chunks of n whose partial sums are added in chunk order: the result
// does not depend on the thread count. The partial sums go in `scratch`
// (sum_axis_scratch_bytes; null: the kernel allocates them).
void sum_axis_f32(const float* x, int64_t outer, int64_t n, int64_t inner, float scale, float* out,
                  void* scratch = nullptr);
size_t sum_axis_scratch_bytes(int64_t outer, int64_t n, int64_t inner);
// The same sum, where `make(o, k0, k1, c0, c1)` first writes the block of x it
// is about to add (slab o, rows [k0, k1), columns [c0, c1); a few hundred rows
// at a time) from the task that adds it, so that the block is still in cache:
// a fused kernel producing x and summing it in one pass. Same result, bit for
// bit, as making all of x and then calling sum_axis_f32.
// `row_stride` (0: inner) spaces the outer * n rows of `inner` elements in x:
// x[o, k, i] is x[(o * n + k) * row_stride + i] (a column slice of a wider
// buffer, summed in place; inner > 1). With `group` > 0 the slabs come in
// groups of that many, `group_stride` floats apart: x[o, k, i] is
// x[(o / group) * group_stride + ((o % group) * n + k) * row_stride + i]
// (the slice also skips rows between batches). The same additions in the
// same order whatever the layout.
using SumBlockFn = std::function<void(int64_t o, int64_t k0, int64_t k1, int64_t c0, int64_t c1)>;
void sum_axis_f32(const float* x, int64_t outer, int64_t n, int64_t inner, float scale, float* out, void* scratch,
                  const SumBlockFn& make, int64_t row_stride = 0, int64_t group = 0, int64_t group_stride = 0);
// out[o, k, i] = scale * g[o, i]   (the backward of sum_axis); `row_stride`
// (0: inner) spaces the outer * n rows of out (a column slice of a wider
// buffer: a concatenation written in place).
void expand_axis_f32(const float* g, int64_t outer, int64_t n, int64_t inner, float scale, float* out,
                     int64_t row_stride = 0);

namespace ref {
void sum_axis_f32(const float* x, int64_t outer, int64_t n, int64_t inner, float scale, float* out);
}

}  // namespace mmrec::kernels
