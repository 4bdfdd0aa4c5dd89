// Highway f32 <-> bf16 conversion (convert.h), compiled for every target and
// picked at run time; the lanes compute what tensor/dtype.h does per element.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/convert_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "ops/kernels/convert.h"
#include "tensor/dtype.h"
#include "tensor/threads.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void ToBf16Row(const float* HWY_RESTRICT x, uint16_t* HWY_RESTRICT y, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint16_t, decltype(df)> d16;
  const size_t N = hn::Lanes(df);
  const auto abs_mask = hn::Set(di, 0x7fffffff), inf = hn::Set(di, 0x7f800000);
  const auto half = hn::Set(du, 0x7fffu), one = hn::Set(du, 1u), quiet = hn::Set(du, 0x40u);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto u = hn::BitCast(du, hn::LoadU(df, x + i));
    const auto nan = hn::RebindMask(du, hn::Gt(hn::And(hn::BitCast(di, u), abs_mask), inf));
    const auto top = hn::ShiftRight<16>(u);
    const auto rounded = hn::ShiftRight<16>(hn::Add(u, hn::Add(half, hn::And(top, one))));
    const auto bits = hn::IfThenElse(nan, hn::Or(top, quiet), rounded);  // at most 0xffff
    hn::StoreU(hn::DemoteTo(d16, hn::BitCast(di, bits)), d16, y + i);
  }
  for (; i < n; ++i) y[i] = f32_to_bf16_bits(x[i]);
}

void ToF32Row(const uint16_t* HWY_RESTRICT x, float* HWY_RESTRICT y, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::Rebind<uint16_t, decltype(df)> d16;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, x + i)))), df, y + i);
  for (; i < n; ++i) y[i] = bf16_bits_to_f32(x[i]);
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(ToBf16Row);
HWY_EXPORT(ToF32Row);

namespace {
constexpr int64_t kGrain = 1 << 16;  // elements per task; smaller buffers stay on the caller

// row(x, y, n) over [0, n), in tasks of kGrain elements for large n.
template <class From, class To, class Row>
void in_tasks(const From* x, To* y, int64_t n, Row row) {
  if (n < kGrain) {
    if (n > 0) row(x, y, static_cast<size_t>(n));
    return;
  }
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) { row(x + s, y + s, static_cast<size_t>(e - s)); });
}
}  // namespace

void f32_to_bf16(const float* x, uint16_t* y, int64_t n) { in_tasks(x, y, n, HWY_DYNAMIC_DISPATCH(ToBf16Row)); }
void bf16_to_f32(const uint16_t* x, float* y, int64_t n) { in_tasks(x, y, n, HWY_DYNAMIC_DISPATCH(ToF32Row)); }
}  // namespace mmrec::kernels
#endif  // HWY_ONCE
