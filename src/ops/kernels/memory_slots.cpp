#include "ops/kernels/memory_slots.h"

#include <algorithm>
#include <cstring>

namespace mmrec::kernels {
namespace {

// The mean of the chunk's sums as a new slot at the end of the FIFO (the
// oldest dropped when all M are filled); the sums restart from zero.
void append_slot(const SlotMemoryDims& d, float* slots, float* sum, int64_t filled) {
  const float inv = 1.0f / static_cast<float>(d.C);  // as the eager write: (sum) * (1/C)
  const int64_t row = std::min(filled, d.M - 1);
  for (int64_t b = 0; b < d.B; ++b) {
    float* s = slots + b * d.M * d.D;
    if (filled == d.M) std::memmove(s, s + d.D, static_cast<size_t>((d.M - 1) * d.D) * sizeof(float));
    float* dst = s + row * d.D;
    float* acc = sum + b * d.D;
    for (int64_t i = 0; i < d.D; ++i) dst[i] = acc[i] * inv, acc[i] = 0.0f;
  }
}

// The HDS levels of the `filled` oldest-first slots in attention layout,
// columns in the eager order (level 0, then each coarser level's groups
// from the oldest slot); the columns after them are zero and masked.
void refresh_levels(const SlotMemoryDims& d, const float* slots_k, const float* slots_v, float* kt, float* vl,
                    float* mask, int64_t filled) {
  const int64_t dh = d.D / d.H;
  std::fill(kt, kt + d.B * d.D * d.St, 0.0f);
  std::fill(vl, vl + d.B * d.D * d.St, 0.0f);
  int64_t col = 0;
  for (int64_t l = 0, group = 1; l < d.L; ++l, group *= 4) {
    for (int64_t lo = 0; lo < filled; lo += group, ++col) {
      const int64_t hi = std::min(filled, lo + group);
      const float w = 1.0f / static_cast<float>(hi - lo);  // the pooling matrix's entry
      for (int64_t b = 0; b < d.B; ++b)
        for (int64_t h = 0; h < d.H; ++h)
          for (int64_t i = 0; i < dh; ++i) {
            float ak = 0.0f, av = 0.0f;
            for (int64_t s = lo; s < hi; ++s) {
              ak += slots_k[(b * d.M + s) * d.D + h * dh + i] * w;
              av += slots_v[(b * d.M + s) * d.D + h * dh + i] * w;
            }
            kt[((b * d.H + h) * dh + i) * d.St + col] = ak;
            vl[((b * d.H + h) * d.St + col) * dh + i] = av;
          }
    }
  }
  for (int64_t c = 0; c < d.St; ++c) mask[c] = c < col ? 0.0f : -1e30f;
}

}  // namespace

void memory_slots_step(const SlotMemoryDims& d, int64_t T, TokenRows k, TokenRows v, float* slots_k,
                       float* slots_v, float* sum_k, float* sum_v, float* kt, float* vl, float* mask,
                       int64_t* counts) {
  bool changed = T == 0;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t i = 0; i < d.D; ++i) {
        sum_k[b * d.D + i] += k.data[b * k.stride_b + t * k.stride_t + i];
        sum_v[b * d.D + i] += v.data[b * v.stride_b + t * v.stride_t + i];
      }
    if (++counts[0] < d.C) continue;
    counts[0] = 0;
    if (d.M == 0) {
      std::fill(sum_k, sum_k + d.B * d.D, 0.0f);
      std::fill(sum_v, sum_v + d.B * d.D, 0.0f);
      continue;
    }
    append_slot(d, slots_k, sum_k, counts[1]);
    append_slot(d, slots_v, sum_v, counts[1]);
    counts[1] = std::min(counts[1] + 1, d.M);
    changed = true;
  }
  if (changed && d.M > 0) refresh_levels(d, slots_k, slots_v, kt, vl, mask, counts[1]);
}

}  // namespace mmrec::kernels
