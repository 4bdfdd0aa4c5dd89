// Linear layers on oneDNN: y = act(x Wᵀ + b), with bias and activation fused
// as oneDNN post-ops, and the fused QKVZ projection.
//   Tensor y = ops::linear(x, w, b);                     // x [B, T, In], w [Out, In], b [Out]
//   auto [q, k, v, z] = ops::qkvz(x, w4, b4);            // one [4D, D] GEMM, four [B, T, D] views
//   Tensor y = ops::linear(x, packed);                   // inference, kernels::PackedLinear
#pragma once
#include <array>

#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::kernels {
class PackedLinear;
}

namespace mmrec::ops {

enum class Activation { none, gelu, sigmoid };

// x [..., In] and w [Out, In]: both f32, or both bf16 (f32 accumulation);
// b [Out] f32 (optional). Output f32 [..., Out]. dX, dW and db run on oneDNN.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(),
              Activation act = Activation::none);

// While one is alive on this thread, a no-grad linear with gelu runs as a
// training forward does (the GEMM, then act_forward's Highway gelu) instead
// of the GEMM with oneDNN's gelu post-op, whose bits differ in the last
// place: a forward that must match a training forward bit for bit (QAT's
// observer pass in chunk checkpointing, models/model_chunked.cpp).
class TrainingActivations {
 public:
  TrainingActivations();
  ~TrainingActivations();
  TrainingActivations(const TrainingActivations&) = delete;
  TrainingActivations& operator=(const TrainingActivations&) = delete;

 private:
  bool prev_;
};

// Inference through a weight pre-packed by kernels::PackedLinear (its bias
// and activation included): x [..., In], of the weight's dtype. No backward:
// an x that requires grad while grad mode is on is an error. Faster than the
// plain form for the row count it was packed for (token-by-token
// generation); other row counts take the plain path.
Tensor linear(const Tensor& x, const kernels::PackedLinear& packed);

// The fused QKVZ projection: w [4D, D] (rows q, k, v, z), b [4D]. Returns
// four [..., D] views of one [..., 4D] result.
std::array<Tensor, 4> qkvz(const Tensor& x, const Tensor& w, const Tensor& b);

}  // namespace mmrec::ops

MMREC_API_END
