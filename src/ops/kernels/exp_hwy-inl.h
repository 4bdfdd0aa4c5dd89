// ExpUpTo88: exp for the row kernels whose arguments are bounded above
// (softmax and cross-entropy exponentiate x - max <= 0; sigmoid and GELU cap
// their argument at 88). Max relative error ~1.1e-7 (about 1 ulp).
//
// Why not hn::Exp: Highway 1.0.3's Exp handles the whole f32 range (a
// two-step 2^n scale and an emulated round-to-nearest conversion), 33
// instructions per vector: 3.0 Gelem/s per core here, which makes GELU and
// softmax compute-bound at half of the memory bandwidth. Over the bounded
// domain one step suffices: n = round(x log2 e) by the 1.5 * 2^23 shifter
// (whose low bits are then the biased exponent), Cody-Waite x - n ln 2, the
// Cephes expf polynomial and one multiply by 2^n. 16 instructions, 5.0
// Gelem/s per core. ops::exp, which takes any argument, keeps hn::Exp.
//
// Domain: x > 88 is treated as 88 (exp(88) = 1.65e38; 2^128 would
// overflow the one-step scale); x < ln(FLT_MIN) = -87.34, -inf included,
// gives 0 (no subnormal results); NaN stays NaN on the AVX targets.
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

template <class D, class V>
HWY_INLINE V ExpUpTo88(D d, V x) {
  const hn::RebindToUnsigned<D> du;
  const V lo = hn::Set(d, -87.33654475f);    // ln(FLT_MIN)
  const V shifter = hn::Set(d, 12583039.0f);  // 1.5 * 2^23 + 127
  const V xc = hn::Min(hn::Set(d, 88.0f), x);  // Min(c, NaN) is NaN on x86
  // t's low mantissa bits hold n + 127, n = round(x log2 e) in [-126, 127].
  const V t = hn::MulAdd(xc, hn::Set(d, 1.44269504088896341f), shifter);
  const V n = hn::Sub(t, shifter);
  V r = hn::NegMulAdd(n, hn::Set(d, 0.693359375f), xc);  // ln 2 split: exact n * hi
  r = hn::NegMulAdd(n, hn::Set(d, -2.12194440e-4f), r);
  V p = hn::Set(d, 1.9875691500e-4f);
  p = hn::MulAdd(p, r, hn::Set(d, 1.3981999507e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 8.3334519073e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.1665795894e-2f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.6666665459e-1f));
  p = hn::MulAdd(p, r, hn::Set(d, 5.0000001201e-1f));
  p = hn::MulAdd(p, hn::Mul(r, r), hn::Add(r, hn::Set(d, 1.0f)));
  const V scale = hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(du, t)));  // 2^n
  return hn::IfThenZeroElse(hn::Lt(x, lo), hn::Mul(p, scale));
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#endif  // MMREC_OPS_KERNELS_EXP_HWY_INL_H_ toggle
