// Reduction kernels on contiguous f32 buffers viewed as [outer, n, inner]
// (Highway with runtime dispatch, double accumulators, parallel over oneTBB)
// and the double-precision reference.
//   kernels::sum_axis_f32(x, 1, rows, d, 1.0f / rows, out);   // column means
#pragma once
#include <cstddef>
#include <cstdint>

namespace mmrec::kernels {

// out[o, i] = scale * sum_k x[o, k, i]   (out is [outer, inner])
// The work is split over outer, blocks of inner and (when those are few)
// fixed chunks of n whose partial sums are added in chunk order: the result
// does not depend on the thread count. The partial sums go in `scratch`
// (sum_axis_scratch_bytes; null: the kernel allocates them).
void sum_axis_f32(const float* x, int64_t outer, int64_t n, int64_t inner, float scale, float* out,
                  void* scratch = nullptr);
size_t sum_axis_scratch_bytes(int64_t outer, int64_t n, int64_t inner);
// out[o, k, i] = scale * g[o, i]   (the backward of sum_axis)
void expand_axis_f32(const float* g, int64_t outer, int64_t n, int64_t inner, float scale, float* out);

namespace ref {
void sum_axis_f32(const float* x, int64_t outer, int64_t n, int64_t inner, float scale, float* out);
}

}  // namespace mmrec::kernels
