#include "ops/fake_quant.h"

#include <cmath>
#include <limits>
#include <vector>

#include "autograd/graph.h"
#include "autograd/tape.h"
#include "ops/common.h"
#include "ops/kernels/fake_quant.h"

namespace mmrec::ops {
namespace {
using autograd::dispatch;
using autograd::OpKind;

void check_range(const char* op, int32_t qmin, int32_t qmax) {
  check(qmin <= qmax, op, ": quant_min ", qmin, " is greater than quant_max ", qmax);
}

// The values of scale and zero_point, on the host (not inside a capture,
// where they come from a kernel that runs only on replay).
// The checks both fake-quant ops start with: f32 x and scale, a zero point,
// a valid [quant_min, quant_max].
void check_args(const char* op, const Tensor& x, const Tensor& scale, const Tensor& zp, int32_t qmin, int32_t qmax) {
  detail::check_f32(op, x, "x");
  detail::check_f32(op, scale, "scale");
  detail::check_defined(op, zp, "zero_point");
  check_range(op, qmin, qmax);
}

void check_qparams(const char* op, const Tensor& scale, const Tensor& zp, int32_t qmin, int32_t qmax) {
  if (autograd::capturing()) return;
  const int64_t C = scale.numel();
  for (int64_t c = 0; c < C; ++c) {
    const float s = scale.data<float>()[c];
    check(std::isfinite(s) && s > 0.0f, op, ": scale must be positive and finite, got ", s,
          C > 1 ? " for channel " + std::to_string(c) : std::string());
    const int32_t z = zp.data<int32_t>()[c];
    check(z >= qmin && z <= qmax, op, ": zero_point ", z, C > 1 ? " of channel " + std::to_string(c) : std::string(),
          " is outside [quant_min, quant_max] = [", qmin, ", ", qmax, "]");
  }
}

// x as [outer, C, inner]; in: x (and dy), scale, zero_point.
struct FakeQuantAttrs {
  int64_t outer, C, inner;
  int32_t qmin, qmax;
};
void run_fake_quant(const FakeQuantAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::fake_quant_f32(in[0].data<float>(), out[0].data<float>(), a.outer, a.C, a.inner, in[1].data<float>(),
                          in[2].data<int32_t>(), a.qmin, a.qmax);
}
void run_fake_quant_bwd(const FakeQuantAttrs& a, const Tensor* in, const Tensor* out) {
  kernels::fake_quant_bwd_f32(in[0].data<float>(), in[1].data<float>(), out[0].data<float>(), a.outer, a.C, a.inner,
                              in[2].data<float>(), in[3].data<int32_t>(), a.qmin, a.qmax);
}

struct ObserveAttrs {
  int64_t C, n;
  float c;
};
// in: x; out: min_val, max_val (read and written), scratch: the call's
// min and max [2, C], then min_max_f32's.
size_t observe_scratch_bytes(int64_t C, int64_t n) {
  return static_cast<size_t>(2 * C) * sizeof(float) + kernels::min_max_scratch_bytes(C, n);
}
void run_observe(const ObserveAttrs& a, const Tensor* in, const Tensor* out) {
  float* const lo = out[2].data<float>();
  float* const hi = lo + a.C;
  kernels::min_max_f32(in[0].data<float>(), a.C, a.n, lo, hi, hi + a.C);
  float* mn = out[0].data<float>();
  float* mx = out[1].data<float>();
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < a.C; ++i) {
    if (mn[i] == inf && mx[i] == -inf) {
      mn[i] = lo[i], mx[i] = hi[i];
    } else {
      mn[i] = mn[i] + a.c * (lo[i] - mn[i]);
      mx[i] = mx[i] + a.c * (hi[i] - mx[i]);
    }
  }
}

struct QParamsAttrs {
  int64_t C;
  QuantScheme scheme;
};
// in: min_val, max_val; out: scale, zero_point.
void run_quant_params(const QParamsAttrs& a, const Tensor* in, const Tensor* out) {
  const float* mn = in[0].data<float>();
  const float* mx = in[1].data<float>();
  float* s = out[0].data<float>();
  int32_t* z = out[1].data<int32_t>();
  for (int64_t i = 0; i < a.C; ++i) {
    if (a.scheme == QuantScheme::affine_u8) {
      std::tie(s[i], z[i]) = kernels::qparams_affine_u8(mn[i], mx[i]);
    } else {
      s[i] = kernels::qparams_symmetric_s8(mn[i], mx[i]);
      z[i] = 0;
    }
  }
}

// The shared forward and STE backward of the fake-quant ops: x as [outer, C, inner].
Tensor run(const char* op, const Tensor& x_in, const Tensor& scale, const Tensor& zp, int64_t outer, int64_t C,
           int64_t inner, int32_t qmin, int32_t qmax) {
  const Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape());
  const FakeQuantAttrs a{outer, C, inner, qmin, qmax};
  dispatch<run_fake_quant>(OpKind::fake_quant, a, {x, scale, zp}, {y});
  if (autograd::needs_grad({x_in})) {
    const Tensor xs = x.detach();
    autograd::record(op, {x_in}, {y}, [xs, scale, zp, a](const std::vector<Tensor>& g) {
      const Tensor dy = g[0].contiguous();
      Tensor dx = Tensor::empty(xs.shape());
      dispatch<run_fake_quant_bwd>(OpKind::fake_quant_bwd, a, {xs, dy, scale, zp}, {dx});
      return std::vector<Tensor>{dx};
    });
  }
  return y;
}

}  // namespace

