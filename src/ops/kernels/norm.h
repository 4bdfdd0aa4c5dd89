// RMSNorm kernels over the last axis of contiguous f32 rows [rows, d]
// (Highway with runtime dispatch, parallel over rows with oneTBB) and their
// double-precision scalar references.
//   kernels::rmsnorm_f32(x, w, 1e-6f, y, rstd, rows, d);
#pragma once
#include <cstddef>
#include <cstdint>

namespace mmrec::kernels {

// y[r] = w ⊙ x[r] * rstd[r], rstd[r] = 1 / sqrt(mean(x[r]²) + eps).
// rstd ([rows]) may be null when the backward is not needed.
void rmsnorm_f32(const float* x, const float* w, float eps, float* y, float* rstd, int64_t rows, int64_t d);

// From the forward's x, w, rstd and the output gradient g [rows, d]:
//   dx[r] = rstd (w ⊙ g - x rstd² mean(w ⊙ g ⊙ x))      (skipped when dx is null)
//   dw    = Σ_r g[r] ⊙ x[r] rstd[r]                     (skipped when dw is null)
// dw is summed over fixed blocks of rows whose partial sums are added in
// block order, so it does not depend on the number of threads. The partial
// sums go in `scratch` (rmsnorm_bwd_scratch_bytes; null: the kernel
// allocates them). With `add`, dx[r] = add[r] + the above (add may be dx:
// the compiled graph's norm_accumulate pass, the residual gradient's sum).
void rmsnorm_bwd_f32(const float* x, const float* w, const float* rstd, const float* g, float* dx, float* dw,
                     int64_t rows, int64_t d, void* scratch = nullptr, const float* add = nullptr);
size_t rmsnorm_bwd_scratch_bytes(int64_t rows, int64_t d, bool dw);

namespace ref {
void rmsnorm_f32(const float* x, const float* w, float eps, float* y, float* rstd, int64_t rows, int64_t d);
void rmsnorm_bwd_f32(const float* x, const float* w, const float* rstd, const float* g, float* dx, float* dw,
                     int64_t rows, int64_t d);
}  // namespace ref

}  // namespace mmrec::kernels
