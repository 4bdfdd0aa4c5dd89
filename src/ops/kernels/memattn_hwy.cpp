// Highway memory attention kernels (memattn.h), compiled for every target
// and picked at run time. A call first lays every head's levels out in rows
// padded to whole vectors (scratch: kt [d, S] and v [S, d] a head forward,
// K [S, d] and Vᵀ [d, S] backward; a few KiB a head, in cache for all its
// tokens). Then a forward task takes a block of tokens of one batch row and
// goes head after head (the block's rows of q and out whole in cache); a
// backward task takes a batch row's heads over all its tokens (dkt and dv
// sum over them). The products are small GEMMs in vectors (GemmRows), the
// softmax runs in vectors over the slots, in the weights' padded rows.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/kernels/memattn_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "ops/kernels/exp_hwy-inl.h"
#include "ops/kernels/memattn.h"
#include "tensor/threads.h"

HWY_BEFORE_NAMESPACE();
namespace mmrec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

// Rows of whole vectors (at most kMemattnLanes lanes: the padded strides of
// memattn.h hold them).
size_t Padded(size_t n) {
  const size_t N = hn::Lanes(DF());
  return (n + N - 1) / N * N;
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
  // (Fully unrolled, so that the sums live in registers: an array of them
  // left in memory costs more than the products.)
  size_t k = 0;
  for (; k + KB * N <= cp; k += KB * N) {
    V acc[R][KB];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int j = 0; j < KB; ++j) acc[r][j] = accumulate ? hn::LoadU(df, c + r * ldc + k + j * N) : hn::Zero(df);
    for (size_t i = 0; i < I; ++i) {
      V bv[KB];
#pragma GCC unroll 8
      for (int j = 0; j < KB; ++j) bv[j] = hn::LoadU(df, b + i * cp + k + j * N);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const V av = hn::Set(df, a[r * rs + i * es]);
#pragma GCC unroll 8
        for (int j = 0; j < KB; ++j) acc[r][j] = hn::MulAdd(av, bv[j], acc[r][j]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int j = 0; j < KB; ++j) hn::StoreU(acc[r][j], df, c + r * ldc + k + j * N);
  }
  for (; k < cp; k += N) {  // the last column vectors, fewer than KB
    V acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = accumulate ? hn::LoadU(df, c + r * ldc + k) : hn::Zero(df);
    for (size_t i = 0; i < I; ++i) {
      const V bv = hn::LoadU(df, b + i * cp + k);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r] = hn::MulAdd(hn::Set(df, a[r * rs + i * es]), bv, acc[r]);
    }
#pragma GCC unroll 8
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

// Where head bh's padded levels are in the scratch: two blocks of
// memattn_level_floats(s) / 2 floats, kt-like [d, Sp] rows then v-like
// [S, dp] rows (forward), K [S, dp] then Vᵀ [d, Sp] (backward).
struct Levels {
  float *kd, *sd;  // the [d, Sp] and the [S, dp] rows of head 0; heads are head_d and head_s floats apart
  size_t head_d, head_s;
};
Levels LevelsIn(const MemattnShape& s, void* scratch) {
  const size_t d = static_cast<size_t>(s.D / s.H), S = static_cast<size_t>(s.S);
  const size_t hd = d * Padded(S), hs = S * Padded(d), BH = static_cast<size_t>(s.B * s.H);
  float* f = static_cast<float*>(scratch);
  return {f, f + BH * hd, hd, hs};
}

// Head bh's levels padded into the scratch; `transposed`: K and Vᵀ instead.
void PadHead(const float* kt, const float* v, const MemattnShape& s, void* scratch, int64_t bh, bool transposed) {
  const size_t d = static_cast<size_t>(s.D / s.H), S = static_cast<size_t>(s.S);
  const size_t Sp = Padded(S), dp = Padded(d);
  const Levels L = LevelsIn(s, scratch);
  float *kd = L.kd + static_cast<size_t>(bh) * L.head_d, *sd = L.sd + static_cast<size_t>(bh) * L.head_s;
  const float* K = kt + static_cast<size_t>(bh) * d * S;  // [d, S]
  const float* Vv = v + static_cast<size_t>(bh) * S * d;  // [S, d]
  std::fill(kd, kd + L.head_d, 0.0f);
  std::fill(sd, sd + L.head_s, 0.0f);
  for (size_t i = 0; i < d; ++i)
    for (size_t j = 0; j < S; ++j) {
      if (transposed) {
        sd[j * dp + i] = K[i * S + j];   // K [S, dp]
        kd[i * Sp + j] = Vv[j * d + i];  // Vᵀ [d, Sp]
      } else {
        kd[i * Sp + j] = K[i * S + j];   // kt [d, Sp]
        sd[j * dp + i] = Vv[j * d + i];  // v [S, dp]
      }
    }
}

// Per-thread rows of a task (reused, grown as needed).
struct Rows {
  std::vector<float> sc, add, o, g, gk, gv;
  static Rows& mine() {
    thread_local Rows r;
    return r;
  }
};

constexpr int64_t kTokens = 32;  // tokens at once (rows of their scores in L1)

// Tokens [t0, t1) of batch row b, every head: per block of tokens, head
// after head, so that the block's rows of q and out are read and written
// while in cache.
void MemattnRows(const float* q, const float* kt, const float* v, const float* mask, float scale, float* out,
                 float* p, const MemattnShape& s, void* scratch, int64_t b, int64_t t0, int64_t t1) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const int64_t d = s.D / s.H, S = s.S, T = s.T;
  const size_t Sp = Padded(static_cast<size_t>(S)), dp = Padded(static_cast<size_t>(d));
  // The levels as they are where their rows are whole vectors (null scratch), else padded.
  const Levels L = scratch ? LevelsIn(s, scratch)
                           : Levels{const_cast<float*>(kt), const_cast<float*>(v), static_cast<size_t>(d * S),
                                    static_cast<size_t>(S * d)};
  Rows& w = Rows::mine();
  w.sc.resize(kTokens * Sp), w.add.resize(Sp), w.o.resize(kTokens * dp);
  float* add = w.add.data();  // the mask, -inf in the padding lanes (their weight is 0)
  for (size_t k = 0; k < Sp; ++k)
    add[k] = k < static_cast<size_t>(S) ? (mask ? mask[k] : 0.0f) : -std::numeric_limits<float>::infinity();
  const auto vscale = hn::Set(df, scale);
  for (int64_t tb = t0; tb < t1; tb += kTokens) {
    const size_t R = static_cast<size_t>(std::min(kTokens, t1 - tb));
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t bh = b * s.H + h;
      // The weights in p's padded rows (or a scratch block when not kept).
      float* sc = p ? p + (bh * T + tb) * s.p_row : w.sc.data();
      const size_t ls = p ? static_cast<size_t>(s.p_row) : Sp;
      // scores [R, Sp] = q · Kᵀ, then per row scale, mask and softmax in vectors over the slots
      Gemm(R, q + b * s.q_batch + tb * s.q_row + h * d, static_cast<size_t>(s.q_row), 1, static_cast<size_t>(d),
           L.kd + static_cast<size_t>(bh) * L.head_d, Sp, sc, ls, false);
      for (size_t r = 0; r < R; ++r) {
        float* row = sc + r * ls;
        auto mx = hn::Set(df, -std::numeric_limits<float>::infinity());
        for (size_t k = 0; k < Sp; k += N) {
          const auto z = hn::MulAdd(hn::LoadU(df, row + k), vscale, hn::LoadU(df, add + k));
          hn::StoreU(z, df, row + k);
          mx = hn::Max(mx, z);
        }
        const auto vmax = hn::Set(df, hn::GetLane(hn::MaxOfLanes(df, mx)));
        auto sum = hn::Zero(df);
        for (size_t k = 0; k < Sp; k += N) {
          const auto e = ExpUpTo88(df, hn::Sub(hn::LoadU(df, row + k), vmax));
          hn::StoreU(e, df, row + k);
          sum = hn::Add(sum, e);
        }
        const auto inv = hn::Set(df, 1.0f / hn::GetLane(hn::SumOfLanes(df, sum)));
        for (size_t k = 0; k < Sp; k += N) hn::StoreU(hn::Mul(hn::LoadU(df, row + k), inv), df, row + k);
        std::fill(row + Sp, row + ls, 0.0f);  // p's row is padded for the widest vectors
      }
      // out [R, d] = P · V, straight into out's rows when d is whole vectors
      float* o = out + b * s.o_batch + tb * s.o_row + h * d;
      const float* vh = L.sd + static_cast<size_t>(bh) * L.head_s;
      if (dp == static_cast<size_t>(d)) {
        Gemm(R, sc, ls, 1, static_cast<size_t>(S), vh, dp, o, static_cast<size_t>(s.o_row), false);
        continue;
      }
      Gemm(R, sc, ls, 1, static_cast<size_t>(S), vh, dp, w.o.data(), dp, false);
      for (size_t r = 0; r < R; ++r)
        for (int64_t j = 0; j < d; ++j) o[static_cast<int64_t>(r) * s.o_row + j] = w.o[r * dp + static_cast<size_t>(j)];
    }
  }
}

