// Highway RMSNorm kernels, compiled for every target and picked at run time.
// A row of the model's widths (512-2048 floats) stays in L1 between the
// sum-of-squares pass and the scaling pass, so both read x from cache once
// it is loaded: the forward streams x and y through memory once.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/norm_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <vector>
#include <cmath>

#include "ops/kernels/hwy_rows-inl.h"
#include "ops/kernels/norm.h"
#include "tensor/tensor.h"
#include "tensor/threads.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void RmsnormRows(const float* HWY_RESTRICT x, const float* HWY_RESTRICT w, float eps, float* HWY_RESTRICT y,
                 float* HWY_RESTRICT rstd, size_t r0, size_t r1, size_t n, bool stream) {
  const hn::ScalableTag<float> d;
  for (size_t r = r0; r < r1; ++r) {
    const float* xr = x + r * n;
    const float ss = Reduce1(d, xr, n, 0.0f, [](auto v) { return hn::Mul(v, v); });
    const float rs = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
    if (rstd) rstd[r] = rs;
    const auto vrs = hn::Set(d, rs);
    Map2(d, xr, w, y + r * n, n, 0.0f, 0.0f, stream, [&](auto a, auto b) { return hn::Mul(hn::Mul(a, vrs), b); });
  }
}

// Rows [r0, r1): dx rows (if dx) and part += Σ g x rstd (if part).
void RmsnormBwdRows(const float* HWY_RESTRICT x, const float* HWY_RESTRICT w, const float* HWY_RESTRICT rstd,
                    const float* HWY_RESTRICT g, const float* add, float* dx, float* HWY_RESTRICT part, size_t r0,
                    size_t r1, size_t n) {
  const hn::ScalableTag<float> d;
  using V = hn::Vec<hn::ScalableTag<float>>;
  const size_t N = hn::Lanes(d);
  const size_t nfull = n - n % N, rem = n - nfull;
  for (size_t r = r0; r < r1; ++r) {
    const float* xr = x + r * n;
    const float* gr = g + r * n;
    const float rs = rstd[r];
    const V vrs = hn::Set(d, rs);
    if (dx) {
      // mean(w g x), then dx = rs w g - (rs³ mean) x
      V s0 = hn::Zero(d), s1 = hn::Zero(d);
      size_t i = 0;
      for (; i + 2 * N <= nfull; i += 2 * N) {
        s0 = hn::MulAdd(hn::Mul(hn::LoadU(d, w + i), hn::LoadU(d, gr + i)), hn::LoadU(d, xr + i), s0);
        s1 = hn::MulAdd(hn::Mul(hn::LoadU(d, w + i + N), hn::LoadU(d, gr + i + N)), hn::LoadU(d, xr + i + N), s1);
      }
      for (; i < nfull; i += N)
        s0 = hn::MulAdd(hn::Mul(hn::LoadU(d, w + i), hn::LoadU(d, gr + i)), hn::LoadU(d, xr + i), s0);
      if (rem)
        s1 = hn::MulAdd(hn::Mul(LoadTail(d, w + i, rem, 0.0f), LoadTail(d, gr + i, rem, 0.0f)),
                        LoadTail(d, xr + i, rem, 0.0f), s1);
      const float dot = hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
      const V vc = hn::Set(d, -rs * rs * rs * dot / static_cast<float>(n));
      float* dr = dx + r * n;
      const float* ar = add ? add + r * n : nullptr;  // may be dr itself: read, then written
      for (i = 0; i < nfull; i += N) {
        V v = hn::MulAdd(hn::Mul(hn::LoadU(d, w + i), hn::LoadU(d, gr + i)), vrs, hn::Mul(vc, hn::LoadU(d, xr + i)));
        if (ar) v = hn::Add(hn::LoadU(d, ar + i), v);
        hn::StoreU(v, d, dr + i);
      }
      if (rem) {
        V v = hn::MulAdd(hn::Mul(LoadTail(d, w + i, rem, 0.0f), LoadTail(d, gr + i, rem, 0.0f)), vrs,
                         hn::Mul(vc, LoadTail(d, xr + i, rem, 0.0f)));
        if (ar) v = hn::Add(LoadTail(d, ar + i, rem, 0.0f), v);
        StoreTail(d, v, dr + i, rem);
      }
    }
    if (part) {
      size_t i = 0;
      for (; i < nfull; i += N)
        hn::StoreU(hn::MulAdd(hn::Mul(hn::LoadU(d, gr + i), hn::LoadU(d, xr + i)), vrs, hn::LoadU(d, part + i)), d,
                   part + i);
      if (rem)
        StoreTail(d,
                  hn::MulAdd(hn::Mul(LoadTail(d, gr + i, rem, 0.0f), LoadTail(d, xr + i, rem, 0.0f)), vrs,
                             LoadTail(d, part + i, rem, 0.0f)),
                  part + i, rem);
    }
  }
}

