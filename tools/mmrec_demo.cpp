// mmrec-demo: fits a small MLP by SGD, to show the runtime end to end.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include <mmrec/mmrec.h>
#include "common/omp_env.h"

using namespace mmrec;

int main(int argc, char** argv) {
  mmrec::tools::ensure_omp_passive(argv);  // re-executes with OMP_WAIT_POLICY=PASSIVE if unset
  try {
    const int steps = argc > 1 ? std::atoi(argv[1]) : 2000;
    Generator g(7);
    const int64_t N = 512, H = 64;
    Tensor X = rand_uniform({N, 2}, g, -1.0f, 1.0f);
    Tensor Y = Tensor::empty({N, 1});
    for (int64_t i = 0; i < N; ++i) Y.set({i, 0}, std::sin(3 * X.at({i, 0})) * std::cos(2 * X.at({i, 1})));
    Tensor W1 = randn({2, H}, g, 0.0f, 0.7f).set_requires_grad(), b1 = Tensor::zeros({H}).set_requires_grad();
    Tensor W2 = randn({H, 1}, g, 0.0f, 0.2f).set_requires_grad(), b2 = Tensor::zeros({1}).set_requires_grad();
    for (int step = 0; step <= steps; ++step) {
      Tensor z = ops::add(ops::matmul(X, W1), b1);
      Tensor h = ops::div(z, ops::add_scalar(ops::exp(ops::neg(z)), 1.0f));  // SiLU
      Tensor d = ops::sub(ops::add(ops::matmul(h, W2), b2), Y);
      Tensor loss = ops::mean(ops::mul(d, d));
      if (step % (steps / 10 > 0 ? steps / 10 : 1) == 0) std::printf("step %5d  loss %.6f\n", step, loss.item());
      autograd::backward(loss);
      autograd::NoGradGuard ng;
      for (Tensor* p : {&W1, &b1, &W2, &b2}) {
        p->copy_from(ops::sub(*p, ops::scale(p->grad(), 0.1f)));
        p->zero_grad();
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mmrec-demo: %s\n", e.what());
    return 1;
  }
}
