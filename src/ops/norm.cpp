#include "ops/norm.h"

#include "ops/common.h"
#include "ops/elementwise_attrs.h"
#include "ops/fuse_pointwise.h"
#include "ops/kernels/norm.h"
#include "ops/norm_pass.h"

namespace mmrec::ops {
namespace {
struct NormAttrs {
  float eps;
  int64_t rows, d;
  bool add = false;  // rmsnorm_bwd: dx = in[4] + the gradient (norm_accumulate)
};
void run_rmsnorm(const NormAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::rmsnorm_f32(in[0].data<float>(), in[1].data<float>(), a.eps, out[0].data<float>(),
                       detail::f32_or_null(out[1]), a.rows, a.d);
}
void run_rmsnorm_bwd(const NormAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::rmsnorm_bwd_f32(in[0].data<float>(), in[1].data<float>(), in[2].data<float>(), in[3].data<float>(),
                           detail::f32_or_null(out[0]), detail::f32_or_null(out[1]), a.rows, a.d,
                           detail::scratch_ptr(out[2]), a.add ? in[4].data<float>() : nullptr);
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


namespace detail {
size_t fuse_norm_accumulate(std::vector<autograd::Call>& calls, const std::function<bool(const Storage*)>& temporary) {
  autograd::BufferIndex ix = autograd::index_buffers(calls);
  std::vector<bool> drop(calls.size(), false);
  size_t fused = 0;
  const auto plain = [](const Tensor& t, const Tensor& like) {
    return t.dtype() == DType::f32 && t.is_contiguous() && t.numel() == like.numel();
  };
  for (size_t i = 0; i < calls.size(); ++i) {
    autograd::Call& c = calls[i];
    if (c.kind != OpKind::rmsnorm_bwd || !c.out[0].defined()) continue;
    NormAttrs a = attrs_of_call<NormAttrs>(c);
    const Tensor t = c.out[0];
    const Storage* ts = storage_of(t);
    if (a.add || !temporary(ts) || ix[ts].uses() != 2 || !autograd::whole_buffer(t)) continue;
    const size_t j = ix[ts].last();
    if (j <= i || !adds_two(calls[j])) continue;
    const Tensor r = storage_of(calls[j].in[0]) == ts ? calls[j].in[1] : calls[j].in[0], o = calls[j].out[0];
    const Storage *rs = storage_of(r), *os = storage_of(o);
    if (rs == ts || !plain(r, t) || !plain(o, t)) continue;
    // r is read and o written at i instead of j: nothing in between may
    // write r or touch o, and o is none of the norm's inputs.
    bool clear = true;
    for (size_t k : ix[rs].writers) clear &= k < i || k >= j;
    for (const auto* v : {&ix[os].readers, &ix[os].writers})
      for (size_t k : *v) clear &= k < i || k >= j;
    for (const Tensor& x : c.in) clear &= !x.defined() || storage_of(x) != os;
    if (!clear) continue;
    a.add = true;
    c.attrs = autograd::Attrs::of(a);
    c.in.push_back(r);
    c.out[0] = o;
    drop[j] = true;
    ++fused;
  }
  autograd::erase_calls(calls, drop);
  return fused;
}

std::string describe_norm_accumulate(const autograd::Call& c) {
  if (!attrs_of_call<NormAttrs>(c).add) return "";
  return "rmsnorm_bwd -> copy -> grad_accumulate (3 calls, the sum made as the norm's gradient is written)";
}
}  // namespace detail

}  // namespace mmrec::ops
