// Helpers shared by the doctest suites.
#pragma once
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>
#include <string>

#include "autograd/graph.h"
#include "models/model.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace test_util {

// The calls of one kind in a captured graph.
inline size_t count_kind(const mmrec::autograd::Graph& g, mmrec::autograd::OpKind k) {
  return static_cast<size_t>(std::count_if(g.calls().begin(), g.calls().end(),
                                           [k](const mmrec::autograd::Call& c) { return c.kind == k; }));
}

// AddressSanitizer keeps freed memory in a quarantine (256 MB by default), so
// an ASan build's resident set grows with the bytes freed: the tests that
// bound a resident set check that bound in the plain build only (.ci/run runs
// both builds).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kResidentSetBounded = false;
#else
inline constexpr bool kResidentSetBounded = true;
#endif

// A seeded uniform f32 leaf that requires grad.
inline mmrec::Tensor param(const mmrec::Shape& s, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  mmrec::Generator g(seed);
  return mmrec::rand_uniform(s, g, lo, hi).set_requires_grad();
}

// max |a - b| over elements of two tensors of the same shape.
// Same shape, dtype and bits (views compared by value).
inline bool bit_equal(const mmrec::Tensor& a, const mmrec::Tensor& b) {
  if (!a.defined() || !b.defined() || a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const mmrec::Tensor x = a.contiguous(), y = b.contiguous();
  return x.nbytes() == 0 || std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0;  // empty: no data pointer
}

inline double max_abs_diff(const mmrec::Tensor& a, const mmrec::Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const auto x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::fabs(double(x[i]) - y[i]));
  return m;
}

// Seeded token ids in [0, V) of shape [B, T] (i32).
inline mmrec::Tensor random_tokens(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  mmrec::Generator g(seed);
  std::vector<int32_t> ids(static_cast<size_t>(B * T));
  for (auto& id : ids) id = static_cast<int32_t>(g.next_u64() % static_cast<uint64_t>(V));
  return mmrec::Tensor::from_vector(ids, {B, T});
}
// A fresh temporary directory removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("mmrec_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& f) const { return (path / f).string(); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};
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