// out[j] = Σ_b part[b * stride + j] for j in [c0, c1), b in block order.
void SumBlocks(const float* HWY_RESTRICT part, size_t nblocks, size_t stride, float* HWY_RESTRICT out, size_t c0,
               size_t c1) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  size_t j = c0;
  for (; j + N <= c1; j += N) {
    auto s = hn::Zero(d);
    for (size_t b = 0; b < nblocks; ++b) s = hn::Add(s, hn::LoadU(d, part + b * stride + j));
    hn::StoreU(s, d, out + j);
  }
  for (; j < c1; ++j) {
    float s = 0.0f;
    for (size_t b = 0; b < nblocks; ++b) s += part[b * stride + j];
    out[j] = s;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(RmsnormRows);
HWY_EXPORT(RmsnormBwdRows);
HWY_EXPORT(SumBlocks);

namespace {
constexpr int64_t kGrain = 1 << 14;  // elements per task
int64_t row_grain(int64_t d) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(d, 1)); }
}  // namespace

void rmsnorm_f32(const float* x, const float* w, float eps, float* y, float* rstd, int64_t rows, int64_t d) {
  if (rows == 0) return;
  if (d == 0) {
    // An empty row: mean(x²) is taken as 0.
    if (rstd)
      for (int64_t r = 0; r < rows; ++r) rstd[r] = 1.0f / std::sqrt(eps);
    return;
  }
  const bool stream = stream_stores(rows * d * static_cast<int64_t>(sizeof(float)));
  parallel_for(rows, row_grain(d), [&](int64_t b, int64_t e) {
    HWY_DYNAMIC_DISPATCH(RmsnormRows)(x, w, eps, y, rstd, static_cast<size_t>(b), static_cast<size_t>(e),
                                      static_cast<size_t>(d), stream);
    if (stream) hwy::FlushStream();
  });
}

namespace {
// Row blocks depend on the shape only (at most 256 of them, at least 16
// rows each), never on the thread count: dw is the same on any machine.
int64_t rows_per_block(int64_t rows) { return std::max<int64_t>(16, (rows + 255) / 256); }
}  // namespace

size_t rmsnorm_bwd_scratch_bytes(int64_t rows, int64_t d, bool dw) {
  if (!dw || rows == 0 || d == 0) return 0;
  const int64_t rb = rows_per_block(rows);
  return static_cast<size_t>((rows + rb - 1) / rb * d) * sizeof(float);
}

void rmsnorm_bwd_f32(const float* x, const float* w, const float* rstd, const float* g, float* dx, float* dw,
                     int64_t rows, int64_t d, void* scratch, const float* add) {
  if (d == 0 || (!dx && !dw)) return;
  if (rows == 0) {
    if (dw) std::fill_n(dw, d, 0.0f);
    return;
  }
  if (!dw) {
    parallel_for(rows, row_grain(d), [&](int64_t b, int64_t e) {
      HWY_DYNAMIC_DISPATCH(RmsnormBwdRows)(x, w, rstd, g, add, dx, nullptr, static_cast<size_t>(b),
                                           static_cast<size_t>(e), static_cast<size_t>(d));
    });
    return;
  }
  const int64_t rb = rows_per_block(rows);
  const int64_t nblocks = (rows + rb - 1) / rb;
  std::vector<float> own;
  if (!scratch) own.resize(rmsnorm_bwd_scratch_bytes(rows, d, true) / sizeof(float));
  float* pp = scratch ? static_cast<float*>(scratch) : own.data();
  std::fill_n(pp, nblocks * d, 0.0f);
  parallel_for(nblocks, std::max<int64_t>(1, row_grain(d) / rb), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * rb, r1 = std::min(rows, r0 + rb);
      HWY_DYNAMIC_DISPATCH(RmsnormBwdRows)(x, w, rstd, g, add, dx, pp + b * d, static_cast<size_t>(r0),
                                           static_cast<size_t>(r1), static_cast<size_t>(d));
    }
  });
  // Columns in chunks of 256; each sums its blocks in block order.
  parallel_for((d + 255) / 256, std::max<int64_t>(1, 4096 / nblocks), [&](int64_t c0, int64_t c1) {
    HWY_DYNAMIC_DISPATCH(SumBlocks)(pp, static_cast<size_t>(nblocks), static_cast<size_t>(d), dw,
                                    static_cast<size_t>(c0 * 256), static_cast<size_t>(std::min(d, c1 * 256)));
  });
}

}  // namespace mmrec::kernels
#endif  // HWY_ONCE
