// Scalar references for the activation kernels (double precision, the
// textbook formulas: GELU through tanh, not the σ form of the kernel).
#include <algorithm>
#include <cmath>

#include "ops/kernels/activation.h"

namespace mmrec::kernels::ref {
namespace {
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluA = 0.044715;

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double gelu(double x) { return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + kGeluA * x * x * x))); }
double gelu_grad(double x) {
  const double t = std::tanh(kSqrt2OverPi * (x + kGeluA * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * kSqrt2OverPi * (1.0 + 3.0 * kGeluA * x * x);
}
}  // namespace

void activation_f32(Activation op, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(op == Activation::sigmoid ? sigmoid(x[i]) : gelu(x[i]));
}

void activation_bwd_f32(Activation op, const float* xy, const float* g, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = xy[i];
    dx[i] = static_cast<float>(g[i] * (op == Activation::sigmoid ? v * (1.0 - v) : gelu_grad(v)));
  }
}

void gelu_fwd_bwd_f32(const float* x, const float* g, float* y, float* dx, int64_t n) {
  ref::activation_f32(Activation::gelu, x, y, n);
  ref::activation_bwd_f32(Activation::gelu, x, g, dx, n);
}

void clamp_f32(const float* x, float lo, float hi, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(x[i], lo), hi);
}

void clamp_bwd_f32(const float* x, float lo, float hi, const float* g, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = (lo < x[i] && x[i] < hi) ? g[i] : 0.0f;
}

void sigmoid_mul_f32(const float* x, const float* y, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(sigmoid(x[i]) * y[i]);
}

void sigmoid_mul_bwd_f32(const float* x, const float* y, const float* g, float* dx, float* dy, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double s = sigmoid(x[i]);
    if (dx) dx[i] = static_cast<float>(static_cast<double>(g[i]) * y[i] * s * (1.0 - s));
    if (dy) dy[i] = static_cast<float>(g[i] * s);
  }
}

void sigmoid_mul_rows_f32(const float* x, const float* y, int64_t ldy, float* out, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) sigmoid_mul_f32(x + r * cols, y + r * ldy, out + r * cols, cols);
}

void sigmoid_mul_bwd_rows_f32(const float* x, const float* y, int64_t ldy, const float* g, float* dx, float* dy,
                              int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    sigmoid_mul_bwd_f32(x + r * cols, y + r * ldy, g + r * cols, dx ? dx + r * cols : nullptr,
                        dy ? dy + r * cols : nullptr, cols);
}

}  // namespace mmrec::kernels::ref
