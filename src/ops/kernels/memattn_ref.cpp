// Double-precision references of the memory attention kernels (memattn.h).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/kernels/memattn.h"

namespace mmrec::kernels::ref {

void memattn_f32(const float* q, const float* kt, const float* v, const float* mask, float scale, float* out,
                 float* p, const MemattnShape& s) {
  const int64_t d = s.D / s.H, S = s.S;
  std::vector<double> w(static_cast<size_t>(S));
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t < s.T; ++t)
      for (int64_t h = 0; h < s.H; ++h) {
        const float* qr = q + b * s.q_batch + t * s.q_row + h * d;
        const float* K = kt + (b * s.H + h) * d * S;
        const float* V = v + (b * s.H + h) * S * d;
        double mx = -std::numeric_limits<double>::infinity(), sum = 0;
        for (int64_t j = 0; j < S; ++j) {
          double a = 0;
          for (int64_t i = 0; i < d; ++i) a += static_cast<double>(qr[i]) * K[i * S + j];
          w[static_cast<size_t>(j)] = a * scale + (mask ? mask[j] : 0.0);
          mx = std::max(mx, w[static_cast<size_t>(j)]);
        }
        for (int64_t j = 0; j < S; ++j) sum += (w[static_cast<size_t>(j)] = std::exp(w[static_cast<size_t>(j)] - mx));
        for (int64_t j = 0; j < S; ++j) w[static_cast<size_t>(j)] /= sum;
        if (p)
          for (int64_t j = 0; j < s.p_row; ++j)
            p[((b * s.H + h) * s.T + t) * s.p_row + j] = j < S ? static_cast<float>(w[static_cast<size_t>(j)]) : 0.0f;
        for (int64_t i = 0; i < d; ++i) {
          double a = 0;
          for (int64_t j = 0; j < S; ++j) a += w[static_cast<size_t>(j)] * V[j * d + i];
          out[b * s.o_batch + t * s.o_row + h * d + i] = static_cast<float>(a);
        }
      }
}

void memattn_bwd_f32(const float* q, const float* kt, const float* v, const float* p, const float* dout,
                     float scale, float* dq, float* dkt, float* dv, const MemattnShape& s) {
  const int64_t d = s.D / s.H, S = s.S, BH = s.B * s.H;
  std::vector<double> gk(static_cast<size_t>(BH * d * S), 0.0), gv(static_cast<size_t>(BH * S * d), 0.0);
  std::vector<double> g(static_cast<size_t>(S));
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t < s.T; ++t)
      for (int64_t h = 0; h < s.H; ++h) {
        const int64_t bh = b * s.H + h;
        const float* qr = q + b * s.q_batch + t * s.q_row + h * d;
        const float* go = dout + b * s.o_batch + t * s.o_row + h * d;
        const float* pr = p + (bh * s.T + t) * s.p_row;
        const float* K = kt + bh * d * S;
        const float* V = v + bh * S * d;
        double c = 0;
        for (int64_t j = 0; j < S; ++j) {
          double dp = 0;
          for (int64_t i = 0; i < d; ++i) dp += static_cast<double>(go[i]) * V[j * d + i];
          g[static_cast<size_t>(j)] = dp;
          c += pr[j] * dp;
        }
        for (int64_t j = 0; j < S; ++j) g[static_cast<size_t>(j)] = pr[j] * (g[static_cast<size_t>(j)] - c);
        for (int64_t i = 0; i < d; ++i) {
          double a = 0;
          for (int64_t j = 0; j < S; ++j) {
            a += g[static_cast<size_t>(j)] * K[i * S + j];
            gk[static_cast<size_t>((bh * d + i) * S + j)] += scale * static_cast<double>(qr[i]) * g[static_cast<size_t>(j)];
            gv[static_cast<size_t>((bh * S + j) * d + i)] += static_cast<double>(pr[j]) * go[i];
          }
          if (dq) dq[(b * s.T + t) * s.D + h * d + i] = static_cast<float>(scale * a);
        }
      }
  if (dkt) std::transform(gk.begin(), gk.end(), dkt, [](double x) { return static_cast<float>(x); });
  if (dv) std::transform(gv.begin(), gv.end(), dv, [](double x) { return static_cast<float>(x); });
}

}  // namespace mmrec::kernels::ref
