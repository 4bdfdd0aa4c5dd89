// Reductions over the middle axis of [outer, n, inner] with Highway, parallel
// over oneTBB. Row sums accumulate in double (float loads promoted); column
// sums add at most 64 rows in float registers before each double update.
// Small `outer` (e.g. a mean over the rows of [8192, 512], outer = 1) is split
// over blocks of inner and fixed chunks of n so that both cores work.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/reduce.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <vector>

#include "ops/kernels/reduce.h"
#include "tensor/error.h"
#include "tensor/threads.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Σ p[0..len) in double.
double SumRange(const float* HWY_RESTRICT p, size_t len) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  const size_t N = hn::Lanes(dd);
  auto a0 = hn::Zero(dd), a1 = hn::Zero(dd), a2 = hn::Zero(dd), a3 = hn::Zero(dd);
  size_t i = 0;
  for (; i + 4 * N <= len; i += 4 * N) {
    a0 = hn::Add(a0, hn::PromoteTo(dd, hn::LoadU(df, p + i)));
    a1 = hn::Add(a1, hn::PromoteTo(dd, hn::LoadU(df, p + i + N)));
    a2 = hn::Add(a2, hn::PromoteTo(dd, hn::LoadU(df, p + i + 2 * N)));
    a3 = hn::Add(a3, hn::PromoteTo(dd, hn::LoadU(df, p + i + 3 * N)));
  }
  for (; i + N <= len; i += N) a0 = hn::Add(a0, hn::PromoteTo(dd, hn::LoadU(df, p + i)));
  double tail = 0;
  for (; i < len; ++i) tail += p[i];
  return hn::GetLane(hn::SumOfLanes(dd, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3)))) + tail;
}

// acc[c0 + j] += Σ_{k < rows} x[k * stride + j] for j < V * Lanes: V vectors
// of columns summed in float registers over at most 64 rows, then added to
// the double accumulators. No store in the row loop: a store per row into
// acc made the loads stall on 4K-aliasing (2-3x slower).
template <size_t V>
HWY_INLINE void SumColumnBlock(const float* HWY_RESTRICT x, size_t rows, size_t stride, double* HWY_RESTRICT acc) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  HWY_ALIGN float buf[V * hn::MaxLanes(d)];
  for (size_t k0 = 0; k0 < rows; k0 += 64) {
    const size_t k1 = std::min(rows, k0 + 64);
    hn::Vec<hn::ScalableTag<float>> a[V];
    for (size_t v = 0; v < V; ++v) a[v] = hn::Zero(d);
    for (size_t k = k0; k < k1; ++k) {
      const float* p = x + k * stride;
      for (size_t v = 0; v < V; ++v) a[v] = hn::Add(a[v], hn::LoadU(d, p + v * N));
    }
    for (size_t v = 0; v < V; ++v) hn::Store(a[v], d, buf + v * N);
    for (size_t j = 0; j < V * N; ++j) acc[j] += buf[j];
  }
}

