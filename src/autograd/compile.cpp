#include "autograd/compile.h"

#include <cstdio>
#include <map>
#include <sstream>

#include "autograd/tape.h"
#include "tensor/threads.h"

namespace mmrec::autograd {

CompiledFn::CompiledFn(StepFn fn, CompileOptions opt) : fn_(std::move(fn)), opt_(std::move(opt)) {
  check(static_cast<bool>(fn_), "compile: empty function");
  check(opt_.max_graphs >= 1, "compile: max_graphs must be >= 1");
}

std::string CompiledFn::signature(const std::vector<Tensor>& inputs) const {
  std::ostringstream os;
  for (const Tensor& t : inputs) {
    if (!t.defined()) {
      os << "undefined ";
      continue;
    }
    os << dtype_name(t.dtype()) << shape_str(t.shape()) << ' ';
  }
  os << "threads=" << num_threads() << " grad=" << grad_enabled() << " config=" << opt_.config;
  return os.str();
}

std::vector<Tensor> CompiledFn::operator()(const std::vector<Tensor>& inputs) {
  const std::string sig = signature(inputs);
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->signature != sig) continue;
    if (it != entries_.begin()) {
      Entry e = std::move(*it);
      entries_.erase(it);
      entries_.push_front(std::move(e));
    }
    Entry& e = entries_.front();
    for (size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].defined() && !inputs[i].same(e.inputs[i])) e.inputs[i].copy_from(inputs[i]);
    e.graph.replay();
    ++replays_;
    last_ = &e.graph;
    return e.outputs;
  }
  if (opt_.strict && !first_signature_.empty())
    fail("compile ", opt_.name, ": strict mode: the signature changed from '", first_signature_, "' to '", sig,
         "' (a new capture is not allowed)");
  if (first_signature_.empty()) first_signature_ = sig;

  Entry e;
  e.signature = sig;
  // Private copies: the caller may reuse or change its tensors.
  for (const Tensor& t : inputs) e.inputs.push_back(t.defined() ? t.clone() : Tensor());
  std::vector<Tensor> outs;
  e.graph = Capture::run([&] { outs = fn_(e.inputs); }, e.inputs);
  for (const Tensor& t : outs) e.outputs.push_back(t.defined() ? t.detach() : Tensor());
  ++captures_;
  if (debug_level() >= 1) std::fprintf(stderr, "%s\n", e.graph.summary(opt_.name).c_str());
  if (debug_level() >= 2) {
    std::map<std::string, int> kinds;
    for (const Call& c : e.graph.calls()) ++kinds[op_kind_name(c.kind)];
    std::string line = "graph " + opt_.name + " calls by kind:";
    for (const auto& [k, n] : kinds) line += " " + k + "=" + std::to_string(n);
    std::fprintf(stderr, "%s\n%s", line.c_str(), e.graph.fusions().c_str());
  }
  if (debug_level() >= 3) std::fprintf(stderr, "%s", e.graph.listing().c_str());
  entries_.push_front(std::move(e));
  if (entries_.size() > opt_.max_graphs) entries_.pop_back();
  last_ = &entries_.front().graph;
  return entries_.front().outputs;
}

}  // namespace mmrec::autograd
