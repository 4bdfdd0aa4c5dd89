// Elementwise kernels on contiguous f32 buffers (Highway, runtime dispatch)
// and their scalar references. Binary kernels broadcast: `b` (or `a`) may be
// shorter than the output and repeats every nb (na) elements.
#pragma once
#include <cstdint>

namespace mmrec::kernels {

enum class BinaryOp { add, sub, mul, div };
enum class UnaryOp { neg, exp, log };

// out[i] = a[i % na] op b[i % nb] for i < n; na and nb divide n.
void binary_f32(BinaryOp op, const float* a, int64_t na, const float* b, int64_t nb, float* out, int64_t n);
void unary_f32(UnaryOp op, const float* x, float* out, int64_t n);
// out[i] = x[i] * s + t
void affine_f32(const float* x, float s, float t, float* out, int64_t n);

namespace ref {
void binary_f32(BinaryOp op, const float* a, int64_t na, const float* b, int64_t nb, float* out, int64_t n);
void unary_f32(UnaryOp op, const float* x, float* out, int64_t n);
}  // namespace ref

}  // namespace mmrec::kernels
