// Highway activation kernels, compiled for every target and picked at run time.
// GELU's tanh form is evaluated as x σ(2u) (tanh(u) = 2σ(2u) - 1): one vector
// exp and one division instead of Tanh's expm1 and division plus the extra
// multiply-adds (the lane functions are in pointwise_hwy-inl.h, shared with
// the fused kernel). The exp is ExpClamped (exp_hwy-inl.h says why not hn::Exp);
// a full division measures faster here than the approximate reciprocal with
// a Newton step (2.80 vs 2.56 Gelem/s per core for GELU).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/activation_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <algorithm>
#include <hwy/highway.h>

#include "ops/kernels/activation.h"
#include "ops/kernels/hwy_rows-inl.h"
#include "ops/kernels/pointwise_hwy-inl.h"
#include "tensor/threads.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void SigmoidRow(const float* HWY_RESTRICT x, float* HWY_RESTRICT y, size_t n, bool stream) {
  const hn::ScalableTag<float> d;
  Map1(d, x, y, n, 0.0f, stream, [d](auto v) { return Sigmoid(d, v); });
}

void GeluRow(const float* HWY_RESTRICT x, float* HWY_RESTRICT y, size_t n, bool stream) {
  const hn::ScalableTag<float> d;
  Map1(d, x, y, n, 0.0f, stream, [d](auto v) { return Gelu(d, v); });
}

void ClampRow(const float* HWY_RESTRICT x, float lo, float hi, float* HWY_RESTRICT y, size_t n, bool stream) {
  const hn::ScalableTag<float> d;
  Map1(d, x, y, n, 0.0f, stream, [&](auto v) { return Clamp(d, v, lo, hi); });
}

void SigmoidMulRow(const float* HWY_RESTRICT x, const float* HWY_RESTRICT y, float* HWY_RESTRICT out, size_t n,
                   bool stream) {
  const hn::ScalableTag<float> d;
  Map2(d, x, y, out, n, 0.0f, 0.0f, stream, [d](auto a, auto b) { return hn::Mul(Sigmoid(d, a), b); });
}

// dx = g y (1 - y), y the sigmoid's output.
void SigmoidBwdRow(const float* HWY_RESTRICT y, const float* HWY_RESTRICT g, float* HWY_RESTRICT dx, size_t n) {
  const hn::ScalableTag<float> d;
  const auto one = hn::Set(d, 1.0f);
  Map2(d, y, g, dx, n, 0.0f, 0.0f, false,
       [&](auto vy, auto vg) { return hn::Mul(vg, hn::Mul(vy, hn::Sub(one, vy))); });
}

// d/dx [x σ(u2)] = σ + x σ (1 - σ) (k0 + 3 k1 x²)
void GeluBwdRow(const float* HWY_RESTRICT x, const float* HWY_RESTRICT g, float* HWY_RESTRICT dx, size_t n) {
  const hn::ScalableTag<float> d;
  const auto k0 = hn::Set(d, kGeluK0), k1 = hn::Set(d, kGeluK1), k3 = hn::Set(d, 3.0f * kGeluK1);
  const auto one = hn::Set(d, 1.0f);
  // gelu' is 1 (in f32) beyond 20: clamping there keeps x³ finite. Below -8
  // it is 0: |gelu'(-8)| = 4.8e-20, and from x = -10 on σ(2u) is subnormal,
  // which costs a microcode assist per operation on Intel cores (the FFN's
  // backward ran 10x slower once some pre-activations fell below -10).
  const auto lo = hn::Set(d, -8.0f), hi = hn::Set(d, 20.0f);
  Map2(d, x, g, dx, n, 0.0f, 0.0f, false, [&](auto xv, auto vg) {
    const auto v = hn::Min(hn::Max(xv, lo), hi);
    const auto x2 = hn::Mul(v, v);
    const auto s = Sigmoid(d, hn::Mul(v, hn::MulAdd(x2, k1, k0)));
    const auto du = hn::MulAdd(x2, k3, k0);
    const auto ds = hn::Mul(hn::Mul(s, hn::Sub(one, s)), hn::Mul(v, du));
    return hn::IfThenZeroElse(hn::Lt(xv, lo), hn::Mul(vg, hn::Add(s, ds)));
  });
}