// Heads [h0, h1) of batch row b, every token: per block of tokens, head after
// head, each head's dkt and dv summed over the tokens in padded rows.
void MemattnBwdRows(const float* q, const float* p, const float* dout, float scale, float* dq, float* dkt, float* dv,
                    const MemattnShape& s, void* scratch, int64_t b, int64_t h0, int64_t h1) {
  const int64_t d = s.D / s.H, S = s.S, T = s.T, nh = h1 - h0;
  const size_t Sp = Padded(static_cast<size_t>(S)), dp = Padded(static_cast<size_t>(d));
  const size_t ud = static_cast<size_t>(d), uS = static_cast<size_t>(S), kd = ud * Sp, ks = uS * dp;
  const size_t lp = static_cast<size_t>(s.p_row);
  const Levels L = LevelsIn(s, scratch);
  Rows& w = Rows::mine();
  w.gk.assign(static_cast<size_t>(nh) * kd, 0.0f), w.gv.assign(static_cast<size_t>(nh) * ks, 0.0f);
  w.g.resize(kTokens * Sp), w.o.resize(static_cast<size_t>(nh) * kTokens * dp);
  float *g = w.g.data(), *go = w.o.data();
  for (int64_t tb = 0; tb < T; tb += kTokens) {
    const size_t R = static_cast<size_t>(std::min(kTokens, T - tb));
    // dO [R, dp] of every head of the block (R <= kTokens): its rows of dout, zeros after d in a head
    for (int64_t h = h0; h < h1; ++h)
      for (size_t r = 0; r < R; ++r) {
        const float* src = dout + b * s.o_batch + (tb + static_cast<int64_t>(r)) * s.o_row + h * d;
        float* dst = go + (static_cast<size_t>(h - h0) * R + r) * dp;
        std::copy(src, src + d, dst);
        std::fill(dst + d, dst + dp, 0.0f);
      }
    for (int64_t h = h0; h < h1; ++h) {
      const int64_t bh = b * s.H + h;
      const size_t j = static_cast<size_t>(h - h0);
      const float* pp = p + (bh * T + tb) * s.p_row;  // P [R, Sp] in p's padded rows
      float* goh = go + j * R * dp;
      // dP [R, Sp] = dO · Vᵀ, then G = P ⊙ (dP - rowsum(P ⊙ dP)) (zero in the padding)
      Gemm(R, goh, dp, 1, ud, L.kd + static_cast<size_t>(bh) * L.head_d, Sp, g, Sp, false);
      for (size_t r = 0; r < R; ++r) {
        float* gr = g + r * Sp;
        const float* pr = pp + r * lp;
        float c = 0;
        for (size_t k = 0; k < uS; ++k) c += pr[k] * gr[k];
        for (size_t k = 0; k < Sp; ++k) gr[k] = pr[k] * (gr[k] - c);
      }
      const float* q0 = q + b * s.q_batch + tb * s.q_row + h * d;
      // dKt [d, Sp] += Qᵀ G, dV [S, dp] += Pᵀ dO
      Gemm(ud, q0, 1, static_cast<size_t>(s.q_row), R, g, Sp, w.gk.data() + j * kd, Sp, true);
      Gemm(uS, pp, 1, lp, R, goh, dp, w.gv.data() + j * ks, dp, true);
      if (dq) {  // dQ [R, d] = scale G · K (into dO's rows, read no more)
        Gemm(R, g, Sp, 1, uS, L.sd + static_cast<size_t>(bh) * L.head_s, dp, goh, dp, false);
        for (size_t r = 0; r < R; ++r) {
          float* dst = dq + (b * T + tb + static_cast<int64_t>(r)) * s.D + h * d;
          for (size_t i = 0; i < ud; ++i) dst[i] = scale * goh[r * dp + i];
        }
      }
    }
  }
  for (int64_t h = h0; h < h1; ++h) {
    const int64_t bh = b * s.H + h;
    const size_t j = static_cast<size_t>(h - h0);
    if (dkt)
      for (size_t i = 0; i < ud; ++i)
        for (size_t k = 0; k < uS; ++k) dkt[bh * d * S + static_cast<int64_t>(i * uS + k)] = scale * w.gk[j * kd + i * Sp + k];
    if (dv)
      for (size_t k = 0; k < uS; ++k)
        for (size_t i = 0; i < ud; ++i) dv[(bh * S + static_cast<int64_t>(k)) * d + static_cast<int64_t>(i)] = w.gv[j * ks + k * dp + i];
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace mmrec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mmrec::kernels {
HWY_EXPORT(PadHead);
HWY_EXPORT(MemattnRows);
HWY_EXPORT(MemattnBwdRows);

namespace {
// A call of little work (a generated token: one row, a few KiB of levels a
// head) stays on the caller.
bool small(const MemattnShape& s) { return s.B * s.T * s.S * s.D < (int64_t{1} << 17); }
constexpr int64_t kTaskTokens = 32;  // tokens of one batch row a forward task takes

int64_t round16(int64_t n) { return (n + kMemattnLanes - 1) / kMemattnLanes * kMemattnLanes; }

// Levels whose rows are whole vectors of every target (generation's slot
// buffers: ops::SlotMemory) are read in place; others are padded first.
bool levels_whole(const MemattnShape& s) { return s.S % kMemattnLanes == 0 && (s.D / s.H) % kMemattnLanes == 0; }

template <class F>
void tasks(const MemattnShape& s, int64_t n, F&& f) {
  if (small(s)) return f(0, n);
  parallel_for(n, 1, f);
}

// Every head's levels padded (forward) or transposed and padded (backward)
// into the scratch, or into `own` when there is none.
void* pad_levels(const float* kt, const float* v, const MemattnShape& s, void* scratch, std::vector<float>& own,
                 bool transposed) {
  if (!scratch) {
    own.resize(memattn_scratch_bytes(s, true) / sizeof(float));
    scratch = own.data();
  }
  tasks(s, s.B * s.H, [&](int64_t lo, int64_t hi) {
    for (int64_t bh = lo; bh < hi; ++bh) HWY_DYNAMIC_DISPATCH(PadHead)(kt, v, s, scratch, bh, transposed);
  });
  return scratch;
}
}  // namespace

int64_t memattn_weight_row(int64_t S) { return round16(S); }

size_t memattn_scratch_bytes(const MemattnShape& s, bool backward) {
  const int64_t d = s.H > 0 ? s.D / s.H : 0;
  if (s.S == 0 || (!backward && levels_whole(s))) return 0;
  return static_cast<size_t>(s.B * s.H * (d * round16(s.S) + s.S * round16(d))) * sizeof(float);
}

void memattn_f32(const float* q, const float* kt, const float* v, const float* mask, float scale, float* out,
                 float* p, const MemattnShape& s, void* scratch) {
  if (s.B * s.T * s.D == 0) return;
  if (s.S == 0) {
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t t = 0; t < s.T; ++t) std::fill_n(out + b * s.o_batch + t * s.o_row, s.D, 0.0f);
    return;
  }
  std::vector<float> own;
  scratch = levels_whole(s) ? nullptr : pad_levels(kt, v, s, scratch, own, false);
  // Tasks: a batch row's tokens in blocks, every head (their rows whole).
  const int64_t blocks = (s.T + kTaskTokens - 1) / kTaskTokens;
  tasks(s, s.B * blocks, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t b = i / blocks, t0 = i % blocks * kTaskTokens;
      HWY_DYNAMIC_DISPATCH(MemattnRows)(q, kt, v, mask, scale, out, p, s, scratch, b, t0,
                                        std::min(s.T, t0 + kTaskTokens));
    }
  });
}

