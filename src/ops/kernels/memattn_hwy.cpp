// Highway memory attention kernels (memattn.h), compiled for every target
// and picked at run time. A task takes one head of one batch row: it copies
// the head's levels into rows padded to whole vectors (kt [d, S] and v
// [S, d]: a few KiB that stay in L1 for all its tokens), then, for blocks of
// tokens, makes the scores and the output as small products in vectors
// (GemmRows), and the softmax in vectors over the slots.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/memattn_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "ops/kernels/exp_hwy-inl.h"
#include "ops/kernels/hwy_rows-inl.h"
#include "ops/kernels/memattn.h"
#include "tensor/threads.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

size_t Padded(size_t n) {
  const size_t N = hn::Lanes(DF());
  return (n + N - 1) / N * N;
}

// rows x n floats (`stride` apart) into rows of Padded(n), zeros after.
void PadRows(const float* src, size_t rows, size_t n, size_t stride, float* dst) {
  const size_t np = Padded(n);
  for (size_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * np, src + r * stride, n * sizeof(float));
    std::fill(dst + r * np + n, dst + (r + 1) * np, 0.0f);
  }
}

// The transpose of rows x n floats (`stride` apart) as n rows of Padded(rows).
void PadTransposed(const float* src, size_t rows, size_t n, size_t stride, float* dst) {
  const size_t rp = Padded(rows);
  for (size_t c = 0; c < n; ++c) {
    for (size_t r = 0; r < rows; ++r) dst[c * rp + r] = src[r * stride + c];
    std::fill(dst + c * rp + rows, dst + (c + 1) * rp, 0.0f);
  }
}

