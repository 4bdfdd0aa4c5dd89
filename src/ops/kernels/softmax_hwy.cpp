// Highway softmax and cross-entropy kernels, compiled for every target and
// picked at run time. Rows are processed whole: max, exp-sum, scale; a row of
// the usual widths stays in L1 between the passes, so each tensor crosses
// memory once, and unmasked rows overlap one row's passes with the next's.
// Large outputs are written non-temporally from per-task scratch rows (the
// exps would otherwise pull every output line into cache).
// Every exp here has an argument <= 0, so ExpUpTo88 serves (exp_hwy-inl.h).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/softmax_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/aligned_allocator.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/kernels/exp_hwy-inl.h"
#include "ops/kernels/hwy_rows-inl.h"
#include "ops/kernels/softmax.h"
#include "tensor/threads.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// One softmax row; `e` is scratch for the exps when `stream` (else y is).
void SoftmaxRow(const float* HWY_RESTRICT x, const uint8_t* HWY_RESTRICT m8, float* HWY_RESTRICT y,
                float* HWY_RESTRICT e, size_t n, bool stream) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<uint8_t, decltype(d)> du8;
  const hn::Rebind<int32_t, decltype(d)> di;
  using V = hn::Vec<hn::ScalableTag<float>>;
  const size_t N = hn::Lanes(d);
  const size_t nfull = n - n % N, rem = n - nfull;
  const float ninf = -std::numeric_limits<float>::infinity();
  const V vninf = hn::Set(d, ninf);
  auto mask_at = [&](size_t i, size_t len) {
    const auto b = len == N ? hn::LoadU(du8, m8 + i) : LoadTail(du8, m8 + i, len, uint8_t{0});
    return hn::RebindMask(d, hn::Ne(hn::PromoteTo(di, b), hn::Zero(di)));
  };
  float mx;
  if (m8) {
    V m0 = vninf;
    size_t i = 0;
    for (; i < nfull; i += N) m0 = hn::Max(m0, hn::IfThenElse(mask_at(i, N), hn::LoadU(d, x + i), vninf));
    if (rem) m0 = hn::Max(m0, hn::IfThenElse(mask_at(i, rem), LoadTail(d, x + i, rem, ninf), vninf));
    mx = hn::GetLane(hn::MaxOfLanes(d, m0));
  } else {
    mx = MaxRow(d, x, n);
  }
  if (mx == ninf) {  // nothing included (or every included entry is -inf)
    std::fill_n(y, n, 0.0f);
    return;
  }
  float* out = stream ? e : y;
  const V vm = hn::Set(d, mx);
  V s0 = hn::Zero(d), s1 = hn::Zero(d);
  size_t i = 0;
  for (; i < nfull; i += N) {
    // x - max <= 0, or -inf: ExpUpTo88 gives 0 below ln(FLT_MIN).
    V v = ExpUpTo88(d, hn::Sub(hn::LoadU(d, x + i), vm));
    if (m8) v = hn::IfThenElseZero(mask_at(i, N), v);
    hn::StoreU(v, d, out + i);
    s0 = hn::Add(s0, v);
  }
  if (rem) {
    V v = hn::IfThenElseZero(hn::FirstN(d, rem), ExpUpTo88(d, hn::Sub(LoadTail(d, x + i, rem, mx), vm)));
    if (m8) v = hn::IfThenElseZero(mask_at(i, rem), v);
    StoreTail(d, v, out + i, rem);
    s1 = hn::Add(s1, v);
  }
  const V inv = hn::Set(d, 1.0f / hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1))));
  Map1(d, out, y, n, 0.0f, stream, [&](V v) { return hn::Mul(v, inv); });
}

