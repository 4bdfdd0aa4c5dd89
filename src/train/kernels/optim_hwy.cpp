// Highway optimizer kernels, compiled for every target and picked at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "train/kernels/optim_hwy.cpp"
#include <cmath>
#include <vector>

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "tensor/threads.h"
#include "train/kernels/optim.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void AdamWRow(float* HWY_RESTRICT p, const float* HWY_RESTRICT g, float* HWY_RESTRICT m, float* HWY_RESTRICT v,
              size_t n, const AdamWScalars& s) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const auto decay = hn::Set(d, s.decay), b1 = hn::Set(d, s.beta1), b2 = hn::Set(d, s.beta2);
  const auto c1 = hn::Set(d, s.one_minus_beta1), c2 = hn::Set(d, s.one_minus_beta2);
  const auto step = hn::Set(d, s.step_size), ibc = hn::Set(d, s.inv_bc2_sqrt), eps = hn::Set(d, s.eps);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto vg = hn::LoadU(d, g + i);
    const auto vm = hn::MulAdd(c1, vg, hn::Mul(b1, hn::LoadU(d, m + i)));
    const auto vv = hn::MulAdd(hn::Mul(c2, vg), vg, hn::Mul(b2, hn::LoadU(d, v + i)));
    const auto den = hn::MulAdd(hn::Sqrt(vv), ibc, eps);
    const auto vp = hn::Mul(hn::LoadU(d, p + i), decay);
    hn::StoreU(vm, d, m + i);
    hn::StoreU(vv, d, v + i);
    hn::StoreU(hn::NegMulAdd(step, hn::Div(vm, den), vp), d, p + i);
  }
  for (; i < n; ++i) {  // the same arithmetic, one lane at a time
    const float vm = std::fma(s.one_minus_beta1, g[i], s.beta1 * m[i]);
    const float vv = std::fma(s.one_minus_beta2 * g[i], g[i], s.beta2 * v[i]);
    const float den = std::fma(std::sqrt(vv), s.inv_bc2_sqrt, s.eps);
    m[i] = vm;
    v[i] = vv;
    p[i] = std::fma(-s.step_size, vm / den, p[i] * s.decay);
  }
}

float SumSquaresRow(const float* HWY_RESTRICT x, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const auto x0 = hn::LoadU(d, x + i), x1 = hn::LoadU(d, x + i + N);
    a0 = hn::MulAdd(x0, x0, a0);
    a1 = hn::MulAdd(x1, x1, a1);
  }
  float s = hn::GetLane(hn::SumOfLanes(d, hn::Add(a0, a1)));
  for (; i < n; ++i) s += x[i] * x[i];
  return s;
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(AdamWRow);
HWY_EXPORT(SumSquaresRow);

namespace {
constexpr int64_t kGrain = 1 << 14;   // elements per task
constexpr int64_t kBlock = 1 << 12;   // sum of squares: f32 within a block, double across blocks
}  // namespace

AdamWScalars adamw_scalars(double lr, double beta1, double beta2, double eps, double weight_decay, int64_t t) {
  AdamWScalars s;
  s.decay = static_cast<float>(1.0 - lr * weight_decay);
  s.beta1 = static_cast<float>(beta1);
  s.beta2 = static_cast<float>(beta2);
  s.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  s.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  s.step_size = static_cast<float>(lr / (1.0 - std::pow(beta1, static_cast<double>(t))));
  s.inv_bc2_sqrt = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(beta2, static_cast<double>(t))));
  s.eps = static_cast<float>(eps);
  return s;
}

void adamw_f32(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    HWY_DYNAMIC_DISPATCH(AdamWRow)(p + b, g + b, m + b, v + b, static_cast<size_t>(e - b), s);
  });
}

double sum_squares_f32(const float* x, int64_t n) {
  if (n <= 0) return 0.0;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> part(static_cast<size_t>(blocks));
  parallel_for(blocks, kGrain / kBlock, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t s = k * kBlock, len = std::min(kBlock, n - s);
      part[static_cast<size_t>(k)] = HWY_DYNAMIC_DISPATCH(SumSquaresRow)(x + s, static_cast<size_t>(len));
    }
  });
  double total = 0.0;
  for (double v : part) total += v;
  return total;
}

void scale_inplace_f32(float* x, int64_t n, float s) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] *= s;
  });
}

}  // namespace mmrec::kernels
#endif  // HWY_ONCE