// GELU and its backward in one pass over x: y = gelu(x) and dx = g gelu'(x),
// sharing the exp (x σ(2u) and σ(2u) have the same denominator, and
// GeluBwdRow's -2u equals Gelu's: MulAdd(x², -k1, -k0) = -MulAdd(x², k1, k0)
// exactly). The same bits as GeluRow and GeluBwdRow. A vector holding a lane
// outside [-8, 20] (where GeluBwdRow clamps) takes y from Gelu on x itself.
void GeluFwdBwdRow(const float* HWY_RESTRICT x, const float* HWY_RESTRICT g, float* HWY_RESTRICT y,
                   float* HWY_RESTRICT dx, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const auto nk0 = hn::Set(d, -kGeluK0), nk1 = hn::Set(d, -kGeluK1), k0 = hn::Set(d, kGeluK0);
  const auto k3 = hn::Set(d, 3.0f * kGeluK1), one = hn::Set(d, 1.0f);
  const auto lo = hn::Set(d, -8.0f), hi = hn::Set(d, 20.0f);
  auto step = [&](auto xv, auto vg, auto& oy, auto& odx) {
    const auto v = hn::Min(hn::Max(xv, lo), hi);
    const auto x2 = hn::Mul(v, v);
    const auto den = hn::Add(one, ExpClamped(d, hn::Mul(v, hn::MulAdd(x2, nk1, nk0))));
    const auto s = hn::Div(one, den);
    const auto du = hn::MulAdd(x2, k3, k0);
    const auto ds = hn::Mul(hn::Mul(s, hn::Sub(one, s)), hn::Mul(v, du));
    const auto below = hn::Lt(xv, lo);
    odx = hn::IfThenZeroElse(below, hn::Mul(vg, hn::Add(s, ds)));
    oy = hn::AllFalse(d, hn::Or(below, hn::Lt(hi, xv))) ? hn::Div(xv, den) : Gelu(d, xv);
  };
  size_t i = 0;
  for (; i + N <= n; i += N) {
    hn::Vec<hn::ScalableTag<float>> oy, odx;
    step(hn::LoadU(d, x + i), hn::LoadU(d, g + i), oy, odx);
    hn::StoreU(oy, d, y + i);
    hn::StoreU(odx, d, dx + i);
  }
  if (i < n) {
    const size_t r = n - i;
    hn::Vec<hn::ScalableTag<float>> oy, odx;
    step(LoadTail(d, x + i, r, 0.0f), LoadTail(d, g + i, r, 0.0f), oy, odx);
    StoreTail(d, oy, y + i, r);
    StoreTail(d, odx, dx + i, r);
  }
}

void ClampBwdRow(const float* HWY_RESTRICT x, float lo, float hi, const float* HWY_RESTRICT g,
                 float* HWY_RESTRICT dx, size_t n) {
  const hn::ScalableTag<float> d;
  const auto vlo = hn::Set(d, lo), vhi = hn::Set(d, hi);
  Map2(d, x, g, dx, n, 0.0f, 0.0f, false,
       [&](auto v, auto vg) { return hn::IfThenElseZero(hn::And(hn::Lt(vlo, v), hn::Lt(v, vhi)), vg); });
}

// One pass over x, y, g producing dx and/or dy.
void SigmoidMulBwdRow(const float* HWY_RESTRICT x, const float* HWY_RESTRICT y, const float* HWY_RESTRICT g,
                      float* HWY_RESTRICT dx, float* HWY_RESTRICT dy, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const auto one = hn::Set(d, 1.0f);
  auto step = [&](auto vx, auto vy, auto vg, auto& ox, auto& oy) {
    const auto s = Sigmoid(d, vx);
    oy = hn::Mul(vg, s);
    ox = hn::Mul(hn::Mul(oy, vy), hn::Sub(one, s));
  };
  size_t i = 0;
  for (; i + N <= n; i += N) {
    hn::Vec<hn::ScalableTag<float>> ox, oy;
    step(hn::LoadU(d, x + i), hn::LoadU(d, y + i), hn::LoadU(d, g + i), ox, oy);
    if (dx) hn::StoreU(ox, d, dx + i);
    if (dy) hn::StoreU(oy, d, dy + i);
  }
  if (i < n) {
    const size_t r = n - i;
    hn::Vec<hn::ScalableTag<float>> ox, oy;
    step(LoadTail(d, x + i, r, 0.0f), LoadTail(d, y + i, r, 0.0f), LoadTail(d, g + i, r, 0.0f), ox, oy);
    if (dx) StoreTail(d, ox, dx + i, r);
    if (dy) StoreTail(d, oy, dy + i, r);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(SigmoidRow);
HWY_EXPORT(GeluRow);
HWY_EXPORT(ClampRow);
HWY_EXPORT(SigmoidMulRow);
HWY_EXPORT(SigmoidBwdRow);
HWY_EXPORT(GeluBwdRow);
HWY_EXPORT(GeluFwdBwdRow);
HWY_EXPORT(ClampBwdRow);
HWY_EXPORT(SigmoidMulBwdRow);

namespace {
// Elements per task: ~64 KiB per operand, so tensors below that run inline.
constexpr int64_t kGrain = 1 << 14;
bool stream_out(int64_t n) { return stream_stores(n * static_cast<int64_t>(sizeof(float))); }

template <class F>
void for_chunks(int64_t n, bool stream, F&& f) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    f(b, static_cast<size_t>(e - b));
    if (stream) hwy::FlushStream();
  });
}
}  // namespace

