// Gradient checkpointing on the tape: a function runs once without keeping
// its activations, and again during backward to produce its gradients.
//
//   // y = gelu(x W): only x is kept; the product exists again only in backward.
//   std::vector<Tensor> y = autograd::checkpoint(
//       [w](const std::vector<Tensor>& in) { return std::vector<Tensor>{ops::gelu(ops::matmul(in[0], w))}; },
//       {x}, /*params=*/{w});
//   autograd::backward(ops::sum(y[0]));   // x's producer and w.grad get their gradients
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec::autograd {

using CheckpointFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs)>;

// Calls fn on leaf views of the inputs (on a tape of its own, whose graph is
// dropped when fn returns) and records one node (`name`) that keeps only the
// inputs. Its backward calls fn again the same way, backpropagates the
// outputs' gradients through that recomputation and returns the inputs'
// gradients. Peak memory: the inputs, plus one run of fn's activations.
// - `params`: the leaves fn reads besides its inputs (a model's weights);
//   their gradients accumulate into .grad as in any backward. Any other tensor
//   with autograd history that fn reads must be one of `inputs` (the backward
//   throws otherwise).
// - fn must compute the same thing both times (no randomness it does not
//   re-seed); the recomputation then gives the same gradients, bit for bit,
//   as running fn without checkpointing. fn is kept in the node: whatever it
//   captures must outlive the backward.
// - fn returns floating tensors (they become the node's outputs, views of
//   fn's results with no history of their own).
// With grad mode off, or nothing in inputs and params requiring grad, this is fn(inputs).
std::vector<Tensor> checkpoint(CheckpointFn fn, const std::vector<Tensor>& inputs,
                               const std::vector<Tensor>& params = {}, std::string name = "checkpoint");

}  // namespace mmrec::autograd

MMREC_API_END
