// Highway quantization kernels, compiled for every target and picked at run
// time. Round is round-half-to-even, as nearbyint in the references, so the
// results are bit-identical to them.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/fake_quant_hwy.cpp"
#include <algorithm>
#include <limits>
#include <vector>

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "ops/kernels/fake_quant.h"
#include "ops/kernels/hwy_rows-inl.h"
#include "tensor/threads.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// y[0..n) = fake quantization of x with one scale and zero point.
void FakeQuantRow(const float* HWY_RESTRICT x, float* HWY_RESTRICT y, size_t n, float scale, int32_t zp,
                  int32_t qmin, int32_t qmax) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const float inv = 1.0f / scale;
  const auto vinv = hn::Set(d, inv), vs = hn::Set(d, scale), vz = hn::Set(d, static_cast<float>(zp));
  const auto lo = hn::Set(d, static_cast<float>(qmin)), hi = hn::Set(d, static_cast<float>(qmax));
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto q = hn::Add(hn::Round(hn::Mul(hn::LoadU(d, x + i), vinv)), vz);
    hn::StoreU(hn::Mul(hn::Sub(hn::Min(hn::Max(q, lo), hi), vz), vs), d, y + i);
  }
  if (i < n) {
    const size_t r = n - i;
    const auto q = hn::Add(hn::Round(hn::Mul(LoadTail(d, x + i, r, 0.0f), vinv)), vz);
    StoreTail(d, hn::Mul(hn::Sub(hn::Min(hn::Max(q, lo), hi), vz), vs), y + i, r);
  }
}

// dx = dy where the quantization level of x lies in [qmin, qmax], else 0.
void FakeQuantBwdRow(const float* HWY_RESTRICT x, const float* HWY_RESTRICT dy, float* HWY_RESTRICT dx, size_t n,
                     float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const auto vinv = hn::Set(d, 1.0f / scale), vz = hn::Set(d, static_cast<float>(zp));
  const auto lo = hn::Set(d, static_cast<float>(qmin)), hi = hn::Set(d, static_cast<float>(qmax));
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto q = hn::Add(hn::Round(hn::Mul(hn::LoadU(d, x + i), vinv)), vz);
    const auto keep = hn::And(hn::Ge(q, lo), hn::Le(q, hi));
    hn::StoreU(hn::IfThenElseZero(keep, hn::LoadU(d, dy + i)), d, dx + i);
  }
  if (i < n) {
    const size_t r = n - i;
    const auto q = hn::Add(hn::Round(hn::Mul(LoadTail(d, x + i, r, 0.0f), vinv)), vz);
    const auto keep = hn::And(hn::Ge(q, lo), hn::Le(q, hi));
    StoreTail(d, hn::IfThenElseZero(keep, LoadTail(d, dy + i, r, 0.0f)), dx + i, r);
  }
}

void QuantizeU8Row(const float* HWY_RESTRICT x, uint8_t* HWY_RESTRICT q, size_t n, float scale, int32_t zp) {
  const hn::ScalableTag<float> d;
  const hn::RebindToSigned<decltype(d)> di;
  const hn::Rebind<uint8_t, decltype(d)> du8;
  const size_t N = hn::Lanes(d);
  const auto vinv = hn::Set(d, 1.0f / scale), vz = hn::Set(d, static_cast<float>(zp));
  const auto lo = hn::Zero(d), hi = hn::Set(d, 255.0f);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto v = hn::Min(hn::Max(hn::Add(hn::Round(hn::Mul(hn::LoadU(d, x + i), vinv)), vz), lo), hi);
    hn::StoreU(hn::DemoteTo(du8, hn::ConvertTo(di, v)), du8, q + i);
  }
  if (i < n) {
    HWY_ALIGN uint8_t t[hn::MaxLanes(d)];
    const auto v = hn::Min(hn::Max(hn::Add(hn::Round(hn::Mul(LoadTail(d, x + i, n - i, 0.0f), vinv)), vz), lo), hi);
    hn::Store(hn::DemoteTo(du8, hn::ConvertTo(di, v)), du8, t);
    std::copy(t, t + (n - i), q + i);
  }
}

// lo, hi = min and max of x[0..n). A lane takes a value only when it compares
// below (above) the running one, so NaNs are skipped as in the reference.
void MinMaxRow(const float* HWY_RESTRICT x, size_t n, float* HWY_RESTRICT lo, float* HWY_RESTRICT hi) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const float inf = std::numeric_limits<float>::infinity();
  auto a0 = hn::Set(d, inf), a1 = a0, b0 = hn::Set(d, -inf), b1 = b0;
  auto step = [](auto& a, auto& b, auto v) {
    a = hn::IfThenElse(hn::Lt(v, a), v, a);
    b = hn::IfThenElse(hn::Gt(v, b), v, b);
  };
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    step(a0, b0, hn::LoadU(d, x + i));
    step(a1, b1, hn::LoadU(d, x + i + N));
  }
  for (; i + N <= n; i += N) step(a0, b0, hn::LoadU(d, x + i));
  // NaN in the tail lanes: it never compares, so it changes nothing.
  if (i < n) step(a1, b1, LoadTail(d, x + i, n - i, std::numeric_limits<float>::quiet_NaN()));
  *lo = hn::GetLane(hn::MinOfLanes(d, hn::Min(a0, a1)));
  *hi = hn::GetLane(hn::MaxOfLanes(d, hn::Max(b0, b1)));
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(FakeQuantRow);
HWY_EXPORT(FakeQuantBwdRow);
HWY_EXPORT(QuantizeU8Row);
HWY_EXPORT(MinMaxRow);

