// Vector exp for the row kernels whose arguments are bounded above (softmax
// and cross-entropy exponentiate x - max <= 0; sigmoid and GELU compute
// 1 + exp(.)). Max relative error 8.3e-8 (about 1 ulp), measured against
// exp in double on a dense sweep of [-87, 87].
//
// Why not hn::Exp: Highway 1.0.3's Exp handles the whole f32 range (a
// two-step 2^n scale and an emulated round-to-nearest conversion), 33
// instructions per vector: 3.0 Gelem/s per core here, which makes GELU and
// softmax compute-bound at half of the memory bandwidth. Over the bounded
// domain one step suffices: 15 instructions, 5.0 Gelem/s per core.
// ops::exp, which takes any argument, keeps hn::Exp.
//
// Domain: x > 88 is treated as 88 (exp(88) = 1.65e38; 2^128 would overflow
// the one-step scale); below ln(FLT_MIN) = -87.34 see the two entry points;
// NaN stays NaN on the AVX targets.
//
// Include after <hwy/highway.h> in a file compiled per target by
// foreach_target.h (the toggle guard below).
#if defined(MMREC_OPS_KERNELS_EXP_HWY_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MMREC_OPS_KERNELS_EXP_HWY_INL_H_
#undef MMREC_OPS_KERNELS_EXP_HWY_INL_H_
#else
#define MMREC_OPS_KERNELS_EXP_HWY_INL_H_
#endif

#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// exp(x) for x in [ln(FLT_MIN), 88] (callers clamp): n = round(x log2 e)
// by the shifter, whose low mantissa bits are then n + 127, r = x - n ln 2
// (Cody-Waite, ln 2 split so that n * hi is exact), a degree-6 polynomial
// for e^r (least-squares fit with relative weight over |r| <= ln(2)/2: error
// 1.7e-8 before rounding) and one multiply by 2^n.
template <class D, class V>
HWY_INLINE V ExpInRange(D d, V x) {
  const hn::RebindToUnsigned<D> du;
  const V shifter = hn::Set(d, 12583039.0f);  // 1.5 * 2^23 + 127
  const V t = hn::MulAdd(x, hn::Set(d, 1.44269504088896341f), shifter);
  const V n = hn::Sub(t, shifter);
  V r = hn::NegMulAdd(n, hn::Set(d, 0.693359375f), x);
  r = hn::NegMulAdd(n, hn::Set(d, -2.12194440e-4f), r);
  V p = hn::Set(d, 1.3859290630e-3f);
  p = hn::MulAdd(p, r, hn::Set(d, 8.3747636527e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.1667725891e-2f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.6666421294e-1f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.9999994040e-1f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.0f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.0f));
  return hn::Mul(p, hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(du, t))));  // p 2^n
}

template <class D>
HWY_INLINE hn::Vec<D> LnFltMin(D d) {
  return hn::Set(d, -87.33654475f);
}

// exp(min(x, 88)), exactly 0 below ln(FLT_MIN) (-inf included): for
// softmax and cross-entropy, where excluded entries must weigh nothing.
template <class D, class V>
HWY_INLINE V ExpUpTo88(D d, V x) {
  const V xc = hn::Min(hn::Set(d, 88.0f), x);  // Min(c, NaN) is NaN on x86
  return hn::IfThenZeroElse(hn::Lt(x, LnFltMin(d)), ExpInRange(d, xc));
}

// exp(clamp(x, ln(FLT_MIN), 88)): for 1 + exp(.), where FLT_MIN instead of
// a smaller value changes nothing; one instruction fewer than ExpUpTo88.
template <class D, class V>
HWY_INLINE V ExpClamped(D d, V x) {
  return ExpInRange(d, hn::Max(LnFltMin(d), hn::Min(hn::Set(d, 88.0f), x)));
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#endif  // MMREC_OPS_KERNELS_EXP_HWY_INL_H_ toggle
