// compile(fn): the torch.compile of this runtime (CUDA-graph style). The
// first call with a new signature (input shapes and dtypes, thread count,
// grad mode, the caller's config string) runs fn once eagerly under capture
// (graph.h); later calls with that signature copy their inputs into the
// captured input buffers and replay the graph, with no dispatch, checks or
// host work in between.
//
//   autograd::CompiledFn step = autograd::compile([&](const std::vector<Tensor>& in) {
//     Tensor loss = model.loss(in[0]);
//     autograd::backward(loss);
//     return std::vector<Tensor>{loss};
//   });
//   float l = step({batch})[0].item();   // outputs are overwritten by the next call
//
// The contract: fn may only do tensor work through ops (host-side decisions
// on shapes and config are frozen; reading tensor data throws). Values the
// host changes between calls go in through inputs or tensors written before
// each call (AdamW::stage). Buffers that existed before the capture
// (parameters, gradients, optimizer state) are used in place.
#pragma once
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "autograd/graph.h"
#include "tensor/export.h"

MMREC_API_BEGIN

namespace mmrec::autograd {

struct CompileOptions {
  std::string name = "step";  // in messages and MMREC_DEBUG lines
  size_t max_graphs = 4;      // signatures kept; the least recently used is dropped
  bool strict = false;        // a signature other than the first throws instead of capturing
  std::string config;         // part of the signature (e.g. the model config)
};

using StepFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs)>;

class CompiledFn {
 public:
  CompiledFn(StepFn fn, CompileOptions opt);
  // Captures on a new signature, else replays. Outputs are the graph's own
  // buffers (detached): read or clone them before the next call.
  std::vector<Tensor> operator()(const std::vector<Tensor>& inputs);
  size_t captures() const { return captures_; }
  size_t replays() const { return replays_; }
  size_t cached() const { return entries_.size(); }
  // The graph the last call ran (nullptr before the first call).
  const Graph* last_graph() const { return last_; }

 private:
  struct Entry {
    std::string signature;
    Graph graph;
    std::vector<Tensor> inputs, outputs;
  };
  std::string signature(const std::vector<Tensor>& inputs) const;
  StepFn fn_;
  CompileOptions opt_;
  std::deque<Entry> entries_;  // most recently used first
  std::string first_signature_;
  const Graph* last_ = nullptr;
  size_t captures_ = 0, replays_ = 0;
};

inline CompiledFn compile(StepFn fn, CompileOptions opt = {}) { return CompiledFn(std::move(fn), std::move(opt)); }

}  // namespace mmrec::autograd

MMREC_API_END
