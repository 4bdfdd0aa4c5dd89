// Gather/scatter kernels. Lookups and block copies are memcpy per row (the
// library's memcpy is already the fastest copy); the embedding gradient sorts
// the positions by id (a stable counting sort) so that each row of dw is
// summed by one task in position order: deterministic and parallel over the
// vocabulary without atomics.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/gather.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/kernels/gather.h"
#include "tensor/threads.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// dw[k] = Σ_j g[pos[j]] for the positions pos[begin[k] .. begin[k + 1]) of
// every row k in [k0, k1).
void ScatterRows(const float* HWY_RESTRICT g, const int64_t* HWY_RESTRICT pos, const int64_t* HWY_RESTRICT begin,
                 float* HWY_RESTRICT dw, size_t k0, size_t k1, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  for (size_t k = k0; k < k1; ++k) {
    float* out = dw + k * n;
    const int64_t b = begin[k], e = begin[k + 1];
    if (b == e) {
      std::fill_n(out, n, 0.0f);
      continue;
    }
    std::memcpy(out, g + pos[b] * static_cast<int64_t>(n), n * sizeof(float));
    for (int64_t j = b + 1; j < e; ++j) {
      const float* src = g + pos[j] * static_cast<int64_t>(n);
      size_t i = 0;
      for (; i + N <= n; i += N) hn::StoreU(hn::Add(hn::LoadU(d, out + i), hn::LoadU(d, src + i)), d, out + i);
      for (; i < n; ++i) out[i] += src[i];
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(ScatterRows);

namespace {
constexpr int64_t kGrainBytes = 1 << 16;  // bytes per task
}

void embedding_f32(const float* weight, int64_t d, const int64_t* ids, int64_t n, float* out) {
  if (d == 0) return;
  const int64_t row = d * static_cast<int64_t>(sizeof(float));
  parallel_for(n, std::max<int64_t>(1, kGrainBytes / row), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(out + i * d, weight + ids[i] * d, static_cast<size_t>(row));
  });
}

size_t embedding_bwd_scratch_bytes(int64_t n, int64_t v) {
  return static_cast<size_t>(2 * v + 1 + n) * sizeof(int64_t);
}

void embedding_bwd_f32(const float* g, const int64_t* ids, int64_t n, int64_t d, int64_t v, float* dw,
                       void* scratch) {
  if (d == 0 || v == 0) return;
  std::vector<int64_t> own;
  if (!scratch) own.resize(embedding_bwd_scratch_bytes(n, v) / sizeof(int64_t));
  // begin[k] .. begin[k+1]: the positions holding id k, in increasing order.
  int64_t* begin = scratch ? static_cast<int64_t*>(scratch) : own.data();
  int64_t* pos = begin + v + 1;
  int64_t* next = pos + n;
  std::fill_n(begin, v + 1, int64_t{0});
  for (int64_t i = 0; i < n; ++i) ++begin[ids[i] + 1];
  for (int64_t k = 0; k < v; ++k) begin[k + 1] += begin[k];
  std::copy(begin, begin + v, next);
  for (int64_t i = 0; i < n; ++i) pos[next[ids[i]]++] = i;
  const int64_t row = d * static_cast<int64_t>(sizeof(float));
  // Work per vocabulary row is ~ (1 + occurrences) rows of d.
  const int64_t avg = 1 + n / v;
  parallel_for(v, std::max<int64_t>(1, kGrainBytes / (row * avg)), [&](int64_t b, int64_t e) {
    HWY_DYNAMIC_DISPATCH(ScatterRows)(g, pos, begin, dw, static_cast<size_t>(b),
                                      static_cast<size_t>(e), static_cast<size_t>(d));
  });
}

void copy_rows(void* dst, int64_t dst_stride, const void* src, int64_t src_stride, int64_t rows, int64_t row_bytes) {
  if (rows == 0 || row_bytes == 0) return;
  // Long rows are cut in pieces so that a copy of one big block uses every core.
  const int64_t piece = std::min<int64_t>(row_bytes, 1 << 20);
  const int64_t pieces = (row_bytes + piece - 1) / piece;
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  parallel_for(rows * pieces, std::max<int64_t>(1, kGrainBytes * 4 / piece), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t r = t / pieces, off = (t % pieces) * piece;
      std::memcpy(d + r * dst_stride + off, s + r * src_stride + off,
                  static_cast<size_t>(std::min(piece, row_bytes - off)));
    }
  });
}

namespace ref {
void embedding_f32(const float* weight, int64_t d, const int64_t* ids, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) out[i * d + j] = weight[ids[i] * d + j];
}

void embedding_bwd_f32(const float* g, const int64_t* ids, int64_t n, int64_t d, int64_t v, float* dw) {
  std::vector<double> acc(static_cast<size_t>(v * d), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) acc[static_cast<size_t>(ids[i] * d + j)] += g[i * d + j];
  for (int64_t k = 0; k < v * d; ++k) dw[k] = static_cast<float>(acc[static_cast<size_t>(k)]);
}
}  // namespace ref

}  // namespace mmrec::kernels
#endif  // HWY_ONCE