namespace {
constexpr int64_t kGrain = 1 << 15;  // elements per task

// Runs f(row, begin, end) over the rows of [outer * C, inner] in tasks of
// about kGrain elements (a long row is split).
template <class F>
void for_rows(int64_t outer, int64_t C, int64_t inner, F&& f) {
  const int64_t rows = outer * C;
  if (rows == 0 || inner == 0) return;
  const int64_t pieces = std::max<int64_t>(1, inner / kGrain);
  const int64_t per = (inner + pieces - 1) / pieces;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(per, 1));
  parallel_for(rows * pieces, grain, [&](int64_t s, int64_t e) {
    for (int64_t t = s; t < e; ++t) {
      const int64_t r = t / pieces, b = (t % pieces) * per;
      f(r, b, std::min(inner, b + per));
    }
  });
}
}  // namespace

void fake_quant_f32(const float* x, float* y, int64_t outer, int64_t C, int64_t inner, const float* scale,
                    const int32_t* zero_point, int32_t qmin, int32_t qmax) {
  for_rows(outer, C, inner, [&](int64_t r, int64_t b, int64_t e) {
    const int64_t c = r % C, at = r * inner + b;
    HWY_DYNAMIC_DISPATCH(FakeQuantRow)(x + at, y + at, static_cast<size_t>(e - b), scale[c], zero_point[c], qmin, qmax);
  });
}

void fake_quant_bwd_f32(const float* x, const float* dy, float* dx, int64_t outer, int64_t C, int64_t inner,
                        const float* scale, const int32_t* zero_point, int32_t qmin, int32_t qmax) {
  for_rows(outer, C, inner, [&](int64_t r, int64_t b, int64_t e) {
    const int64_t c = r % C, at = r * inner + b;
    HWY_DYNAMIC_DISPATCH(FakeQuantBwdRow)(x + at, dy + at, dx + at, static_cast<size_t>(e - b), scale[c],
                                          zero_point[c], qmin, qmax);
  });
}

void quantize_u8(const float* x, uint8_t* q, int64_t n, float scale, int32_t zero_point) {
  if (n < kGrain) {  // token-by-token inference: no task overhead
    if (n > 0) HWY_DYNAMIC_DISPATCH(QuantizeU8Row)(x, q, static_cast<size_t>(n), scale, zero_point);
    return;
  }
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    HWY_DYNAMIC_DISPATCH(QuantizeU8Row)(x + s, q + s, static_cast<size_t>(e - s), scale, zero_point);
  });
}

size_t min_max_scratch_bytes(int64_t C, int64_t n) {
  if (C != 1 || n < 2 * kGrain) return 0;
  return static_cast<size_t>(2 * ((n + kGrain - 1) / kGrain)) * sizeof(float);
}

void min_max_f32(const float* x, int64_t C, int64_t n, float* lo, float* hi, void* scratch) {
  if (C <= 0) return;
  if (n == 0) {
    std::fill(lo, lo + C, std::numeric_limits<float>::infinity());
    std::fill(hi, hi + C, -std::numeric_limits<float>::infinity());
    return;
  }
  if (C > 1 || n < 2 * kGrain) {  // rows in tasks of about kGrain elements
    parallel_for(C, std::max<int64_t>(1, kGrain / n), [&](int64_t s, int64_t e) {
      for (int64_t c = s; c < e; ++c) HWY_DYNAMIC_DISPATCH(MinMaxRow)(x + c * n, static_cast<size_t>(n), lo + c, hi + c);
    });
    return;
  }
  // One long row (a per-tensor observer): pieces, then their min and max.
  const int64_t pieces = (n + kGrain - 1) / kGrain;
  std::vector<float> own;
  if (!scratch) own.resize(static_cast<size_t>(2 * pieces));
  float* const plo = scratch ? static_cast<float*>(scratch) : own.data();
  float* const phi = plo + pieces;
  parallel_for(pieces, 1, [&](int64_t s, int64_t e) {
    for (int64_t k = s; k < e; ++k) {
      const int64_t b = k * kGrain, len = std::min(n, b + kGrain) - b;
      HWY_DYNAMIC_DISPATCH(MinMaxRow)(x + b, static_cast<size_t>(len), &plo[k], &phi[k]);
    }
  });
  lo[0] = plo[0], hi[0] = phi[0];
  for (int64_t k = 1; k < pieces; ++k) lo[0] = std::min(lo[0], plo[k]), hi[0] = std::max(hi[0], phi[k]);
}

}  // namespace mmrec::kernels
#endif  // HWY_ONCE