Tensor fake_quantize_per_tensor_affine(const Tensor& x, float scale, int32_t zero_point, int32_t quant_min,
                                       int32_t quant_max) {
  Tensor s = Tensor::full({1}, scale), z = Tensor::full({1}, zero_point, DType::i32);
  return fake_quantize_per_tensor_affine(x, s, z, quant_min, quant_max);
}

Tensor fake_quantize_per_tensor_affine(const Tensor& x, const Tensor& scale_in, const Tensor& zp_in,
                                       int32_t quant_min, int32_t quant_max) {
  const char* op = "fake_quantize_per_tensor_affine";
  check_args(op, x, scale_in, zp_in, quant_min, quant_max);
  check(scale_in.numel() == 1 && zp_in.numel() == 1 && zp_in.dtype() == DType::i32, op,
        ": scale must be f32 [1] and zero_point i32 [1], got ", scale_in.shape(), " and ", zp_in.shape(), " ",
        dtype_name(zp_in.dtype()));
  const Tensor scale = scale_in.contiguous().detach(), zp = zp_in.contiguous().detach();
  check_qparams(op, scale, zp, quant_min, quant_max);
  return run(op, x, scale, zp, 1, 1, x.numel(), quant_min, quant_max);
}

Tensor fake_quantize_per_channel_affine(const Tensor& x, const Tensor& scale_in, const Tensor& zp_in, int64_t axis,
                                        int32_t quant_min, int32_t quant_max) {
  const char* op = "fake_quantize_per_channel_affine";
  check_args(op, x, scale_in, zp_in, quant_min, quant_max);
  const int64_t n = x.dim();
  check(axis >= -n && axis < n, op, ": axis ", axis, " is out of range for x ", x.shape());
  if (axis < 0) axis += n;
  const int64_t C = x.size(axis);
  check(zp_in.dtype() == DType::i32, op, ": zero_point must be i32, got ", dtype_name(zp_in.dtype()));
  check(scale_in.dim() == 1 && scale_in.size(0) == C && zp_in.dim() == 1 && zp_in.size(0) == C, op, ": scale ",
        scale_in.shape(), " and zero_point ", zp_in.shape(), " must both be [", C, "] (x ", x.shape(), ", axis ",
        axis, ")");
  const Tensor scale = scale_in.contiguous().detach(), zp = zp_in.contiguous().detach();
  check_qparams(op, scale, zp, quant_min, quant_max);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.size(i);
  for (int64_t i = axis + 1; i < n; ++i) inner *= x.size(i);
  return run(op, x, scale, zp, outer, C, inner, quant_min, quant_max);
}

void observe_min_max(const Tensor& x_in, const Tensor& min_val, const Tensor& max_val, float averaging_constant) {
  const char* op = "observe_min_max";
  detail::check_f32(op, x_in, "x");
  detail::check_f32(op, min_val, "min_val");
  detail::check_f32(op, max_val, "max_val");
  const int64_t C = min_val.numel();
  check(min_val.dim() == 1 && max_val.shape() == min_val.shape() && min_val.is_contiguous() &&
            max_val.is_contiguous() && C > 0,
        op, ": min_val ", min_val.shape(), " and max_val ", max_val.shape(), " must be the same contiguous [C]");
  check(x_in.numel() % C == 0, op, ": x ", x_in.shape(), " does not split into ", C, " channels");
  check(averaging_constant > 0 && averaging_constant <= 1, op, ": averaging_constant ", averaging_constant,
        " is outside (0, 1]");
  if (x_in.numel() == 0) return;
  const Tensor x = x_in.detach().contiguous();
  const int64_t n = x.numel() / C;
  dispatch<run_observe>(OpKind::observe_min_max, ObserveAttrs{C, n, averaging_constant}, {x},
                        {min_val, max_val, detail::scratch(observe_scratch_bytes(C, n))});
}

std::pair<Tensor, Tensor> quant_params(const Tensor& min_val, const Tensor& max_val, QuantScheme scheme) {
  const char* op = "quant_params";
  detail::check_f32(op, min_val, "min_val");
  detail::check_f32(op, max_val, "max_val");
  check(min_val.dim() == 1 && max_val.shape() == min_val.shape(), op, ": min_val ", min_val.shape(),
        " and max_val ", max_val.shape(), " must both be [C]");
  const int64_t C = min_val.size(0);
  Tensor s = Tensor::empty({C}), z = Tensor::empty({C}, DType::i32);
  dispatch<run_quant_params>(OpKind::quant_params, QParamsAttrs{C, scheme},
                             {min_val.detach().contiguous(), max_val.detach().contiguous()}, {s, z});
  return {s, z};
}

}  // namespace mmrec::ops
