#include "ops/activation.h"

#include "ops/common.h"
#include "ops/elementwise_attrs.h"
#include "ops/kernels/activation.h"

namespace mmrec::ops {
namespace {
using kernels::Activation;
using detail::ActAttrs;

void run_activation(const ActAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::activation_f32(a.op, in[0].data<float>(), out[0].data<float>(), a.n);
}
void run_activation_bwd(const ActAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::activation_bwd_f32(a.op, in[0].data<float>(), in[1].data<float>(), out[0].data<float>(), a.n);
}
void run_clamp(const ActAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::clamp_f32(in[0].data<float>(), a.lo, a.hi, out[0].data<float>(), a.n);
}
void run_clamp_bwd(const ActAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::clamp_bwd_f32(in[0].data<float>(), a.lo, a.hi, in[1].data<float>(), out[0].data<float>(), a.n);
}
void run_sigmoid_mul(const ActAttrs& a, const Tensor* in, const Tensor* out) {
  if (a.ld)
    return kernels::sigmoid_mul_rows_f32(in[0].data<float>(), in[1].data<float>(), a.ld, out[0].data<float>(),
                                         a.n / a.cols, a.cols);
  kernels::sigmoid_mul_f32(in[0].data<float>(), in[1].data<float>(), out[0].data<float>(), a.n);
}
void run_sigmoid_mul_bwd(const ActAttrs& a, const Tensor* in, const Tensor* out) {
  if (a.ld)
    return kernels::sigmoid_mul_bwd_rows_f32(in[0].data<float>(), in[1].data<float>(), a.ld, in[2].data<float>(),
                                             detail::f32_or_null(out[0]), detail::f32_or_null(out[1]), a.n / a.cols,
                                             a.cols);
  kernels::sigmoid_mul_bwd_f32(in[0].data<float>(), in[1].data<float>(), in[2].data<float>(),
                               detail::f32_or_null(out[0]), detail::f32_or_null(out[1]), a.n);
}

// dx from a saved tensor and the output gradient, both of one shape.
template <auto Run>
Tensor backward_map(detail::OpKind kind, const ActAttrs& attrs, const Tensor& saved, const Tensor& g_in) {
  const Tensor g = g_in.contiguous();
  Tensor dx = Tensor::empty(saved.shape());
  if (dx.numel()) detail::dispatch<Run>(kind, attrs, {saved, g}, {dx});
  return dx;
}

Tensor activation(Activation op, const char* name, const Tensor& x_in) {
  const Tensor x = detail::contig_f32(name, x_in);
  Tensor out = Tensor::empty(x.shape());
  const ActAttrs attrs{op, 0.0f, 0.0f, out.numel()};
  if (out.numel()) detail::dispatch<run_activation>(detail::OpKind::activation, attrs, {x}, {out});
  if (autograd::needs_grad({x_in})) {
    // σ' needs only the output; GELU's needs the input.
    const Tensor saved = op == Activation::sigmoid ? out.detach() : x.detach();
    autograd::record(name, {x_in}, {out}, [attrs, saved](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{backward_map<run_activation_bwd>(detail::OpKind::activation_bwd, attrs, saved, g[0])};
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
  const ActAttrs attrs{Activation{}, lo, hi, out.numel()};
  if (out.numel()) detail::dispatch<run_clamp>(detail::OpKind::clamp, attrs, {x}, {out});
  if (autograd::needs_grad({x_in})) {
    // The backward keeps the output, not x: lo < y < hi exactly where
    // lo < x < hi (y is x there, a bound elsewhere; a NaN x gives no
    // gradient either way), so x may die here (a product clamped, as the
    // decay gate's, becomes one pass in a captured step).
    const Tensor ys = out.detach();
    autograd::record("clamp", {x_in}, {out}, [ys, attrs](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{backward_map<run_clamp_bwd>(detail::OpKind::clamp_bwd, attrs, ys, g[0])};
    });
  }
  return out;
}

Tensor sigmoid_mul(const Tensor& x_in, const Tensor& y_in) {
  const Tensor x = detail::contig_f32("sigmoid_mul", x_in, "x");
  const Tensor y = detail::contig_f32("sigmoid_mul", y_in, "y");
  check(x.shape() == y.shape(), "sigmoid_mul: shapes differ: x ", x.shape(), " and y ", y.shape());
  Tensor out = Tensor::empty(x.shape());
  const ActAttrs attrs{Activation::sigmoid, 0.0f, 0.0f, out.numel()};
  if (out.numel()) detail::dispatch<run_sigmoid_mul>(detail::OpKind::sigmoid_mul, attrs, {x, y}, {out});
  if (autograd::needs_grad({x_in, y_in})) {
    const bool gx = x_in.requires_grad(), gy = y_in.requires_grad();
    const Tensor xs = x.detach(), ys = y.detach();
    autograd::record("sigmoid_mul", {x_in, y_in}, {out}, [xs, ys, gx, gy, attrs](const std::vector<Tensor>& g) {
      const Tensor go = g[0].contiguous();
      Tensor dx = gx ? Tensor::empty(xs.shape()) : Tensor(), dy = gy ? Tensor::empty(xs.shape()) : Tensor();
      if (xs.numel()) detail::dispatch<run_sigmoid_mul_bwd>(detail::OpKind::sigmoid_mul_bwd, attrs, {xs, ys, go}, {dx, dy});
      return std::vector<Tensor>{dx, dy};
    });
  }
  return out;
}

}  // namespace mmrec::ops