// Unmasked rows [r0, r1), pipelined by one row so that no pass waits on a
// reduction: the exp pass of row r also takes row r+1's max, and row r-1 is
// scaled by its 1/sum after it (per-row passes leave the core idle while a
// max or a sum is reduced: n = 512, 1 thread, in cache, 3.17 -> 3.97 Gelem/s).
// `e` holds two rows of exps when streaming (else the exps go to y).
void SoftmaxRowsUnmasked(const float* HWY_RESTRICT x, float* HWY_RESTRICT y, float* HWY_RESTRICT e, size_t r0,
                         size_t r1, size_t n, bool stream) {
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const size_t N = hn::Lanes(d), nfull = n - n % N, rem = n - nfull;
  const float ninf = -std::numeric_limits<float>::infinity();
  float mx_next = MaxRow(d, x + r0 * n, n), inv_prev = 0.0f;
  float* out_prev = nullptr;
  for (size_t r = r0; r < r1; ++r) {
    const float* xr = x + r * n;
    const float* xn = r + 1 < r1 ? xr + n : nullptr;
    float* out = stream ? e + (r % 2) * n : y + r * n;
    const float mx = mx_next;
    // Every entry -inf: the row is 0 (its exps are 0 with a zero shift, and 1/sum is taken as 0).
    const V vm = hn::Set(d, mx == ninf ? 0.0f : mx);
    V s0 = hn::Zero(d), m0 = hn::Set(d, ninf);
    size_t i = 0;
    for (; i < nfull; i += N) {
      if (xn) m0 = hn::Max(m0, hn::LoadU(d, xn + i));
      const V v = ExpUpTo88(d, hn::Sub(hn::LoadU(d, xr + i), vm));  // x - max <= 0, or -inf
      hn::StoreU(v, d, out + i);
      s0 = hn::Add(s0, v);
    }
    if (rem) {
      if (xn) m0 = hn::Max(m0, LoadTail(d, xn + i, rem, ninf));
      const V v = hn::IfThenElseZero(hn::FirstN(d, rem), ExpUpTo88(d, hn::Sub(LoadTail(d, xr + i, rem, 0.0f), vm)));
      StoreTail(d, v, out + i, rem);
      s0 = hn::Add(s0, v);
    }
    if (xn) mx_next = hn::GetLane(hn::MaxOfLanes(d, m0));
    if (out_prev) {
      const V inv = hn::Set(d, inv_prev);
      Map1(d, out_prev, y + (r - 1) * n, n, 0.0f, stream, [&](V v) { return hn::Mul(v, inv); });
    }
    const float sum = hn::GetLane(hn::SumOfLanes(d, s0));
    inv_prev = sum == 0.0f ? 0.0f : 1.0f / sum;  // a NaN sum spreads over the row
    out_prev = out;
  }
  const V inv = hn::Set(d, inv_prev);
  Map1(d, out_prev, y + (r1 - 1) * n, n, 0.0f, stream, [&](V v) { return hn::Mul(v, inv); });
}

void SoftmaxRows(const float* HWY_RESTRICT x, const uint8_t* HWY_RESTRICT mask, size_t mask_rows,
                 float* HWY_RESTRICT y, size_t r0, size_t r1, size_t n, bool stream) {
  if (r0 >= r1) return;
  // Two rows of this thread's own, kept between calls (a replay allocates nothing).
  thread_local hwy::AlignedFreeUniquePtr<float[]> rows;
  thread_local size_t rows_n = 0;
  if (stream && rows_n < n) rows = hwy::AllocateAligned<float>(2 * n), rows_n = n;
  float* const scratch = stream ? rows.get() : nullptr;
  if (!mask) return SoftmaxRowsUnmasked(x, y, scratch, r0, r1, n, stream);
  for (size_t r = r0; r < r1; ++r) SoftmaxRow(x + r * n, mask + (r % mask_rows) * n, y + r * n, scratch, n, stream);
}

void SoftmaxBwdRows(const float* HWY_RESTRICT y, const float* HWY_RESTRICT g, float* HWY_RESTRICT dx, size_t r0,
                    size_t r1, size_t n) {
  const hn::ScalableTag<float> d;
  for (size_t r = r0; r < r1; ++r) {
    const float* yr = y + r * n;
    const float* gr = g + r * n;
    const auto vdot = hn::Set(d, Dot(d, yr, gr, n));
    Map2(d, yr, gr, dx + r * n, n, 0.0f, 0.0f, false, [&](auto a, auto b) { return hn::Mul(a, hn::Sub(b, vdot)); });
  }
}

