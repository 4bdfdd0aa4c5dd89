// An int8 linear layer on oneDNN (u8 activations x s8 weights, s32
// accumulation, f32 output), for inference of quantized models:
//   y = act(s_x · s_w[n] · Σ_k (q_x[m, k] - z_x) · q_w[n, k] + b[n])
// where q_x = kernels::quantize_u8(x; s_x, z_x) (per-tensor affine u8) and
// q_w [N, K] s8 is per-output-channel symmetric with scales s_w [N]. The
// scales are oneDNN output scales (per-channel mask); the activation zero
// point is either folded into the bias with the weights' row sums
// (compensation: b'[n] = b[n] / (s_x s_w[n]) - z_x Σ_k q_w[n, k], exact in
// s32 terms) or passed to oneDNN as a source zero point.
//
//   kernels::Int8Linear l(wq, w_scale, b, 0.02f, 128, ops::Activation::gelu);
//   l.forward(x, y);                      // x f32 [M, K] -> y f32 [M, N], any M
#pragma once
#include <memory>

#include "ops/linear.h"
#include "tensor/tensor.h"

namespace mmrec::kernels {

enum class ZeroPointMode { folded, runtime };

class Int8Linear {
 public:
  Int8Linear() = default;
  // w_q i8 [N, K], w_scale f32 [N] (> 0), b f32 [N] or undefined; x_scale > 0,
  // 0 <= x_zero_point <= 255. The weights are packed once for oneDNN's VNNI
  // layout; primitives are made per row count on first use.
  Int8Linear(const Tensor& w_q, const Tensor& w_scale, const Tensor& b, float x_scale, int32_t x_zero_point,
             ops::Activation act, ZeroPointMode mode = ZeroPointMode::folded);
  bool defined() const { return impl_ != nullptr; }
  int64_t in_features() const;
  int64_t out_features() const;
  // x f32 [M, K] contiguous rows -> y f32 [M, N] contiguous. Thread-safe.
  // The same as quantize_input then forward_quantized.
  void forward(const Tensor& x, Tensor& y) const;
  // x f32 [M, K] -> xq u8 [M, K] with the layer's input scale and zero point.
  void quantize_input(const Tensor& x, Tensor& xq) const;
  // xq u8 [M, K] (from quantize_input) -> y f32 [M, N]: the u8 x s8 matmul,
  // the scales, bias and activation in its epilogue.
  void forward_quantized(const Tensor& xq, Tensor& y) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

namespace ref {
// Double-precision reference of Int8Linear::forward (same quantization of x).
void int8_linear(const Tensor& x, const Tensor& w_q, const Tensor& w_scale, const Tensor& b, float x_scale,
                 int32_t x_zero_point, ops::Activation act, Tensor& y);
}  // namespace ref

}  // namespace mmrec::kernels
