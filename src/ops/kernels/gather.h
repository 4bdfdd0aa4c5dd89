// Row gathers and scatters: the embedding lookup and its deterministic
// scatter-add, and the strided block copies behind concat and split
// (parallel over oneTBB; row sums with Highway). Scalar references beside.
//   kernels::embedding_f32(weight, d, ids, n, out);
#pragma once
#include <cstddef>
#include <cstdint>

namespace mmrec::kernels {

// out[i] = weight[ids[i]] for i < n (rows of d floats; ids already checked).
void embedding_f32(const float* weight, int64_t d, const int64_t* ids, int64_t n, float* out);
// dw [v, d] = Σ_{i: ids[i] = k} g[i] for every row k (zeros where no id). Each
// row of dw adds its gradients in increasing i, whatever the thread count.
// The positions sorted by id go in `scratch` (embedding_bwd_scratch_bytes;
// null: the kernel allocates them).
void embedding_bwd_f32(const float* g, const int64_t* ids, int64_t n, int64_t d, int64_t v, float* dw,
                       void* scratch = nullptr);
size_t embedding_bwd_scratch_bytes(int64_t n, int64_t v);

// Copies `rows` rows of row_bytes bytes: row r from src + r * src_stride to
// dst + r * dst_stride (strides in bytes).
void copy_rows(void* dst, int64_t dst_stride, const void* src, int64_t src_stride, int64_t rows, int64_t row_bytes);

namespace ref {
void embedding_f32(const float* weight, int64_t d, const int64_t* ids, int64_t n, float* out);
void embedding_bwd_f32(const float* g, const int64_t* ids, int64_t n, int64_t d, int64_t v, float* dw);
}  // namespace ref

}  // namespace mmrec::kernels
