#include "models/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "tensor/error.h"

namespace mmrec {

int64_t sample_token(const float* logits, int64_t vocab, double temperature, int64_t top_k, Generator& g) {
  check(vocab >= 1, "sample_token: vocab must be >= 1, got ", vocab);
  check(temperature >= 0 && std::isfinite(temperature), "sample_token: temperature must be finite and >= 0, got ",
        temperature);
  if (temperature == 0) return std::max_element(logits, logits + vocab) - logits;
  std::vector<int64_t> idx(static_cast<size_t>(vocab));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  const int64_t k = top_k > 0 ? std::min(top_k, vocab) : vocab;
  if (k < vocab)
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  double mx = -INFINITY;
  for (int64_t i = 0; i < k; ++i) mx = std::max(mx, static_cast<double>(logits[idx[static_cast<size_t>(i)]]));
  std::vector<double> p(static_cast<size_t>(k));
  double z = 0;
  for (int64_t i = 0; i < k; ++i)
    z += p[static_cast<size_t>(i)] = std::exp((logits[idx[static_cast<size_t>(i)]] - mx) / temperature);
  double u = g.uniform() * z;
  for (int64_t i = 0; i < k; ++i) {
    u -= p[static_cast<size_t>(i)];
    if (u < 0) return idx[static_cast<size_t>(i)];
  }
  return idx[static_cast<size_t>(k - 1)];
}

}  // namespace mmrec
