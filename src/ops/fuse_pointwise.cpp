// Graph pass: pointwise fusion. Chains (and small trees) of elementwise calls
// whose intermediates die inside the chain become one fused_pointwise call:
// one pass over the data (kernels/fused.h) instead of one per op, and no
// buffers for the intermediates. The fused kernel runs the same per-lane
// functions as the separate kernels, so a replay equals the eager run bit
// for bit.
//
// Fusable calls: binary (add, sub, mul, div, with an operand repeating along
// the output), unary, affine, clamp, activation, sigmoid_mul, copy, and the
// tape's grad_accumulate (g += t, g the chain's value so far or an input).
// A call joins the group that produced one of its inputs when that input is
// a temporary (made and dropped in the capture) nobody else reads, every
// view is a contiguous f32 buffer of the same element count (or the
// repeating operand), the program stays within 6 ops over 4 input streams,
// and no call in between writes what the group reads. The fused call runs
// where the group's last call ran.
#include <algorithm>
#include <optional>
#include <sstream>
#include <unordered_map>

#include "ops/common.h"
#include "ops/elementwise_attrs.h"
#include "ops/fuse_pointwise.h"
#include "ops/kernels/fused.h"

namespace mmrec::ops {
namespace {
using autograd::Call;
using autograd::OpKind;
using kernels::PointwiseInstr;
using kernels::PointwiseOp;
using kernels::PointwiseProgram;
using Program = PointwiseProgram;

void run_fused_pointwise(const PointwiseProgram& p, const Tensor* in, const Tensor* out) {
  const float* streams[PointwiseProgram::kMaxInputs] = {};
  for (uint8_t k = 0; k < p.n_in; ++k) streams[k] = in[k].data<float>();
  kernels::fused_f32(p, streams, out[0].data<float>());
}

using detail::storage_of;

bool plain_f32(const Tensor& t) { return t.defined() && t.dtype() == DType::f32 && t.is_contiguous(); }

// The same elements of the same buffer.
bool same_view(const Tensor& a, const Tensor& b) {
  return storage_of(a) == storage_of(b) && a.offset() == b.offset() && a.numel() == b.numel();
}

// One fusable call as an op: its operands (b undefined for one-operand ops;
// `a_is_out`: a is the call's own output, read before written).
struct Elem {
  PointwiseInstr op{};
  Tensor a, b;
  bool a_is_out = false;
};

std::optional<Elem> decode(const Call& c) {
  if (c.out.size() != 1 || !plain_f32(c.out[0]) || c.out[0].numel() == 0) return std::nullopt;
  for (const Tensor& t : c.in)
    if (!plain_f32(t)) return std::nullopt;
  const int64_t n = c.out[0].numel();
  Elem e;
  auto one = [&](PointwiseOp op, float p = 0, float q = 0) -> std::optional<Elem> {
    if (c.in.size() != 1 || c.in[0].numel() != n) return std::nullopt;
    e.op = PointwiseInstr{op, 0, 0, p, q};
    e.a = c.in[0];
    return e;
  };
  switch (c.kind) {
    case OpKind::binary: {
      static constexpr PointwiseOp kOps[] = {PointwiseOp::add, PointwiseOp::sub, PointwiseOp::mul, PointwiseOp::div};
      const auto a = detail::attrs_of_call<detail::BinaryAttrs>(c);
      e.op = PointwiseInstr{kOps[static_cast<int>(a.op)], 0, 1, 0, 0};
      e.a = c.in[0];
      e.b = c.in[1];
      return e;
    }
    case OpKind::unary: {
      static constexpr PointwiseOp kOps[] = {PointwiseOp::neg, PointwiseOp::exp, PointwiseOp::log};
      return one(kOps[static_cast<int>(detail::attrs_of_call<detail::UnaryAttrs>(c).op)]);
    }
    case OpKind::affine: {
      const auto a = detail::attrs_of_call<detail::AffineAttrs>(c);
      return one(PointwiseOp::affine, a.s, a.t);
    }
    case OpKind::clamp: {
      const auto a = detail::attrs_of_call<detail::ActAttrs>(c);
      return one(PointwiseOp::clamp, a.lo, a.hi);
    }
    case OpKind::activation:
      return one(detail::attrs_of_call<detail::ActAttrs>(c).op == kernels::Activation::sigmoid ? PointwiseOp::sigmoid
                                                                                              : PointwiseOp::gelu);
    case OpKind::copy: return one(PointwiseOp::copy);
    case OpKind::sigmoid_mul:
      if (c.in.size() != 2 || c.in[0].numel() != n || c.in[1].numel() != n) return std::nullopt;
      e.op = PointwiseInstr{PointwiseOp::sigmoid_mul, 0, 1, 0, 0};
      e.a = c.in[0];
      e.b = c.in[1];
      return e;
    case OpKind::grad_accumulate:  // out += in[0]
      if (c.in.size() != 1 || c.in[0].numel() != n) return std::nullopt;
      e.op = PointwiseInstr{PointwiseOp::accumulate, 0, 1, 0, 0};
      e.a = c.out[0];
      e.b = c.in[0];
      e.a_is_out = true;
      return e;
    default: return std::nullopt;
  }
}

// Calls fused into one program; the program's last op writes `out`.
struct Group {
  std::vector<size_t> calls;  // in call order
  Program prog;
  std::vector<Tensor> in;  // the input streams
  Tensor out;
  bool absorbed = false;  // merged into a later group
};

class Fuser {
 public:
  Fuser(std::vector<Call>& calls, const std::function<bool(const Storage*)>& temporary)
      : calls_(calls), temporary_(temporary), uses_(autograd::index_buffers(calls)) {}

