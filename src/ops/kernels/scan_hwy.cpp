// The scans' Highway tile kernels (runtime dispatch), declared in
// scan_tiles.h and driven by scan_drive.cpp. A tile is `nt` time rows of `nc`
// channels at row stride D; every tile function walks rows t-outer /
// channels-inner so that each row is one contiguous, vectorized stream.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/scan_hwy.cpp"
#include <algorithm>
#include <cfloat>
#include <cstddef>

#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/cache_control.h>
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "ops/kernels/exp_hwy-inl.h"
#include "ops/kernels/hwy_rows-inl.h"
#include "ops/kernels/scan_tiles.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// A block's decay product below this is flushed to 0: its carry contribution
// is then below float resolution, and flushing keeps long products from
// sliding into (slow) denormals.
constexpr float kTinyDecay = 1e-30f;
constexpr float kLogMin = -50.0f;           // clamp of log a in cumprod_scan
constexpr float kMinA = 1.92874985e-22f;    // exp(-50): below it log a is clamped

// Calls body(i, n) over [0, nc) in vectors; n < Lanes only for the tail.
template <class Body>
HWY_INLINE void ForLanes(DF d, size_t nc, const Body& body) {
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= nc; i += N) body(i, N);
  if (i < nc) body(i, nc - i);
}

// The same from the top channel down. Reverse-time kernels walk every row
// downwards so that their whole address stream descends: the hardware
// prefetchers follow that, but not rows descending with ascending insides
// (measured 3x slower).
template <class Body>
HWY_INLINE void ForLanesDown(DF d, size_t nc, const Body& body) {
  const size_t N = hn::Lanes(d);
  size_t i = nc;
  for (; i >= N; i -= N) body(i - N, N);
  if (i > 0) body(0, i);
}

// Load/store of n lanes (full vector when n == Lanes; the tail through
// hwy_rows-inl.h's staging buffer, so nothing leaves the row). out<kStream> writes a
// result row: non-temporal when streaming (then n == Lanes and the row is
// vector-aligned; the driver guarantees both).
struct Slice {
  DF d;
  size_t n;
  HWY_INLINE VF load(const float* p, float fill = 0.0f) const {
    return n == hn::Lanes(d) ? hn::LoadU(d, p) : LoadTail(d, p, n, fill);
  }
  HWY_INLINE void store(VF v, float* p) const {
    if (n == hn::Lanes(d))
      hn::StoreU(v, d, p);
    else
      StoreTail(d, v, p, n);
  }
  template <bool kStream>
  HWY_INLINE void out(VF v, float* p) const {
    if (kStream)
      hn::Stream(v, d, p);
    else
      store(v, p);
  }
};

HWY_INLINE VF FlushTiny(DF d, VF p) { return hn::IfThenZeroElse(hn::Lt(hn::Abs(p), hn::Set(d, kTinyDecay)), p); }

HWY_INLINE VF ClampedLog(DF d, VF a) {
  const VF l = hn::Log(d, hn::Max(a, hn::Set(d, FLT_MIN)));
  return hn::Min(hn::Max(l, hn::Set(d, kLogMin)), hn::Zero(d));
}

// ---- linear_scan forward ----

// h_t = a_t h_{t-1} + b_t from the carry st [nc]; st leaves as h_{nt-1}. The
// state lives in st (L1), never re-read from h: h may be streamed past the cache.
template <bool kStream>
HWY_INLINE void LinFwdT(const float* a, const float* b, float* h, size_t D, size_t nt, size_t nc, float* st) {
  const DF d;
  for (size_t t = 0; t < nt; ++t) {
    const size_t o = t * D;
    ForLanes(d, nc, [&](size_t i, size_t n) {
      const Slice l{d, n};
      const VF v = hn::MulAdd(l.load(a + o + i), l.load(st + i), l.load(b + o + i));
      l.store(v, st + i);
      l.out<kStream>(v, h + o + i);
    });
  }
  if (kStream) hwy::FlushStream();
}

void LinFwd(const float* a, const float* b, float* h, size_t D, size_t nt, size_t nc, float* st, bool stream) {
  if (stream)
    LinFwdT<true>(a, b, h, D, nt, nc, st);
  else
    LinFwdT<false>(a, b, h, D, nt, nc, st);
}

