// Scalar reference for the fused pointwise kernel: each op in double
// precision with the textbook formulas, rounded to f32 after each op.
#include <algorithm>
#include <cmath>

#include "ops/kernels/fused.h"

namespace mmrec::kernels::ref {
namespace {
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluA = 0.044715;

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

double step(const PointwiseInstr& op, double a, double b) {
  switch (op.op) {
    case PointwiseOp::copy: return a;
    case PointwiseOp::add:
    case PointwiseOp::accumulate: return a + b;
    case PointwiseOp::sub: return a - b;
    case PointwiseOp::mul: return a * b;
    case PointwiseOp::div: return a / b;
    case PointwiseOp::neg: return -a;
    case PointwiseOp::exp: return std::exp(a);
    case PointwiseOp::log: return std::log(a);
    case PointwiseOp::affine: return a * op.p + op.q;
    case PointwiseOp::clamp: return std::min(std::max(a, static_cast<double>(op.p)), static_cast<double>(op.q));
    case PointwiseOp::sigmoid: return sigmoid(a);
    case PointwiseOp::gelu: return 0.5 * a * (1.0 + std::tanh(kSqrt2OverPi * (a + kGeluA * a * a * a)));
    case PointwiseOp::sigmoid_mul: return sigmoid(a) * b;
  }
  return a;
}
}  // namespace

void fused_f32(const PointwiseProgram& p, const float* const* in, float* out) {
  float r[kFirstResult + PointwiseProgram::kMaxOps] = {};
  for (int64_t i = 0; i < p.n; ++i) {
    for (uint8_t k = 0; k < p.n_in; ++k) r[k] = in[k][(p.repeat >> k & 1) ? i % p.inner : i];
    for (uint8_t k = 0; k < p.n_ops; ++k) {
      const PointwiseInstr& op = p.ops[k];
      r[kFirstResult + k] = static_cast<float>(step(op, r[op.a], r[op.b]));
    }
    const int64_t at = p.out_ld > 0 ? i / p.out_row * p.out_ld + i % p.out_row : i;
    if (p.n_ops) out[at] = r[kFirstResult + p.n_ops - 1];
  }
}

}  // namespace mmrec::kernels::ref
