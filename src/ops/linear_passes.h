// The linear layer's graph passes (internal to src/ops; linear.cpp registers
// them) and the attributes of its calls, which they read and rewrite.
//   gemm_accumulate: a GEMM whose only use is a gradient accumulation writes
//     into the gradient (oneDNN's sum post-op);
//   gemm_residual: a linear whose only use is a residual add accumulates into
//     the residual (sum post-op) where the residual dies there, or adds the
//     residual as it writes the sum (binary post-op) where it stays live or
//     where the sum post-op would round otherwise (AVX2);
//   bias_grad: an activation backward whose output a bias gradient sums
//     becomes one pass making both (kernels::act_backward_col_sum);
//   rematerialize_activations: an activation's output read again in
//     backward is made again there from its input (kept for backward anyway)
//     instead of living from forward to backward;
//   remat_backward: a rematerialized gelu and its own backward (with the
//     bias gradient's sums, if fused) become one pass over u and dy, where
//     dy is already made (kernels::gelu_remat_backward_col_sum).
// Each leaves the replay bit for bit equal to the calls it replaces.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/graph.h"
#include "ops/kernels/linear.h"
#include "ops/linear.h"

namespace mmrec::ops::detail {

// The attributes of every call linear.cpp makes (linear, linear_packed, gemm,
// act_forward, act_backward, convert, col_sum).
struct LinearAttrs {
  Activation act;
  bool accumulate;                      // gemm, linear: out += the product (the sum post-op)
  const kernels::PackedLinear* packed;  // linear_packed: must outlive any graph holding the call
  // gemm_residual: the sum post-op took an add of the product to a summand
  // that dies there (0: none; 1: a binary.add; 2: the tape's fused g = copy(r); g += t),
  // or the binary post-op adds the summand, the call's last input, and the
  // call writes the sum (3: a binary.add; 4: the tape's fused add), where the
  // summand stays live or the CPU's sum post-op would round otherwise.
  uint8_t residual = 0;
  bool remat = false;  // act_forward: a recomputation for late readers (rematerialize_activations)
};

using TemporaryFn = std::function<bool(const Storage*)>;
size_t fuse_gemm_accumulate(std::vector<autograd::Call>& calls, const TemporaryFn& temporary);
size_t fuse_gemm_residual(std::vector<autograd::Call>& calls, const TemporaryFn& temporary);
size_t fuse_bias_grad(std::vector<autograd::Call>& calls, const TemporaryFn& temporary);
size_t rematerialize_activations(std::vector<autograd::Call>& calls, const TemporaryFn& temporary);
size_t fuse_remat_backward(std::vector<autograd::Call>& calls, const TemporaryFn& temporary);
// "act_forward recomputed (...)" for a rematerialized activation.
std::string describe_remat(const autograd::Call& call);
// "gemm -> grad_accumulate (...)", "linear -> binary.add (...)" for the sum post-ops.
std::string describe_gemm(const autograd::Call& call);
// "act_backward -> col_sum (2 calls, 1 pass over 64 MiB)" for a fused bias
// gradient; "act_forward -> act_backward -> col_sum (3 calls, ...)" for remat_backward.
std::string describe_bias_grad(const autograd::Call& call);

}  // namespace mmrec::ops::detail