// Aggregate with zero carry-in: y = local end state, x = Π a (flushed).
void LinAgg(const float* a, const float* b, size_t D, size_t nt, size_t nc, float* x, float* y) {
  const DF d;
  std::fill(x, x + nc, 1.0f);
  std::fill(y, y + nc, 0.0f);
  for (size_t t = 0; t < nt; ++t) {
    const float* at = a + t * D;
    const float* bt = b + t * D;
    ForLanes(d, nc, [&](size_t i, size_t n) {
      const Slice l{d, n};
      const VF va = l.load(at + i);
      l.store(hn::MulAdd(va, l.load(y + i), l.load(bt + i)), y + i);
      l.store(FlushTiny(d, hn::Mul(l.load(x + i, 1.0f), va)), x + i);
    });
  }
}

// ---- linear_scan backward (reverse time) ----

// From carry c [nc] = a_{t+1} g_{t+1} at the tile's end: g_t = dh_t + c,
// db_t = g_t, da_t = g_t h_{t-1}, c = a_t g_t; c leaves as a_{t0} g_{t0}.
// h_{t0-1} is hprev0.
template <bool kDa, bool kDb, bool kStream = false>
HWY_INLINE void LinBwdT(const float* a, const float* h, const float* hprev0, const float* dh, float* da, float* db,
                        size_t D, size_t nt, size_t nc, float* c) {
  const DF d;
  for (size_t r = nt; r-- > 0;) {
    const size_t o = r * D;
    const float* hp = r > 0 ? h + o - D : hprev0;
    ForLanesDown(d, nc, [&](size_t i, size_t n) {
      const Slice l{d, n};
      const VF g = hn::Add(l.load(dh + o + i), l.load(c + i));
      if (kDb) l.out<kStream>(g, db + o + i);
      if (kDa) l.out<kStream>(hn::Mul(g, l.load(hp + i)), da + o + i);
      l.store(hn::Mul(l.load(a + o + i), g), c + i);
    });
  }
}

void LinBwd(const float* a, const float* h, const float* hprev0, const float* dh, float* da, float* db, size_t D,
            size_t nt, size_t nc, float* c, bool stream) {
  if (da && db && stream) {
    LinBwdT<true, true, true>(a, h, hprev0, dh, da, db, D, nt, nc, c);
    hwy::FlushStream();
  } else if (da && db)
    LinBwdT<true, true>(a, h, hprev0, dh, da, db, D, nt, nc, c);
  else if (da)
    LinBwdT<true, false>(a, h, hprev0, dh, da, db, D, nt, nc, c);
  else if (db)
    LinBwdT<false, true>(a, h, hprev0, dh, da, db, D, nt, nc, c);
  else
    LinBwdT<false, false>(a, h, hprev0, dh, da, db, D, nt, nc, c);
}

// Reverse aggregate with zero carry-in: y = a_{t0} g_{t0}, x = Π a (flushed).
void LinBwdAgg(const float* a, const float* dh, size_t D, size_t nt, size_t nc, float* x, float* y) {
  const DF d;
  std::fill(x, x + nc, 1.0f);
  std::fill(y, y + nc, 0.0f);
  for (size_t r = nt; r-- > 0;) {
    const size_t o = r * D;
    ForLanesDown(d, nc, [&](size_t i, size_t n) {
      const Slice l{d, n};
      const VF va = l.load(a + o + i);
      l.store(hn::Mul(va, hn::Add(l.load(dh + o + i), l.load(y + i))), y + i);
      l.store(FlushTiny(d, hn::Mul(l.load(x + i, 1.0f), va)), x + i);
    });
  }
}

// ---- cumprod_scan ----

// s [nc]: running Σ clamp(log a) (carry in and out); P_t = exp(s), s <= 0
// (ExpUpTo88 flushes P below FLT_MIN to 0).
template <bool kStream>
HWY_INLINE void CumFwdT(const float* a, float* P, size_t D, size_t nt, size_t nc, float* s) {
  const DF d;
  for (size_t t = 0; t < nt; ++t) {
    const size_t o = t * D;
    ForLanes(d, nc, [&](size_t i, size_t n) {
      const Slice l{d, n};
      const VF sum = hn::Add(l.load(s + i), ClampedLog(d, l.load(a + o + i, 1.0f)));
      l.store(sum, s + i);
      l.out<kStream>(ExpUpTo88(d, sum), P + o + i);
    });
  }
  if (kStream) hwy::FlushStream();
}

void CumFwd(const float* a, float* P, size_t D, size_t nt, size_t nc, float* s, bool stream) {
  if (stream)
    CumFwdT<true>(a, P, D, nt, nc, s);
  else
    CumFwdT<false>(a, P, D, nt, nc, s);
}

