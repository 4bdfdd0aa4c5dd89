// Highway helpers shared by the row kernels (activation, norm, softmax):
// maps and row reductions whose partial last vector goes through a small
// padded buffer, because MaskedLoad in Highway 1.0.3 is a full aligned load
// on SSE4 and may read past the end. Include after <hwy/highway.h> in a file
// compiled per target by foreach_target.h (the toggle guard below).
//   Map1(d, x, y, n, 0.0f, false, [&](auto v) { return hn::Mul(v, v); });
#ifndef MMREC_OPS_KERNELS_HWY_ROWS_ONCE_
#define MMREC_OPS_KERNELS_HWY_ROWS_ONCE_
#include <cstdint>
namespace mmrec::kernels {
// Outputs at least this large cannot stay in the 32 MiB L3 next to their
// inputs: they are stored non-temporally (no read-for-ownership of the
// output lines: +25-30 % DRAM bandwidth on this machine, MACHINE.md).
inline bool stream_stores(int64_t out_bytes) { return out_bytes >= (int64_t{24} << 20); }
}  // namespace mmrec::kernels
#endif

#if defined(MMREC_OPS_KERNELS_HWY_ROWS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MMREC_OPS_KERNELS_HWY_ROWS_INL_H_
#undef MMREC_OPS_KERNELS_HWY_ROWS_INL_H_
#else
#define MMREC_OPS_KERNELS_HWY_ROWS_INL_H_
#endif

#include <cstddef>
#include <cstdint>
#include <limits>

#include <hwy/cache_control.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The n < Lanes(d) elements at p, `fill` in the other lanes.
template <class D, typename T = hn::TFromD<D>>
HWY_INLINE hn::Vec<D> LoadTail(D d, const T* HWY_RESTRICT p, size_t n, T fill) {
  HWY_ALIGN T buf[hn::MaxLanes(d)];
  for (size_t k = 0; k < hn::Lanes(d); ++k) buf[k] = k < n ? p[k] : fill;
  return hn::Load(d, buf);
}

// Stores the first n < Lanes(d) lanes of v at p.
template <class D, typename T = hn::TFromD<D>>
HWY_INLINE void StoreTail(D d, hn::Vec<D> v, T* HWY_RESTRICT p, size_t n) {
  HWY_ALIGN T buf[hn::MaxLanes(d)];
  hn::Store(v, d, buf);
  for (size_t k = 0; k < n; ++k) p[k] = buf[k];
}

// Full-vector store; non-temporal when `stream` (then p must be aligned to
// the vector size, and the caller ends with hwy::FlushStream()).
template <class D, typename T = hn::TFromD<D>>
HWY_INLINE void StoreMaybeStream(D d, hn::Vec<D> v, T* HWY_RESTRICT p, bool stream) {
  if (stream)
    hn::Stream(v, d, p);
  else
    hn::StoreU(v, d, p);
}

// y[i] = f(x[i]) for i < n; the padding lanes of the tail hold `fill`.
// With `stream`, full vectors whose destination is aligned are stored
// non-temporally (large outputs that do not fit the cache).
template <class D, class F>
HWY_INLINE void Map1(D d, const float* HWY_RESTRICT x, float* HWY_RESTRICT y, size_t n, float fill, bool stream,
                     const F& f) {
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  if (stream) {
    for (; i < n && (reinterpret_cast<uintptr_t>(y + i) % (N * sizeof(float))) != 0; ++i) {
      // Peel to an aligned destination one lane at a time.
      StoreTail(d, f(LoadTail(d, x + i, 1, fill)), y + i, 1);
    }
  }
  for (; i + N <= n; i += N) StoreMaybeStream(d, f(hn::LoadU(d, x + i)), y + i, stream);
  if (i < n) StoreTail(d, f(LoadTail(d, x + i, n - i, fill)), y + i, n - i);
}

// y[i] = f(a[i], b[i]) for i < n.
template <class D, class F>
HWY_INLINE void Map2(D d, const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, float* HWY_RESTRICT y,
                     size_t n, float fill_a, float fill_b, bool stream, const F& f) {
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  if (stream) {
    for (; i < n && (reinterpret_cast<uintptr_t>(y + i) % (N * sizeof(float))) != 0; ++i)
      StoreTail(d, f(LoadTail(d, a + i, 1, fill_a), LoadTail(d, b + i, 1, fill_b)), y + i, 1);
  }
  for (; i + N <= n; i += N) StoreMaybeStream(d, f(hn::LoadU(d, a + i), hn::LoadU(d, b + i)), y + i, stream);
  if (i < n) StoreTail(d, f(LoadTail(d, a + i, n - i, fill_a), LoadTail(d, b + i, n - i, fill_b)), y + i, n - i);
}

// Sum of f(a[i]) over i < n (tail lanes hold `fill`, for which f must give 0).
template <class D, class F>
HWY_INLINE float Reduce1(D d, const float* HWY_RESTRICT a, size_t n, float fill, const F& f) {
  const size_t N = hn::Lanes(d);
  auto s0 = hn::Zero(d), s1 = hn::Zero(d);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    s0 = hn::Add(s0, f(hn::LoadU(d, a + i)));
    s1 = hn::Add(s1, f(hn::LoadU(d, a + i + N)));
  }
  for (; i + N <= n; i += N) s0 = hn::Add(s0, f(hn::LoadU(d, a + i)));
  if (i < n) s1 = hn::Add(s1, f(LoadTail(d, a + i, n - i, fill)));
  return hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
}

// Sum of a[i] * b[i] over i < n.
template <class D>
HWY_INLINE float Dot(D d, const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, size_t n) {
  const size_t N = hn::Lanes(d);
  auto s0 = hn::Zero(d), s1 = hn::Zero(d);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
    s1 = hn::MulAdd(hn::LoadU(d, a + i + N), hn::LoadU(d, b + i + N), s1);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
  if (i < n) s1 = hn::MulAdd(LoadTail(d, a + i, n - i, 0.0f), LoadTail(d, b + i, n - i, 0.0f), s1);
  return hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
}

// Maximum of a[i] over i < n (-inf for n == 0).
template <class D>
HWY_INLINE float MaxRow(D d, const float* HWY_RESTRICT a, size_t n) {
  const size_t N = hn::Lanes(d);
  const float ninf = -std::numeric_limits<float>::infinity();
  auto m0 = hn::Set(d, ninf), m1 = m0;
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    m0 = hn::Max(m0, hn::LoadU(d, a + i));
    m1 = hn::Max(m1, hn::LoadU(d, a + i + N));
  }
  for (; i + N <= n; i += N) m0 = hn::Max(m0, hn::LoadU(d, a + i));
  if (i < n) m1 = hn::Max(m1, LoadTail(d, a + i, n - i, ninf));
  return hn::GetLane(hn::MaxOfLanes(d, hn::Max(m0, m1)));
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#endif  // MMREC_OPS_KERNELS_HWY_ROWS_INL_H_ toggle
