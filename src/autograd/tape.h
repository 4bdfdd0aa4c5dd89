// Tape autograd. While grad mode is on and an op's input requires grad, the op
// records one Node on this thread's tape; backward(loss) walks the tape in
// reverse and accumulates into the leaves' .grad.
//
//   Tensor w = randn({3, 3}, g).set_requires_grad();
//   Tensor loss = ops::sum(ops::matmul(x, w));
//   autograd::backward(loss);          // w.grad() now holds dloss/dw
//
// Ownership: an output tensor owns its producing node (grad_fn), a node owns
// its inputs, so a graph lives exactly as long as the tensors that can reach
// it; the tape only keeps weak references in creation order. A backward
// function must not capture its own node's outputs with history (capture
// out.detach()), or the graph would own itself.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/export.h"
#include "tensor/tensor.h"

MMREC_API_BEGIN

namespace mmrec::autograd {

// Gradients of the inputs (same order as Node::inputs; an undefined Tensor
// means "no gradient") from the gradients of the outputs (zeros where an
// output received none).
using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

struct Node {
  std::string name;
  std::vector<Tensor> inputs;
  std::vector<uint64_t> output_ids;
  std::vector<Shape> output_shapes;
  BackwardFn backward;
  bool released = false;  // saved buffers freed by a backward without retain_graph
};

// ---- grad mode ----
bool grad_enabled();
void set_grad_enabled(bool on);

// Disables recording in its scope (evaluation, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and any of the tensors requires grad: the op
// should record a node.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Records a node producing `outputs` (which become non-leaf, requires_grad).
// Call only when needs_grad(inputs) is true.
void record(std::string name, std::vector<Tensor> inputs, std::vector<Tensor> outputs, BackwardFn fn);

// Backpropagates from `root`. Without `seed`, root must have one element and
// the seed is 1. Leaves that require grad accumulate into .grad. Unless
// retain_graph, the nodes used are released and a second backward through
// them throws.
void backward(const Tensor& root, const Tensor& seed = Tensor(), bool retain_graph = false);
// The same from several roots at once: seeds[i] is the gradient of roots[i]
// (same shape). Returns how many gradients reached tensors whose producing
// node is not on this thread's tape (they are dropped): 0 for a graph
// recorded here; a TapeScope's recomputation checks it.
size_t backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& seeds, bool retain_graph = false);

// Gives this thread an empty tape for its lifetime and restores the previous
// one after: the nodes recorded in the scope, and a backward run in it, see
// only each other (gradient checkpointing's recomputation, checkpoint.h).
class TapeScope {
 public:
  TapeScope();
  ~TapeScope();
  TapeScope(const TapeScope&) = delete;
  TapeScope& operator=(const TapeScope&) = delete;

 private:
  std::unique_ptr<std::vector<std::weak_ptr<Node>>> saved_;
  size_t saved_compact_at_ = 0;
  std::function<void(const Tensor& leaf)> saved_grad_ready_;  // off in the scope
};

// Optional observer of every node's backward (profiling: models/profile.h
// installs one under MMREC_PROFILE=1): called with the node's name and the
// seconds its backward took. nullptr (the default) disables it; process-wide.
using BackwardHook = void (*)(const std::string& name, double seconds);
void set_backward_hook(BackwardHook hook);

// Optional observer, per thread, of leaves whose gradient is final during a
// backward: called once per leaf that requires grad and feeds the graph,
// right after the last node that contributes to its .grad has run (the leaf's
// .grad may be undefined when nothing reached it). Data-parallel training
// starts reducing a bucket of gradients there while backward goes on.
// An empty function (the default) disables it.
using GradReadyHook = std::function<void(const Tensor& leaf)>;
void set_grad_ready_hook(GradReadyHook hook);

// Number of live nodes on this thread's tape (tests, debugging).
size_t tape_size();
// Drops every node on this thread's tape.
void clear_tape();

}  // namespace mmrec::autograd

MMREC_API_END