void memattn_bwd_f32(const float* q, const float* kt, const float* v, const float* p, const float* dout,
                     float scale, float* dq, float* dkt, float* dv, const MemattnShape& s, void* scratch) {
  const int64_t d = s.H > 0 ? s.D / s.H : 0;
  if (s.S == 0 || s.T == 0) {
    if (dq) std::fill(dq, dq + s.B * s.T * s.D, 0.0f);
    if (dkt) std::fill(dkt, dkt + s.B * s.H * d * s.S, 0.0f);
    if (dv) std::fill(dv, dv + s.B * s.H * s.S * d, 0.0f);
    return;
  }
  std::vector<float> own;
  scratch = pad_levels(kt, v, s, scratch, own, true);
  // Tasks: a batch row's every head (its rows whole) where the batch rows
  // give every thread a few; else one head of one row each (dkt and dv sum
  // over every token of a head, within its task).
  const int64_t per = s.B >= 2 * num_threads() ? s.H : 1, n = s.B * (s.H / per);
  tasks(s, n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t b = i / (s.H / per), h0 = i % (s.H / per) * per;
      HWY_DYNAMIC_DISPATCH(MemattnBwdRows)(q, p, dout, scale, dq, dkt, dv, s, scratch, b, h0, h0 + per);
    }
  });
}
}  // namespace mmrec::kernels
#endif  // HWY_ONCE
