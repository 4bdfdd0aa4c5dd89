// Softmax and fused cross-entropy kernels over the last axis of contiguous
// f32 rows (Highway with runtime dispatch and vector exp, parallel over rows
// with oneTBB) and their double-precision scalar references.
//   kernels::softmax_f32(x, nullptr, 0, y, rows, n);
#pragma once
#include <cstdint>

namespace mmrec::kernels {

// y[r] = softmax(x[r]) over the entries whose mask is non-zero (the others
// give 0; a row with none gives zeros). mask (may be null) is [mask_rows, n]
// u8 and row r uses mask row r % mask_rows.
void softmax_f32(const float* x, const uint8_t* mask, int64_t mask_rows, float* y, int64_t rows, int64_t n);
// dx[r] = y[r] ⊙ (g[r] - <g[r], y[r]>)
void softmax_bwd_f32(const float* y, const float* g, float* dx, int64_t rows, int64_t n);

// Per row r of logits [rows, v] with target t = targets[r]: when t is
// ignore_index, loss[r] = 0 (lse[r] unused); else lse[r] = log Σ exp(x[r]) and
// loss[r] = lse[r] - x[r, t]. Targets are checked by the caller (0 <= t < v).
void cross_entropy_f32(const float* logits, const int64_t* targets, int64_t ignore_index, float* loss, float* lse,
                       int64_t rows, int64_t v);
// dlogits[r] = scale (softmax(x[r]) - onehot(t)), zeros for ignored rows.
void cross_entropy_bwd_f32(const float* logits, const int64_t* targets, int64_t ignore_index, const float* lse,
                           float scale, float* dlogits, int64_t rows, int64_t v);

namespace ref {
void softmax_f32(const float* x, const uint8_t* mask, int64_t mask_rows, float* y, int64_t rows, int64_t n);
void softmax_bwd_f32(const float* y, const float* g, float* dx, int64_t rows, int64_t n);
void cross_entropy_f32(const float* logits, const int64_t* targets, int64_t ignore_index, float* loss, float* lse,
                       int64_t rows, int64_t v);
void cross_entropy_bwd_f32(const float* logits, const int64_t* targets, int64_t ignore_index, const float* lse,
                           float scale, float* dlogits, int64_t rows, int64_t v);
}  // namespace ref

}  // namespace mmrec::kernels
