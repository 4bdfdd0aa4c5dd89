// A plain double-precision reference of ../shared/spec/MODEL.md for the model
// tests: one token at a time, every layer written out with loops, reading the
// parameters of a Model by their spec names.
//   auto logits = RefModel(model).run(token_ids);   // [T][V] of one sequence
#pragma once
#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "models/model.h"

namespace mmrec {

struct RefModel {
  ModelConfig c;
  std::map<std::string, std::vector<double>> p;
  explicit RefModel(const Model& m) : c(m.config()) {
    for (const auto& [name, t] : m.parameters()) {
      auto v = t.to_vector();
      p[name] = std::vector<double>(v.begin(), v.end());
    }
  }
  const std::vector<double>& w(const std::string& n) const { return p.at(n); }
  // y = W x + b, W [out, in]
  std::vector<double> lin(const std::vector<double>& x, const std::string& name, bool bias = true) const {
    const auto& W = w(name + ".weight");
    const size_t in = x.size(), out = W.size() / in;
    std::vector<double> y(out, 0.0);
    for (size_t o = 0; o < out; ++o) {
      double s = bias ? w(name + ".bias")[o] : 0.0;
      for (size_t i = 0; i < in; ++i) s += W[o * in + i] * x[i];
      y[o] = s;
    }
    return y;
  }
  std::vector<double> rms(const std::vector<double>& x, const std::string& name) const {
    double ms = 0;
    for (double v : x) ms += v * v;
    ms /= static_cast<double>(x.size());
    const double r = 1.0 / std::sqrt(ms + c.norm_eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = w(name)[i] * x[i] * r;
    return y;
  }
  static double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }
  static std::vector<double> gelu(std::vector<double> x) {
    for (double& v : x) v = 0.5 * v * (1 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    return x;
  }
  static std::vector<double> sigv(std::vector<double> x) {
    for (double& v : x) v = sig(v);
    return x;
  }
  struct Layer {
    std::vector<double> h, sk, sv;
    std::deque<std::pair<std::vector<double>, std::vector<double>>> slots;
    int64_t count = 0;
  };
  // logits [T, V] of one sequence
  std::vector<std::vector<double>> run(const std::vector<int64_t>& toks) const {
    const size_t D = static_cast<size_t>(c.dim), H = static_cast<size_t>(c.heads), d = D / H;
    std::vector<Layer> layers(static_cast<size_t>(c.layers));
    for (auto& l : layers) l.h = l.sk = l.sv = std::vector<double>(D, 0.0);
    std::vector<std::vector<double>> out;
    for (int64_t tok : toks) {
      std::vector<double> x(w("embed.weight").begin() + tok * D, w("embed.weight").begin() + (tok + 1) * D);
      for (size_t li = 0; li < layers.size(); ++li) {
        Layer& L = layers[li];
        const std::string pre = "blocks." + std::to_string(li) + ".";
        auto xn = rms(x, pre + "norm1.weight");
        auto qkvz = lin(xn, pre + "qkvz");
        std::vector<double> q(qkvz.begin(), qkvz.begin() + D), k(qkvz.begin() + D, qkvz.begin() + 2 * D),
            v(qkvz.begin() + 2 * D, qkvz.begin() + 3 * D), z(qkvz.begin() + 3 * D, qkvz.end());
        auto dec = sigv(lin(gelu(lin(z, pre + "decay.fc1")), pre + "decay.fc2"));
        auto ctx = sigv(lin(gelu(lin(k, pre + "context.fc1")), pre + "context.fc2"));
        std::vector<double> h(D);
        if (c.recurrence == "parallel") {
          auto gate = sigv(lin(xn, pre + "gate"));
          for (size_t i = 0; i < D; ++i) {
            const double g = std::clamp(dec[i] * ctx[i], 1e-6, 1 - 1e-6);
            h[i] = g * L.h[i] + gate[i] * z[i];
          }
        } else {
          auto gate = sigv(lin(L.h, pre + "gate"));
          for (size_t i = 0; i < D; ++i) {
            const double g = std::clamp(dec[i] * ctx[i], 1e-6, 1 - 1e-6);
            h[i] = z[i] * gate[i] + g * L.h[i];
          }
        }
        L.h = h;
        // memory: the levels of the FIFO as it stands (it changes only at chunk ends)
        std::vector<std::pair<std::vector<double>, std::vector<double>>> entries;
        const size_t S = L.slots.size();
        for (int64_t lvl = 0, g = 1; lvl < c.hds_levels; ++lvl, g *= 4)
          for (size_t lo = 0; lo < S; lo += static_cast<size_t>(g)) {
            const size_t hi = std::min(S, lo + static_cast<size_t>(g));
            std::vector<double> ek(D, 0.0), ev(D, 0.0);
            for (size_t s = lo; s < hi; ++s)
              for (size_t i = 0; i < D; ++i) {
                ek[i] += L.slots[s].first[i] / double(hi - lo);
                ev[i] += L.slots[s].second[i] / double(hi - lo);
              }
            entries.emplace_back(ek, ev);
          }
        std::vector<double> mem(D, 0.0);
        for (size_t hd = 0; hd < H && !entries.empty(); ++hd) {
          std::vector<double> sc(entries.size());
          double mx = -1e300;
          for (size_t e = 0; e < entries.size(); ++e) {
            double s = 0;
            for (size_t i = 0; i < d; ++i) s += q[hd * d + i] * entries[e].first[hd * d + i];
            sc[e] = s / std::sqrt(double(d));
            mx = std::max(mx, sc[e]);
          }
          double Z = 0;
          for (double& s : sc) Z += (s = std::exp(s - mx));
          for (size_t e = 0; e < entries.size(); ++e)
            for (size_t i = 0; i < d; ++i) mem[hd * d + i] += sc[e] / Z * entries[e].second[hd * d + i];
        }
        auto cc = lin(mem, pre + "attn_out");
        for (size_t i = 0; i < D; ++i) x[i] += h[i] + cc[i];
        auto f = lin(gelu(lin(rms(x, pre + "norm2.weight"), pre + "ffn.fc1")), pre + "ffn.fc2");
        for (size_t i = 0; i < D; ++i) x[i] += f[i];
        for (size_t i = 0; i < D; ++i) L.sk[i] += k[i], L.sv[i] += v[i];
        if (++L.count == c.chunk_size) {
          std::vector<double> mk(D), mv(D);
          for (size_t i = 0; i < D; ++i) mk[i] = L.sk[i] / double(c.chunk_size), mv[i] = L.sv[i] / double(c.chunk_size);
          if (c.memory_slots > 0) L.slots.emplace_back(mk, mv);
          if (static_cast<int64_t>(L.slots.size()) > c.memory_slots) L.slots.pop_front();
          L.sk = L.sv = std::vector<double>(D, 0.0);
          L.count = 0;
        }
      }
      out.push_back(lin(rms(x, "norm.weight"), c.tie_embeddings ? "embed" : "lm_head", false));
    }
    return out;
  }
};


}  // namespace mmrec
