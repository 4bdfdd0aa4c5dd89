// Highway elementwise kernels, compiled for every target and picked at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/elementwise_hwy.cpp"
#include <algorithm>

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "ops/kernels/elementwise.h"
#include "ops/kernels/hwy_rows-inl.h"
#include "ops/kernels/pointwise_hwy-inl.h"
#include "tensor/threads.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// out[0..n) = a[0..n) op b[0..n) (both full length).
void BinaryRow(BinaryOp op, const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, float* HWY_RESTRICT out,
               size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(ApplyBinary(d, op, hn::LoadU(d, a + i), hn::LoadU(d, b + i)), d, out + i);
  if (i < n) {
    HWY_ALIGN float ta[hn::MaxLanes(d)] = {}, tb[hn::MaxLanes(d)] = {}, to[hn::MaxLanes(d)];
    for (size_t k = 0; k < n - i; ++k) ta[k] = a[i + k], tb[k] = b[i + k];
    for (size_t k = n - i; k < N; ++k) tb[k] = 1.0f;  // keep div finite in padding lanes
    hn::Store(ApplyBinary(d, op, hn::Load(d, ta), hn::Load(d, tb)), d, to);
    for (size_t k = 0; k < n - i; ++k) out[i + k] = to[k];
  }
}

void UnaryRow(UnaryOp op, const float* HWY_RESTRICT x, float* HWY_RESTRICT out, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(ApplyUnary(d, op, hn::LoadU(d, x + i)), d, out + i);
  if (i < n) {
    HWY_ALIGN float tx[hn::MaxLanes(d)], to[hn::MaxLanes(d)];
    for (size_t k = 0; k < N; ++k) tx[k] = k < n - i ? x[i + k] : 1.0f;
    hn::Store(ApplyUnary(d, op, hn::Load(d, tx)), d, to);
    for (size_t k = 0; k < n - i; ++k) out[i + k] = to[k];
  }
}

// The tail goes through a padded vector too: a scalar x * s + t rounds twice
// where MulAdd rounds once, and the tail's place depends on how the work was
// split between threads.
void AffineRow(const float* HWY_RESTRICT x, float s, float t, float* HWY_RESTRICT out, size_t n) {
  const hn::ScalableTag<float> d;
  Map1(d, x, out, n, 0.0f, false, [&](auto v) { return Affine(d, v, s, t); });
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(BinaryRow);
HWY_EXPORT(UnaryRow);
HWY_EXPORT(AffineRow);

namespace {
constexpr int64_t kGrain = 1 << 15;  // elements per task: ~128 KiB per operand
}

void binary_f32(BinaryOp op, const float* a, int64_t na, const float* b, int64_t nb, float* out, int64_t n) {
  if (n == 0) return;
  if (na == n && nb == n) {
    parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
      HWY_DYNAMIC_DISPATCH(BinaryRow)(op, a + s, b + s, out + s, static_cast<size_t>(e - s));
    });
    return;
  }
  // One operand repeats every `inner` elements: work row by row.
  const int64_t inner = na < n ? na : nb;
  const int64_t rows = n / inner;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1));
  parallel_for(rows, grain, [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      const float* pa = na == n ? a + r * inner : a;
      const float* pb = nb == n ? b + r * inner : b;
      HWY_DYNAMIC_DISPATCH(BinaryRow)(op, pa, pb, out + r * inner, static_cast<size_t>(inner));
    }
  });
}

void unary_f32(UnaryOp op, const float* x, float* out, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    HWY_DYNAMIC_DISPATCH(UnaryRow)(op, x + s, out + s, static_cast<size_t>(e - s));
  });
}

void affine_f32(const float* x, float s, float t, float* out, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    HWY_DYNAMIC_DISPATCH(AffineRow)(x + b, s, t, out + b, static_cast<size_t>(e - b));
  });
}

}  // namespace mmrec::kernels
#endif  // HWY_ONCE