  size_t run() {
    for (size_t j = 0; j < calls_.size(); ++j) {
      const std::optional<Elem> e = decode(calls_[j]);
      if (!e) continue;
      std::optional<Group> g = build(j, *e, true);
      if (!g) g = build(j, *e, false);
      if (!g) continue;
      for (size_t m : g->calls)
        if (m != j) groups_[group_of_call_.at(m)].absorbed = true;
      for (size_t m : g->calls) group_of_call_[m] = groups_.size();
      open_[storage_of(g->out)] = groups_.size();
      groups_.push_back(std::move(*g));
    }
    return rewrite();
  }

 private:
  // The group for call j, merging the groups that produced its operands
  // (when `merge` and allowed), or nullopt if the program would not fit.
  std::optional<Group> build(size_t j, const Elem& e, bool merge) {
    Group g;
    g.out = calls_[j].out[0];
    g.prog.n = g.out.numel();
    const int a = operand(g, j, e.a, e.a_is_out, merge);
    const int b = e.b.defined() ? operand(g, j, e.b, false, merge) : 0;
    if (a < 0 || b < 0 || g.prog.n_ops >= Program::kMaxOps) return std::nullopt;
    PointwiseInstr op = e.op;
    op.a = static_cast<uint8_t>(a);
    op.b = static_cast<uint8_t>(b);
    g.prog.ops[g.prog.n_ops++] = op;
    g.calls.push_back(j);
    std::sort(g.calls.begin(), g.calls.end());
    // An input in the output's buffer must be the output's own elements.
    for (const Tensor& t : g.in)
      if (storage_of(t) == storage_of(g.out) && !same_view(t, g.out)) return std::nullopt;
    return g;
  }

  // The operand index of t in g: the result of the group that produced it
  // (merged into g), else an input stream; -1 if g would not fit.
  int operand(Group& g, size_t j, const Tensor& t, bool is_out, bool merge) {
    if (merge) {
      auto it = open_.find(storage_of(t));
      if (it != open_.end() && can_merge(groups_[it->second], j, t, g.prog.n, is_out))
        return absorb(g, groups_[it->second]);
    }
    return stream(g, t);
  }

  bool can_merge(const Group& p, size_t j, const Tensor& t, int64_t n, bool is_out) const {
    // t is the group's whole output, over as many elements as g's (not a
    // repeating operand: the group's program would run on g's elements).
    if (p.absorbed || !same_view(p.out, t) || p.prog.n != n) return false;
    const Storage* s = storage_of(t);
    if (is_out) {
      // g += x right after the group wrote g: nothing may touch g in between.
      for (size_t k = p.calls.back() + 1; k < j; ++k)
        if (touches(calls_[k], s)) return false;
    } else if (!temporary_(s) || uses_.at(s).uses() != 2) {
      return false;  // the intermediate has another reader, or outlives the step
    }
    // The group's inputs are read at j instead: nothing in between may write them.
    for (size_t k = p.calls.front() + 1; k < j; ++k) {
      if (std::binary_search(p.calls.begin(), p.calls.end(), k)) continue;
      for (const Tensor& o : calls_[k].out)
        for (const Tensor& x : p.in)
          if (o.defined() && storage_of(o) == storage_of(x)) return false;
    }
    return true;
  }

  static bool touches(const Call& c, const Storage* s) {
    for (const std::vector<Tensor>* v : {&c.in, &c.out})
      for (const Tensor& t : *v)
        if (t.defined() && storage_of(t) == s) return true;
    return false;
  }

  // Appends p's program to g; returns the operand of p's result, -1 if it does not fit.
  int absorb(Group& g, const Group& p) {
    if (g.prog.n_ops + p.prog.n_ops > Program::kMaxOps) return -1;
    const uint8_t base = g.prog.n_ops;
    auto remap = [&](uint8_t x) -> int {
      if (x >= kernels::kFirstResult) return x + base;
      return stream(g, p.in[x]);
    };
    for (uint8_t k = 0; k < p.prog.n_ops; ++k) {
      PointwiseInstr op = p.prog.ops[k];
      const int a = remap(op.a), b = remap(op.b);
      if (a < 0 || b < 0) return -1;
      op.a = static_cast<uint8_t>(a);
      op.b = static_cast<uint8_t>(b);
      g.prog.ops[g.prog.n_ops++] = op;
    }
    g.calls.insert(g.calls.end(), p.calls.begin(), p.calls.end());
    return kernels::kFirstResult + g.prog.n_ops - 1;
  }

