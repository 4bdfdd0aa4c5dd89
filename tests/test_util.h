// Helpers shared by the doctest suites.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>
#include <string>

#include "models/model.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace test_util {

// A seeded uniform f32 leaf that requires grad.
inline mmrec::Tensor param(const mmrec::Shape& s, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  mmrec::Generator g(seed);
  return mmrec::rand_uniform(s, g, lo, hi).set_requires_grad();
}

// max |a - b| over elements of two tensors of the same shape.
inline double max_abs_diff(const mmrec::Tensor& a, const mmrec::Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const auto x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::fabs(double(x[i]) - y[i]));
  return m;
}

// A tiny MM-Rec model (dim 8, 2 layers) whose weights are larger than the
// init, so that greedy choices differ between tokens: the tools' tests
// generate from it.
inline mmrec::Model tiny_model() {
  using mmrec::Tensor;
  mmrec::Model m(mmrec::ModelConfig::from_json(nlohmann::json{{"dim", 8}, {"layers", 2}, {"heads", 2}, {"ffn_dim", 16},
                                                             {"mdi_dim", 4}, {"memory_slots", 3}, {"hds_levels", 2},
                                                             {"chunk_size", 4}}),
                 3);
  mmrec::Generator g(4);
  for (const auto& [name, p] : m.parameters())
    if (name.find("norm") == std::string::npos && name.find(".weight") != std::string::npos) {
      Tensor dst = p;
      dst.copy_from(mmrec::randn(p.shape(), g, 0.0f, 0.5f));
    }
  return m;
}

}  // namespace test_util