// C[r, 0..cp) (+)= Σ_i a[r rs + i es] · b[i, 0..cp) for r < R: b rows and the
// C rows (ldc apart) are cp floats, a multiple of the vector. R rows times
// 8 / R column vectors at once keep eight independent sums in flight (one
// sum alone waits on the add's latency at every step).
template <int R>
void GemmRows(const float* a, size_t rs, size_t es, size_t I, const float* b, size_t cp, float* c, size_t ldc,
              bool accumulate) {
  const DF df;
  const size_t N = hn::Lanes(df);
  constexpr int KB = 8 / R;
  using V = hn::Vec<DF>;
  size_t k = 0;
  for (; k + KB * N <= cp; k += KB * N) {
    V acc[R][KB];
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < KB; ++j) acc[r][j] = accumulate ? hn::LoadU(df, c + r * ldc + k + j * N) : hn::Zero(df);
    for (size_t i = 0; i < I; ++i) {
      V bv[KB];
      for (int j = 0; j < KB; ++j) bv[j] = hn::LoadU(df, b + i * cp + k + j * N);
      for (int r = 0; r < R; ++r) {
        const V av = hn::Set(df, a[r * rs + i * es]);
        for (int j = 0; j < KB; ++j) acc[r][j] = hn::MulAdd(av, bv[j], acc[r][j]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < KB; ++j) hn::StoreU(acc[r][j], df, c + r * ldc + k + j * N);
  }
  for (; k < cp; k += N) {  // the last column vectors, fewer than KB
    V acc[R];
    for (int r = 0; r < R; ++r) acc[r] = accumulate ? hn::LoadU(df, c + r * ldc + k) : hn::Zero(df);
    for (size_t i = 0; i < I; ++i) {
      const V bv = hn::LoadU(df, b + i * cp + k);
      for (int r = 0; r < R; ++r) acc[r] = hn::MulAdd(hn::Set(df, a[r * rs + i * es]), bv, acc[r]);
    }
    for (int r = 0; r < R; ++r) hn::StoreU(acc[r], df, c + r * ldc + k);
  }
}

// GemmRows over any number of rows: blocks of 8, then 4, 2, 1.
void Gemm(size_t rows, const float* a, size_t rs, size_t es, size_t I, const float* b, size_t cp, float* c,
          size_t ldc, bool accumulate) {
  size_t r = 0;
  for (; r + 8 <= rows; r += 8) GemmRows<8>(a + r * rs, rs, es, I, b, cp, c + r * ldc, ldc, accumulate);
  if (r + 4 <= rows) GemmRows<4>(a + r * rs, rs, es, I, b, cp, c + r * ldc, ldc, accumulate), r += 4;
  if (r + 2 <= rows) GemmRows<2>(a + r * rs, rs, es, I, b, cp, c + r * ldc, ldc, accumulate), r += 2;
  if (r < rows) GemmRows<1>(a + r * rs, rs, es, I, b, cp, c + r * ldc, ldc, accumulate);
}

// The per-thread rows of a task (reused, grown as needed).
struct Rows {
  std::vector<float> kt, v, k, vt, gk, gv, sc, add, o, g;
  static Rows& mine() {
    thread_local Rows r;
    return r;
  }
};

constexpr int64_t kTokens = 32;  // tokens a task takes at once (rows of its scores in L1)

void MemattnHead(const float* q, const float* kt, const float* v, const float* mask, float scale, float* out,
                 float* p, const MemattnShape& s, int64_t bh) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const int64_t b = bh / s.H, h = bh % s.H, d = s.D / s.H, S = s.S, T = s.T;
  const size_t Sp = Padded(static_cast<size_t>(S)), dp = Padded(static_cast<size_t>(d));
  Rows& w = Rows::mine();
  w.kt.resize(static_cast<size_t>(d) * Sp), w.v.resize(static_cast<size_t>(S) * dp);
  w.sc.resize(kTokens * Sp), w.add.resize(Sp), w.o.resize(kTokens * dp);
  PadRows(kt + bh * d * S, static_cast<size_t>(d), static_cast<size_t>(S), static_cast<size_t>(S), w.kt.data());
  PadRows(v + bh * S * d, static_cast<size_t>(S), static_cast<size_t>(d), static_cast<size_t>(d), w.v.data());
  float* add = w.add.data();  // the mask, -inf in the padding lanes (their weight is 0)
  for (size_t k = 0; k < Sp; ++k)
    add[k] = k < static_cast<size_t>(S) ? (mask ? mask[k] : 0.0f) : -std::numeric_limits<float>::infinity();
  const auto vscale = hn::Set(df, scale);
  for (int64_t t0 = 0; t0 < T; t0 += kTokens) {
    const size_t R = static_cast<size_t>(std::min(kTokens, T - t0));
    const float* q0 = q + b * s.q_batch + t0 * s.q_row + h * d;
    // scores [R, Sp] = q · Kᵀ, then per row scale, mask and softmax in vectors over the slots
    Gemm(R, q0, static_cast<size_t>(s.q_row), 1, static_cast<size_t>(d), w.kt.data(), Sp, w.sc.data(), Sp, false);
    for (size_t r = 0; r < R; ++r) {
      float* sc = w.sc.data() + r * Sp;
      auto mx = hn::Set(df, -std::numeric_limits<float>::infinity());
      for (size_t k = 0; k < Sp; k += N) {
        const auto z = hn::MulAdd(hn::LoadU(df, sc + k), vscale, hn::LoadU(df, add + k));
        hn::StoreU(z, df, sc + k);
        mx = hn::Max(mx, z);
      }
      const auto vmax = hn::Set(df, hn::GetLane(hn::MaxOfLanes(df, mx)));
      auto sum = hn::Zero(df);
      for (size_t k = 0; k < Sp; k += N) {
        const auto e = ExpUpTo88(df, hn::Sub(hn::LoadU(df, sc + k), vmax));
        hn::StoreU(e, df, sc + k);
        sum = hn::Add(sum, e);
      }
      const auto inv = hn::Set(df, 1.0f / hn::GetLane(hn::SumOfLanes(df, sum)));
      for (size_t k = 0; k < Sp; k += N) hn::StoreU(hn::Mul(hn::LoadU(df, sc + k), inv), df, sc + k);
      if (p) std::memcpy(p + (bh * T + t0 + static_cast<int64_t>(r)) * S, sc, static_cast<size_t>(S) * sizeof(float));
    }
    // out [R, d] = P · V
    Gemm(R, w.sc.data(), Sp, 1, static_cast<size_t>(S), w.v.data(), dp, w.o.data(), dp, false);
    for (size_t r = 0; r < R; ++r)
      std::memcpy(out + b * s.o_batch + (t0 + static_cast<int64_t>(r)) * s.o_row + h * d, w.o.data() + r * dp,
                  static_cast<size_t>(d) * sizeof(float));
  }
}

