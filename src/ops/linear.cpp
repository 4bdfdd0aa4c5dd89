#include "ops/linear.h"

#include <cstring>
#include <unordered_map>

#include "ops/common.h"
#include "ops/copy_chains.h"
#include "ops/fuse_pointwise.h"
#include "ops/kernels/linear.h"
#include "ops/linear_passes.h"
#include "ops/norm_pass.h"
#include "tensor/threads.h"

namespace mmrec::ops {
namespace {
using detail::dispatch;
using detail::LinearAttrs;
using detail::OpKind;

const char* act_name(Activation act) {
  switch (act) {
    case Activation::none: return "linear";
    case Activation::gelu: return "linear_gelu";
    case Activation::sigmoid: return "linear_sigmoid";
  }
  return "linear";
}

// x [..., K] as rows [M, K], without a copy when the leading axes collapse
// onto one row stride (contiguous x, or a column slice such as q of qkvz).
Tensor as_rows(const Tensor& x) {
  const int64_t n = x.dim(), K = x.shape().back();
  const int64_t M = K > 0 ? x.numel() / K : numel_of(Shape(x.shape().begin(), x.shape().end() - 1));
  const Shape& st = x.strides();
  if (n == 2 && (st[0] == 1 || st[1] == 1)) return x;
  if (st[n - 1] == 1 || K == 1) {
    int64_t ld = -1, expect = 0;
    bool ok = true;
    for (int64_t i = n - 2; i >= 0 && ok; --i) {
      if (x.shape()[i] == 1) continue;
      if (ld < 0) ld = expect = st[i];
      ok = st[i] == expect;
      expect *= x.shape()[i];
    }
    if (ok) return x.as_strided({M, K}, {ld < 0 ? std::max<int64_t>(K, 1) : ld, 1}, x.offset());
  }
  return x.contiguous().reshape({M, K});
}

// oneDNN needs unit stride on one axis of the weight.
Tensor gemm_ready(const Tensor& w) {
  return w.strides()[0] == 1 || w.strides()[1] == 1 ? w : w.contiguous();
}

Tensor rows_of(const Tensor& g, int64_t M, int64_t N) {
  return g.contiguous().to(DType::f32).reshape({M, N});
}

void run_linear(const LinearAttrs& a, const Tensor* in, const Tensor* out) {
  Tensor y = out[0];
  if (a.accumulate)  // y += x wᵀ + b (the gemm_residual pass)
    kernels::gemm(in[0], in[1].transpose(0, 1), y, in[2], a.act, true);
  else if (a.residual >= 3)  // y = (x wᵀ + b) + r (the gemm_residual pass, binary post-op)
    kernels::gemm(in[0], in[1].transpose(0, 1), y, in[2], Activation::none, false, in[3]);
  else
    kernels::linear_fwd(in[0], in[1], in[2], a.act, y);
}
void run_linear_packed(const LinearAttrs& a, const Tensor* in, const Tensor* out) {
  Tensor y = out[0];
  a.packed->forward(in[0], y);
}
void run_gemm(const LinearAttrs& a, const Tensor* in, const Tensor* out) {
  Tensor c = out[0];
  kernels::gemm(in[0], in[1], c, Tensor(), a.act, a.accumulate, a.residual >= 3 ? in[2] : Tensor());
}
void run_act_forward(const LinearAttrs& a, const Tensor* in, const Tensor* out) {
  Tensor y = out[0];
  kernels::act_forward(a.act, in[0], y);
}
void run_act_backward(const LinearAttrs& a, const Tensor* in, const Tensor* out) {
  Tensor dx = out[0];
  kernels::act_backward(a.act, in[0], in[1], dx);
}
void run_convert(const LinearAttrs&, const Tensor* in, const Tensor* out) {
  Tensor y = out[0];
  kernels::convert(in[0], y);
}
void run_col_sum(const LinearAttrs&, const Tensor* in, const Tensor* out) {
  Tensor db = out[0];
  kernels::col_sum(in[0], db, detail::scratch_ptr(out[1]));
}
constexpr LinearAttrs attrs_of(Activation act) { return LinearAttrs{act, false, nullptr}; }

// Passes run in registration order: copy chains first (they only join copies
// to copies), then the sums reading a copy's source; gemm_accumulate before
// pointwise fusion, which would otherwise absorb the accumulations it looks
// for; then the copies sigmoid_mul reads (after pointwise fusion, which
// takes a sigmoid_mul of a contiguous y into a chain: the sequential
// recurrence's step); then the parts of a concatenation written in place (fused calls
// among them); the residual epilogue after both, on the adds no elementwise
// chain took (x + h + c stays one pointwise pass) and no concatenation
// holds; the norm backward's adds (norm_pass.h); the bias gradients; last,
// activations read again in backward made again there, and with their
// own backward.
const bool fuse_registered = (autograd::register_pass("copy_chains", detail::collapse_copy_chains),
                              autograd::register_describer(OpKind::copy, detail::describe_copy_chain),
                              autograd::register_pass("strided_sum", detail::fuse_strided_sum),
                              autograd::register_describer(OpKind::sum_axis, detail::describe_strided_sum),
                              autograd::register_pass("gemm_accumulate", detail::fuse_gemm_accumulate),
                              autograd::register_describer(OpKind::gemm, detail::describe_gemm),
                              autograd::register_pass("fuse_pointwise", detail::fuse_pointwise),
                              autograd::register_describer(OpKind::fused_pointwise, detail::describe_pointwise),
                              autograd::register_pass("strided_operand", detail::fuse_strided_operand),
                              autograd::register_describer(OpKind::sigmoid_mul, detail::describe_strided_operand),
                              autograd::register_describer(OpKind::sigmoid_mul_bwd, detail::describe_strided_operand),
                              autograd::register_pass("write_in_place", detail::write_in_place),
                              autograd::register_describer(OpKind::expand_axis, detail::describe_expand_in_place),
                              autograd::register_describer(OpKind::memattn, detail::describe_memattn_in_place),
                              autograd::register_pass("gemm_residual", detail::fuse_gemm_residual),
                              autograd::register_describer(OpKind::linear, detail::describe_gemm),
                              autograd::register_pass("norm_accumulate", detail::fuse_norm_accumulate),
                              autograd::register_describer(OpKind::rmsnorm_bwd, detail::describe_norm_accumulate),
                              autograd::register_pass("bias_grad", detail::fuse_bias_grad),
                              autograd::register_describer(OpKind::act_backward, detail::describe_bias_grad),
                              autograd::register_pass("rematerialize", detail::rematerialize_activations),
                              autograd::register_describer(OpKind::act_forward, detail::describe_remat),
                              autograd::register_pass("remat_backward", detail::fuse_remat_backward), true);

struct Grads {
  Tensor dx, dw, db;  // [M, K], [N, K], [N]
};

// The backward of y = act(x wᵀ + b) on rows: gy [M, N] f32 contiguous.
// `saved` is the pre-activation (gelu) or the output (sigmoid).
// bf16 layers run dX and dW as bf16 GEMMs (dY rounded to bf16, f32
// accumulation and f32 results), like their forward; db sums dY in f32.
Grads backward_rows(const Tensor& gy, const Tensor& x, const Tensor& w, const Tensor& saved, Activation act, bool gx,
                    bool gw, bool gb) {
  const int64_t M = gy.shape()[0], N = gy.shape()[1], K = x.shape()[1];
  Tensor g = gy;
  if (act != Activation::none) {
    g = Tensor::empty({M, N});
    dispatch<run_act_backward>(OpKind::act_backward, attrs_of(act), {gy, saved}, {g});
  }
  Tensor gl = g;
  if (x.dtype() == DType::bf16 && (gx || gw)) {
    gl = Tensor::empty({M, N}, DType::bf16);
    dispatch<run_convert>(OpKind::convert, attrs_of(act), {g}, {gl});
  }
  Grads r;
  if (gx) {
    r.dx = Tensor::empty({M, K});
    dispatch<run_gemm>(OpKind::gemm, attrs_of(Activation::none), {gl, w}, {r.dx});  // [M, N] · [N, K]
  }
  if (gw) {
    r.dw = Tensor::empty({N, K});
    // [N, M] · [M, K], Aᵀ as a strided view
    dispatch<run_gemm>(OpKind::gemm, attrs_of(Activation::none), {gl.transpose(0, 1), x}, {r.dw});
  }
  if (gb) {
    r.db = Tensor::empty({N});
    dispatch<run_col_sum>(OpKind::col_sum, attrs_of(act), {g},
                          {r.db, detail::scratch(kernels::col_sum_scratch_bytes(M, N))});
  }
  return r;
}

// The forward on rows; returns y [M, N] and sets `saved` for the backward.
// With gelu and a backward to come, the GEMM writes the pre-activation and a
// separate Highway pass applies gelu: that pass costs ~5 % of the forward,
// while re-running the GEMM in the backward would cost 100 % (see the
// linear_gelu benchmarks). Its bits differ from the post-op's of no-grad
// forwards in the last place (TrainingActivations gives a no-grad forward
// these). sigmoid's backward needs only y, so it stays fused.
Tensor forward_rows(const Tensor& x, const Tensor& w, const Tensor& b, Activation act, bool training, Tensor& saved) {
  const int64_t M = x.shape()[0], N = w.shape()[0];
  Tensor y = Tensor::empty({M, N});
  if (act == Activation::gelu && training) {
    Tensor pre = Tensor::empty({M, N});
    dispatch<run_linear>(OpKind::linear, attrs_of(Activation::none), {x, w, b}, {pre});
    dispatch<run_act_forward>(OpKind::act_forward, attrs_of(Activation::gelu), {pre}, {y});
    saved = pre;
  } else {
    dispatch<run_linear>(OpKind::linear, attrs_of(act), {x, w, b}, {y});
    if (act == Activation::sigmoid) saved = y.detach();
  }
  return y;
}

void check_args(const char* op, const Tensor& x, const Tensor& w, const Tensor& b) {
  detail::check_defined(op, x, "x");
  detail::check_defined(op, w, "weight");
  check(x.dim() >= 1, op, ": x must have at least one axis, got ", x.shape());
  check(x.dtype() == DType::f32 || x.dtype() == DType::bf16, op, ": x must be f32 or bf16, got ",
        dtype_name(x.dtype()), " of shape ", x.shape());
  check(w.dim() == 2, op, ": weight must be rank 2 [Out, In], got ", w.shape());
  check(x.shape().back() == w.shape()[1], op, ": x ", x.shape(), " last axis does not match weight ", w.shape());
  check(x.dtype() == w.dtype(), op, ": x ", x.shape(), " is ", dtype_name(x.dtype()), " but weight ", w.shape(),
        " is ", dtype_name(w.dtype()), " (both f32 or both bf16)");
  if (b.defined()) {
    detail::check_f32(op, b, "bias");
    check(b.dim() == 1 && b.shape()[0] == w.shape()[0], op, ": bias ", b.shape(), " does not match weight ",
          w.shape(), " (expected [", w.shape()[0], "])");
  }
}

// Copies four [M, D] gradients side by side into one [M, 4D] buffer.
Tensor join4(const std::vector<Tensor>& g, int64_t M, int64_t D) {
  Tensor out = Tensor::empty({M, 4 * D});
  std::vector<Tensor> parts;
  for (const Tensor& t : g) parts.push_back(rows_of(t, M, D));
  const int64_t row = D * static_cast<int64_t>(sizeof(float));
  for (int64_t i = 0; i < 4; ++i) detail::copy_block(out, i * row, 4 * row, parts[static_cast<size_t>(i)], 0, row, M, row);
  return out;
}

}  // namespace

static thread_local bool t_training_activations = false;

TrainingActivations::TrainingActivations() : prev_(t_training_activations) { t_training_activations = true; }
TrainingActivations::~TrainingActivations() { t_training_activations = prev_; }

Tensor linear(const Tensor& x, const Tensor& w_in, const Tensor& b_in, Activation act) {
  const char* op = "linear";
  check_args(op, x, w_in, b_in);
  const Tensor w = gemm_ready(w_in), b = b_in.defined() ? b_in.contiguous() : b_in;
  const int64_t N = w.shape()[0];
  const Tensor x2 = as_rows(x);
  const bool training = autograd::needs_grad({x, w_in, b_in});
  Tensor saved;
  Tensor y = forward_rows(x2, w, b, act, training || t_training_activations, saved);
  Shape out_shape = x.shape();
  out_shape.back() = N;
  y = y.reshape(out_shape);
  if (training) {
    const Tensor xs = x2.detach(), ws = w.detach(), ss = saved.defined() ? saved.detach() : saved;
    const bool gx = x.requires_grad(), gw = w_in.requires_grad(), gb = b_in.defined() && b_in.requires_grad();
    const Shape xshape = x.shape();
    autograd::record(act_name(act), {x, w_in, b_in}, {y},
                     [xs, ws, ss, act, gx, gw, gb, xshape](const std::vector<Tensor>& g) {
                       const int64_t M = xs.shape()[0], N = ws.shape()[0];
                       Grads r = backward_rows(rows_of(g[0], M, N), xs, ws, ss, act, gx, gw, gb);
                       if (gx) r.dx = r.dx.reshape(xshape);
                       return std::vector<Tensor>{r.dx, r.dw, r.db};
                     });
  }
  return y;
}

Tensor linear(const Tensor& x, const kernels::PackedLinear& packed) {
  const char* op = "linear(packed)";
  detail::check_defined(op, x, "x");
  check(packed.defined(), op, ": the PackedLinear is empty");
  check(x.dim() >= 1 && x.shape().back() == packed.in_features(), op, ": x ", x.shape(),
        " does not match the packed weight's ", packed.in_features(), " input features");
  check(x.dtype() == packed.dtype(), op, ": x is ", dtype_name(x.dtype()), ", the packed weight ",
        dtype_name(packed.dtype()));
  check(!autograd::needs_grad({x}), op, ": has no backward, but x ", x.shape(),
        " requires grad (use it under NoGradGuard)");
  const Tensor x2 = as_rows(x);
  Tensor y = Tensor::empty({x2.shape()[0], packed.out_features()});
  dispatch<run_linear_packed>(OpKind::linear_packed, LinearAttrs{Activation::none, false, &packed}, {x2}, {y});
  Shape out_shape = x.shape();
  out_shape.back() = packed.out_features();
  return y.reshape(out_shape);
}

std::array<Tensor, 4> qkvz(const Tensor& x, const Tensor& w_in, const Tensor& b_in) {
  const char* op = "qkvz";
  detail::check_defined(op, x, "x");
  detail::check_defined(op, w_in, "weight");
  detail::check_defined(op, b_in, "bias");
  check(x.dim() >= 1, op, ": x must have at least one axis, got ", x.shape());
  const int64_t D = x.shape().back();
  check(w_in.dim() == 2 && w_in.shape()[0] == 4 * D && w_in.shape()[1] == D, op, ": weight ", w_in.shape(),
        " is not [4D, D] = [", 4 * D, ", ", D, "] for x ", x.shape());
  check_args(op, x, w_in, b_in);
  const Tensor w = gemm_ready(w_in), b = b_in.contiguous();
  const Tensor x2 = as_rows(x);
  Tensor none;
  Tensor y = forward_rows(x2, w, b, Activation::none, false, none);  // [M, 4D]
  Shape out_shape = x.shape();
  out_shape.back() = 4 * D;
  y = y.reshape(out_shape);
  std::array<Tensor, 4> out;
  for (int64_t i = 0; i < 4; ++i) out[i] = y.slice(-1, i * D, (i + 1) * D);
  if (autograd::needs_grad({x, w_in, b_in})) {
    const Tensor xs = x2.detach(), ws = w.detach();
    const bool gx = x.requires_grad(), gw = w_in.requires_grad(), gb = b_in.requires_grad();
    const Shape xshape = x.shape();
    autograd::record(op, {x, w_in, b_in}, {out[0], out[1], out[2], out[3]},
                     [xs, ws, gx, gw, gb, xshape, D](const std::vector<Tensor>& g) {
                       const int64_t M = xs.shape()[0];
                       Grads r = backward_rows(join4(g, M, D), xs, ws, Tensor(), Activation::none, gx, gw, gb);
                       if (gx) r.dx = r.dx.reshape(xshape);
                       return std::vector<Tensor>{r.dx, r.dw, r.db};
                     });
  }
  return out;
}

}  // namespace mmrec::ops
