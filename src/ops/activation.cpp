#include "ops/activation.h"

#include "ops/common.h"
#include "ops/kernels/activation.h"

namespace mmrec::ops {
namespace {
using kernels::Activation;

// dx from a saved tensor and the output gradient, both of one shape.
template <class K>
Tensor backward_map(const Tensor& saved, const Tensor& g_in, K kernel) {
  const Tensor g = g_in.contiguous();
  Tensor dx = Tensor::empty(saved.shape());
  if (dx.numel()) kernel(saved.data<float>(), g.data<float>(), dx.data<float>(), dx.numel());
  return dx;
}

Tensor activation(Activation op, const char* name, const Tensor& x_in) {
  const Tensor x = detail::contig_f32(name, x_in);
  Tensor out = Tensor::empty(x.shape());
  if (out.numel()) kernels::activation_f32(op, x.data<float>(), out.data<float>(), out.numel());
  if (autograd::needs_grad({x_in})) {
    // σ' needs only the output; GELU's needs the input.
    const Tensor saved = op == Activation::sigmoid ? out.detach() : x.detach();
    autograd::record(name, {x_in}, {out}, [op, saved](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{backward_map(saved, g[0], [op](const float* s, const float* gp, float* dx, int64_t n) {
        kernels::activation_bwd_f32(op, s, gp, dx, n);
      })};
    });
  }
  return out;
}
}  // namespace

Tensor sigmoid(const Tensor& x) { return activation(Activation::sigmoid, "sigmoid", x); }
Tensor gelu(const Tensor& x) { return activation(Activation::gelu, "gelu", x); }

Tensor clamp(const Tensor& x_in, float lo, float hi) {
  const Tensor x = detail::contig_f32("clamp", x_in);
  check(!(hi < lo), "clamp: lower bound ", lo, " is above upper bound ", hi, " (input shape ", x.shape(), ")");
  Tensor out = Tensor::empty(x.shape());
  if (out.numel()) kernels::clamp_f32(x.data<float>(), lo, hi, out.data<float>(), out.numel());
  if (autograd::needs_grad({x_in})) {
    const Tensor xs = x.detach();
    autograd::record("clamp", {x_in}, {out}, [xs, lo, hi](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{backward_map(xs, g[0], [lo, hi](const float* s, const float* gp, float* dx, int64_t n) {
        kernels::clamp_bwd_f32(s, lo, hi, gp, dx, n);
      })};
    });
  }
  return out;
}

Tensor sigmoid_mul(const Tensor& x_in, const Tensor& y_in) {
  const Tensor x = detail::contig_f32("sigmoid_mul", x_in, "x");
  const Tensor y = detail::contig_f32("sigmoid_mul", y_in, "y");
  check(x.shape() == y.shape(), "sigmoid_mul: shapes differ: x ", x.shape(), " and y ", y.shape());
  Tensor out = Tensor::empty(x.shape());
  if (out.numel()) kernels::sigmoid_mul_f32(x.data<float>(), y.data<float>(), out.data<float>(), out.numel());
  if (autograd::needs_grad({x_in, y_in})) {
    const bool gx = x_in.requires_grad(), gy = y_in.requires_grad();
    const Tensor xs = x.detach(), ys = y.detach();
    autograd::record("sigmoid_mul", {x_in, y_in}, {out}, [xs, ys, gx, gy](const std::vector<Tensor>& g) {
      const Tensor go = g[0].contiguous();
      Tensor dx = gx ? Tensor::empty(xs.shape()) : Tensor(), dy = gy ? Tensor::empty(xs.shape()) : Tensor();
      if (xs.numel())
        kernels::sigmoid_mul_bwd_f32(xs.data<float>(), ys.data<float>(), go.data<float>(),
                                     gx ? dx.data<float>() : nullptr, gy ? dy.data<float>() : nullptr, xs.numel());
      return std::vector<Tensor>{dx, dy};
    });
  }
  return out;
}

}  // namespace mmrec::ops
