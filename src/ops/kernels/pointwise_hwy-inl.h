// The per-lane functions of the elementwise and activation kernels, shared
// with the fused pointwise kernel (fused_hwy.cpp) so that a fused chain runs
// the very same instructions per element as the chain of separate kernels
// (replay equals eager bit for bit). Every function here is lane-wise: a
// lane's result does not depend on its neighbours, so tails in padded
// vectors and any split of the work give the same bits.
//
// Include after <hwy/highway.h> in a file compiled per target by
// foreach_target.h (the toggle guard below).
#if defined(MMREC_OPS_KERNELS_POINTWISE_HWY_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MMREC_OPS_KERNELS_POINTWISE_HWY_INL_H_
#undef MMREC_OPS_KERNELS_POINTWISE_HWY_INL_H_
#else
#define MMREC_OPS_KERNELS_POINTWISE_HWY_INL_H_
#endif

#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "ops/kernels/elementwise.h"
#include "ops/kernels/exp_hwy-inl.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <class D, class V>
HWY_INLINE V ApplyBinary(D, BinaryOp op, V a, V b) {
  switch (op) {
    case BinaryOp::add: return hn::Add(a, b);
    case BinaryOp::sub: return hn::Sub(a, b);
    case BinaryOp::mul: return hn::Mul(a, b);
    case BinaryOp::div: return hn::Div(a, b);
  }
  return a;
}

// ops::exp and ops::log take any argument: hn::Exp and hn::Log, not ExpClamped.
template <class D, class V>
HWY_INLINE V ApplyUnary(D d, UnaryOp op, V x) {
  switch (op) {
    case UnaryOp::neg: return hn::Neg(x);
    case UnaryOp::exp: return hn::Exp(d, x);
    case UnaryOp::log: return hn::Log(d, x);
  }
  return x;
}

// x * s + t, one fused multiply-add where the target has it.
template <class D, class V>
HWY_INLINE V Affine(D d, V x, float s, float t) {
  return hn::MulAdd(x, hn::Set(d, s), hn::Set(d, t));
}

template <class D, class V>
HWY_INLINE V Clamp(D d, V x, float lo, float hi) {
  return hn::Min(hn::Max(x, hn::Set(d, lo)), hn::Set(d, hi));
}

// σ(x) = 1 / (1 + exp(-x)), from nx = -x. For x < -88, exp(-x) is capped
// at exp(88): σ comes out ~6e-39 instead of the subnormal or 0.
template <class D, class V>
HWY_INLINE V SigmoidOfNeg(D d, V nx) {
  const V one = hn::Set(d, 1.0f);
  return hn::Div(one, hn::Add(one, ExpClamped(d, nx)));
}

template <class D, class V>
HWY_INLINE V Sigmoid(D d, V x) {
  return SigmoidOfNeg(d, hn::Neg(x));
}

// 2 sqrt(2/π) and 2 sqrt(2/π) 0.044715: σ(x (k0 + k1 x²)) = (1 + tanh(u)) / 2.
constexpr float kGeluK0 = 1.5957691216057308f;
constexpr float kGeluK1 = 0.0713548162726009f;

// GELU's tanh form as x σ(2u).
template <class D, class V>
HWY_INLINE V Gelu(D d, V x) {
  const V nu2 = hn::Mul(x, hn::MulAdd(hn::Mul(x, x), hn::Set(d, -kGeluK1), hn::Set(d, -kGeluK0)));  // -2u
  return hn::Div(x, hn::Add(hn::Set(d, 1.0f), ExpClamped(d, nu2)));
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#endif  // MMREC_OPS_KERNELS_POINTWISE_HWY_INL_H_ toggle
