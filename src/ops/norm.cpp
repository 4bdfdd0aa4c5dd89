#include "ops/norm.h"

#include "ops/common.h"
#include "ops/kernels/norm.h"

namespace mmrec::ops {
namespace {
struct NormAttrs {
  float eps;
  int64_t rows, d;
};
void run_rmsnorm(const NormAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::rmsnorm_f32(in[0].data<float>(), in[1].data<float>(), a.eps, out[0].data<float>(),
                       detail::f32_or_null(out[1]), a.rows, a.d);
}
void run_rmsnorm_bwd(const NormAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::rmsnorm_bwd_f32(in[0].data<float>(), in[1].data<float>(), in[2].data<float>(), in[3].data<float>(),
                           detail::f32_or_null(out[0]), detail::f32_or_null(out[1]), a.rows, a.d,
                           detail::scratch_ptr(out[2]));
}
}  // namespace

Tensor rmsnorm(const Tensor& x_in, const Tensor& w_in, float eps) {
  const Tensor x = detail::contig_f32("rmsnorm", x_in, "x");
  const Tensor w = detail::contig_f32("rmsnorm", w_in, "weight");
  check(x.dim() >= 1, "rmsnorm: x must have at least one axis, got shape ", x.shape());
  check(w.dim() == 1 && w.shape()[0] == x.shape().back(), "rmsnorm: weight shape ", w.shape(),
        " does not match last axis of x ", x.shape());
  check(eps >= 0.0f, "rmsnorm: eps must be >= 0, got ", eps);
  const int64_t d = x.shape().back();
  const int64_t rows = d ? x.numel() / d : numel_of(Shape(x.shape().begin(), x.shape().end() - 1));
  Tensor out = Tensor::empty(x.shape());
  const bool grad = autograd::needs_grad({x_in, w_in});
  Tensor rstd = grad ? Tensor::empty({rows}) : Tensor();
  const NormAttrs attrs{eps, rows, d};
  detail::dispatch<run_rmsnorm>(detail::OpKind::rmsnorm, attrs, {x, w}, {out, rstd});
  if (grad) {
    const bool gx = x_in.requires_grad(), gw = w_in.requires_grad();
    const Tensor xs = x.detach(), ws = w.detach();
    autograd::record("rmsnorm", {x_in, w_in}, {out}, [xs, ws, rstd, gx, gw, attrs](const std::vector<Tensor>& g) {
      const Tensor go = g[0].contiguous();
      Tensor dx = gx ? Tensor::empty(xs.shape()) : Tensor();
      Tensor dw = gw ? Tensor::empty(ws.shape()) : Tensor();
      const Tensor scratch = detail::scratch(kernels::rmsnorm_bwd_scratch_bytes(attrs.rows, attrs.d, gw));
      detail::dispatch<run_rmsnorm_bwd>(detail::OpKind::rmsnorm_bwd, attrs, {xs, ws, rstd, go}, {dx, dw, scratch});
      return std::vector<Tensor>{dx, dw};
    });
  }
  return out;
}

}  // namespace mmrec::ops