  // The stream index of t in g (added if new); -1 if it does not fit.
  static int stream(Group& g, const Tensor& t) {
    for (size_t k = 0; k < g.in.size(); ++k)
      if (same_view(g.in[k], t)) return static_cast<int>(k);
    if (g.in.size() >= Program::kMaxInputs) return -1;
    const int64_t len = t.numel(), n = g.prog.n;
    const int k = static_cast<int>(g.in.size());
    if (len != n) {  // a repeating operand
      if (len == 0 || n % len != 0 || (g.prog.inner != 0 && g.prog.inner != len)) return -1;
      g.prog.inner = len;
      g.prog.repeat = static_cast<uint8_t>(g.prog.repeat | 1u << k);
    }
    g.in.push_back(t);
    g.prog.n_in = static_cast<uint8_t>(g.in.size());
    return k;
  }

  // Replaces each group of two or more calls by one fused call at its last.
  size_t rewrite() {
    std::vector<bool> drop(calls_.size(), false);
    for (const Group& g : groups_) {
      if (g.absorbed || g.calls.size() < 2) continue;
      Call& last = calls_[g.calls.back()];
      last.kind = OpKind::fused_pointwise;
      last.run = &autograd::kernel_thunk<PointwiseProgram, run_fused_pointwise>;
      last.attrs = autograd::Attrs::of(g.prog);
      last.in = g.in;
      last.out = {g.out};
      for (size_t k = 0; k + 1 < g.calls.size(); ++k) drop[g.calls[k]] = true;
    }
    return autograd::erase_calls(calls_, drop);
  }

  std::vector<Call>& calls_;
  const std::function<bool(const Storage*)>& temporary_;
  autograd::BufferIndex uses_;
  std::vector<Group> groups_;
  std::unordered_map<size_t, size_t> group_of_call_;
  std::unordered_map<const Storage*, size_t> open_;  // buffer -> the group that wrote it last
};

const char* op_name(PointwiseOp op) {
  switch (op) {
    case PointwiseOp::copy: return "copy";
    case PointwiseOp::add: return "binary.add";
    case PointwiseOp::sub: return "binary.sub";
    case PointwiseOp::mul: return "binary.mul";
    case PointwiseOp::div: return "binary.div";
    case PointwiseOp::neg: return "unary.neg";
    case PointwiseOp::exp: return "unary.exp";
    case PointwiseOp::log: return "unary.log";
    case PointwiseOp::affine: return "affine";
    case PointwiseOp::clamp: return "clamp";
    case PointwiseOp::sigmoid: return "activation.sigmoid";
    case PointwiseOp::gelu: return "activation.gelu";
    case PointwiseOp::sigmoid_mul: return "sigmoid_mul";
    case PointwiseOp::accumulate: return "grad_accumulate";
  }
  return "?";
}

}  // namespace

size_t detail::fuse_pointwise(std::vector<Call>& calls, const std::function<bool(const Storage*)>& temporary) {
  return Fuser(calls, temporary).run();
}

// The bytes of the input streams and the output.
std::string detail::describe_pointwise(const Call& c) {
  const auto p = detail::attrs_of_call<PointwiseProgram>(c);
  std::ostringstream os;
  size_t bytes = 0;
  bool out_read = false;
  for (const Tensor& t : c.in) {
    bytes += t.nbytes();
    out_read |= same_view(t, c.out[0]);
  }
  if (!out_read) bytes += c.out[0].nbytes();
  for (uint8_t k = 0; k < p.n_ops; ++k) os << (k ? " -> " : "") << op_name(p.ops[k].op);
  os << " (" << int{p.n_ops} << " calls, 1 pass over " << detail::size_text(bytes) << ")";
  if (p.out_ld > 0) os << ", written in place: rows of " << p.out_row << " floats, " << p.out_ld << " apart";
  return os.str();
}

std::string detail::size_text(size_t bytes) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(1);
  if (bytes >= (size_t{1} << 20))
    os << static_cast<double>(bytes) / (1 << 20) << " MiB";
  else
    os << static_cast<double>(bytes) / (1 << 10) << " KiB";
  return os.str();
}

bool detail::adds_two(const Call& c) {
  if (c.in.size() != 2 || c.out.size() != 1) return false;
  if (c.kind == OpKind::binary) return detail::attrs_of_call<detail::BinaryAttrs>(c).op == kernels::BinaryOp::add;
  if (c.kind != OpKind::fused_pointwise) return false;
  const auto p = detail::attrs_of_call<PointwiseProgram>(c);
  const auto sum = [](const PointwiseInstr& op, uint8_t a, uint8_t b) {
    return (op.op == PointwiseOp::add || op.op == PointwiseOp::accumulate) &&
           ((op.a == a && op.b == b) || (op.a == b && op.b == a));
  };
  if (p.n_in != 2 || p.repeat != 0 || p.out_ld != 0) return false;
  if (p.n_ops == 1) return sum(p.ops[0], 0, 1);
  return p.n_ops == 2 && p.ops[0].op == PointwiseOp::copy && p.ops[0].a < 2 &&
         sum(p.ops[1], kernels::kFirstResult, static_cast<uint8_t>(1 - p.ops[0].a));
}

}  // namespace mmrec::ops