void CumAgg(const float* a, size_t D, size_t nt, size_t nc, float* y) {
  const DF d;
  std::fill(y, y + nc, 0.0f);
  for (size_t t = 0; t < nt; ++t) {
    const size_t o = t * D;
    ForLanes(d, nc, [&](size_t i, size_t n) {
      const Slice l{d, n};
      l.store(hn::Add(l.load(y + i), ClampedLog(d, l.load(a + o + i, 1.0f))), y + i);
    });
  }
}

// acc [nc]: Σ_{u≥t} dP_u P_u (carry in and out, reverse time);
// da_t = acc / a_t where exp(-50) ≤ a_t ≤ 1, else 0.
void CumBwd(const float* a, const float* P, const float* dP, float* da, size_t D, size_t nt, size_t nc, float* acc) {
  const DF d;
  const VF lo = hn::Set(d, kMinA), one = hn::Set(d, 1.0f);
  for (size_t r = nt; r-- > 0;) {
    const size_t o = r * D;
    ForLanesDown(d, nc, [&](size_t i, size_t n) {
      const Slice l{d, n};
      const VF s = hn::MulAdd(l.load(dP + o + i), l.load(P + o + i), l.load(acc + i));
      l.store(s, acc + i);
      const VF va = l.load(a + o + i, 1.0f);
      const auto in = hn::And(hn::Ge(va, lo), hn::Le(va, one));
      l.store(hn::IfThenElseZero(in, hn::Div(s, va)), da + o + i);
    });
  }
}

void CumBwdAgg(const float* P, const float* dP, size_t D, size_t nt, size_t nc, float* y) {
  const DF d;
  std::fill(y, y + nc, 0.0f);
  for (size_t r = nt; r-- > 0;) {
    const size_t o = r * D;
    ForLanesDown(d, nc, [&](size_t i, size_t n) {
      const Slice l{d, n};
      l.store(hn::MulAdd(l.load(dP + o + i), l.load(P + o + i), l.load(y + i)), y + i);
    });
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(LinFwd);
HWY_EXPORT(LinAgg);
HWY_EXPORT(LinBwd);
HWY_EXPORT(LinBwdAgg);
HWY_EXPORT(CumFwd);
HWY_EXPORT(CumAgg);
HWY_EXPORT(CumBwd);
HWY_EXPORT(CumBwdAgg);

// Entry points for the driver (scan_tiles.h): one dispatch per tile.
namespace scan_tiles {
void lin_fwd(const float* a, const float* b, float* h, size_t D, size_t nt, size_t nc, float* st, bool stream) {
  HWY_DYNAMIC_DISPATCH(LinFwd)(a, b, h, D, nt, nc, st, stream);
}
void lin_agg(const float* a, const float* b, size_t D, size_t nt, size_t nc, float* x, float* y) {
  HWY_DYNAMIC_DISPATCH(LinAgg)(a, b, D, nt, nc, x, y);
}
void lin_bwd(const float* a, const float* h, const float* hprev0, const float* dh, float* da, float* db, size_t D,
             size_t nt, size_t nc, float* g, bool stream) {
  HWY_DYNAMIC_DISPATCH(LinBwd)(a, h, hprev0, dh, da, db, D, nt, nc, g, stream);
}
void lin_bwd_agg(const float* a, const float* dh, size_t D, size_t nt, size_t nc, float* x, float* y) {
  HWY_DYNAMIC_DISPATCH(LinBwdAgg)(a, dh, D, nt, nc, x, y);
}
void cum_fwd(const float* a, float* P, size_t D, size_t nt, size_t nc, float* s, bool stream) {
  HWY_DYNAMIC_DISPATCH(CumFwd)(a, P, D, nt, nc, s, stream);
}
void cum_agg(const float* a, size_t D, size_t nt, size_t nc, float* y) {
  HWY_DYNAMIC_DISPATCH(CumAgg)(a, D, nt, nc, y);
}
void cum_bwd(const float* a, const float* P, const float* dP, float* da, size_t D, size_t nt, size_t nc, float* acc) {
  HWY_DYNAMIC_DISPATCH(CumBwd)(a, P, dP, da, D, nt, nc, acc);
}
void cum_bwd_agg(const float* P, const float* dP, size_t D, size_t nt, size_t nc, float* y) {
  HWY_DYNAMIC_DISPATCH(CumBwdAgg)(P, dP, D, nt, nc, y);
}
}  // namespace scan_tiles
}  // namespace mmrec::kernels
#endif  // HWY_ONCE