// acc[j] += Σ_{k < rows} x[k * stride + j] for j < len, in groups of 64 rows.
void SumColumns(const float* HWY_RESTRICT x, size_t rows, size_t stride, size_t len, double* HWY_RESTRICT acc) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  size_t j = 0;
  for (; j + 8 * N <= len; j += 8 * N) SumColumnBlock<8>(x + j, rows, stride, acc + j);
  for (; j + N <= len; j += N) SumColumnBlock<1>(x + j, rows, stride, acc + j);
  // Fewer than N columns left: row by row, in the blocks' groups of 64 rows
  // (so that any split of the rows at multiples of 64 adds in this order).
  for (size_t k0 = 0; j < len && k0 < rows; k0 += 64) {
    double t[hn::MaxLanes(d)] = {};
    for (size_t k = k0; k < std::min(rows, k0 + 64); ++k)
      for (size_t i = j; i < len; ++i) t[i - j] += x[k * stride + i];
    for (size_t i = j; i < len; ++i) acc[i] += t[i - j];
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(SumRange);
HWY_EXPORT(SumColumns);

namespace {
constexpr int64_t kGrain = 1 << 15;       // elements per task
constexpr int64_t kChunk = 1 << 16;       // elements per chunk of n when outer is small
constexpr int64_t kBlock = 512;           // columns of inner per task (4 KiB of double accumulators)
constexpr int64_t kPiece = 256;           // rows of a block summed (and made, when fused) at a time
constexpr int64_t kFewTasks = 8;          // below this many (outer, block) tasks, n is chunked too

// Fixed chunks of n (from the shape only): 1 when there are tasks enough.
int64_t chunks_of(int64_t tasks, int64_t n, int64_t width) {
  if (tasks >= kFewTasks) return 1;
  return std::clamp<int64_t>(n * width / kChunk, 1, 64);
}
}  // namespace

size_t sum_axis_scratch_bytes(int64_t outer, int64_t n, int64_t inner) {
  if (outer * inner == 0 || n == 0) return 0;
  if (inner == 1) return static_cast<size_t>(outer * chunks_of(outer, n, 1)) * sizeof(double);
  const int64_t width = std::min(inner, kBlock), tasks = outer * ((inner + width - 1) / width);
  const int64_t nch = chunks_of(tasks, n, width);
  return nch == 1 ? 0 : static_cast<size_t>(tasks * nch * width) * sizeof(double);
}

void sum_axis_f32(const float* x, int64_t outer, int64_t n, int64_t inner, float scale, float* out, void* scratch) {
  sum_axis_f32(x, outer, n, inner, scale, out, scratch, SumBlockFn());
}

void sum_axis_f32(const float* x, int64_t outer, int64_t n, int64_t inner, float scale, float* out, void* scratch,
                  const SumBlockFn& make, int64_t row_stride, int64_t group, int64_t group_stride) {
  const int64_t ld = row_stride == 0 ? inner : row_stride;
  check(ld == inner || (inner > 1 && ld > inner), "sum_axis_f32: row stride ", row_stride, " for rows of ", inner,
        " elements (a stride needs rows of two or more, no wider than it)");
  check(group == 0 || (inner > 1 && group > 0 && outer % group == 0 && group_stride >= group * n * ld),
        "sum_axis_f32: groups of ", group, " slabs ", group_stride, " apart do not fit ", outer, " slabs of ", n,
        " rows ", ld, " apart");
  // Row k of slab o.
  const auto row = [&](int64_t o, int64_t k) {
    return group == 0 ? x + (o * n + k) * ld : x + (o / group) * group_stride + ((o % group) * n + k) * ld;
  };
  if (outer * inner == 0) return;
  if (n == 0) {
    std::fill_n(out, outer * inner, 0.0f);
    return;
  }
  std::vector<double> own;
  if (!scratch) own.resize(sum_axis_scratch_bytes(outer, n, inner) / sizeof(double));
  double* const part = scratch ? static_cast<double*>(scratch) : own.data();
  if (inner == 1) {
    const int64_t nch = chunks_of(outer, n, 1), len = (n + nch - 1) / nch;
    parallel_for(outer * nch, std::max<int64_t>(1, kGrain / std::min(n, len)), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / nch, k0 = (t % nch) * len, k1 = std::min(n, k0 + len);
        if (make && k0 < k1) make(o, k0, k1, 0, 1);
        part[t] = k0 < k1 ? HWY_DYNAMIC_DISPATCH(SumRange)(x + o * n + k0, static_cast<size_t>(k1 - k0)) : 0.0;
      }
    });
    for (int64_t o = 0; o < outer; ++o) {
      double s = 0;
      for (int64_t c = 0; c < nch; ++c) s += part[o * nch + c];
      out[o] = static_cast<float>(s * scale);
    }
    return;
  }
  const int64_t width = std::min(inner, kBlock), nb = (inner + width - 1) / width, tasks = outer * nb;
  const int64_t nch = chunks_of(tasks, n, width), len = (n + nch - 1) / nch;
  // Columns [c0, c1) of rows [k0, k1) of slab o, summed into acc.
  auto sum_block = [&](int64_t o, int64_t blk, int64_t k0, int64_t k1, double* acc) {
    const int64_t c0 = blk * width, c1 = std::min(inner, c0 + width);
    std::fill_n(acc, c1 - c0, 0.0);
    // In pieces of kPiece rows (a multiple of SumColumns' 64-row groups, so
    // the order of the additions is that of one call over [k0, k1)).
    for (int64_t k = k0; k < k1; k += kPiece) {
      const int64_t ke = std::min(k1, k + kPiece);
      if (make) make(o, k, ke, c0, c1);
      HWY_DYNAMIC_DISPATCH(SumColumns)(row(o, k) + c0, static_cast<size_t>(ke - k),
                                       static_cast<size_t>(ld), static_cast<size_t>(c1 - c0), acc);
    }
    return c1 - c0;
  };
  if (nch == 1) {
    parallel_for(tasks, std::max<int64_t>(1, kGrain / (n * width)), [&](int64_t b, int64_t e) {
      double acc[kBlock];  // width <= kBlock
      for (int64_t t = b; t < e; ++t) {
        const int64_t o = t / nb, blk = t % nb;
        const int64_t w = sum_block(o, blk, 0, n, acc);
        float* dst = out + o * inner + blk * width;
        for (int64_t j = 0; j < w; ++j) dst[j] = static_cast<float>(acc[j] * scale);
      }
    });
    return;
  }
  // Few tasks: chunks of n in parallel, then their partials in chunk order.
  if (make) {
    // Made whole rows at a time (64: one group of SumColumns, so the same
    // additions in the same order), each row block then summed by column
    // block while in cache: a chunk of n is the task.
    parallel_for(outer * nch, 1, [&](int64_t b, int64_t e) {
      for (int64_t u = b; u < e; ++u) {
        const int64_t o = u / nch, c = u % nch, k1 = std::min(n, (c + 1) * len);
        for (int64_t blk = 0; blk < nb; ++blk) std::fill_n(part + ((o * nb + blk) * nch + c) * width, width, 0.0);
        for (int64_t k = c * len; k < k1; k += 64) {
          const int64_t ke = std::min(k1, k + 64);
          make(o, k, ke, 0, inner);
          for (int64_t blk = 0; blk < nb; ++blk) {
            const int64_t c0 = blk * width, w = std::min(inner, c0 + width) - c0;
            HWY_DYNAMIC_DISPATCH(SumColumns)(row(o, k) + c0, static_cast<size_t>(ke - k),
                                             static_cast<size_t>(ld), static_cast<size_t>(w),
                                             part + ((o * nb + blk) * nch + c) * width);
          }
        }
      }
    });
  } else {
    parallel_for(tasks * nch, std::max<int64_t>(1, kGrain / (len * width)), [&](int64_t b, int64_t e) {
      for (int64_t u = b; u < e; ++u) {
        const int64_t t = u / nch, c = u % nch;
        sum_block(t / nb, t % nb, c * len, std::min(n, (c + 1) * len), part + u * width);
      }
    });
  }
  parallel_for(tasks, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / nb, blk = t % nb, c0 = blk * width, w = std::min(inner, c0 + width) - c0;
      float* dst = out + o * inner + c0;
      for (int64_t j = 0; j < w; ++j) {
        double s = 0;
        for (int64_t c = 0; c < nch; ++c) s += part[(t * nch + c) * width + j];
        dst[j] = static_cast<float>(s * scale);
      }
    }
  });
}

void expand_axis_f32(const float* g, int64_t outer, int64_t n, int64_t inner, float scale, float* out,
                     int64_t row_stride) {
  const int64_t ld = row_stride == 0 ? inner : row_stride;
  check(ld >= inner, "expand_axis_f32: row stride ", row_stride, " for rows of ", inner, " elements");
  parallel_for(outer * n, std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* src = g + (r / n) * inner;
      float* dst = out + r * ld;
      for (int64_t i = 0; i < inner; ++i) dst[i] = src[i] * scale;
    }
  });
}

namespace ref {
void sum_axis_f32(const float* x, int64_t outer, int64_t n, int64_t inner, float scale, float* out) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) s += x[(o * n + k) * inner + i];
      out[o * inner + i] = static_cast<float>(s * scale);
    }
}
}  // namespace ref

}  // namespace mmrec::kernels
#endif  // HWY_ONCE
