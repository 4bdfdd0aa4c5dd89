// Memory attention (MODEL.md, "Read") in one pass over the tokens: for batch
// b, token t and head h (d = D / H, kt and v the memory's levels of head
// b·H + h),
//   p[s]            = softmax_s(scale · Σ_j q[b, t, h·d + j] kt[j, s] + mask[s])   s < S
//   out[b, t, h·d + j] = Σ_s p[s] v[s, j]
// with the heads read and written in place in the [B, T, D] rows (no
// permutation copies) and a head's levels in cache for all its tokens
// (Highway over the slots or the head's channels, oneTBB over heads), and
// the double-precision references beside them.
//
//   kernels::MemattnShape s{B, T, D, H, S, T * D, D, T * D, D, kernels::memattn_weight_row(S)};
//   kernels::memattn_f32(q, kt, v, nullptr, 0.125f, out, p, s);
#pragma once
#include <cstddef>
#include <cstdint>

namespace mmrec::kernels {

struct MemattnShape {
  int64_t B = 0, T = 0, D = 0, H = 1, S = 0;
  int64_t q_batch = 0, q_row = 0;  // strides of q (elements): its rows need not be adjacent
  int64_t o_batch = 0, o_row = 0;  // strides of out (forward) or dout (backward): T D and D when contiguous
  int64_t p_row = 0;               // floats in a row of the weights p: memattn_weight_row(S)
};

// The widest vector the kernels use (AVX-512's floats): padded rows hold it.
constexpr int64_t kMemattnLanes = 16;
// A row of the weights p: S rounded up to kMemattnLanes (zeros after S).
int64_t memattn_weight_row(int64_t S);
// Scratch of memattn_f32 (backward: memattn_bwd_f32): every head's levels
// in rows padded to whole vectors; none forward where S and d are multiples
// of kMemattnLanes (the levels are read in place). A null scratch is
// allocated by the call.
size_t memattn_scratch_bytes(const MemattnShape& s, bool backward);

// q: rows of D floats, row (b, t) at q + b q_batch + t q_row; kt [B·H, d, S]
// and v [B·H, S, d] contiguous; mask [S] (added to the scores) or null; out
// rows of D floats, row (b, t) at out + b o_batch + t o_row (e.g. a chunk's
// place in the rows of the whole sequence); p [B·H, T, p_row] (the weights,
// for backward) or null. S = 0 gives zeros.
void memattn_f32(const float* q, const float* kt, const float* v, const float* mask, float scale, float* out,
                 float* p, const MemattnShape& s, void* scratch = nullptr);

// Backward from dout (rows at dout + b o_batch + t o_row) and the forward's p: with
// dp[s] = Σ_j dout[j] v[s, j] and g[s] = p[s] (dp[s] - Σ_s' p[s'] dp[s']),
// dq[b, t, h·d + j] = scale Σ_s g[s] kt[j, s] (dq [B, T, D] contiguous),
// dkt[j, s] = scale Σ_t q[j] g[s], dv[s, j] = Σ_t p[s] dout[j]. Any of dq,
// dkt, dv may be null (not wanted); dkt and dv are overwritten.
void memattn_bwd_f32(const float* q, const float* kt, const float* v, const float* p, const float* dout,
                     float scale, float* dq, float* dkt, float* dv, const MemattnShape& s, void* scratch = nullptr);

namespace ref {
void memattn_f32(const float* q, const float* kt, const float* v, const float* mask, float scale, float* out,
                 float* p, const MemattnShape& s);
void memattn_bwd_f32(const float* q, const float* kt, const float* v, const float* p, const float* dout,
                     float scale, float* dq, float* dkt, float* dv, const MemattnShape& s);
}  // namespace ref

}  // namespace mmrec::kernels
