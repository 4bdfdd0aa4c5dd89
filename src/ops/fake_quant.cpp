#include "ops/fake_quant.h"

#include <cmath>
#include <vector>

#include "autograd/graph.h"
#include "ops/common.h"
#include "ops/kernels/fake_quant.h"

namespace mmrec::ops {
namespace {

void check_range(const char* op, int32_t qmin, int32_t qmax) {
  check(qmin <= qmax, op, ": quant_min ", qmin, " is greater than quant_max ", qmax);
}

void check_scale(const char* op, float s, int64_t c) {
  check(std::isfinite(s) && s > 0.0f, op, ": scale must be positive and finite, got ", s,
        c >= 0 ? " for channel " + std::to_string(c) : std::string());
}

// The shared forward and STE backward of both ops: x as [outer, C, inner].
Tensor run(const char* op, const Tensor& x_in, const Tensor& scale, const Tensor& zp, int64_t outer, int64_t C,
           int64_t inner, int32_t qmin, int32_t qmax) {
  // Not yet recorded by autograd::dispatch: a captured graph would skip it.
  check(!autograd::capturing(), op, ": cannot be captured into a graph yet; run it eagerly");
  const Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape());
  kernels::fake_quant_f32(x.data<float>(), y.data<float>(), outer, C, inner, scale.data<float>(),
                          zp.data<int32_t>(), qmin, qmax);
  if (autograd::needs_grad({x_in})) {
    const Tensor xs = x.detach();
    autograd::record(op, {x_in}, {y}, [xs, scale, zp, outer, C, inner, qmin, qmax](const std::vector<Tensor>& g) {
      const Tensor dy = g[0].contiguous();
      Tensor dx = Tensor::empty(xs.shape());
      kernels::fake_quant_bwd_f32(xs.data<float>(), dy.data<float>(), dx.data<float>(), outer, C, inner,
                                  scale.data<float>(), zp.data<int32_t>(), qmin, qmax);
      return std::vector<Tensor>{dx};
    });
  }
  return y;
}

}  // namespace

Tensor fake_quantize_per_tensor_affine(const Tensor& x, float scale, int32_t zero_point, int32_t quant_min,
                                       int32_t quant_max) {
  const char* op = "fake_quantize_per_tensor_affine";
  detail::check_f32(op, x, "x");
  check_range(op, quant_min, quant_max);
  check_scale(op, scale, -1);
  check(zero_point >= quant_min && zero_point <= quant_max, op, ": zero_point ", zero_point,
        " is outside [quant_min, quant_max] = [", quant_min, ", ", quant_max, "]");
  Tensor s = Tensor::full({1}, scale), z = Tensor::empty({1}, DType::i32);
  z.data<int32_t>()[0] = zero_point;
  return run(op, x, s, z, 1, 1, x.numel(), quant_min, quant_max);
}

Tensor fake_quantize_per_channel_affine(const Tensor& x, const Tensor& scale_in, const Tensor& zp_in, int64_t axis,
                                        int32_t quant_min, int32_t quant_max) {
  const char* op = "fake_quantize_per_channel_affine";
  detail::check_f32(op, x, "x");
  detail::check_f32(op, scale_in, "scale");
  detail::check_defined(op, zp_in, "zero_point");
  check_range(op, quant_min, quant_max);
  const int64_t n = x.dim();
  check(axis >= -n && axis < n, op, ": axis ", axis, " is out of range for x ", x.shape());
  if (axis < 0) axis += n;
  const int64_t C = x.size(axis);
  check(zp_in.dtype() == DType::i32, op, ": zero_point must be i32, got ", dtype_name(zp_in.dtype()));
  check(scale_in.dim() == 1 && scale_in.size(0) == C && zp_in.dim() == 1 && zp_in.size(0) == C, op, ": scale ",
        scale_in.shape(), " and zero_point ", zp_in.shape(), " must both be [", C, "] (x ", x.shape(), ", axis ",
        axis, ")");
  const Tensor scale = scale_in.contiguous().detach(), zp = zp_in.contiguous().detach();
  for (int64_t c = 0; c < C; ++c) {
    check_scale(op, scale.data<float>()[c], c);
    const int32_t z = zp.data<int32_t>()[c];
    check(z >= quant_min && z <= quant_max, op, ": zero_point ", z, " of channel ", c,
          " is outside [quant_min, quant_max] = [", quant_min, ", ", quant_max, "]");
  }
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.size(i);
  for (int64_t i = axis + 1; i < n; ++i) inner *= x.size(i);
  return run(op, x, scale, zp, outer, C, inner, quant_min, quant_max);
}

}  // namespace mmrec::ops