void MemattnBwdHead(const float* q, const float* kt, const float* v, const float* p, const float* dout, float scale,
                    float* dq, float* dkt, float* dv, const MemattnShape& s, int64_t bh) {
  const int64_t b = bh / s.H, h = bh % s.H, d = s.D / s.H, S = s.S, T = s.T;
  const size_t Sp = Padded(static_cast<size_t>(S)), dp = Padded(static_cast<size_t>(d));
  const size_t ud = static_cast<size_t>(d), uS = static_cast<size_t>(S);
  Rows& w = Rows::mine();
  w.k.resize(uS * dp), w.vt.resize(ud * Sp);
  w.gk.assign(ud * Sp, 0.0f), w.gv.assign(uS * dp, 0.0f);
  w.sc.resize(kTokens * Sp), w.g.resize(kTokens * Sp), w.o.resize(kTokens * dp);
  PadTransposed(kt + bh * d * S, ud, uS, uS, w.k.data());  // K [S, d]
  PadTransposed(v + bh * S * d, uS, ud, ud, w.vt.data());  // Vᵀ [d, S]
  float *pp = w.sc.data(), *g = w.g.data(), *go = w.o.data();
  for (int64_t t0 = 0; t0 < T; t0 += kTokens) {
    const size_t R = static_cast<size_t>(std::min(kTokens, T - t0));
    PadRows(p + (bh * T + t0) * S, R, uS, uS, pp);                           // P [R, Sp]
    PadRows(dout + b * s.o_batch + t0 * s.o_row + h * d, R, ud, static_cast<size_t>(s.o_row), go);  // dO [R, dp]
    // dP [R, Sp] = dO · Vᵀ, then G = P ⊙ (dP - rowsum(P ⊙ dP)) (zero in the padding)
    Gemm(R, go, dp, 1, ud, w.vt.data(), Sp, g, Sp, false);
    for (size_t r = 0; r < R; ++r) {
      float *gr = g + r * Sp, *pr = pp + r * Sp;
      float c = 0;
      for (size_t k = 0; k < uS; ++k) c += pr[k] * gr[k];
      for (size_t k = 0; k < Sp; ++k) gr[k] = pr[k] * (gr[k] - c);
    }
    const float* q0 = q + b * s.q_batch + t0 * s.q_row + h * d;
    // dKt [d, Sp] += Qᵀ G, dV [S, dp] += Pᵀ dO
    Gemm(ud, q0, 1, static_cast<size_t>(s.q_row), R, g, Sp, w.gk.data(), Sp, true);
    Gemm(uS, pp, 1, Sp, R, go, dp, w.gv.data(), dp, true);
    if (dq) {  // dQ [R, d] = scale G · K (into dO's rows, read no more)
      Gemm(R, g, Sp, 1, uS, w.k.data(), dp, go, dp, false);
      for (size_t r = 0; r < R; ++r) {
        float* dst = dq + (b * T + t0 + static_cast<int64_t>(r)) * s.D + h * d;
        for (size_t j = 0; j < ud; ++j) dst[j] = scale * go[r * dp + j];
      }
    }
  }
  if (dkt)
    for (int64_t i = 0; i < d; ++i)
      for (int64_t k = 0; k < S; ++k) dkt[(bh * d + i) * S + k] = scale * w.gk[static_cast<size_t>(i) * Sp + static_cast<size_t>(k)];
  if (dv)
    for (int64_t k = 0; k < S; ++k) std::memcpy(dv + (bh * S + k) * d, w.gv.data() + k * dp, ud * sizeof(float));
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(MemattnHead);
HWY_EXPORT(MemattnBwdHead);

namespace {
// Heads of one batch row in tasks; a call of little work (a generated
// token: one row, a few KiB of levels a head) stays on the caller.
template <class F>
void for_heads(const MemattnShape& s, F&& f) {
  const int64_t BH = s.B * s.H;
  if (s.T * s.S * s.D < (int64_t{1} << 17)) {
    for (int64_t bh = 0; bh < BH; ++bh) f(bh);
    return;
  }
  parallel_for(BH, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t bh = lo; bh < hi; ++bh) f(bh);
  });
}
}  // namespace

void memattn_f32(const float* q, const float* kt, const float* v, const float* mask, float scale, float* out,
                 float* p, const MemattnShape& s) {
  if (s.B * s.T * s.D == 0) return;
  if (s.S == 0) {
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t t = 0; t < s.T; ++t) std::fill_n(out + b * s.o_batch + t * s.o_row, s.D, 0.0f);
    return;
  }
  for_heads(s, [&](int64_t bh) { HWY_DYNAMIC_DISPATCH(MemattnHead)(q, kt, v, mask, scale, out, p, s, bh); });
}

void memattn_bwd_f32(const float* q, const float* kt, const float* v, const float* p, const float* dout,
                     float scale, float* dq, float* dkt, float* dv, const MemattnShape& s) {
  const int64_t d = s.H > 0 ? s.D / s.H : 0;
  if (s.S == 0 || s.T == 0) {
    if (dq) std::fill(dq, dq + s.B * s.T * s.D, 0.0f);
    if (dkt) std::fill(dkt, dkt + s.B * s.H * d * s.S, 0.0f);
    if (dv) std::fill(dv, dv + s.B * s.H * s.S * d, 0.0f);
    return;
  }
  for_heads(s, [&](int64_t bh) {
    HWY_DYNAMIC_DISPATCH(MemattnBwdHead)(q, kt, v, p, dout, scale, dq, dkt, dv, s, bh);
  });
}
}  // namespace mmrec::kernels
#endif  // HWY_ONCE
