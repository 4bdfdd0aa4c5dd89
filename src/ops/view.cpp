#include "ops/view.h"

#include "ops/common.h"
#include "ops/kernels/linear.h"

namespace mmrec::ops {
namespace {
// Records a node whose backward is `back(grad_output)`.
template <class F>
Tensor with_grad(const char* name, const Tensor& x, Tensor out, F back) {
  if (autograd::needs_grad({x})) {
    // A view shares storage: give it its own impl so the node owns it alone.
    if (out.same(x)) out = x.detach();
    autograd::record(name, {x}, {out}, [back](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{back(g[0])};
    });
  }
  return out;
}

// A handle on x for the tape alone: its id, shape and producing node, not its
// storage (a leaf, or a tensor that retains its grad, is kept as it is). For
// nodes whose backward never reads that input's values: a cast to bf16 then
// lets the f32 activation go as soon as the caller drops it, so mixed
// precision keeps GEMM inputs in bf16 only.
Tensor graph_handle(const Tensor& x) {
  if (x.is_leaf() || x.impl()->retains_grad) return x;
  auto h = std::make_shared<TensorImpl>(*x.impl());
  h->storage.reset();
  h->grad.reset();
  return Tensor(h);
}
}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  detail::check_defined("reshape", x);
  const Shape xs = x.shape();
  return with_grad("reshape", x, x.reshape(shape), [xs](const Tensor& g) { return g.reshape(xs); });
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end) {
  detail::check_defined("slice", x);
  const Shape xs = x.shape();
  const int64_t a = normalize_axis(axis, x.dim(), "slice");
  return with_grad("slice", x, x.slice(a, start, end), [xs, a, start, end](const Tensor& g) {
    Tensor gx = Tensor::zeros(xs);
    gx.slice(a, start, end).copy_from(g);
    return gx;
  });
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  detail::check_defined("transpose", x);
  return with_grad("transpose", x, x.transpose(d0, d1), [d0, d1](const Tensor& g) { return g.transpose(d0, d1); });
}

Tensor permute(const Tensor& x, const Shape& order) {
  detail::check_defined("permute", x);
  Tensor out = x.permute(order);
  Shape inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i)
    inverse[static_cast<size_t>(normalize_axis(order[i], x.dim(), "permute"))] = static_cast<int64_t>(i);
  return with_grad("permute", x, out, [inverse](const Tensor& g) { return g.permute(inverse); });
}

Tensor squeeze(const Tensor& x, int64_t axis) {
  detail::check_defined("squeeze", x);
  const Shape xs = x.shape();
  return with_grad("squeeze", x, x.squeeze(axis), [xs](const Tensor& g) { return g.reshape(xs); });
}

Tensor unsqueeze(const Tensor& x, int64_t axis) {
  detail::check_defined("unsqueeze", x);
  const Shape xs = x.shape();
  return with_grad("unsqueeze", x, x.unsqueeze(axis), [xs](const Tensor& g) { return g.reshape(xs); });
}

Tensor contiguous(const Tensor& x) {
  detail::check_defined("contiguous", x);
  return with_grad("contiguous", x, x.contiguous(), [](const Tensor& g) { return g; });
}

Tensor cast(const Tensor& x, DType dtype) {
  detail::check_defined("cast", x);
  if (x.dtype() == dtype) return x;
  Tensor y;
  if ((x.dtype() == DType::f32 || x.dtype() == DType::bf16) && (dtype == DType::f32 || dtype == DType::bf16)) {
    y = Tensor::empty(x.shape(), dtype);  // kernels::convert, in parallel (mixed precision casts every GEMM input)
    convert_into(x.contiguous(), y);
  } else {
    y = x.to(dtype);
  }
  if (autograd::needs_grad({x}))
    autograd::record("cast", {graph_handle(x)}, {y}, [](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].to(DType::f32)};
    });
  return y;
}

namespace {
struct ConvertAttrs {
  int64_t n;
};
void run_convert(const ConvertAttrs&, const Tensor* in, const Tensor* out) {
  Tensor y = out[0];
  kernels::convert(in[0], y);
}
}  // namespace

void convert_into(const Tensor& src, const Tensor& dst) {
  check(src.is_contiguous() && dst.is_contiguous() && src.numel() == dst.numel(), "convert_into: src ",
        src.shape(), " and dst ", dst.shape(), " must be contiguous with as many elements");
  detail::dispatch<run_convert>(detail::OpKind::convert, ConvertAttrs{src.numel()}, {src}, {dst});
}

Tensor stand_in(const Tensor& master, const Tensor& copy) {
  detail::check_f32("stand_in", master, "master");
  detail::check_defined("stand_in", copy, "copy");
  check(master.shape() == copy.shape(), "stand_in: copy ", copy.shape(), " does not match master ", master.shape());
  return with_grad("stand_in", master, copy.detach(), [](const Tensor& g) { return g; });
}

}  // namespace mmrec::ops
