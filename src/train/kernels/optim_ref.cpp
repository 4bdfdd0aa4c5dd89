// Scalar double-precision references of the optimizer kernels.
#include <cmath>

#include "train/kernels/optim.h"

namespace mmrec::kernels::ref {

void adamw_f32(float* p, const float* g, float* m, float* v, int64_t n, double lr, double beta1, double beta2,
               double eps, double weight_decay, int64_t t) {
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(t));
  for (int64_t i = 0; i < n; ++i) {
    double pi = p[i] * (1.0 - lr * weight_decay);
    const double mi = beta1 * m[i] + (1.0 - beta1) * g[i];
    const double vi = beta2 * v[i] + (1.0 - beta2) * static_cast<double>(g[i]) * g[i];
    pi -= lr / bc1 * mi / (std::sqrt(vi) / std::sqrt(bc2) + eps);
    p[i] = static_cast<float>(pi);
    m[i] = static_cast<float>(mi);
    v[i] = static_cast<float>(vi);
  }
}

double sum_squares_f32(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

}  // namespace mmrec::kernels::ref
