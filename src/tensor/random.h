// Seeded counter-based random numbers (Philox-4x32-10). Element i of a call
// depends only on (seed, offset + i), so results do not depend on the number
// of threads that fill a tensor.
//
//   Generator g(42);
//   Tensor w = randn({256, 256}, g, 0.0f, 0.02f);
#pragma once
#include <array>
#include <cstdint>

#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec {

// Philox-4x32-10 block: 4 random 32-bit words for (key, counter).
std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter);

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }
  // Reserves n counters and returns the first.
  uint64_t advance(uint64_t n) {
    const uint64_t o = offset_;
    offset_ += n;
    return o;
  }
  // One uniform in [0, 1) and one 64-bit integer, each consuming one counter.
  double uniform();
  uint64_t next_u64();

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// f32 tensors filled in parallel; each consumes numel counters of g.
Tensor randn(const Shape& shape, Generator& g, float mean = 0.0f, float stddev = 1.0f);
Tensor rand_uniform(const Shape& shape, Generator& g, float lo = 0.0f, float hi = 1.0f);

}  // namespace mmrec

MMREC_API_END
