#include "tensor/random.h"

#include <cmath>

#include "tensor/threads.h"

namespace mmrec {

std::array<uint32_t, 4> philox4x32(uint64_t key, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t{0xD2511F53u} * c0;
    const uint64_t p1 = uint64_t{0xCD9E8D57u} * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {c0, c1, c2, c3};
}

namespace {
// Uniform in (0, 1] from 32 bits (never 0, so log() is finite).
inline double unit_open0(uint32_t u) { return (static_cast<double>(u) + 1.0) * (1.0 / 4294967296.0); }

inline float normal_at(uint64_t key, uint64_t ctr) {
  const auto r = philox4x32(key, ctr);
  const double u1 = unit_open0(r[0]);
  const double u2 = static_cast<double>(r[1]) * (1.0 / 4294967296.0);
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}
}  // namespace

double Generator::uniform() {
  const auto r = philox4x32(seed_, advance(1));
  return static_cast<double>(r[0]) * (1.0 / 4294967296.0);
}

uint64_t Generator::next_u64() {
  const auto r = philox4x32(seed_, advance(1));
  return (static_cast<uint64_t>(r[1]) << 32) | r[0];
}

Tensor randn(const Shape& shape, Generator& g, float mean, float stddev) {
  Tensor t = Tensor::empty(shape, DType::f32);
  const int64_t n = t.numel();
  const uint64_t base = g.advance(static_cast<uint64_t>(n));
  const uint64_t key = g.seed();
  float* p = t.data<float>();
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) p[i] = mean + stddev * normal_at(key, base + static_cast<uint64_t>(i));
  });
  return t;
}

Tensor rand_uniform(const Shape& shape, Generator& g, float lo, float hi) {
  Tensor t = Tensor::empty(shape, DType::f32);
  const int64_t n = t.numel();
  const uint64_t base = g.advance(static_cast<uint64_t>(n));
  const uint64_t key = g.seed();
  float* p = t.data<float>();
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const auto r = philox4x32(key, base + static_cast<uint64_t>(i));
      const double u = static_cast<double>(r[0] >> 8) * (1.0 / 16777216.0);  // [0, 1), 24 bits
      p[i] = static_cast<float>(lo + (hi - lo) * u);
    }
  });
  return t;
}

}  // namespace mmrec
