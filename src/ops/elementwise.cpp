#include "ops/elementwise.h"

#include "ops/common.h"
#include "ops/elementwise_attrs.h"
#include "ops/kernels/elementwise.h"
#include "ops/reduce.h"

namespace mmrec::ops {
namespace {
using kernels::BinaryOp;
using kernels::UnaryOp;
using detail::AffineAttrs;
using detail::BinaryAttrs;
using detail::UnaryAttrs;

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
  }
  return "?";
}

void run_binary(const BinaryAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::binary_f32(a.op, in[0].data<float>(), a.na, in[1].data<float>(), a.nb, out[0].data<float>(), a.n);
}
void run_unary(const UnaryAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::unary_f32(a.op, in[0].data<float>(), out[0].data<float>(), a.n);
}
void run_affine(const AffineAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::affine_f32(in[0].data<float>(), a.s, a.t, out[0].data<float>(), a.n);
}

// Forward only: out = a op b with broadcasting over leading axes.
Tensor binary_raw(BinaryOp op, const Tensor& a_in, const Tensor& b_in) {
  const char* name = binary_name(op);
  const Tensor a = detail::contig_f32(name, a_in, "first input");
  const Tensor b = detail::contig_f32(name, b_in, "second input");
  const Shape shape = detail::broadcast_shape(name, a.shape(), b.shape());
  Tensor out = Tensor::empty(shape);
  const int64_t n = out.numel();
  if (n > 0) detail::dispatch<run_binary>(detail::OpKind::binary, BinaryAttrs{op, a.numel(), b.numel(), n}, {a, b}, {out});
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(op, a, b);
  if (!autograd::needs_grad({a, b})) return out;
  const Shape sa = a.shape(), sb = b.shape();
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  // Save only what the backward reads (detached: no history).
  const Tensor a_s = op == BinaryOp::mul && gb ? a.detach() : Tensor();
  const Tensor b_s = (op == BinaryOp::mul || op == BinaryOp::div) ? b.detach() : Tensor();
  const Tensor out_s = op == BinaryOp::div && gb ? out.detach() : Tensor();
  autograd::record(binary_name(op), {a, b}, {out},
                   [op, sa, sb, ga, gb, a_s, b_s, out_s](const std::vector<Tensor>& g) {
                     const Tensor& go = g[0];
                     Tensor da, db;
                     switch (op) {
                       case BinaryOp::add:
                         if (ga) da = detail::sum_to(go, sa);
                         if (gb) db = detail::sum_to(go, sb);
                         break;
                       case BinaryOp::sub:
                         if (ga) da = detail::sum_to(go, sa);
                         if (gb) db = detail::sum_to(neg(go), sb);
                         break;
                       case BinaryOp::mul:
                         if (ga) da = detail::sum_to(binary_raw(BinaryOp::mul, go, b_s), sa);
                         if (gb) db = detail::sum_to(binary_raw(BinaryOp::mul, go, a_s), sb);
                         break;
                       case BinaryOp::div:
                         if (ga) da = detail::sum_to(binary_raw(BinaryOp::div, go, b_s), sa);
                         if (gb)  // d(a/b)/db = -out / b
                           db = detail::sum_to(
                               neg(binary_raw(BinaryOp::div, binary_raw(BinaryOp::mul, go, out_s), b_s)), sb);
                         break;
                     }
                     return std::vector<Tensor>{da, db};
                   });
  return out;
}

Tensor unary_raw(UnaryOp op, const char* name, const Tensor& x_in) {
  const Tensor x = detail::contig_f32(name, x_in);
  Tensor out = Tensor::empty(x.shape());
  if (out.numel()) detail::dispatch<run_unary>(detail::OpKind::unary, UnaryAttrs{op, out.numel()}, {x}, {out});
  return out;
}

Tensor affine_raw(const char* name, const Tensor& x_in, float s, float t) {
  const Tensor x = detail::contig_f32(name, x_in);
  Tensor out = Tensor::empty(x.shape());
  if (out.numel()) detail::dispatch<run_affine>(detail::OpKind::affine, AffineAttrs{s, t, out.numel()}, {x}, {out});
  return out;
}
}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }

Tensor neg(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::neg, "neg", x);
  if (autograd::needs_grad({x}))
    autograd::record("neg", {x}, {out}, [](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{unary_raw(UnaryOp::neg, "neg", g[0])};
    });
  return out;
}

Tensor exp(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::exp, "exp", x);
  if (autograd::needs_grad({x})) {
    const Tensor y = out.detach();
    autograd::record("exp", {x}, {out}, [y](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{binary_raw(BinaryOp::mul, g[0], y)};
    });
  }
  return out;
}

Tensor log(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::log, "log", x);
  if (autograd::needs_grad({x})) {
    const Tensor xs = x.detach();
    autograd::record("log", {x}, {out}, [xs](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{binary_raw(BinaryOp::div, g[0], xs)};
    });
  }
  return out;
}

Tensor scale(const Tensor& x, float s) {
  Tensor out = affine_raw("scale", x, s, 0.0f);
  if (autograd::needs_grad({x}))
    autograd::record("scale", {x}, {out}, [s](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{affine_raw("scale", g[0], s, 0.0f)};
    });
  return out;
}

Tensor add_scalar(const Tensor& x, float s) {
  Tensor out = affine_raw("add_scalar", x, 1.0f, s);
  if (autograd::needs_grad({x}))
    autograd::record("add_scalar", {x}, {out}, [](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0]};
    });
  return out;
}

}  // namespace mmrec::ops
