#include "ops/shape.h"

#include "ops/common.h"
#include "ops/kernels/gather.h"

namespace mmrec::ops {
namespace {
using detail::RowsAttrs;
// rows x row_bytes from src (+ src_off bytes, rows src_stride apart) to dst.
void run_copy_rows(const RowsAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::copy_rows(static_cast<char*>(out[0].raw_data()) + a.dst_off, a.dst_stride,
                     static_cast<const char*>(in[0].raw_data()) + a.src_off, a.src_stride, a.rows, a.row_bytes);
}
}  // namespace

void detail::copy_block(const Tensor& dst, int64_t dst_off, int64_t dst_stride, const Tensor& src, int64_t src_off,
                        int64_t src_stride, int64_t rows, int64_t row_bytes) {
  const RowsAttrs attrs{dst_off, dst_stride, src_off, src_stride, rows, row_bytes};
  dispatch<run_copy_rows>(OpKind::copy_rows, attrs, {src}, {dst});
}
using detail::copy_block;

namespace {
int64_t prod(const Shape& s, size_t b, size_t e) {
  int64_t p = 1;
  for (size_t i = b; i < e; ++i) p *= s[i];
  return p;
}
}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  check(!xs.empty(), "concat: no inputs");
  for (size_t i = 0; i < xs.size(); ++i) check(xs[i].defined(), "concat: input ", i, " is undefined");
  const Tensor& x0 = xs[0];
  check(x0.dim() >= 1, "concat: inputs must have at least one axis, got shape ", x0.shape());
  const int64_t a = normalize_axis(axis, x0.dim(), "concat");
  Shape out_shape = x0.shape();
  out_shape[a] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    check(x.dtype() == x0.dtype(), "concat: input ", i, " is ", dtype_name(x.dtype()), " but input 0 is ",
          dtype_name(x0.dtype()));
    bool match = x.dim() == x0.dim();
    for (int64_t k = 0; match && k < x.dim(); ++k) match = k == a || x.shape()[k] == x0.shape()[k];
    check(match, "concat: input ", i, " of shape ", x.shape(), " does not match input 0 of shape ", x0.shape(),
          " outside axis ", a);
    out_shape[a] += x.shape()[a];
  }
  const int64_t outer = prod(out_shape, 0, a), inner = prod(out_shape, a + 1, out_shape.size());
  const int64_t es = static_cast<int64_t>(dtype_size(x0.dtype()));
  const int64_t total = out_shape[a];
  Tensor out = Tensor::empty(out_shape, x0.dtype());
  int64_t off = 0;
  for (const Tensor& x_in : xs) {
    const Tensor x = x_in.contiguous();
    const int64_t len = x.shape()[a];
    copy_block(out, off * inner * es, total * inner * es, x, 0, len * inner * es, outer, len * inner * es);
    off += len;
  }
  if (autograd::needs_grad(xs)) {
    std::vector<Shape> shapes;
    std::vector<bool> wants;
    for (const Tensor& x : xs) shapes.push_back(x.shape()), wants.push_back(x.requires_grad());
    autograd::record("concat", xs, {out}, [shapes, wants, a, outer, inner, total](const std::vector<Tensor>& g) {
      const Tensor go = g[0].contiguous();
      constexpr int64_t fs = sizeof(float);
      std::vector<Tensor> gx(shapes.size());
      int64_t off = 0;
      for (size_t i = 0; i < shapes.size(); ++i) {
        const int64_t len = shapes[i][static_cast<size_t>(a)];
        if (wants[i]) {
          gx[i] = Tensor::empty(shapes[i]);
          copy_block(gx[i], 0, len * inner * fs, go, off * inner * fs, total * inner * fs, outer, len * inner * fs);
        }
        off += len;
      }
      return gx;
    });
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis) {
  detail::check_defined("split", x);
  check(x.dim() >= 1, "split: input must have at least one axis, got shape ", x.shape());
  const int64_t a = normalize_axis(axis, x.dim(), "split");
  int64_t sum = 0;
  for (int64_t s : sizes) {
    check(s >= 0, "split: negative size ", s, " in ", Shape(sizes), " for x of shape ", x.shape());
    sum += s;
  }
  check(sum == x.shape()[a], "split: sizes ", Shape(sizes), " sum to ", sum, " but axis ", a, " of x ", x.shape(),
        " has ", x.shape()[a]);
  std::vector<Tensor> outs;
  int64_t off = 0;
  for (int64_t s : sizes) {
    outs.push_back(x.slice(a, off, off + s));
    off += s;
  }
  if (autograd::needs_grad({x}) && !outs.empty()) {
    const Shape xs = x.shape();
    const int64_t outer = prod(xs, 0, a), inner = prod(xs, a + 1, xs.size());
    autograd::record("split", {x}, outs, [xs, sizes, a, outer, inner](const std::vector<Tensor>& g) {
      // Every part of x belongs to one output: the gradient is their blocks
      // side by side (outputs without a gradient arrive as zeros). One part
      // spanning the whole axis (the others empty) gives its gradient as is.
      const int64_t len = xs[static_cast<size_t>(a)];
      for (size_t k = 0; k < sizes.size(); ++k)
        if (sizes[k] == len && len > 0) return std::vector<Tensor>{g[k].contiguous()};
      Tensor dx = Tensor::empty(xs);
      constexpr int64_t fs = sizeof(float);
      int64_t off = 0;
      for (size_t k = 0; k < sizes.size(); ++k) {
        const Tensor gk = g[k].contiguous();
        copy_block(dx, off * inner * fs, xs[static_cast<size_t>(a)] * inner * fs, gk, 0, sizes[k] * inner * fs, outer,
                   sizes[k] * inner * fs);
        off += sizes[k];
      }
      return std::vector<Tensor>{dx};
    });
  }
  return outs;
}

}  // namespace mmrec::ops