void CrossEntropyRows(const float* HWY_RESTRICT logits, const int64_t* HWY_RESTRICT targets, int64_t ignore,
                      float* HWY_RESTRICT loss, float* HWY_RESTRICT lse, size_t r0, size_t r1, size_t v) {
  const hn::ScalableTag<float> d;
  const float ninf = -std::numeric_limits<float>::infinity();
  for (size_t r = r0; r < r1; ++r) {
    const int64_t t = targets[r];
    if (t == ignore) {
      loss[r] = 0.0f;
      lse[r] = 0.0f;
      continue;
    }
    const float* xr = logits + r * v;
    const float mx = MaxRow(d, xr, v);
    const auto vm = hn::Set(d, mx);
    const float s = Reduce1(d, xr, v, ninf, [&](auto a) { return ExpUpTo88(d, hn::Sub(a, vm)); });
    lse[r] = mx + std::log(s);
    loss[r] = lse[r] - xr[t];
  }
}

void CrossEntropyBwdRows(const float* HWY_RESTRICT logits, const int64_t* HWY_RESTRICT targets, int64_t ignore,
                         const float* HWY_RESTRICT lse, float scale, float* HWY_RESTRICT dl, size_t r0, size_t r1,
                         size_t v) {
  const hn::ScalableTag<float> d;
  const auto vs = hn::Set(d, scale);
  for (size_t r = r0; r < r1; ++r) {
    const int64_t t = targets[r];
    float* out = dl + r * v;
    if (t == ignore) {
      std::fill_n(out, v, 0.0f);
      continue;
    }
    const auto vl = hn::Set(d, lse[r]);
    Map1(d, logits + r * v, out, v, 0.0f, false, [&](auto a) { return hn::Mul(ExpUpTo88(d, hn::Sub(a, vl)), vs); });
    out[t] -= scale;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(SoftmaxRows);
HWY_EXPORT(SoftmaxBwdRows);
HWY_EXPORT(CrossEntropyRows);
HWY_EXPORT(CrossEntropyBwdRows);

namespace {
constexpr int64_t kGrain = 1 << 14;  // elements per task
int64_t row_grain(int64_t n) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1)); }
size_t sz(int64_t v) { return static_cast<size_t>(v); }
}  // namespace

void softmax_f32(const float* x, const uint8_t* mask, int64_t mask_rows, float* y, int64_t rows, int64_t n) {
  if (rows == 0 || n == 0) return;
  const bool stream = stream_stores(rows * n * static_cast<int64_t>(sizeof(float)));
  parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
    HWY_DYNAMIC_DISPATCH(SoftmaxRows)(x, mask, sz(std::max<int64_t>(mask_rows, 1)), y, sz(b), sz(e), sz(n), stream);
    if (stream) hwy::FlushStream();
  });
}

void softmax_bwd_f32(const float* y, const float* g, float* dx, int64_t rows, int64_t n) {
  if (rows == 0 || n == 0) return;
  parallel_for(rows, row_grain(n),
               [&](int64_t b, int64_t e) { HWY_DYNAMIC_DISPATCH(SoftmaxBwdRows)(y, g, dx, sz(b), sz(e), sz(n)); });
}

void cross_entropy_f32(const float* logits, const int64_t* targets, int64_t ignore_index, float* loss, float* lse,
                       int64_t rows, int64_t v) {
  parallel_for(rows, row_grain(v), [&](int64_t b, int64_t e) {
    HWY_DYNAMIC_DISPATCH(CrossEntropyRows)(logits, targets, ignore_index, loss, lse, sz(b), sz(e), sz(v));
  });
}

void cross_entropy_bwd_f32(const float* logits, const int64_t* targets, int64_t ignore_index, const float* lse,
                           float scale, float* dlogits, int64_t rows, int64_t v) {
  parallel_for(rows, row_grain(v), [&](int64_t b, int64_t e) {
    HWY_DYNAMIC_DISPATCH(CrossEntropyBwdRows)(logits, targets, ignore_index, lse, scale, dlogits, sz(b), sz(e),
                                              sz(v));
  });
}

}  // namespace mmrec::kernels
#endif  // HWY_ONCE
