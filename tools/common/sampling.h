// Next-token choice from one row of logits, shared by mmrec-generate,
// mmrec-serve and the samples mmrec-train writes at each evaluation.
//
//   Generator g(seed);
//   int64_t next = mmrec::tools::sample_token(row, V, /*temperature=*/0.8, /*top_k=*/40, g);
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tensor/random.h"

namespace mmrec::tools {

// temperature 0 is greedy (the first maximum); top_k 0 keeps every token.
inline int64_t sample_token(const float* logits, int64_t V, double temperature, int64_t top_k, Generator& g) {
  if (temperature == 0) return std::max_element(logits, logits + V) - logits;
  std::vector<int64_t> idx(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) idx[static_cast<size_t>(i)] = i;
  const int64_t k = top_k > 0 ? std::min(top_k, V) : V;
  if (k < V)
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

}  // namespace mmrec::tools
