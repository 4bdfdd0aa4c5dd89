// Highway elementwise kernels, compiled for every target and picked at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/elementwise_hwy.cpp"
#include <algorithm>

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "ops/kernels/elementwise.h"
#include "tensor/threads.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <class D, class V>
HWY_INLINE V apply_binary(D, BinaryOp op, V a, V b) {
  switch (op) {
    case BinaryOp::add: return hn::Add(a, b);
    case BinaryOp::sub: return hn::Sub(a, b);
    case BinaryOp::mul: return hn::Mul(a, b);
    case BinaryOp::div: return hn::Div(a, b);
  }
  return a;
}

template <class D, class V>
HWY_INLINE V apply_unary(D d, UnaryOp op, V x) {
  switch (op) {
    case UnaryOp::neg: return hn::Neg(x);
    case UnaryOp::exp: return hn::Exp(d, x);
    case UnaryOp::log: return hn::Log(d, x);
  }
  return x;
}

// out[0..n) = a[0..n) op b[0..n) (both full length).
void BinaryRow(BinaryOp op, const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, float* HWY_RESTRICT out,
               size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(apply_binary(d, op, hn::LoadU(d, a + i), hn::LoadU(d, b + i)), d, out + i);
  if (i < n) {
    HWY_ALIGN float ta[hn::MaxLanes(d)] = {}, tb[hn::MaxLanes(d)] = {}, to[hn::MaxLanes(d)];
    for (size_t k = 0; k < n - i; ++k) ta[k] = a[i + k], tb[k] = b[i + k];
    for (size_t k = n - i; k < N; ++k) tb[k] = 1.0f;  // keep div finite in padding lanes
    hn::Store(apply_binary(d, op, hn::Load(d, ta), hn::Load(d, tb)), d, to);
    for (size_t k = 0; k < n - i; ++k) out[i + k] = to[k];
  }
}

void UnaryRow(UnaryOp op, const float* HWY_RESTRICT x, float* HWY_RESTRICT out, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(apply_unary(d, op, hn::LoadU(d, x + i)), d, out + i);
  if (i < n) {
    HWY_ALIGN float tx[hn::MaxLanes(d)], to[hn::MaxLanes(d)];
    for (size_t k = 0; k < N; ++k) tx[k] = k < n - i ? x[i + k] : 1.0f;
    hn::Store(apply_unary(d, op, hn::Load(d, tx)), d, to);
    for (size_t k = 0; k < n - i; ++k) out[i + k] = to[k];
  }
}

void AffineRow(const float* HWY_RESTRICT x, float s, float t, float* HWY_RESTRICT out, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const auto vs = hn::Set(d, s), vt = hn::Set(d, t);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(hn::LoadU(d, x + i), vs, vt), d, out + i);
  for (; i < n; ++i) out[i] = x[i] * s + t;
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
