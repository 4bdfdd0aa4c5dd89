// Activation kernels on contiguous f32 buffers of n elements (Highway with
// runtime dispatch, vector exp; parallel over oneTBB) and their
// double-precision scalar references.
//   kernels::activation_f32(kernels::Activation::gelu, x, y, n);
#pragma once
#include <cstdint>

namespace mmrec::kernels {

enum class Activation { sigmoid, gelu };

// y = f(x)
void activation_f32(Activation op, const float* x, float* y, int64_t n);
// dx = g * f'(x). For sigmoid `xy` is the forward OUTPUT (σ' = y (1 - y));
// for gelu it is the input x.
void activation_bwd_f32(Activation op, const float* xy, const float* g, float* dx, int64_t n);
// y = gelu(x) and dx = g * gelu'(x) in one pass (the compiled graph's
// rematerialized activation made with its backward): the same bits as
// activation_f32 and activation_bwd_f32.
void gelu_fwd_bwd_f32(const float* x, const float* g, float* y, float* dx, int64_t n);
// y = min(max(x, lo), hi)
void clamp_f32(const float* x, float lo, float hi, float* y, int64_t n);
// dx = g where lo < x < hi, else 0 (x: clamp's input or its output, the
// same mask; ops::clamp passes the output)
void clamp_bwd_f32(const float* x, float lo, float hi, const float* g, float* dx, int64_t n);
// out = σ(x) * y
void sigmoid_mul_f32(const float* x, const float* y, float* out, int64_t n);
// dx = g * y * σ(x) (1 - σ(x)), dy = g * σ(x), in one pass; dx or dy may be null.
void sigmoid_mul_bwd_f32(const float* x, const float* y, const float* g, float* dx, float* dy, int64_t n);
// The same two over rows x cols, where y's rows are ldy floats apart (a
// column slice of a wider buffer, read in place); x, g, out, dx, dy
// contiguous. Bit for bit the contiguous kernels on a copy of y.
void sigmoid_mul_rows_f32(const float* x, const float* y, int64_t ldy, float* out, int64_t rows, int64_t cols);
void sigmoid_mul_bwd_rows_f32(const float* x, const float* y, int64_t ldy, const float* g, float* dx, float* dy,
                              int64_t rows, int64_t cols);

namespace ref {
void activation_f32(Activation op, const float* x, float* y, int64_t n);
void activation_bwd_f32(Activation op, const float* xy, const float* g, float* dx, int64_t n);
void gelu_fwd_bwd_f32(const float* x, const float* g, float* y, float* dx, int64_t n);
void clamp_f32(const float* x, float lo, float hi, float* y, int64_t n);
void clamp_bwd_f32(const float* x, float lo, float hi, const float* g, float* dx, int64_t n);
void sigmoid_mul_f32(const float* x, const float* y, float* out, int64_t n);
void sigmoid_mul_bwd_f32(const float* x, const float* y, const float* g, float* dx, float* dy, int64_t n);
void sigmoid_mul_rows_f32(const float* x, const float* y, int64_t ldy, float* out, int64_t rows, int64_t cols);
void sigmoid_mul_bwd_rows_f32(const float* x, const float* y, int64_t ldy, const float* g, float* dx, float* dy,
                              int64_t rows, int64_t cols);
}  // namespace ref

}  // namespace mmrec::kernels
