// Optimizer kernels on contiguous f32 buffers: the fused AdamW update and the
// sum of squares behind the global gradient norm (Highway, runtime dispatch,
// split over oneTBB), with scalar double-precision references for tests.
//
//   AdamWScalars s = adamw_scalars(lr, 0.9, 0.95, 1e-8, 0.1, step);
//   kernels::adamw_f32(p, g, m, v, n, s);
#pragma once
#include <cstdint>

namespace mmrec::kernels {

// Per-step constants of one AdamW update (PyTorch's torch.optim.AdamW).
struct AdamWScalars {
  float decay;        // 1 - lr * weight_decay (1 when the tensor is not decayed)
  float beta1, beta2;
  float one_minus_beta1, one_minus_beta2;
  float step_size;    // lr / (1 - beta1^t)
  float inv_bc2_sqrt; // 1 / sqrt(1 - beta2^t)
  float eps;
};

AdamWScalars adamw_scalars(double lr, double beta1, double beta2, double eps, double weight_decay, int64_t t);

// One fused pass: p *= decay; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²;
// p -= step_size * m / (sqrt(v) * inv_bc2_sqrt + eps). Deterministic for
// any number of threads.
void adamw_f32(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s);

// Σ x² over fixed blocks summed in a fixed order (same result for any
// number of threads).
double sum_squares_f32(const float* x, int64_t n);

// x *= s
void scale_inplace_f32(float* x, int64_t n, float s);

namespace ref {
// Double-precision reference of the same update (the result is stored in f32).
void adamw_f32(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1, double beta2,
               double eps, double weight_decay, int64_t t);
double sum_squares_f32(const float* x, int64_t n);
}  // namespace ref

}  // namespace mmrec::kernels
