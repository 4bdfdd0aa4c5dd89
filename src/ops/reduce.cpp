#include "ops/reduce.h"

#include "ops/common.h"
#include "ops/elementwise_attrs.h"
#include "ops/kernels/reduce.h"

namespace mmrec::ops {
namespace {

using detail::AxisAttrs;
void run_sum_axis(const AxisAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::sum_axis_f32(in[0].data<float>(), a.outer, a.n, a.inner, a.scale, out[0].data<float>(),
                        detail::scratch_ptr(out[1]), kernels::SumBlockFn(), a.ld, a.group, a.group_stride);
}
void run_expand_axis(const AxisAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::expand_axis_f32(in[0].data<float>(), a.outer, a.n, a.inner, a.scale, out[0].data<float>(), a.ld);
}

// x viewed as [outer, n, inner], reduced over n.
Tensor reduce_raw(const char* op, const Tensor& x_in, int64_t outer, int64_t n, int64_t inner, float scale,
                  const Shape& out_shape) {
  const Tensor x = detail::contig_f32(op, x_in);
  Tensor out = Tensor::empty(out_shape);
  if (out.numel() == 0) return out;
  if (n == 0) {
    out.fill(0.0);
    return out;
  }
  detail::dispatch<run_sum_axis>(detail::OpKind::sum_axis, AxisAttrs{outer, n, inner, scale, 0, 0, 0}, {x},
                                 {out, detail::scratch(kernels::sum_axis_scratch_bytes(outer, n, inner))});
  return out;
}

Tensor expand_raw(const Tensor& g_in, int64_t outer, int64_t n, int64_t inner, float scale, const Shape& shape) {
  const Tensor g = g_in.contiguous();
  Tensor out = Tensor::empty(shape);
  if (out.numel())
    detail::dispatch<run_expand_axis>(detail::OpKind::expand_axis, AxisAttrs{outer, n, inner, scale, 0, 0, 0}, {g}, {out});
  return out;
}

Tensor reduce(const char* op, const Tensor& x, int64_t outer, int64_t n, int64_t inner, bool is_mean,
              const Shape& out_shape) {
  detail::check_f32(op, x);
  const float scale = is_mean ? (n > 0 ? 1.0f / static_cast<float>(n) : 0.0f) : 1.0f;
  Tensor out = reduce_raw(op, x, outer, n, inner, scale, out_shape);
  if (autograd::needs_grad({x})) {
    const Shape xs = x.shape();
    autograd::record(op, {x}, {out}, [=](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{expand_raw(g[0], outer, n, inner, scale, xs)};
    });
  }
  return out;
}

Tensor reduce_axis(const char* op, const Tensor& x, int64_t axis, bool keepdim, bool is_mean) {
  detail::check_defined(op, x);
  const int64_t a = normalize_axis(axis, x.dim(), op);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < a; ++i) outer *= x.shape()[i];
  for (int64_t i = a + 1; i < x.dim(); ++i) inner *= x.shape()[i];
  Shape out_shape = x.shape();
  if (keepdim)
    out_shape[a] = 1;
  else
    out_shape.erase(out_shape.begin() + a);
  return reduce(op, x, outer, x.shape()[a], inner, is_mean, out_shape);
}
}  // namespace

Tensor sum(const Tensor& x) {
  detail::check_defined("sum", x);
  return reduce("sum", x, 1, x.numel(), 1, false, {});
}
Tensor mean(const Tensor& x) {
  detail::check_defined("mean", x);
  return reduce("mean", x, 1, x.numel(), 1, true, {});
}
Tensor sum(const Tensor& x, int64_t axis, bool keepdim) { return reduce_axis("sum", x, axis, keepdim, false); }
Tensor mean(const Tensor& x, int64_t axis, bool keepdim) { return reduce_axis("mean", x, axis, keepdim, true); }

namespace detail {
Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int64_t inner = numel_of(shape);
  const int64_t rows = inner ? g.numel() / inner : 0;
  return reduce_raw("sum_to", g, 1, rows, inner, 1.0f, shape);
}
}  // namespace detail

}  // namespace mmrec::ops
