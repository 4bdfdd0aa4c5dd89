// Scalar references for the elementwise kernels (double precision).
#include <cmath>

#include "ops/kernels/elementwise.h"

namespace mmrec::kernels::ref {

void binary_f32(BinaryOp op, const float* a, int64_t na, const float* b, int64_t nb, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = a[i % na], y = b[i % nb];
    double r = 0;
    switch (op) {
      case BinaryOp::add: r = x + y; break;
      case BinaryOp::sub: r = x - y; break;
      case BinaryOp::mul: r = x * y; break;
      case BinaryOp::div: r = x / y; break;
    }
    out[i] = static_cast<float>(r);
  }
}

void unary_f32(UnaryOp op, const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    double r = 0;
    switch (op) {
      case UnaryOp::neg: r = -v; break;
      case UnaryOp::exp: r = std::exp(v); break;
      case UnaryOp::log: r = std::log(v); break;
    }
    out[i] = static_cast<float>(r);
  }
}

}  // namespace mmrec::kernels::ref