void activation_f32(Activation op, const float* x, float* y, int64_t n) {
  const bool st = stream_out(n);
  for_chunks(n, st, [&](int64_t b, size_t len) {
    if (op == Activation::sigmoid)
      HWY_DYNAMIC_DISPATCH(SigmoidRow)(x + b, y + b, len, st);
    else
      HWY_DYNAMIC_DISPATCH(GeluRow)(x + b, y + b, len, st);
  });
}

void activation_bwd_f32(Activation op, const float* xy, const float* g, float* dx, int64_t n) {
  for_chunks(n, false, [&](int64_t b, size_t len) {
    if (op == Activation::sigmoid)
      HWY_DYNAMIC_DISPATCH(SigmoidBwdRow)(xy + b, g + b, dx + b, len);
    else
      HWY_DYNAMIC_DISPATCH(GeluBwdRow)(xy + b, g + b, dx + b, len);
  });
}

void gelu_fwd_bwd_f32(const float* x, const float* g, float* y, float* dx, int64_t n) {
  for_chunks(n, false, [&](int64_t b, size_t len) { HWY_DYNAMIC_DISPATCH(GeluFwdBwdRow)(x + b, g + b, y + b, dx + b, len); });
}

void clamp_f32(const float* x, float lo, float hi, float* y, int64_t n) {
  const bool st = stream_out(n);
  for_chunks(n, st, [&](int64_t b, size_t len) { HWY_DYNAMIC_DISPATCH(ClampRow)(x + b, lo, hi, y + b, len, st); });
}

void clamp_bwd_f32(const float* x, float lo, float hi, const float* g, float* dx, int64_t n) {
  for_chunks(n, false,
             [&](int64_t b, size_t len) { HWY_DYNAMIC_DISPATCH(ClampBwdRow)(x + b, lo, hi, g + b, dx + b, len); });
}

void sigmoid_mul_f32(const float* x, const float* y, float* out, int64_t n) {
  const bool st = stream_out(n);
  for_chunks(n, st,
             [&](int64_t b, size_t len) { HWY_DYNAMIC_DISPATCH(SigmoidMulRow)(x + b, y + b, out + b, len, st); });
}

void sigmoid_mul_bwd_f32(const float* x, const float* y, const float* g, float* dx, float* dy, int64_t n) {
  for_chunks(n, false, [&](int64_t b, size_t len) {
    HWY_DYNAMIC_DISPATCH(SigmoidMulBwdRow)(x + b, y + b, g + b, dx ? dx + b : nullptr, dy ? dy + b : nullptr, len);
  });
}

void sigmoid_mul_rows_f32(const float* x, const float* y, int64_t ldy, float* out, int64_t rows, int64_t cols) {
  if (cols <= 0) return;
  const bool st = stream_out(rows * cols);
  parallel_for(rows, std::max<int64_t>(1, kGrain / cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      HWY_DYNAMIC_DISPATCH(SigmoidMulRow)(x + r * cols, y + r * ldy, out + r * cols, static_cast<size_t>(cols), st);
    if (st) hwy::FlushStream();
  });
}

void sigmoid_mul_bwd_rows_f32(const float* x, const float* y, int64_t ldy, const float* g, float* dx, float* dy,
                              int64_t rows, int64_t cols) {
  if (cols <= 0) return;
  parallel_for(rows, std::max<int64_t>(1, kGrain / cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      HWY_DYNAMIC_DISPATCH(SigmoidMulBwdRow)(x + r * cols, y + r * ldy, g + r * cols, dx ? dx + r * cols : nullptr,
                                             dy ? dy + r * cols : nullptr, static_cast<size_t>(cols));
  });
}

}  // namespace mmrec::kernels
#endif  // HWY_ONCE
