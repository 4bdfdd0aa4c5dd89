#include "autograd/checkpoint.h"

#include <memory>

#include "autograd/tape.h"

namespace mmrec::autograd {
namespace {

class GradModeOn {
 public:
  GradModeOn() : prev_(grad_enabled()) { set_grad_enabled(true); }
  ~GradModeOn() { set_grad_enabled(prev_); }
  GradModeOn(const GradModeOn&) = delete;
  GradModeOn& operator=(const GradModeOn&) = delete;

 private:
  bool prev_;
};

}  // namespace

std::vector<Tensor> checkpoint(CheckpointFn fn, const std::vector<Tensor>& inputs, const std::vector<Tensor>& params,
                               std::string name) {
  if (!needs_grad(inputs) && !needs_grad(params)) return fn(inputs);
  for (const Tensor& p : params)
    check(!p.defined() || p.is_leaf(), "checkpoint '", name, "': params must be leaves (pass a tensor of shape ",
          p.shape(), " with history as an input)");
  // The node keeps its inputs (Node::inputs); the closure keeps views of them
  // without history, so that it owns no graph.
  struct Saved {
    CheckpointFn fn;
    std::vector<Tensor> inputs;
    std::vector<bool> needs;
    std::string name;
    std::vector<Tensor> leaves() const {  // fresh leaf views of the inputs
      std::vector<Tensor> l;
      for (size_t k = 0; k < inputs.size(); ++k) {
        l.push_back(inputs[k].defined() ? inputs[k].detach() : Tensor());
        if (needs[k]) l.back().set_requires_grad();
      }
      return l;
    }
  };
  auto saved = std::make_shared<Saved>();
  saved->fn = std::move(fn);
  saved->name = name;
  for (const Tensor& in : inputs) {
    saved->inputs.push_back(in.defined() ? in.detach() : Tensor());
    saved->needs.push_back(in.defined() && in.requires_grad());
  }
  // The first run records too (on a tape of its own, dropped at once): ops
  // may take other kernels when they record (a GELU apart from its GEMM), and
  // the outputs must be the ones the recomputation sees.
  std::vector<Tensor> outs;
  {
    TapeScope scope;
    outs = saved->fn(saved->leaves());
    for (Tensor& o : outs) {
      check(o.defined() && (o.dtype() == DType::f32 || o.dtype() == DType::bf16), "checkpoint '", name,
            "': the function must return defined floating tensors");
      o = o.detach();  // no history, and its own impl even when fn passed an input through
    }
  }
  record(std::move(name), inputs, outs, [saved](const std::vector<Tensor>& grad_outputs) {
    TapeScope scope;
    GradModeOn grad_on;
    std::vector<Tensor> leaves = saved->leaves();
    const std::vector<Tensor> again = saved->fn(leaves);
    check(again.size() == grad_outputs.size(), "checkpoint '", saved->name, "': the recomputation returned ",
          again.size(), " tensors, the first run ", grad_outputs.size());
    std::vector<Tensor> roots, seeds;
    for (size_t k = 0; k < again.size(); ++k) {
      check(again[k].defined() && again[k].shape() == grad_outputs[k].shape(), "checkpoint '", saved->name,
            "': output ", k, " of the recomputation differs in shape from the first run's ",
            grad_outputs[k].shape());
      if (!again[k].requires_grad()) continue;
      roots.push_back(again[k]);
      seeds.push_back(grad_outputs[k]);
    }
    const size_t lost = backward(roots, seeds);
    check(lost == 0, "checkpoint '", saved->name,
          "': the function read a tensor with autograd history that is not one of its inputs (pass it in inputs)");
    std::vector<Tensor> grads;
    for (size_t k = 0; k < leaves.size(); ++k) grads.push_back(saved->needs[k] ? leaves[k].grad() : Tensor());
    return grads;
  });
  return outs;
}

}  // namespace mmrec::autograd
