#include "autograd/tape.h"

#include "autograd/graph.h"

#include <atomic>
#include <chrono>
#include <unordered_map>

namespace mmrec::autograd {
namespace {

struct Tape {
  std::vector<std::weak_ptr<Node>> nodes;
  size_t compact_at = 1024;
  bool grad_enabled = true;
  GradReadyHook grad_ready;
};

Tape& tape() {
  thread_local Tape t;
  return t;
}

void compact(Tape& t) {
  std::erase_if(t.nodes, [](const std::weak_ptr<Node>& w) {
    auto n = w.lock();
    return !n || n->released;
  });
  t.compact_at = std::max<size_t>(1024, 2 * t.nodes.size());
}

struct AccumulateAttrs {
  int64_t n;
};
void run_accumulate(const AccumulateAttrs& a, const Tensor* in, const Tensor* out) {
  float* d = out[0].data<float>();
  const float* p = in[0].data<float>();
  for (int64_t i = 0; i < a.n; ++i) d[i] += p[i];
}

// dst += src (both f32, same shape; dst contiguous and owned by autograd).
void accumulate(Tensor& dst, const Tensor& src) {
  check(dst.shape() == src.shape(), "backward: gradient shape ", src.shape(), " does not match ",
        dst.shape());
  Tensor s = src.contiguous().to(DType::f32);
  dispatch<run_accumulate>(OpKind::grad_accumulate, AccumulateAttrs{dst.numel()}, {s}, {dst});
}

Tensor to_f32_contig(const Tensor& t) {
  Tensor c = t.to(DType::f32);
  return c.is_contiguous() ? c : c.contiguous();
}

}  // namespace

std::atomic<BackwardHook> g_backward_hook{nullptr};

void set_backward_hook(BackwardHook hook) { g_backward_hook.store(hook); }

void set_grad_ready_hook(GradReadyHook hook) { tape().grad_ready = std::move(hook); }

bool grad_enabled() { return tape().grad_enabled; }
void set_grad_enabled(bool on) { tape().grad_enabled = on; }

bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(std::string name, std::vector<Tensor> inputs, std::vector<Tensor> outputs, BackwardFn fn) {
  auto node = std::make_shared<Node>();
  node->name = std::move(name);
  node->inputs = std::move(inputs);
  node->backward = std::move(fn);
  for (Tensor& o : outputs) {
    node->output_ids.push_back(o.impl()->id);
    node->output_shapes.push_back(o.shape());
    o.impl()->requires_grad = true;
    o.impl()->grad_fn = node;
  }
  Tape& t = tape();
  t.nodes.push_back(node);
  if (t.nodes.size() >= t.compact_at) compact(t);
}

void backward(const Tensor& root, const Tensor& seed, bool retain_graph) {
  check(root.defined(), "backward: undefined tensor");
  check(root.requires_grad(), "backward: tensor of shape ", root.shape(),
        " does not require grad (no input of its graph requires grad, or grad mode was off)");
  Tensor g;
  if (seed.defined()) {
    check(seed.shape() == root.shape(), "backward: seed gradient shape ", seed.shape(),
          " does not match tensor shape ", root.shape());
    g = seed;
  } else {
    check(root.numel() == 1, "backward: implicit seed needs a one-element tensor, got shape ", root.shape(),
          " (pass a seed gradient)");
    g = Tensor::ones(root.shape());
  }
  backward(std::vector<Tensor>{root}, std::vector<Tensor>{g}, retain_graph);
}

size_t backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& seeds, bool retain_graph) {
  check(roots.size() == seeds.size(), "backward: ", roots.size(), " roots but ", seeds.size(), " seed gradients");
  auto accumulate_leaf = [](const Tensor& leaf, const Tensor& grad) {
    if (!leaf.impl()->grad) {
      leaf.impl()->grad = to_f32_contig(grad).clone().impl_ptr();
    } else {
      Tensor acc(leaf.impl()->grad);
      accumulate(acc, grad);
    }
  };
  // Out of place: a backward may return the same buffer for two inputs.
  auto add_grad = [](std::unordered_map<uint64_t, Tensor>& grads, const Tensor& t, const Tensor& g) {
    auto it = grads.find(t.impl()->id);
    if (it == grads.end()) {
      grads.emplace(t.impl()->id, to_f32_contig(g));
    } else {
      Tensor sum = to_f32_contig(it->second).clone();
      accumulate(sum, g);
      it->second = sum;
    }
  };

  std::unordered_map<uint64_t, Tensor> grads;
  for (size_t r = 0; r < roots.size(); ++r) {
    const Tensor& root = roots[r];
    check(root.defined(), "backward: undefined tensor");
    check(root.requires_grad(), "backward: tensor of shape ", root.shape(),
          " does not require grad (no input of its graph requires grad, or grad mode was off)");
    check(seeds[r].defined() && seeds[r].shape() == root.shape(), "backward: seed gradient shape ",
          seeds[r].defined() ? shape_str(seeds[r].shape()) : std::string("undefined"),
          " does not match tensor shape ", root.shape());
    if (root.is_leaf()) {
      accumulate_leaf(root, seeds[r]);
      if (tape().grad_ready) tape().grad_ready(root);
      continue;
    }
    check(!root.impl()->grad_fn->released, "backward: the graph of this tensor (produced by '",
          root.impl()->grad_fn->name,
          "') was freed by an earlier backward; pass retain_graph=true to backward twice");
    if (root.impl()->retains_grad) accumulate_leaf(root, seeds[r]);
    add_grad(grads, root, seeds[r]);  // never written in place: gradients accumulate out of place
  }
  if (grads.empty()) return 0;

  NoGradGuard no_grad;  // backward functions record nothing
  Tape& t = tape();
  // Hold every node for the walk: releasing a node's inputs must not free
  // the producers still to be visited.
  std::vector<std::shared_ptr<Node>> nodes;
  nodes.reserve(t.nodes.size());
  for (auto& w : t.nodes) nodes.push_back(w.lock());
  // With a grad-ready hook: ready_after[i] lists the leaves whose earliest
  // (so, in the reverse walk, last) consumer is node i.
  std::vector<std::vector<Tensor>> ready_after(t.grad_ready ? nodes.size() : 0);
  if (t.grad_ready) {
    std::unordered_map<const TensorImpl*, bool> seen;
    for (size_t i = 0; i < nodes.size(); ++i)
      if (nodes[i])
        for (const Tensor& in : nodes[i]->inputs)
          if (in.defined() && in.requires_grad() && in.is_leaf() && seen.emplace(in.impl(), true).second)
            ready_after[i].push_back(in);
  }
  size_t fired = nodes.size();  // ready_after[fired..] already reported
  auto fire_down_to = [&](size_t i) {
    for (; fired > i; --fired)
      for (const Tensor& leaf : ready_after[fired - 1]) t.grad_ready(leaf);
  };
  // Nodes are appended in creation order, so reverse order is topological.
  for (size_t i = nodes.size(); i-- > 0 && !grads.empty();) {
    if (t.grad_ready) fire_down_to(i + 1);  // nodes after i are done
    const std::shared_ptr<Node>& node = nodes[i];
    if (!node) continue;
    std::vector<Tensor> gouts(node->output_ids.size());
    bool any = false;
    for (size_t k = 0; k < gouts.size(); ++k) {
      auto it = grads.find(node->output_ids[k]);
      if (it != grads.end()) {
        gouts[k] = it->second;
        grads.erase(it);
        any = true;
      }
    }
    if (!any) continue;
    check(!node->released, "backward: node '", node->name,
          "' was freed by an earlier backward; pass retain_graph=true to backward twice");
    for (size_t k = 0; k < gouts.size(); ++k)
      if (!gouts[k].defined()) gouts[k] = Tensor::zeros(node->output_shapes[k]);
    const BackwardHook hook = g_backward_hook.load(std::memory_order_relaxed);
    const auto t0 = hook ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    std::vector<Tensor> gins = node->backward(gouts);
    if (hook) hook(node->name, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    check(gins.size() == node->inputs.size(), "backward: node '", node->name, "' returned ", gins.size(),
          " gradients for ", node->inputs.size(), " inputs");
    for (size_t k = 0; k < gins.size(); ++k) {
      const Tensor& in = node->inputs[k];
      if (!gins[k].defined() || !in.defined() || !in.requires_grad()) continue;
      check(gins[k].shape() == in.shape(), "backward: node '", node->name, "' gave gradient of shape ",
            gins[k].shape(), " for input ", k, " of shape ", in.shape());
      if (in.is_leaf() || in.impl()->retains_grad) accumulate_leaf(in, gins[k]);
      if (!in.is_leaf()) add_grad(grads, in, gins[k]);
    }
    if (!retain_graph) {
      node->backward = nullptr;
      node->inputs.clear();
      node->released = true;
    }
  }
  if (t.grad_ready) fire_down_to(0);
  if (!retain_graph) compact(t);
  return grads.size();
}

TapeScope::TapeScope() {
  Tape& t = tape();
  saved_ = std::make_unique<std::vector<std::weak_ptr<Node>>>(std::move(t.nodes));
  saved_compact_at_ = t.compact_at;
  // A recomputation's leaves get more gradient after it: none is ready there.
  saved_grad_ready_ = std::move(t.grad_ready);
  t.grad_ready = nullptr;
  t.nodes.clear();
  t.compact_at = 1024;
}

TapeScope::~TapeScope() {
  Tape& t = tape();
  t.nodes = std::move(*saved_);
  t.compact_at = saved_compact_at_;
  t.grad_ready = std::move(saved_grad_ready_);
}

size_t tape_size() {
  size_t n = 0;
  for (auto& w : tape().nodes)
    if (auto p = w.lock(); p && !p->released) ++n;
  return n;
}

void clear_tape() { tape().nodes.clear(); }

}  // namespace mmrec::autograd
