#include "ops/linear_int8.h"

#include "autograd/graph.h"
#include "autograd/tape.h"
#include "ops/common.h"

namespace mmrec::ops {
namespace {
using autograd::dispatch;
using autograd::OpKind;

struct Int8Attrs {
  const kernels::Int8Linear* layer;  // must outlive any graph holding the call
};
void run_quantize_u8(const Int8Attrs& a, const Tensor* in, const Tensor* out) {
  Tensor xq = out[0];
  a.layer->quantize_input(in[0], xq);
}
void run_linear_int8(const Int8Attrs& a, const Tensor* in, const Tensor* out) {
  Tensor y = out[0];
  a.layer->forward_quantized(in[0], y);
}
}  // namespace

Tensor linear_int8(const Tensor& x, const kernels::Int8Linear& layer) {
  const char* op = "linear_int8";
  detail::check_f32(op, x, "x");
  check(layer.defined(), op, ": the Int8Linear is empty");
  check(x.dim() >= 1 && x.shape().back() == layer.in_features(), op, ": x ", x.shape(), " does not match the layer's ",
        layer.in_features(), " input features");
  check(!autograd::needs_grad({x}), op, ": has no backward, but x ", x.shape(),
        " requires grad (use it under NoGradGuard)");
  const int64_t K = layer.in_features();
  const Tensor x2 = x.contiguous().reshape({K > 0 ? x.numel() / K : 0, K});
  Tensor xq = Tensor::empty(x2.shape(), DType::u8);
  Tensor y = Tensor::empty({x2.size(0), layer.out_features()});
  dispatch<run_quantize_u8>(OpKind::quantize_u8, Int8Attrs{&layer}, {x2}, {xq});
  dispatch<run_linear_int8>(OpKind::linear_int8, Int8Attrs{&layer}, {xq}, {y});
  Shape shape = x.shape();
  shape.back() = layer.out_features();
  return y.reshape(shape);
}

}  // namespace mmrec::ops
