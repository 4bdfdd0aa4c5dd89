#include "ops/matmul.h"

#include "ops/common.h"
#include "ops/kernels/matmul.h"

namespace mmrec::ops {
namespace {

struct NoAttrs {};
void run_matmul(const NoAttrs&, const Tensor* in, const Tensor* out) {
  Tensor c = out[0];
  kernels::matmul_f32(in[0], in[1], c);
}

// oneDNN takes any strides as long as one of the last two axes is dense.
Tensor gemm_ready(const Tensor& t) {
  const int64_t n = t.dim();
  if (t.strides()[n - 1] == 1 || t.strides()[n - 2] == 1 || t.numel() == 0) return t;
  return t.contiguous();
}

Tensor matmul_raw(const Tensor& a_in, const Tensor& b_in) {
  const Tensor a = gemm_ready(a_in), b = gemm_ready(b_in);
  Shape out_shape = a.shape();
  out_shape.back() = b.shape().back();
  if (a.dim() == 2 && b.dim() == 3) out_shape.insert(out_shape.begin(), b.shape()[0]);
  Tensor c = Tensor::empty(out_shape);
  detail::dispatch<run_matmul>(detail::OpKind::matmul, NoAttrs{}, {a, b}, {c});
  return c;
}
}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::check_f32("matmul", a, "first input");
  detail::check_f32("matmul", b, "second input");
  check((a.dim() == 2 || a.dim() == 3) && (b.dim() == 2 || b.dim() == 3), "matmul: expected rank-2 or rank-3 ",
        "inputs, got ", a.shape(), " x ", b.shape());
  check(a.shape().back() == b.shape()[b.dim() - 2], "matmul: inner dimensions differ: ", a.shape(), " x ",
        b.shape());
  check(!(a.dim() == 2 && b.dim() == 3), "matmul: a rank-2 first input with a batched second input is not ",
        "supported: ", a.shape(), " x ", b.shape());
  check(a.dim() == 2 || b.dim() == 2 || a.shape()[0] == b.shape()[0], "matmul: batch sizes differ: ", a.shape(),
        " x ", b.shape());
  Tensor out = matmul_raw(a, b);
  if (autograd::needs_grad({a, b})) {
    const Tensor as = a.detach(), bs = b.detach();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    autograd::record("matmul", {a, b}, {out}, [as, bs, ga, gb](const std::vector<Tensor>& g) {
      const Tensor& go = g[0];
      Tensor da, db;
      if (ga) da = matmul_raw(go, bs.transpose(-1, -2));  // [.., M, N] x [.., N, K]
      if (gb) {
        if (bs.dim() == 3 || as.dim() == 2) {
          db = matmul_raw(as.transpose(-1, -2), go);  // [.., K, M] x [.., M, N]
        } else {  // b shared by the batch: fold the batch into M
          const int64_t K = as.shape().back(), N = go.shape().back();
          db = matmul_raw(as.reshape({-1, K}).transpose(0, 1), go.reshape({-1, N}));
        }
      }
      return std::vector<Tensor>{da, db};
    });
  }
  return out;
}

}  // namespace mmrec::ops
